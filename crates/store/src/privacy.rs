//! Privacy requests: erasing a caller everywhere, suppressing a number, exporting what is kept
//! about a caller, and deleting an account's data. Every request leaves a row in
//! `privacy_requests` (or `account_deletions`) with ids, counts, times and the token's name,
//! never a name, a number or a text; a number appears there only as a keyed hash.

use crate::call_notes::{NoteRow, select_note};
use crate::contacts::{ContactRow, select_contact};
use crate::exec::Conn;
use crate::feed::{self, Written};
use crate::idempotency::{IdempotencyKey, Replay};
use crate::messages::UndeliveredRow;
use crate::row::row_struct;
use crate::{Error, Store};
use callers_domain::AccountId;
use callers_domain::call_note::CallNote;
use callers_domain::change::{Change, DeleteReason};
use callers_domain::contact::Contact;
use callers_domain::message::UndeliveredMessage;
use callers_domain::phone::{self, Region};
use callers_domain::privacy::{self, Holder, KeyedHash, Subject};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// An erasure as the request asks it.
#[derive(Debug, Clone)]
pub struct Erasure {
    pub subject: Subject,
    /// Remember the number (as keyed hashes) so later calls from it record nothing.
    pub suppress: bool,
    /// The number's keyed hashes under every configured key, current key first; empty without
    /// a number or without keys.
    pub number_hashes: Vec<KeyedHash>,
    /// Reads the numbers of notes written before numbers were stored normalised.
    pub region: Region,
    pub token_name: String,
}

/// What an erasure did: ids and counts only (it is also the idempotency record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erased {
    pub erasure_id: Uuid,
    pub deleted_contact_ids: Vec<Uuid>,
    pub redacted_call_notes: u64,
    pub redacted_changes: u64,
    pub removed_undelivered_messages: u64,
    pub suppressed: bool,
}

impl Replay for Erased {
    type Ids = Erased;

    fn ids(&self) -> Erased {
        self.clone()
    }

    async fn replay(_db: Conn<'_>, _account: &str, ids: Erased) -> Result<Self, Error> {
        Ok(ids)
    }
}

row_struct! {
    struct HolderRow {
        contact_id: Uuid,
        protected: bool,
    }
}

row_struct! {
    struct IdRow {
        id: Uuid,
    }
}

row_struct! {
    struct UnfilledRow {
        call_note_id: Uuid,
        caller_number: String,
    }
}

row_struct! {
    struct UndeliveredIdRow {
        contact_id: Uuid,
        message_id: Uuid,
    }
}

/// Whether the number of `hashes` is suppressed in the account.
pub(crate) async fn suppressed(
    db: Conn<'_>,
    account: &str,
    hashes: &[KeyedHash],
) -> Result<bool, Error> {
    if hashes.is_empty() {
        return Ok(false);
    }
    let hashes: Vec<&[u8]> = hashes.iter().map(|h| h.hash.as_slice()).collect();
    let rows = db
        .query(
            "SELECT 1 FROM suppressions WHERE account_id = $1 AND hash = ANY($2) LIMIT 1",
            &[&account, &hashes],
        )
        .await?;
    Ok(!rows.is_empty())
}

/// Normalises, once, the caller numbers of the account's notes written before `caller_e164`
/// existed (migration V15), so that a request by number finds them.
async fn fill_note_numbers(tx: Conn<'_>, account: &str, region: &Region) -> Result<(), Error> {
    let pending: Vec<UnfilledRow> = tx
        .rows(
            "SELECT call_note_id, caller_number FROM call_notes \
             WHERE account_id = $1 AND NOT caller_e164_filled FOR UPDATE",
            &[&account],
        )
        .await?;
    if pending.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = pending.iter().map(|p| p.call_note_id).collect();
    let e164s: Vec<Option<String>> = pending
        .iter()
        .map(|p| {
            phone::normalize(&p.caller_number, region)
                .ok()
                .flatten()
                .map(|e| e.into_string())
        })
        .collect();
    tx.execute(
        "UPDATE call_notes n SET caller_e164 = v.e164, caller_e164_filled = true \
         FROM unnest($2::uuid[], $3::text[]) AS v(id, e164) \
         WHERE n.account_id = $1 AND n.call_note_id = v.id",
        &[&account, &ids, &e164s],
    )
    .await?;
    Ok(())
}

