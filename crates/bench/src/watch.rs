//! Change-feed consumers on one replica: N `WatchChanges` streams, each on an HTTP/2 connection
//! of its own as separate consumers would have, all following one account or one account each,
//! while a writer makes CreateCallNote calls at a fixed rate. The writer goes through the same
//! server (whose streams wake at once on its commits) or, with `--writer-elsewhere`, through a
//! second server on the same database (the streams find the changes by polling). Measured: the
//! delay from the writer's answer to each stream's receipt of the note's change, the CPU of
//! the server and PostgreSQL with the streams open and idle and while the writes go on, and the
//! streams refused (RESOURCE_EXHAUSTED) or broken (resumed from their cursor, as a client would).

use crate::data::{self, Tables, random_number};
use crate::db::Db;
use crate::load::{self, Driver, Latency, Pace, Stats};
use crate::scenarios;
use crate::server::{CpuMeter, CpuSplit, Server};
use crate::words::{FIRST_NAMES, LAST_NAMES, NOTE_SENTENCES, SUBJECTS};
use callers_proto::v1 as pb;
use callers_proto::v1::call_note_service_client::CallNoteServiceClient;
use callers_proto::v1::change_service_client::ChangeServiceClient;
use futures::StreamExt;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::Streaming;
use tonic::transport::Channel;

/// After the last write, how long the streams may take to deliver it: twice the server's
/// default longest poll (1 s), and a margin.
const DRAIN: Duration = Duration::from_millis(2_500);
/// Writes before the first run.
const WARMUP: Duration = Duration::from_secs(2);
/// Streams opened at once (consumers start one by one, not in one burst).
const OPENING: usize = 16;
/// A broken stream is opened again after this pause.
const RESUME_PAUSE: Duration = Duration::from_millis(100);

