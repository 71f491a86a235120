//! The change feed's vocabulary: what a committed write of an account changed, as a CRM that
//! mirrors the account needs to learn it. The store records these in the transaction of the
//! write; the contract's `ChangeType` codes are [`Change::code`].
//!
//! Resources in changes are stored as JSON of the domain types (serde): a field added to
//! `Contact`, `CallNote` or `CallHandling` later needs `#[serde(default)]`, or older changes no
//! longer read back.

use crate::call_handling::CallHandling;
use crate::call_note::CallNote;
use crate::contact::Contact;
use crate::message::{UndeliveredMessage, UndeliveredReason};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Why a contact was deleted; codes are those of the contract and the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteReason {
    Request = 1,
    Purge = 2,
    Erasure = 3,
}

impl DeleteReason {
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => Self::Request,
            2 => Self::Purge,
            3 => Self::Erasure,
            _ => return None,
        })
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

/// One change of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    ContactCreated(Contact),
    ContactUpdated(Contact),
    ContactDeleted {
        contact_id: Uuid,
        reason: DeleteReason,
    },
    /// The contact reaches its purge time soon; carries the last activity the purge time follows
    /// from (the server adds its retention).
    ContactExpiring {
        contact_id: Uuid,
        last_activity_time: DateTime<Utc>,
    },
    CallNoteCreated(CallNote),
    CallNoteLinked(CallNote),
    CallNoteRedacted(CallNote),
    CallNoteDeleted {
        call_note_id: Uuid,
    },
    MessageDelivered {
        message_id: Uuid,
        call_note: CallNote,
    },
    /// A message expired untold; `record` is its undelivered-message record (absent in
    /// changes recorded before records existed).
    MessageExpired {
        contact_id: Uuid,
        message_id: Uuid,
        record: Option<UndeliveredMessage>,
    },
    /// A pending message was replaced or cleared untold; `record` as for `MessageExpired`.
    MessageReplaced {
        contact_id: Uuid,
        message_id: Uuid,
        record: Option<UndeliveredMessage>,
    },
    CallHandlingUpdated(CallHandling),
    /// An undelivered-message record left the report (its report period ended).
    UndeliveredMessageRemoved {
        contact_id: Uuid,
        message_id: Uuid,
    },
}

/// What a change carries of the resource it is about: the resource itself, or only its ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChangeIds {
    pub contact_id: Option<Uuid>,
    pub call_note_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
}

impl Change {
    /// The contract's `ChangeType` number, also stored.
    pub fn code(&self) -> i32 {
        match self {
            Change::ContactCreated(_) => 1,
            Change::ContactUpdated(_) => 2,
            Change::ContactDeleted { .. } => 3,
            Change::ContactExpiring { .. } => 4,
            Change::CallNoteCreated(_) => 5,
            Change::CallNoteLinked(_) => 6,
            Change::CallNoteRedacted(_) => 7,
            Change::CallNoteDeleted { .. } => 8,
            Change::MessageDelivered { .. } => 9,
            Change::MessageExpired { .. } => 10,
            Change::MessageReplaced { .. } => 11,
            Change::CallHandlingUpdated(_) => 12,
            Change::UndeliveredMessageRemoved { .. } => 13,
        }
    }

    /// The ids the change is about.
    pub fn ids(&self) -> ChangeIds {
        let note = |n: &CallNote| ChangeIds {
            contact_id: n.contact_id,
            call_note_id: Some(n.call_note_id),
            message_id: None,
        };
        match self {
            Change::ContactCreated(c) | Change::ContactUpdated(c) => ChangeIds {
                contact_id: Some(c.contact_id),
                ..ChangeIds::default()
            },
            Change::ContactDeleted { contact_id, .. }
            | Change::ContactExpiring { contact_id, .. } => ChangeIds {
                contact_id: Some(*contact_id),
                ..ChangeIds::default()
            },
            Change::CallNoteCreated(n)
            | Change::CallNoteLinked(n)
            | Change::CallNoteRedacted(n) => note(n),
            Change::CallNoteDeleted { call_note_id } => ChangeIds {
                call_note_id: Some(*call_note_id),
                ..ChangeIds::default()
            },
            Change::MessageDelivered {
                message_id,
                call_note,
            } => ChangeIds {
                message_id: Some(*message_id),
                ..note(call_note)
            },
            Change::MessageExpired {
                contact_id,
                message_id,
                ..
            }
            | Change::MessageReplaced {
                contact_id,
                message_id,
                ..
            }
            | Change::UndeliveredMessageRemoved {
                contact_id,
                message_id,
            } => ChangeIds {
                contact_id: Some(*contact_id),
                call_note_id: None,
                message_id: Some(*message_id),
            },
            Change::CallHandlingUpdated(_) => ChangeIds::default(),
        }
    }
}

/// A committed change at its place in the account's feed: `seq` is gap-free and in commit
/// order per account, starting at 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub seq: i64,
    pub change_time: DateTime<Utc>,
    pub change: Change,
}

impl Change {
    /// The feed's record of a message that left its contact untold.
    pub fn untold(record: UndeliveredMessage) -> Change {
        let (contact_id, message_id) = (record.contact_id, record.message_id);
        match record.reason {
            UndeliveredReason::Expired => Change::MessageExpired {
                contact_id,
                message_id,
                record: Some(record),
            },
            UndeliveredReason::Replaced | UndeliveredReason::Withdrawn => Change::MessageReplaced {
                contact_id,
                message_id,
                record: Some(record),
            },
        }
    }
}
