//! The purge benchmark: N due contacts among 2N (or `--purge-table-factor` × N), on identical
//! copies of one seeded database
//! (`CREATE DATABASE … TEMPLATE`):
//!
//! 1. copy W: the `callers-purge` binary alone, its batches timed by watching `purge_runs`;
//!    with `--baseline-purge-bin`, copy B: that build of the worker alone, timed the same way;
//! 2. copy D: one bare `DELETE` of the same rows (the worker's cutoff), nothing else running;
//! 3. copy L: a server on it, identify-by-number at a fixed rate without the purge, then the
//!    same load beside each of two controls — one PostgreSQL backend spinning in a loop that
//!    reads nothing (what any busy process costs the lookups on this machine), one writing a
//!    table nobody reads (what any writer costs them) — then while the worker runs.

use crate::db::{self, Db};
use crate::load::{self, Pace, Stats};
use crate::scenarios;
use crate::seed::{self, SeedReport, SeedSpec};
use crate::server::Server;
use anyhow::{Context, bail};
use callers_testkit::process::Launch;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

pub struct PurgeOptions {
    pub n: u64,
    /// The table holds `one_in` × N contacts (2: N due among 2N).
    pub one_in: u64,
    pub batch_size: u32,
    pub lookup_rate: f64,
    pub lookup_secs: f64,
    pub max_in_flight: usize,
    pub connections: usize,
    pub seed: u64,
    pub reseed: bool,
    pub server_bin: PathBuf,
    /// `--server-arg`s, as the load benchmark passes them.
    pub server_args: Vec<String>,
    pub purge_bin: PathBuf,
    /// Another build of the worker (the one before a change), run alone on a copy of its own.
    pub baseline_purge_bin: Option<PathBuf>,
    pub log_dir: PathBuf,
    pub keep_copies: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerRun {
    pub outcome: String,
    /// The worker's own figure (its summary's `elapsed_secs`: lock to summary).
    pub elapsed_secs: f64,
    /// Process start to exit, as seen from here.
    pub wall_secs: f64,
    pub batches: u64,
    pub deleted: u64,
    pub cutoff_time: Option<DateTime<Utc>>,
    /// Batches as observed by polling `purge_runs.deleted` every 2 ms: the time between two
    /// successive changes is one batch (plus at most the poll interval).
    pub observed_batches: usize,
    pub longest_batch_ms: f64,
    /// The first batch alone: it also meets the copy's cold caches and plans the statements.
    pub first_batch_ms: f64,
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    pub seed: SeedReport,
    pub n: u64,
    pub batch_size: u32,
    pub worker_alone: WorkerRun,
    /// The baseline build of the worker alone, on its own copy.
    pub baseline_alone: Option<WorkerRun>,
    pub bare_delete_secs: f64,
    pub bare_delete_rows: u64,
    /// bare DELETE time ÷ worker time: the worker's speed relative to the bare DELETE.
    pub speed_ratio: f64,
    /// bare DELETE time ÷ baseline worker time.
    pub baseline_speed_ratio: Option<f64>,
    pub lookups_without: Stats,
    /// The control: the same lookups while one backend loops without touching any table.
    pub lookups_busy_backend: Stats,
    /// The second control: the same lookups while one backend writes a table nobody reads.
    pub lookups_writing_backend: Stats,
    pub lookups_during: Stats,
    pub worker_under_load: WorkerRun,
    pub p99_ratio: f64,
    /// p99 with the busy backend ÷ p99 without.
    pub busy_backend_p99_ratio: f64,
    /// p99 with the writing backend ÷ p99 without.
    pub writing_backend_p99_ratio: f64,
    /// WAL of the worker alone and of the bare DELETE: what their time follows.
    pub worker_alone_wal: WalUse,
    pub bare_delete_wal: WalUse,
    /// Heap pages of `contacts` holding due rows, and all of its pages: how densely the rows
    /// to delete lie (each page touched is written and, after a checkpoint, logged whole).
    pub due_pages: i64,
    pub table_pages: i64,
}

/// WAL written by one run alone (the cluster runs nothing else meanwhile).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WalUse {
    pub bytes: f64,
    /// Full-page images (`pg_stat_wal.wal_fpi`): pages logged whole on their first change
    /// after a checkpoint (with full_page_writes on).
    pub full_page_images: f64,
}

