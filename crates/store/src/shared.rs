//! Shared connections for the hottest read, IdentifyCaller by number: a few connections that
//! many calls use at once instead of one pooled connection per call. tokio-postgres pipelines
//! the statements of the calls waiting on a connection (one write), and the backend reads them
//! in one go instead of sleeping and waking per statement, which costs PostgreSQL less CPU per
//! lookup (BENCHMARKS.md). Only single statements outside a transaction run here
//! ([`crate::exec::Route::Shared`]); everything else takes a pooled connection.

use crate::exec::{Connector, Liveness, Midway, Verdict};
use crate::{Error, PoolConfig};
use deadpool_postgres::ClientWrapper;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shared connections; a call takes the one with the fewest calls on it. Each is made on
/// first use and made anew when it closed (an error, the database restarting), failed the
/// liveness check, or a call gave up on it midway.
pub(crate) struct Shared {
    lanes: Vec<Lane>,
    pg: tokio_postgres::Config,
    connector: Connector,
    liveness: Arc<Liveness>,
    connect_timeout: Duration,
}

#[derive(Default)]
struct Lane {
    held: Mutex<Option<Held>>,
    /// Calls on this lane now: a new call takes the lane with the fewest, so one slow
    /// statement (a number shared by hundreds of contacts) holds up few calls behind it.
    in_flight: AtomicUsize,
    /// One connection attempt per lane at a time; the calls behind it wait for its result.
    connecting: tokio::sync::Mutex<()>,
}

struct Held {
    client: Arc<ClientWrapper>,
    created: Instant,
    last_used: Instant,
}

impl Lane {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lane's connection and what to do with it first; `None` when it has none.
    fn take_turn(&self, liveness: &Liveness) -> Option<(Arc<ClientWrapper>, Verdict)> {
        let mut slot = self.slot();
        let held = slot.as_mut()?;
        let now = Instant::now();
        let verdict = liveness.verdict(
            &held.client,
            held.created,
            now.duration_since(held.last_used),
        );
        held.last_used = now;
        Some((held.client.clone(), verdict))
    }

    /// Forgets `client` if it is still this lane's, so the next call connects anew.
    fn discard(&self, client: &Arc<ClientWrapper>) {
        let mut slot = self.slot();
        if slot
            .as_ref()
            .is_some_and(|h| Arc::ptr_eq(&h.client, client))
        {
            *slot = None;
        }
    }
}

impl Shared {
    /// `None` for `cfg.shared_connections` 0: every statement then takes a pooled connection.
    pub(crate) fn new(
        cfg: &PoolConfig,
        pg: tokio_postgres::Config,
        connector: Connector,
        liveness: Arc<Liveness>,
    ) -> Option<Shared> {
        (cfg.shared_connections > 0).then(|| Shared {
            lanes: (0..cfg.shared_connections)
                .map(|_| Lane::default())
                .collect(),
            pg,
            connector,
            liveness,
            connect_timeout: cfg.connect_timeout,
        })
    }

    /// Runs `work` on the least busy shared connection. A call that gives up midway (a
    /// deadline, a dropped request) leaves the connection to the calls still on it, but no new
    /// call gets it: its statement may never be answered (a network partition).
    pub(crate) async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&ClientWrapper) -> Result<T, Error>,
    ) -> Result<T, Error> {
        // The first of the least busy: under light load calls keep to one connection, whose
        // backend stays warm, instead of waking each in turn.
        let lane = self
            .lanes
            .iter()
            .min_by_key(|l| l.in_flight.load(Ordering::Relaxed))
            .expect("at least one lane");
        lane.in_flight.fetch_add(1, Ordering::Relaxed);
        let _counted = Midway::new((), |()| {
            lane.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        let client = match lane.take_turn(&self.liveness) {
            Some((c, Verdict::Use)) => c,
            Some((c, Verdict::Check)) => {
                // Given up during the check, the connection is forgotten as after a statement.
                let mut checking = Midway::new(c, |c| lane.discard(&c));
                let alive = self.liveness.check(checking.get()).await;
                let c = checking.finish();
                if alive {
                    c
                } else {
                    lane.discard(&c);
                    self.connect(lane).await?
                }
            }
            Some((c, Verdict::Discard)) => {
                lane.discard(&c);
                self.connect(lane).await?
            }
            None => self.connect(lane).await?,
        };
        let mut on = Midway::new(client, |c| lane.discard(&c));
        let result = work(on.get()).await;
        on.finish();
        result
    }

    async fn connect(&self, lane: &Lane) -> Result<Arc<ClientWrapper>, Error> {
        let _one = lane.connecting.lock().await;
        if let Some((c, Verdict::Use | Verdict::Check)) = lane.take_turn(&self.liveness) {
            return Ok(c);
        }
        let (client, task) = tokio::time::timeout(self.connect_timeout, async {
            self.connector.connect(&self.pg).await
        })
        .await
        .map_err(|_| Error::Unavailable("connecting to the database timed out".into()))??;
        let client = Arc::new(ClientWrapper::new(client, task));
        let now = Instant::now();
        *lane.slot() = Some(Held {
            client: client.clone(),
            created: now,
            last_used: now,
        });
        Ok(client)
    }

    /// (open, idle, max) of the shared connections.
    pub(crate) fn status(&self) -> (usize, usize, usize) {
        let open = self
            .lanes
            .iter()
            .filter(|l| l.slot().as_ref().is_some_and(|h| !h.client.is_closed()))
            .count();
        let busy = self
            .lanes
            .iter()
            .filter(|l| l.in_flight.load(Ordering::Relaxed) > 0)
            .count();
        (open, open.saturating_sub(busy), self.lanes.len())
    }
}
