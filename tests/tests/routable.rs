//! Statements routable by account: every statement the service runs on a table that has an
//! `account_id` column (a tenant table) names the account, so those tables can be distributed
//! by `account_id` (Citus) and each statement sent to one shard.
//!
//! The test runs the service against a private PostgreSQL with `pg_stat_statements`
//! (`track = all`, so statements inside trigger and SQL functions count too): every RPC of
//! `proto/callers/v1` for two accounts (and a third that is offboarded), the server's own
//! background work (message sweep, call-count flush) until their effects show, the restore
//! runbook's `callers-server reapply-erasures`, and the `callers-purge` binary, a dry run and a
//! real run. Then it parses every recorded statement with PostgreSQL's own parser (`pg_query`,
//! libpg_query; a bare PL/pgSQL expression is parsed as PL/pgSQL does) and checks each
//! reference to a tenant table (the tables of the schema with an `account_id` column, read
//! from the catalog, partitions left out):
//!
//! * In a SELECT, UPDATE, DELETE or MERGE, at any depth (CTEs, sub-selects, `INSERT … SELECT`),
//!   the reference's `account_id` must be equated (`=`, `= ANY (…)`, `IN (…)`, row equality),
//!   in a top-level AND term of the WHERE clause or of a JOIN's ON, or by `USING (account_id)`,
//!   to a value: a parameter, a constant, an expression, a column of a CTE, sub-select,
//!   function or outer row (`NEW`, `OLD`; each of those is checked where it is defined), or to
//!   the `account_id` of another reference that is itself so constrained. Equating two
//!   references with each other alone (`n.account_id = h.account_id`) constrains neither. A
//!   reference is found by its alias or name, looking outwards through enclosing statements;
//!   an unqualified `account_id` belongs to the tenant tables of the nearest FROM list.
//! * An INSERT's column list must name `account_id` (or be absent: every column is given).
//! * Any other mention of a tenant table (COPY, TRUNCATE, LOCK, a construct the walk does not
//!   know) fails: what the check does not understand, it does not pass.
//!
//! A statement fails when one of its tenant references does, unless it carries a marker of
//! [`ALLOWED`], each with its reason. Statements on no tenant table (SET, BEGIN, advisory
//! locks, catalog reads) pass. The test also fails when `pg_stat_statements` evicted entries,
//! when a tenant table was touched by no statement (a flow stopped doing its work), or when an
//! allow-list entry matched nothing. Offenders are printed in full, as `pg_stat_statements`
//! normalised them (constants replaced by `$n`, so no personal data).
//!
//! `cargo test -p callers-tests --test routable`; building `pg_query` needs libclang
//! (`apt-get install libclang-dev`).

use callers_devdb::PrivatePostgres;
use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_proto::v1::privacy_service_client::PrivacyServiceClient;
use callers_testkit::app::{
    TestApp, caller, contact_count, create, get, note, spawn_app_against_with_background, update,
};
use callers_testkit::database::connect;
use callers_testkit::mirror::{Mirror, seq};
use callers_testkit::{Launch, scalar};
use callers_tests::{Row, finish, insert, purge_command};
use pg_query::ParserOptions;
use pg_query::protobuf::{AExprKind, BoolExprType, SetOperation, SubLinkType};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tonic::transport::Channel;

/// Statements allowed to read across accounts: a marker they carry in their SQL (a comment),
/// and why. In Citus each is a multi-shard SELECT, which works, only not on one shard.
const ALLOWED: &[(&str, &str)] = &[(
    callers_store::purge::ACCOUNTS_WITH_WORK,
    "finders of work across accounts: the purge's and its chores' (which accounts have due \
     rows, and how many: the dry run's counts) and reapply-erasures' (the erasures since a \
     backup); every statement after them names its account",
)];

const ACCOUNTS: [&str; 2] = ["acme", "globex"];
/// The account offboarded with `DeleteAccountData`.
const OFFBOARDED: &str = "umbrella";
const DATABASE: &str = "routable";
const SETTINGS: &[(&str, &str)] = &[
    ("shared_preload_libraries", "pg_stat_statements"),
    ("pg_stat_statements.track", "all"),
    // Far above the few hundred distinct statements of the flows: nothing may be evicted.
    ("pg_stat_statements.max", "20000"),
    ("pg_stat_statements.track_utility", "on"),
];
/// How often the server sweeps messages and writes call counts here.
const BACKGROUND_EVERY: Duration = Duration::from_millis(50);

