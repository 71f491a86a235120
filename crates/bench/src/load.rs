//! The load runners: a closed loop (fixed concurrency for a fixed time, after a warm-up) and a
//! paced open loop (fixed request rate, latency counted from the intended start so a stall is
//! not hidden). Every call has a timeout, every run a deadline: nothing here can hang.

use crate::server::{CpuMeter, CpuSplit, Server};
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};

/// What one call did (its operation's name), or why it failed.
pub type OpFuture = Pin<Box<dyn Future<Output = Result<&'static str, String>> + Send>>;
/// Makes the next call of worker `w`; the request is chosen with the worker's own RNG.
pub type Driver = Arc<dyn Fn(usize, &mut SmallRng) -> OpFuture + Send + Sync>;

/// Upper bound of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_US: u64 = 60_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid bounds")
}

pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_US);
    let _ = h.record(us);
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub name: String,
    /// Concurrent clients (closed loop) or the in-flight cap (paced).
    pub concurrency: usize,
    /// Requests per second asked for (paced runs only).
    pub rate: Option<f64>,
    pub secs: f64,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub throughput: f64,
    pub latency: Latency,
    /// Per operation (mixed profiles).
    pub ops: Vec<(String, Latency)>,
    pub cpu: CpuSplit,
    /// CPU milliseconds per successful call: bench process, server, PostgreSQL, rest.
    pub cpu_ms_per_op: [f64; 4],
    /// Share of the machine's CPUs busy with other work (rest) during the run; near 0 on a
    /// quiet machine.
    pub foreign_cpu_share: f64,
    pub server_rss_peak_kib: Option<u64>,
    pub server_rss_end_kib: Option<u64>,
    /// Paced runs: calls sent more than [`TIMER_SLACK`] after their intended time (the
    /// scheduler waited for a free slot, or was kept off the CPU); their latency counts from
    /// the intended time.
    pub late_sends: u64,
    /// Write runs: what the server's backends waited for, lock waits, WAL and checkpoints.
    pub stalls: Option<crate::stalls::StallReport>,
}

#[derive(Default)]
struct Recorder {
    all: Option<Histogram<u64>>,
    ops: Vec<(&'static str, Histogram<u64>)>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Recorder {
    fn add(&mut self, result: Result<&'static str, String>, d: Duration) {
        match result {
            Ok(op) => {
                self.ok += 1;
                record(self.all.get_or_insert_with(histogram), d);
                match self.ops.iter_mut().find(|(n, _)| *n == op) {
                    Some((_, h)) => record(h, d),
                    None => {
                        let mut h = histogram();
                        record(&mut h, d);
                        self.ops.push((op, h));
                    }
                }
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Recorder) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if let Some(h) = other.all {
            let _ = self.all.get_or_insert_with(histogram).add(&h);
        }
        for (op, h) in other.ops {
            match self.ops.iter_mut().find(|(n, _)| *n == op) {
                Some((_, mine)) => {
                    let _ = mine.add(&h);
                }
                None => self.ops.push((op, h)),
            }
        }
    }

    fn stats(
        mut self,
        name: &str,
        concurrency: usize,
        rate: Option<f64>,
        secs: f64,
        cpu: CpuSplit,
        rss: Option<(u64, u64)>,
    ) -> Stats {
        self.ops.sort_by_key(|(n, _)| *n);
        let per = |s: f64| {
            if self.ok == 0 {
                0.0
            } else {
                s * 1000.0 / self.ok as f64
            }
        };
        Stats {
            name: name.into(),
            concurrency,
            rate,
            secs,
            ok: self.ok,
            errors: self.errors,
            first_error: self.first_error.clone(),
            throughput: self.ok as f64 / secs.max(1e-9),
            latency: Latency::of(self.all.as_ref().unwrap_or(&histogram())),
            ops: self
                .ops
                .iter()
                .map(|(n, h)| (n.to_string(), Latency::of(h)))
                .collect(),
            cpu,
            cpu_ms_per_op: [
                per(cpu.bench_secs),
                per(cpu.server_secs),
                per(cpu.postgres_secs),
                per(cpu.other_secs),
            ],
            foreign_cpu_share: cpu.other_secs
                / (cpu.wall_secs.max(1e-9)
                    * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64),
            server_rss_peak_kib: rss.map(|r| r.0),
            server_rss_end_kib: rss.map(|r| r.1),
            late_sends: 0,
            stalls: None,
        }
    }
}

/// Samples the server's RSS until told to stop; returns (peak, last) in KiB.
fn watch_rss(
    server: Option<&Server>,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<(u64, u64)>> {
    let pid = server?.pid;
    let mut stop = stop;
    Some(tokio::spawn(async move {
        let mut peak = 0;
        let mut last = 0;
        loop {
            let now = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                })
                .unwrap_or(last);
            last = now;
            peak = peak.max(now);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => break,
            }
        }
        (peak, last)
    }))
}

