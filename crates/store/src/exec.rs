//! The executor: how the store gets a connection and runs statements on it.
//!
//! Two kinds of connection sit behind one [`Executor::run`]: pooled ones, one per call, which
//! can hold a transaction; and shared ones (`crate::shared`), which many calls use at once for
//! single statements, pipelined. Both are made by one [`Connector`] (the one place that knows
//! TLS), vetted by one [`Liveness`] check after sitting idle, and guarded by one rule for a call
//! given up midway: its connection may still carry an unanswered statement, so it is never
//! handed to another call. Statements run through [`Conn`], the one place that prepares them
//! (cached per connection), so a later change of how statements travel (unnamed statements for
//! a transaction pooler, a span per statement) is made here once.

use crate::Error;
use crate::shared::Shared;
use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Metrics, Object, Pool, RecyclingMethod,
    Runtime, Transaction,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Where a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A pooled connection of its own: any work, transactions included.
    Pooled,
    /// A shared connection when there are any (else a pooled one): single statements only.
    Shared,
}

/// The connection a call's work gets.
pub(crate) enum Session<'a> {
    Pooled(&'a mut Object),
    Shared(&'a ClientWrapper),
}

impl Session<'_> {
    pub(crate) fn conn(&self) -> Conn<'_> {
        match self {
            Session::Pooled(object) => Conn::Client(object),
            Session::Shared(client) => Conn::Client(client),
        }
    }

    /// A read-write transaction; only a pooled connection has them.
    pub(crate) async fn transaction(&mut self) -> Result<Tx<'_>, Error> {
        Ok(Tx(self.pooled()?.transaction().await?))
    }

    /// A read-only transaction: one snapshot for several statements.
    pub(crate) async fn read_only(&mut self) -> Result<Tx<'_>, Error> {
        let tx = self.pooled()?.build_transaction().read_only(true);
        Ok(Tx(tx.start().await?))
    }

    fn pooled(&mut self) -> Result<&mut Object, Error> {
        match self {
            Session::Pooled(object) => Ok(object),
            Session::Shared(_) => Err(Error::Corrupt(
                "a transaction was asked of a shared connection".into(),
            )),
        }
    }
}

/// A transaction on a pooled connection; dropped without [`Tx::commit`], it rolls back.
pub(crate) struct Tx<'a>(Transaction<'a>);

impl Tx<'_> {
    pub(crate) fn conn(&self) -> Conn<'_> {
        Conn::Tx(&self.0)
    }

    pub(crate) async fn commit(self) -> Result<(), Error> {
        Ok(self.0.commit().await?)
    }
}

/// Runs statements on a connection or inside a transaction; every statement is prepared once
/// per connection and then reused. Rows come back raw or decoded by column name.
#[derive(Clone, Copy)]
pub(crate) enum Conn<'a> {
    Client(&'a ClientWrapper),
    Tx(&'a Transaction<'a>),
}

