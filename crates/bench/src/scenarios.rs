//! What the load generator sends: samples drawn from the seeded database, and one driver per
//! scenario (gRPC against the server, or the raw SQL against PostgreSQL).

use crate::Scenario;
use crate::data::{Tables, random_number};
use crate::db;
use crate::load::{Driver, OpFuture};
use crate::words::{FIRST_NAMES, LAST_NAMES, NOTE_SENTENCES, SUBJECTS};
use anyhow::Context;
use callers_proto::v1 as pb;
use callers_proto::v1::call_note_service_client::CallNoteServiceClient;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A number as telephony would deliver it, with the contact it belongs to (empty names and
/// `known = false` for numbers nobody has).
#[derive(Debug, Clone)]
pub struct NumberSample {
    pub account: String,
    pub written: String,
    pub e164: String,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub known: bool,
}

/// `n` numbers of stored contacts, uniformly over all numbers (so accounts are hit in
/// proportion to their size), plus `unknown_share` numbers nobody has, in the same accounts.
/// What the lookup scenarios draw from in a seeded database: stored numbers (10 % unknown),
/// the largest account, names said there, and its size.
pub struct Draws {
    pub samples: Arc<Vec<NumberSample>>,
    pub big: String,
    pub names: Arc<Vec<String>>,
    pub big_contacts: u64,
}

pub async fn draws(client: &Client, seed: u64) -> anyhow::Result<Draws> {
    let samples = Arc::new(number_samples(client, 20_000, 0.1, seed).await?);
    let big = crate::data::account_id(0);
    let names = Arc::new(name_samples(client, &big, 5_000, seed).await?);
    let big_contacts: i64 = client
        .query_one(
            "SELECT count(*) AS n FROM contacts WHERE account_id = $1",
            &[&big],
        )
        .await?
        .get("n");
    Ok(Draws {
        samples,
        big,
        names,
        big_contacts: big_contacts as u64,
    })
}

pub async fn number_samples(
    client: &Client,
    n: usize,
    unknown_share: f64,
    seed: u64,
) -> anyhow::Result<Vec<NumberSample>> {
    client
        .execute("SELECT setseed($1)", &[&((seed % 1000) as f64 / 1000.0)])
        .await?;
    let rows = client
        .query(
            "SELECT p.account_id, p.number, p.e164, c.first_name, c.last_name, c.company \
             FROM (SELECT account_id, contact_id, number, e164 FROM contact_phone_numbers \
                   ORDER BY random() LIMIT $1) p \
             JOIN contacts c ON c.account_id = p.account_id AND c.contact_id = p.contact_id",
            &[&(n as i64)],
        )
        .await?;
    let mut out: Vec<NumberSample> = rows
        .iter()
        .map(|r| NumberSample {
            account: r.get("account_id"),
            written: r.get("number"),
            e164: r.get("e164"),
            first_name: r.get("first_name"),
            last_name: r.get("last_name"),
            company: r.get("company"),
            known: true,
        })
        .collect();
    anyhow::ensure!(!out.is_empty(), "the database holds no phone numbers");
    let tables = Tables::default();
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let unknown = (out.len() as f64 * unknown_share).round() as usize;
    for _ in 0..unknown {
        let account = out[rng.random_range(0..out.len())].account.clone();
        let (written, e164) = random_number(&tables, &mut rng);
        out.push(NumberSample {
            account,
            written,
            e164,
            first_name: String::new(),
            last_name: String::new(),
            company: String::new(),
            known: false,
        });
    }
    // Interleave known and unknown numbers.
    for i in (1..out.len()).rev() {
        let j = rng.random_range(0..=i);
        out.swap(i, j);
    }
    Ok(out)
}

/// How a caller gives their name on the phone, from a stored contact's fields.
pub fn spoken_name(rng: &mut SmallRng, first: &str, last: &str, company: &str) -> String {
    let typo = |rng: &mut SmallRng, s: &str| -> String {
        let chars: Vec<char> = s.chars().collect();
        if chars.len() < 5 {
            return s.to_owned();
        }
        let i = rng.random_range(1..chars.len() - 1);
        let mut c = chars.clone();
        if rng.random_bool(0.5) {
            c.remove(i);
        } else {
            c.swap(i, i + 1);
        }
        c.into_iter().collect()
    };
    if last.is_empty() {
        if !company.is_empty() {
            return company.to_owned();
        }
        return first.to_owned();
    }
    match rng.random_range(0..100) {
        0..35 if !first.is_empty() => format!("{first} {last}"),
        35..50 if !first.is_empty() => format!("{last}, {first}"),
        50..65 => format!(
            "{} {last}",
            if rng.random_bool(0.5) { "Herr" } else { "Frau" }
        ),
        65..70 => format!("Dr. {last}"),
        70..80 if !company.is_empty() => company.to_owned(),
        80..95 => match first {
            "" => typo(rng, last),
            f => format!("{f} {}", typo(rng, last)),
        },
        95..100 => format!(
            "{} {}",
            FIRST_NAMES.choose(rng).expect("non-empty").0,
            LAST_NAMES.choose(rng).expect("non-empty")
        ),
        _ => last
            .replace('ü', "ue")
            .replace('ö', "oe")
            .replace('ä', "ae"),
    }
}

/// Names as callers of `account` give them, from `n` random contacts with a name.
pub async fn name_samples(
    client: &Client,
    account: &str,
    n: usize,
    seed: u64,
) -> anyhow::Result<Vec<String>> {
    client
        .execute("SELECT setseed($1)", &[&((seed % 997) as f64 / 997.0)])
        .await?;
    let rows = client
        .query(
            "SELECT first_name, last_name, company FROM contacts \
             WHERE account_id = $1 AND (last_name <> '' OR company <> '') \
             ORDER BY random() LIMIT $2",
            &[&account, &(n as i64)],
        )
        .await?;
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x4a4e);
    let out: Vec<String> = rows
        .iter()
        .map(|r| {
            spoken_name(
                &mut rng,
                r.get::<_, &str>(0),
                r.get::<_, &str>(1),
                r.get::<_, &str>(2),
            )
        })
        .collect();
    anyhow::ensure!(!out.is_empty(), "account {account} holds no named contacts");
    Ok(out)
}

