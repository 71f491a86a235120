//! What a run found: the machine, PostgreSQL's settings, every measured run, the ratios and the
//! goals, as JSON (`--out`) and as Markdown tables on stdout.

use crate::load::Stats;
use crate::purge::PurgeReport;
use crate::seed::SeedReport;
use serde::Serialize;
use std::fmt::Write as _;
use tokio_postgres::Client;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_total_kib: u64,
    pub load_average_1m: f64,
    /// Share of CPU time idle over two seconds before the run.
    pub idle_share_at_start: f64,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default(),
            memory_total_kib: meminfo
                .lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0),
            load_average_1m: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0.0),
            idle_share_at_start: idle_share(std::time::Duration::from_secs(2)),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }
}

/// (busy, idle) jiffies of all CPUs.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (v.iter().sum::<u64>() - idle, idle)
}

/// Share of CPU time idle over `d` (blocking; used once before a run).
fn idle_share(d: std::time::Duration) -> f64 {
    let (b0, i0) = cpu_jiffies();
    std::thread::sleep(d);
    let (b1, i1) = cpu_jiffies();
    let total = (b1 - b0) + (i1 - i0);
    if total == 0 {
        return 1.0;
    }
    (i1 - i0) as f64 / total as f64
}

pub async fn postgres_settings(client: &Client) -> anyhow::Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT name, setting || coalesce(' ' || unit, '') AS value FROM pg_settings WHERE name = ANY($1) \
             ORDER BY name",
            &[&vec![
                "server_version",
                "shared_buffers",
                "work_mem",
                "fsync",
                "synchronous_commit",
                "full_page_writes",
                "max_connections",
                "effective_cache_size",
                "jit",
                "max_wal_size",
                "checkpoint_timeout",
                "wal_compression",
            ]],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("name"), r.get("value")))
        .collect())
}

/// Which durability the figures used, judged on the settings read back from the server:
/// durable when fsync and full_page_writes are on and synchronous_commit is not off.
pub fn durability(settings: &[(String, String)]) -> String {
    let get = |name: &str| {
        settings
            .iter()
            .find(|(n, _)| n == name)
            .map_or("?", |(_, v)| v.as_str())
    };
    let (fsync, sync, fpw) = (
        get("fsync"),
        get("synchronous_commit"),
        get("full_page_writes"),
    );
    let on = [fsync, sync, fpw].iter().filter(|v| **v != "off").count();
    let kind = match on {
        3 => "durable",
        0 => "fast",
        _ => "mixed",
    };
    format!("{kind} (fsync={fsync}, synchronous_commit={sync}, full_page_writes={fpw})")
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub name_account: String,
    pub name_account_contacts: u64,
    pub number_samples: usize,
    /// Lookups where service and raw SQL found the same contacts, of those checked.
    pub consistency: Option<(usize, usize)>,
    pub server_startup_ms: Option<f64>,
    pub server_rss_idle_kib: Option<u64>,
    pub server_rss_peak_kib: Option<u64>,
    pub server_cpu_secs: Option<f64>,
    /// With --replica: the replica's committed transactions in the run's database, before the
    /// server started and during the runs (reads the server sent there).
    pub replica_transactions_before: Option<i64>,
    pub replica_transactions: Option<i64>,
    /// Microseconds of domain work per call, single thread (see `micro` in main.rs).
    pub micro: Vec<(String, f64)>,
    pub runs: Vec<Stats>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    pub command: String,
    pub build_profile: String,
    pub machine: Machine,
    pub postgres: Vec<(String, String)>,
    /// "durable" or "fast" (or "mixed"), with the settings it rests on, as read back from
    /// pg_settings.
    pub durability: String,
    /// Set with `--split-cores`: PostgreSQL ran on a CPU of its own.
    pub split_cores: bool,
    pub seed: Option<SeedReport>,
    pub load: Option<LoadReport>,
    pub purge: Option<PurgeReport>,
    pub writes: Option<crate::writes::WritesReport>,
    pub watch: Option<crate::watch::WatchReport>,
    pub halfload: Option<crate::halfload::HalfLoadReport>,
    pub growth: Option<crate::growth::GrowthReport>,
    pub goals: Vec<Goal>,
    pub total_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

fn find<'a>(runs: &'a [Stats], name: &str, c: usize) -> Option<&'a Stats> {
    runs.iter().find(|r| r.name == name && r.concurrency == c)
}

/// Share of the machine busy with anything else above which a run measured the machine more
/// than the service (quiet runs on the benchmark machine: 0–7 %; with a compiler beside: 18–63 %).
const DISTURBED_SHARE: f64 = 0.10;

