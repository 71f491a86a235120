//! `callers-purge` as an operator runs it: the real binary against a real PostgreSQL, rows
//! arranged with plain SQL.

use callers_proto::v1 as pb;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use callers_store::purge::PURGE_LOCK_KEY;
use callers_testkit::rows::{NOTE_SUBJECT, NOTE_TEXT, insert_note};
use callers_tests::{
    FIRST_NAME, LAST_NAME, NUMBER, Row, count, exists, finish, fresh_database, insert, insert_many,
    purge, purge_command, sql, start_purge, start_server, terminate,
};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Instant;
use tokio_postgres::Client;
use uuid::Uuid;

/// Runs one purge over a database holding only `row`; whether the contact is gone after it.
async fn is_purged(row: Row<'_>) -> bool {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let id = insert(&sql, &row).await;
    let run = purge(&db, &[]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.outcome(), "succeeded");
    let gone = !exists(&sql, id).await;
    assert_eq!(run.deleted(), u64::from(gone));
    let audited = count(&sql, "SELECT count(*) FROM purged_contacts").await;
    assert_eq!(audited, i64::from(gone));
    gone
}

#[tokio::test]
async fn a_caller_only_contact_inactive_for_181_days_is_deleted() {
    assert!(is_purged(Row::caller("acme", 181)).await);
}

#[tokio::test]
async fn a_caller_only_contact_inactive_for_179_days_is_kept() {
    assert!(!is_purged(Row::caller("acme", 179)).await);
}

#[tokio::test]
async fn a_contact_kept_permanently_is_kept() {
    let row = Row {
        keep_permanently: true,
        ..Row::caller("acme", 400)
    };
    assert!(!is_purged(row).await);
}

#[tokio::test]
async fn a_caller_with_another_category_is_kept() {
    let row = Row {
        categories: &["caller", "customer"],
        ..Row::caller("acme", 400)
    };
    assert!(!is_purged(row).await);
}

#[tokio::test]
async fn a_contact_without_the_caller_category_is_kept() {
    for categories in [&["customer"][..], &[]] {
        let row = Row {
            categories,
            ..Row::caller("acme", 400)
        };
        assert!(!is_purged(row).await, "{categories:?}");
    }
}

#[tokio::test]
async fn the_retention_flag_moves_the_cutoff() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let ten = insert(&sql, &Row::caller("acme", 10)).await;
    let eight = insert(&sql, &Row::caller("acme", 8)).await;
    let run = purge(&db, &["--retention-days", "9"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.summary()["retention_days"], 9);
    assert!(!exists(&sql, ten).await);
    assert!(exists(&sql, eight).await);
}

#[tokio::test]
async fn a_contact_edited_between_selection_and_delete_survives() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let untouched = insert(&sql, &Row::caller("acme", 200)).await;
    let edited = insert(&sql, &Row::caller("acme", 200)).await;

    // An edit in progress, as the server's UpdateContact holds it: the row is locked from the
    // read to the commit.
    let mut editor = callers_tests::sql(&db).await;
    let tx = editor.transaction().await.unwrap();
    tx.query_one(
        "SELECT 1 FROM contacts WHERE contact_id = $1 FOR UPDATE",
        &[&edited],
    )
    .await
    .unwrap();
    let run = purge(&db, &[]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.deleted(), 1);
    assert!(!exists(&sql, untouched).await);
    assert!(exists(&sql, edited).await);

    tx.execute(
        "UPDATE contacts SET last_activity_time = now(), version = version + 1 \
         WHERE contact_id = $1",
        &[&edited],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let run = purge(&db, &[]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.deleted(), 0);
    assert!(exists(&sql, edited).await);
    let audited: Vec<Uuid> = sql
        .query("SELECT contact_id FROM purged_contacts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("contact_id"))
        .collect();
    assert_eq!(audited, vec![untouched]);
}

#[tokio::test]
async fn a_run_exits_0_having_deleted_nothing_while_another_holds_the_lock() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let id = insert(&sql, &Row::caller("acme", 200)).await;
    let other_run = callers_tests::sql(&db).await;
    other_run
        .execute("SELECT pg_advisory_lock($1)", &[&PURGE_LOCK_KEY])
        .await
        .unwrap();

    let run = purge(&db, &[]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.outcome(), "skipped");
    assert_eq!(run.deleted(), 0);
    assert!(exists(&sql, id).await);
    assert_eq!(count(&sql, "SELECT count(*) FROM purge_runs").await, 0);

    other_run
        .execute("SELECT pg_advisory_unlock($1)", &[&PURGE_LOCK_KEY])
        .await
        .unwrap();
    let run = purge(&db, &[]).await;
    assert_eq!(run.outcome(), "succeeded");
    assert!(!exists(&sql, id).await);
}

