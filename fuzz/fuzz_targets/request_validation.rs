//! The domain validators every request goes through, on arbitrary field values: no panic;
//! every violation names a field under the request path it was given; what is accepted is
//! within the contract's limits.

#![no_main]

use arbitrary::Arbitrary;
use callers_domain::call_handling::{self, CallHandlingPatch, RawCallHandling, RawEmployee};
use callers_domain::call_note::{Caller, NewCallNote, RawCallNote};
use callers_domain::contact::{self, ContactPatch, NewContact, Origin, RawContact, RawPhone};
use callers_domain::phone::Region;
use callers_domain::validation::{self, AccountId, Violations};
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

fn under(v: &Violations, prefix: &str) {
    for x in &v.0 {
        assert!(
            x.field == prefix || x.field.starts_with(&format!("{prefix}.")),
            "violation of {:?} outside {prefix}",
            x.field
        );
        assert!(
            !x.description.is_empty(),
            "{:?} without a description",
            x.field
        );
    }
}

fn raw_contact(c: &Contact) -> RawContact {
    RawContact {
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
            .map(|(number, kind)| RawPhone {
                number: number.clone(),
                kind: *kind,
            })
            .collect(),
        caller_message_text: c.message.clone(),
        handling_instruction: c.instruction.clone(),
        keep_permanently: c.keep,
    }
}

fn limits(f: &contact::ContactFields) {
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
    let _ = AccountId::parse(&input.account);
    if let Ok(a) = AccountId::parse(&input.account) {
        assert!((1..=64).contains(&a.as_str().len()));
    }
    let _ = validation::uuid(&input.id);
    let _ = validation::reference(&input.reference, input.region % 2 == 0);
    let _ = validation::text(&input.reference, usize::from(input.region));
    let region = Region::parse(REGIONS[usize::from(input.region) % REGIONS.len()]).unwrap();

    let raw = raw_contact(&input.contact);
    if let Some(origin) = Origin::from_code(input.origin) {
        match NewContact::parse(&raw, origin, &region, "contact") {
            Ok(c) => {
                assert!(c.fields.identifies_someone());
                limits(&c.fields);
                if let Some(m) = &c.caller_message {
                    assert!(!m.is_empty() && m.chars().count() <= contact::MAX_MESSAGE_CHARS);
                }
            }
            Err(v) => {
                assert!(!v.is_empty());
                under(&v, "contact");
            }
        }
    }
    let mask: Vec<contact::Field> = input
        .mask
        .iter()
        .map(|b| contact::Field::ALL[usize::from(*b) % contact::Field::ALL.len()])
        .collect();
    match ContactPatch::parse(&raw, &mask, &region, "contact") {
        Ok(p) => {
            let mut f = contact::ContactFields::default();
            p.apply(&mut f);
            limits(&f);
        }
        Err(v) => under(&v, "contact"),
    }

    let n = &input.note;
    let raw_note = RawCallNote {
        contact_id: n.contact_id.clone(),
        employee_id: n.employee_id.clone(),
        agent_id: n.agent_id.clone(),
        caller: Caller {
            first_name: n.first_name.clone(),
            last_name: n.last_name.clone(),
            company: n.company.clone(),
            number: n.number.clone(),
        },
        subject: n.subject.clone(),
        text: n.text.clone(),
        call_time: None,
    };
    match NewCallNote::parse(&raw_note, &region, "call_note") {
        Ok(note) => {
            assert!(note.subject.chars().count() <= callers_domain::call_note::MAX_SUBJECT_CHARS);
            assert!(note.text.chars().count() <= callers_domain::call_note::MAX_TEXT_CHARS);
            let _ = note.caller_search_text();
            if let Some(c) = note.new_caller_contact() {
                assert!(c.fields.identifies_someone());
                limits(&c.fields);
            }
        }
        Err(v) => under(&v, "call_note"),
    }

    let s = &input.settings;
    let raw_settings = RawCallHandling {
        conversation_style: s.style,
        caller_id_transmission: s.caller_id,
        phone_region: s.region.clone(),
        employees: s
            .employees
            .iter()
            .map(|(id, style, cid)| RawEmployee {
                employee_id: id.clone(),
                conversation_style: *style,
                caller_id_transmission: *cid,
            })
            .collect(),
    };
    let fields: Vec<call_handling::Field> = s
        .mask
        .iter()
        .map(|b| call_handling::Field::ALL[usize::from(*b) % call_handling::Field::ALL.len()])
        .collect();
    if let Err(v) = CallHandlingPatch::parse(&raw_settings, &fields, &region, "call_handling") {
        under(&v, "call_handling");
    }
});
