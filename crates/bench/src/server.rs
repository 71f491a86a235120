//! The real `callers-server` binary, started against a database: time to SERVING, memory and
//! CPU from /proc.

use anyhow::{Context, bail};
use callers_testkit::process::{Launch, ServerProcess};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub struct Server {
    process: ServerProcess,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    /// From spawning the process to the first SERVING answer of `grpc.health.v1.Health/Check`.
    pub startup: Duration,
    pub log: PathBuf,
}

/// The binary next to this one (`target/release/callers-server` when built with --release).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no folder of the running binary")?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release -p callers-server -p callers-purge -p callers-bench) or pass its path",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl Server {
    /// Starts the server with the test kit's launcher, keeping the operator's environment
    /// (less the settings that would change what is measured), and waits until it is SERVING.
    pub async fn start(
        bin: &Path,
        database_url: &str,
        log_dir: &Path,
        extra_args: &[String],
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(log_dir)?;
        let port = free_port()?;
        let log = log_dir.join(format!("server-{port}.log"));
        let started = Instant::now();
        let process = Launch::new(bin)
            .inherit_env()
            .env_remove("CALLERS_AUTH_TOKENS_FILE")
            .env_remove("CALLERS_METRICS_LISTEN")
            .env("CALLERS_LOG_FORMAT", "json")
            .env("DATABASE_URL", database_url)
            .args(["--listen".to_owned(), format!("127.0.0.1:{port}")])
            .args(extra_args)
            .log_file(&log)
            .serve()
            .await?;
        let mut server = Server {
            pid: process.pid,
            addr: process.url(),
            process,
            startup: Duration::ZERO,
            log,
        };
        let deadline = started + Duration::from_secs(60);
        loop {
            if serving(&server.addr).await {
                server.startup = started.elapsed();
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!(
                    "callers-server not SERVING after 60 s; log: {}",
                    server.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Resident memory now (VmRSS) and its peak so far (VmHWM), in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        (
            proc_status_kib(self.pid, "VmRSS:").unwrap_or(0),
            proc_status_kib(self.pid, "VmHWM:").unwrap_or(0),
        )
    }

    /// CPU seconds the process used so far (user + system).
    pub fn cpu_secs(&self) -> f64 {
        process_cpu_secs(&self.pid.to_string()).unwrap_or(0.0)
    }

    /// SIGTERM, then a bounded wait for the graceful drain; SIGKILL after that.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.process.stop().await?;
        Ok(())
    }
}

async fn serving(addr: &str) -> bool {
    let Ok(endpoint) = Endpoint::from_shared(addr.to_owned()) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_millis(500))
        .connect()
        .await
    else {
        return false;
    };
    let mut health = HealthClient::new(channel);
    match health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(r) => r.get_ref().status == ServingStatus::Serving as i32,
        Err(_) => false,
    }
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Linux reports CPU times in clock ticks of 1/100 s (USER_HZ, 100 on every mainstream
/// architecture).
const TICKS_PER_SEC: f64 = 100.0;

/// user + system CPU seconds of `/proc/<pid>/stat` (`pid` may be "self").
pub fn process_cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after its closing parenthesis are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// Busy CPU seconds of the whole machine so far (all CPUs; idle and iowait excluded).
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle) / TICKS_PER_SEC)
}

/// The postmasters of the clusters under measurement (the primary, and a replica the run
/// started), once known: only they and their children count as PostgreSQL, so another cluster
/// on the machine (another checkout's test database) counts as the rest of the machine.
static POSTMASTERS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// Counts this cluster's processes as PostgreSQL from now on (and, once one is named, only
/// the processes of the clusters named).
pub fn measure_postgres_of(postmaster: u32) {
    POSTMASTERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(postmaster);
}

/// Pins the cluster of `postmaster` (it and its children now; backends it starts later inherit
/// it) to the last CPU and this process, with the server it will start, to the others.
pub fn split_cores(postmaster: u32) -> anyhow::Result<String> {
    let cpus = std::thread::available_parallelism()?.get();
    anyhow::ensure!(cpus >= 2, "--split-cores needs two CPUs or more");
    let last = cpus - 1;
    let ours = if last == 1 {
        "0".to_owned()
    } else {
        format!("0-{}", last - 1)
    };
    let cluster: Vec<String> = postgres_cpu().into_iter().map(|(pid, _)| pid).collect();
    let pin = |cpus: &str, pid: &str| -> anyhow::Result<()> {
        let out = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", cpus, pid])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "taskset -a -p -c {cpus} {pid}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    };
    for pid in &cluster {
        // A backend may end meanwhile; the postmaster must not fail.
        if pid == &postmaster.to_string() {
            pin(&last.to_string(), pid)?;
        } else {
            let _ = pin(&last.to_string(), pid);
        }
    }
    pin(&ours, &std::process::id().to_string())?;
    Ok(format!(
        "split cores: PostgreSQL ({} processes) on CPU {last}, this tool and the server on CPU {ours}",
        cluster.len()
    ))
}

fn parent_pid(pid: &str) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds of every PostgreSQL process (by command name; of the measured cluster when its
/// postmaster is known) alive now, by pid.
fn postgres_cpu() -> Vec<(String, f64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let postmasters = POSTMASTERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter(|pid| {
            postmasters.is_empty()
                || pid.parse().is_ok_and(|p| postmasters.contains(&p))
                || parent_pid(pid).is_some_and(|p| postmasters.contains(&p))
        })
        .filter_map(|pid| process_cpu_secs(&pid).map(|s| (pid, s)))
        .collect()
}

/// CPU use of a measured interval: the benchmark process, the server, PostgreSQL, and the rest
/// of the machine (kernel work not charged to a process, and anything else running: on a quiet
/// machine it stays near zero).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuSplit {
    pub bench_secs: f64,
    pub server_secs: f64,
    pub postgres_secs: f64,
    pub other_secs: f64,
    pub wall_secs: f64,
}

pub struct CpuMeter {
    bench: f64,
    server: Option<(String, f64)>,
    postgres: Vec<(String, f64)>,
    machine: f64,
    started: std::time::Instant,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> Self {
        let server = server_pid.map(|p| {
            let p = p.to_string();
            let s = process_cpu_secs(&p).unwrap_or(0.0);
            (p, s)
        });
        Self {
            bench: process_cpu_secs("self").unwrap_or(0.0),
            server,
            postgres: postgres_cpu(),
            machine: machine_busy_secs().unwrap_or(0.0),
            started: std::time::Instant::now(),
        }
    }

    pub fn stop(&self) -> CpuSplit {
        let bench = process_cpu_secs("self").unwrap_or(0.0) - self.bench;
        let server = self
            .server
            .as_ref()
            .map(|(p, s)| process_cpu_secs(p).unwrap_or(*s) - s)
            .unwrap_or(0.0);
        // Backends that started during the interval count from zero.
        let postgres: f64 = postgres_cpu()
            .iter()
            .map(|(pid, now)| {
                let before = self
                    .postgres
                    .iter()
                    .find(|(p, _)| p == pid)
                    .map_or(0.0, |(_, s)| *s);
                now - before
            })
            .sum();
        let machine = machine_busy_secs().unwrap_or(0.0) - self.machine;
        CpuSplit {
            bench_secs: bench,
            server_secs: server,
            postgres_secs: postgres,
            other_secs: (machine - bench - server - postgres).max(0.0),
            wall_secs: self.started.elapsed().as_secs_f64(),
        }
    }
}
