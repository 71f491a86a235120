//! The `Store` handle every query goes through, and how it connects.

use crate::Error;
use crate::connstr::ConnSettings;
use crate::exec::{Connections, Executor, Route, Session, Statements};
use crate::replica::{ReplicaStatus, Replicas};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_size: usize,
    /// How long a request waits for a free connection before it fails (never hangs).
    pub wait_timeout: Duration,
    pub connect_timeout: Duration,
    /// Server-side bound on one statement; `None` keeps the database's setting.
    pub statement_timeout: Option<Duration>,
    /// How long the liveness check of a connection may take before it is used; a connection
    /// that fails it is dropped, and so is every connection made before it.
    pub check_timeout: Duration,
    /// A connection last used longer ago than this is checked before it is used again; one in
    /// steady use is not (HikariCP's `aliveBypassWindowMs`, 500 ms too).
    pub check_after_idle: Duration,
    /// How long sent data may stay unacknowledged before the kernel drops the connection
    /// (`TCP_USER_TIMEOUT`): a partition then ends in an error instead of a hang.
    pub tcp_user_timeout: Duration,
    /// Connections, besides the pool, that identification by number shares between calls
    /// (`crate::shared`); 0 sends those lookups through the pool too.
    pub shared_connections: usize,
    /// What sits between the store and PostgreSQL.
    pub pooler: Pooler,
    /// How statements travel; [`Statements::Unnamed`] behind a transaction pooler that cannot
    /// carry named statements.
    pub statements: Statements,
}

/// What the database URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// PostgreSQL itself, or a pooler that gives each client a backend for its whole session.
    #[default]
    None,
    /// A transaction pooler (PgBouncer `pool_mode = transaction`): consecutive transactions
    /// may run on different backends, and startup `options` are refused, so the statement
    /// timeout is not sent at connect: it must be the role's or the database's setting
    /// (`ALTER ROLE … SET statement_timeout`).
    Transaction,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Some(Duration::from_secs(10)),
            check_timeout: Duration::from_secs(1),
            check_after_idle: Duration::from_millis(500),
            tcp_user_timeout: Duration::from_secs(15),
            shared_connections: 2,
            pooler: Pooler::None,
            statements: Statements::Named,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    exec: Arc<Executor>,
    replicas: Arc<Replicas>,
    pub(crate) signal: Arc<crate::feed::Signal>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("connections", &self.exec.connections())
            .finish()
    }
}

impl Store {
    /// Builds the executor; connections are made lazily, so this succeeds while the database
    /// is down.
    pub fn connect(url: &str, cfg: &PoolConfig) -> Result<Store, Error> {
        Ok(Store {
            exec: Arc::new(executor(url, cfg)?),
            replicas: Arc::new(Replicas::none()),
            signal: Arc::default(),
        })
    }

    /// The same store with streaming replicas at `urls` for reads (identification, search, gets
    /// and lists), each with a pool like the primary's. A replica serves reads while its replay
    /// lag, measured by [`Store::watch_replicas`], is at most `max_lag`; else the primary does.
    pub fn with_replicas(
        self,
        urls: &[String],
        cfg: &PoolConfig,
        max_lag: Duration,
    ) -> Result<Store, Error> {
        let list = urls
            .iter()
            .map(|url| executor(url, cfg))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Store {
            replicas: Arc::new(Replicas::new(list, max_lag)),
            ..self
        })
    }

    /// Measures the replicas' lag, for as long as it is polled (nothing to do without
    /// replicas). The server runs it beside the calls.
    pub async fn watch_replicas(&self) {
        if self.replicas.is_empty() {
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(self.replicas.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.replicas.measure(&self.exec).await {
                tracing::debug!(error = %e, "the primary did not answer the replicas' lag check");
            }
        }
    }

    /// The replicas, in the order given, as reads see them now.
    pub fn replicas(&self) -> Vec<ReplicaStatus> {
        self.replicas.status()
    }
}

/// The executor of one database URL: the primary's or a replica's.
fn executor(url: &str, cfg: &PoolConfig) -> Result<Executor, Error> {
    let mut settings = ConnSettings::parse(url)?;
    let pg = &mut settings.pg;
    pg.connect_timeout(cfg.connect_timeout);
    pg.keepalives(true);
    pg.keepalives_idle(Duration::from_secs(30));
    pg.keepalives_interval(Duration::from_secs(5));
    pg.keepalives_retries(3);
    pg.tcp_user_timeout(cfg.tcp_user_timeout);
    if pg.get_application_name().is_none() {
        pg.application_name("callers");
    }
    if let (Some(t), None, Pooler::None) = (cfg.statement_timeout, pg.get_options(), cfg.pooler) {
        pg.options(format!("-c statement_timeout={}", t.as_millis()));
    }
    Executor::new(settings, cfg)
}

impl Store {
    /// One round trip: used by health checks.
    pub async fn ping(&self) -> Result<(), Error> {
        self.pooled(async |s| s.conn().batch_execute("SELECT 1").await)
            .await
    }

    /// The statement timeout the database gives this role's sessions (`0` is none): behind a
    /// transaction pooler it is the role's or the database's setting, not ours.
    pub async fn session_statement_timeout(&self) -> Result<String, Error> {
        crate::row::row_struct! {
            struct SettingRow {
                setting: String,
            }
        }
        let row: Option<SettingRow> = self
            .pooled(async |s| {
                s.conn()
                    .row(
                        "SELECT current_setting('statement_timeout') AS setting",
                        &[],
                    )
                    .await
            })
            .await?;
        Ok(row.map(|r| r.setting).unwrap_or_default())
    }

    /// Connections, pooled and shared together, for metrics.
    pub fn connections(&self) -> Connections {
        self.exec.connections()
    }

    /// The most pooled connections (the shared ones aside).
    pub fn pool_max_size(&self) -> usize {
        self.exec.pool_max_size()
    }

    /// Runs `work` on a pooled connection of its own.
    pub(crate) async fn pooled<T>(
        &self,
        work: impl AsyncFnOnce(&mut Session<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.exec.run(Route::Pooled, work).await
    }

    /// Runs the read `work` on a replica within the lag bound, else on the primary (see
    /// [`Replicas::read`]).
    pub(crate) async fn read<T>(
        &self,
        route: Route,
        work: impl AsyncFnOnce(&mut Session<'_>) -> Result<T, Error> + Clone,
    ) -> Result<T, Error> {
        Ok(self.read_where(route, work).await?.0)
    }

    /// [`Store::read`], and whether a replica served it.
    pub(crate) async fn read_where<T>(
        &self,
        route: Route,
        work: impl AsyncFnOnce(&mut Session<'_>) -> Result<T, Error> + Clone,
    ) -> Result<(T, bool), Error> {
        self.replicas.read(&self.exec, route, work).await
    }

    /// Runs `work` on a connection of `route`.
    pub(crate) async fn on<T>(
        &self,
        route: Route,
        work: impl AsyncFnOnce(&mut Session<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.exec.run(route, work).await
    }

    #[cfg(test)]
    pub(crate) fn has_shared(&self) -> bool {
        self.exec.has_shared()
    }

    #[cfg(test)]
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.exec.object().await
    }
}