/// The contacts of the account that hold `number`, or are named.
async fn subject_contacts(
    tx: Conn<'_>,
    account: &str,
    subject: &Subject,
    lock: bool,
) -> Result<Vec<Uuid>, Error> {
    let number = subject.number.as_ref().map(|n| n.as_str());
    let sql = if lock {
        "SELECT contact_id AS id FROM contacts WHERE account_id = $1 AND (contact_id = ANY($2) \
           OR contact_id IN (SELECT contact_id FROM contact_phone_numbers \
                             WHERE account_id = $1 AND e164 = $3)) \
         ORDER BY contact_id FOR UPDATE"
    } else {
        "SELECT contact_id AS id FROM contacts WHERE account_id = $1 AND (contact_id = ANY($2) \
           OR contact_id IN (SELECT contact_id FROM contact_phone_numbers \
                             WHERE account_id = $1 AND e164 = $3)) \
         ORDER BY contact_id"
    };
    let rows: Vec<IdRow> = tx
        .rows(sql, &[&account, &subject.contact_ids, &number])
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

impl Store {
    /// Erases a caller in one transaction: deletes the contacts (`erasure_targets`), redacts
    /// their call notes and the notes that hold the number to skeletons, removes their
    /// undelivered-message records, redacts the change history about all of them, optionally
    /// suppresses the number, and records the erasure. [`Error::ContactsNotNamed`] when the
    /// number's holders must be named first.
    pub async fn erase_caller(
        &self,
        account: &AccountId,
        erasure: &Erasure,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Erased, Error> {
        let now = crate::db_time(now);
        let acc = account.as_str();
        let subject = &erasure.subject;
        let number = subject.number.as_ref().map(|n| n.as_str());
        self.write_once(acc, key, now, async |tx| {
            // Holders first, locked in id order like every writer of several contacts.
            let holders: Vec<HolderRow> = tx
                .rows(
                    "SELECT contact_id, NOT purge_candidate AS protected \
                     FROM contacts WHERE account_id = $1 AND contact_id IN ( \
                       SELECT contact_id FROM contact_phone_numbers \
                       WHERE account_id = $1 AND e164 = $2) \
                     ORDER BY contact_id FOR UPDATE",
                    &[&acc, &number],
                )
                .await?;
            let holders: Vec<Holder> = holders
                .into_iter()
                .map(|h| Holder {
                    contact_id: h.contact_id,
                    protected: h.protected,
                })
                .collect();
            let targets =
                privacy::erasure_targets(subject, &holders).map_err(Error::ContactsNotNamed)?;
            let named: Vec<IdRow> = tx
                .rows(
                    "SELECT contact_id AS id FROM contacts \
                     WHERE account_id = $1 AND contact_id = ANY($2) ORDER BY contact_id FOR UPDATE",
                    &[&acc, &subject.contact_ids],
                )
                .await?;
            if named.len() < subject.contact_ids.len() {
                return Err(Error::NotFound(crate::Entity::Contact));
            }
            fill_note_numbers(tx, acc, &erasure.region).await?;
            let notes: Vec<IdRow> = tx
                .rows(
                    "SELECT call_note_id AS id FROM call_notes WHERE account_id = $1 \
                       AND (contact_id = ANY($2) OR caller_e164 = $3) \
                       AND redact_time IS NULL ORDER BY call_note_id FOR UPDATE",
                    &[&acc, &targets, &number],
                )
                .await?;
            let notes: Vec<Uuid> = notes.into_iter().map(|r| r.id).collect();
            let undelivered: Vec<UndeliveredIdRow> = tx
                .rows(
                    "DELETE FROM undelivered_messages \
                     WHERE account_id = $1 AND contact_id = ANY($2) \
                     RETURNING contact_id, message_id",
                    &[&acc, &targets],
                )
                .await?;
            let deleted: Vec<IdRow> = tx
                .rows(
                    "DELETE FROM contacts WHERE account_id = $1 AND contact_id = ANY($2) \
                     RETURNING contact_id AS id",
                    &[&acc, &targets],
                )
                .await?;
            tx.execute(
                "UPDATE message_deliveries SET text = '' \
                 WHERE account_id = $1 AND call_note_id = ANY($2)",
                &[&acc, &notes],
            )
            .await?;
            tx.execute(
                "UPDATE call_notes SET caller_first_name = '', caller_last_name = '', \
                   caller_company = '', caller_number = '', caller_e164 = NULL, subject = '', \
                   body = '', redact_time = $3 \
                 WHERE account_id = $1 AND call_note_id = ANY($2)",
                &[&acc, &notes, &now],
            )
            .await?;
            let redacted: Vec<CallNote> = tx
                .rows::<NoteRow>(
                    concat!(
                        select_note!(),
                        "WHERE n.account_id = $1 AND n.call_note_id = ANY($2) \
                         ORDER BY n.call_note_id"
                    ),
                    &[&acc, &notes],
                )
                .await?
                .into_iter()
                .map(CallNote::from)
                .collect();
            let deleted: Vec<Uuid> = deleted.into_iter().map(|r| r.id).collect();
            let redacted_changes = redact_history(tx, acc, &deleted, &notes, now).await?;
            let suppressed = erasure.suppress && !erasure.number_hashes.is_empty();
            let erasure_id = Uuid::now_v7();
            if suppressed {
                let hashes: Vec<&[u8]> = erasure
                    .number_hashes
                    .iter()
                    .map(|h| h.hash.as_slice())
                    .collect();
                let key_ids: Vec<&str> = erasure
                    .number_hashes
                    .iter()
                    .map(|h| h.key_id.as_str())
                    .collect();
                tx.execute(
                    "INSERT INTO suppressions (account_id, hash, key_id, erasure_id, create_time) \
                     SELECT $1, h, k, $4, $5 FROM unnest($2::bytea[], $3::text[]) AS v(h, k) \
                     ON CONFLICT DO NOTHING",
                    &[&acc, &hashes, &key_ids, &erasure_id, &now],
                )
                .await?;
            }
            let done = Erased {
                erasure_id,
                deleted_contact_ids: deleted.clone(),
                redacted_call_notes: redacted.len() as u64,
                redacted_changes,
                removed_undelivered_messages: undelivered.len() as u64,
                suppressed,
            };
            let counts = serde_json::json!({
                "contacts_deleted": done.deleted_contact_ids.len(),
                "call_notes_redacted": done.redacted_call_notes,
                "changes_redacted": done.redacted_changes,
                "undelivered_messages_removed": done.removed_undelivered_messages,
                "suppressed": done.suppressed,
            });
            let current = erasure.number_hashes.first();
            tx.execute(
                "INSERT INTO privacy_requests (account_id, request_id, kind, request_time, \
                   token_name, contact_ids, number_hash, key_id, counts) \
                 VALUES ($1, $2, 'erasure', $3, $4, $5, $6, $7, $8)",
                &[
                    &acc,
                    &erasure_id,
                    &now,
                    &erasure.token_name,
                    &deleted,
                    &current.map(|h| h.hash.as_slice()),
                    &current.map(|h| h.key_id.as_str()),
                    &counts,
                ],
            )
            .await?;
            let mut changes: Vec<Change> = Vec::new();
            changes.extend(
                undelivered
                    .iter()
                    .map(|u| Change::UndeliveredMessageRemoved {
                        contact_id: u.contact_id,
                        message_id: u.message_id,
                    }),
            );
            changes.extend(deleted.iter().map(|&contact_id| Change::ContactDeleted {
                contact_id,
                reason: DeleteReason::Erasure,
            }));
            changes.extend(redacted.into_iter().map(Change::CallNoteRedacted));
            Ok(Written::new(done, changes))
        })
        .await
    }

    /// Lifts the suppression of a number (any of its keyed hashes); records the request.
    /// Returns whether the number was suppressed.
    pub async fn lift_suppression(
        &self,
        account: &AccountId,
        number_hashes: &[KeyedHash],
        token_name: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let now = crate::db_time(now);
        let acc = account.as_str();
        let hashes: Vec<&[u8]> = number_hashes.iter().map(|h| h.hash.as_slice()).collect();
        self.pooled(async |s| {
            let tx = s.transaction().await?;
            let lifted = tx
                .conn()
                .execute(
                    "DELETE FROM suppressions WHERE account_id = $1 AND hash = ANY($2)",
                    &[&acc, &hashes],
                )
                .await?;
            let current = number_hashes.first();
            tx.conn()
                .execute(
                    "INSERT INTO privacy_requests (account_id, request_id, kind, request_time, \
                       token_name, number_hash, key_id, counts) \
                     VALUES ($1, $2, 'suppression_lifted', $3, $4, $5, $6, $7)",
                    &[
                        &acc,
                        &Uuid::now_v7(),
                        &now,
                        &token_name,
                        &current.map(|h| h.hash.as_slice()),
                        &current.map(|h| h.key_id.as_str()),
                        &serde_json::json!({ "suppressions_removed": lifted }),
                    ],
                )
                .await?;
            tx.commit().await?;
            Ok(lifted > 0)
        })
        .await
    }

    /// Whether calls from the number of `number_hashes` are suppressed in the account.
    pub async fn is_suppressed(
        &self,
        account: &AccountId,
        number_hashes: &[KeyedHash],
    ) -> Result<bool, Error> {
        if number_hashes.is_empty() {
            return Ok(false);
        }
        self.on(crate::exec::Route::Shared, async |s| {
            suppressed(s.conn(), account.as_str(), number_hashes).await
        })
        .await
    }

    /// One page of everything the account keeps about a subject: the contacts that hold the
    /// number or are named, the call notes linked to them or holding the number (with their
    /// deliveries), and their undelivered-message records, in that order, each in id order.
    /// The first page records the export (ids and counts of what it found).
    pub async fn export_caller_data(
        &self,
        account: &AccountId,
        request: &Export<'_>,
        now: DateTime<Utc>,
    ) -> Result<ExportPage, Error> {
        let acc = account.as_str();
        let subject = request.subject;
        let number = subject.number.as_ref().map(|n| n.as_str());
        self.pooled(async |s| {
            let tx = s.transaction().await?;
            let db = tx.conn();
            fill_note_numbers(db, acc, request.region).await?;
            let contact_ids = subject_contacts(db, acc, subject, false).await?;
            let mut page = ExportPage::default();
            let (mut section, mut after) = request.after.unwrap_or((ExportSection::Contacts, None));
            let mut room = request.limit;
            loop {
                let fetch = (room + 1) as i64;
                let more = match section {
                    ExportSection::Contacts => {
                        let rows: Vec<ContactRow> = db
                            .rows(
                                concat!(
                                    select_contact!(),
                                    "WHERE c.account_id = $1 AND c.contact_id = ANY($2) \
                                     AND ($3::uuid IS NULL OR c.contact_id > $3) \
                                     ORDER BY c.contact_id LIMIT $4"
                                ),
                                &[&acc, &contact_ids, &after, &fetch],
                            )
                            .await?;
                        let items = rows
                            .into_iter()
                            .map(Contact::try_from)
                            .collect::<Result<Vec<_>, _>>()?;
                        take(items, room, &mut page.contacts, |c| c.contact_id)
                    }
                    ExportSection::CallNotes => {
                        let rows: Vec<NoteRow> = db
                            .rows(
                                concat!(
                                    select_note!(),
                                    "WHERE n.account_id = $1 \
                                     AND (n.contact_id = ANY($2) OR n.caller_e164 = $3) \
                                     AND ($4::uuid IS NULL OR n.call_note_id > $4) \
                                     ORDER BY n.call_note_id LIMIT $5"
                                ),
                                &[&acc, &contact_ids, &number, &after, &fetch],
                            )
                            .await?;
                        let items = rows.into_iter().map(CallNote::from).collect();
                        take(items, room, &mut page.call_notes, |n| n.call_note_id)
                    }
                    ExportSection::Undelivered => {
                        let rows: Vec<UndeliveredRow> = db
                            .rows(
                                "SELECT message_id, contact_id, text, create_time, expire_time, \
                                   end_time, reason FROM undelivered_messages \
                                 WHERE account_id = $1 AND contact_id = ANY($2) \
                                 AND ($3::uuid IS NULL OR message_id > $3) \
                                 ORDER BY message_id LIMIT $4",
                                &[&acc, &contact_ids, &after, &fetch],
                            )
                            .await?;
                        let items = rows
                            .into_iter()
                            .map(UndeliveredMessage::try_from)
                            .collect::<Result<Vec<_>, _>>()?;
                        take(items, room, &mut page.undelivered_messages, |m| {
                            m.message_id
                        })
                    }
                };
                room = request.limit - page.len();
                if let Some(last) = more {
                    page.next = Some((section, Some(last)));
                    break;
                }
                match section.next() {
                    Some(next) if room > 0 => (section, after) = (next, None),
                    Some(next) => {
                        page.next = Some((next, None));
                        break;
                    }
                    None => break,
                }
            }
            if request.after.is_none() {
                let current = request.number_hashes.first();
                tx.conn()
                    .execute(
                        "INSERT INTO privacy_requests (account_id, request_id, kind, \
                           request_time, token_name, contact_ids, number_hash, key_id, counts) \
                         VALUES ($1, $2, 'export', $3, $4, $5, $6, $7, $8)",
                        &[
                            &acc,
                            &Uuid::now_v7(),
                            &crate::db_time(now),
                            &request.token_name,
                            &contact_ids,
                            &current.map(|h| h.hash.as_slice()),
                            &current.map(|h| h.key_id.as_str()),
                            &serde_json::json!({ "contacts": contact_ids.len() }),
                        ],
                    )
                    .await?;
            }
            tx.commit().await?;
            Ok(page)
        })
        .await
    }
}

/// Moves up to `room` of `items` (fetched with one extra) into `into`; the key of the last one
/// moved when more follow.
fn take<T>(mut items: Vec<T>, room: usize, into: &mut Vec<T>, key: fn(&T) -> Uuid) -> Option<Uuid> {
    let more = items.len() > room;
    items.truncate(room);
    let last = if more { items.last().map(key) } else { None };
    into.extend(items);
    last
}

/// The parts of an export, in the order pages walk them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportSection {
    Contacts = 1,
    CallNotes = 2,
    Undelivered = 3,
}

impl ExportSection {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Contacts,
            2 => Self::CallNotes,
            3 => Self::Undelivered,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    fn next(self) -> Option<Self> {
        match self {
            Self::Contacts => Some(Self::CallNotes),
            Self::CallNotes => Some(Self::Undelivered),
            Self::Undelivered => None,
        }
    }
}

/// Where an export page starts: a section, and the id after which it continues.
pub type ExportPosition = (ExportSection, Option<Uuid>);

/// An export as the request asks it.
#[derive(Debug)]
pub struct Export<'a> {
    pub subject: &'a Subject,
    pub number_hashes: &'a [KeyedHash],
    pub region: &'a Region,
    pub token_name: &'a str,
    pub after: Option<ExportPosition>,
    /// Items per page, all sections together (at least 1).
    pub limit: usize,
}

