//! Names for search: folding (case, accents, German spellings), the tokens that are stored and
//! trigram-indexed per contact, and Kölner Phonetik keys for Meier/Meyer-type variants.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Salutations and titles: they say nothing about who is calling. `von`/`van`/`de` are not
/// here: they are part of surnames.
const TITLES: &[&str] = &[
    "herr", "frau", "hr", "fr", "mr", "mrs", "ms", "dr", "dres", "prof", "med", "dent", "rer",
    "dipl", "ing", "mag", "mba",
];

/// Legal forms around company names ("e.K." folds to single letters, dropped anyway).
const COMPANY_FORMS: &[&str] = &[
    "firma", "gmbh", "mbh", "ag", "kg", "kgaa", "ohg", "gbr", "ug", "ek", "co", "se", "partg",
    "mbb", "ltd", "inc", "llc",
];

/// A folded salutation or title ("herr", "dr"): it says something about the caller, but is no
/// name.
pub fn is_title(folded: &str) -> bool {
    TITLES.contains(&folded)
}

/// A folded legal form or "firma": it says the caller is a company, but is no name.
pub fn is_company_form(folded: &str) -> bool {
    COMPANY_FORMS.contains(&folded)
}

/// Lower case, `ä→ae ö→oe ü→ue ß→ss`, other accents stripped, every run of other characters
/// one space, trimmed. Letters of other scripts are kept (lower-cased).
pub fn fold(s: &str) -> String {
    if s.is_ascii() {
        fold_ascii(s)
    } else {
        fold_unicode(s)
    }
}

/// [`fold`] of ASCII text, where NFC, NFKD and marks change nothing: most names, and the
/// ranking of one lookup folds some hundred of them.
fn fold_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_folded(&mut out, &mut false, s);
    // Lower-casing ASCII keeps what is alphanumeric: done on the output, in place.
    out.make_ascii_lowercase();
    out
}

fn fold_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    // NFC first so a decomposed "u\u{308}" is recognised as ü and becomes "ue", not "u".
    for c in s.nfc().flat_map(char::to_lowercase) {
        match c {
            'ä' => push_folded(&mut out, &mut gap, "ae"),
            'ö' => push_folded(&mut out, &mut gap, "oe"),
            'ü' => push_folded(&mut out, &mut gap, "ue"),
            'ß' => push_folded(&mut out, &mut gap, "ss"),
            _ => {
                // NFKD splits "é" into "e" + mark and maps compatibility forms ("ﬁ", "𝔐") to
                // plain letters, which may be upper case again.
                for base in c.nfkd().filter(|d| !is_combining_mark(*d)) {
                    for l in base.to_lowercase() {
                        let mut buf = [0u8; 4];
                        push_folded(
                            &mut out,
                            &mut gap,
                            latin_base(l).unwrap_or(l.encode_utf8(&mut buf)),
                        );
                    }
                }
            }
        }
    }
    out
}

/// Appends alphanumeric characters of `s`; anything else only marks a gap, written as one
/// space before the next character, so the result is trimmed and single-spaced.
fn push_folded(out: &mut String, gap: &mut bool, s: &str) {
    for c in s.chars() {
        if c.is_alphanumeric() {
            if *gap && !out.is_empty() {
                out.push(' ');
            }
            *gap = false;
            out.push(c);
        } else {
            *gap = true;
        }
    }
}

/// Latin letters that NFKD does not split into a base letter plus marks.
fn latin_base(c: char) -> Option<&'static str> {
    Some(match c {
        'ø' => "o",
        'ł' => "l",
        'đ' | 'ð' => "d",
        'ħ' => "h",
        'ı' => "i",
        'ŧ' => "t",
        'æ' => "ae",
        'œ' => "oe",
        'þ' => "th",
        'ĸ' => "k",
        'ŋ' => "n",
        _ => return None,
    })
}

/// The words of a name worth searching for: folded, without salutations, titles, company forms
/// and single characters (left over from abbreviations like "e.K."); order kept, duplicates
/// dropped.
pub fn search_tokens(s: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    for token in fold(s).split(' ') {
        if token.chars().nth(1).is_none() || is_title(token) || is_company_form(token) {
            continue;
        }
        if !tokens.iter().any(|t| t == token) {
            tokens.push(token.to_owned());
        }
    }
    tokens
}

