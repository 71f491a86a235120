//! Reads from streaming replicas (`--database-replica-url`): a real replica made with
//! `pg_basebackup -R` from a private primary, its replay paused and resumed with
//! `pg_wal_replay_pause()`, and stopped midway.

use std::time::Duration;

use callers_proto::v1 as pb;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_store::ReplicaStatus;
use callers_testkit::app::{TestApp, caller, create, get, identify_by_number, note, update};
use callers_testkit::database::connect;
use callers_testkit::replication::Replicated;
use callers_testkit::spawn_app_with_replicas;

const ACCOUNT: &str = "acct-replicas";

async fn identify(
    app: &TestApp,
    number: &str,
) -> Result<pb::IdentifyCallerResponse, tonic::Status> {
    identify_by_number(app, ACCOUNT, number).await
}

fn ids(resp: &pb::IdentifyCallerResponse) -> Vec<String> {
    resp.matches
        .iter()
        .map(|m| m.contact.as_ref().unwrap().contact_id.clone())
        .collect()
}

fn replica(app: &TestApp) -> ReplicaStatus {
    app.store.replicas()[0]
}

/// Waits (at most a minute) until the replica's status, as the server measures it, is `want`.
async fn wait_until(app: &TestApp, what: &str, want: impl Fn(&ReplicaStatus) -> bool) {
    for _ in 0..3000 {
        if want(&replica(app)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the replica never became {what}: {:?}", replica(app));
}

/// What the replica itself holds as a contact's pending message.
async fn message_on(url: &str, contact_id: &str) -> Option<String> {
    let id: uuid::Uuid = contact_id.parse().unwrap();
    connect(url)
        .await
        .query_opt(
            "SELECT message_text FROM contacts WHERE contact_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .and_then(|r| r.get(0))
}

#[tokio::test]
async fn reads_use_a_replica_within_the_lag_bound_and_the_primary_beyond_it() {
    let pair = Replicated::start().await;
    let bound = Duration::from_secs(5);
    let mut app = spawn_app_with_replicas(&pair.primary_url(), &[pair.replica_url()], bound).await;
    let first = create(&mut app, ACCOUNT, caller("Adler", "+49 30 1111111")).await;
    pair.wait_caught_up().await;
    wait_until(&app, "usable", |r| r.usable).await;

    // Identification, a get and a list, all on the replica.
    let before = replica(&app).reads;
    assert_eq!(
        ids(&identify(&app, "030 1111111").await.unwrap()),
        std::slice::from_ref(&first.contact_id)
    );
    get(&mut app, ACCOUNT, &first.contact_id).await.unwrap();
    let listed = app
        .contacts
        .list_contacts(pb::ListContactsRequest {
            account_id: ACCOUNT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.contacts.len(), 1);
    assert_eq!(
        replica(&app).reads,
        before + 3,
        "the replica served the reads"
    );

    // Replay paused: once the measured lag passes the bound, the primary serves.
    pair.pause_replay().await;
    let second = create(&mut app, ACCOUNT, caller("Berger", "+49 30 2222222")).await;
    wait_until(&app, "stale", |r| !r.usable).await;
    assert!(replica(&app).lag.is_none_or(|lag| lag > bound));
    let reads = replica(&app).reads;
    let found = identify(&app, "030 2222222").await.unwrap();
    assert_eq!(
        ids(&found),
        std::slice::from_ref(&second.contact_id),
        "the primary has it"
    );
    assert_eq!(
        replica(&app).reads,
        reads,
        "the lagging replica served nothing"
    );
    assert_eq!(
        connect(&pair.replica_url())
            .await
            .query_one("SELECT count(*) FROM contacts", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1,
        "the replica really lags: it would not have found the caller"
    );

    // Replaying again, the replica is used again.
    pair.resume_replay().await;
    pair.wait_caught_up().await;
    wait_until(&app, "usable again", |r| r.usable).await;
    let reads = replica(&app).reads;
    assert_eq!(
        ids(&identify(&app, "030 2222222").await.unwrap()),
        [second.contact_id]
    );
    assert_eq!(replica(&app).reads, reads + 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_message_told_on_the_primary_never_shows_as_pending_through_a_lagging_replica() {
    let pair = Replicated::start().await;
    // A bound so wide that the paused replica keeps serving the reads.
    let bound = Duration::from_secs(600);
    let mut app = spawn_app_with_replicas(&pair.primary_url(), &[pair.replica_url()], bound).await;
    let mut told = caller("Conrad", "+49 30 3333333");
    told.caller_message = Some(pb::CallerMessage {
        text: "Die Unterlagen liegen bereit".into(),
        ..Default::default()
    });
    let told = create(&mut app, ACCOUNT, told).await;
    let mut changed = caller("Dietrich", "+49 30 4444444");
    changed.caller_message = Some(pb::CallerMessage {
        text: "Bitte zurückrufen".into(),
        ..Default::default()
    });
    let changed = create(&mut app, ACCOUNT, changed).await;
    pair.wait_caught_up().await;
    wait_until(&app, "usable", |r| r.usable).await;
    let shown = identify(&app, "030 3333333").await.unwrap();
    let pending = shown.matches[0]
        .contact
        .as_ref()
        .unwrap()
        .caller_message
        .clone();
    assert_eq!(pending, told.caller_message, "pending before it is told");

    pair.pause_replay().await;
    // Told in a call note on the primary; the other message is replaced there.
    let message_id = told.caller_message.as_ref().unwrap().message_id.clone();
    let call_note = note(
        &mut app,
        ACCOUNT,
        pb::CallNote {
            contact_id: told.contact_id.clone(),
            subject: "Rückfrage".into(),
            ..Default::default()
        },
    )
    .await
    .call_note
    .unwrap();
    app.notes
        .clone()
        .deliver_caller_message(pb::DeliverCallerMessageRequest {
            account_id: ACCOUNT.into(),
            contact_id: told.contact_id.clone(),
            message_id,
            call_note_id: call_note.call_note_id,
            agent_id: "agent-1".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let mut replaced = changed.clone();
    replaced.caller_message = Some(pb::CallerMessage {
        text: "Termin verschoben".into(),
        ..Default::default()
    });
    let replaced = update(&mut app, replaced, &["caller_message"]).await;

    let reads = replica(&app).reads;
    let shown = identify(&app, "030 3333333").await.unwrap();
    assert_eq!(ids(&shown), std::slice::from_ref(&told.contact_id));
    assert_eq!(
        shown.matches[0].contact.as_ref().unwrap().caller_message,
        None,
        "told already: not pending"
    );
    let shown = identify(&app, "030 4444444").await.unwrap();
    assert_eq!(
        shown.matches[0].contact.as_ref().unwrap().caller_message,
        replaced.caller_message,
        "the message the primary holds"
    );
    assert_eq!(
        replica(&app).reads,
        reads + 2,
        "the lagging replica served both"
    );
    assert_eq!(
        message_on(&pair.replica_url(), &told.contact_id)
            .await
            .as_deref(),
        Some("Die Unterlagen liegen bereit"),
        "the replica still holds the told message"
    );

    // A contact made on the primary a moment ago is found although the replica lacks it.
    let fresh = create(&mut app, ACCOUNT, caller("Ebert", "+49 30 5555555")).await;
    let fallbacks = replica(&app).fallbacks;
    assert_eq!(
        get(&mut app, ACCOUNT, &fresh.contact_id).await.unwrap(),
        fresh
    );
    assert_eq!(
        replica(&app).fallbacks,
        fallbacks + 1,
        "NOT_FOUND on the replica, then the primary"
    );
    pair.resume_replay().await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_replica_stopped_midway_costs_no_failed_call() {
    let mut pair = Replicated::start().await;
    let bound = Duration::from_secs(5);
    let mut app = spawn_app_with_replicas(&pair.primary_url(), &[pair.replica_url()], bound).await;
    let contact = create(&mut app, ACCOUNT, caller("Fischer", "+49 30 6666666")).await;
    pair.wait_caught_up().await;
    wait_until(&app, "usable", |r| r.usable).await;

    // Calls one after another: 50 before the stop, and 50 after it.
    let (progress, mut made) = tokio::sync::watch::channel(0usize);
    let (stopped_tx, stopped) = tokio::sync::watch::channel(false);
    let channel = app.channel.clone();
    let calls = tokio::spawn(async move {
        let mut client = IdentificationServiceClient::new(channel);
        let (mut results, mut after_stop) = (Vec::new(), 0);
        while after_stop < 50 {
            if *stopped.borrow() {
                after_stop += 1;
            }
            let result = client
                .identify_caller(pb::IdentifyCallerRequest {
                    account_id: ACCOUNT.into(),
                    caller_number: "030 6666666".into(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().matches.len());
            results.push(result);
            let _ = progress.send(results.len());
        }
        results
    });
    made.wait_for(|n| *n >= 50).await.unwrap();
    assert!(
        replica(&app).reads > 0,
        "the replica served calls before it stopped"
    );
    pair.stop_replica().await;
    stopped_tx.send(true).unwrap();
    let results = calls.await.unwrap();
    let failed: Vec<_> = results.iter().filter(|r| !matches!(r, Ok(1))).collect();
    assert!(
        failed.is_empty(),
        "calls failed or found nobody: {failed:?}"
    );
    assert!(!replica(&app).usable, "a stopped replica is left aside");
    assert_eq!(
        ids(&identify(&app, "030 6666666").await.unwrap()),
        [contact.contact_id]
    );
    app.shutdown().await;
}
