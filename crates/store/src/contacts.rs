//! Contacts and their phone numbers: create (with request-id replay), read, field-masked
//! update under an etag, delete, and keyset-paged lists.

use crate::idempotency::{self, Claim, IdempotencyKey};
use crate::{Entity, Error, Store, keyset_page};
use callers_domain::contact::{
    CallerMessage, Categories, Contact, ContactFields, ContactPatch, NewContact, Origin,
    PhoneEntry, PhoneType,
};
use callers_domain::phone::E164;
use callers_domain::{AccountId, Violations};
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::Row;
use uuid::Uuid;

/// The columns `contact_from_row` reads, phone numbers aggregated in position order.
macro_rules! select_contact {
    () => {
        "SELECT c.account_id, c.contact_id, c.categories, c.salutation, c.title, c.first_name, \
         c.last_name, c.company, c.email, c.handling_instruction, c.keep_permanently, c.origin, \
         c.message_id, c.message_text, c.message_create_time, c.create_time, c.update_time, \
         c.last_activity_time, c.version, ph.numbers, ph.e164s, ph.types \
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

pub(crate) fn contact_from_row(row: &Row) -> Result<Contact, Error> {
    let origin: i16 = row.get(11);
    let numbers: Option<Vec<String>> = row.get(19);
    let e164s: Option<Vec<String>> = row.get(20);
    let types: Option<Vec<i16>> = row.get(21);
    let phone_numbers = numbers
        .unwrap_or_default()
        .into_iter()
        .zip(e164s.unwrap_or_default())
        .zip(types.unwrap_or_default())
        .map(|((number, e164), t)| PhoneEntry {
            number,
            e164: E164::from_trusted(e164),
            kind: PhoneType::from_code(i32::from(t)).unwrap_or(PhoneType::Unspecified),
        })
        .collect();
    let message_id: Option<Uuid> = row.get(12);
    let caller_message = message_id.map(|message_id| CallerMessage {
        message_id,
        text: row.get(13),
        create_time: row.get(14),
    });
    Ok(Contact {
        account_id: row.get(0),
        contact_id: row.get(1),
        fields: ContactFields {
            categories: Categories::from_stored(row.get(2)),
            salutation: row.get(3),
            title: row.get(4),
            first_name: row.get(5),
            last_name: row.get(6),
            company: row.get(7),
            email: row.get(8),
            phone_numbers,
            handling_instruction: row.get(9),
            keep_permanently: row.get(10),
        },
        caller_message,
        origin: Origin::from_code(i32::from(origin))
            .ok_or_else(|| Error::Corrupt(format!("origin code {origin}")))?,
        create_time: row.get(15),
        update_time: row.get(16),
        last_activity_time: row.get(17),
        version: row.get(18),
    })
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

fn version_of(etag: &str) -> Option<i64> {
    etag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
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
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            if let Some(key) = key
                && let Claim::Replay(result) =
                    idempotency::claim(&tx, account.as_str(), key, now).await?
            {
                drop(tx);
                let id = replayed_id(&result, "contact_id")?;
                return get_contact(&*client, account.as_str(), id).await;
            }
            let contact = insert_contact(&tx, account.as_str(), new, now).await?;
            if let Some(key) = key {
                let result = serde_json::json!({ "contact_id": contact.contact_id });
                idempotency::record(&tx, account.as_str(), key, result).await?;
            }
            tx.commit().await?;
            Ok(contact)
        })
        .await
    }

    pub async fn get_contact(&self, account: &AccountId, id: Uuid) -> Result<Contact, Error> {
        self.with_client(async |client| get_contact(&*client, account.as_str(), id).await)
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
        self.with_client(async |client| {
            let tx = client.transaction().await?;
            let lock = tx
                .prepare_cached(concat!(
                    select_contact!(),
                    "WHERE c.account_id = $1 AND c.contact_id = $2 FOR UPDATE OF c"
                ))
                .await?;
            let row = tx
                .query_opt(&lock, &[&account.as_str(), &id])
                .await?
                .ok_or(Error::NotFound(Entity::Contact))?;
            let mut contact = contact_from_row(&row)?;
            if let Some(etag) = etag
                && version_of(etag) != Some(contact.version)
            {
                return Err(Error::EtagMismatch);
            }
            patch.apply(&mut contact.fields);
            if !contact.fields.identifies_someone() {
                return Err(Violations::single(
                    "contact",
                    "needs a first or last name, a company or a phone number",
                )
                .into());
            }
            match &patch.caller_message {
                Some(Some(text)) => {
                    contact.caller_message = Some(CallerMessage {
                        message_id: Uuid::now_v7(),
                        text: text.clone(),
                        create_time: now,
                    })
                }
                Some(None) => contact.caller_message = None,
                None => {}
            }
            contact.version += 1;
            contact.update_time = now;
            contact.last_activity_time = now;
            write_contact(&tx, &contact).await?;
            if patch.phone_numbers.is_some() {
                replace_phone_numbers(&tx, &contact).await?;
            }
            tx.commit().await?;
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
    ) -> Result<(), Error> {
        self.with_client(async |client| {
            let expected = match etag {
                Some(e) => Some(version_of(e).ok_or(Error::EtagMismatch)?),
                None => None,
            };
            let stmt = client
                .prepare_cached(
                    "WITH target AS (SELECT version FROM contacts \
                       WHERE account_id = $1 AND contact_id = $2), \
                     deleted AS (DELETE FROM contacts c USING target \
                       WHERE c.account_id = $1 AND c.contact_id = $2 \
                       AND ($3::bigint IS NULL OR target.version = $3) RETURNING 1) \
                     SELECT (SELECT count(*) FROM target), (SELECT count(*) FROM deleted)",
                )
                .await?;
            let row = client
                .query_one(&stmt, &[&account.as_str(), &id, &expected])
                .await?;
            let (found, deleted): (i64, i64) = (row.get(0), row.get(1));
            match (found, deleted) {
                (0, _) => Err(Error::NotFound(Entity::Contact)),
                (_, 0) => Err(Error::EtagMismatch),
                _ => Ok(()),
            }
        })
        .await
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
        self.with_client(async |client| {
            let stmt = client
                .prepare_cached(concat!(
                    select_contact!(),
                    "WHERE c.account_id = $1 AND ($2::text IS NULL OR $2 = ANY(c.categories)) \
                     AND ($3::uuid IS NULL OR c.contact_id > $3) \
                     ORDER BY c.contact_id LIMIT $4"
                ))
                .await?;
            let fetch = (limit + 1) as i64;
            let rows = client
                .query(&stmt, &[&account.as_str(), &category, &after, &fetch])
                .await?;
            let contacts = rows
                .iter()
                .map(contact_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let (contacts, next_after) = keyset_page(contacts, limit, |c| c.contact_id);
            Ok(ContactPage {
                contacts,
                next_after,
            })
        })
        .await
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
        self.with_client(async |client| {
            let stmt = client
                .prepare_cached(concat!(
                    select_contact!(),
                    "WHERE c.account_id = $1 AND c.purge_candidate AND c.last_activity_time <= $2 \
                     AND ($3::timestamptz IS NULL OR (c.last_activity_time, c.contact_id) > ($3, $4)) \
                     ORDER BY c.last_activity_time, c.contact_id LIMIT $5"
                ))
                .await?;
            let (after_time, after_id) = after.unzip();
            let fetch = (limit + 1) as i64;
            let rows = client
                .query(
                    &stmt,
                    &[
                        &account.as_str(),
                        &last_activity_until,
                        &after_time,
                        &after_id,
                        &fetch,
                    ],
                )
                .await?;
            let contacts = rows
                .iter()
                .map(contact_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let (contacts, next_after) =
                keyset_page(contacts, limit, |c| (c.last_activity_time, c.contact_id));
            Ok(ExpiringPage {
                contacts,
                next_after,
            })
        })
        .await
    }
}

pub(crate) fn replayed_id(result: &serde_json::Value, key: &str) -> Result<Uuid, Error> {
    result
        .get(key)
        .and_then(|v| v.as_str())
        .and_then(|s| Uuid::try_parse(s).ok())
        .ok_or_else(|| Error::Corrupt(format!("idempotency result without {key}")))
}

pub(crate) async fn get_contact(
    client: &impl GenericClient,
    account: &str,
    id: Uuid,
) -> Result<Contact, Error> {
    let stmt = client
        .prepare_cached(concat!(
            select_contact!(),
            "WHERE c.account_id = $1 AND c.contact_id = $2"
        ))
        .await?;
    let row = client
        .query_opt(&stmt, &[&account, &id])
        .await?
        .ok_or(Error::NotFound(Entity::Contact))?;
    contact_from_row(&row)
}

/// Inserts a new contact with its numbers inside `tx`.
pub(crate) async fn insert_contact(
    tx: &Transaction<'_>,
    account: &str,
    new: &NewContact,
    now: DateTime<Utc>,
) -> Result<Contact, Error> {
    let contact = Contact {
        account_id: account.to_owned(),
        contact_id: Uuid::now_v7(),
        fields: new.fields.clone(),
        caller_message: new.caller_message.as_ref().map(|text| CallerMessage {
            message_id: Uuid::now_v7(),
            text: text.clone(),
            create_time: now,
        }),
        origin: new.origin,
        create_time: now,
        update_time: now,
        last_activity_time: now,
        version: 1,
    };
    let f = &contact.fields;
    let m = contact.caller_message.as_ref();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO contacts (account_id, contact_id, categories, salutation, title, \
             first_name, last_name, company, email, handling_instruction, keep_permanently, \
             origin, message_id, message_text, message_create_time, create_time, update_time, \
             last_activity_time, version, search_text, phonetic_keys) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $16, $16, $17, $18, $19)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &contact.account_id,
            &contact.contact_id,
            &f.categories.as_slice(),
            &f.salutation,
            &f.title,
            &f.first_name,
            &f.last_name,
            &f.company,
            &f.email,
            &f.handling_instruction,
            &f.keep_permanently,
            &(contact.origin.code() as i16),
            &m.map(|m| m.message_id),
            &m.map(|m| m.text.as_str()),
            &m.map(|m| m.create_time),
            &now,
            &contact.version,
            &f.search_text(),
            &f.phonetic_keys(),
        ],
    )
    .await?;
    insert_phone_numbers(tx, &contact).await?;
    Ok(contact)
}

async fn write_contact(tx: &Transaction<'_>, c: &Contact) -> Result<(), Error> {
    let f = &c.fields;
    let m = c.caller_message.as_ref();
    let stmt = tx
        .prepare_cached(
            "UPDATE contacts SET categories = $3, salutation = $4, title = $5, first_name = $6, \
             last_name = $7, company = $8, email = $9, handling_instruction = $10, \
             keep_permanently = $11, message_id = $12, message_text = $13, \
             message_create_time = $14, update_time = $15, last_activity_time = $16, \
             version = $17, search_text = $18, phonetic_keys = $19 \
             WHERE account_id = $1 AND contact_id = $2",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &c.account_id,
            &c.contact_id,
            &f.categories.as_slice(),
            &f.salutation,
            &f.title,
            &f.first_name,
            &f.last_name,
            &f.company,
            &f.email,
            &f.handling_instruction,
            &f.keep_permanently,
            &m.map(|m| m.message_id),
            &m.map(|m| m.text.as_str()),
            &m.map(|m| m.create_time),
            &c.update_time,
            &c.last_activity_time,
            &c.version,
            &f.search_text(),
            &f.phonetic_keys(),
        ],
    )
    .await?;
    Ok(())
}

