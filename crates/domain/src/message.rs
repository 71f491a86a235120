//! The life of a caller message beyond its delivery: when it expires, what becomes of a message
//! that is never told (an undelivered-message record), and what a new text does to the pending
//! one. Delivery itself is the store's exactly-once transaction.

use crate::contact::CallerMessage;
use crate::validation::Violations;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Why a message left its contact untold. Codes are those of the contract and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum UndeliveredReason {
    /// Its `expire_time` passed before it was told.
    Expired = 1,
    /// A new text replaced it before it was told.
    Replaced = 2,
    /// It was cleared before it was told.
    Withdrawn = 3,
}

impl UndeliveredReason {
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => Self::Expired,
            2 => Self::Replaced,
            3 => Self::Withdrawn,
            _ => return None,
        })
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

/// A message that was never told, kept for the customer's report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UndeliveredMessage {
    pub message_id: Uuid,
    pub contact_id: Uuid,
    pub text: String,
    pub create_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    /// When it stopped being pending: its expire time, or the time of the write that replaced
    /// or cleared it.
    pub end_time: DateTime<Utc>,
    pub reason: UndeliveredReason,
}

/// A new message as a validated request carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInput {
    pub text: String,
    pub expire_time: Option<DateTime<Utc>>,
}

impl MessageInput {
    /// An instant that has already passed is refused: the message could never be told.
    /// Checked at the write, by the server's clock (`field` is the request path).
    pub fn check(&self, now: DateTime<Utc>, field: &str) -> Result<(), Violations> {
        match self.expire_time {
            Some(t) if t <= now => Err(Violations::single(field, "must lie in the future")),
            _ => Ok(()),
        }
    }
}

/// The rule: a message with an instant is expired from that instant on, judged by the
/// server's clock when a request is handled.
pub fn expired(expire_time: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expire_time.is_some_and(|t| t <= now)
}

impl CallerMessage {
    /// Expired at `now`: never told again, whatever still holds it.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        expired(self.expire_time, now)
    }

    /// The record of this message leaving `contact_id` untold at `now`, replaced by a new text
    /// (`replaced`) or cleared. A message that had expired by then counts as expired, ending at
    /// its instant.
    pub fn untold(
        &self,
        contact_id: Uuid,
        now: DateTime<Utc>,
        replaced: bool,
    ) -> UndeliveredMessage {
        let (reason, end_time) = match self.expire_time {
            Some(t) if t <= now => (UndeliveredReason::Expired, t),
            _ if replaced => (UndeliveredReason::Replaced, now),
            _ => (UndeliveredReason::Withdrawn, now),
        };
        UndeliveredMessage {
            message_id: self.message_id,
            contact_id,
            text: self.text.clone(),
            create_time: self.create_time,
            expire_time: self.expire_time,
            end_time,
            reason,
        }
    }
}

/// A contact's message slot after a write sets it to `new` (`None` clears it): the message it
/// holds then and the record of the pending one if that leaves untold. Setting the text of
/// the pending, unexpired message again keeps that message (its id and creation time) and
/// takes the new expire time, so a customer can move the instant without a new message.
pub fn next_message(
    contact_id: Uuid,
    old: Option<&CallerMessage>,
    new: Option<&MessageInput>,
    now: DateTime<Utc>,
    new_id: Uuid,
) -> (Option<CallerMessage>, Option<UndeliveredMessage>) {
    match (old, new) {
        (Some(o), Some(n)) if o.text == n.text && !o.is_expired_at(now) => {
            let kept = CallerMessage {
                expire_time: n.expire_time,
                ..o.clone()
            };
            (Some(kept), None)
        }
        (old, new) => {
            let message = new.map(|n| CallerMessage {
                message_id: new_id,
                text: n.text.clone(),
                create_time: now,
                expire_time: n.expire_time,
            });
            let record = old.map(|o| o.untold(contact_id, now, new.is_some()));
            (message, record)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 6, h, 0, 0).unwrap()
    }

    fn pending(expire: Option<DateTime<Utc>>) -> CallerMessage {
        CallerMessage {
            message_id: Uuid::from_u128(1),
            text: "Bitte Rückruf".into(),
            create_time: at(8),
            expire_time: expire,
        }
    }

    fn input(text: &str, expire: Option<DateTime<Utc>>) -> MessageInput {
        MessageInput {
            text: text.into(),
            expire_time: expire,
        }
    }

    #[test]
    fn a_message_expires_at_its_instant() {
        let m = pending(Some(at(12)));
        assert!(!m.is_expired_at(at(11)));
        assert!(m.is_expired_at(at(12)));
        assert!(!pending(None).is_expired_at(at(23)));
    }

    #[test]
    fn a_new_text_replaces_and_records_the_untold_one() {
        let c = Uuid::from_u128(9);
        let (m, r) = next_message(
            c,
            Some(&pending(None)),
            Some(&input("Neu", None)),
            at(10),
            Uuid::from_u128(2),
        );
        assert_eq!(m.unwrap().message_id, Uuid::from_u128(2));
        let r = r.unwrap();
        assert_eq!(
            (r.reason, r.end_time, r.contact_id),
            (UndeliveredReason::Replaced, at(10), c)
        );
    }

    #[test]
    fn an_expired_message_is_recorded_as_expired_at_its_instant() {
        let old = pending(Some(at(9)));
        let (_, r) = next_message(
            Uuid::nil(),
            Some(&old),
            Some(&input("Neu", None)),
            at(10),
            Uuid::from_u128(2),
        );
        let r = r.unwrap();
        assert_eq!((r.reason, r.end_time), (UndeliveredReason::Expired, at(9)));
        // The same text does not revive it either.
        let (m, r) = next_message(
            Uuid::nil(),
            Some(&old),
            Some(&input("Bitte Rückruf", None)),
            at(10),
            Uuid::from_u128(2),
        );
        assert_eq!(m.unwrap().message_id, Uuid::from_u128(2));
        assert_eq!(r.unwrap().reason, UndeliveredReason::Expired);
    }

    #[test]
    fn the_same_text_moves_the_instant_of_the_pending_message() {
        let (m, r) = next_message(
            Uuid::nil(),
            Some(&pending(Some(at(12)))),
            Some(&input("Bitte Rückruf", Some(at(18)))),
            at(10),
            Uuid::from_u128(2),
        );
        let m = m.unwrap();
        assert_eq!(
            (m.message_id, m.create_time, m.expire_time),
            (Uuid::from_u128(1), at(8), Some(at(18)))
        );
        assert_eq!(r, None);
    }

    #[test]
    fn clearing_withdraws_and_nothing_pending_records_nothing() {
        let (m, r) = next_message(Uuid::nil(), Some(&pending(None)), None, at(10), Uuid::nil());
        assert_eq!((m, r.unwrap().reason), (None, UndeliveredReason::Withdrawn));
        let (m, r) = next_message(Uuid::nil(), None, None, at(10), Uuid::nil());
        assert_eq!((m, r), (None, None));
    }

    #[test]
    fn an_instant_in_the_past_is_refused() {
        assert!(input("x", Some(at(10))).check(at(10), "f").is_err());
        assert!(input("x", Some(at(11))).check(at(10), "f").is_ok());
        assert!(input("x", None).check(at(10), "f").is_ok());
    }
}
