//! `callers-server`: wires configuration, database, authentication and signals to `serve`.

use anyhow::{Context, bail};
use callers_domain::SystemClock;
use callers_domain::phone::Region;
use callers_domain::retention::Retention;
use callers_runtime::logging::{self, Output};
use callers_runtime::telemetry;
use callers_server::auth::Authenticator;
use callers_server::config::{Cli, Command, DatabaseArgs, ServeArgs};
use callers_server::grpc::App;
use callers_server::grpc::changes::WatchLimits;
use callers_server::{Deps, Limits, serve};
use callers_store::{PoolConfig, Store};
use clap::Parser;
use sha2::Digest;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TOKENS_POLL: Duration = Duration::from_secs(5);
use tokio::signal::unix::{SignalKind, signal};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // The re-application prints its report on stdout; its logs go to stderr.
    let (log, output) = match &cli.command {
        Some(Command::Migrate(db)) => (db.log.clone(), Output::Stdout),
        Some(Command::ReapplyErasures(args)) => (args.db.log.clone(), Output::Stderr),
        None => (cli.serve.db.log.clone(), Output::Stdout),
    };
    // A trace exporter that cannot be made is reported and the service runs without it.
    let (traces, traces_error) = match telemetry::Traces::from_env("callers-server") {
        Ok(t) => (t, None),
        Err(e) => (None, Some(e)),
    };
    logging::init_with_traces(log.log_format, output, traces.as_ref());
    if let Some(e) = traces_error {
        tracing::warn!(error = e, "traces are not exported");
    }
    let result = match cli.command {
        Some(Command::Migrate(db)) => migrate(db).await,
        Some(Command::ReapplyErasures(args)) => reapply_erasures(args).await,
        None => run(cli.serve).await,
    };
    if let Some(t) = traces {
        t.shutdown().await;
    }
    if let Err(e) = result {
        tracing::error!(error = format!("{e:#}"), "callers-server failed");
        eprintln!("callers-server: {e:#}");
        std::process::exit(1);
    }
}

/// The configured database, or a development one when the build has the `dev-db` feature.
async fn database(
    db: &DatabaseArgs,
    dev_dir: &Path,
) -> anyhow::Result<(String, Option<dev_db::Running>)> {
    if let Some(url) = &db.database_url {
        return Ok((url.expose().to_owned(), None));
    }
    let (url, pg) = dev_db::start(dev_dir).await?;
    Ok((url, Some(pg)))
}

/// A private PostgreSQL from the machine's binaries, for `cargo run` without a database URL.
#[cfg(feature = "dev-db")]
mod dev_db {
    use anyhow::Context;
    use std::path::Path;

    pub type Running = callers_devdb::PrivatePostgres;

    pub async fn start(dir: &Path) -> anyhow::Result<(String, Running)> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let pg = Running::start(&dir, None)
            .await
            .context("no DATABASE_URL given and the development database could not start")?;
        tracing::info!(
            url = pg.url_for("callers"),
            data = %dir.display(),
            "development database running (set DATABASE_URL to use another)"
        );
        ensure_database(&pg.url(), "callers").await?;
        Ok((pg.url_for("callers"), pg))
    }

    pub async fn stop(pg: Running) -> anyhow::Result<()> {
        Ok(pg.stop().await?)
    }

    async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
        let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
        let conn = tokio::spawn(conn);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
        }
        drop(client);
        let _ = conn.await;
        Ok(())
    }
}

/// The production build (the image's) has no development database: it needs a URL.
#[cfg(not(feature = "dev-db"))]
mod dev_db {
    use std::path::Path;

    /// None can exist.
    pub enum Running {}

    pub async fn start(_: &Path) -> anyhow::Result<(String, Running)> {
        anyhow::bail!(
            "a database URL is required: set DATABASE_URL or pass --database-url \
             (this build has no development database)"
        )
    }

    pub async fn stop(pg: Running) -> anyhow::Result<()> {
        match pg {}
    }
}

