//! Caller-ID health measured from real calls: what one `IdentifyCaller` call says about the
//! caller's number, the counts kept of it (counts only, never a number, name or time of a
//! call), and what the shares over a rolling window tell the customer.

use crate::identification::{MatchKind, Ranking};

/// The window counts are judged over.
pub const WINDOW_DAYS: i64 = 30;
/// Fewer calls than this tell nothing either way.
pub const MIN_CALLS: i64 = 20;
/// A larger share of calls without a usable number means caller IDs do not arrive: callers who
/// suppress their number are a minority.
pub const MAX_WITHOUT_NUMBER_SHARE: f64 = 0.4;
/// A larger share of calls presenting the account's own number means the forwarding passes its
/// own number instead of the caller's: a caller calling from an own line is rare.
pub const MAX_OWN_NUMBER_SHARE: f64 = 0.1;

/// What one call's number was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// No number, or none that can be read as a phone number.
    WithoutNumber,
    /// One of the account's own lines, not the caller's.
    OwnNumber,
    /// The number found a contact.
    NumberFound,
    /// A usable number that found nobody (a new caller).
    NumberNotFound,
}

impl CallOutcome {
    /// `number_usable`: the call carried a number that reads as a valid one; `own`: it is one
    /// of the account's own lines.
    pub fn of(number_usable: bool, own: bool, ranking: &Ranking) -> CallOutcome {
        if own {
            CallOutcome::OwnNumber
        } else if !number_usable {
            CallOutcome::WithoutNumber
        } else if ranking
            .matches
            .iter()
            .any(|m| m.matched_by != MatchKind::Name)
        {
            CallOutcome::NumberFound
        } else {
            CallOutcome::NumberNotFound
        }
    }
}

/// Calls counted over some days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub calls: i64,
    pub without_number: i64,
    pub own_number: i64,
    pub number_found: i64,
}

impl CallCounts {
    pub fn add(&mut self, outcome: CallOutcome) {
        self.calls += 1;
        match outcome {
            CallOutcome::WithoutNumber => self.without_number += 1,
            CallOutcome::OwnNumber => self.own_number += 1,
            CallOutcome::NumberFound => self.number_found += 1,
            CallOutcome::NumberNotFound => {}
        }
    }

    pub fn merge(&mut self, other: &CallCounts) {
        self.calls += other.calls;
        self.without_number += other.without_number;
        self.own_number += other.own_number;
        self.number_found += other.number_found;
    }

    pub fn enough(&self) -> bool {
        self.calls >= MIN_CALLS
    }

    fn share(&self, n: i64) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            n as f64 / self.calls as f64
        }
    }

    pub fn without_number_share(&self) -> f64 {
        self.share(self.without_number)
    }

    pub fn own_number_share(&self) -> f64 {
        self.share(self.own_number)
    }

    /// Enough calls, and their numbers arrive: neither share is over its bound.
    pub fn numbers_arrive(&self) -> bool {
        self.enough()
            && self.without_number_share() <= MAX_WITHOUT_NUMBER_SHARE
            && self.own_number_share() <= MAX_OWN_NUMBER_SHARE
    }
}

/// The counts of one scope (an employee's calls, or all of the account's) for recognition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// Empty: all calls of the account.
    pub employee_id: String,
    pub counts: CallCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(calls: i64, without: i64, own: i64) -> CallCounts {
        CallCounts {
            calls,
            without_number: without,
            own_number: own,
            number_found: calls - without - own,
        }
    }

    #[test]
    fn outcomes_count_into_their_column() {
        let mut c = CallCounts::default();
        let none = Ranking::default();
        c.add(CallOutcome::of(false, false, &none));
        c.add(CallOutcome::of(true, true, &none));
        c.add(CallOutcome::of(true, false, &none));
        assert_eq!(
            c,
            CallCounts {
                calls: 3,
                without_number: 1,
                own_number: 1,
                number_found: 0
            }
        );
    }

    #[test]
    fn shares_judge_only_with_enough_calls() {
        assert!(!counts(19, 0, 0).numbers_arrive(), "too few to tell");
        assert!(counts(20, 8, 2).numbers_arrive(), "at the bounds");
        assert!(!counts(20, 9, 0).numbers_arrive());
        assert!(!counts(20, 0, 3).numbers_arrive());
        assert_eq!(counts(50, 29, 0).without_number_share(), 0.58);
        assert_eq!(CallCounts::default().own_number_share(), 0.0);
    }
}
