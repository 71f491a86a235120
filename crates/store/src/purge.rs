//! The purge: batched deletion of contacts the retention rule makes due, with its audit.
//!
//! A run works on one dedicated session ([`PurgeSession`]), never on a pooled connection: the
//! session advisory lock that keeps runs apart lives exactly as long as that session. What
//! deletes needs the lock, so it is only reachable through [`PurgeLock`].
//!
//! The rule itself is [`callers_domain::retention`]: the generated column `purge_candidate` is
//! its "subject to automatic deletion", and a run deletes candidates whose
//! `last_activity_time` lies before the run's cutoff ([`Retention::cutoff`]), computed once.
//!
//! Work goes per account, so that every statement that writes names one account and the tables
//! can be distributed by `account_id`: one query finds which accounts have work (and how much,
//! which is also the dry run's count), then each account gets its own batches. Those finders
//! are the only statements that read across accounts; they carry [`ACCOUNTS_WITH_WORK`].

use crate::Error;
use crate::exec::{Params, statement_span};
use crate::row::row_struct;
use callers_domain::retention::Retention;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Row, Statement};
use tracing::Instrument;
use uuid::Uuid;

/// The advisory lock key of purge runs ("callersp"); advisory locks are per database. In
/// `pg_locks` it shows as `locktype = 'advisory'`, `classid = 1667329132`, `objid = 1701999472`.
pub const PURGE_LOCK_KEY: i64 = 0x6361_6c6c_6572_7370;

/// The marker of the queries that find which accounts have work, the only ones that read
/// across accounts (tests/tests/routable.rs allows them by it).
pub const ACCOUNTS_WITH_WORK: &str = "/* which accounts have work */";

/// `SELECT <marker> account_id, count(*) AS n FROM $from WHERE $old GROUP BY account_id`.
macro_rules! accounts_with_work {
    ($from:literal, $old:expr) => {
        concat!(
            "SELECT /* which accounts have work */ account_id, count(*) AS n FROM ",
            $from,
            " WHERE ",
            $old,
            " GROUP BY account_id ORDER BY account_id"
        )
    };
}

/// The rule as SQL, `$1` being the cutoff: the same predicate selects, re-checks and counts.
macro_rules! due {
    ($c:literal) => {
        concat!($c, "purge_candidate AND ", $c, "last_activity_time < $1")
    };
}

/// The change feed's record of `$rows` (a CTE of `account_id, contact_id` rows) inside a
/// statement of several accounts: per account, bump its counter by the count, in account order,
/// and insert one change per row with `$columns` (kind, contact_id, call_note_id, message_id,
/// reason, activity_time, as SQL over `g`, a row of `$rows`) at `$time`, numbered in the order
/// of `$order` (default: contact order) (`crate::feed`).
macro_rules! announce {
    ($rows:literal, $columns:literal, $time:literal) => {
        announce!($rows, $columns, $time, "g.contact_id")
    };
    ($rows:literal, $columns:literal, $time:literal, $order:literal) => {
        concat!(
            "per_account AS (SELECT account_id, count(*) AS n FROM ",
            $rows,
            " GROUP BY account_id), \
             bumped AS (INSERT INTO change_counters AS k (account_id, seq) \
               SELECT account_id, n FROM per_account ORDER BY account_id \
               ON CONFLICT (account_id) DO UPDATE SET seq = k.seq + excluded.seq \
               RETURNING k.account_id, k.seq), \
             announced AS (INSERT INTO changes \
               (account_id, seq, change_time, kind, contact_id, call_note_id, message_id, reason, \
                activity_time) \
               SELECT g.account_id, b.seq - p.n \
                 + row_number() OVER (PARTITION BY g.account_id ORDER BY ",
            $order,
            "), ",
            $time,
            ", ",
            $columns,
            " FROM ",
            $rows,
            " g JOIN per_account p ON p.account_id = g.account_id \
               JOIN bumped b ON b.account_id = g.account_id RETURNING 1)"
        )
    };
}

/// One batch of one account (`$5`) in one statement, hence one transaction: lock up to `$2`
/// due candidates (skipping rows another transaction holds, such as a contact being edited),
/// delete them while re-checking the whole rule on the row as it is now, audit what was
/// deleted, and count it on the run. Call notes keep their rows, unlinked here in one join (the
/// foreign key's `ON DELETE SET NULL` runs one UPDATE per contact, a fifth of a batch's time,
/// and then finds nothing left to do); phone numbers go with the contact.
const DELETE_BATCH: &str = concat!(
    "WITH due AS MATERIALIZED ( \
       SELECT account_id, contact_id FROM contacts WHERE account_id = $5 AND ",
    due!(""),
    " ORDER BY last_activity_time, contact_id LIMIT $2 FOR UPDATE SKIP LOCKED \
     ), gone AS ( \
       DELETE FROM contacts c USING due \
       WHERE c.account_id = $5 AND c.contact_id = due.contact_id AND ",
    due!("c."),
    " RETURNING c.account_id, c.contact_id, c.last_activity_time \
     ), unlinked AS ( \
       UPDATE call_notes n SET contact_id = NULL FROM gone \
       WHERE n.account_id = $5 AND n.contact_id = gone.contact_id \
     ), audited AS ( \
       INSERT INTO purged_contacts (account_id, contact_id, run_id, last_activity_time, delete_time) \
       SELECT account_id, contact_id, $3, last_activity_time, $4 FROM gone \
       RETURNING account_id \
     ), ",
    announce!(
        "gone",
        "3, g.contact_id, NULL::uuid, NULL::uuid, 2, NULL::timestamptz",
        "$4"
    ),
    ", counted AS ( \
       UPDATE purge_runs SET deleted = deleted + (SELECT count(*) FROM audited) WHERE run_id = $3 \
     ) \
     SELECT s.selected, a.account_id, a.deleted \
     FROM (SELECT count(*) AS selected FROM due) s \
     LEFT JOIN (SELECT account_id, count(*) AS deleted FROM audited GROUP BY account_id) a ON true"
);