async fn migrate(db: DatabaseArgs) -> anyhow::Result<()> {
    let (url, dev) = database(&db, Path::new(".devdb")).await?;
    let result = callers_store::migrate(&url)
        .await
        .context("migration failed");
    if let Some(pg) = dev {
        dev_db::stop(pg).await?;
    }
    result?;
    tracing::info!("migrations applied");
    Ok(())
}

/// Applies the erasures recorded since `--since` again, one transaction each; prints one line
/// per record (ids and counts only). Fails when a record's key is not configured, after
/// applying every record it can.
async fn reapply_erasures(args: callers_server::config::ReapplyArgs) -> anyhow::Result<()> {
    let keys = match &args.privacy_keys_file {
        Some(path) => callers_server::config::privacy_keys(path)?,
        None => Default::default(),
    };
    let region = Region::parse(&args.default_phone_region)
        .map_err(|_| anyhow::anyhow!("--default-phone-region is not a known ISO 3166 region"))?;
    let (url, dev) = database(&args.db, Path::new(".devdb")).await?;
    let store = Store::connect(&url, &PoolConfig::default())?;
    let records = store.erasures_since(args.since).await?;
    let mut failed = 0;
    for r in &records {
        let account = callers_domain::AccountId::parse(&r.account_id)
            .map_err(|e| anyhow::anyhow!("erasure record {}: {e}", r.request_id))?;
        let region = match store.phone_region(&account).await? {
            Some(code) => Region::parse(&code).unwrap_or(region),
            None => region,
        };
        let now = chrono::Utc::now();
        match store.reapply_erasure(r, &keys, &region, now).await {
            Ok(Some(done)) => println!(
                "{} {} contacts_deleted={} call_notes_redacted={} changes_redacted={}",
                r.account_id,
                r.request_id,
                done.deleted_contact_ids.len(),
                done.redacted_call_notes,
                done.redacted_changes
            ),
            Ok(None) => println!("{} {} nothing left", r.account_id, r.request_id),
            Err(e) => {
                failed += 1;
                eprintln!("{} {} failed: {e}", r.account_id, r.request_id);
            }
        }
    }
    if let Some(pg) = dev {
        dev_db::stop(pg).await?;
    }
    if failed > 0 {
        bail!(
            "{failed} of {} erasures could not be applied again",
            records.len()
        );
    }
    tracing::info!(records = records.len(), "erasures applied again");
    Ok(())
}

/// Reloads the tokens file on SIGHUP and whenever its content changes (a Kubernetes Secret
/// update swaps the file within about a minute), so tokens rotate without a restart.
fn watch_tokens(auth: Arc<Authenticator>, path: std::path::PathBuf) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let fingerprint = |p: &Path| std::fs::read(p).ok().map(|b| sha2::Sha256::digest(&b));
    tokio::spawn(async move {
        let mut last = fingerprint(&path);
        let mut tick = tokio::time::interval(TOKENS_POLL);
        loop {
            let signalled = tokio::select! {
                _ = hup.recv() => true,
                _ = tick.tick() => false,
            };
            let now = fingerprint(&path);
            if !signalled && (now == last || now.is_none()) {
                continue;
            }
            last = now;
            match auth.reload(&path) {
                Ok(n) => tracing::info!(tokens = n, "tokens file reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "tokens file reload failed; keeping the old tokens")
                }
            }
        }
    });
    Ok(())
}

fn tls_config(args: &ServeArgs) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &args.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}