#[derive(Debug, Default)]
pub struct ExportPage {
    pub contacts: Vec<Contact>,
    pub call_notes: Vec<CallNote>,
    pub undelivered_messages: Vec<UndeliveredMessage>,
    pub next: Option<ExportPosition>,
}

impl ExportPage {
    pub fn len(&self) -> usize {
        self.contacts.len() + self.call_notes.len() + self.undelivered_messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rewrites the resources of the account's recorded changes about `contacts` or `notes` to
/// their redacted forms (`callers_domain::privacy`); returns how many were rewritten.
async fn redact_history(
    tx: Conn<'_>,
    account: &str,
    contacts: &[Uuid],
    notes: &[Uuid],
    at: DateTime<Utc>,
) -> Result<u64, Error> {
    let rows = tx
        .query(
            "SELECT 0::bigint AS head, seq, change_time, kind, contact_id, call_note_id, \
               message_id, reason, activity_time, resource FROM changes \
             WHERE account_id = $1 AND resource IS NOT NULL \
               AND (contact_id = ANY($2) OR call_note_id = ANY($3)) \
             ORDER BY seq FOR UPDATE",
            &[&account, &contacts, &notes],
        )
        .await?;
    let mut seqs = Vec::with_capacity(rows.len());
    let mut resources = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(event) = feed::event_of_row(row)? else {
            continue;
        };
        let (_, _, resource) = feed::columns(&privacy::redacted_change(&event.change, at))?;
        seqs.push(event.seq);
        resources.push(resource);
    }
    if seqs.is_empty() {
        return Ok(0);
    }
    tx.execute(
        "UPDATE changes c SET resource = v.resource \
         FROM unnest($2::bigint[], $3::jsonb[]) AS v(seq, resource) \
         WHERE c.account_id = $1 AND c.seq = v.seq",
        &[&account, &seqs, &resources],
    )
    .await?;
    Ok(seqs.len() as u64)
}

/// An erasure as `privacy_requests` recorded it: what re-applying it after a restore needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRecord {
    pub account_id: String,
    pub request_id: Uuid,
    pub request_time: DateTime<Utc>,
    pub contact_ids: Vec<Uuid>,
    pub number_hash: Option<Vec<u8>>,
    pub key_id: Option<String>,
}

