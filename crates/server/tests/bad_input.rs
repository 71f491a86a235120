//! Malformed requests against every RPC: missing and oversized fields, bad UUIDs, unknown enum
//! values, invalid numbers, too many items, bad field-mask paths, negative page sizes, forged
//! page tokens and another account's ids. Each answer is INVALID_ARGUMENT naming the field in a
//! `BadRequest` (or NOT_FOUND, or the documented domain error), never INTERNAL, UNKNOWN or a
//! panic; no bad value is echoed back; and the database is byte for byte what it was.
//!
//! A property test then throws random requests at the same RPCs: never INTERNAL or UNKNOWN.

use callers_testkit::app;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use callers_proto::v1 as pb;
use callers_proto::v1::call_handling_service_client::CallHandlingServiceClient;
use callers_proto::v1::call_note_service_client::CallNoteServiceClient;
use callers_proto::v1::change_service_client::ChangeServiceClient;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_proto::v1::privacy_service_client::PrivacyServiceClient;
use callers_testkit::app::{TestApp, caller, create, spawn_app};
use prost_types::{FieldMask, Timestamp};
use std::future::Future;
use std::pin::Pin;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A value that must never come back in an answer nor reach a log: bad input may be personal
/// data.
const ECHO: &str = "Sonnenblume";

#[derive(Debug, Clone)]
enum Want {
    /// INVALID_ARGUMENT with a `BadRequest` violation for exactly this field path.
    Invalid(&'static str),
    NotFound,
    /// A domain error with this `ErrorInfo` reason.
    Reason(Code, &'static str),
    /// Refused by the transport before any handler (message too large).
    TooLarge,
}

type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

struct Corpus {
    cases: Vec<(String, Want, Call)>,
}

impl Corpus {
    fn add<F>(&mut self, name: impl Into<String>, want: Want, call: F)
    where
        F: Future<Output = Result<(), Status>> + Send + 'static,
    {
        self.cases.push((name.into(), want, Box::pin(call)));
    }
}

/// Every table and a digest of its rows: any insert, update or delete changes it.
async fn snapshot(db: &tokio_postgres::Client) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for table in [
        "contacts",
        "contact_phone_numbers",
        "call_notes",
        "message_deliveries",
        "call_handling",
        "employee_call_handling",
        "idempotency_keys",
        "changes",
        "change_counters",
        "undelivered_messages",
        "call_counts",
        "suppressions",
        "privacy_requests",
        "account_deletions",
    ] {
        let row = db
            .query_one(
                &format!(
                    "SELECT count(*) AS rows, \
                     coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') AS digest \
                     FROM {table} t"
                ),
                &[],
            )
            .await
            .unwrap();
        out.push((table.to_owned(), row.get("rows"), row.get("digest")));
    }
    out
}

/// What is wrong with the answer `got` to a case that wants `want`, if anything.
fn check(want: &Want, got: Result<(), Status>) -> Result<(), String> {
    let status = match got {
        Ok(()) => return Err("accepted".into()),
        Err(s) => s,
    };
    if matches!(status.code(), Code::Internal | Code::Unknown) {
        return Err(format!("{status:?}"));
    }
    let shown = format!("{} {:?}", status.message(), status.details());
    if shown.contains(ECHO) {
        return Err(format!("the bad value came back: {shown}"));
    }
    let wanted = match want {
        Want::Invalid(field) => {
            let fields: Vec<String> = status
                .get_details_bad_request()
                .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
                .unwrap_or_default();
            status.code() == Code::InvalidArgument && fields.iter().any(|f| f == field)
        }
        Want::NotFound => status.code() == Code::NotFound,
        Want::Reason(code, reason) => status.code() == *code && app::reason(&status) == *reason,
        Want::TooLarge => matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
    };
    if wanted {
        Ok(())
    } else {
        Err(format!(
            "{:?} {:?} reason {:?} fields {:?}",
            status.code(),
            status.message(),
            app::reason(&status),
            status
                .get_details_bad_request()
                .map(|b| b
                    .field_violations
                    .into_iter()
                    .map(|v| v.field)
                    .collect::<Vec<_>>())
                .unwrap_or_default()
        ))
    }
}

fn s(n: usize) -> String {
    let mut v = ECHO.to_owned();
    while v.chars().count() < n {
        v.push('x');
    }
    v.chars().take(n).collect()
}

fn token(query: &str, position: serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::json!({"v": 1, "q": query, "p": position}).to_string())
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

struct Seeded {
    mine: pb::Contact,
    my_note: String,
    theirs: pb::Contact,
    their_note: String,
    their_token: String,
    my_token: String,
    /// SearchContacts tokens of acme: newest first, and ranked for "Hans".
    my_search_token: String,
    my_ranked_token: String,
    /// An acme contact whose message expired a second after seeding, and a note of acme linked
    /// to nobody.
    expired: pb::Contact,
    unlinked_note: String,
}

async fn seed(app: &mut TestApp) -> Seeded {
    let with_message = |last: &str, number: &str| {
        let mut c = caller(last, number);
        c.caller_message = Some(pb::CallerMessage {
            text: "Bitte zurückrufen".into(),
            ..Default::default()
        });
        c
    };
    let mine = create(app, "acme", with_message("Müller", "030 1234567")).await;
    create(app, "acme", caller("Meier", "030 7654321")).await;
    let theirs = create(app, "globex", with_message("Schulze", "030 1111111")).await;
    create(app, "globex", caller("Schmidt", "030 2222222")).await;
    let note = |account: &str, contact_id: &str| pb::CreateCallNoteRequest {
        account_id: account.into(),
        request_id: String::new(),
        call_note: Some(pb::CallNote {
            contact_id: contact_id.into(),
            agent_id: "agent-1".into(),
            text: "Rückruf".into(),
            ..Default::default()
        }),
    };
    let my_note = app
        .notes
        .create_call_note(note("acme", &mine.contact_id))
        .await
        .unwrap()
        .into_inner()
        .call_note
        .unwrap()
        .call_note_id;
    let their_note = app
        .notes
        .create_call_note(note("globex", &theirs.contact_id))
        .await
        .unwrap()
        .into_inner()
        .call_note
        .unwrap()
        .call_note_id;
    let list = |account: &str| pb::ListContactsRequest {
        account_id: account.into(),
        page_size: 1,
        ..Default::default()
    };
    let their_token = app
        .contacts
        .list_contacts(list("globex"))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let my_token = app
        .contacts
        .list_contacts(list("acme"))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!their_token.is_empty() && !my_token.is_empty());
    let search = |query: &str| pb::SearchContactsRequest {
        account_id: "acme".into(),
        query: query.into(),
        page_size: 1,
        ..Default::default()
    };
    let mut search_tokens = Vec::new();
    for query in ["", "Hans"] {
        let token = app
            .contacts
            .search_contacts(search(query))
            .await
            .unwrap()
            .into_inner()
            .next_page_token;
        assert!(!token.is_empty(), "{query:?}");
        search_tokens.push(token);
    }
    let my_ranked_token = search_tokens.pop().unwrap();
    let my_search_token = search_tokens.pop().unwrap();
    let mut ch = CallHandlingServiceClient::new(app.channel.clone());
    ch.update_call_handling(pb::UpdateCallHandlingRequest {
        call_handling: Some(pb::CallHandling {
            account_id: "acme".into(),
            conversation_style: pb::ConversationStyle::Formal as i32,
            caller_id_transmission: true,
            phone_region: "DE".into(),
            ..Default::default()
        }),
        update_mask: None,
        etag: String::new(),
    })
    .await
    .unwrap();
    let mut expiring = with_message("Kurz", "030 3333333");
    expiring.caller_message.as_mut().unwrap().expire_time = Some(Timestamp {
        seconds: app.clock_now().timestamp() + 1,
        nanos: 0,
    });
    let expired = create(app, "acme", expiring).await;
    let unlinked_note = app
        .notes
        .create_call_note(note("acme", ""))
        .await
        .unwrap()
        .into_inner()
        .call_note
        .unwrap()
        .call_note_id;
    app.clock
        .set(app.clock_now() + chrono::Duration::seconds(2));
    Seeded {
        expired,
        unlinked_note,
        mine,
        my_note,
        theirs,
        their_note,
        their_token,
        my_token,
        my_search_token,
        my_ranked_token,
    }
}

