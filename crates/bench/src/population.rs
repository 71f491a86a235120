//! The recognition-quality evaluation's account and callers: contacts generated
//! deterministically from a seed, and the names callers give, each with the contacts it fits
//! equally well. No I/O, so the generator's determinism and the fairness rules are tested alone.
//!
//! A query "fits one contact" only when nobody else in the account is equally consistent with
//! it; otherwise it is ambiguous, and any equally consistent contact counts as a hit. Variants
//! (typos, spellings, phonetic twins) that spell somebody else's real name are not generated:
//! for those the other person would be the right answer.

use crate::quality_words::*;
use crate::words::{
    COMPANY_BRANDS, COMPANY_TRADES, FIRST_NAMES, LAST_NAMES, SURNAME_HEADS, SURNAME_TAILS,
};
use callers_domain::names::{fold, koelner_phonetik, search_tokens};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The commonest German surnames, in order (`words::LAST_NAMES` starts with them).
const TOP_SURNAMES: usize = 100;
/// Müller's share of all contacts, as in Germany (about 1 %).
const MUELLER_SHARE: f64 = 0.01;
const COMPANY_SHARE: f64 = 0.25;
const PERSON_AT_COMPANY_SHARE: f64 = 0.13;
const GERMAN_SHARE: f64 = 0.85;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    German,
    Foreign(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    pub id: Uuid,
    pub origin: Origin,
    pub female: bool,
    pub salutation: String,
    pub title: String,
    pub first_name: String,
    pub last_name: String,
    /// As stored: name words and legal form.
    pub company: String,
    /// The company's name words without the legal form.
    pub company_name: String,
}

impl Contact {
    pub fn is_person(&self) -> bool {
        !self.last_name.is_empty()
    }

    fn is_company_only(&self) -> bool {
        !self.is_person() && self.first_name.is_empty() && !self.company.is_empty()
    }
}

/// Rank weights `rank^-exponent`, sampled by bisection.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, exponent: f64) -> Self {
        let mut acc = 0.0;
        Zipf(
            (0..n)
                .map(|i| {
                    acc += 1.0 / ((i + 1) as f64).powf(exponent);
                    acc
                })
                .collect(),
        )
    }

    fn first_share(&self) -> f64 {
        self.0[0] / self.0[self.0.len() - 1]
    }

    fn sample(&self, rng: &mut SmallRng) -> usize {
        let x = rng.random::<f64>() * self.0[self.0.len() - 1];
        self.0.partition_point(|&c| c < x).min(self.0.len() - 1)
    }
}

struct Surnames {
    top: Zipf,
    /// Share of German persons who carry one of the hundred commonest names.
    top_share: f64,
}

impl Surnames {
    fn new() -> Self {
        let top = Zipf::new(TOP_SURNAMES, 0.65);
        let persons = (1.0 - COMPANY_SHARE) * GERMAN_SHARE;
        let top_share = (MUELLER_SHARE / (top.first_share() * persons)).min(1.0);
        Surnames { top, top_share }
    }

    fn german(&self, rng: &mut SmallRng) -> String {
        if rng.random_bool(self.top_share) {
            return LAST_NAMES[self.top.sample(rng)].to_owned();
        }
        // The long tail: rarer real names now and then, mostly compounds (Brandmeier).
        if rng.random_bool(0.05) {
            let tail = &LAST_NAMES[TOP_SURNAMES..];
            let german = tail
                .iter()
                .position(|n| *n == "Nowak")
                .unwrap_or(tail.len());
            return tail[..german].choose(rng).expect("non-empty").to_string();
        }
        format!(
            "{}{}",
            SURNAME_HEADS.choose(rng).expect("non-empty"),
            SURNAME_TAILS.choose(rng).expect("non-empty")
        )
    }
}

fn feminine_polish(last: &str) -> String {
    for (m, f) in [("ski", "ska"), ("cki", "cka"), ("dzki", "dzka")] {
        if let Some(stem) = last.strip_suffix(m) {
            return format!("{stem}{f}");
        }
    }
    last.to_owned()
}

