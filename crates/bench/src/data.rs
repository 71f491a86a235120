//! Realistic data, generated deterministically per account (one RNG per account, seeded from the
//! run's seed), so two seeds with the same parameters produce the same rows (but for the
//! random parts of ids) and accounts can be generated in parallel.
//!
//! Stored search columns come from the domain code the server uses: numbers through
//! `callers_domain::phone::normalize`, and `search_text` through
//! `ContactFields`, so the rows are exactly what `CreateContact` would have written.

use crate::words::*;
use callers_domain::contact::{Categories, ContactFields, PhoneEntry, PhoneType};
use callers_domain::phone::{self, Region};
use callers_testkit::rows::{
    CallHandlingRow, ContactRow, EmployeeCallHandlingRow, NoteRow, PhoneRow,
};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// How contacts are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A realistic address book: a share of caller-only contacts, activity over two years.
    Realistic,
    /// For the purge benchmark: exactly one contact in `one_in` of an account is due (caller
    /// only, not kept, last activity 181 days to two years ago); the others are not (recent
    /// callers, kept callers, other categories). `one_in = 2` is the usual half.
    Due { one_in: u64 },
}

pub const TWO_YEARS_DAYS: i64 = 730;

/// The id of account `i`; the largest accounts come first.
pub fn account_id(i: usize) -> String {
    format!("acc-{i:05}")
}

/// Sizes of `accounts` accounts summing to `total`: `big` accounts of `big_size`, the rest
/// following a power law (a few thousand contacts in the largest small ones, tens in the tail).
/// Every size is a multiple of `multiple` (for [`Layout::Due`]; 1 for any size).
pub fn account_sizes(
    total: u64,
    accounts: usize,
    big: usize,
    big_size: u64,
    multiple: u64,
) -> Vec<u64> {
    let big = big.min(accounts);
    let mut sizes: Vec<u64> = vec![big_size; big];
    let rest_total = total.saturating_sub(big_size * big as u64);
    let rest = accounts - big;
    if rest > 0 {
        let weights: Vec<f64> = (0..rest)
            .map(|i| 1.0 / ((i + 2) as f64).powf(0.7))
            .collect();
        let sum: f64 = weights.iter().sum();
        for w in weights {
            sizes.push(((w / sum) * rest_total as f64).round().max(1.0) as u64);
        }
    }
    for s in &mut sizes {
        *s = s.div_ceil(multiple) * multiple;
    }
    // Make the sum exact on the largest small account (or the first).
    let sum: u64 = sizes.iter().sum();
    let fix = if big < sizes.len() { big } else { 0 };
    if sum > total {
        sizes[fix] = sizes[fix].saturating_sub(sum - total).max(multiple);
    } else {
        sizes[fix] += total - sum;
    }
    sizes
}

/// One account's call-handling settings and its employees' exceptions.
pub struct HandlingRow {
    pub settings: CallHandlingRow,
    pub employees: Vec<EmployeeCallHandlingRow>,
}

#[derive(Default)]
pub struct Chunk {
    pub contacts: Vec<ContactRow>,
    pub phones: Vec<PhoneRow>,
    pub notes: Vec<NoteRow>,
    pub handling: Vec<HandlingRow>,
}

/// Cumulative weights for sampling a list by rank (`rank^-exponent`).
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, exponent: f64) -> Self {
        let mut acc = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                acc += 1.0 / ((i + 1) as f64).powf(exponent);
                acc
            })
            .collect();
        Self { cumulative }
    }

    fn sample(&self, rng: &mut SmallRng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.cumulative.len() - 1)
    }
}

/// Shared sampling tables.
pub struct Tables {
    first: Zipf,
    last: Zipf,
    heads: Zipf,
    tails: Zipf,
    region: Region,
}

impl Default for Tables {
    fn default() -> Self {
        Self {
            first: Zipf::new(FIRST_NAMES.len(), 0.3),
            last: Zipf::new(LAST_NAMES.len(), 0.5),
            heads: Zipf::new(SURNAME_HEADS.len(), 0.3),
            tails: Zipf::new(SURNAME_TAILS.len(), 0.3),
            region: Region::germany(),
        }
    }
}