/// What a verdict resting on `runs` must say when one of them shared the machine.
fn disturbance(runs: &[&Stats]) -> String {
    let worst = runs.iter().map(|s| s.foreign_cpu_share).fold(0.0, f64::max);
    if worst > DISTURBED_SHARE {
        format!(
            "; disturbed (rest of machine {:.0} %): repeat the run",
            worst * 100.0
        )
    } else {
        String::new()
    }
}

/// The goals of issue 7, judged on what was measured.
pub fn goals(r: &Results) -> Vec<Goal> {
    let mut out = Vec::new();
    if let Some(load) = &r.load {
        let c = 32;
        if let (Some(s), Some(raw)) = (
            find(&load.runs, "identify_by_number", c),
            find(&load.runs, "raw_by_number", c),
        ) {
            let ratio = s.throughput / raw.throughput.max(1e-9);
            out.push(Goal {
                goal: "identify-by-number ≥ 0.5 × raw at 32 clients".into(),
                measured: format!(
                    "{:.0}/s ÷ {:.0}/s = {ratio:.2}{}",
                    s.throughput,
                    raw.throughput,
                    disturbance(&[s, raw])
                ),
                met: ratio >= 0.5,
            });
            out.push(Goal {
                goal: "identify-by-number p99 ≤ 5 ms at 32 clients".into(),
                measured: format!("{:.2} ms{}", s.latency.p99_ms, disturbance(&[s])),
                met: s.latency.p99_ms <= 5.0,
            });
        }
        for s in load.runs.iter().filter(|s| s.name == "identify_by_name") {
            out.push(Goal {
                goal: format!(
                    "identify-by-name p99 ≤ 25 ms ({} contacts, {} clients)",
                    load.name_account_contacts, s.concurrency
                ),
                measured: format!("{:.2} ms{}", s.latency.p99_ms, disturbance(&[s])),
                met: s.latency.p99_ms <= 25.0,
            });
        }
    }
    if let Some(g) = r.halfload.as_ref().and_then(crate::halfload::goal) {
        out.push(g);
    }
    if let Some(p) = &r.purge {
        out.push(Goal {
            goal: "purge ≥ 0.5 × bare DELETE".into(),
            measured: format!(
                "DELETE {:.2} s ÷ worker {:.2} s = {:.2}",
                p.bare_delete_secs, p.worker_alone.elapsed_secs, p.speed_ratio
            ),
            met: p.speed_ratio >= 0.5,
        });
        if let (Some(b), Some(ratio)) = (&p.baseline_alone, p.baseline_speed_ratio) {
            out.push(Goal {
                goal: "baseline purge ≥ 0.5 × bare DELETE".into(),
                measured: format!(
                    "DELETE {:.2} s ÷ baseline worker {:.2} s = {:.2}",
                    p.bare_delete_secs, b.elapsed_secs, ratio
                ),
                met: ratio >= 0.5,
            });
        }
        let longest = p
            .worker_alone
            .longest_batch_ms
            .max(p.worker_under_load.longest_batch_ms);
        out.push(Goal {
            goal: "no purge batch over 250 ms".into(),
            measured: format!(
                "longest {:.0} ms alone, {:.0} ms under load",
                p.worker_alone.longest_batch_ms, p.worker_under_load.longest_batch_ms
            ),
            met: longest <= 250.0,
        });
        out.push(Goal {
            goal: "lookup p99 during purge ≤ 1.2 × without".into(),
            measured: format!(
                "{:.2} ms ÷ {:.2} ms = {:.2} (beside one busy backend that reads nothing: {:.2}; \
                 beside one writing a table nobody reads: {:.2}){}",
                p.lookups_during.latency.p99_ms,
                p.lookups_without.latency.p99_ms,
                p.p99_ratio,
                p.busy_backend_p99_ratio,
                p.writing_backend_p99_ratio,
                disturbance(&[
                    &p.lookups_during,
                    &p.lookups_busy_backend,
                    &p.lookups_writing_backend,
                    &p.lookups_without
                ])
            ),
            met: p.p99_ratio <= 1.2,
        });
    }
    out
}

fn row(s: &Stats) -> String {
    format!(
        "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.3} / {:.3} / {:.3} / {:.3} | {:.0} % |",
        s.name,
        match s.rate {
            Some(r) => format!("{r:.0}/s paced"),
            None => s.concurrency.to_string(),
        },
        s.throughput,
        s.latency.p50_ms,
        s.latency.p90_ms,
        s.latency.p99_ms,
        s.latency.p999_ms,
        s.latency.max_ms,
        s.errors,
        s.cpu_ms_per_op[0],
        s.cpu_ms_per_op[1],
        s.cpu_ms_per_op[2],
        s.cpu_ms_per_op[3],
        s.foreign_cpu_share * 100.0,
    )
}