/// `n` contacts of one account, the same for the same `seed`.
pub fn population(seed: u64, n: usize) -> Vec<Contact> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x0a11_7e57_ca11_e125);
    let surnames = Surnames::new();
    let mut out: Vec<Contact> = Vec::with_capacity(n);
    let mut companies: Vec<usize> = Vec::new();
    for _ in 0..n {
        let mut id = [0u8; 16];
        rng.fill(&mut id);
        let id = uuid::Builder::from_random_bytes(id).into_uuid();
        let roll = rng.random::<f64>();
        let mut c = Contact {
            id,
            origin: Origin::German,
            female: false,
            salutation: String::new(),
            title: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            company: String::new(),
            company_name: String::new(),
        };
        if roll < COMPANY_SHARE {
            let (name, full) = company(&mut rng, &surnames);
            c.company_name = name;
            c.company = full;
            companies.push(out.len());
            out.push(c);
            continue;
        }
        let at_company = roll < COMPANY_SHARE + PERSON_AT_COMPANY_SHARE;
        let female;
        if rng.random_bool(GERMAN_SHARE) {
            let (first, f) = if rng.random_bool(0.08) {
                *DOUBLE_FIRST_NAMES.choose(&mut rng).expect("non-empty")
            } else {
                *FIRST_NAMES.choose(&mut rng).expect("non-empty")
            };
            female = f;
            c.first_name = first.to_owned();
            c.last_name = surnames.german(&mut rng);
        } else {
            // Turkish, Polish, Italian, English in the ratio 5:4:3:3.
            let f = match rng.random_range(0..15) {
                0..5 => &TURKISH,
                5..9 => &POLISH,
                9..12 => &ITALIAN,
                _ => &ENGLISH,
            };
            let (first, fem) = *f.first.choose(&mut rng).expect("non-empty");
            let last = *f.last.choose(&mut rng).expect("non-empty");
            female = fem;
            c.origin = Origin::Foreign(f.origin);
            c.first_name = first.to_owned();
            c.last_name = if fem && f.origin == "Polish" {
                feminine_polish(last)
            } else {
                last.to_owned()
            };
        }
        // Callers noted as "Frau Karge" only.
        if !at_company && rng.random_bool(0.1) {
            c.first_name.clear();
        }
        if rng.random_bool(0.8) || c.first_name.is_empty() {
            c.salutation = if female { "Frau" } else { "Herr" }.to_owned();
        }
        c.female = female;
        c.title = match rng.random_range(0..1000) {
            0..60 => "Dr.",
            60..70 => "Prof. Dr.",
            70..75 => "Prof.",
            _ => "",
        }
        .to_owned();
        if at_company {
            // Mostly someone at a company that is a contact itself.
            if let Some(&k) = companies.choose(&mut rng).filter(|_| rng.random_bool(0.6)) {
                c.company_name = out[k].company_name.clone();
                c.company = out[k].company.clone();
            } else {
                let (name, full) = company(&mut rng, &surnames);
                c.company_name = name;
                c.company = full;
            }
        }
        out.push(c);
    }
    out
}

/// A company of one to three name words, and with its legal form.
fn company(rng: &mut SmallRng, surnames: &Surnames) -> (String, String) {
    let head = |rng: &mut SmallRng| -> String {
        if rng.random_bool(0.6) {
            surnames.german(rng)
        } else {
            COMPANY_BRANDS.choose(rng).expect("non-empty").to_string()
        }
    };
    let trade = |rng: &mut SmallRng| COMPANY_TRADES.choose(rng).expect("non-empty").to_string();
    let name = match rng.random_range(0..10) {
        0..2 => head(rng),
        2..5 => format!("{} {}", head(rng), trade(rng)),
        5..7 => format!("{} {}", trade(rng), surnames.german(rng)),
        _ => format!(
            "{} {} {}",
            head(rng),
            trade(rng),
            COMPANY_SUFFIXES.choose(rng).expect("non-empty")
        ),
    };
    let form = *QUALITY_LEGAL_FORMS.choose(rng).expect("non-empty");
    let full = if form.is_empty() {
        name.clone()
    } else {
        format!("{name} {form}")
    };
    (name, full)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    Exact,
    Reversed,
    Salutation,
    TypoSurname,
    TypoEither,
    Phonetic,
    Umlaut,
    Hyphenated,
    CompanyFirma,
    CompanyPartial,
    ForeignExact,
    ForeignTypo,
    AbsentCombination,
    AbsentUnknown,
    AbsentCompany,
}

