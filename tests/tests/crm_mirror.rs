//! The example consumer `docs/examples/crm-mirror/mirror.py` against the real server: it mirrors
//! an account into SQLite from the change feed, restarts from its saved cursor, recovers from
//! `CURSOR_EXPIRED`, and follows the live feed across a server restart.
//!
//! It needs Python 3 with `venv`: the first test makes `target/crm-mirror-venv` and installs the
//! example's `requirements.txt` from PyPI. Where that fails the tests are skipped with the
//! reason, except under `CI=true`, where they fail.

use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_proto::v1::call_note_service_client::CallNoteServiceClient;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use callers_testkit::Launch;
use callers_tests::{Server, TestDatabase, fresh_database, purge, sql, start_server};
use chrono::{DateTime, SecondsFormat};
use prost_types::{FieldMask, Timestamp};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use uuid::Uuid;

const ACCOUNT: &str = "acme";
/// Personal data the scenarios write; none of it may appear in the mirror's logs.
const PERSONAL: [&str; 9] = [
    "Lange",
    "Müller",
    "Weber",
    "Schmidt",
    "Kowalski",
    "Brandt",
    "1234567",
    "7654321",
    "Unterlagen",
];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the workspace")
}

fn example_dir() -> PathBuf {
    workspace().join("docs/examples/crm-mirror")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The venv's Python with the example's requirements, made once per test process; `None` (with
/// the reason printed) when that is impossible here and this is not CI.
fn python() -> Option<&'static Path> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(make_venv) {
        Ok(python) => Some(python),
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the crm-mirror example needs a Python venv: {why}")
        }
        Err(why) => {
            eprintln!("skipped: the crm-mirror example needs a Python venv: {why}");
            None
        }
    }
}

fn make_venv() -> Result<PathBuf, String> {
    let venv = target_dir().join("crm-mirror-venv");
    let python = venv.join("bin/python");
    let requirements = example_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| e.to_string())?;
    let stamp = venv.join("installed-requirements.txt");
    let imports = || {
        StdCommand::new(&python)
            .args(["-c", "import grpc, grpc_tools, grpc_status"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) && imports() {
        return Ok(python);
    }
    let system_python = std::env::var_os("CALLERS_TEST_PYTHON").unwrap_or_else(|| "python3".into());
    run(StdCommand::new(system_python)
        .args(["-m", "venv", "--clear"])
        .arg(&venv))?;
    run(StdCommand::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))?;
    if !imports() {
        return Err("the venv does not import grpc, grpc_tools and grpc_status".into());
    }
    std::fs::write(&stamp, wanted).map_err(|e| e.to_string())?;
    Ok(python)
}

fn run(cmd: &mut StdCommand) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} exited with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// One mirror: its SQLite file, and the script pointed at one server.
struct Mirror {
    python: &'static Path,
    dir: PathBuf,
    target: String,
}

/// The JSON line `mirror.py --once` prints.
#[derive(Debug)]
struct Summary {
    resyncs: u64,
    changes_applied: u64,
    cursor: String,
}