impl Conn<'_> {
    async fn prepare(self, sql: &str) -> Result<tokio_postgres::Statement, Error> {
        Ok(match self {
            Conn::Client(c) => c.prepare_cached(sql).await?,
            Conn::Tx(t) => t.prepare_cached(sql).await?,
        })
    }

    pub(crate) async fn query(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let stmt = self.prepare(sql).await?;
        Ok(match self {
            Conn::Client(c) => c.query(&stmt, params).await?,
            Conn::Tx(t) => t.query(&stmt, params).await?,
        })
    }

    pub(crate) async fn query_opt(
        self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, Error> {
        let stmt = self.prepare(sql).await?;
        Ok(match self {
            Conn::Client(c) => c.query_opt(&stmt, params).await?,
            Conn::Tx(t) => t.query_opt(&stmt, params).await?,
        })
    }

    pub(crate) async fn execute(self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        let stmt = self.prepare(sql).await?;
        Ok(match self {
            Conn::Client(c) => c.execute(&stmt, params).await?,
            Conn::Tx(t) => t.execute(&stmt, params).await?,
        })
    }

    /// Statements without parameters or results (settings), in one round trip.
    pub(crate) async fn batch_execute(self, sql: &str) -> Result<(), Error> {
        match self {
            Conn::Client(c) => c.batch_execute(sql).await?,
            Conn::Tx(t) => t.batch_execute(sql).await?,
        }
        Ok(())
    }

    /// The rows decoded by column name into `R`.
    pub(crate) async fn rows<R>(self, sql: &str, params: Params<'_>) -> Result<Vec<R>, Error>
    where
        R: for<'r> TryFrom<&'r Row, Error = Error>,
    {
        self.query(sql, params)
            .await?
            .iter()
            .map(R::try_from)
            .collect()
    }

    /// The one row, if any, decoded by column name into `R`.
    pub(crate) async fn row<R>(self, sql: &str, params: Params<'_>) -> Result<Option<R>, Error>
    where
        R: for<'r> TryFrom<&'r Row, Error = Error>,
    {
        self.query_opt(sql, params)
            .await?
            .as_ref()
            .map(R::try_from)
            .transpose()
    }
}

/// Makes connections, with TLS when the configuration asks for it: pooled, shared and single
/// ones (migrations, the purge's session) alike.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: Option<MakeRustlsConnect>,
}

impl Connector {
    pub(crate) fn new(pg: &tokio_postgres::Config) -> Result<Connector, Error> {
        Ok(Connector {
            tls: crate::tls::connector(pg)?,
        })
    }

    /// One connection and the task that drives it.
    pub(crate) async fn connect(
        &self,
        pg: &tokio_postgres::Config,
    ) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        fn drive<C>(conn: C) -> JoinHandle<()>
        where
            C: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
        {
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::warn!(error = %e, "database connection ended");
                }
            })
        }
        Ok(match &self.tls {
            Some(tls) => {
                let (client, conn) = pg.connect(tls.clone()).await?;
                (client, drive(conn))
            }
            None => {
                let (client, conn) = pg.connect(NoTls).await?;
                (client, drive(conn))
            }
        })
    }
}

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        pg: &tokio_postgres::Config,
    ) -> std::pin::Pin<
        Box<
            dyn Future<Output = Result<(Client, JoinHandle<()>), tokio_postgres::Error>>
                + Send
                + '_,
        >,
    > {
        let pg = pg.clone();
        Box::pin(async move { Connector::connect(self, &pg).await })
    }
}

/// The check of a connection that sat idle before it is used again: one empty statement,
/// bounded in time.
///
/// `is_closed()` alone misses a connection whose peer vanished without a FIN or RST (a network
/// partition, a crashed host, a black-holing middlebox): it would hang every call that got it
/// until its deadline, forever. A connection in steady use is not checked: its last call just
/// succeeded, and the check would be a second round trip per call. When one check fails, the
/// database or the path to it was unwell, so every connection made before that moment is
/// dropped unchecked on its next turn: after an outage connections are made anew at once
/// instead of paying one check timeout per dead connection.
pub(crate) struct Liveness {
    timeout: Duration,
    idle: Duration,
    failed_at: Mutex<Option<Instant>>,
}

/// What to do with a connection before a call uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Use,
    Check,
    Discard,
}

impl Liveness {
    pub(crate) fn new(timeout: Duration, idle: Duration) -> Liveness {
        Liveness {
            timeout,
            idle,
            failed_at: Mutex::new(None),
        }
    }

    pub(crate) fn verdict(&self, client: &Client, created: Instant, idle_for: Duration) -> Verdict {
        let failed_at = *self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        if client.is_closed() || failed_at.is_some_and(|t| created <= t) {
            Verdict::Discard
        } else if idle_for < self.idle {
            Verdict::Use
        } else {
            Verdict::Check
        }
    }

