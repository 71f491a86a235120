//! Identification: what a match is found by, how sure it is and why, and the one rule that
//! ranks the contacts the store fetched as candidates for an incoming call.
//!
//! The caller's words are aligned to the contact's first name, last name and company. A
//! hyphenated first name stays one first name; a first name that agrees lifts a contact above
//! namesakes that disagree; the caller's cue words ("Frau", "Dr.", "Firma", legal forms) say
//! person or company and are compared with the contact's stored salutation and title; every
//! word of a multi-word company counts, a rare word more than a common one.

use crate::contact::Contact;
use crate::names::{self, fold};
use crate::phone::{self, NumberMatch};
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use unicode_normalization::char::is_combining_mark;

/// Only the first words of a long name are searched for.
pub const MAX_QUERY_WORDS: usize = 5;

/// A name fits a contact from this [`NameFit::closeness`] on: a first name alone does (0.45),
/// a first name shared with a different surname does not (0.35).
pub const MIN_NAME_CLOSENESS: f64 = 0.4;

/// Two words of different length are compared only when the shorter has at least this
/// fraction of the longer's letters: the store's candidate search uses the same bound.
pub const MIN_LENGTH_RATIO: f64 = 0.6;

/// What a match was found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchKind {
    PhoneNumber,
    Name,
    PhoneNumberAndName,
    DirectDial,
}

impl MatchKind {
    /// The score range of the kind (`[low, high)`; number and name includes 1): the ranges
    /// never overlap, so the kind decides the order before the name does.
    fn band(self) -> (f64, f64) {
        match self {
            MatchKind::PhoneNumberAndName => (0.92, 1.0),
            MatchKind::PhoneNumber => (0.7, 0.759),
            MatchKind::DirectDial => (0.66, 0.699),
            MatchKind::Name => (0.0, 0.65),
        }
    }
}

/// How sure a match is; larger is surer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Confidence {
    Possible,
    Likely,
    Certain,
}

/// The contact field a piece of evidence is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    PhoneNumber,
    FirstName,
    LastName,
    Company,
    Salutation,
    Title,
}

/// How the caller's word (or number) relates to the contact's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum How {
    Same,
    SpellingVariant,
    Typo,
    SoundsAlike,
    ExactNumber,
    DirectDial,
    Initial,
}

/// Why a contact matched, for the agent's screen ("Mayer ≈ Meier, sounds alike").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub field: Field,
    pub how: How,
    /// The caller's word as given, or the caller's number.
    pub caller_text: String,
    /// The contact's word as stored, or the contact's number.
    pub contact_text: String,
}

/// A contact that may be the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerMatch {
    pub contact: Contact,
    pub matched_by: MatchKind,
    /// In [0, 1], within the band of `matched_by`; comparable within one lookup.
    pub score: f64,
    pub confidence: Confidence,
    pub evidence: Vec<Evidence>,
}

/// The matches of one lookup, best first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ranking {
    pub matches: Vec<CallerMatch>,
    /// The first two matches are equally sure and nothing the caller said prefers the first.
    pub ambiguous: bool,
}

/// How many contacts of the account carry a folded word: a match on a rare word says more.
pub type WordCounts = HashMap<String, i64>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gender {
    Female,
    Male,
}

fn gender_of(folded: &str) -> Option<Gender> {
    match folded {
        "frau" | "fr" | "mrs" | "ms" | "miss" | "madame" | "mme" | "signora" | "pani" => {
            Some(Gender::Female)
        }
        "herr" | "herrn" | "hr" | "mr" | "monsieur" | "signor" | "pan" => Some(Gender::Male),
        _ => None,
    }
}

/// Titles that people are addressed with and that contacts store ("Dr.", "Prof.").
fn is_address_title(folded: &str) -> bool {
    matches!(folded, "dr" | "prof")
}

