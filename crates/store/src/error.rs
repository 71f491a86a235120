//! Typed store errors; Postgres error codes are classified here and nowhere else.

use callers_domain::Violations;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Contact,
    CallNote,
    CallHandling,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} not found")]
    NotFound(Entity),
    #[error("etag does not match the current version")]
    EtagMismatch,
    #[error("request id was used before for a different request")]
    RequestIdReused,
    #[error(transparent)]
    Invalid(#[from] Violations),
    #[error("caller message is not pending")]
    MessageNotPending { delivered_in: Option<Uuid> },
    /// The message's instant has passed: it is never told.
    #[error("caller message expired")]
    MessageExpired,
    #[error("call note is linked to another contact")]
    CallNoteOfOtherContact,
    /// An erasure by number found several contacts, or a protected one: the request must name
    /// them all.
    #[error("the number is held by contacts the request must name")]
    ContactsNotNamed(Vec<Uuid>),
    /// Changes after the cursor were pruned, or the cursor lies beyond the account's feed.
    #[error("the change cursor expired")]
    CursorExpired,
    /// The database cannot be reached or refused for now; retrying later may work.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    /// An unexpected database error: a bug.
    #[error("database error")]
    Database(#[source] tokio_postgres::Error),
    #[error("stored data does not fit the domain: {0}")]
    Corrupt(String),
    /// The configuration cannot work (a bad connection setting, a pooler where a session is
    /// needed); the message names what to change, never a password.
    #[error("{0}")]
    Config(String),
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else {
            // No server answer: connection lost, closed or timed out.
            return Error::Unavailable(Box::new(e));
        };
        let code = db.code();
        let transient = code.code().starts_with("08") // connection exception
            || code.code().starts_with("53") // insufficient resources
            || code.code().starts_with("57P") // shutdown, cannot connect now
            || *code == SqlState::QUERY_CANCELED // statement timeout
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION; // failover in progress
        if transient {
            Error::Unavailable(Box::new(e))
        } else {
            Error::Database(e)
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Error::Unavailable(Box::new(other)),
        }
    }
}
