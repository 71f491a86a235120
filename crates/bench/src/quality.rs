//! `callers-bench quality`: how well IdentifyCaller finds callers by the name they give. Seeds
//! one account with the population of `population.rs`, asks the real server for every query
//! (caller_name only, five results), asks PostgreSQL's `pg_trgm` the same over the same rows in
//! the same run, and reports top-1, top-5, confidences and false suggestions per class against
//! the goals of issue 17.

use crate::data::{Tables, random_number};
use crate::db::{self, Db};
use crate::population::{self, Class, Contact, Index, Query};
use crate::{scenarios, seed, server};
use anyhow::Context;
use callers_domain::names;
use callers_proto::v1 as pb;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_testkit::rows::{ContactRow, PhoneRow};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use uuid::Uuid;

pub const ACCOUNT: &str = "acc-quality";

/// The pg_trgm baseline: the whole name against the caller's text as given, at the extension's
/// default threshold (0.3), ties in contact id order. It reads the account's names from a
/// trigram-indexed copy (`concat_ws` is not immutable, so `contacts` cannot index it): the same
/// answers as over `contacts`, in milliseconds instead of a sequential scan's 100 ms.
const BASELINE_SQL: &str = "SELECT contact_id FROM baseline_names WHERE name % $1 \
     ORDER BY similarity(name, $1) DESC, contact_id LIMIT 5";
const BASELINE_NAMES: &str = "CREATE TEMPORARY TABLE baseline_names AS \
     SELECT contact_id, concat_ws(' ', first_name, last_name, company) AS name \
     FROM contacts WHERE account_id = '{account}'; \
     CREATE INDEX ON baseline_names USING gin (name gin_trgm_ops); \
     ANALYZE baseline_names";

pub struct QualityOptions {
    pub db_name: String,
    pub contacts: usize,
    pub queries_per_class: usize,
    pub misses: Option<PathBuf>,
    pub seed: u64,
    pub server_bin: Option<PathBuf>,
    pub server_args: Vec<String>,
    pub addr: Option<String>,
    pub log_dir: PathBuf,
}

/// What one lookup answered: the contacts in order, the first one's confidence, the flag.
#[derive(Debug, Clone, Default)]
struct Answer {
    ranked: Vec<usize>,
    top_confidence: Option<i32>,
    ambiguous: bool,
}

