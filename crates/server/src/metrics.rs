//! The Prometheus endpoint and the gauges that are sampled rather than counted.

use callers_store::Store;
use metrics::{counter, gauge};
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
        .install()?;
    gauge!("callers_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    tokio::spawn(async move {
        loop {
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