/// The accounts with due contacts and how many each has: the run's accounts, the dry run's
/// counts.
const DUE_ACCOUNTS: &str = accounts_with_work!("contacts", due!(""));

/// A housekeeping chore of the purge worker: work on rows that outlived their keeping time,
/// done in batches under the purge lock ([`PurgeLock::housekeep_account`]) and counted by a dry
/// run ([`PurgeSession::count_chore`]). Each is two statements: `accounts` finds the accounts
/// with rows older than `$1` and counts them; `batch` does the work for at most `$2` rows of
/// the account `$3` older than `$1` (skipping rows other transactions hold, re-checking the age
/// at the row) and returns how many. A new kind of housekeeping is a new chore here and a line
/// in the worker's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chore {
    /// Names the chore in the summary, the metrics and the logs.
    pub name: &'static str,
    accounts: &'static str,
    batch: &'static str,
}

/// Deletes, in `$order`, up to `$2` rows of the account `$3` in `$table`, keyed by
/// (account_id, `$key`), whose `$time` lies before `$1`.
macro_rules! delete_older {
    ($table:literal, $key:literal, $time:literal, $order:literal) => {
        concat!(
            "WITH old AS MATERIALIZED (SELECT ",
            $key,
            " FROM ",
            $table,
            " WHERE account_id = $3 AND ",
            $time,
            " < $1 ORDER BY ",
            $order,
            " LIMIT $2 FOR UPDATE SKIP LOCKED) \
             DELETE FROM ",
            $table,
            " t USING old WHERE t.account_id = $3 AND t.",
            $key,
            " = old.",
            $key,
            " AND t.",
            $time,
            " < $1"
        )
    };
}

/// Idempotency keys past their window; they are kept at least the window (API.md: 24 hours),
/// so a retry inside it replays.
pub const IDEMPOTENCY_KEYS: Chore = Chore {
    name: "idempotency_keys",
    accounts: accounts_with_work!("idempotency_keys", "create_time < $1"),
    batch: delete_older!(
        "idempotency_keys",
        "request_id",
        "create_time",
        "create_time"
    ),
};

/// The change feed's changes, after the feed's keeping time; a cursor before them then answers
/// `CURSOR_EXPIRED`. An account's changes go in feed order, the order of their times.
pub const CHANGES: Chore = Chore {
    name: "changes",
    accounts: accounts_with_work!("changes", "change_time < $1"),
    batch: delete_older!("changes", "seq", "change_time", "seq"),
};

/// `CONTACT_EXPIRING` in the change feed for contacts subject to deletion whose last activity
/// lies before `$1` (the run's time less the retention plus the notice period), once per last
/// activity: `expiry_notice_for` remembers the one it was sent for, so activity that moves the
/// purge time sends it again when the new one comes near. Not activity, not a write of the
/// contact (its version and etag stay).
pub const EXPIRY_NOTICES: Chore = Chore {
    name: "expiry_notices",
    accounts: accounts_with_work!(
        "contacts",
        "purge_candidate AND last_activity_time < $1 \
         AND expiry_notice_for IS DISTINCT FROM last_activity_time"
    ),
    batch: concat!(
        "WITH due AS MATERIALIZED ( \
           SELECT account_id, contact_id FROM contacts \
           WHERE account_id = $3 AND purge_candidate AND last_activity_time < $1 \
             AND expiry_notice_for IS DISTINCT FROM last_activity_time \
           ORDER BY last_activity_time, contact_id LIMIT $2 FOR UPDATE SKIP LOCKED \
         ), marked AS ( \
           UPDATE contacts c SET expiry_notice_for = c.last_activity_time FROM due \
           WHERE c.account_id = $3 AND c.contact_id = due.contact_id \
             AND c.purge_candidate AND c.last_activity_time < $1 \
           RETURNING c.account_id, c.contact_id, c.last_activity_time \
         ), ",
        announce!(
            "marked",
            "4, g.contact_id, NULL::uuid, NULL::uuid, NULL::smallint, g.last_activity_time",
            "statement_timestamp()"
        ),
        " SELECT 1 FROM announced"
    ),
};

/// Undelivered-message records after the report period (by `end_time`), each announced in the
/// change feed as `UNDELIVERED_MESSAGE_REMOVED`.
pub const UNDELIVERED_MESSAGES: Chore = Chore {
    name: "undelivered_messages",
    accounts: accounts_with_work!("undelivered_messages", "end_time < $1"),
    batch: concat!(
        "WITH old AS MATERIALIZED ( \
           SELECT message_id FROM undelivered_messages WHERE account_id = $3 AND end_time < $1 \
           ORDER BY end_time LIMIT $2 FOR UPDATE SKIP LOCKED \
         ), gone AS ( \
           DELETE FROM undelivered_messages t USING old \
           WHERE t.account_id = $3 AND t.message_id = old.message_id AND t.end_time < $1 \
           RETURNING t.account_id, t.contact_id, t.message_id \
         ), ",
        announce!(
            "gone",
            "13, g.contact_id, NULL::uuid, g.message_id, NULL::smallint, NULL::timestamptz",
            "statement_timestamp()"
        ),
        " SELECT 1 FROM announced"
    ),
};

