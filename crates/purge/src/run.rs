//! One run of the purge: lock, batches, housekeeping, and the summary of what happened.

use crate::config::Settings;
use anyhow::Context;
use callers_domain::Clock;
use callers_runtime::telemetry;
use callers_store::purge::{self, Chore, PurgeLock, PurgeSession, RunOutcome, RunPlan};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

/// How the run ended; the exit code follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Another run holds the lock: nothing to do.
    Skipped,
    /// Stopped by SIGTERM/SIGINT after a committed batch; the next run continues.
    Interrupted,
    Failed,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Succeeded | Outcome::Skipped => 0,
            Outcome::Failed => 1,
            Outcome::Interrupted => 3,
        }
    }
}

/// The final line on stdout: ids, counts and times only.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub outcome: Outcome,
    /// The `purge_runs` row; none for dry runs and skipped runs, which record nothing.
    pub run_id: Option<Uuid>,
    pub dry_run: bool,
    pub retention_days: u32,
    /// The time the rule was evaluated at.
    pub as_of: Option<DateTime<Utc>>,
    pub cutoff_time: Option<DateTime<Utc>>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub elapsed_secs: f64,
    pub batches: u64,
    pub deleted: u64,
    pub deleted_by_account: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_delete: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_delete_by_account: Option<BTreeMap<String, u64>>,
    /// Per housekeeping chore, `<name>_deleted`: the rows it worked on.
    #[serde(flatten)]
    pub housekept: BTreeMap<String, u64>,
    /// A dry run's counts per chore, `<name>`: the rows a run would work on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub would_housekeep: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Summary {
    #[cfg(test)]
    pub fn for_tests(settings: &Settings) -> Self {
        Self::new(settings, Utc::now())
    }

    fn new(settings: &Settings, start_time: DateTime<Utc>) -> Self {
        Self {
            outcome: Outcome::Failed,
            run_id: None,
            dry_run: settings.dry_run,
            retention_days: settings.retention.as_days(),
            as_of: None,
            cutoff_time: None,
            start_time,
            end_time: start_time,
            elapsed_secs: 0.0,
            batches: 0,
            deleted: 0,
            deleted_by_account: BTreeMap::new(),
            would_delete: None,
            would_delete_by_account: None,
            housekept: housekeeping(settings)
                .iter()
                .map(|(chore, _)| (done_key(chore), 0))
                .collect(),
            would_housekeep: None,
            error: None,
        }
    }

    fn planned(&mut self, plan: &RunPlan) {
        // The start `purge_runs` records.
        self.start_time = plan.start_time;
        self.as_of = Some(plan.as_of);
        self.cutoff_time = Some(plan.cutoff);
    }
}

/// Runs once; never fails, the summary says how it went. `stop` turns true on SIGTERM.
pub async fn run(settings: &Settings, clock: &dyn Clock, stop: watch::Receiver<bool>) -> Summary {
    let started = Instant::now();
    let mut summary = Summary::new(settings, clock.now());
    let span = telemetry::span(|| {
        tracing::info_span!(
            "purge run",
            dry_run = settings.dry_run,
            outcome = tracing::field::Empty,
            deleted = tracing::field::Empty,
        )
    });
    let result = if settings.dry_run {
        dry_run(settings, clock, &mut summary)
            .instrument(span.clone())
            .await
    } else {
        purge(settings, clock, stop, &mut summary)
            .instrument(span.clone())
            .await
    };
    match result {
        Ok(outcome) => summary.outcome = outcome,
        Err(e) => {
            summary.outcome = Outcome::Failed;
            summary.error = Some(error_line(&e));
        }
    }
    summary.end_time = clock.now();
    summary.elapsed_secs = started.elapsed().as_millis() as f64 / 1000.0;
    span.record("outcome", format!("{:?}", summary.outcome).to_lowercase());
    span.record("deleted", summary.deleted);
    summary
}

