//! Tenant isolation as a property: random operations by several accounts that share names and
//! phone numbers, each checked against a model of who owns what. No read, list, identification,
//! call note or delivery may ever cross accounts; an id of another account behaves exactly like
//! one that does not exist. `CALLERS_LONG_TESTS=1` runs many more cases.

use callers_testkit::app;

use callers_proto::v1 as pb;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_testkit::app::{TestApp, spawn_app};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use tonic::Code;

const ACCOUNTS: usize = 3;
const NAMES: [&str; 4] = ["Müller", "Meier", "Schulze", "Schmidt"];
const NUMBERS: [&str; 4] = [
    "030 1000001",
    "030 1000002",
    "0171 5000003",
    "+49 40 1000004",
];

#[derive(Debug, Clone)]
enum Op {
    Create {
        acct: usize,
        name: usize,
        number: usize,
        message: bool,
    },
    Get {
        acct: usize,
        target: usize,
    },
    Update {
        acct: usize,
        target: usize,
    },
    Delete {
        acct: usize,
        target: usize,
    },
    List {
        acct: usize,
    },
    ListExpiring {
        acct: usize,
    },
    /// SearchContacts by a name, a number prefix, both or neither, every page.
    Search {
        acct: usize,
        name: Option<usize>,
        number: bool,
    },
    Identify {
        acct: usize,
        name: usize,
        number: usize,
    },
    Note {
        acct: usize,
        target: Option<usize>,
        name: usize,
        number: usize,
    },
    GetNote {
        acct: usize,
        target: usize,
    },
    ListNotes {
        acct: usize,
        contact: Option<usize>,
    },
    Deliver {
        acct: usize,
        contact: usize,
        note: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let a = 0..ACCOUNTS;
    let t = 0usize..64;
    prop_oneof![
        4 => (a.clone(), 0..NAMES.len(), 0..NUMBERS.len(), any::<bool>())
            .prop_map(|(acct, name, number, message)| Op::Create { acct, name, number, message }),
        2 => (a.clone(), t.clone()).prop_map(|(acct, target)| Op::Get { acct, target }),
        2 => (a.clone(), t.clone()).prop_map(|(acct, target)| Op::Update { acct, target }),
        1 => (a.clone(), t.clone()).prop_map(|(acct, target)| Op::Delete { acct, target }),
        1 => a.clone().prop_map(|acct| Op::List { acct }),
        1 => a.clone().prop_map(|acct| Op::ListExpiring { acct }),
        1 => (a.clone(), prop::option::of(0..NAMES.len()), any::<bool>())
            .prop_map(|(acct, name, number)| Op::Search { acct, name, number }),
        2 => (a.clone(), 0..NAMES.len(), 0..NUMBERS.len())
            .prop_map(|(acct, name, number)| Op::Identify { acct, name, number }),
        3 => (a.clone(), prop::option::of(t.clone()), 0..NAMES.len(), 0..NUMBERS.len())
            .prop_map(|(acct, target, name, number)| Op::Note { acct, target, name, number }),
        1 => (a.clone(), t.clone()).prop_map(|(acct, target)| Op::GetNote { acct, target }),
        1 => (a.clone(), prop::option::of(t.clone()))
            .prop_map(|(acct, contact)| Op::ListNotes { acct, contact }),
        3 => (a, t.clone(), t).prop_map(|(acct, contact, note)| Op::Deliver { acct, contact, note }),
    ]
}

#[derive(Debug, Clone)]
struct ContactModel {
    acct: usize,
    id: String,
    alive: bool,
    message: Option<String>,
}

#[derive(Debug, Clone)]
struct NoteModel {
    acct: usize,
    id: String,
}

/// One case: account names of its own, so cases share a server but not data.
struct Case<'a> {
    app: &'a TestApp,
    names: Vec<String>,
    contacts: Vec<ContactModel>,
    notes: Vec<NoteModel>,
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(fail(format!($($arg)*)));
        }
    };
}

