//! Protobuf ↔ domain: each request parses into the command of its one store call (every
//! violation collected with its field path), and results convert back. One module per service;
//! the shapes and rules several services share are here. Public for the fuzz targets.

pub mod call_handling;
pub mod call_notes;
pub mod changes;
pub mod contacts;
pub mod identification;
pub mod privacy;

use callers_domain::contact::{Contact, RawContact, RawPhone};
use callers_domain::instruction::RawInstruction;
use callers_domain::message::UndeliveredMessage;
use callers_domain::retention::{self, Retention};
use callers_domain::{AccountId, Violations};
use callers_proto::v1 as pb;
use callers_store::{IdempotencyKey, Operation};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub(crate) fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A request's timestamp; refuses values protobuf itself calls invalid.
pub(crate) fn time(t: &prost_types::Timestamp) -> Result<DateTime<Utc>, String> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err("nanos must be between 0 and 999999999".into());
    }
    // 0001-01-01 .. 9999-12-31, the range google.protobuf.Timestamp allows.
    if !(-62_135_596_800..=253_402_300_799).contains(&t.seconds) {
        return Err("is out of the range of google.protobuf.Timestamp".into());
    }
    DateTime::from_timestamp(t.seconds, t.nanos as u32).ok_or_else(|| "is not a valid time".into())
}

/// The writable fields of a request's contact; output-only fields are ignored.
pub(crate) fn raw_contact(c: &pb::Contact) -> RawContact {
    RawContact {
        categories: c.categories.clone(),
        salutation: c.salutation.clone(),
        title: c.title.clone(),
        first_name: c.first_name.clone(),
        last_name: c.last_name.clone(),
        company: c.company.clone(),
        email: c.email.clone(),
        phone_numbers: c
            .phone_numbers
            .iter()
            .map(|p| RawPhone {
                number: p.number.clone(),
                kind: p.r#type,
            })
            .collect(),
        caller_message_text: c
            .caller_message
            .as_ref()
            .map(|m| m.text.clone())
            .unwrap_or_default(),
        caller_message_expire_time: c
            .caller_message
            .as_ref()
            .and_then(|m| m.expire_time.as_ref())
            .map(time),
        handling_instruction: c.handling_instruction.clone(),
        keep_permanently: c.keep_permanently,
        instructions: c
            .instructions
            .iter()
            .map(|i| RawInstruction {
                kind: i.r#type,
                employee_id: i.employee_id.clone(),
            })
            .collect(),
    }
}

pub(crate) fn contact(c: &Contact, retention: Retention) -> pb::Contact {
    let f = &c.fields;
    pb::Contact {
        account_id: c.account_id.clone(),
        contact_id: c.contact_id.to_string(),
        categories: f.categories.as_slice().to_vec(),
        salutation: f.salutation.clone(),
        title: f.title.clone(),
        first_name: f.first_name.clone(),
        last_name: f.last_name.clone(),
        company: f.company.clone(),
        email: f.email.clone(),
        phone_numbers: f
            .phone_numbers
            .iter()
            .map(|p| pb::PhoneNumber {
                number: p.number.clone(),
                e164: p.e164.as_str().to_owned(),
                r#type: p.kind.code(),
            })
            .collect(),
        caller_message: c.caller_message.as_ref().map(|m| pb::CallerMessage {
            message_id: m.message_id.to_string(),
            text: m.text.clone(),
            create_time: Some(timestamp(m.create_time)),
            expire_time: m.expire_time.map(timestamp),
        }),
        handling_instruction: f.handling_instruction.clone(),
        keep_permanently: f.keep_permanently,
        instructions: f
            .instructions
            .iter()
            .map(|i| pb::Instruction {
                r#type: i.code(),
                employee_id: i.employee_id().to_owned(),
            })
            .collect(),
        origin: c.origin.code(),
        create_time: Some(timestamp(c.create_time)),
        update_time: Some(timestamp(c.update_time)),
        last_activity_time: Some(timestamp(c.last_activity_time)),
        purge_time: retention::purge_time(
            &f.categories,
            f.keep_permanently,
            c.last_activity_time,
            retention,
        )
        .map(timestamp),
        etag: c.etag(),
    }
}

pub(crate) fn undelivered_message(m: &UndeliveredMessage) -> pb::UndeliveredMessage {
    pb::UndeliveredMessage {
        message_id: m.message_id.to_string(),
        contact_id: m.contact_id.to_string(),
        text: m.text.clone(),
        create_time: Some(timestamp(m.create_time)),
        expire_time: m.expire_time.map(timestamp),
        end_time: Some(timestamp(m.end_time)),
        reason: m.reason.code(),
    }
}

/// The account and the id of the one resource a request names in its field `id_field`.
fn resource(account_id: &str, id_field: &str, id: &str) -> Result<(AccountId, Uuid), Violations> {
    let mut v = Violations::new();
    let account = v.check("account_id", AccountId::parse(account_id));
    let id = v.check(id_field, callers_domain::validation::uuid(id));
    v.finish(account.zip(id))
}

