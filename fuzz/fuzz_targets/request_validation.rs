//! The server's request parsing on arbitrary field values, through the same functions the
//! handlers call: no panic; every violation names a field of the request; what is accepted is
//! within the contract's limits.

#![no_main]

use arbitrary::Arbitrary;
use callers_domain::call_note::{MAX_SUBJECT_CHARS, MAX_TEXT_CHARS};
use callers_domain::contact::{self, ContactFields};
use callers_domain::phone::Region;
use callers_domain::validation::{self, AccountId, Violations};
use callers_proto::v1 as pb;
use callers_server::convert::call_handling::UpdateCallHandling;
use callers_server::convert::call_notes::CreateCallNote;
use callers_server::convert::contacts::{CreateContact, UpdateContact};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Contact {
    categories: Vec<String>,
    salutation: String,
    title: String,
    first_name: String,
    last_name: String,
    company: String,
    email: String,
    phones: Vec<(String, i32)>,
    message: String,
    instruction: String,
    keep: bool,
}

#[derive(Arbitrary, Debug)]
struct Note {
    contact_id: String,
    employee_id: String,
    agent_id: String,
    first_name: String,
    last_name: String,
    company: String,
    number: String,
    subject: String,
    text: String,
}

#[derive(Arbitrary, Debug)]
struct Settings {
    style: i32,
    caller_id: bool,
    region: String,
    employees: Vec<(String, i32, Option<bool>)>,
    mask: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    account: String,
    id: String,
    reference: String,
    region: u8,
    origin: i32,
    contact: Contact,
    mask: Vec<u8>,
    note: Note,
    settings: Settings,
}

const REGIONS: [&str; 4] = ["DE", "AT", "CH", "US"];
/// Mask paths: every writable one, and some that are not.
const CONTACT_PATHS: [&str; 14] = [
    "categories",
    "salutation",
    "title",
    "first_name",
    "last_name",
    "company",
    "email",
    "phone_numbers",
    "caller_message",
    "caller_message.text",
    "handling_instruction",
    "keep_permanently",
    "etag",
    "",
];
const CALL_HANDLING_PATHS: [&str; 5] = [
    "conversation_style",
    "caller_id_transmission",
    "phone_region",
    "employees",
    "update_time",
];

/// Every violation names one of the request's `fields` (or a path below one), with a reason.
fn under(v: &Violations, fields: &[&str]) {
    for x in v.iter() {
        assert!(
            fields.iter().any(|f| x.field == *f
                || x.field.starts_with(&format!("{f}."))
                || x.field.starts_with(&format!("{f}["))),
            "violation of {:?} outside {fields:?}",
            x.field
        );
        assert!(
            !x.description.is_empty(),
            "{:?} without a description",
            x.field
        );
    }
}

fn mask(bytes: &[u8], paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: bytes
            .iter()
            .map(|b| paths[usize::from(*b) % paths.len()].to_owned())
            .collect(),
    })
}

fn contact(c: &Contact, account: &str, origin: i32) -> pb::Contact {
    pb::Contact {
        account_id: account.to_owned(),
        categories: c.categories.clone(),
        salutation: c.salutation.clone(),
        title: c.title.clone(),
        first_name: c.first_name.clone(),
        last_name: c.last_name.clone(),
        company: c.company.clone(),
        email: c.email.clone(),
        phone_numbers: c
            .phones
            .iter()
            .map(|(number, kind)| pb::PhoneNumber {
                number: number.clone(),
                r#type: *kind,
                ..Default::default()
            })
            .collect(),
        caller_message: Some(pb::CallerMessage {
            text: c.message.clone(),
            ..Default::default()
        }),
        handling_instruction: c.instruction.clone(),
        keep_permanently: c.keep,
        origin,
        ..Default::default()
    }
}

