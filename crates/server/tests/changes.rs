//! ChangeService as a CRM uses it: every write in the feed with the resource as written, in
//! commit order even when a transaction that started first commits last, expired cursors and
//! the documented recovery, tenancy, the stream cap, and streams that end at their age or at
//! shutdown and resume from their cursor.

use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_proto::v1::change_service_client::ChangeServiceClient;
use callers_server::Limits;
use callers_server::auth::Authenticator;
use callers_server::grpc::changes::WatchLimits;
use callers_testkit::app::{
    TestApp, bad_fields, caller, create, get, note, reason, retrying_renewal, spawn_app, update,
};
use callers_testkit::mirror::{Mirror, seq};
use callers_testkit::spawn_app_custom;
use pb::ChangeType as T;
use std::time::Duration;
use tonic::Code;

fn changes(app: &TestApp) -> ChangeServiceClient<tonic::transport::Channel> {
    ChangeServiceClient::new(app.channel.clone())
}

async fn list(
    app: &TestApp,
    account: &str,
    cursor: &str,
) -> Result<pb::ListChangesResponse, tonic::Status> {
    changes(app)
        .list_changes(pb::ListChangesRequest {
            account_id: account.into(),
            cursor: cursor.into(),
            page_size: 0,
        })
        .await
        .map(|r| r.into_inner())
}