/// Kölner Phonetik (Postel 1969) code of one word, as described at
/// <https://de.wikipedia.org/wiki/K%C3%B6lner_Phonetik>: letters map to digits with context
/// rules for C, D/T, P and X; repeated digits collapse; `0` (vowels) is dropped except at the
/// start. The word is folded first, so ü counts as "ue"; non-letters are skipped.
///
/// Like every phonetic code it is coarse: Müller, Möller and Miller, or Schulz and Scholz, share
/// a code. Ranking therefore also uses trigram similarity of the folded text.
pub fn koelner_phonetik(word: &str) -> String {
    let letters: Vec<u8> = fold(word).bytes().filter(u8::is_ascii_lowercase).collect();
    let mut digits: Vec<u8> = Vec::with_capacity(letters.len() + 2);
    for (i, &c) in letters.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| letters[p]);
        let next = letters.get(i + 1).copied();
        let next_in = |set: &[u8]| next.is_some_and(|n| set.contains(&n));
        let prev_in = |set: &[u8]| prev.is_some_and(|p| set.contains(&p));
        let code: &[u8] = match c {
            b'a' | b'e' | b'i' | b'j' | b'o' | b'u' | b'y' => b"0",
            b'h' => b"",
            b'b' => b"1",
            b'p' if next == Some(b'h') => b"3",
            b'p' => b"1",
            b'd' | b't' if next_in(b"csz") => b"8",
            b'd' | b't' => b"2",
            b'f' | b'v' | b'w' => b"3",
            b'g' | b'k' | b'q' => b"4",
            b'c' if prev_in(b"sz") => b"8",
            b'c' if i == 0 && next_in(b"ahkloqrux") => b"4",
            b'c' if i > 0 && next_in(b"ahkoqux") => b"4",
            b'c' => b"8",
            b'x' if prev_in(b"ckq") => b"8",
            b'x' => b"48",
            b'l' => b"5",
            b'm' | b'n' => b"6",
            b'r' => b"7",
            b's' | b'z' => b"8",
            _ => b"",
        };
        for &d in code {
            if digits.last() != Some(&d) {
                digits.push(d);
            }
        }
    }
    digits
        .iter()
        .enumerate()
        .filter(|&(i, &d)| i == 0 || d != b'0')
        .map(|(_, &d)| char::from(d))
        .collect()
}

/// The [`koelner_phonetik`] code of a word when it says enough to make phonetic twins: at
/// least two consonant digits ("02" for Ott and Ada would pair far too many words).
pub fn telling_phonetic_code(word: &str) -> Option<String> {
    let code = koelner_phonetik(word);
    (code.bytes().filter(|&d| d != b'0').count() >= 2).then_some(code)
}

