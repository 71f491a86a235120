//! Protobuf ↔ domain for the shapes several services share.

use callers_domain::contact::{Contact, RawContact, RawPhone};
use callers_domain::retention::{self, Retention};
use callers_proto::v1 as pb;
use chrono::{DateTime, Utc};

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A request's timestamp; refuses values protobuf itself calls invalid.
pub fn time(t: &prost_types::Timestamp) -> Result<DateTime<Utc>, String> {
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
pub fn raw_contact(c: &pb::Contact) -> RawContact {
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
        handling_instruction: c.handling_instruction.clone(),
        keep_permanently: c.keep_permanently,
    }
}

pub fn contact(c: &Contact, retention: Retention) -> pb::Contact {
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
        }),
        handling_instruction: f.handling_instruction.clone(),
        keep_permanently: f.keep_permanently,
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
