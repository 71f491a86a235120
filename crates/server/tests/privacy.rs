//! Privacy on request, as a data-protection officer and a departing customer rely on it:
//! erasing a caller leaves no trace of them in any table, a suppressed number is never
//! recorded again (and survives a key rotation), an export returns exactly the caller's rows,
//! call notes go after the account's retention, an account's data can be deleted to the last
//! row, and only tokens with the `privacy` scope may ask for any of it.

use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_proto::v1::change_service_client::ChangeServiceClient;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_proto::v1::privacy_service_client::PrivacyServiceClient;
use callers_server::auth::Authenticator;
use callers_store::privacy::DeletionBudget;
use callers_store::purge::{CALL_NOTES, PurgeSession, SessionOptions};
use callers_testkit::app::{
    TestApp, caller, contact_count, create, get, note, reason, spawn_app,
    spawn_app_against_with_keys, spawn_app_with, test_privacy_keys, update,
};
use callers_testkit::mirror::Mirror;
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic_types::StatusExt;

const NUMBER: &str = "0151 23456789";
const E164: &str = "+4915123456789";
const FIRST: &str = "Quirinus";
const LAST: &str = "Zwackelmann";
const MESSAGE: &str = "Die Zahnspange Quokka ist fertig";
const UNTOLD: &str = "Termin Nashorn verschoben";
const BODY: &str = "Ruft wegen Rechnung Wombat an";

fn privacy(app: &TestApp) -> PrivacyServiceClient<tonic::transport::Channel> {
    PrivacyServiceClient::new(app.channel.clone())
}

