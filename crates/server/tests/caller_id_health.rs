//! Caller-ID health measured from real calls: the account's own lines are never looked up as a
//! caller's number, every `IdentifyCaller` is counted (counts only) per account and employee,
//! and `CheckCallerRecognition` judges the last 30 days beside the declared settings, with the
//! server's clock fixed. Counts are flushed by hand here, as a replica's task does every few
//! seconds.

use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_store::purge::{CALL_COUNTS, PurgeSession, SessionOptions};
use callers_store::{PoolConfig, Store};
use callers_testkit::app::{TestApp, bad_fields, caller, create, spawn_app};
use chrono::Duration;
use pb::FindingCode as F;
use prost_types::FieldMask;
use tonic::Code;

async fn settings(
    app: &TestApp,
    account: &str,
    ch: pb::CallHandling,
    paths: &[&str],
) -> Result<pb::CallHandling, tonic::Status> {
    CallHandlingServiceClient::new(app.channel.clone())
        .update_call_handling(pb::UpdateCallHandlingRequest {
            call_handling: Some(pb::CallHandling {
                account_id: account.into(),
                ..ch
            }),
            update_mask: Some(FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            etag: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Formal, caller ID declared as `cid`, with the switchboard and the forwarding's line as own
/// numbers.
async fn setup(app: &TestApp, account: &str, cid: bool) {
    settings(
        app,
        account,
        pb::CallHandling {
            conversation_style: pb::ConversationStyle::Formal as i32,
            caller_id_transmission: cid,
            own_numbers: vec![own("030 1234560"), own("+49 30 99990000")],
            ..Default::default()
        },
        &[
            "conversation_style",
            "caller_id_transmission",
            "own_numbers",
        ],
    )
    .await
    .unwrap();
}

fn own(number: &str) -> pb::OwnNumber {
    pb::OwnNumber {
        number: number.into(),
        e164: String::new(),
    }
}

async fn call(
    app: &TestApp,
    account: &str,
    employee: &str,
    number: &str,
    name: &str,
) -> pb::IdentifyCallerResponse {
    IdentificationServiceClient::new(app.channel.clone())
        .identify_caller(pb::IdentifyCallerRequest {
            account_id: account.into(),
            employee_id: employee.into(),
            caller_number: number.into(),
            caller_name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn check(app: &TestApp, account: &str, employee: &str) -> pb::RecognitionStatus {
    CallHandlingServiceClient::new(app.channel.clone())
        .check_caller_recognition(pb::CheckCallerRecognitionRequest {
            account_id: account.into(),
            employee_id: employee.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn codes(s: &pb::RecognitionStatus) -> Vec<(F, String)> {
    s.findings
        .iter()
        .map(|f| (F::try_from(f.code).unwrap(), f.employee_id.clone()))
        .collect()
}

/// `n` calls for `employee`: `anonymous` without a number, `own` from the switchboard, the rest
/// from a known caller's number.
async fn calls(
    app: &TestApp,
    account: &str,
    employee: &str,
    n: usize,
    anonymous: usize,
    own: usize,
) {
    for i in 0..n {
        let number = if i < anonymous {
            if i % 2 == 0 { "" } else { "anonymous" }
        } else if i < anonymous + own {
            "030 1234560"
        } else {
            "030 7777777"
        };
        call(app, account, employee, number, "").await;
    }
}

#[tokio::test]
async fn a_call_from_an_own_number_is_not_looked_up_as_the_callers() {
    let mut app = spawn_app().await;
    setup(&app, "acme", true).await;
    // A contact that happens to carry the switchboard's number, and a real caller.
    let mut reception = caller("Zentrale", "030 1234560");
    reception.first_name.clear();
    create(&mut app, "acme", reception).await;
    create(&mut app, "acme", caller("Müller", "030 7777777")).await;

    let r = call(&app, "acme", "", "030 1234560", "").await;
    assert!(r.own_number, "{r:?}");
    assert!(
        r.matches.is_empty(),
        "an own number finds nobody: {:?}",
        r.matches
    );
    assert_eq!(r.normalized_number, "+49301234560");
    let r = call(&app, "acme", "", "+49 30 99990000", "Hans Müller").await;
    assert!(r.own_number);
    assert_eq!(r.matches.len(), 1);
    assert_eq!(
        r.matches[0].matched_by,
        pb::MatchKind::Name as i32,
        "found by name only"
    );
    let r = call(&app, "acme", "", "030 7777777", "").await;
    assert!(!r.own_number);
    assert_eq!(r.matches[0].matched_by, pb::MatchKind::PhoneNumber as i32);
    // Another account's own numbers are not this one's.
    create(&mut app, "globex", caller("Zentrale", "030 1234560")).await;
    let r = call(&app, "globex", "", "030 1234560", "").await;
    assert!(!r.own_number && r.matches.len() == 1);

    // A call note from the switchboard's number matches nobody by it and makes no contact
    // with it; the note keeps the number as delivered.
    let mut notes = app.notes.clone();
    let made = notes
        .create_call_note(pb::CreateCallNoteRequest {
            account_id: "acme".into(),
            request_id: String::new(),
            call_note: Some(pb::CallNote {
                caller_last_name: "Neumann".into(),
                caller_number: "030 1234560".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(made.contact_created);
    assert!(
        made.contact.unwrap().phone_numbers.is_empty(),
        "not the caller's number"
    );
    assert_eq!(made.call_note.unwrap().caller_number, "030 1234560");

    // Own numbers come back normalised, and bad ones name their place.
    let got = settings(&app, "acme", pb::CallHandling::default(), &["own_numbers"]).await;
    assert!(
        got.unwrap().own_numbers.is_empty(),
        "an empty list clears them"
    );
    let stored = settings(
        &app,
        "acme",
        pb::CallHandling {
            own_numbers: vec![own("030 1234560")],
            ..Default::default()
        },
        &["own_numbers"],
    )
    .await
    .unwrap();
    assert_eq!(stored.own_numbers[0].e164, "+49301234560");
    let err = settings(
        &app,
        "acme",
        pb::CallHandling {
            own_numbers: vec![own("030 1234560"), own("kein Anschluss")],
            ..Default::default()
        },
        &["own_numbers"],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(bad_fields(&err), ["call_handling.own_numbers[1]"]);
}

#[tokio::test]
async fn measured_shares_give_findings_per_employee_and_per_account() {
    let mut app = spawn_app().await;
    setup(&app, "acme", true).await;
    create(&mut app, "acme", caller("Müller", "030 7777777")).await;
    // Employee "lange": 29 of 50 calls without a number. Employee "berg": 10 of 32 from the
    // switchboard's number. Employee "ok": 30 calls that all arrive.
    calls(&app, "acme", "lange", 50, 29, 0).await;
    calls(&app, "acme", "berg", 32, 0, 10).await;
    calls(&app, "acme", "ok", 30, 3, 0).await;
    calls(&app, "acme", "neu", 5, 5, 0).await;
    app.calls.flush(&app.store).await.unwrap();

    let s = check(&app, "acme", "lange").await;
    assert_eq!(
        codes(&s),
        [(F::CallsWithoutNumber, "lange".to_owned())],
        "{s:?}"
    );
    let f = &s.findings[0];
    assert!(
        f.message.starts_with("58 % of calls for employee lange in the last 30 days arrived without the caller's number"),
        "{}",
        f.message
    );
    assert!((f.share - 0.58).abs() < 1e-9);
    let m = s.measurement.unwrap();
    assert_eq!(
        (m.calls, m.calls_without_number, m.calls_number_found),
        (50, 29, 21)
    );
    assert!(m.enough_calls);

    let s = check(&app, "acme", "berg").await;
    assert_eq!(codes(&s), [(F::CallsFromOwnNumber, "berg".to_owned())]);
    assert!(
        s.findings[0].message.starts_with("31 % of calls"),
        "{}",
        s.findings[0].message
    );

    let s = check(&app, "acme", "ok").await;
    assert!(s.ready && s.findings.is_empty(), "{s:?}");

    let s = check(&app, "acme", "neu").await;
    assert!(
        s.ready,
        "five calls tell nothing: the declaration (on) stands"
    );
    let m = s.measurement.unwrap();
    assert!(
        !m.enough_calls && m.message.starts_with("only 5 calls"),
        "{m:?}"
    );

    // The account: 117 calls, 37 without a number (32 %), 10 own (9 %): healthy.
    let s = check(&app, "acme", "").await;
    let m = s.measurement.clone().unwrap();
    assert_eq!(
        (m.calls, m.calls_without_number, m.calls_from_own_number),
        (117, 37, 10)
    );
    assert!(s.ready, "{s:?}");

    // IdentifyCaller shows the same once its replica has read the counts (in the background).
    let shown = loop {
        let r = call(&app, "acme", "lange", "030 7777777", "").await;
        let measured =
            |s: &pb::RecognitionStatus| s.measurement.as_ref().is_some_and(|m| m.calls >= 50);
        if let Some(s) = r.recognition.filter(measured) {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(codes(&shown), [(F::CallsWithoutNumber, "lange".to_owned())]);
}

#[tokio::test]
async fn a_measurement_outranks_the_declared_setting() {
    let mut app = spawn_app().await;
    // Declared off, but the numbers arrive: no caller-ID finding once there are enough calls.
    setup(&app, "acme", false).await;
    create(&mut app, "acme", caller("Müller", "030 7777777")).await;
    calls(&app, "acme", "", 19, 0, 0).await;
    app.calls.flush(&app.store).await.unwrap();
    assert_eq!(
        codes(&check(&app, "acme", "").await),
        [(F::CallerIdNotTransmitted, String::new())]
    );
    calls(&app, "acme", "", 1, 0, 0).await;
    app.calls.flush(&app.store).await.unwrap();
    assert!(check(&app, "acme", "").await.ready);
    // Declared on, but the numbers stay away: the measured finding.
    setup(&app, "globex", true).await;
    calls(&app, "globex", "", 20, 20, 0).await;
    app.calls.flush(&app.store).await.unwrap();
    assert_eq!(
        codes(&check(&app, "globex", "").await),
        [(F::CallsWithoutNumber, String::new())]
    );
}

#[tokio::test]
async fn counts_survive_the_flush_are_scoped_by_account_and_a_crash_loses_only_unflushed_ones() {
    let mut app = spawn_app().await;
    setup(&app, "acme", true).await;
    create(&mut app, "acme", caller("Müller", "030 7777777")).await;
    calls(&app, "acme", "", 5, 1, 1).await;
    // A flush that cannot reach the database keeps its counts for the next.
    let dead = Store::connect(
        "postgres://postgres@127.0.0.1:1/nowhere",
        &PoolConfig {
            wait_timeout: std::time::Duration::from_millis(200),
            connect_timeout: std::time::Duration::from_millis(200),
            ..PoolConfig::default()
        },
    )
    .unwrap();
    assert!(app.calls.flush(&dead).await.is_err());
    assert_eq!(app.calls.flush(&app.store).await.unwrap(), 1);
    let m = check(&app, "acme", "").await.measurement.unwrap();
    assert_eq!(
        (
            m.calls,
            m.calls_without_number,
            m.calls_from_own_number,
            m.calls_number_found
        ),
        (5, 1, 1, 3)
    );
    assert_eq!(
        check(&app, "globex", "").await.measurement.unwrap().calls,
        0,
        "per account"
    );

    // Three more calls, answered, then the replica dies before its next flush: its successor
    // counts anew, and only the three are lost.
    for _ in 0..3 {
        let r = call(&app, "acme", "", "030 7777777", "").await;
        assert_eq!(r.matches.len(), 1, "every call is answered");
    }
    let successor = callers_server::tally::CallTally::new();
    drop(std::mem::replace(&mut app.calls, successor));
    assert_eq!(check(&app, "acme", "").await.measurement.unwrap().calls, 5);
}

#[tokio::test]
async fn counts_older_than_the_window_are_not_judged_and_housekeeping_drops_them() {
    let app = spawn_app().await;
    setup(&app, "acme", true).await;
    calls(&app, "acme", "", 25, 25, 0).await;
    app.calls.flush(&app.store).await.unwrap();
    assert_eq!(
        codes(&check(&app, "acme", "").await),
        [(F::CallsWithoutNumber, String::new())]
    );
    app.advance_days(29);
    assert_eq!(
        check(&app, "acme", "").await.measurement.unwrap().calls,
        25,
        "day 30 of 30"
    );
    app.advance_days(1);
    let s = check(&app, "acme", "").await;
    assert_eq!(s.measurement.unwrap().calls, 0, "out of the window");
    assert!(s.ready);

    let session = PurgeSession::connect(app.db.as_ref().unwrap().url(), &SessionOptions::default())
        .await
        .unwrap();
    let lock = session.try_lock().await.unwrap().unwrap();
    let before = app.clock_now() - Duration::days(30);
    assert_eq!(
        lock.housekeep(&CALL_COUNTS, before, 100).await.unwrap(),
        0,
        "the last day of the window stays"
    );
    lock.release().await.unwrap();
    app.advance_days(1);
    let lock = PurgeSession::connect(app.db.as_ref().unwrap().url(), &SessionOptions::default())
        .await
        .unwrap()
        .try_lock()
        .await
        .unwrap()
        .unwrap();
    let before = app.clock_now() - Duration::days(30);
    assert_eq!(lock.housekeep(&CALL_COUNTS, before, 100).await.unwrap(), 1);
    lock.release().await.unwrap();
    let db = app.sql().await;
    let left: i64 = db
        .query_one("SELECT count(*) FROM call_counts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}
