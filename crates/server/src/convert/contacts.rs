//! `ContactService` requests as commands, and pages of contacts back.

use super::{
    EmptyMask, etag, idempotency_key, raw_contact, request_id, resource, same_account, update_mask,
};
use crate::page_token;
use callers_domain::contact::{self, ContactPatch, NewContact, Origin};
use callers_domain::phone::Region;
use callers_domain::retention::Retention;
use callers_domain::search::{NumberPrefix, RankedPosition, Search};
use callers_domain::validation::uuid;
use callers_domain::{AccountId, Violations};
use callers_proto::v1 as pb;
use callers_store::messages::{UndeliveredPage, UndeliveredPosition};
use callers_store::search::{SearchAfter, SearchPage};
use callers_store::{ContactPage, ExpiringPage, IdempotencyKey, Operation};
use chrono::{DateTime, Duration, Utc};
use prost::Message;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The widest `within_days` of `ListExpiringContacts`.
const MAX_WITHIN_DAYS: i32 = 3650;

pub struct CreateContact {
    pub account: AccountId,
    pub contact: NewContact,
    pub key: Option<IdempotencyKey>,
}

impl CreateContact {
    /// Phone numbers are read in `region`, the account's.
    pub fn parse(req: &pb::CreateContactRequest, region: &Region) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let request_id = request_id(&req.request_id, &mut v);
        let contact = match &req.contact {
            None => {
                v.add("contact", "is required");
                None
            }
            Some(c) => {
                same_account("contact.account_id", &c.account_id, &req.account_id, &mut v);
                let origin = match c.origin {
                    0 => Ok(Origin::Manual),
                    code => Origin::from_code(code).ok_or_else(|| "unknown origin".to_owned()),
                };
                v.check("contact.origin", origin).and_then(|origin| {
                    let raw = raw_contact(c);
                    v.absorb(NewContact::parse(&raw, origin, region, "contact"))
                })
            }
        };
        let (account, contact) = v.finish(account.zip(contact))?;
        let key = idempotency_key(request_id, Operation::CreateContact, req);
        Ok(Self {
            account,
            contact,
            key,
        })
    }
}

pub struct GetContact {
    pub account: AccountId,
    pub contact_id: Uuid,
}

impl TryFrom<&pb::GetContactRequest> for GetContact {
    type Error = Violations;

    fn try_from(req: &pb::GetContactRequest) -> Result<Self, Violations> {
        let (account, contact_id) = resource(&req.account_id, "contact_id", &req.contact_id)?;
        Ok(Self {
            account,
            contact_id,
        })
    }
}

pub struct UpdateContact {
    pub account: AccountId,
    pub contact_id: Uuid,
    pub patch: ContactPatch,
    etag: Option<String>,
}

impl UpdateContact {
    /// Phone numbers are read in `region`, the account's.
    pub fn parse(req: &pb::UpdateContactRequest, region: &Region) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        // An empty mask is refused rather than read as "replace everything", which would
        // silently clear a pending caller message.
        let empty = EmptyMask::Refused("must name at least one field to change");
        let mask = update_mask::<contact::Field>(req.update_mask.as_ref(), empty, &mut v);
        let (contact_id, patch) = match &req.contact {
            None => {
                v.add("contact", "is required");
                (None, None)
            }
            Some(c) => {
                same_account("contact.account_id", &c.account_id, &req.account_id, &mut v);
                let id = v.check("contact.contact_id", uuid(&c.contact_id));
                let patch = mask.and_then(|mask| {
                    let raw = raw_contact(c);
                    v.absorb(ContactPatch::parse(&raw, &mask, region, "contact"))
                });
                (id, patch)
            }
        };
        let etag = etag(&req.etag, req.contact.as_ref().map(|c| c.etag.as_str()));
        let ((account, contact_id), patch) = v.finish(account.zip(contact_id).zip(patch))?;
        Ok(Self {
            account,
            contact_id,
            patch,
            etag,
        })
    }
}

impl UpdateContact {
    /// The etag the write is conditional on, if any.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

pub struct DeleteContact {
    pub account: AccountId,
    pub contact_id: Uuid,
    etag: Option<String>,
}

impl TryFrom<&pb::DeleteContactRequest> for DeleteContact {
    type Error = Violations;

