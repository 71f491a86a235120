//! The seeder: migrations first (`callers_store::migrate`), then binary `COPY` of generated
//! rows on two connections while two threads generate, with the secondary indexes dropped
//! during the load and rebuilt from their own definitions afterwards (so they are exactly the
//! migrations' indexes), then `VACUUM ANALYZE` as autovacuum would.

use crate::data::{self, AccountGen, Chunk, Layout, Tables};
use crate::db::{self, Db};
use callers_testkit::rows::{self, Fixture};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Mutex, mpsc};
use tokio_postgres::Client;
use tokio_postgres::binary_copy::BinaryCopyInWriter;

const CHUNK: u64 = 5_000;
const GENERATORS: usize = 2;
const WRITERS: usize = 2;
/// Tables whose secondary indexes are dropped during the load and rebuilt afterwards (the
/// word tables of migration V5 are filled by its triggers as the contacts arrive).
const TABLES: [&str; 5] = [
    "contacts",
    "contact_phone_numbers",
    "call_notes",
    "contact_words",
    "account_words",
];

#[derive(Debug, Clone, Serialize)]
pub struct SeedSpec {
    pub layout: String,
    pub contacts: u64,
    pub accounts: usize,
    pub big_accounts: usize,
    pub big_size: u64,
    pub seed: u64,
}

impl SeedSpec {
    /// 1,000,000 × scale contacts in 10,000 × scale accounts, three of them 100,000 × scale;
    /// beyond scale 1 the table grows by more customers, not larger ones: 3 × scale accounts
    /// of 100,000 (so a name lookup in an account of 100,000 compares across scales).
    pub fn realistic(scale: f64, seed: u64) -> Self {
        let contacts = ((1_000_000.0 * scale).round() as u64).max(1_000);
        Self {
            layout: "realistic".into(),
            contacts,
            accounts: ((10_000.0 * scale).round() as usize).max(10),
            big_accounts: ((3.0 * scale.max(1.0)).round() as usize).max(3),
            big_size: ((100_000.0 * scale.min(1.0)).round() as u64).max(100),
            seed,
        }
    }

    /// `one_in` × N contacts of which exactly N are due, in 2N/100 accounts (as many as with
    /// one in two, so a larger table means larger accounts, not more of them), three of them
    /// a tenth of the table.
    pub fn due(n: u64, one_in: u64, seed: u64) -> Self {
        let one_in = one_in.max(2);
        let n = n.max(100);
        let contacts = one_in * n;
        Self {
            layout: if one_in == 2 {
                "half-due".into()
            } else {
                format!("due-1-in-{one_in}")
            },
            contacts,
            accounts: ((2 * n / 100) as usize).max(10),
            big_accounts: 3,
            big_size: (contacts / 10).div_ceil(one_in) * one_in,
            seed,
        }
    }

    fn layout(&self) -> Layout {
        if self.layout == "half-due" {
            Layout::Due { one_in: 2 }
        } else if let Some(k) = self.layout.strip_prefix("due-1-in-") {
            Layout::Due {
                one_in: k.parse().unwrap_or(2),
            }
        } else {
            Layout::Realistic
        }
    }

    pub fn sizes(&self) -> Vec<u64> {
        data::account_sizes(
            self.contacts,
            self.accounts,
            self.big_accounts,
            self.big_size,
            match self.layout() {
                Layout::Due { one_in } => one_in,
                Layout::Realistic => 1,
            },
        )
    }

