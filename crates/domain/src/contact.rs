//! Contacts: categories, phone entries, the caller message, and the rules a contact's fields
//! must satisfy on create and on a field-masked update.

use crate::instruction::{self, Instruction, RawInstruction};
use crate::message::MessageInput;
use crate::phone::{self, E164, Region};
use crate::validation::{Violations, text};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The well-known category of callers.
pub const CALLER: &str = "caller";
pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_EMAIL_CHARS: usize = 254;
pub const MAX_MESSAGE_CHARS: usize = 2_000;
pub const MAX_HANDLING_INSTRUCTION_CHARS: usize = 2_000;
pub const MAX_PHONE_NUMBERS: usize = 10;
pub const MAX_CATEGORIES: usize = 20;
const MAX_CATEGORY_LEN: usize = 40;

/// A set of category slugs, kept sorted so equal sets compare and store equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Categories(Vec<String>);

impl Categories {
    /// Parses slugs `[a-z0-9_-]{1,40}`; duplicates collapse into one.
    pub fn parse(items: &[String], field: &str) -> Result<Self, Violations> {
        let mut v = Violations::new();
        if items.len() > MAX_CATEGORIES {
            v.add(
                field,
                format!(
                    "must have at most {MAX_CATEGORIES} entries, got {}",
                    items.len()
                ),
            );
            return Err(v);
        }
        for (i, c) in items.iter().enumerate() {
            v.check(&format!("{field}[{i}]"), category(c));
        }
        let mut set: Vec<String> = items.to_vec();
        set.sort();
        set.dedup();
        v.into_result(Self(set))
    }

    pub fn caller() -> Self {
        Self(vec![CALLER.to_owned()])
    }

    /// Trusted input, e.g. read back from the database.
    pub fn from_stored(mut items: Vec<String>) -> Self {
        items.sort();
        items.dedup();
        Self(items)
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn contains(&self, category: &str) -> bool {
        self.0.iter().any(|c| c == category)
    }

    /// Exactly `{caller}`: the contacts the retention rule applies to.
    pub fn is_caller_only(&self) -> bool {
        self.0.len() == 1 && self.0[0] == CALLER
    }
}

/// One category slug, `[a-z0-9_-]{1,40}`, as a list filter names it.
pub fn category(slug: &str) -> Result<&str, String> {
    let ok = (1..=MAX_CATEGORY_LEN).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        return Err("must be a slug of 1 to 40 characters from a-z, 0-9, '_' and '-'".into());
    }
    Ok(slug)
}

/// Numeric codes are those of the contract and of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PhoneType {
    Unspecified = 0,
    Mobile = 1,
    Landline = 2,
    Work = 3,
    Home = 4,
    Fax = 5,
    Other = 6,
}

impl PhoneType {
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            0 => Self::Unspecified,
            1 => Self::Mobile,
            2 => Self::Landline,
            3 => Self::Work,
            4 => Self::Home,
            5 => Self::Fax,
            6 => Self::Other,
            _ => return None,
        })
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    CallNote = 1,
    ExpectedCall = 2,
    Manual = 3,
}

impl Origin {
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => Self::CallNote,
            2 => Self::ExpectedCall,
            3 => Self::Manual,
            _ => return None,
        })
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PhoneEntry {
    /// As entered, trimmed.
    pub number: String,
    pub e164: E164,
    pub kind: PhoneType,
}

/// A phone number as a request carries it.
#[derive(Debug, Clone, Default)]
pub struct RawPhone {
    pub number: String,
    pub kind: i32,
}

/// The fields of a contact a client writes, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContactFields {
    pub categories: Categories,
    pub salutation: String,
    pub title: String,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub email: String,
    pub phone_numbers: Vec<PhoneEntry>,
    pub handling_instruction: String,
    pub keep_permanently: bool,
    #[serde(default)]
    pub instructions: Vec<Instruction>,
}

