//! `Secret`: a configuration value that must never print, such as a URL with a password.

use std::fmt;

/// A value that must never be printed, such as a URL with a password.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn a_secret_never_prints_its_value() {
        let s: Secret = "postgres://u:hunter2@h/db".parse().unwrap();
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(s.expose(), "postgres://u:hunter2@h/db");
    }
}