impl Class {
    pub const ALL: [Class; 15] = [
        Class::Exact,
        Class::Reversed,
        Class::Salutation,
        Class::TypoSurname,
        Class::TypoEither,
        Class::Phonetic,
        Class::Umlaut,
        Class::Hyphenated,
        Class::CompanyFirma,
        Class::CompanyPartial,
        Class::ForeignExact,
        Class::ForeignTypo,
        Class::AbsentCombination,
        Class::AbsentUnknown,
        Class::AbsentCompany,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Class::Exact => "exact (First Last)",
            Class::Reversed => "reversed (Last, First)",
            Class::Salutation => "salutation/title + surname",
            Class::TypoSurname => "typo in the surname",
            Class::TypoEither => "first + surname, typo in either",
            Class::Phonetic => "phonetic spelling of the surname",
            Class::Umlaut => "umlaut spelt ue/u, ß as ss",
            Class::Hyphenated => "double first name",
            Class::CompanyFirma => "Firma + company without legal form",
            Class::CompanyPartial => "part of a company's name",
            Class::ForeignExact => "foreign name, exact",
            Class::ForeignTypo => "foreign name, typo in either",
            Class::AbsentCombination => "not in account: known words, new pair",
            Class::AbsentUnknown => "not in account: unknown surname",
            Class::AbsentCompany => "not in account: company",
        }
    }

    pub fn in_account(self) -> bool {
        !matches!(
            self,
            Class::AbsentCombination | Class::AbsentUnknown | Class::AbsentCompany
        )
    }

    /// Judged by "top-1 ≥ 98 %" (ambiguous queries count any equally consistent contact).
    pub fn top1_goal(self) -> bool {
        self.in_account() && self != Class::Salutation
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub class: Class,
    pub text: String,
    pub intended: Option<usize>,
    /// Every contact as consistent with the query as the intended one (it included).
    pub consistent: Vec<usize>,
    /// Folded surname of a salutation query.
    pub surname: String,
}

impl Query {
    pub fn ambiguous(&self) -> bool {
        self.consistent.len() > 1
    }

    pub fn hit1(&self, ranked: &[usize]) -> bool {
        ranked.first().is_some_and(|t| self.consistent.contains(t))
    }

    pub fn hit5(&self, ranked: &[usize]) -> bool {
        ranked.iter().take(5).any(|t| self.consistent.contains(t))
    }

    /// Salutation queries: the first match is a person with the surname said.
    pub fn person_with_surname(&self, ranked: &[usize], pop: &[Contact]) -> bool {
        ranked
            .first()
            .is_some_and(|&t| pop[t].is_person() && fold(&pop[t].last_name) == self.surname)
    }
}

/// Lookups over the population for consistency checks.
pub struct Index<'p> {
    pop: &'p [Contact],
    by_name: HashMap<(String, String), Vec<usize>>,
    by_surname: HashMap<String, Vec<usize>>,
    tokens: Vec<HashSet<String>>,
    surnames: HashSet<String>,
    /// Every surname (folded) with its Kölner Phonetik code.
    surname_codes: Vec<(String, String)>,
}