impl ContactFields {
    /// "A contact needs a name, a company or a phone number."
    pub fn identifies_someone(&self) -> bool {
        !self.first_name.is_empty()
            || !self.last_name.is_empty()
            || !self.company.is_empty()
            || !self.phone_numbers.is_empty()
    }

    /// The text that name search matches against.
    pub fn search_text(&self) -> String {
        crate::names::search_text(&[&self.first_name, &self.last_name, &self.company])
    }
}

/// A contact's pending one-time message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallerMessage {
    pub message_id: Uuid,
    pub text: String,
    pub create_time: DateTime<Utc>,
    /// After this instant the message is never told; `None`: it does not expire.
    #[serde(default)]
    pub expire_time: Option<DateTime<Utc>>,
}

/// A stored contact as read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    pub account_id: String,
    pub contact_id: Uuid,
    pub fields: ContactFields,
    pub caller_message: Option<CallerMessage>,
    pub origin: Origin,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub last_activity_time: DateTime<Utc>,
    pub version: i64,
}

impl Contact {
    pub fn etag(&self) -> String {
        etag(self.version)
    }

    /// "Family – no data capture": calls are taken, nothing about the caller is written down.
    pub fn no_data_capture(&self) -> bool {
        self.fields
            .instructions
            .contains(&Instruction::NoDataCapture)
    }

    /// The contact as an agent may see it at `now`: a message that has expired is not pending,
    /// even before the sweep moves it out of the contact.
    pub fn hide_expired_message(&mut self, now: DateTime<Utc>) {
        if self
            .caller_message
            .as_ref()
            .is_some_and(|m| m.is_expired_at(now))
        {
            self.caller_message = None;
        }
    }
}

/// The etag of a row version: opaque to clients, compared as a string.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// A contact's writable fields as a request carries them, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawContact {
    pub categories: Vec<String>,
    pub salutation: String,
    pub title: String,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub email: String,
    pub phone_numbers: Vec<RawPhone>,
    pub caller_message_text: String,
    /// As read off the request: a timestamp that is no valid time is an error to report only
    /// when the message is written.
    pub caller_message_expire_time: Option<Result<DateTime<Utc>, String>>,
    pub handling_instruction: String,
    pub keep_permanently: bool,
    pub instructions: Vec<RawInstruction>,
}

/// The writable fields, as named in an update mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Categories,
    Salutation,
    Title,
    FirstName,
    LastName,
    Company,
    Email,
    PhoneNumbers,
    CallerMessage,
    HandlingInstruction,
    KeepPermanently,
    Instructions,
}

impl Field {
    pub const ALL: [Field; 12] = [
        Field::Categories,
        Field::Salutation,
        Field::Title,
        Field::FirstName,
        Field::LastName,
        Field::Company,
        Field::Email,
        Field::PhoneNumbers,
        Field::CallerMessage,
        Field::HandlingInstruction,
        Field::KeepPermanently,
        Field::Instructions,
    ];

    pub fn from_path(path: &str) -> Option<Self> {
        Some(match path {
            "categories" => Self::Categories,
            "salutation" => Self::Salutation,
            "title" => Self::Title,
            "first_name" => Self::FirstName,
            "last_name" => Self::LastName,
            "company" => Self::Company,
            "email" => Self::Email,
            "phone_numbers" => Self::PhoneNumbers,
            "caller_message" | "caller_message.text" | "caller_message.expire_time" => {
                Self::CallerMessage
            }
            "handling_instruction" => Self::HandlingInstruction,
            "keep_permanently" => Self::KeepPermanently,
            "instructions" => Self::Instructions,
            _ => return None,
        })
    }
}

