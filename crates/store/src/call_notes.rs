//! Call notes and the exactly-once delivery of caller messages.
//!
//! Delivery locks the contact row first, then the note: concurrent deliveries of one message
//! queue on the contact, and every one after the first finds the message gone. The primary key
//! of `message_deliveries (account_id, message_id)` makes a second delivery impossible even if
//! that order were broken.

use crate::contacts::{get_contact, insert_contact};
use crate::exec::{Conn, Route};
use crate::feed::Written;
use crate::idempotency::{IdempotencyKey, Replay};
use crate::identify::{self, NameQuery};
use crate::messages::undelivered_reason;
use crate::row::{in_step, row_struct};
use crate::{Entity, Error, Store, keyset_page};
use callers_domain::AccountId;
use callers_domain::call_note::{CallNote, Caller, Filing, MessageDelivery, NewCallNote};
use callers_domain::change::Change;
use callers_domain::contact::Contact;
use callers_domain::message::{self, UndeliveredReason};
use callers_domain::privacy::KeyedHash;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! select_note {
    () => {
        "SELECT n.account_id, n.call_note_id, n.contact_id, n.employee_id, n.agent_id, \
         n.caller_first_name, n.caller_last_name, n.caller_company, n.caller_number, n.subject, \
         n.body, n.call_time, n.create_time, n.redact_time, d.delivered_ids, d.delivered_texts, \
         d.delivered_times, d.delivered_agents \
         FROM call_notes n LEFT JOIN LATERAL ( \
           SELECT array_agg(m.message_id ORDER BY m.deliver_time, m.message_id) AS delivered_ids, \
                  array_agg(m.text ORDER BY m.deliver_time, m.message_id) AS delivered_texts, \
                  array_agg(m.deliver_time ORDER BY m.deliver_time, m.message_id) \
                    AS delivered_times, \
                  array_agg(m.agent_id ORDER BY m.deliver_time, m.message_id) AS delivered_agents \
           FROM message_deliveries m \
           WHERE m.account_id = n.account_id AND m.call_note_id = n.call_note_id) d ON true "
    };
}

/// For other store modules: `concat!(crate::call_notes::select_note!(), "WHERE …")`.
pub(crate) use select_note;

row_struct! {
    /// A call note as [`select_note`] reads it.
    struct NoteRow {
        account_id: String,
        call_note_id: Uuid,
        contact_id: Option<Uuid>,
        employee_id: String,
        agent_id: String,
        caller_first_name: String,
        caller_last_name: String,
        caller_company: String,
        caller_number: String,
        subject: String,
        body: String,
        call_time: DateTime<Utc>,
        create_time: DateTime<Utc>,
        redact_time: Option<DateTime<Utc>>,
        delivered_ids: Option<Vec<Uuid>>,
        delivered_texts: Option<Vec<String>>,
        delivered_times: Option<Vec<DateTime<Utc>>>,
        delivered_agents: Option<Vec<String>>,
    }
}

impl From<NoteRow> for CallNote {
    fn from(r: NoteRow) -> CallNote {
        let deliveries = in_step(r.delivered_ids, r.delivered_texts, r.delivered_times)
            .zip(r.delivered_agents.unwrap_or_default())
            .map(
                |((message_id, text, deliver_time), agent_id)| MessageDelivery {
                    message_id,
                    text,
                    deliver_time,
                    agent_id,
                },
            )
            .collect();
        CallNote {
            account_id: r.account_id,
            call_note_id: r.call_note_id,
            contact_id: r.contact_id,
            employee_id: r.employee_id,
            agent_id: r.agent_id,
            caller: Caller {
                first_name: r.caller_first_name,
                last_name: r.caller_last_name,
                company: r.caller_company,
                number: r.caller_number,
            },
            subject: r.subject,
            text: r.body,
            call_time: r.call_time,
            create_time: r.create_time,
            deliveries,
            redact_time: r.redact_time,
        }
    }
}

/// What `CreateCallNote` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub call_note: CallNote,
    pub contact: Option<Contact>,
    pub contact_created: bool,
}

/// What `DeliverCallerMessage` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub call_note: CallNote,
    pub contact: Contact,
}

/// What to deliver where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub contact_id: Uuid,
    pub message_id: Uuid,
    pub call_note_id: Uuid,
    pub agent_id: String,
}

/// A keyset position in "newest call first" order.
pub type NotePosition = (DateTime<Utc>, Uuid);

#[derive(Debug)]
pub struct NotePage {
    pub call_notes: Vec<CallNote>,
    pub next_after: Option<NotePosition>,
}

/// The columns of a call note, in the order of the insert's values.
const INSERT_NOTE: &str = "INSERT INTO call_notes (account_id, call_note_id, contact_id, \
     employee_id, agent_id, caller_first_name, caller_last_name, caller_company, caller_number, \
     subject, body, call_time, create_time, caller_e164, caller_e164_filled) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, true)";

