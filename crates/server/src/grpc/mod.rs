//! The gRPC services: thin handlers that authorise, convert, call the store and convert back.

pub mod call_handling;
pub mod call_notes;
pub mod contacts;
pub mod identification;

use crate::auth;
use crate::error;
use callers_domain::phone::Region;
use callers_domain::retention::Retention;
use callers_domain::{AccountId, Clock, Violations};
use callers_store::{IdempotencyKey, Operation, Store};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tonic::{Request, Status};
use uuid::Uuid;

/// What every handler needs; cheap to clone.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub default_region: Region,
    pub retention: Retention,
}

impl App {
    /// The account's phone region, else the configured default.
    pub async fn region(&self, account: &AccountId) -> Result<Region, Status> {
        match self
            .store
            .phone_region(account)
            .await
            .map_err(error::from_store)?
        {
            Some(r) => Region::parse(&r).map_err(|_| Status::internal("internal error")),
            None => Ok(self.default_region),
        }
    }

    /// As `region`, but the default when the account itself is invalid, so
    /// the rest of the request can still be checked.
    pub async fn region_or_default(&self, account: Option<&AccountId>) -> Result<Region, Status> {
        match account {
            Some(a) => self.region(a).await,
            None => Ok(self.default_region),
        }
    }
}

/// Validates `account_id` into `v`; on success also checks the caller's grant.
pub fn account<T>(
    req: &Request<T>,
    raw: &str,
    v: &mut Violations,
) -> Result<Option<AccountId>, Status> {
    match AccountId::parse(raw) {
        Ok(a) => {
            if let Some(log) = req.extensions().get::<crate::observe::RequestAccount>() {
                log.set(a.as_str());
            }
            auth::authorize(req, &a)?;
            Ok(Some(a))
        }
        Err(d) => {
            v.add("account_id", d);
            Ok(None)
        }
    }
}

/// A resource's own `account_id` may be left empty; if set it must be the request's.
pub fn same_account(field: &str, inner: &str, outer: &str, v: &mut Violations) {
    if !inner.is_empty() && inner != outer {
        v.add(field, "must be empty or equal to the request's account_id");
    }
}

/// An optional `request_id`: empty means none.
pub fn request_id(raw: &str, v: &mut Violations) -> Option<Uuid> {
    if raw.is_empty() {
        return None;
    }
    v.check("request_id", callers_domain::validation::uuid(raw))
}

/// Tells a retry (same body) from a reuse of the key (different body).
pub fn request_hash(msg: &impl prost::Message) -> Vec<u8> {
    Sha256::digest(msg.encode_to_vec()).to_vec()
}

/// The idempotency key of a request that gave a `request_id`.
pub fn idempotency_key(
    request_id: Option<Uuid>,
    operation: Operation,
    msg: &impl prost::Message,
) -> Option<IdempotencyKey> {
    request_id.map(|request_id| IdempotencyKey {
        request_id,
        operation,
        request_hash: request_hash(msg),
    })
}

/// Returns the violations as `INVALID_ARGUMENT`, or the value when there are none.
pub fn valid<T>(v: Violations, value: Option<T>) -> Result<T, Status> {
    if !v.is_empty() {
        return Err(error::invalid(v));
    }
    value.ok_or_else(|| Status::internal("internal error"))
}
