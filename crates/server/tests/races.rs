//! Exactly-once delivery under contention: many agents try to deliver every pending caller
//! message at once, each into a call note of its own. Every message must be delivered exactly
//! once (0 duplicates, 0 losses); every other attempt is MESSAGE_NOT_PENDING naming the note that
//! got it; a retry of a success with its request_id returns that success.
//!
//! CI runs 20 agents over 50 messages; `CALLERS_LONG_TESTS=1` runs 100 agents over 1,000.

use callers_testkit::app;

use callers_proto::v1 as pb;
use callers_proto::v1::call_note_service_client::CallNoteServiceClient;
use callers_testkit::app::{caller, spawn_app};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_types::StatusExt;

struct Message {
    contact_id: String,
    message_id: String,
}

#[derive(Default)]
struct AgentLog {
    /// message id → the call note it went into.
    won: HashMap<String, String>,
    lost: usize,
    /// message id → the note a refusal named.
    named: Vec<(String, String)>,
    replays: usize,
    retried: usize,
}

async fn agent(
    notes: CallNoteServiceClient<tonic::transport::Channel>,
    agent_id: String,
    order: Vec<Arc<Message>>,
    start: Arc<tokio::sync::Barrier>,
) -> AgentLog {
    let mut notes = notes;
    let mut log = AgentLog::default();
    // An unlinked note takes the first delivery and is linked by it; a new one is made after
    // each success.
    let fresh_note = |mut n: CallNoteServiceClient<_>, agent: String| async move {
        n.create_call_note(pb::CreateCallNoteRequest {
            account_id: "acme".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
            call_note: Some(pb::CallNote {
                agent_id: agent,
                text: "Anruf".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .call_note
        .unwrap()
        .call_note_id
    };
    let mut note = fresh_note(notes.clone(), agent_id.clone()).await;
    start.wait().await;
    for m in order {
        let req = pb::DeliverCallerMessageRequest {
            account_id: "acme".into(),
            contact_id: m.contact_id.clone(),
            message_id: m.message_id.clone(),
            call_note_id: note.clone(),
            agent_id: agent_id.clone(),
            request_id: uuid::Uuid::new_v4().to_string(),
        };
        // A busy pool may refuse for a moment: retry with the same request_id, as clients do.
        let mut answer = notes.deliver_caller_message(req.clone()).await;
        while let Err(s) = &answer
            && s.code() == Code::Unavailable
        {
            log.retried += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
            answer = notes.deliver_caller_message(req.clone()).await;
        }
        match answer {
            Ok(r) => {
                let r = r.into_inner();
                let n = r.call_note.unwrap();
                assert_eq!(n.call_note_id, note);
                assert_eq!(
                    n.deliveries
                        .iter()
                        .filter(|d| d.message_id == m.message_id)
                        .count(),
                    1
                );
                assert!(r.contact.unwrap().caller_message.is_none());
                // Every fifth success is retried as after a lost reply: same answer, no write.
                if log.won.len() % 5 == 0 {
                    let again = notes
                        .deliver_caller_message(req)
                        .await
                        .unwrap()
                        .into_inner();
                    assert_eq!(again.call_note.unwrap().call_note_id, note);
                    log.replays += 1;
                }
                log.won.insert(m.message_id.clone(), note.clone());
                note = fresh_note(notes.clone(), agent_id.clone()).await;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
                let info = s.get_details_error_info().expect("an ErrorInfo");
                assert_eq!(info.reason, "MESSAGE_NOT_PENDING");
                if let Some(n) = info.metadata.get("call_note_id") {
                    log.named.push((m.message_id.clone(), n.clone()));
                }
                log.lost += 1;
            }
        }
    }
    log
}

async fn race(agents: usize, messages: usize) {
    let mut app = spawn_app().await;
    let mut all = Vec::new();
    for i in 0..messages {
        let mut c = caller("Müller", &format!("030 {}", 2_000_000 + i));
        c.caller_message = Some(pb::CallerMessage {
            text: format!("Nachricht {i}"),
            ..Default::default()
        });
        let c = app::create(&mut app, "acme", c).await;
        all.push(Arc::new(Message {
            contact_id: c.contact_id,
            message_id: c.caller_message.unwrap().message_id,
        }));
    }
    let start = Arc::new(tokio::sync::Barrier::new(agents));
    let began = Instant::now();
    let tasks: Vec<_> = (0..agents)
        .map(|a| {
            // Half the agents go in the same order (they collide on every message at once),
            // the others in an order of their own.
            let mut order = all.clone();
            if a % 2 == 1 {
                let k = (a * 7) % order.len().max(1);
                order.rotate_left(k);
                if a % 4 == 1 {
                    order.reverse();
                }
            }
            tokio::spawn(agent(
                app.notes.clone(),
                format!("agent-{a}"),
                order,
                start.clone(),
            ))
        })
        .collect();
    let mut winners: HashMap<String, String> = HashMap::new();
    let mut duplicates = 0;
    let mut lost_attempts = 0;
    let mut named = Vec::new();
    let mut replays = 0;
    let mut retried = 0;
    for t in tasks {
        let log = t.await.unwrap();
        for (m, n) in log.won {
            if winners.insert(m, n).is_some() {
                duplicates += 1;
            }
        }
        lost_attempts += log.lost;
        named.extend(log.named);
        replays += log.replays;
        retried += log.retried;
    }
    let elapsed = began.elapsed();
    let missing = all
        .iter()
        .filter(|m| !winners.contains_key(&m.message_id))
        .count();
    assert_eq!(duplicates, 0, "a message was acknowledged twice");
    assert_eq!(missing, 0, "a message was never delivered");
    assert_eq!(lost_attempts, messages * (agents - 1));
    for (m, n) in &named {
        assert_eq!(&winners[m], n, "a refusal named the wrong note");
    }

    // What the database holds agrees with what the agents were told.
    let db = app.sql().await;
    let rows = db
        .query(
            "SELECT message_id::text AS message_id, call_note_id::text AS call_note_id \
             FROM message_deliveries \
             WHERE account_id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        messages,
        "deliveries stored: duplicates or losses"
    );
    let stored: HashMap<String, String> = rows
        .iter()
        .map(|r| (r.get("message_id"), r.get("call_note_id")))
        .collect();
    assert_eq!(stored, winners);
    let pending = callers_testkit::count(
        &db,
        "SELECT count(*) FROM contacts WHERE account_id = 'acme' AND message_id IS NOT NULL",
    )
    .await;
    assert_eq!(pending, 0);
    let distinct_notes: HashSet<&String> = winners.values().collect();
    assert_eq!(distinct_notes.len(), messages, "two messages in one note");
    println!(
        "[races] {agents} agents x {messages} messages: {} attempts in {elapsed:?}, \
         0 duplicates, 0 losses, {} refusals named the winning note, {replays} replays, {retried} retries after UNAVAILABLE",
        agents * messages,
        named.len()
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_agents_deliver_fifty_messages_exactly_once() {
    race(20, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_agents_deliver_a_thousand_messages_exactly_once() {
    if std::env::var("CALLERS_LONG_TESTS").is_ok_and(|v| v == "1") {
        race(100, 1_000).await;
    } else {
        println!("[races] skipped: set CALLERS_LONG_TESTS=1");
    }
}
