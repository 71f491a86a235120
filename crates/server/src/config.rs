//! The server's typed configuration, from flags and environment (API.md "Command lines").

use callers_runtime::{LogFormat, Secret};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "callers-server", version, about = "The callers gRPC server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// After restoring a backup: apply again the erasures recorded since it was taken
    /// (docs/OPERATIONS.md, "Restoring a backup").
    ReapplyErasures(ReapplyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReapplyArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The backup's time (RFC 3339): erasures recorded after it are applied again.
    #[arg(long)]
    pub since: chrono::DateTime<chrono::Utc>,
    /// The privacy keys file the servers use (the records' number hashes are keyed).
    #[arg(long, env = "CALLERS_PRIVACY_KEYS_FILE")]
    pub privacy_keys_file: Option<PathBuf>,
    /// Region of accounts without call-handling settings, as the server's.
    #[arg(long, env = "CALLERS_DEFAULT_PHONE_REGION", default_value = "DE")]
    pub default_phone_region: String,
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL. Without it, a build with the `dev-db` feature (`cargo run`) starts a
    /// private development database; other builds, the image's, refuse to start.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format; `auto` is pretty on a terminal and JSON otherwise.
    #[arg(long, env = "CALLERS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address the gRPC server listens on.
    #[arg(long, env = "CALLERS_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// File of bearer-token hashes and their accounts; without it the server runs
    /// unauthenticated, which is allowed only on a loopback address.
    #[arg(long, env = "CALLERS_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// TOML file of the keys that suppressed numbers are hashed with (HMAC-SHA256), current
    /// key first: `[[keys]]` with `id` and `secret_hex` (at least 32 bytes). Without it,
    /// `EraseCaller` cannot suppress. Read at start; a rotation is a restart.
    #[arg(long, env = "CALLERS_PRIVACY_KEYS_FILE")]
    pub privacy_keys_file: Option<PathBuf>,
    /// PEM certificate chain of the server; enables TLS (with --tls-key).
    #[arg(long, env = "CALLERS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the server certificate.
    #[arg(long, env = "CALLERS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: when set, clients must present a certificate it signed (mTLS).
    #[arg(long, env = "CALLERS_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint; none when unset.
    #[arg(long, env = "CALLERS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Apply pending migrations before serving (always done for the development database).
    #[arg(long, env = "CALLERS_MIGRATE")]
    pub migrate: bool,
    /// Phone region (ISO 3166 alpha-2) of accounts that have no call-handling settings.
    #[arg(long, env = "CALLERS_DEFAULT_PHONE_REGION", default_value = "DE")]
    pub default_phone_region: String,
    /// Days without activity after which caller-only contacts are deleted; must match the
    /// purge worker's `--retention-days`, since `purge_time` is computed from it.
    #[arg(long, env = "CALLERS_RETENTION_DAYS", default_value_t = 180)]
    pub retention_days: u32,
    /// Pooled database connections of this replica (the shared ones come on top).
    #[arg(long, env = "CALLERS_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,
    /// Connections, besides the pool, that identification by number shares between calls
    /// (statements pipelined; PostgreSQL reads several per wake-up); 0 uses the pool for it.
    #[arg(long, env = "CALLERS_DB_SHARED_CONNECTIONS", default_value_t = 2)]
    pub db_shared_connections: usize,
    /// What the database URL leads to: `none` (PostgreSQL, or a session pooler) or
    /// `transaction` (a transaction pooler such as PgBouncer's `pool_mode = transaction`: no
    /// startup options, so the statement timeout must be the role's setting).
    #[arg(long, env = "CALLERS_DB_POOLER", value_enum, default_value_t = DbPooler::None)]
    pub db_pooler: DbPooler,
    /// How statements travel: `named` (prepared once per connection) or `unnamed` (parsed
    /// each time, for transaction poolers that cannot keep named statements, such as PgBouncer
    /// before 1.21); default `named`, or `unnamed` with `--db-pooler transaction`.
    #[arg(long, env = "CALLERS_DB_STATEMENTS", value_enum)]
    pub db_statements: Option<DbStatements>,
    /// PostgreSQL URL of a streaming replica for reads (IdentifyCaller, SearchContacts, Get*,
    /// List*); repeat the flag for several, or give them comma-separated in the variable.
    #[arg(
        long = "database-replica-url",
        env = "CALLERS_DATABASE_REPLICA_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub database_replica_urls: Vec<Secret>,
    /// A replica serves reads while its measured replay lag is at most this; else the primary.
    #[arg(long, env = "CALLERS_REPLICA_MAX_LAG_MS", default_value_t = 1000)]
    pub replica_max_lag_ms: u64,
    /// How long a request waits for a free database connection before UNAVAILABLE.
    #[arg(long, env = "CALLERS_DB_WAIT_TIMEOUT_MS", default_value_t = 2000)]
    pub db_wait_timeout_ms: u64,
    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "CALLERS_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
    /// Largest accepted request message in bytes (decoded).
    #[arg(long, env = "CALLERS_MAX_MESSAGE_BYTES", default_value_t = 262_144)]
    pub max_message_bytes: usize,
    /// Upper bound of every call in milliseconds; a client's shorter deadline wins.
    #[arg(long, env = "CALLERS_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Calls in flight at once per replica; more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "CALLERS_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    /// Seconds between HTTP/2 keepalive PINGs to clients.
    #[arg(long, env = "CALLERS_HTTP2_KEEPALIVE_SECS", default_value_t = 30)]
    pub http2_keepalive_secs: u64,
    /// Seconds after which a client connection is asked to close (HTTP/2 GOAWAY) so that
    /// clients spread over replicas added since; 0 keeps connections open.
    #[arg(long, env = "CALLERS_MAX_CONNECTION_AGE_SECS", default_value_t = 300)]
    pub max_connection_age_secs: u64,
    /// `WatchChanges` streams this replica serves at once; more are RESOURCE_EXHAUSTED.
    #[arg(long, env = "CALLERS_MAX_CHANGE_STREAMS", default_value_t = 1000)]
    pub max_change_streams: usize,
    /// Seconds after which a `WatchChanges` stream ends with OK (the client resumes with its
    /// cursor); it also bounds how long an old connection with a stream stays open.
    #[arg(
        long,
        env = "CALLERS_CHANGE_STREAM_MAX_AGE_SECS",
        default_value_t = 300
    )]
    pub change_stream_max_age_secs: u64,
    /// Seconds without changes after which a stream sends a keepalive message.
    #[arg(
        long,
        env = "CALLERS_CHANGE_STREAM_KEEPALIVE_SECS",
        default_value_t = 15
    )]
    pub change_stream_keepalive_secs: u64,
    /// Longest wait in milliseconds between two reads of the feed by an idle stream; changes
    /// committed through this replica wake its streams at once, others are found by this poll.
    #[arg(long, env = "CALLERS_CHANGE_POLL_MS", default_value_t = 1000)]
    pub change_poll_ms: u64,
    /// Feed reads for change streams at once, each on a pooled connection; the rest of the
    /// pool stays for the other calls. Streams at the same cursor of an account share a read.
    #[arg(long, env = "CALLERS_CHANGE_STREAM_READS", default_value_t = 4)]
    pub change_stream_reads: usize,
    /// Seconds between two sweeps of expired caller messages into undelivered-message records
    /// (every replica sweeps; they skip each other's rows). 0 turns the sweep off on this
    /// replica: expired messages are still never told, but stay on their contacts unreported.
    #[arg(long, env = "CALLERS_MESSAGE_SWEEP_SECS", default_value_t = 15)]
    pub message_sweep_secs: u64,
    /// Seconds between two writes of the incoming calls this replica counted (for
    /// `CheckCallerRecognition`'s measured findings). A crash loses at most these seconds of
    /// counts, never a call.
    #[arg(
        long,
        env = "CALLERS_CALL_COUNT_FLUSH_SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    pub call_count_flush_secs: u64,
    /// Folder of the development database started when no database URL is given.
    #[arg(
        long,
        env = "CALLERS_DEV_DB_DIR",
        default_value = ".devdb",
        hide = cfg!(not(feature = "dev-db"))
    )]
    pub dev_db_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DbPooler {
    None,
    Transaction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DbStatements {
    Named,
    Unnamed,
}

impl ServeArgs {
    /// The pooler and statement mode the flags ask for.
    pub fn db_mode(&self) -> (callers_store::Pooler, callers_store::Statements) {
        use callers_store::{Pooler, Statements};
        let pooler = match self.db_pooler {
            DbPooler::None => Pooler::None,
            DbPooler::Transaction => Pooler::Transaction,
        };
        let statements = match (self.db_statements, pooler) {
            (Some(DbStatements::Named), _) | (None, Pooler::None) => Statements::Named,
            (Some(DbStatements::Unnamed), _) | (None, Pooler::Transaction) => Statements::Unnamed,
        };
        (pooler, statements)
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    secret_hex: String,
}

/// The privacy keys of `--privacy-keys-file` (see [`ServeArgs::privacy_keys_file`]); the error
/// names the file and the entry, never a secret.
pub fn privacy_keys(path: &std::path::Path) -> anyhow::Result<callers_domain::privacy::HashKeys> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read privacy keys file {shown}: {e}"))?;
    parse_privacy_keys(&text).map_err(|e| anyhow::anyhow!("invalid privacy keys file {shown}: {e}"))
}

fn parse_privacy_keys(text: &str) -> Result<callers_domain::privacy::HashKeys, String> {
    let file: KeysFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let mut keys = Vec::with_capacity(file.keys.len());
    for (i, k) in file.keys.into_iter().enumerate() {
        let secret = hex::decode(k.secret_hex.trim())
            .map_err(|_| format!("keys[{i}].secret_hex is not hex"))?;
        keys.push(callers_domain::privacy::HashKey { id: k.id, secret });
    }
    if keys.is_empty() {
        return Err("no keys".into());
    }
    callers_domain::privacy::HashKeys::new(keys)
}

#[cfg(test)]
mod privacy_key_tests {
    use super::parse_privacy_keys;

    #[test]
    fn keys_files_are_read_and_checked() {
        let good = format!(
            "[[keys]]\nid = \"2026-12\"\nsecret_hex = \"{}\"\n\
             [[keys]]\nid = \"2026-06\"\nsecret_hex = \"{}\"\n",
            "ab".repeat(32),
            "cd".repeat(32)
        );
        assert!(!parse_privacy_keys(&good).unwrap().is_empty());
        for bad in [
            String::new(),
            "[[keys]]\nid = \"k\"\nsecret_hex = \"zz\"\n".to_owned(),
            format!(
                "[[keys]]\nid = \"k\"\nsecret_hex = \"{}\"\n",
                "ab".repeat(8)
            ),
        ] {
            assert!(parse_privacy_keys(&bad).is_err(), "{bad}");
        }
    }
}