impl Tables {
    /// A surname: a quarter from the commonest names (Müller then carries about 1.2 %, close
    /// to its share in Germany), the rest from the long tail of compound names.
    pub fn surname(&self, rng: &mut SmallRng) -> String {
        if rng.random_bool(0.25) {
            LAST_NAMES[self.last.sample(rng)].to_owned()
        } else {
            format!(
                "{}{}",
                SURNAME_HEADS[self.heads.sample(rng)],
                SURNAME_TAILS[self.tails.sample(rng)]
            )
        }
    }
}

/// A UUIDv7 for `t` with random bits from `rng`, as the server makes them (time-ordered).
pub fn uuid_v7(t: DateTime<Utc>, rng: &mut SmallRng) -> Uuid {
    let mut bytes = [0u8; 10];
    rng.fill(&mut bytes);
    uuid::Builder::from_unix_timestamp_millis(t.timestamp_millis().max(0) as u64, &bytes)
        .into_uuid()
}

fn between(rng: &mut SmallRng, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
    let span = (to - from).num_microseconds().unwrap_or(0).max(0);
    if span == 0 {
        return from;
    }
    from + Duration::microseconds(rng.random_range(0..span))
}

fn digits(rng: &mut SmallRng, n: usize) -> String {
    let mut s = String::with_capacity(n);
    // No leading 0 or 1 in the subscriber part.
    s.push(char::from(b'2' + rng.random_range(0..8u8)));
    for _ in 1..n {
        s.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
    s
}

/// Splits "1234567" into "123 45 67"-style groups.
fn grouped(s: &str) -> String {
    let mut out = String::new();
    let head = s.len() % 2 + 2;
    out.push_str(&s[..head.min(s.len())]);
    let mut i = head;
    while i < s.len() {
        out.push(' ');
        out.push_str(&s[i..(i + 2).min(s.len())]);
        i += 2;
    }
    out
}

/// One of the ways people and systems write a German number `area`/`subscriber`.
pub fn written(rng: &mut SmallRng, area: &str, sub: &str) -> String {
    match rng.random_range(0..12) {
        0 => format!("+49 {area} {sub}"),
        1 => format!("0{area} {sub}"),
        2 => format!("0{area}/{sub}"),
        3 => format!("(0{area}) {}", grouped(sub)),
        4 => format!("0049 {area} {sub}"),
        5 => format!("+49 (0){area} {sub}"),
        6 => format!("+49-{area}-{sub}"),
        7 => format!("+49{area}{sub}"),
        8 => format!("0{area}-{sub}"),
        9 => format!("0{area}{sub}"),
        10 => format!("tel:+49-{area}-{sub}"),
        _ => format!("0{area} {}", grouped(sub)),
    }
}

/// A random valid German number: (as written, E.164). Mobile or landline.
pub fn random_number(tables: &Tables, rng: &mut SmallRng) -> (String, String) {
    for _ in 0..20 {
        let (area, len) = if rng.random_bool(0.45) {
            *MOBILE_PREFIXES.choose(rng).expect("non-empty")
        } else {
            *AREA_CODES.choose(rng).expect("non-empty")
        };
        let sub = digits(rng, len);
        let w = written(rng, area, &sub);
        if let Ok(Some(e164)) = phone::normalize(&w, &tables.region) {
            return (w, e164.into_string());
        }
    }
    // Always valid: a Berlin number.
    let sub = digits(rng, 7);
    let w = format!("030 {sub}");
    let e = phone::normalize(&w, &tables.region)
        .ok()
        .flatten()
        .map(|e| e.into_string())
        .unwrap_or_else(|| format!("+4930{sub}"));
    (w, e)
}

/// Generates one account's rows in chunks of at most `chunk` contacts.
pub struct AccountGen<'t> {
    tables: &'t Tables,
    layout: Layout,
    account: String,
    size: u64,
    made: u64,
    rng: SmallRng,
    now: DateTime<Utc>,
    /// Switchboard numbers several contacts share.
    shared: Vec<(String, String)>,
    handling_done: bool,
}

impl<'t> AccountGen<'t> {
    pub fn new(
        tables: &'t Tables,
        layout: Layout,
        seed: u64,
        index: usize,
        size: u64,
        now: DateTime<Utc>,
    ) -> Self {
        let mut rng =
            SmallRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let shared = (0..(size / 50).max(1))
            .map(|_| random_number(tables, &mut rng))
            .collect();
        Self {
            tables,
            layout,
            account: account_id(index),
            size,
            made: 0,
            rng,
            now,
            shared,
            handling_done: false,
        }
    }

