//! `callers-bench`: seeds realistic data, drives the real `callers-server` with a gRPC load
//! generator, runs the identical identify-by-number SQL directly against PostgreSQL in the same
//! run, and measures the purge worker against a bare `DELETE`. See BENCHMARKS.md.
//!
//! Not part of the test suite: it asserts nothing about time, it reports.

mod data;
mod db;
mod growth;
mod halfload;
mod load;
mod population;
mod purge;
mod quality;
mod quality_words;
mod report;
mod scenarios;
mod seed;
mod server;
mod stalls;
mod watch;
mod words;
mod writes;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "callers-bench",
    version,
    about = "Benchmarks of identification and purge, against raw PostgreSQL in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Debug, Clone, PartialEq, Subcommand)]
enum Command {
    /// Recognition quality: one seeded account, callers' names of every class, top-1/top-5
    /// and false suggestions of IdentifyCaller beside a pg_trgm baseline (a Markdown table;
    /// --out writes it to a file too).
    Quality(QualityArgs),
    /// Seed the benchmark database (reused by later runs while the parameters are equal).
    Seed,
    /// Service scenarios against the real server, and the raw baseline in the same run.
    Load,
    /// The raw PostgreSQL baselines only.
    Raw,
    /// The purge worker against a bare DELETE, and lookups during the purge.
    Purge,
    /// seed, load (with raw) and purge.
    All,
    /// Write throughput of the write scenarios against this build's server and, in the same
    /// run, a baseline build (--baseline-server-bin), alternating, each on a fresh copy of the
    /// seed.
    Writes(WritesArgs),
    /// Latency below saturation: per scenario (identify by number, by name, the call-centre
    /// mix) the saturation rate (closed loop, 32 clients), then calls on a fixed schedule at
    /// --load-fraction of it, latency counted from each call's intended send time.
    Halfload(HalfLoadArgs),
    /// Identify by number, by name (largest account) and CreateCallNote at several scales in
    /// one run, a seed each (<db-name>_10k, _100k, _1m, _10m), at one client and at
    /// --load-fraction of saturation, with the growth factor per step.
    Growth(GrowthArgs),
    /// Change-feed consumers one server serves: WatchChanges streams over one account or one
    /// account each while a writer writes at a fixed rate; delivery delay, CPU, refusals.
    Watch(WatchArgs),
}

#[derive(Debug, Clone, PartialEq, Args)]
struct WritesArgs {
    /// An earlier server build to measure beside this one (e.g. the commit before a change).
    #[arg(long)]
    baseline_server_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Args)]
struct HalfLoadArgs {
    /// Share of the measured saturation rate the open loop asks for.
    #[arg(long, default_value_t = 0.5)]
    load_fraction: f64,
    /// Clients of the closed loop that measures the saturation rate.
    #[arg(long, default_value_t = 32)]
    saturation_clients: usize,
    /// Calls in flight at most in the open loop (beyond, the schedule slips, and the slip
    /// counts as latency).
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
}

#[derive(Debug, Clone, PartialEq, Args)]
struct GrowthArgs {
    /// Data sizes, one seed each (1.0 is 1,000,000 contacts; see --scale).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10")]
    scales: Vec<f64>,
    #[command(flatten)]
    half: HalfLoadArgs,
}