impl Mirror {
    fn new(python: &'static Path, server: &Server) -> Self {
        let dir = std::env::temp_dir().join(format!("callers-crm-mirror-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("make the mirror's folder");
        Self {
            python,
            dir,
            target: server.addr.to_string(),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("mirror.sqlite")
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(self.python);
        cmd.arg(example_dir().join("mirror.py"))
            .args(["--target", &self.target, "--account", ACCOUNT, "--db"])
            .arg(self.db())
            .arg("--stubs-dir")
            .arg(target_dir().join("crm-mirror-stubs"))
            .args(extra)
            .env_remove("CALLERS_TOKEN")
            .env_remove("CALLERS_TARGET")
            .env_remove("CALLERS_ACCOUNT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// `mirror.py --once`, which must succeed without logging personal data.
    async fn once(&self) -> Summary {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            self.command(&["--once", "--verbose"]).output(),
        )
        .await
        .expect("mirror.py --once finishes within two minutes")
        .expect("run mirror.py");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "mirror.py --once: {}\n{stdout}{stderr}",
            out.status
        );
        assert_no_personal_data(&stderr);
        let line: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("the summary line is JSON ({e}): {stdout}"));
        assert_eq!(line["account_id"], ACCOUNT);
        Summary {
            resyncs: line["resyncs"].as_u64().expect("resyncs"),
            changes_applied: line["changes_applied"].as_u64().expect("changes_applied"),
            cursor: line["cursor"].as_str().expect("cursor").to_owned(),
        }
    }

    /// The SQLite file's tables as JSON, read by Python's own `sqlite3`, not by the script.
    fn dump(&self) -> Value {
        const DUMP: &str = r#"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.row_factory = sqlite3.Row
JSON = {"categories", "phone_numbers", "caller_message", "deliveries", "employees"}
def table(name, key):
    return {
        row[key]: {k: json.loads(row[k]) if k in JSON and row[k] is not None else row[k]
                   for k in row.keys()}
        for row in db.execute(f"SELECT * FROM {name}")
    }
state = [dict(r) for r in db.execute("SELECT account_id, cursor FROM state")]
print(json.dumps({"contacts": table("contacts", "contact_id"),
                  "call_notes": table("call_notes", "call_note_id"),
                  "call_handling": table("call_handling", "account_id"),
                  "state": state}))
"#;
        let out = StdCommand::new(self.python)
            .args(["-c", DUMP])
            .arg(self.db())
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the dump is JSON")
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn assert_no_personal_data(log: &str) {
    for word in PERSONAL {
        assert!(!log.contains(word), "the mirror logged {word:?}:\n{log}");
    }
}

/// gRPC clients of one server.
struct Clients {
    contacts: ContactServiceClient<Channel>,
    notes: CallNoteServiceClient<Channel>,
    handling: CallHandlingServiceClient<Channel>,
}

impl Clients {
    async fn connect(server: &Server) -> Self {
        let channel = Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .expect("connect to the server");
        Self {
            contacts: ContactServiceClient::new(channel.clone()),
            notes: CallNoteServiceClient::new(channel.clone()),
            handling: CallHandlingServiceClient::new(channel),
        }
    }

    async fn create_contact(&mut self, contact: pb::Contact) -> pb::Contact {
        self.contacts
            .create_contact(pb::CreateContactRequest {
                account_id: ACCOUNT.into(),
                contact: Some(contact),
                request_id: String::new(),
            })
            .await
            .expect("CreateContact")
            .into_inner()
    }

    async fn update_contact(&mut self, contact: pb::Contact, paths: &[&str]) -> pb::Contact {
        self.contacts
            .update_contact(pb::UpdateContactRequest {
                account_id: ACCOUNT.into(),
                contact: Some(contact),
                update_mask: Some(mask(paths)),
                etag: String::new(),
            })
            .await
            .expect("UpdateContact")
            .into_inner()
    }

    async fn delete_contact(&mut self, contact_id: &str) {
        self.contacts
            .delete_contact(pb::DeleteContactRequest {
                account_id: ACCOUNT.into(),
                contact_id: contact_id.into(),
                etag: String::new(),
            })
            .await
            .expect("DeleteContact");
    }

    async fn create_note(&mut self, note: pb::CallNote) -> pb::CreateCallNoteResponse {
        self.notes
            .create_call_note(pb::CreateCallNoteRequest {
                account_id: ACCOUNT.into(),
                request_id: String::new(),
                call_note: Some(note),
            })
            .await
            .expect("CreateCallNote")
            .into_inner()
    }

    async fn deliver(&mut self, contact: &pb::Contact, call_note_id: &str) {
        let message = contact.caller_message.as_ref().expect("a pending message");
        self.notes
            .deliver_caller_message(pb::DeliverCallerMessageRequest {
                account_id: ACCOUNT.into(),
                contact_id: contact.contact_id.clone(),
                message_id: message.message_id.clone(),
                call_note_id: call_note_id.into(),
                agent_id: "agent-7".into(),
                request_id: String::new(),
            })
            .await
            .expect("DeliverCallerMessage");
    }

    async fn update_call_handling(&mut self, settings: pb::CallHandling) {
        self.handling
            .update_call_handling(pb::UpdateCallHandlingRequest {
                call_handling: Some(settings),
                update_mask: None,
                etag: String::new(),
            })
            .await
            .expect("UpdateCallHandling");
    }

    /// What the server holds for the account, in the mirror's shape.
    async fn expected(&mut self) -> Value {
        let mut contacts = Map::new();
        let mut token = String::new();
        loop {
            let page = self
                .contacts
                .list_contacts(pb::ListContactsRequest {
                    account_id: ACCOUNT.into(),
                    page_size: 2,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .expect("ListContacts")
                .into_inner();
            for c in page.contacts {
                contacts.insert(c.contact_id.clone(), contact_row(&c));
            }
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let mut call_notes = Map::new();
        let mut token = String::new();
        loop {
            let page = self
                .notes
                .list_call_notes(pb::ListCallNotesRequest {
                    account_id: ACCOUNT.into(),
                    page_size: 2,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .expect("ListCallNotes")
                .into_inner();
            for n in page.call_notes {
                call_notes.insert(n.call_note_id.clone(), note_row(&n));
            }
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        let mut call_handling = Map::new();
        match self
            .handling
            .get_call_handling(pb::GetCallHandlingRequest {
                account_id: ACCOUNT.into(),
            })
            .await
        {
            Ok(h) => {
                let h = h.into_inner();
                call_handling.insert(h.account_id.clone(), handling_row(&h));
            }
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => panic!("GetCallHandling: {e:?}"),
        }
        json!({"contacts": contacts, "call_notes": call_notes, "call_handling": call_handling})
    }
}

fn mask(paths: &[&str]) -> FieldMask {
    FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    }
}

/// A timestamp as protobuf's JSON mapping (and so the script) writes it.
fn time(t: &Option<Timestamp>) -> Value {
    match t {
        None => Value::Null,
        Some(t) => {
            let nanos = u32::try_from(t.nanos).expect("normalised nanos");
            let at = DateTime::from_timestamp(t.seconds, nanos).expect("a valid timestamp");
            at.to_rfc3339_opts(SecondsFormat::AutoSi, true).into()
        }
    }
}

fn phone_type(value: i32) -> &'static str {
    pb::PhoneType::try_from(value).map_or("?", |t| t.as_str_name())
}

fn style(value: i32) -> &'static str {
    pb::ConversationStyle::try_from(value).map_or("?", |s| s.as_str_name())
}

fn contact_row(c: &pb::Contact) -> Value {
    json!({
        "contact_id": c.contact_id,
        "etag": c.etag,
        "categories": c.categories,
        "salutation": c.salutation,
        "title": c.title,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "company": c.company,
        "email": c.email,
        "phone_numbers": c.phone_numbers.iter().map(|p| json!({
            "number": p.number, "e164": p.e164, "type": phone_type(p.r#type),
        })).collect::<Vec<_>>(),
        "caller_message": c.caller_message.as_ref().map(|m| json!({
            "message_id": m.message_id, "text": m.text, "create_time": time(&m.create_time),
        })),
        "handling_instruction": c.handling_instruction,
        "keep_permanently": i64::from(c.keep_permanently),
        "origin": pb::Origin::try_from(c.origin).map_or("?", |o| o.as_str_name()),
        "create_time": time(&c.create_time),
        "update_time": time(&c.update_time),
        "last_activity_time": time(&c.last_activity_time),
        "purge_time": time(&c.purge_time),
    })
}

fn note_row(n: &pb::CallNote) -> Value {
    json!({
        "call_note_id": n.call_note_id,
        "contact_id": (!n.contact_id.is_empty()).then_some(&n.contact_id),
        "employee_id": n.employee_id,
        "agent_id": n.agent_id,
        "caller_first_name": n.caller_first_name,
        "caller_last_name": n.caller_last_name,
        "caller_company": n.caller_company,
        "caller_number": n.caller_number,
        "subject": n.subject,
        "text": n.text,
        "call_time": time(&n.call_time),
        "create_time": time(&n.create_time),
        "deliveries": n.deliveries.iter().map(|d| json!({
            "message_id": d.message_id, "text": d.text,
            "deliver_time": time(&d.deliver_time), "agent_id": d.agent_id,
        })).collect::<Vec<_>>(),
    })
}

fn handling_row(h: &pb::CallHandling) -> Value {
    json!({
        "account_id": h.account_id,
        "etag": h.etag,
        "conversation_style": style(h.conversation_style),
        "caller_id_transmission": i64::from(h.caller_id_transmission),
        "phone_region": h.phone_region,
        "employees": h.employees.iter().map(|e| json!({
            "employee_id": e.employee_id,
            "conversation_style": style(e.conversation_style),
            "caller_id_transmission": e.caller_id_transmission,
        })).collect::<Vec<_>>(),
        "update_time": time(&h.update_time),
    })
}

/// Asserts that the mirror holds exactly what the server lists, row by row and field by field,
/// and the cursor `cursor`.
async fn assert_mirrors(mirror: &Mirror, clients: &mut Clients, cursor: &str) {
    let got = mirror.dump();
    let want = clients.expected().await;
    for table in ["contacts", "call_notes", "call_handling"] {
        let (got, want) = (&got[table], &want[table]);
        let ids = |rows: &Value| {
            let mut ids: Vec<String> = rows.as_object().unwrap().keys().cloned().collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(got), ids(want), "the ids in {table}");
        for (id, row) in want.as_object().unwrap() {
            assert_eq!(&got[id], row, "{table} {id}");
        }
    }
    assert_eq!(
        got["state"],
        json!([{"account_id": ACCOUNT, "cursor": cursor}]),
        "the saved cursor"
    );
}

fn caller(first: &str, last: &str, number: &str) -> pb::Contact {
    pb::Contact {
        categories: vec!["caller".into()],
        salutation: "Herr".into(),
        first_name: first.into(),
        last_name: last.into(),
        phone_numbers: vec![pb::PhoneNumber {
            number: number.into(),
            r#type: pb::PhoneType::Mobile as i32,
            ..Default::default()
        }],
        origin: pb::Origin::ExpectedCall as i32,
        ..Default::default()
    }
}

fn with_message(mut contact: pb::Contact, text: &str) -> pb::Contact {
    contact.caller_message = Some(pb::CallerMessage {
        text: text.into(),
        ..Default::default()
    });
    contact
}

fn note(contact_id: &str) -> pb::CallNote {
    pb::CallNote {
        contact_id: contact_id.into(),
        employee_id: "emp-1".into(),
        agent_id: "agent-7".into(),
        subject: "Rückruf".into(),
        text: "Bittet um Rückruf wegen der Unterlagen".into(),
        ..Default::default()
    }
}

fn settings(
    style: pb::ConversationStyle,
    caller_id: bool,
    employee: Option<bool>,
) -> pb::CallHandling {
    pb::CallHandling {
        account_id: ACCOUNT.into(),
        conversation_style: style as i32,
        caller_id_transmission: caller_id,
        phone_region: "DE".into(),
        employees: vec![pb::EmployeeCallHandling {
            employee_id: "emp-1".into(),
            conversation_style: pb::ConversationStyle::Informal as i32,
            caller_id_transmission: employee,
        }],
        ..Default::default()
    }
}

/// Ages every change in the feed by 8 days with plain SQL and runs the real purge, whose
/// `changes` chore then prunes them all at the default keeping time of 7 days.
async fn prune_the_feed(db: &TestDatabase) {
    let sql = sql(db).await;
    let aged = sql
        .execute(
            "UPDATE changes SET change_time = change_time - interval '8 days'",
            &[],
        )
        .await
        .expect("age the feed");
    assert!(aged > 0, "there are changes to prune");
    let run = purge(db, &["--change-retention-days", "7"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.summary()["changes_deleted"], aged, "{run:#?}");
}

#[tokio::test]
async fn the_example_mirror_copies_an_account_resumes_from_its_cursor_and_recovers_from_expiry() {
    let Some(python) = python() else { return };
    let db = fresh_database().await;
    let server = start_server(&db).await;
    let mut api = Clients::connect(&server).await;
    let mirror = Mirror::new(python, &server);

    // Before the first run: settings, a customer with a message and a note linked to them.
    api.update_call_handling(settings(pb::ConversationStyle::Formal, true, None))
        .await;
    let mut lange = caller("Anna", "Lange", "030 1234567");
    lange.categories = vec!["caller".into(), "customer".into()];
    lange.company = "Lange Bau GmbH".into();
    let lange = api
        .create_contact(with_message(lange, "Die Unterlagen sind da"))
        .await;
    let first_note = api.create_note(note(&lange.contact_id)).await;

    let run = mirror.once().await;
    assert_eq!(
        run.resyncs, 1,
        "a first run without a cursor resyncs: {run:?}"
    );
    assert_mirrors(&mirror, &mut api, &run.cursor).await;

    // Changes of every kind the API can make, applied from the saved cursor.
    let mueller = api
        .create_contact(with_message(
            caller("Hans", "Müller", "0171 7654321"),
            "Unterlagen bitte abholen",
        ))
        .await;
    let mueller_note = api.create_note(note(&mueller.contact_id)).await;
    let mueller_note_id = mueller_note.call_note.unwrap().call_note_id;
    api.deliver(&mueller, &mueller_note_id).await;
    let new_caller = api
        .create_note(pb::CallNote {
            caller_first_name: "Petra".into(),
            caller_last_name: "Schmidt".into(),
            caller_number: "+49 40 1234567".into(),
            ..note("")
        })
        .await;
    assert!(new_caller.contact_created, "{new_caller:?}");
    let weber = api
        .create_contact(with_message(
            pb::Contact {
                title: "Dr.".into(),
                ..caller("Klaus", "Weber", "089 1234567")
            },
            "Termin verschoben",
        ))
        .await;
    let unlinked = api
        .create_note(pb::CallNote {
            employee_id: "emp-2".into(),
            ..note("")
        })
        .await
        .call_note
        .unwrap();
    assert!(unlinked.contact_id.is_empty(), "{unlinked:?}");
    api.deliver(&weber, &unlinked.call_note_id).await;
    api.update_contact(
        pb::Contact {
            contact_id: lange.contact_id.clone(),
            last_name: "Lange-Brandt".into(),
            caller_message: Some(pb::CallerMessage {
                text: "Neuer Termin am Montag".into(),
                ..Default::default()
            }),
            keep_permanently: true,
            ..Default::default()
        },
        &["last_name", "caller_message", "keep_permanently"],
    )
    .await;
    api.delete_contact(&mueller.contact_id).await;
    api.update_call_handling(settings(pb::ConversationStyle::Informal, false, Some(true)))
        .await;

    let run = mirror.once().await;
    assert_eq!(run.resyncs, 0, "a restart resumes from its cursor: {run:?}");
    assert!(run.changes_applied >= 12, "{run:?}");
    assert_mirrors(&mirror, &mut api, &run.cursor).await;
    let dump = mirror.dump();
    assert_eq!(
        dump["call_notes"][&mueller_note_id]["contact_id"],
        Value::Null,
        "a deleted contact's note lost its link"
    );
    assert_eq!(
        dump["call_notes"][&unlinked.call_note_id]["contact_id"],
        json!(weber.contact_id),
        "the delivery linked the note"
    );
    let caught_up = run.cursor;

    let run = mirror.once().await;
    assert_eq!((run.resyncs, run.changes_applied), (0, 0), "{run:?}");
    assert_eq!(run.cursor, caught_up);

    // The feed is pruned past the saved cursor: CURSOR_EXPIRED, and the mirror resyncs.
    let kowalski = api
        .create_contact(caller("Jan", "Kowalski", "0221 1234567"))
        .await;
    api.delete_contact(&lange.contact_id).await;
    prune_the_feed(&db).await;
    api.update_contact(
        pb::Contact {
            contact_id: kowalski.contact_id.clone(),
            email: "jan@example.com".into(),
            ..Default::default()
        },
        &["email"],
    )
    .await;
    let run = mirror.once().await;
    assert_eq!(run.resyncs, 1, "an expired cursor resyncs: {run:?}");
    assert_mirrors(&mirror, &mut api, &run.cursor).await;
    let first_note_id = first_note.call_note.unwrap().call_note_id;
    assert_eq!(
        mirror.dump()["call_notes"][&first_note_id]["contact_id"],
        Value::Null
    );

    // After the recovery it follows the feed again.
    api.delete_contact(&kowalski.contact_id).await;
    let run = mirror.once().await;
    assert_eq!((run.resyncs, run.changes_applied), (0, 1), "{run:?}");
    assert_mirrors(&mirror, &mut api, &run.cursor).await;
}

/// Polls the mirror until `done` holds for its dump, at most 30 s.
async fn eventually(mirror: &Mirror, child: &mut Child, what: &str, done: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        if mirror.db().exists() {
            let dump = mirror.dump();
            if done(&dump) {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("mirror.py exited with {status} while waiting for {what}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the mirror did not show {what} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_example_mirror_follows_live_changes_across_a_server_restart() {
    let Some(python) = python() else { return };
    let db = fresh_database().await;
    let server = start_server(&db).await;
    let addr = server.addr;
    let mut api = Clients::connect(&server).await;
    let mirror = Mirror::new(python, &server);
    let mut child = mirror.command(&[]).spawn().expect("start mirror.py");
    eventually(&mirror, &mut child, "a saved cursor", |d| {
        d["state"].as_array().is_some_and(|s| s.len() == 1)
    })
    .await;

    let weber = api
        .create_contact(caller("Klaus", "Weber", "089 1234567"))
        .await;
    eventually(&mirror, &mut child, "the new contact", |d| {
        d["contacts"][&weber.contact_id].is_object()
    })
    .await;

    // The server stops (its streams end) and comes back on the same address.
    let stopped = server.stop().await.expect("stop the server");
    assert!(!stopped.killed, "{}", stopped.output);
    let server = Launch::server()
        .database(db.url())
        .args(["--listen", &addr.to_string()])
        .serve()
        .await
        .expect("restart the server");
    let mut api = Clients::connect(&server).await;
    let kowalski = api
        .create_contact(caller("Jan", "Kowalski", "0221 1234567"))
        .await;
    api.delete_contact(&weber.contact_id).await;
    eventually(&mirror, &mut child, "the changes after the restart", |d| {
        d["contacts"][&kowalski.contact_id].is_object()
            && d["contacts"][&weber.contact_id].is_null()
    })
    .await;

    callers_tests::terminate(&child).await;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("mirror.py stops on SIGTERM")
        .expect("wait for mirror.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert_no_personal_data(&stderr);
    let cursor = mirror.dump()["state"][0]["cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();
    assert_mirrors(&mirror, &mut api, &cursor).await;
}