async fn insert_phone_numbers(tx: &Transaction<'_>, c: &Contact) -> Result<(), Error> {
    let phones = &c.fields.phone_numbers;
    if phones.is_empty() {
        return Ok(());
    }
    let positions: Vec<i16> = (0..phones.len() as i16).collect();
    let numbers: Vec<&str> = phones.iter().map(|p| p.number.as_str()).collect();
    let e164s: Vec<&str> = phones.iter().map(|p| p.e164.as_str()).collect();
    let types: Vec<i16> = phones.iter().map(|p| p.kind.code() as i16).collect();
    let stmt = tx
        .prepare_cached(
            "INSERT INTO contact_phone_numbers \
             (account_id, contact_id, position, number, e164, phone_type) \
             SELECT $1, $2, * FROM unnest($3::smallint[], $4::text[], $5::text[], $6::smallint[])",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &c.account_id,
            &c.contact_id,
            &positions,
            &numbers,
            &e164s,
            &types,
        ],
    )
    .await?;
    Ok(())
}

async fn replace_phone_numbers(tx: &Transaction<'_>, c: &Contact) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "DELETE FROM contact_phone_numbers WHERE account_id = $1 AND contact_id = $2",
        )
        .await?;
    tx.execute(&stmt, &[&c.account_id, &c.contact_id]).await?;
    insert_phone_numbers(tx, c).await
}
