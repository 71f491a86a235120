//! The server's page-token codec (its private module, compiled in here from the server's own
//! source): any token string decodes to a value or a refusal, never a panic, and what the server
//! encodes decodes back to the same position, for its query only.

#![no_main]

#[allow(dead_code)]
#[path = "../../crates/server/src/page_token.rs"]
mod page_token;

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

fuzz_target!(|input: (String, String, u128, i64)| {
    let (query, token, id, secs) = input;
    let _ = page_token::decode::<Uuid>(&query, &token);
    let _ = page_token::decode::<(DateTime<Utc>, Uuid)>(&query, &token);
    let _ = page_token::decode::<(DateTime<Utc>, DateTime<Utc>, Uuid)>(&query, &token);
    let _ = page_token::decode::<serde_json::Value>(&query, &token);
    // Tokens are base64 of JSON: also feed the JSON itself, base64-encoded, to reach the parser.
    use base64::Engine;
    let wrapped = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.as_bytes());
    let _ = page_token::decode::<(DateTime<Utc>, Uuid)>(&query, &wrapped);

    let id = Uuid::from_u128(id);
    let t = page_token::encode(&query, &id);
    if t.len() <= 1024 {
        assert_eq!(page_token::decode::<Uuid>(&query, &t), Ok(Some(id)));
        let other = format!("{query}x");
        assert!(
            page_token::decode::<Uuid>(&other, &t).is_err(),
            "token of another query"
        );
    }
    if let Some(at) = DateTime::<Utc>::from_timestamp(secs % 253_402_300_799, 0) {
        let t = page_token::encode(&query, &(at, id));
        if t.len() <= 1024 {
            assert_eq!(
                page_token::decode::<(DateTime<Utc>, Uuid)>(&query, &t),
                Ok(Some((at, id)))
            );
        }
    }
    let _ = page_token::page_size(secs as i32);
});