/// `connections` HTTP/2 connections to the server; workers share them round robin.
pub async fn channels(addr: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
    let mut out = Vec::new();
    for _ in 0..connections.max(1) {
        let ch = Endpoint::from_shared(addr.to_owned())?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        out.push(ch);
    }
    Ok(out)
}

fn identify_request(
    account: &str,
    number: &str,
    name: &str,
    employee: usize,
) -> pb::IdentifyCallerRequest {
    pb::IdentifyCallerRequest {
        account_id: account.to_owned(),
        employee_id: format!("emp-{employee}"),
        caller_number: number.to_owned(),
        caller_name: name.to_owned(),
        max_results: 0,
    }
}

fn identify(channel: &Channel, req: pb::IdentifyCallerRequest, op: &'static str) -> OpFuture {
    let mut client = IdentificationServiceClient::new(channel.clone());
    Box::pin(async move {
        client
            .identify_caller(req)
            .await
            .map(|_| op)
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    })
}

fn call_note_request(
    rng: &mut SmallRng,
    s: &NumberSample,
    tables: &Tables,
) -> pb::CreateCallNoteRequest {
    let (number, first, last, company) = match rng.random_range(0..10) {
        // A known caller, named as noted (sometimes the surname only).
        0..6 => (
            s.written.clone(),
            if rng.random_bool(0.7) {
                s.first_name.clone()
            } else {
                String::new()
            },
            s.last_name.clone(),
            s.company.clone(),
        ),
        // A new caller.
        6..9 => (
            random_number(tables, rng).0,
            FIRST_NAMES.choose(rng).expect("non-empty").0.to_owned(),
            LAST_NAMES.choose(rng).expect("non-empty").to_string(),
            String::new(),
        ),
        // Caller ID suppressed.
        _ => (
            "anonymous".to_owned(),
            String::new(),
            LAST_NAMES.choose(rng).expect("non-empty").to_string(),
            String::new(),
        ),
    };
    let text = (0..rng.random_range(1..=4))
        .map(|_| *NOTE_SENTENCES.choose(rng).expect("non-empty"))
        .collect::<Vec<_>>()
        .join(" ");
    pb::CreateCallNoteRequest {
        account_id: s.account.clone(),
        request_id: uuid::Uuid::new_v4().to_string(),
        call_note: Some(pb::CallNote {
            employee_id: format!("emp-{}", rng.random_range(0..20)),
            agent_id: format!("agent-{}", rng.random_range(0..200)),
            caller_first_name: first,
            caller_last_name: last,
            caller_company: company,
            caller_number: number,
            subject: SUBJECTS.choose(rng).expect("non-empty").to_string(),
            text,
            ..Default::default()
        }),
    }
}

