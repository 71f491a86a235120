//! Evidence of what holds a write for seconds, gathered while a run goes on: the wait events
//! of the server's backends sampled from `pg_stat_activity`, the lock waits PostgreSQL logs
//! (`log_lock_waits`, `deadlock_timeout` lowered for the run), and the WAL, checkpointer and
//! background writer's work over the run.

use crate::db::{self, Db};
use crate::load::Stats;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio_postgres::Client;

/// How often `pg_stat_activity` is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// What the server calls its connections (`callers_store::pool`).
const SERVER_APPLICATION: &str = "callers";
/// Lock waits longer than this are logged during a watched run.
const DEADLOCK_TIMEOUT: &str = "100ms";
/// Log lines kept verbatim as examples.
const EXAMPLES: usize = 3;

#[derive(Debug, Clone, Default, Serialize)]
pub struct StallReport {
    /// Reads of pg_stat_activity during the run.
    pub samples: u64,
    pub sample_interval_ms: f64,
    /// The most server backends seen at once.
    pub server_backends_max: u64,
    /// Samples in which every server backend was busy (the server's pool was saturated, so its
    /// calls queued for a connection).
    pub all_busy_samples: u64,
    /// Backend-samples per state and wait event (`active Lock:transactionid`, `idle
    /// Client:ClientRead`, `active` for running on a CPU), most frequent first.
    pub wait_events: Vec<(String, u64)>,
    /// Whether the lock-wait counts below were taken (they need the private cluster's log).
    pub lock_log: bool,
    /// "still waiting for" lines logged during the run: lock waits over deadlock_timeout.
    pub lock_waits_logged: u64,
    /// The longest wait of an "acquired … after N ms" line, in ms.
    pub longest_lock_wait_ms: f64,
    pub deadlocks_logged: u64,
    /// "checkpoint starting" lines logged during the run.
    pub checkpoints_logged: u64,
    /// A few lock-wait and checkpoint lines, verbatim.
    pub log_examples: Vec<String>,
    /// WAL written during the run (pg_current_wal_lsn before and after), bytes.
    pub wal_bytes: f64,
    /// Differences over the run of every numeric column of pg_stat_wal, pg_stat_bgwriter and
    /// (PostgreSQL 17+) pg_stat_checkpointer, as `view.column`. Backends flush their share of
    /// these at most every second, so the last second may be missing.
    pub deltas: Vec<(String, f64)>,
}

impl StallReport {
    /// A delta by its name (0 when the server's version has no such column).
    pub fn delta(&self, name: &str) -> f64 {
        self.deltas
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, v)| *v)
    }

    /// Checkpoints over the run, by the counters of any PostgreSQL version.
    pub fn checkpoints(&self) -> f64 {
        self.delta("pg_stat_bgwriter.checkpoints_timed")
            + self.delta("pg_stat_bgwriter.checkpoints_req")
            + self.delta("pg_stat_checkpointer.num_timed")
            + self.delta("pg_stat_checkpointer.num_requested")
    }
}

/// Watches runs on one database of `db`.
pub struct Probe {
    url: String,
    database: String,
    log: Option<PathBuf>,
}

impl Probe {
    pub fn new(db: &Db, database: &str) -> Probe {
        Probe {
            url: db.url_for(database),
            database: database.to_owned(),
            log: db.log_file(),
        }
    }

    /// Runs `run` while watching, and puts what was seen into its [`Stats::stalls`].
    pub async fn around(&self, run: impl Future<Output = Stats>) -> anyhow::Result<Stats> {
        let admin = db::connect(&self.url).await?;
        if self.log.is_some() {
            set_lock_logging(&admin, true).await?;
        }
        let log_offset = self
            .log
            .as_ref()
            .and_then(|l| std::fs::metadata(l).ok())
            .map_or(0, |m| m.len());
        let lsn_before: String = admin
            .query_one("SELECT pg_current_wal_lsn()::text AS lsn", &[])
            .await?
            .get("lsn");
        let before = counters(&admin).await?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let sampler = tokio::spawn(sample(
            db::connect(&self.url).await?,
            self.database.clone(),
            stop_rx,
        ));
        let mut stats = run.await;
        let _ = stop_tx.send(true);
        let mut report = sampler.await??;
        let after = counters(&admin).await?;
        report.wal_bytes = admin
            .query_one(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8 AS d",
                &[&lsn_before],
            )
            .await?
            .get("d");
        report.deltas = after
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v - before.get(k)?)))
            .collect();
        if let Some(log) = &self.log {
            set_lock_logging(&admin, false).await?;
            read_log(log, log_offset, &mut report);
        }
        stats.stalls = Some(report);
        Ok(stats)
    }
}