/// Cue words for a company that are not legal forms.
fn is_company_cue(folded: &str) -> bool {
    matches!(folded, "fa" | "fima" | "firma" | "haftungsbeschraenkt")
        || names::is_company_form(folded)
}

/// A folded word prepared for comparison once: a lookup compares a few hundred pairs.
#[derive(Debug, Clone)]
struct Token {
    text: String,
    chars: Vec<char>,
    without_umlaut_e: String,
    /// [`Token::without_umlaut_e`] as characters, for the edit distance.
    plain_chars: Vec<char>,
    skeleton: String,
    phonetic: Option<String>,
}

impl Token {
    fn new(folded: &str) -> Token {
        let plain = without_umlaut_e(folded);
        Token {
            text: folded.to_owned(),
            chars: folded.chars().collect(),
            plain_chars: plain.chars().collect(),
            without_umlaut_e: plain,
            skeleton: skeleton(folded),
            phonetic: names::telling_phonetic_code(folded),
        }
    }
}

/// A word the caller gave.
#[derive(Debug, Clone)]
struct Word {
    /// As given.
    text: String,
    token: Token,
    /// Words joined by hyphens share a group: one name ("Heinz-Werner").
    group: usize,
    /// A single letter with a dot ("H. Müller"): the start of a first name.
    initial: bool,
}

/// The name a caller gave, read for matching: its words and its cue words.
#[derive(Debug, Clone, Default)]
pub struct CallerName {
    words: Vec<Word>,
    gender: Option<Gender>,
    titles: Vec<String>,
    company_cue: bool,
}

impl CallerName {
    pub fn parse(name: &str) -> CallerName {
        let mut out = CallerName::default();
        let pieces = pieces(name);
        let mut group = 0;
        for (i, piece) in pieces.iter().enumerate() {
            if !piece.hyphen_before {
                group += 1;
            }
            for folded in fold(&piece.text).split(' ').filter(|w| !w.is_empty()) {
                if let Some(g) = gender_of(folded) {
                    out.gender.get_or_insert(g);
                } else if names::is_title(folded) {
                    if is_address_title(folded) && !out.titles.iter().any(|t| t == folded) {
                        out.titles.push(folded.to_owned());
                    }
                } else if is_company_cue(folded) {
                    out.company_cue = true;
                } else if folded.chars().nth(1).is_none() {
                    // "H. Müller": an initial; the letters of "e.K." are none.
                    let next_single = pieces
                        .get(i + 1)
                        .is_some_and(|p| p.text.chars().nth(1).is_none());
                    if piece.dot_after && !piece.dot_before && !next_single {
                        out.push(piece, folded, group, true);
                    }
                } else if out.words.iter().filter(|w| !w.initial).count() < MAX_QUERY_WORDS {
                    out.push(piece, folded, group, false);
                }
            }
        }
        out
    }

    fn push(&mut self, piece: &Piece, folded: &str, group: usize, initial: bool) {
        if self.words.iter().any(|w| w.token.text == folded) {
            return;
        }
        self.words.push(Word {
            text: piece.text.clone(),
            token: Token::new(folded),
            group,
            initial,
        });
    }

    /// The folded words to find candidates by: no cue words, no initials.
    pub fn search_words(&self) -> Vec<String> {
        self.words
            .iter()
            .filter(|w| !w.initial)
            .map(|w| w.token.text.clone())
            .collect()
    }

    /// No word to match by (cue words alone are none).
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| w.initial)
    }
}

/// A run of letters of the caller's name as given, with the punctuation around it.
struct Piece {
    text: String,
    hyphen_before: bool,
    dot_before: bool,
    dot_after: bool,
}