/// Call notes older than their account's `call_note_retention_days` (by call time) at `$1`,
/// with their deliveries, each announced as `CALL_NOTE_DELETED`. The retention is read again
/// at the row when it is deleted, so a setting lengthened meanwhile keeps the note. Accounts
/// without the setting keep their notes.
pub const CALL_NOTES: Chore = Chore {
    name: "call_notes",
    accounts: "SELECT /* which accounts have work */ n.account_id, count(*) AS n \
               FROM call_notes n JOIN call_handling h ON h.account_id = n.account_id \
               WHERE h.call_note_retention_days IS NOT NULL \
                 AND n.call_time < $1::timestamptz - make_interval(days => h.call_note_retention_days) \
               GROUP BY n.account_id ORDER BY n.account_id",
    batch: concat!(
        "WITH old AS MATERIALIZED ( \
           SELECT n.call_note_id FROM call_notes n \
           JOIN call_handling h ON h.account_id = n.account_id \
           WHERE n.account_id = $3 AND h.call_note_retention_days IS NOT NULL \
             AND n.call_time < $1::timestamptz - make_interval(days => h.call_note_retention_days) \
           ORDER BY n.call_time LIMIT $2 FOR UPDATE OF n SKIP LOCKED \
         ), gone AS ( \
           DELETE FROM call_notes t USING old, call_handling h \
           WHERE t.account_id = $3 AND t.call_note_id = old.call_note_id \
             AND h.account_id = $3 AND h.call_note_retention_days IS NOT NULL \
             AND t.call_time < $1::timestamptz - make_interval(days => h.call_note_retention_days) \
           RETURNING t.account_id, t.call_note_id \
         ), ",
        announce!(
            "gone",
            "8, NULL::uuid, g.call_note_id, NULL::uuid, NULL::smallint, NULL::timestamptz",
            "statement_timestamp()",
            "g.call_note_id"
        ),
        " SELECT 1 FROM announced"
    ),
};

/// Call counts of days before `$1`'s UTC day; the server reads a rolling window of
/// `callers_domain::call_counts::WINDOW_DAYS`.
pub const CALL_COUNTS: Chore = Chore {
    name: "call_counts",
    accounts: accounts_with_work!(
        "call_counts",
        "day < ($1::timestamptz AT TIME ZONE 'UTC')::date"
    ),
    batch: "WITH old AS MATERIALIZED ( \
               SELECT employee_id, day FROM call_counts \
               WHERE account_id = $3 AND day < ($1::timestamptz AT TIME ZONE 'UTC')::date \
               ORDER BY day LIMIT $2 FOR UPDATE SKIP LOCKED) \
             DELETE FROM call_counts t USING old \
             WHERE t.account_id = $3 AND t.employee_id = old.employee_id \
               AND t.day = old.day AND t.day < ($1::timestamptz AT TIME ZONE 'UTC')::date",
};

/// The purge's own audit rows, after the audit's keeping time.
pub const AUDIT_ROWS: Chore = Chore {
    name: "audit_rows",
    accounts: accounts_with_work!("purged_contacts", "delete_time < $1"),
    batch: delete_older!(
        "purged_contacts",
        "contact_id",
        "delete_time",
        "delete_time"
    ),
};

/// The records of privacy requests, after the audit's keeping time (which must cover the
/// oldest backup that may be restored: docs/OPERATIONS.md). Suppressions are never deleted
/// here; only `LiftSuppression` ends one.
pub const PRIVACY_REQUESTS: Chore = Chore {
    name: "privacy_requests",
    accounts: accounts_with_work!("privacy_requests", "request_time < $1"),
    batch: delete_older!(
        "privacy_requests",
        "request_id",
        "request_time",
        "request_time"
    ),
};

row_struct! {
    struct AccountWorkRow {
        account_id: String,
        n: i64,
    }
}

row_struct! {
    struct LockRow {
        locked: bool,
    }
}

row_struct! {
    struct RunIdRow {
        run_id: Uuid,
    }
}

row_struct! {
    struct BatchRow {
        selected: i64,
        account_id: Option<String>,
        deleted: Option<i64>,
    }
}

/// How a purge session connects.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub connect_timeout: std::time::Duration,
    /// Server-side bound on one statement, so a stuck batch fails instead of hanging the run.
    pub statement_timeout: std::time::Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            connect_timeout: std::time::Duration::from_secs(10),
            statement_timeout: std::time::Duration::from_secs(60),
        }
    }
}

/// What one run does, fixed when it starts: in particular the cutoff, computed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub run_id: Uuid,
    pub start_time: DateTime<Utc>,
    /// The moment the rule is evaluated at: the start, or a dry run's `--as-of`.
    pub as_of: DateTime<Utc>,
    /// Candidates whose last activity lies before this are due.
    pub cutoff: DateTime<Utc>,
    pub retention: Retention,
}

impl RunPlan {
    pub fn new(
        run_id: Uuid,
        start_time: DateTime<Utc>,
        as_of: Option<DateTime<Utc>>,
        retention: Retention,
    ) -> Self {
        // Postgres keeps microseconds; a finer cutoff would round differently there than in
        // the domain rule, and the two must agree to the last microsecond.
        let start_time = crate::db_time(start_time);
        let as_of = as_of.map(crate::db_time).unwrap_or(start_time);
        Self {
            run_id,
            start_time,
            as_of,
            cutoff: retention.cutoff(as_of),
            retention,
        }
    }
}

/// The result of one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Candidates the batch locked; fewer than asked means none are left (but those other
    /// transactions hold, which the next run picks up).
    pub selected: u64,
    pub deleted_by_account: BTreeMap<String, u64>,
}

impl Batch {
    pub fn deleted(&self) -> u64 {
        self.deleted_by_account.values().sum()
    }
}

/// How a run ended, as `purge_runs.outcome` records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    Interrupted,
    Failed,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Interrupted => "interrupted",
            RunOutcome::Failed => "failed",
        }
    }
}

/// A dedicated database session for one run.
pub struct PurgeSession {
    client: Client,
    connection: JoinHandle<()>,
    /// Each statement is prepared once per session.
    statements: Mutex<HashMap<&'static str, Statement>>,
}

impl std::fmt::Debug for PurgeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeSession")
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