/// Undoes the lock-wait logging a watched run of an interrupted invocation left switched on in
/// the private cluster, so no other run meets its short deadlock_timeout.
pub async fn clear_leftovers(db: &Db) -> anyhow::Result<()> {
    if db.log_file().is_some() {
        set_lock_logging(&db.admin().await?, false).await?;
    }
    Ok(())
}

/// Turns lock-wait logging with a short deadlock_timeout on or off (back to the server's
/// configuration), for the whole cluster; both take effect on reload.
async fn set_lock_logging(admin: &Client, on: bool) -> anyhow::Result<()> {
    // One statement each: ALTER SYSTEM refuses to run in a transaction block.
    let statements = if on {
        [
            "ALTER SYSTEM SET log_lock_waits = on".to_owned(),
            format!("ALTER SYSTEM SET deadlock_timeout = '{DEADLOCK_TIMEOUT}'"),
        ]
    } else {
        [
            "ALTER SYSTEM RESET log_lock_waits".to_owned(),
            "ALTER SYSTEM RESET deadlock_timeout".to_owned(),
        ]
    };
    for sql in statements
        .iter()
        .map(String::as_str)
        .chain(["SELECT pg_reload_conf()"])
    {
        admin.batch_execute(sql).await?;
    }
    // Backends read the configuration between statements; give the signal a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// Every numeric column of the cluster-wide statistics views this server has.
async fn counters(admin: &Client) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for view in ["pg_stat_wal", "pg_stat_bgwriter", "pg_stat_checkpointer"] {
        let exists: bool = admin
            .query_one("SELECT to_regclass($1) IS NOT NULL AS e", &[&view])
            .await?
            .get("e");
        if !exists {
            continue;
        }
        let row = admin
            .query_one(&format!("SELECT to_jsonb(v)::text AS j FROM {view} v"), &[])
            .await?;
        let json: serde_json::Value = serde_json::from_str(row.get("j"))?;
        if let Some(map) = json.as_object() {
            for (k, v) in map {
                if let Some(n) = v.as_f64() {
                    out.insert(format!("{view}.{k}"), n);
                }
            }
        }
    }
    Ok(out)
}

