//! Latency below saturation: per scenario, the saturation rate (a closed loop at 32 clients),
//! then an open loop at a fraction of it (half by default), latency counted from each call's
//! intended send time ([`load::paced`]). Also the setup the growth benchmark shares: a copy of
//! a seed, a server on it and the samples the drivers draw from.

use crate::db::{self, Db};
use crate::load::{self, Driver, Pace, Stats};
use crate::scenarios::{self, NumberSample};
use crate::server::Server;
use crate::stalls::Probe;
use crate::{Scenario, print_run};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::transport::Channel;

/// The goal for number lookups at half load.
pub const NUMBER_P99_GOAL_MS: f64 = 2.0;

/// The scenarios measured at half load.
pub const SCENARIOS: [Scenario; 3] = [
    Scenario::IdentifyByNumber,
    Scenario::IdentifyByName,
    Scenario::Mixed,
];

#[derive(Debug, Clone)]
pub struct HalfLoadOptions {
    /// Share of the saturation rate the open loop asks for.
    pub fraction: f64,
    /// Clients of the closed loop that measures saturation.
    pub saturation_clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub seed: u64,
    /// Calls in flight at most in the open loop: beyond, the schedule slips and the slip
    /// counts as latency.
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct HalfLoadRun {
    pub scenario: String,
    /// The closed loop at `saturation_clients`: its throughput is the saturation rate.
    pub saturation: Stats,
    /// The open loop at `fraction` × the saturation rate.
    pub paced: Stats,
    /// For number lookups in `halfload`: at the same rate, the statement the server sends
    /// (`raw_call`, straight to PostgreSQL) and an empty gRPC call (`grpc_floor`): what this
    /// machine gives the tail without the service's work.
    pub references: Vec<Stats>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HalfLoadReport {
    pub fraction: f64,
    pub saturation_clients: usize,
    pub name_account: String,
    pub name_account_contacts: u64,
    pub runs: Vec<HalfLoadRun>,
}

/// Saturation, then the open loop at `o.fraction` of it (after a paced warm-up of
/// `o.warmup`, not counted). With a `probe`, both runs are watched for stalls.
pub async fn measure(
    name: &str,
    driver: Driver,
    o: &HalfLoadOptions,
    server: Option<&Server>,
    probe: Option<&Probe>,
) -> anyhow::Result<HalfLoadRun> {
    let closed = load::closed_loop(
        name,
        o.saturation_clients,
        o.warmup,
        o.duration,
        o.seed,
        driver.clone(),
        server,
    );
    let saturation = print_run(match probe {
        Some(p) => p.around(closed).await?,
        None => closed.await,
    });
    let rate = saturation.throughput * o.fraction;
    anyhow::ensure!(
        rate > 0.0,
        "{name}: no call succeeded at saturation ({})",
        saturation.first_error.as_deref().unwrap_or("no error")
    );
    let paced = open_loop(name, rate, driver, o, server, probe).await?;
    Ok(HalfLoadRun {
        scenario: name.to_owned(),
        saturation,
        paced,
        references: Vec::new(),
    })
}

/// `driver` at `rate` on a fixed schedule for `o.duration`, after a paced warm-up of
/// `o.warmup` (not counted); watched for stalls with a `probe`.
async fn open_loop(
    name: &str,
    rate: f64,
    driver: Driver,
    o: &HalfLoadOptions,
    server: Option<&Server>,
    probe: Option<&Probe>,
) -> anyhow::Result<Stats> {
    let never = watch::channel(false);
    let pace = |max| Pace {
        rate,
        max_in_flight: o.max_in_flight,
        max,
    };
    let warm = pace(o.warmup);
    load::paced(
        "warm-up",
        warm,
        o.seed + 7,
        driver.clone(),
        never.1.clone(),
        server,
    )
    .await;
    let open = load::paced(name, pace(o.duration), o.seed + 1, driver, never.1, server);
    Ok(print_run(match probe {
        Some(p) => p.around(open).await?,
        None => open.await,
    }))
}

/// A server on a fresh copy of a seed, with the samples the drivers draw from.
pub struct Setup {
    pub run_db: String,
    pub server: Server,
    pub channels: Vec<Channel>,
    pub samples: Arc<Vec<NumberSample>>,
    /// The largest account, its spoken names and its size.
    pub big: String,
    pub names: Arc<Vec<String>>,
    pub big_contacts: u64,
}

/// How a [`Setup`] runs its server and prepares its copy.
pub struct Launch<'a> {
    pub server_bin: &'a std::path::Path,
    pub server_args: &'a [String],
    pub connections: usize,
    pub log_dir: &'a std::path::Path,
    /// Read the copy into the cache first ([`Db::prewarm`]).
    pub prewarm: bool,
}

impl Setup {
    pub async fn start(db: &Db, seed_db: &str, seed: u64, l: &Launch<'_>) -> anyhow::Result<Setup> {
        let run_db = format!("{seed_db}_run");
        db.copy(seed_db, &run_db).await?;
        if l.prewarm {
            let t = std::time::Instant::now();
            let bytes = db.prewarm(&run_db, seed_db).await?;
            eprintln!(
                "prewarm: {run_db} read into the cache, {:.1} GB in {:.0} s",
                bytes as f64 / 1e9,
                t.elapsed().as_secs_f64()
            );
        }
        let url = db.url_for(&run_db);
        let client = db::connect(&url).await?;
        let scenarios::Draws {
            samples,
            big,
            names,
            big_contacts,
        } = scenarios::draws(&client, seed).await?;
        drop(client);
        let server = Server::start(l.server_bin, &url, l.log_dir, l.server_args).await?;
        let channels = match scenarios::channels(&server.addr, l.connections).await {
            Ok(c) => c,
            Err(e) => {
                server.stop().await?;
                return Err(e);
            }
        };
        Ok(Setup {
            run_db,
            server,
            channels,
            samples,
            big,
            names,
            big_contacts,
        })
    }

