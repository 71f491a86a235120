//! `ChangeService` requests as commands, and changes back. A cursor is the decimal number of
//! the account's change it follows (`callers_store::feed`); the contract calls it opaque.

use super::{call_handling, call_notes, contact, timestamp};
use callers_domain::change::{Change, ChangeEvent};
use callers_domain::contact::etag;
use callers_domain::retention::Retention;
use callers_domain::{AccountId, Violations};
use callers_proto::v1 as pb;
use callers_store::ChangePage;

/// `ListChanges` page size when the request leaves it 0, and its most.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1_000;

/// The cursor of a request: empty is the start of the feed.
fn cursor(s: &str) -> Result<i64, String> {
    if s.is_empty() {
        return Ok(0);
    }
    let bad = || "is not a change cursor".to_owned();
    if s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<i64>().map_err(|_| bad())
}

pub fn cursor_text(seq: i64) -> String {
    seq.to_string()
}

pub struct GetChangeCursor {
    pub account: AccountId,
}

impl TryFrom<&pb::GetChangeCursorRequest> for GetChangeCursor {
    type Error = Violations;

    fn try_from(req: &pb::GetChangeCursorRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        Ok(Self {
            account: v.finish(account)?,
        })
    }
}

pub struct ListChanges {
    pub account: AccountId,
    pub after: i64,
    pub size: usize,
}

impl TryFrom<&pb::ListChangesRequest> for ListChanges {
    type Error = Violations;

    fn try_from(req: &pb::ListChangesRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let after = v.check("cursor", cursor(&req.cursor));
        let size = match req.page_size {
            0 => Some(DEFAULT_PAGE),
            n if n > 0 && n as usize <= MAX_PAGE => Some(n as usize),
            _ => {
                v.add("page_size", format!("must be between 0 and {MAX_PAGE}"));
                None
            }
        };
        let ((account, after), size) = v.finish(account.zip(after).zip(size))?;
        Ok(Self {
            account,
            after,
            size,
        })
    }
}

impl ListChanges {
    pub fn response(&self, page: &ChangePage, retention: Retention) -> pb::ListChangesResponse {
        pb::ListChangesResponse {
            changes: page.events.iter().map(|e| change(e, retention)).collect(),
            next_cursor: cursor_text(page.next(self.after)),
            caught_up: page.caught_up(self.after),
        }
    }
}

pub struct WatchChanges {
    pub account: AccountId,
    pub after: i64,
}

impl TryFrom<&pb::WatchChangesRequest> for WatchChanges {
    type Error = Violations;

    fn try_from(req: &pb::WatchChangesRequest) -> Result<Self, Violations> {
        let mut v = Violations::new();
        let account = v.check("account_id", AccountId::parse(&req.account_id));
        let after = v.check("cursor", cursor(&req.cursor));
        let (account, after) = v.finish(account.zip(after))?;
        Ok(Self { account, after })
    }
}

/// One change as the contract carries it; contacts get their `purge_time` from `retention`.
pub fn change(e: &ChangeEvent, retention: Retention) -> pb::Change {
    let ids = e.change.ids();
    let id = |u: Option<uuid::Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    let mut out = pb::Change {
        cursor: cursor_text(e.seq),
        r#type: e.change.code(),
        change_time: Some(timestamp(e.change_time)),
        contact_id: id(ids.contact_id),
        call_note_id: id(ids.call_note_id),
        message_id: id(ids.message_id),
        ..pb::Change::default()
    };
    use pb::change::Resource;
    match &e.change {
        Change::ContactCreated(c) | Change::ContactUpdated(c) => {
            out.etag = c.etag();
            out.resource = Some(Resource::Contact(contact(c, retention)));
        }
        Change::CallNoteCreated(n)
        | Change::CallNoteLinked(n)
        | Change::CallNoteRedacted(n)
        | Change::MessageDelivered { call_note: n, .. } => {
            out.resource = Some(Resource::CallNote(call_notes::call_note(n)));
        }
        Change::CallHandlingUpdated(s) => {
            out.etag = etag(s.version);
            out.resource = Some(Resource::CallHandling(call_handling::settings(s)));
        }
        Change::ContactDeleted { reason, .. } => out.delete_reason = reason.code(),
        Change::ContactExpiring {
            last_activity_time, ..
        } => out.purge_time = Some(timestamp(*last_activity_time + retention.duration())),
        Change::MessageExpired { record, .. } | Change::MessageReplaced { record, .. } => {
            out.resource = record
                .as_ref()
                .map(|r| Resource::UndeliveredMessage(super::undelivered_message(r)));
        }
        Change::CallNoteDeleted { .. } | Change::UndeliveredMessageRemoved { .. } => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_are_plain_numbers_and_nothing_else() {
        assert_eq!(cursor(""), Ok(0));
        assert_eq!(cursor("42"), Ok(42));
        for bad in ["-1", "x", "1.0", " 1", "99999999999999999999", "+4"] {
            assert!(cursor(bad).is_err(), "{bad}");
        }
    }
}
