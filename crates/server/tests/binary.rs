//! The `callers-server` binary as operators run it: flags, refusal to start, migrate, SIGTERM.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_callers-server");

/// An empty database of its own (no template: `migrate` must build the schema). The
/// `callers_t_` prefix lets the private test cluster drop it when it restarts.
async fn empty_database() -> (String, String) {
    let server = callers_devdb::test_server_url().await.unwrap();
    let name = format!("callers_t_bin_{}", uuid::Uuid::new_v4().simple());
    let (client, conn) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => unreachable!("test server urls are postgres://…/db"),
    };
    (url, name)
}

#[tokio::test]
async fn it_refuses_to_serve_unauthenticated_beyond_loopback() {
    let out = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0", "--log-format", "json"])
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env_remove("CALLERS_AUTH_TOKENS_FILE")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without authentication"),
        "{stderr}"
    );
}

#[tokio::test]
async fn migrate_builds_the_schema_and_is_repeatable() {
    let (url, _) = empty_database().await;
    for _ in 0..2 {
        let out = Command::new(BIN)
            .args(["migrate", "--log-format", "json"])
            .env("DATABASE_URL", &url)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN \
             ('contacts', 'contact_phone_numbers', 'call_notes', 'call_handling')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
}

#[tokio::test]
async fn it_serves_then_stops_cleanly_on_sigterm() {
    let (url, _) = empty_database().await;
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--migrate",
            "--log-format",
            "json",
        ])
        .env("DATABASE_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(a) = line.strip_prefix("callers-server listening on ") {
                return a.to_owned();
            }
        }
        panic!("the server exited before listening");
    })
    .await
    .expect("the server did not start listening");
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();
    let pid = child.id().unwrap() as i32;
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the server did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A running `callers-server` whose stdout and stderr are collected.
struct Running {
    child: tokio::process::Child,
    addr: String,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

async fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let sink = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = out.next_line().await {
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    let mut err = BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sink = output.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        while let Ok(Some(l)) = err.next_line().await {
            if let Some(a) = l.strip_prefix("callers-server listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(a.to_owned());
            }
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the server did not start listening")
        .expect("the server exited before listening");
    Running {
        child,
        addr,
        output,
    }
}

impl Running {
    async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.output.lock().unwrap().clone()
    }
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
    let (url, _) = empty_database().await;
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let server = start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--migrate",
            "--log-format",
            "json",
            "--metrics-listen",
            &metrics_addr,
        ],
        // Even at the most verbose level nothing personal may appear.
        &[("DATABASE_URL", &url), ("RUST_LOG", "trace")],
    )
    .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
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
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    let logs = server.stop().await;
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
async fn start_with_tokens(file: &std::path::Path) -> (Running, Contacts) {
    let (url, _) = empty_database().await;
    let server = start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--migrate",
            "--log-format",
            "json",
        ],
        &[
            ("DATABASE_URL", &url),
            ("CALLERS_AUTH_TOKENS_FILE", file.to_str().unwrap()),
        ],
    )
    .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
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
    let pid = server.child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    let mut rotated = false;
    for _ in 0..100 {
        if server
            .output
            .lock()
            .unwrap()
            .contains("tokens file reloaded")
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rotated, "no reload logged");
    client.list_contacts(list("new-token")).await.unwrap();
    let e = client.list_contacts(list("old-token")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    server.stop().await;
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
    server.stop().await;
    let _ = std::fs::remove_file(&file);
}
