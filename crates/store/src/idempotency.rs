//! Request-id replay: a key is claimed inside the transaction of the write it guards, so a
//! retry after a lost reply neither repeats nor loses the write. Only ids are stored.

use crate::Error;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateContact,
    CreateCallNote,
    DeliverCallerMessage,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::CreateContact => "CreateContact",
            Operation::CreateCallNote => "CreateCallNote",
            Operation::DeliverCallerMessage => "DeliverCallerMessage",
        }
    }
}

/// A client's `request_id` with a hash of the request body, to tell a retry from a reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub request_id: Uuid,
    pub operation: Operation,
    pub request_hash: Vec<u8>,
}

pub(crate) enum Claim {
    /// First use: go ahead and call [`record`] before committing.
    Claimed,
    /// Seen before with the same body: the ids the first call produced.
    Replay(serde_json::Value),
}

/// Claims the key or finds its first result. A concurrent first use blocks here until that
/// transaction ends, so two retries never both write.
pub(crate) async fn claim(
    tx: &Transaction<'_>,
    account: &str,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Claim, Error> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO idempotency_keys \
             (account_id, request_id, operation, request_hash, result, create_time) \
             VALUES ($1, $2, $3, $4, 'null'::jsonb, $5) ON CONFLICT DO NOTHING",
        )
        .await?;
    let n = tx
        .execute(
            &insert,
            &[
                &account,
                &key.request_id,
                &key.operation.as_str(),
                &key.request_hash,
                &now,
            ],
        )
        .await?;
    if n == 1 {
        return Ok(Claim::Claimed);
    }
    let select = tx
        .prepare_cached(
            "SELECT operation, request_hash, result FROM idempotency_keys \
             WHERE account_id = $1 AND request_id = $2",
        )
        .await?;
    let row = tx.query_one(&select, &[&account, &key.request_id]).await?;
    let operation: &str = row.get(0);
    let hash: &[u8] = row.get(1);
    if operation != key.operation.as_str() || hash != key.request_hash.as_slice() {
        return Err(Error::RequestIdReused);
    }
    Ok(Claim::Replay(row.get(2)))
}

pub(crate) async fn record(
    tx: &Transaction<'_>,
    account: &str,
    key: &IdempotencyKey,
    result: serde_json::Value,
) -> Result<(), Error> {
    let stmt = tx
        .prepare_cached(
            "UPDATE idempotency_keys SET result = $3 WHERE account_id = $1 AND request_id = $2",
        )
        .await?;
    tx.execute(&stmt, &[&account, &key.request_id, &result])
        .await?;
    Ok(())
}