async fn dry_run(
    settings: &Settings,
    clock: &dyn Clock,
    summary: &mut Summary,
) -> anyhow::Result<Outcome> {
    let session = PurgeSession::connect(settings.database_url.expose(), &settings.session).await?;
    let plan = RunPlan::new(
        Uuid::now_v7(),
        clock.now(),
        settings.as_of,
        settings.retention,
    );
    summary.planned(&plan);
    let due = session
        .count_due(plan.cutoff)
        .await
        .context("counting due contacts")?;
    let mut would = BTreeMap::new();
    for (chore, keep) in housekeeping(settings) {
        let n = session
            .count_chore(&chore, plan.as_of - keep)
            .await
            .with_context(|| format!("counting {}", chore.name))?;
        would.insert(chore.name.to_owned(), n);
    }
    session.close().await;
    summary.would_delete = Some(due.values().sum());
    summary.would_delete_by_account = Some(due);
    summary.would_housekeep = Some(would);
    Ok(Outcome::Succeeded)
}

async fn purge(
    settings: &Settings,
    clock: &dyn Clock,
    mut stop: watch::Receiver<bool>,
    summary: &mut Summary,
) -> anyhow::Result<Outcome> {
    let session = PurgeSession::connect(settings.database_url.expose(), &settings.session).await?;
    let Some(lock) = session.try_lock().await.context("taking the purge lock")? else {
        tracing::info!("another purge run holds the lock; nothing to do");
        return Ok(Outcome::Skipped);
    };
    let plan = RunPlan::new(Uuid::now_v7(), clock.now(), None, settings.retention);
    summary.planned(&plan);
    let abandoned = lock
        .close_abandoned_runs()
        .await
        .context("closing abandoned runs")?;
    if !abandoned.is_empty() {
        let runs: Vec<String> = abandoned.iter().map(Uuid::to_string).collect();
        tracing::warn!(
            runs = runs.join(","),
            "marked runs that ended without recording an outcome as failed"
        );
    }
    lock.start_run(&plan).await.context("recording the run")?;
    summary.run_id = Some(plan.run_id);
    tracing::info!(
        run_id = %plan.run_id,
        cutoff = %plan.cutoff.to_rfc3339(),
        retention_days = plan.retention.as_days(),
        batch_size = settings.batch_size,
        "purge started"
    );

    let worked = work(&lock, &plan, settings, clock, &mut stop, summary).await;
    let recorded = match &worked {
        Ok(outcome) => {
            let o = match outcome {
                Outcome::Interrupted => RunOutcome::Interrupted,
                _ => RunOutcome::Succeeded,
            };
            lock.finish_run(plan.run_id, o, clock.now()).await
        }
        Err(_) => {
            lock.finish_run(plan.run_id, RunOutcome::Failed, clock.now())
                .await
        }
    };
    if let Err(e) = lock.release().await {
        tracing::warn!(
            error = error_line(&e.into()),
            "releasing the purge lock failed"
        );
    }
    let outcome = worked?;
    recorded.context("recording the outcome of the run")?;
    match outcome {
        Outcome::Interrupted => tracing::warn!(
            run_id = %plan.run_id,
            deleted = summary.deleted,
            "purge interrupted after a committed batch; the next run continues"
        ),
        _ => tracing::info!(
            run_id = %plan.run_id,
            deleted = summary.deleted,
            housekept = ?summary.housekept,
            "purge finished"
        ),
    }
    Ok(outcome)
}

/// The batches: contacts first, then the housekeeping chores.
async fn work(
    lock: &PurgeLock,
    plan: &RunPlan,
    settings: &Settings,
    clock: &dyn Clock,
    stop: &mut watch::Receiver<bool>,
    summary: &mut Summary,
) -> anyhow::Result<Outcome> {
    let limit = settings.batch_size;
    let mut batches = Batches::default();
    let mut progress = Progress::new("contacts", settings.progress_every);
    let accounts = lock
        .session()
        .count_due(plan.cutoff)
        .await
        .context("finding the accounts with due contacts")?;
    for account in accounts.keys() {
        loop {
            if batches.next(settings, stop).await {
                return Ok(Outcome::Interrupted);
            }
            let batch = lock
                .delete_batch(plan, account, limit, clock.now())
                .instrument(telemetry::span(|| {
                    tracing::info_span!("purge batch", chore = "contacts")
                }))
                .await
                .context("deleting a batch of contacts")?;
            summary.batches += 1;
            summary.deleted += batch.deleted();
            for (account, n) in &batch.deleted_by_account {
                *summary
                    .deleted_by_account
                    .entry(account.clone())
                    .or_default() += n;
            }
            progress.tick(summary.deleted);
            // Candidates other transactions hold were skipped; the next run gets them.
            if batch.selected < u64::from(limit) || batch.deleted() == 0 {
                break;
            }
        }
    }

    for (chore, keep) in housekeeping(settings) {
        let before = plan.start_time - keep;
        let key = done_key(&chore);
        let mut progress = Progress::new(chore.name, settings.progress_every);
        let accounts = lock
            .session()
            .chore_accounts(&chore, before)
            .await
            .with_context(|| format!("housekeeping: {}: finding the accounts", chore.name))?;
        for account in accounts.keys() {
            loop {
                if batches.next(settings, stop).await {
                    return Ok(Outcome::Interrupted);
                }
                let n = lock
                    .housekeep_account(&chore, account, before, limit)
                    .instrument(telemetry::span(|| {
                        tracing::info_span!("purge batch", chore = chore.name)
                    }))
                    .await
                    .with_context(|| format!("housekeeping: {}", chore.name))?;
                let done = summary.housekept.entry(key.clone()).or_default();
                *done += n;
                progress.tick(*done);
                if n < u64::from(limit) {
                    break;
                }
            }
        }
    }
    Ok(Outcome::Succeeded)
}

