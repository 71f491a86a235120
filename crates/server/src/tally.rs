//! Incoming calls counted on this replica (`callers_domain::call_counts`): `IdentifyCaller`
//! adds each call to a map in memory, which a task flushes to the database every few seconds in
//! one statement, so the call itself stays read-only and never waits for the count. A crash
//! loses the counts since the last flush, never a call; a failed flush keeps its counts for the
//! next one. The measured counts that `IdentifyCaller`'s recognition status shows are cached
//! per account and employee and refreshed in the background about once a minute.

use callers_domain::AccountId;
use callers_domain::call_counts::{CallCounts, CallOutcome, Measured};
use callers_store::Store;
use callers_store::call_counts::DayCounts;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a measurement read for `IdentifyCaller` is shown before it is read again.
const MEASURED_FOR: Duration = Duration::from_secs(60);
/// Bounds the cache of measurements: beyond it, it starts afresh.
const MAX_MEASURED: usize = 50_000;

type Key = (String, String, NaiveDate);

struct Cached {
    measured: Option<Measured>,
    read_at: Instant,
    reading: bool,
}

pub struct CallTally {
    pending: Mutex<HashMap<Key, CallCounts>>,
    measured: Mutex<HashMap<(String, String), Cached>>,
    measured_for: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CallTally {
    pub fn new() -> Arc<Self> {
        Self::with_refresh(MEASURED_FOR)
    }

    /// With measurements read again after `measured_for` (tests that cannot wait a minute).
    pub fn with_refresh(measured_for: Duration) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::default(),
            measured: Mutex::default(),
            measured_for,
        })
    }

    /// Counts one call for the account and employee (`""`: none named), on `now`'s UTC day.
    pub fn record(
        &self,
        account: &str,
        employee_id: &str,
        now: DateTime<Utc>,
        outcome: CallOutcome,
    ) {
        let key = (account.to_owned(), employee_id.to_owned(), now.date_naive());
        lock(&self.pending).entry(key).or_default().add(outcome);
    }

    /// Writes what was counted since the last flush; on failure the counts stay for the next.
    /// Returns how many (account, employee, day) rows were written.
    pub async fn flush(&self, store: &Store) -> Result<usize, callers_store::Error> {
        let taken: Vec<(Key, CallCounts)> = lock(&self.pending).drain().collect();
        if taken.is_empty() {
            return Ok(0);
        }
        let rows: Vec<DayCounts> = taken
            .iter()
            .map(|((account_id, employee_id, day), counts)| DayCounts {
                account_id: account_id.clone(),
                employee_id: employee_id.clone(),
                day: *day,
                counts: *counts,
            })
            .collect();
        match store.add_call_counts(&rows).await {
            Ok(()) => Ok(rows.len()),
            Err(e) => {
                let mut pending = lock(&self.pending);
                for (key, counts) in taken {
                    pending.entry(key).or_default().merge(&counts);
                }
                Err(e)
            }
        }
    }

    /// Flushes every `every` until aborted; failures are logged and retried.
    pub async fn run(self: Arc<Self>, store: Store, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.flush(&store).await {
                tracing::warn!(error = %e, "flushing call counts failed; the next flush retries");
            }
        }
    }

    /// The last measurement read for the account and employee, if any; reads it again in the
    /// background when it is missing or older than a minute. Never waits for the database.
    pub fn measured(
        self: &Arc<Self>,
        store: &Store,
        account: &AccountId,
        employee_id: &str,
        now: DateTime<Utc>,
    ) -> Option<Measured> {
        let key = (account.as_str().to_owned(), employee_id.to_owned());
        {
            let mut cache = lock(&self.measured);
            if cache.len() > MAX_MEASURED {
                cache.clear();
            }
            let entry = cache.entry(key.clone()).or_insert(Cached {
                measured: None,
                read_at: Instant::now() - self.measured_for * 2,
                reading: false,
            });
            let stale = entry.read_at.elapsed() >= self.measured_for;
            if stale && !entry.reading {
                entry.reading = true;
                let (me, store, account) = (self.clone(), store.clone(), account.clone());
                let employee = employee_id.to_owned();
                tokio::spawn(async move {
                    let read = measure(&store, &account, &employee, now).await;
                    let mut cache = lock(&me.measured);
                    if let Some(entry) = cache.get_mut(&key) {
                        entry.reading = false;
                        entry.read_at = Instant::now();
                        match read {
                            Ok(m) => entry.measured = Some(m),
                            Err(e) => tracing::warn!(error = %e, "reading call counts failed"),
                        }
                    }
                });
            }
            entry.measured.clone()
        }
    }
}

/// The counts of the last window for the employee, or the whole account for `""`.
pub async fn measure(
    store: &Store,
    account: &AccountId,
    employee_id: &str,
    now: DateTime<Utc>,
) -> Result<Measured, callers_store::Error> {
    let employee = (!employee_id.is_empty()).then_some(employee_id);
    let counts = store.call_counts(account, employee, now).await?;
    Ok(Measured {
        employee_id: employee_id.to_owned(),
        counts,
    })
}