fn pieces(s: &str) -> Vec<Piece> {
    let is_letter = |c: char| c.is_alphanumeric() || is_combining_mark(c);
    // Alternating runs of letters and of everything else.
    let mut runs: Vec<(bool, String)> = Vec::new();
    for c in s.chars() {
        match runs.last_mut() {
            Some((letters, run)) if *letters == is_letter(c) => run.push(c),
            _ => runs.push((is_letter(c), c.to_string())),
        }
    }
    let mut out: Vec<Piece> = Vec::new();
    for (i, (letters, text)) in runs.iter().enumerate() {
        if !letters {
            continue;
        }
        let before = i.checked_sub(1).map_or("", |b| runs[b].1.as_str());
        let after = runs.get(i + 1).map_or("", |r| r.1.as_str());
        out.push(Piece {
            text: text.clone(),
            hyphen_before: !out.is_empty() && before.contains(['-', '\u{2010}', '\u{2013}']),
            dot_before: before.contains('.') && !before.contains(char::is_whitespace),
            dot_after: after.starts_with('.'),
        });
    }
    out
}

/// A word of a contact's field as stored.
#[derive(Debug, Clone)]
struct ContactWord {
    text: String,
    token: Token,
    field: Field,
    /// How much a match on it says: less the more contacts carry it.
    weight: f64,
}

struct ContactName {
    words: Vec<ContactWord>,
    gender: Option<Gender>,
    titles: Vec<String>,
}

impl ContactName {
    fn new(c: &Contact, counts: &WordCounts) -> ContactName {
        let f = &c.fields;
        let mut words = Vec::new();
        for (field, text) in [
            (Field::LastName, &f.last_name),
            (Field::FirstName, &f.first_name),
            (Field::Company, &f.company),
        ] {
            for piece in pieces(text) {
                for folded in fold(&piece.text).split(' ') {
                    if folded.chars().nth(1).is_none()
                        || names::is_company_form(folded)
                        || (field != Field::Company && names::is_title(folded))
                        || words.iter().any(|w: &ContactWord| w.token.text == folded)
                    {
                        continue;
                    }
                    words.push(ContactWord {
                        text: piece.text.clone(),
                        token: Token::new(folded),
                        field,
                        weight: rarity(counts.get(folded).copied()),
                    });
                }
            }
        }
        let folded_salutation = fold(&f.salutation);
        let mut titles: Vec<String> = fold(&f.title)
            .split(' ')
            .filter(|t| is_address_title(t))
            .map(str::to_owned)
            .collect();
        titles.extend(
            folded_salutation
                .split(' ')
                .filter(|t| is_address_title(t))
                .map(str::to_owned),
        );
        ContactName {
            gender: folded_salutation.split(' ').find_map(gender_of),
            titles,
            words,
        }
    }

    fn has(&self, field: Field) -> bool {
        self.words.iter().any(|w| w.field == field)
    }
}

/// How much a match on a word carried by `contacts` contacts of the account says, in (0, 1]:
/// 1 for a word of one contact, about 0.4 for Müller in an account of 20,000.
fn rarity(contacts: Option<i64>) -> f64 {
    let n = contacts.unwrap_or(1).max(1) as f64;
    1.0 / (1.0 + 0.3 * n.ln())
}

/// Two spellings that [`skeleton`] makes equal: the same name, or two families' names.
const SKELETON_SIMILARITY: f64 = 0.92;

/// How two words are alike.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Likeness {
    how: How,
    similarity: f64,
    /// Too loose to vouch for the name on its own: words that only sound alike, or two slips.
    weak: bool,
}

fn likeness(how: How, similarity: f64) -> Option<Likeness> {
    Some(Likeness {
        how,
        similarity,
        weak: how == How::SoundsAlike,
    })
}