    fn try_from(req: &pb::DeleteContactRequest) -> Result<Self, Violations> {
        let (account, contact_id) = resource(&req.account_id, "contact_id", &req.contact_id)?;
        Ok(Self {
            account,
            contact_id,
            etag: etag(&req.etag, None),
        })
    }
}

impl DeleteContact {
    /// The etag the write is conditional on, if any.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }
}

pub struct ListContacts {
    pub account: AccountId,
    pub category: Option<String>,
    pub after: Option<Uuid>,
    pub size: usize,
    /// What the page token belongs to.
    query: String,
}

impl TryFrom<&pb::ListContactsRequest> for ListContacts {
    type Error = Violations;

    fn try_from(req: &pb::ListContactsRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let size = v.check("page_size", page_token::page_size(req.page_size));
        let category = match req.category.as_str() {
            "" => None,
            c => v.check("category", contact::category(c)).map(str::to_owned),
        };
        let query = format!("contacts/{}/{}", req.account_id, req.category);
        let after = v.check("page_token", page_token::decode(&query, &req.page_token));
        let (account, size) = v.finish(account.zip(size))?;
        Ok(Self {
            account,
            category,
            after: after.flatten(),
            size,
            query,
        })
    }
}

impl ListContacts {
    pub fn response(&self, page: &ContactPage, retention: Retention) -> pb::ListContactsResponse {
        pb::ListContactsResponse {
            contacts: contacts(&page.contacts, retention),
            next_page_token: page
                .next_after
                .map(|id| page_token::encode(&self.query, &id))
                .unwrap_or_default(),
        }
    }
}

pub struct ListExpiringContacts {
    pub account: AccountId,
    pub size: usize,
    within_days: i32,
    /// The position, with the "until" bound the first page fixed.
    token: Option<(DateTime<Utc>, DateTime<Utc>, Uuid)>,
    query: String,
}

impl TryFrom<&pb::ListExpiringContactsRequest> for ListExpiringContacts {
    type Error = Violations;

    fn try_from(req: &pb::ListExpiringContactsRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let size = v.check("page_size", page_token::page_size(req.page_size));
        let within_days = match req.within_days {
            d if (1..=MAX_WITHIN_DAYS).contains(&d) => Some(d),
            _ => {
                v.add(
                    "within_days",
                    format!("must be between 1 and {MAX_WITHIN_DAYS}"),
                );
                None
            }
        };
        let query = format!("expiring/{}/{}", req.account_id, req.within_days);
        let token = v.check("page_token", page_token::decode(&query, &req.page_token));
        let ((account, size), within_days) = v.finish(account.zip(size).zip(within_days))?;
        Ok(Self {
            account,
            size,
            within_days,
            token: token.flatten(),
            query,
        })
    }
}

impl ListExpiringContacts {
    /// The "until" bound and the position after which the page starts. The first page fixes
    /// the bound at `now`; later pages carry it in their token, so the list does not shift.
    pub fn bounds(
        &self,
        now: DateTime<Utc>,
        retention: Retention,
    ) -> (DateTime<Utc>, Option<(DateTime<Utc>, Uuid)>) {
        match self.token {
            Some((until, t, id)) => (until, Some((t, id))),
            None => {
                let within = Duration::days(i64::from(self.within_days));
                (now + within - retention.duration(), None)
            }
        }
    }

    pub fn response(
        &self,
        until: DateTime<Utc>,
        page: &ExpiringPage,
        retention: Retention,
    ) -> pb::ListExpiringContactsResponse {
        pb::ListExpiringContactsResponse {
            contacts: contacts(&page.contacts, retention),
            next_page_token: page
                .next_after
                .map(|(t, id)| page_token::encode(&self.query, &(until, t, id)))
                .unwrap_or_default(),
        }
    }
}

pub struct ListUndeliveredMessages {
    pub account: AccountId,
    pub contact_id: Option<Uuid>,
    pub after: Option<UndeliveredPosition>,
    pub size: usize,
    query: String,
}

impl TryFrom<&pb::ListUndeliveredMessagesRequest> for ListUndeliveredMessages {
    type Error = Violations;