#[tokio::test]
async fn of_two_runs_started_together_one_deletes_and_the_other_deletes_nothing() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    insert_many(&sql, &Row::caller("acme", 200), 60).await;
    // Small batches with pauses keep the first run busy while the second starts.
    let args = ["--batch-size", "5", "--batch-pause-ms", "50"];
    let (a, b) = (start_purge(&db, &args), start_purge(&db, &args));
    let (a, b) = tokio::join!(finish(a), finish(b));
    assert_eq!((a.code, b.code), (Some(0), Some(0)), "{a:#?} {b:#?}");
    let mut deleted = [a.deleted(), b.deleted()];
    deleted.sort();
    assert_eq!(deleted, [0, 60]);
    let idle = if a.deleted() == 0 { &a } else { &b };
    assert!(["skipped", "succeeded"].contains(&idle.outcome().as_str()));
    assert_eq!(count(&sql, "SELECT count(*) FROM contacts").await, 0);
    assert_eq!(
        count(&sql, "SELECT count(*) FROM purged_contacts").await,
        60
    );
}

#[tokio::test]
async fn a_run_killed_mid_way_is_finished_by_the_next_and_each_contact_is_audited_once() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let ids: BTreeSet<Uuid> = insert_many(&sql, &Row::caller("acme", 200), 200)
        .await
        .into_iter()
        .collect();

    let mut killed = start_purge(&db, &["--batch-size", "5", "--batch-pause-ms", "50"]);
    wait_for(&sql, "SELECT count(*) FROM purged_contacts", |n| n > 0).await;
    killed.start_kill().unwrap();
    let killed = finish(killed).await;
    assert_eq!(killed.code, None, "killed by a signal: {killed:#?}");
    let left = count(&sql, "SELECT count(*) FROM contacts").await;
    assert!(left > 0, "the run was killed before it finished");
    // The killed run's session (and lock) ends when PostgreSQL notices the closed socket.
    wait_for(&sql, PURGE_SESSIONS, |n| n == 0).await;

    let next = purge(&db, &[]).await;
    assert_eq!(next.code, Some(0), "{next:#?}");
    assert_eq!(next.outcome(), "succeeded");
    assert_eq!(next.deleted(), left as u64);
    assert_eq!(count(&sql, "SELECT count(*) FROM contacts").await, 0);
    let audited: Vec<Uuid> = sql
        .query("SELECT contact_id FROM purged_contacts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("contact_id"))
        .collect();
    assert_eq!(audited.len(), ids.len(), "each deleted contact once");
    assert_eq!(audited.into_iter().collect::<BTreeSet<_>>(), ids);

    let runs = sql
        .query(
            "SELECT outcome, deleted, end_time IS NULL AS open FROM purge_runs ORDER BY start_time",
            &[],
        )
        .await
        .unwrap();
    let runs: Vec<(String, i64, bool)> = runs
        .iter()
        .map(|r| (r.get("outcome"), r.get("deleted"), r.get("open")))
        .collect();
    assert_eq!(
        runs,
        vec![
            // Closed by the next run: it died without an outcome or an end.
            ("failed".to_owned(), 200 - left, true),
            ("succeeded".to_owned(), left, false),
        ]
    );
}

