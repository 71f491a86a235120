//! Call notes: what an agent writes about one call, and the caller messages delivered in it.

use crate::contact::{
    Categories, Contact, ContactFields, MAX_NAME_CHARS, NewContact, Origin, PhoneEntry, PhoneType,
};
use crate::identification::{Confidence, Ranking};
use crate::phone::{self, E164, Region};
use crate::validation::{Violations, reference, text};
use chrono::{DateTime, Utc};
use uuid::Uuid;

pub const MAX_SUBJECT_CHARS: usize = 300;
pub const MAX_TEXT_CHARS: usize = 20_000;
pub const MAX_CALLER_NUMBER_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageDelivery {
    pub message_id: Uuid,
    pub text: String,
    pub deliver_time: DateTime<Utc>,
    pub agent_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallNote {
    pub account_id: String,
    pub call_note_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub employee_id: String,
    pub agent_id: String,
    pub caller: Caller,
    pub subject: String,
    pub text: String,
    pub call_time: DateTime<Utc>,
    pub create_time: DateTime<Utc>,
    pub deliveries: Vec<MessageDelivery>,
    /// Set when the caller was erased: the note keeps only ids, times, agent and employee.
    #[serde(default)]
    pub redact_time: Option<DateTime<Utc>>,
}

/// Who called, as the agent noted it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Caller {
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    /// As delivered by telephony or typed by the agent.
    pub number: String,
}

/// A call note's fields as a request carries them, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawCallNote {
    pub contact_id: String,
    pub employee_id: String,
    pub agent_id: String,
    pub caller: Caller,
    pub subject: String,
    pub text: String,
    pub call_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallNote {
    pub contact_id: Option<Uuid>,
    pub employee_id: String,
    pub agent_id: String,
    pub caller: Caller,
    /// The caller's number when it is a valid one; an unreadable number is kept as text only.
    pub caller_e164: Option<E164>,
    pub subject: String,
    pub text: String,
    /// `None`: the time the note is created.
    pub call_time: Option<DateTime<Utc>>,
}

impl NewCallNote {
    pub fn parse(raw: &RawCallNote, region: &Region, prefix: &str) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let path = |f: &str| format!("{prefix}.{f}");
        let contact_id = if raw.contact_id.is_empty() {
            None
        } else {
            v.check(
                &path("contact_id"),
                crate::validation::uuid(&raw.contact_id),
            )
        };

        let employee_id = v.check(&path("employee_id"), reference(&raw.employee_id, false));
        let agent_id = v.check(&path("agent_id"), reference(&raw.agent_id, false));
        let first_name = v.check(&path("caller_first_name"), name(&raw.caller.first_name));
        let last_name = v.check(&path("caller_last_name"), name(&raw.caller.last_name));
        let company = v.check(&path("caller_company"), name(&raw.caller.company));
        let number = v.check(
            &path("caller_number"),
            text(&raw.caller.number, MAX_CALLER_NUMBER_CHARS),
        );
        let subject = v.check(&path("subject"), text(&raw.subject, MAX_SUBJECT_CHARS));
        let body = v.check(&path("text"), text(&raw.text, MAX_TEXT_CHARS));
        if !v.is_empty() {
            return Err(v);
        }
        let number = number.unwrap_or_default();
        // Telephony delivers what it has; a number that does not parse is noted, not refused.
        let caller_e164 = phone::normalize(&number, region).ok().flatten();
        Ok(Self {
            contact_id,
            employee_id: employee_id.unwrap_or_default(),
            agent_id: agent_id.unwrap_or_default(),
            caller: Caller {
                first_name: first_name.unwrap_or_default(),
                last_name: last_name.unwrap_or_default(),
                company: company.unwrap_or_default(),
                number,
            },
            caller_e164,
            subject: subject.unwrap_or_default(),
            text: body.unwrap_or_default(),
            call_time: raw.call_time,
        })
    }

    /// The folded name the caller gave, for matching an existing contact.
    pub fn caller_search_text(&self) -> String {
        crate::names::search_text(&[
            &self.caller.first_name,
            &self.caller.last_name,
            &self.caller.company,
        ])
    }

    /// The contact of category `caller` this note would create, when its caller fields
    /// identify anybody.
    pub fn new_caller_contact(&self) -> Option<NewContact> {
        let fields = ContactFields {
            categories: Categories::caller(),
            first_name: self.caller.first_name.clone(),
            last_name: self.caller.last_name.clone(),
            company: self.caller.company.clone(),
            phone_numbers: self
                .caller_e164
                .iter()
                .map(|e164| PhoneEntry {
                    number: self.caller.number.clone(),
                    e164: e164.clone(),
                    kind: PhoneType::Unspecified,
                })
                .collect(),
            ..Default::default()
        };
        fields.identifies_someone().then_some(NewContact {
            fields,
            caller_message: None,
            origin: Origin::CallNote,
        })
    }
}

