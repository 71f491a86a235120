//! The connection pool and the `Store` handle every query goes through.

use crate::Error;
use crate::shared::Shared;
use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, Metrics, Object, Pool, RecyclingMethod, Runtime,
};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_size: usize,
    /// How long a request waits for a free connection before it fails (never hangs).
    pub wait_timeout: Duration,
    pub connect_timeout: Duration,
    /// Server-side bound on one statement; `None` keeps the database's setting.
    pub statement_timeout: Option<Duration>,
    /// How long the liveness check of a pooled connection may take before it is handed out;
    /// a connection that fails it is dropped, and so is every connection made before it.
    pub check_timeout: Duration,
    /// A pooled connection last handed out longer ago than this is checked before it is handed
    /// out again; one in steady use is not (HikariCP's `aliveBypassWindowMs`, 500 ms too).
    pub check_after_idle: Duration,
    /// How long sent data may stay unacknowledged before the kernel drops the connection
    /// (`TCP_USER_TIMEOUT`): a partition then ends in an error instead of a hang.
    pub tcp_user_timeout: Duration,
    /// Connections, besides the pool, that identification by number shares between calls
    /// (`crate::shared`); 0 sends those lookups through the pool too.
    pub shared_connections: usize,
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
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl Store {
    /// Builds the pool; connections are made lazily, so this succeeds while the database is down.
    pub fn connect(url: &str, cfg: &PoolConfig) -> Result<Store, Error> {
        let mut pg = tokio_postgres::Config::from_str(url)
            .map_err(|e| Error::Unavailable(format!("invalid database url: {e}").into()))?;
        pg.connect_timeout(cfg.connect_timeout);
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(30));
        pg.keepalives_interval(Duration::from_secs(5));
        pg.keepalives_retries(3);
        pg.tcp_user_timeout(cfg.tcp_user_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("callers");
        }
        if let (Some(t), None) = (cfg.statement_timeout, pg.get_options()) {
            pg.options(format!("-c statement_timeout={}", t.as_millis()));
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = crate::tls::connector(&pg)?;
        let shared = Shared::new(cfg, pg.clone(), tls.clone()).map(Arc::new);
        let mgr = match tls {
            Some(tls) => Manager::from_config(pg, tls, manager_config),
            None => Manager::from_config(pg, NoTls, manager_config),
        };
        let pool = Pool::builder(mgr)
            .pre_recycle(liveness_check(cfg.check_timeout, cfg.check_after_idle))
            .max_size(cfg.max_size)
            .wait_timeout(Some(cfg.wait_timeout))
            .create_timeout(Some(cfg.connect_timeout))
            .recycle_timeout(Some(cfg.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        Ok(Store { pool, shared })
    }

    /// One round trip: used by health checks.
    pub async fn ping(&self) -> Result<(), Error> {
        self.with_client(async |client| {
            client.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
    }

    /// Pool figures for metrics: (size, available, waiting).
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let s = self.pool.status();
        (s.size, s.available, s.waiting)
    }

    pub fn pool_max_size(&self) -> usize {
        self.pool.status().max_size
    }

    /// Runs `work` on a pooled connection. The connection goes back to the pool only when
    /// `work` ran to its end (success or error); when the caller gave up on it midway (a
    /// deadline, a dropped request), the connection may still carry an unanswered statement,
    /// so it is closed instead of being handed to the next request.
    pub(crate) async fn with_client<T>(
        &self,
        work: impl AsyncFnOnce(&mut Object) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut guard = Unfinished(Some(self.pool.get().await?));
        let result = work(guard.0.as_mut().expect("taken only below")).await;
        drop(guard.0.take());
        result
    }

    #[cfg(test)]
    pub(crate) async fn client(&self) -> Result<Object, Error> {
        Ok(self.pool.get().await?)
    }
}

/// Holds a connection while work runs on it; dropped still holding it, it closes it.
struct Unfinished(Option<Object>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

/// Checks a pooled connection that sat idle for `idle` or longer before handing it out: one
/// empty statement, bounded by `timeout`.
///
/// `is_closed()` alone misses a connection whose peer vanished without a FIN or RST (a network
/// partition, a crashed host, a black-holing middlebox): it would hang every request that got
/// it until its deadline, forever. A connection in steady use is not checked: its last request
/// just succeeded, and the check would be a second round trip per request (a quarter of the
/// throughput of IdentifyCaller, crates/bench). One that a request left midway is never reused
/// ([`Store::with_client`]); one that dies while in steady use fails that request by its
/// deadline and is closed with it. When one check fails, the database or the path to it was
/// unwell, so every connection made before that moment is dropped unchecked on its next turn:
/// after an outage the pool refills with fresh connections at once instead of paying one
/// check timeout per dead connection.
fn liveness_check(timeout: Duration, idle: Duration) -> Hook {
    let failed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    Hook::async_fn(move |client, metrics: &Metrics| {
        let failed_at = failed_at.clone();
        Box::pin(async move {
            if client.is_closed() {
                return Err(HookError::message("connection closed"));
            }
            let last_failure = *failed_at.lock().unwrap_or_else(|e| e.into_inner());
            if last_failure.is_some_and(|t| metrics.created <= t) {
                return Err(HookError::message("connection made before a failed check"));
            }
            if metrics.last_used() < idle {
                return Ok(());
            }
            match tokio::time::timeout(timeout, client.simple_query("")).await {
                Ok(Ok(_)) => Ok(()),
                _ => {
                    *failed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    Err(HookError::message("connection failed its liveness check"))
                }
            }
        })
    })
}