impl HalfLoadArgs {
    fn options(&self, o: &Opts) -> halfload::HalfLoadOptions {
        halfload::HalfLoadOptions {
            fraction: self.load_fraction,
            saturation_clients: self.saturation_clients,
            warmup: Duration::from_secs_f64(o.warmup),
            duration: Duration::from_secs_f64(o.duration),
            seed: o.seed,
            max_in_flight: self.max_in_flight,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Args)]
struct WatchArgs {
    /// Streams open at once, one run per value (each over one account, then one account each).
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    watchers: Vec<usize>,
    /// CreateCallNote calls per second while the streams are open.
    #[arg(long, default_value_t = 50.0)]
    write_rate: f64,
    /// Seconds with the streams open before the writes begin (their idle cost is measured).
    #[arg(long, default_value_t = 5.0)]
    idle: f64,
    /// Write through a second server on the same database, so the streams find the changes by
    /// polling instead of being woken by their own replica's commits.
    #[arg(long)]
    writer_elsewhere: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
struct QualityArgs {
    /// Contacts of the evaluated account.
    #[arg(long, default_value_t = 20_000)]
    contacts: usize,
    /// Queries per class.
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// Write every query whose first match is wrong, and every false suggestion, to this file
    /// (tab-separated: class, query, wanted, callers' first match, pg_trgm's).
    #[arg(long)]
    misses: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Health checks: gRPC without any database work.
    GrpcFloor,
    IdentifyByNumber,
    IdentifyByName,
    CreateCallNote,
    Mixed,
    /// CreateCallNote, every client writing into one account (whose writes serialise on its
    /// change counter); only when named.
    CreateCallNoteOneAccount,
    /// CreateContact of a new caller, spread over the accounts; only when named.
    CreateContact,
    /// CreateContact, every client writing into one account; only when named.
    CreateContactOneAccount,
}

impl Scenario {
    /// The write scenarios added with the change feed run only when named, so `load` and
    /// `all` measure what they always did.
    fn by_default(self) -> bool {
        !matches!(
            self,
            Scenario::CreateCallNoteOneAccount
                | Scenario::CreateContact
                | Scenario::CreateContactOneAccount
        )
    }

    const WRITES: [Scenario; 4] = [
        Scenario::CreateCallNote,
        Scenario::CreateCallNoteOneAccount,
        Scenario::CreateContact,
        Scenario::CreateContactOneAccount,
    ];
}

#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// PostgreSQL to use (the role must be allowed to create databases); without it a private
    /// cluster is started from the machine's binaries in --pg-dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// shared_buffers of the private cluster (PostgreSQL's default is 128MB; a production
    /// server gives it about a quarter of its memory).
    #[arg(long, global = true, default_value = "1GB")]
    pg_shared_buffers: String,
    /// Run the private cluster with fsync, synchronous_commit and full_page_writes off (fast,
    /// throwaway data); by default they are on, as in production. Reports say which it was.
    #[arg(long, global = true)]
    fast_durability: bool,
    /// Give PostgreSQL the machine's last CPU and this tool and the server the others
    /// (`taskset`), as if the database had a machine of its own: what sharing the cores costs.
    #[arg(long, global = true)]
    split_cores: bool,
    /// `growth` and `halfload`: read the run's copy into the operating system's cache before
    /// measuring (its seed evicted first), as a database that fits its server's memory is.
    #[arg(long, global = true)]
    prewarm: bool,
    /// Folder of the private PostgreSQL cluster.
    #[arg(long, global = true, default_value = "target/callers-bench/pg")]
    pg_dir: PathBuf,
    /// Name of the seeded database (the purge benchmark uses <name>_purge and copies of it);
    /// default callers_bench, for `quality` callers_quality (recreated on every run).
    #[arg(long, global = true)]
    db_name: Option<String>,
    /// Data size: 1.0 is 1,000,000 contacts in 10,000 accounts, three of them 100,000.
    #[arg(long, global = true, default_value_t = 1.0)]
    scale: f64,
    /// Seed of the generator and of the load's random choices.
    #[arg(long, global = true, default_value_t = 1)]
    seed: u64,
    /// Seed again even when the database holds a seed with the same parameters.
    #[arg(long, global = true)]
    reseed: bool,
    /// Concurrent clients, one run per value (the goals are judged at 32).
    #[arg(long, global = true, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Measured seconds per run.
    #[arg(long, global = true, default_value_t = 20.0)]
    duration: f64,
    /// Seconds of warm-up before each measured run (not counted).
    #[arg(long, global = true, default_value_t = 3.0)]
    warmup: f64,
    /// HTTP/2 connections the gRPC clients share.
    #[arg(long, global = true, default_value_t = 4)]
    connections: usize,
    /// Scenarios of `load` (default: all but those run only when named) or of `writes`
    /// (default: the four write scenarios).
    #[arg(long, global = true, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Use a running server instead of starting `callers-server` (must serve the seeded
    /// database; no startup time or memory is measured then).
    #[arg(long, global = true)]
    addr: Option<String>,
    /// The server binary (default: next to this binary).
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    /// The purge binary (default: next to this binary).
    #[arg(long, global = true)]
    purge_bin: Option<PathBuf>,
    /// Another build of the purge binary (the one before a change): the purge benchmark also
    /// runs it alone, on a copy of its own, in the same run.
    #[arg(long, global = true)]
    baseline_purge_bin: Option<PathBuf>,
    /// Extra argument for callers-server (repeatable), e.g. --server-arg=--db-pool-size=8.
    #[arg(long, global = true, allow_hyphen_values = true)]
    server_arg: Vec<String>,
    /// Put the server behind a PgBouncer in transaction mode (Debian's usual configuration,
    /// 20 backends) and pass it --db-pooler=transaction; the raw baselines stay direct.
    #[arg(long, global = true)]
    pgbouncer: bool,
    /// `load`: start a streaming replica of the private cluster (pg_basebackup) and give the
    /// server --database-replica-url for the run's database, so its reads go there; the raw
    /// baselines stay on the primary.
    #[arg(long, global = true)]
    replica: bool,
    /// N: due contacts of the purge benchmark (among 2N); default 200,000 × scale, at least 10,000.
    #[arg(long, global = true)]
    purge_n: Option<u64>,
    /// The purge benchmark's table holds this many times N contacts, N of them due (2: half);
    /// a larger factor shows whether the purge's time follows the rows it deletes or the table.
    #[arg(long, global = true, default_value_t = 2, value_parser = clap::value_parser!(u64).range(2..=1000))]
    purge_table_factor: u64,
    /// The worker's --batch-size.
    #[arg(long, global = true, default_value_t = 500)]
    purge_batch_size: u32,
    /// Requests per second of the lookups measured with and without the purge.
    #[arg(long, global = true, default_value_t = 200.0)]
    purge_lookup_rate: f64,
    /// Keep the database copies the runs worked on (<name>_run, <name>_purge_*).
    #[arg(long, global = true)]
    keep_copies: bool,
    /// Where the results go: as JSON (default target/callers-bench/results.json); for
    /// `quality`, the Markdown table (default: stdout only).
    #[arg(long, global = true)]
    out: Option<PathBuf>,
}

impl Opts {
    fn db_name(&self) -> &str {
        self.db_name.as_deref().unwrap_or("callers_bench")
    }

