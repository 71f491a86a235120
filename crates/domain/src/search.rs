//! Searching an account's contacts (`SearchContacts`): what a search may ask, how a number
//! prefix reads, and the order of a ranked search that its pages follow.
//!
//! A search by name or company is ranked by [`identification::rank`], the rule of incoming
//! calls; its pages walk that ranking in (score descending, contact id) order, and a page
//! token holds the last result's place in it, so a page never repeats or skips a result of
//! the ranking that an earlier page passed.

use crate::contact::Origin;
use crate::identification::{self, Caller, CallerMatch};
use crate::phone::{self, Region};
use crate::validation::text;
use std::cmp::Ordering;
use uuid::Uuid;

/// How deep a ranked search goes: its candidates and its results.
pub const MAX_DEPTH: usize = 500;

/// The longest name or company text a search takes, as a contact's name field.
pub const MAX_QUERY_CHARS: usize = crate::contact::MAX_NAME_CHARS;

/// E.164 allows 15 digits after the `+`.
const MAX_DIGITS: usize = 15;

/// What a search looks for: a name or company text that ranks, and filters that narrow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    /// The name or company text, trimmed; `None` lists newest first.
    pub query: Option<String>,
    pub number: Option<NumberPrefix>,
    pub category: Option<String>,
    pub origin: Option<Origin>,
}

impl Search {
    /// The query text as typed: at most [`MAX_QUERY_CHARS`], empty (or blank) for none.
    pub fn query(raw: &str) -> Result<Option<String>, String> {
        let q = text(raw, MAX_QUERY_CHARS)?;
        Ok((!q.is_empty()).then_some(q))
    }
}

/// The start of an E.164 number: `+` and 1 to 15 digits. Every stored number that starts with
/// it matches, the number itself included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPrefix(String);

