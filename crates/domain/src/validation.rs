//! Field violations and the small validated scalars every request carries.

use std::fmt;

/// One bad field: `field` is the request path (`contact.phone_numbers[2].number`); the
/// description never quotes the value, which may be personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

/// All violations found in one request, so a client can fix them in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Violations(Vec<Violation>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid argument")?;
        for (i, v) in self.0.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            write!(f, "{sep}{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut v = Self::new();
        v.add(field, description);
        v
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation {
            field: field.into(),
            description: description.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found, else all violations.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Keeps the value of a check and records its failure under `field`.
    pub fn check<T>(&mut self, field: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(d) => {
                self.add(field, d);
                None
            }
        }
    }

    /// Keeps the value of a nested parse and records all its violations, which already carry
    /// their field paths.
    pub fn absorb<T>(&mut self, r: Result<T, Violations>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.0);
                None
            }
        }
    }

    /// The parsed value when nothing was found, else all violations. `value` is `None` only
    /// when a [`check`](Self::check) or [`absorb`](Self::absorb) failed, which recorded why.
    pub fn finish<T>(self, value: Option<T>) -> Result<T, Violations> {
        match value {
            Some(value) if self.is_empty() => Ok(value),
            _ => {
                debug_assert!(!self.is_empty(), "a check failed without a violation");
                Err(self)
            }
        }
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Violation> {
        self.0.iter()
    }
}

impl IntoIterator for Violations {
    type Item = Violation;
    type IntoIter = std::vec::IntoIter<Violation>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Checks a free text against a limit counted in characters, as API.md states limits.
pub fn text(value: &str, max_chars: usize) -> Result<String, String> {
    let n = value.chars().count();
    if n > max_chars {
        return Err(format!("must be at most {max_chars} characters, got {n}"));
    }
    if value.chars().any(|c| c == '\0') {
        return Err("must not contain NUL characters".into());
    }
    Ok(value.trim().to_owned())
}

/// The tenant: 1–64 of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("is required".into());
        }
        if s.len() > 64 {
            return Err("must be at most 64 characters".into());
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err("may contain only A-Z, a-z, 0-9, '.', '_' and '-'".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A server-made id in text form.
pub fn uuid(s: &str) -> Result<uuid::Uuid, String> {
    if s.is_empty() {
        return Err("is required".into());
    }
    uuid::Uuid::try_parse(s).map_err(|_| "must be a UUID".into())
}

/// A client-chosen reference such as an employee or agent id: free form but bounded.
pub fn reference(s: &str, required: bool) -> Result<String, String> {
    if s.is_empty() && required {
        return Err("is required".into());
    }
    if s.len() > 128 {
        return Err("must be at most 128 bytes".into());
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_follow_the_contract() {
        for ok in ["a", "acme-01", "A.b_c-9", &"x".repeat(64)] {
            assert!(AccountId::parse(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in ["", "with space", "ümlaut", "a/b", &"x".repeat(65), "a\nb"] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert!(text(&"ü".repeat(200), 200).is_ok());
        assert!(text(&"ü".repeat(201), 200).is_err());
        assert!(text("a\0b", 10).is_err());
    }

    #[test]
    fn violations_display_names_every_field() {
        let mut v = Violations::new();
        v.add("a", "is required");
        v.add("b.c", "must be a UUID");
        assert_eq!(
            v.to_string(),
            "invalid argument: a: is required; b.c: must be a UUID"
        );
    }

    #[test]
    fn nested_violations_are_kept_with_their_paths() {
        let mut v = Violations::single("a", "is required");
        assert_eq!(v.absorb(Ok::<_, Violations>(1)), Some(1));
        let nested = Err::<u8, _>(Violations::single("c.d", "must be a UUID"));
        assert_eq!(v.absorb(nested), None);
        let fields: Vec<_> = v.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(fields, ["a", "c.d"]);
        assert!(v.finish(Some(1)).is_err());
        assert_eq!(Violations::new().finish(Some(1)), Ok(1));
    }

    #[test]
    fn uuids_and_references() {
        assert!(uuid("").is_err());
        assert!(uuid("nope").is_err());
        assert!(uuid("0190d5a4-7b2c-7cc0-8000-000000000000").is_ok());
        assert!(reference("", true).is_err());
        assert!(reference("", false).is_ok());
        assert!(reference(&"e".repeat(129), false).is_err());
    }
}
