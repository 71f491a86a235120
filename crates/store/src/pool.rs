//! The connection pool and the `Store` handle every query goes through.

use crate::Error;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_size: usize,
    /// How long a request waits for a free connection before it fails (never hangs).
    pub wait_timeout: Duration,
    pub connect_timeout: Duration,
    /// Server-side bound on one statement; `None` keeps the database's setting.
    pub statement_timeout: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Some(Duration::from_secs(10)),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
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
        if pg.get_application_name().is_none() {
            pg.application_name("callers");
        }
        if let (Some(t), None) = (cfg.statement_timeout, pg.get_options()) {
            pg.options(format!("-c statement_timeout={}", t.as_millis()));
        }
        let mgr = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(cfg.max_size)
            .wait_timeout(Some(cfg.wait_timeout))
            .create_timeout(Some(cfg.connect_timeout))
            .recycle_timeout(Some(cfg.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| Error::Unavailable(Box::new(e)))?;
        Ok(Store { pool })
    }

    /// One round trip: used by health checks.
    pub async fn ping(&self) -> Result<(), Error> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Pool figures for metrics: (size, available, waiting).
    pub fn pool_status(&self) -> (usize, usize, usize) {
        let s = self.pool.status();
        (s.size, s.available, s.waiting)
    }

    pub fn pool_max_size(&self) -> usize {
        self.pool.status().max_size
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        Ok(self.pool.get().await?)
    }
}
