//! Following a call as an operator does: the server's span exported over OTLP as the child of
//! the caller's `traceparent`, a child span per database statement without any value, and the
//! request id returned to the client and written, with the trace id and the token's name, into
//! the request's log line. The collector is the test kit's in-process OTLP receiver.

use callers_proto::v1 as pb;
use callers_testkit::empty_database;
use callers_testkit::otlp::{Collector, Span, SpanKind, hex, names};
use callers_testkit::process::{Launch, ServerProcess};
use tonic::Request;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const NAME: &str = "Zwiebelmeyer";
const DIGITS: &str = "98765432";

/// The tokens file's text: `token` grants the client `telephony` the account `acme`.
fn tokens_file(token: &str) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let hash = hex(&Sha256::digest(token.as_bytes()));
    let path = std::env::temp_dir().join(format!("callers-tokens-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        format!("[[tokens]]\nname = \"telephony\"\nsha256 = \"{hash}\"\naccounts = [\"acme\"]\n"),
    )
    .unwrap();
    path
}

async fn start(endpoint: Option<&str>, tokens: &std::path::Path) -> ServerProcess {
    let url = empty_database().await;
    let mut launch = Launch::new(env!("CARGO_BIN_EXE_callers-server"))
        .migrating_on(&url)
        .env("CALLERS_AUTH_TOKENS_FILE", tokens);
    if let Some(e) = endpoint {
        launch = launch
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", e)
            // Export each batch at once rather than every five seconds.
            .env("OTEL_BSP_SCHEDULE_DELAY", "50");
    }
    launch.serve().await.unwrap()
}

fn with_metadata<T>(message: T, token: &str, pairs: &[(&'static str, &str)]) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    for (k, v) in pairs {
        r.metadata_mut().insert(*k, v.parse().unwrap());
    }
    r
}

#[tokio::test]
async fn a_call_with_a_traceparent_is_exported_with_its_statements_and_no_values() {
    let (collector, endpoint) = Collector::start().await;
    let token = "s3cret-token-for-traces";
    let tokens = tokens_file(token);
    let server = start(Some(&endpoint), &tokens).await;
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut contacts = pb::contact_service_client::ContactServiceClient::new(channel.clone());
    let mut identification =
        pb::identification_service_client::IdentificationServiceClient::new(channel);
    contacts
        .create_contact(with_metadata(
            pb::CreateContactRequest {
                account_id: "acme".into(),
                request_id: String::new(),
                contact: Some(pb::Contact {
                    categories: vec!["caller".into()],
                    last_name: NAME.into(),
                    phone_numbers: vec![pb::PhoneNumber {
                        number: format!("+49 30 {DIGITS}"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            token,
            &[],
        ))
        .await
        .unwrap();
    let traceparent = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let found = identification
        .identify_caller(with_metadata(
            pb::IdentifyCallerRequest {
                account_id: "acme".into(),
                caller_number: format!("030 {DIGITS}"),
                ..Default::default()
            },
            token,
            &[
                ("traceparent", &traceparent),
                ("x-request-id", "req-traced-1"),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        found.metadata().get("x-request-id").unwrap(),
        "req-traced-1"
    );
    assert_eq!(found.into_inner().matches.len(), 1);

    let is_call = |s: &Span| {
        hex(&s.trace_id) == TRACE_ID && s.name == "callers.v1.IdentificationService/IdentifyCaller"
    };
    let spans = collector
        .wait(|spans| {
            spans
                .iter()
                .any(|call| is_call(call) && spans.iter().any(|s| s.parent_span_id == call.span_id))
        })
        .await;
    let call = spans.iter().find(|s| is_call(s)).unwrap();
    assert_eq!(
        hex(&call.parent_span_id),
        PARENT_ID,
        "the caller's span is the parent"
    );
    assert_eq!(call.kind, SpanKind::Server as i32);
    let statements: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == call.span_id)
        .collect();
    assert!(
        statements
            .iter()
            .all(|s| s.kind == SpanKind::Client as i32 && hex(&s.trace_id) == TRACE_ID),
        "{:#?}",
        names(&spans)
    );
    assert!(
        statements.iter().any(|s| s.name.starts_with("SELECT ")),
        "{:#?}",
        names(&spans)
    );
    // No value of the call in any span of the server's, whatever its attributes.
    let exported = format!("{spans:?}");
    for secret in [NAME, DIGITS, token] {
        assert!(
            !exported.contains(secret),
            "{secret} in the spans: {exported}"
        );
    }

    let logs = server.stop().await.unwrap().output;
    let line = logs
        .lines()
        .find(|l| l.contains("IdentifyCaller") && l.contains("\"message\":\"grpc request\""))
        .unwrap_or_else(|| panic!("no request line:\n{logs}"));
    for field in [
        "\"request_id\":\"req-traced-1\"".to_owned(),
        format!("\"trace_id\":\"{TRACE_ID}\""),
        "\"token\":\"telephony\"".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} missing in {line}");
    }
    assert!(!logs.contains(token), "the token itself was logged");
    let _ = std::fs::remove_file(tokens);
}

#[tokio::test]
async fn without_a_collector_the_request_id_is_made_returned_and_logged() {
    let token = "s3cret-token-untraced";
    let tokens = tokens_file(token);
    let server = start(None, &tokens).await;
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut contacts = pb::contact_service_client::ContactServiceClient::new(channel);
    let list = |pairs: &[(&'static str, &str)]| {
        with_metadata(
            pb::ListContactsRequest {
                account_id: "acme".into(),
                ..Default::default()
            },
            token,
            pairs,
        )
    };
    let made = contacts.list_contacts(list(&[])).await.unwrap();
    let made = made
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 32, "{made}");
    let kept = contacts
        .list_contacts(list(&[("x-request-id", "crm-7f3a")]))
        .await
        .unwrap();
    assert_eq!(kept.metadata().get("x-request-id").unwrap(), "crm-7f3a");
    // A refusal carries it too.
    let refused = contacts
        .list_contacts(with_metadata(
            pb::ListContactsRequest {
                account_id: "other".into(),
                ..Default::default()
            },
            token,
            &[("x-request-id", "crm-refused")],
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        refused.metadata().get("x-request-id").unwrap(),
        "crm-refused"
    );

    let logs = server.stop().await.unwrap().output;
    for id in [made.as_str(), "crm-7f3a", "crm-refused"] {
        let line = logs
            .lines()
            .find(|l| l.contains(&format!("\"request_id\":\"{id}\"")))
            .unwrap_or_else(|| panic!("no line with {id}:\n{logs}"));
        assert!(line.contains("\"token\":\"telephony\""), "{line}");
    }
    let _ = std::fs::remove_file(tokens);
}
