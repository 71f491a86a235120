//! The change feed (transactional outbox): every write records what it changed in the
//! transaction that makes the change, and readers follow an account's changes by number.
//!
//! Numbering: a write inserts its changes and bumps the account's row in `change_counters` in
//! one statement, the transaction's last ([`record`]). The counter's row lock is held until
//! commit, so a second writer of the account waits there until the first has committed (or
//! rolled back, which rolls its numbers back too) and then numbers after it. Hence, per
//! account, numbers are gap-free and their order is commit order: a reader whose snapshot sees
//! the counter at N sees every change numbered up to N and none after. A sequence would give
//! neither (a later number can commit first, an abort leaves a hole), and transaction ids
//! against a snapshot's xmin give start order and wait on every long transaction of the cluster.
//! The cost: a busy account's writes serialise on the counter for the time from their last
//! statement to the end of their commit (BENCHMARKS.md measures it); other accounts never wait.
//!
//! A write with several accounts' changes (a purge batch) takes the counters in one statement
//! after its other row locks; writers of one account take theirs last and hold nothing the
//! purge waits for, so no deadlock.

use crate::exec::{Conn, Tx};
use crate::row::row_struct;
use crate::{Error, Store};
use callers_domain::AccountId;
use callers_domain::change::{Change, ChangeEvent, DeleteReason};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

/// What a write produced and the changes it made, recorded before it commits.
pub(crate) struct Written<T> {
    pub(crate) value: T,
    pub(crate) changes: Vec<Change>,
}

impl<T> Written<T> {
    pub(crate) fn new(value: T, changes: Vec<Change>) -> Self {
        Self { value, changes }
    }
}

/// Numbers and inserts a write's changes; the transaction's last statement (module doc).
const RECORD: &str = "WITH bumped AS ( \
       INSERT INTO change_counters AS k (account_id, seq) VALUES ($1, $2) \
       ON CONFLICT (account_id) DO UPDATE SET seq = k.seq + excluded.seq RETURNING k.seq) \
     INSERT INTO changes (account_id, seq, change_time, kind, contact_id, call_note_id, \
       message_id, reason, activity_time, resource) \
     SELECT $1, bumped.seq - $2 + e.n, $3, e.kind, e.contact_id, e.call_note_id, e.message_id, \
       e.reason, e.activity_time, e.resource \
     FROM bumped, unnest($4::smallint[], $5::uuid[], $6::uuid[], $7::uuid[], $8::smallint[], \
       $9::timestamptz[], $10::jsonb[]) \
       WITH ORDINALITY AS e(kind, contact_id, call_note_id, message_id, reason, activity_time, \
       resource, n)";

/// Records `changes` of `account` in `tx`: call it last, just before the commit.
pub(crate) async fn record(
    tx: Conn<'_>,
    account: &str,
    now: DateTime<Utc>,
    changes: &[Change],
) -> Result<(), Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut kinds = Vec::with_capacity(changes.len());
    let mut contacts = Vec::with_capacity(changes.len());
    let mut notes = Vec::with_capacity(changes.len());
    let mut messages = Vec::with_capacity(changes.len());
    let mut reasons: Vec<Option<i16>> = Vec::with_capacity(changes.len());
    let mut activity: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(changes.len());
    let mut resources: Vec<Option<serde_json::Value>> = Vec::with_capacity(changes.len());
    for c in changes {
        let ids = c.ids();
        kinds.push(c.code() as i16);
        contacts.push(ids.contact_id);
        notes.push(ids.call_note_id);
        messages.push(ids.message_id);
        let (reason, at, resource) = columns(c)?;
        reasons.push(reason);
        activity.push(at);
        resources.push(resource);
    }
    tx.execute(
        RECORD,
        &[
            &account,
            &(changes.len() as i64),
            &now,
            &kinds,
            &contacts,
            &notes,
            &messages,
            &reasons,
            &activity,
            &resources,
        ],
    )
    .await?;
    Ok(())
}

type Columns = (
    Option<i16>,
    Option<DateTime<Utc>>,
    Option<serde_json::Value>,
);