    /// Stored as the database's comment: an equal marker means the seed can be reused.
    fn marker(&self) -> String {
        format!(
            "callers-bench seed v4 layout={} contacts={} accounts={} big={}x{} seed={} schema={}",
            self.layout,
            self.contacts,
            self.accounts,
            self.big_accounts,
            self.big_size,
            self.seed,
            callers_store::migrations_fingerprint()
        )
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SeedReport {
    pub database: String,
    pub reused: bool,
    pub contacts: u64,
    pub phone_numbers: u64,
    pub call_notes: u64,
    pub accounts_with_call_handling: u64,
    pub load_secs: f64,
    pub index_secs: f64,
    pub vacuum_secs: f64,
    pub total_secs: f64,
    pub database_bytes: i64,
    /// The time activity was generated relative to.
    pub now: Option<DateTime<Utc>>,
}

/// Whether [`ensure`] can reuse `name` (as it is, or migrated in place).
pub async fn is_current(db: &Db, name: &str, spec: &SeedSpec) -> anyhow::Result<bool> {
    Ok(db.exists(name).await?
        && db
            .comment(name)
            .await?
            .is_some_and(|c| same_but_schema(&c, &spec.marker())))
}

/// Two markers of the same seed, perhaps of different schemas.
fn same_but_schema(a: &str, b: &str) -> bool {
    let seed = |m: &str| m.split(" schema=").next().unwrap_or(m).to_owned();
    seed(a) == seed(b)
}

/// Seeds `name` unless it already holds this very seed (and `reseed` is off).
pub async fn ensure(
    db: &Db,
    name: &str,
    spec: &SeedSpec,
    reseed: bool,
) -> anyhow::Result<SeedReport> {
    let marker = spec.marker();
    let found = match db.exists(name).await? {
        true => db.comment(name).await?,
        false => None,
    };
    if !reseed && let Some(found) = found {
        let current = found == marker;
        // The same seed on an older schema is migrated in place, as production is.
        if !current && same_but_schema(&found, &marker) {
            eprintln!("seed: migrating {name} in place to the current schema");
            match callers_store::migrate(&db.url_for(name)).await {
                Ok(()) => {
                    let client = db::connect(&db.url_for(name)).await?;
                    client
                        .batch_execute("SET statement_timeout = 0; ANALYZE")
                        .await?;
                    db.set_comment(name, &marker).await?;
                }
                Err(e) => eprintln!("seed: {name} cannot be migrated ({e}); seeding it again"),
            }
        }
        if db.comment(name).await?.as_deref() == Some(&marker) {
            let client = db::connect(&db.url_for(name)).await?;
            let mut report = counts(&client).await?;
            report.database = name.into();
            report.reused = true;
            eprintln!("seed: reusing {name} ({} contacts)", report.contacts);
            return Ok(report);
        }
    }
    let mut report = seed(db, name, spec).await?;
    db.set_comment(name, &marker).await?;
    report.database = name.into();
    Ok(report)
}

async fn counts(client: &Client) -> anyhow::Result<SeedReport> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM contacts) AS contacts, \
             (SELECT count(*) FROM contact_phone_numbers) AS phone_numbers, \
             (SELECT count(*) FROM call_notes) AS call_notes, \
             (SELECT count(*) FROM call_handling) AS call_handling, \
             pg_database_size(current_database()) AS bytes",
            &[],
        )
        .await?;
    Ok(SeedReport {
        contacts: row.get::<_, i64>("contacts") as u64,
        phone_numbers: row.get::<_, i64>("phone_numbers") as u64,
        call_notes: row.get::<_, i64>("call_notes") as u64,
        accounts_with_call_handling: row.get::<_, i64>("call_handling") as u64,
        database_bytes: row.get("bytes"),
        ..Default::default()
    })
}