/// How close two words are, if they are the same name at all.
fn compare(caller: &Token, contact: &Token) -> Option<Likeness> {
    if caller.text == contact.text {
        return likeness(How::Same, 1.0);
    }
    if caller.without_umlaut_e == contact.without_umlaut_e {
        return likeness(How::SpellingVariant, 0.95);
    }
    if caller.skeleton == contact.skeleton {
        return likeness(How::SpellingVariant, SKELETON_SIMILARITY);
    }
    let (a, b) = (&caller.chars, &contact.chars);
    let (short, long) = (a.len().min(b.len()), a.len().max(b.len()));
    if short == 0 || long > 64 || (short as f64) < MIN_LENGTH_RATIO * long as f64 {
        return None;
    }
    // One slip when both words have four letters or more, two when both have eight.
    let allowed = match short {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    };
    // "Mzller" is one slip from Müller as typed, two from its folded "mueller".
    let distance =
        edit_distance(a, b).min(edit_distance(&caller.plain_chars, &contact.plain_chars));
    if distance <= allowed {
        return Some(Likeness {
            how: How::Typo,
            similarity: (1.0 - distance as f64 / long as f64).max(0.75),
            weak: distance > 1,
        });
    }
    match (&caller.phonetic, &contact.phonetic) {
        (Some(x), Some(y)) if x == y => likeness(How::SoundsAlike, 0.7),
        _ => None,
    }
}

/// A folded word with the "e" of `ae`, `oe`, `ue` dropped: "mueller" and "muller" meet.
fn without_umlaut_e(folded: &str) -> String {
    let mut out = String::with_capacity(folded.len());
    let mut prev = None;
    for c in folded.chars() {
        if !(c == 'e' && matches!(prev, Some('a' | 'o' | 'u'))) {
            out.push(c);
        }
        prev = Some(c);
    }
    out
}

/// A folded word with German spelling variants of one name made equal: Meier, Meyer, Maier
/// and Mayer; Schmidt, Schmitt and Schmid; Hofmann and Hoffmann; Philipp and Filip; Fischer
/// and Fisher; Carl and Karl; Fuchs and Fux; Eichmayr and Eichmeier. Two spellings of a name may still be two
/// families: a match by skeleton is never certain.
fn skeleton(folded: &str) -> String {
    let mut s = without_umlaut_e(folded);
    if s.starts_with('c') && s[1..].starts_with(['a', 'l', 'o', 'u', 'r']) {
        s.replace_range(0..1, "k");
    }
    for (from, to) in [
        ("sch", "sh"),
        ("chs", "ks"),
        ("ph", "f"),
        ("th", "t"),
        ("dt", "t"),
        ("ck", "k"),
        ("tz", "z"),
        ("ey", "ei"),
        ("ay", "ei"),
        ("ai", "ei"),
        ("x", "ks"),
        ("y", "i"),
    ] {
        s = s.replace(from, to);
    }
    if s.ends_with('d') {
        s.pop();
        s.push('t');
    }
    // The Bavarian -mayr is -maier.
    if s.ends_with("eir") {
        s.insert(s.len() - 1, 'e');
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !out.ends_with(c) {
            out.push(c);
        }
    }
    out
}

/// Optimal string alignment distance: insertions, deletions, substitutions and transpositions
/// of neighbours ("Herramnn") each cost 1.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

/// How well a caller's name fits one contact.
#[derive(Debug, Clone, PartialEq)]
pub struct NameFit {
    /// From 0 to 1; a fit at all from [`MIN_NAME_CLOSENESS`].
    pub closeness: f64,
    pub confidence: Confidence,
    /// Something the caller said contradicts the contact: a word that fits nowhere (another
    /// first name), a salutation or cue for the other kind of contact, a split hyphenated name.
    pub conflict: bool,
    pub evidence: Vec<Evidence>,
}

/// One of the caller's words aligned to a word of the contact.
#[derive(Clone, Copy)]
struct Pair {
    word: usize,
    contact_word: usize,
    how: How,
    similarity: f64,
    weak: bool,
}