/// The reason, activity time and resource columns of a change.
pub(crate) fn columns(c: &Change) -> Result<Columns, Error> {
    fn json<T: serde::Serialize>(t: &T) -> Result<Option<serde_json::Value>, Error> {
        serde_json::to_value(t)
            .map(Some)
            .map_err(|e| Error::Corrupt(format!("change resource: {e}")))
    }
    Ok(match c {
        Change::ContactCreated(x) | Change::ContactUpdated(x) => (None, None, json(x)?),
        Change::CallNoteCreated(n) | Change::CallNoteLinked(n) | Change::CallNoteRedacted(n) => {
            (None, None, json(n)?)
        }
        Change::MessageDelivered { call_note, .. } => (None, None, json(call_note)?),
        Change::CallHandlingUpdated(s) => (None, None, json(s)?),
        Change::ContactDeleted { reason, .. } => (Some(reason.code() as i16), None, None),
        Change::ContactExpiring {
            last_activity_time, ..
        } => (None, Some(*last_activity_time), None),
        Change::MessageExpired { record, .. } | Change::MessageReplaced { record, .. } => {
            match record {
                Some(r) => (None, None, json(r)?),
                None => (None, None, None),
            }
        }
        Change::CallNoteDeleted { .. } | Change::UndeliveredMessageRemoved { .. } => {
            (None, None, None)
        }
    })
}

row_struct! {
    /// A change as [`LIST`] reads it, beside the account's head; the change columns are empty
    /// when there is none after the cursor.
    struct ChangeRow {
        head: i64,
        seq: Option<i64>,
        change_time: Option<DateTime<Utc>>,
        kind: Option<i16>,
        contact_id: Option<Uuid>,
        call_note_id: Option<Uuid>,
        message_id: Option<Uuid>,
        reason: Option<i16>,
        activity_time: Option<DateTime<Utc>>,
        resource: Option<serde_json::Value>,
    }
}

/// A change of a row that has [`ChangeRow`]'s columns.
pub(crate) fn event_of_row(row: &tokio_postgres::Row) -> Result<Option<ChangeEvent>, Error> {
    ChangeRow::try_from(row)?.event()
}

impl ChangeRow {
    fn event(self) -> Result<Option<ChangeEvent>, Error> {
        let (Some(seq), Some(change_time), Some(kind)) = (self.seq, self.change_time, self.kind)
        else {
            return Ok(None);
        };
        let corrupt = |what: &str| Error::Corrupt(format!("change {seq} of kind {kind}: {what}"));
        let resource = self.resource;
        fn of<T: DeserializeOwned>(r: Option<serde_json::Value>) -> Result<T, Error> {
            let r = r.ok_or_else(|| Error::Corrupt("change without its resource".into()))?;
            serde_json::from_value(r).map_err(|e| Error::Corrupt(format!("change resource: {e}")))
        }
        let contact_id = || self.contact_id.ok_or_else(|| corrupt("no contact id"));
        let message_id = || self.message_id.ok_or_else(|| corrupt("no message id"));
        let change = match kind {
            1 => Change::ContactCreated(of(resource)?),
            2 => Change::ContactUpdated(of(resource)?),
            3 => Change::ContactDeleted {
                contact_id: contact_id()?,
                reason: self
                    .reason
                    .and_then(|r| DeleteReason::from_code(i32::from(r)))
                    .ok_or_else(|| corrupt("no delete reason"))?,
            },
            4 => Change::ContactExpiring {
                contact_id: contact_id()?,
                last_activity_time: self
                    .activity_time
                    .ok_or_else(|| corrupt("no activity time"))?,
            },
            5 => Change::CallNoteCreated(of(resource)?),
            6 => Change::CallNoteLinked(of(resource)?),
            7 => Change::CallNoteRedacted(of(resource)?),
            8 => Change::CallNoteDeleted {
                call_note_id: self
                    .call_note_id
                    .ok_or_else(|| corrupt("no call note id"))?,
            },
            9 => Change::MessageDelivered {
                message_id: message_id()?,
                call_note: of(resource)?,
            },
            10 => Change::MessageExpired {
                contact_id: contact_id()?,
                message_id: message_id()?,
                record: resource.map(|r| of(Some(r))).transpose()?,
            },
            11 => Change::MessageReplaced {
                contact_id: contact_id()?,
                message_id: message_id()?,
                record: resource.map(|r| of(Some(r))).transpose()?,
            },
            12 => Change::CallHandlingUpdated(of(resource)?),
            13 => Change::UndeliveredMessageRemoved {
                contact_id: contact_id()?,
                message_id: message_id()?,
            },
            _ => return Err(corrupt("unknown kind")),
        };
        Ok(Some(ChangeEvent {
            seq,
            change_time,
            change,
        }))
    }
}

