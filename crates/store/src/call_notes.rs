//! Call notes and the exactly-once delivery of caller messages.
//!
//! Delivery locks the contact row first, then the note: concurrent deliveries of one message
//! queue on the contact, and every one after the first finds the message gone. The primary key
//! of `message_deliveries (account_id, message_id)` makes a second delivery impossible even if
//! that order were broken.

use crate::contacts::{get_contact, insert_contact, replayed_id};
use crate::idempotency::{self, Claim, IdempotencyKey};
use crate::{Entity, Error, Store, keyset_page};
use callers_domain::AccountId;
use callers_domain::call_note::{CallNote, Caller, MessageDelivery, NewCallNote};
use callers_domain::contact::Contact;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;
use uuid::Uuid;

macro_rules! select_note {
    () => {
        "SELECT n.account_id, n.call_note_id, n.contact_id, n.employee_id, n.agent_id, \
         n.caller_first_name, n.caller_last_name, n.caller_company, n.caller_number, n.subject, \
         n.body, n.call_time, n.create_time, d.ids, d.texts, d.times, d.agents \
         FROM call_notes n LEFT JOIN LATERAL ( \
           SELECT array_agg(m.message_id ORDER BY m.deliver_time, m.message_id) AS ids, \
                  array_agg(m.text ORDER BY m.deliver_time, m.message_id) AS texts, \
                  array_agg(m.deliver_time ORDER BY m.deliver_time, m.message_id) AS times, \
                  array_agg(m.agent_id ORDER BY m.deliver_time, m.message_id) AS agents \
           FROM message_deliveries m \
           WHERE m.account_id = n.account_id AND m.call_note_id = n.call_note_id) d ON true "
    };
}

