//! The `callers-server` binary as operators run it: flags, refusal to start, migrate, SIGTERM.

use callers_testkit::process::{Launch, ServerProcess};
use callers_testkit::{count, empty_database};
use std::time::Duration;

/// This package's own build of the binary.
fn server() -> Launch {
    Launch::new(env!("CARGO_BIN_EXE_callers-server"))
}

#[tokio::test]
async fn it_refuses_to_serve_unauthenticated_beyond_loopback() {
    let out = server()
        .args(["--listen", "0.0.0.0:0", "--log-format", "json"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .run()
        .await;
    assert_ne!(out.code, Some(0));
    let stderr = &out.stderr;
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_builds_the_schema_and_is_repeatable() {
    let url = empty_database().await;
    for _ in 0..2 {
        let out = server()
            .args(["migrate", "--log-format", "json"])
            .env("DATABASE_URL", &url)
            .run()
            .await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
    }
    let client = callers_testkit::database::connect(&url).await;
    let n = count(
        &client,
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN \
         ('contacts', 'contact_phone_numbers', 'call_notes', 'call_handling')",
    )
    .await;
    assert_eq!(n, 4);
}

#[tokio::test]
async fn it_serves_then_stops_cleanly_on_sigterm() {
    let url = empty_database().await;
    let running = server()
        .migrating_on(&url)
        .serve()
        .await
        .expect("the server did not start listening");
    let channel = tonic::transport::Channel::from_shared(running.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    let stopped = running.stop().await.unwrap();
    assert!(!stopped.killed, "the server did not stop on SIGTERM");
    assert!(stopped.status.success(), "{stopped:?}");
}

/// Stops `server` with SIGTERM: it must end cleanly; returns what it printed.
async fn stop(server: ServerProcess) -> String {
    let stopped = server.stop().await.unwrap();
    assert!(!stopped.killed && stopped.status.success(), "{stopped:?}");
    stopped.output
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn scrape(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for _ in 0..50 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut body = String::new();
            s.read_to_string(&mut body).await.unwrap();
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("metrics endpoint did not answer");
}

#[tokio::test]
async fn a_full_scenario_logs_no_personal_data_and_fills_the_metrics() {
    use callers_proto::v1 as pb;
    let url = empty_database().await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let server = server()
        .migrating_on(&url)
        .args(["--metrics-listen", &metrics_addr])
        // Even at the most verbose level nothing personal may appear.
        .env("RUST_LOG", "trace")
        .serve()
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut contacts =
        callers_proto::v1::contact_service_client::ContactServiceClient::new(channel.clone());
    let mut notes =
        callers_proto::v1::call_note_service_client::CallNoteServiceClient::new(channel);
    let secrets = [
        "Hildegard",
        "Zwiebelmeyer",
        "zwiebelmeyer",
        "98765432",
        "Geheimnis-4711",
        "Quastenflosser",
        "zwiebel@example.org",
        "Sonnenblume",
    ];
    let created = contacts
        .create_contact(pb::CreateContactRequest {
            account_id: "acme".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            contact: Some(pb::Contact {
                categories: vec!["caller".into()],
                first_name: "Hildegard".into(),
                last_name: "Zwiebelmeyer".into(),
                email: "zwiebel@example.org".into(),
                phone_numbers: vec![pb::PhoneNumber {
                    number: "+49 30 98765432".into(),
                    ..Default::default()
                }],
                caller_message: Some(pb::CallerMessage {
                    text: "Geheimnis-4711".into(),
                    ..Default::default()
                }),
                handling_instruction: "Nur an Quastenflosser".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    // Bad input that quotes personal data must not echo it into logs either.
    let bad = contacts
        .create_contact(pb::CreateContactRequest {
            account_id: "acme".into(),
            request_id: String::new(),
            contact: Some(pb::Contact {
                last_name: "Sonnenblume".into(),
                phone_numbers: vec![pb::PhoneNumber {
                    number: "Zwiebelmeyer 98765432".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let note = notes
        .create_call_note(pb::CreateCallNoteRequest {
            account_id: "acme".into(),
            request_id: String::new(),
            call_note: Some(pb::CallNote {
                caller_first_name: "Hildegard".into(),
                caller_last_name: "Zwiebelmeyer".into(),
                caller_number: "030 98765432".into(),
                agent_id: "agent-1".into(),
                text: "Sonnenblume".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(note.contact.unwrap().contact_id, created.contact_id);
    notes
        .deliver_caller_message(pb::DeliverCallerMessageRequest {
            account_id: "acme".into(),
            contact_id: created.contact_id.clone(),
            message_id: created.caller_message.unwrap().message_id,
            call_note_id: note.call_note.unwrap().call_note_id,
            agent_id: "agent-1".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    contacts
        .delete_contact(pb::DeleteContactRequest {
            account_id: "acme".into(),
            contact_id: created.contact_id,
            etag: String::new(),
        })
        .await
        .unwrap();

    let metrics = scrape(&metrics_addr).await;
    for series in [
        "callers_grpc_requests_total{method=\"callers.v1.ContactService/CreateContact\",code=\"OK\"} 1",
        "callers_grpc_requests_total{method=\"callers.v1.ContactService/CreateContact\",code=\"INVALID_ARGUMENT\"} 1",
        "callers_grpc_requests_total{method=\"callers.v1.CallNoteService/DeliverCallerMessage\",code=\"OK\"} 1",
        "callers_grpc_request_duration_seconds_bucket{method=\"callers.v1.CallNoteService/CreateCallNote\",le=\"0.005\"}",
        "callers_build_info{version=",
        "callers_db_pool_connections{state=\"in_use\"}",
        "callers_db_pool_waiting",
        // go-grpc-prometheus's names, which the common dashboards query.
        "grpc_server_started_total{grpc_type=\"unary\",grpc_service=\"callers.v1.ContactService\",grpc_method=\"CreateContact\"} 2",
        "grpc_server_handled_total{grpc_type=\"unary\",grpc_service=\"callers.v1.ContactService\",grpc_method=\"CreateContact\",grpc_code=\"InvalidArgument\"} 1",
        "grpc_server_handling_seconds_bucket{grpc_type=\"unary\",grpc_service=\"callers.v1.CallNoteService\",grpc_method=\"CreateCallNote\",le=\"0.005\"}",
        "# HELP grpc_server_handled_total ",
        "# HELP callers_db_pool_waiting ",
        // Process and runtime.
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "callers_tokio_alive_tasks ",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    let logs = stop(server).await;
    assert!(
        logs.contains("\"message\":\"grpc request\""),
        "no request log lines:\n{logs}"
    );
    assert!(logs.contains("\"account_id\":\"acme\""));
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        assert!(
            !metrics.contains(secret),
            "{secret} leaked into the metrics"
        );
    }
}

/// The tokens file's text: `token` grants the client `crm` the account `acme`.
fn tokens_toml(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    format!("[[tokens]]\nname = \"crm\"\nsha256 = \"{hash}\"\naccounts = [\"acme\"]\n")
}

/// `ListContacts` on `acme` as the bearer of `token`.
fn list(token: &str) -> tonic::Request<callers_proto::v1::ListContactsRequest> {
    let mut r = tonic::Request::new(callers_proto::v1::ListContactsRequest {
        account_id: "acme".into(),
        ..Default::default()
    });
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

type Contacts =
    callers_proto::v1::contact_service_client::ContactServiceClient<tonic::transport::Channel>;

/// A server on a fresh database that reads its tokens from `file`, and a client of it.
async fn start_with_tokens(file: &std::path::Path) -> (ServerProcess, Contacts) {
    let url = empty_database().await;
    let server = server()
        .migrating_on(&url)
        .env("CALLERS_AUTH_TOKENS_FILE", file)
        .serve()
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (server, Contacts::new(channel))
}

#[tokio::test]
async fn tokens_rotate_on_sighup_without_a_restart() {
    let file = std::env::temp_dir().join(format!("callers-rotate-{}.toml", uuid::Uuid::new_v4()));
    let write = |token: &str| std::fs::write(&file, tokens_toml(token)).unwrap();
    write("old-token");
    let (server, mut client) = start_with_tokens(&file).await;
    client.list_contacts(list("old-token")).await.unwrap();
    write("new-token");
    server.signal("HUP").await;
    let mut rotated = false;
    for _ in 0..100 {
        if server.output().contains("tokens file reloaded") {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "no reload logged");
    client.list_contacts(list("new-token")).await.unwrap();
    let e = client.list_contacts(list("old-token")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    stop(server).await;
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn a_changed_tokens_file_is_picked_up_without_a_signal() {
    let file = std::env::temp_dir().join(format!("callers-watch-{}.toml", uuid::Uuid::new_v4()));
    let write = |token: &str| {
        // Write beside and rename, as the kubelet swaps a Secret's files.
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, tokens_toml(token)).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    write("first-token");
    let (server, mut client) = start_with_tokens(&file).await;
    client.list_contacts(list("first-token")).await.unwrap();
    write("second-token");
    let mut accepted = false;
    for _ in 0..300 {
        if client.list_contacts(list("second-token")).await.is_ok() {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "the new token was not accepted within 30 s");
    let e = client.list_contacts(list("first-token")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    stop(server).await;
    let _ = std::fs::remove_file(&file);
}

/// Clients keep one HTTP/2 connection for all their calls; replicas an autoscaler adds get
/// traffic only when connections are renewed. An old connection is asked to close (GOAWAY)
/// and the client's next calls go over a new one. A tonic client may see a call that met the
/// GOAWAY fail with CANCELLED or UNAVAILABLE; retried, as docs/OPERATIONS.md tells clients,
/// every call succeeds.
#[tokio::test]
async fn old_client_connections_are_renewed_without_a_lost_call() {
    let url = empty_database().await;
    let running = server()
        .migrating_on(&url)
        .args(["--max-connection-age-secs", "1"])
        .serve()
        .await
        .unwrap();
    let upstream = running.url().trim_start_matches("http://").parse().unwrap();
    let proxy = callers_faultproxy::FaultProxy::start(upstream)
        .await
        .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", proxy.addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let contacts = callers_proto::v1::contact_service_client::ContactServiceClient::new(channel);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut calls = 0;
    while proxy.accepted() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the connection was never renewed ({} accepted)",
            proxy.accepted()
        );
        let (listed, _retries) = callers_testkit::app::retrying_renewal(|| {
            let mut contacts = contacts.clone();
            async move {
                contacts
                    .list_contacts(callers_proto::v1::ListContactsRequest {
                        account_id: "acme".into(),
                        ..Default::default()
                    })
                    .await
            }
        })
        .await;
        listed.unwrap_or_else(|e| panic!("call {calls} failed: {e:?}"));
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running.stop().await.unwrap().status.success());
}
