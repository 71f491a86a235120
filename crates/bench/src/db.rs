//! The PostgreSQL the benchmark runs against: `--database-url` (its role must be allowed to
//! create databases), or a private cluster from the machine's binaries in `--pg-dir`.

use anyhow::{Context, bail};
use callers_devdb::PrivatePostgres;
use std::path::Path;
use tokio_postgres::{Client, NoTls};

pub struct Db {
    /// A URL whose database is replaced per use.
    base_url: String,
    admin_db: String,
    private: Option<PrivatePostgres>,
}

/// The settings that decide whether a commit survives a crash of the machine.
const DURABILITY_SETTINGS: [&str; 3] = ["fsync", "synchronous_commit", "full_page_writes"];

/// How the private cluster keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync, synchronous_commit and full_page_writes on, as in production.
    Durable,
    /// All three off (the test mode of `crates/devdb`): throwaway data, faster writes.
    Fast,
}

impl Durability {
    /// Whether `fsync`, `synchronous_commit` and `full_page_writes` (in that order) are what
    /// this durability wants.
    fn holds(self, settings: &[(String, String)]) -> bool {
        let want_on = self == Durability::Durable;
        settings.iter().all(|(_, v)| (v != "off") == want_on)
    }

    async fn start(self, pg_dir: &Path) -> Result<PrivatePostgres, callers_devdb::Error> {
        match self {
            Durability::Durable => PrivatePostgres::start(pg_dir, None).await,
            Durability::Fast => PrivatePostgres::start_for_tests(pg_dir, None).await,
        }
    }
}

/// `fsync`, `synchronous_commit` and `full_page_writes` as the server reports them, with where
/// each was set (`pg_settings.source`).
async fn durability_settings(admin: &Client) -> anyhow::Result<Vec<(String, String, String)>> {
    let rows = admin
        .query(
            "SELECT name, setting, source FROM pg_settings WHERE name = ANY($1) ORDER BY name",
            &[&DURABILITY_SETTINGS.to_vec()],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("name"), r.get("setting"), r.get("source")))
        .collect())
}

impl Db {
    /// `shared_buffers` and `durability`: applied to the private cluster (ALTER SYSTEM, or
    /// the start options of `crates/devdb`, and a restart when they differ); a
    /// `--database-url` server is used as it is configured.
    pub async fn open(
        database_url: Option<&str>,
        pg_dir: &Path,
        shared_buffers: &str,
        durability: Durability,
    ) -> anyhow::Result<Db> {
        if let Some(url) = database_url {
            let admin_db = database_of(url).unwrap_or_else(|| "postgres".into());
            return Ok(Db {
                base_url: url.to_owned(),
                admin_db,
                private: None,
            });
        }
        std::fs::create_dir_all(pg_dir)
            .with_context(|| format!("cannot create {}", pg_dir.display()))?;
        let mut pg = durability
            .start(pg_dir)
            .await
            .context("starting the private PostgreSQL (or set DATABASE_URL)")?;
        let admin = connect(&pg.url()).await?;
        let want: String = admin
            .query_one(
                "SELECT setting::bigint * 8192 = pg_size_bytes($1) AS same FROM pg_settings \
                 WHERE name = 'shared_buffers'",
                &[&shared_buffers],
            )
            .await
            .map(|r| {
                if r.get::<_, bool>("same") {
                    String::new()
                } else {
                    shared_buffers.to_owned()
                }
            })?;
        if !want.is_empty() {
            admin
                .batch_execute(&format!(
                    "ALTER SYSTEM SET shared_buffers = {}",
                    literal(&want)
                ))
                .await?;
        }
        let current = durability_settings(&admin).await?;
        let plain = |s: &[(String, String, String)]| -> Vec<(String, String)> {
            s.iter().map(|(n, v, _)| (n.clone(), v.clone())).collect()
        };
        let durability_differs = !durability.holds(&plain(&current));
        if durability_differs {
            // Durable: the fast settings come from the start options (`-c`), which a restart
            // without them drops; anything ALTER SYSTEM left behind is reset too.
            if durability == Durability::Durable {
                for name in DURABILITY_SETTINGS {
                    admin
                        .batch_execute(&format!("ALTER SYSTEM RESET {name}"))
                        .await?;
                }
            }
        }
        drop(admin);
        if !want.is_empty() || durability_differs {
            if !pg.started_here() {
                bail!(
                    "the private PostgreSQL in {} was already running with other settings \
                     (shared_buffers {shared_buffers}, {durability:?}: {current:?}): stop it \
                     (pg_ctl stop) so they take effect",
                    pg_dir.display()
                );
            }
            pg.stop().await?;
            pg = durability.start(pg_dir).await?;
            eprintln!(
                "private PostgreSQL restarted with shared_buffers = {shared_buffers}, {durability:?}"
            );
        }
        let now = durability_settings(&connect(&pg.url()).await?).await?;
        if !durability.holds(&plain(&now)) {
            bail!(
                "the private PostgreSQL in {} runs with {now:?} although {durability:?} was \
                 asked for (postgresql.conf?)",
                pg_dir.display()
            );
        }
        eprintln!(
            "private PostgreSQL at {} ({}), log {}, {durability:?}",
            pg.url(),
            pg.data_dir().display(),
            pg.log_file().display()
        );
        Ok(Db {
            base_url: pg.url(),
            admin_db: "postgres".into(),
            private: Some(pg),
        })
    }

