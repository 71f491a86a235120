//! Phone numbers: turns what telephony delivers and what people type into E.164, the one form
//! numbers are stored and matched in, and decides when a caller's number is a direct-dial
//! extension of a stored one ([`number_match`]). Parsing, validity and number types come from
//! `phonenumber` (a port of libphonenumber); this module only cleans the input first, so the
//! library sees nothing but an optional `+` and digits.

use std::fmt;
use std::str::FromStr;

use phonenumber::ParseError;
use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;

/// Longest input (after trimming) that is parsed at all; real numbers with separators fit easily.
const MAX_INPUT_CHARS: usize = 64;

/// What telephony sends instead of a number when the caller ID is suppressed.
const NO_NUMBER_WORDS: &[&str] = &[
    "anonymous",
    "unknown",
    "private",
    "withheld",
    "unavailable",
    "restricted",
];

/// Why an input is not a phone number. Messages never contain the input: it is personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("unknown phone region")]
    UnknownRegion,
    #[error("not a phone number")]
    NotANumber,
    #[error("not a valid phone number")]
    Invalid,
    #[error("phone number is too long")]
    TooLong,
}

/// An ISO 3166 alpha-2 region the phone library has metadata for; national numbers are read as
/// numbers of this region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(Id);

impl Region {
    /// Accepts any case and surrounding whitespace (`" de "` is `DE`).
    pub fn parse(s: &str) -> Result<Region, PhoneError> {
        let s = s.trim();
        if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(PhoneError::UnknownRegion);
        }
        let id = Id::from_str(&s.to_ascii_uppercase()).map_err(|_| PhoneError::UnknownRegion)?;
        // The enum lists CLDR ids; only those with numbering metadata can parse numbers.
        if DATABASE.by_id(id.as_ref()).is_none() {
            return Err(PhoneError::UnknownRegion);
        }
        Ok(Region(id))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }

    pub fn germany() -> Region {
        Region(Id::DE)
    }
}

impl TryFrom<String> for Region {
    type Error = PhoneError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Region::parse(&s)
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.as_str().to_owned()
    }
}