async fn seed(db: &Db, name: &str, spec: &SeedSpec) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    eprintln!(
        "seed: {name}: {} contacts in {} accounts ({} of {}), layout {}",
        spec.contacts, spec.accounts, spec.big_accounts, spec.big_size, spec.layout
    );
    db.recreate(name).await?;
    let url = db.url_for(name);
    callers_store::migrate(&url).await?;
    let client = db::connect(&url).await?;

    // Secondary indexes (those backing no constraint) are rebuilt after the load.
    let indexes: Vec<(String, String)> = client
        .query(
            "SELECT i.relname::text AS name, pg_get_indexdef(i.oid) AS definition FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema() \
             WHERE t.relname = ANY($1) \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
            &[&TABLES.to_vec()],
        )
        .await?
        .iter()
        // pg_get_indexdef gives a partitioned table's index `ON ONLY` the parent: rebuilt so,
        // it would stay invalid and exist on no partition.
        .map(|r| {
            (
                r.get("name"),
                r.get::<_, String>("definition")
                    .replacen(" ON ONLY ", " ON ", 1),
            )
        })
        .collect();
    for (index, _) in &indexes {
        client
            .batch_execute(&format!("DROP INDEX \"{index}\""))
            .await?;
    }

    let now = Utc::now();
    let sizes = Arc::new(spec.sizes());
    let layout = spec.layout();
    let seed = spec.seed;
    let mut generators = Vec::new();
    for g in 0..GENERATORS {
        let sizes = sizes.clone();
        generators.push(std::thread::spawn(move || {
            let tables = Tables::default();
            let mut out = Chunk::default();
            for (i, &size) in sizes.iter().enumerate() {
                if i % GENERATORS != g {
                    continue;
                }
                let mut account = AccountGen::new(&tables, layout, seed, i, size, now);
                while let Some(mut chunk) = account.next_chunk(CHUNK) {
                    out.contacts.append(&mut chunk.contacts);
                    out.phones.append(&mut chunk.phones);
                    out.notes.append(&mut chunk.notes);
                    out.handling.append(&mut chunk.handling);
                }
            }
            out
        }));
    }
    let mut all = Chunk::default();
    for g in generators {
        let mut part = g
            .join()
            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))?;
        all.contacts.append(&mut part.contacts);
        all.phones.append(&mut part.phones);
        all.notes.append(&mut part.notes);
        all.handling.append(&mut part.handling);
    }
    let mut chunks = timeline(all);
    eprintln!(
        "seed: generated in {:.1} s; loading {} chunks in creation order",
        started.elapsed().as_secs_f64(),
        chunks.len()
    );

    // Notes load after every contact is committed: a note may belong to a contact of the chunk
    // before its own, which a parallel writer may not have committed yet.
    let notes: Vec<Chunk> = chunks
        .iter_mut()
        .map(|c| Chunk {
            notes: std::mem::take(&mut c.notes),
            ..Default::default()
        })
        .collect();
    let mut totals = load_chunks(&url, chunks).await?;
    for (a, b) in totals.iter_mut().zip(load_chunks(&url, notes).await?) {
        *a += b;
    }
    let load_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seed: loaded {} contacts, {} numbers, {} notes in {load_secs:.1} s; building {} indexes",
        totals[0],
        totals[1],
        totals[2],
        indexes.len()
    );

    let t = Instant::now();
    let queue = Arc::new(Mutex::new(indexes));
    let mut builders = Vec::new();
    for _ in 0..WRITERS {
        let url = url.clone();
        let queue = queue.clone();
        builders.push(tokio::spawn(async move {
            let c = db::connect(&url).await?;
            c.batch_execute("SET maintenance_work_mem = '1GB'; SET statement_timeout = 0")
                .await?;
            loop {
                let next = queue.lock().await.pop();
                let Some((_, def)) = next else { break };
                c.batch_execute(&def).await?;
            }
            anyhow::Ok(())
        }));
    }
    for b in builders {
        b.await??;
    }
    let index_secs = t.elapsed().as_secs_f64();
    let invalid: Vec<String> = client
        .query(
            "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE NOT indisvalid",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get("name"))
        .collect();
    anyhow::ensure!(
        invalid.is_empty(),
        "invalid indexes after the load: {invalid:?}"
    );

    let t = Instant::now();
    client.batch_execute("SET statement_timeout = 0").await?;
    client.batch_execute("VACUUM (ANALYZE)").await?;
    // Superuser only; a checkpoint keeps its I/O out of the first measurements.
    let _ = client.batch_execute("CHECKPOINT").await;
    let vacuum_secs = t.elapsed().as_secs_f64();
    let mut report = counts(&client).await?;
    report.load_secs = load_secs;
    report.index_secs = index_secs;
    report.vacuum_secs = vacuum_secs;
    report.total_secs = started.elapsed().as_secs_f64();
    report.now = Some(now);
    eprintln!(
        "seed: {name} done in {:.1} s (load {load_secs:.1}, indexes {index_secs:.1}, vacuum {vacuum_secs:.1}), {} MB",
        report.total_secs,
        report.database_bytes / 1_000_000
    );
    Ok(report)
}