fn note_from_row(row: &Row) -> CallNote {
    let ids: Option<Vec<Uuid>> = row.get(13);
    let texts: Option<Vec<String>> = row.get(14);
    let times: Option<Vec<DateTime<Utc>>> = row.get(15);
    let agents: Option<Vec<String>> = row.get(16);
    let deliveries = ids
        .unwrap_or_default()
        .into_iter()
        .zip(texts.unwrap_or_default())
        .zip(times.unwrap_or_default())
        .zip(agents.unwrap_or_default())
        .map(
            |(((message_id, text), deliver_time), agent_id)| MessageDelivery {
                message_id,
                text,
                deliver_time,
                agent_id,
            },
        )
        .collect();
    CallNote {
        account_id: row.get(0),
        call_note_id: row.get(1),
        contact_id: row.get(2),
        employee_id: row.get(3),
        agent_id: row.get(4),
        caller: Caller {
            first_name: row.get(5),
            last_name: row.get(6),
            company: row.get(7),
            number: row.get(8),
        },
        subject: row.get(9),
        text: row.get(10),
        call_time: row.get(11),
        create_time: row.get(12),
        deliveries,
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

impl Store {
    /// Writes a call note. With `contact_id` it is linked to that contact; without, to the one
    /// contact the caller's number and name identify, else to a new caller contact.
    pub async fn create_call_note(
        &self,
        account: &AccountId,
        note: &NewCallNote,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Created, Error> {
        let now = crate::db_time(now);
        let acc = account.as_str();
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            if let Some(key) = key
                && let Claim::Replay(result) = idempotency::claim(&tx, acc, key, now).await?
            {
                drop(tx);
                return replay_created(&*client, acc, &result).await;
            }
            let (contact, contact_created) = match note.contact_id {
                Some(id) => (Some(touch_contact(&tx, acc, id, now).await?), false),
                None => match find_caller(&tx, acc, note).await? {
                    Some(id) => (Some(touch_contact(&tx, acc, id, now).await?), false),
                    None => match note.new_caller_contact() {
                        Some(new) => (Some(insert_contact(&tx, acc, &new, now).await?), true),
                        None => (None, false),
                    },
                },
            };
            let call_note = CallNote {
                account_id: acc.to_owned(),
                call_note_id: Uuid::now_v7(),
                contact_id: contact.as_ref().map(|c| c.contact_id),
                employee_id: note.employee_id.clone(),
                agent_id: note.agent_id.clone(),
                caller: note.caller.clone(),
                subject: note.subject.clone(),
                text: note.text.clone(),
                call_time: note.call_time.map(crate::db_time).unwrap_or(now),
                create_time: now,
                deliveries: Vec::new(),
            };
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO call_notes (account_id, call_note_id, contact_id, employee_id, \
                     agent_id, caller_first_name, caller_last_name, caller_company, caller_number, \
                     subject, body, call_time, create_time) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .await?;
            let n = &call_note;
            tx.execute(
                &stmt,
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
                ],
            )
            .await?;
            if let Some(key) = key {
                let result = serde_json::json!({
                    "call_note_id": call_note.call_note_id,
                    "contact_id": call_note.contact_id,
                    "contact_created": contact_created,
                });
                idempotency::record(&tx, acc, key, result).await?;
            }
            tx.commit().await?;
            Ok(Created {
                call_note,
                contact,
                contact_created,
            })
        })
        .await
    }

    pub async fn get_call_note(&self, account: &AccountId, id: Uuid) -> Result<CallNote, Error> {
        self.with_client(async |client| get_note(&*client, account.as_str(), id).await)
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
        self.with_client(async |client| {
            let stmt = client
                .prepare_cached(concat!(
                    select_note!(),
                    "WHERE n.account_id = $1 \
                     AND ($2::uuid IS NULL OR n.contact_id = $2) \
                     AND ($3::text IS NULL OR n.employee_id = $3) \
                     AND ($4::timestamptz IS NULL OR (n.call_time, n.call_note_id) < ($4, $5)) \
                     ORDER BY n.call_time DESC, n.call_note_id DESC LIMIT $6"
                ))
                .await?;
            let (after_time, after_id) = after.unzip();
            let fetch = (limit + 1) as i64;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &account.as_str(),
                        &contact_id,
                        &employee_id,
                        &after_time,
                        &after_id,
                        &fetch,
                    ],
                )
                .await?;
            let call_notes: Vec<CallNote> = rows.iter().map(note_from_row).collect();
            let (call_notes, next_after) =
                keyset_page(call_notes, limit, |n| (n.call_time, n.call_note_id));
            Ok(NotePage {
                call_notes,
                next_after,
            })
        })
        .await
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
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            if let Some(key) = key
                && let Claim::Replay(result) = idempotency::claim(&tx, acc, key, now).await?
            {
                drop(tx);
                let note_id = replayed_id(&result, "call_note_id")?;
                let contact_id = replayed_id(&result, "contact_id")?;
                return Ok(Delivered {
                    call_note: get_note(&*client, acc, note_id).await?,
                    contact: get_contact(&*client, acc, contact_id).await?,
                });
            }
            // Lock order: contact, then note (CreateCallNote takes only the contact).
            let lock_contact = tx
                .prepare_cached(
                    "SELECT message_id, message_text FROM contacts \
                     WHERE account_id = $1 AND contact_id = $2 FOR UPDATE",
                )
                .await?;
            let row = tx
                .query_opt(&lock_contact, &[&acc, &d.contact_id])
                .await?
                .ok_or(Error::NotFound(Entity::Contact))?;
            let pending: Option<Uuid> = row.get(0);
            let text: Option<String> = row.get(1);
            let lock_note = tx
                .prepare_cached(
                    "SELECT contact_id FROM call_notes \
                     WHERE account_id = $1 AND call_note_id = $2 FOR UPDATE",
                )
                .await?;
            let linked: Option<Uuid> = tx
                .query_opt(&lock_note, &[&acc, &d.call_note_id])
                .await?
                .ok_or(Error::NotFound(Entity::CallNote))?
                .get(0);
            if linked.is_some_and(|c| c != d.contact_id) {
                return Err(Error::CallNoteOfOtherContact);
            }
            if pending != Some(d.message_id) {
                let find = tx
                    .prepare_cached(
                        "SELECT call_note_id FROM message_deliveries \
                         WHERE account_id = $1 AND message_id = $2",
                    )
                    .await?;
                let delivered_in = tx
                    .query_opt(&find, &[&acc, &d.message_id])
                    .await?
                    .map(|r| r.get(0));
                return Err(Error::MessageNotPending { delivered_in });
            }
            let record = tx
                .prepare_cached(
                    "INSERT INTO message_deliveries \
                     (account_id, message_id, call_note_id, text, deliver_time, agent_id) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await?;
            tx.execute(
                &record,
                &[
                    &acc,
                    &d.message_id,
                    &d.call_note_id,
                    &text.unwrap_or_default(),
                    &now,
                    &d.agent_id,
                ],
            )
            .await?;
            let clear = tx
                .prepare_cached(
                    "UPDATE contacts SET message_id = NULL, message_text = NULL, \
                     message_create_time = NULL, last_activity_time = $3, version = version + 1 \
                     WHERE account_id = $1 AND contact_id = $2",
                )
                .await?;
            tx.execute(&clear, &[&acc, &d.contact_id, &now]).await?;
            if linked.is_none() {
                let link = tx
                    .prepare_cached(
                        "UPDATE call_notes SET contact_id = $3 \
                         WHERE account_id = $1 AND call_note_id = $2",
                    )
                    .await?;
                tx.execute(&link, &[&acc, &d.call_note_id, &d.contact_id])
                    .await?;
            }
            if let Some(key) = key {
                let result = serde_json::json!({
                    "call_note_id": d.call_note_id,
                    "contact_id": d.contact_id,
                });
                idempotency::record(&tx, acc, key, result).await?;
            }
            let call_note = get_note(&tx, acc, d.call_note_id).await?;
            let contact = get_contact(&tx, acc, d.contact_id).await?;
            tx.commit().await?;
            Ok(Delivered { call_note, contact })
        })
        .await
    }
}

