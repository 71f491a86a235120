//! `PrivacyService` requests as commands, and their results back.

use super::call_notes::call_note;
use super::{contact, request_id, undelivered_message};
use crate::page_token;
use callers_domain::phone::Region;
use callers_domain::privacy::{HashKeys, KeyedHash, Subject};
use callers_domain::retention::Retention;
use callers_domain::{AccountId, Violations};
use callers_proto::v1 as pb;
use callers_store::privacy::{AccountDeletion, Erased, ExportPage, ExportPosition, ExportSection};
use callers_store::{IdempotencyKey, Operation};
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Export pages hold at most this many items: the largest contact or call note the limits
/// allow is below 100 KB, so a page stays below 4 MiB, the usual receive limit of clients.
pub const MAX_EXPORT_PAGE: usize = 25;
const DEFAULT_EXPORT_PAGE: usize = 10;

/// The keyed hashes of the subject's number; empty without a number or without keys.
fn hashes(keys: &HashKeys, account: &AccountId, subject: &Subject) -> Vec<KeyedHash> {
    subject
        .number
        .as_ref()
        .map(|n| keys.hashes(account.as_str(), n))
        .unwrap_or_default()
}

pub struct EraseCaller {
    pub account: AccountId,
    pub subject: Subject,
    pub suppress: bool,
    pub number_hashes: Vec<KeyedHash>,
    pub key: Option<IdempotencyKey>,
}

impl EraseCaller {
    /// The number is read in `region`, the account's. The idempotency record keeps a keyed
    /// hash of the request (it holds the number), or without keys an unkeyed hash of the
    /// request without its number.
    pub fn parse(
        req: &pb::EraseCallerRequest,
        region: &Region,
        keys: &HashKeys,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let request_id = request_id(&req.request_id, &mut v);
        let subject = v.absorb(Subject::parse(&req.phone_number, &req.contact_ids, region));
        if req.suppress && req.phone_number.trim().is_empty() {
            v.add("suppress", "needs the phone_number to suppress");
        }
        let (account, subject) = v.finish(account.zip(subject))?;
        let key = request_id.map(|request_id| IdempotencyKey {
            request_id,
            operation: Operation::EraseCaller,
            request_hash: keys.digest(&req.encode_to_vec()).unwrap_or_else(|| {
                let without_number = pb::EraseCallerRequest {
                    phone_number: String::new(),
                    ..req.clone()
                };
                Sha256::digest(without_number.encode_to_vec()).to_vec()
            }),
        });
        Ok(Self {
            number_hashes: hashes(keys, &account, &subject),
            account,
            subject,
            suppress: req.suppress,
            key,
        })
    }
}

pub fn erased(e: &Erased) -> pb::EraseCallerResponse {
    pb::EraseCallerResponse {
        erasure_id: e.erasure_id.to_string(),
        deleted_contact_ids: e.deleted_contact_ids.iter().map(Uuid::to_string).collect(),
        redacted_call_notes: e.redacted_call_notes as i64,
        redacted_changes: e.redacted_changes as i64,
        removed_undelivered_messages: e.removed_undelivered_messages as i64,
        suppressed: e.suppressed,
    }
}

pub struct LiftSuppression {
    pub account: AccountId,
    pub number_hashes: Vec<KeyedHash>,
}

impl LiftSuppression {
    pub fn parse(
        req: &pb::LiftSuppressionRequest,
        region: &Region,
        keys: &HashKeys,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let subject = if req.phone_number.trim().is_empty() {
            v.add("phone_number", "is required");
            None
        } else {
            v.absorb(Subject::parse(&req.phone_number, &[], region))
        };
        let (account, subject) = v.finish(account.zip(subject))?;
        Ok(Self {
            number_hashes: hashes(keys, &account, &subject),
            account,
        })
    }
}

pub struct ExportCallerData {
    pub account: AccountId,
    pub subject: Subject,
    pub number_hashes: Vec<KeyedHash>,
    pub after: Option<ExportPosition>,
    pub size: usize,
    query: String,
}

impl ExportCallerData {
    pub fn parse(
        req: &pb::ExportCallerDataRequest,
        region: &Region,
        keys: &HashKeys,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let subject = v.absorb(Subject::parse(&req.phone_number, &req.contact_ids, region));
        let size = v.check(
            "page_size",
            match req.page_size {
                n if n < 0 => Err("must not be negative".to_owned()),
                0 => Ok(DEFAULT_EXPORT_PAGE),
                n => Ok((n as usize).min(MAX_EXPORT_PAGE)),
            },
        );
        // The token names its request by a digest: it never carries the number.
        let digest = Sha256::digest(format!("{}|{:?}", req.phone_number, req.contact_ids));
        let query = format!("export/{}/{}", req.account_id, hex::encode(&digest[..12]));
        let after = v
            .check(
                "page_token",
                page_token::decode::<(u8, Option<Uuid>)>(&query, &req.page_token),
            )
            .flatten();
        let after = match after {
            Some((code, id)) => match ExportSection::from_code(code) {
                Some(section) => Some((section, id)),
                None => {
                    v.add("page_token", "is not a page token of this request");
                    None
                }
            },
            None => None,
        };
        let ((account, subject), size) = v.finish(account.zip(subject).zip(size))?;
        Ok(Self {
            number_hashes: hashes(keys, &account, &subject),
            account,
            subject,
            after,
            size,
            query,
        })
    }

    pub fn response(
        &self,
        page: &ExportPage,
        retention: Retention,
    ) -> pb::ExportCallerDataResponse {
        pb::ExportCallerDataResponse {
            contacts: page
                .contacts
                .iter()
                .map(|c| contact(c, retention))
                .collect(),
            call_notes: page.call_notes.iter().map(call_note).collect(),
            undelivered_messages: page
                .undelivered_messages
                .iter()
                .map(undelivered_message)
                .collect(),
            next_page_token: page
                .next
                .map(|(section, id)| page_token::encode(&self.query, &(section.code(), id)))
                .unwrap_or_default(),
        }
    }
}

pub struct DeleteAccountData {
    pub account: AccountId,
    pub dry_run: bool,
}

impl TryFrom<&pb::DeleteAccountDataRequest> for DeleteAccountData {
    type Error = Violations;

    fn try_from(req: &pb::DeleteAccountDataRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let account = v.finish(account)?;
        Ok(Self {
            account,
            dry_run: req.dry_run,
        })
    }
}

pub fn account_deletion(d: &AccountDeletion) -> pb::DeleteAccountDataResponse {
    pb::DeleteAccountDataResponse {
        rows: d
            .rows
            .iter()
            .map(|(table, &n)| (table.clone(), n as i64))
            .collect(),
        done: d.done,
    }
}
