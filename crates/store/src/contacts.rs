//! Contacts and their phone numbers: create (with request-id replay), read, field-masked
//! update under an etag, delete, and keyset-paged lists.

use crate::exec::{Conn, Params, Route};
use crate::feed::Written;
use crate::idempotency::{IdempotencyKey, Replay};
use crate::messages::insert_undelivered;
use crate::row::{in_step, row_struct};
use crate::{Entity, Error, Store, keyset_page};
use callers_domain::change::{Change, DeleteReason};
use callers_domain::contact::{
    CallerMessage, Categories, Contact, ContactFields, ContactPatch, NewContact, Origin,
    PhoneEntry, PhoneType,
};
use callers_domain::message::{MessageInput, next_message};
use callers_domain::phone::{self, E164};
use callers_domain::{AccountId, Violations};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use uuid::Uuid;

/// The columns [`ContactRow`] reads, phone numbers aggregated in position order.
macro_rules! select_contact {
    () => {
        "SELECT c.account_id, c.contact_id, c.categories, c.salutation, c.title, c.first_name, \
         c.last_name, c.company, c.email, c.handling_instruction, c.keep_permanently, c.origin, \
         c.message_id, c.message_text, c.message_create_time, c.message_expire_time, \
         c.instructions, c.create_time, c.update_time, c.last_activity_time, c.version, \
         ph.numbers, ph.e164s, ph.types \
         FROM contacts c LEFT JOIN LATERAL ( \
           SELECT array_agg(p.number ORDER BY p.position) AS numbers, \
                  array_agg(p.e164 ORDER BY p.position) AS e164s, \
                  array_agg(p.phone_type ORDER BY p.position) AS types \
           FROM contact_phone_numbers p \
           WHERE p.account_id = c.account_id AND p.contact_id = c.contact_id) ph ON true "
    };
}
/// For other store modules: `concat!(crate::contacts::select_contact!(), "WHERE …")`.
#[allow(unused_imports)]
pub(crate) use select_contact;

row_struct! {
    /// A contact as [`select_contact`] reads it.
    struct ContactRow {
        account_id: String,
        contact_id: Uuid,
        categories: Vec<String>,
        salutation: String,
        title: String,
        first_name: String,
        last_name: String,
        company: String,
        email: String,
        handling_instruction: String,
        keep_permanently: bool,
        origin: i16,
        message_id: Option<Uuid>,
        message_text: Option<String>,
        message_create_time: Option<DateTime<Utc>>,
        message_expire_time: Option<DateTime<Utc>>,
        instructions: serde_json::Value,
        create_time: DateTime<Utc>,
        update_time: DateTime<Utc>,
        last_activity_time: DateTime<Utc>,
        version: i64,
        numbers: Option<Vec<String>>,
        e164s: Option<Vec<String>>,
        types: Option<Vec<i16>>,
    }
}

impl TryFrom<ContactRow> for Contact {
    type Error = Error;

    fn try_from(r: ContactRow) -> Result<Contact, Error> {
        let phone_numbers = in_step(r.numbers, r.e164s, r.types)
            .map(|(number, e164, t)| PhoneEntry {
                number,
                e164: E164::from_trusted(e164),
                kind: PhoneType::from_code(i32::from(t)).unwrap_or(PhoneType::Unspecified),
            })
            .collect();
        let caller_message = caller_message(
            r.message_id,
            r.message_text,
            r.message_create_time,
            r.message_expire_time,
        )?;
        let instructions = serde_json::from_value(r.instructions)
            .map_err(|e| Error::Corrupt(format!("instructions: {e}")))?;
        Ok(Contact {
            account_id: r.account_id,
            contact_id: r.contact_id,
            fields: ContactFields {
                categories: Categories::from_stored(r.categories),
                salutation: r.salutation,
                title: r.title,
                first_name: r.first_name,
                last_name: r.last_name,
                company: r.company,
                email: r.email,
                phone_numbers,
                handling_instruction: r.handling_instruction,
                keep_permanently: r.keep_permanently,
                instructions,
            },
            caller_message,
            origin: Origin::from_code(i32::from(r.origin))
                .ok_or_else(|| Error::Corrupt(format!("origin code {}", r.origin)))?,
            create_time: r.create_time,
            update_time: r.update_time,
            last_activity_time: r.last_activity_time,
            version: r.version,
        })
    }
}