    pub fn next_chunk(&mut self, chunk: u64) -> Option<Chunk> {
        if self.made >= self.size && self.handling_done {
            return None;
        }
        let mut out = Chunk::default();
        if !self.handling_done {
            self.handling_done = true;
            // About a third of the accounts have call-handling settings.
            if self.rng.random_bool(0.3) {
                let employees = (0..self.rng.random_range(0..6))
                    .map(|p| EmployeeCallHandlingRow {
                        account_id: self.account.clone(),
                        employee_id: format!("emp-{p}"),
                        position: p,
                        conversation_style: self
                            .rng
                            .random_bool(0.5)
                            .then(|| self.rng.random_range(1..=2)),
                        caller_id_transmission: self
                            .rng
                            .random_bool(0.5)
                            .then(|| self.rng.random_bool(0.5)),
                    })
                    .collect();
                out.handling.push(HandlingRow {
                    settings: CallHandlingRow {
                        account_id: self.account.clone(),
                        conversation_style: self.rng.random_range(0..=2),
                        caller_id_transmission: self.rng.random_bool(0.7),
                        phone_region: "DE".into(),
                        version: 1,
                        update_time: self.now,
                    },
                    employees,
                });
            }
        }
        let end = (self.made + chunk).min(self.size);
        while self.made < end {
            let i = self.made;
            self.made += 1;
            self.contact(i, &mut out);
        }
        Some(out)
    }