impl FromStr for Region {
    type Err = PhoneError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Region::parse(s)
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid phone number in E.164 form, e.g. `+493012345678`. Only [`normalize`] makes one.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct E164(String);

impl E164 {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// A number this crate normalised earlier, read back from storage.
    pub fn from_trusted(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for E164 {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Normalises a phone number to E.164, reading national numbers as numbers of `region`.
///
/// `Ok(None)` means "no number": empty input or a suppressed caller ID (`anonymous`, `unknown`,
/// `private`, `withheld`, `unavailable`, `restricted`). Accepts `+49 30 1234567`, `030/1234567`,
/// `(030) 12 34 56-78`, `+49 (0)30 1234567`, `0049 30 1234567`, `tel:+49-30-1234567` and the like;
/// rejects letters, garbage and numbers the library does not consider valid.
pub fn normalize(input: &str, region: &Region) -> Result<Option<E164>, PhoneError> {
    read(input, region)?.map(Reading::validate).transpose()
}

/// Reads a number as [`normalize`] does, but leaves out the validity check, two thirds of the
/// work (a dozen of the library's patterns per number; BENCHMARKS.md, round 6). A lookup needs
/// no more: only valid numbers are ever stored, so a reading that is not valid finds nobody
/// either way. [`Reading::validate`] completes it; [`Reading::stored_as`] recognises it in a
/// stored number.
pub fn read(input: &str, region: &Region) -> Result<Option<Reading>, PhoneError> {
    let input = input.trim();
    if input.chars().nth(MAX_INPUT_CHARS).is_some() {
        return Err(PhoneError::TooLong);
    }
    if input.is_empty()
        || NO_NUMBER_WORDS
            .iter()
            .any(|word| input.eq_ignore_ascii_case(word))
    {
        return Ok(None);
    }
    let dialable = dialable(input)?;
    let number = phonenumber::parse(Some(region.0), &dialable).map_err(|e| match e {
        ParseError::NoNumber => PhoneError::NotANumber,
        _ => PhoneError::Invalid,
    })?;
    // What the library's E.164 formatter writes, without its search of the national formats
    // first, which E.164 never uses (the test below compares the two).
    let e164 = format!("+{}{}", number.country().code(), number.national());
    // The library's output is the stored key; never store anything but `+` and digits.
    let well_formed =
        e164.len() > 1 && e164.starts_with('+') && e164[1..].bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err(PhoneError::Invalid);
    }
    Ok(Some(Reading { e164, number }))
}

/// A number as [`read`] found it: E.164 in form, not yet known to be valid.
#[derive(Clone, Debug)]
pub struct Reading {
    e164: String,
    number: phonenumber::PhoneNumber,
}

impl Reading {
    /// The E.164 form, to look the number up with.
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The number, if the library considers it valid.
    pub fn validate(self) -> Result<E164, PhoneError> {
        if !self.number.is_valid() {
            return Err(PhoneError::Invalid);
        }
        Ok(E164(self.e164))
    }

    /// `stored` when it is this number: a stored number passed [`normalize`], so no check is
    /// needed.
    pub fn stored_as(&self, stored: &E164) -> Option<E164> {
        (stored.0 == self.e164).then(|| stored.clone())
    }
}

impl PartialEq for Reading {
    fn eq(&self, other: &Self) -> bool {
        self.e164 == other.e164
    }
}

/// Reduces typed input to an optional leading `+` and digits, so that the parser (which has had
/// panics on odd input) only ever sees that alphabet and letters are rejected, not skipped.
fn dialable(input: &str) -> Result<String, PhoneError> {
    let mut s = input;
    if let Some(prefix) = s.get(..4)
        && prefix.eq_ignore_ascii_case("tel:")
    {
        // RFC 3966: parameters (`;ext=`, `;phone-context=`) follow the number.
        s = s[4..].split(';').next().unwrap_or_default();
    }
    // libphonenumber reads a run of plus signs as one (`++49 …`, dialled by some exchanges
    // and typed by people), the full-width one too; a plus elsewhere is no number.
    let s = s.trim_start();
    let digits = s.trim_start_matches(['+', '\u{ff0b}']);
    let plus = digits.len() != s.len();
    let rest: String = digits.chars().filter(|c| !c.is_whitespace()).collect();
    // "+49 (0)30 …": the trunk prefix in brackets is not dialled from abroad. At the very start
    // ("(0)30 …") it is the national trunk prefix and stays.
    let rest = match rest.strip_prefix("(0)") {
        Some(tail) => format!("0{}", tail.replace("(0)", "")),
        None => rest.replace("(0)", ""),
    };
    let mut out = String::with_capacity(rest.len() + 1);
    if plus {
        out.push('+');
    }
    for c in rest.chars() {
        match c {
            '0'..='9' => out.push(c),
            '/' | '.' | '(' | ')' => {}
            c if is_dash(c) => {}
            _ => return Err(PhoneError::NotANumber),
        }
    }
    if !out.bytes().any(|b| b.is_ascii_digit()) {
        return Err(PhoneError::NotANumber);
    }
    Ok(out)
}

/// Country calling codes of open numbering plans, where a subscriber number owns every longer
/// number that starts with it (its extensions): Germany and Austria.
const OPEN_PLAN_CODES: &[&str] = &["+49", "+43"];

/// Extensions have at most this many digits.
const MAX_EXTENSION_DIGITS: usize = 5;

/// The shortest national number a base may have: an area code and a short subscriber number,
/// as Vienna's city hall, `+43 1 4000-0` (base `+43 1 4000`, five digits). Shorter prefixes of a
/// caller's number are area codes, never probed.
const MIN_BASE_NATIONAL_DIGITS: usize = 5;

/// How a caller's number relates to one stored number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberMatch {
    /// The same E.164 number.
    Exact,
    /// The caller's number extends the stored one's [`dial_base`] by one to five digits, or is
    /// that base itself when the stored number is its switchboard `…-0`.
    DirectDial,
}

/// How the caller's number (E.164) relates to a stored number (its E.164 form and the text as
/// entered), if at all: [`NumberMatch::Exact`] when they are equal, [`NumberMatch::DirectDial`]
/// when the stored number's [`dial_base`] is one of [`dial_bases_of`] the caller.
pub fn number_match(caller: &str, stored: &E164, as_entered: &str) -> Option<NumberMatch> {
    if caller == stored.as_str() {
        return Some(NumberMatch::Exact);
    }
    let bases = dial_bases_of(caller);
    // A base is the stored number or it without its last digit: only then is the stored number
    // worth the library's type check.
    let s = stored.as_str();
    let candidate = |b: &String| s.starts_with(b.as_str()) && s.len() - b.len() <= 1;
    if !bases.iter().any(candidate) {
        return None;
    }
    let base = dial_base(stored, as_entered)?;
    bases.contains(&base).then_some(NumberMatch::DirectDial)
}

/// The number that a stored number's extensions start with, when it has extensions: a
/// fixed-line number in an open numbering plan ([`OPEN_PLAN_CODES`]). That is the number
/// itself, or without its last digit when it was entered with a separate switchboard
/// extension `0` (`+49 30 1234567-0`, `030 1234567 - 0`) and what remains is a valid
/// fixed-line number itself (not `033203-0`, an area code and a `0`). `None` for mobile and all
/// other numbers: mobile numbers have no extensions, and a `0` that is just the last digit
/// (`030 12345670`) is kept, or a tenth of all numbers would claim their neighbours. Called
/// when a number is written, never on the lookup path.
pub fn dial_base(e164: &E164, as_entered: &str) -> Option<String> {
    let national = open_plan_national(e164.as_str())?;
    if !is_fixed_line(e164.as_str()) {
        return None;
    }
    let number = e164.as_str();
    if national.ends_with('0') && switchboard_zero(as_entered) {
        let switchboard = &number[..number.len() - 1];
        if national.len() > MIN_BASE_NATIONAL_DIGITS && is_fixed_line(switchboard) {
            return Some(switchboard.to_owned());
        }
    }
    Some(number.to_owned())
}

/// Whether the library reads `e164` as a valid fixed-line number.
fn is_fixed_line(e164: &str) -> bool {
    phonenumber::parse(None, e164)
        .is_ok_and(|n| n.is_valid() && n.number_type(&DATABASE) == phonenumber::Type::FixedLine)
}

/// The numbers a caller's number (E.164) may be an extension of, in an open numbering plan:
/// itself and the numbers one to [`MAX_EXTENSION_DIGITS`] digits shorter, longest first, none
/// with fewer than [`MIN_BASE_NATIONAL_DIGITS`] national digits; empty in other countries.
/// String work only: it runs on every incoming call.
pub fn dial_bases_of(caller: &str) -> Vec<String> {
    let Some(national) = open_plan_national(caller) else {
        return Vec::new();
    };
    let shortest = caller.len() - national.len().saturating_sub(MIN_BASE_NATIONAL_DIGITS);
    (0..=MAX_EXTENSION_DIGITS)
        .map_while(|k| caller.len().checked_sub(k).filter(|&end| end >= shortest))
        .map(|end| caller[..end].to_owned())
        .collect()
}

/// The national digits of an E.164 number in an open numbering plan. Country codes are
/// prefix-free, so the code's text alone decides.
fn open_plan_national(e164: &str) -> Option<&str> {
    let national = OPEN_PLAN_CODES
        .iter()
        .find_map(|code| e164.strip_prefix(code))?;
    (national.len() >= MIN_BASE_NATIONAL_DIGITS && national.bytes().all(|b| b.is_ascii_digit()))
        .then_some(national)
}

/// Whether the text as entered ends in a `0` set apart by a dash (`-0`, `- 0`): the
/// switchboard's extension, not a digit of the subscriber number.
fn switchboard_zero(as_entered: &str) -> bool {
    as_entered
        .trim_end()
        .strip_suffix('0')
        .map(str::trim_end)
        .and_then(|rest| rest.chars().next_back())
        .is_some_and(is_dash)
}

fn is_dash(c: char) -> bool {
    matches!(c, '-' | '\u{2010}'..='\u{2015}' | '\u{2212}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn de() -> Region {
        Region::germany()
    }

    #[test]
    fn accepts_what_telephony_and_people_type() {
        let cases: &[(&str, &str)] = &[
            ("+493012345678", "+493012345678"),
            ("+49 30 1234567", "+49301234567"),
            ("030 1234567", "+49301234567"),
            ("030/1234567", "+49301234567"),
            ("030-123 45 67", "+49301234567"),
            ("(030) 12 34 56-78", "+493012345678"),
            ("+49 (0)30 1234567", "+49301234567"),
            ("+49(0)301234567", "+49301234567"),
            ("+49 ( 0 ) 30 1234567", "+49301234567"),
            ("(0)30 1234567", "+49301234567"),
            ("0049 30 1234567", "+49301234567"),
            ("00 49 30 1234567", "+49301234567"),
            ("0049 (0)30 1234567", "+49301234567"),
            // The library also drops a trunk prefix typed without brackets; harmless.
            ("+49 030 1234567", "+49301234567"),
            ("tel:+49-30-1234567", "+49301234567"),
            ("TEL:+49-30-1234567;ext=12", "+49301234567"),
            ("+43 1 5123456", "+4315123456"),
            ("0043 1 5123456", "+4315123456"),
            ("0171 1234567", "+491711234567"),
            ("+49 171 1234567", "+491711234567"),
            ("089.12345678", "+498912345678"),
            ("  030 1234567\t", "+49301234567"),
            ("030\u{a0}1234567", "+49301234567"),
            ("030 \u{2013} 1234567", "+49301234567"),
            ("+1 212 555 0123", "+12125550123"),
        ];
        for (input, expected) in cases {
            let got = normalize(input, &de()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.as_ref().map(E164::as_str), Some(*expected), "{input:?}");
        }
    }

    /// What libphonenumber itself makes of written numbers (read in Germany): the E.164 form of
    /// a valid number, or `None`. Expected values from the Python `phonenumbers` 9.0.43 (its
    /// metadata release), the oracle for the crate, whose metadata is older (9.0.33). Deliberate
    /// differences are left out: letters (`0800 FLOWERS`, `x12`) and non-ASCII digits are
    /// rejected here, where libphonenumber converts or skips them (see `rejects`).
    #[test]
    fn written_numbers_read_as_libphonenumber_reads_them() {
        let cases: &[(&str, Option<&str>)] = &[
            ("++49 30 1234567", Some("+49301234567")),
            ("++49301234567", Some("+49301234567")),
            ("+++49 30 1234567", Some("+49301234567")),
            ("+ +49 30 1234567", None),
            ("+ 49 30 1234567", Some("+49301234567")),
            ("\u{ff0b}49 30 1234567", Some("+49301234567")),
            ("++ 49 30 1234567", Some("+49301234567")),
            ("+49 30 1234567-0", Some("+493012345670")),
            ("030 1234567 - 0", Some("+493012345670")),
            ("030/1234567-0", Some("+493012345670")),
            ("+49 30 1234567-89", Some("+4930123456789")),
            ("+4930123456789", Some("+4930123456789")),
            ("+49 40 123456-12345", Some("+494012345612345")),
            ("+493012345678", Some("+493012345678")),
            ("+49 30 1234567", Some("+49301234567")),
            ("030 1234567", Some("+49301234567")),
            ("030/1234567", Some("+49301234567")),
            ("030-123 45 67", Some("+49301234567")),
            ("(030) 12 34 56-78", Some("+493012345678")),
            ("+49 (0)30 1234567", Some("+49301234567")),
            ("+49(0)301234567", Some("+49301234567")),
            ("(0)30 1234567", Some("+49301234567")),
            ("0049 30 1234567", Some("+49301234567")),
            ("00 49 30 1234567", Some("+49301234567")),
            ("0049 (0)30 1234567", Some("+49301234567")),
            ("+49 030 1234567", Some("+49301234567")),
            ("tel:+49-30-1234567", Some("+49301234567")),
            ("+43 1 5123456", Some("+4315123456")),
            ("0043 1 5123456", Some("+4315123456")),
            ("+43 1 4000-0", Some("+43140000")),
            ("+43 664 1234567", Some("+436641234567")),
            ("0171 1234567", Some("+491711234567")),
            ("+49 171 1234567", Some("+491711234567")),
            ("089.12345678", Some("+498912345678")),
            ("+1 212 555 0123", Some("+12125550123")),
            ("++1 212 555 0123", Some("+12125550123")),
            ("+33 1 42 68 53 00", Some("+33142685300")),
            ("+49 6221 54-0", Some("+496221540")),
            ("+49 800 1234567", Some("+498001234567")),
            ("+49 32 12345678", None),
            ("12", None),
            ("123", None),
            ("0", None),
            ("+49 1", None),
            ("+999 1234567", None),
            ("030 12345678901234567890", None),
            ("+00 30 1234567", None),
            ("0000000000", None),
            ("+(0)30 1234567", None),
            ("+", None),
            ("---", None),
            ("49+30", None),
            (
                "\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}\u{ff17}\u{ff18}",
                None,
            ),
            ("+49 30 1234567890123", Some("+49301234567890123")),
            ("+49 30 12345678901", Some("+493012345678901")),
        ];
        let mut wrong = Vec::new();
        for (input, expected) in cases {
            let got = normalize(input, &de()).ok().flatten();
            if got.as_ref().map(E164::as_str) != *expected {
                wrong.push((*input, got, *expected));
            }
        }
        assert!(wrong.is_empty(), "(input, got, libphonenumber): {wrong:#?}");
    }

    fn stored(as_entered: &str) -> E164 {
        normalize(as_entered, &de())
            .unwrap_or_else(|e| panic!("{as_entered:?}: {e}"))
            .unwrap()
    }

    #[test]
    fn a_fixed_line_number_in_an_open_plan_has_a_dial_base() {
        let cases: &[(&str, Option<&str>)] = &[
            // The switchboard's separate `0` is not part of the base.
            ("+49 30 1234567-0", Some("+49301234567")),
            ("030 1234567 - 0", Some("+49301234567")),
            ("030/1234567-0", Some("+49301234567")),
            ("030 1234567 \u{2013} 0", Some("+49301234567")),
            ("++49 30 1234567-0", Some("+49301234567")),
            ("+49 6221 54-0", Some("+49622154")),
            // What remains would be an area code: the 0 is a digit.
            ("033203-0", Some("+49332030")),
            ("+49 30 1234567", Some("+49301234567")),
            // A `0` that is just the last digit, or a longer extension, stays.
            ("030 12345670", Some("+493012345670")),
            ("+49 30 123456 70", Some("+493012345670")),
            ("+49 30 1234567-10", Some("+4930123456710")),
            ("+49 30 1234567-89", Some("+4930123456789")),
            ("+43 1 4000-0", Some("+4314000")),
            ("+43 1 5123456", Some("+4315123456")),
            // Mobile numbers have no extensions.
            ("+49 171 1234567", None),
            ("0171 1234567-0", None),
            ("+49 1511 2345678", None),
            ("+43 664 1234567", None),
            // Neither have service numbers.
            ("+49 800 1234567", None),
            // Closed numbering plans.
            ("+33 1 42 68 53 00", None),
            ("+1 212 555 0123", None),
            ("+41 44 668 18 00", None),
            ("+44 20 7946 0958", None),
        ];
        for (as_entered, expected) in cases {
            let got = dial_base(&stored(as_entered), as_entered);
            assert_eq!(got.as_deref(), *expected, "{as_entered:?}");
        }
    }

    #[test]
    fn a_caller_may_extend_numbers_up_to_five_digits_shorter() {
        let cases: &[(&str, &[&str])] = &[
            (
                "+4930123456789",
                &[
                    "+4930123456789",
                    "+493012345678",
                    "+49301234567",
                    "+4930123456",
                    "+493012345",
                    "+49301234",
                ],
            ),
            // Never shorter than five national digits.
            ("+43140001", &["+43140001", "+4314000"]),
            ("+4314000", &["+4314000"]),
            ("+4930", &[]),
            ("+33142685300", &[]),
            ("+12125550123", &[]),
            ("", &[]),
            ("+49", &[]),
        ];
        for (caller, expected) in cases {
            assert_eq!(dial_bases_of(caller), *expected, "{caller:?}");
        }
    }

    #[test]
    fn a_caller_from_an_extension_matches_the_switchboard_by_direct_dial() {
        use NumberMatch::{DirectDial, Exact};
        let cases: &[(&str, &str, Option<NumberMatch>)] = &[
            ("+49 30 1234567-0", "+493012345670", Some(Exact)),
            ("+49 30 1234567-0", "+49301234567", Some(DirectDial)),
            ("+49 30 1234567-0", "+4930123456789", Some(DirectDial)),
            ("+49 30 1234567-0", "+49301234568", None),
            ("+49 30 1234567-0", "+4930123456", None),
            ("+49 30 1234567", "+49301234567", Some(Exact)),
            ("+49 30 1234567", "+493012345670", Some(DirectDial)),
            ("+49 30 1234567", "+4930123456", None),
            ("++49 30 1234567-0", "+4930123456789", Some(DirectDial)),
            // A trailing `0` that is a digit of the number claims no neighbours.
            ("030 12345670", "+493012345671", None),
            ("030 12345670", "+49301234567", None),
            ("030 12345670", "+4930123456701", Some(DirectDial)),
            ("+43 1 4000-0", "+43140001234", Some(DirectDial)),
            ("+43 1 4000-0", "+43140000", Some(Exact)),
            ("+49 171 1234567", "+491711234567", Some(Exact)),
            ("+49 171 1234567", "+4917112345678", None),
            ("0171 1234567-0", "+49171123456712", None),
            ("+43 664 1234567", "+4366412345678", None),
            ("+33 1 42 68 53 00", "+3314268530012", None),
            ("+1 212 555 0123", "+121255501234", None),
            ("+49 30 1234567", "+43301234567", None),
        ];
        for (as_entered, caller, expected) in cases {
            let got = number_match(caller, &stored(as_entered), as_entered);
            assert_eq!(got, *expected, "{as_entered:?} called by {caller}");
        }
        // Extensions of one to five digits match, six do not.
        for (as_entered, base) in [
            ("+49 30 1234567-0", "+49301234567"),
            ("+49 30 1234567", "+49301234567"),
        ] {
            let mut caller = base.to_owned();
            for digits in 1..=6 {
                caller.push(char::from(b'0' + digits as u8));
                let expected = (digits <= 5).then_some(DirectDial);
                let got = number_match(&caller, &stored(as_entered), as_entered);
                assert_eq!(got, expected, "{as_entered:?} called by {caller}");
            }
        }
    }

    #[test]
    fn the_e164_form_is_what_the_library_formats() {
        let inputs = [
            ("DE", "+49 30 1234567"),
            ("DE", "(030) 12 34 56-78"),
            ("DE", "0171 1234567"),
            ("DE", "+43 1 5123456"),
            ("DE", "+1 212 555 0123"),
            ("AT", "01 5123456"),
            ("CH", "044 668 18 00"),
            ("GB", "020 7946 0958"),
        ];
        for (region, input) in inputs {
            let region = Region::parse(region).unwrap();
            let reading = read(input, &region).unwrap().unwrap();
            let dialable = dialable(input).unwrap();
            let library = phonenumber::parse(Some(region.0), &dialable).unwrap();
            let formatted = library.format().mode(phonenumber::Mode::E164).to_string();
            assert_eq!(reading.as_str(), formatted, "{input:?}");
            assert_eq!(
                reading.validate().map(E164::into_string),
                Ok(formatted),
                "{input:?}"
            );
        }
    }

    #[test]
    fn a_reading_is_checked_only_when_validated() {
        for input in ["12", "123"] {
            let reading = read(input, &de())
                .unwrap_or_else(|e| panic!("{input:?}: {e}"))
                .unwrap();
            assert!(reading.as_str().starts_with('+'), "{input:?}");
            assert_eq!(reading.clone().validate(), Err(PhoneError::Invalid));
            assert_eq!(normalize(input, &de()), Err(PhoneError::Invalid));
        }
        let reading = read("030 1234567", &de()).unwrap().unwrap();
        let stored = normalize("+49 30 1234567", &de()).unwrap().unwrap();
        let other = normalize("+49 30 1234568", &de()).unwrap().unwrap();
        assert_eq!(reading.stored_as(&stored), Some(stored.clone()));
        assert_eq!(reading.stored_as(&other), None);
        assert_eq!(read("anonymous", &de()), Ok(None));
        assert_eq!(read("030 CALL ME", &de()), Err(PhoneError::NotANumber));
    }

    #[test]
    fn national_numbers_follow_the_region() {
        let cases: &[(&str, &str, &str)] = &[
            ("AT", "01 5123456", "+4315123456"),
            ("CH", "044 668 18 00", "+41446681800"),
            ("US", "(212) 555-0123", "+12125550123"),
            ("US", "+49 30 1234567", "+49301234567"),
        ];
        for (region, input, expected) in cases {
            let region = Region::parse(region).unwrap();
            let got = normalize(input, &region).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.map(E164::into_string).as_deref(), Some(*expected));
        }
    }

