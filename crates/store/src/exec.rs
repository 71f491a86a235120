//! The executor: how the store gets a connection and runs statements on it.
//!
//! Two kinds of connection sit behind one [`Executor::run`]: pooled ones, one per call, which
//! can hold a transaction; and shared ones (`crate::shared`), which many calls use at once for
//! single statements, pipelined. Both are made by one [`Connector`] (the one place that knows
//! TLS), vetted by one [`Liveness`] check after sitting idle, and guarded by one rule for a call
//! given up midway: its connection may still carry an unanswered statement, so it is never
//! handed to another call. Statements run through [`Conn`], the one place that prepares them:
//! named and cached per connection ([`Statements::Named`]), or unnamed, one round trip each,
//! for a transaction pooler that cannot carry named statements from one transaction to the next
//! ([`Statements::Unnamed`]).

use crate::Error;
use crate::connstr::{ConnSettings, SslMode};
use crate::shared::Shared;
use deadpool_postgres::{
    ClientWrapper, Hook, HookError, Manager, ManagerConfig, Metrics, Object, Pool, RecyclingMethod,
    Runtime, Transaction,
};
use futures::TryStreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::Instrument;

pub(crate) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Where a call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A pooled connection of its own: any work, transactions included.
    Pooled,
    /// A shared connection when there are any (else a pooled one): single statements only.
    Shared,
}

/// How statements travel to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Statements {
    /// Prepared once per connection under a name and reused: the fewest bytes and parses. For
    /// direct connections, session poolers, and PgBouncer 1.21+ with `max_prepared_statements`.
    #[default]
    Named,
    /// Parsed anew on every execution, in the same round trip: for transaction poolers that
    /// cannot carry named statements (PgBouncer before 1.21), where the next transaction may
    /// run on another backend that never saw the name.
    Unnamed,
}

/// What running statements needs besides a connection: the statement mode and, for unnamed
/// statements, the parameter types each SQL text takes, learnt once per process.
pub(crate) struct Prep {
    mode: Statements,
    types: Mutex<HashMap<String, Arc<[Type]>>>,
    /// Where the types of a statement on a shared connection are learnt: a shared connection
    /// cannot hold the transaction that learning needs while other calls pipeline on it.
    pool: Pool,
}

impl Prep {
    fn known(&self, sql: &str) -> Option<Arc<[Type]>> {
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sql)
            .cloned()
    }

    fn learn(&self, sql: &str, types: Vec<Type>) -> Arc<[Type]> {
        let types: Arc<[Type]> = types.into();
        self.types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sql.to_owned(), types.clone());
        types
    }
}

/// The connection a call's work gets.
pub(crate) struct Session<'a> {
    on: SessionKind<'a>,
    prep: &'a Prep,
}

enum SessionKind<'a> {
    Pooled(&'a mut Object),
    Shared(&'a ClientWrapper),
}

impl Session<'_> {
    pub(crate) fn conn(&self) -> Conn<'_> {
        let on = match &self.on {
            SessionKind::Pooled(object) => On::Pooled(object),
            SessionKind::Shared(client) => On::Shared(client),
        };
        Conn {
            on,
            prep: self.prep,
        }
    }

    /// A read-write transaction; only a pooled connection has them.
    pub(crate) async fn transaction(&mut self) -> Result<Tx<'_>, Error> {
        let prep = self.prep;
        Ok(Tx {
            tx: self.pooled()?.transaction().await?,
            prep,
        })
    }

    /// A read-only transaction: one snapshot for several statements.
    pub(crate) async fn read_only(&mut self) -> Result<Tx<'_>, Error> {
        let prep = self.prep;
        let tx = self.pooled()?.build_transaction().read_only(true);
        Ok(Tx {
            tx: tx.start().await?,
            prep,
        })
    }

    fn pooled(&mut self) -> Result<&mut Object, Error> {
        match &mut self.on {
            SessionKind::Pooled(object) => Ok(object),
            SessionKind::Shared(_) => Err(Error::Corrupt(
                "a transaction was asked of a shared connection".into(),
            )),
        }
    }
}