impl NumberPrefix {
    /// `+` and digits, spaces and dashes between them ignored (`+49 30`, `+49-30-12`), is a
    /// prefix as given, checked for form only: `+4930` is no number, but every Berlin number
    /// starts with it. Anything else must be a complete number, read as every RPC reads one
    /// (national numbers in `region`, the account's: `030 1234567`, `0049 30 1234567`), and is
    /// the prefix of itself and of its extensions.
    pub fn parse(input: &str, region: &Region) -> Result<NumberPrefix, String> {
        let input = input.trim();
        if let Some(rest) = input.strip_prefix('+')
            && rest
                .chars()
                .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        {
            let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
            return match digits.len() {
                0 => Err("must have digits after the +".into()),
                n if n > MAX_DIGITS => Err(format!("must have at most {MAX_DIGITS} digits")),
                _ if digits.starts_with('0') => Err("a country code never starts with 0".into()),
                _ => Ok(NumberPrefix(format!("+{digits}"))),
            };
        }
        match phone::normalize(input, region) {
            Ok(Some(e164)) => Ok(NumberPrefix(e164.into_string())),
            Ok(None) => Err("is not a phone number".into()),
            Err(e) => Err(format!(
                "is neither a prefix of an E.164 number (+4930) nor a phone number: {e}"
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first string after every number with this prefix in byte order, the prefix's last
    /// digit raised by one (`+4930` → `+4931`, `+4939` → `+493:`): the numbers with the prefix
    /// are exactly those in `[prefix, upper_bound)` under the "C" collation.
    pub fn upper_bound(&self) -> String {
        let mut s = self.0.clone();
        let last = s.pop().map_or(b'+', |c| c as u8);
        s.push(char::from(last + 1));
        s
    }
}

/// The place of a result in a ranked search, in the order pages follow: score descending,
/// then contact id ascending. A page token carries the last result's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankedPosition {
    pub score: f64,
    pub contact_id: Uuid,
}

impl RankedPosition {
    pub fn of(m: &CallerMatch) -> RankedPosition {
        RankedPosition {
            score: m.score,
            contact_id: m.contact.contact_id,
        }
    }

    fn order(&self, other: &RankedPosition) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.contact_id.cmp(&other.contact_id))
    }
}

/// One page of a ranked search: `caller` (the query, no number) over `candidates`, ranked by
/// [`identification::rank`] at most [`MAX_DEPTH`] deep, in [`RankedPosition`] order, the
/// first `size` after `after`; and the position to continue after, when more follow.
///
/// The score alone decides the order; only equal scores fall back on the id, which unlike the
/// last activity that [`identification::rank`] breaks ties by does not change between pages.
pub fn ranked_page(
    caller: &Caller,
    candidates: Vec<crate::contact::Contact>,
    after: Option<RankedPosition>,
    size: usize,
) -> (Vec<CallerMatch>, Option<RankedPosition>) {
    let mut matches = identification::rank(caller, candidates, MAX_DEPTH).matches;
    matches.sort_by(|a, b| RankedPosition::of(a).order(&RankedPosition::of(b)));
    let mut page: Vec<CallerMatch> = matches
        .into_iter()
        .filter(|m| after.is_none_or(|a| a.order(&RankedPosition::of(m)) == Ordering::Less))
        .take(size + 1)
        .collect();
    let more = page.len() > size;
    page.truncate(size);
    let next = if more {
        page.last().map(RankedPosition::of)
    } else {
        None
    };
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::{Contact, ContactFields};
    use crate::identification::{CallerName, WordCounts};
    use chrono::{Duration, TimeZone, Utc};

    /// Namesakes (equal scores) whose last activity orders them against their ids, and others.
    fn contacts() -> Vec<Contact> {
        let t = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let names = [
            "Müller", "Müller", "Müller", "Mueller", "Möller", "Müller", "Muller", "Schmidt",
        ];
        names
            .iter()
            .enumerate()
            .map(|(i, last)| Contact {
                account_id: "acc".into(),
                contact_id: Uuid::from_u128(i as u128 + 1),
                fields: ContactFields {
                    first_name: "Hans".into(),
                    last_name: (*last).into(),
                    ..ContactFields::default()
                },
                caller_message: None,
                origin: Origin::Manual,
                create_time: t,
                update_time: t,
                // The later id, the later activity: the ranking breaks ties the other way round.
                last_activity_time: t + Duration::days(i as i64),
                version: 1,
            })
            .collect()
    }

    #[test]
    fn pages_of_a_ranked_search_are_the_whole_ranking_by_score_then_id() {
        let name = CallerName::parse("Hans Müller");
        let counts = WordCounts::new();
        let caller = Caller {
            number: None,
            name: &name,
            counts: &counts,
        };
        let (whole, next) = ranked_page(&caller, contacts(), None, MAX_DEPTH);
        assert_eq!(next, None);
        assert_eq!(whole.len(), 7, "Schmidt is no match");
        for w in whole.windows(2) {
            let (a, b) = (RankedPosition::of(&w[0]), RankedPosition::of(&w[1]));
            assert!(
                a.score > b.score || (a.score == b.score && a.contact_id < b.contact_id),
                "{a:?} before {b:?}"
            );
        }
        assert!(
            whole.windows(2).any(|w| w[0].score == w[1].score),
            "namesakes tie"
        );
        for size in 1..=7 {
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let (page, next) = ranked_page(&caller, contacts(), after, size);
                assert!(page.len() <= size);
                seen.extend(page.iter().map(|m| m.contact.contact_id));
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            let want: Vec<Uuid> = whole.iter().map(|m| m.contact.contact_id).collect();
            assert_eq!(seen, want, "pages of {size}");
        }
    }

    fn prefix(s: &str) -> Result<String, String> {
        NumberPrefix::parse(s, &Region::germany()).map(|p| p.0)
    }

    #[test]
    fn a_number_prefix_is_plus_and_digits_or_a_whole_number_of_the_region() {
        assert_eq!(prefix("+4930").unwrap(), "+4930");
        assert_eq!(prefix(" +49 30-12 ").unwrap(), "+493012");
        assert_eq!(prefix("+4").unwrap(), "+4");
        assert_eq!(prefix("030 1234567").unwrap(), "+49301234567");
        assert_eq!(prefix("0049 30 1234567").unwrap(), "+49301234567");
        assert_eq!(prefix("+49 (0)30 1234567").unwrap(), "+49301234567");
        for bad in [
            "+",
            "+ -",
            "+0049",
            "+1234567890123456",
            "030",
            "abc",
            "+49x",
            "anonymous",
        ] {
            assert!(prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_upper_bound_follows_every_number_with_the_prefix_and_nothing_else() {
        let p = NumberPrefix::parse("+4939", &Region::germany()).unwrap();
        let upper = p.upper_bound();
        assert_eq!(upper, "+493:");
        for inside in ["+4939", "+49390", "+493999999999"] {
            assert!(inside >= p.as_str() && inside < upper.as_str(), "{inside}");
        }
        for outside in ["+4938999", "+494", "+49", "+5"] {
            assert!(
                !(outside >= p.as_str() && outside < upper.as_str()),
                "{outside}"
            );
        }
    }

    #[test]
    fn a_blank_query_is_none_and_a_long_one_is_refused() {
        assert_eq!(Search::query("  "), Ok(None));
        assert_eq!(Search::query(" Müller "), Ok(Some("Müller".into())));
        assert!(Search::query(&"x".repeat(MAX_QUERY_CHARS + 1)).is_err());
    }
}