/// How well `name` fits `contact`; `None` when the caller gave no name.
pub fn fit(name: &CallerName, contact: &Contact, counts: &WordCounts) -> Option<NameFit> {
    if name.is_empty() {
        return None;
    }
    let c = ContactName::new(contact, counts);
    let pairs = align(name, &c);
    let similarity_of = |i: usize| pairs.iter().find(|p| p.word == i).map(|p| p.similarity);

    // Hyphenated words are one name: split over two fields, or half found, they fit badly.
    let mut broken_groups = HashSet::new();
    for w in &name.words {
        let members: Vec<usize> = (0..name.words.len())
            .filter(|&i| name.words[i].group == w.group)
            .collect();
        if members.len() < 2 {
            continue;
        }
        let fields: HashSet<Option<Field>> = members
            .iter()
            .map(|&i| {
                pairs
                    .iter()
                    .find(|p| p.word == i)
                    .map(|p| c.words[p.contact_word].field)
            })
            .collect();
        if fields.len() > 1 {
            broken_groups.insert(w.group);
        }
    }
    let penalty = |i: usize| {
        if broken_groups.contains(&name.words[i].group) {
            0.5
        } else {
            1.0
        }
    };

    // How much of what the caller said the contact explains, rare words weighing more.
    let (mut explained, mut said) = (0.0, 0.0);
    for (i, w) in name.words.iter().enumerate() {
        let pair = pairs.iter().find(|p| p.word == i);
        let weight = match pair {
            _ if w.initial => 0.3,
            Some(p) => c.words[p.contact_word].weight,
            None => rarity(counts.get(&w.token.text).copied()),
        };
        said += weight;
        explained += weight * similarity_of(i).unwrap_or(0.0) * penalty(i);
    }
    let coverage = if said > 0.0 { explained / said } else { 0.0 };

    // How well each field of the contact is matched: its best word, and how much of it.
    let field_fit = |field: Field| -> f64 {
        let (mut best, mut got, mut total) = (0.0f64, 0.0, 0.0);
        for (j, w) in c.words.iter().enumerate().filter(|(_, w)| w.field == field) {
            total += w.weight;
            if let Some(p) = pairs.iter().find(|p| p.contact_word == j) {
                let s = p.similarity * penalty(p.word);
                best = best.max(s);
                got += w.weight * s;
            }
        }
        if best == 0.0 {
            0.0
        } else {
            best * (0.8 + 0.2 * (got / total) / best)
        }
    };
    // A word that fits nowhere is probably another first name; so is an initial that does not
    // start the contact's first name.
    let unexplained = name
        .words
        .iter()
        .enumerate()
        .any(|(i, w)| similarity_of(i).is_none() && (!w.initial || c.has(Field::FirstName)));
    let person_cue = name.gender.is_some() || !name.titles.is_empty();
    let said = |field: Field| pairs.iter().any(|p| c.words[p.contact_word].field == field);
    let (first_said, last_said) = (said(Field::FirstName), said(Field::LastName));

    let mut views = Vec::new();
    if c.has(Field::LastName) {
        let first = if first_said {
            field_fit(Field::FirstName)
        } else if unexplained && c.has(Field::FirstName) {
            0.0
        } else {
            0.5
        };
        let cue = if name.company_cue && !c.has(Field::Company) {
            0.85
        } else {
            1.0
        };
        views.push(cue * (0.55 * field_fit(Field::LastName) + 0.25 * first + 0.2 * coverage));
    }
    let by_company = c.has(Field::Company) && !last_said && !first_said;
    if c.has(Field::Company) {
        // "Herr Wehrmann" is a person called Wehrmann, not somebody at Wehrmann AG; "Firma
        // Linden" is Linden KG itself before a person who works there.
        let cue = if person_cue {
            0.85
        } else if c.has(Field::LastName) {
            0.97
        } else {
            1.0
        };
        views.push(cue * (0.75 * field_fit(Field::Company) + 0.25 * coverage));
    }
    if !c.has(Field::LastName) && !c.has(Field::Company) {
        let cue = if name.company_cue { 0.85 } else { 1.0 };
        views.push(cue * (0.75 * field_fit(Field::FirstName) + 0.25 * coverage));
    }
    let mut closeness = views.into_iter().fold(0.0, f64::max);

    let mut evidence: Vec<Evidence> = pairs
        .iter()
        .map(|p| Evidence {
            field: c.words[p.contact_word].field,
            how: p.how,
            caller_text: name.words[p.word].text.clone(),
            contact_text: c.words[p.contact_word].text.clone(),
        })
        .collect();
    let mut cue_conflict = false;
    match (name.gender, c.gender) {
        (Some(a), Some(b)) if a == b => {
            closeness += 0.03;
            evidence.push(cue_evidence(Field::Salutation, &contact.fields.salutation));
        }
        (Some(_), Some(_)) => {
            closeness *= 0.9;
            cue_conflict = true;
        }
        _ => {}
    }
    if let Some(t) = name.titles.iter().find(|t| c.titles.contains(t)) {
        closeness += 0.02;
        let stored = if fold(&contact.fields.title).contains(t.as_str()) {
            &contact.fields.title
        } else {
            &contact.fields.salutation
        };
        evidence.push(cue_evidence(Field::Title, stored));
    }
    cue_conflict |= name.company_cue && !c.has(Field::Company);
    cue_conflict |= person_cue && by_company;
    let closeness = closeness.min(1.0);
    if closeness < MIN_NAME_CLOSENESS {
        return Some(NameFit {
            closeness,
            confidence: Confidence::Possible,
            conflict: true,
            evidence: Vec::new(),
        });
    }

    let conflict = unexplained || cue_conflict || !broken_groups.is_empty();
    let principal = pairs.iter().any(|p| {
        matches!(
            c.words[p.contact_word].field,
            Field::LastName | Field::Company
        ) && !p.weak
    }) || (!c.has(Field::LastName) && !c.has(Field::Company) && first_said);
    // Words that only sound alike or are two slips apart may be another name altogether; a
    // first name with a company word ("Hans Eichhof" for Hans Weber of Eichhof KG) is not
    // the person's name; a company is vouched for by its most telling word ("Spree Sanitär"
    // is not "Elbe Sanitär").
    let weak = pairs.iter().any(|p| p.weak)
        || (first_said && c.has(Field::LastName) && !last_said)
        || ((name.company_cue || by_company) && !telling_company_word_said(&c, &pairs));
    let exact = pairs.iter().all(|p| {
        p.how == How::Same || (p.how == How::SpellingVariant && p.similarity > SKELETON_SIMILARITY)
    });
    let all_of = |field: Field| {
        c.words
            .iter()
            .enumerate()
            .filter(|(_, w)| w.field == field)
            .all(|(j, _)| pairs.iter().any(|p| p.contact_word == j))
    };
    let whole = if c.has(Field::LastName) {
        all_of(Field::LastName) && (first_said || !c.has(Field::FirstName))
    } else if c.has(Field::Company) {
        all_of(Field::Company)
    } else {
        false
    };
    let confidence = if conflict || weak || !principal {
        Confidence::Possible
    } else if exact && whole {
        Confidence::Certain
    } else {
        Confidence::Likely
    };
    Some(NameFit {
        closeness,
        confidence,
        conflict,
        evidence,
    })
}

