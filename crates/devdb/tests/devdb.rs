//! Against a real PostgreSQL. Run both with and without DATABASE_URL:
//!
//! ```text
//! cargo test -p callers-devdb
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test -p callers-devdb
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use callers_devdb::{
    PrivatePostgres, TestDatabase, fresh_database, template_name, test_server_url,
};
use tokio_postgres::{Client, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A migration that counts its runs and makes one table with one row.
fn counting_migration(
    runs: Arc<AtomicUsize>,
) -> impl FnOnce(String) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> {
    move |url| {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            // Widen the window in which concurrent callers could race.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (client, connection) = tokio_postgres::connect(&url, NoTls).await?;
            let connection = tokio::spawn(connection);
            client
                .batch_execute(
                    "CREATE TABLE migrated (id int PRIMARY KEY); INSERT INTO migrated VALUES (1);",
                )
                .await?;
            // Leave the session open on purpose: fresh_database must cope.
            std::mem::forget(client);
            drop(connection);
            Ok(())
        })
    }
}

fn new_fingerprint(test: &str) -> String {
    format!("selftest_{test}_{}", uuid::Uuid::new_v4().simple())
}

async fn database_exists(name: &str) -> bool {
    let server = test_server_url().await.unwrap();
    let client = connect(&server).await;
    client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

async fn migrated_rows(db: &TestDatabase) -> i64 {
    let client = connect(db.url()).await;
    client
        .query_one("SELECT count(*) AS n FROM migrated", &[])
        .await
        .unwrap()
        .get("n")
}

/// Drops the template a test made (each test makes its own, with a new fingerprint).
async fn drop_template(fingerprint: &str) {
    let server = test_server_url().await.unwrap();
    let client = connect(&server).await;
    client
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            template_name(fingerprint)
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn server_url_follows_database_url() {
    let url = test_server_url().await.unwrap();
    match std::env::var("DATABASE_URL") {
        Ok(wanted) if !wanted.trim().is_empty() => assert_eq!(url, wanted),
        _ => {
            assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
            assert_ne!(url, "postgres://postgres@127.0.0.1:5432/postgres");
        }
    }
    let client = connect(&url).await;
    let one: i32 = client
        .query_one("SELECT 1 AS one", &[])
        .await
        .unwrap()
        .get("one");
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_databases_are_distinct_clones_of_the_template() {
    let fingerprint = new_fingerprint("twice");
    let runs = Arc::new(AtomicUsize::new(0));
    let a = fresh_database(&fingerprint, counting_migration(runs.clone()))
        .await
        .unwrap();
    let b = fresh_database(&fingerprint, counting_migration(runs.clone()))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_ne!(a.name(), b.name());
    assert_ne!(a.url(), b.url());
    assert!(a.name().starts_with("callers_t_"));
    assert!(a.url().ends_with(a.name()));
    assert_eq!(migrated_rows(&a).await, 1);
    assert_eq!(migrated_rows(&b).await, 1);

    // They are separate: a write to one is not seen in the other.
    connect(a.url())
        .await
        .batch_execute("INSERT INTO migrated VALUES (2)")
        .await
        .unwrap();
    assert_eq!(migrated_rows(&a).await, 2);
    assert_eq!(migrated_rows(&b).await, 1);

    assert!(!database_exists(&format!("{}_tmp", template_name(&fingerprint))).await);
    drop((a, b));
    drop_template(&fingerprint).await;
}

#[tokio::test]
async fn dropping_a_test_database_removes_it_inside_a_current_thread_runtime() {
    let fingerprint = new_fingerprint("drop_in");
    let db = fresh_database(&fingerprint, counting_migration(Arc::default()))
        .await
        .unwrap();
    let name = db.name().to_owned();
    // An open session does not stop the drop.
    let session = connect(db.url()).await;
    assert!(database_exists(&name).await);
    drop(db);
    assert!(!database_exists(&name).await);
    assert!(session.query_one("SELECT 1", &[]).await.is_err());
    drop_template(&fingerprint).await;
}

#[test]
fn dropping_a_test_database_removes_it_outside_a_runtime() {
    let fingerprint = new_fingerprint("drop_out");
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    let first = runtime();
    let db = first
        .block_on(fresh_database(
            &fingerprint,
            counting_migration(Arc::default()),
        ))
        .unwrap();
    let name = db.name().to_owned();
    drop(first);
    drop(db);
    let second = runtime();
    second.block_on(async {
        assert!(!database_exists(&name).await);
        drop_template(&fingerprint).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_migrate_the_template_once() {
    let fingerprint = new_fingerprint("concurrent");
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let fingerprint = fingerprint.clone();
            let runs = runs.clone();
            tokio::spawn(
                async move { fresh_database(&fingerprint, counting_migration(runs)).await },
            )
        })
        .collect();
    let mut databases = Vec::new();
    for task in tasks {
        databases.push(task.await.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let names: HashSet<&str> = databases.iter().map(TestDatabase::name).collect();
    assert_eq!(names.len(), 8);
    for db in &databases {
        assert_eq!(migrated_rows(db).await, 1);
    }
    drop(databases);
    drop_template(&fingerprint).await;
}

#[tokio::test]
async fn a_failing_migration_leaves_no_template() {
    let fingerprint = new_fingerprint("failing");
    let error = fresh_database(&fingerprint, |_url| async {
        Err::<(), BoxError>("no such column".into())
    })
    .await
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("migrating template database callers_tpl_"),
        "{message}"
    );
    assert!(message.ends_with("no such column"), "{message}");
    let template = template_name(&fingerprint);
    assert!(!database_exists(&template).await);
    assert!(!database_exists(&format!("{template}_tmp")).await);
    // A later, working migration makes it.
    let runs = Arc::new(AtomicUsize::new(0));
    let db = fresh_database(&fingerprint, counting_migration(runs.clone()))
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(migrated_rows(&db).await, 1);
    drop(db);
    drop_template(&fingerprint).await;
}

/// A scratch cluster folder, stopped and removed at the end (even when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!(
            "callers-devdb-{test}-{}",
            uuid::Uuid::new_v4().simple()
        )))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Stop whatever runs there with a fast shutdown (SIGINT), then remove the folder.
        let pid_file = self.0.join("pgdata/postmaster.pid");
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && let Some(pid) = text.lines().next()
        {
            let _ = std::process::Command::new("kill")
                .args(["-INT", pid.trim()])
                .status();
            for _ in 0..100 {
                if !pid_file.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn count_rows(url: &str) -> i64 {
    connect(url)
        .await
        .query_one("SELECT count(*) AS n FROM kept", &[])
        .await
        .unwrap()
        .get("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_cluster_is_reused_and_keeps_its_data() {
    let scratch = Scratch::new("reuse");
    let dir: &Path = &scratch.0;

    // Two concurrent starts in one folder give one server.
    let (a, b) = tokio::join!(
        PrivatePostgres::start(dir, None),
        PrivatePostgres::start(dir, None)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        usize::from(a.started_here()) + usize::from(b.started_here()),
        1
    );
    assert_eq!(a.url(), b.url());
    let (first, reused) = if a.started_here() { (a, b) } else { (b, a) };
    assert_eq!(
        first.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", first.port())
    );
    assert_eq!(
        first.url_for("x y"),
        format!("postgres://postgres@127.0.0.1:{}/x%20y", first.port())
    );
    assert!(dir.join("pgdata/PG_VERSION").is_file());
    assert!(first.log_file().is_file());

    let client = connect(&first.url()).await;
    client
        .batch_execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
        .await
        .unwrap();
    let fsync: String = client
        .query_one("SHOW fsync", &[])
        .await
        .unwrap()
        .get("fsync");
    assert_eq!(fsync, "on", "the development cluster keeps fsync on");
    let max: String = client
        .query_one("SHOW max_connections", &[])
        .await
        .unwrap()
        .get("max_connections");
    assert_eq!(max, "300");
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .await
        .unwrap()
        .get("server_encoding");
    assert_eq!(encoding, "UTF8");

    // A running cluster keeps its port, whatever port is asked for.
    let again = PrivatePostgres::start(dir, Some(1)).await.unwrap();
    assert!(!again.started_here());
    assert_eq!(again.port(), first.port());

    // Stopping a reused one does nothing.
    reused.stop().await.unwrap();
    again.stop().await.unwrap();
    assert_eq!(count_rows(&first.url()).await, 1);
    drop(client);

    first.stop().await.unwrap();
    assert!(!dir.join("pgdata/postmaster.pid").exists());

    // Started again on the same data, with a port of our choosing.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let restarted = PrivatePostgres::start(dir, Some(port)).await.unwrap();
    assert!(restarted.started_here());
    assert_eq!(restarted.port(), port);
    assert_eq!(count_rows(&restarted.url()).await, 1);
    restarted.stop().await.unwrap();
}

#[tokio::test]
async fn the_test_cluster_runs_without_fsync_for_speed() {
    if std::env::var("DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        return; // Not ours to inspect.
    }
    let client = connect(&test_server_url().await.unwrap()).await;
    let fsync: String = client
        .query_one("SHOW fsync", &[])
        .await
        .unwrap()
        .get("fsync");
    assert_eq!(fsync, "off");
    let max: String = client
        .query_one("SHOW max_connections", &[])
        .await
        .unwrap()
        .get("max_connections");
    assert_eq!(max, "300");
}