impl<'p> Index<'p> {
    pub fn new(pop: &'p [Contact]) -> Self {
        let mut by_name: HashMap<(String, String), Vec<usize>> = HashMap::new();
        let mut by_surname: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, c) in pop.iter().enumerate() {
            if !c.is_person() {
                continue;
            }
            let (f, l) = (fold(&c.first_name), fold(&c.last_name));
            by_surname.entry(l.clone()).or_default().push(i);
            by_name.entry((f, l)).or_default().push(i);
        }
        let tokens = pop
            .iter()
            .map(|c| {
                search_tokens(&format!("{} {} {}", c.first_name, c.last_name, c.company))
                    .into_iter()
                    .collect()
            })
            .collect();
        let surnames: HashSet<String> = by_surname.keys().cloned().collect();
        let mut surname_codes: Vec<(String, String)> = surnames
            .iter()
            .map(|s| (s.clone(), koelner_phonetik(s)))
            .collect();
        // HashSet order is random per process; the queries must not depend on it.
        surname_codes.sort();
        Index {
            pop,
            by_name,
            by_surname,
            tokens,
            surnames,
            surname_codes,
        }
    }

    /// Persons with the same first and last name, ignoring case, accents and hyphens.
    pub fn namesakes(&self, first: &str, last: &str) -> Vec<usize> {
        self.by_name
            .get(&(fold(first), fold(last)))
            .cloned()
            .unwrap_or_default()
    }

    /// The persons a varied name ("Hans Mayer", "Hans Mülelr") fits as well as it fits person
    /// `intended`, counting how far each word is from the contact's (see [`deviation`]); None
    /// when somebody else fits it better (then that person is the right answer).
    pub fn variant_consistent(
        &self,
        first: &str,
        last: &str,
        intended: usize,
    ) -> Option<Vec<usize>> {
        let (qf, ql) = (fold(first), fold(last));
        let (qf_code, ql_code) = (koelner_phonetik(&qf), koelner_phonetik(&ql));
        let c = &self.pop[intended];
        let (f, l) = (fold(&c.first_name), fold(&c.last_name));
        let own = deviation(&qf, &qf_code, &f, &koelner_phonetik(&f))
            + deviation(&ql, &ql_code, &l, &koelner_phonetik(&l));
        let mut out = Vec::new();
        for (s, code) in &self.surname_codes {
            let dl = deviation(&ql, &ql_code, s, code);
            if dl > own {
                continue;
            }
            for &k in &self.by_surname[s] {
                let kf = fold(&self.pop[k].first_name);
                let total = dl + deviation(&qf, &qf_code, &kf, &koelner_phonetik(&kf));
                if total < own {
                    return None;
                }
                if total == own {
                    out.push(k);
                }
            }
        }
        out.sort_unstable();
        Some(out)
    }

    /// Persons "Frau Dr. Karge" fits: that surname, and a salutation and title that do not
    /// contradict it (an unrecorded one contradicts nothing).
    pub fn salutation_consistent(&self, salutation: &str, title: &str, last: &str) -> Vec<usize> {
        let Some(all) = self.by_surname.get(&fold(last)) else {
            return Vec::new();
        };
        all.iter()
            .copied()
            .filter(|&i| {
                let c = &self.pop[i];
                (c.salutation.is_empty() || c.salutation == salutation)
                    && (title.is_empty() || c.title.is_empty() || c.title == title)
            })
            .collect()
    }

    /// Contacts holding every word of `text` (companies only: no person's name).
    pub fn holding_words(&self, text: &str, companies_only: bool) -> Vec<usize> {
        let want = search_tokens(text);
        (0..self.pop.len())
            .filter(|&i| {
                (!companies_only || self.pop[i].is_company_only())
                    && want.iter().all(|w| self.tokens[i].contains(w))
            })
            .collect()
    }
}

/// Optimal string alignment distance (Damerau-Levenshtein without repeated edits of one
/// substring) of the folded words.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// How far a caller's (folded) word is from a contact's: 0 the same, 1 a spelling that sounds
/// the same (Kölner Phonetik) or one edit, otherwise the edit distance.
fn deviation(a: &str, a_code: &str, b: &str, b_code: &str) -> usize {
    if a == b {
        return 0;
    }
    if a.chars().count().abs_diff(b.chars().count()) > 3 && a_code != b_code {
        return 4;
    }
    let d = edit_distance(a, b);
    if a_code == b_code && !a_code.is_empty() {
        d.min(1)
    } else {
        d
    }
}

/// Close enough that a good scorer may fairly suggest one for the other.
fn near(a: &str, b: &str) -> bool {
    let (a, b) = (fold(a), fold(b));
    a == b || edit_distance(&a, &b) <= 2 || koelner_phonetik(&a) == koelner_phonetik(&b)
}

/// One typo in a word of at least four letters, never in its first letter (which callers and
/// agents rarely get wrong): a letter missing, extra, wrong, or two swapped.
pub fn typo(rng: &mut SmallRng, word: &str, swap: bool) -> String {
    let mut c: Vec<char> = word.chars().collect();
    if swap {
        let i = rng.random_range(1..c.len() - 1);
        c.swap(i, i + 1);
    } else {
        let i = rng.random_range(1..c.len());
        let letter = char::from(b'a' + rng.random_range(0..26u8));
        match rng.random_range(0..3) {
            0 => {
                c.remove(i);
            }
            1 => c.insert(i, letter),
            _ => c[i] = letter,
        }
    }
    c.into_iter().collect()
}

fn plain_word(s: &str) -> bool {
    s.chars().count() >= 4 && s.chars().all(char::is_alphabetic)
}

