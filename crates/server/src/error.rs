//! Every error a client can see: store and validation errors become `tonic::Status` with
//! `google.rpc` details. Internal details are logged (without personal data), never sent.

use callers_domain::Violations;
use callers_store::{Entity, Error};
use std::collections::HashMap;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};
use uuid::Uuid;

pub const DOMAIN: &str = "callers";

pub fn invalid(v: Violations) -> Status {
    let message = v.to_string();
    let mut details = ErrorDetails::new();
    for violation in v {
        details.add_bad_request_violation(violation.field, violation.description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

pub fn with_reason(
    code: Code,
    message: &str,
    reason: &str,
    meta: HashMap<String, String>,
) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, DOMAIN, meta),
    )
}

fn reason(code: Code, message: &str, reason: &str) -> Status {
    with_reason(code, message, reason, HashMap::new())
}

/// Suppression needs the deployment's privacy keys (`--privacy-keys-file`).
pub fn privacy_keys_missing() -> Status {
    reason(
        Code::FailedPrecondition,
        "this server has no privacy keys (--privacy-keys-file), so it cannot remember a number \
         as a keyed hash",
        "PRIVACY_KEYS_MISSING",
    )
}

pub fn from_store(e: Error) -> Status {
    match e {
        Error::NotFound(Entity::Contact) => {
            reason(Code::NotFound, "contact not found", "CONTACT_NOT_FOUND")
        }
        Error::NotFound(Entity::CallNote) => {
            reason(Code::NotFound, "call note not found", "CALL_NOTE_NOT_FOUND")
        }
        Error::NotFound(Entity::CallHandling) => reason(
            Code::NotFound,
            "no call-handling settings are stored for this account",
            "CALL_HANDLING_NOT_FOUND",
        ),
        Error::EtagMismatch => reason(
            Code::Aborted,
            "the resource was changed since this etag was read; read it again",
            "ETAG_MISMATCH",
        ),
        Error::RequestIdReused => reason(
            Code::AlreadyExists,
            "this request_id was used before for a different request",
            "REQUEST_ID_REUSED",
        ),
        Error::Invalid(v) => invalid(v),
        Error::MessageNotPending { delivered_in } => {
            let mut meta = HashMap::new();
            if let Some(id) = delivered_in {
                meta.insert("call_note_id".to_owned(), id.to_string());
            }
            with_reason(
                Code::FailedPrecondition,
                "this caller message is not pending: it was delivered or replaced",
                "MESSAGE_NOT_PENDING",
                meta,
            )
        }
        Error::MessageExpired => reason(
            Code::FailedPrecondition,
            "this caller message has expired: it is not told any more",
            "MESSAGE_EXPIRED",
        ),
        Error::CallNoteOfOtherContact => reason(
            Code::FailedPrecondition,
            "the call note is linked to another contact",
            "CALL_NOTE_OF_OTHER_CONTACT",
        ),
        Error::ContactsNotNamed(ids) => {
            let list = ids
                .iter()
                .map(Uuid::to_string)
                .collect::<Vec<_>>()
                .join(",");
            with_reason(
                Code::FailedPrecondition,
                "the number is held by several contacts, or by one that is kept permanently or \
                 has another category: name every contact to delete in contact_ids (metadata \
                 `contact_ids` lists them), or erase by contact ids alone",
                "CONTACTS_NOT_NAMED",
                HashMap::from([("contact_ids".to_owned(), list)]),
            )
        }
        Error::CursorExpired => reason(
            Code::FailedPrecondition,
            "changes after this cursor are no longer kept: read the account anew from \
             GetChangeCursor, then the lists, then follow the feed from that cursor",
            "CURSOR_EXPIRED",
        ),
        Error::Unavailable(source) => {
            tracing::warn!(error = %chain(&*source), "database unavailable");
            reason(
                Code::Unavailable,
                "the database is unavailable; retry later",
                "DATABASE_UNAVAILABLE",
            )
        }
        Error::Database(e) => {
            // The SQLSTATE and the names of schema objects only: messages may quote values.
            let db = e.as_db_error();
            tracing::error!(
                sqlstate = db.map(|d| d.code().code()),
                table = db.and_then(|d| d.table()),
                constraint = db.and_then(|d| d.constraint()),
                "unexpected database error"
            );
            Status::internal("internal error")
        }
        Error::Corrupt(what) => {
            tracing::error!(what, "stored data does not fit the domain");
            Status::internal("internal error")
        }
        Error::Config(what) => {
            tracing::error!(what, "database configuration");
            Status::internal("internal error")
        }
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
