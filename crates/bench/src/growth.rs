//! Performance as the data grows: identify by number, by name in the largest account and
//! CreateCallNote at several scales in one run, each at one client and at a fraction of its
//! saturation rate (open loop), with the growth factor from one scale to the next. Every
//! scale keeps its seed in a database of its own (`<name>_10k`, `<name>_1m`, …), reused as
//! seeds are; before seeding one, the free disk is checked against what it would take.

use crate::Scenario;
use crate::db::Db;
use crate::halfload::{self, HalfLoadOptions, HalfLoadRun, Setup};
use crate::load::{self, Stats};
use crate::print_run;
use crate::seed::{self, SeedReport, SeedSpec};
use crate::stalls::Probe;
use anyhow::bail;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The scenarios measured at every scale, writes last (they add to the copy).
const SCENARIOS: [Scenario; 3] = [
    Scenario::IdentifyByNumber,
    Scenario::IdentifyByName,
    Scenario::CreateCallNote,
];

/// Bytes per contact of a seed when no seed is there to measure: the realistic seed of 10,000
/// contacts on PostgreSQL 15 (31 MB, of which some 7 MB are any database's catalog, so larger
/// seeds take less per contact: 2,500 bytes at 20,000).
const DEFAULT_BYTES_PER_CONTACT: f64 = 3_200.0;

/// What seeding a scale takes beyond the seed itself: the copy each run works on, and room
/// for the index builds and the WAL.
const DISK_FACTOR: f64 = 2.5;

