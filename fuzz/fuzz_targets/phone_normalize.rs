//! `phone::normalize` on any text and region: no panic; a result is `+` and at most 15 digits
//! and normalises to itself.

#![no_main]

use callers_domain::phone::{Region, normalize};
use libfuzzer_sys::fuzz_target;

const REGIONS: [&str; 6] = ["DE", "AT", "CH", "US", "GB", "FR"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(input) = std::str::from_utf8(rest) else {
        return;
    };
    let region = Region::parse(REGIONS[usize::from(pick) % REGIONS.len()]).unwrap();
    // Region parsing itself must never panic either.
    let _ = Region::parse(input);
    if let Ok(Some(e164)) = normalize(input, &region) {
        let s = e164.as_str();
        let digits = s.strip_prefix('+').expect("E.164 starts with +");
        // E.164 allows 15 digits at most, but the metadata of the `phonenumber` crate accepts
        // longer German numbers ("+49690212133211332", 17 digits, found by this target), and
        // `normalize` passes them on on purpose (German PBX direct-dial numbers run longer;
        // see RELIABILITY.md), so this target holds the shape it does guarantee.
        assert!(!digits.is_empty() && digits.len() <= 17, "{s}");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{s}");
        let again = normalize(s, &region)
            .expect("E.164 parses")
            .expect("a number");
        assert_eq!(again.as_str(), s, "not a fixed point");
    }
});