/// Whether the rarest word of the contact's company name fits one of the caller's words.
fn telling_company_word_said(c: &ContactName, pairs: &[Pair]) -> bool {
    // On a tie the first word: "Henk Logistik" is Henk's.
    let mut telling: Option<(usize, f64)> = None;
    for (j, w) in c.words.iter().enumerate() {
        if w.field == Field::Company && telling.is_none_or(|(_, best)| w.weight > best) {
            telling = Some((j, w.weight));
        }
    }
    telling.is_some_and(|(j, _)| pairs.iter().any(|p| p.contact_word == j && !p.weak))
}

fn cue_evidence(field: Field, stored: &str) -> Evidence {
    Evidence {
        field,
        how: How::Same,
        caller_text: String::new(),
        contact_text: stored.to_owned(),
    }
}

/// Each of the caller's words to at most one word of the contact and back, closest pairs
/// first; on a tie a last name before a company before a first name. An initial fits only the
/// start of a first name.
fn align(name: &CallerName, c: &ContactName) -> Vec<Pair> {
    let mut candidates = Vec::new();
    for (i, w) in name.words.iter().enumerate() {
        for (j, cw) in c.words.iter().enumerate() {
            let found = if w.initial {
                (cw.field == Field::FirstName && cw.token.text.starts_with(&w.token.text))
                    .then_some(Likeness {
                        how: How::Initial,
                        similarity: 0.5,
                        weak: false,
                    })
            } else {
                compare(&w.token, &cw.token)
            };
            if let Some(l) = found {
                candidates.push(Pair {
                    word: i,
                    contact_word: j,
                    how: l.how,
                    similarity: l.similarity,
                    weak: l.weak,
                });
            }
        }
    }
    let order = |f: Field| match f {
        Field::LastName => 0,
        Field::Company => 1,
        _ => 2,
    };
    candidates.sort_by(|a, b| {
        b.similarity
            .partial_cmp(&a.similarity)
            .unwrap_or(Ordering::Equal)
            .then(order(c.words[a.contact_word].field).cmp(&order(c.words[b.contact_word].field)))
            .then(a.word.cmp(&b.word))
    });
    let mut pairs: Vec<Pair> = Vec::new();
    for p in candidates {
        if !pairs
            .iter()
            .any(|q| q.word == p.word || q.contact_word == p.contact_word)
        {
            pairs.push(p);
        }
    }
    pairs
}