pub struct WatchOptions {
    pub watchers: Vec<usize>,
    pub write_rate: f64,
    pub idle: Duration,
    pub duration: Duration,
    pub writer_elsewhere: bool,
    pub seed: u64,
    pub server_bin: PathBuf,
    pub server_args: Vec<String>,
    pub log_dir: PathBuf,
    pub keep_copies: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchRun {
    pub streams: usize,
    /// Accounts the streams follow: 1, or one per stream.
    pub accounts: usize,
    /// "same replica" or "other replica".
    pub writer: String,
    pub opened: usize,
    /// Opening refused with RESOURCE_EXHAUSTED (the replica's stream cap).
    pub refused: usize,
    /// Opening failed otherwise.
    pub open_errors: usize,
    pub open_secs: f64,
    /// Streams that broke with an error while open and were resumed from their cursor; the
    /// reopenings themselves are counted in `stream_errors` too when they fail.
    pub stream_errors: u64,
    pub first_error: Option<String>,
    /// The streams open, nothing written.
    pub idle_cpu: CpuSplit,
    /// The writer at its fixed rate; its `cpu` is the split of the write phase.
    pub writes: Stats,
    /// Receipts owed: every answered write times the streams open on its account.
    pub expected: u64,
    pub delivered: u64,
    pub missed: u64,
    /// Receipts that came before the writer had its answer (counted as 0 ms).
    pub before_answer: u64,
    /// Writer's answer → a stream's receipt.
    pub delay: Latency,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchReport {
    pub write_rate: f64,
    pub runs: Vec<WatchRun>,
}

/// What one stream received, and how it fared.
#[derive(Default)]
struct Receipts {
    /// (call note id, when it arrived)
    received: Vec<(String, Instant)>,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(db: &Db, base: &str, o: &WatchOptions) -> anyhow::Result<WatchReport> {
    let copy = format!("{base}_watch");
    db.copy(base, &copy).await?;
    let url = db.url_for(&copy);
    let server = Server::start(&o.server_bin, &url, &o.log_dir, &o.server_args).await?;
    let writer_server = if o.writer_elsewhere {
        match Server::start(&o.server_bin, &url, &o.log_dir, &o.server_args).await {
            Ok(s) => Some(s),
            Err(e) => {
                server.stop().await?;
                return Err(e);
            }
        }
    } else {
        None
    };
    let result = async {
        let mut report = WatchReport {
            write_rate: o.write_rate,
            runs: Vec::new(),
        };
        let writer_addr = writer_server
            .as_ref()
            .map_or(server.addr.clone(), |s| s.addr.clone());
        // Warm the copy's caches and the servers' connections, so the first run is not the
        // only one to meet them cold.
        let warm = writer(
            scenarios::channels(&writer_addr, 1).await?,
            vec![data::account_id(0)],
            Arc::default(),
        );
        let (_never_tx, never) = watch::channel(false);
        let pace = Pace {
            rate: o.write_rate,
            max_in_flight: 32,
            max: WARMUP,
        };
        load::paced("warm-up", pace, o.seed, warm, never, None).await;
        for &n in &o.watchers {
            let spreads: &[usize] = if n == 1 { &[1] } else { &[1, n] };
            for &accounts in spreads {
                let run = one_run(&server, &writer_addr, n, accounts, o).await?;
                eprintln!(
                    "watch: {n} streams over {accounts} accounts: opened {} (refused {}, failed {}), \
                     delivered {} of {}, delay p50 {:.1} / p99 {:.1} / max {:.1} ms; server CPU {:.0} % idle, {:.0} % writing",
                    run.opened,
                    run.refused,
                    run.open_errors,
                    run.delivered,
                    run.expected,
                    run.delay.p50_ms,
                    run.delay.p99_ms,
                    run.delay.max_ms,
                    share(run.idle_cpu.server_secs, &run.idle_cpu),
                    share(run.writes.cpu.server_secs, &run.writes.cpu),
                );
                report.runs.push(run);
                // The server lets go of closed streams when it next looks at them.
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }
        anyhow::Ok(report)
    }
    .await;
    server.stop().await?;
    if let Some(s) = writer_server {
        s.stop().await?;
    }
    if !o.keep_copies {
        db.drop_database(&copy).await?;
    }
    result
}

/// CPU seconds as a percentage of one core over the split's wall time.
fn share(secs: f64, cpu: &CpuSplit) -> f64 {
    secs * 100.0 / cpu.wall_secs.max(1e-9)
}

async fn one_run(
    server: &Server,
    writer_addr: &str,
    n: usize,
    accounts: usize,
    o: &WatchOptions,
) -> anyhow::Result<WatchRun> {
    let account_of = |i: usize| data::account_id(i % accounts);
    let started = Instant::now();
    let opened: Vec<(usize, Result<Opened, tonic::Status>)> =
        futures::stream::iter((0..n).map(|i| {
            let addr = server.addr.clone();
            let account = account_of(i);
            async move { (i, open(&addr, account).await) }
        }))
        .buffer_unordered(OPENING)
        .collect()
        .await;
    let open_secs = started.elapsed().as_secs_f64();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut refused = 0;
    let mut open_errors = 0;
    let mut first_error = None;
    let mut followers = Vec::new();
    let mut open_per_account: HashMap<String, u64> = HashMap::new();
    for (i, r) in opened {
        match r {
            Ok(s) => {
                *open_per_account.entry(account_of(i)).or_default() += 1;
                followers.push(tokio::spawn(follow(s, stop_rx.clone())));
            }
            Err(status) => {
                if status.code() == tonic::Code::ResourceExhausted {
                    refused += 1;
                } else {
                    open_errors += 1;
                }
                first_error
                    .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
    }
    let opened = followers.len();
    let meter = CpuMeter::start(Some(server.pid));
    tokio::time::sleep(o.idle).await;
    let idle_cpu = meter.stop();

    let answers: Arc<Mutex<HashMap<String, (String, Instant)>>> = Arc::default();
    let writer_channels = scenarios::channels(writer_addr, 1).await?;
    let driver = writer(
        writer_channels,
        (0..accounts).map(account_of).collect(),
        answers.clone(),
    );
    let (_never_tx, never) = watch::channel(false);
    let pace = Pace {
        rate: o.write_rate,
        max_in_flight: 32,
        max: o.duration,
    };
    let writes = load::paced(
        "watched_create_call_note",
        pace,
        o.seed,
        driver,
        never,
        Some(server),
    )
    .await;
    tokio::time::sleep(DRAIN).await;
    let _ = stop_tx.send(true);
    let mut stream_errors = 0;
    let mut h = load::histogram();
    let mut delivered = 0;
    let mut before_answer = 0;
    let answers = answers.lock().map(|a| a.clone()).unwrap_or_default();
    for f in followers {
        let Ok(r) = f.await else { continue };
        stream_errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
        for (note, at) in r.received {
            let Some((_, answered)) = answers.get(&note) else {
                continue;
            };
            delivered += 1;
            if at < *answered {
                before_answer += 1;
            }
            load::record(&mut h, at.saturating_duration_since(*answered));
        }
    }
    let expected: u64 = answers
        .values()
        .map(|(account, _)| open_per_account.get(account).copied().unwrap_or(0))
        .sum();
    Ok(WatchRun {
        streams: n,
        accounts,
        writer: if writer_addr == server.addr {
            "same replica"
        } else {
            "other replica"
        }
        .into(),
        opened,
        refused,
        open_errors,
        open_secs,
        stream_errors,
        first_error,
        idle_cpu,
        writes,
        expected,
        delivered,
        missed: expected.saturating_sub(delivered),
        before_answer,
        delay: Latency::of(&h),
    })
}

/// An open stream: its client (to resume), account and cursor.
struct Opened {
    client: ChangeServiceClient<Channel>,
    account: String,
    cursor: String,
    stream: Streaming<pb::WatchChangesResponse>,
}

/// A connection of its own, the account's cursor now, and a stream from it.
async fn open(addr: &str, account: String) -> Result<Opened, tonic::Status> {
    let channel = scenarios::channels(addr, 1)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("{e:#}")))?
        .remove(0);
    let mut client = ChangeServiceClient::new(channel);
    let cursor = client
        .get_change_cursor(pb::GetChangeCursorRequest {
            account_id: account.clone(),
        })
        .await?
        .into_inner()
        .cursor;
    let stream = client
        .watch_changes(pb::WatchChangesRequest {
            account_id: account.clone(),
            cursor: cursor.clone(),
        })
        .await?
        .into_inner();
    Ok(Opened {
        client,
        account,
        cursor,
        stream,
    })
}

/// Reads the stream until told to stop, noting when each call note's creation arrives; a
/// stream that ends or breaks is opened again from its cursor.
async fn follow(mut s: Opened, mut stop: watch::Receiver<bool>) -> Receipts {
    let mut r = Receipts::default();
    let created = pb::ChangeType::CallNoteCreated as i32;
    loop {
        if *stop.borrow() {
            break;
        }
        let next = tokio::select! {
            m = s.stream.message() => m,
            _ = stop.changed() => break,
        };
        let status = match next {
            Ok(Some(message)) => {
                let now = Instant::now();
                for c in &message.changes {
                    if c.r#type == created {
                        r.received.push((c.call_note_id.clone(), now));
                    }
                }
                s.cursor = message.cursor;
                continue;
            }
            // The stream's maximum age: resume.
            Ok(None) => None,
            Err(status) => Some(status),
        };
        if let Some(status) = status {
            r.errors += 1;
            r.first_error
                .get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            tokio::time::sleep(RESUME_PAUSE).await;
        }
        loop {
            if *stop.borrow() {
                return r;
            }
            match s
                .client
                .watch_changes(pb::WatchChangesRequest {
                    account_id: s.account.clone(),
                    cursor: s.cursor.clone(),
                })
                .await
            {
                Ok(resp) => {
                    s.stream = resp.into_inner();
                    break;
                }
                Err(status) => {
                    r.errors += 1;
                    r.first_error.get_or_insert_with(|| {
                        format!("{:?}: {}", status.code(), status.message())
                    });
                    tokio::time::sleep(RESUME_PAUSE).await;
                }
            }
        }
    }
    r
}

/// CreateCallNote of a new caller in one of `accounts`, noting when each answer arrived.
fn writer(
    channels: Vec<Channel>,
    accounts: Vec<String>,
    answers: Arc<Mutex<HashMap<String, (String, Instant)>>>,
) -> Driver {
    let tables = Arc::new(Tables::default());
    Arc::new(move |w, rng| {
        let account = accounts.choose(rng).expect("non-empty").clone();
        let text = (0..rng.random_range(1..=4))
            .map(|_| *NOTE_SENTENCES.choose(rng).expect("non-empty"))
            .collect::<Vec<_>>()
            .join(" ");
        let req = pb::CreateCallNoteRequest {
            account_id: account.clone(),
            request_id: uuid::Uuid::new_v4().to_string(),
            call_note: Some(pb::CallNote {
                employee_id: format!("emp-{}", rng.random_range(0..20)),
                agent_id: format!("agent-{}", rng.random_range(0..200)),
                caller_first_name: FIRST_NAMES.choose(rng).expect("non-empty").0.to_owned(),
                caller_last_name: LAST_NAMES.choose(rng).expect("non-empty").to_string(),
                caller_number: random_number(&tables, rng).0,
                subject: SUBJECTS.choose(rng).expect("non-empty").to_string(),
                text,
                ..Default::default()
            }),
        };
        let mut client = CallNoteServiceClient::new(channels[w % channels.len()].clone());
        let answers = answers.clone();
        Box::pin(async move {
            let response = client
                .create_call_note(req)
                .await
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
            let at = Instant::now();
            let note = response
                .into_inner()
                .call_note
                .map(|n| n.call_note_id)
                .unwrap_or_default();
            if let Ok(mut a) = answers.lock() {
                a.insert(note, (account, at));
            }
            Ok("create_call_note")
        })
    })
}

/// One row per stream count and spread.
pub fn markdown(r: &WatchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Change streams\n\nWriter: CreateCallNote at {:.0}/s. Delay: the writer's answer → a stream's receipt. \
         CPU: % of one core, server / PostgreSQL.\n\n\
         | streams | accounts | writer | opened | refused | broken | writes/s | write p99 ms | delivered / owed | delay p50 ms | p99 ms | max ms | CPU idle | CPU writing | bench CPU writing |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        r.write_rate
    );
    for run in &r.runs {
        let w = &run.writes.cpu;
        let i = &run.idle_cpu;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.2} | {} / {} | {:.2} | {:.2} | {:.2} | {:.0} / {:.0} % | {:.0} / {:.0} % | {:.0} % |",
            run.streams,
            run.accounts,
            run.writer,
            run.opened,
            run.refused,
            run.stream_errors,
            run.writes.throughput,
            run.writes.latency.p99_ms,
            run.delivered,
            run.expected,
            run.delay.p50_ms,
            run.delay.p99_ms,
            run.delay.max_ms,
            share(i.server_secs, i),
            share(i.postgres_secs, i),
            share(w.server_secs, w),
            share(w.postgres_secs, w),
            share(w.bench_secs, w),
        );
    }
    s
}
