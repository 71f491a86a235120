//! PostgreSQL storage of callers: the pool, migrations, and every query and transaction.
//! Domain values go in and come out; no gRPC types here.

pub mod call_handling;
pub mod call_notes;
mod contacts;
mod error;
mod idempotency;
pub mod identify;
mod migrate;
mod pool;
pub mod purge;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod tls;

pub use contacts::{ContactPage, ExpiringPage};
pub use error::{Entity, Error};
pub use idempotency::{IdempotencyKey, Operation};
pub use migrate::{migrate, migrations_fingerprint};
pub use pool::{PoolConfig, Store};

#[cfg(test)]
mod tests;

/// PostgreSQL keeps microseconds: truncate first so what a write returns equals what a read
/// returns later.
pub(crate) fn db_time(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}