    /// Whether the connection answers in time; a failure condemns every older connection.
    pub(crate) async fn check(&self, client: &Client) -> bool {
        let alive = matches!(
            tokio::time::timeout(self.timeout, client.simple_query("")).await,
            Ok(Ok(_))
        );
        if !alive {
            *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        alive
    }

    fn hook(self: Arc<Self>) -> Hook {
        Hook::async_fn(move |client, metrics: &Metrics| {
            let liveness = self.clone();
            let (created, idle_for) = (metrics.created, metrics.last_used());
            Box::pin(async move {
                match liveness.verdict(client, created, idle_for) {
                    Verdict::Use => Ok(()),
                    Verdict::Discard => Err(HookError::message("connection closed or condemned")),
                    Verdict::Check => match liveness.check(client).await {
                        true => Ok(()),
                        false => Err(HookError::message("connection failed its liveness check")),
                    },
                }
            })
        })
    }
}

/// Holds what a call works on; dropped still holding it (the call gave up midway), it hands it
/// to `abandon`, which makes sure no other call gets that connection.
pub(crate) struct Midway<T, F: FnMut(T)> {
    held: Option<T>,
    abandon: F,
}

impl<T, F: FnMut(T)> Midway<T, F> {
    pub(crate) fn new(held: T, abandon: F) -> Self {
        Midway {
            held: Some(held),
            abandon,
        }
    }

    pub(crate) fn get(&mut self) -> &mut T {
        self.held.as_mut().expect("held until finished")
    }

    /// The work ended (success or error): the connection may serve others.
    pub(crate) fn finish(mut self) -> T {
        self.held.take().expect("held until finished")
    }
}

impl<T, F: FnMut(T)> Drop for Midway<T, F> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            (self.abandon)(held);
        }
    }
}

/// How many connections there are and how busy, pooled and shared together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Connections {
    /// Open connections.
    pub open: usize,
    /// Open connections no call is using.
    pub idle: usize,
    /// Calls waiting for a pooled connection.
    pub waiting: usize,
    /// The most connections there can be.
    pub max: usize,
}

pub(crate) struct Executor {
    pool: Pool,
    shared: Option<Shared>,
}

impl Executor {
    /// Connections are made lazily, so this succeeds while the database is down.
    pub(crate) fn new(
        pg: tokio_postgres::Config,
        cfg: &crate::PoolConfig,
    ) -> Result<Executor, Error> {
        let connector = Connector::new(&pg)?;
        let liveness = Arc::new(Liveness::new(cfg.check_timeout, cfg.check_after_idle));
        let shared = Shared::new(cfg, pg.clone(), connector.clone(), liveness.clone());
        let manager = Manager::from_connect(
            pg,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .pre_recycle(liveness.hook())
            .max_size(cfg.max_size)
            .wait_timeout(Some(cfg.wait_timeout))
            .create_timeout(Some(cfg.connect_timeout))
            .recycle_timeout(Some(cfg.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        Ok(Executor { pool, shared })
    }

    /// Runs `work` on a connection of `route`. The connection serves other calls afterwards only
    /// when `work` ran to its end (success or error): see [`Midway`].
    pub(crate) async fn run<T>(
        &self,
        route: Route,
        work: impl AsyncFnOnce(&mut Session<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if let (Route::Shared, Some(shared)) = (route, &self.shared) {
            return shared
                .run(async |client| work(&mut Session::Shared(client)).await)
                .await;
        }
        let mut object = Midway::new(self.pool.get().await?, |o: Object| {
            drop(Object::take(o));
        });
        let result = work(&mut Session::Pooled(object.get())).await;
        drop(object.finish());
        result
    }

    #[cfg(test)]
    pub(crate) fn has_shared(&self) -> bool {
        self.shared.is_some()
    }

    pub(crate) fn pool_max_size(&self) -> usize {
        self.pool.status().max_size
    }

    pub(crate) fn connections(&self) -> Connections {
        let s = self.pool.status();
        let mut all = Connections {
            open: s.size,
            idle: s.available,
            waiting: s.waiting,
            max: s.max_size,
        };
        if let Some(shared) = &self.shared {
            let (open, idle, max) = shared.status();
            all.open += open;
            all.idle += idle;
            all.max += max;
        }
        all
    }

    #[cfg(test)]
    pub(crate) async fn object(&self) -> Result<Object, Error> {
        Ok(self.pool.get().await?)
    }
}