#[tokio::test]
async fn sigterm_stops_after_the_current_batch_and_the_next_run_continues() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    insert_many(&sql, &Row::caller("acme", 200), 100).await;

    let run = start_purge(&db, &["--batch-size", "5", "--batch-pause-ms", "200"]);
    wait_for(&sql, "SELECT count(*) FROM purged_contacts", |n| n > 0).await;
    terminate(&run).await;
    let run = finish(run).await;
    assert_eq!(run.code, Some(3), "{run:#?}");
    assert_eq!(run.outcome(), "interrupted");
    let deleted = run.deleted();
    assert!(deleted > 0 && deleted < 100);
    assert_eq!(deleted % 5, 0, "whole batches only");
    let audited = count(&sql, "SELECT count(*) FROM purged_contacts").await;
    assert_eq!(audited as u64, deleted);
    let recorded = sql
        .query_one(
            "SELECT outcome, deleted, end_time IS NOT NULL AS ended FROM purge_runs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(recorded.get::<_, &str>("outcome"), "interrupted");
    assert_eq!(recorded.get::<_, i64>("deleted") as u64, deleted);
    assert!(recorded.get::<_, bool>("ended"));

    let next = purge(&db, &[]).await;
    assert_eq!(next.code, Some(0), "{next:#?}");
    assert_eq!(next.deleted(), 100 - deleted);
}

#[tokio::test]
async fn a_dry_run_counts_per_account_what_the_next_real_run_deletes() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    insert_many(&sql, &Row::caller("acme", 181), 3).await;
    insert(&sql, &Row::caller("acme", 179)).await;
    insert_many(&sql, &Row::caller("beta", 365), 2).await;
    let kept = Row {
        keep_permanently: true,
        ..Row::caller("beta", 365)
    };
    insert(&sql, &kept).await;
    insert(&sql, &Row::caller("gamma", 10)).await;

    let dry = purge(&db, &["--dry-run"]).await;
    assert_eq!(dry.code, Some(0), "{dry:#?}");
    let summary = dry.summary();
    assert_eq!(summary["outcome"], "succeeded");
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["would_delete"], 5);
    assert_eq!(
        summary["would_delete_by_account"],
        json!({"acme": 3, "beta": 2})
    );
    assert_eq!(summary["deleted"], 0);
    assert_eq!(count(&sql, "SELECT count(*) FROM contacts").await, 8);
    assert_eq!(count(&sql, "SELECT count(*) FROM purge_runs").await, 0);

    let real = purge(&db, &[]).await;
    assert_eq!(real.code, Some(0), "{real:#?}");
    assert_eq!(
        real.summary()["deleted_by_account"],
        summary["would_delete_by_account"]
    );
    assert_eq!(real.deleted(), 5);
}

#[tokio::test]
async fn a_dry_run_as_of_a_later_day_counts_what_a_run_that_day_would_delete() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    insert(&sql, &Row::caller("acme", 179)).await;
    let in_two_days = (Utc::now() + Duration::days(2)).to_rfc3339();
    let later = purge(&db, &["--dry-run", "--as-of", &in_two_days]).await;
    assert_eq!(later.code, Some(0), "{later:#?}");
    assert_eq!(later.summary()["would_delete"], 1);
    let now = purge(&db, &["--dry-run"]).await;
    assert_eq!(now.summary()["would_delete"], 0);
    assert_eq!(count(&sql, "SELECT count(*) FROM contacts").await, 1);
}

