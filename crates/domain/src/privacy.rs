//! Privacy on request: what an erasure takes and when it must be confirmed, the keyed hashes a
//! suppressed number is remembered by, and what a redacted resource keeps.

use crate::call_note::{CallNote, Caller};
use crate::change::Change;
use crate::contact::{Contact, ContactFields};
use crate::message::UndeliveredMessage;
use crate::phone::{self, E164, Region};
use crate::validation::{Violations, uuid};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// One key of the deployment's key list. The first key hashes new suppressions; every key is
/// tried on lookup, so a key rotated out of first place keeps its suppressions working.
#[derive(Clone)]
pub struct HashKey {
    pub id: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashKey").field("id", &self.id).finish()
    }
}

/// A number's keyed hash under one key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyedHash {
    pub key_id: String,
    pub hash: Vec<u8>,
}

/// The deployment's keys, first the current one; empty when none are configured.
#[derive(Debug, Clone, Default)]
pub struct HashKeys(Vec<HashKey>);

/// Shorter secrets are refused: a keyed hash of a phone number is only as strong as its key.
pub const MIN_SECRET_BYTES: usize = 32;

impl HashKeys {
    pub fn new(keys: Vec<HashKey>) -> Result<Self, String> {
        for (i, k) in keys.iter().enumerate() {
            if k.id.is_empty() {
                return Err(format!("keys[{i}].id is required"));
            }
            if k.secret.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "keys[{i}].secret must have at least {MIN_SECRET_BYTES} bytes"
                ));
            }
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(format!("keys[{i}].id repeats an earlier key's id"));
            }
        }
        Ok(Self(keys))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number's hash under every key, the current key's first. The account is part of the
    /// message: one number hashes differently in two accounts.
    pub fn hashes(&self, account: &str, number: &E164) -> Vec<KeyedHash> {
        self.0
            .iter()
            .map(|k| KeyedHash {
                key_id: k.id.clone(),
                hash: mac(
                    &k.secret,
                    &[account.as_bytes(), b"\0", number.as_str().as_bytes()],
                ),
            })
            .collect()
    }

    /// The number's hash under the key `key_id`; `None` when no such key is configured.
    pub fn hash_with(&self, key_id: &str, account: &str, number: &str) -> Option<Vec<u8>> {
        self.0
            .iter()
            .find(|k| k.id == key_id)
            .map(|k| mac(&k.secret, &[account.as_bytes(), b"\0", number.as_bytes()]))
    }

    /// A keyed digest of `bytes` under the current key (the idempotency hash of a request that
    /// holds a number); `None` without keys.
    pub fn digest(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.0
            .first()
            .map(|k| mac(&k.secret, &[b"request\0", bytes]))
    }
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut m = <Hmac<Sha256>>::new_from_slice(secret).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// Whose data a privacy request is about: the holder of a number, named contacts, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub number: Option<E164>,
    pub contact_ids: Vec<Uuid>,
}

impl Subject {
    /// `phone_number` read in `region`; `contact_ids` as UUIDs. At least one is required.
    pub fn parse(
        number: &str,
        contact_ids: &[String],
        region: &Region,
    ) -> Result<Subject, Violations> {
        let mut v = Violations::new();
        let number = match phone::normalize(number, region) {
            Ok(n) => n,
            Err(e) => {
                v.add("phone_number", e.to_string());
                None
            }
        };
        let mut ids = Vec::with_capacity(contact_ids.len());
        for (i, id) in contact_ids.iter().enumerate() {
            if let Some(id) = v.check(&format!("contact_ids[{i}]"), uuid(id))
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        if number.is_none() && ids.is_empty() && v.is_empty() {
            v.add("phone_number", "a phone number or contact ids are required");
        }
        v.into_result(Subject {
            number,
            contact_ids: ids,
        })
    }
}

/// A contact an erasure by number found, with what makes deleting it a decision of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub contact_id: Uuid,
    /// Kept permanently, or in a category besides `caller`.
    pub protected: bool,
}

/// The contacts an erasure deletes, or `Err` with the ids the request must name first: when a
/// number is held by several contacts (a switchboard, a family line) or by a protected one,
/// every holder must be named, so nobody's contact goes by accident. Named contacts are deleted
/// whether or not they hold the number.
pub fn erasure_targets(subject: &Subject, holders: &[Holder]) -> Result<Vec<Uuid>, Vec<Uuid>> {
    let decision = holders.len() > 1 || holders.iter().any(|h| h.protected);
    let unnamed: Vec<Uuid> = holders
        .iter()
        .map(|h| h.contact_id)
        .filter(|id| !subject.contact_ids.contains(id))
        .collect();
    if decision && !unnamed.is_empty() {
        return Err(holders.iter().map(|h| h.contact_id).collect());
    }
    let mut targets = subject.contact_ids.clone();
    targets.extend(unnamed);
    Ok(targets)
}

/// What stays of a call note once its caller was erased: ids, times, agent and employee.
pub fn redacted_note(note: &CallNote, at: DateTime<Utc>) -> CallNote {
    CallNote {
        caller: Caller::default(),
        subject: String::new(),
        text: String::new(),
        deliveries: note
            .deliveries
            .iter()
            .map(|d| crate::call_note::MessageDelivery {
                text: String::new(),
                ..d.clone()
            })
            .collect(),
        redact_time: Some(note.redact_time.unwrap_or(at)),
        ..note.clone()
    }
}

