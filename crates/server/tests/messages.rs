//! Caller messages that expire, the report of messages never told, typed handling
//! instructions and `NO_DATA_CAPTURE`, with the server's clock fixed: what an agent is shown
//! and may deliver around a message's instant, exactly-once delivery racing the expiry, the
//! customer's report and its end, and the change feed carrying all of it.

use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_server::Limits;
use callers_server::auth::Authenticator;
use callers_store::purge::{PurgeSession, SessionOptions, UNDELIVERED_MESSAGES};
use callers_testkit::app::{
    TestApp, bad_fields, caller, contact_count, create, get, identify_by_number, note, reason,
    spawn_app, update,
};
use callers_testkit::mirror::Mirror;
use callers_testkit::spawn_app_custom;
use chrono::{DateTime, Duration, Utc};
use pb::ChangeType as T;
use pb::InstructionType as I;
use prost_types::{FieldMask, Timestamp};
use tonic::Code;

fn ts(t: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    })
}

fn time(t: &Option<Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().unwrap();
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

fn message(text: &str, expire: Option<DateTime<Utc>>) -> Option<pb::CallerMessage> {
    Some(pb::CallerMessage {
        text: text.into(),
        expire_time: expire.and_then(ts),
        ..Default::default()
    })
}

async fn empty_note(app: &mut TestApp, account: &str) -> String {
    note(
        app,
        account,
        pb::CallNote {
            subject: "Anruf".into(),
            ..Default::default()
        },
    )
    .await
    .call_note
    .unwrap()
    .call_note_id
}

async fn deliver(
    app: &TestApp,
    contact: &pb::Contact,
    message_id: &str,
    call_note_id: &str,
) -> Result<pb::DeliverCallerMessageResponse, tonic::Status> {
    let mut notes = app.notes.clone();
    notes
        .deliver_caller_message(pb::DeliverCallerMessageRequest {
            account_id: contact.account_id.clone(),
            contact_id: contact.contact_id.clone(),
            message_id: message_id.into(),
            call_note_id: call_note_id.into(),
            agent_id: "agent-1".into(),
            request_id: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn identify(app: &TestApp, account: &str, number: &str) -> pb::IdentifyCallerResponse {
    identify_by_number(app, account, number).await.unwrap()
}

async fn undelivered(
    app: &mut TestApp,
    account: &str,
    contact_id: &str,
) -> Vec<pb::UndeliveredMessage> {
    app.contacts
        .list_undelivered_messages(pb::ListUndeliveredMessagesRequest {
            account_id: account.into(),
            contact_id: contact_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .undelivered_messages
}

/// The sweep as a replica runs it, without the grace (no request is in flight here).
async fn sweep(app: &TestApp) -> u64 {
    app.store
        .expire_messages(app.clock_now(), Duration::zero(), 500)
        .await
        .unwrap()
}

/// Sweeps until the contact holds no message. A refused delivery's rollback may still hold the
/// contact when its answer arrives, and the sweep skips locked rows: the next sweep takes it.
async fn sweep_until_gone(app: &mut TestApp, contact_id: &str) -> u64 {
    let mut swept = 0;
    while get(app, "acme", contact_id)
        .await
        .unwrap()
        .caller_message
        .is_some()
    {
        swept += sweep(app).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    swept
}

#[tokio::test]
async fn a_message_is_told_before_its_instant_and_refused_from_it_on() {
    let mut app = spawn_app().await;
    let start = app.clock_now();
    let friday = start + Duration::hours(4);
    let mut c = caller("Müller", "030 1234567");
    c.caller_message = message("Die Unterlagen liegen bereit", Some(friday));
    let early = create(&mut app, "acme", c).await;
    let mut c = caller("Meier", "030 7654321");
    c.caller_message = message("Bitte Herrn Meier zurückrufen", Some(friday));
    let late = create(&mut app, "acme", c).await;
    assert_eq!(
        time(&late.caller_message.as_ref().unwrap().expire_time),
        friday,
        "the instant comes back as stored"
    );
    // Finer than the database keeps: the write answers what every later read returns.
    let mut c = caller("Genau", "030 7654000");
    c.caller_message = message(
        "Auf die Nanosekunde",
        Some(friday + Duration::days(1) + Duration::nanoseconds(123_456_789)),
    );
    let fine = create(&mut app, "acme", c).await;
    let read = get(&mut app, "acme", &fine.contact_id).await.unwrap();
    assert_eq!(fine.caller_message, read.caller_message);

    // Before the instant: shown as pending and delivered.
    app.clock.set(friday - Duration::seconds(1));
    let shown = identify(&app, "acme", "030 1234567").await;
    let pending = shown.matches[0]
        .contact
        .as_ref()
        .unwrap()
        .caller_message
        .clone();
    assert_eq!(pending, early.caller_message, "pending before its instant");
    let n = empty_note(&mut app, "acme").await;
    let msg = early.caller_message.as_ref().unwrap().message_id.clone();
    let done = deliver(&app, &early, &msg, &n).await.unwrap();
    assert_eq!(done.call_note.unwrap().deliveries[0].message_id, msg);

    // From the instant on: not shown, refused, and reported as expired once swept.
    app.clock.set(friday);
    let shown = identify(&app, "acme", "030 7654321").await;
    let contact = shown.matches[0].contact.as_ref().unwrap();
    assert_eq!(contact.contact_id, late.contact_id);
    assert_eq!(
        contact.caller_message, None,
        "an expired message is not pending"
    );
    let late_msg = late.caller_message.as_ref().unwrap().message_id.clone();
    let n = empty_note(&mut app, "acme").await;
    let refused = deliver(&app, &late, &late_msg, &n).await.unwrap_err();
    assert_eq!(
        (refused.code(), reason(&refused)),
        (Code::FailedPrecondition, "MESSAGE_EXPIRED".to_owned())
    );

    app.clock.set(friday + Duration::minutes(1));
    assert_eq!(sweep_until_gone(&mut app, &late.contact_id).await, 1);
    assert_eq!(sweep(&app).await, 0, "a message expires once");
    let after = get(&mut app, "acme", &late.contact_id).await.unwrap();
    assert_eq!(
        after.caller_message, None,
        "the sweep takes it off the contact"
    );
    assert_eq!(
        after.last_activity_time, late.last_activity_time,
        "expiry is not activity"
    );
    assert_ne!(after.etag, late.etag, "the contact was written");
    let refused = deliver(&app, &late, &late_msg, &n).await.unwrap_err();
    assert_eq!(
        reason(&refused),
        "MESSAGE_EXPIRED",
        "still refused after the sweep"
    );
    let report = undelivered(&mut app, "acme", "").await;
    assert_eq!(report.len(), 1);
    let r = &report[0];
    assert_eq!(
        (
            r.message_id.as_str(),
            r.contact_id.as_str(),
            r.text.as_str()
        ),
        (
            late_msg.as_str(),
            late.contact_id.as_str(),
            "Bitte Herrn Meier zurückrufen"
        )
    );
    assert_eq!(r.reason, pb::UndeliveredReason::Expired as i32);
    assert_eq!(time(&r.end_time), friday, "it ended at its instant");
    assert_eq!(time(&r.expire_time), friday);
}

#[tokio::test]
async fn every_replica_sweeps_expired_messages_by_itself() {
    let limits = Limits {
        message_sweep: Some(std::time::Duration::from_millis(50)),
        request_timeout: std::time::Duration::from_millis(100),
        ..Limits::default()
    };
    let mut app = spawn_app_custom(Authenticator::disabled(), limits).await;
    let instant = app.clock_now() + Duration::hours(1);
    let mut c = caller("Später", "030 6666666");
    c.caller_message = message("Nur heute", Some(instant));
    let contact = create(&mut app, "acme", c).await;
    app.clock.set(instant + Duration::minutes(1));
    // No timing is asserted: the sweep comes, however long it takes.
    let report = loop {
        let report = undelivered(&mut app, "acme", &contact.contact_id).await;
        if !report.is_empty() {
            break report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(report[0].reason, pb::UndeliveredReason::Expired as i32);
    let after = get(&mut app, "acme", &contact.contact_id).await.unwrap();
    assert_eq!(after.caller_message, None);
}

#[tokio::test]
async fn deliveries_racing_the_instant_deliver_at_most_once_and_never_late() {
    let mut app = spawn_app().await;
    let mut delivered_rounds = 0;
    let mut expired_rounds = 0;
    for round in 0..12 {
        let start = app.clock_now();
        let instant = start + Duration::seconds(10);
        let mut c = caller("Racer", &format!("030 55500{round:02}"));
        c.caller_message = message("Nur bis zehn", Some(instant));
        let contact = create(&mut app, "acme", c).await;
        let msg = contact.caller_message.as_ref().unwrap().message_id.clone();
        let mut notes = Vec::new();
        for _ in 0..6 {
            notes.push(empty_note(&mut app, "acme").await);
        }
        app.clock.set(instant - Duration::milliseconds(1));
        let mut tasks = Vec::new();
        for (i, n) in notes.into_iter().enumerate() {
            let (app_ch, contact, msg) = (app.notes.clone(), contact.clone(), msg.clone());
            let channel = app.channel.clone();
            tasks.push(tokio::spawn(async move {
                let _ = channel;
                for _ in 0..(i + round) % 4 {
                    tokio::task::yield_now().await;
                }
                let mut notes = app_ch;
                notes
                    .deliver_caller_message(pb::DeliverCallerMessageRequest {
                        account_id: "acme".into(),
                        contact_id: contact.contact_id.clone(),
                        message_id: msg,
                        call_note_id: n,
                        agent_id: "agent-1".into(),
                        request_id: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner())
            }));
        }
        // The instant passes while the deliveries run, and a replica sweeps.
        for _ in 0..round % 3 {
            tokio::task::yield_now().await;
        }
        app.clock.set(instant + Duration::milliseconds(1));
        let swept = sweep(&app).await;
        let mut ok = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => ok.push(r),
                Err(s) => {
                    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
                    assert!(
                        ["MESSAGE_EXPIRED", "MESSAGE_NOT_PENDING"].contains(&reason(&s).as_str()),
                        "{s:?}"
                    );
                }
            }
        }
        let swept = swept + sweep_until_gone(&mut app, &contact.contact_id).await;
        assert!(ok.len() <= 1, "round {round}: delivered {} times", ok.len());
        let report = undelivered(&mut app, "acme", &contact.contact_id).await;
        match ok.first() {
            Some(r) => {
                let d = &r.call_note.as_ref().unwrap().deliveries[0];
                assert!(
                    time(&d.deliver_time) < instant,
                    "round {round}: delivered at or after its instant"
                );
                assert!(
                    report.is_empty() && swept == 0,
                    "round {round}: delivered and expired"
                );
                delivered_rounds += 1;
            }
            None => {
                assert_eq!(
                    report.len(),
                    1,
                    "round {round}: neither delivered nor reported"
                );
                assert_eq!(report[0].reason, pb::UndeliveredReason::Expired as i32);
                expired_rounds += 1;
            }
        }
        app.clock.set(instant + Duration::seconds(1));
    }
    println!("[messages] race rounds: {delivered_rounds} delivered, {expired_rounds} expired");
}

#[tokio::test]
async fn untold_messages_are_reported_then_leave_the_report_without_activity() {
    let mut app = spawn_app().await;
    let mut mirror = Mirror::sync(&app.channel, "acme").await.unwrap();
    let t0 = app.clock_now();
    let mut c = caller("Schulze", "030 1111111");
    c.caller_message = message("Erste Nachricht", None);
    let contact = create(&mut app, "acme", c).await;
    let other = create(&mut app, "acme", caller("Andere", "030 2222222")).await;

    // Replaced untold, then the replacement expires untold.
    app.clock.set(t0 + Duration::hours(1));
    let mut changed = contact.clone();
    changed.caller_message = message("Zweite Nachricht", Some(t0 + Duration::days(2)));
    let replaced = update(&mut app, changed.clone(), &["caller_message"]).await;
    // The same text moves the instant of the pending message: nothing is replaced.
    app.clock.set(t0 + Duration::hours(2));
    changed.caller_message = message("Zweite Nachricht", Some(t0 + Duration::days(3)));
    let moved = update(&mut app, changed, &["caller_message.expire_time"]).await;
    let (a, b) = (
        replaced.caller_message.clone().unwrap(),
        moved.caller_message.clone().unwrap(),
    );
    assert_eq!((a.message_id, a.create_time), (b.message_id, b.create_time));
    assert_eq!(time(&b.expire_time), t0 + Duration::days(3));

    app.clock.set(t0 + Duration::days(4));
    assert_eq!(sweep(&app).await, 1);
    let report = undelivered(&mut app, "acme", "").await;
    let reasons: Vec<(String, i32)> = report.iter().map(|m| (m.text.clone(), m.reason)).collect();
    assert_eq!(
        reasons,
        [
            (
                "Zweite Nachricht".to_owned(),
                pb::UndeliveredReason::Expired as i32
            ),
            (
                "Erste Nachricht".to_owned(),
                pb::UndeliveredReason::Replaced as i32
            ),
        ],
        "newest end first"
    );
    assert_eq!(time(&report[1].end_time), t0 + Duration::hours(1));
    assert!(
        undelivered(&mut app, "acme", &other.contact_id)
            .await
            .is_empty()
    );
    assert!(
        undelivered(&mut app, "globex", "").await.is_empty(),
        "per account"
    );
    let before = get(&mut app, "acme", &contact.contact_id).await.unwrap();
    assert_eq!(before.caller_message, None);
    assert_eq!(
        time(&before.last_activity_time),
        t0 + Duration::hours(2),
        "the expiry did not move the last activity"
    );

    // After the report period (30 days) the housekeeping drops the records.
    app.clock.set(t0 + Duration::days(40));
    let session = PurgeSession::connect(app.db.as_ref().unwrap().url(), &SessionOptions::default())
        .await
        .unwrap();
    let lock = session.try_lock().await.unwrap().unwrap();
    let cutoff = app.clock_now() - Duration::days(30);
    assert_eq!(
        lock.housekeep(&UNDELIVERED_MESSAGES, cutoff, 100)
            .await
            .unwrap(),
        2
    );
    lock.release().await.unwrap();
    assert!(undelivered(&mut app, "acme", "").await.is_empty());
    let after = get(&mut app, "acme", &contact.contact_id).await.unwrap();
    assert_eq!(after, before, "dropping the report touches no contact");

    // A mirror that followed the feed holds what the reads return, and saw every step.
    mirror.catch_up(&app.channel).await.unwrap();
    mirror.assert_matches(&app.channel).await;
    let kinds: Vec<T> = mirror
        .applied
        .iter()
        .map(|c| T::try_from(c.r#type).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            T::ContactCreated,
            T::ContactCreated,
            T::MessageReplaced,
            T::ContactUpdated,
            T::ContactUpdated,
            T::MessageExpired,
            T::ContactUpdated,
            T::UndeliveredMessageRemoved,
            T::UndeliveredMessageRemoved,
        ]
    );
    let expired = &mirror.applied[5];
    match &expired.resource {
        Some(pb::change::Resource::UndeliveredMessage(m)) => {
            assert_eq!(m.text, "Zweite Nachricht");
            assert_eq!(expired.message_id, m.message_id);
        }
        other => panic!("MESSAGE_EXPIRED carries its record, got {other:?}"),
    }
}

#[tokio::test]
async fn the_account_time_zone_is_an_iana_name_defaulting_to_berlin() {
    let app = spawn_app().await;
    let mut ch = CallHandlingServiceClient::new(app.channel.clone());
    let write = |tz: &str, paths: &[&str]| pb::UpdateCallHandlingRequest {
        call_handling: Some(pb::CallHandling {
            account_id: "acme".into(),
            time_zone: tz.into(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
        etag: String::new(),
    };
    let first = ch
        .update_call_handling(write("", &["conversation_style"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.time_zone, "Europe/Berlin");
    let set = ch
        .update_call_handling(write("america/new_york", &["time_zone"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        set.time_zone, "America/New_York",
        "stored in the database's spelling"
    );
    // A client that does not know the field (empty mask) never resets it.
    let kept = ch
        .update_call_handling(pb::UpdateCallHandlingRequest {
            update_mask: None,
            ..write("", &[])
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.time_zone, "America/New_York");
    for bad in ["Europe/Atlantis", "Berlin", "+01:00"] {
        let err = ch
            .update_call_handling(write(bad, &["time_zone"]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(bad_fields(&err), ["call_handling.time_zone"], "{bad}");
    }
}

fn instruction(t: I, employee: &str) -> pb::Instruction {
    pb::Instruction {
        r#type: t as i32,
        employee_id: employee.into(),
    }
}

#[tokio::test]
async fn typed_instructions_round_trip_and_come_back_with_every_match() {
    let mut app = spawn_app().await;
    let all = vec![
        instruction(I::PutThrough, "emp-7"),
        instruction(I::ResponsibleEmployee, "emp-8"),
        instruction(I::NoDataCapture, ""),
        instruction(I::CallBack, ""),
    ];
    let mut c = caller("Vogel", "030 4444444");
    c.instructions = all.clone();
    c.handling_instruction = "Immer freundlich".into();
    let created = create(&mut app, "acme", c).await;
    assert_eq!(created.instructions, all);
    assert_eq!(
        get(&mut app, "acme", &created.contact_id)
            .await
            .unwrap()
            .instructions,
        all
    );
    let found = identify(&app, "acme", "+49 30 4444444").await;
    let m = found.matches[0].contact.as_ref().unwrap();
    assert_eq!(
        (&m.instructions, m.handling_instruction.as_str()),
        (&all, "Immer freundlich")
    );
    for one in &all {
        let mut c = created.clone();
        c.instructions = vec![one.clone()];
        let got = update(&mut app, c, &["instructions"]).await;
        assert_eq!(got.instructions, std::slice::from_ref(one));
        let found = identify(&app, "acme", "030 4444444").await;
        assert_eq!(
            found.matches[0].contact.as_ref().unwrap().instructions,
            std::slice::from_ref(one)
        );
    }
    let mut c = created.clone();
    c.instructions.clear();
    assert!(
        update(&mut app, c, &["instructions"])
            .await
            .instructions
            .is_empty()
    );
}

#[tokio::test]
async fn a_no_data_capture_caller_gets_no_contact_and_no_stored_caller_fields() {
    let mut app = spawn_app().await;
    let mut family = caller("Schmidt", "030 9876543");
    family.first_name = "Anna".into();
    family.salutation = "Frau".into();
    family.instructions = vec![instruction(I::NoDataCapture, "")];
    let family = create(&mut app, "acme", family).await;
    let contacts_before = contact_count(&mut app, "acme").await;
    let caller_note = |first: &str, last: &str, number: &str| pb::CallNote {
        employee_id: "chef".into(),
        agent_id: "agent-1".into(),
        caller_first_name: first.into(),
        caller_last_name: last.into(),
        caller_number: number.into(),
        subject: "Rückruf erbeten".into(),
        text: "Ruft heute Abend wieder an".into(),
        ..Default::default()
    };
    let empty_caller = |n: &pb::CallNote| {
        (
            n.caller_first_name.as_str(),
            n.caller_last_name.as_str(),
            n.caller_company.as_str(),
            n.caller_number.as_str(),
        ) == ("", "", "", "")
    };

    // Recognised with certainty: linked, but nothing about the caller is stored.
    let linked = note(
        &mut app,
        "acme",
        caller_note("Anna", "Schmidt", "030 9876543"),
    )
    .await;
    let n = linked.call_note.unwrap();
    assert_eq!(n.contact_id, family.contact_id);
    assert!(empty_caller(&n), "{n:?}");
    assert_eq!(n.subject, "Rückruf erbeten", "the note itself is kept");
    let stored = app
        .notes
        .get_call_note(pb::GetCallNoteRequest {
            account_id: "acme".into(),
            call_note_id: n.call_note_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty_caller(&stored));

    // A family line shared with a second contact: the caller may be Anna, so nobody is made
    // and nothing about the caller is kept.
    let mut cousin = caller("Schmidt", "030 9876543");
    cousin.first_name = "Bernd".into();
    create(&mut app, "acme", cousin).await;
    let unsure = note(&mut app, "acme", caller_note("", "", "030 9876543")).await;
    assert!(
        !unsure.contact_created && unsure.contact.is_none(),
        "{unsure:?}"
    );
    let n = unsure.call_note.unwrap();
    assert!(n.contact_id.is_empty() && empty_caller(&n), "{n:?}");

    // Named explicitly: the same.
    let named = note(
        &mut app,
        "acme",
        pb::CallNote {
            contact_id: family.contact_id.clone(),
            ..caller_note("Anna", "Schmidt", "0171 5555555")
        },
    )
    .await;
    assert!(empty_caller(named.call_note.as_ref().unwrap()));
    let after = get(&mut app, "acme", &family.contact_id).await.unwrap();
    assert_eq!(
        (
            &after.first_name,
            &after.last_name,
            &after.company,
            &after.phone_numbers
        ),
        (
            &family.first_name,
            &family.last_name,
            &family.company,
            &family.phone_numbers
        ),
        "notes never change such a contact's data"
    );
    let contacts_after = contact_count(&mut app, "acme").await;
    assert_eq!(
        contacts_after,
        contacts_before + 1,
        "only the cousin was added, by hand"
    );

    // A note taken before the caller was known keeps its fields until a delivery links it.
    let mut with_message = family.clone();
    with_message.caller_message = message("Schlüssel liegt beim Nachbarn", None);
    let with_message = update(&mut app, with_message, &["caller_message"]).await;
    let loose = note(&mut app, "acme", caller_note("", "", "unterdrückt")).await;
    assert!(!loose.contact_created);
    let loose = loose.call_note.unwrap();
    assert_eq!(
        loose.caller_number, "unterdrückt",
        "an unlinked note keeps what was given"
    );
    let msg = with_message.caller_message.unwrap().message_id;
    let done = deliver(&app, &family, &msg, &loose.call_note_id)
        .await
        .unwrap();
    let n = done.call_note.unwrap();
    assert_eq!(n.contact_id, family.contact_id);
    assert!(
        empty_caller(&n),
        "linked by the delivery, its caller fields went: {n:?}"
    );
}
