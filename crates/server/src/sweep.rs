//! The expiry sweep of caller messages: every replica runs it every few seconds, moving
//! messages past their instant (and the grace) into undelivered-message records. Replicas
//! skip each other's locked rows, so running on several at once is safe
//! (`callers_store::messages` says why a message is delivered or expires, never both).

use crate::grpc::App;
use metrics::counter;
use std::time::Duration;

/// Messages one statement takes; a sweep repeats until fewer come back.
const BATCH: u32 = 500;

/// Sweeps every `every` until the task is aborted. A failure is logged (no personal data) and
/// the next sweep tries again.
pub async fn run(app: App, every: Duration, grace: Duration) {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::seconds(60));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match app
                .store
                .expire_messages(app.clock.now(), grace, BATCH)
                .await
            {
                Ok(n) => {
                    counter!("callers_caller_messages_expired_total").increment(n);
                    if n < u64::from(BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "expiring caller messages failed; the next sweep retries");
                    break;
                }
            }
        }
    }
}