/// The WAL position and full-page-image count now, to measure a run from.
async fn wal_mark(db: &Db) -> anyhow::Result<(String, f64)> {
    let c = db.admin().await?;
    let r = c
        .query_one(
            "SELECT pg_current_wal_lsn()::text AS lsn, \
             (SELECT wal_fpi FROM pg_stat_wal)::float8 AS fpi",
            &[],
        )
        .await?;
    Ok((r.get("lsn"), r.get("fpi")))
}

/// The WAL since `mark`; backends flush their statistics when they end or at most every
/// second, so this waits that long first.
async fn wal_since(db: &Db, mark: &(String, f64)) -> anyhow::Result<WalUse> {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = db.admin().await?;
    let r = c
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8 AS bytes, \
             (SELECT wal_fpi FROM pg_stat_wal)::float8 AS fpi",
            &[&mark.0],
        )
        .await?;
    Ok(WalUse {
        bytes: r.get("bytes"),
        full_page_images: r.get::<_, f64>("fpi") - mark.1,
    })
}

/// A PL/pgSQL loop that keeps one backend on a CPU, with no I/O, no lock and no table, until
/// it is cancelled.
const SPIN: &str = "DO $$ DECLARE i bigint := 0; BEGIN LOOP i := i + 1; END LOOP; END $$";

/// A loop that writes as a purge does, committing every few hundred rows (WAL, dirty buffers,
/// dead tuples), to a table no lookup reads, until it is cancelled; the table stays a few
/// pages long. On its own in the query so that it may commit.
const WRITE: &str = "DO $$ BEGIN \
       CREATE TABLE bench_scratch (id int, pad text); COMMIT; \
       LOOP \
         INSERT INTO bench_scratch SELECT g, repeat('x', 200) FROM generate_series(1, 500) g; \
         COMMIT; \
         DELETE FROM bench_scratch; COMMIT; \
       END LOOP; \
     END $$";

const POLL: Duration = Duration::from_millis(2);

/// Runs `callers-purge` on `url` to the end, timing its batches.
async fn run_worker(
    bin: &Path,
    url: &str,
    batch_size: u32,
    log: &Path,
) -> anyhow::Result<WorkerRun> {
    let poll = db::connect(url).await?;
    let stmt = poll
        .prepare(
            "SELECT coalesce(max(deleted), -1) AS deleted FROM purge_runs \
             WHERE outcome = 'running'",
        )
        .await?;
    let err = std::fs::File::create(log)?;
    let started = Instant::now();
    let mut child = Launch::new(bin)
        .inherit_env()
        .env_remove("DATABASE_URL")
        .database(url)
        .args([
            "--batch-size",
            &batch_size.to_string(),
            "--log-format",
            "json",
        ])
        .command()
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s).await;
        s
    });
    let deadline = started + Duration::from_secs(3600);
    let mut changes: Vec<Instant> = Vec::new();
    let mut last = -1i64;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            child.start_kill()?;
            bail!("callers-purge ran for more than an hour");
        }
        if let Ok(row) = poll.query_one(&stmt, &[]).await {
            let v: i64 = row.get("deleted");
            if v >= 0 && v != last {
                changes.push(Instant::now());
                last = v;
            }
        }
        tokio::time::sleep(POLL).await;
    };
    let wall_secs = started.elapsed().as_secs_f64();
    let out = reader.await.unwrap_or_default();
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| {
            format!(
                "callers-purge ({status}) printed no summary; log {}",
                log.display()
            )
        })?;
    let summary: serde_json::Value = serde_json::from_str(line)?;
    let mut batches_ms: Vec<f64> = changes
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1000.0)
        .collect();
    let first_batch_ms = batches_ms.first().copied().unwrap_or(0.0);
    batches_ms.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| -> f64 {
        if batches_ms.is_empty() {
            return 0.0;
        }
        let i = ((batches_ms.len() as f64 * p).ceil() as usize).clamp(1, batches_ms.len()) - 1;
        batches_ms[i]
    };
    let run = WorkerRun {
        outcome: summary["outcome"].as_str().unwrap_or("?").to_owned(),
        elapsed_secs: summary["elapsed_secs"].as_f64().unwrap_or(f64::NAN),
        wall_secs,
        batches: summary["batches"].as_u64().unwrap_or(0),
        deleted: summary["deleted"].as_u64().unwrap_or(0),
        cutoff_time: summary["cutoff_time"]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc)),
        observed_batches: batches_ms.len(),
        longest_batch_ms: batches_ms.last().copied().unwrap_or(0.0),
        first_batch_ms,
        batch_p50_ms: q(0.5),
        batch_p99_ms: q(0.99),
    };
    if run.outcome != "succeeded" {
        bail!(
            "callers-purge ended {} ({status}); log {}",
            run.outcome,
            log.display()
        );
    }
    Ok(run)
}