/// Umlauts without the umlaut: "ue" (which folds alike) or the bare vowel, ß as ss.
fn without_umlauts(s: &str, with_e: bool) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        let (bare, e) = match ch {
            'ä' => ("a", "ae"),
            'ö' => ("o", "oe"),
            'ü' => ("u", "ue"),
            'Ä' => ("A", "Ae"),
            'Ö' => ("O", "Oe"),
            'Ü' => ("U", "Ue"),
            'ß' => ("ss", "ss"),
            _ => {
                out.push(ch);
                continue;
            }
        };
        out.push_str(if with_e { e } else { bare });
    }
    out
}

/// The other spellings of a surname that sound alike (Meier: Meyer, Maier, Mayer).
pub fn phonetic_variants(last: &str) -> Vec<String> {
    for family in PHONETIC_FAMILIES {
        if family.contains(&last) {
            return family
                .iter()
                .filter(|s| **s != last)
                .map(|s| s.to_string())
                .collect();
        }
    }
    for tail in MEIER_TAILS {
        if let Some(head) = last.strip_suffix(tail) {
            return MEIER_TAILS
                .iter()
                .filter(|t| *t != tail)
                .map(|t| format!("{head}{t}"))
                .collect();
        }
    }
    Vec::new()
}

/// `per_class` queries of every class, the same for the same `seed` and population.
pub fn queries(pop: &[Contact], index: &Index<'_>, seed: u64, per_class: usize) -> Vec<Query> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x0c0f_fee0_9e37_79b9);
    let mut out = Vec::new();
    for class in Class::ALL {
        let mut made = 0;
        let mut attempts = 0;
        while made < per_class && attempts < per_class * 200 {
            attempts += 1;
            let i = rng.random_range(0..pop.len());
            if let Some(q) = query(class, i, pop, index, &mut rng) {
                out.push(q);
                made += 1;
            }
        }
    }
    out
}

fn person_query(class: Class, i: usize, text: String, consistent: Vec<usize>) -> Option<Query> {
    debug_assert!(consistent.contains(&i));
    Some(Query {
        class,
        text,
        intended: Some(i),
        consistent,
        surname: String::new(),
    })
}

fn absent(class: Class, text: String) -> Option<Query> {
    Some(Query {
        class,
        text,
        intended: None,
        consistent: Vec::new(),
        surname: String::new(),
    })
}