/// What a redacted copy of an erased contact keeps (in the change history): ids, times,
/// categories and the keep flag.
pub fn redacted_contact(contact: &Contact) -> Contact {
    Contact {
        fields: ContactFields {
            categories: contact.fields.categories.clone(),
            keep_permanently: contact.fields.keep_permanently,
            ..ContactFields::default()
        },
        caller_message: None,
        ..contact.clone()
    }
}

/// An undelivered-message record without its text.
pub fn redacted_undelivered(record: &UndeliveredMessage) -> UndeliveredMessage {
    UndeliveredMessage {
        text: String::new(),
        ..record.clone()
    }
}

/// A recorded change with the resource it carries redacted: what the change history keeps of
/// an erased caller.
pub fn redacted_change(change: &Change, at: DateTime<Utc>) -> Change {
    match change {
        Change::ContactCreated(c) => Change::ContactCreated(redacted_contact(c)),
        Change::ContactUpdated(c) => Change::ContactUpdated(redacted_contact(c)),
        Change::CallNoteCreated(n) => Change::CallNoteCreated(redacted_note(n, at)),
        Change::CallNoteLinked(n) => Change::CallNoteLinked(redacted_note(n, at)),
        Change::CallNoteRedacted(n) => Change::CallNoteRedacted(redacted_note(n, at)),
        Change::MessageDelivered {
            message_id,
            call_note,
        } => Change::MessageDelivered {
            message_id: *message_id,
            call_note: redacted_note(call_note, at),
        },
        Change::MessageExpired {
            contact_id,
            message_id,
            record,
        } => Change::MessageExpired {
            contact_id: *contact_id,
            message_id: *message_id,
            record: record.as_ref().map(redacted_undelivered),
        },
        Change::MessageReplaced {
            contact_id,
            message_id,
            record,
        } => Change::MessageReplaced {
            contact_id: *contact_id,
            message_id: *message_id,
            record: record.as_ref().map(redacted_undelivered),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ids: &[&str]) -> HashKeys {
        HashKeys::new(
            ids.iter()
                .map(|id| HashKey {
                    id: (*id).into(),
                    secret: format!("{id:0>40}").into_bytes(),
                })
                .collect(),
        )
        .unwrap()
    }

    fn e164(s: &str) -> E164 {
        phone::normalize(s, &Region::germany()).unwrap().unwrap()
    }

    #[test]
    fn hashes_depend_on_key_account_and_number_and_survive_rotation() {
        let n = e164("030 1234567");
        let old = keys(&["k1"]).hashes("acme", &n);
        let rotated = keys(&["k2", "k1"]).hashes("acme", &n);
        assert_eq!(rotated.len(), 2);
        assert_eq!(rotated[0].key_id, "k2");
        assert_eq!(rotated[1], old[0], "the old key still finds the old hash");
        assert_ne!(rotated[0].hash, old[0].hash);
        assert_ne!(keys(&["k1"]).hashes("other", &n), old);
        assert_ne!(keys(&["k1"]).hashes("acme", &e164("030 1234568")), old);
        assert_eq!(old[0].hash.len(), 32);
        assert_eq!(
            keys(&["k2", "k1"]).hash_with("k1", "acme", n.as_str()),
            Some(old[0].hash.clone())
        );
        assert_eq!(keys(&["k2"]).hash_with("k1", "acme", n.as_str()), None);
    }

    #[test]
    fn weak_or_repeated_keys_are_refused() {
        let short = HashKey {
            id: "k".into(),
            secret: b"short".to_vec(),
        };
        assert!(HashKeys::new(vec![short]).is_err());
        let k = HashKey {
            id: "k1".into(),
            secret: vec![7; 32],
        };
        assert!(HashKeys::new(vec![k.clone(), k]).is_err());
    }

    #[test]
    fn a_subject_needs_a_number_or_ids() {
        let de = Region::germany();
        let e = Subject::parse("", &[], &de).unwrap_err();
        assert_eq!(e.iter().next().unwrap().field, "phone_number");
        let e = Subject::parse("abc", &["nope".into()], &de).unwrap_err();
        let fields: Vec<_> = e.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["phone_number", "contact_ids[0]"]);
        let s = Subject::parse("+49 30 1234567", &[], &de).unwrap();
        assert_eq!(s.number.unwrap().as_str(), "+49301234567");
    }

    #[test]
    fn several_or_protected_holders_must_be_named() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let by_number = Subject {
            number: Some(e164("030 1234567")),
            contact_ids: vec![],
        };
        let plain = |id| Holder {
            contact_id: id,
            protected: false,
        };
        assert_eq!(erasure_targets(&by_number, &[]), Ok(vec![]));
        assert_eq!(erasure_targets(&by_number, &[plain(a)]), Ok(vec![a]));
        assert_eq!(
            erasure_targets(&by_number, &[plain(a), plain(b)]),
            Err(vec![a, b])
        );
        let kept = Holder {
            contact_id: a,
            protected: true,
        };
        assert_eq!(
            erasure_targets(&by_number, std::slice::from_ref(&kept)),
            Err(vec![a])
        );
        let named = Subject {
            contact_ids: vec![a, b],
            ..by_number.clone()
        };
        assert_eq!(
            erasure_targets(&named, &[plain(a), plain(b)]),
            Ok(vec![a, b])
        );
        let half = Subject {
            contact_ids: vec![a],
            ..by_number
        };
        assert_eq!(
            erasure_targets(&half, &[plain(a), plain(b)]),
            Err(vec![a, b])
        );
    }
}
