//! Opaque page tokens: the keyset position plus the query they belong to, so a token used
//! with another account or filter is refused instead of silently skipping rows.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, de::DeserializeOwned};

const MAX_TOKEN_LEN: usize = 1024;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Envelope<T> {
    v: u8,
    /// The query: RPC, account and filters.
    q: String,
    p: T,
}

pub fn encode<T: Serialize>(query: &str, position: &T) -> String {
    let env = Envelope {
        v: 1,
        q: query.to_owned(),
        p: position,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&env).unwrap_or_default())
}

/// `Ok(None)` for the empty token (first page); `Err` with a description for a bad one.
pub fn decode<T: DeserializeOwned>(query: &str, token: &str) -> Result<Option<T>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || "is not a page token of this request".to_owned();
    if token.len() > MAX_TOKEN_LEN {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let env: Envelope<T> = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if env.v != 1 || env.q != query {
        return Err(bad());
    }
    Ok(Some(env.p))
}

/// Page sizes as API.md says: 0 means 50, more than 500 is capped, negative is an error.
pub fn page_size(requested: i32) -> Result<usize, String> {
    match requested {
        n if n < 0 => Err("must not be negative".into()),
        0 => Ok(50),
        n => Ok((n as usize).min(500)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let t = encode("contacts/a/", &42u32);
        assert_eq!(decode::<u32>("contacts/a/", &t).unwrap(), Some(42));
        assert!(decode::<u32>("contacts/b/", &t).is_err());
        assert!(decode::<u32>("contacts/a/", "!!!").is_err());
        assert!(decode::<u32>("contacts/a/", "e30").is_err());
        assert!(decode::<u32>("contacts/a/", &"A".repeat(2000)).is_err());
        assert_eq!(decode::<u32>("contacts/a/", "").unwrap(), None);
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0), Ok(50));
        assert_eq!(page_size(7), Ok(7));
        assert_eq!(page_size(501), Ok(500));
        assert!(page_size(-1).is_err());
    }
}
