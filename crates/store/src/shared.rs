//! Shared connections for the hottest read, IdentifyCaller by number: a few connections that
//! many calls use at once instead of one pooled connection per call. tokio-postgres pipelines
//! the statements of the calls waiting on a connection (one write), and the backend reads them
//! in one go instead of sleeping and waking per statement: PostgreSQL spends a quarter to a
//! third less CPU per lookup (BENCHMARKS.md, round 5). Only single statements outside a
//! transaction run here; everything else takes a pooled connection.

use crate::{Error, PoolConfig};
use deadpool_postgres::{ClientWrapper, Transaction};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the identification statements need of a connection: a pooled one, a transaction or a
/// shared one alike (deadpool's `GenericClient` is sealed and not implemented for the latter).
pub(crate) trait Conn: Sync {
    fn prepare_cached(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<Statement, tokio_postgres::Error>> + Send;
    fn query(
        &self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send;
    fn batch_execute(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send;
}

impl Conn for ClientWrapper {
    fn prepare_cached(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<Statement, tokio_postgres::Error>> + Send {
        ClientWrapper::prepare_cached(self, sql)
    }
    fn query(
        &self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send {
        tokio_postgres::Client::query(self, stmt, params)
    }
    fn batch_execute(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send {
        tokio_postgres::Client::batch_execute(self, sql)
    }
}

impl Conn for Transaction<'_> {
    fn prepare_cached(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<Statement, tokio_postgres::Error>> + Send {
        Transaction::prepare_cached(self, sql)
    }
    fn query(
        &self,
        stmt: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send {
        tokio_postgres::Transaction::query(self, stmt, params)
    }
    fn batch_execute(
        &self,
        sql: &str,
    ) -> impl Future<Output = Result<(), tokio_postgres::Error>> + Send {
        tokio_postgres::Transaction::batch_execute(self, sql)
    }
}

/// The shared connections; a call takes the one with the fewest calls on it. Each is made on
/// first use and made anew when it closed (an error, the database restarting), failed the check
/// after sitting idle (as pooled connections do, `PoolConfig::check_after_idle`), or a call gave
/// up on it midway.
pub(crate) struct Shared {
    lanes: Vec<Lane>,
    pg: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    cfg: PoolConfig,
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
    last_used: Instant,
}

impl Lane {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open connection, and whether it sat idle for `idle` or longer (check it first).
    fn take_turn(&self, idle: Duration) -> Option<(Arc<ClientWrapper>, bool)> {
        let mut slot = self.slot();
        let held = slot.as_mut().filter(|h| !h.client.is_closed())?;
        let now = Instant::now();
        let stale = now.duration_since(held.last_used) >= idle;
        held.last_used = now;
        Some((held.client.clone(), stale))
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
        tls: Option<MakeRustlsConnect>,
    ) -> Option<Shared> {
        (cfg.shared_connections > 0).then(|| Shared {
            lanes: (0..cfg.shared_connections)
                .map(|_| Lane::default())
                .collect(),
            pg,
            tls,
            cfg: cfg.clone(),
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
        let mut unfinished = Unfinished(lane, None);
        let client = match lane.take_turn(self.cfg.check_after_idle) {
            Some((c, false)) => c,
            Some((c, true)) => {
                // Given up during the check, the connection is forgotten like after a statement.
                unfinished.1 = Some(c.clone());
                if self.alive(&c).await {
                    c
                } else {
                    lane.discard(&c);
                    unfinished.1 = None;
                    self.connect(lane).await?
                }
            }
            None => self.connect(lane).await?,
        };
        unfinished.1 = Some(client.clone());
        let result = work(&client).await;
        unfinished.1 = None;
        result
    }

    async fn alive(&self, client: &ClientWrapper) -> bool {
        let check = tokio::time::timeout(self.cfg.check_timeout, client.simple_query(""));
        matches!(check.await, Ok(Ok(_)))
    }

    async fn connect(&self, lane: &Lane) -> Result<Arc<ClientWrapper>, Error> {
        let _one = lane.connecting.lock().await;
        if let Some((c, _)) = lane.take_turn(self.cfg.check_after_idle) {
            return Ok(c);
        }
        let made = tokio::time::timeout(self.cfg.connect_timeout, async {
            Ok::<_, tokio_postgres::Error>(match &self.tls {
                Some(tls) => {
                    let (client, conn) = self.pg.connect(tls.clone()).await?;
                    ClientWrapper::new(client, tokio::spawn(async move { _ = conn.await }))
                }
                None => {
                    let (client, conn) = self.pg.connect(NoTls).await?;
                    ClientWrapper::new(client, tokio::spawn(async move { _ = conn.await }))
                }
            })
        })
        .await
        .map_err(|_| Error::Unavailable("connecting to the database timed out".into()))??;
        let client = Arc::new(made);
        *lane.slot() = Some(Held {
            client: client.clone(),
            last_used: Instant::now(),
        });
        Ok(client)
    }
}

/// Counts a call on its lane until it ends; still holding the connection when dropped, the
/// call gave up midway and the lane forgets the connection.
struct Unfinished<'a>(&'a Lane, Option<Arc<ClientWrapper>>);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(client) = self.1.take() {
            self.0.discard(&client);
        }
    }
}
