//! The retention rule: which contacts are deleted automatically, and when.
//!
//! A contact is subject to automatic deletion iff its categories are exactly `{caller}` and it
//! is not kept permanently. It becomes eligible once its last activity lies more than the
//! retention in the past: `purge_time = last_activity_time + retention`, and a purge run at
//! `now` deletes it iff `last_activity_time < now - retention` (that is `purge_time < now`).
//! The server's `purge_time` and the purge worker's SQL are both tested against this module.

use crate::contact::Categories;
use chrono::{DateTime, Duration, Utc};

pub const DEFAULT_RETENTION_DAYS: u32 = 180;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    days: u32,
}

impl Retention {
    /// At least one day; at most 100 years, so time arithmetic cannot overflow.
    pub fn days(days: u32) -> Result<Self, String> {
        if !(1..=36_500).contains(&days) {
            return Err("retention must be between 1 and 36500 days".into());
        }
        Ok(Self { days })
    }

    pub fn as_days(self) -> u32 {
        self.days
    }

    pub fn duration(self) -> Duration {
        Duration::days(i64::from(self.days))
    }

    /// Contacts whose last activity is before the cutoff are due at `now`.
    pub fn cutoff(self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - self.duration()
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            days: DEFAULT_RETENTION_DAYS,
        }
    }
}

pub fn is_subject_to_deletion(categories: &Categories, keep_permanently: bool) -> bool {
    categories.is_caller_only() && !keep_permanently
}

/// When the contact becomes eligible for deletion; `None` when the rule does not apply.
pub fn purge_time(
    categories: &Categories,
    keep_permanently: bool,
    last_activity_time: DateTime<Utc>,
    retention: Retention,
) -> Option<DateTime<Utc>> {
    is_subject_to_deletion(categories, keep_permanently)
        .then(|| last_activity_time + retention.duration())
}

/// Whether a purge run at `now` deletes the contact.
pub fn is_due(
    categories: &Categories,
    keep_permanently: bool,
    last_activity_time: DateTime<Utc>,
    retention: Retention,
    now: DateTime<Utc>,
) -> bool {
    is_subject_to_deletion(categories, keep_permanently)
        && last_activity_time < retention.cutoff(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cats(c: &[&str]) -> Categories {
        Categories::from_stored(c.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn only_caller_only_contacts_that_are_not_kept_have_a_purge_time() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let r = Retention::default();
        let cases = [
            (cats(&["caller"]), false, Some(t + Duration::days(180))),
            (cats(&["caller"]), true, None),
            (cats(&["caller", "customer"]), false, None),
            (cats(&["customer"]), false, None),
            (cats(&[]), false, None),
        ];
        for (c, keep, want) in cases {
            assert_eq!(purge_time(&c, keep, t, r), want, "{c:?} keep={keep}");
        }
    }

    #[test]
    fn due_strictly_after_the_purge_time() {
        let last = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let r = Retention::default();
        let c = cats(&["caller"]);
        let purge = purge_time(&c, false, last, r).unwrap();
        assert!(!is_due(&c, false, last, r, purge - Duration::seconds(1)));
        assert!(!is_due(&c, false, last, r, purge));
        assert!(is_due(
            &c,
            false,
            last,
            r,
            purge + Duration::microseconds(1)
        ));
        assert!(is_due(&c, false, last, r, last + Duration::days(181)));
        assert!(!is_due(&c, false, last, r, last + Duration::days(179)));
        assert!(!is_due(&c, true, last, r, last + Duration::days(400)));
    }

    #[test]
    fn retention_bounds() {
        assert!(Retention::days(0).is_err());
        assert!(Retention::days(1).is_ok());
        assert!(Retention::days(36_501).is_err());
        assert_eq!(Retention::default().as_days(), 180);
    }
}