pub struct GrowthOptions<'a> {
    pub scales: Vec<f64>,
    /// A subset of [`SCENARIOS`] (`--scenarios`); empty for all of them.
    pub scenarios: Vec<Scenario>,
    pub base_name: String,
    pub seed: u64,
    pub reseed: bool,
    pub half: HalfLoadOptions,
    pub server_bin: PathBuf,
    pub server_args: &'a [String],
    pub connections: usize,
    pub log_dir: &'a Path,
    pub keep_copies: bool,
    /// Read each run's copy into the cache first (`--prewarm`).
    pub prewarm: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GrowthRun {
    pub scenario: String,
    pub one_client: Stats,
    pub half_load: HalfLoadRun,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    pub scale: f64,
    pub seed: SeedReport,
    /// The largest account, where names are searched.
    pub name_account_contacts: u64,
    pub runs: Vec<GrowthRun>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GrowthReport {
    pub fraction: f64,
    pub saturation_clients: usize,
    /// What one contact's seed takes on disk, as measured before seeding (bytes).
    pub bytes_per_contact: f64,
    /// Each run's copy was read into the cache first (`--prewarm`).
    pub prewarmed: bool,
    pub scales: Vec<Scale>,
}

/// `callers_bench` at 10,000 contacts → `callers_bench_10k`; 1,000,000 → `callers_bench_1m`.
pub fn database_name(base: &str, contacts: u64) -> String {
    let label = if contacts >= 1_000_000 && contacts.is_multiple_of(1_000_000) {
        format!("{}m", contacts / 1_000_000)
    } else if contacts >= 1_000 && contacts.is_multiple_of(1_000) {
        format!("{}k", contacts / 1_000)
    } else {
        contacts.to_string()
    };
    format!("{base}_{label}")
}

pub async fn run(db: &Db, o: &GrowthOptions<'_>) -> anyhow::Result<GrowthReport> {
    let mut scales = o.scales.clone();
    scales.sort_by(f64::total_cmp);
    scales.dedup();
    let mut report = GrowthReport {
        fraction: o.half.fraction,
        saturation_clients: o.half.saturation_clients,
        prewarmed: o.prewarm,
        ..Default::default()
    };
    for scale in scales {
        let spec = SeedSpec::realistic(scale, o.seed);
        let name = database_name(&o.base_name, spec.contacts);
        if o.reseed || !seed::is_current(db, &name, &spec).await? {
            report.bytes_per_contact = check_disk(db, spec.contacts).await?;
        }
        eprintln!(
            "growth: scale {scale} ({} contacts) in {name}",
            spec.contacts
        );
        let seeded = seed::ensure(db, &name, &spec, o.reseed).await?;
        let launch = halfload::Launch {
            server_bin: &o.server_bin,
            server_args: o.server_args,
            connections: o.connections,
            log_dir: o.log_dir,
            prewarm: o.prewarm,
        };
        let setup = Setup::start(db, &name, o.seed, &launch).await?;
        let probe = Probe::new(db, &setup.run_db);
        let measured = async {
            let mut runs = Vec::new();
            for s in SCENARIOS
                .into_iter()
                .filter(|s| o.scenarios.is_empty() || o.scenarios.contains(s))
            {
                let (scenario, driver) = setup.driver(s).expect("a growth scenario");
                let writes = s == Scenario::CreateCallNote;
                let watched = writes.then_some(&probe);
                let one = load::closed_loop(
                    scenario,
                    1,
                    o.half.warmup,
                    o.half.duration,
                    o.seed,
                    driver.clone(),
                    Some(&setup.server),
                );
                let one_client = print_run(match watched {
                    Some(p) => p.around(one).await?,
                    None => one.await,
                });
                let half_load =
                    halfload::measure(scenario, driver, &o.half, Some(&setup.server), watched)
                        .await?;
                runs.push(GrowthRun {
                    scenario: scenario.to_owned(),
                    one_client,
                    half_load,
                });
            }
            anyhow::Ok(runs)
        }
        .await;
        let big_contacts = setup.big_contacts;
        setup.finish(db, o.keep_copies).await?;
        report.scales.push(Scale {
            scale,
            seed: seeded,
            name_account_contacts: big_contacts,
            runs: measured?,
        });
    }
    Ok(report)
}

/// Refuses to seed `contacts` when the cluster's disk lacks room for it; returns the bytes per
/// contact the estimate used.
async fn check_disk(db: &Db, contacts: u64) -> anyhow::Result<f64> {
    let per_contact = bytes_per_contact(db).await?;
    let need = contacts as f64 * per_contact * DISK_FACTOR;
    let dir = match db.pg_dir() {
        Some(d) => d.to_owned(),
        None => PathBuf::from(
            db.admin()
                .await?
                .query_one("SELECT current_setting('data_directory') AS d", &[])
                .await?
                .get::<_, String>("d"),
        ),
    };
    let Some(free) = free_bytes(&dir) else {
        eprintln!(
            "warning: free disk of {} unknown: seeding {contacts} contacts (about {:.1} GB) unchecked",
            dir.display(),
            need / 1e9
        );
        return Ok(per_contact);
    };
    if need > free as f64 {
        bail!(
            "not enough disk for {contacts} contacts: about {:.1} GB needed ({per_contact:.0} \
             bytes per contact × {DISK_FACTOR} for the run's copy, index builds and WAL), \
             {:.1} GB free in {}",
            need / 1e9,
            free as f64 / 1e9,
            dir.display()
        );
    }
    eprintln!(
        "growth: {contacts} contacts need about {:.1} GB ({per_contact:.0} bytes each × \
         {DISK_FACTOR}); {:.1} GB free",
        need / 1e9,
        free as f64 / 1e9
    );
    Ok(per_contact)
}

/// Bytes per contact of the largest realistic seed in the cluster (pg_database_size ÷ the
/// contacts its marker records), or [`DEFAULT_BYTES_PER_CONTACT`] when there is none.
async fn bytes_per_contact(db: &Db) -> anyhow::Result<f64> {
    let rows = db
        .admin()
        .await?
        .query(
            "SELECT shobj_description(oid, 'pg_database') AS marker, \
             pg_database_size(oid) AS bytes FROM pg_database \
             WHERE shobj_description(oid, 'pg_database') LIKE 'callers-bench seed % layout=realistic %'",
            &[],
        )
        .await?;
    let largest = rows
        .iter()
        .filter_map(|r| {
            let marker: String = r.get("marker");
            let contacts: u64 = marker
                .split_whitespace()
                .find_map(|w| w.strip_prefix("contacts="))?
                .parse()
                .ok()?;
            Some((contacts, r.get::<_, i64>("bytes")))
        })
        .max_by_key(|(contacts, _)| *contacts);
    Ok(match largest {
        Some((contacts, bytes)) if contacts > 0 => bytes as f64 / contacts as f64,
        _ => DEFAULT_BYTES_PER_CONTACT,
    })
}

/// Free bytes for an unprivileged writer on the file system of `dir` (`df -Pk`), or of its
/// nearest existing parent.
fn free_bytes(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(existing)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// The factor from the previous scale's figure to this one's, as "×1.23" (empty for the first).
fn factor(prev: Option<f64>, now: f64) -> String {
    match prev {
        Some(p) if p > 0.0 => format!("×{:.2}", now / p),
        _ => String::new(),
    }
}

pub fn markdown(r: &GrowthReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Growth\n\nPer scale: one client (closed loop), saturation ({} clients, closed loop), \
         then an open loop at {:.0} % of saturation, latency from the intended send time. \
         × = this scale's figure ÷ the previous scale's.",
        r.saturation_clients,
        r.fraction * 100.0
    );
    if r.prewarmed {
        let _ = writeln!(
            s,
            "\nEach run's copy was read into the operating system's cache first, its seed \
             evicted (`--prewarm`)."
        );
    }
    for scenario in ["identify_by_number", "identify_by_name", "create_call_note"] {
        let _ = writeln!(
            s,
            "\n### {scenario}\n\n\
             | contacts | largest account | 1 client p50 ms | × | 1 client p99 ms | saturation ok/s | × | \
             open loop ok/s | p50 ms | p99 ms | × | p99.9 ms | max ms | errors |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let mut prev: Option<(f64, f64, f64)> = None;
        for sc in &r.scales {
            let Some(g) = sc.runs.iter().find(|g| g.scenario == scenario) else {
                continue;
            };
            let one = &g.one_client.latency;
            let sat = g.half_load.saturation.throughput;
            let p = &g.half_load.paced;
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {} | {:.2} | {:.0} | {} | {:.0} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} |",
                sc.seed.contacts,
                sc.name_account_contacts,
                one.p50_ms,
                factor(prev.map(|x| x.0), one.p50_ms),
                one.p99_ms,
                sat,
                factor(prev.map(|x| x.1), sat),
                p.throughput,
                p.latency.p50_ms,
                p.latency.p99_ms,
                factor(prev.map(|x| x.2), p.latency.p99_ms),
                p.latency.p999_ms,
                p.latency.max_ms,
                g.one_client.errors + g.half_load.saturation.errors + p.errors,
            );
            prev = Some((one.p50_ms, sat, p.latency.p99_ms));
        }
    }
    for sc in &r.scales {
        let watched: Vec<&Stats> = sc
            .runs
            .iter()
            .flat_map(|g| [&g.one_client, &g.half_load.saturation, &g.half_load.paced])
            .collect();
        let title = format!("### Write stalls at {} contacts", sc.seed.contacts);
        s.push_str(&crate::stalls::markdown(&title, &watched));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scale_seeds_a_database_named_after_its_contacts() {
        assert_eq!(database_name("b", 10_000), "b_10k");
        assert_eq!(database_name("b", 100_000), "b_100k");
        assert_eq!(database_name("b", 1_000_000), "b_1m");
        assert_eq!(database_name("b", 10_000_000), "b_10m");
        assert_eq!(database_name("b", 12_345), "b_12345");
    }

    #[test]
    fn each_step_shows_its_factor_and_the_first_none() {
        assert_eq!(factor(None, 3.0), "");
        assert_eq!(factor(Some(2.0), 3.0), "×1.50");
    }
}
