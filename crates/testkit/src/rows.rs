//! Row fixtures: raw rows written straight into the tables, past the server, for tests that
//! arrange a state no RPC can make (activity long ago, a note of a purged contact) and for the
//! benchmark's seed. One column list per table serves `INSERT` here and the benchmark's binary
//! `COPY`.

use chrono::{DateTime, Utc};
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// A raw row of one table: its columns, their types and its values, all in the same order.
pub trait Fixture {
    const TABLE: &'static str;
    const COLUMNS: &'static [&'static str];
    /// The column types, for binary `COPY`.
    fn types() -> Vec<Type>;
    fn values(&self) -> Vec<&(dyn ToSql + Sync)>;
}

/// `INSERT INTO <table> (<columns>) VALUES ($1, …)`.
pub fn insert_statement<R: Fixture>() -> String {
    let params: Vec<String> = (1..=R::COLUMNS.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        R::TABLE,
        R::COLUMNS.join(", "),
        params.join(", ")
    )
}

/// `COPY <table> (<columns>) FROM STDIN (FORMAT binary)`.
pub fn copy_statement<R: Fixture>() -> String {
    format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        R::TABLE,
        R::COLUMNS.join(", ")
    )
}

/// Inserts one row.
pub async fn insert<R: Fixture>(client: &Client, row: &R) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(&insert_statement::<R>(), &row.values())
        .await
}

/// A row struct and its [`Fixture`] from one list of `column: RustType => PgType`, so a table's
/// columns, types and values are named once and cannot drift apart.
macro_rules! fixture {
    ($(#[$doc:meta])* $name:ident in $table:literal { $($column:ident: $rust:ty => $pg:ident,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name {
            $(pub $column: $rust,)+
        }

        impl Fixture for $name {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [&'static str] = &[$(stringify!($column)),+];

            fn types() -> Vec<Type> {
                vec![$(Type::$pg),+]
            }

            fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
                vec![$(&self.$column),+]
            }
        }
    };
}

fixture! {
    /// A row of `contacts`.
    ContactRow in "contacts" {
        account_id: String => TEXT,
        contact_id: Uuid => UUID,
        categories: Vec<String> => TEXT_ARRAY,
        salutation: String => TEXT,
        title: String => TEXT,
        first_name: String => TEXT,
        last_name: String => TEXT,
        company: String => TEXT,
        email: String => TEXT,
        handling_instruction: String => TEXT,
        keep_permanently: bool => BOOL,
        origin: i16 => INT2,
        message_id: Option<Uuid> => UUID,
        message_text: Option<String> => TEXT,
        message_create_time: Option<DateTime<Utc>> => TIMESTAMPTZ,
        create_time: DateTime<Utc> => TIMESTAMPTZ,
        update_time: DateTime<Utc> => TIMESTAMPTZ,
        last_activity_time: DateTime<Utc> => TIMESTAMPTZ,
        version: i64 => INT8,
        search_text: String => TEXT,
    }
}

fixture! {
    /// A row of `contact_phone_numbers`.
    PhoneRow in "contact_phone_numbers" {
        account_id: String => TEXT,
        contact_id: Uuid => UUID,
        position: i16 => INT2,
        number: String => TEXT,
        e164: String => TEXT,
        phone_type: i16 => INT2,
        dial_base: String => TEXT,
    }
}

fixture! {
    /// A row of `call_notes`.
    NoteRow in "call_notes" {
        account_id: String => TEXT,
        call_note_id: Uuid => UUID,
        contact_id: Option<Uuid> => UUID,
        employee_id: String => TEXT,
        agent_id: String => TEXT,
        caller_first_name: String => TEXT,
        caller_last_name: String => TEXT,
        caller_company: String => TEXT,
        caller_number: String => TEXT,
        subject: String => TEXT,
        body: String => TEXT,
        call_time: DateTime<Utc> => TIMESTAMPTZ,
        create_time: DateTime<Utc> => TIMESTAMPTZ,
    }
}

fixture! {
    /// A row of `call_handling`: an account's settings.
    CallHandlingRow in "call_handling" {
        account_id: String => TEXT,
        conversation_style: i16 => INT2,
        caller_id_transmission: bool => BOOL,
        phone_region: String => TEXT,
        version: i64 => INT8,
        update_time: DateTime<Utc> => TIMESTAMPTZ,
    }
}

fixture! {
    /// A row of `employee_call_handling`: one employee's exception to the account's settings.
    EmployeeCallHandlingRow in "employee_call_handling" {
        account_id: String => TEXT,
        employee_id: String => TEXT,
        position: i32 => INT4,
        conversation_style: Option<i16> => INT2,
        caller_id_transmission: Option<bool> => BOOL,
    }
}

// ---------------------------------------------------------------------------------------------
// The tests' contacts: personal data that must never appear in any output.