fn contact_cases(c: &mut Corpus, app: &TestApp, k: &Seeded) {
    use Want::*;
    let client = ContactServiceClient::new(app.channel.clone());
    let create = |name: &str,
                  want: Want,
                  account: &str,
                  contact: Option<pb::Contact>,
                  rid: &str,
                  c: &mut Corpus| {
        let mut cl = client.clone();
        let req = pb::CreateContactRequest {
            account_id: account.into(),
            contact,
            request_id: rid.into(),
        };
        c.add(format!("CreateContact {name}"), want, async move {
            cl.create_contact(req).await.map(drop)
        });
    };
    let good = || caller("Neumann", "030 3333333");
    let with = |f: &dyn Fn(&mut pb::Contact)| {
        let mut x = good();
        f(&mut x);
        Some(x)
    };
    create("no account", Invalid("account_id"), "", Some(good()), "", c);
    create(
        "account with a space",
        Invalid("account_id"),
        "ac me",
        Some(good()),
        "",
        c,
    );
    create(
        "account too long",
        Invalid("account_id"),
        &"a".repeat(65),
        Some(good()),
        "",
        c,
    );
    create(
        "account not ascii",
        Invalid("account_id"),
        "äcme",
        Some(good()),
        "",
        c,
    );
    create("no contact", Invalid("contact"), "acme", None, "", c);
    create(
        "nobody",
        Invalid("contact"),
        "acme",
        Some(pb::Contact::default()),
        "",
        c,
    );
    create(
        "foreign inner account",
        Invalid("contact.account_id"),
        "acme",
        with(&|x| x.account_id = "globex".into()),
        "",
        c,
    );
    create(
        "first name too long",
        Invalid("contact.first_name"),
        "acme",
        with(&|x| x.first_name = s(201)),
        "",
        c,
    );
    create(
        "last name too long",
        Invalid("contact.last_name"),
        "acme",
        with(&|x| x.last_name = s(201)),
        "",
        c,
    );
    create(
        "company too long",
        Invalid("contact.company"),
        "acme",
        with(&|x| x.company = s(201)),
        "",
        c,
    );
    create(
        "title too long",
        Invalid("contact.title"),
        "acme",
        with(&|x| x.title = s(201)),
        "",
        c,
    );
    create(
        "salutation too long",
        Invalid("contact.salutation"),
        "acme",
        with(&|x| x.salutation = s(201)),
        "",
        c,
    );
    create(
        "control character",
        Invalid("contact.last_name"),
        "acme",
        with(&|x| x.last_name = format!("{ECHO}\u{7}")),
        "",
        c,
    );
    create(
        "NUL",
        Invalid("contact.company"),
        "acme",
        with(&|x| x.company = format!("{ECHO}\0")),
        "",
        c,
    );
    create(
        "bad email",
        Invalid("contact.email"),
        "acme",
        with(&|x| x.email = format!("{ECHO}@@")),
        "",
        c,
    );
    create(
        "email too long",
        Invalid("contact.email"),
        "acme",
        with(&|x| x.email = format!("{}@example.org", s(250))),
        "",
        c,
    );
    create(
        "eleven numbers",
        Invalid("contact.phone_numbers"),
        "acme",
        with(&|x| {
            x.phone_numbers = (0..11)
                .map(|i| pb::PhoneNumber {
                    number: format!("030 12345{i:02}"),
                    ..Default::default()
                })
                .collect()
        }),
        "",
        c,
    );
    create(
        "letters for a number",
        Invalid("contact.phone_numbers[0].number"),
        "acme",
        with(&|x| x.phone_numbers[0].number = ECHO.into()),
        "",
        c,
    );
    create(
        "too short a number",
        Invalid("contact.phone_numbers[0].number"),
        "acme",
        with(&|x| x.phone_numbers[0].number = "12".into()),
        "",
        c,
    );
    create(
        "huge number",
        Invalid("contact.phone_numbers[0].number"),
        "acme",
        with(&|x| x.phone_numbers[0].number = "9".repeat(5000)),
        "",
        c,
    );
    create(
        "empty number",
        Invalid("contact.phone_numbers[0].number"),
        "acme",
        with(&|x| x.phone_numbers[0].number = String::new()),
        "",
        c,
    );
    create(
        "unknown phone type",
        Invalid("contact.phone_numbers[0].type"),
        "acme",
        with(&|x| x.phone_numbers[0].r#type = 99),
        "",
        c,
    );
    create(
        "negative phone type",
        Invalid("contact.phone_numbers[0].type"),
        "acme",
        with(&|x| x.phone_numbers[0].r#type = -1),
        "",
        c,
    );
    create(
        "21 categories",
        Invalid("contact.categories"),
        "acme",
        with(&|x| x.categories = (0..21).map(|i| format!("c{i}")).collect()),
        "",
        c,
    );
    create(
        "bad category",
        Invalid("contact.categories[1]"),
        "acme",
        with(&|x| x.categories = vec!["caller".into(), "Not A Slug".into()]),
        "",
        c,
    );
    create(
        "empty category",
        Invalid("contact.categories[0]"),
        "acme",
        with(&|x| x.categories = vec![String::new()]),
        "",
        c,
    );
    create(
        "message too long",
        Invalid("contact.caller_message.text"),
        "acme",
        with(&|x| {
            x.caller_message = Some(pb::CallerMessage {
                text: s(2001),
                ..Default::default()
            })
        }),
        "",
        c,
    );
    create(
        "instruction too long",
        Invalid("contact.handling_instruction"),
        "acme",
        with(&|x| x.handling_instruction = s(2001)),
        "",
        c,
    );
    create(
        "unknown origin",
        Invalid("contact.origin"),
        "acme",
        with(&|x| x.origin = 99),
        "",
        c,
    );
    create(
        "request id not a uuid",
        Invalid("request_id"),
        "acme",
        Some(good()),
        ECHO,
        c,
    );
    create(
        "request id braces",
        Invalid("request_id"),
        "acme",
        Some(good()),
        "{not-a-uuid}",
        c,
    );
    create(
        "over the message size",
        TooLarge,
        "acme",
        with(&|x| x.handling_instruction = s(300 * 1024)),
        "",
        c,
    );

    let mut cl = client.clone();
    let mine = k.mine.clone();
    let theirs = k.theirs.clone();
    for (name, id, want) in [
        ("empty id", String::new(), Invalid("contact_id")),
        ("not a uuid", ECHO.to_owned(), Invalid("contact_id")),
        (
            "uuid with junk",
            format!("{}x", mine.contact_id),
            Invalid("contact_id"),
        ),
        ("unknown id", uuid::Uuid::now_v7().to_string(), NotFound),
        ("another account's id", theirs.contact_id.clone(), NotFound),
    ] {
        let mut g = cl.clone();
        let get_id = id.clone();
        c.add(format!("GetContact {name}"), want.clone(), async move {
            g.get_contact(pb::GetContactRequest {
                account_id: "acme".into(),
                contact_id: get_id,
            })
            .await
            .map(drop)
        });
        let mut d = cl.clone();
        c.add(format!("DeleteContact {name}"), want, async move {
            d.delete_contact(pb::DeleteContactRequest {
                account_id: "acme".into(),
                contact_id: id,
                etag: String::new(),
            })
            .await
            .map(drop)
        });
    }
    let mut g = cl.clone();
    c.add(
        "GetContact bad account",
        Invalid("account_id"),
        async move {
            g.get_contact(pb::GetContactRequest {
                account_id: "a/b".into(),
                contact_id: uuid::Uuid::now_v7().to_string(),
            })
            .await
            .map(drop)
        },
    );

    let update = |name: &str,
                  want: Want,
                  contact: Option<pb::Contact>,
                  m: Option<FieldMask>,
                  c: &mut Corpus| {
        let mut u = client.clone();
        let req = pb::UpdateContactRequest {
            account_id: "acme".into(),
            contact,
            update_mask: m,
            etag: String::new(),
        };
        c.add(format!("UpdateContact {name}"), want, async move {
            u.update_contact(req).await.map(drop)
        });
    };
    let patch = |f: &dyn Fn(&mut pb::Contact)| {
        let mut x = pb::Contact {
            contact_id: mine.contact_id.clone(),
            ..Default::default()
        };
        f(&mut x);
        Some(x)
    };
    update(
        "no mask",
        Invalid("update_mask"),
        patch(&|x| x.company = "X".into()),
        None,
        c,
    );
    update(
        "empty mask",
        Invalid("update_mask"),
        patch(&|x| x.company = "X".into()),
        mask(&[]),
        c,
    );
    update(
        "unknown path",
        Invalid("update_mask.paths[1]"),
        patch(&|x| x.company = "X".into()),
        mask(&["company", ECHO]),
        c,
    );
    update(
        "output-only path",
        Invalid("update_mask.paths[0]"),
        patch(&|_| {}),
        mask(&["etag"]),
        c,
    );
    update(
        "id path",
        Invalid("update_mask.paths[0]"),
        patch(&|_| {}),
        mask(&["contact_id"]),
        c,
    );
    update(
        "no contact",
        Invalid("contact"),
        None,
        mask(&["company"]),
        c,
    );
    update(
        "no id",
        Invalid("contact.contact_id"),
        Some(pb::Contact::default()),
        mask(&["company"]),
        c,
    );
    update(
        "bad id",
        Invalid("contact.contact_id"),
        Some(pb::Contact {
            contact_id: ECHO.into(),
            ..Default::default()
        }),
        mask(&["company"]),
        c,
    );
    update(
        "another account's id",
        NotFound,
        Some(pb::Contact {
            contact_id: theirs.contact_id.clone(),
            company: "Übernommen".into(),
            ..Default::default()
        }),
        mask(&["company"]),
        c,
    );
    update(
        "foreign inner account",
        Invalid("contact.account_id"),
        patch(&|x| x.account_id = "globex".into()),
        mask(&["company"]),
        c,
    );
    update(
        "company too long",
        Invalid("contact.company"),
        patch(&|x| x.company = s(201)),
        mask(&["company"]),
        c,
    );
    update(
        "bad number",
        Invalid("contact.phone_numbers[0].number"),
        patch(&|x| {
            x.phone_numbers = vec![pb::PhoneNumber {
                number: ECHO.into(),
                ..Default::default()
            }]
        }),
        mask(&["phone_numbers"]),
        c,
    );
    update(
        "bad category",
        Invalid("contact.categories[0]"),
        patch(&|x| x.categories = vec!["UPPER".into()]),
        mask(&["categories"]),
        c,
    );
    update(
        "message too long",
        Invalid("contact.caller_message.text"),
        patch(&|x| {
            x.caller_message = Some(pb::CallerMessage {
                text: s(2001),
                ..Default::default()
            })
        }),
        mask(&["caller_message.text"]),
        c,
    );
    update(
        "clearing everything that identifies",
        Invalid("contact"),
        patch(&|_| {}),
        mask(&["first_name", "last_name", "company", "phone_numbers"]),
        c,
    );

    let list = |name: &str, want: Want, req: pb::ListContactsRequest, c: &mut Corpus| {
        let mut l = client.clone();
        c.add(format!("ListContacts {name}"), want, async move {
            l.list_contacts(req).await.map(drop)
        });
    };
    let base = || pb::ListContactsRequest {
        account_id: "acme".into(),
        ..Default::default()
    };
    list(
        "negative page size",
        Invalid("page_size"),
        pb::ListContactsRequest {
            page_size: -1,
            ..base()
        },
        c,
    );
    list(
        "most negative page size",
        Invalid("page_size"),
        pb::ListContactsRequest {
            page_size: i32::MIN,
            ..base()
        },
        c,
    );
    list(
        "bad category",
        Invalid("category"),
        pb::ListContactsRequest {
            category: "Not A Slug".into(),
            ..base()
        },
        c,
    );
    list(
        "garbage token",
        Invalid("page_token"),
        pb::ListContactsRequest {
            page_token: format!("!!{ECHO}!!"),
            ..base()
        },
        c,
    );
    list(
        "token of json garbage",
        Invalid("page_token"),
        pb::ListContactsRequest {
            page_token: URL_SAFE_NO_PAD.encode("{\"v\":1"),
            ..base()
        },
        c,
    );
    list(
        "token too long",
        Invalid("page_token"),
        pb::ListContactsRequest {
            page_token: "A".repeat(5000),
            ..base()
        },
        c,
    );
    list(
        "token of another account",
        Invalid("page_token"),
        pb::ListContactsRequest {
            page_token: k.their_token.clone(),
            ..base()
        },
        c,
    );
    list(
        "forged token naming another account",
        Invalid("page_token"),
        pb::ListContactsRequest {
            page_token: token("contacts/globex/", serde_json::json!(uuid::Uuid::nil())),
            ..base()
        },
        c,
    );
    list(
        "token of another filter",
        Invalid("page_token"),
        pb::ListContactsRequest {
            page_token: k.my_token.clone(),
            category: "caller".into(),
            ..base()
        },
        c,
    );
    list(
        "token with a wrong version",
        Invalid("page_token"),
        pb::ListContactsRequest {
            page_token: URL_SAFE_NO_PAD.encode(
                serde_json::json!({"v": 2, "q": "contacts/acme/", "p": uuid::Uuid::nil()})
                    .to_string(),
            ),
            ..base()
        },
        c,
    );
    list(
        "token with a wrong position type",
        Invalid("page_token"),
        pb::ListContactsRequest {
            page_token: token("contacts/acme/", serde_json::json!([1, 2, 3])),
            ..base()
        },
        c,
    );

    let expiring =
        |name: &str, want: Want, req: pb::ListExpiringContactsRequest, c: &mut Corpus| {
            let mut l = client.clone();
            c.add(format!("ListExpiringContacts {name}"), want, async move {
                l.list_expiring_contacts(req).await.map(drop)
            });
        };
    let base = || pb::ListExpiringContactsRequest {
        account_id: "acme".into(),
        within_days: 30,
        ..Default::default()
    };
    expiring(
        "zero days",
        Invalid("within_days"),
        pb::ListExpiringContactsRequest {
            within_days: 0,
            ..base()
        },
        c,
    );
    expiring(
        "negative days",
        Invalid("within_days"),
        pb::ListExpiringContactsRequest {
            within_days: -5,
            ..base()
        },
        c,
    );
    expiring(
        "days beyond ten years",
        Invalid("within_days"),
        pb::ListExpiringContactsRequest {
            within_days: i32::MAX,
            ..base()
        },
        c,
    );
    expiring(
        "negative page size",
        Invalid("page_size"),
        pb::ListExpiringContactsRequest {
            page_size: -3,
            ..base()
        },
        c,
    );
    expiring(
        "a ListContacts token",
        Invalid("page_token"),
        pb::ListExpiringContactsRequest {
            page_token: k.my_token.clone(),
            ..base()
        },
        c,
    );
    expiring(
        "forged token",
        Invalid("page_token"),
        pb::ListExpiringContactsRequest {
            page_token: token(
                "expiring/acme/30",
                serde_json::json!(["not a time", "x", "y"]),
            ),
            ..base()
        },
        c,
    );
    expiring(
        "bad account",
        Invalid("account_id"),
        pb::ListExpiringContactsRequest {
            account_id: String::new(),
            ..base()
        },
        c,
    );
    cl = client.clone();
    let _ = &mut cl;
}

fn note_cases(c: &mut Corpus, app: &TestApp, k: &Seeded) {
    use Want::*;
    let client = CallNoteServiceClient::new(app.channel.clone());
    let good = || pb::CallNote {
        agent_id: "agent-1".into(),
        caller_last_name: "Neumann".into(),
        text: "Rückruf".into(),
        ..Default::default()
    };
    let create = |name: &str, want: Want, note: Option<pb::CallNote>, rid: &str, c: &mut Corpus| {
        let mut cl = client.clone();
        let req = pb::CreateCallNoteRequest {
            account_id: "acme".into(),
            request_id: rid.into(),
            call_note: note,
        };
        c.add(format!("CreateCallNote {name}"), want, async move {
            cl.create_call_note(req).await.map(drop)
        });
    };
    let with = |f: &dyn Fn(&mut pb::CallNote)| {
        let mut n = good();
        f(&mut n);
        Some(n)
    };
    create("no note", Invalid("call_note"), None, "", c);
    create(
        "bad contact id",
        Invalid("call_note.contact_id"),
        with(&|n| n.contact_id = ECHO.into()),
        "",
        c,
    );
    create(
        "unknown contact",
        NotFound,
        with(&|n| n.contact_id = uuid::Uuid::now_v7().to_string()),
        "",
        c,
    );
    create(
        "another account's contact",
        NotFound,
        with(&|n| n.contact_id = k.theirs.contact_id.clone()),
        "",
        c,
    );
    create(
        "foreign inner account",
        Invalid("call_note.account_id"),
        with(&|n| n.account_id = "globex".into()),
        "",
        c,
    );
    create(
        "subject too long",
        Invalid("call_note.subject"),
        with(&|n| n.subject = s(301)),
        "",
        c,
    );
    create(
        "text too long",
        Invalid("call_note.text"),
        with(&|n| n.text = s(20_001)),
        "",
        c,
    );
    create(
        "first name too long",
        Invalid("call_note.caller_first_name"),
        with(&|n| n.caller_first_name = s(201)),
        "",
        c,
    );
    create(
        "company too long",
        Invalid("call_note.caller_company"),
        with(&|n| n.caller_company = s(201)),
        "",
        c,
    );
    create(
        "number too long",
        Invalid("call_note.caller_number"),
        with(&|n| n.caller_number = "1".repeat(65)),
        "",
        c,
    );
    create(
        "employee too long",
        Invalid("call_note.employee_id"),
        with(&|n| n.employee_id = s(129)),
        "",
        c,
    );
    create(
        "agent with a control character",
        Invalid("call_note.agent_id"),
        with(&|n| n.agent_id = format!("{ECHO}\n")),
        "",
        c,
    );
    create(
        "negative nanos",
        Invalid("call_note.call_time"),
        with(&|n| {
            n.call_time = Some(Timestamp {
                seconds: 0,
                nanos: -1,
            })
        }),
        "",
        c,
    );
    create(
        "nanos overflow",
        Invalid("call_note.call_time"),
        with(&|n| {
            n.call_time = Some(Timestamp {
                seconds: 0,
                nanos: 1_000_000_000,
            })
        }),
        "",
        c,
    );
    create(
        "time beyond year 9999",
        Invalid("call_note.call_time"),
        with(&|n| {
            n.call_time = Some(Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            })
        }),
        "",
        c,
    );
    create(
        "time before year 1",
        Invalid("call_note.call_time"),
        with(&|n| {
            n.call_time = Some(Timestamp {
                seconds: i64::MIN,
                nanos: 0,
            })
        }),
        "",
        c,
    );
    create(
        "bad request id",
        Invalid("request_id"),
        with(&|_| {}),
        ECHO,
        c,
    );

    for (name, id, want) in [
        ("empty id", String::new(), Invalid("call_note_id")),
        ("not a uuid", ECHO.to_owned(), Invalid("call_note_id")),
        ("unknown id", uuid::Uuid::now_v7().to_string(), NotFound),
        ("another account's id", k.their_note.clone(), NotFound),
    ] {
        let mut g = client.clone();
        c.add(format!("GetCallNote {name}"), want, async move {
            g.get_call_note(pb::GetCallNoteRequest {
                account_id: "acme".into(),
                call_note_id: id,
            })
            .await
            .map(drop)
        });
    }

    let list = |name: &str, want: Want, req: pb::ListCallNotesRequest, c: &mut Corpus| {
        let mut l = client.clone();
        c.add(format!("ListCallNotes {name}"), want, async move {
            l.list_call_notes(req).await.map(drop)
        });
    };
    let base = || pb::ListCallNotesRequest {
        account_id: "acme".into(),
        ..Default::default()
    };
    list(
        "negative page size",
        Invalid("page_size"),
        pb::ListCallNotesRequest {
            page_size: -1,
            ..base()
        },
        c,
    );
    list(
        "bad contact id",
        Invalid("contact_id"),
        pb::ListCallNotesRequest {
            contact_id: ECHO.into(),
            ..base()
        },
        c,
    );
    list(
        "employee too long",
        Invalid("employee_id"),
        pb::ListCallNotesRequest {
            employee_id: s(129),
            ..base()
        },
        c,
    );
    list(
        "garbage token",
        Invalid("page_token"),
        pb::ListCallNotesRequest {
            page_token: ECHO.into(),
            ..base()
        },
        c,
    );
    list(
        "a ListContacts token",
        Invalid("page_token"),
        pb::ListCallNotesRequest {
            page_token: k.my_token.clone(),
            ..base()
        },
        c,
    );
    list(
        "forged token of another account",
        Invalid("page_token"),
        pb::ListCallNotesRequest {
            page_token: token(
                "notes/globex//",
                serde_json::json!(["2026-03-01T09:00:00Z", uuid::Uuid::nil()]),
            ),
            ..base()
        },
        c,
    );
    list(
        "bad account",
        Invalid("account_id"),
        pb::ListCallNotesRequest {
            account_id: "x y".into(),
            ..base()
        },
        c,
    );

    let mine = &k.mine;
    let message = mine.caller_message.as_ref().unwrap().message_id.clone();
    let their_message = k.theirs.caller_message.as_ref().unwrap().message_id.clone();
    let deliver = |name: &str,
                   want: Want,
                   f: &dyn Fn(&mut pb::DeliverCallerMessageRequest),
                   c: &mut Corpus| {
        let mut req = pb::DeliverCallerMessageRequest {
            account_id: "acme".into(),
            contact_id: mine.contact_id.clone(),
            message_id: message.clone(),
            call_note_id: k.my_note.clone(),
            agent_id: "agent-1".into(),
            request_id: String::new(),
        };
        f(&mut req);
        let mut d = client.clone();
        c.add(format!("DeliverCallerMessage {name}"), want, async move {
            d.deliver_caller_message(req).await.map(drop)
        });
    };
    deliver(
        "bad contact id",
        Invalid("contact_id"),
        &|r| r.contact_id = ECHO.into(),
        c,
    );
    deliver(
        "bad message id",
        Invalid("message_id"),
        &|r| r.message_id = String::new(),
        c,
    );
    deliver(
        "bad note id",
        Invalid("call_note_id"),
        &|r| r.call_note_id = "1234".into(),
        c,
    );
    deliver(
        "no agent",
        Invalid("agent_id"),
        &|r| r.agent_id = String::new(),
        c,
    );
    deliver(
        "agent too long",
        Invalid("agent_id"),
        &|r| r.agent_id = s(129),
        c,
    );
    deliver(
        "bad request id",
        Invalid("request_id"),
        &|r| r.request_id = ECHO.into(),
        c,
    );
    deliver(
        "bad account",
        Invalid("account_id"),
        &|r| r.account_id = String::new(),
        c,
    );
    deliver(
        "another account's contact",
        NotFound,
        &|r| r.contact_id = k.theirs.contact_id.clone(),
        c,
    );
    deliver(
        "another account's note",
        NotFound,
        &|r| r.call_note_id = k.their_note.clone(),
        c,
    );
    deliver(
        "unknown contact",
        NotFound,
        &|r| r.contact_id = uuid::Uuid::now_v7().to_string(),
        c,
    );
    // An id of another account behaves exactly like an id that does not exist.
    deliver(
        "another account's message",
        Reason(Code::FailedPrecondition, "MESSAGE_NOT_PENDING"),
        &|r| r.message_id = their_message.clone(),
        c,
    );
    deliver(
        "unknown message",
        Reason(Code::FailedPrecondition, "MESSAGE_NOT_PENDING"),
        &|r| r.message_id = uuid::Uuid::now_v7().to_string(),
        c,
    );
}

fn search_cases(c: &mut Corpus, app: &TestApp, k: &Seeded) {
    use Want::*;
    let client = ContactServiceClient::new(app.channel.clone());
    let search = |name: &str, want: Want, req: pb::SearchContactsRequest, c: &mut Corpus| {
        let mut l = client.clone();
        c.add(format!("SearchContacts {name}"), want, async move {
            l.search_contacts(req).await.map(drop)
        });
    };
    let base = || pb::SearchContactsRequest {
        account_id: "acme".into(),
        ..Default::default()
    };
    let cases: Vec<(&str, Want, pb::SearchContactsRequest)> = vec![
        (
            "no account",
            Invalid("account_id"),
            pb::SearchContactsRequest {
                account_id: String::new(),
                ..base()
            },
        ),
        (
            "query too long",
            Invalid("query"),
            pb::SearchContactsRequest {
                query: s(201),
                ..base()
            },
        ),
        (
            "query with a NUL",
            Invalid("query"),
            pb::SearchContactsRequest {
                query: format!("{ECHO}\0"),
                ..base()
            },
        ),
        (
            "number of letters",
            Invalid("phone_number"),
            pb::SearchContactsRequest {
                phone_number: ECHO.into(),
                ..base()
            },
        ),
        (
            "number prefix of a plus alone",
            Invalid("phone_number"),
            pb::SearchContactsRequest {
                phone_number: "+".into(),
                ..base()
            },
        ),
        (
            "number prefix of 16 digits",
            Invalid("phone_number"),
            pb::SearchContactsRequest {
                phone_number: "+4930123456789012".into(),
                ..base()
            },
        ),
        (
            "national prefix that is no whole number",
            Invalid("phone_number"),
            pb::SearchContactsRequest {
                phone_number: "030".into(),
                ..base()
            },
        ),
        (
            "suppressed number",
            Invalid("phone_number"),
            pb::SearchContactsRequest {
                phone_number: "anonymous".into(),
                ..base()
            },
        ),
        (
            "bad category",
            Invalid("category"),
            pb::SearchContactsRequest {
                category: format!("{ECHO} X"),
                ..base()
            },
        ),
        (
            "unknown origin",
            Invalid("origin"),
            pb::SearchContactsRequest {
                origin: 99,
                ..base()
            },
        ),
        (
            "negative origin",
            Invalid("origin"),
            pb::SearchContactsRequest {
                origin: -1,
                ..base()
            },
        ),
        (
            "negative page size",
            Invalid("page_size"),
            pb::SearchContactsRequest {
                page_size: -1,
                ..base()
            },
        ),
        (
            "garbage token",
            Invalid("page_token"),
            pb::SearchContactsRequest {
                page_token: format!("!!{ECHO}!!"),
                ..base()
            },
        ),
        (
            "a ListContacts token",
            Invalid("page_token"),
            pb::SearchContactsRequest {
                page_token: k.my_token.clone(),
                ..base()
            },
        ),
        (
            "a token of another account",
            Invalid("page_token"),
            pb::SearchContactsRequest {
                account_id: "globex".into(),
                page_token: k.my_search_token.clone(),
                ..base()
            },
        ),
        (
            "a token of another filter",
            Invalid("page_token"),
            pb::SearchContactsRequest {
                category: "caller".into(),
                page_token: k.my_search_token.clone(),
                ..base()
            },
        ),
        (
            "a token of another query",
            Invalid("page_token"),
            pb::SearchContactsRequest {
                query: "Hanns".into(),
                page_token: k.my_ranked_token.clone(),
                ..base()
            },
        ),
        (
            "a ranked token without the query",
            Invalid("page_token"),
            pb::SearchContactsRequest {
                page_token: k.my_ranked_token.clone(),
                ..base()
            },
        ),
        (
            "a token forged for another account",
            Invalid("page_token"),
            pb::SearchContactsRequest {
                page_token: token("contacts/globex/", serde_json::json!(uuid::Uuid::nil())),
                ..base()
            },
        ),
    ];
    for (name, want, req) in cases {
        search(name, want, req, c);
    }
    // A token of the right query with a position no ranking makes: decoded from a real one,
    // its score replaced.
    let bytes = URL_SAFE_NO_PAD.decode(&k.my_ranked_token).unwrap();
    let mut env: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for (name, score) in [
        ("score above 1", serde_json::json!(7.5f64.to_bits())),
        ("score not a number", serde_json::json!(f64::NAN.to_bits())),
        ("score of text", serde_json::json!("x")),
    ] {
        env["p"][1] = score;
        search(
            &format!("a ranked token with a {name}"),
            Invalid("page_token"),
            pb::SearchContactsRequest {
                query: "Hans".into(),
                page_token: URL_SAFE_NO_PAD.encode(env.to_string()),
                ..base()
            },
            c,
        );
    }
}

fn identification_cases(c: &mut Corpus, app: &TestApp) {
    use Want::*;
    let client = IdentificationServiceClient::new(app.channel.clone());
    let identify =
        |name: &str, want: Want, f: &dyn Fn(&mut pb::IdentifyCallerRequest), c: &mut Corpus| {
            let mut req = pb::IdentifyCallerRequest {
                account_id: "acme".into(),
                employee_id: "emp-1".into(),
                caller_number: "030 1234567".into(),
                caller_name: "Müller".into(),
                max_results: 5,
            };
            f(&mut req);
            let mut i = client.clone();
            c.add(format!("IdentifyCaller {name}"), want, async move {
                i.identify_caller(req).await.map(drop)
            });
        };
    identify(
        "bad account",
        Invalid("account_id"),
        &|r| r.account_id = "a b".into(),
        c,
    );
    identify(
        "employee too long",
        Invalid("employee_id"),
        &|r| r.employee_id = s(129),
        c,
    );
    identify(
        "employee with a control character",
        Invalid("employee_id"),
        &|r| r.employee_id = "e\u{1b}".into(),
        c,
    );
    identify(
        "name too long",
        Invalid("caller_name"),
        &|r| r.caller_name = s(201),
        c,
    );
    identify(
        "name with NUL",
        Invalid("caller_name"),
        &|r| r.caller_name = format!("{ECHO}\0"),
        c,
    );
    identify(
        "negative max results",
        Invalid("max_results"),
        &|r| r.max_results = -1,
        c,
    );
}

fn call_handling_cases(c: &mut Corpus, app: &TestApp) {
    use Want::*;
    let client = CallHandlingServiceClient::new(app.channel.clone());
    let mut g = client.clone();
    c.add(
        "GetCallHandling bad account",
        Invalid("account_id"),
        async move {
            g.get_call_handling(pb::GetCallHandlingRequest {
                account_id: String::new(),
            })
            .await
            .map(drop)
        },
    );
    let mut g = client.clone();
    c.add(
        "GetCallHandling account without settings",
        NotFound,
        async move {
            g.get_call_handling(pb::GetCallHandlingRequest {
                account_id: "globex".into(),
            })
            .await
            .map(drop)
        },
    );
    let update = |name: &str,
                  want: Want,
                  ch: Option<pb::CallHandling>,
                  m: Option<FieldMask>,
                  c: &mut Corpus| {
        let mut u = client.clone();
        let req = pb::UpdateCallHandlingRequest {
            call_handling: ch,
            update_mask: m,
            etag: String::new(),
        };
        c.add(format!("UpdateCallHandling {name}"), want, async move {
            u.update_call_handling(req).await.map(drop)
        });
    };
    let with = |f: &dyn Fn(&mut pb::CallHandling)| {
        let mut ch = pb::CallHandling {
            account_id: "acme".into(),
            conversation_style: pb::ConversationStyle::Formal as i32,
            caller_id_transmission: true,
            phone_region: "DE".into(),
            ..Default::default()
        };
        f(&mut ch);
        Some(ch)
    };
    let employee = |id: &str, style: i32| pb::EmployeeCallHandling {
        employee_id: id.into(),
        conversation_style: style,
        caller_id_transmission: None,
    };
    update("no settings", Invalid("call_handling"), None, None, c);
    update(
        "no account",
        Invalid("call_handling.account_id"),
        with(&|x| x.account_id = String::new()),
        None,
        c,
    );
    update(
        "unknown path",
        Invalid("update_mask.paths[0]"),
        with(&|_| {}),
        mask(&[ECHO]),
        c,
    );
    update(
        "output-only path",
        Invalid("update_mask.paths[1]"),
        with(&|_| {}),
        mask(&["phone_region", "update_time"]),
        c,
    );
    update(
        "unknown style",
        Invalid("call_handling.conversation_style"),
        with(&|x| x.conversation_style = 42),
        None,
        c,
    );
    update(
        "region not iso",
        Invalid("call_handling.phone_region"),
        with(&|x| x.phone_region = "Germany".into()),
        None,
        c,
    );
    update(
        "region unknown",
        Invalid("call_handling.phone_region"),
        with(&|x| x.phone_region = "XX".into()),
        None,
        c,
    );
    update(
        "too many employees",
        Invalid("call_handling.employees"),
        with(&|x| x.employees = (0..1001).map(|i| employee(&format!("e{i}"), 0)).collect()),
        None,
        c,
    );
    update(
        "employee without id",
        Invalid("call_handling.employees[0].employee_id"),
        with(&|x| x.employees = vec![employee("", 0)]),
        None,
        c,
    );
    update(
        "employee twice",
        Invalid("call_handling.employees[1].employee_id"),
        with(&|x| x.employees = vec![employee("e1", 0), employee("e1", 0)]),
        None,
        c,
    );
    update(
        "employee style unknown",
        Invalid("call_handling.employees[0].conversation_style"),
        with(&|x| x.employees = vec![employee("e1", -7)]),
        None,
        c,
    );
    let mut r = client.clone();
    c.add(
        "CheckCallerRecognition bad account",
        Invalid("account_id"),
        async move {
            r.check_caller_recognition(pb::CheckCallerRecognitionRequest {
                account_id: "ü".into(),
                employee_id: String::new(),
            })
            .await
            .map(drop)
        },
    );
    let mut r = client.clone();
    c.add(
        "CheckCallerRecognition employee too long",
        Invalid("employee_id"),
        async move {
            r.check_caller_recognition(pb::CheckCallerRecognitionRequest {
                account_id: "acme".into(),
                employee_id: s(129),
            })
            .await
            .map(drop)
        },
    );
}

fn change_cases(c: &mut Corpus, app: &TestApp) {
    use Want::*;
    let client = ChangeServiceClient::new(app.channel.clone());
    let mut g = client.clone();
    c.add(
        "GetChangeCursor bad account",
        Invalid("account_id"),
        async move {
            g.get_change_cursor(pb::GetChangeCursorRequest {
                account_id: format!("{ECHO}/x"),
            })
            .await
            .map(drop)
        },
    );
    let list = |name: &str, want: Want, req: pb::ListChangesRequest, c: &mut Corpus| {
        let mut l = client.clone();
        c.add(format!("ListChanges {name}"), want, async move {
            l.list_changes(req).await.map(drop)
        });
    };
    let base = || pb::ListChangesRequest {
        account_id: "acme".into(),
        ..Default::default()
    };
    list(
        "missing account",
        Invalid("account_id"),
        pb::ListChangesRequest {
            account_id: String::new(),
            ..base()
        },
        c,
    );
    for (name, cursor) in [
        ("cursor of words", ECHO.to_owned()),
        ("negative cursor", "-1".to_owned()),
        ("cursor beyond i64", "99999999999999999999".to_owned()),
        ("cursor with a sign", "+1".to_owned()),
    ] {
        list(
            name,
            Invalid("cursor"),
            pb::ListChangesRequest { cursor, ..base() },
            c,
        );
    }
    for cursor in ["123456", "9223372036854775807"] {
        list(
            &format!("cursor {cursor} ahead of the feed"),
            Reason(Code::FailedPrecondition, "CURSOR_EXPIRED"),
            pb::ListChangesRequest {
                cursor: cursor.into(),
                ..base()
            },
            c,
        );
    }
    list(
        "negative page size",
        Invalid("page_size"),
        pb::ListChangesRequest {
            page_size: -1,
            ..base()
        },
        c,
    );
    list(
        "page size over 1000",
        Invalid("page_size"),
        pb::ListChangesRequest {
            page_size: 1001,
            ..base()
        },
        c,
    );
    let watch = |name: &str, want: Want, req: pb::WatchChangesRequest, c: &mut Corpus| {
        let mut w = client.clone();
        c.add(format!("WatchChanges {name}"), want, async move {
            w.watch_changes(req).await.map(drop)
        });
    };
    watch(
        "missing account",
        Invalid("account_id"),
        pb::WatchChangesRequest::default(),
        c,
    );
    watch(
        "cursor of words",
        Invalid("cursor"),
        pb::WatchChangesRequest {
            account_id: "acme".into(),
            cursor: ECHO.into(),
        },
        c,
    );
    watch(
        "cursor ahead of the feed",
        Reason(Code::FailedPrecondition, "CURSOR_EXPIRED"),
        pb::WatchChangesRequest {
            account_id: "acme".into(),
            cursor: "123456".into(),
        },
        c,
    );
}

/// Expiring messages, typed instructions, undelivered messages and the account's time zone.
fn message_cases(c: &mut Corpus, app: &TestApp, k: &Seeded) {
    use Want::*;
    let contacts = ContactServiceClient::new(app.channel.clone());
    let list = |name: &str, want: Want, req: pb::ListUndeliveredMessagesRequest, c: &mut Corpus| {
        let mut l = contacts.clone();
        c.add(
            format!("ListUndeliveredMessages {name}"),
            want,
            async move { l.list_undelivered_messages(req).await.map(drop) },
        );
    };
    let base = || pb::ListUndeliveredMessagesRequest {
        account_id: "acme".into(),
        ..Default::default()
    };
    list(
        "missing account",
        Invalid("account_id"),
        pb::ListUndeliveredMessagesRequest::default(),
        c,
    );
    list(
        "contact id not a uuid",
        Invalid("contact_id"),
        pb::ListUndeliveredMessagesRequest {
            contact_id: ECHO.into(),
            ..base()
        },
        c,
    );
    list(
        "negative page size",
        Invalid("page_size"),
        pb::ListUndeliveredMessagesRequest {
            page_size: -1,
            ..base()
        },
        c,
    );
    list(
        "forged page token",
        Invalid("page_token"),
        pb::ListUndeliveredMessagesRequest {
            page_token: ECHO.into(),
            ..base()
        },
        c,
    );
    list(
        "another account's page token",
        Invalid("page_token"),
        pb::ListUndeliveredMessagesRequest {
            page_token: k.my_token.clone(),
            ..base()
        },
        c,
    );

    let create = |name: &str, want: Want, f: &dyn Fn(&mut pb::Contact), c: &mut Corpus| {
        let mut contact = caller("Neu", "030 9999999");
        f(&mut contact);
        let mut w = contacts.clone();
        let req = pb::CreateContactRequest {
            account_id: "acme".into(),
            contact: Some(contact),
            request_id: String::new(),
        };
        c.add(format!("CreateContact {name}"), want, async move {
            w.create_contact(req).await.map(drop)
        });
    };
    let now = app.clock_now().timestamp();
    let message = |text: &str, seconds: i64, nanos: i32| pb::CallerMessage {
        text: text.into(),
        expire_time: Some(Timestamp { seconds, nanos }),
        ..Default::default()
    };
    create(
        "message expiring in the past",
        Invalid("contact.caller_message.expire_time"),
        &|c| c.caller_message = Some(message("Bis gestern", now - 86_400, 0)),
        c,
    );
    create(
        "message expiring now",
        Invalid("contact.caller_message.expire_time"),
        &|c| c.caller_message = Some(message("Jetzt", now, 0)),
        c,
    );
    create(
        "expire time with bad nanos",
        Invalid("contact.caller_message.expire_time"),
        &|c| c.caller_message = Some(message("Text", now + 60, -1)),
        c,
    );
    create(
        "expire time without a text",
        Invalid("contact.caller_message.expire_time"),
        &|c| c.caller_message = Some(message("", now + 60, 0)),
        c,
    );
    let instruction = |t: pb::InstructionType, employee: &str| pb::Instruction {
        r#type: t as i32,
        employee_id: employee.into(),
    };
    use pb::InstructionType as I;
    for (name, field, list) in [
        (
            "put through to nobody",
            "contact.instructions[0].employee_id",
            vec![instruction(I::PutThrough, "")],
        ),
        (
            "responsible employee missing",
            "contact.instructions[0].employee_id",
            vec![instruction(I::ResponsibleEmployee, "")],
        ),
        (
            "no data capture with an employee",
            "contact.instructions[0].employee_id",
            vec![instruction(I::NoDataCapture, ECHO)],
        ),
        (
            "instruction without a type",
            "contact.instructions[0].type",
            vec![instruction(I::Unspecified, "")],
        ),
        (
            "the same type twice",
            "contact.instructions[1].type",
            vec![instruction(I::CallBack, ""), instruction(I::CallBack, "e2")],
        ),
        (
            "employee id over 128 bytes",
            "contact.instructions[0].employee_id",
            vec![instruction(I::PutThrough, &"x".repeat(129))],
        ),
    ] {
        create(name, Invalid(field), &|c| c.instructions = list.clone(), c);
    }
    let mut w = contacts.clone();
    c.add(
        "CreateContact unknown instruction type",
        Invalid("contact.instructions[0].type"),
        async move {
            let mut contact = caller("Neu", "030 9999999");
            contact.instructions = vec![pb::Instruction {
                r#type: 77,
                employee_id: String::new(),
            }];
            w.create_contact(pb::CreateContactRequest {
                account_id: "acme".into(),
                contact: Some(contact),
                request_id: String::new(),
            })
            .await
            .map(drop)
        },
    );
    let mut w = contacts.clone();
    let mut past = k.mine.clone();
    past.caller_message = Some(message("Neu", now - 1, 0));
    past.etag.clear();
    c.add(
        "UpdateContact message expiring in the past",
        Invalid("contact.caller_message.expire_time"),
        async move {
            w.update_contact(pb::UpdateContactRequest {
                account_id: "acme".into(),
                contact: Some(past),
                update_mask: mask(&["caller_message"]),
                etag: String::new(),
            })
            .await
            .map(drop)
        },
    );

    let mut n = CallNoteServiceClient::new(app.channel.clone());
    let expired = k.expired.clone();
    let note = k.unlinked_note.clone();
    c.add(
        "DeliverCallerMessage of an expired message",
        Reason(Code::FailedPrecondition, "MESSAGE_EXPIRED"),
        async move {
            n.deliver_caller_message(pb::DeliverCallerMessageRequest {
                account_id: "acme".into(),
                contact_id: expired.contact_id.clone(),
                message_id: expired.caller_message.unwrap().message_id,
                call_note_id: note,
                agent_id: "agent-1".into(),
                request_id: String::new(),
            })
            .await
            .map(drop)
        },
    );

    let mut h = CallHandlingServiceClient::new(app.channel.clone());
    c.add(
        "UpdateCallHandling unknown time zone",
        Invalid("call_handling.time_zone"),
        async move {
            h.update_call_handling(pb::UpdateCallHandlingRequest {
                call_handling: Some(pb::CallHandling {
                    account_id: "acme".into(),
                    time_zone: format!("Europe/{ECHO}"),
                    ..Default::default()
                }),
                update_mask: mask(&["time_zone"]),
                etag: String::new(),
            })
            .await
            .map(drop)
        },
    );
}

/// The account's own lines.
fn own_number_cases(c: &mut Corpus, app: &TestApp) {
    use Want::*;
    let client = CallHandlingServiceClient::new(app.channel.clone());
    let own = |numbers: Vec<String>| pb::UpdateCallHandlingRequest {
        call_handling: Some(pb::CallHandling {
            account_id: "acme".into(),
            own_numbers: numbers
                .into_iter()
                .map(|number| pb::OwnNumber {
                    number,
                    e164: String::new(),
                })
                .collect(),
            ..Default::default()
        }),
        update_mask: mask(&["own_numbers"]),
        etag: String::new(),
    };
    for (name, want, numbers) in [
        (
            "own number of words",
            Invalid("call_handling.own_numbers[1]"),
            vec!["030 1234560".to_owned(), ECHO.to_owned()],
        ),
        (
            "own number twice",
            Invalid("call_handling.own_numbers[1]"),
            vec!["030 1234560".to_owned(), "+49 30 1234560".to_owned()],
        ),
        (
            "empty own number",
            Invalid("call_handling.own_numbers[0]"),
            vec![String::new()],
        ),
        (
            "101 own numbers",
            Invalid("call_handling.own_numbers"),
            (0..101).map(|i| format!("030 1234{i:03}")).collect(),
        ),
    ] {
        let mut u = client.clone();
        let req = own(numbers);
        c.add(format!("UpdateCallHandling {name}"), want, async move {
            u.update_call_handling(req).await.map(drop)
        });
    }
}

/// Privacy requests: erasure, suppression, export and offboarding.
fn privacy_cases(c: &mut Corpus, app: &TestApp, k: &Seeded) {
    use Want::*;
    let client = PrivacyServiceClient::new(app.channel.clone());
    let erase = |number: &str, ids: &[&str], suppress: bool| pb::EraseCallerRequest {
        account_id: "acme".into(),
        request_id: String::new(),
        phone_number: number.into(),
        contact_ids: ids.iter().map(|s| s.to_string()).collect(),
        suppress,
    };
    let theirs = k.theirs.contact_id.clone();
    for (name, want, req) in [
        (
            "no account",
            Invalid("account_id"),
            pb::EraseCallerRequest {
                account_id: String::new(),
                ..erase("030 1234567", &[], false)
            },
        ),
        (
            "neither number nor ids",
            Invalid("phone_number"),
            erase("", &[], false),
        ),
        (
            "a number of words",
            Invalid("phone_number"),
            erase(ECHO, &[], false),
        ),
        (
            "a bad contact id",
            Invalid("contact_ids[1]"),
            erase("", &[&theirs, ECHO], false),
        ),
        (
            "suppress without a number",
            Invalid("suppress"),
            erase("", &[&theirs], true),
        ),
        (
            "a bad request id",
            Invalid("request_id"),
            pb::EraseCallerRequest {
                request_id: ECHO.into(),
                ..erase("030 1234567", &[], false)
            },
        ),
        (
            "another account's contact",
            NotFound,
            erase("", &[&theirs], false),
        ),
    ] {
        let mut p = client.clone();
        c.add(format!("EraseCaller {name}"), want, async move {
            p.erase_caller(req).await.map(drop)
        });
    }
    for (name, want, account, number) in [
        ("no number", Invalid("phone_number"), "acme", ""),
        ("a number of words", Invalid("phone_number"), "acme", ECHO),
        (
            "a bad account",
            Invalid("account_id"),
            "no such account!",
            "030 1234567",
        ),
    ] {
        let mut p = client.clone();
        let req = pb::LiftSuppressionRequest {
            account_id: account.into(),
            phone_number: number.into(),
        };
        c.add(format!("LiftSuppression {name}"), want, async move {
            p.lift_suppression(req).await.map(drop)
        });
    }
    let export = |number: &str, size: i32, token: &str| pb::ExportCallerDataRequest {
        account_id: "acme".into(),
        phone_number: number.into(),
        contact_ids: Vec::new(),
        page_size: size,
        page_token: token.into(),
    };
    let forged = URL_SAFE_NO_PAD.encode(br#"{"v":1,"q":"export/acme/x","p":[1,null]}"#);
    for (name, want, req) in [
        ("no subject", Invalid("phone_number"), export("", 0, "")),
        (
            "a number of words",
            Invalid("phone_number"),
            export(ECHO, 0, ""),
        ),
        (
            "a negative page size",
            Invalid("page_size"),
            export("030 1234567", -1, ""),
        ),
        (
            "a forged page token",
            Invalid("page_token"),
            export("030 1234567", 0, &forged),
        ),
        (
            "a bad contact id",
            Invalid("contact_ids[0]"),
            pb::ExportCallerDataRequest {
                contact_ids: vec![ECHO.into()],
                ..export("", 0, "")
            },
        ),
    ] {
        let mut p = client.clone();
        c.add(format!("ExportCallerData {name}"), want, async move {
            p.export_caller_data(req).await.map(drop)
        });
    }
    for (name, account) in [("no account", ""), ("a bad account", "acme globex")] {
        let mut p = client.clone();
        let req = pb::DeleteAccountDataRequest {
            account_id: account.into(),
            dry_run: false,
        };
        c.add(
            format!("DeleteAccountData {name}"),
            Invalid("account_id"),
            async move { p.delete_account_data(req).await.map(drop) },
        );
    }
}

#[tokio::test]
async fn every_malformed_request_is_refused_by_field_and_writes_nothing() {
    let logs = callers_testkit::logs::capture();
    let mut app = spawn_app().await;
    let seeded = seed(&mut app).await;
    let db = app.sql().await;
    let before = snapshot(&db).await;
    let mut corpus = Corpus { cases: Vec::new() };
    contact_cases(&mut corpus, &app, &seeded);
    search_cases(&mut corpus, &app, &seeded);
    note_cases(&mut corpus, &app, &seeded);
    identification_cases(&mut corpus, &app);
    call_handling_cases(&mut corpus, &app);
    change_cases(&mut corpus, &app);
    message_cases(&mut corpus, &app, &seeded);
    own_number_cases(&mut corpus, &app);
    privacy_cases(&mut corpus, &app, &seeded);
    let n = corpus.cases.len();
    // Every case runs; the failures are reported together.
    let mut failures = Vec::new();
    for (name, want, call) in corpus.cases {
        if let Err(got) = check(&want, call.await) {
            failures.push(format!("{name}: wanted {want:?}, got {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        snapshot(&db).await,
        before,
        "a refused request wrote something"
    );
    // Still serving: nothing panicked a connection away.
    app::get(&mut app, "acme", &seeded.mine.contact_id)
        .await
        .unwrap();
    let logs = logs.text();
    assert!(
        logs.contains("INVALID_ARGUMENT"),
        "no request log lines captured"
    );
    assert!(!logs.contains(ECHO), "a bad value reached the logs");
    println!("[bad_input] {n} malformed requests refused, database unchanged, logs clean");
    assert!(n >= 100, "the corpus shrank to {n}");
}

#[tokio::test]
async fn identifying_with_an_unreadable_number_or_another_accounts_number_finds_nobody() {
    let mut app = spawn_app().await;
    let seeded = seed(&mut app).await;
    let mut id = IdentificationServiceClient::new(app.channel.clone());
    for number in [ECHO, "+", "00", "030 1111111", "+49301111111"] {
        let r = id
            .identify_caller(pb::IdentifyCallerRequest {
                account_id: "acme".into(),
                caller_number: number.into(),
                caller_name: "Schulze".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            r.matches
                .iter()
                .all(|m| m.contact.as_ref().unwrap().account_id == "acme"),
            "{number}: {r:?}"
        );
        assert!(
            r.matches
                .iter()
                .all(|m| m.contact.as_ref().unwrap().contact_id != seeded.theirs.contact_id)
        );
    }
}

mod random {
    //! Random requests: whatever arrives, the answer is never INTERNAL or UNKNOWN, and a
    //! refusal names at least one field.

    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    fn cases() -> u32 {
        if std::env::var("CALLERS_LONG_TESTS").is_ok_and(|v| v == "1") {
            5_000
        } else {
            64
        }
    }

    /// Strings that exercise the validators: empty, ASCII, unicode, control characters,
    /// near-limit lengths, UUID-like and number-like text.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-zA-Z0-9 ._-]{0,20}",
            "\\PC{0,40}",
            "[\\x00-\\x1f]{1,4}",
            (190usize..215).prop_map(|n| "ü".repeat(n)),
            Just(uuid::Uuid::now_v7().to_string()),
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[+0-9 ()/-]{0,24}",
        ]
    }

    fn int() -> impl Strategy<Value = i32> {
        prop_oneof![
            Just(0),
            Just(-1),
            Just(i32::MIN),
            Just(i32::MAX),
            -10i32..600
        ]
    }

    fn account() -> impl Strategy<Value = String> {
        prop_oneof![Just("fuzz".to_owned()), text()]
    }

    fn contact() -> impl Strategy<Value = pb::Contact> {
        (
            prop::collection::vec(text(), 0..23),
            (text(), text(), text(), text()),
            (text(), text()),
            prop::collection::vec((text(), int()), 0..12),
            prop::option::of(text()),
            int(),
            any::<bool>(),
            (
                prop::option::of((any::<i64>(), int())),
                prop::collection::vec((int(), text()), 0..6),
            ),
        )
            .prop_map(
                |(
                    categories,
                    (first, last, company, email),
                    (title, instr),
                    phones,
                    msg,
                    origin,
                    keep,
                    (expire, instructions),
                )| {
                    pb::Contact {
                        categories,
                        first_name: first,
                        last_name: last,
                        company,
                        email,
                        title,
                        handling_instruction: instr,
                        phone_numbers: phones
                            .into_iter()
                            .map(|(number, t)| pb::PhoneNumber {
                                number,
                                r#type: t,
                                ..Default::default()
                            })
                            .collect(),
                        caller_message: msg.map(|text| pb::CallerMessage {
                            text,
                            expire_time: expire
                                .map(|(seconds, nanos)| Timestamp { seconds, nanos }),
                            ..Default::default()
                        }),
                        origin,
                        keep_permanently: keep,
                        instructions: instructions
                            .into_iter()
                            .map(|(t, employee_id)| pb::Instruction {
                                r#type: t,
                                employee_id,
                            })
                            .collect(),
                        ..Default::default()
                    }
                },
            )
    }

    #[derive(Debug, Clone)]
    enum Req {
        Create(String, Option<pb::Contact>, String),
        Update(String, pb::Contact, Vec<String>),
        List(String, String, i32, String),
        Expiring(String, i32, i32, String),
        Note(String, pb::CallNote, String),
        ListNotes(String, String, String, i32, String),
        Deliver(String, String, String, String, String, String),
        Identify(String, String, String, String, i32),
        Settings(pb::CallHandling, Vec<String>),
        Recognition(String, String),
        Changes(String, String, i32),
        Undelivered(String, String, i32, String),
        Erase(String, String, Vec<String>, bool, String),
        Export(String, String, Vec<String>, i32, String),
    }

    fn req() -> impl Strategy<Value = Req> {
        let path = prop_oneof![
            Just("company".to_owned()),
            Just("phone_numbers".to_owned()),
            Just("caller_message.text".to_owned()),
            Just("employees".to_owned()),
            Just("instructions".to_owned()),
            Just("caller_message.expire_time".to_owned()),
            Just("time_zone".to_owned()),
            Just("own_numbers".to_owned()),
            text(),
        ];
        prop_oneof![
            (account(), prop::option::of(contact()), text())
                .prop_map(|(a, c, r)| Req::Create(a, c, r)),
            (
                account(),
                contact(),
                text(),
                prop::collection::vec(path.clone(), 0..4)
            )
                .prop_map(|(a, mut c, id, m)| {
                    c.contact_id = id;
                    Req::Update(a, c, m)
                }),
            (account(), text(), int(), text()).prop_map(|(a, c, s, t)| Req::List(a, c, s, t)),
            (account(), int(), int(), text()).prop_map(|(a, d, s, t)| Req::Expiring(a, d, s, t)),
            (
                account(),
                (text(), text(), text(), text()),
                (text(), text(), text()),
                (any::<i64>(), any::<i32>()),
                text()
            )
                .prop_map(
                    |(a, (cid, emp, agent, first), (number, subject, body), (sec, nanos), rid)| {
                        Req::Note(
                            a,
                            pb::CallNote {
                                contact_id: cid,
                                employee_id: emp,
                                agent_id: agent,
                                caller_first_name: first,
                                caller_number: number,
                                subject,
                                text: body,
                                call_time: (sec % 3 != 0).then_some(Timestamp {
                                    seconds: sec,
                                    nanos,
                                }),
                                ..Default::default()
                            },
                            rid,
                        )
                    }
                ),
            (account(), text(), text(), int(), text())
                .prop_map(|(a, c, e, s, t)| Req::ListNotes(a, c, e, s, t)),
            (account(), text(), text(), text(), text(), text())
                .prop_map(|(a, c, m, n, ag, r)| Req::Deliver(a, c, m, n, ag, r)),
            (account(), text(), text(), text(), int())
                .prop_map(|(a, e, n, name, m)| Req::Identify(a, e, n, name, m)),
            (
                account(),
                int(),
                text(),
                prop::collection::vec((text(), int()), 0..4),
                prop::collection::vec(path, 0..3),
                (text(), prop::collection::vec(text(), 0..4)),
            )
                .prop_map(|(a, style, region, emps, m, (tz, own))| {
                    Req::Settings(
                        pb::CallHandling {
                            account_id: a,
                            conversation_style: style,
                            phone_region: region,
                            time_zone: tz,
                            own_numbers: own
                                .into_iter()
                                .map(|number| pb::OwnNumber {
                                    number,
                                    e164: String::new(),
                                })
                                .collect(),
                            employees: emps
                                .into_iter()
                                .map(|(id, st)| pb::EmployeeCallHandling {
                                    employee_id: id,
                                    conversation_style: st,
                                    caller_id_transmission: None,
                                })
                                .collect(),
                            ..Default::default()
                        },
                        m,
                    )
                }),
            (account(), text()).prop_map(|(a, e)| Req::Recognition(a, e)),
            (
                account(),
                prop_oneof![
                    text(),
                    any::<i64>().prop_map(|n| n.to_string()),
                    "[0-9]{1,25}"
                ],
                int()
            )
                .prop_map(|(a, c, s)| Req::Changes(a, c, s)),
            (account(), text(), int(), text())
                .prop_map(|(a, c, s, t)| Req::Undelivered(a, c, s, t)),
            (
                account(),
                text(),
                prop::collection::vec(text(), 0..3),
                any::<bool>(),
                text()
            )
                .prop_map(|(a, n, ids, s, r)| Req::Erase(a, n, ids, s, r)),
            (
                account(),
                text(),
                prop::collection::vec(text(), 0..3),
                int(),
                text()
            )
                .prop_map(|(a, n, ids, s, t)| Req::Export(a, n, ids, s, t)),
        ]
    }

    async fn send(app: &TestApp, r: Req) -> Result<(), Status> {
        let ch = app.channel.clone();
        let mut contacts = ContactServiceClient::new(ch.clone());
        let mut notes = CallNoteServiceClient::new(ch.clone());
        let mut ident = IdentificationServiceClient::new(ch.clone());
        let mut handling = CallHandlingServiceClient::new(ch.clone());
        let mut privacy = PrivacyServiceClient::new(ch.clone());
        let mut changes = ChangeServiceClient::new(ch);
        let m = |paths: Vec<String>| Some(FieldMask { paths });
        match r {
            Req::Create(account_id, contact, request_id) => contacts
                .create_contact(pb::CreateContactRequest {
                    account_id,
                    contact,
                    request_id,
                })
                .await
                .map(drop),
            Req::Update(account_id, contact, paths) => contacts
                .update_contact(pb::UpdateContactRequest {
                    account_id,
                    contact: Some(contact),
                    update_mask: m(paths),
                    etag: String::new(),
                })
                .await
                .map(drop),
            Req::List(account_id, category, page_size, page_token) => contacts
                .list_contacts(pb::ListContactsRequest {
                    account_id,
                    category,
                    page_size,
                    page_token,
                })
                .await
                .map(drop),
            Req::Expiring(account_id, within_days, page_size, page_token) => contacts
                .list_expiring_contacts(pb::ListExpiringContactsRequest {
                    account_id,
                    within_days,
                    page_size,
                    page_token,
                })
                .await
                .map(drop),
            Req::Note(account_id, call_note, request_id) => notes
                .create_call_note(pb::CreateCallNoteRequest {
                    account_id,
                    request_id,
                    call_note: Some(call_note),
                })
                .await
                .map(drop),
            Req::ListNotes(account_id, contact_id, employee_id, page_size, page_token) => notes
                .list_call_notes(pb::ListCallNotesRequest {
                    account_id,
                    contact_id,
                    employee_id,
                    page_size,
                    page_token,
                })
                .await
                .map(drop),
            Req::Deliver(
                account_id,
                contact_id,
                message_id,
                call_note_id,
                agent_id,
                request_id,
            ) => notes
                .deliver_caller_message(pb::DeliverCallerMessageRequest {
                    account_id,
                    contact_id,
                    message_id,
                    call_note_id,
                    agent_id,
                    request_id,
                })
                .await
                .map(drop),
            Req::Identify(account_id, employee_id, caller_number, caller_name, max_results) => {
                ident
                    .identify_caller(pb::IdentifyCallerRequest {
                        account_id,
                        employee_id,
                        caller_number,
                        caller_name,
                        max_results,
                    })
                    .await
                    .map(drop)
            }
            Req::Settings(call_handling, paths) => handling
                .update_call_handling(pb::UpdateCallHandlingRequest {
                    call_handling: Some(call_handling),
                    update_mask: m(paths),
                    etag: String::new(),
                })
                .await
                .map(drop),
            Req::Recognition(account_id, employee_id) => handling
                .check_caller_recognition(pb::CheckCallerRecognitionRequest {
                    account_id,
                    employee_id,
                })
                .await
                .map(drop),
            Req::Changes(account_id, cursor, page_size) => changes
                .list_changes(pb::ListChangesRequest {
                    account_id,
                    cursor,
                    page_size,
                })
                .await
                .map(drop),
            Req::Undelivered(account_id, contact_id, page_size, page_token) => contacts
                .list_undelivered_messages(pb::ListUndeliveredMessagesRequest {
                    account_id,
                    contact_id,
                    page_size,
                    page_token,
                })
                .await
                .map(drop),
            Req::Erase(account_id, phone_number, contact_ids, suppress, request_id) => privacy
                .erase_caller(pb::EraseCallerRequest {
                    account_id,
                    request_id,
                    phone_number,
                    contact_ids,
                    suppress,
                })
                .await
                .map(drop),
            Req::Export(account_id, phone_number, contact_ids, page_size, page_token) => privacy
                .export_caller_data(pb::ExportCallerDataRequest {
                    account_id,
                    phone_number,
                    contact_ids,
                    page_size,
                    page_token,
                })
                .await
                .map(drop),
        }
    }

    #[test]
    fn random_requests_never_answer_internal_or_unknown() {
        // Proptest's value trees of these nested strategies are deep: a roomier stack.
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(random_requests)
            .unwrap()
            .join()
            .unwrap();
    }

    fn random_requests() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let app = rt.block_on(spawn_app());
        let mut runner = TestRunner::new(Config {
            cases: cases(),
            failure_persistence: None,
            ..Config::default()
        });
        let tally = std::cell::RefCell::new(std::collections::BTreeMap::<String, usize>::new());
        runner
            .run(&req(), |r| {
                let got = rt.block_on(send(&app, r.clone()));
                let code = match &got {
                    Ok(()) => Code::Ok,
                    Err(s) => s.code(),
                };
                *tally.borrow_mut().entry(format!("{code:?}")).or_default() += 1;
                if let Err(s) = &got {
                    prop_assert!(
                        !matches!(s.code(), Code::Internal | Code::Unknown | Code::Unavailable),
                        "{r:?} answered {s:?}"
                    );
                    if s.code() == Code::InvalidArgument {
                        let fields = s
                            .get_details_bad_request()
                            .map(|b| b.field_violations.len())
                            .unwrap_or(0);
                        prop_assert!(fields > 0, "{r:?}: INVALID_ARGUMENT naming no field");
                    }
                }
                Ok(())
            })
            .unwrap();
        println!(
            "[bad_input] random requests by answer: {:?}",
            tally.borrow()
        );
        rt.block_on(app.shutdown());
    }
}