pub async fn run(db: &Db, base: &str, o: &PurgeOptions) -> anyhow::Result<PurgeReport> {
    // One seed per table size, so each is reused.
    let template = match o.one_in {
        2 => format!("{base}_purge"),
        k => format!("{base}_purge_1in{k}"),
    };
    let spec = SeedSpec::due(o.n, o.one_in, o.seed);
    let seeded = seed::ensure(db, &template, &spec, o.reseed).await?;
    let n = spec.contacts / o.one_in.max(2);
    let mut copies = vec![
        format!("{template}_w"),
        format!("{template}_d"),
        format!("{template}_l"),
    ];
    if o.baseline_purge_bin.is_some() {
        copies.push(format!("{template}_b"));
    }
    for c in &copies {
        db.copy(&template, c).await?;
    }

    // 1. The worker alone.
    eprintln!("purge: worker alone on {}", copies[0]);
    let mark = wal_mark(db).await?;
    let alone = run_worker(
        &o.purge_bin,
        &db.url_for(&copies[0]),
        o.batch_size,
        &o.log_dir.join("purge-alone.log"),
    )
    .await?;
    let worker_alone_wal = wal_since(db, &mark).await?;
    let cutoff = alone
        .cutoff_time
        .context("the worker's summary has no cutoff_time")?;
    let baseline_alone = match &o.baseline_purge_bin {
        Some(bin) => {
            eprintln!("purge: baseline worker alone on {}", copies[3]);
            let run = run_worker(
                bin,
                &db.url_for(&copies[3]),
                o.batch_size,
                &o.log_dir.join("purge-baseline.log"),
            )
            .await?;
            if run.deleted != alone.deleted {
                bail!(
                    "the baseline worker deleted {} contacts, this build {}",
                    run.deleted,
                    alone.deleted
                );
            }
            Some(run)
        }
        None => None,
    };

    // 2. One bare DELETE of the same rows.
    eprintln!("purge: bare DELETE on {}", copies[1]);
    let c = db::connect(&db.url_for(&copies[1])).await?;
    c.batch_execute("SET statement_timeout = 0").await?;
    let pages = c
        .query_one(
            "SELECT (SELECT count(DISTINCT (ctid::text::point)[0]) FROM contacts \
                     WHERE purge_candidate AND last_activity_time < $1) AS due, \
                    pg_relation_size('contacts') / current_setting('block_size')::bigint AS total",
            &[&cutoff],
        )
        .await?;
    let (due_pages, table_pages): (i64, i64) = (pages.get("due"), pages.get("total"));
    let mark = wal_mark(db).await?;
    let t = Instant::now();
    let rows = c
        .execute(
            "DELETE FROM contacts WHERE purge_candidate AND last_activity_time < $1",
            &[&cutoff],
        )
        .await?;
    let bare_delete_secs = t.elapsed().as_secs_f64();
    drop(c);
    let bare_delete_wal = wal_since(db, &mark).await?;

    // 3. Lookups at a fixed rate, without and then during a purge.
    eprintln!(
        "purge: lookups without and during the purge on {}",
        copies[2]
    );
    let url = db.url_for(&copies[2]);
    let server = Server::start(&o.server_bin, &url, &o.log_dir, &o.server_args).await?;
    let result = async {
        let client = db::connect(&url).await?;
        let samples = Arc::new(scenarios::number_samples(&client, 5_000, 0.1, o.seed).await?);
        drop(client);
        let channels = scenarios::channels(&server.addr, o.connections).await?;
        let driver = scenarios::identify_by_number(channels, samples);
        let never = watch::channel(false);
        // Warm-up, not counted.
        load::paced(
            "warm-up",
            Pace {
                rate: o.lookup_rate,
                max_in_flight: o.max_in_flight,
                max: Duration::from_secs(2),
            },
            o.seed,
            driver.clone(),
            never.1.clone(),
            Some(&server),
        )
        .await;
        let pace = Pace {
            rate: o.lookup_rate,
            max_in_flight: o.max_in_flight,
            max: Duration::from_secs_f64(o.lookup_secs),
        };
        let without = load::paced(
            "identify_by_number paced, no purge",
            pace,
            o.seed,
            driver.clone(),
            never.1.clone(),
            Some(&server),
        )
        .await;
        let busy = beside(
            &url,
            SPIN,
            "one busy backend",
            pace,
            o.seed + 2,
            &driver,
            &server,
        );
        let busy = busy.await?;
        let writing = beside(
            &url,
            WRITE,
            "one writing backend",
            pace,
            o.seed + 3,
            &driver,
            &server,
        );
        let writing = writing.await?;
        db::connect(&url)
            .await?
            .batch_execute("DROP TABLE bench_scratch")
            .await?;
        let (done_tx, done_rx) = watch::channel(false);
        let bin = o.purge_bin.clone();
        let log = o.log_dir.join("purge-under-load.log");
        let purge_url = url.clone();
        let batch = o.batch_size;
        let worker = tokio::spawn(async move {
            let r = run_worker(&bin, &purge_url, batch, &log).await;
            let _ = done_tx.send(true);
            r
        });
        let during = load::paced(
            "identify_by_number paced, during purge",
            Pace {
                rate: o.lookup_rate,
                max_in_flight: o.max_in_flight,
                max: Duration::from_secs(3600),
            },
            o.seed + 1,
            driver,
            done_rx,
            Some(&server),
        )
        .await;
        let loaded = worker.await??;
        anyhow::Ok((without, busy, writing, during, loaded))
    }
    .await;
    server.stop().await?;
    let (without, busy, writing, during, loaded) = result?;
    if !o.keep_copies {
        for c in &copies {
            db.drop_database(c).await?;
        }
    }
    let report = PurgeReport {
        seed: seeded,
        n,
        batch_size: o.batch_size,
        speed_ratio: bare_delete_secs / alone.elapsed_secs.max(1e-9),
        baseline_speed_ratio: baseline_alone
            .as_ref()
            .map(|b| bare_delete_secs / b.elapsed_secs.max(1e-9)),
        worker_alone: alone,
        baseline_alone,
        bare_delete_secs,
        bare_delete_rows: rows,
        p99_ratio: during.latency.p99_ms / without.latency.p99_ms.max(1e-9),
        busy_backend_p99_ratio: busy.latency.p99_ms / without.latency.p99_ms.max(1e-9),
        writing_backend_p99_ratio: writing.latency.p99_ms / without.latency.p99_ms.max(1e-9),
        lookups_without: without,
        lookups_busy_backend: busy,
        lookups_writing_backend: writing,
        lookups_during: during,
        worker_under_load: loaded,
        worker_alone_wal,
        bare_delete_wal,
        due_pages,
        table_pages,
    };
    Ok(report)
}

/// The lookups at `pace` while one more backend runs `control` (a loop) on `url`; the loop is
/// cancelled when they end, and must not have ended before.
async fn beside(
    url: &str,
    control: &'static str,
    what: &str,
    pace: Pace,
    seed: u64,
    driver: &load::Driver,
    server: &Server,
) -> anyhow::Result<Stats> {
    let backend = db::connect(url).await?;
    backend.batch_execute("SET statement_timeout = 0").await?;
    let cancel = backend.cancel_token();
    let running = tokio::spawn(async move { backend.batch_execute(control).await });
    let never = watch::channel(false);
    let name = format!("identify_by_number paced, {what}");
    let stats = load::paced(&name, pace, seed, driver.clone(), never.1, Some(server)).await;
    cancel.cancel_query(tokio_postgres::NoTls).await?;
    if running.await?.is_ok() {
        bail!("the control loop ({what}) ended before it was cancelled");
    }
    Ok(stats)
}
