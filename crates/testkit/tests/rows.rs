//! The row fixtures against the migrated schema: every column list, type list and value list
//! agrees with the tables, by `INSERT` and by binary `COPY` alike.

use callers_testkit::rows::{
    self, CallHandlingRow, CallerRow, ContactRow, EmployeeCallHandlingRow, Fixture, NoteRow,
};
use callers_testkit::{count, fresh_database, sql};
use chrono::Utc;
use std::pin::pin;
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use uuid::Uuid;

async fn copy<R: Fixture>(client: &Client, rows: &[R]) -> u64 {
    let sink = client.copy_in(&rows::copy_statement::<R>()).await.unwrap();
    let mut w = pin!(BinaryCopyInWriter::new(sink, &R::types()));
    for row in rows {
        w.as_mut().write(&row.values()).await.unwrap();
    }
    w.finish().await.unwrap()
}

fn settings(account: &str) -> (CallHandlingRow, EmployeeCallHandlingRow) {
    (
        CallHandlingRow {
            account_id: account.into(),
            conversation_style: 1,
            caller_id_transmission: true,
            phone_region: "DE".into(),
            version: 1,
            update_time: Utc::now(),
        },
        EmployeeCallHandlingRow {
            account_id: account.into(),
            employee_id: "emp-1".into(),
            position: 0,
            conversation_style: Some(2),
            caller_id_transmission: None,
        },
    )
}

fn note(contact: &ContactRow) -> NoteRow {
    NoteRow {
        account_id: contact.account_id.clone(),
        call_note_id: Uuid::new_v4(),
        contact_id: Some(contact.contact_id),
        employee_id: String::new(),
        agent_id: "agent-1".into(),
        caller_first_name: contact.first_name.clone(),
        caller_last_name: contact.last_name.clone(),
        caller_company: String::new(),
        caller_number: String::new(),
        subject: "Rückruf".into(),
        body: String::new(),
        call_time: Utc::now(),
        create_time: Utc::now(),
    }
}

#[tokio::test]
async fn every_fixture_inserts_into_the_migrated_schema() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let id = rows::insert_caller(&sql, &CallerRow::caller("acme", 200)).await;
    assert!(rows::contact_exists(&sql, id).await);
    rows::insert_note(&sql, "acme", id).await;
    let (handling, employee) = settings("acme");
    rows::insert(&sql, &handling).await.unwrap();
    rows::insert(&sql, &employee).await.unwrap();
    for (table, n) in [
        ("contacts", 1),
        ("contact_phone_numbers", 1),
        ("call_notes", 1),
        ("call_handling", 1),
        ("employee_call_handling", 1),
    ] {
        let query = format!("SELECT count(*) FROM {table}");
        assert_eq!(count(&sql, &query).await, n, "{table}");
    }
}

#[tokio::test]
async fn every_fixture_copies_into_the_migrated_schema() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let (contact, phone) = CallerRow::caller("acme", 10).rows();
    let (handling, employee) = settings("acme");
    assert_eq!(copy(&sql, std::slice::from_ref(&contact)).await, 1);
    assert_eq!(copy(&sql, &[phone]).await, 1);
    assert_eq!(copy(&sql, &[note(&contact)]).await, 1);
    assert_eq!(copy(&sql, &[handling]).await, 1);
    assert_eq!(copy(&sql, &[employee]).await, 1);
}