    /// The private cluster's server log (none for a `--database-url` server).
    pub fn log_file(&self) -> Option<std::path::PathBuf> {
        self.private.as_ref().map(PrivatePostgres::log_file)
    }

    /// The private cluster's folder (none for a `--database-url` server).
    pub fn pg_dir(&self) -> Option<&Path> {
        self.private.as_ref().map(PrivatePostgres::data_dir)
    }

    pub fn url_for(&self, database: &str) -> String {
        with_database(&self.base_url, database)
    }

    pub async fn admin(&self) -> anyhow::Result<Client> {
        connect(&self.url_for(&self.admin_db)).await
    }

    /// The pid of the cluster's postmaster, when it runs on this machine and its data folder
    /// is readable here (`postmaster.pid`'s first line).
    pub async fn postmaster_pid(&self) -> Option<u32> {
        postmaster_pid_of(&self.admin().await.ok()?).await
    }

    pub async fn exists(&self, name: &str) -> anyhow::Result<bool> {
        let admin = self.admin().await?;
        Ok(admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some())
    }

    /// The comment on a database (the benchmark stores what it seeded there).
    pub async fn comment(&self, name: &str) -> anyhow::Result<Option<String>> {
        let admin = self.admin().await?;
        let row = admin
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database \
                 WHERE datname = $1",
                &[&name],
            )
            .await?;
        Ok(row.and_then(|r| r.get("comment")))
    }

    pub async fn set_comment(&self, name: &str, comment: &str) -> anyhow::Result<()> {
        let admin = self.admin().await?;
        admin
            .batch_execute(&format!(
                "COMMENT ON DATABASE {} IS {}",
                ident(name)?,
                literal(comment)
            ))
            .await?;
        Ok(())
    }

    pub async fn drop_database(&self, name: &str) -> anyhow::Result<()> {
        let admin = self.admin().await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                ident(name)?
            ))
            .await?;
        Ok(())
    }

    /// A fresh empty database (dropped first when it exists).
    pub async fn recreate(&self, name: &str) -> anyhow::Result<()> {
        self.drop_database(name).await?;
        let admin = self.admin().await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", ident(name)?))
            .await?;
        Ok(())
    }

    /// Makes `database` resident in the operating system's cache, as a database that fits its
    /// server's memory is in production: the files of `evict` (the seed it was copied from,
    /// which a production server does not have beside it) are dropped from the cache first
    /// (GNU dd's `iflag=nocache`, private cluster only), then every relation of `database` is
    /// read (`pg_prewarm`, mode `read`). Returns the bytes read.
    pub async fn prewarm(&self, database: &str, evict: &str) -> anyhow::Result<i64> {
        if self.pg_dir().is_some() {
            let row = self
                .admin()
                .await?
                .query_one(
                    "SELECT oid, current_setting('data_directory') AS dir FROM pg_database \
                     WHERE datname = $1",
                    &[&evict],
                )
                .await?;
            let (oid, dir): (u32, String) = (row.get("oid"), row.get("dir"));
            let base = Path::new(&dir).join("base").join(oid.to_string());
            for entry in std::fs::read_dir(&base)?.flatten() {
                let _ = std::process::Command::new("dd")
                    .arg(format!("if={}", entry.path().display()))
                    .args(["iflag=nocache", "count=0", "status=none"])
                    .status();
            }
        }
        let c = connect(&self.url_for(database)).await?;
        c.batch_execute("SET statement_timeout = 0; CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            .await?;
        let blocks: i64 = c
            .query_one(
                "SELECT coalesce(sum(pg_prewarm(c.oid, 'read')), 0)::int8 AS blocks FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'i', 't', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND c.relpersistence = 'p'",
                &[],
            )
            .await?
            .get("blocks");
        let block: i64 = c
            .query_one("SELECT current_setting('block_size')::int8 AS b", &[])
            .await?
            .get("b");
        Ok(blocks * block)
    }

    /// `CREATE DATABASE copy TEMPLATE template`: an identical copy, made by copying files
    /// (`STRATEGY FILE_COPY` where PostgreSQL 15+ offers the choice: its default writes the
    /// whole copy through the WAL, and the checkpoints that follow disturb the measurements).
    pub async fn copy(&self, template: &str, copy: &str) -> anyhow::Result<()> {
        self.drop_database(copy).await?;
        let admin = self.admin().await?;
        let plain = format!(
            "CREATE DATABASE {} TEMPLATE {}",
            ident(copy)?,
            ident(template)?
        );
        if admin
            .batch_execute(&format!("{plain} STRATEGY FILE_COPY"))
            .await
            .is_err()
        {
            admin
                .batch_execute(&plain)
                .await
                .with_context(|| format!("copying {template} to {copy}"))?;
        }
        // Superuser only: start measuring without dirty buffers from the copy.
        let _ = admin.batch_execute("CHECKPOINT").await;
        Ok(())
    }

    /// A fresh hot-standby replica of the private cluster beside it (`<pg-dir>-replica`,
    /// made anew by pg_basebackup), returned once it has replayed everything written so far.
    pub async fn start_replica(&self, database: &str) -> anyhow::Result<Replica> {
        let Some(primary) = &self.private else {
            bail!("--replica needs the private cluster (leave DATABASE_URL unset)");
        };
        let mut name = primary.data_dir().as_os_str().to_owned();
        name.push("-replica");
        let dir = std::path::PathBuf::from(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the old replica in {}", dir.display()))?;
        }
        let started = std::time::Instant::now();
        let pg = PrivatePostgres::start_replica_for_tests(primary, &dir)
            .await
            .context("starting the replica")?;
        let wanted: String = self
            .admin()
            .await?
            .query_one("SELECT pg_current_wal_insert_lsn()::text AS lsn", &[])
            .await?
            .get("lsn");
        let replica = connect(&pg.url_for(database)).await?;
        while !replica
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn AS caught_up",
                &[&wanted],
            )
            .await?
            .get::<_, bool>("caught_up")
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Its CPU is the database's, not the rest of the machine's.
        if let Some(pid) = postmaster_pid_of(&replica).await {
            crate::server::measure_postgres_of(pid);
        }
        eprintln!(
            "replica at {} caught up {:.0} s after the base backup began",
            pg.url(),
            started.elapsed().as_secs_f64()
        );
        Ok(Replica { pg, dir })
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some(pg) = self.private {
            pg.stop().await?;
        }
        Ok(())
    }
}

