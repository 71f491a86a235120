//! Caller messages that were never told: the expiry sweep, which moves messages past their
//! instant out of their contacts into undelivered-message records, and the customer's report
//! of those records. Replacing an untold message records it in the same way
//! (`crate::contacts`); the purge worker deletes records after the report period
//! (`crate::purge::UNDELIVERED_MESSAGES`).
//!
//! A message past its instant is already dead before the sweep: `IdentifyCaller` hides it and
//! delivery refuses it (`crate::call_notes`). The sweep only takes messages whose instant lies
//! more than a grace (the server's request timeout) in the past, so a delivery that was handled
//! before the instant has committed or given up before the sweep locks its contact: a message
//! is delivered or recorded as expired, never both (the contact's row lock decides).

use crate::contacts::{ContactRow, select_contact};
use crate::exec::{Conn, Route};
use crate::row::row_struct;
use crate::{Error, Store, keyset_page};
use callers_domain::AccountId;
use callers_domain::change::Change;
use callers_domain::contact::Contact;
use callers_domain::message::{UndeliveredMessage, UndeliveredReason};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

row_struct! {
    struct UndeliveredRow {
        message_id: Uuid,
        contact_id: Uuid,
        text: String,
        create_time: DateTime<Utc>,
        expire_time: Option<DateTime<Utc>>,
        end_time: DateTime<Utc>,
        reason: i16,
    }
}

impl TryFrom<UndeliveredRow> for UndeliveredMessage {
    type Error = Error;

    fn try_from(r: UndeliveredRow) -> Result<Self, Error> {
        Ok(UndeliveredMessage {
            message_id: r.message_id,
            contact_id: r.contact_id,
            text: r.text,
            create_time: r.create_time,
            expire_time: r.expire_time,
            end_time: r.end_time,
            reason: UndeliveredReason::from_code(i32::from(r.reason))
                .ok_or_else(|| Error::Corrupt(format!("undelivered reason {}", r.reason)))?,
        })
    }
}

row_struct! {
    struct ExpiredRow {
        account_id: String,
        contact_id: Uuid,
    }
}

row_struct! {
    struct ReasonRow {
        reason: i16,
    }
}

/// A keyset position in "newest end first" order.
pub type UndeliveredPosition = (DateTime<Utc>, Uuid);

#[derive(Debug)]
pub struct UndeliveredPage {
    pub messages: Vec<UndeliveredMessage>,
    pub next_after: Option<UndeliveredPosition>,
}

/// Records a message that left its contact untold, in the write's transaction.
pub(crate) async fn insert_undelivered(
    tx: Conn<'_>,
    account: &str,
    m: &UndeliveredMessage,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO undelivered_messages (account_id, message_id, contact_id, text, \
         create_time, expire_time, end_time, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &account,
            &m.message_id,
            &m.contact_id,
            &m.text,
            &m.create_time,
            &m.expire_time,
            &m.end_time,
            &(m.reason.code() as i16),
        ],
    )
    .await?;
    Ok(())
}

/// Why `message_id` left its contact untold, if it did.
pub(crate) async fn undelivered_reason(
    tx: Conn<'_>,
    account: &str,
    message_id: Uuid,
) -> Result<Option<UndeliveredReason>, Error> {
    let row: Option<ReasonRow> = tx
        .row(
            "SELECT reason FROM undelivered_messages WHERE account_id = $1 AND message_id = $2",
            &[&account, &message_id],
        )
        .await?;
    Ok(row.and_then(|r| UndeliveredReason::from_code(i32::from(r.reason))))
}