fn create_call_note(channel: &Channel, req: pb::CreateCallNoteRequest) -> OpFuture {
    let mut client = CallNoteServiceClient::new(channel.clone());
    Box::pin(async move {
        client
            .create_call_note(req)
            .await
            .map(|_| "create_call_note")
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
    })
}

/// `grpc.health.v1.Health/Check`: a gRPC call that touches no database, the floor of what any
/// call through the same client, HTTP/2 connections and server costs.
pub fn grpc_floor(channels: Vec<Channel>) -> Driver {
    Arc::new(move |w, _rng| {
        let mut client = HealthClient::new(channels[w % channels.len()].clone());
        Box::pin(async move {
            client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|_| "grpc_floor")
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    })
}

/// IdentifyCaller with the number only, written as stored (mixed formats).
pub fn identify_by_number(channels: Vec<Channel>, samples: Arc<Vec<NumberSample>>) -> Driver {
    Arc::new(move |w, rng| {
        let s = &samples[rng.random_range(0..samples.len())];
        let req = identify_request(&s.account, &s.written, "", rng.random_range(0..5));
        identify(&channels[w % channels.len()], req, "identify_by_number")
    })
}

/// IdentifyCaller with a spoken name only, in one account.
pub fn identify_by_name(
    channels: Vec<Channel>,
    account: String,
    names: Arc<Vec<String>>,
) -> Driver {
    Arc::new(move |w, rng| {
        let name = &names[rng.random_range(0..names.len())];
        let req = identify_request(&account, "", name, rng.random_range(0..5));
        identify(&channels[w % channels.len()], req, "identify_by_name")
    })
}

/// CreateCallNote without a contact id: the server links a known caller or creates one.
pub fn create_call_notes(channels: Vec<Channel>, samples: Arc<Vec<NumberSample>>) -> Driver {
    let tables = Arc::new(Tables::default());
    Arc::new(move |w, rng| {
        let s = &samples[rng.random_range(0..samples.len())];
        let req = call_note_request(rng, s, &tables);
        create_call_note(&channels[w % channels.len()], req)
    })
}

/// The samples of one account, for the write scenarios whose writers all share it.
pub fn samples_of(samples: &[NumberSample], account: &str) -> Arc<Vec<NumberSample>> {
    Arc::new(
        samples
            .iter()
            .filter(|s| s.account == account)
            .cloned()
            .collect(),
    )
}

/// CreateContact of a new caller (a number and a name) in a sample's account: accounts are hit
/// in proportion to their size, or all writes go to one account when the samples are one
/// account's ([`samples_of`]).
pub fn create_contacts(channels: Vec<Channel>, samples: Arc<Vec<NumberSample>>) -> Driver {
    let tables = Arc::new(Tables::default());
    Arc::new(move |w, rng| {
        let s = &samples[rng.random_range(0..samples.len())];
        let req = pb::CreateContactRequest {
            account_id: s.account.clone(),
            request_id: uuid::Uuid::new_v4().to_string(),
            contact: Some(pb::Contact {
                categories: vec!["caller".into()],
                first_name: FIRST_NAMES.choose(rng).expect("non-empty").0.to_owned(),
                last_name: LAST_NAMES.choose(rng).expect("non-empty").to_string(),
                phone_numbers: vec![pb::PhoneNumber {
                    number: random_number(&tables, rng).0,
                    ..Default::default()
                }],
                origin: pb::Origin::ExpectedCall as i32,
                ..Default::default()
            }),
        };
        let mut client = ContactServiceClient::new(channels[w % channels.len()].clone());
        Box::pin(async move {
            client
                .create_contact(req)
                .await
                .map(|_| "create_contact")
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        })
    })
}

/// The driver of a write scenario (`None` for the others): call notes or contacts, spread over
/// the samples' accounts or all in `one_account`'s samples.
pub fn write_driver(
    scenario: Scenario,
    channels: &[Channel],
    samples: &Arc<Vec<NumberSample>>,
    one_account: &Arc<Vec<NumberSample>>,
) -> Option<(&'static str, Driver)> {
    let ch = channels.to_vec();
    Some(match scenario {
        Scenario::CreateCallNote => ("create_call_note", create_call_notes(ch, samples.clone())),
        Scenario::CreateCallNoteOneAccount => (
            "create_call_note_one_account",
            create_call_notes(ch, one_account.clone()),
        ),
        Scenario::CreateContact => ("create_contact", create_contacts(ch, samples.clone())),
        Scenario::CreateContactOneAccount => (
            "create_contact_one_account",
            create_contacts(ch, one_account.clone()),
        ),
        Scenario::GrpcFloor
        | Scenario::IdentifyByNumber
        | Scenario::IdentifyByName
        | Scenario::Mixed => return None,
    })
}

/// A call centre: most calls are identified by number, some by number and name, a few by name
/// alone (caller ID suppressed); a note is written for a quarter of them.
pub fn mixed(channels: Vec<Channel>, samples: Arc<Vec<NumberSample>>) -> Driver {
    let tables = Arc::new(Tables::default());
    Arc::new(move |w, rng| {
        let ch = &channels[w % channels.len()];
        let s = &samples[rng.random_range(0..samples.len())];
        let employee = rng.random_range(0..5);
        match rng.random_range(0..100) {
            0..60 => identify(
                ch,
                identify_request(&s.account, &s.written, "", employee),
                "identify_by_number",
            ),
            60..70 => {
                let name = spoken_name(rng, &s.first_name, &s.last_name, &s.company);
                identify(
                    ch,
                    identify_request(&s.account, &s.written, &name, employee),
                    "identify_by_number_and_name",
                )
            }
            70..75 => {
                let name = if s.known {
                    spoken_name(rng, &s.first_name, &s.last_name, &s.company)
                } else {
                    LAST_NAMES.choose(rng).expect("non-empty").to_string()
                };
                identify(
                    ch,
                    identify_request(&s.account, "anonymous", &name, employee),
                    "identify_by_name",
                )
            }
            _ => create_call_note(ch, call_note_request(rng, s, &tables)),
        }
    })
}

/// One PostgreSQL connection per client, as `pgbench -c N -M prepared` would open.
pub struct RawClients {
    clients: Vec<Client>,
    by_number: Vec<Statement>,
    call: Vec<Statement>,
}

impl RawClients {
    pub async fn connect(url: &str, n: usize) -> anyhow::Result<Arc<RawClients>> {
        let mut clients = Vec::new();
        let mut by_number = Vec::new();
        let mut call = Vec::new();
        for _ in 0..n.max(1) {
            let c = db::connect(url).await?;
            // The lookup the server runs for IdentifyCaller by number, verbatim: alone, and
            // inside the statement the server sends.
            by_number.push(c.prepare(callers_store::identify::BY_NUMBER).await?);
            call.push(c.prepare(callers_store::identify::CALL_BY_NUMBER).await?);
            clients.push(c);
        }
        Ok(Arc::new(RawClients {
            clients,
            by_number,
            call,
        }))
    }

    /// Contacts the raw statement finds for a number (ids), for the consistency check.
    pub async fn lookup(&self, account: &str, e164: &str) -> anyhow::Result<Vec<uuid::Uuid>> {
        let rows = self.clients[0]
            .query(
                &self.by_number[0],
                &[
                    &account,
                    &e164,
                    &callers_store::identify::NUMBER_CANDIDATES,
                    &callers_domain::phone::dial_bases_of(e164),
                ],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(1)).collect())
    }
}

