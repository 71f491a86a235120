//! Read replicas: which one a read may use, by replay lag measured against the primary.
//!
//! Lag is measured, not assumed: each round reads the primary's WAL insert position at one
//! instant and asks every replica whether it has replayed that far. A replica that has is as
//! fresh as that instant (the insert position covers every commit before it, flushed or not,
//! so `synchronous_commit = off` cannot make a replica look fresher than it is); its lag is the
//! time since the last such instant. An idle primary
//! thus costs no false lag (its position does not move), and a paused or cut-off replica
//! grows stale at once. A replica is used while its lag is within the bound; a read that
//! fails on it runs on the primary, and the replica is left aside until a round finds it
//! caught up again.

use crate::Error;
use crate::exec::{Executor, Route, Session};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What a replica looks like from here, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Time since the last instant the replica was known to have replayed the primary's WAL
    /// (`None`: never, or not since it failed).
    pub lag: Option<Duration>,
    /// Reads may go to it now.
    pub usable: bool,
    /// Reads it served.
    pub reads: u64,
    /// Reads that failed on it and ran on the primary.
    pub fallbacks: u64,
}

pub(crate) struct Replica {
    pub(crate) exec: Executor,
    /// The last instant whose primary WAL position this replica had replayed.
    fresh_as_of: Mutex<Option<Instant>>,
    reads: AtomicU64,
    fallbacks: AtomicU64,
}

impl Replica {
    fn lag(&self, now: Instant) -> Option<Duration> {
        let fresh = *self.fresh_as_of.lock().unwrap_or_else(|e| e.into_inner());
        fresh.map(|t| now.saturating_duration_since(t))
    }

    fn set_fresh(&self, at: Option<Instant>) {
        let mut fresh = self.fresh_as_of.lock().unwrap_or_else(|e| e.into_inner());
        *fresh = match (at, *fresh) {
            (Some(at), Some(known)) => Some(at.max(known)),
            (at, _) => at,
        };
    }
}

pub(crate) struct Replicas {
    list: Vec<Replica>,
    max_lag: Duration,
    next: AtomicUsize,
}

impl Replicas {
    pub(crate) fn none() -> Replicas {
        Replicas {
            list: Vec::new(),
            max_lag: Duration::ZERO,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn new(list: Vec<Executor>, max_lag: Duration) -> Replicas {
        let list = list
            .into_iter()
            .map(|exec| Replica {
                exec,
                fresh_as_of: Mutex::new(None),
                reads: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
            })
            .collect();
        Replicas {
            list,
            max_lag,
            next: AtomicUsize::new(0),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A replica within the lag bound, taking turns among those that are; `None`: the primary.
    pub(crate) fn pick(&self) -> Option<&Replica> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let now = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.list[(start + i) % n])
            .find(|r| r.lag(now).is_some_and(|lag| lag <= self.max_lag))
    }

    /// Runs `work` on a replica within the lag bound, else on the primary `exec`; a read that
    /// fails on the replica (down, lagging into a conflict, or not finding what was just
    /// written) runs on the primary. Returns whether a replica served it.
    pub(crate) async fn read<T>(
        &self,
        exec: &Executor,
        route: Route,
        work: impl AsyncFnOnce(&mut Session<'_>) -> Result<T, Error> + Clone,
    ) -> Result<(T, bool), Error> {
        if let Some(replica) = self.pick() {
            match replica.exec.run(route, work.clone()).await {
                Ok(value) => {
                    replica.reads.fetch_add(1, Ordering::Relaxed);
                    return Ok((value, true));
                }
                Err(e) => {
                    replica.fallbacks.fetch_add(1, Ordering::Relaxed);
                    if matches!(e, Error::Unavailable(_) | Error::Database(_)) {
                        // Left aside until a round finds it caught up.
                        replica.set_fresh(None);
                        tracing::warn!(error = %e, "a read failed on a replica; the primary serves it");
                    }
                }
            }
        }
        Ok((exec.run(route, work).await?, false))
    }

    /// One round of lag measurement: the primary's WAL position now, and which replicas have
    /// replayed it. A replica that cannot answer is left aside.
    pub(crate) async fn measure(&self, primary: &Executor) -> Result<(), Error> {
        crate::row::row_struct! {
            struct Position {
                lsn: String,
            }
        }
        crate::row::row_struct! {
            struct Replayed {
                standby: bool,
                replayed: bool,
            }
        }
        let at = Instant::now();
        let position: Option<Position> = primary
            .run(Route::Pooled, async |s| {
                s.conn()
                    .row("SELECT pg_current_wal_insert_lsn()::text AS lsn", &[])
                    .await
            })
            .await?;
        let Some(position) = position else {
            return Ok(());
        };
        let lsn = position.lsn.as_str();
        for replica in &self.list {
            let replayed: Result<Option<Replayed>, Error> = replica
                .exec
                .run(Route::Pooled, async |s| {
                    s.conn()
                        .row(
                            "SELECT pg_is_in_recovery() AS standby, \
                             coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false) AS replayed",
                            &[&lsn],
                        )
                        .await
                })
                .await;
            match replayed {
                // A promoted replica is another primary: not ours to read from.
                Ok(Some(r)) if r.standby && r.replayed => replica.set_fresh(Some(at)),
                Ok(Some(r)) if !r.standby => replica.set_fresh(None),
                Ok(_) => {}
                Err(e) => {
                    replica.set_fresh(None);
                    tracing::debug!(error = %e, "a replica did not answer the lag check");
                }
            }
        }
        Ok(())
    }

    /// How often [`Replicas::measure`] runs: often enough that a replica falling behind is left
    /// aside well within the bound.
    pub(crate) fn interval(&self) -> Duration {
        (self.max_lag / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }

    pub(crate) fn status(&self) -> Vec<ReplicaStatus> {
        let now = Instant::now();
        self.list
            .iter()
            .map(|r| {
                let lag = r.lag(now);
                ReplicaStatus {
                    lag,
                    usable: lag.is_some_and(|lag| lag <= self.max_lag),
                    reads: r.reads.load(Ordering::Relaxed),
                    fallbacks: r.fallbacks.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}