    #[test]
    fn no_number() {
        for input in [
            "",
            "   ",
            "\t\n",
            "anonymous",
            "Anonymous",
            " UNKNOWN ",
            "private",
            "Withheld",
            "unavailable",
            "RESTRICTED",
        ] {
            assert_eq!(normalize(input, &de()), Ok(None), "{input:?}");
        }
    }

    #[test]
    fn rejects() {
        let cases: &[(&str, PhoneError)] = &[
            ("030 CALL ME", PhoneError::NotANumber),
            ("0800 FLOWERS", PhoneError::NotANumber),
            ("030 1234567 x12", PhoneError::NotANumber),
            ("hello", PhoneError::NotANumber),
            ("anonymous caller", PhoneError::NotANumber),
            ("---", PhoneError::NotANumber),
            ("+", PhoneError::NotANumber),
            ("+ +49 30 1234567", PhoneError::NotANumber),
            ("49+30", PhoneError::NotANumber),
            ("tel:", PhoneError::NotANumber),
            ("030_1234567", PhoneError::NotANumber),
            ("٠٣٠١٢٣٤٥٦٧", PhoneError::NotANumber),
            ("12", PhoneError::Invalid),
            ("123", PhoneError::Invalid),
            ("0", PhoneError::NotANumber),
            ("+49 1", PhoneError::Invalid),
            ("+999 1234567", PhoneError::Invalid),
            ("030 12345678901234567890", PhoneError::Invalid),
            ("+00 30 1234567", PhoneError::Invalid),
            ("0000000000", PhoneError::Invalid),
            ("+(0)30 1234567", PhoneError::Invalid),
        ];
        for (input, expected) in cases {
            let got = normalize(input, &de());
            assert!(got.is_err(), "{input:?} gave {got:?}");
            assert_eq!(got, Err(expected.clone()), "{input:?}");
        }
    }