/// Reads the server's backends in `database` every [`SAMPLE_EVERY`] until told to stop.
async fn sample(
    client: Client,
    database: String,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<StallReport> {
    let stmt = client
        .prepare(
            "SELECT state, wait_event_type, wait_event FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = $2 AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend'",
        )
        .await?;
    let mut report = StallReport {
        sample_interval_ms: SAMPLE_EVERY.as_secs_f64() * 1000.0,
        ..Default::default()
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let rows = client
            .query(&stmt, &[&database, &SERVER_APPLICATION])
            .await?;
        report.samples += 1;
        report.server_backends_max = report.server_backends_max.max(rows.len() as u64);
        let mut busy = 0;
        for r in &rows {
            let state: Option<String> = r.get("state");
            let state = state.unwrap_or_else(|| "?".into());
            if state != "idle" {
                busy += 1;
            }
            let kind: Option<String> = r.get("wait_event_type");
            let event: Option<String> = r.get("wait_event");
            let key = match (kind, event) {
                (Some(k), Some(e)) => format!("{state} {k}:{e}"),
                _ => state,
            };
            *counts.entry(key).or_default() += 1;
        }
        if !rows.is_empty() && busy == rows.len() {
            report.all_busy_samples += 1;
        }
    }
    let mut events: Vec<(String, u64)> = counts.into_iter().collect();
    events.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    report.wait_events = events;
    Ok(report)
}

/// Counts lock waits, deadlocks and checkpoints in what the server logged from `offset` on.
fn read_log(log: &std::path::Path, offset: u64, report: &mut StallReport) {
    report.lock_log = true;
    let Ok(bytes) = std::fs::read(log) else {
        report.lock_log = false;
        return;
    };
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    for line in text.lines() {
        let example = if line.contains("still waiting for") {
            report.lock_waits_logged += 1;
            true
        } else if line.contains(" acquired ") && line.contains(" after ") {
            if let Some(ms) = waited_ms(line) {
                report.longest_lock_wait_ms = report.longest_lock_wait_ms.max(ms);
            }
            false
        } else if line.contains("deadlock detected") {
            report.deadlocks_logged += 1;
            true
        } else if line.contains("checkpoint starting") {
            report.checkpoints_logged += 1;
            true
        } else {
            line.contains("checkpoint complete")
        };
        if example && report.log_examples.len() < EXAMPLES {
            report.log_examples.push(line.trim().to_owned());
        }
    }
}

/// `… acquired ShareLock on transaction 7 after 2345.678 ms` → 2345.678.
fn waited_ms(line: &str) -> Option<f64> {
    let rest = line.rsplit_once(" after ")?.1;
    rest.trim().strip_suffix("ms")?.trim().parse().ok()
}

/// A compact table of the watched runs under `title`: tail latency beside what the backends
/// waited for.
pub fn markdown(title: &str, runs: &[&Stats]) -> String {
    let watched: Vec<(&Stats, &StallReport)> = runs
        .iter()
        .filter_map(|s| Some((*s, s.stalls.as_ref()?)))
        .collect();
    if watched.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n{title}\n\nServer backends sampled every {:.0} ms in pg_stat_activity; lock \
         waits over {DEADLOCK_TIMEOUT} as logged (log_lock_waits); WAL and checkpoints over the \
         run.\n\n\
         | run | clients | p99 ms | p99.9 ms | max ms | busy backends: top states and waits (share) | \
         pool all busy | lock waits logged (longest ms) | checkpoints | WAL MB | WAL syncs |\n\
         |---|---|---|---|---|---|---|---|---|---|---|",
        watched[0].1.sample_interval_ms
    );
    for (st, r) in watched {
        // Idle pool connections are most samples and say nothing about a stall.
        let busy: Vec<&(String, u64)> = r
            .wait_events
            .iter()
            .filter(|(k, _)| k != "idle" && !k.starts_with("idle Client:"))
            .collect();
        let total: u64 = busy.iter().map(|(_, n)| n).sum();
        let top: Vec<String> = busy
            .iter()
            .take(3)
            .map(|(k, n)| format!("{k} {:.0} %", *n as f64 * 100.0 / total.max(1) as f64))
            .collect();
        let clients = match st.rate {
            Some(rate) => format!("{rate:.0}/s paced"),
            None => st.concurrency.to_string(),
        };
        let _ = writeln!(
            s,
            "| {} | {clients} | {:.2} | {:.2} | {:.2} | {} | {} of {} | {} | {:.0} | {:.1} | {:.0} |",
            st.name,
            st.latency.p99_ms,
            st.latency.p999_ms,
            st.latency.max_ms,
            top.join(", "),
            r.all_busy_samples,
            r.samples,
            if r.lock_log {
                format!("{} ({:.0})", r.lock_waits_logged, r.longest_lock_wait_ms)
            } else {
                "not read".into()
            },
            r.checkpoints(),
            r.wal_bytes / 1e6,
            r.delta("pg_stat_wal.wal_sync"),
        );
    }
    for (st, r) in runs
        .iter()
        .filter_map(|s| Some((*s, s.stalls.as_ref()?)))
        .filter(|(_, r)| !r.log_examples.is_empty())
    {
        let _ = writeln!(s, "\n{} ({} clients), logged:\n", st.name, st.concurrency);
        for l in &r.log_examples {
            let _ = writeln!(s, "    {l}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_of_an_acquired_lock_is_read_from_its_log_line() {
        let line = "2026-12-03 08:40:01.123 UTC [4242] LOG:  process 4242 acquired ShareLock on \
                    transaction 7791 after 2345.678 ms";
        assert_eq!(waited_ms(line), Some(2345.678));
        assert_eq!(waited_ms("LOG:  checkpoint starting: time"), None);
    }
}