impl Case<'_> {
    fn acct(&self, i: usize) -> String {
        self.names[i].clone()
    }

    fn owned_alive(&self, acct: usize) -> BTreeSet<String> {
        self.contacts
            .iter()
            .filter(|c| c.acct == acct && c.alive)
            .map(|c| c.id.clone())
            .collect()
    }

    /// A contact id the op aims at: an existing one (any account) or, with no contacts yet,
    /// a fresh UUID.
    fn contact_at(&self, i: usize) -> (Option<usize>, String) {
        if self.contacts.is_empty() {
            return (None, uuid::Uuid::now_v7().to_string());
        }
        let k = i % self.contacts.len();
        (Some(k), self.contacts[k].id.clone())
    }

    fn note_at(&self, i: usize) -> (Option<usize>, String) {
        if self.notes.is_empty() {
            return (None, uuid::Uuid::now_v7().to_string());
        }
        let k = i % self.notes.len();
        (Some(k), self.notes[k].id.clone())
    }

    fn visible(&self, acct: usize, k: Option<usize>) -> bool {
        k.is_some_and(|k| self.contacts[k].acct == acct && self.contacts[k].alive)
    }

    async fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let mut contacts = self.app.contacts.clone();
        let mut notes = self.app.notes.clone();
        match *op {
            Op::Create {
                acct,
                name,
                number,
                message,
            } => {
                let mut c = app::caller(NAMES[name], NUMBERS[number]);
                if message {
                    c.caller_message = Some(pb::CallerMessage {
                        text: format!("Nachricht für {}", self.acct(acct)),
                        ..Default::default()
                    });
                }
                let got = contacts
                    .create_contact(pb::CreateContactRequest {
                        account_id: self.acct(acct),
                        contact: Some(c),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await
                    .map_err(|s| fail(format!("create: {s:?}")))?
                    .into_inner();
                ensure!(
                    got.account_id == self.acct(acct),
                    "created in {}",
                    got.account_id
                );
                self.contacts.push(ContactModel {
                    acct,
                    id: got.contact_id,
                    alive: true,
                    message: got.caller_message.map(|m| m.message_id),
                });
            }
            Op::Get { acct, target } => {
                let (k, id) = self.contact_at(target);
                let r = contacts
                    .get_contact(pb::GetContactRequest {
                        account_id: self.acct(acct),
                        contact_id: id,
                    })
                    .await;
                match (self.visible(acct, k), r) {
                    (true, Ok(c)) => {
                        ensure!(c.get_ref().account_id == self.acct(acct), "read across")
                    }
                    (false, Err(s)) if s.code() == Code::NotFound => {}
                    (v, r) => return Err(fail(format!("get visible={v}: {r:?}"))),
                }
            }
            Op::Update { acct, target } => {
                let (k, id) = self.contact_at(target);
                let r = contacts
                    .update_contact(pb::UpdateContactRequest {
                        account_id: self.acct(acct),
                        contact: Some(pb::Contact {
                            contact_id: id,
                            company: format!("by {}", self.acct(acct)),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["company".into()],
                        }),
                        etag: String::new(),
                    })
                    .await;
                match (self.visible(acct, k), r) {
                    (true, Ok(c)) => {
                        ensure!(c.get_ref().account_id == self.acct(acct), "wrote across")
                    }
                    (false, Err(s)) if s.code() == Code::NotFound => {}
                    (v, r) => return Err(fail(format!("update visible={v}: {r:?}"))),
                }
            }
            Op::Delete { acct, target } => {
                let (k, id) = self.contact_at(target);
                let r = contacts
                    .delete_contact(pb::DeleteContactRequest {
                        account_id: self.acct(acct),
                        contact_id: id,
                        etag: String::new(),
                    })
                    .await;
                match (self.visible(acct, k), r) {
                    (true, Ok(_)) => {
                        let k = k.unwrap();
                        self.contacts[k].alive = false;
                        self.contacts[k].message = None;
                    }
                    (false, Err(s)) if s.code() == Code::NotFound => {}
                    (v, r) => return Err(fail(format!("delete visible={v}: {r:?}"))),
                }
            }
            Op::List { acct } => self.check_list(acct).await?,
            Op::ListExpiring { acct } => {
                let mut token = String::new();
                loop {
                    let page = contacts
                        .list_expiring_contacts(pb::ListExpiringContactsRequest {
                            account_id: self.acct(acct),
                            within_days: 3650,
                            page_size: 2,
                            page_token: token,
                        })
                        .await
                        .map_err(|s| fail(format!("expiring: {s:?}")))?
                        .into_inner();
                    let mine = self.owned_alive(acct);
                    for c in &page.contacts {
                        ensure!(
                            c.account_id == self.acct(acct) && mine.contains(&c.contact_id),
                            "expiring list of {} shows {} of {}",
                            self.acct(acct),
                            c.contact_id,
                            c.account_id
                        );
                    }
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
            }
            Op::Search { acct, name, number } => {
                let mut token = String::new();
                loop {
                    let page = contacts
                        .search_contacts(pb::SearchContactsRequest {
                            account_id: self.acct(acct),
                            query: name.map(|n| NAMES[n].to_owned()).unwrap_or_default(),
                            phone_number: if number { "+49".into() } else { String::new() },
                            page_size: 2,
                            page_token: token,
                            ..Default::default()
                        })
                        .await
                        .map_err(|s| fail(format!("search: {s:?}")))?
                        .into_inner();
                    let mine = self.owned_alive(acct);
                    for c in &page.contacts {
                        ensure!(
                            c.account_id == self.acct(acct) && mine.contains(&c.contact_id),
                            "search of {} shows {} of {}",
                            self.acct(acct),
                            c.contact_id,
                            c.account_id
                        );
                    }
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    token = page.next_page_token;
                }
            }
            Op::Identify { acct, name, number } => {
                let mut id = IdentificationServiceClient::new(self.app.channel.clone());
                let r = id
                    .identify_caller(pb::IdentifyCallerRequest {
                        account_id: self.acct(acct),
                        employee_id: "emp-1".into(),
                        caller_number: NUMBERS[number].into(),
                        caller_name: NAMES[name].into(),
                        max_results: 20,
                    })
                    .await
                    .map_err(|s| fail(format!("identify: {s:?}")))?
                    .into_inner();
                let mine = self.owned_alive(acct);
                for m in &r.matches {
                    let c = m.contact.as_ref().unwrap();
                    ensure!(
                        c.account_id == self.acct(acct) && mine.contains(&c.contact_id),
                        "{} identified {} of {}",
                        self.acct(acct),
                        c.contact_id,
                        c.account_id
                    );
                }
            }
            Op::Note {
                acct,
                target,
                name,
                number,
            } => {
                let (k, contact_id) = match target {
                    Some(t) => self.contact_at(t),
                    None => (None, String::new()),
                };
                let r = notes
                    .create_call_note(pb::CreateCallNoteRequest {
                        account_id: self.acct(acct),
                        request_id: uuid::Uuid::new_v4().to_string(),
                        call_note: Some(pb::CallNote {
                            contact_id: contact_id.clone(),
                            agent_id: "agent-1".into(),
                            caller_last_name: NAMES[name].into(),
                            caller_number: NUMBERS[number].into(),
                            text: "Anruf".into(),
                            ..Default::default()
                        }),
                    })
                    .await;
                let linked_by_id = !contact_id.is_empty();
                match (linked_by_id, self.visible(acct, k), r) {
                    (true, false, Err(s)) if s.code() == Code::NotFound => {}
                    (true, true, Ok(r)) | (false, _, Ok(r)) => {
                        let r = r.into_inner();
                        let note = r.call_note.unwrap();
                        ensure!(
                            note.account_id == self.acct(acct),
                            "note made in {}",
                            note.account_id
                        );
                        if let Some(c) = &r.contact {
                            ensure!(
                                c.account_id == self.acct(acct),
                                "note linked across accounts"
                            );
                            let known = self.contacts.iter().position(|m| m.id == c.contact_id);
                            match known {
                                Some(i) => ensure!(
                                    self.contacts[i].acct == acct && self.contacts[i].alive,
                                    "note linked to {} of another account",
                                    c.contact_id
                                ),
                                None => {
                                    ensure!(r.contact_created, "linked to an unknown contact");
                                    self.contacts.push(ContactModel {
                                        acct,
                                        id: c.contact_id.clone(),
                                        alive: true,
                                        message: None,
                                    });
                                }
                            }
                        }
                        self.notes.push(NoteModel {
                            acct,
                            id: note.call_note_id,
                        });
                    }
                    (l, v, r) => return Err(fail(format!("note by_id={l} visible={v}: {r:?}"))),
                }
            }
            Op::GetNote { acct, target } => {
                let (k, id) = self.note_at(target);
                let r = notes
                    .get_call_note(pb::GetCallNoteRequest {
                        account_id: self.acct(acct),
                        call_note_id: id,
                    })
                    .await;
                let mine = k.is_some_and(|k| self.notes[k].acct == acct);
                match (mine, r) {
                    (true, Ok(n)) => ensure!(
                        n.get_ref().account_id == self.acct(acct),
                        "note read across"
                    ),
                    (false, Err(s)) if s.code() == Code::NotFound => {}
                    (m, r) => return Err(fail(format!("get note mine={m}: {r:?}"))),
                }
            }
            Op::ListNotes { acct, contact } => {
                let contact_id = contact.map(|c| self.contact_at(c).1).unwrap_or_default();
                let page = notes
                    .list_call_notes(pb::ListCallNotesRequest {
                        account_id: self.acct(acct),
                        contact_id,
                        page_size: 500,
                        ..Default::default()
                    })
                    .await
                    .map_err(|s| fail(format!("list notes: {s:?}")))?
                    .into_inner();
                let mine: BTreeSet<&str> = self
                    .notes
                    .iter()
                    .filter(|n| n.acct == acct)
                    .map(|n| n.id.as_str())
                    .collect();
                for n in &page.call_notes {
                    ensure!(
                        n.account_id == self.acct(acct) && mine.contains(n.call_note_id.as_str()),
                        "notes of {} show {} of {}",
                        self.acct(acct),
                        n.call_note_id,
                        n.account_id
                    );
                }
            }
            Op::Deliver {
                acct,
                contact,
                note,
            } => {
                let (ck, contact_id) = self.contact_at(contact);
                let (nk, note_id) = self.note_at(note);
                let message_id = ck
                    .and_then(|k| self.contacts[k].message.clone())
                    .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                let r = notes
                    .deliver_caller_message(pb::DeliverCallerMessageRequest {
                        account_id: self.acct(acct),
                        contact_id,
                        message_id: message_id.clone(),
                        call_note_id: note_id,
                        agent_id: "agent-1".into(),
                        request_id: uuid::Uuid::new_v4().to_string(),
                    })
                    .await;
                let contact_ok = self.visible(acct, ck);
                let note_ok = nk.is_some_and(|k| self.notes[k].acct == acct);
                match r {
                    Ok(d) => {
                        ensure!(contact_ok && note_ok, "delivered across accounts");
                        let d = d.into_inner();
                        let n = d.call_note.unwrap();
                        ensure!(
                            n.account_id == self.acct(acct),
                            "delivered into {}",
                            n.account_id
                        );
                        ensure!(
                            n.deliveries.iter().any(|x| x.message_id == message_id),
                            "delivery not in the note"
                        );
                        self.contacts[ck.unwrap()].message = None;
                    }
                    Err(s) if s.code() == Code::NotFound => {
                        ensure!(
                            !(contact_ok && note_ok),
                            "own contact and note not found: {s:?}"
                        )
                    }
                    Err(s) if s.code() == Code::FailedPrecondition => {
                        ensure!(
                            contact_ok && note_ok,
                            "a foreign id got past NOT_FOUND: {s:?}"
                        );
                        // Metadata may name the note that got the message: only one of ours.
                        if let Some(named) = tonic_types::StatusExt::get_details_error_info(&s)
                            .and_then(|i| i.metadata.get("call_note_id").cloned())
                        {
                            ensure!(
                                self.notes.iter().any(|n| n.id == named && n.acct == acct),
                                "error names note {named} of another account"
                            );
                        }
                    }
                    Err(s) => return Err(fail(format!("deliver: {s:?}"))),
                }
            }
        }
        Ok(())
    }

    /// Paged with small pages: exactly the account's live contacts, nothing else.
    async fn check_list(&self, acct: usize) -> Result<(), TestCaseError> {
        let mut contacts = self.app.contacts.clone();
        let mut seen = BTreeSet::new();
        let mut token = String::new();
        loop {
            let page = contacts
                .list_contacts(pb::ListContactsRequest {
                    account_id: self.acct(acct),
                    page_size: 3,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .map_err(|s| fail(format!("list: {s:?}")))?
                .into_inner();
            for c in page.contacts {
                ensure!(
                    c.account_id == self.acct(acct),
                    "listed {} of {}",
                    c.contact_id,
                    c.account_id
                );
                ensure!(seen.insert(c.contact_id), "listed twice");
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        ensure!(
            seen == self.owned_alive(acct),
            "list of {} is not its contacts",
            self.acct(acct)
        );
        Ok(())
    }

    /// After the ops: lists are exact, every contact's company was written by its owner only,
    /// and the database holds no link between accounts.
    async fn finish(&self, db: &tokio_postgres::Client) -> Result<(), TestCaseError> {
        for acct in 0..ACCOUNTS {
            self.check_list(acct).await?;
        }
        let mut contacts = self.app.contacts.clone();
        for c in self.contacts.iter().filter(|c| c.alive) {
            let got = contacts
                .get_contact(pb::GetContactRequest {
                    account_id: self.acct(c.acct),
                    contact_id: c.id.clone(),
                })
                .await
                .map_err(|s| fail(format!("final get: {s:?}")))?
                .into_inner();
            ensure!(
                got.company.is_empty() || got.company == format!("by {}", self.acct(c.acct)),
                "{} of {} was changed by another account: {}",
                c.id,
                self.acct(c.acct),
                got.company
            );
        }
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let crossing: i64 = callers_testkit::scalar(
            db,
            "SELECT (SELECT count(*) FROM call_notes n JOIN contacts c \
                   ON c.contact_id = n.contact_id AND c.account_id <> n.account_id \
                   WHERE n.account_id = ANY($1)) + \
                 (SELECT count(*) FROM message_deliveries d JOIN call_notes n \
                   ON n.call_note_id = d.call_note_id AND n.account_id <> d.account_id \
                   WHERE d.account_id = ANY($1)) + \
                 (SELECT count(*) FROM contact_phone_numbers p JOIN contacts c \
                   ON c.contact_id = p.contact_id AND c.account_id <> p.account_id \
                   WHERE p.account_id = ANY($1))",
            &[&names],
        )
        .await;
        ensure!(crossing == 0, "{crossing} rows link two accounts");
        Ok(())
    }
}

fn cases() -> u32 {
    if std::env::var("CALLERS_LONG_TESTS").is_ok_and(|v| v == "1") {
        400
    } else {
        24
    }
}

#[test]
fn no_operation_of_one_account_reads_or_touches_another_accounts_data() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    let db = rt.block_on(app.sql());
    let case_no = AtomicUsize::new(0);
    let ops_run = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(op(), 1..40), |ops| {
            let n = case_no.fetch_add(1, Ordering::Relaxed);
            let mut case = Case {
                app: &app,
                names: (0..ACCOUNTS).map(|a| format!("iso{n}-{a}")).collect(),
                contacts: Vec::new(),
                notes: Vec::new(),
            };
            rt.block_on(async {
                for op in &ops {
                    case.run(op).await?;
                }
                case.finish(&db).await
            })?;
            ops_run.fetch_add(ops.len(), Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    println!(
        "[isolation] {} cases, {} operations, no crossing",
        case_no.load(Ordering::Relaxed),
        ops_run.load(Ordering::Relaxed)
    );
    rt.block_on(app.shutdown());
}