    #[test]
    fn too_long_is_checked_before_parsing() {
        let long = "0".repeat(65);
        assert_eq!(normalize(&long, &de()), Err(PhoneError::TooLong));
        let long_garbage = "x".repeat(65);
        assert_eq!(normalize(&long_garbage, &de()), Err(PhoneError::TooLong));
        // 64 characters with separators is still parsed.
        let padded = format!("030{}1234567", " ".repeat(54));
        assert_eq!(padded.chars().count(), 64);
        assert!(normalize(&padded, &de()).unwrap().is_some());
    }

    #[test]
    fn messages_are_lower_case_and_never_echo_input() {
        for e in [
            PhoneError::UnknownRegion,
            PhoneError::NotANumber,
            PhoneError::Invalid,
            PhoneError::TooLong,
        ] {
            let msg = e.to_string();
            assert!(!msg.is_empty());
            assert_eq!(msg, msg.to_lowercase());
            assert!(!msg.ends_with('.'));
        }
        let err = normalize("030 CALL ME 1234567", &de()).unwrap_err();
        assert!(!err.to_string().contains("1234567"));
    }

    #[test]
    fn region_parse() {
        for (input, expected) in [
            ("DE", "DE"),
            ("de", "DE"),
            (" at ", "AT"),
            ("Ch", "CH"),
            ("US", "US"),
        ] {
            assert_eq!(Region::parse(input).unwrap().as_str(), expected);
        }
        for input in ["XX", "", "de1", "D", "DEU", "1", "ÄÖ", "d e", "ZZ"] {
            assert_eq!(
                Region::parse(input),
                Err(PhoneError::UnknownRegion),
                "{input:?}"
            );
        }
        assert_eq!("de".parse::<Region>(), Ok(Region::germany()));
        assert_eq!(Region::germany().to_string(), "DE");
    }

    #[test]
    fn never_panics_on_odd_input() {
        let long = "9".repeat(10_000);
        let odd = [
            "🙂",
            "+🙂",
            "tel:🙂",
            "télé",
            "te",
            "t",
            "e\u{301}",
            "0\u{301}30 1234567",
            "\u{0}",
            "((((",
            "))))",
            "(0)",
            "(0)(0)(0)",
            "+(0)",
            "00",
            "0000",
            "+0",
            "+1",
            "  2 22#:",
            ";;;",
            "tel:;;",
            "tel:+49;ext=",
            "+49 (0",
            "١٢٣",
            "１２３４５６７８",
            &long,
        ];
        for region in ["DE", "AT", "US", "GB"] {
            let region = Region::parse(region).unwrap();
            for input in odd {
                let _ = normalize(input, &region);
            }
        }
        // Every prefix of a real number, to reach the parser's short-input paths.
        let full = "+49 (0)30 123 45 67-89";
        for end in 0..=full.len() {
            if let Some(prefix) = full.get(..end) {
                let _ = normalize(prefix, &de());
            }
        }
    }
}
