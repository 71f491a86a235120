//! Test databases: the server tests use, and a fresh database per test cloned from a migrated
//! template.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use crate::cluster::PrivatePostgres;
use crate::{Error, sys, url};

const TEMPLATE_PREFIX: &str = "callers_tpl_";
const TEMPLATE_STAGING_SUFFIX: &str = "_tmp";
const TEST_DB_PREFIX: &str = "callers_t_";
/// PostgreSQL's NAMEDATALEN - 1.
const MAX_IDENTIFIER: usize = 63;
/// The advisory lock key that guards template creation ("callerst").
const TEMPLATE_LOCK: i64 = 0x6361_6c6c_6572_7374;
/// How long to retry when a database is briefly in use (e.g. sessions still closing).
const IN_USE_PATIENCE: Duration = Duration::from_secs(10);

/// The server URL tests use: `DATABASE_URL` when set (its database part is ignored for cloning;
/// its role must be allowed to CREATE DATABASE), else a private cluster in
/// `<cargo target dir>/callers-test-pg` (env `CALLERS_TEST_PG_DIR` overrides the folder)
/// shared by all test processes.
///
/// The private cluster is started (initdb on first use, about a second; later calls take a few
/// milliseconds) by the first test process that needs it, under an exclusive file lock so that
/// parallel test binaries don't race, and is **left running** afterwards: later tests and test
/// runs reuse it. Its fsync is off: its data is throwaway. When it is started afresh, test
/// databases left by killed test processes are dropped. When running as root and the target
/// folder is not reachable by the `postgres` user, `$TMPDIR/callers-test-pg` is used instead.
///
/// The URL is computed once per process.
pub async fn test_server_url() -> Result<String, Error> {
    if let Some(url) = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return Ok(url);
    }
    static PRIVATE: OnceCell<String> = OnceCell::const_new();
    PRIVATE.get_or_try_init(start_test_cluster).await.cloned()
}

async fn start_test_cluster() -> Result<String, Error> {
    let dir = test_cluster_dir()?;
    let cluster = PrivatePostgres::start_for_tests(&dir, None).await?;
    let url = cluster.url();
    if cluster.started_here() {
        sweep_leftovers(&url).await;
    }
    // Dropping `cluster` leaves the server running, for the other tests and test processes.
    Ok(url)
}

fn test_cluster_dir() -> Result<PathBuf, Error> {
    if let Some(dir) = std::env::var_os("CALLERS_TEST_PG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let preferred = cargo_target_dir().join("callers-test-pg");
    if let Some(user) = sys::run_as()?
        && let Err(e) = sys::check_reachable(&preferred, user)
    {
        let fallback = std::env::temp_dir().join("callers-test-pg");
        tracing::info!(%e, fallback = %fallback.display(), "using another test cluster folder");
        return Ok(fallback);
    }
    Ok(preferred)
}

/// The cargo target folder this test binary was built in: the nearest folder above the
/// executable holding cargo's `CACHEDIR.TAG`, else `CARGO_TARGET_DIR`, else the temp folder.
fn cargo_target_dir() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
    {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty())
        && let Ok(dir) = std::path::absolute(dir)
    {
        return dir;
    }
    std::env::temp_dir()
}

/// Drops the test databases of a test cluster that was just started: nobody can be using them.
async fn sweep_leftovers(server: &str) {
    let swept = async {
        let admin = Admin::connect(server).await?;
        let rows = admin
            .client
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE $1",
                &[&format!("{}%", TEST_DB_PREFIX.replace('_', r"\_"))],
            )
            .await
            .map_err(Error::pg("listing leftover test databases"))?;
        for row in &rows {
            let name: String = row.get("datname");
            admin.drop_database(&name).await?;
        }
        admin.close().await;
        Ok::<usize, Error>(rows.len())
    }
    .await;
    match swept {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "dropped leftover test databases"),
        Err(e) => tracing::warn!(%e, "could not drop leftover test databases"),
    }
}

/// The template database name for `fingerprint`: `callers_tpl_` and the fingerprint lowercased
/// with every character outside `[a-z0-9_]` made `_`; a fingerprint too long for PostgreSQL's
/// 63-byte names (47 bytes here, leaving room for the `_tmp` staging suffix) is cut and ends
/// with a hash of the whole.
pub fn template_name(fingerprint: &str) -> String {
    let budget = MAX_IDENTIFIER - TEMPLATE_PREFIX.len() - TEMPLATE_STAGING_SUFFIX.len();
    let mut clean: String = fingerprint
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() > budget {
        let hash = format!("{:016x}", fnv1a(fingerprint.as_bytes()));
        clean.truncate(budget - hash.len() - 1);
        clean.push('_');
        clean.push_str(&hash);
    }
    format!("{TEMPLATE_PREFIX}{clean}")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A fresh database for one test, created with `CREATE DATABASE .. TEMPLATE <template>` on the
/// server of [`test_server_url`].
///
/// The template `callers_tpl_<fingerprint>` (see [`template_name`]) is made once per server by
/// calling `migrate(template_url)`, guarded by a PostgreSQL advisory lock so that parallel
/// tests and processes don't race; if it exists it is reused (and `migrate` is not called). So
/// the fingerprint must change whenever the migrations do (e.g. a hash of them). The migration
/// runs on `callers_tpl_<fingerprint>_tmp` (created from `template0`), whose remaining sessions
/// are then closed and which is renamed to the final name, so a crash halfway never leaves a
/// half-migrated template.
///
/// The database is dropped (`DROP DATABASE .. WITH (FORCE)`, which closes its sessions) when the
/// [`TestDatabase`] is dropped.
pub async fn fresh_database<F, Fut>(fingerprint: &str, migrate: F) -> Result<TestDatabase, Error>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let server = test_server_url().await?;
    let template = template_name(fingerprint);
    let admin = Admin::connect(&server).await?;
    if !admin.database_exists(&template).await? {
        admin.make_template(&server, &template, migrate).await?;
    }
    let name = format!("{TEST_DB_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let create = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote_ident(&name),
        quote_ident(&template)
    );
    admin
        .execute_when_free(&create, &format!("creating test database {name}"))
        .await?;
    admin.close().await;
    Ok(TestDatabase {
        url: url::with_database(&server, &name),
        name,
        server,
    })
}