    /// The driver of a read scenario or of the mix.
    pub fn driver(&self, scenario: Scenario) -> Option<(&'static str, Driver)> {
        let ch = self.channels.clone();
        Some(match scenario {
            Scenario::IdentifyByNumber => (
                "identify_by_number",
                scenarios::identify_by_number(ch, self.samples.clone()),
            ),
            Scenario::IdentifyByName => (
                "identify_by_name",
                scenarios::identify_by_name(ch, self.big.clone(), self.names.clone()),
            ),
            Scenario::Mixed => ("mixed", scenarios::mixed(ch, self.samples.clone())),
            Scenario::CreateCallNote => (
                "create_call_note",
                scenarios::create_call_notes(ch, self.samples.clone()),
            ),
            Scenario::GrpcFloor
            | Scenario::CreateCallNoteOneAccount
            | Scenario::CreateContact
            | Scenario::CreateContactOneAccount => return None,
        })
    }

    /// Stops the server and drops the copy (unless `keep`).
    pub async fn finish(self, db: &Db, keep: bool) -> anyhow::Result<()> {
        self.server.stop().await?;
        if !keep {
            db.drop_database(&self.run_db).await?;
        }
        Ok(())
    }
}

pub struct Command<'a> {
    pub scenarios: Vec<Scenario>,
    pub options: HalfLoadOptions,
    pub server_bin: PathBuf,
    pub server_args: &'a [String],
    pub connections: usize,
    pub log_dir: &'a std::path::Path,
    pub keep_copies: bool,
    /// Read the run's copy into the cache first ([`Db::prewarm`]).
    pub prewarm: bool,
}

/// `callers-bench halfload`: every scenario of `c.scenarios` (default [`SCENARIOS`]) on one
/// server, the mix (which writes) last and watched for stalls.
pub async fn run(db: &Db, seed_db: &str, c: &Command<'_>) -> anyhow::Result<HalfLoadReport> {
    let wanted: Vec<Scenario> = if c.scenarios.is_empty() {
        SCENARIOS.to_vec()
    } else {
        c.scenarios.clone()
    };
    anyhow::ensure!(
        wanted.iter().all(|s| SCENARIOS.contains(s)),
        "halfload runs {SCENARIOS:?} only"
    );
    let launch = Launch {
        server_bin: &c.server_bin,
        server_args: c.server_args,
        connections: c.connections,
        log_dir: c.log_dir,
        prewarm: c.prewarm,
    };
    let setup = Setup::start(db, seed_db, c.options.seed, &launch).await?;
    let mut report = HalfLoadReport {
        fraction: c.options.fraction,
        saturation_clients: c.options.saturation_clients,
        name_account: setup.big.clone(),
        name_account_contacts: setup.big_contacts,
        runs: Vec::new(),
    };
    let probe = Probe::new(db, &setup.run_db);
    let result = async {
        for s in SCENARIOS.iter().filter(|s| wanted.contains(s)) {
            let (name, driver) = setup.driver(*s).expect("a read scenario or the mix");
            let watched = (*s == Scenario::Mixed).then_some(&probe);
            let mut run = measure(name, driver, &c.options, Some(&setup.server), watched).await?;
            if *s == Scenario::IdentifyByNumber {
                let o = &c.options;
                let url = db.url_for(&setup.run_db);
                // One connection per client as at saturation (pipelined beyond that).
                let clients = o.max_in_flight.min(o.saturation_clients);
                let raw = scenarios::RawClients::connect(&url, clients).await?;
                let d = scenarios::raw_call(raw, setup.samples.clone(), None);
                let rate = run.paced.rate.unwrap_or(1.0);
                let r = open_loop("raw_call at the same rate", rate, d, o, None, None).await?;
                run.references.push(r);
                let d = scenarios::grpc_floor(setup.channels.clone());
                let server = Some(&setup.server);
                let name = "grpc_floor at the same rate";
                run.references
                    .push(open_loop(name, rate, d, o, server, None).await?);
            }
            report.runs.push(run);
        }
        anyhow::Ok(())
    }
    .await;
    setup.finish(db, c.keep_copies).await?;
    result?;
    Ok(report)
}

