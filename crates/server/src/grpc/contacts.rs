//! `callers.v1.ContactService`.

use super::{App, account, idempotency_key, request_id, same_account, valid};
use crate::{convert, error, page_token};
use callers_domain::Violations;
use callers_domain::contact::{Categories, ContactPatch, Field, NewContact, Origin};
use callers_proto::v1 as pb;
use callers_proto::v1::contact_service_server::ContactService;
use callers_store::Operation;
use chrono::{DateTime, Duration, Utc};
use tonic::{Request, Response, Status};
use uuid::Uuid;

pub struct Contacts(pub App);

const MAX_WITHIN_DAYS: i32 = 3650;

#[tonic::async_trait]
impl ContactService for Contacts {
    async fn create_contact(
        &self,
        request: Request<pb::CreateContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let req = request.get_ref();
        let rid = request_id(&req.request_id, &mut v);
        let region = self.0.region_or_default(acc.as_ref()).await?;
        let new = match &req.contact {
            None => {
                v.add("contact", "is required");
                None
            }
            Some(c) => {
                same_account("contact.account_id", &c.account_id, &req.account_id, &mut v);
                let origin = match c.origin {
                    0 => Some(Origin::Manual),
                    code => Origin::from_code(code),
                };
                match origin {
                    None => {
                        v.add("contact.origin", "unknown origin");
                        None
                    }
                    Some(origin) => {
                        match NewContact::parse(
                            &convert::raw_contact(c),
                            origin,
                            &region,
                            "contact",
                        ) {
                            Ok(n) => Some(n),
                            Err(e) => {
                                v.0.extend(e.0);
                                None
                            }
                        }
                    }
                }
            }
        };
        let (acc, new) = valid(v, acc.zip(new))?;
        let key = idempotency_key(rid, Operation::CreateContact, req);
        let contact = self
            .0
            .store
            .create_contact(&acc, &new, key.as_ref(), self.0.clock.now())
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(convert::contact(&contact, self.0.retention)))
    }

    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let id = v.check(
            "contact_id",
            callers_domain::validation::uuid(&request.get_ref().contact_id),
        );
        let (acc, id) = valid(v, acc.zip(id))?;
        let contact = self
            .0
            .store
            .get_contact(&acc, id)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(convert::contact(&contact, self.0.retention)))
    }

    async fn update_contact(
        &self,
        request: Request<pb::UpdateContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let req = request.get_ref();
        let mask = update_mask(req.update_mask.as_ref(), &mut v);
        let region = self.0.region_or_default(acc.as_ref()).await?;
        let mut id = None;
        let mut patch = None;
        match &req.contact {
            None => v.add("contact", "is required"),
            Some(c) => {
                same_account("contact.account_id", &c.account_id, &req.account_id, &mut v);
                id = v.check(
                    "contact.contact_id",
                    callers_domain::validation::uuid(&c.contact_id),
                );
                if let Some(mask) = &mask {
                    match ContactPatch::parse(&convert::raw_contact(c), mask, &region, "contact") {
                        Ok(p) => patch = Some(p),
                        Err(e) => v.0.extend(e.0),
                    }
                }
            }
        }
        let etag = match (&req.etag, &req.contact) {
            (e, _) if !e.is_empty() => Some(e.as_str()),
            (_, Some(c)) if !c.etag.is_empty() => Some(c.etag.as_str()),
            _ => None,
        };
        let ((acc, id), patch) = valid(v, acc.zip(id).zip(patch))?;
        let contact = self
            .0
            .store
            .update_contact(&acc, id, &patch, etag, self.0.clock.now())
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(convert::contact(&contact, self.0.retention)))
    }

    async fn delete_contact(
        &self,
        request: Request<pb::DeleteContactRequest>,
    ) -> Result<Response<pb::DeleteContactResponse>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let req = request.get_ref();
        let id = v.check(
            "contact_id",
            callers_domain::validation::uuid(&req.contact_id),
        );
        let (acc, id) = valid(v, acc.zip(id))?;
        let etag = (!req.etag.is_empty()).then_some(req.etag.as_str());
        self.0
            .store
            .delete_contact(&acc, id, etag)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::DeleteContactResponse {}))
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let req = request.get_ref();
        let size = v.check("page_size", page_token::page_size(req.page_size));
        let category = (!req.category.is_empty()).then_some(req.category.as_str());
        if let Some(c) = category
            && let Err(e) = Categories::parse(&[c.to_owned()], "category")
        {
            v.add("category", e.0[0].description.clone());
        }
        let query = format!("contacts/{}/{}", req.account_id, req.category);
        let after = v
            .check(
                "page_token",
                page_token::decode::<Uuid>(&query, &req.page_token),
            )
            .flatten();
        let (acc, size) = valid(v, acc.zip(size))?;
        let page = self
            .0
            .store
            .list_contacts(&acc, category, after, size)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::ListContactsResponse {
            contacts: page
                .contacts
                .iter()
                .map(|c| convert::contact(c, self.0.retention))
                .collect(),
            next_page_token: page
                .next_after
                .map(|id| page_token::encode(&query, &id))
                .unwrap_or_default(),
        }))
    }

    async fn list_expiring_contacts(
        &self,
        request: Request<pb::ListExpiringContactsRequest>,
    ) -> Result<Response<pb::ListExpiringContactsResponse>, Status> {
        let mut v = Violations::new();
        let acc = account(&request, &request.get_ref().account_id, &mut v)?;
        let req = request.get_ref();
        let size = v.check("page_size", page_token::page_size(req.page_size));
        let within = match req.within_days {
            d if (1..=MAX_WITHIN_DAYS).contains(&d) => Some(d),
            _ => {
                v.add(
                    "within_days",
                    format!("must be between 1 and {MAX_WITHIN_DAYS}"),
                );
                None
            }
        };
        // The position is tied to the "until" bound, fixed by the first page.
        let query = format!("expiring/{}/{}", req.account_id, req.within_days);
        let token = v
            .check(
                "page_token",
                page_token::decode::<(DateTime<Utc>, DateTime<Utc>, Uuid)>(&query, &req.page_token),
            )
            .flatten();
        let ((acc, size), within) = valid(v, acc.zip(size).zip(within))?;
        let (until, after) = match token {
            Some((until, t, id)) => (until, Some((t, id))),
            None => {
                let now = self.0.clock.now();
                let until = now + Duration::days(i64::from(within)) - self.0.retention.duration();
                (until, None)
            }
        };
        let page = self
            .0
            .store
            .list_expiring_contacts(&acc, until, after, size)
            .await
            .map_err(error::from_store)?;
        Ok(Response::new(pb::ListExpiringContactsResponse {
            contacts: page
                .contacts
                .iter()
                .map(|c| convert::contact(c, self.0.retention))
                .collect(),
            next_page_token: page
                .next_after
                .map(|(t, id)| page_token::encode(&query, &(until, t, id)))
                .unwrap_or_default(),
        }))
    }
}

/// Mask paths to fields. An empty mask is refused rather than read as "replace everything",
/// which would silently clear a pending caller message.
fn update_mask(mask: Option<&prost_types::FieldMask>, v: &mut Violations) -> Option<Vec<Field>> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        v.add("update_mask", "must name at least one field to change");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, p) in paths.iter().enumerate() {
        match Field::from_path(p) {
            Some(f) if !out.contains(&f) => out.push(f),
            Some(_) => {}
            None => {
                ok = false;
                v.add(
                    format!("update_mask.paths[{i}]"),
                    "is not a writable field of Contact",
                );
            }
        }
    }
    ok.then_some(out)
}