row_struct! {
    struct ErasureRow {
        account_id: String,
        request_id: Uuid,
        request_time: DateTime<Utc>,
        contact_ids: Vec<Uuid>,
        number_hash: Option<Vec<u8>>,
        key_id: Option<String>,
    }
}

row_struct! {
    struct NumberRow {
        e164: String,
    }
}

/// Why an erasure record cannot be applied again.
#[derive(Debug, thiserror::Error)]
pub enum ReapplyError {
    #[error("the record's key {0:?} is not among the configured privacy keys")]
    UnknownKey(String),
    #[error(transparent)]
    Store(#[from] Error),
}

impl Store {
    /// The erasures recorded after `since`, oldest first, across accounts (a restore's
    /// maintenance, not a request of an account); each is then applied in its account. The
    /// marker is `crate::purge::ACCOUNTS_WITH_WORK`'s: one of the few reads across accounts.
    pub async fn erasures_since(&self, since: DateTime<Utc>) -> Result<Vec<ErasureRecord>, Error> {
        let rows: Vec<ErasureRow> = self
            .pooled(async |s| {
                s.conn()
                    .rows(
                        "SELECT /* which accounts have work */ account_id, request_id, \
                           request_time, contact_ids, number_hash, key_id FROM privacy_requests \
                         WHERE kind = 'erasure' AND request_time > $1 \
                         ORDER BY request_time, account_id, request_id",
                        &[&since],
                    )
                    .await
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ErasureRecord {
                account_id: r.account_id,
                request_id: r.request_id,
                request_time: r.request_time,
                contact_ids: r.contact_ids,
                number_hash: r.number_hash,
                key_id: r.key_id,
            })
            .collect())
    }

