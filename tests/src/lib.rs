//! The harness of the end-to-end tests in `tests/tests`: the real binaries, run as processes,
//! against a real PostgreSQL, each test on a fresh database of its own.
//!
//! # Where the binaries come from
//!
//! `env!("CARGO_BIN_EXE_…")` exists only inside the package that owns a binary, so this package
//! builds them itself: the first test in a process that needs `callers-purge` (or
//! `callers-server`) runs `cargo build -p callers-purge --message-format=json` with the test's
//! own profile and takes the executable's path from cargo's report. When the binary is up to
//! date, as after `cargo test --workspace` (which builds every workspace binary before it runs
//! any test), that is a no-op of a fraction of a second; after
//! `cargo test -p callers-tests` alone it is the build the test needs. Either way the tests run
//! the current source, never a stale binary.
//!
//! To run prebuilt binaries instead (CI, a container), set `CALLERS_PURGE_BIN` /
//! `CALLERS_SERVER_BIN` to their paths; nothing is built then.
//!
//! # The database
//!
//! [`fresh_database`] clones a migrated template on the server `DATABASE_URL` names, or on the
//! private test cluster (see `callers_devdb::test_server_url`). The binaries get the URL as
//! `--database-url` and a cleared environment, so nothing from the developer's shell leaks in.

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

pub use callers_devdb::TestDatabase;

/// A fresh, migrated database of this test's own; dropped with the value.
pub async fn fresh_database() -> TestDatabase {
    callers_devdb::fresh_database(&callers_store::migrations_fingerprint(), |url| async move {
        callers_store::migrate(&url).await.map_err(Into::into)
    })
    .await
    .expect("test database")
}

/// A plain SQL session on `db`, for arranging rows and looking at them.
pub async fn sql(db: &TestDatabase) -> Client {
    let (client, conn) = tokio_postgres::connect(db.url(), NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(conn);
    client
}

/// The path of `callers-purge`, built on first use.
pub fn purge_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("callers-purge", "CALLERS_PURGE_BIN"))
}

/// The path of `callers-server`, built on first use.
pub fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("callers-server", "CALLERS_SERVER_BIN"))
}

fn binary(package: &str, override_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "build",
        "--message-format=json-render-diagnostics",
        "-p",
        package,
    ])
    .args(["--bin", package])
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .stdin(Stdio::null())
    .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(out.status.success(), "cargo build -p {package} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == package)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build -p {package} reported no executable"))
}

/// What a finished `callers-purge` left: its exit code, its summary and its log.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The JSON summary, the one line on stdout.
    pub fn summary(&self) -> serde_json::Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "stdout is one summary line: {self:#?}");
        serde_json::from_str(lines[0]).expect("the summary is JSON")
    }

    pub fn deleted(&self) -> u64 {
        self.summary()["deleted"].as_u64().expect("deleted")
    }

    pub fn outcome(&self) -> String {
        self.summary()["outcome"]
            .as_str()
            .expect("outcome")
            .to_owned()
    }

    /// The non-empty lines on stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// `callers-purge` with `args`, against `database_url` when given.
pub fn purge_command(database_url: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(purge_binary());
    cmd.env_clear()
        .env("CALLERS_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        cmd.args(["--database-url", url]);
    }
    cmd.args(args);
    cmd
}

/// Runs `callers-purge` on `db` to the end.
pub async fn purge(db: &TestDatabase, args: &[&str]) -> Finished {
    finish(purge_command(Some(db.url()), args).spawn().expect("spawn")).await
}

/// Starts `callers-purge` on `db`; see [`finish`].
pub fn start_purge(db: &TestDatabase, args: &[&str]) -> Child {
    purge_command(Some(db.url()), args)
        .spawn()
        .expect("spawn callers-purge")
}

/// Waits (at most a minute) for `child` and collects what it printed.
pub async fn finish(child: Child) -> Finished {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("callers-purge finishes within a minute")
        .expect("wait for callers-purge");
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends SIGTERM, as Kubernetes does to stop a pod.
pub async fn terminate(child: &Child) {
    let pid = child.id().expect("the child is running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
}

/// A contact as the purge sees it; names and a number are there so tests can check that they
/// never appear in any output.
#[derive(Debug, Clone)]
pub struct Row<'a> {
    pub account: &'a str,
    pub categories: &'a [&'a str],
    pub keep_permanently: bool,
    pub last_activity: DateTime<Utc>,
}

impl<'a> Row<'a> {
    /// A caller-only contact of `account`, not kept, last active `days` ago.
    pub fn caller(account: &'a str, days: i64) -> Self {
        Self {
            account,
            categories: &["caller"],
            keep_permanently: false,
            last_activity: Utc::now() - chrono::Duration::days(days),
        }
    }
}

pub const FIRST_NAME: &str = "Wolfhart";
pub const LAST_NAME: &str = "Quendelbrück";
pub const NUMBER: &str = "+4930987654321";

/// Inserts the contact with a phone number; returns its id.
pub async fn insert(db: &Client, row: &Row<'_>) -> Uuid {
    let id = Uuid::new_v4();
    let categories: Vec<String> = row.categories.iter().map(|c| c.to_string()).collect();
    db.execute(
        "INSERT INTO contacts (account_id, contact_id, categories, first_name, last_name, \
         keep_permanently, origin, create_time, update_time, last_activity_time) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7, $7)",
        &[
            &row.account,
            &id,
            &categories,
            &FIRST_NAME,
            &LAST_NAME,
            &row.keep_permanently,
            &row.last_activity,
        ],
    )
    .await
    .expect("insert contact");
    db.execute(
        "INSERT INTO contact_phone_numbers (account_id, contact_id, position, number, e164, \
         phone_type) VALUES ($1, $2, 0, $3, $3, 1)",
        &[&row.account, &id, &NUMBER],
    )
    .await
    .expect("insert phone number");
    id
}

/// Inserts `n` copies of `row`.
pub async fn insert_many(db: &Client, row: &Row<'_>, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(insert(db, row).await);
    }
    ids
}

pub async fn exists(db: &Client, contact_id: Uuid) -> bool {
    db.query_opt(
        "SELECT 1 FROM contacts WHERE contact_id = $1",
        &[&contact_id],
    )
    .await
    .expect("query contact")
    .is_some()
}

pub async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.expect("count").get(0)
}

/// A running `callers-server` on a test database; killed when dropped.
#[derive(Debug)]
pub struct Server {
    pub addr: std::net::SocketAddr,
    _child: Child,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts `callers-server` on `db`, unauthenticated on a loopback port of its choosing, and
/// waits until it listens.
pub async fn start_server(db: &TestDatabase) -> Server {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = Command::new(server_binary())
        .env_clear()
        .args(["--listen", "127.0.0.1:0", "--database-url", db.url()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn callers-server");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read server stderr") {
            if let Some(addr) = line.strip_prefix("callers-server listening on ") {
                return addr.trim().parse().expect("a socket address");
            }
        }
        panic!("callers-server ended before listening");
    })
    .await
    .expect("callers-server listens within 30 s");
    // Keep draining stderr so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        addr,
        _child: child,
    }
}