/// The query of `class` about contact `i` (or, for the absent classes, drawn with its help),
/// or None when `i` does not suit the class.
fn query(
    class: Class,
    i: usize,
    pop: &[Contact],
    index: &Index<'_>,
    rng: &mut SmallRng,
) -> Option<Query> {
    let c = &pop[i];
    let german = c.origin == Origin::German;
    let named = c.is_person() && !c.first_name.is_empty();
    let (first, last) = (c.first_name.as_str(), c.last_name.as_str());
    match class {
        Class::Exact | Class::Reversed | Class::Hyphenated | Class::ForeignExact => {
            let fits = match class {
                Class::Hyphenated => named && first.contains(['-', ' ']),
                Class::ForeignExact => named && !german,
                _ => named && german,
            };
            if !fits {
                return None;
            }
            let text = match class {
                Class::Reversed => format!("{last}, {first}"),
                Class::Hyphenated => {
                    let f = if rng.random_bool(0.5) {
                        first.to_owned()
                    } else if first.contains('-') {
                        first.replace('-', " ")
                    } else {
                        first.replace(' ', "-")
                    };
                    format!("{f} {last}")
                }
                // Foreign names also come reversed now and then.
                Class::ForeignExact if rng.random_bool(0.3) => format!("{last}, {first}"),
                _ => format!("{first} {last}"),
            };
            person_query(class, i, text, index.namesakes(first, last))
        }
        Class::Salutation => {
            if !c.is_person() {
                return None;
            }
            // Callers say "Herr" or "Frau" whether or not the contact has it recorded.
            let salutation = if c.female { "Frau" } else { "Herr" }.to_owned();
            let title = if !c.title.is_empty() && rng.random_bool(0.7) {
                c.title.clone()
            } else {
                String::new()
            };
            let text = [salutation.as_str(), title.as_str(), last]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            let mut q = person_query(
                class,
                i,
                text,
                index.salutation_consistent(&salutation, &title, last),
            )?;
            q.surname = fold(last);
            Some(q)
        }
        Class::TypoSurname | Class::TypoEither | Class::ForeignTypo => {
            let fits = match class {
                Class::ForeignTypo => named && !german,
                _ => named && german,
            };
            if !fits {
                return None;
            }
            let in_first = class != Class::TypoSurname && plain_word(first) && rng.random_bool(0.5);
            let swap = rng.random_bool(if class == Class::TypoSurname {
                0.25
            } else {
                0.5
            });
            let (f, l) = if in_first {
                (typo(rng, first, swap), last.to_owned())
            } else {
                if !plain_word(last) {
                    return None;
                }
                (first.to_owned(), typo(rng, last, swap))
            };
            if fold(&f) == fold(first) && fold(&l) == fold(last) {
                return None;
            }
            let consistent = index.variant_consistent(&f, &l, i)?;
            person_query(class, i, format!("{f} {l}"), consistent)
        }
        Class::Phonetic => {
            if !named {
                return None;
            }
            let variants = phonetic_variants(last);
            let v = variants.choose(rng)?;
            let consistent = index.variant_consistent(first, v, i)?;
            person_query(class, i, format!("{first} {v}"), consistent)
        }
        Class::Umlaut => {
            let has = |s: &str| s.contains(['ä', 'ö', 'ü', 'Ä', 'Ö', 'Ü', 'ß']);
            if !named || !(has(first) || has(last)) {
                return None;
            }
            let with_e = rng.random_bool(0.5);
            let (f, l) = (
                without_umlauts(first, with_e),
                without_umlauts(last, with_e),
            );
            let consistent = index.variant_consistent(&f, &l, i)?;
            person_query(class, i, format!("{f} {l}"), consistent)
        }
        Class::CompanyFirma => {
            if !c.is_company_only() {
                return None;
            }
            let text = format!("Firma {}", c.company_name);
            let consistent = index.holding_words(&text, true);
            person_query(class, i, text, consistent)
        }
        Class::CompanyPartial => {
            let words: Vec<&str> = c.company_name.split(' ').collect();
            if !c.is_company_only() || words.len() < 2 {
                return None;
            }
            let text = if words.len() == 3 {
                format!("{} {}", words[0], words[1])
            } else if COMPANY_TRADES.contains(&words[0]) {
                words[1].to_owned()
            } else {
                words[0].to_owned()
            };
            let consistent = index.holding_words(&text, false);
            person_query(class, i, text, consistent)
        }
        Class::AbsentCombination => {
            // A first name and a surname both in the account, never together, nor anything
            // near them together (Hans Meier when Heinz Meyer exists is not absent).
            let (f, _) = *FIRST_NAMES.choose(rng).expect("non-empty");
            if !c.is_person() || !german {
                return None;
            }
            // A person noted by surname only may be anybody of that name.
            let taken = index.by_surname.iter().any(|(s, ids)| {
                near(s, last)
                    && ids
                        .iter()
                        .any(|&k| pop[k].first_name.is_empty() || near(&pop[k].first_name, f))
            });
            if taken {
                return None;
            }
            absent(class, format!("{f} {last}"))
        }
        Class::AbsentUnknown => {
            // A surname two edits or more from every surname of the account.
            let last = *ABSENT_SURNAMES.choose(rng).expect("non-empty");
            let fl = fold(last);
            if index.surnames.iter().any(|s| edit_distance(s, &fl) < 2) {
                return None;
            }
            let text = match rng.random_range(0..10) {
                0..3 => format!(
                    "{} {last}",
                    if rng.random_bool(0.5) { "Herr" } else { "Frau" }
                ),
                3..6 => format!("{} {last}", FIRST_NAMES.choose(rng).expect("non-empty").0),
                _ => format!(
                    "{} {last}",
                    ABSENT_FIRST_NAMES.choose(rng).expect("non-empty")
                ),
            };
            absent(class, text)
        }
        Class::AbsentCompany => {
            let head = if rng.random_bool(0.5) {
                COMPANY_BRANDS.choose(rng).expect("non-empty").to_string()
            } else if c.is_person() && german {
                last.to_owned()
            } else {
                return None;
            };
            let text = format!(
                "Firma {head} {}",
                COMPANY_TRADES.choose(rng).expect("non-empty")
            );
            if !index.holding_words(&text, false).is_empty() {
                return None;
            }
            absent(class, text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(first: &str, last: &str, salutation: &str, title: &str) -> Contact {
        Contact {
            id: Uuid::nil(),
            origin: Origin::German,
            female: salutation == "Frau",
            salutation: salutation.into(),
            title: title.into(),
            first_name: first.into(),
            last_name: last.into(),
            company: String::new(),
            company_name: String::new(),
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_account_and_callers() {
        let a = population(7, 3_000);
        let b = population(7, 3_000);
        assert_eq!(a, b);
        assert_ne!(a, population(8, 3_000));
        let qa = queries(&a, &Index::new(&a), 7, 20);
        let qb = queries(&b, &Index::new(&b), 7, 20);
        assert_eq!(qa, qb);
        for class in Class::ALL {
            assert!(qa.iter().any(|q| q.class == class), "{class:?}");
        }
    }

    #[test]
    fn mueller_carries_about_one_percent() {
        let p = population(1, 20_000);
        let share = p.iter().filter(|c| c.last_name == "Müller").count() as f64 / 20_000.0;
        assert!((0.007..0.013).contains(&share), "{share}");
    }

    #[test]
    fn namesakes_make_a_query_ambiguous_and_any_of_them_a_hit() {
        let pop = vec![
            person("Hans", "Müller", "Herr", ""),
            person("Hans", "Mueller", "", ""),
            person("Karl-Heinz", "Müller", "Herr", ""),
            person("", "Karge", "Frau", "Dr."),
            person("Petra", "Karge", "Frau", ""),
            person("Paul", "Karge", "Herr", ""),
        ];
        let index = Index::new(&pop);
        assert_eq!(index.namesakes("Hans", "Müller"), vec![0, 1]);
        assert_eq!(index.namesakes("Karl Heinz", "Muller"), Vec::<usize>::new());
        assert_eq!(index.namesakes("Karl Heinz", "Müller"), vec![2]);
        // "Frau Dr. Karge" fits the Dr. and Petra (title not recorded), not Herr Karge.
        assert_eq!(
            index.salutation_consistent("Frau", "Dr.", "Karge"),
            vec![3, 4]
        );
        assert_eq!(index.salutation_consistent("Herr", "", "Karge"), vec![5]);
        let q = Query {
            class: Class::Exact,
            text: "Hans Müller".into(),
            intended: Some(0),
            consistent: index.namesakes("Hans", "Müller"),
            surname: String::new(),
        };
        assert!(q.ambiguous());
        assert!(q.hit1(&[1, 0]));
        assert!(!q.hit1(&[2, 0]));
        assert!(q.hit5(&[2, 3, 4, 5, 0]));
        assert!(!q.hit5(&[2, 3, 4, 5, 5, 0]));
    }

    #[test]
    fn a_variant_fits_every_contact_it_is_as_close_to_and_none_when_another_is_closer() {
        let pop = vec![
            person("Hans", "Meier", "Herr", ""),
            person("Hans", "Maier", "Herr", ""),
            person("Peter", "Mayer", "Herr", ""),
            person("Marie", "Sonnenmayr", "Frau", ""),
            person("Mia", "Sonnenmeier", "Frau", ""),
            person("Hans", "Herrmann", "Herr", ""),
        ];
        let index = Index::new(&pop);
        // Meier and Maier both sound like Mayer; Peter Mayer has another first name.
        assert_eq!(
            index.variant_consistent("Hans", "Mayer", 0),
            Some(vec![0, 1])
        );
        // The first name is the caller's own; Mia is not Marie.
        assert_eq!(
            index.variant_consistent("Marie", "Sonnenmeier", 3),
            Some(vec![3])
        );
        assert_eq!(
            index.variant_consistent("Hans", "Herramnn", 5),
            Some(vec![5])
        );
        // "Peter Mayer" is somebody: not a variant of Hans Meier.
        assert_eq!(index.variant_consistent("Peter", "Mayer", 0), None);
    }

    #[test]
    fn variants_never_spell_somebody_elses_name() {
        let pop = population(3, 5_000);
        let index = Index::new(&pop);
        for q in queries(&pop, &index, 3, 100) {
            let t = search_tokens(&q.text);
            if matches!(q.class, Class::TypoSurname | Class::Phonetic) {
                let first = &pop[q.intended.unwrap()].first_name;
                let exact = index.namesakes(first, &t[t.len() - 1]);
                assert!(exact.is_empty(), "{} names {exact:?}", q.text);
            }
            if !q.class.in_account() {
                assert!(q.consistent.is_empty() && q.intended.is_none());
            }
        }
        assert_eq!(edit_distance("herrmann", "herramnn"), 1);
        assert_eq!(edit_distance("young", "jung"), 2);
    }
}