/// Kölner Phonetik of each search token; empty codes dropped, duplicates dropped, order kept.
pub fn phonetic_keys(s: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for token in search_tokens(s) {
        let key = koelner_phonetik(&token);
        if !key.is_empty() && !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The search text stored per contact (and indexed with `pg_trgm`): the search tokens of all
/// parts, joined by one space.
pub fn search_text(parts: &[&str]) -> String {
    search_tokens(&parts.join(" ")).join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_table() {
        let cases: &[(&str, &str)] = &[
            ("Müller", "mueller"),
            ("MÜLLER", "mueller"),
            ("Mu\u{308}ller", "mueller"),
            ("Straße", "strasse"),
            ("STRAẞE", "strasse"),
            ("Ärger Öl Übel", "aerger oel uebel"),
            ("José  Ñúñez-Gómez", "jose nunez gomez"),
            ("François Çelik", "francois celik"),
            ("Søren Łukasz Ångström", "soren lukasz angstroem"),
            ("Dvořák", "dvorak"),
            ("Œuvre Æsir", "oeuvre aesir"),
            ("  Dr. Müller,  Hans ", "dr mueller hans"),
            ("O'Brien", "o brien"),
            ("ﬁnk", "fink"),
            ("Иван Петров", "иван петров"),
            ("İstanbul", "istanbul"),
            ("", ""),
            ("  --  ", ""),
            ("3M", "3m"),
        ];
        for (input, expected) in cases {
            assert_eq!(fold(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn ascii_folds_as_the_unicode_path_does() {
        let mut cases: Vec<String> = (0u8..128).map(|b| format!("a{}b", char::from(b))).collect();
        cases.extend(
            [
                "  Dr. MÜLLER-Lüdenscheidt, Hans ",
                "O'Brien & Co. KG",
                "3M\tGmbH\n",
                "",
            ]
            .iter()
            .map(|s| s.replace(['Ü', 'ü'], "u")),
        );
        for case in &cases {
            assert!(case.is_ascii());
            assert_eq!(fold_ascii(case), fold_unicode(case), "{case:?}");
        }
    }

    #[test]
    fn search_tokens_table() {
        let cases: &[(&str, &[&str])] = &[
            ("Dr. Müller", &["mueller"]),
            ("Mueller, Hans", &["mueller", "hans"]),
            ("Firma Schulze GmbH", &["schulze"]),
            ("Meier & Co. KG", &["meier"]),
            (
                "Herr Prof. Dr. med. Hans-Peter Schmidt",
                &["hans", "peter", "schmidt"],
            ),
            ("Schmidt e.K.", &["schmidt"]),
            ("Frau Dipl.-Ing. Anna von Berg", &["anna", "von", "berg"]),
            ("Jan van der Berg", &["jan", "van", "der", "berg"]),
            ("Müller GmbH & Co. KGaA", &["mueller"]),
            (
                "Schulze UG (haftungsbeschränkt)",
                &["schulze", "haftungsbeschraenkt"],
            ),
            ("Müller Mueller müller", &["mueller"]),
            ("Hans J. Meier", &["hans", "meier"]),
            ("Acme Ltd.", &["acme"]),
            ("Herr Dr.", &[]),
            ("", &[]),
        ];
        for (input, expected) in cases {
            assert_eq!(search_tokens(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn koelner_phonetik_table() {
        let cases: &[(&str, &str)] = &[
            ("Wikipedia", "3412"),
            ("Müller-Lüdenscheidt", "65752682"),
            ("Breschnew", "17863"),
            ("Müller", "657"),
            ("Mueller", "657"),
            ("Muller", "657"),
            ("Meier", "67"),
            ("Schmidt", "862"),
            ("Anton", "0626"),
            ("Philipp", "351"),
            ("Xaver", "4837"),
            ("Hexe", "048"),
            ("Axel", "0485"),
            ("Cäsar", "487"),
            ("Celle", "85"),
            ("Christoph", "47823"),
            ("Carl", "475"),
            ("Zacharias", "8478"),
            ("Schatz", "88"),
            ("Raps", "718"),
            ("", ""),
            ("h", ""),
            ("123", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(koelner_phonetik(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn phonetic_variants_share_a_code() {
        let groups: &[&[&str]] = &[
            &["Müller", "Mueller", "Muller", "Möller", "Miller"],
            &["Meier", "Meyer", "Maier", "Mayer"],
            &["Schmidt", "Schmitt", "Schmid"],
            &["Schulz", "Scholz"],
        ];
        for group in groups {
            let first = koelner_phonetik(group[0]);
            for name in group.iter() {
                assert_eq!(koelner_phonetik(name), first, "{name} vs {}", group[0]);
            }
        }
    }

    #[test]
    fn different_names_differ() {
        for (a, b) in [
            ("Schmidt", "Schneider"),
            ("Meier", "Bauer"),
            ("Müller", "Schulze"),
            ("Fischer", "Wagner"),
        ] {
            assert_ne!(koelner_phonetik(a), koelner_phonetik(b), "{a} vs {b}");
        }
    }

    #[test]
    fn phonetic_keys_table() {
        let cases: &[(&str, &[&str])] = &[
            ("Dr. Müller", &["657"]),
            ("Müller-Lüdenscheidt", &["657", "52682"]),
            ("Herr Hans Meier", &["068", "67"]),
            ("Meier Meyer", &["67"]),
            ("Firma Schulze GmbH", &["858"]),
            ("Mr 42", &[]),
            ("", &[]),
        ];
        for (input, expected) in cases {
            assert_eq!(phonetic_keys(input), *expected, "{input:?}");
        }
    }

    #[test]
    fn search_text_joins_parts() {
        assert_eq!(
            search_text(&["Hans", "Müller", "Müller & Söhne GmbH"]),
            "hans mueller soehne"
        );
        assert_eq!(search_text(&["Dr.", "", "Schmidt e.K."]), "schmidt");
        assert_eq!(search_text(&[]), "");
    }

    #[test]
    fn never_panics_on_odd_input() {
        let big = "Müller-🙂-e\u{301}\u{301}ß ".repeat(500);
        assert!(big.len() > 10_000);
        let odd = [
            "",
            " ",
            "🙂🙃",
            "\u{301}\u{308}",
            "a\u{301}\u{302}\u{303}\u{304}",
            "\u{0}\u{1}\u{7f}",
            "\u{feff}Müller\u{200b}",
            "ǅ ǈ ǋ",
            "ﷺ",
            "𝔐𝔲𝔩𝔩𝔢𝔯",
            "Ⅻ",
            "x",
            "c",
            "xc",
            "ph",
            "\u{10ffff}",
            big.as_str(),
        ];
        for input in odd {
            let folded = fold(input);
            assert!(!folded.starts_with(' ') && !folded.ends_with(' '));
            assert!(!folded.contains("  "));
            let _ = search_tokens(input);
            let _ = koelner_phonetik(input);
            let _ = phonetic_keys(input);
            let _ = search_text(&[input, input]);
        }
    }
}
