//! A private primary with a streaming replica (`pg_basebackup -R`), both from the machine's
//! PostgreSQL binaries, in a folder of their own: the replica tests pause its replay and stop
//! it, which the shared test server must never see.

use std::path::PathBuf;

use callers_devdb::PrivatePostgres;

use crate::database::connect;

const DATABASE: &str = "callers";

/// A primary with the migrated database `callers`, and its replica. Dropping it stops both
/// and removes the folder.
pub struct Replicated {
    primary: Option<PrivatePostgres>,
    replica: Option<PrivatePostgres>,
    dir: PathBuf,
}

impl Replicated {
    /// Starts the primary, creates and migrates the database, then copies it into a replica
    /// and starts that, waiting until it streams.
    pub async fn start() -> Replicated {
        let dir = std::env::temp_dir().join(format!(
            "callers-replicated-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let primary = PrivatePostgres::start_for_tests(&dir.join("primary"), None)
            .await
            .expect("a private primary");
        connect(&primary.url())
            .await
            .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
            .await
            .expect("the database on the primary");
        callers_store::migrate(&primary.url_for(DATABASE))
            .await
            .expect("migrations on the primary");
        let replica = PrivatePostgres::start_replica_for_tests(&primary, &dir.join("replica"))
            .await
            .expect("a streaming replica");
        let pair = Replicated {
            primary: Some(primary),
            replica: Some(replica),
            dir,
        };
        pair.wait_streaming().await;
        pair
    }

    /// The database on the primary.
    pub fn primary_url(&self) -> String {
        self.primary().url_for(DATABASE)
    }

    /// The same database on the replica.
    pub fn replica_url(&self) -> String {
        self.replica
            .as_ref()
            .expect("the replica is stopped")
            .url_for(DATABASE)
    }

    /// Stops replaying WAL on the replica: it falls behind every write from now on.
    pub async fn pause_replay(&self) {
        self.replica_runs("SELECT pg_wal_replay_pause()").await;
    }

    /// Replays again.
    pub async fn resume_replay(&self) {
        self.replica_runs("SELECT pg_wal_replay_resume()").await;
    }

    async fn replica_runs(&self, sql: &str) {
        connect(&self.replica_url())
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql} on the replica: {e}"));
    }

    /// Waits until the replica has replayed everything the primary has written so far.
    pub async fn wait_caught_up(&self) {
        let primary = connect(&self.primary_url()).await;
        let lsn: String = primary
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .await
            .expect("the primary's position")
            .get(0);
        let replica = connect(&self.replica_url()).await;
        for _ in 0..600 {
            let done: bool = replica
                .query_one(
                    "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                    &[&lsn],
                )
                .await
                .expect("the replica's position")
                .get(0);
            if done {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the replica did not catch up within 30 s");
    }

    /// Stops the replica at once (`pg_ctl stop -m fast`), as a crash or a failover would.
    pub async fn stop_replica(&mut self) {
        if let Some(replica) = self.replica.take() {
            replica.stop().await.expect("stop the replica");
        }
    }

    fn primary(&self) -> &PrivatePostgres {
        self.primary.as_ref().expect("the primary is running")
    }

    async fn wait_streaming(&self) {
        let primary = connect(&self.primary().url()).await;
        for _ in 0..600 {
            let streaming: i64 = primary
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                    &[],
                )
                .await
                .expect("the primary's replication state")
                .get(0);
            if streaming > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the replica did not start streaming within 30 s");
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        let (primary, replica, dir) = (self.primary.take(), self.replica.take(), self.dir.clone());
        // A runtime of its own: drop may run inside (or after) the test's runtime.
        let stopped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to stop the clusters");
            rt.block_on(async {
                for cluster in [replica, primary].into_iter().flatten() {
                    let _ = cluster.stop().await;
                }
            });
            let _ = std::fs::remove_dir_all(dir);
        })
        .join();
        if stopped.is_err() {
            eprintln!("stopping the private primary and replica failed");
        }
    }
}