/// A contact of a [`select_contact`] row.
/// The pending message a contact row's message columns hold.
pub(crate) fn caller_message(
    message_id: Option<Uuid>,
    text: Option<String>,
    create_time: Option<DateTime<Utc>>,
    expire_time: Option<DateTime<Utc>>,
) -> Result<Option<CallerMessage>, Error> {
    match (message_id, text, create_time) {
        (Some(message_id), Some(text), Some(create_time)) => Ok(Some(CallerMessage {
            message_id,
            text,
            create_time,
            expire_time,
        })),
        (None, _, _) => Ok(None),
        _ => Err(Error::Corrupt("caller message without text or time".into())),
    }
}

pub(crate) fn contact_from_row(row: &Row) -> Result<Contact, Error> {
    ContactRow::try_from(row)?.try_into()
}

/// The columns a write sets, in the order of [`contact_values`]: one list for insert and update.
macro_rules! contact_columns {
    () => {
        "account_id, contact_id, categories, salutation, title, first_name, last_name, company, \
         email, handling_instruction, keep_permanently, origin, message_id, message_text, \
         message_create_time, create_time, update_time, last_activity_time, version, search_text, \
         message_expire_time, instructions"
    };
}
macro_rules! contact_placeholders {
    () => {
        "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
         $21, $22"
    };
}
const INSERT_CONTACT: &str = concat!(
    "INSERT INTO contacts (",
    contact_columns!(),
    ") VALUES (",
    contact_placeholders!(),
    ")"
);
const UPDATE_CONTACT: &str = concat!(
    "UPDATE contacts SET (",
    contact_columns!(),
    ") = (",
    contact_placeholders!(),
    ") WHERE account_id = $1 AND contact_id = $2"
);

/// What a write stores of a contact, in the order of [`contact_columns`].
struct ContactValues<'a> {
    contact: &'a Contact,
    categories: &'a [String],
    origin: i16,
    search_text: String,
    instructions: serde_json::Value,
}

impl<'a> ContactValues<'a> {
    fn of(contact: &'a Contact) -> Result<Self, Error> {
        Ok(ContactValues {
            contact,
            categories: contact.fields.categories.as_slice(),
            origin: contact.origin.code() as i16,
            search_text: contact.fields.search_text(),
            instructions: serde_json::to_value(&contact.fields.instructions)
                .map_err(|e| Error::Corrupt(format!("instructions: {e}")))?,
        })
    }

    /// Runs `sql` ([`INSERT_CONTACT`] or [`UPDATE_CONTACT`]) with these values.
    async fn write(&self, tx: Conn<'_>, sql: &str) -> Result<u64, Error> {
        let (c, f) = (self.contact, &self.contact.fields);
        let m = c.caller_message.as_ref();
        let (message_id, text, time, expire) = (
            m.map(|m| m.message_id),
            m.map(|m| m.text.as_str()),
            m.map(|m| m.create_time),
            m.and_then(|m| m.expire_time),
        );
        tx.execute(
            sql,
            &[
                &c.account_id,
                &c.contact_id,
                &self.categories,
                &f.salutation,
                &f.title,
                &f.first_name,
                &f.last_name,
                &f.company,
                &f.email,
                &f.handling_instruction,
                &f.keep_permanently,
                &self.origin,
                &message_id,
                &text,
                &time,
                &c.create_time,
                &c.update_time,
                &c.last_activity_time,
                &c.version,
                &self.search_text,
                &expire,
                &self.instructions,
            ],
        )
        .await
    }
}

/// One page of a list and the key to continue after it (`None` on the last page).
#[derive(Debug)]
pub struct ContactPage {
    pub contacts: Vec<Contact>,
    pub next_after: Option<Uuid>,
}