impl Store {
    /// One batch of the expiry sweep at `now`: up to `limit` messages whose instant lies before
    /// `now - grace` become undelivered records, their contacts lose them (written, not
    /// activity), and the feed carries `MESSAGE_EXPIRED` and `CONTACT_UPDATED` for each. One
    /// transaction per account. Returns how many messages expired; fewer than `limit` means
    /// none are left (but those other transactions held, which the next sweep takes).
    pub async fn expire_messages(
        &self,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        limit: u32,
    ) -> Result<u64, Error> {
        let now = crate::db_time(now);
        let before = now - grace;
        let due: Vec<ExpiredRow> = self
            .pooled(async |s| {
                s.conn()
                    .rows(
                        // The one cross-account read: each account's transaction after it
                        // names its account (`crate::purge::ACCOUNTS_WITH_WORK`).
                        "/* which accounts have work */ SELECT account_id, contact_id FROM contacts \
                         WHERE message_expire_time < $1 \
                         ORDER BY message_expire_time, account_id, contact_id LIMIT $2",
                        &[&before, &i64::from(limit)],
                    )
                    .await
            })
            .await?;
        let mut by_account: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
        for r in due {
            by_account
                .entry(r.account_id)
                .or_default()
                .push(r.contact_id);
        }
        let mut expired = 0;
        for (account, ids) in by_account {
            expired += self.expire_in_account(&account, &ids, before, now).await?;
        }
        Ok(expired)
    }

    async fn expire_in_account(
        &self,
        account: &str,
        ids: &[Uuid],
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, Error> {
        self.pooled(async |s| {
            let tx = s.transaction().await?;
            // Re-checked on the locked row: a delivery or an update that came first wins.
            let rows: Vec<ContactRow> = tx
                .conn()
                .rows(
                    concat!(
                        select_contact!(),
                        "WHERE c.account_id = $1 AND c.contact_id = ANY($2) \
                         AND c.message_expire_time < $3 FOR UPDATE OF c SKIP LOCKED"
                    ),
                    &[&account, &ids, &before],
                )
                .await?;
            let mut changes = Vec::with_capacity(rows.len() * 2);
            let mut locked = Vec::with_capacity(rows.len());
            for row in rows {
                let mut contact = Contact::try_from(row)?;
                let Some(message) = contact.caller_message.take() else {
                    continue;
                };
                let record = message.untold(contact.contact_id, now, false);
                insert_undelivered(tx.conn(), account, &record).await?;
                contact.version += 1;
                contact.update_time = now;
                locked.push(contact.contact_id);
                changes.push(Change::untold(record));
                changes.push(Change::ContactUpdated(contact));
            }
            if locked.is_empty() {
                return Ok(0);
            }
            tx.conn()
                .execute(
                    "UPDATE contacts SET message_id = NULL, message_text = NULL, \
                     message_create_time = NULL, message_expire_time = NULL, update_time = $3, \
                     version = version + 1 \
                     WHERE account_id = $1 AND contact_id = ANY($2)",
                    &[&account, &locked, &now],
                )
                .await?;
            self.commit_changes(tx, account, now, &changes).await?;
            Ok(locked.len() as u64)
        })
        .await
    }

    /// The undelivered messages of an account, or of one of its contacts, newest end first.
    pub async fn list_undelivered_messages(
        &self,
        account: &AccountId,
        contact_id: Option<Uuid>,
        after: Option<UndeliveredPosition>,
        limit: usize,
    ) -> Result<UndeliveredPage, Error> {
        let (after_time, after_id) = after.unzip();
        let fetch = (limit + 1) as i64;
        let rows: Vec<UndeliveredRow> = self
            .read(Route::Pooled, async |s| {
                s.conn()
                    .rows(
                        "SELECT message_id, contact_id, text, create_time, expire_time, \
                         end_time, reason FROM undelivered_messages \
                         WHERE account_id = $1 AND ($2::uuid IS NULL OR contact_id = $2) \
                         AND ($3::timestamptz IS NULL OR (end_time, message_id) < ($3, $4)) \
                         ORDER BY end_time DESC, message_id DESC LIMIT $5",
                        &[
                            &account.as_str(),
                            &contact_id,
                            &after_time,
                            &after_id,
                            &fetch,
                        ],
                    )
                    .await
            })
            .await?;
        let messages = rows
            .into_iter()
            .map(UndeliveredMessage::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let (messages, next_after) = keyset_page(messages, limit, |m| (m.end_time, m.message_id));
        Ok(UndeliveredPage {
            messages,
            next_after,
        })
    }
}
