//! Request-id replay: a key is claimed inside the transaction of the write it guards, so a
//! retry after a lost reply neither repeats nor loses the write. Only ids are stored.

use crate::exec::Conn;
use crate::feed::Written;
use crate::row::row_struct;
use crate::{Error, Store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateContact,
    CreateCallNote,
    DeliverCallerMessage,
    EraseCaller,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::CreateContact => "CreateContact",
            Operation::CreateCallNote => "CreateCallNote",
            Operation::DeliverCallerMessage => "DeliverCallerMessage",
            Operation::EraseCaller => "EraseCaller",
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

/// What an idempotent write produced, as a replay reads it back: the ids it keeps (and only
/// ids), and how to read the resources they name as they are now.
pub(crate) trait Replay: Sized + Send {
    type Ids: Serialize + DeserializeOwned + Send;

    fn ids(&self) -> Self::Ids;

    fn replay(
        db: Conn<'_>,
        account: &str,
        ids: Self::Ids,
    ) -> impl Future<Output = Result<Self, Error>> + Send;
}

enum Claim {
    /// First use: go ahead and call [`record`] before committing.
    Claimed,
    /// Seen before with the same body: the ids the first call produced.
    Replay(serde_json::Value),
}

row_struct! {
    struct KeyRow {
        operation: String,
        request_hash: Vec<u8>,
        result: serde_json::Value,
    }
}

impl Store {
    /// The one sequence of every idempotent write: in one transaction, claim the request id,
    /// then either replay the first call's result or `write`, record what it produced and the
    /// changes it made (`crate::feed`), and commit. Without a key it is just the write and its
    /// changes in a transaction. A replay changes nothing.
    pub(crate) async fn write_once<T: Replay>(
        &self,
        account: &str,
        key: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
        write: impl AsyncFnOnce(Conn<'_>) -> Result<Written<T>, Error>,
    ) -> Result<T, Error> {
        self.pooled(async |s| {
            let tx = s.transaction().await?;
            if let Some(key) = key
                && let Claim::Replay(result) = claim(tx.conn(), account, key, now).await?
            {
                drop(tx);
                let ids = serde_json::from_value(result)
                    .map_err(|e| Error::Corrupt(format!("idempotency result: {e}")))?;
                return T::replay(s.conn(), account, ids).await;
            }
            let done = write(tx.conn()).await?;
            if let Some(key) = key {
                let result = serde_json::to_value(done.value.ids())
                    .map_err(|e| Error::Corrupt(format!("idempotency result: {e}")))?;
                record(tx.conn(), account, key, result).await?;
            }
            self.commit_changes(tx, account, now, &done.changes).await?;
            Ok(done.value)
        })
        .await
    }
}

/// Claims the key or finds its first result. A concurrent first use blocks here until that
/// transaction ends, so two retries never both write.
async fn claim(
    tx: Conn<'_>,
    account: &str,
    key: &IdempotencyKey,
    now: DateTime<Utc>,
) -> Result<Claim, Error> {
    let n = tx
        .execute(
            "INSERT INTO idempotency_keys \
             (account_id, request_id, operation, request_hash, result, create_time) \
             VALUES ($1, $2, $3, $4, 'null'::jsonb, $5) ON CONFLICT DO NOTHING",
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
    let first: KeyRow = tx
        .row(
            "SELECT operation, request_hash, result FROM idempotency_keys \
             WHERE account_id = $1 AND request_id = $2",
            &[&account, &key.request_id],
        )
        .await?
        .ok_or_else(|| Error::Corrupt("a claimed idempotency key is gone".into()))?;
    if first.operation != key.operation.as_str() || first.request_hash != key.request_hash {
        return Err(Error::RequestIdReused);
    }
    Ok(Claim::Replay(first.result))
}

async fn record(
    tx: Conn<'_>,
    account: &str,
    key: &IdempotencyKey,
    result: serde_json::Value,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE idempotency_keys SET result = $3 WHERE account_id = $1 AND request_id = $2",
        &[&account, &key.request_id, &result],
    )
    .await?;
    Ok(())
}