/// A likely match this close to a certain one leaves it only likely: a typo's distance (a
/// misspelt namesake) is more than this, a surname saved without the first name is less.
const RIVAL_MARGIN: f64 = 0.1;

/// What an incoming call brings to identify its caller by.
pub struct Caller<'a> {
    /// The caller's number in E.164.
    pub number: Option<&'a str>,
    pub name: &'a CallerName,
    pub counts: &'a WordCounts,
}

/// A candidate scored, before only the best may stay certain.
struct Scored {
    contact: Contact,
    kind: MatchKind,
    confidence: Confidence,
    closeness: f64,
    evidence: Vec<Evidence>,
}

/// Scores every candidate (duplicates dropped) and keeps the best `limit`. The kind decides
/// first (number and name, number, direct dial, name), then the confidence, then how close
/// the name is; equal scores go to the contact active most recently.
///
/// Only the first match can be [`Confidence::Certain`], and only without a rival of its kind
/// that is certain too (namesakes, two contacts on one number) or likely and within
/// [`RIVAL_MARGIN`] of its closeness.
pub fn rank(caller: &Caller, candidates: Vec<Contact>, limit: usize) -> Ranking {
    let mut seen = HashSet::new();
    let mut scored: Vec<Scored> = candidates
        .into_iter()
        .filter(|c| seen.insert(c.contact_id))
        .filter_map(|contact| score(caller, contact))
        .collect();
    let order = |a: &Scored, b: &Scored| {
        value(b)
            .partial_cmp(&value(a))
            .unwrap_or(Ordering::Equal)
            .then(
                b.contact
                    .last_activity_time
                    .cmp(&a.contact.last_activity_time),
            )
            .then(a.contact.contact_id.cmp(&b.contact.contact_id))
    };
    scored.sort_by(order);
    // A rival: another match of the top's kind that is certain too, or likely and nearly as
    // close ("Frau Karge" saved without a first name beside Frau Petra Karge).
    let rivals = match scored.split_first() {
        Some((top, rest)) => rest.iter().any(|s| {
            s.kind == top.kind
                && (s.confidence == Confidence::Certain
                    || (s.confidence == Confidence::Likely
                        && top.closeness - s.closeness < RIVAL_MARGIN))
        }),
        None => false,
    };
    for (i, s) in scored.iter_mut().enumerate() {
        if s.confidence == Confidence::Certain && (i > 0 || rivals) {
            s.confidence = Confidence::Likely;
        }
    }
    scored.sort_by(order);
    let ambiguous = match scored.as_slice() {
        [a, b, ..] => {
            a.confidence >= Confidence::Likely
                && a.confidence == b.confidence
                && a.kind == b.kind
                && (a.closeness - b.closeness).abs() < 0.02
        }
        _ => false,
    };
    scored.truncate(limit);
    Ranking {
        ambiguous,
        matches: scored
            .into_iter()
            .map(|s| CallerMatch {
                score: value(&s),
                matched_by: s.kind,
                confidence: s.confidence,
                evidence: s.evidence,
                contact: s.contact,
            })
            .collect(),
    }
}

