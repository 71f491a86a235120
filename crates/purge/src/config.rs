//! The worker's typed configuration, from flags and environment (API.md "Command lines").

use callers_domain::retention::Retention;
use callers_runtime::{LogFormat, Secret};
use callers_store::purge::SessionOptions;
use chrono::{DateTime, Utc};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use std::time::Duration;

/// API.md: idempotency keys are kept at least 24 hours.
const MIN_IDEMPOTENCY_RETENTION_HOURS: u32 = 24;

#[derive(Debug, Parser)]
#[command(
    name = "callers-purge",
    version,
    about = "Runs one purge: deletes caller-only contacts without activity for longer than the \
             retention, drops expired idempotency keys and old audit rows, then exits"
)]
pub struct Cli {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Secret,
    /// Days without activity after which caller-only contacts are deleted; must match the
    /// server's `--retention-days`, which computes `purge_time` from it.
    #[arg(long, env = "CALLERS_RETENTION_DAYS", default_value = "180", value_parser = retention)]
    pub retention_days: Retention,
    /// Contacts deleted (and committed) per transaction.
    #[arg(
        long,
        env = "CALLERS_PURGE_BATCH_SIZE",
        default_value_t = 500,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub batch_size: u32,
    /// Count what a run would delete, per account, and change nothing.
    #[arg(long, env = "CALLERS_PURGE_DRY_RUN")]
    pub dry_run: bool,
    /// With --dry-run: evaluate the rule at this RFC 3339 time instead of now ("what would a
    /// run on that day delete?").
    #[arg(long, env = "CALLERS_PURGE_AS_OF", value_parser = rfc3339)]
    pub as_of: Option<DateTime<Utc>>,
    /// Hours an idempotency key is kept before the purge drops it (at least 24).
    #[arg(
        long,
        env = "CALLERS_IDEMPOTENCY_RETENTION_HOURS",
        default_value_t = 48,
        value_parser = clap::value_parser!(u32).range(i64::from(MIN_IDEMPOTENCY_RETENTION_HOURS)..=87_600)
    )]
    pub idempotency_retention_hours: u32,
    /// Days the audit of deleted contacts is kept.
    #[arg(
        long,
        env = "CALLERS_PURGE_AUDIT_RETENTION_DAYS",
        default_value_t = 365,
        value_parser = clap::value_parser!(u32).range(1..=36_500)
    )]
    pub audit_retention_days: u32,
    /// Days the change feed keeps a change; a consumer further behind must resynchronise
    /// (`CURSOR_EXPIRED`).
    #[arg(
        long,
        env = "CALLERS_CHANGE_RETENTION_DAYS",
        default_value_t = 7,
        value_parser = clap::value_parser!(u32).range(1..=3_650)
    )]
    pub change_retention_days: u32,
    /// Days before its purge time that a contact subject to deletion is announced in the change
    /// feed (`CONTACT_EXPIRING`), once per purge time.
    #[arg(
        long,
        env = "CALLERS_EXPIRY_NOTICE_DAYS",
        default_value_t = 14,
        value_parser = clap::value_parser!(u32).range(1..=3_650)
    )]
    pub expiry_notice_days: u32,
    /// Days an undelivered caller message (expired or replaced untold) stays in the customer's
    /// report (`ListUndeliveredMessages`), counted from when it stopped being pending.
    #[arg(
        long,
        env = "CALLERS_UNDELIVERED_REPORT_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..=3_650)
    )]
    pub undelivered_report_days: u32,
    /// Pause between batches, to spare a busy primary and its replicas.
    #[arg(
        long,
        env = "CALLERS_PURGE_BATCH_PAUSE_MS",
        default_value_t = 0,
        value_parser = clap::value_parser!(u64).range(0..=60_000)
    )]
    pub batch_pause_ms: u64,
    /// Seconds between progress lines on long runs.
    #[arg(
        long,
        env = "CALLERS_PURGE_PROGRESS_SECS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    pub progress_secs: u64,
    /// Seconds to wait for the database connection.
    #[arg(
        long,
        env = "CALLERS_PURGE_CONNECT_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=300)
    )]
    pub connect_timeout_secs: u64,
    /// Server-side bound on one statement (one batch).
    #[arg(
        long,
        env = "CALLERS_PURGE_STATEMENT_TIMEOUT_SECS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=3_600)
    )]
    pub statement_timeout_secs: u64,
    /// Prometheus Pushgateway base URL (http://host:9091) to push the run's metrics to, as
    /// job `callers-purge`, or a group's URL of the job (http://host:9091/metrics/job/
    /// callers-purge/namespace/prod) when several deployments share one Pushgateway; a failed
    /// push is logged and does not fail the run.
    #[arg(long, env = "CALLERS_PURGE_PUSHGATEWAY_URL")]
    pub pushgateway_url: Option<String>,
    /// File to write the run's metrics to in Prometheus text format (node-exporter textfile
    /// collector); written atomically.
    #[arg(long, env = "CALLERS_PURGE_METRICS_TEXTFILE")]
    pub metrics_textfile: Option<std::path::PathBuf>,
    /// Log format (logs go to stderr; stdout carries only the summary); `auto` is pretty on a
    /// terminal and JSON otherwise.
    #[arg(long, env = "CALLERS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