#[tokio::test]
async fn a_second_real_run_deletes_nothing() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    insert_many(&sql, &Row::caller("acme", 200), 7).await;
    insert(&sql, &Row::caller("acme", 100)).await;
    let first = purge(&db, &["--batch-size", "3"]).await;
    assert_eq!(first.deleted(), 7, "{first:#?}");
    assert_eq!(first.summary()["batches"], 3);
    let second = purge(&db, &["--batch-size", "3"]).await;
    assert_eq!(second.code, Some(0), "{second:#?}");
    assert_eq!(second.outcome(), "succeeded");
    assert_eq!(second.deleted(), 0);
    assert_eq!(count(&sql, "SELECT count(*) FROM contacts").await, 1);
    assert_eq!(
        count(
            &sql,
            "SELECT count(*) FROM purge_runs WHERE outcome = 'succeeded'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn call_notes_of_deleted_contacts_stay_with_their_contact_cleared() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let gone = insert(&sql, &Row::caller("acme", 200)).await;
    let note = insert_note(&sql, "acme", gone).await;
    let run = purge(&db, &[]).await;
    assert_eq!(run.deleted(), 1, "{run:#?}");
    let row = sql
        .query_one(
            "SELECT contact_id, subject FROM call_notes WHERE call_note_id = $1",
            &[&note],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<Uuid>>("contact_id"), None);
    assert_eq!(row.get::<_, &str>("subject"), NOTE_SUBJECT);
    assert_eq!(
        count(&sql, "SELECT count(*) FROM contact_phone_numbers").await,
        0
    );
}

#[tokio::test]
async fn housekeeping_drops_expired_idempotency_keys_and_old_audit_rows() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let now = Utc::now();
    for hours in [49, 47] {
        sql.execute(
            "INSERT INTO idempotency_keys VALUES ('acme', $1, 'CreateContact', '\\x00', 'null', $2)",
            &[&Uuid::new_v4(), &(now - Duration::hours(hours))],
        )
        .await
        .unwrap();
    }
    let old_run = Uuid::new_v4();
    sql.execute(
        "INSERT INTO purge_runs (run_id, start_time, end_time, cutoff_time, retention_days, \
         dry_run, outcome, deleted) VALUES ($1, $2, $2, $2, 180, false, 'succeeded', 2)",
        &[&old_run, &(now - Duration::days(400))],
    )
    .await
    .unwrap();
    for days in [366, 364] {
        sql.execute(
            "INSERT INTO purged_contacts VALUES ('acme', $1, $2, $3, $3)",
            &[&Uuid::new_v4(), &old_run, &(now - Duration::days(days))],
        )
        .await
        .unwrap();
    }
    // Undelivered caller messages stay in the report for 30 days after they stopped pending.
    for days in [31, 29] {
        sql.execute(
            "INSERT INTO undelivered_messages (account_id, message_id, contact_id, text, \
             create_time, end_time, reason) VALUES ('acme', $1, $2, 'x', $3, $3, 1)",
            &[
                &Uuid::new_v4(),
                &Uuid::new_v4(),
                &(now - Duration::days(days)),
            ],
        )
        .await
        .unwrap();
    }
    let dry = purge(&db, &["--dry-run"]).await;
    assert_eq!(dry.code, Some(0), "{dry:#?}");
    assert_eq!(
        dry.summary()["would_housekeep"],
        serde_json::json!({
            "call_notes": 0,
            "expiry_notices": 0,
            "undelivered_messages": 1,
            "call_counts": 0,
            "changes": 0,
            "idempotency_keys": 1,
            "audit_rows": 1,
            "privacy_requests": 0
        }),
        "the dry run counts what each chore would drop"
    );
    assert_eq!(
        count(&sql, "SELECT count(*) FROM idempotency_keys").await,
        2,
        "a dry run drops nothing"
    );
    let run = purge(&db, &[]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.summary()["idempotency_keys_deleted"], 1);
    assert_eq!(run.summary()["audit_rows_deleted"], 1);
    assert_eq!(run.summary()["undelivered_messages_deleted"], 1);
    assert_eq!(
        count(&sql, "SELECT count(*) FROM undelivered_messages").await,
        1,
        "the record inside the report period stays"
    );
    assert_eq!(
        count(&sql, "SELECT count(*) FROM changes WHERE kind = 13").await,
        1,
        "the feed tells mirrors that the record left the report"
    );
    assert_eq!(
        count(&sql, "SELECT count(*) FROM idempotency_keys").await,
        1
    );
    assert_eq!(count(&sql, "SELECT count(*) FROM purged_contacts").await, 1);

    let run = purge(&db, &["--idempotency-retention-hours", "24"]).await;
    assert_eq!(run.summary()["idempotency_keys_deleted"], 1);
    assert_eq!(
        count(&sql, "SELECT count(*) FROM idempotency_keys").await,
        0
    );
}