impl PurgeSession {
    pub async fn connect(url: &str, options: &SessionOptions) -> Result<Self, Error> {
        let settings = crate::ConnSettings::parse(url)?;
        let connector = crate::exec::Connector::new(&settings)?;
        let mut cfg = settings.pg;
        cfg.connect_timeout(options.connect_timeout);
        cfg.keepalives(true);
        cfg.keepalives_idle(std::time::Duration::from_secs(30));
        if cfg.get_application_name().is_none() {
            cfg.application_name("callers-purge");
        }
        // Some failures (a blackholed address) never reach the connect timeout of one attempt.
        let connected = tokio::time::timeout(options.connect_timeout, connector.connect(&cfg))
            .await
            .map_err(|_| Error::Unavailable("timed out connecting to the database".into()))?;
        let (client, connection) = connected?;
        crate::exec::ensure_session(&connector, &cfg, &client, "the purge").await?;
        let timeout = format!("{}ms", options.statement_timeout.as_millis());
        client
            .execute(
                "SELECT set_config('statement_timeout', $1, false)",
                &[&timeout],
            )
            .await?;
        Ok(Self {
            client,
            connection,
            statements: Mutex::default(),
        })
    }

    /// Takes the purge lock for the life of this session; `None` when another run holds it.
    pub async fn try_lock(self) -> Result<Option<PurgeLock>, Error> {
        let row: LockRow = self
            .one(
                "SELECT pg_try_advisory_lock($1) AS locked",
                &[&PURGE_LOCK_KEY],
            )
            .await?;
        Ok(row.locked.then_some(PurgeLock { session: self }))
    }

    /// How many contacts a run with `cutoff` would delete, per account: the accounts a run
    /// works on. Reads only.
    pub async fn count_due(&self, cutoff: DateTime<Utc>) -> Result<BTreeMap<String, u64>, Error> {
        self.accounts_with_work(DUE_ACCOUNTS, cutoff).await
    }