/// The housekeeping chores, in the order a run does them after the contacts, each with how
/// long its rows are kept (for expiry notices: how long a contact's last activity may lie back
/// before it is announced). A new chore is a line here (and its statements in the store).
pub fn housekeeping(settings: &Settings) -> [(Chore, chrono::Duration); 8] {
    [
        // Each account's own retention, read in the statement.
        (purge::CALL_NOTES, chrono::Duration::zero()),
        (
            purge::EXPIRY_NOTICES,
            settings.retention.duration() - settings.expiry_notice,
        ),
        (purge::UNDELIVERED_MESSAGES, settings.undelivered_report),
        // The window the server reads, and the day it is in.
        (
            purge::CALL_COUNTS,
            chrono::Duration::days(callers_domain::call_counts::WINDOW_DAYS),
        ),
        (purge::CHANGES, settings.change_retention),
        (purge::IDEMPOTENCY_KEYS, settings.idempotency_retention),
        (purge::AUDIT_ROWS, settings.audit_retention),
        (purge::PRIVACY_REQUESTS, settings.audit_retention),
    ]
}

/// The summary's and the metrics' name of what a chore did.
pub fn done_key(chore: &Chore) -> String {
    format!("{}_deleted", chore.name)
}

/// The pause between two batches of a run, whatever their account or chore.
#[derive(Default)]
struct Batches {
    started: bool,
}

impl Batches {
    /// Waits before every batch but the first (a stop request cuts the wait short); whether
    /// the run is to stop instead.
    async fn next(&mut self, settings: &Settings, stop: &mut watch::Receiver<bool>) -> bool {
        if std::mem::replace(&mut self.started, true) {
            pause(settings.batch_pause, stop).await;
        }
        *stop.borrow()
    }
}

/// Waits between batches; a stop request cuts the wait short.
async fn pause(pause: Duration, stop: &mut watch::Receiver<bool>) {
    if pause.is_zero() || *stop.borrow() {
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = stop.changed() => {}
    }
}

/// A progress line every so often on long runs.
struct Progress {
    phase: &'static str,
    started: Instant,
    last: Instant,
    every: Duration,
}

impl Progress {
    fn new(phase: &'static str, every: Duration) -> Self {
        let now = Instant::now();
        Self {
            phase,
            started: now,
            last: now,
            every,
        }
    }

    fn tick(&mut self, deleted: u64) {
        if self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            deleted as f64 / elapsed
        } else {
            0.0
        };
        tracing::info!(
            phase = self.phase,
            deleted,
            rate_per_sec = (rate * 10.0).round() / 10.0,
            elapsed_secs = elapsed.round() as u64,
            "purge progress"
        );
    }
}

/// An error and its causes on one line. Database errors give their code and message only:
/// their detail may quote row values, and those never go to a log.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let part = match cause.downcast_ref::<tokio_postgres::error::DbError>() {
            Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
            None => cause.to_string(),
        };
        // tokio-postgres wraps every server error in a bare "db error".
        if part == "db error" || parts.last() == Some(&part) {
            continue;
        }
        parts.push(part);
    }
    parts.join(": ").replace(['\n', '\r'], " ")
}
