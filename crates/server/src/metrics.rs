//! The Prometheus endpoint and the gauges that are sampled rather than counted.

use callers_store::Store;
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::time::Duration;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Serves Prometheus text on `addr` (any path) and samples the connections every few seconds.
pub fn install(addr: SocketAddr, store: Store) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(
            Matcher::Full("callers_grpc_request_duration_seconds".into()),
            LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("grpc_server_handling_seconds".into()),
            LATENCY_BUCKETS,
        )?
        .install()?;
    describe();
    gauge!("callers_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let process = metrics_process::Collector::default();
    process.describe();
    let runtime = tokio::runtime::Handle::current().metrics();
    tokio::spawn(async move {
        loop {
            process.collect();
            gauge!("callers_tokio_workers").set(runtime.num_workers() as f64);
            gauge!("callers_tokio_alive_tasks").set(runtime.num_alive_tasks() as f64);
            gauge!("callers_tokio_global_queue_depth").set(runtime.global_queue_depth() as f64);
            // Pooled and shared connections together: both count against the database.
            let c = store.connections();
            let in_use = c.open.saturating_sub(c.idle);
            gauge!("callers_db_pool_connections", "state" => "in_use").set(in_use as f64);
            gauge!("callers_db_pool_connections", "state" => "idle").set(c.idle as f64);
            gauge!("callers_db_pool_max_connections").set(c.max as f64);
            gauge!("callers_db_pool_waiting").set(c.waiting as f64);
            // Replicas by position in the configuration: URLs may carry passwords.
            for (i, r) in store.replicas().iter().enumerate() {
                let replica = i.to_string();
                let lag = r.lag.map_or(f64::INFINITY, |l| l.as_secs_f64());
                gauge!("callers_db_replica_lag_seconds", "replica" => replica.clone()).set(lag);
                gauge!("callers_db_replica_usable", "replica" => replica.clone())
                    .set(f64::from(u8::from(r.usable)));
                counter!("callers_db_replica_reads_total", "replica" => replica.clone())
                    .absolute(r.reads);
                counter!("callers_db_replica_fallbacks_total", "replica" => replica)
                    .absolute(r.fallbacks);
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    Ok(())
}

/// The HELP lines.
fn describe() {
    describe_counter!(
        "callers_grpc_requests_total",
        "Finished calls by full method name and gRPC status code."
    );
    describe_histogram!(
        "callers_grpc_request_duration_seconds",
        Unit::Seconds,
        "Call latency by full method name."
    );
    describe_counter!(
        "grpc_server_started_total",
        "Calls started on the server (go-grpc-prometheus's name)."
    );
    describe_counter!(
        "grpc_server_handled_total",
        "Calls finished on the server, by status code (go-grpc-prometheus's name)."
    );
    describe_histogram!(
        "grpc_server_handling_seconds",
        Unit::Seconds,
        "Call latency until the server finished (go-grpc-prometheus's name)."
    );
    describe_gauge!(
        "callers_db_pool_connections",
        "Database connections, pooled and shared, by state."
    );
    describe_gauge!(
        "callers_db_pool_max_connections",
        "The most database connections this replica opens."
    );
    describe_gauge!(
        "callers_db_pool_waiting",
        "Calls waiting for a database connection."
    );
    describe_gauge!(
        "callers_db_replica_lag_seconds",
        Unit::Seconds,
        "Measured replay lag of a read replica (+Inf: unknown)."
    );
    describe_gauge!(
        "callers_db_replica_usable",
        "1 while the read replica's lag is within the bound."
    );
    describe_counter!(
        "callers_db_replica_reads_total",
        "Reads the read replica served."
    );
    describe_counter!(
        "callers_db_replica_fallbacks_total",
        "Reads that failed on the read replica and ran on the primary."
    );
    describe_gauge!("callers_build_info", "The running version (always 1).");
    describe_counter!(
        "callers_caller_messages_expired_total",
        "Caller messages this replica's sweep moved into undelivered-message records."
    );
    describe_gauge!("callers_change_streams", "WatchChanges streams open now.");
    describe_gauge!(
        "callers_tokio_workers",
        "Worker threads of the async runtime."
    );
    describe_gauge!(
        "callers_tokio_alive_tasks",
        "Tasks alive in the async runtime (calls, streams, connections, background work)."
    );
    describe_gauge!(
        "callers_tokio_global_queue_depth",
        "Tasks waiting in the async runtime's global queue: above zero for long, the CPU is short."
    );
}
