//! Both binaries keep the database driver's statement parameters out of their logs, even when
//! `RUST_LOG` asks for the driver's debug lines: run as processes on a real database, with
//! values that travel only as statement parameters.

use callers_proto::v1 as pb;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_tests::{
    FIRST_NAME, LAST_NAME, NUMBER, Row, finish, fresh_database, insert, purge_command,
    server_binary, sql, terminate,
};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

/// What `RUST_LOG` says in each run: everything, and only the driver's parameter lines, which a
/// plain `tokio_postgres=info` directive added to the filter does not override.
const ASKING_FOR_THE_DRIVER: [&str; 2] = ["trace", "tokio_postgres::query=debug"];

/// A contact's name and number, sent by a client and bound as statement parameters.
const NAME: &str = "Ysoldine";
const SURNAME: &str = "Quarnbeck-Zimmerlein";
const LOCAL_NUMBER: &str = "030 5550172";
const E164: &str = "+49305550172";

/// The purge's statement timeout, sent by `set_config('statement_timeout', $1)`: a value that
/// appears nowhere but in a statement parameter.
const PURGE_TIMEOUT_SECS: &str = "3571";
const PURGE_TIMEOUT_PARAMETER: &str = "3571000ms";

/// Fails on any of `markers` in `output`, and on any line of the driver below info.
fn assert_clean(binary: &str, rust_log: &str, output: &str, markers: &[&str]) {
    for marker in markers {
        assert!(
            !output.contains(marker),
            "{binary} with RUST_LOG={rust_log} logged {marker:?}:\n{output}"
        );
    }
    for line in output.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let target = event["target"].as_str().unwrap_or_default();
        let level = event["level"].as_str().unwrap_or_default();
        assert!(
            !(target.starts_with("tokio_postgres") && matches!(level, "DEBUG" | "TRACE")),
            "{binary} with RUST_LOG={rust_log} logged the driver at {level}: {line}"
        );
    }
}

/// The lines at `level` in `output`: a run that asked for trace and shows none did not log
/// what it was asked to, and proves nothing.
fn lines_at(output: &str, level: &str) -> usize {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["level"] == level)
        .count()
}

#[tokio::test]
async fn the_server_never_logs_statement_parameters_whatever_rust_log_says() {
    for rust_log in ASKING_FOR_THE_DRIVER {
        let output = server_output(rust_log).await;
        assert_clean(
            "callers-server",
            rust_log,
            &output,
            &[NAME, SURNAME, E164, "5550172"],
        );
        if rust_log == "trace" {
            assert!(lines_at(&output, "TRACE") > 0, "no trace lines:\n{output}");
        }
    }
}

/// Runs `callers-server` with `rust_log`, creates and identifies a contact through it, stops it
/// with SIGTERM; everything it printed, stdout (the logs) and stderr.
async fn server_output(rust_log: &str) -> String {
    let db = fresh_database().await;
    let mut child = Command::new(server_binary())
        .env_clear()
        .env("RUST_LOG", rust_log)
        .env("CALLERS_LOG_FORMAT", "json")
        .args(["--listen", "127.0.0.1:0", "--database-url", db.url()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn callers-server");
    // Drained from the start: at trace the server writes much, and blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let stdout = tokio::spawn(async move {
        let mut text = String::new();
        stdout.read_to_string(&mut text).await.expect("read stdout");
        text
    });
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut early = String::new();
    let addr: std::net::SocketAddr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            early.push_str(&line);
            early.push('\n');
            if let Some(addr) = line.strip_prefix("callers-server listening on ") {
                return addr.trim().parse().expect("a socket address");
            }
        }
        panic!("callers-server ended before listening:\n{early}");
    })
    .await
    .expect("callers-server listens within 30 s");
    let stderr = tokio::spawn(async move {
        let mut text = early;
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });

    let url = format!("http://{addr}");
    let mut contacts = ContactServiceClient::connect(url.clone()).await.unwrap();
    contacts
        .create_contact(pb::CreateContactRequest {
            account_id: "acme".into(),
            contact: Some(pb::Contact {
                categories: vec!["caller".into()],
                first_name: NAME.into(),
                last_name: SURNAME.into(),
                phone_numbers: vec![pb::PhoneNumber {
                    number: LOCAL_NUMBER.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            request_id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .expect("CreateContact");
    let mut identification = IdentificationServiceClient::connect(url).await.unwrap();
    let found = identification
        .identify_caller(pb::IdentifyCallerRequest {
            account_id: "acme".into(),
            caller_number: LOCAL_NUMBER.into(),
            caller_name: format!("{NAME} {SURNAME}"),
            ..Default::default()
        })
        .await
        .expect("IdentifyCaller")
        .into_inner();
    assert_eq!(found.matches.len(), 1, "{found:?}");
    drop((contacts, identification));

    terminate(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("callers-server stops within a minute")
        .expect("wait for callers-server");
    assert!(status.success(), "{status}");
    let mut output = stdout.await.unwrap();
    output.push_str(&stderr.await.unwrap());
    output
}

#[tokio::test]
async fn the_purge_never_logs_statement_parameters_whatever_rust_log_says() {
    for rust_log in ASKING_FOR_THE_DRIVER {
        let db = fresh_database().await;
        insert(&sql(&db).await, &Row::caller("acme", 400)).await;
        let mut cmd = purge_command(
            Some(db.url()),
            &["--statement-timeout-secs", PURGE_TIMEOUT_SECS],
        );
        cmd.env("RUST_LOG", rust_log);
        let run = finish(cmd.spawn().expect("spawn callers-purge")).await;
        assert_eq!(run.code, Some(0), "{run:#?}");
        assert_eq!(run.deleted(), 1, "{run:#?}");
        let output = format!("{}{}", run.stdout, run.stderr);
        assert_clean(
            "callers-purge",
            rust_log,
            &output,
            &[PURGE_TIMEOUT_PARAMETER, FIRST_NAME, LAST_NAME, NUMBER],
        );
        // The worker itself logs nothing below info: its info lines show the capture works.
        if rust_log == "trace" {
            assert!(lines_at(&run.stderr, "INFO") > 0, "no log lines:\n{output}");
        }
    }
}