async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let auth = match &args.auth_tokens_file {
        Some(path) => Arc::new(Authenticator::from_file(path)?),
        None if args.listen.ip().is_loopback() => {
            tracing::warn!(
                listen = %args.listen,
                "no --auth-tokens-file: serving WITHOUT authentication on a loopback address"
            );
            Arc::new(Authenticator::disabled())
        }
        None => bail!(
            "refusing to listen on {} without authentication: pass --auth-tokens-file \
             (CALLERS_AUTH_TOKENS_FILE) or listen on a loopback address",
            args.listen
        ),
    };
    let default_region = Region::parse(&args.default_phone_region)
        .map_err(|_| anyhow::anyhow!("--default-phone-region is not a known ISO 3166 region"))?;
    let retention = Retention::days(args.retention_days)
        .map_err(|e| anyhow::anyhow!("--retention-days: {e}"))?;

    let privacy_keys = match &args.privacy_keys_file {
        Some(path) => callers_server::config::privacy_keys(path)?,
        None => Default::default(),
    };
    let (url, dev) = database(&args.db, &args.dev_db_dir).await?;
    if args.migrate || dev.is_some() {
        callers_store::migrate(&url)
            .await
            .context("migration failed")?;
    }
    let (pooler, statements) = args.db_mode();
    let pool = PoolConfig {
        pooler,
        statements,
        max_size: args.db_pool_size,
        shared_connections: args.db_shared_connections,
        wait_timeout: Duration::from_millis(args.db_wait_timeout_ms),
        ..PoolConfig::default()
    };
    let replicas: Vec<String> = args
        .database_replica_urls
        .iter()
        .map(|u| u.expose().to_owned())
        .collect();
    let store = Store::connect(&url, &pool)?.with_replicas(
        &replicas,
        &pool,
        Duration::from_millis(args.replica_max_lag_ms),
    )?;
    if !replicas.is_empty() {
        tracing::info!(
            replicas = replicas.len(),
            max_lag_ms = args.replica_max_lag_ms,
            "reads go to replicas within the lag bound"
        );
    }
    if pooler == callers_store::Pooler::Transaction {
        // Not a reason to refuse to start (the database may be down now); loud in the log.
        let store = store.clone();
        tokio::spawn(async move {
            match store.session_statement_timeout().await {
                Ok(t) if t == "0" => tracing::warn!(
                    "behind a transaction pooler the statement timeout must be the role's, and \
                     it is off: ALTER ROLE <role> SET statement_timeout = '10s'"
                ),
                Ok(t) => tracing::info!(statement_timeout = t, "the role's statement timeout"),
                Err(e) => tracing::warn!(error = %e, "could not read the statement timeout"),
            }
        });
    }
    if let Some(addr) = args.metrics_listen {
        callers_server::metrics::install(addr, store.clone())
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(listen = %addr, "metrics endpoint listening");
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "callers-server listening");
    eprintln!("callers-server listening on {}", listener.local_addr()?);

    if let Some(path) = args.auth_tokens_file.clone() {
        watch_tokens(auth.clone(), path)?;
    }

    let tls = tls_config(&args)?;
    let health_probe = Store::connect(
        &url,
        &PoolConfig {
            pooler,
            statements,
            max_size: 1,
            shared_connections: 0,
            ..PoolConfig::default()
        },
    )?;
    let deps = Deps {
        app: App {
            store,
            clock: Arc::new(SystemClock),
            default_region,
            retention,
            calls: callers_server::tally::CallTally::new(),
            privacy_keys: Arc::new(privacy_keys),
        },
        auth,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        limits: Limits {
            max_message_bytes: args.max_message_bytes,
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            max_concurrent_requests: args.max_concurrent_requests.max(1),
            http2_keepalive: Duration::from_secs(args.http2_keepalive_secs.max(1)),
            max_connection_age: (args.max_connection_age_secs > 0)
                .then(|| Duration::from_secs(args.max_connection_age_secs)),
            watch: WatchLimits {
                max_streams: args.max_change_streams,
                max_age: Duration::from_secs(args.change_stream_max_age_secs.max(1)),
                keepalive: Duration::from_secs(args.change_stream_keepalive_secs.max(1)),
                poll: Duration::from_millis(args.change_poll_ms.max(10)),
                max_reads: args.change_stream_reads.max(1),
            },
            message_sweep: (args.message_sweep_secs > 0)
                .then(|| Duration::from_secs(args.message_sweep_secs)),
            call_count_flush: Some(Duration::from_secs(args.call_count_flush_secs)),
        },
        tls,
        health_probe: Some(health_probe),
    };
    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    };
    let served = serve(listener, shutdown, deps).await;
    if let Some(pg) = dev {
        dev_db::stop(pg).await?;
    }
    served
}