const HEADER: &str = "| scenario | clients | ok/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | CPU ms per call: bench / server / PostgreSQL / rest | rest of machine |\n|---|---|---|---|---|---|---|---|---|---|---|";

pub fn markdown(r: &Results) -> String {
    let mut r = r.clone();
    r.goals = goals(&r);
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(
        s,
        "## Machine\n\n{} CPUs ({}), {:.1} GiB RAM, kernel {}, {:.0} % idle before the run (load average {:.2}); build {}",
        m.cpus,
        m.cpu_model,
        m.memory_total_kib as f64 / 1024.0 / 1024.0,
        m.kernel,
        m.idle_share_at_start * 100.0,
        m.load_average_1m,
        r.build_profile
    );
    let pg: Vec<String> = r.postgres.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(s, "\nPostgreSQL: {}", pg.join(", "));
    let _ = writeln!(
        s,
        "\nDurability of these figures: **{}**, read from pg_settings",
        r.durability
    );
    if r.split_cores {
        let _ = writeln!(
            s,
            "\nCores split (`--split-cores`): PostgreSQL on the last CPU, this tool and the server on the others."
        );
    }
    if let Some(seed) = &r.seed {
        let _ = writeln!(
            s,
            "\n## Seed\n\n{}: {} contacts, {} numbers, {} call notes, {} accounts with call handling; {} MB; {} ({:.1} s: load {:.1}, indexes {:.1}, vacuum {:.1})",
            seed.database,
            seed.contacts,
            seed.phone_numbers,
            seed.call_notes,
            seed.accounts_with_call_handling,
            seed.database_bytes / 1_000_000,
            if seed.reused { "reused" } else { "seeded" },
            seed.total_secs,
            seed.load_secs,
            seed.index_secs,
            seed.vacuum_secs
        );
    }
    if let Some(load) = &r.load {
        let _ = writeln!(s, "\n## Load\n");
        if let Some(ms) = load.server_startup_ms {
            let _ = writeln!(
                s,
                "Server: start to SERVING {ms:.0} ms; RSS idle {} MiB, peak {} MiB; consistency {:?}; name searches in {} ({} contacts)\n",
                load.server_rss_idle_kib.unwrap_or(0) / 1024,
                load.server_rss_peak_kib.unwrap_or(0) / 1024,
                load.consistency,
                load.name_account,
                load.name_account_contacts
            );
        }
        if let Some(n) = load.replica_transactions {
            let _ = writeln!(
                s,
                "Server reads went to a streaming replica: {n} transactions on it during the runs\n"
            );
        }
        for (what, us) in &load.micro {
            let _ = writeln!(s, "- {what}: {us:.1} µs per call (one thread)");
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "{HEADER}");
        for run in &load.runs {
            let _ = writeln!(s, "{}", row(run));
        }
        let mixed: Vec<&Stats> = load.runs.iter().filter(|r| r.ops.len() > 1).collect();
        for m in mixed {
            let _ = writeln!(
                s,
                "\nmixed, {} clients, per operation:\n\n| operation | calls | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|",
                m.concurrency
            );
            for (op, l) in &m.ops {
                let _ = writeln!(
                    s,
                    "| {op} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    l.count, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
                );
            }
        }
        s.push_str(&crate::stalls::markdown(
            "## Write stalls",
            &load.runs.iter().collect::<Vec<_>>(),
        ));
        let _ = writeln!(s, "\nservice ÷ raw (throughput):\n");
        for svc in load.runs.iter().filter(|r| r.name == "identify_by_number") {
            let c = svc.concurrency;
            if let (Some(raw), Some(call)) = (
                find(&load.runs, "raw_by_number", c),
                find(&load.runs, "raw_call", c),
            ) {
                let _ = writeln!(
                    s,
                    "- {c} clients: ÷ raw statement {:.2}, ÷ the server's statements (raw_call) {:.2}; server RSS peak {} MiB",
                    svc.throughput / raw.throughput.max(1e-9),
                    svc.throughput / call.throughput.max(1e-9),
                    svc.server_rss_peak_kib.unwrap_or(0) / 1024
                );
            }
        }
    }
    if let Some(p) = &r.purge {
        let w = &p.worker_alone;
        let l = &p.worker_under_load;
        let baseline = p.baseline_alone.as_ref().map_or(String::new(), |b| {
            format!(
                "| baseline worker alone | {:.2} (wall {:.2}) | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} |\n",
                b.elapsed_secs,
                b.wall_secs,
                b.batches,
                b.deleted,
                b.longest_batch_ms,
                b.first_batch_ms,
                b.batch_p50_ms,
                b.batch_p99_ms,
            )
        });
        let _ = writeln!(
            s,
            "\n## Purge\n\nN = {} due among {} contacts (batch size {}).\n\n\
             | run | time s | batches | deleted | longest batch ms | first batch ms | batch p50 ms | batch p99 ms |\n|---|---|---|---|---|---|---|---|\n\
             | worker alone | {:.2} (wall {:.2}) | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} |\n\
             {baseline}\
             | bare DELETE | {:.2} | 1 | {} | | | | |\n\
             | worker under lookups | {:.2} (wall {:.2}) | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} |\n",
            p.n,
            p.seed.contacts,
            p.batch_size,
            w.elapsed_secs,
            w.wall_secs,
            w.batches,
            w.deleted,
            w.longest_batch_ms,
            w.first_batch_ms,
            w.batch_p50_ms,
            w.batch_p99_ms,
            p.bare_delete_secs,
            p.bare_delete_rows,
            l.elapsed_secs,
            l.wall_secs,
            l.batches,
            l.deleted,
            l.longest_batch_ms,
            l.first_batch_ms,
            l.batch_p50_ms,
            l.batch_p99_ms,
        );
        let per_k = |w: &crate::purge::WalUse, rows: u64| {
            format!(
                "{:.1} MB ({:.1} kB per row), {:.0} full-page images",
                w.bytes / 1e6,
                w.bytes / 1e3 / rows.max(1) as f64,
                w.full_page_images
            )
        };
        let _ = writeln!(
            s,
            "WAL: worker alone {}; bare DELETE {}. The due rows lie on {} of the table's {} \
             heap pages.\n",
            per_k(&p.worker_alone_wal, w.deleted),
            per_k(&p.bare_delete_wal, p.bare_delete_rows),
            p.due_pages,
            p.table_pages
        );
        let _ = writeln!(s, "{HEADER}");
        let _ = writeln!(s, "{}", row(&p.lookups_without));
        let _ = writeln!(s, "{}", row(&p.lookups_busy_backend));
        let _ = writeln!(s, "{}", row(&p.lookups_writing_backend));
        let _ = writeln!(s, "{}", row(&p.lookups_during));
    }
    if let Some(w) = &r.writes {
        s.push_str(&crate::writes::markdown(w));
    }
    if let Some(w) = &r.watch {
        s.push_str(&crate::watch::markdown(w));
    }
    if let Some(h) = &r.halfload {
        s.push_str(&crate::halfload::markdown(h));
    }
    if let Some(g) = &r.growth {
        s.push_str(&crate::growth::markdown(g));
    }
    let _ = writeln!(s, "\n## Goals\n\n| goal | measured | met |\n|---|---|---|");
    for g in &r.goals {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            g.goal,
            g.measured,
            if g.met { "yes" } else { "**no**" }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, throughput: f64, rest_of_machine: f64) -> Stats {
        Stats {
            name: name.into(),
            concurrency: 32,
            throughput,
            foreign_cpu_share: rest_of_machine,
            ..Default::default()
        }
    }

    #[test]
    fn durability_is_named_after_the_settings_read_back() {
        let settings = |fsync: &str, sync: &str, fpw: &str| {
            vec![
                ("fsync".to_owned(), fsync.to_owned()),
                ("full_page_writes".to_owned(), fpw.to_owned()),
                ("synchronous_commit".to_owned(), sync.to_owned()),
            ]
        };
        assert!(durability(&settings("on", "on", "on")).starts_with("durable ("));
        assert!(durability(&settings("on", "local", "on")).starts_with("durable ("));
        assert!(durability(&settings("off", "off", "off")).starts_with("fast ("));
        assert!(durability(&settings("on", "off", "on")).starts_with("mixed ("));
    }

    #[test]
    fn a_verdict_on_a_run_that_shared_the_machine_says_so() {
        let results = |rest| Results {
            load: Some(LoadReport {
                runs: vec![
                    run("identify_by_number", 5000.0, rest),
                    run("raw_by_number", 9000.0, 0.02),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let quiet = goals(&results(0.04));
        assert_eq!(quiet.len(), 2);
        assert!(
            quiet.iter().all(|g| !g.measured.contains("disturbed")),
            "{quiet:?}"
        );
        let noisy = goals(&results(0.33));
        assert!(
            noisy
                .iter()
                .all(|g| g.measured.contains("disturbed (rest of machine 33 %)")),
            "{noisy:?}"
        );
    }
}