/// The goal judged on a half-load run of number lookups.
pub fn goal(r: &HalfLoadReport) -> Option<crate::report::Goal> {
    let run = r.runs.iter().find(|h| h.scenario == "identify_by_number")?;
    Some(crate::report::Goal {
        goal: format!(
            "identify-by-number p99 ≤ {NUMBER_P99_GOAL_MS} ms at {:.0} % of saturation (open loop)",
            r.fraction * 100.0
        ),
        measured: format!(
            "{:.2} ms at {:.0}/s (saturation {:.0}/s)",
            run.paced.latency.p99_ms, run.paced.throughput, run.saturation.throughput
        ),
        met: run.paced.latency.p99_ms <= NUMBER_P99_GOAL_MS,
    })
}

/// One row per scenario: saturation, the open loop's rate asked and achieved, its tail.
pub fn table(runs: &[HalfLoadRun], saturation_clients: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| scenario | saturation ok/s ({saturation_clients} clients) | asked /s | achieved ok/s | \
         p50 ms | p99 ms | p99.9 ms | max ms | sent late | errors | p99 goal |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    );
    for h in runs {
        let p = &h.paced;
        let goal = if h.scenario == "identify_by_number" {
            format!(
                "≤ {NUMBER_P99_GOAL_MS} ms: {}",
                if p.latency.p99_ms <= NUMBER_P99_GOAL_MS {
                    "met"
                } else {
                    "**not met**"
                }
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {goal} |",
            h.scenario,
            h.saturation.throughput,
            p.rate.unwrap_or(0.0),
            p.throughput,
            p.latency.p50_ms,
            p.latency.p99_ms,
            p.latency.p999_ms,
            p.latency.max_ms,
            p.late_sends,
            p.errors,
        );
    }
    s
}

pub fn markdown(r: &HalfLoadReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Open loop at {:.0} % of saturation\n\nSaturation: a closed loop at {} clients; \
         then calls at {:.0} % of its rate on a fixed schedule, latency counted from each \
         call's intended send time. Names in {} ({} contacts).\n",
        r.fraction * 100.0,
        r.saturation_clients,
        r.fraction * 100.0,
        r.name_account,
        r.name_account_contacts
    );
    s.push_str(&table(&r.runs, r.saturation_clients));
    let references: Vec<&Stats> = r.runs.iter().flat_map(|h| &h.references).collect();
    if !references.is_empty() {
        let _ = writeln!(
            s,
            "\nAt the number lookups' rate, in the same run: the statement the server sends, \
             straight to PostgreSQL (`raw_call`), and an empty gRPC call (`grpc_floor`).\n\n\
             | reference | ok/s | p50 ms | p99 ms | p99.9 ms | max ms | sent late |\n\
             |---|---|---|---|---|---|---|"
        );
        for p in references {
            let _ = writeln!(
                s,
                "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                p.name,
                p.throughput,
                p.latency.p50_ms,
                p.latency.p99_ms,
                p.latency.p999_ms,
                p.latency.max_ms,
                p.late_sends
            );
        }
    }
    let all: Vec<&Stats> = r
        .runs
        .iter()
        .flat_map(|h| [&h.saturation, &h.paced])
        .collect();
    s.push_str(&crate::stalls::markdown("## Write stalls", &all));
    s
}