/// A resource's own `account_id` may be left empty; if set it must be the request's.
fn same_account(field: &str, inner: &str, outer: &str, v: &mut Violations) {
    if !inner.is_empty() && inner != outer {
        v.add(field, "must be empty or equal to the request's account_id");
    }
}

/// An optional `request_id`: empty means none.
fn request_id(raw: &str, v: &mut Violations) -> Option<Uuid> {
    if raw.is_empty() {
        return None;
    }
    v.check("request_id", callers_domain::validation::uuid(raw))
}

/// The idempotency key of a request that gave a `request_id`. The hash of the whole request
/// tells a retry (same body) from a reuse of the key (different body).
fn idempotency_key(
    request_id: Option<Uuid>,
    operation: Operation,
    msg: &impl prost::Message,
) -> Option<IdempotencyKey> {
    request_id.map(|request_id| IdempotencyKey {
        request_id,
        operation,
        request_hash: Sha256::digest(msg.encode_to_vec()).to_vec(),
    })
}

/// The etag of a conditional write: the request's own, else the resource's; empty means none.
fn etag(request: &str, resource: Option<&str>) -> Option<String> {
    [Some(request), resource]
        .into_iter()
        .flatten()
        .find(|e| !e.is_empty())
        .map(str::to_owned)
}

/// The writable fields of a resource, as an update mask names them.
trait MaskField: Copy + PartialEq + Sized + 'static {
    /// The protobuf message, for the violation's description.
    const MESSAGE: &'static str;
    /// What an empty mask means when the RPC reads it as every field.
    const EVERY: &'static [Self];
    /// Field-path parsing stays with the domain's field enum.
    fn parse_path(path: &str) -> Option<Self>;
}

impl MaskField for callers_domain::contact::Field {
    const MESSAGE: &'static str = "Contact";
    const EVERY: &'static [Self] = &Self::ALL;
    fn parse_path(path: &str) -> Option<Self> {
        Self::from_path(path)
    }
}

impl MaskField for callers_domain::call_handling::Field {
    const MESSAGE: &'static str = "CallHandling";
    const EVERY: &'static [Self] = &Self::ALL;
    fn parse_path(path: &str) -> Option<Self> {
        Self::from_path(path)
    }
}

/// What an empty update mask means: each Update RPC documents its own rule.
#[derive(Debug, Clone, Copy)]
enum EmptyMask {
    /// Refused with this description.
    Refused(&'static str),
    AllFields,
}

/// The fields an update mask names, each once; every path that names no writable field is a
/// violation of `update_mask.paths[i]`.
fn update_mask<F: MaskField>(
    mask: Option<&prost_types::FieldMask>,
    empty: EmptyMask,
    v: &mut Violations,
) -> Option<Vec<F>> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or_default();
    if paths.is_empty() {
        return match empty {
            EmptyMask::Refused(description) => {
                v.add("update_mask", description);
                None
            }
            EmptyMask::AllFields => Some(F::EVERY.to_vec()),
        };
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, p) in paths.iter().enumerate() {
        match F::parse_path(p) {
            Some(f) if !out.contains(&f) => out.push(f),
            Some(_) => {}
            None => {
                ok = false;
                let description = format!("is not a writable field of {}", F::MESSAGE);
                v.add(format!("update_mask.paths[{i}]"), description);
            }
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use callers_domain::{call_handling, contact};

    fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        })
    }

    fn fields(v: &Violations) -> Vec<&str> {
        v.iter().map(|x| x.field.as_str()).collect()
    }

    #[test]
    fn an_empty_mask_follows_the_rule_of_its_rpc() {
        let mut v = Violations::new();
        let all = update_mask::<call_handling::Field>(None, EmptyMask::AllFields, &mut v);
        assert_eq!(all, Some(call_handling::Field::ALL.to_vec()));
        assert!(v.is_empty());
        let refused = EmptyMask::Refused("must name at least one field to change");
        let none = update_mask::<contact::Field>(mask(&[]).as_ref(), refused, &mut v);
        assert_eq!(none, None);
        assert_eq!(fields(&v), ["update_mask"]);
    }

    #[test]
    fn every_bad_path_is_named_and_repeats_collapse() {
        let mut v = Violations::new();
        let m = mask(&["employees", "etag", "employees", "x"]);
        let got = update_mask::<call_handling::Field>(m.as_ref(), EmptyMask::AllFields, &mut v);
        assert_eq!(got, None);
        assert_eq!(fields(&v), ["update_mask.paths[1]", "update_mask.paths[3]"]);
        let mut v = Violations::new();
        let m = mask(&["company", "caller_message.text", "company"]);
        let got = update_mask::<contact::Field>(m.as_ref(), EmptyMask::AllFields, &mut v);
        let want = [contact::Field::Company, contact::Field::CallerMessage];
        assert_eq!(got, Some(want.to_vec()));
    }

    #[test]
    fn the_request_etag_wins_over_the_resource_etag() {
        assert_eq!(etag("\"1\"", Some("\"2\"")).as_deref(), Some("\"1\""));
        assert_eq!(etag("", Some("\"2\"")).as_deref(), Some("\"2\""));
        assert_eq!(etag("", Some("")), None);
        assert_eq!(etag("", None), None);
    }
}
