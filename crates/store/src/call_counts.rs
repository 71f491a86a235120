//! Incoming calls counted per account, employee and UTC day (`callers_domain::call_counts`):
//! the server replicas add what they counted in memory, one statement per flush, and
//! recognition reads the sums of a rolling window. The purge's housekeeping drops old days
//! (`crate::purge::CALL_COUNTS`).

use crate::exec::Conn;
use crate::row::row_struct;
use crate::{Error, Store};
use callers_domain::AccountId;
use callers_domain::call_counts::{CallCounts, WINDOW_DAYS};
use callers_domain::call_handling::CallHandling;
use chrono::{DateTime, NaiveDate, Utc};

/// Counts of one account, employee (`""`: none named) and day, as a replica flushes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayCounts {
    pub account_id: String,
    pub employee_id: String,
    pub day: NaiveDate,
    pub counts: CallCounts,
}

row_struct! {
    struct SumRow {
        calls: i64,
        without_number: i64,
        own_number: i64,
        number_found: i64,
    }
}

/// Adds to the stored counts, rows in key order so that two replicas flushing at once take
/// their row locks in the same order.
const ADD: &str = "INSERT INTO call_counts AS k \
       (account_id, employee_id, day, calls, without_number, own_number, number_found) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::bigint[], $5::bigint[], \
                          $6::bigint[], $7::bigint[]) \
     ORDER BY 1, 2, 3 \
     ON CONFLICT (account_id, employee_id, day) DO UPDATE SET \
       calls = k.calls + excluded.calls, \
       without_number = k.without_number + excluded.without_number, \
       own_number = k.own_number + excluded.own_number, \
       number_found = k.number_found + excluded.number_found";

impl Store {
    /// Adds a replica's counts in one statement (keys must be distinct).
    pub async fn add_call_counts(&self, rows: &[DayCounts]) -> Result<(), Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let col = |f: fn(&DayCounts) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
        let accounts: Vec<&str> = rows.iter().map(|r| r.account_id.as_str()).collect();
        let employees: Vec<&str> = rows.iter().map(|r| r.employee_id.as_str()).collect();
        let days: Vec<NaiveDate> = rows.iter().map(|r| r.day).collect();
        let (calls, without, own, found) = (
            col(|r| r.counts.calls),
            col(|r| r.counts.without_number),
            col(|r| r.counts.own_number),
            col(|r| r.counts.number_found),
        );
        self.pooled(async |s| {
            s.conn()
                .execute(
                    ADD,
                    &[&accounts, &employees, &days, &calls, &without, &own, &found],
                )
                .await
        })
        .await?;
        Ok(())
    }

    /// The calls of the last [`WINDOW_DAYS`] days up to `now` (today included), of one
    /// employee or, with `None`, of the whole account.
    pub async fn call_counts(
        &self,
        account: &AccountId,
        employee_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<CallCounts, Error> {
        self.pooled(async |s| sum(s.conn(), account.as_str(), employee_id, now).await)
            .await
    }

    /// What `CheckCallerRecognition` judges: the settings for the employee
    /// ([`Store::call_handling_for_employee`]) and the counts of the employee's calls (`""`:
    /// the account's), on one connection.
    pub async fn recognition_inputs(
        &self,
        account: &AccountId,
        employee_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(Option<CallHandling>, CallCounts), Error> {
        let employee = (!employee_id.is_empty()).then_some(employee_id);
        self.pooled(async |s| {
            let db = s.conn();
            tokio::try_join!(
                crate::call_handling::read_for_employee(db, account.as_str(), employee_id),
                sum(db, account.as_str(), employee, now)
            )
        })
        .await
    }
}

async fn sum(
    db: Conn<'_>,
    account: &str,
    employee_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<CallCounts, Error> {
    let first_day = (now - chrono::Duration::days(WINDOW_DAYS - 1)).date_naive();
    let row: Option<SumRow> = db
        .row(
            "SELECT coalesce(sum(calls), 0)::bigint AS calls, \
                         coalesce(sum(without_number), 0)::bigint AS without_number, \
                         coalesce(sum(own_number), 0)::bigint AS own_number, \
                         coalesce(sum(number_found), 0)::bigint AS number_found \
                         FROM call_counts WHERE account_id = $1 \
                         AND ($2::text IS NULL OR employee_id = $2) AND day >= $3",
            &[&account, &employee_id, &first_day],
        )
        .await?;
    Ok(row.map_or_else(CallCounts::default, |r| CallCounts {
        calls: r.calls,
        without_number: r.without_number,
        own_number: r.own_number,
        number_found: r.number_found,
    }))
}