    fn try_from(req: &pb::ListUndeliveredMessagesRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let size = v.check("page_size", page_token::page_size(req.page_size));
        let contact_id = match req.contact_id.as_str() {
            "" => Some(None),
            id => v.check("contact_id", uuid(id)).map(Some),
        };
        let query = format!("undelivered/{}/{}", req.account_id, req.contact_id);
        let after = v.check("page_token", page_token::decode(&query, &req.page_token));
        let ((account, size), contact_id) = v.finish(account.zip(size).zip(contact_id))?;
        Ok(Self {
            account,
            contact_id,
            after: after.flatten(),
            size,
            query,
        })
    }
}

impl ListUndeliveredMessages {
    pub fn response(&self, page: &UndeliveredPage) -> pb::ListUndeliveredMessagesResponse {
        pb::ListUndeliveredMessagesResponse {
            undelivered_messages: page
                .messages
                .iter()
                .map(super::undelivered_message)
                .collect(),
            next_page_token: page
                .next_after
                .map(|after| page_token::encode(&self.query, &after))
                .unwrap_or_default(),
        }
    }
}

fn contacts(list: &[contact::Contact], retention: Retention) -> Vec<pb::Contact> {
    list.iter().map(|c| super::contact(c, retention)).collect()
}

pub struct SearchContacts {
    pub account: AccountId,
    pub search: Search,
    pub after: Option<SearchAfter>,
    pub size: usize,
    /// What the page token belongs to: the request but its paging, hashed (a query of 200
    /// characters would not fit in a token).
    query: String,
}

/// A page token's position: the last contact newest first, or the end of the ranked contacts
/// and the last result's (score, contact id), the score as its bits: a JSON number need not
/// read back as exactly the same `f64`, and the next page starts strictly after it.
type NewestToken = Uuid;
type RankedToken = (Uuid, u64, Uuid);

impl SearchContacts {
    /// A national `phone_number` is read in `region`, the account's.
    pub fn parse(req: &pb::SearchContactsRequest, region: &Region) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let size = v.check("page_size", page_token::page_size(req.page_size));
        let query = v.check("query", Search::query(&req.query));
        let number = match req.phone_number.trim() {
            "" => Some(None),
            n => v
                .check("phone_number", NumberPrefix::parse(n, region))
                .map(Some),
        };
        let category = match req.category.as_str() {
            "" => Some(None),
            c => v
                .check("category", contact::category(c))
                .map(|c| Some(c.to_owned())),
        };
        let origin = match req.origin {
            0 => Some(None),
            code => v
                .check(
                    "origin",
                    Origin::from_code(code).ok_or_else(|| "unknown origin".to_owned()),
                )
                .map(Some),
        };
        let paging = pb::SearchContactsRequest {
            page_size: 0,
            page_token: String::new(),
            ..req.clone()
        };
        let bound = format!(
            "search/{}",
            hex::encode(Sha256::digest(paging.encode_to_vec()))
        );
        let after = match query {
            Some(Some(_)) => v
                .check(
                    "page_token",
                    page_token::decode::<RankedToken>(&bound, &req.page_token),
                )
                .map(|t| t.map(ranked_after)),
            _ => v
                .check(
                    "page_token",
                    page_token::decode::<NewestToken>(&bound, &req.page_token),
                )
                .map(|t| t.map(|id| Some(SearchAfter::Newest(id)))),
        };
        let after = match after {
            Some(Some(None)) => {
                v.add("page_token", "is not a page token of this request");
                None
            }
            other => other.map(Option::flatten),
        };
        let fields = account
            .zip(size)
            .zip(query.zip(number))
            .zip(category.zip(origin))
            .zip(after);
        let ((((account, size), (query, number)), (category, origin)), after) = v.finish(fields)?;
        Ok(Self {
            account,
            search: Search {
                query,
                number,
                category,
                origin,
            },
            after,
            size,
            query: bound,
        })
    }

    pub fn response(&self, page: &SearchPage, retention: Retention) -> pb::SearchContactsResponse {
        match page {
            SearchPage::Newest {
                contacts: list,
                next_after,
            } => pb::SearchContactsResponse {
                contacts: contacts(list, retention),
                next_page_token: next_after
                    .map(|id| page_token::encode(&self.query, &id))
                    .unwrap_or_default(),
                scores: Vec::new(),
            },
            SearchPage::Ranked {
                matches,
                next_after,
            } => pb::SearchContactsResponse {
                contacts: matches
                    .iter()
                    .map(|m| super::contact(&m.contact, retention))
                    .collect(),
                scores: matches.iter().map(|m| m.score).collect(),
                next_page_token: match next_after {
                    Some(SearchAfter::Ranked { until, position }) => page_token::encode(
                        &self.query,
                        &(*until, position.score.to_bits(), position.contact_id),
                    ),
                    _ => String::new(),
                },
            },
        }
    }
}

/// A ranked token's position; `None` for a score no ranking makes (a forged token).
fn ranked_after((until, score, contact_id): RankedToken) -> Option<SearchAfter> {
    let score = f64::from_bits(score);
    (0.0..=1.0).contains(&score).then_some(SearchAfter::Ranked {
        until,
        position: RankedPosition { score, contact_id },
    })
}
