//! Name folding and the search keys made from it, on any text: no panic, and the shapes the
//! database indexes rely on.

#![no_main]

use callers_domain::names::{
    fold, koelner_phonetik, phonetic_keys, search_tokens, token_similarity,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let folded = fold(&s);
    assert_eq!(folded.trim(), folded, "not trimmed");
    assert!(!folded.contains("  "), "double space");
    assert!(
        folded.chars().all(|c| c == ' ' || c.is_alphanumeric()),
        "{folded:?}"
    );
    assert!(
        !folded.chars().any(|c| c.is_ascii_uppercase()),
        "{folded:?}"
    );

    let tokens = search_tokens(&s);
    for (i, t) in tokens.iter().enumerate() {
        assert!(t.chars().count() >= 2 && !t.contains(' '), "{t:?}");
        assert!(!tokens[..i].contains(t), "duplicate token {t:?}");
    }
    let keys = phonetic_keys(&s);
    for k in &keys {
        assert!(
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()),
            "{k:?}"
        );
    }
    assert!(koelner_phonetik(&s).bytes().all(|b| b.is_ascii_digit()));

    if let [a, b, ..] = tokens.as_slice() {
        let sim = token_similarity(a, b);
        assert!((0.0..=1.0).contains(&sim), "{sim}");
        assert_eq!(token_similarity(a, a), 1.0);
    }
});