    /// Applies a recorded erasure again (after restoring a backup taken before it): the
    /// recorded contacts that exist, and the stored number whose keyed hash under the
    /// record's key is the recorded one, with every holder of it (the original request
    /// confirmed them). `Ok(None)` when nothing of it is left to erase.
    pub async fn reapply_erasure(
        &self,
        record: &ErasureRecord,
        keys: &privacy::HashKeys,
        region: &Region,
        now: DateTime<Utc>,
    ) -> Result<Option<Erased>, ReapplyError> {
        let account = AccountId::parse(&record.account_id)
            .map_err(|e| Error::Corrupt(format!("erasure record of account: {e}")))?;
        let acc = account.as_str();
        let number = match (&record.number_hash, &record.key_id) {
            (Some(hash), Some(key_id)) => {
                if keys.hash_with(key_id, acc, "").is_none() {
                    return Err(ReapplyError::UnknownKey(key_id.clone()));
                }
                let numbers: Vec<NumberRow> = self
                    .pooled(async |s| {
                        let tx = s.transaction().await?;
                        fill_note_numbers(tx.conn(), acc, region).await?;
                        let rows = tx
                            .conn()
                            .rows(
                                "SELECT e164 FROM contact_phone_numbers WHERE account_id = $1 \
                                 UNION SELECT caller_e164 FROM call_notes \
                                 WHERE account_id = $1 AND caller_e164 IS NOT NULL",
                                &[&acc],
                            )
                            .await?;
                        tx.commit().await?;
                        Ok(rows)
                    })
                    .await?;
                numbers
                    .into_iter()
                    .find(|n| keys.hash_with(key_id, acc, &n.e164).as_ref() == Some(hash))
                    .map(|n| callers_domain::phone::E164::from_trusted(n.e164))
            }
            _ => None,
        };
        let probe = Subject {
            number: number.clone(),
            contact_ids: record.contact_ids.clone(),
        };
        let present = self
            .pooled(async |s| subject_contacts(s.conn(), acc, &probe, false).await)
            .await?;
        if number.is_none() && present.is_empty() {
            return Ok(None);
        }
        let erasure = Erasure {
            subject: Subject {
                number,
                contact_ids: present,
            },
            suppress: false,
            number_hashes: Vec::new(),
            region: *region,
            token_name: format!("reapply-erasures:{}", record.request_id),
        };
        Ok(Some(
            self.erase_caller(&account, &erasure, None, now).await?,
        ))
    }
}

/// How long one `DeleteAccountData` call works before it answers (a later call resumes).
#[derive(Debug, Clone, Copy)]
pub struct DeletionBudget {
    pub rows_per_batch: i64,
    pub time: std::time::Duration,
}

/// What `DeleteAccountData` counted or deleted, per table, and whether nothing is left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountDeletion {
    pub rows: BTreeMap<String, u64>,
    pub done: bool,
}