fn ts(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

fn erase(account: &str, number: &str, ids: &[&str], suppress: bool) -> pb::EraseCallerRequest {
    pb::EraseCallerRequest {
        account_id: account.into(),
        request_id: String::new(),
        phone_number: number.into(),
        contact_ids: ids.iter().map(|s| s.to_string()).collect(),
        suppress,
    }
}

fn the_caller() -> pb::Contact {
    pb::Contact {
        first_name: FIRST.into(),
        company: "Wackel GmbH".into(),
        email: "quirinus@example.org".into(),
        caller_message: Some(pb::CallerMessage {
            text: UNTOLD.into(),
            ..Default::default()
        }),
        ..caller(LAST, NUMBER)
    }
}

fn call_from(number: &str) -> pb::CallNote {
    pb::CallNote {
        caller_first_name: FIRST.into(),
        caller_last_name: LAST.into(),
        caller_company: "Wackel GmbH".into(),
        caller_number: number.into(),
        subject: format!("Rückruf {LAST}"),
        text: BODY.into(),
        agent_id: "agent-7".into(),
        employee_id: "emp-1".into(),
        ..Default::default()
    }
}

/// An account "acme" in which the caller has a contact, a delivered message, an untold
/// message replaced (an undelivered record), notes linked and unlinked, and call history in
/// the feed; "globex" holds the same person, untouched by anything done to "acme".
async fn a_caller_with_history(app: &mut TestApp) -> pb::Contact {
    let mut contact = create(app, "acme", the_caller()).await;
    // The untold message is replaced: its text goes to an undelivered record.
    contact.caller_message = Some(pb::CallerMessage {
        text: MESSAGE.into(),
        ..Default::default()
    });
    let contact = update(app, contact, &["caller_message"]).await;
    let linked = note(app, "acme", call_from(NUMBER))
        .await
        .call_note
        .unwrap();
    assert_eq!(
        linked.contact_id, contact.contact_id,
        "linked by its number"
    );
    let message = contact.caller_message.as_ref().unwrap();
    app.notes
        .deliver_caller_message(pb::DeliverCallerMessageRequest {
            account_id: "acme".into(),
            contact_id: contact.contact_id.clone(),
            message_id: message.message_id.clone(),
            call_note_id: linked.call_note_id.clone(),
            agent_id: "agent-7".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    // A note from before numbers were stored normalised (migration V15), not linked:
    // found by its number, written in another format.
    app.sql()
        .await
        .execute(
            "INSERT INTO call_notes (account_id, call_note_id, caller_last_name, caller_number, \
               subject, body, call_time, create_time) \
             VALUES ('acme', $1, 'Zw.', '+49 (151) 234 567 89', 'Anruf', $2, now(), now())",
            &[&uuid::Uuid::now_v7(), &BODY],
        )
        .await
        .unwrap();
    create(app, "globex", the_caller()).await;
    note(app, "globex", call_from(NUMBER)).await;
    get(app, "acme", &contact.contact_id).await.unwrap()
}

/// Every (table, column) of the schema, and whether the table has `account_id`.
async fn columns(sql: &tokio_postgres::Client) -> Vec<(String, String, String, bool)> {
    sql.query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text, \
           EXISTS (SELECT 1 FROM information_schema.columns a WHERE a.table_schema = 'public' \
             AND a.table_name = c.table_name AND a.column_name = 'account_id') \
         FROM information_schema.columns c JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' \
         ORDER BY 1, 2",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

/// Every place in any column of any table (cast to text: jsonb, arrays and bytea included)
/// of `account` where one of `needles` occurs, and every bytea equal to an unkeyed SHA-256
/// of one of them.
async fn traces(app: &TestApp, account: &str, needles: &[&str]) -> Vec<String> {
    traces_in(&app.sql().await, account, needles).await
}

async fn traces_in(sql: &tokio_postgres::Client, account: &str, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (table, column, data_type, scoped) in columns(sql).await {
        let scope = if scoped {
            "account_id = $2"
        } else {
            "$2::text IS NOT NULL"
        };
        for needle in needles {
            let q = format!(
                "SELECT count(*) FROM {table} WHERE {scope} \
                 AND lower({column}::text) LIKE '%' || lower($1) || '%'"
            );
            let n: i64 = sql.query_one(&q, &[needle, &account]).await.unwrap().get(0);
            if n > 0 {
                found.push(format!("{table}.{column} holds {needle:?} {n} times"));
            }
            if data_type == "bytea" {
                let hash = Sha256::digest(needle.as_bytes()).to_vec();
                let q = format!("SELECT count(*) FROM {table} WHERE {scope} AND {column} = $1");
                let n: i64 = sql.query_one(&q, &[&hash, &account]).await.unwrap().get(0);
                if n > 0 {
                    found.push(format!("{table}.{column} holds sha256({needle:?})"));
                }
            }
        }
    }
    found
}

const NEEDLES: &[&str] = &[
    E164,
    "15123456789",
    "151 23456789",
    "234 567 89",
    FIRST,
    LAST,
    "Zw.",
    "Wackel",
    "quirinus@",
    MESSAGE,
    UNTOLD,
    BODY,
];

async fn changes(app: &TestApp, account: &str) -> Vec<pb::Change> {
    ChangeServiceClient::new(app.channel.clone())
        .list_changes(pb::ListChangesRequest {
            account_id: account.into(),
            cursor: String::new(),
            page_size: 500,
        })
        .await
        .unwrap()
        .into_inner()
        .changes
}

/// Rows that every write adds to.
async fn writes(sql: &tokio_postgres::Client) -> i64 {
    callers_testkit::count(sql, "SELECT count(*) FROM changes").await
        + callers_testkit::count(sql, "SELECT count(*) FROM privacy_requests").await
}

#[tokio::test]
async fn erasing_by_number_leaves_no_trace_and_keeps_the_notes_as_skeletons() {
    let logs = callers_testkit::logs::capture();
    let mut app = spawn_app().await;
    let contact = a_caller_with_history(&mut app).await;
    let mut mirror = Mirror::sync(&app.channel, "acme").await.unwrap();
    let before = app
        .notes
        .list_call_notes(pb::ListCallNotesRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .call_notes;
    assert_eq!(before.len(), 2);
    assert!(!traces(&app, "acme", NEEDLES).await.is_empty());

    let mut request = erase("acme", "+49 151 234 56789", &[], false);
    request.request_id = uuid::Uuid::now_v7().to_string();
    let done = privacy(&app)
        .erase_caller(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        done.deleted_contact_ids,
        std::slice::from_ref(&contact.contact_id)
    );
    assert_eq!(done.redacted_call_notes, 2);
    assert_eq!(done.removed_undelivered_messages, 1);
    assert!(done.redacted_changes > 0);

    let left = traces(&app, "acme", NEEDLES).await;
    assert!(left.is_empty(), "traces of the erased caller: {left:#?}");
    // The notes stay, with their ids, times, agent and employee.
    for n in &before {
        let after = app
            .notes
            .get_call_note(pb::GetCallNoteRequest {
                account_id: "acme".into(),
                call_note_id: n.call_note_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(after.redact_time.is_some());
        assert_eq!(
            (
                &after.call_time,
                &after.create_time,
                &after.agent_id,
                &after.employee_id
            ),
            (&n.call_time, &n.create_time, &n.agent_id, &n.employee_id)
        );
        assert_eq!(after.deliveries.len(), n.deliveries.len());
        assert!(after.caller_last_name.is_empty() && after.text.is_empty());
        assert!(after.contact_id.is_empty());
    }
    assert_eq!(
        get(&mut app, "acme", &contact.contact_id)
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // Another account's copy of the same person is its own business.
    assert_eq!(contact_count(&mut app, "globex").await, 1);
    assert!(!traces(&app, "globex", &[LAST, E164]).await.is_empty());

    // A retry writes nothing and answers the same.
    let sql = app.sql().await;
    let written = writes(&sql).await;
    let again = privacy(&app)
        .erase_caller(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again, done);
    assert_eq!(writes(&sql).await, written);

    // The feed announced it, and a mirror that follows it equals the account.
    let kinds: Vec<_> = changes(&app, "acme")
        .await
        .into_iter()
        .rev()
        .take(4)
        .map(|c| (c.r#type(), c.delete_reason()))
        .collect();
    assert!(kinds.contains(&(pb::ChangeType::ContactDeleted, pb::DeleteReason::Erasure)));
    assert!(
        kinds
            .iter()
            .any(|k| k.0 == pb::ChangeType::CallNoteRedacted)
    );
    assert!(
        kinds
            .iter()
            .any(|k| k.0 == pb::ChangeType::UndeliveredMessageRemoved)
    );
    mirror.catch_up(&app.channel).await.unwrap();
    mirror.assert_matches(&app.channel).await;

    // The erasure's record: ids, counts, the token's name, a keyed hash.
    let record = sql
        .query_one(
            "SELECT token_name, cardinality(contact_ids), octet_length(number_hash), key_id \
             FROM privacy_requests WHERE account_id = 'acme' AND kind = 'erasure'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(record.get::<_, String>(0), "unauthenticated");
    assert_eq!(record.get::<_, i32>(1), 1);
    assert_eq!(record.get::<_, i32>(2), 32);
    assert_eq!(record.get::<_, String>(3), "test-1");
    let text = logs.text();
    for needle in NEEDLES {
        assert!(!text.contains(needle), "the logs hold {needle:?}");
    }
}

#[tokio::test]
async fn a_number_held_by_several_or_protected_contacts_needs_them_named() {
    let mut app = spawn_app().await;
    let a = create(&mut app, "acme", caller("Amsel", "030 5550101")).await;
    let b = create(&mut app, "acme", caller("Bussard", "030 5550101")).await;
    let refused = privacy(&app)
        .erase_caller(erase("acme", "030 5550101", &[], false))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "CONTACTS_NOT_NAMED");
    let listed = refused.get_details_error_info().unwrap().metadata["contact_ids"].clone();
    assert!(listed.contains(&a.contact_id) && listed.contains(&b.contact_id));
    assert_eq!(contact_count(&mut app, "acme").await, 2, "nothing deleted");
    // Naming one is not enough.
    let half = privacy(&app)
        .erase_caller(erase("acme", "030 5550101", &[&a.contact_id], false))
        .await
        .unwrap_err();
    assert_eq!(reason(&half), "CONTACTS_NOT_NAMED");
    // By contact id alone the neighbour on the same line is spared.
    let one = privacy(&app)
        .erase_caller(erase("acme", "", &[&a.contact_id], false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.deleted_contact_ids, std::slice::from_ref(&a.contact_id));
    assert!(get(&mut app, "acme", &b.contact_id).await.is_ok());

    // A customer contact is protected, and so is a kept one: only named do they go.
    let mut customer = caller("Kranich", "030 5550202");
    customer.categories = vec!["caller".into(), "customer".into()];
    let customer = create(&mut app, "acme", customer).await;
    let mut kept = caller("Reiher", "030 5550303");
    kept.keep_permanently = true;
    let kept = create(&mut app, "acme", kept).await;
    for (number, c) in [("030 5550202", &customer), ("030 5550303", &kept)] {
        let e = privacy(&app)
            .erase_caller(erase("acme", number, &[], false))
            .await
            .unwrap_err();
        assert_eq!(reason(&e), "CONTACTS_NOT_NAMED", "{number}");
        let done = privacy(&app)
            .erase_caller(erase("acme", number, &[&c.contact_id], false))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            done.deleted_contact_ids,
            std::slice::from_ref(&c.contact_id)
        );
    }
    // A named contact that does not exist is NOT_FOUND, and nothing happens.
    let e = privacy(&app)
        .erase_caller(erase(
            "acme",
            "",
            &[&uuid::Uuid::now_v7().to_string()],
            false,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // A number nobody holds is no error: notes from it are still redacted.
    let gone = privacy(&app)
        .erase_caller(erase("acme", "030 5550909", &[], false))
        .await
        .unwrap()
        .into_inner();
    assert!(gone.deleted_contact_ids.is_empty());
}

async fn identify(app: &TestApp, account: &str, number: &str) -> pb::IdentifyCallerResponse {
    IdentificationServiceClient::new(app.channel.clone())
        .identify_caller(pb::IdentifyCallerRequest {
            account_id: account.into(),
            caller_number: number.into(),
            caller_name: format!("{FIRST} {LAST}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_suppressed_number_is_never_recorded_again_across_a_key_rotation() {
    let mut app = spawn_app().await;
    create(&mut app, "acme", the_caller()).await;
    let done = privacy(&app)
        .erase_caller(erase("acme", NUMBER, &[], true))
        .await
        .unwrap()
        .into_inner();
    assert!(done.suppressed);

    // The agent notes the call as usual; the subject and text are the agent's own words.
    let call = pb::CallNote {
        subject: "Anruf".into(),
        ..call_from("+49 151 23456789")
    };
    let after = note(&mut app, "acme", call).await;
    assert!(
        after.contact.is_none(),
        "no contact for a suppressed number"
    );
    let n = after.call_note.unwrap();
    assert!(n.caller_first_name.is_empty() && n.caller_last_name.is_empty());
    assert!(n.caller_number.is_empty() && n.caller_company.is_empty());
    assert_eq!(n.text, BODY, "the note itself is kept");
    assert_eq!(contact_count(&mut app, "acme").await, 0);
    let shown = identify(&app, "acme", NUMBER).await;
    assert!(shown.suppressed && shown.matches.is_empty());
    // Only keyed hashes: no plain or unkeyed copy of the number anywhere.
    let left = traces(&app, "acme", &[E164, "15123456789", FIRST, LAST]).await;
    assert!(left.is_empty(), "{left:#?}");
    // Other accounts are not affected.
    assert!(!identify(&app, "globex", NUMBER).await.suppressed);

    // A replica with a rotated key list (new key first) still knows the number.
    let url = app.db.as_ref().unwrap().url().to_owned();
    let mut rotated =
        spawn_app_against_with_keys(&url, test_privacy_keys(&["test-2", "test-1"])).await;
    assert!(identify(&rotated, "acme", NUMBER).await.suppressed);
    // Without the old key the old suppression is not found: the key list is what keeps it.
    let forgot = spawn_app_against_with_keys(&url, test_privacy_keys(&["test-2"])).await;
    assert!(!identify(&forgot, "acme", NUMBER).await.suppressed);

    // Lifting is its own request; then calls are noted as any other again.
    let lifted = privacy(&rotated)
        .lift_suppression(pb::LiftSuppressionRequest {
            account_id: "acme".into(),
            phone_number: NUMBER.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(lifted.lifted);
    assert!(!identify(&app, "acme", NUMBER).await.suppressed);
    let noted = note(&mut rotated, "acme", call_from(NUMBER)).await;
    assert!(noted.contact_created);
    let again = privacy(&rotated)
        .lift_suppression(pb::LiftSuppressionRequest {
            account_id: "acme".into(),
            phone_number: NUMBER.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.lifted);
}

#[tokio::test]
async fn an_export_returns_exactly_the_callers_rows_in_pages() {
    let mut app = spawn_app().await;
    let contact = a_caller_with_history(&mut app).await;
    // Rows that are not the caller's.
    let other = create(&mut app, "acme", caller("Fremd", "030 9998877")).await;
    note(&mut app, "acme", call_from("030 9998877")).await;

    let mut pages = 0;
    let (mut contacts, mut notes, mut untold) = (vec![], vec![], vec![]);
    let mut token = String::new();
    loop {
        let page = privacy(&app)
            .export_caller_data(pb::ExportCallerDataRequest {
                account_id: "acme".into(),
                phone_number: E164.into(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.contacts.len() + page.call_notes.len() + page.undelivered_messages.len() <= 2);
        contacts.extend(page.contacts);
        notes.extend(page.call_notes);
        untold.extend(page.undelivered_messages);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(pages >= 2);
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].contact_id, contact.contact_id);
    assert!(contacts.iter().all(|c| c.contact_id != other.contact_id));
    assert_eq!(
        notes.len(),
        2,
        "the linked note and the one from the number"
    );
    assert!(notes.iter().all(|n| n.account_id == "acme"));
    assert!(
        notes
            .iter()
            .any(|n| n.deliveries.iter().any(|d| d.text == MESSAGE))
    );
    assert_eq!(untold.len(), 1);
    assert_eq!(untold[0].text, UNTOLD);
    // By contact id the same contact and its linked note.
    let by_id = privacy(&app)
        .export_caller_data(pb::ExportCallerDataRequest {
            account_id: "acme".into(),
            contact_ids: vec![contact.contact_id.clone()],
            page_size: 25,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.contacts.len(), 1);
    // By contact id: the notes linked to it (a number is the request's to name).
    assert_eq!(by_id.call_notes.len(), 1);
    // A page token of another export is refused.
    let foreign = privacy(&app)
        .export_caller_data(pb::ExportCallerDataRequest {
            account_id: "acme".into(),
            phone_number: "030 9998877".into(),
            page_token: token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::InvalidArgument);
    // Each export is recorded, without personal data.
    let sql = app.sql().await;
    assert_eq!(
        callers_testkit::count(
            &sql,
            "SELECT count(*) FROM privacy_requests WHERE account_id = 'acme' AND kind = 'export'"
        )
        .await,
        2
    );
    let left = traces(&app, "acme", &[E164, LAST]).await;
    assert!(
        left.iter().all(|t| !t.starts_with("privacy_requests")),
        "{left:#?}"
    );
}

async fn set_note_retention(app: &TestApp, account: &str, days: i32) {
    CallHandlingServiceClient::new(app.channel.clone())
        .update_call_handling(pb::UpdateCallHandlingRequest {
            call_handling: Some(pb::CallHandling {
                account_id: account.into(),
                call_note_retention_days: days,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["call_note_retention_days".into()],
            }),
            etag: String::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn call_note_retention_deletes_exactly_the_older_notes() {
    let mut app = spawn_app().await;
    let now = app.clock_now();
    set_note_retention(&app, "acme", 30).await;
    let mut old = Vec::new();
    for (account, age) in [
        ("acme", 40),
        ("acme", 31),
        ("acme", 29),
        ("acme", 1),
        ("globex", 400),
    ] {
        let n = note(
            &mut app,
            account,
            pb::CallNote {
                subject: "Anruf".into(),
                call_time: ts(now - Duration::days(age)),
                ..Default::default()
            },
        )
        .await
        .call_note
        .unwrap();
        if account == "acme" && age > 30 {
            old.push(n.call_note_id);
        }
    }
    let url = app.db.as_ref().unwrap().url().to_owned();
    let session = PurgeSession::connect(&url, &SessionOptions::default())
        .await
        .unwrap();
    let due = session.count_chore(&CALL_NOTES, now).await.unwrap();
    assert_eq!(due, 2, "the dry run's count");
    let lock = session.try_lock().await.unwrap().unwrap();
    // Batches of one: each re-checks the rule at the row.
    let mut deleted = 0;
    loop {
        let n = lock.housekeep(&CALL_NOTES, now, 1).await.unwrap();
        if n == 0 {
            break;
        }
        deleted += n;
    }
    lock.release().await.unwrap();
    assert_eq!(deleted, due);
    let left: Vec<String> = app
        .notes
        .list_call_notes(pb::ListCallNotesRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .call_notes
        .into_iter()
        .map(|n| n.call_note_id)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(old.iter().all(|id| !left.contains(id)));
    let globex = app
        .notes
        .list_call_notes(pb::ListCallNotesRequest {
            account_id: "globex".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(globex.call_notes.len(), 1, "no retention set: kept");
    let deleted_in_feed: Vec<String> = changes(&app, "acme")
        .await
        .into_iter()
        .filter(|c| c.r#type() == pb::ChangeType::CallNoteDeleted)
        .map(|c| c.call_note_id)
        .collect();
    assert_eq!(deleted_in_feed.len(), 2);
    assert!(old.iter().all(|id| deleted_in_feed.contains(id)));
    // Unset again: kept.
    set_note_retention(&app, "acme", 0).await;
    let session = PurgeSession::connect(&url, &SessionOptions::default())
        .await
        .unwrap();
    assert_eq!(
        session
            .count_chore(&CALL_NOTES, now + Duration::days(1000))
            .await
            .unwrap(),
        0
    );
}

/// Rows of `account` in every table that has `account_id`, but the deletion's own record.
async fn rows_of(app: &TestApp, account: &str) -> Vec<(String, i64)> {
    let sql = app.sql().await;
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (table, _, _, scoped) in columns(&sql).await {
        if !scoped || table == "account_deletions" || !seen.insert(table.clone()) {
            continue;
        }
        let q = format!("SELECT count(*) FROM {table} WHERE account_id = $1");
        let n: i64 = sql.query_one(&q, &[&account]).await.unwrap().get(0);
        if n > 0 {
            out.push((table, n));
        }
    }
    out
}

#[tokio::test]
async fn offboarding_deletes_every_row_of_the_account_and_resumes() {
    let mut app = spawn_app().await;
    a_caller_with_history(&mut app).await;
    set_note_retention(&app, "acme", 90).await;
    privacy(&app)
        .erase_caller(erase("acme", "030 4440000", &[], true))
        .await
        .unwrap();
    identify(&app, "acme", NUMBER).await;
    app.calls.flush(&app.store).await.unwrap();
    let mut req = pb::CreateContactRequest {
        account_id: "acme".into(),
        contact: Some(caller("Idem", "030 4441111")),
        request_id: uuid::Uuid::now_v7().to_string(),
    };
    app.contacts.create_contact(req.clone()).await.unwrap();
    let present = rows_of(&app, "acme").await;
    let tables: Vec<&str> = present.iter().map(|(t, _)| t.as_str()).collect();
    for t in [
        "contacts",
        "call_notes",
        "message_deliveries",
        "undelivered_messages",
        "changes",
        "call_handling",
        "call_counts",
        "idempotency_keys",
        "suppressions",
        "privacy_requests",
        "contact_words",
    ] {
        assert!(tables.contains(&t), "{t} has rows before: {present:?}");
    }
    let globex_before = rows_of(&app, "globex").await;

    let dry = privacy(&app)
        .delete_account_data(pb::DeleteAccountDataRequest {
            account_id: "acme".into(),
            dry_run: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!dry.done);
    assert_eq!(
        rows_of(&app, "acme").await,
        present,
        "a dry run deletes nothing"
    );

    // A run cut short after every batch, as a crash would, resumes where it stopped.
    let account = callers_domain::AccountId::parse("acme").unwrap();
    let tiny = DeletionBudget {
        rows_per_batch: 3,
        time: std::time::Duration::ZERO,
    };
    let mut deleted: std::collections::BTreeMap<String, u64> = Default::default();
    let mut calls = 0;
    loop {
        calls += 1;
        let step = app
            .store
            .delete_account_data(&account, false, "ops", tiny, app.clock_now())
            .await
            .unwrap();
        for (t, n) in step.rows {
            *deleted.entry(t).or_default() += n;
        }
        if step.done {
            break;
        }
        assert!(calls < 500, "offboarding makes no progress");
    }
    assert!(calls > 1);
    // What the dry run counted is what went (account_words follow the contacts' triggers).
    for (table, n) in &dry.rows {
        if table != "account_words" && table != "contact_words" {
            assert_eq!(
                deleted.get(table).copied().unwrap_or(0),
                *n as u64,
                "{table}"
            );
        }
    }
    assert_eq!(
        rows_of(&app, "acme").await,
        [],
        "no row of the account is left"
    );
    assert_eq!(rows_of(&app, "globex").await, globex_before);
    let sql = app.sql().await;
    let record = sql
        .query_one(
            "SELECT token_name, end_time IS NOT NULL FROM account_deletions \
             WHERE account_id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(record.get::<_, String>(0), "ops");
    assert!(record.get::<_, bool>(1));
    // Over gRPC it is done at once now; the account's feed answers CURSOR_EXPIRED to an old
    // cursor, and its tokens keep working on an empty account.
    let done = privacy(&app)
        .delete_account_data(pb::DeleteAccountDataRequest {
            account_id: "acme".into(),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(done.done);
    assert_eq!(contact_count(&mut app, "acme").await, 0);
    let e = ChangeServiceClient::new(app.channel.clone())
        .list_changes(pb::ListChangesRequest {
            account_id: "acme".into(),
            cursor: "5".into(),
            page_size: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), "CURSOR_EXPIRED");
    // A request id used before the deletion is forgotten with the rest.
    req.contact.as_mut().unwrap().last_name = "Anders".into();
    app.contacts.create_contact(req).await.unwrap();
}

fn tokens_file() -> std::path::PathBuf {
    let hash = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let mut text = String::new();
    for (name, scopes) in [
        ("legacy", None),
        ("reader", Some("[\"read\"]")),
        ("agent", Some("[\"identify\", \"write\"]")),
        ("feed", Some("[\"watch\"]")),
        ("dpo", Some("[\"privacy\"]")),
        ("ops", Some("[\"admin\"]")),
    ] {
        text.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\naccounts = [\"*\"]\n",
            hash(name)
        ));
        if let Some(s) = scopes {
            text.push_str(&format!("scopes = {s}\n"));
        }
    }
    let p = std::env::temp_dir().join(format!("callers-scopes-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&p, text).unwrap();
    p
}

fn with<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    let v: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    r.metadata_mut().insert("authorization", v);
    r
}

#[tokio::test]
async fn each_scope_allows_its_requests_only() {
    let path = tokens_file();
    let app = spawn_app_with(Authenticator::from_file(&path).unwrap()).await;
    let _ = std::fs::remove_file(&path);
    let ch = app.channel.clone();
    let read = |t: &'static str| {
        let ch = ch.clone();
        async move {
            callers_proto::v1::contact_service_client::ContactServiceClient::new(ch)
                .list_contacts(with(
                    t,
                    pb::ListContactsRequest {
                        account_id: "acme".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }
    };
    let write = |t: &'static str| {
        let ch = ch.clone();
        async move {
            callers_proto::v1::contact_service_client::ContactServiceClient::new(ch)
                .create_contact(with(
                    t,
                    pb::CreateContactRequest {
                        account_id: "acme".into(),
                        contact: Some(caller("Scope", "030 1112233")),
                        request_id: String::new(),
                    },
                ))
                .await
                .map(drop)
        }
    };
    let ident = |t: &'static str| {
        let ch = ch.clone();
        async move {
            IdentificationServiceClient::new(ch)
                .identify_caller(with(
                    t,
                    pb::IdentifyCallerRequest {
                        account_id: "acme".into(),
                        caller_number: "030 1112233".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }
    };
    let watch = |t: &'static str| {
        let ch = ch.clone();
        async move {
            ChangeServiceClient::new(ch)
                .get_change_cursor(with(
                    t,
                    pb::GetChangeCursorRequest {
                        account_id: "acme".into(),
                    },
                ))
                .await
                .map(drop)
        }
    };
    let export = |t: &'static str| {
        let ch = ch.clone();
        async move {
            PrivacyServiceClient::new(ch)
                .export_caller_data(with(
                    t,
                    pb::ExportCallerDataRequest {
                        account_id: "acme".into(),
                        phone_number: "030 1112233".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }
    };
    let ok = |r: Result<(), tonic::Status>| r.map_or_else(|e| e.code(), |()| Code::Ok);
    let denied = Code::PermissionDenied;
    // token: read, write, identify, watch, privacy
    let table = [
        ("legacy", [Code::Ok, Code::Ok, Code::Ok, Code::Ok, denied]),
        ("reader", [Code::Ok, denied, denied, denied, denied]),
        ("agent", [denied, Code::Ok, Code::Ok, denied, denied]),
        ("feed", [denied, denied, denied, Code::Ok, denied]),
        ("dpo", [denied, denied, denied, denied, Code::Ok]),
        ("ops", [Code::Ok, Code::Ok, Code::Ok, Code::Ok, Code::Ok]),
    ];
    for (token, want) in table {
        let got = [
            ok(read(token).await),
            ok(write(token).await),
            ok(ident(token).await),
            ok(watch(token).await),
            ok(export(token).await),
        ];
        assert_eq!(got, want, "{token}");
    }
    // Every privacy request needs the scope, not only the export.
    let mut p = PrivacyServiceClient::new(ch.clone());
    let e = p
        .erase_caller(with("legacy", erase("acme", "030 1112233", &[], false)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), denied);
    let e = p
        .lift_suppression(with(
            "ops",
            pb::LiftSuppressionRequest {
                account_id: "acme".into(),
                phone_number: "030 1112233".into(),
            },
        ))
        .await;
    assert!(e.is_ok());
    let e = p
        .delete_account_data(with(
            "legacy",
            pb::DeleteAccountDataRequest {
                account_id: "acme".into(),
                dry_run: true,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), denied);
    // The audit names the token, never the token itself.
    let sql = app.sql().await;
    let names: Vec<String> = sql
        .query(
            "SELECT token_name FROM privacy_requests ORDER BY request_time",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(names.contains(&"dpo".to_owned()) && names.contains(&"ops".to_owned()));
}

#[tokio::test]
async fn erasures_are_applied_again_to_a_restored_backup() {
    let mut app = spawn_app().await;
    let contact = a_caller_with_history(&mut app).await;
    let other = create(&mut app, "acme", caller("Nachbar", "030 7776655")).await;
    // The backup: a copy of the database as it is now (its sessions are cut for the copy; the
    // server reconnects by itself).
    let live_url = app.db.as_ref().unwrap().url().to_owned();
    let (base, live_name) = live_url.rsplit_once('/').unwrap();
    let backup_name = format!("callers_t_bak_{}", uuid::Uuid::new_v4().simple());
    let server = callers_testkit::database::connect(&format!("{base}/postgres")).await;
    server
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&live_name],
        )
        .await
        .unwrap();
    server
        .batch_execute(&format!(
            "CREATE DATABASE {backup_name} TEMPLATE {live_name}"
        ))
        .await
        .unwrap();
    let backup_url = format!("{base}/{backup_name}");
    let since = app.clock_now() - Duration::seconds(1);

    // Erasures after the backup: by number (suppressed), and by contact id alone.
    let mut p = privacy(&app);
    let mut by_number = None;
    for _ in 0..20 {
        // The first call may meet a session the copy cut.
        match p.erase_caller(erase("acme", NUMBER, &[], true)).await {
            Ok(r) => {
                by_number = Some(r.into_inner());
                break;
            }
            Err(e) => assert_eq!(e.code(), Code::Unavailable, "{e:?}"),
        }
    }
    assert_eq!(
        by_number.unwrap().deleted_contact_ids,
        std::slice::from_ref(&contact.contact_id)
    );
    p.erase_caller(erase("acme", "", &[&other.contact_id], false))
        .await
        .unwrap();

    // Restore: the backup, with the privacy records made since it (runbook step 2).
    let live = app.sql().await;
    let backup = callers_testkit::database::connect(&backup_url).await;
    assert!(
        !traces_in(&backup, "acme", &[LAST, E164, MESSAGE])
            .await
            .is_empty()
    );
    for (table, filter) in [
        ("privacy_requests", "kind = 'erasure'"),
        ("suppressions", "true"),
    ] {
        for row in live
            .query(
                &format!("SELECT row_to_json(t)::text FROM {table} t WHERE {filter}"),
                &[],
            )
            .await
            .unwrap()
        {
            let json: String = row.get(0);
            backup
                .execute(
                    &format!(
                        "INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, $1::text::json)"
                    ),
                    &[&json],
                )
                .await
                .unwrap();
        }
    }

    // Re-apply (runbook step 3), with the servers' keys, rotated meanwhile.
    let keys = std::env::temp_dir().join(format!("callers-keys-{}.toml", uuid::Uuid::new_v4()));
    let secret = |id: &str| hex::encode(format!("callers test privacy key {id:>16}"));
    std::fs::write(
        &keys,
        format!(
            "[[keys]]\nid = \"test-2\"\nsecret_hex = \"{}\"\n\
             [[keys]]\nid = \"test-1\"\nsecret_hex = \"{}\"\n",
            secret("test-2"),
            secret("test-1")
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callers-server"))
        .args(["reapply-erasures", "--since", &since.to_rfc3339()])
        .env("DATABASE_URL", &backup_url)
        .env("CALLERS_PRIVACY_KEYS_FILE", &keys)
        .env("CALLERS_LOG_FORMAT", "json")
        .output()
        .await
        .unwrap();
    let _ = std::fs::remove_file(&keys);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains("contacts_deleted=1"), "{stdout}");
    for needle in NEEDLES {
        assert!(!stdout.contains(needle), "the output holds {needle:?}");
    }
    let left = traces_in(&backup, "acme", NEEDLES).await;
    assert!(
        left.is_empty(),
        "the restored backup still holds: {left:#?}"
    );
    assert_eq!(
        callers_testkit::count(
            &backup,
            &format!(
                "SELECT count(*) FROM contacts WHERE contact_id = '{}'",
                other.contact_id
            )
        )
        .await,
        0
    );
    // Applying them again finds nothing more to do.
    let again = tokio::process::Command::new(env!("CARGO_BIN_EXE_callers-server"))
        .args(["reapply-erasures", "--since", &since.to_rfc3339()])
        .env("DATABASE_URL", &backup_url)
        .env("CALLERS_LOG_FORMAT", "json")
        .output()
        .await
        .unwrap();
    // Without the keys the number's record cannot be matched: said, and a failure.
    assert!(!again.status.success());
    drop(backup);
    server
        .batch_execute(&format!("DROP DATABASE {backup_name} WITH (FORCE)"))
        .await
        .unwrap();
}