/// Orders the rows as a real table gets them, by creation time across all accounts (contact
/// and note ids are UUIDv7 of their time), and cuts them into chunks: every note lands in the
/// chunk of its contact or a later one. The call-handling rows go first.
fn timeline(mut all: Chunk) -> Vec<Chunk> {
    all.contacts.sort_unstable_by_key(|c| c.contact_id);
    all.phones
        .sort_unstable_by_key(|p| (p.contact_id, p.position));
    let key = |n: &rows::NoteRow| n.call_note_id.max(n.contact_id.unwrap_or_default());
    all.notes.sort_unstable_by_key(key);
    let mut chunks = vec![Chunk {
        handling: std::mem::take(&mut all.handling),
        ..Default::default()
    }];
    let mut phones = all.phones.into_iter().peekable();
    let mut notes = all.notes.into_iter().peekable();
    let mut contacts = all.contacts.into_iter().peekable();
    while contacts.peek().is_some() {
        let mut chunk = Chunk::default();
        while chunk.contacts.len() < CHUNK as usize {
            match contacts.next() {
                Some(c) => chunk.contacts.push(c),
                None => break,
            }
        }
        let last = chunk
            .contacts
            .last()
            .map(|c| c.contact_id)
            .unwrap_or_default();
        while let Some(p) = phones.next_if(|p| p.contact_id <= last) {
            chunk.phones.push(p);
        }
        // Notes up to the next chunk's first contact (all of them after the last chunk).
        let bound = contacts.peek().map(|c| c.contact_id);
        while let Some(n) = notes.next_if(|n| bound.is_none_or(|b| key(n) < b)) {
            chunk.notes.push(n);
        }
        chunks.push(chunk);
    }
    chunks
}

/// Loads chunks with [`WRITERS`] parallel writers; returns rows written per table.
async fn load_chunks(url: &str, chunks: Vec<Chunk>) -> anyhow::Result<[u64; 4]> {
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    let rx = Arc::new(Mutex::new(rx));
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let url = url.to_owned();
        let rx = rx.clone();
        writers.push(tokio::spawn(async move { writer(&url, rx).await }));
    }
    for chunk in chunks {
        if tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(tx);
    let mut totals = [0u64; 4];
    let mut failure = None;
    for w in writers {
        match w.await? {
            Ok(t) => {
                for (a, b) in totals.iter_mut().zip(t) {
                    *a += b;
                }
            }
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(totals)
}

/// Writes chunks until the generators are done; returns rows written per table.
async fn writer(url: &str, rx: Arc<Mutex<mpsc::Receiver<Chunk>>>) -> anyhow::Result<[u64; 4]> {
    let client = db::connect(url).await?;
    client
        .batch_execute("SET synchronous_commit = off; SET statement_timeout = 0")
        .await?;
    // Triggers stay on: foreign keys are checked, and the triggers of the schema (the name
    // search words) see every row, as with any other writer.
    let mut totals = [0u64; 4];
    loop {
        let chunk = rx.lock().await.recv().await;
        let Some(chunk) = chunk else { break };
        totals[0] += copy(&client, &chunk.contacts).await?;
        totals[1] += copy(&client, &chunk.phones).await?;
        totals[2] += copy(&client, &chunk.notes).await?;
        // A few rows per account: plain inserts.
        for h in &chunk.handling {
            rows::insert(&client, &h.settings).await?;
            for employee in &h.employees {
                rows::insert(&client, employee).await?;
            }
            totals[3] += 1;
        }
    }
    Ok(totals)
}

/// Writes `rows` with one binary `COPY` in the fixture's column order.
pub(crate) async fn copy<R: Fixture>(client: &Client, rows: &[R]) -> anyhow::Result<u64> {
    let sink = client.copy_in(&rows::copy_statement::<R>()).await?;
    let mut w = pin!(BinaryCopyInWriter::new(sink, &R::types()));
    for row in rows {
        w.as_mut().write(&row.values()).await?;
    }
    Ok(w.finish().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_scale_one_the_table_grows_by_accounts_of_the_same_size() {
        let one = SeedSpec::realistic(1.0, 7);
        let ten = SeedSpec::realistic(10.0, 7);
        assert_eq!((one.big_accounts, one.big_size), (3, 100_000));
        assert_eq!((ten.big_accounts, ten.big_size), (30, 100_000));
        let sizes = data::account_sizes(
            ten.contacts,
            ten.accounts,
            ten.big_accounts,
            ten.big_size,
            1,
        );
        assert_eq!(sizes.iter().sum::<u64>(), 10_000_000);
        assert_eq!(sizes.iter().max(), Some(&100_000));
        let small = SeedSpec::realistic(0.1, 7);
        assert_eq!((small.big_accounts, small.big_size), (3, 10_000));
    }
}