#[tokio::test]
async fn a_long_run_reports_progress_every_few_seconds() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    insert_many(&sql, &Row::caller("acme", 200), 25).await;
    let started = Instant::now();
    let run = purge(
        &db,
        &[
            "--batch-size",
            "1",
            "--batch-pause-ms",
            "100",
            "--progress-secs",
            "1",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert!(started.elapsed().as_millis() >= 2_400);
    let progress: Vec<serde_json::Value> = run
        .stderr_lines()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON log lines"))
        .filter(|l| l["message"] == "purge progress")
        .collect();
    assert!(progress.len() >= 2, "{run:#?}");
    for line in &progress {
        assert_eq!(line["phase"], "contacts");
        assert!(line["deleted"].as_u64().unwrap() > 0);
        assert!(line["rate_per_sec"].as_f64().is_some());
        assert!(line["elapsed_secs"].as_u64().is_some());
    }
}

#[tokio::test]
async fn no_name_number_or_text_appears_in_the_output_even_at_debug() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let id = insert(&sql, &Row::caller("acme", 200)).await;
    insert_note(&sql, "acme", id).await;
    let mut cmd = purge_command(Some(db.url()), &[]);
    cmd.env("RUST_LOG", "debug");
    let run = finish(cmd.spawn().unwrap()).await;
    assert_eq!(run.deleted(), 1, "{run:#?}");
    let all = format!("{}{}", run.stdout, run.stderr);
    for secret in [
        FIRST_NAME,
        LAST_NAME,
        NUMBER,
        &NUMBER[3..],
        NOTE_SUBJECT,
        NOTE_TEXT,
    ] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

#[tokio::test]
async fn the_servers_purge_time_is_the_instant_after_which_the_worker_deletes() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    // Not a whole second, to hold the two to the microsecond.
    let last = Utc::now() - Duration::days(100) - Duration::microseconds(123_457);
    let due_later = insert(
        &sql,
        &Row {
            last_activity: last,
            ..Row::caller("acme", 0)
        },
    )
    .await;
    let kept = insert(
        &sql,
        &Row {
            keep_permanently: true,
            last_activity: last,
            ..Row::caller("acme", 0)
        },
    )
    .await;
    let server = start_server(&db).await;
    let mut contacts = ContactServiceClient::connect(server.url()).await.unwrap();
    let mut get = async |id: Uuid| {
        contacts
            .get_contact(pb::GetContactRequest {
                account_id: "acme".into(),
                contact_id: id.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
    };
    assert_eq!(get(kept).await.purge_time, None);
    let purge_time = get(due_later).await.purge_time.expect("a purge_time");
    let purge_time = DateTime::from_timestamp(purge_time.seconds, purge_time.nanos as u32).unwrap();

    let would_delete_at = async |t: DateTime<Utc>| {
        let as_of = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let run = purge(&db, &["--dry-run", "--as-of", &as_of]).await;
        assert_eq!(run.code, Some(0), "{run:#?}");
        run.summary()["would_delete"].as_u64().unwrap()
    };
    assert_eq!(would_delete_at(purge_time - Duration::seconds(1)).await, 0);
    assert_eq!(would_delete_at(purge_time).await, 0);
    assert_eq!(
        would_delete_at(purge_time + Duration::microseconds(1)).await,
        1
    );
    assert_eq!(would_delete_at(purge_time + Duration::seconds(1)).await, 1);
}

#[tokio::test]
async fn invalid_flags_exit_non_zero_with_one_line() {
    let db = fresh_database().await;
    let cases: [(&[&str], &str); 6] = [
        (&["--retention-days", "0"], "--retention-days"),
        (&["--batch-size", "0"], "--batch-size"),
        (&["--as-of", "2026-01-01T00:00:00Z"], "--dry-run"),
        (&["--dry-run", "--as-of", "tomorrow"], "--as-of"),
        (
            &["--idempotency-retention-hours", "23"],
            "--idempotency-retention-hours",
        ),
        (&["--retention-days", "soon"], "--retention-days"),
    ];
    for (args, names) in cases {
        let run = finish(purge_command(Some(db.url()), args).spawn().unwrap()).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:#?}");
        assert_eq!(run.stdout, "", "{args:?}");
        let lines = run.stderr_lines();
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(lines[0].starts_with("callers-purge: "), "{lines:?}");
        assert!(lines[0].contains(names), "{args:?}: {lines:?}");
    }
    let bad_url = ["--database-url", "postgres://purge:hunter2@db:port/callers"];
    let run = finish(purge_command(None, &bad_url).spawn().unwrap()).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(run.stderr_lines().len(), 1, "{run:#?}");
    assert!(run.stderr.contains("--database-url"), "{run:#?}");
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");

    let run = finish(purge_command(None, &[]).spawn().unwrap()).await;
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert_eq!(
        run.stderr_lines(),
        vec![
            "callers-purge: the following required arguments were not provided: \
             --database-url <DATABASE_URL>"
        ]
    );
}

#[tokio::test]
async fn an_unreachable_database_exits_non_zero_with_one_line() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{port}/callers");
    let run = finish(purge_command(Some(&url), &[]).spawn().unwrap()).await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    let lines = run.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("callers-purge: database unavailable"),
        "{lines:?}"
    );
    let summary = run.summary();
    assert_eq!(summary["outcome"], "failed");
    assert_eq!(summary["deleted"], 0);
    assert!(!format!("{run:?}").contains("hunter2"));
}