    /// How many rows `chore` would work on for `before`, per account: the accounts a run
    /// works on. Reads only.
    pub async fn chore_accounts(
        &self,
        chore: &Chore,
        before: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>, Error> {
        self.accounts_with_work(chore.accounts, before).await
    }

    /// How many rows `chore` would work on for `before`. Reads only.
    pub async fn count_chore(&self, chore: &Chore, before: DateTime<Utc>) -> Result<u64, Error> {
        Ok(self.chore_accounts(chore, before).await?.values().sum())
    }

    async fn accounts_with_work(
        &self,
        sql: &'static str,
        before: DateTime<Utc>,
    ) -> Result<BTreeMap<String, u64>, Error> {
        let rows: Vec<AccountWorkRow> = self.rows(sql, &[&before]).await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.account_id, count(r.n)))
            .collect())
    }

    async fn prepared(&self, sql: &'static str) -> Result<Statement, Error> {
        let cached = self.cache().get(sql).cloned();
        if let Some(stmt) = cached {
            return Ok(stmt);
        }
        let stmt = self.client.prepare(sql).await?;
        self.cache().insert(sql, stmt.clone());
        Ok(stmt)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Statement>> {
        self.statements.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn rows<R>(&self, sql: &'static str, params: Params<'_>) -> Result<Vec<R>, Error>
    where
        R: for<'r> TryFrom<&'r Row, Error = Error>,
    {
        let run = async {
            let stmt = self.prepared(sql).await?;
            Ok::<_, Error>(self.client.query(&stmt, params).await?)
        };
        let rows = run.instrument(statement_span(sql)).await?;
        rows.iter().map(R::try_from).collect()
    }

    async fn one<R>(&self, sql: &'static str, params: Params<'_>) -> Result<R, Error>
    where
        R: for<'r> TryFrom<&'r Row, Error = Error>,
    {
        let run = async {
            let stmt = self.prepared(sql).await?;
            Ok::<_, Error>(self.client.query_one(&stmt, params).await?)
        };
        R::try_from(&run.instrument(statement_span(sql)).await?)
    }

    async fn execute(&self, sql: &'static str, params: Params<'_>) -> Result<u64, Error> {
        let run = async {
            let stmt = self.prepared(sql).await?;
            Ok(self.client.execute(&stmt, params).await?)
        };
        run.instrument(statement_span(sql)).await
    }

    /// Ends the session (and any lock it holds).
    pub async fn close(self) {
        drop(self.client);
        let _ = self.connection.await;
    }
}

/// A session holding the purge lock: only one run at a time gets one.
#[derive(Debug)]
pub struct PurgeLock {
    session: PurgeSession,
}

impl PurgeLock {
    pub fn session(&self) -> &PurgeSession {
        &self.session
    }

    /// Marks runs still `running` as failed: holding the lock, no other run is alive, so they
    /// died without recording an outcome (their `end_time` stays empty). Returns their ids.
    pub async fn close_abandoned_runs(&self) -> Result<Vec<Uuid>, Error> {
        let rows: Vec<RunIdRow> = self
            .session
            .rows(
                "UPDATE purge_runs SET outcome = 'failed' \
                 WHERE outcome = 'running' AND NOT dry_run RETURNING run_id",
                &[],
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.run_id).collect())
    }

    pub async fn start_run(&self, plan: &RunPlan) -> Result<(), Error> {
        let days = i32::try_from(plan.retention.as_days())
            .map_err(|_| Error::Corrupt("retention days out of range".into()))?;
        self.session
            .execute(
                "INSERT INTO purge_runs \
                 (run_id, start_time, cutoff_time, retention_days, dry_run, outcome) \
                 VALUES ($1, $2, $3, $4, false, 'running')",
                &[&plan.run_id, &plan.start_time, &plan.cutoff, &days],
            )
            .await?;
        Ok(())
    }

    /// Deletes up to `limit` due contacts of `account` and audits them, committed on return.
    pub async fn delete_batch(
        &self,
        plan: &RunPlan,
        account: &str,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Batch, Error> {
        let rows: Vec<BatchRow> = self
            .session
            .rows(
                DELETE_BATCH,
                &[
                    &plan.cutoff,
                    &i64::from(limit),
                    &plan.run_id,
                    &crate::db_time(now),
                    &account,
                ],
            )
            .await?;
        let mut batch = Batch::default();
        for row in rows {
            batch.selected = count(row.selected);
            if let Some(account) = row.account_id {
                batch
                    .deleted_by_account
                    .insert(account, count(row.deleted.unwrap_or(0)));
            }
        }
        Ok(batch)
    }

    /// Does `chore` for up to `limit` rows of `account` older than `before`, committed on
    /// return; returns how many rows it worked on.
    pub async fn housekeep_account(
        &self,
        chore: &Chore,
        account: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, Error> {
        self.session
            .execute(chore.batch, &[&before, &i64::from(limit), &account])
            .await
    }

    /// Does `chore` for up to `limit` rows older than `before`, account after account, each
    /// batch committed on its own; returns how many rows it worked on.
    pub async fn housekeep(
        &self,
        chore: &Chore,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, Error> {
        let mut done = 0;
        for account in self.session.chore_accounts(chore, before).await?.keys() {
            let left = limit.saturating_sub(u32::try_from(done).unwrap_or(u32::MAX));
            if left == 0 {
                break;
            }
            done += self.housekeep_account(chore, account, before, left).await?;
        }
        Ok(done)
    }

    /// Records how the run ended; its `deleted` count was kept up to date batch by batch.
    pub async fn finish_run(
        &self,
        run_id: Uuid,
        outcome: RunOutcome,
        end_time: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.session
            .execute(
                "UPDATE purge_runs SET outcome = $2, end_time = $3 WHERE run_id = $1",
                &[&run_id, &outcome.as_str(), &crate::db_time(end_time)],
            )
            .await?;
        Ok(())
    }

    /// Releases the lock and closes the session; ending the session alone would release it too.
    pub async fn release(self) -> Result<(), Error> {
        let unlocked = self
            .session
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&PURGE_LOCK_KEY])
            .await;
        self.session.close().await;
        unlocked?;
        Ok(())
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestDatabase, fresh_database};
    use callers_domain::contact::Categories;
    use callers_domain::retention;
    use chrono::{Duration, TimeZone};
    use std::collections::BTreeSet;

    async fn admin(db: &TestDatabase) -> Client {
        let (client, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }

    async fn insert_contact(
        db: &Client,
        account: &str,
        categories: &[&str],
        keep: bool,
        last_activity: DateTime<Utc>,
    ) -> Uuid {
        let id = Uuid::new_v4();
        let categories: Vec<String> = categories.iter().map(|c| c.to_string()).collect();
        db.execute(
            "INSERT INTO contacts (account_id, contact_id, categories, last_name, \
             keep_permanently, origin, create_time, update_time, last_activity_time) \
             VALUES ($1, $2, $3, 'Muster', $4, 1, $5, $5, $5)",
            &[&account, &id, &categories, &keep, &last_activity],
        )
        .await
        .unwrap();
        id
    }

    async fn contact_ids(db: &Client) -> BTreeSet<Uuid> {
        let rows = db
            .query("SELECT contact_id FROM contacts", &[])
            .await
            .unwrap();
        rows.iter().map(|r| r.get("contact_id")).collect()
    }

    async fn locked(db: &TestDatabase) -> PurgeLock {
        PurgeSession::connect(db.url(), &SessionOptions::default())
            .await
            .unwrap()
            .try_lock()
            .await
            .unwrap()
            .expect("the purge lock is free")
    }

    /// Runs batches, account after account, until the candidates are exhausted; returns the
    /// batches.
    async fn delete_all(lock: &PurgeLock, plan: &RunPlan, limit: u32) -> Vec<Batch> {
        let mut batches = Vec::new();
        let accounts = lock.session().count_due(plan.cutoff).await.unwrap();
        for account in accounts.keys() {
            loop {
                let batch = lock
                    .delete_batch(plan, account, limit, plan.start_time)
                    .await
                    .unwrap();
                let done = batch.selected < u64::from(limit);
                batches.push(batch);
                if done {
                    break;
                }
            }
        }
        batches
    }

    fn plan_at(now: DateTime<Utc>) -> RunPlan {
        RunPlan::new(Uuid::now_v7(), now, None, Retention::default())
    }

    const CHORES: [Chore; 8] = [
        IDEMPOTENCY_KEYS,
        CHANGES,
        EXPIRY_NOTICES,
        UNDELIVERED_MESSAGES,
        CALL_NOTES,
        CALL_COUNTS,
        AUDIT_ROWS,
        PRIVACY_REQUESTS,
    ];

    #[test]
    fn the_finders_carry_the_marker_and_every_batch_names_its_account() {
        assert!(DUE_ACCOUNTS.contains(ACCOUNTS_WITH_WORK));
        assert!(DELETE_BATCH.contains("WHERE account_id = $5 AND"));
        for chore in CHORES {
            assert!(
                chore.accounts.contains(ACCOUNTS_WITH_WORK),
                "{}",
                chore.name
            );
            assert!(!chore.batch.contains(ACCOUNTS_WITH_WORK), "{}", chore.name);
            assert!(chore.batch.contains("account_id = $3"), "{}", chore.name);
        }
    }

    #[tokio::test]
    async fn the_sql_and_the_domain_rule_agree_to_the_microsecond() {
        let db = fresh_database().await;
        let sql = admin(&db).await;
        // Nanoseconds on purpose: the run's cutoff must be cut to what Postgres stores.
        let now = Utc
            .with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
            .unwrap()
            .checked_add_signed(Duration::nanoseconds(123_456_789))
            .unwrap();
        let plan = plan_at(now);
        let r = plan.retention;
        let untruncated_cutoff = r.cutoff(now);
        let lasts = [
            plan.cutoff - Duration::days(1),
            plan.cutoff - Duration::seconds(1),
            plan.cutoff - Duration::microseconds(1),
            plan.cutoff,
            plan.cutoff + Duration::microseconds(1),
            plan.cutoff + Duration::seconds(1),
            plan.cutoff + Duration::days(1),
            untruncated_cutoff - Duration::nanoseconds(1),
            now - Duration::days(181),
            now - Duration::days(179),
        ];
        // Stored categories are a sorted set (the store writes `Categories`), so comparing the
        // array with `{caller}` is comparing sets.
        let sets: [&[&str]; 4] = [&["caller"], &["caller", "customer"], &["customer"], &[]];
        let mut due = BTreeSet::new();
        let mut kept = BTreeSet::new();
        let mut due_by_account: BTreeMap<String, u64> = BTreeMap::new();
        for (i, cats) in sets.iter().enumerate() {
            let account = format!("acc-{i}");
            for keep in [false, true] {
                for last in lasts {
                    let id = insert_contact(&sql, &account, cats, keep, last).await;
                    // Postgres keeps microseconds, so judge what it stored.
                    let stored = crate::db_time(last);
                    let categories =
                        Categories::from_stored(cats.iter().map(|c| c.to_string()).collect());
                    let is_due = retention::is_due(&categories, keep, stored, r, plan.as_of);
                    let purge_time = retention::purge_time(&categories, keep, stored, r);
                    assert_eq!(
                        purge_time.is_some_and(|p| p < plan.as_of),
                        is_due,
                        "purge_time and is_due disagree for {cats:?} keep={keep} last={last}"
                    );
                    if is_due {
                        due.insert(id);
                        *due_by_account.entry(account.clone()).or_default() += 1;
                    } else {
                        kept.insert(id);
                    }
                }
            }
        }
        assert!(!due.is_empty() && !kept.is_empty());

        let lock = locked(&db).await;
        assert_eq!(
            lock.session().count_due(plan.cutoff).await.unwrap(),
            due_by_account
        );
        lock.start_run(&plan).await.unwrap();
        let batches = delete_all(&lock, &plan, 4).await;
        let mut deleted_by_account: BTreeMap<String, u64> = BTreeMap::new();
        for b in &batches {
            for (a, n) in &b.deleted_by_account {
                *deleted_by_account.entry(a.clone()).or_default() += n;
            }
        }
        assert_eq!(deleted_by_account, due_by_account);
        assert_eq!(contact_ids(&sql).await, kept);
        let audited: BTreeSet<Uuid> = sql
            .query("SELECT contact_id FROM purged_contacts", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("contact_id"))
            .collect();
        assert_eq!(audited, due);
    }

    #[tokio::test]
    async fn a_contact_edited_while_a_batch_runs_is_skipped_and_survives() {
        let db = fresh_database().await;
        let sql = admin(&db).await;
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let old = now - Duration::days(181);
        let edits = [
            "UPDATE contacts SET last_activity_time = $2 WHERE contact_id = $1",
            "UPDATE contacts SET categories = '{caller,customer}' WHERE contact_id = $1 AND $2::timestamptz IS NOT NULL",
            "UPDATE contacts SET keep_permanently = true WHERE contact_id = $1 AND $2::timestamptz IS NOT NULL",
        ];
        let mut edited = BTreeSet::new();
        for edit in edits {
            let other = insert_contact(&sql, "acme", &["caller"], false, old).await;
            let target = insert_contact(&sql, "acme", &["caller"], false, old).await;
            // The server's edit holds the row lock from its read to its commit.
            let (mut editor, conn) = tokio_postgres::connect(db.url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let tx = editor.transaction().await.unwrap();
            tx.query_one(
                "SELECT 1 FROM contacts WHERE contact_id = $1 FOR UPDATE",
                &[&target],
            )
            .await
            .unwrap();

            let plan = plan_at(now);
            let lock = locked(&db).await;
            lock.start_run(&plan).await.unwrap();
            let batches = delete_all(&lock, &plan, 10).await;
            assert_eq!(batches.iter().map(Batch::deleted).sum::<u64>(), 1, "{edit}");
            assert!(!contact_ids(&sql).await.contains(&other));

            tx.execute(edit, &[&target, &now]).await.unwrap();
            tx.commit().await.unwrap();
            let plan = plan_at(now);
            lock.start_run(&plan).await.unwrap();
            let batches = delete_all(&lock, &plan, 10).await;
            assert_eq!(batches.iter().map(Batch::deleted).sum::<u64>(), 0, "{edit}");
            lock.release().await.unwrap();
            edited.insert(target);
        }
        assert_eq!(contact_ids(&sql).await, edited);
    }

    /// Property: whatever edits race the purge, a contact whose edit committed is never
    /// deleted, a contact not due at the cutoff is never deleted, and every deletion is one
    /// the rule allowed, audited once. Random cases from a fixed seed, so a failure replays.
    #[tokio::test]
    async fn no_contact_active_after_the_cutoff_is_ever_deleted_under_concurrent_edits() {
        let rounds: u64 = std::env::var("CALLERS_LONG_TESTS").map_or(6, |_| 60);
        let (mut total_deleted, mut total_edited_due) = (0, 0);
        for round in 0..rounds {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (round + 1));
            let db = fresh_database().await;
            let sql = admin(&db).await;
            let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
            let plan = plan_at(now);
            let cutoff = plan.cutoff;
            // Contacts around the cutoff, to the microsecond, with every category/keep mix.
            let mut initial = Vec::new();
            for _ in 0..80 {
                let offset = match rng.below(4) {
                    0 => Duration::microseconds(rng.below(3) as i64 - 1),
                    1 => Duration::seconds(rng.below(7200) as i64 - 3600),
                    _ => Duration::days(rng.below(20) as i64 - 10),
                };
                let cats: &[&str] = match rng.below(6) {
                    0 => &["caller", "customer"],
                    1 => &["customer"],
                    _ => &["caller"],
                };
                let keep = rng.below(8) == 0;
                let last = cutoff + offset;
                let id = insert_contact(&sql, "acme", cats, keep, last).await;
                let due = retention::is_due(
                    &Categories::from_stored(cats.iter().map(|c| c.to_string()).collect()),
                    keep,
                    last,
                    Retention::default(),
                    now,
                );
                initial.push((id, due));
            }
            let ids: Vec<Uuid> = initial.iter().map(|(id, _)| *id).collect();
            // Editors: each edit is a short transaction like the server's update.
            let editors: Vec<_> = (0..3)
                .map(|e| {
                    let url = db.url().to_owned();
                    let targets: Vec<Uuid> = (0..25)
                        .map(|_| ids[rng.below(ids.len() as u64) as usize])
                        .collect();
                    let kind = e % 3;
                    tokio::spawn(async move {
                        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                            .await
                            .unwrap();
                        tokio::spawn(conn);
                        let mut kept = Vec::new();
                        for id in targets {
                            let n = match kind {
                                0 => client
                                    .execute(
                                        "UPDATE contacts SET last_activity_time = $2 \
                                         WHERE contact_id = $1",
                                        &[&id, &now],
                                    )
                                    .await
                                    .unwrap(),
                                1 => client
                                    .execute(
                                        "UPDATE contacts SET keep_permanently = true \
                                         WHERE contact_id = $1",
                                        &[&id],
                                    )
                                    .await
                                    .unwrap(),
                                _ => client
                                    .execute(
                                        "UPDATE contacts SET categories = '{caller,vip}' \
                                         WHERE contact_id = $1",
                                        &[&id],
                                    )
                                    .await
                                    .unwrap(),
                            };
                            if n == 1 {
                                kept.push(id);
                            }
                            tokio::task::yield_now().await;
                        }
                        kept
                    })
                })
                .collect();
            let lock = locked(&db).await;
            lock.start_run(&plan).await.unwrap();
            let batches = delete_all(&lock, &plan, 1 + rng.below(6) as u32).await;
            lock.release().await.unwrap();
            let mut edited = BTreeSet::new();
            for e in editors {
                edited.extend(e.await.unwrap());
            }
            let left = contact_ids(&sql).await;
            let deleted: BTreeSet<Uuid> = ids
                .iter()
                .copied()
                .filter(|id| !left.contains(id))
                .collect();
            for id in &edited {
                assert!(
                    left.contains(id),
                    "round {round}: an edited contact was deleted"
                );
            }
            for (id, due) in &initial {
                if !due {
                    assert!(
                        left.contains(id),
                        "round {round}: a contact not due was deleted"
                    );
                }
            }
            let audited: Vec<Uuid> = sql
                .query("SELECT contact_id FROM purged_contacts", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get("contact_id"))
                .collect();
            assert_eq!(audited.len(), deleted.len(), "round {round}: audit count");
            assert_eq!(audited.into_iter().collect::<BTreeSet<_>>(), deleted);
            let counted: u64 = batches.iter().map(Batch::deleted).sum();
            assert_eq!(counted, deleted.len() as u64, "round {round}: batch counts");
            total_deleted += deleted.len();
            total_edited_due += initial
                .iter()
                .filter(|(id, due)| *due && edited.contains(id))
                .count();
        }
        // Not vacuous: the purge deleted, and edits rescued contacts that were due.
        assert!(
            total_deleted > 0 && total_edited_due > 0,
            "{total_deleted} {total_edited_due}"
        );
    }

    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[tokio::test]
    async fn only_one_session_holds_the_lock_until_it_is_released() {
        let db = fresh_database().await;
        let first = locked(&db).await;
        let second = PurgeSession::connect(db.url(), &SessionOptions::default())
            .await
            .unwrap();
        assert!(second.try_lock().await.unwrap().is_none());
        let key = (PURGE_LOCK_KEY >> 32, PURGE_LOCK_KEY & 0xffff_ffff);
        assert_eq!(key, (1_667_329_132, 1_701_999_472), "as the key's doc says");
        let held: i64 = admin(&db)
            .await
            .query_one(
                "SELECT count(*) AS n FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
                 WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 \
                 AND d.datname = current_database() AND l.granted",
                &[&(key.0 as u32), &(key.1 as u32)],
            )
            .await
            .unwrap()
            .get("n");
        assert_eq!(held, 1);
        first.release().await.unwrap();
        let third = locked(&db).await;
        third.release().await.unwrap();
    }

    #[tokio::test]
    async fn deleted_contacts_are_audited_once_and_counted_on_the_run() {
        let db = fresh_database().await;
        let sql = admin(&db).await;
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let last = now - Duration::days(200);
        let a = insert_contact(&sql, "acme", &["caller"], false, last).await;
        let b = insert_contact(&sql, "beta", &["caller"], false, last).await;
        sql.execute(
            "INSERT INTO contact_phone_numbers VALUES ('acme', $1, 0, '030 1234567', '+49301234567', 1)",
            &[&a],
        )
        .await
        .unwrap();
        let note = Uuid::new_v4();
        sql.execute(
            "INSERT INTO call_notes (account_id, call_note_id, contact_id, subject, call_time, create_time) \
             VALUES ('acme', $1, $2, 'Rückruf', $3, $3)",
            &[&note, &a, &last],
        )
        .await
        .unwrap();

        let plan = plan_at(now);
        let lock = locked(&db).await;
        lock.start_run(&plan).await.unwrap();
        let delete_time = now + Duration::seconds(3);
        let mut deleted = BTreeMap::new();
        for account in ["acme", "beta"] {
            let batch = lock
                .delete_batch(&plan, account, 10, delete_time)
                .await
                .unwrap();
            assert_eq!(batch.selected, 1, "one account's contacts only");
            deleted.extend(batch.deleted_by_account);
        }
        assert_eq!(
            deleted,
            BTreeMap::from([("acme".to_owned(), 1), ("beta".to_owned(), 1)])
        );
        lock.finish_run(plan.run_id, RunOutcome::Succeeded, delete_time)
            .await
            .unwrap();

        let audit = sql
            .query(
                "SELECT account_id, contact_id, run_id, last_activity_time, delete_time \
                 FROM purged_contacts ORDER BY account_id",
                &[],
            )
            .await
            .unwrap();
        type AuditRow = (String, Uuid, Uuid, DateTime<Utc>, DateTime<Utc>);
        let audit: Vec<AuditRow> = audit
            .iter()
            .map(|r| {
                (
                    r.get("account_id"),
                    r.get("contact_id"),
                    r.get("run_id"),
                    r.get("last_activity_time"),
                    r.get("delete_time"),
                )
            })
            .collect();
        assert_eq!(
            audit,
            vec![
                ("acme".into(), a, plan.run_id, last, delete_time),
                ("beta".into(), b, plan.run_id, last, delete_time),
            ]
        );
        let columns: Vec<String> = sql
            .query(
                "SELECT column_name::text AS column_name FROM information_schema.columns \
                 WHERE table_name = 'purged_contacts' ORDER BY ordinal_position",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get("column_name"))
            .collect();
        assert_eq!(
            columns,
            [
                "account_id",
                "contact_id",
                "run_id",
                "last_activity_time",
                "delete_time"
            ],
            "ids and times only"
        );
        let run = sql
            .query_one(
                "SELECT outcome, deleted, cutoff_time, retention_days, end_time FROM purge_runs",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(run.get::<_, &str>("outcome"), "succeeded");
        assert_eq!(run.get::<_, i64>("deleted"), 2);
        assert_eq!(run.get::<_, DateTime<Utc>>("cutoff_time"), plan.cutoff);
        assert_eq!(run.get::<_, i32>("retention_days"), 180);
        assert_eq!(
            run.get::<_, Option<DateTime<Utc>>>("end_time"),
            Some(delete_time)
        );

        let note_contact: Option<Uuid> = sql
            .query_one(
                "SELECT contact_id FROM call_notes WHERE call_note_id = $1",
                &[&note],
            )
            .await
            .unwrap()
            .get("contact_id");
        assert_eq!(note_contact, None);
        let phones: i64 = sql
            .query_one("SELECT count(*) AS n FROM contact_phone_numbers", &[])
            .await
            .unwrap()
            .get("n");
        assert_eq!(phones, 0);
    }

    #[tokio::test]
    async fn housekeeping_deletes_only_expired_keys_and_old_audit_rows() {
        let db = fresh_database().await;
        let sql = admin(&db).await;
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let run = Uuid::now_v7();
        sql.execute(
            "INSERT INTO purge_runs (run_id, start_time, cutoff_time, retention_days, dry_run, outcome) \
             VALUES ($1, $2, $2, 180, false, 'succeeded')",
            &[&run, &(now - Duration::days(400))],
        )
        .await
        .unwrap();
        let key_cutoff = now - Duration::hours(48);
        let audit_cutoff = now - Duration::days(365);
        for i in 0..7i64 {
            // Three of each are older than their cutoff.
            let offset = Duration::seconds(i - 3);
            sql.execute(
                "INSERT INTO idempotency_keys VALUES ('acme', $1, 'CreateContact', '\\x00', 'null', $2)",
                &[&Uuid::new_v4(), &(key_cutoff + offset)],
            )
            .await
            .unwrap();
            sql.execute(
                "INSERT INTO purged_contacts VALUES ('acme', $1, $2, $3, $3)",
                &[&Uuid::new_v4(), &run, &(audit_cutoff + offset)],
            )
            .await
            .unwrap();
        }
        let lock = locked(&db).await;
        for (chore, cutoff) in [(IDEMPOTENCY_KEYS, key_cutoff), (AUDIT_ROWS, audit_cutoff)] {
            let counted = lock.session().count_chore(&chore, cutoff).await.unwrap();
            assert_eq!(counted, 3, "{}: the dry run's count", chore.name);
            let batches = [
                lock.housekeep(&chore, cutoff, 2).await.unwrap(),
                lock.housekeep(&chore, cutoff, 2).await.unwrap(),
                lock.housekeep(&chore, cutoff, 2).await.unwrap(),
            ];
            assert_eq!(batches, [2, 1, 0], "{}", chore.name);
        }
        let left = |table: &'static str, column: &'static str, cutoff: DateTime<Utc>| {
            let sql = &sql;
            async move {
                let q = format!("SELECT count(*) AS n FROM {table} WHERE {column} >= $1");
                let all = format!("SELECT count(*) AS n FROM {table}");
                let young: i64 = sql.query_one(&q, &[&cutoff]).await.unwrap().get("n");
                let all: i64 = sql.query_one(&all, &[]).await.unwrap().get("n");
                (young, all)
            }
        };
        assert_eq!(
            left("idempotency_keys", "create_time", key_cutoff).await,
            (4, 4)
        );
        assert_eq!(
            left("purged_contacts", "delete_time", audit_cutoff).await,
            (4, 4)
        );
    }

    #[tokio::test]
    async fn runs_left_running_are_closed_as_failed_by_the_next_run() {
        let db = fresh_database().await;
        let sql = admin(&db).await;
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let killed = plan_at(now - Duration::days(1));
        let lock = locked(&db).await;
        lock.start_run(&killed).await.unwrap();
        // Killed: no outcome recorded. (Releasing here only keeps the next lock deterministic.)
        lock.release().await.unwrap();

        let lock = locked(&db).await;
        assert_eq!(
            lock.close_abandoned_runs().await.unwrap(),
            vec![killed.run_id]
        );
        let plan = plan_at(now);
        lock.start_run(&plan).await.unwrap();
        let row = sql
            .query_one(
                "SELECT outcome, end_time FROM purge_runs WHERE run_id = $1",
                &[&killed.run_id],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, &str>("outcome"), "failed");
        assert_eq!(row.get::<_, Option<DateTime<Utc>>>("end_time"), None);
    }
}