/// The postmaster of the cluster `client` is connected to, when it runs on this machine and
/// its data folder is readable here (`postmaster.pid`'s first line).
async fn postmaster_pid_of(client: &Client) -> Option<u32> {
    let dir: String = client
        .query_one("SELECT current_setting('data_directory') AS dir", &[])
        .await
        .ok()?
        .get("dir");
    let pid_file = std::fs::read_to_string(Path::new(&dir).join("postmaster.pid")).ok()?;
    pid_file.lines().next()?.trim().parse().ok()
}

/// A streaming replica made for one run; removed when stopped.
pub struct Replica {
    pg: PrivatePostgres,
    dir: std::path::PathBuf,
}

impl Replica {
    pub fn url_for(&self, database: &str) -> String {
        self.pg.url_for(database)
    }

    /// Transactions the replica committed in `database` (the reads sent to it).
    pub async fn transactions(&self, database: &str) -> anyhow::Result<i64> {
        let client = connect(&self.pg.url_for(database)).await?;
        // Statistics are flushed at the end of a transaction; this one's own read counts too.
        Ok(client
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await?
            .get("xact_commit"))
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.pg.stop().await?;
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing the replica in {}", self.dir.display()))?;
        Ok(())
    }
}

pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Database names the benchmark makes are plain identifiers; anything else is refused.
pub fn ident(name: &str) -> anyhow::Result<String> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        bail!("database name {name:?}: use a-z, 0-9 and '_' only");
    }
    Ok(format!("\"{name}\""))
}

fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `postgres://u@h:p/db?x` → `db`.
fn database_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let db = path.split(['?', '#']).next()?;
    (!db.is_empty()).then(|| db.to_owned())
}

/// Replaces (or adds) the database of a `postgres://` URL.
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{database}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_in_urls() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/x?sslmode=disable", "y"),
            "postgres://u:p@h:5432/y?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5", "b"),
            "postgres://postgres@127.0.0.1:5/b"
        );
        assert_eq!(database_of("postgres://h/abc?x=1").as_deref(), Some("abc"));
        assert_eq!(database_of("postgres://h"), None);
        assert!(ident("a;drop").is_err());
    }
}
