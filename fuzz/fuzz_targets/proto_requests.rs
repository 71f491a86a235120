//! Whole requests as they arrive on the wire: arbitrary bytes decoded as each request the
//! server parses, then the server's own parse functions (those its handlers call). No panic;
//! every violation names a field of its request.

#![no_main]

use callers_domain::Violations;
use callers_domain::phone::Region;
use callers_proto::v1 as pb;
use callers_server::convert::call_handling::{
    CheckCallerRecognition, GetCallHandling, UpdateCallHandling,
};
use callers_server::convert::call_notes::{
    CreateCallNote, DeliverCallerMessage, GetCallNote, ListCallNotes,
};
use callers_server::convert::contacts::{
    CreateContact, DeleteContact, GetContact, ListContacts, ListExpiringContacts, SearchContacts,
    UpdateContact,
};
use callers_server::convert::identification::IdentifyCaller;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// The request's violations, each under one of the request's own fields.
fn check<T>(parsed: Result<T, Violations>, fields: &[&str]) {
    let Err(v) = parsed else { return };
    for x in v.iter() {
        assert!(
            fields.iter().any(|f| x.field == *f
                || x.field.starts_with(&format!("{f}."))
                || x.field.starts_with(&format!("{f}["))),
            "{:?} outside {fields:?}",
            x.field
        );
    }
}

/// Decodes `bytes` as `M` and checks what `parse` makes of it.
fn run<M: Message + Default, T>(
    bytes: &[u8],
    parse: impl Fn(&M) -> Result<T, Violations>,
    fields: &[&str],
) {
    if let Ok(req) = M::decode(bytes) {
        check(parse(&req), fields);
    }
}

/// As `run`, for the requests that convert into their command without a region.
fn convert<M: Message + Default, C>(bytes: &[u8], fields: &[&str])
where
    C: for<'a> TryFrom<&'a M, Error = Violations>,
{
    run(bytes, |r: &M| C::try_from(r), fields);
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let de = Region::germany();
    const PAGE: [&str; 3] = ["account_id", "page_size", "page_token"];
    match kind % 15 {
        0 => run(
            bytes,
            |r| CreateContact::parse(r, &de),
            &["account_id", "request_id", "contact"],
        ),
        1 => run(
            bytes,
            |r| UpdateContact::parse(r, &de),
            &["account_id", "update_mask", "contact"],
        ),
        2 => run(
            bytes,
            |r| CreateCallNote::parse(r, &de),
            &["account_id", "request_id", "call_note"],
        ),
        3 => run(
            bytes,
            |r| UpdateCallHandling::parse(r, &de),
            &["update_mask", "call_handling"],
        ),
        4 => convert::<pb::GetContactRequest, GetContact>(bytes, &["account_id", "contact_id"]),
        5 => {
            convert::<pb::DeleteContactRequest, DeleteContact>(bytes, &["account_id", "contact_id"])
        }
        6 => convert::<pb::ListContactsRequest, ListContacts>(
            bytes,
            &[&PAGE[..], &["category"]].concat(),
        ),
        7 => convert::<pb::ListExpiringContactsRequest, ListExpiringContacts>(
            bytes,
            &[&PAGE[..], &["within_days"]].concat(),
        ),
        8 => convert::<pb::GetCallNoteRequest, GetCallNote>(bytes, &["account_id", "call_note_id"]),
        9 => convert::<pb::ListCallNotesRequest, ListCallNotes>(
            bytes,
            &[&PAGE[..], &["contact_id", "employee_id"]].concat(),
        ),
        10 => convert::<pb::DeliverCallerMessageRequest, DeliverCallerMessage>(
            bytes,
            &[
                "account_id",
                "contact_id",
                "message_id",
                "call_note_id",
                "agent_id",
                "request_id",
            ],
        ),
        11 => convert::<pb::GetCallHandlingRequest, GetCallHandling>(bytes, &["account_id"]),
        12 => convert::<pb::CheckCallerRecognitionRequest, CheckCallerRecognition>(
            bytes,
            &["account_id", "employee_id"],
        ),
        13 => run(
            bytes,
            |r| SearchContacts::parse(r, &de),
            &[&PAGE[..], &["query", "phone_number", "category", "origin"]].concat(),
        ),
        _ => convert::<pb::IdentifyCallerRequest, IdentifyCaller>(
            bytes,
            &["account_id", "employee_id", "caller_name", "max_results"],
        ),
    }
});