async fn cursor(app: &TestApp, account: &str) -> String {
    changes(app)
        .get_change_cursor(pb::GetChangeCursorRequest {
            account_id: account.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .cursor
}

fn types(changes: &[pb::Change]) -> Vec<T> {
    changes
        .iter()
        .map(|c| T::try_from(c.r#type).unwrap())
        .collect()
}

fn secs(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().unwrap().seconds
}

fn message(text: &str) -> Option<pb::CallerMessage> {
    Some(pb::CallerMessage {
        text: text.into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn every_write_is_in_the_feed_with_the_resource_as_written() {
    let mut app = spawn_app().await;
    let start = cursor(&app, "acme").await;
    assert_eq!(start, "0", "an account without changes has a cursor too");
    let mirror_from_start = Mirror::sync(&app.channel, "acme").await.unwrap();

    let mut c = caller("Müller", "030 1234567");
    c.caller_message = message("Unterlagen sind da");
    let created = create(&mut app, "acme", c).await;
    let first_message = created.caller_message.clone().unwrap().message_id;

    app.advance_days(1);
    let mut changed = created.clone();
    changed.caller_message = message("Bitte zurückrufen");
    let updated = update(&mut app, changed, &["caller_message"]).await;

    // A note linked to the contact writes it: update_time and etag move with the activity.
    app.advance_days(1);
    let linked = note(
        &mut app,
        "acme",
        pb::CallNote {
            contact_id: created.contact_id.clone(),
            subject: "Anruf".into(),
            ..Default::default()
        },
    )
    .await;
    let touched = get(&mut app, "acme", &created.contact_id).await.unwrap();
    assert_eq!(touched.update_time, touched.last_activity_time);
    assert!(secs(&touched.update_time) > secs(&updated.update_time));
    assert_ne!(touched.etag, updated.etag);

    // A note about nobody stays unlinked; delivering into it links it.
    app.advance_days(1);
    let loose = note(
        &mut app,
        "acme",
        pb::CallNote {
            subject: "Anruf ohne Namen".into(),
            ..Default::default()
        },
    )
    .await
    .call_note
    .unwrap();
    assert!(loose.contact_id.is_empty());
    let delivered = app
        .notes
        .deliver_caller_message(pb::DeliverCallerMessageRequest {
            account_id: "acme".into(),
            contact_id: created.contact_id.clone(),
            message_id: updated.caller_message.clone().unwrap().message_id,
            call_note_id: loose.call_note_id.clone(),
            agent_id: "agent-1".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let after_delivery = delivered.contact.clone().unwrap();
    assert!(
        secs(&after_delivery.update_time) > secs(&touched.update_time),
        "delivery writes the contact"
    );

    let settings = CallHandlingServiceClient::new(app.channel.clone())
        .update_call_handling(pb::UpdateCallHandlingRequest {
            call_handling: Some(pb::CallHandling {
                account_id: "acme".into(),
                conversation_style: pb::ConversationStyle::Formal as i32,
                caller_id_transmission: true,
                ..Default::default()
            }),
            update_mask: None,
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();

    app.contacts
        .delete_contact(pb::DeleteContactRequest {
            account_id: "acme".into(),
            contact_id: created.contact_id.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let page = list(&app, "acme", &start).await.unwrap();
    assert!(page.caught_up);
    assert_eq!(
        types(&page.changes),
        [
            T::ContactCreated,
            T::MessageReplaced,
            T::ContactUpdated,
            T::ContactUpdated,
            T::CallNoteCreated,
            T::CallNoteCreated,
            T::CallNoteLinked,
            T::MessageDelivered,
            T::ContactUpdated,
            T::CallHandlingUpdated,
            T::ContactDeleted,
        ]
    );
    let c = &page.changes;
    let contact_of = |i: usize| match &c[i].resource {
        Some(pb::change::Resource::Contact(x)) => x.clone(),
        other => panic!("change {i} carries {other:?}"),
    };
    let note_of = |i: usize| match &c[i].resource {
        Some(pb::change::Resource::CallNote(n)) => n.clone(),
        other => panic!("change {i} carries {other:?}"),
    };
    assert_eq!(contact_of(0), created);
    assert_eq!(c[0].etag, created.etag);
    assert_eq!(c[1].message_id, first_message);
    assert_eq!(c[1].contact_id, created.contact_id);
    match &c[1].resource {
        Some(pb::change::Resource::UndeliveredMessage(m)) => {
            assert_eq!(m.message_id, first_message);
            assert_eq!(m.text, "Unterlagen sind da");
            assert_eq!(m.reason, pb::UndeliveredReason::Replaced as i32);
        }
        other => panic!("MESSAGE_REPLACED carries the record of the replaced message: {other:?}"),
    }
    assert_eq!(contact_of(2), updated);
    assert_eq!(contact_of(3), touched);
    assert_eq!(note_of(4), linked.call_note.clone().unwrap());
    assert_eq!(note_of(5), loose);
    assert_eq!(note_of(6).contact_id, created.contact_id);
    assert_eq!(note_of(7), delivered.call_note.clone().unwrap());
    assert_eq!(c[7].message_id, updated.caller_message.unwrap().message_id);
    assert_eq!(contact_of(8), after_delivery);
    assert_eq!(c[8].etag, after_delivery.etag);
    match &c[9].resource {
        Some(pb::change::Resource::CallHandling(s)) => assert_eq!(s, &settings),
        other => panic!("settings change carries {other:?}"),
    }
    assert_eq!(c[9].etag, settings.etag);
    assert_eq!(c[10].contact_id, created.contact_id);
    assert_eq!(c[10].delete_reason, pb::DeleteReason::Request as i32);
    assert!(c[10].resource.is_none() && c[10].etag.is_empty());
    for (i, change) in c.iter().enumerate() {
        assert_eq!(seq(&change.cursor), i as i64 + 1);
        assert!(change.change_time.is_some());
    }
    assert_eq!(page.next_cursor, c[10].cursor);
    assert_eq!(cursor(&app, "acme").await, c[10].cursor);

    // A mirror that followed from the start ends equal to the account, the deleted contact's
    // notes unlinked.
    let mut mirror = mirror_from_start;
    mirror.catch_up(&app.channel).await.unwrap();
    mirror.assert_matches(&app.channel).await;
    assert!(mirror.notes.values().all(|n| n.contact_id.is_empty()));
}

#[tokio::test]
async fn a_replayed_request_records_no_second_change() {
    let mut app = spawn_app().await;
    let request = pb::CreateContactRequest {
        account_id: "acme".into(),
        contact: Some(caller("Meier", "030 555")),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let first = app.contacts.create_contact(request.clone()).await.unwrap();
    let again = app.contacts.create_contact(request).await.unwrap();
    assert_eq!(first.into_inner(), again.into_inner());
    let page = list(&app, "acme", "").await.unwrap();
    assert_eq!(types(&page.changes), [T::ContactCreated]);
}

#[tokio::test]
async fn a_transaction_that_started_first_and_commits_last_is_not_skipped() {
    let mut app = spawn_app().await;
    let mut c = caller("Müller", "030 1234567");
    c.caller_message = message("Unterlagen sind da");
    let contact = create(&mut app, "acme", c).await;
    let loose = note(
        &mut app,
        "acme",
        pb::CallNote {
            subject: "Anruf".into(),
            ..Default::default()
        },
    )
    .await
    .call_note
    .unwrap();
    let mut mirror = Mirror::sync(&app.channel, "acme").await.unwrap();

    // Another session holds the note: the delivery starts, locks the contact, writes nothing
    // yet visible, and waits on the note.
    let sql = app.sql().await;
    sql.batch_execute("BEGIN").await.unwrap();
    sql.execute(
        "SELECT 1 FROM call_notes WHERE call_note_id = $1 FOR UPDATE",
        &[&uuid::Uuid::parse_str(&loose.call_note_id).unwrap()],
    )
    .await
    .unwrap();
    let mut client = app.notes.clone();
    let request = pb::DeliverCallerMessageRequest {
        account_id: "acme".into(),
        contact_id: contact.contact_id.clone(),
        message_id: contact.caller_message.clone().unwrap().message_id,
        call_note_id: loose.call_note_id.clone(),
        agent_id: "agent-1".into(),
        request_id: String::new(),
    };
    let delivery = tokio::spawn(async move { client.deliver_caller_message(request).await });
    // Wait until the delivery's transaction is there and waiting on the lock.
    loop {
        let waiting: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A later transaction commits first; the consumer sees it and moves past it.
    create(&mut app, "acme", caller("Schmidt", "030 999")).await;
    mirror.catch_up(&app.channel).await.unwrap();
    assert_eq!(types(&mirror.applied), [T::ContactCreated]);

    sql.batch_execute("COMMIT").await.unwrap();
    delivery.await.unwrap().unwrap();
    // The delivery committed last and comes after: nothing was skipped.
    mirror.catch_up(&app.channel).await.unwrap();
    assert_eq!(
        types(&mirror.applied),
        [
            T::ContactCreated,
            T::CallNoteLinked,
            T::MessageDelivered,
            T::ContactUpdated
        ]
    );
    mirror.assert_matches(&app.channel).await;
}

#[tokio::test]
async fn a_cursor_behind_pruned_changes_expires_and_the_documented_recovery_catches_up() {
    let mut app = spawn_app().await;
    let old = create(&mut app, "acme", caller("Alt", "030 111")).await;
    let behind = cursor(&app, "acme").await;
    create(&mut app, "acme", caller("Neu", "030 222")).await;
    create(&mut app, "acme", caller("Neuer", "030 333")).await;
    // The housekeeping prunes by age, oldest first: here the first two changes.
    let sql = app.sql().await;
    sql.execute("DELETE FROM changes WHERE seq <= 2", &[])
        .await
        .unwrap();

    for stale in ["", behind.as_str()] {
        let status = list(&app, "acme", stale).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert_eq!(reason(&status), "CURSOR_EXPIRED");
        let status = changes(&app)
            .watch_changes(pb::WatchChangesRequest {
                account_id: "acme".into(),
                cursor: stale.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&status), "CURSOR_EXPIRED");
    }
    // A cursor past the account's feed (as after a restore) is no better.
    let status = list(&app, "acme", "99").await.unwrap_err();
    assert_eq!(reason(&status), "CURSOR_EXPIRED");
    // The cursor after the last pruned change still works.
    assert_eq!(list(&app, "acme", "2").await.unwrap().changes.len(), 1);

    // Recovery: the cursor, the lists, then the feed; changes in between come twice and land
    // on the same state.
    let mut mirror = Mirror::sync(&app.channel, "acme").await.unwrap();
    let mut changed = old.clone();
    changed.first_name = "Anna".into();
    update(&mut app, changed, &["first_name"]).await;
    mirror.catch_up(&app.channel).await.unwrap();
    mirror.assert_matches(&app.channel).await;
    assert_eq!(mirror.contacts[&old.contact_id].first_name, "Anna");
}

#[tokio::test]
async fn a_consumer_never_sees_another_accounts_changes() {
    let mut app = spawn_app().await;
    let mut mirror = Mirror::sync(&app.channel, "acme").await.unwrap();
    create(&mut app, "globex", caller("Fremd", "030 444")).await;
    let ours = create(&mut app, "acme", caller("Eigen", "030 555")).await;
    create(&mut app, "globex", caller("Fremder", "030 666")).await;
    mirror
        .watch(&app.channel, |m| !m.applied.is_empty())
        .await
        .unwrap();
    assert_eq!(mirror.applied.len(), 1);
    assert_eq!(mirror.applied[0].contact_id, ours.contact_id);
    mirror.catch_up(&app.channel).await.unwrap();
    assert_eq!(mirror.applied.len(), 1, "globex's changes are not acme's");
    assert_eq!(cursor(&app, "globex").await, "2");
}

#[tokio::test]
async fn streams_beyond_the_cap_are_refused_and_a_stream_ends_at_its_age_and_resumes() {
    let limits = Limits {
        max_connection_age: Some(Duration::from_secs(1)),
        watch: WatchLimits {
            max_streams: 1,
            max_age: Duration::from_millis(300),
            keepalive: Duration::from_millis(100),
            poll: Duration::from_millis(50),
            max_reads: 1,
        },
        ..Limits::default()
    };
    let app = spawn_app_custom(Authenticator::disabled(), limits).await;
    let open = changes(&app)
        .watch_changes(pb::WatchChangesRequest {
            account_id: "acme".into(),
            cursor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let refused = changes(&app)
        .watch_changes(pb::WatchChangesRequest {
            account_id: "acme".into(),
            cursor: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    drop(open);

    // A consumer that reconnects with its cursor whenever its stream ends (at its age, or with
    // the connection's) gets every change exactly once, across many streams and connections.
    let mut mirror = Mirror::sync(&app.channel, "acme").await.unwrap();
    let channel = app.channel.clone();
    let consumer = tokio::spawn(async move {
        let mut streams = 0;
        while mirror.applied.len() < 12 {
            // The cap frees when the previous stream's task ends: retry on RESOURCE_EXHAUSTED.
            match mirror.watch(&channel, |m| m.applied.len() >= 12).await {
                Ok(()) => streams += 1,
                Err(s)
                    if matches!(
                        s.code(),
                        Code::ResourceExhausted | Code::Unavailable | Code::Cancelled
                    ) =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(s) => panic!("{s:?}"),
            }
        }
        (mirror, streams)
    });
    // The writer retries a create caught in a connection's renewal with its request id, as
    // clients are told to; the id makes the retry a replay, never a second contact.
    for i in 0..12 {
        let request = pb::CreateContactRequest {
            account_id: "acme".into(),
            contact: Some(caller(&format!("Name{i}"), "030 777")),
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        let contacts = app.contacts.clone();
        let (created, _) = retrying_renewal(|| {
            let mut contacts = contacts.clone();
            let request = request.clone();
            async move { contacts.create_contact(request).await }
        })
        .await;
        created.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let (mirror, streams) = consumer.await.unwrap();
    assert!(
        streams > 1,
        "the streams ended at their age and were resumed"
    );
    mirror.assert_matches(&app.channel).await;
}

#[tokio::test]
async fn a_stream_ends_with_ok_when_the_server_shuts_down() {
    let app = spawn_app().await;
    let mut stream = changes(&app)
        .watch_changes(pb::WatchChangesRequest {
            account_id: "acme".into(),
            cursor: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let ended = tokio::spawn(async move {
        loop {
            match stream.message().await {
                Ok(Some(m)) => assert!(m.changes.is_empty()),
                other => return other,
            }
        }
    });
    app.shutdown().await;
    assert!(matches!(ended.await.unwrap(), Ok(None)), "ended with OK");
}

#[tokio::test]
async fn bad_cursors_and_page_sizes_name_their_field() {
    let app = spawn_app().await;
    for bad in ["-1", "abc", "1.5", "99999999999999999999"] {
        let status = list(&app, "acme", bad).await.unwrap_err();
        assert_eq!(bad_fields(&status), ["cursor"], "{bad}");
    }
    let status = changes(&app)
        .list_changes(pb::ListChangesRequest {
            account_id: "acme".into(),
            cursor: String::new(),
            page_size: 1001,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_fields(&status), ["page_size"]);
}

#[tokio::test]
async fn two_hundred_streams_of_one_account_sharing_their_reads_each_get_every_change() {
    let mut app = spawn_app().await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        let stream = changes(&app)
            .watch_changes(pb::WatchChangesRequest {
                account_id: "acme".into(),
                cursor: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        streams.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut seen = 0;
            while seen < 20 {
                let message = stream.message().await.unwrap().expect("the stream goes on");
                seen += message.changes.len();
            }
            seen
        }));
    }
    // Every commit wakes all 200, which share their reads at each cursor: each still gets every
    // change, and every write succeeds. (That they no longer starve the writes at 1,000 is
    // measured: BENCHMARKS.md, change feed.)
    for i in 0..20 {
        create(&mut app, "acme", caller(&format!("Name{i}"), "030 888")).await;
    }
    for s in streams {
        assert_eq!(s.await.unwrap(), 20);
    }
}