    fn out(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("target/callers-bench/results.json"))
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("callers-bench: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let o = &cli.opts;
    let started = std::time::Instant::now();
    let log_dir = o
        .out()
        .parent()
        .map(|p| p.join("logs"))
        .unwrap_or_else(|| PathBuf::from("logs"));
    std::fs::create_dir_all(&log_dir)?;
    let machine = report::Machine::read();
    if machine.idle_share_at_start < 0.9 {
        eprintln!(
            "warning: the machine is not quiet ({:.0} % idle); figures will be lower",
            machine.idle_share_at_start * 100.0
        );
    }
    let durability = if o.fast_durability {
        db::Durability::Fast
    } else {
        db::Durability::Durable
    };
    let db = db::Db::open(
        o.database_url.as_deref(),
        &o.pg_dir,
        &o.pg_shared_buffers,
        durability,
    )
    .await?;
    stalls::clear_leftovers(&db).await?;
    match db.postmaster_pid().await {
        Some(pid) => {
            server::measure_postgres_of(pid);
            if o.split_cores {
                eprintln!("{}", server::split_cores(pid)?);
            }
        }
        None if o.split_cores => {
            anyhow::bail!("--split-cores needs the cluster's postmaster on this machine")
        }
        None => eprintln!(
            "warning: the cluster's postmaster is not known here: every PostgreSQL process on \
             the machine counts as PostgreSQL"
        ),
    }
    if let Command::Quality(q) = &cli.command {
        let qo = quality::QualityOptions {
            db_name: o
                .db_name
                .clone()
                .unwrap_or_else(|| "callers_quality".into()),
            contacts: q.contacts,
            queries_per_class: q.queries,
            misses: q.misses.clone(),
            seed: o.seed,
            server_bin: match (&o.addr, &o.server_bin) {
                (Some(_), _) => None,
                (None, Some(p)) => Some(p.clone()),
                (None, None) => Some(server::sibling_binary("callers-server")?),
            },
            server_args: o.server_arg.clone(),
            addr: o.addr.clone(),
            log_dir,
        };
        let result = quality::run(&db, &qo).await;
        db.stop().await?;
        let markdown = result?;
        println!("{markdown}");
        if let Some(out) = &o.out {
            quality::write_out(out, &markdown)?;
            eprintln!("table: {}", out.display());
        }
        return Ok(());
    }
    let result = run_on(&cli, &db, &log_dir, machine).await;
    db.stop().await?;
    let mut results = result?;
    results.total_secs = started.elapsed().as_secs_f64();
    results.goals = report::goals(&results);
    let out = o.out();
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    println!("{}", report::markdown(&results));
    eprintln!(
        "results: {} (in {:.0} s)",
        out.display(),
        results.total_secs
    );
    Ok(())
}

async fn run_on(
    cli: &Cli,
    db: &db::Db,
    log_dir: &std::path::Path,
    machine: report::Machine,
) -> anyhow::Result<report::Results> {
    let o = &cli.opts;
    let postgres = report::postgres_settings(&db.admin().await?).await?;
    let mut results = report::Results {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine,
        durability: report::durability(&postgres),
        split_cores: o.split_cores,
        postgres,
        build_profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .into(),
        ..Default::default()
    };
    let server_bin = || match &o.server_bin {
        Some(p) => Ok(p.clone()),
        None => server::sibling_binary("callers-server"),
    };
    let purge_bin = || match &o.purge_bin {
        Some(p) => Ok(p.clone()),
        None => server::sibling_binary("callers-purge"),
    };
    let cmd = cli.command.clone();
    if matches!(
        cmd,
        Command::Seed
            | Command::Load
            | Command::Raw
            | Command::All
            | Command::Writes(_)
            | Command::Watch(_)
            | Command::Halfload(_)
    ) {
        let spec = seed::SeedSpec::realistic(o.scale, o.seed);
        results.seed = Some(seed::ensure(db, o.db_name(), &spec, o.reseed).await?);
    }
    if matches!(cmd, Command::Load | Command::Raw | Command::All) {
        let service = !matches!(cmd, Command::Raw);
        results.load = Some(
            load_runs(
                o,
                db,
                log_dir,
                service,
                if service { Some(server_bin()?) } else { None },
            )
            .await?,
        );
    }
    if let Command::Writes(w) = &cmd {
        anyhow::ensure!(
            o.scenarios.iter().all(|s| Scenario::WRITES.contains(s)),
            "writes runs only the write scenarios ({:?})",
            Scenario::WRITES
        );
        let mut servers = vec![("this build".to_owned(), server_bin()?)];
        if let Some(b) = &w.baseline_server_bin {
            servers.push(("baseline".to_owned(), b.clone()));
        }
        let wo = writes::WritesOptions {
            scenarios: if o.scenarios.is_empty() {
                Scenario::WRITES.to_vec()
            } else {
                o.scenarios.clone()
            },
            concurrency: o.concurrency.clone(),
            warmup: Duration::from_secs_f64(o.warmup),
            duration: Duration::from_secs_f64(o.duration),
            connections: o.connections,
            seed: o.seed,
            servers,
            server_args: o.server_arg.clone(),
            log_dir: log_dir.to_owned(),
            keep_copies: o.keep_copies,
        };
        results.writes = Some(writes::run(db, o.db_name(), &wo).await?);
    }
    if let Command::Halfload(h) = &cmd {
        anyhow::ensure!(
            h.load_fraction > 0.0 && h.load_fraction <= 1.0,
            "--load-fraction must be in (0, 1]"
        );
        let c = halfload::Command {
            scenarios: o.scenarios.clone(),
            options: h.options(o),
            server_bin: server_bin()?,
            server_args: &o.server_arg,
            connections: o.connections,
            log_dir,
            keep_copies: o.keep_copies,
            prewarm: o.prewarm,
        };
        results.halfload = Some(halfload::run(db, o.db_name(), &c).await?);
    }
    if let Command::Growth(g) = &cmd {
        anyhow::ensure!(
            g.half.load_fraction > 0.0 && g.half.load_fraction <= 1.0,
            "--load-fraction must be in (0, 1]"
        );
        anyhow::ensure!(
            g.scales.iter().all(|s| *s > 0.0),
            "--scales must be positive"
        );
        let go = growth::GrowthOptions {
            scales: g.scales.clone(),
            scenarios: o.scenarios.clone(),
            base_name: o.db_name().to_owned(),
            seed: o.seed,
            reseed: o.reseed,
            half: g.half.options(o),
            server_bin: server_bin()?,
            server_args: &o.server_arg,
            connections: o.connections,
            log_dir,
            keep_copies: o.keep_copies,
            prewarm: o.prewarm,
        };
        results.growth = Some(growth::run(db, &go).await?);
    }
    if let Command::Watch(w) = &cmd {
        let wo = watch::WatchOptions {
            watchers: w.watchers.clone(),
            write_rate: w.write_rate,
            idle: Duration::from_secs_f64(w.idle),
            duration: Duration::from_secs_f64(o.duration),
            writer_elsewhere: w.writer_elsewhere,
            seed: o.seed,
            server_bin: server_bin()?,
            server_args: o.server_arg.clone(),
            log_dir: log_dir.to_owned(),
            keep_copies: o.keep_copies,
        };
        results.watch = Some(watch::run(db, o.db_name(), &wo).await?);
    }
    if matches!(cmd, Command::Purge | Command::All) {
        let n = o
            .purge_n
            .unwrap_or(((200_000.0 * o.scale).round() as u64).max(10_000));
        let po = purge::PurgeOptions {
            n,
            one_in: o.purge_table_factor,
            batch_size: o.purge_batch_size,
            lookup_rate: o.purge_lookup_rate,
            lookup_secs: o.duration,
            max_in_flight: 32,
            connections: o.connections,
            seed: o.seed,
            reseed: o.reseed,
            server_bin: server_bin()?,
            server_args: o.server_arg.clone(),
            purge_bin: purge_bin()?,
            baseline_purge_bin: o.baseline_purge_bin.clone(),
            log_dir: log_dir.to_owned(),
            keep_copies: o.keep_copies,
        };
        results.purge = Some(purge::run(db, o.db_name(), &po).await?);
    }
    Ok(results)
}

async fn load_runs(
    o: &Opts,
    db: &db::Db,
    log_dir: &std::path::Path,
    service: bool,
    server_bin: Option<PathBuf>,
) -> anyhow::Result<report::LoadReport> {
    // The writes of the call-note scenarios go to a copy, so every run starts from the seed.
    let run_db = format!("{}_run", o.db_name());
    db.copy(o.db_name(), &run_db).await?;
    let url = db.url_for(&run_db);
    let client = db::connect(&url).await?;
    let scenarios::Draws {
        samples,
        big,
        names,
        big_contacts: big_size,
    } = scenarios::draws(&client, o.seed).await?;
    drop(client);
    let warmup = Duration::from_secs_f64(o.warmup);
    let duration = Duration::from_secs_f64(o.duration);
    let max_c = o.concurrency.iter().copied().max().unwrap_or(1);
    let raw = scenarios::RawClients::connect(&url, max_c).await?;
    let mut report = report::LoadReport {
        name_account: big.clone(),
        name_account_contacts: big_size,
        number_samples: samples.len(),
        ..Default::default()
    };

    report.micro = micro(&samples, &names);
    let wanted = |s: Scenario| {
        if o.scenarios.is_empty() {
            s.by_default()
        } else {
            o.scenarios.contains(&s)
        }
    };
    let one_account = scenarios::samples_of(&samples, &big);
    let mut bouncer = None;
    let mut replica = None;
    let mut server_args = o.server_arg.clone();
    if o.replica && service {
        let r = db.start_replica(&run_db).await?;
        server_args.push(format!("--database-replica-url={}", r.url_for(&run_db)));
        report.replica_transactions_before = Some(r.transactions(&run_db).await?);
        replica = Some(r);
    }
    let server = match (service, &o.addr, &server_bin) {
        (true, None, Some(bin)) => {
            let s = if o.pgbouncer {
                let pgb = callers_testkit::pgbouncer::PgBouncer::start_with_pool(&url, 20).await;
                let mut args = vec!["--db-pooler=transaction".to_owned()];
                args.extend(server_args.iter().cloned());
                let s = server::Server::start(bin, &pgb.url_for(&run_db), log_dir, &args).await?;
                bouncer = Some(pgb);
                s
            } else {
                server::Server::start(bin, &url, log_dir, &server_args).await?
            };
            let (rss, _) = s.memory_kib();
            eprintln!(
                "server: SERVING {:.0} ms after start, RSS {} MiB idle",
                s.startup.as_secs_f64() * 1000.0,
                rss / 1024
            );
            report.server_startup_ms = Some(s.startup.as_secs_f64() * 1000.0);
            report.server_rss_idle_kib = Some(rss);
            Some(s)
        }
        _ => None,
    };
    let result = async {
        let addr = server.as_ref().map(|s| s.addr.clone()).or(o.addr.clone());
        let channels = match (&addr, service) {
            (Some(a), true) => Some(scenarios::channels(a, o.connections).await?),
            _ => None,
        };
        if let Some(ch) = &channels {
            let (agree, checked) =
                scenarios::check_consistency(&ch[0], &raw, &samples, 200).await?;
            eprintln!("consistency: service and raw SQL agree on {agree} of {checked} lookups");
            report.consistency = Some((agree, checked));
        }
        let srv = server.as_ref();
        let probe = stalls::Probe::new(db, &run_db);
        let mut runs = Vec::new();
        for &c in &o.concurrency {
            if let Some(ch) = &channels
                && wanted(Scenario::GrpcFloor)
            {
                let d = scenarios::grpc_floor(ch.clone());
                runs.push(run_one("grpc_floor", c, warmup, duration, o.seed, d, srv).await);
            }
            if let Some(ch) = &channels
                && wanted(Scenario::IdentifyByNumber)
            {
                let d = scenarios::identify_by_number(ch.clone(), samples.clone());
                runs.push(run_one("identify_by_number", c, warmup, duration, o.seed, d, srv).await);
            }
            if !service || wanted(Scenario::IdentifyByNumber) {
                let d = scenarios::raw_by_number(raw.clone(), samples.clone());
                runs.push(run_one("raw_by_number", c, warmup, duration, o.seed, d, None).await);
                let d = scenarios::raw_call(raw.clone(), samples.clone(), None);
                runs.push(run_one("raw_call", c, warmup, duration, o.seed, d, None).await);
                // On as many connections as the server shares by default.
                let shared = callers_store::PoolConfig::default().shared_connections;
                let d = scenarios::raw_call(raw.clone(), samples.clone(), Some(shared));
                runs.push(run_one("raw_call_shared", c, warmup, duration, o.seed, d, None).await);
            }
        }
        if let Some(ch) = &channels {
            for &c in &o.concurrency {
                if wanted(Scenario::IdentifyByName) {
                    let d = scenarios::identify_by_name(ch.clone(), big.clone(), names.clone());
                    runs.push(
                        run_one("identify_by_name", c, warmup, duration, o.seed, d, srv).await,
                    );
                }
            }
            // Writes last: they add notes and contacts to the seeded database.
            for &c in &o.concurrency {
                for s in Scenario::WRITES.into_iter().filter(|&s| wanted(s)) {
                    if let Some((name, d)) = scenarios::write_driver(s, ch, &samples, &one_account)
                    {
                        let run = load::closed_loop(name, c, warmup, duration, o.seed, d, srv);
                        runs.push(print_run(probe.around(run).await?));
                    }
                }
            }
            for &c in &o.concurrency {
                if wanted(Scenario::Mixed) {
                    let d = scenarios::mixed(ch.clone(), samples.clone());
                    let run = load::closed_loop("mixed", c, warmup, duration, o.seed, d, srv);
                    runs.push(print_run(probe.around(run).await?));
                }
            }
        }
        anyhow::Ok(runs)
    }
    .await;
    if let Some(s) = server {
        let (_, hwm) = s.memory_kib();
        report.server_rss_peak_kib = Some(hwm);
        report.server_cpu_secs = Some(s.cpu_secs());
        s.stop().await?;
    }
    drop(raw);
    drop(bouncer);
    if let Some(r) = replica {
        // Backends report their statistics when they exit.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = report.replica_transactions_before.unwrap_or(0);
        let after = r.transactions(&run_db).await?;
        eprintln!("replica: served {} transactions", after - before);
        report.replica_transactions = Some(after - before);
        r.stop().await?;
    }
    report.runs = result?;
    if !o.keep_copies {
        db.drop_database(&run_db).await?;
    }
    Ok(report)
}

/// Single-thread timings of domain work the server does per call, in microseconds: the
/// number's reading of every IdentifyCaller (without the validity check, which only a number
/// that finds nobody pays since round 6), the whole normalisation, and the name scoring of one
/// candidate.
fn micro(samples: &[scenarios::NumberSample], names: &[String]) -> Vec<(String, f64)> {
    use callers_domain::identification::{self, CallerName, WordCounts};
    use callers_domain::phone::{Region, normalize, read};
    let region = Region::germany();
    let time = |n: usize, f: &mut dyn FnMut(usize)| {
        let t = std::time::Instant::now();
        for i in 0..n {
            f(i);
        }
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let n = 20_000;
    let read_us = time(n, &mut |i| {
        let s = &samples[i % samples.len()];
        std::hint::black_box(read(&s.written, &region).ok());
    });
    let normalize_us = time(n, &mut |i| {
        let s = &samples[i % samples.len()];
        std::hint::black_box(normalize(&s.written, &region).ok());
    });
    let callers: Vec<CallerName> = names.iter().map(|n| CallerName::parse(n)).collect();
    let contacts: Vec<callers_domain::contact::Contact> = samples
        .iter()
        .take(1000)
        .map(|s| contact(&s.first_name, &s.last_name, &s.company))
        .collect();
    let counts = WordCounts::new();
    let score_us = time(n, &mut |i| {
        let c = &contacts[i % contacts.len()];
        let q = &callers[i % callers.len()];
        std::hint::black_box(identification::fit(q, c, &counts));
    });
    vec![
        ("phone::read".into(), read_us),
        ("phone::normalize".into(), normalize_us),
        ("identification::fit (one candidate)".into(), score_us),
    ]
}

async fn run_one(
    name: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    seed: u64,
    driver: load::Driver,
    server: Option<&server::Server>,
) -> load::Stats {
    print_run(load::closed_loop(name, concurrency, warmup, duration, seed, driver, server).await)
}

/// One line on stderr per run, as it ends.
fn print_run(s: load::Stats) -> load::Stats {
    let clients = match s.rate {
        Some(rate) => format!("{rate:.0}/s"),
        None => format!("c={}", s.concurrency),
    };
    eprintln!(
        "{:>20} {clients:<8} {:>8.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms  errors {}{}{}",
        s.name,
        s.throughput,
        s.latency.p50_ms,
        s.latency.p99_ms,
        s.latency.p999_ms,
        s.latency.max_ms,
        s.errors,
        if s.late_sends > 0 {
            format!(", {} sent late", s.late_sends)
        } else {
            String::new()
        },
        s.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    s
}

/// A stored contact with just a name, for the scorer's micro-benchmark.
fn contact(first: &str, last: &str, company: &str) -> callers_domain::contact::Contact {
    use callers_domain::contact::{Contact, ContactFields, Origin};
    let now = chrono::Utc::now();
    Contact {
        account_id: String::new(),
        contact_id: uuid::Uuid::nil(),
        fields: ContactFields {
            first_name: first.into(),
            last_name: last.into(),
            company: company.into(),
            ..ContactFields::default()
        },
        caller_message: None,
        origin: Origin::CallNote,
        create_time: now,
        update_time: now,
        last_activity_time: now,
        version: 1,
    }
}