/// How `CreateCallNote` files a note that names no contact, from the incoming-call ranking of
/// its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filing {
    /// The top match is certain and unambiguous: link the note to it.
    Link(Uuid),
    /// The caller may be a contact marked `NO_DATA_CAPTURE` (a likely or certain match that is
    /// not linked): no new contact, and the note keeps no caller fields.
    Withheld,
    /// Nobody is known for certain: a new caller contact, when the fields identify anybody.
    New,
}

impl Filing {
    pub fn of(ranking: &Ranking) -> Filing {
        match ranking.matches.first() {
            Some(m) if m.confidence == Confidence::Certain && !ranking.ambiguous => {
                Filing::Link(m.contact.contact_id)
            }
            _ if ranking
                .matches
                .iter()
                .any(|m| m.confidence >= Confidence::Likely && m.contact.no_data_capture()) =>
            {
                Filing::Withheld
            }
            _ => Filing::New,
        }
    }
}

impl NewCallNote {
    /// What the note stores of the caller: nothing but the link for a contact marked
    /// `NO_DATA_CAPTURE` (`withheld`: the caller may be one).
    pub fn caller_kept(&self, linked: Option<&Contact>, withheld: bool) -> Caller {
        if withheld || linked.is_some_and(Contact::no_data_capture) {
            Caller::default()
        } else {
            self.caller.clone()
        }
    }
}

fn name(s: &str) -> Result<String, String> {
    let t = text(s, MAX_NAME_CHARS)?;
    if t.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawCallNote {
        RawCallNote {
            agent_id: "agent-7".into(),
            caller: Caller {
                first_name: "Hans".into(),
                last_name: "Müller".into(),
                number: "030 1234567".into(),
                ..Default::default()
            },
            subject: "Rückruf".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_note_from_a_known_number_creates_a_caller_contact() {
        let n = NewCallNote::parse(&raw(), &Region::germany(), "call_note").unwrap();
        assert_eq!(n.caller_e164.as_ref().unwrap().as_str(), "+49301234567");
        let c = n.new_caller_contact().unwrap();
        assert!(c.fields.categories.is_caller_only());
        assert_eq!(c.origin, Origin::CallNote);
        assert_eq!(c.fields.phone_numbers.len(), 1);
        assert_eq!(n.caller_search_text(), "hans mueller");
    }

    #[test]
    fn an_anonymous_nameless_caller_creates_no_contact() {
        let mut r = raw();
        r.caller = Caller {
            number: "anonymous".into(),
            ..Default::default()
        };
        let n = NewCallNote::parse(&r, &Region::germany(), "call_note").unwrap();
        assert!(n.caller_e164.is_none());
        assert!(n.new_caller_contact().is_none());
        r.caller.number = "12".into(); // unreadable: kept as text, identifies nobody
        let n = NewCallNote::parse(&r, &Region::germany(), "call_note").unwrap();
        assert_eq!(n.caller.number, "12");
        assert!(n.new_caller_contact().is_none());
    }

    #[test]
    fn limits_name_their_fields() {
        type Case = (&'static str, fn(&mut RawCallNote));
        let cases: Vec<Case> = vec![
            ("call_note.subject", |r| r.subject = "x".repeat(301)),
            ("call_note.text", |r| r.text = "x".repeat(20_001)),
            ("call_note.caller_first_name", |r| {
                r.caller.first_name = "x".repeat(201)
            }),
            ("call_note.caller_last_name", |r| {
                r.caller.last_name = "x".repeat(201)
            }),
            ("call_note.caller_company", |r| {
                r.caller.company = "x".repeat(201)
            }),
            ("call_note.caller_number", |r| {
                r.caller.number = "1".repeat(65)
            }),
            ("call_note.contact_id", |r| r.contact_id = "nope".into()),
            ("call_note.agent_id", |r| r.agent_id = "a".repeat(129)),
            ("call_note.employee_id", |r| r.employee_id = "e\n".into()),
        ];
        for (field, mutate) in cases {
            let mut r = raw();
            mutate(&mut r);
            let e = NewCallNote::parse(&r, &Region::germany(), "call_note").unwrap_err();
            let fields: Vec<_> = e.iter().map(|v| v.field.as_str()).collect();
            assert_eq!(fields, [field]);
        }
        let mut r = raw();
        r.subject = "x".repeat(300);
        r.text = "x".repeat(20_000);
        assert!(NewCallNote::parse(&r, &Region::germany(), "call_note").is_ok());
    }
}