/// Every table that holds rows of an account, in the order offboarding empties them (rows
/// that others refer to last). `account_words` is kept by the word triggers of `contacts`.
pub const ACCOUNT_TABLES: &[&str] = &[
    "message_deliveries",
    "call_notes",
    "undelivered_messages",
    "contact_phone_numbers",
    "contacts",
    "contact_words",
    "account_words",
    "changes",
    "change_counters",
    "call_counts",
    "idempotency_keys",
    "employee_call_handling",
    "call_handling",
    "purged_contacts",
    "suppressions",
    "privacy_requests",
];

row_struct! {
    struct CountRow {
        n: i64,
    }
}

impl Store {
    /// The account's rows per table of [`ACCOUNT_TABLES`], in one snapshot.
    async fn count_account_rows(&self, acc: &str) -> Result<BTreeMap<String, u64>, Error> {
        self.pooled(async |s| {
            let tx = s.read_only().await?;
            let mut rows = BTreeMap::new();
            for table in ACCOUNT_TABLES {
                let sql = format!("SELECT count(*) AS n FROM {table} WHERE account_id = $1");
                let n: Option<CountRow> = tx.conn().row(&sql, &[&acc]).await?;
                rows.insert((*table).to_owned(), n.map_or(0, |r| r.n as u64));
            }
            Ok(rows)
        })
        .await
    }

