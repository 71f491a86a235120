//! Whole requests as they arrive on the wire: arbitrary bytes decoded as the write requests,
//! then the conversion and validation the handlers run (the server's own `convert` module,
//! compiled in here from its source). No panic; violations stay under the request's paths.

#![no_main]

#[allow(dead_code)]
#[path = "../../crates/server/src/convert.rs"]
mod convert;

use callers_domain::call_note::{Caller, NewCallNote, RawCallNote};
use callers_domain::contact::{ContactPatch, Field, NewContact, Origin};
use callers_domain::phone::Region;
use callers_domain::validation::AccountId;
use callers_proto::v1 as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn under(v: &callers_domain::Violations, prefix: &str) {
    for x in &v.0 {
        assert!(
            x.field == prefix || x.field.starts_with(&format!("{prefix}.")),
            "{:?} outside {prefix}",
            x.field
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let region = Region::germany();
    match kind % 3 {
        0 => {
            let Ok(req) = pb::CreateContactRequest::decode(bytes) else {
                return;
            };
            let _ = AccountId::parse(&req.account_id);
            if let Some(c) = &req.contact {
                let origin = match c.origin {
                    0 => Some(Origin::Manual),
                    code => Origin::from_code(code),
                };
                if let Some(origin) = origin
                    && let Err(v) =
                        NewContact::parse(&convert::raw_contact(c), origin, &region, "contact")
                {
                    under(&v, "contact");
                }
            }
        }
        1 => {
            let Ok(req) = pb::UpdateContactRequest::decode(bytes) else {
                return;
            };
            let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
            let mask: Vec<Field> = paths.iter().filter_map(|p| Field::from_path(p)).collect();
            if let Some(c) = &req.contact
                && let Err(v) =
                    ContactPatch::parse(&convert::raw_contact(c), &mask, &region, "contact")
            {
                under(&v, "contact");
            }
        }
        _ => {
            let Ok(req) = pb::CreateCallNoteRequest::decode(bytes) else {
                return;
            };
            let Some(n) = req.call_note else { return };
            let call_time = n.call_time.as_ref().and_then(|t| convert::time(t).ok());
            let raw = RawCallNote {
                contact_id: n.contact_id,
                employee_id: n.employee_id,
                agent_id: n.agent_id,
                caller: Caller {
                    first_name: n.caller_first_name,
                    last_name: n.caller_last_name,
                    company: n.caller_company,
                    number: n.caller_number,
                },
                subject: n.subject,
                text: n.text,
                call_time,
            };
            if let Err(v) = NewCallNote::parse(&raw, &region, "call_note") {
                under(&v, "call_note");
            }
        }
    }
});