/// A database of one test, dropped with the value (inside or outside a tokio runtime).
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    server: String,
}

impl TestDatabase {
    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of this database.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // A thread of its own with its own runtime: works whether or not the current thread is
        // inside a runtime (blocking_on inside one would panic).
        let outcome = std::thread::Builder::new()
            .name("drop-test-database".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(Error::io("starting a runtime to drop a test database"))?;
                runtime.block_on(async {
                    let admin = Admin::connect(&server).await?;
                    admin.drop_database(&name).await?;
                    admin.close().await;
                    Ok::<(), Error>(())
                })
            })
            .map(|thread| thread.join());
        match outcome {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(%e, database = %self.name, "could not drop test database");
            }
            Ok(Err(_)) => tracing::warn!(database = %self.name, "dropping test database panicked"),
            Err(e) => tracing::warn!(%e, database = %self.name, "could not drop test database"),
        }
    }
}

/// A connection for CREATE / DROP DATABASE.
struct Admin {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
}

impl Admin {
    async fn connect(server: &str) -> Result<Admin, Error> {
        let (client, connection) = tokio_postgres::connect(server, NoTls)
            .await
            .map_err(Error::pg(format!("connecting to {}", url::redact(server))))?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Admin { client, connection })
    }

    /// Closes the connection cleanly.
    async fn close(self) {
        drop(self.client);
        let _ = self.connection.await;
    }

    async fn database_exists(&self, name: &str) -> Result<bool, Error> {
        let row = self
            .client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map_err(Error::pg(format!("looking for database {name}")))?;
        Ok(row.is_some())
    }

    async fn execute(&self, sql: &str, context: &str) -> Result<(), Error> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(Error::pg(context))
    }

    /// Runs `sql`, retrying for a while when a database it needs is in use by other sessions.
    async fn execute_when_free(&self, sql: &str, context: &str) -> Result<(), Error> {
        let deadline = Instant::now() + IN_USE_PATIENCE;
        loop {
            match self.client.batch_execute(sql).await {
                Err(e)
                    if e.code() == Some(&SqlState::OBJECT_IN_USE) && Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other.map_err(Error::pg(context)),
            }
        }
    }

    async fn drop_database(&self, name: &str) -> Result<(), Error> {
        self.execute_when_free(
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)),
            &format!("dropping database {name}"),
        )
        .await
    }

    /// Makes the template under the advisory lock, unless another session made it meanwhile.
    async fn make_template<F, Fut>(
        &self,
        server: &str,
        template: &str,
        migrate: F,
    ) -> Result<(), Error>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        self.client
            .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
            .await
            .map_err(Error::pg("taking the template advisory lock"))?;
        let made = self.make_template_locked(server, template, migrate).await;
        // Closing the session would release the lock too.
        let unlocked = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
            .await
            .map_err(Error::pg("releasing the template advisory lock"));
        made.and(unlocked.map(drop))
    }

    async fn make_template_locked<F, Fut>(
        &self,
        server: &str,
        template: &str,
        migrate: F,
    ) -> Result<(), Error>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
    {
        if self.database_exists(template).await? {
            return Ok(());
        }
        let staging = format!("{template}{TEMPLATE_STAGING_SUFFIX}");
        self.drop_database(&staging).await?;
        self.execute(
            &format!(
                "CREATE DATABASE {} TEMPLATE template0",
                quote_ident(&staging)
            ),
            &format!("creating database {staging}"),
        )
        .await?;
        let started = Instant::now();
        if let Err(cause) = migrate(url::with_database(server, &staging)).await {
            let _ = self.drop_database(&staging).await;
            return Err(Error::Migrate {
                database: staging,
                cause,
            });
        }
        // Sessions the migration left open would block the rename and every clone.
        self.client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&staging],
            )
            .await
            .map_err(Error::pg(format!("closing the sessions on {staging}")))?;
        self.execute_when_free(
            &format!(
                "ALTER DATABASE {} RENAME TO {}",
                quote_ident(&staging),
                quote_ident(template)
            ),
            &format!("renaming {staging} to {template}"),
        )
        .await?;
        tracing::info!(
            template,
            elapsed_ms = started.elapsed().as_millis(),
            "made test template database"
        );
        Ok(())
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_are_clean_and_short() {
        assert_eq!(template_name("abc_123"), "callers_tpl_abc_123");
        assert_eq!(template_name("V1.2-Ü"), "callers_tpl_v1_2__");
        let long = "f".repeat(200);
        let name = template_name(&long);
        assert_eq!(name.len() + TEMPLATE_STAGING_SUFFIX.len(), MAX_IDENTIFIER);
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        );
        assert_ne!(name, template_name(&"f".repeat(201)));
        assert_eq!(name, template_name(&long));
        let at_budget = "a".repeat(47);
        assert_eq!(
            template_name(&at_budget),
            format!("callers_tpl_{at_budget}")
        );
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn finds_the_target_dir() {
        let dir = cargo_target_dir();
        assert!(dir.join("CACHEDIR.TAG").is_file(), "{}", dir.display());
    }
}