/// The score: the kind's band, within it the confidence, within that the closeness.
fn value(s: &Scored) -> f64 {
    let (low, high) = s.kind.band();
    let sure = match s.confidence {
        Confidence::Possible => 0.0,
        Confidence::Likely => 1.0,
        Confidence::Certain => 2.0,
    };
    low + (high - low) * (sure + s.closeness.clamp(0.0, 1.0)) / 3.0
}

fn score(caller: &Caller, contact: Contact) -> Option<Scored> {
    let number = caller.number.and_then(|n| {
        contact
            .fields
            .phone_numbers
            .iter()
            .filter_map(|p| Some((phone::number_match(n, &p.e164, &p.number)?, p)))
            .min_by_key(|(m, _)| match m {
                NumberMatch::Exact => 0,
                NumberMatch::DirectDial => 1,
            })
            .map(|(m, p)| (m, n, p.e164.as_str().to_owned()))
    });
    let name = fit(caller.name, &contact, caller.counts);
    let fits = name.as_ref().filter(|f| f.closeness >= MIN_NAME_CLOSENESS);
    let closeness = name.as_ref().map_or(0.0, |f| f.closeness);
    let (kind, confidence) = match (number.as_ref().map(|n| n.0), fits) {
        (Some(NumberMatch::Exact), Some(f)) => (
            MatchKind::PhoneNumberAndName,
            if f.conflict {
                Confidence::Likely
            } else {
                Confidence::Certain
            },
        ),
        (Some(NumberMatch::Exact), None) => (
            MatchKind::PhoneNumber,
            if name.is_some() {
                Confidence::Likely
            } else {
                Confidence::Certain
            },
        ),
        (Some(NumberMatch::DirectDial), f) => (
            MatchKind::DirectDial,
            if f.is_some_and(|f| f.confidence >= Confidence::Likely) {
                Confidence::Likely
            } else {
                Confidence::Possible
            },
        ),
        (None, Some(f)) => (MatchKind::Name, f.confidence),
        (None, None) => return None,
    };
    let mut evidence = Vec::new();
    if let Some((m, caller_number, stored)) = number {
        evidence.push(Evidence {
            field: Field::PhoneNumber,
            how: match m {
                NumberMatch::Exact => How::ExactNumber,
                NumberMatch::DirectDial => How::DirectDial,
            },
            caller_text: caller_number.to_owned(),
            contact_text: stored,
        });
    }
    if let Some(f) = fits {
        evidence.extend(f.evidence.iter().cloned());
    }
    let closeness = match kind {
        // On a number the name only orders, and no name orders like a fitting one.
        MatchKind::PhoneNumber if name.is_none() => 1.0,
        MatchKind::PhoneNumber => closeness / MIN_NAME_CLOSENESS * 0.99,
        _ => closeness,
    };
    Some(Scored {
        contact,
        kind,
        confidence,
        closeness: closeness.clamp(0.0, 1.0),
        evidence,
    })
}

#[cfg(test)]
mod tests;