/// A transaction on a pooled connection; dropped without [`Tx::commit`], it rolls back.
pub(crate) struct Tx<'a> {
    tx: Transaction<'a>,
    prep: &'a Prep,
}

impl Tx<'_> {
    pub(crate) fn conn(&self) -> Conn<'_> {
        Conn {
            on: On::Tx(&self.tx),
            prep: self.prep,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), Error> {
        Ok(self.tx.commit().await?)
    }
}

/// Runs statements on a connection or inside a transaction, named and prepared once per
/// connection or unnamed ([`Statements`]). Rows come back raw or decoded by column name.
#[derive(Clone, Copy)]
pub(crate) struct Conn<'a> {
    on: On<'a>,
    prep: &'a Prep,
}

#[derive(Clone, Copy)]
enum On<'a> {
    Pooled(&'a ClientWrapper),
    Shared(&'a ClientWrapper),
    Tx(&'a Transaction<'a>),
}

impl Conn<'_> {
    async fn prepare(self, sql: &str) -> Result<tokio_postgres::Statement, Error> {
        Ok(match self.on {
            On::Pooled(c) | On::Shared(c) => c.prepare_cached(sql).await?,
            On::Tx(t) => t.prepare_cached(sql).await?,
        })
    }

    /// The parameter types of `sql`, for an unnamed statement. Learnt by preparing it inside a
    /// transaction and closing it before the transaction ends, so a transaction pooler keeps
    /// one backend throughout and no name is left behind on it.
    async fn param_types(self, sql: &str) -> Result<Arc<[Type]>, Error> {
        if let Some(types) = self.prep.known(sql) {
            return Ok(types);
        }
        let types = match self.on {
            // Dropping the statement sends its Close inside the transaction.
            On::Tx(t) => t.prepare(sql).await?.params().to_vec(),
            On::Pooled(c) => learn_types(c, sql).await?,
            On::Shared(_) => {
                let mut object = Midway::new(self.prep.pool.get().await?, |o: Object| {
                    drop(Object::take(o));
                });
                let types = learn_types(object.get(), sql).await;
                drop(object.finish());
                types?
            }
        };
        Ok(self.prep.learn(sql, types))
    }

    /// Runs `sql` as an unnamed statement: parse, bind and execute in one round trip.
    async fn unnamed(
        self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<tokio_postgres::RowStream, Error> {
        let types = self.param_types(sql).await?;
        let typed = params.iter().copied().zip(types.iter().cloned());
        Ok(match self.on {
            On::Pooled(c) | On::Shared(c) => c.query_typed_raw(sql, typed).await?,
            On::Tx(t) => t.query_typed_raw(sql, typed).await?,
        })
    }

    pub(crate) async fn query(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        self.query_here(sql, params)
            .instrument(statement_span(sql))
            .await
    }

    async fn query_here(self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        if self.prep.mode == Statements::Unnamed {
            return Ok(self.unnamed(sql, params).await?.try_collect().await?);
        }
        let stmt = self.prepare(sql).await?;
        Ok(match self.on {
            On::Pooled(c) | On::Shared(c) => c.query(&stmt, params).await?,
            On::Tx(t) => t.query(&stmt, params).await?,
        })
    }

    pub(crate) async fn query_opt(
        self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, Error> {
        self.query_opt_here(sql, params)
            .instrument(statement_span(sql))
            .await
    }

    async fn query_opt_here(self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        if self.prep.mode == Statements::Unnamed {
            let mut rows = self.query_here(sql, params).await?;
            if rows.len() > 1 {
                return Err(Error::Corrupt(format!(
                    "a statement of at most one row returned {}",
                    rows.len()
                )));
            }
            return Ok(rows.pop());
        }
        let stmt = self.prepare(sql).await?;
        Ok(match self.on {
            On::Pooled(c) | On::Shared(c) => c.query_opt(&stmt, params).await?,
            On::Tx(t) => t.query_opt(&stmt, params).await?,
        })
    }

    pub(crate) async fn execute(self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        self.execute_here(sql, params)
            .instrument(statement_span(sql))
            .await
    }

    async fn execute_here(self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        if self.prep.mode == Statements::Unnamed {
            let mut rows = std::pin::pin!(self.unnamed(sql, params).await?);
            while rows.try_next().await?.is_some() {}
            return Ok(rows.rows_affected().unwrap_or(0));
        }
        let stmt = self.prepare(sql).await?;
        Ok(match self.on {
            On::Pooled(c) | On::Shared(c) => c.execute(&stmt, params).await?,
            On::Tx(t) => t.execute(&stmt, params).await?,
        })
    }

    /// Statements without parameters or results (settings), in one round trip.
    pub(crate) async fn batch_execute(self, sql: &str) -> Result<(), Error> {
        let run = async {
            match self.on {
                On::Pooled(c) | On::Shared(c) => c.batch_execute(sql).await?,
                On::Tx(t) => t.batch_execute(sql).await?,
            }
            Ok(())
        };
        run.instrument(statement_span(sql)).await
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

/// A client span for one statement, named by its operation and first table, when the call
/// it serves is traced (else a disabled span: nothing is made). Never the parameters.
pub(crate) fn statement_span(sql: &str) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    let (operation, table) = statement_name(sql);
    let name = match table {
        Some(t) => format!("{operation} {t}"),
        None => operation.clone(),
    };
    tracing::info_span!(
        target: "callers_store::statement",
        "db statement",
        otel.name = name,
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.collection.name = table.unwrap_or_default(),
    )
}

/// The operation (`SELECT`, `INSERT`, `WITH`, …) and the table it reads or writes first,
/// after any leading comments. SQL text only: values travel as parameters.
fn statement_name(sql: &str) -> (String, Option<&str>) {
    let mut rest = sql.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map_or("", |(_, after)| after)
                .trim_start();
        } else if let Some(r) = rest.strip_prefix("--") {
            rest = r
                .split_once('\n')
                .map_or("", |(_, after)| after)
                .trim_start();
        } else {
            break;
        }
    }
    let words: Vec<&str> = rest
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';'))
        .filter(|w| !w.is_empty())
        .collect();
    let operation = words.first().unwrap_or(&"SQL").to_ascii_uppercase();
    let after = |keyword: &str| {
        let i = words.iter().position(|w| w.eq_ignore_ascii_case(keyword))?;
        words.get(i + 1).copied()
    };
    let table = match operation.as_str() {
        "SELECT" | "DELETE" => after("FROM"),
        "INSERT" => after("INTO"),
        "UPDATE" => words.get(1).copied(),
        _ => None,
    };
    let table = table.map(|t| t.trim_matches('"')).filter(|t| {
        t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    });
    (operation, table)
}