/// The identify-by-number statement alone, prepared, one connection per client.
pub fn raw_by_number(raw: Arc<RawClients>, samples: Arc<Vec<NumberSample>>) -> Driver {
    Arc::new(move |w, rng| {
        let s = samples[rng.random_range(0..samples.len())].clone();
        let raw = raw.clone();
        Box::pin(async move {
            let i = w % raw.clients.len();
            raw.clients[i]
                .query(
                    &raw.by_number[i],
                    &[
                        &s.account,
                        &s.e164,
                        &callers_store::identify::NUMBER_CANDIDATES,
                        &callers_domain::phone::dial_bases_of(&s.e164),
                    ],
                )
                .await
                .map(|_| "raw_by_number")
                .map_err(|e| e.to_string())
        })
    })
}

/// What the server sends PostgreSQL for one IdentifyCaller by number: the lookup and the
/// call-handling read in one statement (`CALL_BY_NUMBER`). What the service costs beyond this
/// is its own work (gRPC, parsing, ranking).
///
/// With `shared`, the clients use only that many connections, concurrently: tokio-postgres
/// pipelines the statements of a connection's clients (one write for those waiting, the
/// backend reads them in one go).
pub fn raw_call(
    raw: Arc<RawClients>,
    samples: Arc<Vec<NumberSample>>,
    shared: Option<usize>,
) -> Driver {
    let name = if shared.is_some() {
        "raw_call_shared"
    } else {
        "raw_call"
    };
    Arc::new(move |w, rng| {
        let s = samples[rng.random_range(0..samples.len())].clone();
        let employee = format!("emp-{}", rng.random_range(0..5));
        let raw = raw.clone();
        Box::pin(async move {
            let i = w % shared
                .unwrap_or(raw.clients.len())
                .clamp(1, raw.clients.len());
            let limit = callers_store::identify::NUMBER_CANDIDATES;
            let bases = callers_domain::phone::dial_bases_of(&s.e164);
            let params: [&(dyn ToSql + Sync); 5] = [&s.account, &s.e164, &limit, &employee, &bases];
            raw.clients[i]
                .query(&raw.call[i], &params)
                .await
                .map(|_| name)
                .map_err(|e| e.to_string())
        })
    })
}

/// Checks on `n` samples that the service finds what the raw statement finds: the same
/// contacts (the service returns the best five of them).
pub async fn check_consistency(
    channel: &Channel,
    raw: &RawClients,
    samples: &[NumberSample],
    n: usize,
) -> anyhow::Result<(usize, usize)> {
    let mut client = IdentificationServiceClient::new(channel.clone());
    let mut agree = 0;
    let mut checked = 0;
    for s in samples.iter().take(n) {
        let expected = raw.lookup(&s.account, &s.e164).await?;
        let got = client
            .identify_caller(identify_request(&s.account, &s.written, "", 0))
            .await?
            .into_inner();
        let ids: Vec<uuid::Uuid> = got
            .matches
            .iter()
            .filter_map(|m| m.contact.as_ref())
            .filter_map(|c| c.contact_id.parse().ok())
            .collect();
        checked += 1;
        if ids.len() == expected.len().min(5)
            && ids.iter().all(|id| expected.contains(id))
            && got.normalized_number == s.e164
        {
            agree += 1;
        }
    }
    Ok((agree, checked))
}