/// `concurrency` clients call back to back for `warmup + duration`; only calls started after
/// the warm-up are counted.
pub async fn closed_loop(
    name: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    seed: u64,
    driver: Driver,
    server: Option<&Server>,
) -> Stats {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let driver = driver.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(1_000_003) + w as u64);
            let mut rec = Recorder::default();
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let call = driver(w, &mut rng);
                let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                    Ok(r) => r,
                    Err(_) => Err("timed out".into()),
                };
                if t >= measure_from {
                    rec.add(result, t.elapsed());
                }
            }
            rec
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let meter = CpuMeter::start(server.map(|s| s.pid));
    let (stop_tx, stop_rx) = watch::channel(false);
    let rss = watch_rss(server, stop_rx);
    tokio::time::sleep_until(end.into()).await;
    let cpu = meter.stop();
    let _ = stop_tx.send(true);
    let mut total = Recorder::default();
    for w in workers {
        if let Ok(rec) = w.await {
            total.merge(rec);
        }
    }
    let rss = match rss {
        Some(h) => h.await.ok(),
        None => None,
    };
    total.stats(name, concurrency, None, duration.as_secs_f64(), cpu, rss)
}

/// The shape of a paced run.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Calls per second.
    pub rate: f64,
    /// Calls in flight at most.
    pub max_in_flight: usize,
    /// Upper bound of the run.
    pub max: Duration,
}

/// How late the scheduler may wake for a call and still count it from its waking: tokio's
/// timer wakes up to a millisecond late, which is the load generator's, not the system's.
pub const TIMER_SLACK: Duration = Duration::from_millis(2);

/// Calls at `rate` per second (at most `max_in_flight` at once) until `stop` turns true or
/// `max` has passed: an open loop, the schedule fixed in advance. Latency counts from the
/// call's intended send time, so a stalled system shows as latency rather than as fewer calls
/// (coordinated omission): from the moment the scheduler woke for it when that was within
/// [`TIMER_SLACK`] of the schedule (the timer's own lateness left out), else from the schedule
/// (the scheduler was held back waiting for a free slot, or off the CPU).
pub async fn paced(
    name: &str,
    pace: Pace,
    seed: u64,
    driver: Driver,
    mut stop: watch::Receiver<bool>,
    server: Option<&Server>,
) -> Stats {
    let Pace {
        rate,
        max_in_flight,
        max,
    } = pace;
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let rec = Arc::new(Mutex::new(Recorder::default()));
    let start = Instant::now();
    let end = start + max;
    let meter = CpuMeter::start(server.map(|s| s.pid));
    let (rss_tx, rss_rx) = watch::channel(false);
    let rss = watch_rss(server, rss_rx);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut due = start;
    let mut n = 0usize;
    let mut late = 0u64;
    let mut tasks = Vec::new();
    loop {
        if *stop.borrow() || due >= end {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = stop.changed() => break,
        }
        let woke = Instant::now();
        let intended = if woke.saturating_duration_since(due) <= TIMER_SLACK {
            woke
        } else {
            late += 1;
            due
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let call = driver(n % max_in_flight, &mut rng);
        let rec = rec.clone();
        tasks.push(tokio::spawn(async move {
            let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(r) => r,
                Err(_) => Err("timed out".into()),
            };
            let d = intended.elapsed();
            drop(permit);
            if let Ok(mut r) = rec.lock() {
                r.add(result, d);
            }
        }));
        n += 1;
        due += interval;
    }
    let secs = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    let cpu = meter.stop();
    let _ = rss_tx.send(true);
    let rss = match rss {
        Some(h) => h.await.ok(),
        None => None,
    };
    let rec = Arc::try_unwrap(rec)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .unwrap_or_default();
    let mut stats = rec.stats(name, max_in_flight, Some(rate), secs, cpu, rss);
    stats.late_sends = late;
    stats
}