pub async fn run(db: &Db, o: &QualityOptions) -> anyhow::Result<String> {
    let started = Instant::now();
    let pop = population::population(o.seed, o.contacts);
    let index = Index::new(&pop);
    let queries = population::queries(&pop, &index, o.seed, o.queries_per_class);
    let mueller = pop.iter().filter(|c| c.last_name == "Müller").count();
    eprintln!(
        "quality: {} contacts ({} Müller, {:.2} %), {} queries",
        pop.len(),
        mueller,
        100.0 * mueller as f64 / pop.len() as f64,
        queries.len()
    );
    seed_account(db, &o.db_name, &pop, o.seed).await?;
    let url = db.url_for(&o.db_name);
    let by_id: HashMap<Uuid, usize> = pop.iter().enumerate().map(|(i, c)| (c.id, i)).collect();

    let started_server = match (&o.addr, &o.server_bin) {
        (None, Some(bin)) => {
            Some(server::Server::start(bin, &url, &o.log_dir, &o.server_args).await?)
        }
        (None, None) => anyhow::bail!("no server binary"),
        _ => None,
    };
    let addr = match (&started_server, &o.addr) {
        (Some(s), _) => s.addr.clone(),
        (None, Some(a)) => a.clone(),
        (None, None) => unreachable!("checked above"),
    };
    let served = ask_server(&addr, &queries, &by_id).await;
    if let Some(s) = started_server {
        s.stop().await?;
    }
    let (answers, latencies) = served?;
    let baseline = ask_baseline(&url, &queries, &by_id).await?;

    if let Some(path) = &o.misses {
        write_out(path, &misses(&pop, &queries, &answers, &baseline))?;
        eprintln!("misses: {}", path.display());
    }
    let report = Report::new(&pop, &queries, &answers, &baseline, latencies);
    let mut md = report.markdown();
    let _ = writeln!(
        md,
        "\n{} contacts (Müller {:.2} %), {} queries per class, seed {}; {:.0} s. `{}`",
        pop.len(),
        100.0 * mueller as f64 / pop.len() as f64,
        o.queries_per_class,
        o.seed,
        started.elapsed().as_secs_f64(),
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    Ok(md)
}

/// A fresh database with the account's contacts (one number each), written as rows the way
/// the server writes them: `search_text` from the domain's folding, the word tables by the
/// schema's triggers.
async fn seed_account(db: &Db, name: &str, pop: &[Contact], seed: u64) -> anyhow::Result<()> {
    let t = Instant::now();
    db.recreate(name).await?;
    let url = db.url_for(name);
    callers_store::migrate(&url).await?;
    let client = db::connect(&url).await?;
    let tables = Tables::default();
    let mut rng = SmallRng::seed_from_u64(seed);
    let base: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .context("date")?;
    let mut contacts = Vec::with_capacity(pop.len());
    let mut phones = Vec::with_capacity(pop.len());
    for (i, c) in pop.iter().enumerate() {
        let time = base + Duration::minutes(i as i64);
        let (number, e164) = random_number(&tables, &mut rng);
        contacts.push(ContactRow {
            account_id: ACCOUNT.into(),
            contact_id: c.id,
            categories: vec!["customer".into()],
            salutation: c.salutation.clone(),
            title: c.title.clone(),
            first_name: c.first_name.clone(),
            last_name: c.last_name.clone(),
            company: c.company.clone(),
            email: String::new(),
            handling_instruction: String::new(),
            keep_permanently: false,
            origin: 3,
            message_id: None,
            message_text: None,
            message_create_time: None,
            create_time: time,
            update_time: time,
            last_activity_time: time,
            version: 1,
            search_text: names::search_text(&[&c.first_name, &c.last_name, &c.company]),
        });
        phones.push(PhoneRow {
            account_id: ACCOUNT.into(),
            contact_id: c.id,
            position: 0,
            dial_base: callers_testkit::rows::dial_base(&e164, &number),
            number,
            e164,
            phone_type: 1,
        });
    }
    seed::copy(&client, &contacts).await?;
    seed::copy(&client, &phones).await?;
    client.batch_execute("VACUUM ANALYZE").await?;
    eprintln!(
        "quality: seeded {name} in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn ask_server(
    addr: &str,
    queries: &[Query],
    by_id: &HashMap<Uuid, usize>,
) -> anyhow::Result<(Vec<Answer>, Vec<f64>)> {
    let channel = scenarios::channels(addr, 1).await?.remove(0);
    let mut client = IdentificationServiceClient::new(channel);
    let mut answers = Vec::with_capacity(queries.len());
    let mut latencies = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let r = client
            .identify_caller(pb::IdentifyCallerRequest {
                account_id: ACCOUNT.into(),
                employee_id: String::new(),
                caller_number: String::new(),
                caller_name: q.text.clone(),
                max_results: 5,
            })
            .await
            .with_context(|| format!("IdentifyCaller {:?}", q.text))?
            .into_inner();
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        let ranked = r
            .matches
            .iter()
            .filter_map(|m| m.contact.as_ref())
            .filter_map(|c| Uuid::parse_str(&c.contact_id).ok())
            .filter_map(|id| by_id.get(&id).copied())
            .collect();
        answers.push(Answer {
            ranked,
            top_confidence: r.matches.first().map(|m| m.confidence),
            ambiguous: r.ambiguous,
        });
    }
    Ok((answers, latencies))
}

async fn ask_baseline(
    url: &str,
    queries: &[Query],
    by_id: &HashMap<Uuid, usize>,
) -> anyhow::Result<Vec<Vec<usize>>> {
    let client = db::connect(url).await?;
    client
        .batch_execute(&BASELINE_NAMES.replace("{account}", ACCOUNT))
        .await?;
    let stmt = client.prepare(BASELINE_SQL).await?;
    let mut out = Vec::with_capacity(queries.len());
    for q in queries {
        let rows = client.query(&stmt, &[&q.text]).await?;
        out.push(
            rows.iter()
                .filter_map(|r| by_id.get(&r.get::<_, Uuid>("contact_id")).copied())
                .collect(),
        );
    }
    Ok(out)
}

fn describe(pop: &[Contact], i: Option<&usize>) -> String {
    let Some(&i) = i else {
        return "-".into();
    };
    let c = &pop[i];
    [
        &c.salutation,
        &c.title,
        &c.first_name,
        &c.last_name,
        &c.company,
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .map(|s| s.as_str())
    .collect::<Vec<_>>()
    .join(" ")
}

/// The queries callers got wrong, for whoever tunes the scorer.
fn misses(
    pop: &[Contact],
    queries: &[Query],
    answers: &[Answer],
    baseline: &[Vec<usize>],
) -> String {
    let mut s = String::from("class\tquery\twanted\tcallers\tconfidence\tpg_trgm\n");
    for ((q, a), b) in queries.iter().zip(answers).zip(baseline) {
        let wrong = if q.class.in_account() {
            !q.hit1(&a.ranked)
        } else {
            !a.ranked.is_empty()
        };
        if wrong {
            let _ = writeln!(
                s,
                "{:?}\t{}\t{}\t{}\t{}\t{}",
                q.class,
                q.text,
                describe(pop, q.intended.as_ref()),
                describe(pop, a.ranked.first()),
                a.top_confidence.unwrap_or(-1),
                describe(pop, b.first()),
            );
        }
    }
    s
}

/// Counts of one class.
#[derive(Debug, Default, Clone)]
struct Row {
    n: usize,
    ambiguous: usize,
    top1: usize,
    top5: usize,
    /// Confidence of the first match: [none, UNSPECIFIED, POSSIBLE, LIKELY, CERTAIN].
    confidence: [usize; 5],
    flagged_ambiguous: usize,
    base_top1: usize,
    base_top5: usize,
    /// The first match is the very contact the query was made from.
    intended: usize,
    /// Salutation: the first match is a person with the surname.
    person_surname: usize,
    base_person_surname: usize,
    /// Not in the account: any match, a LIKELY or CERTAIN one, any pg_trgm match.
    any: usize,
    likely_plus: usize,
    base_any: usize,
}

struct Report {
    rows: Vec<(Class, Row)>,
    latencies: Vec<f64>,
}

fn pct(a: usize, n: usize) -> String {
    if n == 0 {
        "–".into()
    } else {
        format!("{:.1} %", 100.0 * a as f64 / n as f64)
    }
}

impl Report {
    fn new(
        pop: &[Contact],
        queries: &[Query],
        answers: &[Answer],
        baseline: &[Vec<usize>],
        mut latencies: Vec<f64>,
    ) -> Report {
        let mut rows: Vec<(Class, Row)> = Class::ALL.iter().map(|&c| (c, Row::default())).collect();
        for ((q, a), b) in queries.iter().zip(answers).zip(baseline) {
            let row = &mut rows
                .iter_mut()
                .find(|(c, _)| *c == q.class)
                .expect("every class")
                .1;
            row.n += 1;
            let conf = match a.top_confidence {
                None => 0,
                Some(c) => (c.clamp(0, 3) + 1) as usize,
            };
            row.confidence[conf] += 1;
            row.flagged_ambiguous += usize::from(a.ambiguous);
            if q.class.in_account() {
                row.ambiguous += usize::from(q.ambiguous());
                row.top1 += usize::from(q.hit1(&a.ranked));
                row.top5 += usize::from(q.hit5(&a.ranked));
                row.base_top1 += usize::from(q.hit1(b));
                row.base_top5 += usize::from(q.hit5(b));
                row.intended += usize::from(a.ranked.first() == q.intended.as_ref());
                if q.class == Class::Salutation {
                    row.person_surname += usize::from(q.person_with_surname(&a.ranked, pop));
                    row.base_person_surname += usize::from(q.person_with_surname(b, pop));
                }
            } else {
                row.any += usize::from(!a.ranked.is_empty());
                row.likely_plus += usize::from(conf >= 3);
                row.base_any += usize::from(!b.is_empty());
            }
        }
        latencies.sort_by(f64::total_cmp);
        Report { rows, latencies }
    }

    fn quantile(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i]
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| class | n | ambiguous | top-1 | top-5 | top-1 the very contact | first match CERTAIN / LIKELY / POSSIBLE / unspecified / none | flagged ambiguous | pg_trgm top-1 | pg_trgm top-5 |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for (class, r) in self.rows.iter().filter(|(c, _)| c.in_account()) {
            let c = &r.confidence;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} / {} / {} / {} / {} | {} | {} | {} |",
                class.label(),
                r.n,
                r.ambiguous,
                pct(r.top1, r.n),
                pct(r.top5, r.n),
                pct(r.intended, r.n),
                c[4],
                c[3],
                c[2],
                c[1],
                c[0],
                r.flagged_ambiguous,
                pct(r.base_top1, r.n),
                pct(r.base_top5, r.n),
            );
        }
        let _ = writeln!(
            s,
            "\n| not in the account | n | any suggestion | LIKELY or CERTAIN | first match CERTAIN / LIKELY / POSSIBLE / unspecified / none | pg_trgm any suggestion |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for (class, r) in self.rows.iter().filter(|(c, _)| !c.in_account()) {
            let c = &r.confidence;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} / {} / {} / {} / {} | {} |",
                class.label(),
                r.n,
                pct(r.any, r.n),
                pct(r.likely_plus, r.n),
                c[4],
                c[3],
                c[2],
                c[1],
                c[0],
                pct(r.base_any, r.n),
            );
        }
        if let Some((_, r)) = self.rows.iter().find(|(c, _)| *c == Class::Salutation) {
            let _ = writeln!(
                s,
                "\nSalutation/title + surname: first match a person with that surname {} (pg_trgm {}); the intended contact itself {}.",
                pct(r.person_surname, r.n),
                pct(r.base_person_surname, r.n),
                pct(r.intended, r.n),
            );
        }
        let _ = writeln!(s, "\n| goal | measured | |\n|---|---|---|");
        for (goal, measured, verdict) in self.goals() {
            let _ = writeln!(s, "| {goal} | {measured} | {verdict} |");
        }
        let _ = writeln!(
            s,
            "\nName lookups at one client: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} lookups; information, not a goal).",
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(1.0),
            self.latencies.len()
        );
        s
    }

    /// (goal, measured, verdict).
    fn goals(&self) -> Vec<(String, String, &'static str)> {
        let verdict = |pass: bool| if pass { "PASS" } else { "FAIL" };
        let mut out = Vec::new();
        for (class, r) in self.rows.iter().filter(|(c, _)| c.top1_goal()) {
            out.push((
                format!("top-1 ≥ 98 %: {}", class.label()),
                pct(r.top1, r.n),
                verdict(r.n > 0 && r.top1 as f64 >= 0.98 * r.n as f64),
            ));
        }
        if let Some((_, r)) = self.rows.iter().find(|(c, _)| *c == Class::Salutation) {
            out.push((
                "salutation + surname: first match a person with that surname, 100 %".into(),
                pct(r.person_surname, r.n),
                verdict(r.n > 0 && r.person_surname == r.n),
            ));
        }
        let (n, top5) = self
            .rows
            .iter()
            .filter(|(c, _)| c.in_account())
            .fold((0, 0), |(n, t), (_, r)| (n + r.n, t + r.top5));
        out.push((
            "top-5 ≥ 99.5 % over all classes".into(),
            pct(top5, n),
            verdict(n > 0 && top5 as f64 >= 0.995 * n as f64),
        ));
        let (n, likely, any, unspecified) = self
            .rows
            .iter()
            .filter(|(c, _)| !c.in_account())
            .fold((0, 0, 0, 0), |(n, l, a, u), (_, r)| {
                (n + r.n, l + r.likely_plus, a + r.any, u + r.confidence[1])
            });
        out.push((
            "names not in the account: LIKELY or CERTAIN ≤ 5 %".into(),
            pct(likely, n),
            // A server that grades no match cannot be judged by its grades.
            if any > 0 && unspecified == any {
                "NOT MEASURED (no confidence set)"
            } else {
                verdict(n > 0 && likely as f64 <= 0.05 * n as f64)
            },
        ));
        out
    }
}

/// Where `--out` writes the table when given.
pub fn write_out(path: &Path, markdown: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, markdown).with_context(|| format!("writing {}", path.display()))
}
