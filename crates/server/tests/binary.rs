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