#[derive(Debug)]
pub struct ExpiringPage {
    pub contacts: Vec<Contact>,
    pub next_after: Option<(DateTime<Utc>, Uuid)>,
}

pub(crate) fn version_of(etag: &str) -> Option<i64> {
    etag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// What a replay of CreateContact reads back.
#[derive(Serialize, Deserialize)]
pub(crate) struct ContactIds {
    contact_id: Uuid,
}

impl Replay for Contact {
    type Ids = ContactIds;

    fn ids(&self) -> ContactIds {
        ContactIds {
            contact_id: self.contact_id,
        }
    }

    async fn replay(db: Conn<'_>, account: &str, ids: ContactIds) -> Result<Self, Error> {
        get_contact(db, account, ids.contact_id).await
    }
}

row_struct! {
    /// What DeleteContact learns: whether the contact was there, and whether it went.
    struct Deleted {
        found: i64,
        deleted: i64,
    }
}

impl Store {
    /// Creates a contact; with a key, a retry returns the contact the first call created.
    pub async fn create_contact(
        &self,
        account: &AccountId,
        new: &NewContact,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> Result<Contact, Error> {
        let now = crate::db_time(now);
        let acc = account.as_str();
        self.write_once(acc, key, now, async |tx| {
            let contact = insert_contact(tx, acc, new, now).await?;
            let created = Change::ContactCreated(contact.clone());
            Ok(Written::new(contact, vec![created]))
        })
        .await
    }

    pub async fn get_contact(&self, account: &AccountId, id: Uuid) -> Result<Contact, Error> {
        self.read(Route::Pooled, async |s| {
            get_contact(s.conn(), account.as_str(), id).await
        })
        .await
    }

    /// Applies a field-masked change; a stale `etag` is refused. Every update is activity.
    pub async fn update_contact(
        &self,
        account: &AccountId,
        id: Uuid,
        patch: &ContactPatch,
        etag: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Contact, Error> {
        let now = crate::db_time(now);
        self.pooled(async |s| {
            let tx = s.transaction().await?;
            let mut contact: Contact = tx
                .conn()
                .row::<ContactRow>(
                    concat!(
                        select_contact!(),
                        "WHERE c.account_id = $1 AND c.contact_id = $2 FOR UPDATE OF c"
                    ),
                    &[&account.as_str(), &id],
                )
                .await?
                .ok_or(Error::NotFound(Entity::Contact))?
                .try_into()?;
            if let Some(etag) = etag
                && version_of(etag) != Some(contact.version)
            {
                return Err(Error::EtagMismatch);
            }
            let before = contact.clone();
            patch.apply(&mut contact.fields);
            if !contact.fields.identifies_someone() {
                return Err(Violations::single(
                    "contact",
                    "needs a first or last name, a company or a phone number",
                )
                .into());
            }
            let mut untold = None;
            if let Some(new) = &patch.caller_message {
                let new = new.as_ref().map(|m| stored_message(m, now)).transpose()?;
                let old = before.caller_message.as_ref();
                let (message, record) = next_message(id, old, new.as_ref(), now, Uuid::now_v7());
                contact.caller_message = message;
                untold = record;
            }
            contact.version += 1;
            contact.update_time = now;
            contact.last_activity_time = now;
            ContactValues::of(&contact)?
                .write(tx.conn(), UPDATE_CONTACT)
                .await?;
            if patch.phone_numbers.is_some() {
                replace_phone_numbers(tx.conn(), &contact).await?;
            }
            let mut changes = Vec::with_capacity(2);
            if let Some(record) = untold {
                insert_undelivered(tx.conn(), account.as_str(), &record).await?;
                changes.push(Change::untold(record));
            }
            changes.push(Change::ContactUpdated(contact.clone()));
            self.commit_changes(tx, account.as_str(), now, &changes)
                .await?;
            Ok(contact)
        })
        .await
    }

    /// Deletes a contact and its numbers; its call notes stay, unlinked.
    pub async fn delete_contact(
        &self,
        account: &AccountId,
        id: Uuid,
        etag: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let now = crate::db_time(now);
        let expected = match etag {
            Some(e) => Some(version_of(e).ok_or(Error::EtagMismatch)?),
            None => None,
        };
        let outcome = self
            .pooled(async |s| {
                let tx = s.transaction().await?;
                // The etag is compared on the row being deleted, which PostgreSQL re-reads after
                // waiting for a concurrent update, not on the snapshot's `target`.
                let outcome = tx
                    .conn()
                    .row::<Deleted>(
                        "WITH target AS (SELECT version FROM contacts \
                           WHERE account_id = $1 AND contact_id = $2), \
                         deleted AS (DELETE FROM contacts c USING target \
                           WHERE c.account_id = $1 AND c.contact_id = $2 \
                           AND ($3::bigint IS NULL OR c.version = $3) RETURNING 1) \
                         SELECT (SELECT count(*) FROM target) AS found, \
                                (SELECT count(*) FROM deleted) AS deleted",
                        &[&account.as_str(), &id, &expected],
                    )
                    .await?
                    .ok_or_else(|| Error::Corrupt("no row from the delete".into()))?;
                if outcome.deleted > 0 {
                    let deleted = Change::ContactDeleted {
                        contact_id: id,
                        reason: DeleteReason::Request,
                    };
                    self.commit_changes(tx, account.as_str(), now, &[deleted])
                        .await?;
                }
                Ok(outcome)
            })
            .await?;
        match (outcome.found, outcome.deleted) {
            (0, _) => Err(Error::NotFound(Entity::Contact)),
            (_, 0) => Err(Error::EtagMismatch),
            _ => Ok(()),
        }
    }

    /// Contacts in id order (ids are time-ordered UUIDv7), after `after`, optionally of one
    /// category. Keyset paging: rows inserted meanwhile never shift or repeat a page.
    pub async fn list_contacts(
        &self,
        account: &AccountId,
        category: Option<&str>,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<ContactPage, Error> {
        let fetch = (limit + 1) as i64;
        let contacts = self
            .contacts(
                concat!(
                    select_contact!(),
                    "WHERE c.account_id = $1 AND ($2::text IS NULL OR $2 = ANY(c.categories)) \
                     AND ($3::uuid IS NULL OR c.contact_id > $3) \
                     ORDER BY c.contact_id LIMIT $4"
                ),
                &[&account.as_str(), &category, &after, &fetch],
            )
            .await?;
        let (contacts, next_after) = keyset_page(contacts, limit, |c| c.contact_id);
        Ok(ContactPage {
            contacts,
            next_after,
        })
    }

    /// Contacts subject to automatic deletion whose last activity is at or before
    /// `last_activity_until`, oldest (soonest purged) first.
    pub async fn list_expiring_contacts(
        &self,
        account: &AccountId,
        last_activity_until: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: usize,
    ) -> Result<ExpiringPage, Error> {
        let (after_time, after_id) = after.unzip();
        let fetch = (limit + 1) as i64;
        let contacts = self
            .contacts(
                concat!(
                    select_contact!(),
                    "WHERE c.account_id = $1 AND c.purge_candidate AND c.last_activity_time <= $2 \
                     AND ($3::timestamptz IS NULL OR (c.last_activity_time, c.contact_id) > ($3, $4)) \
                     ORDER BY c.last_activity_time, c.contact_id LIMIT $5"
                ),
                &[
                    &account.as_str(),
                    &last_activity_until,
                    &after_time,
                    &after_id,
                    &fetch,
                ],
            )
            .await?;
        let (contacts, next_after) =
            keyset_page(contacts, limit, |c| (c.last_activity_time, c.contact_id));
        Ok(ExpiringPage {
            contacts,
            next_after,
        })
    }
}

impl Store {
    /// The contacts a [`select_contact`] statement finds: a read (replica or primary).
    async fn contacts(&self, sql: &str, params: Params<'_>) -> Result<Vec<Contact>, Error> {
        let rows: Vec<ContactRow> = self
            .read(Route::Pooled, async |s| s.conn().rows(sql, params).await)
            .await?;
        rows.into_iter().map(Contact::try_from).collect()
    }
}

pub(crate) async fn get_contact(db: Conn<'_>, account: &str, id: Uuid) -> Result<Contact, Error> {
    db.row::<ContactRow>(
        concat!(
            select_contact!(),
            "WHERE c.account_id = $1 AND c.contact_id = $2"
        ),
        &[&account, &id],
    )
    .await?
    .ok_or(Error::NotFound(Entity::Contact))?
    .try_into()
}

/// A new message as stored: its instant in the database's precision (what a read returns),
/// refused when already past at `now`.
fn stored_message(m: &MessageInput, now: DateTime<Utc>) -> Result<MessageInput, Error> {
    m.check(now, "contact.caller_message.expire_time")?;
    Ok(MessageInput {
        text: m.text.clone(),
        expire_time: m.expire_time.map(crate::db_time),
    })
}

/// Inserts a new contact with its numbers inside a transaction.
pub(crate) async fn insert_contact(
    tx: Conn<'_>,
    account: &str,
    new: &NewContact,
    now: DateTime<Utc>,
) -> Result<Contact, Error> {
    let message = new
        .caller_message
        .as_ref()
        .map(|m| stored_message(m, now))
        .transpose()?;
    let contact = Contact {
        account_id: account.to_owned(),
        contact_id: Uuid::now_v7(),
        fields: new.fields.clone(),
        caller_message: message.map(|m| CallerMessage {
            message_id: Uuid::now_v7(),
            text: m.text.clone(),
            create_time: now,
            expire_time: m.expire_time,
        }),
        origin: new.origin,
        create_time: now,
        update_time: now,
        last_activity_time: now,
        version: 1,
    };
    ContactValues::of(&contact)?
        .write(tx, INSERT_CONTACT)
        .await?;
    insert_phone_numbers(tx, &contact).await?;
    Ok(contact)
}

async fn insert_phone_numbers(tx: Conn<'_>, c: &Contact) -> Result<(), Error> {
    let phones = &c.fields.phone_numbers;
    if phones.is_empty() {
        return Ok(());
    }
    let positions: Vec<i16> = (0..phones.len() as i16).collect();
    let numbers: Vec<&str> = phones.iter().map(|p| p.number.as_str()).collect();
    let e164s: Vec<&str> = phones.iter().map(|p| p.e164.as_str()).collect();
    let types: Vec<i16> = phones.iter().map(|p| p.kind.code() as i16).collect();
    let dial_bases: Vec<String> = phones
        .iter()
        .map(|p| dial_base_column(&p.e164, &p.number))
        .collect();
    tx.execute(
        "INSERT INTO contact_phone_numbers \
         (account_id, contact_id, position, number, e164, phone_type, dial_base) \
         SELECT $1, $2, * FROM unnest($3::smallint[], $4::text[], $5::text[], $6::smallint[], \
                                      $7::text[])",
        &[
            &c.account_id,
            &c.contact_id,
            &positions,
            &numbers,
            &e164s,
            &types,
            &dial_bases,
        ],
    )
    .await?;
    Ok(())
}

/// The `dial_base` column of a stored number (migration V9): its [`phone::dial_base`], or ''
/// when it has none, which NULL (not yet computed) is not.
pub(crate) fn dial_base_column(e164: &E164, as_entered: &str) -> String {
    phone::dial_base(e164, as_entered).unwrap_or_default()
}

async fn replace_phone_numbers(tx: Conn<'_>, c: &Contact) -> Result<(), Error> {
    tx.execute(
        "DELETE FROM contact_phone_numbers WHERE account_id = $1 AND contact_id = $2",
        &[&c.account_id, &c.contact_id],
    )
    .await?;
    insert_phone_numbers(tx, c).await
}
