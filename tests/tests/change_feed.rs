//! The change feed end to end, as a CRM lives with it: concurrent writers in several accounts
//! (some setting caller messages that expire within moments, which the servers' sweeps turn
//! into undelivered records), purge runs of the real worker and a restart of the real server in
//! the middle, while a
//! consumer per account follows `WatchChanges` into a mirror, reconnecting with its last
//! cursor. At the end every mirror equals the account's lists field by field, and every change
//! was applied once, gap-free and in commit order ([`Mirror::apply`] checks each one). Then
//! the feed's housekeeping: `CONTACT_EXPIRING` once per purge time, and pruning that expires a
//! cursor.

use callers_proto::v1 as pb;
use callers_proto::v1::call_note_service_client::CallNoteServiceClient;
use callers_proto::v1::change_service_client::ChangeServiceClient;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use callers_testkit::mirror::{Mirror, seq};
use callers_tests::{Row, TestDatabase, fresh_database, insert_many, purge, sql, start_server};
use prost_types::FieldMask;
use std::time::Duration;
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

const ACCOUNTS: [&str; 3] = ["acme", "globex", "initech"];

/// The server, sweeping expired messages every second with a grace of 1 s + 5 s.
async fn sweeping_server(db: &TestDatabase) -> callers_tests::Server {
    callers_testkit::Launch::server()
        .database(db.url())
        .args(["--message-sweep-secs", "1", "--request-timeout-ms", "1000"])
        .serve()
        .await
        .expect("start callers-server")
}

async fn scalar_count(sql: &tokio_postgres::Client, query: &str) -> i64 {
    sql.query_one(query, &[]).await.unwrap().get(0)
}

async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned()).unwrap().connect_lazy()
}