pub const FIRST_NAME: &str = "Wolfhart";
pub const LAST_NAME: &str = "Quendelbrück";
pub const NUMBER: &str = "+4930987654321";
pub const NOTE_SUBJECT: &str = "Rückruf wegen Vertrag Fuchsbau";
pub const NOTE_TEXT: &str = "Bitte zurückrufen, Kundennummer 4711-XY";

/// A contact as the purge sees it: its account, categories, flag and last activity. It is
/// written with [`FIRST_NAME`], [`LAST_NAME`] and the number [`NUMBER`], so tests can check
/// that they never appear in any output.
#[derive(Debug, Clone)]
pub struct CallerRow<'a> {
    pub account: &'a str,
    pub categories: &'a [&'a str],
    pub keep_permanently: bool,
    pub last_activity: DateTime<Utc>,
}

impl<'a> CallerRow<'a> {
    /// A caller-only contact of `account`, not kept, last active `days` ago.
    pub fn caller(account: &'a str, days: i64) -> Self {
        Self {
            account,
            categories: &["caller"],
            keep_permanently: false,
            last_activity: Utc::now() - chrono::Duration::days(days),
        }
    }

    /// The contact's row and its phone number's, under a new id.
    pub fn rows(&self) -> (ContactRow, PhoneRow) {
        let contact_id = Uuid::new_v4();
        let contact = ContactRow {
            account_id: self.account.to_owned(),
            contact_id,
            categories: self.categories.iter().map(|c| c.to_string()).collect(),
            salutation: String::new(),
            title: String::new(),
            first_name: FIRST_NAME.to_owned(),
            last_name: LAST_NAME.to_owned(),
            company: String::new(),
            email: String::new(),
            handling_instruction: String::new(),
            keep_permanently: self.keep_permanently,
            origin: 1,
            message_id: None,
            message_text: None,
            message_create_time: None,
            create_time: self.last_activity,
            update_time: self.last_activity,
            last_activity_time: self.last_activity,
            version: 1,
            search_text: String::new(),
        };
        let phone = PhoneRow {
            account_id: self.account.to_owned(),
            contact_id,
            position: 0,
            number: NUMBER.to_owned(),
            e164: NUMBER.to_owned(),
            phone_type: 1,
            dial_base: dial_base(NUMBER, NUMBER),
        };
        (contact, phone)
    }
}

/// The `dial_base` column of a number as the store writes it (migration V9): its
/// `phone::dial_base`, '' when it has none.
pub fn dial_base(e164: &str, as_entered: &str) -> String {
    let e164 = callers_domain::phone::E164::from_trusted(e164.to_owned());
    callers_domain::phone::dial_base(&e164, as_entered).unwrap_or_default()
}

/// Inserts the contact with its phone number; returns its id.
pub async fn insert_caller(client: &Client, row: &CallerRow<'_>) -> Uuid {
    let (contact, phone) = row.rows();
    insert(client, &contact).await.expect("insert contact");
    insert(client, &phone).await.expect("insert phone number");
    contact.contact_id
}

/// Inserts `n` contacts like `row`.
pub async fn insert_callers(client: &Client, row: &CallerRow<'_>, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(insert_caller(client, row).await);
    }
    ids
}

/// Inserts a call note of `contact` that names the caller ([`FIRST_NAME`], …) and says
/// [`NOTE_SUBJECT`] and [`NOTE_TEXT`]; returns its id.
pub async fn insert_note(client: &Client, account: &str, contact: Uuid) -> Uuid {
    let now = Utc::now();
    let note = NoteRow {
        account_id: account.to_owned(),
        call_note_id: Uuid::new_v4(),
        contact_id: Some(contact),
        employee_id: String::new(),
        agent_id: String::new(),
        caller_first_name: FIRST_NAME.to_owned(),
        caller_last_name: LAST_NAME.to_owned(),
        caller_company: String::new(),
        caller_number: NUMBER.to_owned(),
        subject: NOTE_SUBJECT.to_owned(),
        body: NOTE_TEXT.to_owned(),
        call_time: now,
        create_time: now,
    };
    insert(client, &note).await.expect("insert call note");
    note.call_note_id
}

/// Whether the contact `contact_id` exists.
pub async fn contact_exists(client: &Client, contact_id: Uuid) -> bool {
    client
        .query_opt(
            "SELECT 1 FROM contacts WHERE contact_id = $1",
            &[&contact_id],
        )
        .await
        .expect("query contact")
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_copy_name_the_same_columns() {
        assert_eq!(
            insert_statement::<PhoneRow>(),
            "INSERT INTO contact_phone_numbers (account_id, contact_id, position, number, e164, \
             phone_type, dial_base) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        );
        assert_eq!(
            copy_statement::<PhoneRow>(),
            "COPY contact_phone_numbers (account_id, contact_id, position, number, e164, \
             phone_type, dial_base) FROM STDIN (FORMAT binary)"
        );
    }
}