/// Prepares `sql` on a connection no other call uses, inside a transaction of its own.
async fn learn_types(client: &Client, sql: &str) -> Result<Vec<Type>, Error> {
    client.batch_execute("BEGIN").await?;
    let prepared = client.prepare(sql).await;
    let types = prepared.map(|s| s.params().to_vec());
    let end = client
        .batch_execute(if types.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await;
    let types = types?;
    end?;
    Ok(types)
}

/// Makes connections, with TLS as the settings ask (`crate::tls`): pooled, shared and single
/// ones (migrations, the purge's session) alike.
#[derive(Clone)]
pub(crate) struct Connector {
    tls: Option<MakeRustlsConnect>,
    /// `sslmode=allow`: plaintext first, TLS when the server refuses plaintext.
    allow: bool,
}

impl Connector {
    pub(crate) fn new(settings: &ConnSettings) -> Result<Connector, Error> {
        Ok(Connector {
            tls: crate::tls::connector(&settings.tls)?,
            allow: settings.tls.mode == SslMode::Allow,
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
        match (&self.tls, self.allow) {
            (Some(tls), true) => match pg.connect(NoTls).await {
                Ok((client, conn)) => Ok((client, drive(conn))),
                // The server answered and refused: perhaps it wants TLS (hostssl only).
                Err(e) if e.as_db_error().is_some() => {
                    let mut tls_pg = pg.clone();
                    tls_pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                    let (client, conn) = tls_pg.connect(tls.clone()).await?;
                    Ok((client, drive(conn)))
                }
                Err(e) => Err(e),
            },
            (Some(tls), false) => {
                let (client, conn) = pg.connect(tls.clone()).await?;
                Ok((client, drive(conn)))
            }
            (None, _) => {
                let (client, conn) = pg.connect(NoTls).await?;
                Ok((client, drive(conn)))
            }
        }
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

/// Fails unless `client` has a backend of its own for its whole session, as session advisory
/// locks need (migrations, the purge): a transaction pooler hands the backend to other clients
/// between transactions, and the lock would stay with the backend, not with us.
///
/// The test: note our backend, then open a second connection and hold a transaction on it. A
/// transaction pooler that reuses the backend it freed last (PgBouncer's default) gives it ours;
/// otherwise our next statement finds its backend taken and runs on another. A direct
/// connection or a session pooler passes both, whatever else runs. Simple queries only: named
/// statements would not survive the pooler this looks for.
pub(crate) async fn ensure_session(
    connector: &Connector,
    pg: &tokio_postgres::Config,
    client: &Client,
    what: &str,
) -> Result<(), Error> {
    let ours = backend_pid(client).await?;
    let (mut other, task) = connector.connect(pg).await?;
    let held = other.transaction().await?;
    let theirs = backend_pid(&held).await;
    let again = match theirs {
        Ok(theirs) if theirs != ours => backend_pid(client).await.map(Some),
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    };
    drop(held);
    drop(other);
    let _ = task.await;
    if again? != Some(ours) {
        return Err(Error::Config(format!(
            "{what} needs a database session of its own (its advisory lock lives in the \
             session), but the database URL leads to a transaction pooler: give it a direct \
             connection or a session pool"
        )));
    }
    Ok(())
}

async fn backend_pid(client: &impl tokio_postgres::GenericClient) -> Result<i32, Error> {
    let rows = client.simple_query("SELECT pg_backend_pid()").await?;
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
            _ => None,
        })
        .ok_or_else(|| Error::Corrupt("pg_backend_pid() answered no number".into()))
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
    prep: Prep,
}

impl Executor {
    /// Connections are made lazily, so this succeeds while the database is down.
    pub(crate) fn new(settings: ConnSettings, cfg: &crate::PoolConfig) -> Result<Executor, Error> {
        let connector = Connector::new(&settings)?;
        let pg = settings.pg;
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
        let prep = Prep {
            mode: cfg.statements,
            types: Mutex::default(),
            pool: pool.clone(),
        };
        Ok(Executor { pool, shared, prep })
    }

    /// Runs `work` on a connection of `route`. The connection serves other calls afterwards only
    /// when `work` ran to its end (success or error): see [`Midway`].
    pub(crate) async fn run<T>(
        &self,
        route: Route,
        work: impl AsyncFnOnce(&mut Session<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if let (Route::Shared, Some(shared)) = (route, &self.shared) {
            let prep = &self.prep;
            return shared
                .run(async |client| {
                    work(&mut Session {
                        on: SessionKind::Shared(client),
                        prep,
                    })
                    .await
                })
                .await;
        }
        let mut object = Midway::new(self.pool.get().await?, |o: Object| {
            drop(Object::take(o));
        });
        let result = work(&mut Session {
            on: SessionKind::Pooled(object.get()),
            prep: &self.prep,
        })
        .await;
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

#[cfg(test)]
mod tests {
    use super::statement_name;

    #[test]
    fn statements_are_named_by_operation_and_first_table() {
        let n = |sql| statement_name(sql);
        assert_eq!(
            n("SELECT a FROM contacts WHERE account_id = $1"),
            ("SELECT".into(), Some("contacts"))
        );
        assert_eq!(
            n("/* which accounts have work */\n  insert into call_notes(a) VALUES ($1)"),
            ("INSERT".into(), Some("call_notes"))
        );
        assert_eq!(
            n("UPDATE \"contacts\" SET x = $2"),
            ("UPDATE".into(), Some("contacts"))
        );
        assert_eq!(
            n("WITH d AS (DELETE FROM x) SELECT 1"),
            ("WITH".into(), None)
        );
        assert_eq!(n("SELECT 1"), ("SELECT".into(), None));
        assert_eq!(n("SET LOCAL lock_timeout = '1s'"), ("SET".into(), None));
        assert_eq!(n(""), ("SQL".into(), None));
    }
}