/// A validated, field-masked change. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactPatch {
    pub categories: Option<Categories>,
    pub salutation: Option<String>,
    pub title: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub company: Option<String>,
    pub email: Option<String>,
    pub phone_numbers: Option<Vec<PhoneEntry>>,
    /// `Some(None)` clears the pending message; `Some(Some(m))` sets it
    /// ([`crate::message::next_message`]).
    pub caller_message: Option<Option<MessageInput>>,
    pub handling_instruction: Option<String>,
    pub keep_permanently: Option<bool>,
    pub instructions: Option<Vec<Instruction>>,
}

impl ContactPatch {
    /// Validates the masked fields of `raw`; `prefix` is the request path of the contact.
    pub fn parse(
        raw: &RawContact,
        mask: &[Field],
        region: &Region,
        prefix: &str,
    ) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let mut p = ContactPatch::default();
        let path = |f: &str| format!("{prefix}.{f}");
        for field in mask {
            match field {
                Field::Categories => {
                    p.categories =
                        v.absorb(Categories::parse(&raw.categories, &path("categories")));
                }
                Field::Salutation => {
                    p.salutation = v.check(&path("salutation"), name(&raw.salutation));
                }
                Field::Title => p.title = v.check(&path("title"), name(&raw.title)),
                Field::FirstName => {
                    p.first_name = v.check(&path("first_name"), name(&raw.first_name));
                }
                Field::LastName => {
                    p.last_name = v.check(&path("last_name"), name(&raw.last_name));
                }
                Field::Company => p.company = v.check(&path("company"), name(&raw.company)),
                Field::Email => p.email = v.check(&path("email"), email(&raw.email)),
                Field::PhoneNumbers => {
                    let r = phone_entries(&raw.phone_numbers, region, &path("phone_numbers"));
                    p.phone_numbers = v.absorb(r);
                }
                Field::CallerMessage => {
                    let r = text(&raw.caller_message_text, MAX_MESSAGE_CHARS);
                    let expire_field = path("caller_message.expire_time");
                    let expire_time = match &raw.caller_message_expire_time {
                        Some(Ok(t)) if raw.caller_message_text.trim().is_empty() => {
                            let _ = t;
                            v.add(&expire_field, "needs a message text to expire");
                            None
                        }
                        Some(Ok(t)) => Some(*t),
                        Some(Err(e)) => {
                            v.add(&expire_field, e.clone());
                            None
                        }
                        None => None,
                    };
                    p.caller_message = v.check(&path("caller_message.text"), r).map(|text| {
                        (!text.is_empty()).then_some(MessageInput { text, expire_time })
                    });
                }
                Field::HandlingInstruction => {
                    let r = text(&raw.handling_instruction, MAX_HANDLING_INSTRUCTION_CHARS);
                    p.handling_instruction = v.check(&path("handling_instruction"), r);
                }
                Field::KeepPermanently => p.keep_permanently = Some(raw.keep_permanently),
                Field::Instructions => {
                    let r = instruction::parse(&raw.instructions, &path("instructions"));
                    p.instructions = v.absorb(r);
                }
            }
        }
        v.into_result(p)
    }

    /// Applies the patch; the caller message is handled by the store (it needs an id and time).
    pub fn apply(&self, f: &mut ContactFields) {
        fn set<T: Clone>(slot: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *slot = v.clone();
            }
        }
        set(&mut f.categories, &self.categories);
        set(&mut f.salutation, &self.salutation);
        set(&mut f.title, &self.title);
        set(&mut f.first_name, &self.first_name);
        set(&mut f.last_name, &self.last_name);
        set(&mut f.company, &self.company);
        set(&mut f.email, &self.email);
        set(&mut f.phone_numbers, &self.phone_numbers);
        set(&mut f.handling_instruction, &self.handling_instruction);
        set(&mut f.keep_permanently, &self.keep_permanently);
        set(&mut f.instructions, &self.instructions);
    }
}

/// A contact to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    pub fields: ContactFields,
    pub caller_message: Option<MessageInput>,
    pub origin: Origin,
}