/// A small deterministic generator, so a failing run can be repeated with its seed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn new_caller(d: &mut Dice) -> pb::Contact {
    let names = ["Müller", "Meier", "Schmidt", "Yılmaz", "Nowak", "Rossi"];
    pb::Contact {
        categories: vec!["caller".into()],
        first_name: ["Anna", "Hans", "Eva"][d.roll(3) as usize].into(),
        last_name: names[d.roll(names.len() as u64) as usize].into(),
        phone_numbers: vec![pb::PhoneNumber {
            number: format!("030 {}", 100_000 + d.roll(50)),
            ..Default::default()
        }],
        caller_message: (d.roll(2) == 0).then(|| pb::CallerMessage {
            text: "Bitte zurückrufen".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One writer: random creates, updates, deletes, notes and deliveries in random accounts
/// against whichever server `server` points at; failures a client must expect (a contact
/// deleted meanwhile, a message delivered by another, the server restarting) are skipped.
async fn writer(mut d: Dice, server: watch::Receiver<String>, ops: usize) {
    let mut done = 0;
    while done < ops {
        let url = server.borrow().clone();
        let ch = channel(&url).await;
        let mut contacts = ContactServiceClient::new(ch.clone());
        let mut notes = CallNoteServiceClient::new(ch);
        let account = ACCOUNTS[d.roll(3) as usize].to_owned();
        let known = contacts
            .list_contacts(pb::ListContactsRequest {
                account_id: account.clone(),
                page_size: 50,
                ..Default::default()
            })
            .await;
        let Ok(known) = known else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let known = known.into_inner().contacts;
        let pick = (!known.is_empty()).then(|| known[d.roll(known.len() as u64) as usize].clone());
        let result: Result<(), tonic::Status> = match (d.roll(6), pick) {
            (0, _) | (_, None) => contacts
                .create_contact(pb::CreateContactRequest {
                    account_id: account.clone(),
                    contact: Some(new_caller(&mut d)),
                    request_id: String::new(),
                })
                .await
                .map(drop),
            (1, Some(mut c)) => {
                c.first_name = format!("Name{}", d.roll(1000));
                // Some messages expire within moments: the servers' sweeps move them into
                // undelivered records while the writers and the purge run.
                let expire_time = (d.roll(3) == 0).then(|| {
                    let at = chrono::Utc::now()
                        + chrono::Duration::milliseconds(200 + d.roll(1300) as i64);
                    prost_types::Timestamp {
                        seconds: at.timestamp(),
                        nanos: at.timestamp_subsec_nanos() as i32,
                    }
                });
                c.caller_message = (d.roll(2) == 0).then(|| pb::CallerMessage {
                    text: "Neue Nachricht".into(),
                    expire_time,
                    ..Default::default()
                });
                contacts
                    .update_contact(pb::UpdateContactRequest {
                        account_id: account.clone(),
                        contact: Some(c),
                        update_mask: Some(FieldMask {
                            paths: vec!["first_name".into(), "caller_message".into()],
                        }),
                        etag: String::new(),
                    })
                    .await
                    .map(drop)
            }
            (2, Some(c)) => contacts
                .delete_contact(pb::DeleteContactRequest {
                    account_id: account.clone(),
                    contact_id: c.contact_id,
                    etag: String::new(),
                })
                .await
                .map(drop),
            (3, Some(c)) => notes
                .create_call_note(pb::CreateCallNoteRequest {
                    account_id: account.clone(),
                    call_note: Some(pb::CallNote {
                        caller_first_name: c.first_name.clone(),
                        caller_last_name: c.last_name.clone(),
                        caller_number: c
                            .phone_numbers
                            .first()
                            .map(|p| p.number.clone())
                            .unwrap_or_default(),
                        subject: "Anruf".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await
                .map(drop),
            (_, Some(c)) => match c.caller_message.clone() {
                Some(m) => {
                    let note = notes
                        .create_call_note(pb::CreateCallNoteRequest {
                            account_id: account.clone(),
                            call_note: Some(pb::CallNote {
                                contact_id: c.contact_id.clone(),
                                subject: "Nachricht ausgerichtet".into(),
                                ..Default::default()
                            }),
                            request_id: String::new(),
                        })
                        .await;
                    match note {
                        Ok(n) => notes
                            .deliver_caller_message(pb::DeliverCallerMessageRequest {
                                account_id: account.clone(),
                                contact_id: c.contact_id,
                                message_id: m.message_id,
                                call_note_id: n.into_inner().call_note.unwrap().call_note_id,
                                agent_id: "agent-7".into(),
                                request_id: uuid::Uuid::new_v4().to_string(),
                            })
                            .await
                            .map(drop),
                        Err(e) => Err(e),
                    }
                }
                None => Ok(()),
            },
        };
        match result {
            Ok(()) => done += 1,
            Err(s)
                if matches!(
                    s.code(),
                    Code::NotFound
                        | Code::FailedPrecondition
                        | Code::Aborted
                        | Code::Unavailable
                        | Code::Unknown
                        | Code::Cancelled
                ) => {}
            Err(s) => panic!("writer: {s:?}"),
        }
    }
}

/// A consumer: syncs, then follows the feed through server restarts until told to stop and
/// caught up with the account's cursor at that time.
async fn consumer(
    account: &'static str,
    server: watch::Receiver<String>,
    mut stop: watch::Receiver<bool>,
) -> Mirror {
    let mut mirror = loop {
        let url = server.borrow().clone();
        match Mirror::sync(&channel(&url).await, account).await {
            Ok(m) => break m,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    loop {
        let url = server.borrow().clone();
        let ch = channel(&url).await;
        if *stop.borrow() {
            // The writers are done: catch up to the end and finish.
            if mirror.catch_up(&ch).await.is_ok() {
                return mirror;
            }
        } else {
            let watching = mirror.watch(&ch, |_| false);
            tokio::select! {
                ended = watching => match ended {
                    Ok(()) => {}
                    Err(s) if matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled) => {}
                    Err(s) => panic!("consumer of {account}: {s:?}"),
                },
                _ = stop.changed() => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[tokio::test]
async fn a_mirror_kept_from_the_feed_equals_the_account_through_purges_and_a_restart() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    // Contacts for the purge to delete, some of them during the run.
    for account in ACCOUNTS {
        insert_many(&sql, &Row::caller(account, 200), 30).await;
        insert_many(&sql, &Row::caller(account, 170), 5).await;
    }
    let first = sweeping_server(&db).await;
    let (server_tx, server) = watch::channel(first.url());
    let (stop_tx, stop) = watch::channel(false);
    let consumers: Vec<_> = ACCOUNTS
        .iter()
        .map(|a| tokio::spawn(consumer(a, server.clone(), stop.clone())))
        .collect();
    let seed: u64 = std::env::var("CALLERS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe);
    println!("[change_feed] seed {seed} (CALLERS_TEST_SEED repeats a run)");
    let writers = |round: u64| -> Vec<_> {
        (0..4)
            .map(|w| {
                let d = Dice(seed ^ (round * 7919 + w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                tokio::spawn(writer(d, server.clone(), 40))
            })
            .collect()
    };

    let round = writers(1);
    let run = purge(&db, &[]).await;
    assert_eq!(run.outcome(), "succeeded", "{run:#?}");
    for w in round {
        w.await.unwrap();
    }
    // A restart: streams end, consumers reconnect to the new server with their cursors.
    first.stop().await.unwrap();
    let second = sweeping_server(&db).await;
    server_tx.send(second.url()).unwrap();
    for account in ACCOUNTS {
        insert_many(&sql, &Row::caller(account, 300), 10).await;
    }
    let round = writers(2);
    let run = purge(&db, &[]).await;
    assert_eq!(run.outcome(), "succeeded", "{run:#?}");
    for w in round {
        w.await.unwrap();
    }
    // One message expires whatever the dice did (theirs may all be replaced or purged first).
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(300);
    let mut expiring = new_caller(&mut Dice(seed));
    expiring.caller_message = Some(pb::CallerMessage {
        text: "Bitte zurückrufen".into(),
        expire_time: Some(prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: at.timestamp_subsec_nanos() as i32,
        }),
        ..Default::default()
    });
    ContactServiceClient::new(channel(&second.url()).await)
        .create_contact(pb::CreateContactRequest {
            account_id: ACCOUNTS[0].into(),
            contact: Some(expiring),
            request_id: String::new(),
        })
        .await
        .unwrap();
    // Every expiring message swept before the mirrors are compared (a sweep after the
    // consumers stop would be a change they never saw).
    while scalar_count(
        &sql,
        "SELECT count(*) FROM contacts WHERE message_expire_time IS NOT NULL",
    )
    .await
        > 0
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(true).unwrap();

    let ch = channel(&second.url()).await;
    let mut purged = 0;
    let mut expired = 0;
    for (consumer, account) in consumers.into_iter().zip(ACCOUNTS) {
        let mirror = consumer.await.unwrap();
        mirror.assert_matches(&ch).await;
        let head = ChangeServiceClient::new(ch.clone())
            .get_change_cursor(pb::GetChangeCursorRequest {
                account_id: account.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .cursor;
        assert_eq!(mirror.cursor, head, "{account}: the mirror is at the head");
        purged += mirror
            .applied
            .iter()
            .filter(|c| c.delete_reason == pb::DeleteReason::Purge as i32)
            .count();
        expired += mirror
            .applied
            .iter()
            .filter(|c| c.r#type == pb::ChangeType::MessageExpired as i32)
            .count();
        println!(
            "[change_feed] {account}: {} changes applied, {} contacts, {} notes, {} undelivered",
            mirror.applied.len(),
            mirror.contacts.len(),
            mirror.notes.len(),
            mirror.undelivered.len()
        );
    }
    assert!(expired > 0, "expired messages are in the feed");
    // The 30 + 10 per account inactive for longer than the retention, unless a writer
    // touched one first.
    assert!(
        purged > 60,
        "the purge's deletions are in the feed ({purged})"
    );
    second.stop().await.unwrap();
}

async fn changes_of(
    db: &TestDatabase,
    account: &str,
    cursor: &str,
) -> Result<Vec<pb::Change>, tonic::Status> {
    let server = start_server(db).await;
    let mut client = ChangeServiceClient::new(channel(&server.url()).await);
    let page = client
        .list_changes(pb::ListChangesRequest {
            account_id: account.into(),
            cursor: cursor.into(),
            page_size: 1000,
        })
        .await
        .map(|r| r.into_inner().changes);
    server.stop().await.unwrap();
    page
}

#[tokio::test]
async fn a_contact_near_its_purge_time_is_announced_once_per_purge_time() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let near = insert_many(&sql, &Row::caller("acme", 170), 2).await;
    insert_many(&sql, &Row::caller("acme", 100), 1).await;
    let mut kept = Row::caller("acme", 170);
    kept.keep_permanently = true;
    insert_many(&sql, &kept, 1).await;

    let run = purge(&db, &[]).await;
    assert_eq!(run.summary()["expiry_notices_deleted"], 2, "{run:#?}");
    let announced = changes_of(&db, "acme", "").await.unwrap();
    assert_eq!(announced.len(), 2);
    for c in &announced {
        assert_eq!(c.r#type, pb::ChangeType::ContactExpiring as i32);
        assert!(near.iter().any(|id| id.to_string() == c.contact_id));
        assert!(c.purge_time.is_some() && c.resource.is_none());
    }
    // Once per purge time: a second run announces nothing again.
    purge(&db, &[]).await;
    assert_eq!(changes_of(&db, "acme", "").await.unwrap().len(), 2);
    // Activity moves the purge time; when the new one comes near, it is announced again.
    sql.execute(
        "UPDATE contacts SET last_activity_time = last_activity_time + interval '1 day' \
         WHERE contact_id = $1",
        &[&near[0]],
    )
    .await
    .unwrap();
    purge(&db, &["--expiry-notice-days", "14"]).await;
    let all = changes_of(&db, "acme", "").await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].contact_id, near[0].to_string());
    assert!(seq(&all[2].cursor) == 3);
}

#[tokio::test]
async fn the_purge_prunes_old_changes_and_a_cursor_behind_them_expires() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    insert_many(&sql, &Row::caller("acme", 200), 3).await;
    purge(&db, &[]).await;
    assert_eq!(changes_of(&db, "acme", "").await.unwrap().len(), 3);
    // Age the first two changes past the feed's keeping time.
    sql.execute(
        "UPDATE changes SET change_time = change_time - interval '8 days' WHERE seq <= 2",
        &[],
    )
    .await
    .unwrap();
    let run = purge(&db, &["--change-retention-days", "7"]).await;
    assert_eq!(run.summary()["changes_deleted"], 2, "{run:#?}");
    let status = changes_of(&db, "acme", "1").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(callers_testkit::app::reason(&status), "CURSOR_EXPIRED");
    assert_eq!(changes_of(&db, "acme", "2").await.unwrap().len(), 1);
}