#[tokio::test]
async fn every_statement_on_a_tenant_table_names_its_account() {
    // A cluster of its own: the preloaded library needs a server started with it.
    let dir = std::env::temp_dir().join(format!(
        "callers-routable-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let cluster = PrivatePostgres::start_for_tests_with(&dir, None, SETTINGS)
        .await
        .expect("a private PostgreSQL with pg_stat_statements");
    let (server, database) = (cluster.url(), cluster.url_for(DATABASE));
    let outcome = tokio::spawn(async move { run(&server, &database).await }).await;
    cluster.stop().await.expect("stop the private PostgreSQL");
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn run(server: &str, database: &str) {
    let admin = connect(server).await;
    // The extension's view lives in the admin database, so the test's own reads of it are not
    // recorded among the service's statements.
    for ddl in [
        &format!("CREATE DATABASE {DATABASE}"),
        "CREATE EXTENSION pg_stat_statements",
    ] {
        admin.batch_execute(ddl).await.expect(ddl);
    }
    callers_store::migrate(database).await.expect("migrations");
    let sql = connect(database).await;
    let tenant = tenant_tables(&sql).await;
    // Callers long inactive, for the purge to delete in each account.
    for account in ACCOUNTS {
        insert(&sql, &Row::caller(account, 200)).await;
    }
    // From here on only the service's statements: the migrations' and the fixtures' go.
    admin
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();

    let mut app = spawn_app_against_with_background(database, BACKGROUND_EVERY).await;
    service_flows(&mut app).await;
    app.shutdown().await;
    reapply_erasures(database).await;
    purge_runs(database).await;

    let evicted: i64 = scalar(&admin, "SELECT dealloc FROM pg_stat_statements_info", &[]).await;
    assert_eq!(
        evicted, 0,
        "pg_stat_statements evicted entries: raise pg_stat_statements.max"
    );
    let statements: BTreeSet<String> = admin
        .query(
            "SELECT s.query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = $1",
            &[&DATABASE],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("query"))
        .collect();
    report(&statements, &tenant);
}

/// The tables of the schema with an `account_id` column, without partitions (statements name
/// the partitioned table).
async fn tenant_tables(sql: &tokio_postgres::Client) -> BTreeSet<String> {
    let tables: BTreeSet<String> = sql
        .query(
            "SELECT c.relname::text AS name FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_attribute a ON a.attrelid = c.oid \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND a.attname = 'account_id' AND NOT a.attisdropped",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("name"))
        .collect();
    assert!(tables.contains("contacts"), "{tables:?}");
    tables
}

/// Judges every statement; prints and fails on the offenders, the unused allow-list entries
/// and the tenant tables no statement touched.
fn report(statements: &BTreeSet<String>, tenant: &BTreeSet<String>) {
    let mut touched: BTreeMap<String, usize> = tenant.iter().map(|t| (t.clone(), 0)).collect();
    let mut allowed_used = vec![0; ALLOWED.len()];
    let mut on_tenant_tables = 0;
    let mut offenders = Vec::new();
    for query in statements {
        let verdict = match judge(query, tenant) {
            Ok(v) => v,
            Err(e) => {
                offenders.push(format!("unparsable ({e}):\n{query}"));
                continue;
            }
        };
        if verdict.touched.is_empty() {
            continue;
        }
        on_tenant_tables += 1;
        for t in &verdict.touched {
            *touched.entry(t.clone()).or_default() += 1;
        }
        if verdict.unconstrained.is_empty() {
            continue;
        }
        match ALLOWED
            .iter()
            .position(|(marker, _)| query.contains(marker))
        {
            Some(i) => allowed_used[i] += 1,
            None => offenders.push(format!(
                "not constrained by account_id: {}\n{query}",
                verdict.unconstrained.join(", ")
            )),
        }
    }
    eprintln!(
        "{} statements recorded, {on_tenant_tables} on tenant tables, {} allowed, {} offending; \
         statements per tenant table: {touched:?}",
        statements.len(),
        allowed_used.iter().sum::<usize>(),
        offenders.len(),
    );
    for (i, offender) in offenders.iter().enumerate() {
        eprintln!("\n--- offender {} ---\n{offender}", i + 1);
    }
    let untouched: Vec<&String> = touched
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(t, _)| t)
        .collect();
    let unused: Vec<&str> = ALLOWED
        .iter()
        .zip(&allowed_used)
        .filter(|(_, n)| **n == 0)
        .map(|((marker, _), _)| *marker)
        .collect();
    assert!(
        untouched.is_empty(),
        "no statement touched {untouched:?}: a flow stopped doing its work"
    );
    assert!(
        unused.is_empty(),
        "allow-list entries that match no statement: {unused:?}"
    );
    assert!(
        offenders.is_empty(),
        "{} statements are not routable by account:\n\n{}",
        offenders.len(),
        offenders.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The flows: every RPC with valid input, the background work and the purge.

async fn service_flows(app: &mut TestApp) {
    let mut mirrors = Vec::new();
    for account in ACCOUNTS {
        mirrors.push(Mirror::sync(&app.channel, account).await.unwrap());
    }
    for account in ACCOUNTS {
        call_handling(app, account).await;
        contacts(app, account).await;
        call_notes(app, account).await;
        privacy(app, account).await;
    }
    expiring_messages(app).await;
    call_counts(app).await;
    for mut mirror in mirrors {
        follow_the_feed(app, &mut mirror).await;
    }
    offboarding(app).await;
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

async fn call_handling(app: &TestApp, account: &str) {
    let mut client = CallHandlingServiceClient::new(app.channel.clone());
    let set = client
        .update_call_handling(pb::UpdateCallHandlingRequest {
            call_handling: Some(pb::CallHandling {
                account_id: account.into(),
                conversation_style: pb::ConversationStyle::Formal as i32,
                caller_id_transmission: true,
                phone_region: "DE".into(),
                employees: vec![pb::EmployeeCallHandling {
                    employee_id: "emp-1".into(),
                    conversation_style: pb::ConversationStyle::Informal as i32,
                    caller_id_transmission: Some(false),
                }],
                time_zone: "Europe/Berlin".into(),
                own_numbers: vec![pb::OwnNumber {
                    number: "030 1234560".into(),
                    e164: String::new(),
                }],
                // Every note of the flows is older than this when the purge runs.
                call_note_retention_days: 90,
                ..Default::default()
            }),
            update_mask: mask(&[
                "conversation_style",
                "caller_id_transmission",
                "phone_region",
                "employees",
                "time_zone",
                "own_numbers",
                "call_note_retention_days",
            ]),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let read = client
        .get_call_handling(pb::GetCallHandlingRequest {
            account_id: account.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.etag, set.etag);
}

async fn identify(app: &TestApp, account: &str, employee: &str, number: &str, name: &str) {
    IdentificationServiceClient::new(app.channel.clone())
        .identify_caller(pb::IdentifyCallerRequest {
            account_id: account.into(),
            employee_id: employee.into(),
            caller_number: number.into(),
            caller_name: name.into(),
            max_results: 5,
        })
        .await
        .unwrap();
}

async fn contacts(app: &mut TestApp, account: &str) {
    let mut muller = caller("Müller", "030 1234567");
    muller.caller_message = Some(pb::CallerMessage {
        text: "Die Unterlagen sind angekommen".into(),
        ..Default::default()
    });
    muller.handling_instruction = "Immer an Frau Lange durchstellen".into();
    muller.instructions = vec![pb::Instruction {
        r#type: pb::InstructionType::PutThrough as i32,
        employee_id: "emp-1".into(),
    }];
    let request = pb::CreateContactRequest {
        account_id: account.into(),
        contact: Some(muller),
        request_id: request_id(),
    };
    let made = app
        .contacts
        .create_contact(request.clone())
        .await
        .unwrap()
        .into_inner();
    let replayed = app
        .contacts
        .create_contact(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.contact_id, made.contact_id, "a retry replays");
    let mut renamed = get(app, account, &made.contact_id).await.unwrap();
    renamed.first_name = "Johann".into();
    let renamed = update(app, renamed, &["first_name"]).await;
    // A new message replaces the untold one: an undelivered record.
    let mut replaced = renamed.clone();
    replaced.caller_message = Some(pb::CallerMessage {
        text: "Bitte zurückrufen".into(),
        ..Default::default()
    });
    update(app, replaced, &["caller_message"]).await;

    let gone = create(app, account, caller("Weg", "030 5550000")).await;
    app.contacts
        .delete_contact(pb::DeleteContactRequest {
            account_id: account.into(),
            contact_id: gone.contact_id.clone(),
            etag: gone.etag.clone(),
        })
        .await
        .unwrap();

    assert!(contact_count(app, account).await >= 2);
    let expiring = app
        .contacts
        .list_expiring_contacts(pb::ListExpiringContactsRequest {
            account_id: account.into(),
            within_days: 365,
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!expiring.contacts.is_empty());
    app.contacts
        .list_expiring_contacts(pb::ListExpiringContactsRequest {
            account_id: account.into(),
            within_days: 365,
            page_size: 1,
            page_token: expiring.next_page_token,
        })
        .await
        .unwrap();

    for request in [
        pb::SearchContactsRequest {
            query: "Johann Müller".into(),
            ..Default::default()
        },
        pb::SearchContactsRequest {
            phone_number: "+4930".into(),
            category: "caller".into(),
            ..Default::default()
        },
        pb::SearchContactsRequest {
            phone_number: "030 1234567".into(),
            ..Default::default()
        },
        pb::SearchContactsRequest {
            origin: pb::Origin::ExpectedCall as i32,
            page_size: 1,
            ..Default::default()
        },
    ] {
        let mut request = pb::SearchContactsRequest {
            account_id: account.into(),
            ..request
        };
        let page = app
            .contacts
            .search_contacts(request.clone())
            .await
            .unwrap()
            .into_inner();
        assert!(!page.contacts.is_empty(), "{request:?}");
        if !page.next_page_token.is_empty() {
            request.page_token = page.next_page_token;
            app.contacts.search_contacts(request).await.unwrap();
        }
    }

    identify(app, account, "", "030 1234567", "").await;
    identify(app, account, "", "", "Johann Müller").await;
    identify(app, account, "emp-1", "+49 30 1234567", "Müller").await;
    // An own number, and a caller nobody knows.
    identify(app, account, "", "030 1234560", "").await;
    identify(app, account, "emp-1", "030 9999999", "").await;
}

async fn call_notes(app: &mut TestApp, account: &str) {
    let request = pb::CreateCallNoteRequest {
        account_id: account.into(),
        request_id: request_id(),
        call_note: Some(pb::CallNote {
            caller_last_name: "Müller".into(),
            caller_number: "030 1234567".into(),
            subject: "Rückruf".into(),
            text: "Ruft wegen der Unterlagen an".into(),
            employee_id: "emp-1".into(),
            agent_id: "agent-1".into(),
            ..Default::default()
        }),
    };
    let made = app
        .notes
        .create_call_note(request.clone())
        .await
        .unwrap()
        .into_inner();
    app.notes.create_call_note(request).await.unwrap();
    let contact = made.contact.expect("linked by its number");
    let linked = made.call_note.unwrap();
    let message = contact.caller_message.expect("a pending message");
    let deliver = pb::DeliverCallerMessageRequest {
        account_id: account.into(),
        contact_id: contact.contact_id.clone(),
        message_id: message.message_id.clone(),
        call_note_id: linked.call_note_id.clone(),
        agent_id: "agent-1".into(),
        request_id: request_id(),
    };
    let delivered = app
        .notes
        .deliver_caller_message(deliver.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(delivered.call_note.unwrap().deliveries.len(), 1);
    app.notes.deliver_caller_message(deliver).await.unwrap();

    // A caller nobody knows: the note makes a contact.
    let fresh = note(
        app,
        account,
        pb::CallNote {
            caller_first_name: "Erika".into(),
            caller_last_name: "Neumann".into(),
            caller_number: "030 7654321".into(),
            subject: "Anfrage".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(fresh.contact_created);

    app.notes
        .get_call_note(pb::GetCallNoteRequest {
            account_id: account.into(),
            call_note_id: linked.call_note_id.clone(),
        })
        .await
        .unwrap();
    for request in [
        pb::ListCallNotesRequest {
            contact_id: contact.contact_id.clone(),
            ..Default::default()
        },
        pb::ListCallNotesRequest {
            employee_id: "emp-1".into(),
            page_size: 1,
            ..Default::default()
        },
    ] {
        let notes = app
            .notes
            .list_call_notes(pb::ListCallNotesRequest {
                account_id: account.into(),
                ..request
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!notes.call_notes.is_empty());
    }
}

fn privacy_client(app: &TestApp) -> PrivacyServiceClient<Channel> {
    PrivacyServiceClient::new(app.channel.clone())
}

async fn privacy(app: &mut TestApp, account: &str) {
    const NUMBER: &str = "0151 23456789";
    let subject = create(app, account, caller("Zwackelmann", NUMBER)).await;
    note(
        app,
        account,
        pb::CallNote {
            caller_last_name: "Zwackelmann".into(),
            caller_number: NUMBER.into(),
            subject: "Anruf".into(),
            ..Default::default()
        },
    )
    .await;
    let mut token = String::new();
    loop {
        let page = privacy_client(app)
            .export_caller_data(pb::ExportCallerDataRequest {
                account_id: account.into(),
                phone_number: NUMBER.into(),
                page_size: 1,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let by_id = privacy_client(app)
        .export_caller_data(pb::ExportCallerDataRequest {
            account_id: account.into(),
            contact_ids: vec![subject.contact_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.contacts.len(), 1);

    let erase = pb::EraseCallerRequest {
        account_id: account.into(),
        request_id: request_id(),
        phone_number: NUMBER.into(),
        contact_ids: Vec::new(),
        suppress: true,
    };
    let erased = privacy_client(app)
        .erase_caller(erase.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.deleted_contact_ids, [subject.contact_id]);
    assert!(erased.suppressed);
    privacy_client(app).erase_caller(erase).await.unwrap();
    // Suppressed: the call is noted without the caller, and recognised as suppressed.
    let suppressed = note(
        app,
        account,
        pb::CallNote {
            caller_last_name: "Zwackelmann".into(),
            caller_number: NUMBER.into(),
            subject: "Anruf".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(suppressed.contact.is_none());
    identify(app, account, "", NUMBER, "").await;
    let lifted = privacy_client(app)
        .lift_suppression(pb::LiftSuppressionRequest {
            account_id: account.into(),
            phone_number: NUMBER.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(lifted.lifted);

    let named = create(app, account, caller("Amsel", "030 5550101")).await;
    let erased = privacy_client(app)
        .erase_caller(pb::EraseCallerRequest {
            account_id: account.into(),
            contact_ids: vec![named.contact_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.deleted_contact_ids, [named.contact_id]);
}

/// Messages that expire, in both accounts, until the server's own sweep has taken them.
async fn expiring_messages(app: &mut TestApp) {
    let instant = app.clock_now() + chrono::Duration::hours(1);
    let mut contacts = Vec::new();
    for account in ACCOUNTS {
        let mut c = caller("Später", "030 6666666");
        c.caller_message = Some(pb::CallerMessage {
            text: "Nur heute".into(),
            expire_time: Some(prost_types::Timestamp {
                seconds: instant.timestamp(),
                nanos: 0,
            }),
            ..Default::default()
        });
        contacts.push(create(app, account, c).await);
    }
    // Past the instant and the sweep's grace (the request timeout and 5 s).
    app.clock.set(instant + chrono::Duration::minutes(5));
    for contact in contacts {
        let expired = pb::UndeliveredReason::Expired as i32;
        let mut waited = 0;
        loop {
            let report = app
                .contacts
                .list_undelivered_messages(pb::ListUndeliveredMessagesRequest {
                    account_id: contact.account_id.clone(),
                    contact_id: contact.contact_id.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if report
                .undelivered_messages
                .iter()
                .any(|m| m.reason == expired)
            {
                break;
            }
            waited += 1;
            assert!(waited < 600, "the server's sweep never took the message");
            tokio::time::sleep(BACKGROUND_EVERY).await;
        }
    }
    // A message cleared untold is reported too.
    let mut cleared = caller("Leer", "030 6666777");
    cleared.caller_message = Some(pb::CallerMessage {
        text: "Wird zurückgezogen".into(),
        ..Default::default()
    });
    let mut cleared = create(app, ACCOUNTS[0], cleared).await;
    cleared.caller_message = None;
    update(app, cleared, &["caller_message"]).await;
}

/// `CheckCallerRecognition` until the server's own flush has written the calls it counted.
async fn call_counts(app: &TestApp) {
    let mut client = CallHandlingServiceClient::new(app.channel.clone());
    for account in ACCOUNTS {
        for employee in ["", "emp-1"] {
            let mut waited = 0;
            loop {
                let status = client
                    .check_caller_recognition(pb::CheckCallerRecognitionRequest {
                        account_id: account.into(),
                        employee_id: employee.into(),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                if status.measurement.is_some_and(|m| m.calls > 0) {
                    break;
                }
                waited += 1;
                assert!(waited < 600, "the server never wrote its call counts");
                tokio::time::sleep(BACKGROUND_EVERY).await;
            }
        }
    }
}

/// `WatchChanges` up to the account's head, then `ListChanges`; the copy equals the account.
async fn follow_the_feed(app: &TestApp, mirror: &mut Mirror) {
    let head =
        callers_proto::v1::change_service_client::ChangeServiceClient::new(app.channel.clone())
            .get_change_cursor(pb::GetChangeCursorRequest {
                account_id: mirror.account.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .cursor;
    let head = seq(&head);
    assert!(head > seq(&mirror.cursor), "the flows changed the account");
    mirror
        .watch(&app.channel, |m| seq(&m.cursor) >= head)
        .await
        .unwrap();
    mirror.catch_up(&app.channel).await.unwrap();
    mirror.assert_matches(&app.channel).await;
}

async fn offboarding(app: &mut TestApp) {
    let contact = create(app, OFFBOARDED, caller("Abschied", "030 8888888")).await;
    note(
        app,
        OFFBOARDED,
        pb::CallNote {
            contact_id: contact.contact_id,
            subject: "Letzter Anruf".into(),
            ..Default::default()
        },
    )
    .await;
    let request = |dry_run| pb::DeleteAccountDataRequest {
        account_id: OFFBOARDED.into(),
        dry_run,
    };
    let dry = privacy_client(app)
        .delete_account_data(request(true))
        .await
        .unwrap()
        .into_inner();
    assert!(!dry.done && dry.rows["contacts"] == 1, "{dry:?}");
    for call in 0.. {
        assert!(call < 50, "offboarding makes no progress");
        let step = privacy_client(app)
            .delete_account_data(request(false))
            .await
            .unwrap()
            .into_inner();
        if step.done {
            break;
        }
    }
    assert_eq!(contact_count(app, OFFBOARDED).await, 0);
}

/// `callers-server reapply-erasures`, as after restoring a backup, with the test kit's key.
async fn reapply_erasures(database: &str) {
    let keys = std::env::temp_dir().join(format!("callers-keys-{}.toml", uuid::Uuid::new_v4()));
    let secret: String = format!("callers test privacy key {:>16}", "test-1")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        &keys,
        format!("[[keys]]\nid = \"test-1\"\nsecret_hex = \"{secret}\"\n"),
    )
    .unwrap();
    let run = Launch::server()
        .env("DATABASE_URL", database)
        .env("CALLERS_PRIVACY_KEYS_FILE", &keys)
        .env("CALLERS_LOG_FORMAT", "json")
        .args(["reapply-erasures", "--since", "2026-01-01T00:00:00Z"])
        .run()
        .await;
    let _ = std::fs::remove_file(&keys);
    assert_eq!(run.code, Some(0), "{run:#?}");
    // Two erasures in each account.
    assert_eq!(run.stdout.lines().count(), 4, "{run:#?}");
}

/// The purge binary, a dry run and a real run, with the summary showing work in each account.
async fn purge_runs(database: &str) {
    let dry = finish(
        purge_command(Some(database), &["--dry-run"])
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(dry.code, Some(0), "{dry:#?}");
    let run = finish(purge_command(Some(database), &[]).spawn().unwrap()).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let summary = run.summary();
    assert_eq!(summary["outcome"], "succeeded", "{summary}");
    for account in ACCOUNTS {
        assert!(
            summary["deleted_by_account"][account].as_u64() > Some(0),
            "{summary}"
        );
    }
    for chore in [
        "call_notes_deleted",
        "changes_deleted",
        "idempotency_keys_deleted",
    ] {
        assert!(summary[chore].as_u64() > Some(0), "{chore}: {summary}");
    }
}

// ---------------------------------------------------------------------------------------------
// The check of one statement (the module documentation says what it checks).

/// What one statement does to tenant tables.
#[derive(Debug, Default)]
struct Verdict {
    /// The tenant tables it reads or writes.
    touched: BTreeSet<String>,
    /// Its references not constrained by `account_id`: `table` or `table AS alias`.
    unconstrained: Vec<String>,
}

fn judge(sql: &str, tenant: &BTreeSet<String>) -> Result<Verdict, String> {
    // PL/pgSQL's expressions are recorded bare (`accounts IS NOT NULL`).
    let parsed = pg_query::parse(sql, ParserOptions::DEFAULT).or_else(|e| {
        pg_query::parse(sql, ParserOptions::PLPGSQL_EXPR).map_err(|_| e.to_string())
    })?;
    let tree = serde_json::to_value(&parsed.protobuf).map_err(|e| e.to_string())?;
    let mut walk = Walk::new(tenant);
    walk.any(&tree, None);
    let mut verdict = Verdict::default();
    for r in std::mem::take(&mut walk.refs) {
        if walk.find(r.node) != ANCHOR {
            verdict.unconstrained.push(r.label());
        }
        verdict.touched.insert(r.table);
    }
    // Whatever the parser says names a tenant table but the walk did not meet as a reference
    // is a use the check does not understand.
    for (table, _) in &parsed.tables {
        let name = table.strip_prefix("public.").unwrap_or(table);
        if tenant.contains(name) && verdict.touched.insert(name.to_owned()) {
            verdict
                .unconstrained
                .push(format!("{name} (a use the check does not understand)"));
        }
    }
    Ok(verdict)
}

/// The union-find class of "a value": an `account_id` in it is constrained.
const ANCHOR: usize = 0;
const STATEMENTS: [&str; 5] = [
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
];

/// A walk over one parse tree (pg_query's protobuf as JSON): the tenant references it meets,
/// and which of their `account_id`s are equated with each other or with a value.
struct Walk<'t> {
    tenant: &'t BTreeSet<String>,
    /// Union-find over the references' `account_id` columns, with [`ANCHOR`] as class 0.
    parent: Vec<usize>,
    refs: Vec<Ref>,
    scopes: Vec<Scope>,
}

struct Ref {
    table: String,
    alias: String,
    node: usize,
}

impl Ref {
    fn label(&self) -> String {
        if self.alias == self.table {
            self.table.clone()
        } else {
            format!("{} AS {}", self.table, self.alias)
        }
    }
}

/// The relations one statement (or sub-select) can name, and the CTEs its WITH defines.
#[derive(Default)]
struct Scope {
    up: Option<usize>,
    relations: Vec<Relation>,
    ctes: Vec<String>,
}

/// A relation by the name a statement uses for it; `node` for a tenant table.
struct Relation {
    name: String,
    node: Option<usize>,
}

/// One side of an equality.
enum Side {
    /// The `account_id` of these references.
    Account(Vec<usize>),
    /// A parameter, constant, expression, or a column from outside the tenant references.
    Value,
    /// Another column of a relation.
    Column,
}

/// `{"node": {"Kind": {...}}}` as ("Kind", {...}).
fn node(v: &Value) -> Option<(&str, &Value)> {
    let (kind, inner) = v.get("node")?.as_object()?.iter().next()?;
    Some((kind.as_str(), inner))
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn string(v: &Value) -> Option<&str> {
    match node(v) {
        Some(("String", s)) => s["sval"].as_str(),
        _ => None,
    }
}

fn is(v: &Value, e: i32) -> bool {
    v.as_i64() == Some(i64::from(e))
}

impl<'t> Walk<'t> {
    fn new(tenant: &'t BTreeSet<String>) -> Self {
        Self {
            tenant,
            parent: vec![ANCHOR],
            refs: Vec::new(),
            scopes: Vec::new(),
        }
    }

    fn find(&mut self, mut n: usize) -> usize {
        while self.parent[n] != n {
            self.parent[n] = self.parent[self.parent[n]];
            n = self.parent[n];
        }
        n
    }

    /// Joins two classes; the smaller root wins, so [`ANCHOR`] stays the root of its class.
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        self.parent[a.max(b)] = a.min(b);
    }

    /// Checks every statement anywhere under `v`, each in a scope inside `up`.
    fn any(&mut self, v: &Value, up: Option<usize>) {
        match v {
            Value::Object(map) => {
                for (key, child) in map {
                    if STATEMENTS.contains(&key.as_str()) {
                        self.statement(key, child, up);
                    } else {
                        self.any(child, up);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.any(i, up)),
            _ => {}
        }
    }

    fn statement(&mut self, kind: &str, s: &Value, up: Option<usize>) {
        let scope = self.scopes.len();
        self.scopes.push(Scope {
            up,
            ..Scope::default()
        });
        for cte in list(&s["with_clause"]["ctes"]) {
            if let Some(("CommonTableExpr", cte)) = node(cte) {
                let name = cte["ctename"].as_str().unwrap_or_default().to_owned();
                self.scopes[scope].ctes.push(name);
                self.any(&cte["ctequery"], Some(scope));
            }
        }
        let mut conditions = Vec::new();
        let parts: &[&str] = match kind {
            "SelectStmt" if !is(&s["op"], SetOperation::SetopNone as i32) => {
                for arm in [&s["larg"], &s["rarg"]] {
                    if arm.is_object() {
                        self.statement("SelectStmt", arm, Some(scope));
                    }
                }
                &["sort_clause", "limit_count", "limit_offset"]
            }
            "SelectStmt" => {
                for item in list(&s["from_clause"]) {
                    self.range_item(item, scope, &mut conditions);
                }
                conditions.push(&s["where_clause"]);
                &[
                    "target_list",
                    "distinct_clause",
                    "group_clause",
                    "having_clause",
                    "window_clause",
                    "values_lists",
                    "sort_clause",
                    "limit_count",
                    "limit_offset",
                ]
            }
            "InsertStmt" => {
                // The target is not visible to the rows inserted, only to ON CONFLICT.
                self.any(&s["select_stmt"], Some(scope));
                let cols: Vec<&Value> = list(&s["cols"]).collect();
                let names_account = cols.is_empty()
                    || cols
                        .iter()
                        .any(|c| node(c).is_some_and(|(_, c)| c["name"] == "account_id"));
                if let Some(n) = self.relation(&s["relation"], scope)
                    && names_account
                {
                    self.union(n, ANCHOR);
                }
                &["on_conflict_clause", "returning_list"]
            }
            "UpdateStmt" => {
                self.relation(&s["relation"], scope);
                for item in list(&s["from_clause"]) {
                    self.range_item(item, scope, &mut conditions);
                }
                conditions.push(&s["where_clause"]);
                &["target_list", "returning_list"]
            }
            "DeleteStmt" => {
                self.relation(&s["relation"], scope);
                for item in list(&s["using_clause"]) {
                    self.range_item(item, scope, &mut conditions);
                }
                conditions.push(&s["where_clause"]);
                &["returning_list"]
            }
            "MergeStmt" => {
                self.relation(&s["relation"], scope);
                self.range_item(&s["source_relation"], scope, &mut conditions);
                conditions.push(&s["join_condition"]);
                &["merge_when_clauses", "returning_list"]
            }
            _ => unreachable!("{kind} is not a statement"),
        };
        // Sub-selects after the FROM list, so that they find the relations they correlate with.
        for part in parts {
            self.any(&s[*part], Some(scope));
        }
        for condition in &conditions {
            self.any(condition, Some(scope));
        }
        for condition in conditions {
            self.constrain(condition, scope);
        }
    }

    /// Adds a `RangeVar` to the scope; its node when it is a tenant table (not a CTE).
    fn relation(&mut self, rv: &Value, scope: usize) -> Option<usize> {
        let table = rv["relname"].as_str()?.to_owned();
        let name = rv["alias"]["aliasname"]
            .as_str()
            .filter(|a| !a.is_empty())
            .unwrap_or(&table)
            .to_owned();
        let node = match rv["schemaname"].as_str().unwrap_or_default() {
            "" if self.is_cte(&table, scope) => None,
            "" | "public" if self.tenant.contains(&table) => {
                let n = self.parent.len();
                self.parent.push(n);
                self.refs.push(Ref {
                    table,
                    alias: name.clone(),
                    node: n,
                });
                Some(n)
            }
            _ => None,
        };
        self.scopes[scope].relations.push(Relation { name, node });
        node
    }

    fn is_cte(&self, name: &str, scope: usize) -> bool {
        self.chain(scope)
            .any(|s| self.scopes[s].ctes.iter().any(|c| c == name))
    }

    /// `scope` and the scopes around it, innermost first.
    fn chain(&self, scope: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(scope), |s| self.scopes[*s].up)
    }

    fn range_item<'v>(&mut self, item: &'v Value, scope: usize, conditions: &mut Vec<&'v Value>) {
        let alias = |v: &Value| v["alias"]["aliasname"].as_str().unwrap_or("").to_owned();
        match node(item) {
            Some(("RangeVar", rv)) => {
                self.relation(rv, scope);
            }
            Some(("JoinExpr", join)) => {
                let first = self.scopes[scope].relations.len();
                self.range_item(&join["larg"], scope, conditions);
                self.range_item(&join["rarg"], scope, conditions);
                conditions.push(&join["quals"]);
                if list(&join["using_clause"]).any(|c| string(c) == Some("account_id")) {
                    // USING (account_id) equates both sides; another relation's is a value.
                    let joined = &self.scopes[scope].relations[first..];
                    let nodes: Vec<usize> = joined.iter().filter_map(|r| r.node).collect();
                    let with = if joined.iter().any(|r| r.node.is_none()) {
                        ANCHOR
                    } else {
                        nodes[0]
                    };
                    nodes.into_iter().for_each(|n| self.union(n, with));
                }
            }
            Some(("RangeSubselect", sub)) => {
                self.any(&sub["subquery"], Some(scope));
                let name = alias(sub);
                self.scopes[scope]
                    .relations
                    .push(Relation { name, node: None });
            }
            Some((_, other)) => {
                // Functions (`unnest(…) AS g`) and the like: their arguments may hold sub-selects.
                self.any(other, Some(scope));
                let name = alias(other);
                self.scopes[scope]
                    .relations
                    .push(Relation { name, node: None });
            }
            None => {}
        }
    }

    /// Records what the top-level AND terms of a condition equate.
    fn constrain(&mut self, condition: &Value, scope: usize) {
        match node(condition) {
            Some(("BoolExpr", b)) if is(&b["boolop"], BoolExprType::AndExpr as i32) => {
                for arg in list(&b["args"]) {
                    self.constrain(arg, scope);
                }
            }
            Some(("AExpr", e)) => {
                let equals = list(&e["name"]).last().and_then(string) == Some("=");
                let kinds = [
                    AExprKind::AexprOp,
                    AExprKind::AexprOpAny,
                    AExprKind::AexprIn,
                ];
                if equals && kinds.iter().any(|k| is(&e["kind"], *k as i32)) {
                    self.equate(&e["lexpr"], &e["rexpr"], scope);
                }
            }
            // `account_id IN (SELECT …)`: the sub-select is checked where it stands.
            Some(("SubLink", l)) if is(&l["sub_link_type"], SubLinkType::AnySublink as i32) => {
                let operator = list(&l["oper_name"]).last().and_then(string);
                if operator.is_none_or(|o| o == "=") {
                    let tested = match node(&l["testexpr"]) {
                        Some(("RowExpr", row)) => list(&row["args"]).collect(),
                        _ => vec![&l["testexpr"]],
                    };
                    for t in tested {
                        if let Side::Account(nodes) = self.side(t, scope) {
                            nodes.into_iter().for_each(|n| self.union(n, ANCHOR));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn equate(&mut self, left: &Value, right: &Value, scope: usize) {
        if let (Some(("RowExpr", l)), Some(("RowExpr", r))) = (node(left), node(right)) {
            for (l, r) in list(&l["args"]).zip(list(&r["args"])) {
                self.equate(l, r, scope);
            }
            return;
        }
        match (self.side(left, scope), self.side(right, scope)) {
            (Side::Account(a), Side::Account(b)) => {
                for n in a.iter().chain(&b) {
                    self.union(a[0], *n);
                }
            }
            (Side::Account(a), Side::Value) | (Side::Value, Side::Account(a)) => {
                a.into_iter().for_each(|n| self.union(n, ANCHOR));
            }
            _ => {}
        }
    }

    fn side(&self, v: &Value, scope: usize) -> Side {
        let column = match node(v) {
            Some(("TypeCast", cast)) => return self.side(&cast["arg"], scope),
            Some(("ColumnRef", column)) => column,
            _ => return Side::Value,
        };
        let fields: Vec<&str> = list(&column["fields"]).filter_map(string).collect();
        let qualifier = match fields.as_slice() {
            [.., q, "account_id"] => Some(*q),
            ["account_id"] => None,
            _ => return Side::Column,
        };
        for s in self.chain(scope) {
            let relations = &self.scopes[s].relations;
            match qualifier {
                Some(q) => {
                    if let Some(r) = relations.iter().rev().find(|r| r.name == q) {
                        return r.node.map_or(Side::Value, |n| Side::Account(vec![n]));
                    }
                }
                None if !relations.is_empty() => {
                    let nodes: Vec<usize> = relations.iter().filter_map(|r| r.node).collect();
                    return if nodes.is_empty() {
                        Side::Value
                    } else {
                        Side::Account(nodes)
                    };
                }
                None => {}
            }
        }
        // `NEW`, `OLD`, `excluded` or a function's argument: from outside the statement.
        Side::Value
    }
}

#[test]
fn the_check_tells_statements_that_name_their_account_from_those_that_do_not() {
    let tenant: BTreeSet<String> = ["contacts", "call_notes", "call_handling", "account_words"]
        .map(String::from)
        .into();
    let unconstrained = |sql: &str| judge(sql, &tenant).unwrap().unconstrained;
    let passing = [
        "SELECT * FROM contacts WHERE account_id = $1 AND contact_id = $2",
        "SELECT * FROM contacts c WHERE c.account_id = ANY($1::text[])",
        "SELECT * FROM contacts c JOIN call_notes n ON n.account_id = c.account_id \
         AND n.contact_id = c.contact_id WHERE c.account_id = $1",
        "SELECT * FROM contacts c JOIN call_notes n USING (account_id) WHERE account_id = $1",
        "WITH due AS (SELECT account_id, contact_id FROM contacts WHERE account_id = $1 LIMIT $2) \
         DELETE FROM contacts c USING due WHERE c.account_id = due.account_id",
        "INSERT INTO call_notes (account_id, call_note_id) SELECT $1, $2",
        "INSERT INTO call_notes SELECT * FROM call_notes WHERE account_id = $1",
        "UPDATE contacts SET version = version + $1 WHERE (account_id, contact_id) = ($2, $3)",
        "SELECT 1 FROM x p WHERE NOT EXISTS \
         (SELECT 1 FROM account_words a WHERE a.account_id = p.account_id)",
        "SELECT * FROM contacts WHERE account_id IN (SELECT account_id FROM call_handling \
         WHERE account_id = $1)",
        "DELETE FROM account_words w WHERE w.account_id = OLD.account_id",
        "SELECT * FROM contacts c WHERE c.account_id = $1 AND EXISTS (SELECT 1 FROM call_notes n \
         WHERE n.account_id = c.account_id)",
        "MERGE INTO contacts c USING (SELECT $1 AS account_id) s ON c.account_id = s.account_id \
         WHEN MATCHED THEN DELETE",
        "SELECT pg_advisory_lock($1)",
        "BEGIN",
        "accounts IS NOT NULL",
    ];
    for sql in passing {
        assert_eq!(unconstrained(sql), Vec::<String>::new(), "{sql}");
    }
    let failing = [
        ("SELECT * FROM contacts WHERE contact_id = $1", "contacts"),
        (
            "SELECT * FROM contacts WHERE account_id = $1 OR contact_id = $2",
            "contacts",
        ),
        (
            "SELECT * FROM call_notes n JOIN call_handling h ON h.account_id = n.account_id",
            "call_notes AS n, call_handling AS h",
        ),
        (
            "WITH due AS (SELECT account_id, contact_id FROM contacts WHERE purge_candidate) \
             DELETE FROM contacts c USING due WHERE c.account_id = due.account_id",
            "contacts",
        ),
        (
            "INSERT INTO call_notes (call_note_id) VALUES ($1)",
            "call_notes",
        ),
        (
            "SELECT * FROM contacts c WHERE c.account_id = $1 AND EXISTS \
             (SELECT 1 FROM call_notes n WHERE n.contact_id = c.contact_id)",
            "call_notes AS n",
        ),
        (
            "UPDATE contacts SET version = 1 WHERE contact_id IN \
             (SELECT contact_id FROM call_notes WHERE account_id = $1)",
            "contacts",
        ),
        (
            "SELECT count(*) FROM (SELECT 1 FROM contacts) x",
            "contacts",
        ),
        (
            "SELECT * FROM call_handling WHERE account_id = $1 UNION ALL SELECT * FROM call_handling",
            "call_handling",
        ),
        (
            "TRUNCATE contacts",
            "contacts (a use the check does not understand)",
        ),
    ];
    for (sql, refs) in failing {
        assert_eq!(unconstrained(sql).join(", "), refs, "{sql}");
    }
}