    fn contact(&mut self, i: u64, out: &mut Chunk) {
        let now = self.now;
        let two_years = now - Duration::days(TWO_YEARS_DAYS);
        let rng = &mut self.rng;

        // Categories, retention flags and times.
        let (categories, keep, create, last): (Vec<String>, bool, _, _) = match self.layout {
            Layout::Realistic => {
                let roll = rng.random::<f64>();
                let cats: Vec<String> = if roll < 0.45 {
                    vec!["caller".into()]
                } else if roll < 0.55 {
                    vec!["caller".into(), "customer".into()]
                } else {
                    vec![CATEGORIES_OTHER.choose(rng).expect("non-empty").to_string()]
                };
                let keep = cats.len() == 1 && cats[0] == "caller" && rng.random_bool(0.05);
                let create = between(rng, two_years, now);
                let last = between(rng, create, now);
                (cats, keep, create, last)
            }
            Layout::Due { one_in } => {
                let old_create = between(rng, two_years, now - Duration::days(200));
                let old_last = between(rng, old_create, now - Duration::days(181));
                if i.is_multiple_of(one_in) {
                    (vec!["caller".into()], false, old_create, old_last)
                } else {
                    // The kinds of contacts that are not due take turns (for one in two as
                    // they always did).
                    match ((i / one_in) * (one_in - 1) + i % one_in - 1) % 4 {
                        0 | 1 => {
                            let create = between(rng, two_years, now - Duration::days(1));
                            let from = create.max(now - Duration::days(170));
                            (
                                vec!["caller".into()],
                                false,
                                create,
                                between(rng, from, now),
                            )
                        }
                        2 => (vec!["caller".into()], true, old_create, old_last),
                        _ => {
                            let c = CATEGORIES_OTHER.choose(rng).expect("non-empty").to_string();
                            (vec![c], false, old_create, old_last)
                        }
                    }
                }
            }
        };
        let caller_only = categories.len() == 1 && categories[0] == "caller";
        let categories = Categories::from_stored(categories);

        // Names: callers are often noted with a surname only, or only a number.
        let tables = self.tables;
        let (first, female) = FIRST_NAMES[tables.first.sample(rng)];
        let last_name = tables.surname(rng);
        let last_name = last_name.as_str();
        let company_name = |rng: &mut SmallRng| -> String {
            let form = *LEGAL_FORMS.choose(rng).expect("non-empty");
            let base = match rng.random_range(0..3) {
                0 => format!(
                    "{} {}",
                    tables.surname(rng),
                    COMPANY_TRADES.choose(rng).expect("non-empty")
                ),
                1 => format!(
                    "{} {}",
                    COMPANY_BRANDS.choose(rng).expect("non-empty"),
                    COMPANY_TRADES.choose(rng).expect("non-empty")
                ),
                _ => format!(
                    "{} {} & {}",
                    COMPANY_TRADES.choose(rng).expect("non-empty"),
                    tables.surname(rng),
                    tables.surname(rng)
                ),
            };
            if form.is_empty() {
                base
            } else {
                format!("{base} {form}")
            }
        };
        let shape = rng.random::<f64>();
        let (first_name, last_name, company) = if caller_only {
            if shape < 0.5 {
                (first.to_owned(), last_name.to_owned(), String::new())
            } else if shape < 0.8 {
                (String::new(), last_name.to_owned(), String::new())
            } else if shape < 0.9 {
                (String::new(), String::new(), company_name(rng))
            } else {
                (String::new(), String::new(), String::new())
            }
        } else if shape < 0.45 {
            (first.to_owned(), last_name.to_owned(), String::new())
        } else if shape < 0.8 {
            (first.to_owned(), last_name.to_owned(), company_name(rng))
        } else {
            (String::new(), String::new(), company_name(rng))
        };
        let person = !last_name.is_empty();
        let salutation = if person && rng.random_bool(0.6) {
            if female { "Frau" } else { "Herr" }.to_owned()
        } else {
            String::new()
        };
        let title = if person && rng.random_bool(0.05) {
            "Dr.".to_owned()
        } else {
            String::new()
        };
        let email = if person && !first_name.is_empty() && rng.random_bool(0.3) {
            let f = callers_domain::names::fold(&first_name).replace(' ', "");
            let l = callers_domain::names::fold(&last_name).replace(' ', "-");
            format!("{f}.{l}@{}", EMAIL_DOMAINS.choose(rng).expect("non-empty"))
        } else {
            String::new()
        };

        // Numbers: a contact without a name always has one.
        let mut count = match rng.random::<f64>() {
            x if x < 0.05 => 0,
            x if x < 0.70 => 1,
            x if x < 0.95 => 2,
            _ => 3,
        };
        if count == 0 && first_name.is_empty() && last_name.is_empty() && company.is_empty() {
            count = 1;
        }
        let contact_id = uuid_v7(create, rng);
        let mut entries = Vec::with_capacity(count);
        for position in 0..count {
            let (number, e164) = if position == 0 && rng.random_bool(0.08) {
                self.shared.choose(rng).expect("non-empty").clone()
            } else {
                random_number(tables, rng)
            };
            let kind = rng.random_range(1..=6);
            entries.push(PhoneEntry {
                number,
                e164: phone::E164::from_trusted(e164),
                kind: PhoneType::from_code(kind).unwrap_or(PhoneType::Unspecified),
            });
        }
        let fields = ContactFields {
            categories,
            salutation,
            title,
            first_name,
            last_name,
            company,
            email,
            phone_numbers: entries,
            handling_instruction: if rng.random_bool(0.08) {
                HANDLING_INSTRUCTIONS
                    .choose(rng)
                    .expect("non-empty")
                    .to_string()
            } else {
                String::new()
            },
            keep_permanently: keep,
            instructions: Vec::new(),
        };
        let update = between(rng, create, last);
        let message = rng.random_bool(0.02).then(|| {
            let t = between(rng, create, last);
            (
                uuid_v7(t, rng),
                MESSAGES.choose(rng).expect("non-empty").to_string(),
                t,
            )
        });
        let origin: i16 = if caller_only {
            if rng.random_bool(0.85) { 1 } else { 2 }
        } else if rng.random_bool(0.9) {
            3
        } else {
            1
        };

        // Call notes about this contact, within its active time.
        let notes = match (caller_only, rng.random::<f64>()) {
            (true, x) if x < 0.4 => 0,
            (true, x) if x < 0.8 => 1,
            (true, x) if x < 0.95 => 2,
            (true, _) => 3,
            (false, x) if x < 0.7 => 0,
            (false, x) if x < 0.9 => 1,
            (false, _) => 2,
        };
        for _ in 0..notes {
            let call_time = between(rng, create, last);
            out.notes.push(note(
                rng,
                &self.account,
                Some(contact_id),
                &fields.first_name,
                &fields.last_name,
                &fields.company,
                fields
                    .phone_numbers
                    .first()
                    .map_or("", |p| p.number.as_str()),
                call_time,
            ));
        }
        // Now and then a note nobody could be linked to.
        if rng.random_bool(0.03) {
            let call_time = between(rng, two_years, now);
            let (number, _) = random_number(tables, rng);
            out.notes.push(note(
                rng,
                &self.account,
                None,
                "",
                "",
                "",
                &number,
                call_time,
            ));
        }

        for (position, p) in fields.phone_numbers.iter().enumerate() {
            out.phones.push(PhoneRow {
                account_id: self.account.clone(),
                contact_id,
                position: position as i16,
                number: p.number.clone(),
                e164: p.e164.as_str().to_owned(),
                phone_type: p.kind.code() as i16,
                dial_base: callers_testkit::rows::dial_base(p.e164.as_str(), &p.number),
            });
        }
        out.contacts.push(ContactRow {
            account_id: self.account.clone(),
            contact_id,
            search_text: fields.search_text(),
            categories: fields.categories.as_slice().to_vec(),
            salutation: fields.salutation,
            title: fields.title,
            first_name: fields.first_name,
            last_name: fields.last_name,
            company: fields.company,
            email: fields.email,
            handling_instruction: fields.handling_instruction,
            keep_permanently: fields.keep_permanently,
            origin,
            message_id: message.as_ref().map(|m| m.0),
            message_create_time: message.as_ref().map(|m| m.2),
            message_text: message.map(|m| m.1),
            create_time: create,
            update_time: update,
            last_activity_time: last,
            version: 1 + rng.random_range(0..4),
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn note(
    rng: &mut SmallRng,
    account: &str,
    contact_id: Option<Uuid>,
    first: &str,
    last: &str,
    company: &str,
    number: &str,
    call_time: DateTime<Utc>,
) -> NoteRow {
    let sentences = rng.random_range(1..=4);
    let body = (0..sentences)
        .map(|_| *NOTE_SENTENCES.choose(rng).expect("non-empty"))
        .collect::<Vec<_>>()
        .join(" ");
    NoteRow {
        account_id: account.to_owned(),
        call_note_id: uuid_v7(call_time, rng),
        contact_id,
        employee_id: format!("emp-{}", rng.random_range(0..20)),
        agent_id: format!("agent-{}", rng.random_range(0..200)),
        caller_first_name: first.to_owned(),
        caller_last_name: last.to_owned(),
        caller_company: company.to_owned(),
        caller_number: number.to_owned(),
        subject: SUBJECTS.choose(rng).expect("non-empty").to_string(),
        body,
        call_time,
        create_time: call_time + Duration::seconds(rng.random_range(30..600)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_sum_exactly_and_keep_the_big_accounts() {
        let s = account_sizes(1_000_000, 10_000, 3, 100_000, 1);
        assert_eq!(s.len(), 10_000);
        assert_eq!(s.iter().sum::<u64>(), 1_000_000);
        assert_eq!(&s[..3], &[100_000; 3]);
        assert!(s[3] < 100_000 && s[3] > 1_000, "{}", s[3]);
        assert!(s.iter().all(|&n| n >= 1));
        let e = account_sizes(20_000, 100, 3, 2_000, 2);
        assert_eq!(e.iter().sum::<u64>(), 20_000);
        assert!(e.iter().all(|n| n % 2 == 0));
        let t = account_sizes(100_000, 100, 3, 10_000, 10);
        assert_eq!(t.iter().sum::<u64>(), 100_000);
        assert!(t.iter().all(|n| n % 10 == 0 && *n > 0));
    }

    #[test]
    fn generated_numbers_normalise_as_the_server_does() {
        let t = Tables::default();
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..500 {
            let (w, e) = random_number(&t, &mut rng);
            let n = phone::normalize(&w, &Region::germany()).unwrap().unwrap();
            assert_eq!(n.as_str(), e, "{w}");
        }
    }

    #[test]
    fn the_due_layouts_make_exactly_their_share_due() {
        let t = Tables::default();
        let now = Utc::now();
        let cutoff = now - Duration::days(180);
        for (one_in, due_wanted) in [(2, 200), (10, 40)] {
            let mut g = AccountGen::new(&t, Layout::Due { one_in }, 1, 0, 400, now);
            let mut due = 0;
            let mut all = 0;
            while let Some(c) = g.next_chunk(64) {
                for r in &c.contacts {
                    all += 1;
                    let caller_only = r.categories == ["caller"];
                    if caller_only && !r.keep_permanently && r.last_activity_time < cutoff {
                        due += 1;
                    }
                }
            }
            assert_eq!((all, due), (400, due_wanted), "one in {one_in}");
        }
    }
}