impl NewContact {
    /// Validates every field of `raw`; `prefix` is the request path of the contact.
    pub fn parse(
        raw: &RawContact,
        origin: Origin,
        region: &Region,
        prefix: &str,
    ) -> Result<Self, Violations> {
        let patch = ContactPatch::parse(raw, &Field::ALL, region, prefix)?;
        let mut fields = ContactFields::default();
        patch.apply(&mut fields);
        if !fields.identifies_someone() {
            return Err(Violations::single(
                prefix,
                "needs a first or last name, a company or a phone number",
            ));
        }
        Ok(Self {
            fields,
            caller_message: patch.caller_message.flatten(),
            origin,
        })
    }
}

fn name(s: &str) -> Result<String, String> {
    let t = text(s, MAX_NAME_CHARS)?;
    if t.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(t)
}

fn email(s: &str) -> Result<String, String> {
    let t = text(s, MAX_EMAIL_CHARS)?;
    if t.is_empty() {
        return Ok(t);
    }
    match t.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !t.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@') =>
        {
            Ok(t)
        }
        _ => Err("must be an e-mail address like name@example.com".into()),
    }
}

fn phone_entries(
    raw: &[RawPhone],
    region: &Region,
    field: &str,
) -> Result<Vec<PhoneEntry>, Violations> {
    let mut v = Violations::new();
    if raw.len() > MAX_PHONE_NUMBERS {
        v.add(
            field,
            format!(
                "must have at most {MAX_PHONE_NUMBERS} entries, got {}",
                raw.len()
            ),
        );
        return Err(v);
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let kind = PhoneType::from_code(p.kind);
        if kind.is_none() {
            v.add(format!("{field}[{i}].type"), "unknown phone number type");
        }
        match phone::normalize(&p.number, region) {
            Ok(Some(e164)) => {
                if let Some(kind) = kind {
                    out.push(PhoneEntry {
                        number: p.number.trim().to_owned(),
                        e164,
                        kind,
                    });
                }
            }
            Ok(None) => v.add(format!("{field}[{i}].number"), "is required"),
            Err(e) => v.add(format!("{field}[{i}].number"), e.to_string()),
        }
    }
    v.into_result(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn de() -> Region {
        Region::germany()
    }

    fn raw() -> RawContact {
        RawContact {
            categories: vec!["caller".into()],
            last_name: "Müller".into(),
            ..Default::default()
        }
    }

    fn fields_of(r: Result<NewContact, Violations>) -> Vec<String> {
        match r {
            Ok(_) => vec![],
            Err(v) => v.into_iter().map(|v| v.field).collect(),
        }
    }

    #[test]
    fn a_valid_caller_parses_with_normalised_numbers() {
        let mut r = raw();
        r.phone_numbers = vec![RawPhone {
            number: " 030 1234567 ".into(),
            kind: PhoneType::Work.code(),
        }];
        r.caller_message_text = "Bitte Rückruf".into();
        let c = NewContact::parse(&r, Origin::Manual, &de(), "contact").unwrap();
        assert_eq!(c.fields.phone_numbers[0].e164.as_str(), "+49301234567");
        assert_eq!(c.fields.phone_numbers[0].number, "030 1234567");
        assert_eq!(
            c.caller_message.map(|m| m.text).as_deref(),
            Some("Bitte Rückruf")
        );
        assert!(c.fields.categories.is_caller_only());
    }

    #[test]
    fn each_rule_names_the_bad_field() {
        type Case = (&'static str, fn(&mut RawContact));
        let cases: Vec<Case> = vec![
            ("contact.first_name", |r| r.first_name = "x".repeat(201)),
            ("contact.last_name", |r| r.last_name = "x".repeat(201)),
            ("contact.company", |r| r.company = "x".repeat(201)),
            ("contact.title", |r| r.title = "x".repeat(201)),
            ("contact.salutation", |r| r.salutation = "x".repeat(201)),
            ("contact.email", |r| r.email = "not-an-address".into()),
            ("contact.email", |r| r.email = "a@b".into()),
            ("contact.caller_message.text", |r| {
                r.caller_message_text = "x".repeat(2001)
            }),
            ("contact.handling_instruction", |r| {
                r.handling_instruction = "x".repeat(2001)
            }),
            ("contact.categories", |r| {
                r.categories = (0..21).map(|i| format!("c{i}")).collect()
            }),
            ("contact.categories[1]", |r| {
                r.categories = vec!["caller".into(), "Kunde".into()]
            }),
            ("contact.categories[0]", |r| r.categories = vec!["".into()]),
            ("contact.categories[0]", |r| {
                r.categories = vec!["x".repeat(41)]
            }),
            ("contact.phone_numbers", |r| {
                r.phone_numbers = (0..11)
                    .map(|i| RawPhone {
                        number: format!("030 123456{i}"),
                        kind: 0,
                    })
                    .collect()
            }),
            ("contact.phone_numbers[0].number", |r| {
                r.phone_numbers = vec![RawPhone {
                    number: "12".into(),
                    kind: 0,
                }]
            }),
            ("contact.phone_numbers[0].number", |r| {
                r.phone_numbers = vec![RawPhone {
                    number: "anonymous".into(),
                    kind: 0,
                }]
            }),
            ("contact.phone_numbers[0].type", |r| {
                r.phone_numbers = vec![RawPhone {
                    number: "030 1234567".into(),
                    kind: 99,
                }]
            }),
            ("contact", |r| {
                r.last_name.clear();
                r.email = "only@mail.de".into();
            }),
        ];
        for (field, mutate) in cases {
            let mut r = raw();
            mutate(&mut r);
            let got = fields_of(NewContact::parse(&r, Origin::Manual, &de(), "contact"));
            assert_eq!(
                got,
                vec![field.to_owned()],
                "expected a violation of {field}"
            );
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let mut r = raw();
        r.first_name = "x".repeat(200);
        r.caller_message_text = "ü".repeat(2000);
        r.handling_instruction = "x".repeat(2000);
        r.categories = (0..20).map(|i| format!("c{i}")).collect();
        r.phone_numbers = (0..10)
            .map(|i| RawPhone {
                number: format!("030 123456{i}"),
                kind: 1,
            })
            .collect();
        assert!(NewContact::parse(&r, Origin::Manual, &de(), "contact").is_ok());
    }

    #[test]
    fn categories_are_a_set() {
        let c = Categories::parse(&["caller".into(), "caller".into()], "c").unwrap();
        assert!(c.is_caller_only());
        let c = Categories::parse(&["kunde".into(), "caller".into()], "c").unwrap();
        assert_eq!(c.as_slice(), ["caller", "kunde"]);
        assert!(!c.is_caller_only());
    }

    #[test]
    fn a_patch_touches_only_masked_fields() {
        let mut r = raw();
        r.first_name = "x".repeat(500); // not masked, so not validated
        r.company = "Schulze GmbH".into();
        let p = ContactPatch::parse(&r, &[Field::Company], &de(), "contact").unwrap();
        let mut f = ContactFields {
            last_name: "Alt".into(),
            ..Default::default()
        };
        p.apply(&mut f);
        assert_eq!(f.company, "Schulze GmbH");
        assert_eq!(f.last_name, "Alt");
        assert_eq!(p.caller_message, None);
    }

    #[test]
    fn an_empty_message_in_the_mask_clears_it() {
        let r = raw();
        let p = ContactPatch::parse(&r, &[Field::CallerMessage], &de(), "contact").unwrap();
        assert_eq!(p.caller_message, Some(None));
    }

    #[test]
    fn mask_paths() {
        assert_eq!(
            Field::from_path("caller_message.text"),
            Some(Field::CallerMessage)
        );
        assert_eq!(Field::from_path("etag"), None);
        assert_eq!(Field::from_path("contact_id"), None);
    }
}