/// What one run does, from the flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Secret,
    pub retention: Retention,
    pub batch_size: u32,
    pub dry_run: bool,
    pub as_of: Option<DateTime<Utc>>,
    pub idempotency_retention: chrono::Duration,
    pub audit_retention: chrono::Duration,
    pub change_retention: chrono::Duration,
    pub expiry_notice: chrono::Duration,
    pub undelivered_report: chrono::Duration,
    pub batch_pause: Duration,
    pub progress_every: Duration,
    pub session: SessionOptions,
}

impl Cli {
    /// Parses the flags and checks what clap cannot express.
    pub fn try_parse_checked<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args)?;
        // Checked here rather than by clap, whose message would quote the URL and its password.
        if let Err(e) = callers_store::ConnSettings::parse(cli.database_url.expose()) {
            let e = e.to_string();
            let detail = e.strip_prefix("invalid database url: ").unwrap_or(&e);
            return Err(Cli::command().error(
                ErrorKind::ValueValidation,
                format!("--database-url is not a PostgreSQL URL: {detail}"),
            ));
        }
        if let Some(url) = &cli.pushgateway_url
            && !url.starts_with("http://")
        {
            return Err(Cli::command().error(
                ErrorKind::ValueValidation,
                "--pushgateway-url must be an http:// URL",
            ));
        }
        if cli.as_of.is_some() && !cli.dry_run {
            // A real run always evaluates the rule at now: deleting "as of" another day would
            // delete contacts that are not due yet.
            return Err(Cli::command().error(
                ErrorKind::ArgumentConflict,
                "--as-of is allowed only with --dry-run",
            ));
        }
        Ok(cli)
    }

    pub fn settings(&self) -> Settings {
        Settings {
            database_url: self.database_url.clone(),
            retention: self.retention_days,
            batch_size: self.batch_size,
            dry_run: self.dry_run,
            as_of: self.as_of,
            idempotency_retention: chrono::Duration::hours(i64::from(
                self.idempotency_retention_hours,
            )),
            audit_retention: chrono::Duration::days(i64::from(self.audit_retention_days)),
            change_retention: chrono::Duration::days(i64::from(self.change_retention_days)),
            expiry_notice: chrono::Duration::days(i64::from(self.expiry_notice_days)),
            undelivered_report: chrono::Duration::days(i64::from(self.undelivered_report_days)),
            batch_pause: Duration::from_millis(self.batch_pause_ms),
            progress_every: Duration::from_secs(self.progress_secs),
            session: SessionOptions {
                connect_timeout: Duration::from_secs(self.connect_timeout_secs),
                statement_timeout: Duration::from_secs(self.statement_timeout_secs),
            },
        }
    }
}

/// A flag error as one line, for a log collector as much as for a person: clap's message up
/// to its usage block, with the lines of a list joined.
pub fn usage_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let head = text.split("\n\n").next().unwrap_or_default();
    let line = head
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    line.strip_prefix("error: ").unwrap_or(&line).to_owned()
}

fn retention(s: &str) -> Result<Retention, String> {
    let days: u32 = s
        .parse()
        .map_err(|_| "retention must be a whole number of days".to_owned())?;
    Retention::days(days)
}

fn rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time such as 2026-03-01T00:00:00Z ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut all = vec!["callers-purge", "--database-url", "postgres://x@h/db"];
        all.extend_from_slice(args);
        Cli::try_parse_checked(all)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = parse(&[]).unwrap().settings();
        assert_eq!(s.retention.as_days(), 180);
        assert_eq!(s.batch_size, 500);
        assert!(!s.dry_run);
        assert_eq!(s.idempotency_retention, chrono::Duration::hours(48));
        assert_eq!(s.audit_retention, chrono::Duration::days(365));
    }

    #[test]
    fn invalid_flags_are_one_line_errors() {
        for args in [
            &["--retention-days", "0"][..],
            &["--batch-size", "0"],
            &["--as-of", "2026-03-01T00:00:00Z"],
            &["--dry-run", "--as-of", "yesterday"],
            &["--idempotency-retention-hours", "23"],
            &["--no-such-flag"],
        ] {
            let e = parse(args).expect_err(&format!("{args:?}"));
            let line = usage_error_line(&e);
            assert!(!line.contains('\n') && !line.is_empty(), "{line}");
            assert!(!line.starts_with("error:"), "{line}");
        }
        let e = Cli::try_parse_checked([
            "callers-purge",
            "--database-url",
            "postgres://u:hunter2@h:port/db",
        ])
        .unwrap_err();
        let line = usage_error_line(&e);
        assert!(
            line.starts_with("--database-url is not a PostgreSQL URL"),
            "{line}"
        );
        assert!(!line.contains("hunter2"), "{line}");
        let e = parse(&["--as-of", "2026-03-01T00:00:00Z"]).unwrap_err();
        assert_eq!(
            usage_error_line(&e),
            "--as-of is allowed only with --dry-run"
        );
        let ok = parse(&["--dry-run", "--as-of", "2026-03-01T02:00:00+02:00"]).unwrap();
        assert_eq!(ok.as_of.unwrap().to_rfc3339(), "2026-03-01T00:00:00+00:00");
        if std::env::var_os("DATABASE_URL").is_some() {
            return;
        }
        let e = Cli::try_parse_checked(["callers-purge"]).unwrap_err();
        assert_eq!(
            usage_error_line(&e),
            "the following required arguments were not provided: --database-url <DATABASE_URL>"
        );
    }

    #[test]
    fn the_database_url_never_prints() {
        let s = parse(&[]).unwrap().settings();
        assert!(!format!("{s:?}").contains("postgres://"));
    }
}