/// Sessions of `callers-purge` on the current database.
const PURGE_SESSIONS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE application_name = 'callers-purge' AND datname = current_database()";

/// Polls `query` (a count) until `done` holds, for at most 30 seconds.
async fn wait_for(sql: &Client, query: &str, done: impl Fn(i64) -> bool) {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if done(count(sql, query).await) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {query}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A stand-in Pushgateway: records every request and keeps the job's group as the real one
/// does (POST replaces the metric families it names, PUT the whole group). With a textfile
/// path beside it, for the worker's other way to publish.
struct Pushgateway {
    url: String,
    textfile: std::path::PathBuf,
    state: std::sync::Arc<std::sync::Mutex<Gateway>>,
}

#[derive(Default)]
struct Gateway {
    requests: Vec<(String, String)>,
    families: std::collections::BTreeMap<String, Vec<String>>,
}

impl Pushgateway {
    async fn start() -> Pushgateway {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = std::sync::Arc::new(std::sync::Mutex::new(Gateway::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= length || n == 0 {
                            break (head.to_owned(), body.to_owned());
                        }
                    }
                    assert!(n > 0, "connection closed mid-request");
                };
                let request_line = head.lines().next().unwrap_or_default().to_owned();
                {
                    let mut g = shared.lock().unwrap();
                    if request_line.starts_with("PUT ") {
                        g.families.clear();
                    }
                    let mut pushed = std::collections::BTreeMap::<String, Vec<String>>::new();
                    for line in body.lines().filter(|l| !l.is_empty()) {
                        let name = line
                            .strip_prefix("# HELP ")
                            .or_else(|| line.strip_prefix("# TYPE "))
                            .unwrap_or(line)
                            .split(['{', ' '])
                            .next()
                            .unwrap()
                            .to_owned();
                        pushed.entry(name).or_default().push(line.to_owned());
                    }
                    g.families.extend(pushed);
                    g.requests.push((request_line, body));
                }
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap();
            }
        });
        let textfile =
            std::env::temp_dir().join(format!("callers-purge-{}.prom", uuid::Uuid::new_v4()));
        Pushgateway {
            url,
            textfile,
            state,
        }
    }

    /// The worker's flags that publish to both.
    fn flags(&self) -> [&str; 4] {
        [
            "--pushgateway-url",
            &self.url,
            "--metrics-textfile",
            self.textfile.to_str().expect("a UTF-8 temp path"),
        ]
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The value of a series the group holds now (the sample line starting with `series`).
    fn value(&self, series: &str) -> Option<f64> {
        let g = self.state.lock().unwrap();
        g.families
            .values()
            .flatten()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

const LAST_SUCCESS: &str = "callers_purge_last_success_timestamp_seconds";
const LAST_FAILURE: &str = "callers_purge_last_failure_timestamp_seconds";

#[tokio::test]
async fn a_run_pushes_its_figures_to_a_pushgateway_and_a_textfile() {
    let db = fresh_database().await;
    let sql = sql(&db).await;
    insert_many(&sql, &Row::caller("acme", 200), 4).await;
    let gateway = Pushgateway::start().await;
    let file = gateway.textfile.clone();
    let metrics = gateway.flags();
    let run = purge(&db, &metrics).await;
    assert_eq!(run.deleted(), 4, "{run:#?}");
    let requests = gateway.requests();
    assert_eq!(requests.len(), 1);
    let (line, body) = &requests[0];
    assert!(
        line.starts_with("POST /metrics/job/callers-purge "),
        "{line}"
    );
    assert!(body.contains("callers_purge_deleted_contacts 4"), "{body}");
    assert!(body.contains("callers_purge_outcome{outcome=\"succeeded\"} 1"));
    assert!(!body.contains(LAST_FAILURE), "{body}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("callers_purge_deleted_contacts 4"));
    assert!(!text.contains("acme"), "no account ids in metrics");
    let _ = std::fs::remove_file(&file);
}

/// The documented alert watches `time() - last_success`: a failed run must raise it, so the
/// series must survive that run, and the failure must be visible beside it.
#[tokio::test]
async fn after_a_failed_run_the_last_success_is_still_there_and_the_failure_is_newer() {
    let db = fresh_database().await;
    let gateway = Pushgateway::start().await;
    let file = gateway.textfile.clone();
    let metrics = gateway.flags();
    let ok = purge(&db, &metrics).await;
    assert_eq!(ok.code, Some(0), "{ok:#?}");
    let success = gateway.value(LAST_SUCCESS).expect("a success timestamp");
    assert_eq!(gateway.value(LAST_FAILURE), None);

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = format!("postgres://postgres@127.0.0.1:{port}/callers");
    let mut args = vec!["--database-url", &unreachable];
    args.extend(metrics);
    let failed = finish(purge_command(None, &args).spawn().unwrap()).await;
    assert_eq!(failed.code, Some(1), "{failed:#?}");

    let requests = gateway.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests.iter().all(|(l, _)| l.starts_with("POST ")),
        "{requests:?}"
    );
    assert!(!requests[1].1.contains(LAST_SUCCESS), "{}", requests[1].1);
    assert_eq!(gateway.value(LAST_SUCCESS), Some(success));
    let failure = gateway.value(LAST_FAILURE).expect("a failure timestamp");
    assert!(failure >= success);
    assert_eq!(
        gateway.value("callers_purge_outcome{outcome=\"failed\"}"),
        Some(1.0)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("\n{LAST_SUCCESS} {success}")),
        "{text}"
    );
    assert!(text.contains(&format!("\n{LAST_FAILURE} ")), "{text}");

    let again = purge(&db, &metrics).await;
    assert_eq!(again.code, Some(0), "{again:#?}");
    assert!(gateway.value(LAST_SUCCESS).unwrap() >= failure);
    assert_eq!(
        gateway.value("callers_purge_outcome{outcome=\"succeeded\"}"),
        Some(1.0)
    );
    let _ = std::fs::remove_file(&file);
}

/// An operator follows a run in the trace backend: the run, its batches and their statements,
/// with no name or number of the contacts it deleted.
#[tokio::test]
async fn a_run_is_traced_with_its_batches_and_statements_when_a_collector_is_set() {
    use callers_testkit::otlp::{Collector, names};
    let db = fresh_database().await;
    let sql = sql(&db).await;
    insert_many(&sql, &Row::caller("acme", 200), 3).await;
    let (collector, endpoint) = Collector::start().await;
    let mut command = purge_command(Some(db.url()), &[]);
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "50");
    let run = finish(command.spawn().unwrap()).await;
    assert_eq!(run.deleted(), 3, "{run:#?}");
    // The worker exports what is left before it exits.
    let spans = collector
        .wait(|spans| spans.iter().any(|s| s.name == "purge run"))
        .await;
    let run_span = spans
        .iter()
        .find(|s| s.name == "purge run")
        .unwrap_or_else(|| panic!("{:#?}", names(&spans)));
    let batches: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "purge batch" && s.parent_span_id == run_span.span_id)
        .collect();
    assert!(!batches.is_empty(), "{:#?}", names(&spans));
    let statements = spans
        .iter()
        .filter(|s| batches.iter().any(|b| b.span_id == s.parent_span_id));
    assert!(statements.count() > 0, "{:#?}", names(&spans));
    let exported = format!("{spans:?}");
    for secret in [FIRST_NAME, LAST_NAME, NUMBER] {
        assert!(!exported.contains(secret), "{secret} in the spans");
    }
}
