//! PostgreSQL storage of callers: the pool, migrations, and every query and transaction.
//! Domain values go in and come out; no gRPC types here.

pub mod call_counts;
pub mod call_handling;
pub mod call_notes;
mod connstr;
mod contacts;
mod error;
mod exec;
mod feed;
mod idempotency;
pub mod identify;
pub mod messages;
mod migrate;
mod pool;
pub mod privacy;
pub mod purge;
mod replica;
mod row;
pub mod search;
mod shared;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod tls;

pub use connstr::{ConnSettings, SslMode};
pub use contacts::{ContactPage, ExpiringPage};
pub use error::{Entity, Error};
pub use exec::{Connections, Statements};
pub use feed::ChangePage;
pub use idempotency::{IdempotencyKey, Operation};
pub use migrate::{migrate, migrations_fingerprint};
pub use pool::{PoolConfig, Pooler, Store};
pub use replica::ReplicaStatus;

#[cfg(test)]
mod tests;

/// Keyset paging: a list statement fetches `limit + 1` rows; the extra one only says that
/// another page follows, and that page starts after the last row kept (its key).
pub(crate) fn keyset_page<T, K>(
    mut items: Vec<T>,
    limit: usize,
    key: impl FnOnce(&T) -> K,
) -> (Vec<T>, Option<K>) {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(key) } else { None };
    (items, next)
}

/// PostgreSQL keeps microseconds: truncate first so what a write returns equals what a read
/// returns later.
pub(crate) fn db_time(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}