async fn replay_created(
    client: &impl GenericClient,
    acc: &str,
    result: &serde_json::Value,
) -> Result<Created, Error> {
    let note_id = replayed_id(result, "call_note_id")?;
    let call_note = get_note(client, acc, note_id).await?;
    // The contact may have been deleted since; the note then says so by its cleared link.
    let contact = match call_note.contact_id {
        Some(id) => match get_contact(client, acc, id).await {
            Ok(c) => Some(c),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    Ok(Created {
        call_note,
        contact,
        contact_created: result
            .get("contact_created")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    })
}

async fn get_note(client: &impl GenericClient, acc: &str, id: Uuid) -> Result<CallNote, Error> {
    let stmt = client
        .prepare_cached(concat!(
            select_note!(),
            "WHERE n.account_id = $1 AND n.call_note_id = $2"
        ))
        .await?;
    let row = client
        .query_opt(&stmt, &[&acc, &id])
        .await?
        .ok_or(Error::NotFound(Entity::CallNote))?;
    Ok(note_from_row(&row))
}

/// Links a call note to a contact: its last activity moves to now.
async fn touch_contact(
    tx: &Transaction<'_>,
    acc: &str,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Contact, Error> {
    let stmt = tx
        .prepare_cached(
            "UPDATE contacts SET last_activity_time = $3, version = version + 1 \
             WHERE account_id = $1 AND contact_id = $2",
        )
        .await?;
    if tx.execute(&stmt, &[&acc, &id, &now]).await? == 0 {
        return Err(Error::NotFound(Entity::Contact));
    }
    get_contact(tx, acc, id).await
}

/// The one contact the caller's number and folded name identify, if exactly one does.
/// With a number, the contact must have it (and, when a name was given, that name); without a
/// number, the folded name must match exactly. Anything ambiguous makes a new contact rather
/// than risk telling one caller another's message.
async fn find_caller(
    tx: &Transaction<'_>,
    acc: &str,
    note: &NewCallNote,
) -> Result<Option<Uuid>, Error> {
    let name = note.caller_search_text();
    let e164 = note.caller_e164.as_ref().map(|e| e.as_str());
    if e164.is_none() && name.is_empty() {
        return Ok(None);
    }
    // Two notes about one new caller at once must not both create a contact.
    let serialise = tx
        .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .await?;
    let lock_key = format!("callnote-match/{acc}/{}/{name}", e164.unwrap_or(""));
    tx.execute(&serialise, &[&lock_key]).await?;
    let rows = match e164 {
        Some(e164) => {
            let stmt = tx
                .prepare_cached(
                    "SELECT DISTINCT c.contact_id FROM contact_phone_numbers p \
                     JOIN contacts c ON c.account_id = p.account_id AND c.contact_id = p.contact_id \
                     WHERE p.account_id = $1 AND p.e164 = $2 AND ($3 = '' OR c.search_text = $3) \
                     LIMIT 2",
                )
                .await?;
            tx.query(&stmt, &[&acc, &e164, &name]).await?
        }
        None => {
            let stmt = tx
                .prepare_cached(
                    "SELECT contact_id FROM contacts \
                     WHERE account_id = $1 AND search_text = $2 LIMIT 2",
                )
                .await?;
            tx.query(&stmt, &[&acc, &name]).await?
        }
    };
    Ok(match rows.as_slice() {
        [one] => Some(one.get(0)),
        _ => None,
    })
}
