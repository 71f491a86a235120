//! Write throughput beside a baseline build: every write scenario at every concurrency against
//! this build's server and, with `--baseline-server-bin`, an earlier one (the commit before the
//! change feed, say), alternating which goes first, each run on a fresh copy of the seed with a
//! server started for it, so both servers meet the same data in the same run.

use crate::Scenario;
use crate::db::{self, Db};
use crate::load::{self, Stats};
use crate::scenarios;
use crate::server::Server;
use crate::stalls;
use anyhow::Context;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

pub struct WritesOptions {
    pub scenarios: Vec<Scenario>,
    pub concurrency: Vec<usize>,
    pub warmup: Duration,
    pub duration: Duration,
    pub connections: usize,
    pub seed: u64,
    /// (label, binary): this build first, then the baseline.
    pub servers: Vec<(String, PathBuf)>,
    pub server_args: Vec<String>,
    pub log_dir: PathBuf,
    pub keep_copies: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct WriteRun {
    /// Which server: "this build" or "baseline".
    pub server: String,
    pub binary: String,
    pub stats: Stats,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct WritesReport {
    /// The account of the `*_one_account` scenarios, and how many sampled numbers it holds.
    pub one_account: String,
    pub one_account_samples: usize,
    pub runs: Vec<WriteRun>,
}

pub async fn run(db: &Db, base: &str, o: &WritesOptions) -> anyhow::Result<WritesReport> {
    // Sampled before any copy: a template must have no other session.
    let samples = {
        let client = db::connect(&db.url_for(base)).await?;
        std::sync::Arc::new(scenarios::number_samples(&client, 20_000, 0.1, o.seed).await?)
    };
    let one_account = crate::data::account_id(0);
    let one = scenarios::samples_of(&samples, &one_account);
    anyhow::ensure!(!one.is_empty(), "no sampled number in {one_account}");
    let mut report = WritesReport {
        one_account_samples: one.len(),
        one_account,
        runs: Vec::new(),
    };
    let copy = format!("{base}_writes");
    for (round, &c) in o.concurrency.iter().enumerate() {
        for (i, &scenario) in o.scenarios.iter().enumerate() {
            // Which server goes first alternates, so a drifting machine favours neither.
            let mut order: Vec<&(String, PathBuf)> = o.servers.iter().collect();
            if (round + i) % 2 == 1 {
                order.reverse();
            }
            for (label, bin) in order {
                db.copy(base, &copy).await?;
                let server = Server::start(bin, &db.url_for(&copy), &o.log_dir, &o.server_args)
                    .await
                    .with_context(|| format!("starting {}", bin.display()))?;
                let measured = async {
                    let channels = scenarios::channels(&server.addr, o.connections).await?;
                    let (name, driver) =
                        scenarios::write_driver(scenario, &channels, &samples, &one)
                            .with_context(|| format!("{scenario:?} is not a write scenario"))?;
                    let run = load::closed_loop(
                        name,
                        c,
                        o.warmup,
                        o.duration,
                        o.seed,
                        driver,
                        Some(&server),
                    );
                    stalls::Probe::new(db, &copy).around(run).await
                }
                .await;
                server.stop().await?;
                let stats = measured?;
                eprintln!(
                    "{:>28} c={c:<3} {label:<10} {:>7.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms  errors {}{}",
                    stats.name,
                    stats.throughput,
                    stats.latency.p50_ms,
                    stats.latency.p99_ms,
                    stats.latency.p999_ms,
                    stats.latency.max_ms,
                    stats.errors,
                    stats
                        .first_error
                        .as_deref()
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default()
                );
                report.runs.push(WriteRun {
                    server: label.clone(),
                    binary: bin.display().to_string(),
                    stats,
                });
            }
        }
    }
    if !o.keep_copies {
        db.drop_database(&copy).await?;
    }
    Ok(report)
}

/// One row per scenario and concurrency: this build beside the baseline, and their ratio.
pub fn markdown(r: &WritesReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Writes\n\nOne account: {} ({} sampled numbers). CPU ms per write: server / PostgreSQL.\n\n\
         | scenario | clients | server | writes/s | ÷ baseline | p50 ms | p99 ms | p99.9 ms | max ms | errors | CPU ms per write | rest of machine |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|",
        r.one_account, r.one_account_samples
    );
    for run in &r.runs {
        let st = &run.stats;
        let baseline = r.runs.iter().find(|b| {
            b.server == "baseline"
                && b.stats.name == st.name
                && b.stats.concurrency == st.concurrency
        });
        let ratio = match baseline {
            Some(b) if b.server != run.server => {
                format!("{:.2}", st.throughput / b.stats.throughput.max(1e-9))
            }
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {ratio} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.3} / {:.3} | {:.0} % |",
            st.name,
            st.concurrency,
            run.server,
            st.throughput,
            st.latency.p50_ms,
            st.latency.p99_ms,
            st.latency.p999_ms,
            st.latency.max_ms,
            st.errors,
            st.cpu_ms_per_op[1],
            st.cpu_ms_per_op[2],
            st.foreign_cpu_share * 100.0
        );
    }
    s.push_str(&stalls::markdown(
        "## Write stalls",
        &r.runs.iter().map(|w| &w.stats).collect::<Vec<_>>(),
    ));
    s
}