fn limits(f: &ContactFields) {
    for s in [
        &f.salutation,
        &f.title,
        &f.first_name,
        &f.last_name,
        &f.company,
    ] {
        assert!(s.chars().count() <= contact::MAX_NAME_CHARS);
    }
    assert!(f.handling_instruction.chars().count() <= contact::MAX_HANDLING_INSTRUCTION_CHARS);
    assert!(f.phone_numbers.len() <= contact::MAX_PHONE_NUMBERS);
    assert!(f.categories.as_slice().len() <= contact::MAX_CATEGORIES);
    for p in &f.phone_numbers {
        assert!(p.e164.as_str().starts_with('+'));
    }
}

fuzz_target!(|input: Input| {
    if let Ok(a) = AccountId::parse(&input.account) {
        assert!((1..=64).contains(&a.as_str().len()));
    }
    let _ = validation::uuid(&input.id);
    let _ = validation::reference(&input.reference, input.region.is_multiple_of(2));
    let _ = validation::text(&input.reference, usize::from(input.region));
    let region = Region::parse(REGIONS[usize::from(input.region) % REGIONS.len()]).unwrap();

    let create = pb::CreateContactRequest {
        account_id: input.account.clone(),
        contact: Some(contact(&input.contact, "", input.origin)),
        request_id: input.id.clone(),
    };
    match CreateContact::parse(&create, &region) {
        Ok(c) => {
            assert!(c.contact.fields.identifies_someone());
            limits(&c.contact.fields);
            if let Some(m) = &c.contact.caller_message {
                assert!(!m.is_empty() && m.chars().count() <= contact::MAX_MESSAGE_CHARS);
            }
            assert_eq!(c.key.is_some(), !input.id.is_empty());
        }
        Err(v) => {
            assert!(!v.is_empty());
            under(&v, &["account_id", "request_id", "contact"]);
        }
    }

    let update = pb::UpdateContactRequest {
        account_id: input.account.clone(),
        contact: Some(pb::Contact {
            contact_id: input.id.clone(),
            ..contact(&input.contact, &input.reference, 0)
        }),
        update_mask: mask(&input.mask, &CONTACT_PATHS),
        etag: input.reference.clone(),
    };
    match UpdateContact::parse(&update, &region) {
        Ok(u) => {
            let mut f = ContactFields::default();
            u.patch.apply(&mut f);
            limits(&f);
        }
        Err(v) => under(&v, &["account_id", "update_mask", "contact"]),
    }

    let n = &input.note;
    let note = pb::CreateCallNoteRequest {
        account_id: input.account.clone(),
        call_note: Some(pb::CallNote {
            contact_id: n.contact_id.clone(),
            employee_id: n.employee_id.clone(),
            agent_id: n.agent_id.clone(),
            caller_first_name: n.first_name.clone(),
            caller_last_name: n.last_name.clone(),
            caller_company: n.company.clone(),
            caller_number: n.number.clone(),
            subject: n.subject.clone(),
            text: n.text.clone(),
            ..Default::default()
        }),
        request_id: input.reference.clone(),
    };
    match CreateCallNote::parse(&note, &region) {
        Ok(c) => {
            assert!(c.note.subject.chars().count() <= MAX_SUBJECT_CHARS);
            assert!(c.note.text.chars().count() <= MAX_TEXT_CHARS);
            let _ = c.note.caller_search_text();
            if let Some(c) = c.note.new_caller_contact() {
                assert!(c.fields.identifies_someone());
                limits(&c.fields);
            }
        }
        Err(v) => under(&v, &["account_id", "request_id", "call_note"]),
    }

    let s = &input.settings;
    let settings = pb::UpdateCallHandlingRequest {
        call_handling: Some(pb::CallHandling {
            account_id: input.account.clone(),
            conversation_style: s.style,
            caller_id_transmission: s.caller_id,
            phone_region: s.region.clone(),
            employees: s
                .employees
                .iter()
                .map(|(id, style, cid)| pb::EmployeeCallHandling {
                    employee_id: id.clone(),
                    conversation_style: *style,
                    caller_id_transmission: *cid,
                })
                .collect(),
            ..Default::default()
        }),
        update_mask: mask(&s.mask, &CALL_HANDLING_PATHS),
        etag: String::new(),
    };
    if let Err(v) = UpdateCallHandling::parse(&settings, &region) {
        under(&v, &["update_mask", "call_handling"]);
    }
});