/// What a replay of CreateCallNote reads back.
#[derive(Serialize, Deserialize)]
pub(crate) struct CreatedIds {
    call_note_id: Uuid,
    contact_id: Option<Uuid>,
    contact_created: bool,
}

impl Replay for Created {
    type Ids = CreatedIds;

    fn ids(&self) -> CreatedIds {
        CreatedIds {
            call_note_id: self.call_note.call_note_id,
            contact_id: self.call_note.contact_id,
            contact_created: self.contact_created,
        }
    }

    async fn replay(db: Conn<'_>, account: &str, ids: CreatedIds) -> Result<Self, Error> {
        let call_note = get_note(db, account, ids.call_note_id).await?;
        // The contact may have been deleted since; the note then says so by its cleared link.
        let contact = match call_note.contact_id {
            Some(id) => match get_contact(db, account, id).await {
                Ok(c) => Some(c),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        Ok(Created {
            call_note,
            contact,
            contact_created: ids.contact_created,
        })
    }
}

/// What a replay of DeliverCallerMessage reads back.
#[derive(Serialize, Deserialize)]
pub(crate) struct DeliveredIds {
    call_note_id: Uuid,
    contact_id: Uuid,
}

impl Replay for Delivered {
    type Ids = DeliveredIds;

    fn ids(&self) -> DeliveredIds {
        DeliveredIds {
            call_note_id: self.call_note.call_note_id,
            contact_id: self.contact.contact_id,
        }
    }

    async fn replay(db: Conn<'_>, account: &str, ids: DeliveredIds) -> Result<Self, Error> {
        Ok(Delivered {
            call_note: get_note(db, account, ids.call_note_id).await?,
            contact: get_contact(db, account, ids.contact_id).await?,
        })
    }
}

row_struct! {
    /// The contact's pending message, locked for delivery.
    struct PendingRow {
        message_id: Option<Uuid>,
        message_text: Option<String>,
        message_expire_time: Option<DateTime<Utc>>,
    }
}

row_struct! {
    struct OwnRow {
        own: bool,
    }
}

row_struct! {
    struct LinkRow {
        contact_id: Option<Uuid>,
    }
}

row_struct! {
    struct DeliveredInRow {
        call_note_id: Uuid,
    }
}

impl Store {
    /// Writes a call note. With `contact_id` it is linked to that contact; without, to the one
    /// contact the caller's number and name identify, else to a new caller contact.
    ///
    /// `number_hashes` are the keyed hashes of the caller's number (`callers_domain::privacy`):
    /// a suppressed number gets a note without caller fields, matched to nobody, and no contact.
    pub async fn create_call_note(
        &self,
        account: &AccountId,
        note: &NewCallNote,
        number_hashes: &[KeyedHash],
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Created, Error> {
        let now = crate::db_time(now);
        let acc = account.as_str();
        self.write_once(acc, key, now, async |tx| {
            let suppressed = crate::privacy::suppressed(tx, acc, number_hashes).await?;
            // One of the account's own lines is not the caller's number: neither matched nor
            // stored on a new contact (the note keeps it as delivered).
            let own: Option<OwnRow> = match &note.caller_e164 {
                Some(e164) => {
                    tx.row(
                        "SELECT true AS own FROM call_handling \
                         WHERE account_id = $1 AND $2 = ANY(own_e164s)",
                        &[&acc, &e164.as_str()],
                    )
                    .await?
                }
                None => None,
            };
            let without_own;
            let note = match own {
                Some(OwnRow { own: true }) => {
                    without_own = NewCallNote {
                        caller_e164: None,
                        ..note.clone()
                    };
                    &without_own
                }
                _ => note,
            };
            let anonymous;
            let note = if suppressed {
                anonymous = NewCallNote {
                    caller: Caller::default(),
                    caller_e164: None,
                    ..note.clone()
                };
                &anonymous
            } else {
                note
            };
            let filing = match note.contact_id {
                Some(id) => Filing::Link(id),
                None if suppressed => Filing::Withheld,
                None => find_caller(tx, acc, note).await?,
            };
            let (contact, contact_created) = match filing {
                Filing::Link(id) => (Some(touch_contact(tx, acc, id, now).await?), false),
                Filing::Withheld => (None, false),
                Filing::New => match note.new_caller_contact() {
                    Some(new) => (Some(insert_contact(tx, acc, &new, now).await?), true),
                    None => (None, false),
                },
            };
            let n = CallNote {
                account_id: acc.to_owned(),
                call_note_id: Uuid::now_v7(),
                contact_id: contact.as_ref().map(|c| c.contact_id),
                employee_id: note.employee_id.clone(),
                agent_id: note.agent_id.clone(),
                caller: note.caller_kept(contact.as_ref(), filing == Filing::Withheld),
                subject: note.subject.clone(),
                text: note.text.clone(),
                call_time: note.call_time.map(crate::db_time).unwrap_or(now),
                create_time: now,
                deliveries: Vec::new(),
                redact_time: None,
            };
            let mut changes = Vec::with_capacity(2);
            if let Some(c) = &contact {
                changes.push(if contact_created {
                    Change::ContactCreated(c.clone())
                } else {
                    Change::ContactUpdated(c.clone())
                });
            }
            changes.push(Change::CallNoteCreated(n.clone()));
            tx.execute(
                INSERT_NOTE,
                &[
                    &n.account_id,
                    &n.call_note_id,
                    &n.contact_id,
                    &n.employee_id,
                    &n.agent_id,
                    &n.caller.first_name,
                    &n.caller.last_name,
                    &n.caller.company,
                    &n.caller.number,
                    &n.subject,
                    &n.text,
                    &n.call_time,
                    &n.create_time,
                    // Only a number the note keeps is found by an erasure or export.
                    &note
                        .caller_e164
                        .as_ref()
                        .filter(|_| !n.caller.number.is_empty())
                        .map(|e| e.as_str()),
                ],
            )
            .await?;
            let created = Created {
                call_note: n,
                contact,
                contact_created,
            };
            Ok(Written::new(created, changes))
        })
        .await
    }

    pub async fn get_call_note(&self, account: &AccountId, id: Uuid) -> Result<CallNote, Error> {
        self.read(Route::Pooled, async |s| {
            get_note(s.conn(), account.as_str(), id).await
        })
        .await
    }

    /// Newest call first; optionally only one contact's or one employee's notes.
    pub async fn list_call_notes(
        &self,
        account: &AccountId,
        contact_id: Option<Uuid>,
        employee_id: Option<&str>,
        after: Option<NotePosition>,
        limit: usize,
    ) -> Result<NotePage, Error> {
        let (after_time, after_id) = after.unzip();
        let fetch = (limit + 1) as i64;
        let rows: Vec<NoteRow> = self
            .read(Route::Pooled, async |s| {
                s.conn()
                    .rows(
                        concat!(
                            select_note!(),
                            "WHERE n.account_id = $1 \
                             AND ($2::uuid IS NULL OR n.contact_id = $2) \
                             AND ($3::text IS NULL OR n.employee_id = $3) \
                             AND ($4::timestamptz IS NULL OR (n.call_time, n.call_note_id) < ($4, $5)) \
                             ORDER BY n.call_time DESC, n.call_note_id DESC LIMIT $6"
                        ),
                        &[
                            &account.as_str(),
                            &contact_id,
                            &employee_id,
                            &after_time,
                            &after_id,
                            &fetch,
                        ],
                    )
                    .await
            })
            .await?;
        let call_notes: Vec<CallNote> = rows.into_iter().map(CallNote::from).collect();
        let (call_notes, next_after) =
            keyset_page(call_notes, limit, |n| (n.call_time, n.call_note_id));
        Ok(NotePage {
            call_notes,
            next_after,
        })
    }

    /// Delivers the pending caller message into a call note, exactly once: records it in the
    /// note and removes it from the contact in one transaction.
    pub async fn deliver_caller_message(
        &self,
        account: &AccountId,
        d: &Delivery,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Delivered, Error> {
        let now = crate::db_time(now);
        let acc = account.as_str();
        self.write_once(acc, key, now, async |tx| {
            // Lock order: contact, then note (CreateCallNote takes only the contact).
            let pending: PendingRow = tx
                .row(
                    "SELECT message_id, message_text, message_expire_time FROM contacts \
                     WHERE account_id = $1 AND contact_id = $2 FOR UPDATE",
                    &[&acc, &d.contact_id],
                )
                .await?
                .ok_or(Error::NotFound(Entity::Contact))?;
            let linked = tx
                .row::<LinkRow>(
                    "SELECT contact_id FROM call_notes \
                     WHERE account_id = $1 AND call_note_id = $2 FOR UPDATE",
                    &[&acc, &d.call_note_id],
                )
                .await?
                .ok_or(Error::NotFound(Entity::CallNote))?
                .contact_id;
            if linked.is_some_and(|c| c != d.contact_id) {
                return Err(Error::CallNoteOfOtherContact);
            }
            let expired = message::expired(pending.message_expire_time, now);
            if pending.message_id == Some(d.message_id) && expired {
                return Err(Error::MessageExpired);
            }
            if pending.message_id != Some(d.message_id) {
                if undelivered_reason(tx, acc, d.message_id).await?
                    == Some(UndeliveredReason::Expired)
                {
                    return Err(Error::MessageExpired);
                }
                let delivered_in = tx
                    .row::<DeliveredInRow>(
                        "SELECT call_note_id FROM message_deliveries \
                         WHERE account_id = $1 AND message_id = $2",
                        &[&acc, &d.message_id],
                    )
                    .await?
                    .map(|r| r.call_note_id);
                return Err(Error::MessageNotPending { delivered_in });
            }
            tx.execute(
                "INSERT INTO message_deliveries \
                 (account_id, message_id, call_note_id, text, deliver_time, agent_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &acc,
                    &d.message_id,
                    &d.call_note_id,
                    &pending.message_text.unwrap_or_default(),
                    &now,
                    &d.agent_id,
                ],
            )
            .await?;
            tx.execute(
                "UPDATE contacts SET message_id = NULL, message_text = NULL, \
                 message_create_time = NULL, message_expire_time = NULL, \
                 last_activity_time = $3, update_time = $3, version = version + 1 \
                 WHERE account_id = $1 AND contact_id = $2",
                &[&acc, &d.contact_id, &now],
            )
            .await?;
            let contact = get_contact(tx, acc, d.contact_id).await?;
            if linked.is_none() {
                // A note linked to a contact marked NO_DATA_CAPTURE keeps no caller fields.
                let strip = contact.no_data_capture();
                tx.execute(
                    "UPDATE call_notes SET contact_id = $3, \
                     caller_first_name = CASE WHEN $4 THEN '' ELSE caller_first_name END, \
                     caller_last_name = CASE WHEN $4 THEN '' ELSE caller_last_name END, \
                     caller_company = CASE WHEN $4 THEN '' ELSE caller_company END, \
                     caller_number = CASE WHEN $4 THEN '' ELSE caller_number END \
                     WHERE account_id = $1 AND call_note_id = $2",
                    &[&acc, &d.call_note_id, &d.contact_id, &strip],
                )
                .await?;
            }
            let delivered = Delivered {
                call_note: get_note(tx, acc, d.call_note_id).await?,
                contact,
            };
            let mut changes = Vec::with_capacity(3);
            if linked.is_none() {
                changes.push(Change::CallNoteLinked(delivered.call_note.clone()));
            }
            changes.push(Change::MessageDelivered {
                message_id: d.message_id,
                call_note: delivered.call_note.clone(),
            });
            changes.push(Change::ContactUpdated(delivered.contact.clone()));
            Ok(Written::new(delivered, changes))
        })
        .await
    }
}

async fn get_note(db: Conn<'_>, acc: &str, id: Uuid) -> Result<CallNote, Error> {
    Ok(db
        .row::<NoteRow>(
            concat!(
                select_note!(),
                "WHERE n.account_id = $1 AND n.call_note_id = $2"
            ),
            &[&acc, &id],
        )
        .await?
        .ok_or(Error::NotFound(Entity::CallNote))?
        .into())
}

/// Links a call note to a contact: the contact is written, its last activity moves to now.
async fn touch_contact(
    tx: Conn<'_>,
    acc: &str,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Contact, Error> {
    let touched = tx
        .execute(
            "UPDATE contacts SET last_activity_time = $3, update_time = $3, version = version + 1 \
             WHERE account_id = $1 AND contact_id = $2",
            &[&acc, &id, &now],
        )
        .await?;
    if touched == 0 {
        return Err(Error::NotFound(Entity::Contact));
    }
    get_contact(tx, acc, id).await
}

/// How the note is filed ([`Filing::of`]): linked to the contact the caller's number and name
/// identify with certainty (the top match of the incoming-call ranking when it is certain and
/// not ambiguous: the caller's exact number on one contact with no name that contradicts it,
/// or a full name that is exactly one contact's), withheld when the caller may be a contact
/// marked `NO_DATA_CAPTURE`, else a new contact rather than risk telling one caller another's
/// message.
async fn find_caller(tx: Conn<'_>, acc: &str, note: &NewCallNote) -> Result<Filing, Error> {
    let c = &note.caller;
    let name = NameQuery::new(&format!("{} {} {}", c.first_name, c.last_name, c.company));
    let e164 = note.caller_e164.as_ref().map(|e| e.as_str());
    if e164.is_none() && name.is_empty() {
        return Ok(Filing::New);
    }
    // Two notes about one new caller at once must not both create a contact.
    let lock_key = format!(
        "callnote-match/{acc}/{}/{}",
        e164.unwrap_or(""),
        note.caller_search_text()
    );
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&lock_key],
    )
    .await?;
    let found = identify::candidates(tx, acc, None, e164, &name).await?;
    Ok(Filing::of(&name.rank(e164, found, MATCHES_WEIGHED)))
}

/// How many of the caller's matches filing weighs: as many as `IdentifyCaller` shows at most.
const MATCHES_WEIGHED: usize = 20;