    /// Counts (`dry_run`) or deletes every row of the account, table by table in batches, for
    /// at most the budget's time; `done` once no row is left. Resumable: a call after a crash
    /// or a timeout continues with what is left. The account's row in `account_deletions`
    /// records the start, the rows deleted and the end, and is the one row that stays.
    pub async fn delete_account_data(
        &self,
        account: &AccountId,
        dry_run: bool,
        token_name: &str,
        budget: DeletionBudget,
        now: DateTime<Utc>,
    ) -> Result<AccountDeletion, Error> {
        let acc = account.as_str();
        let now = crate::db_time(now);
        let mut out = AccountDeletion::default();
        if dry_run {
            out.rows = self.count_account_rows(acc).await?;
            out.done = out.rows.values().all(|&n| n == 0);
            return Ok(out);
        }
        self.pooled(async |s| {
            s.conn()
                .execute(
                    "INSERT INTO account_deletions (account_id, start_time, token_name) \
                     VALUES ($1, $2, $3) \
                     ON CONFLICT (account_id) DO UPDATE SET end_time = NULL, token_name = $3",
                    &[&acc, &now, &token_name],
                )
                .await
        })
        .await?;
        let started = std::time::Instant::now();
        let mut complete = true;
        'tables: for table in ACCOUNT_TABLES {
            loop {
                // ctid batches: every table, whatever its key; the account's rows only.
                let sql = format!(
                    "WITH batch AS (SELECT ctid FROM {table} WHERE account_id = $1 LIMIT $2 \
                       FOR UPDATE SKIP LOCKED), \
                     gone AS (DELETE FROM {table} t USING batch \
                       WHERE t.ctid = batch.ctid AND t.account_id = $1 RETURNING 1), \
                     noted AS (UPDATE account_deletions SET deleted = jsonb_set(deleted, \
                       ARRAY[$3::text], to_jsonb(coalesce((deleted ->> $3)::bigint, 0) \
                       + (SELECT count(*) FROM gone))) WHERE account_id = $1) \
                     SELECT count(*) AS n FROM gone"
                );
                let n: Option<CountRow> = self
                    .pooled(async |s| {
                        s.conn()
                            .row(&sql, &[&acc, &budget.rows_per_batch, table])
                            .await
                    })
                    .await?;
                let n = n.map_or(0, |r| r.n as u64);
                *out.rows.entry((*table).to_owned()).or_default() += n;
                let table_done = (n as i64) < budget.rows_per_batch;
                // At least one batch per call, so that every call makes progress.
                if started.elapsed() >= budget.time && !(table_done && n == 0) {
                    complete = false;
                    break 'tables;
                }
                if table_done {
                    break;
                }
            }
        }
        if complete {
            // Rows a concurrent write added, or rows locked by one, are left for the next call.
            complete = self
                .count_account_rows(acc)
                .await?
                .values()
                .all(|&n| n == 0);
        }
        if complete {
            self.pooled(async |s| {
                s.conn()
                    .execute(
                        "UPDATE account_deletions SET end_time = $2 WHERE account_id = $1",
                        &[&acc, &now],
                    )
                    .await
            })
            .await?;
        }
        out.done = complete;
        Ok(out)
    }
}