/// The account's head and the changes numbered `$2 + 1 ..= $3`, in one snapshot.
const LIST: &str = "SELECT h.head, c.seq, c.change_time, c.kind, c.contact_id, c.call_note_id, \
       c.message_id, c.reason, c.activity_time, c.resource \
     FROM (SELECT coalesce((SELECT seq FROM change_counters WHERE account_id = $1), 0) AS head) h \
     LEFT JOIN LATERAL (SELECT * FROM changes \
       WHERE account_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq) c ON true \
     ORDER BY c.seq";

row_struct! {
    struct HeadRow {
        head: i64,
    }
}

/// One page of an account's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangePage {
    /// The changes after the cursor, oldest first, consecutive.
    pub events: Vec<ChangeEvent>,
    /// The number of the account's latest committed change when the page was read.
    pub head: i64,
}

impl ChangePage {
    /// The position after this page.
    pub fn next(&self, after: i64) -> i64 {
        self.events.last().map_or(after, |e| e.seq)
    }

    pub fn caught_up(&self, after: i64) -> bool {
        self.next(after) >= self.head
    }
}

/// Wakes streams of this process when a write of an account commits here; writes on other
/// replicas and the purge worker are found by polling.
#[derive(Debug)]
pub(crate) struct Signal {
    sender: broadcast::Sender<Arc<str>>,
}

impl Default for Signal {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
        }
    }
}

impl Store {
    /// Records `changes` as the last statement of `tx`, commits, and wakes the account's streams.
    pub(crate) async fn commit_changes(
        &self,
        tx: Tx<'_>,
        account: &str,
        now: DateTime<Utc>,
        changes: &[Change],
    ) -> Result<(), Error> {
        record(tx.conn(), account, now, changes).await?;
        tx.commit().await?;
        if !changes.is_empty() {
            // No receivers is no error: nobody watches.
            let _ = self.signal.sender.send(account.into());
        }
        Ok(())
    }

    /// Accounts whose writes commit in this process from now on (a lagging receiver missed
    /// some and should look at every account it follows).
    pub fn committed_accounts(&self) -> broadcast::Receiver<Arc<str>> {
        self.signal.sender.subscribe()
    }

    /// The number of the account's latest committed change; 0 before its first.
    pub async fn change_head(&self, account: &AccountId) -> Result<i64, Error> {
        let row: Option<HeadRow> = self
            .pooled(async |s| {
                s.conn()
                    .row(
                        "SELECT seq AS head FROM change_counters WHERE account_id = $1",
                        &[&account.as_str()],
                    )
                    .await
            })
            .await?;
        Ok(row.map_or(0, |r| r.head))
    }

    /// At most `limit` changes after `after`, oldest first. [`Error::CursorExpired`] when a
    /// change after `after` was pruned, or `after` lies beyond the account's head (a cursor
    /// from before a restore).
    pub async fn list_changes(
        &self,
        account: &AccountId,
        after: i64,
        limit: usize,
    ) -> Result<ChangePage, Error> {
        // Saturating: a cursor near the largest number is answered, not overflowed.
        let last = after.saturating_add(limit as i64);
        let rows: Vec<ChangeRow> = self
            .pooled(async |s| {
                s.conn()
                    .rows(LIST, &[&account.as_str(), &after, &last])
                    .await
            })
            .await?;
        let head = rows.first().map_or(0, |r| r.head);
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            events.extend(row.event()?);
        }
        if after > head {
            return Err(Error::CursorExpired);
        }
        // Numbers are gap-free: a missing one was pruned.
        let expected = (head - after).min(limit as i64);
        let consecutive = events
            .iter()
            .enumerate()
            .all(|(i, e)| e.seq - after == i as i64 + 1);
        if events.len() as i64 != expected || !consecutive {
            return Err(Error::CursorExpired);
        }
        Ok(ChangePage { events, head })
    }
}
