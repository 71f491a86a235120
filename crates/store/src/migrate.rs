//! Schema migrations: numbered `.sql` files under `migrations/`, applied by refinery while
//! holding a Postgres advisory lock, so servers starting together do not race, and the columns
//! whose values only Rust can compute, filled after them.

use crate::Error;
use crate::contacts::dial_base_column;
use crate::row::row_struct;
use callers_domain::phone::E164;
use uuid::Uuid;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Any constant works as long as nothing else in the database uses it.
const MIGRATION_LOCK: i64 = 0x6361_6c6c_6572_7301;

/// Applies pending migrations to the database at `url`.
pub async fn migrate(url: &str) -> Result<(), Error> {
    let settings = crate::ConnSettings::parse(url)?;
    let connector = crate::exec::Connector::new(&settings)?;
    let cfg = settings.pg;
    let (mut client, conn) = connector.connect(&cfg).await?;
    crate::exec::ensure_session(&connector, &cfg, &client, "migrating").await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .run_async(&mut client)
        .await;
    let filled = match &report {
        Ok(_) => fill_dial_bases(&client).await.map(Some),
        Err(_) => Ok(None),
    };
    // Unlock explicitly; closing the session would release it too.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    let _ = conn.await;
    let report = report.map_err(|e| Error::Unavailable(Box::new(e)))?;
    let filled = filled?;
    unlocked?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "migration applied");
    }
    if let Some(rows) = filled.filter(|&n| n > 0) {
        tracing::info!(rows, "phone numbers given their dial base");
    }
    Ok(())
}

/// Phone numbers computed per statement by [`fill_dial_bases`].
const DIAL_BASE_BATCH: i64 = 1_000;

row_struct! {
    /// A phone number without its `dial_base` yet.
    struct PendingNumber {
        account_id: String,
        contact_id: Uuid,
        position: i16,
        number: String,
        e164: String,
    }
}

/// Fills `contact_phone_numbers.dial_base` (migration V9) where it is NULL, in batches: the rule
/// is Rust's (`phone::dial_base`), so SQL cannot. Idempotent; rows written meanwhile by a
/// server that predates V9 are NULL again and filled by the next run. A row replaced since it
/// was read (same key, other number) is left for the next batch. Returns the rows filled.
async fn fill_dial_bases(client: &tokio_postgres::Client) -> Result<u64, Error> {
    let select = client
        .prepare(
            "SELECT account_id, contact_id, position, number, e164 FROM contact_phone_numbers \
             WHERE dial_base IS NULL LIMIT $1",
        )
        .await?;
    let update = client
        .prepare(
            "UPDATE contact_phone_numbers p SET dial_base = v.dial_base \
             FROM unnest($1::text[], $2::uuid[], $3::smallint[], $4::text[], $5::text[], \
                         $6::text[]) AS v(account_id, contact_id, position, number, e164, dial_base) \
             WHERE p.account_id = v.account_id AND p.contact_id = v.contact_id \
               AND p.position = v.position AND p.number = v.number AND p.e164 = v.e164 \
               AND p.dial_base IS NULL",
        )
        .await?;
    let mut filled = 0;
    loop {
        let rows = client.query(&select, &[&DIAL_BASE_BATCH]).await?;
        let pending = rows
            .iter()
            .map(PendingNumber::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        if pending.is_empty() {
            return Ok(filled);
        }
        let dial_bases: Vec<String> = pending
            .iter()
            .map(|p| dial_base_column(&E164::from_trusted(p.e164.clone()), &p.number))
            .collect();
        let column = |f: fn(&PendingNumber) -> &str| pending.iter().map(f).collect::<Vec<_>>();
        let contact_ids: Vec<Uuid> = pending.iter().map(|p| p.contact_id).collect();
        let positions: Vec<i16> = pending.iter().map(|p| p.position).collect();
        let updated = client
            .execute(
                &update,
                &[
                    &column(|p| &p.account_id),
                    &contact_ids,
                    &positions,
                    &column(|p| &p.number),
                    &column(|p| &p.e164),
                    &dial_bases,
                ],
            )
            .await?;
        // Every row read was replaced meanwhile: let the writers finish, the next run fills.
        if updated == 0 {
            return Ok(filled);
        }
        filled += updated;
    }
}

/// Changes whenever a migration is added or edited; names test database templates.
pub fn migrations_fingerprint() -> String {
    let mut acc: u64 = 0xcbf2_9ce4_8422_2325;
    for m in embedded::migrations::runner().get_migrations() {
        acc = (acc ^ m.checksum()).wrapping_mul(0x0100_0000_01b3);
        acc ^= u64::from(m.version().unsigned_abs());
    }
    format!("{acc:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fresh_store;

    /// Every trigram index a write goes through, the words' partitions included, takes its
    /// entries at once (V17): a pending list would make one insert in many merge it.
    #[tokio::test]
    async fn the_written_gin_indexes_have_no_pending_list() {
        let (store, _db) = fresh_store().await;
        let client = store.client().await.unwrap();
        let rows = client
            .query(
                "SELECT c.relname::text AS name, coalesce(c.reloptions, '{}')::text AS options \
                 FROM pg_class c JOIN pg_am a ON a.oid = c.relam \
                 WHERE a.amname = 'gin' AND c.relkind IN ('i', 'I') \
                 AND c.relnamespace = 'public'::regnamespace",
                &[],
            )
            .await
            .unwrap();
        let names: Vec<String> = rows.iter().map(|r| r.get("name")).collect();
        assert!(
            names.contains(&"contacts_search_trgm_idx".to_owned()),
            "{names:?}"
        );
        // The partitioned index and its 16 partitions.
        assert!(
            names
                .iter()
                .filter(|n| n.starts_with("account_words"))
                .count()
                >= 17,
            "{names:?}"
        );
        for r in &rows {
            let options: String = r.get("options");
            assert!(
                options.contains("fastupdate=off"),
                "{} has {options}",
                r.get::<_, String>("name")
            );
        }
    }

    /// Numbers written before V9, or by the previous release during a rollout, have no dial
    /// base; the next migration run gives every one of them what the domain rule gives, in
    /// batches, and a run after that has nothing to do.
    #[tokio::test]
    async fn migrating_gives_numbers_written_without_a_dial_base_theirs() {
        let (store, db) = fresh_store().await;
        let client = store.client().await.unwrap();
        // More rows than a batch: Berlin numbers entered plainly, with a switchboard `-0`,
        // ending in a 0 digit; mobile and French ones.
        client
            .batch_execute(
                "INSERT INTO contacts (account_id, contact_id, categories, first_name, \
                   last_name, origin, create_time, update_time, last_activity_time, \
                   search_text) \
                 SELECT 'a', gen_random_uuid(), '{caller}', 'f', 'l', 3, now(), now(), now(), \
                   'f l' FROM generate_series(1, 2500); \
                 INSERT INTO contact_phone_numbers \
                   (account_id, contact_id, position, number, e164, phone_type) \
                 SELECT account_id, contact_id, 0, \
                   CASE i % 5 WHEN 0 THEN '030 ' || n WHEN 1 THEN '030 ' || n || '-0' \
                     WHEN 2 THEN '030 ' || n || '0' WHEN 3 THEN '0171 ' || n \
                     ELSE '+33 1 4' || n END, \
                   CASE i % 5 WHEN 0 THEN '+4930' || n WHEN 1 THEN '+4930' || n || '0' \
                     WHEN 2 THEN '+4930' || n || '0' WHEN 3 THEN '+49171' || n \
                     ELSE '+3314' || n END, 1 \
                 FROM (SELECT account_id, contact_id, row_number() OVER () AS i, \
                         (2000000 + row_number() OVER ())::text AS n FROM contacts) c",
            )
            .await
            .unwrap();
        let pending = async || -> i64 {
            client
                .query_one(
                    "SELECT count(*) AS n FROM contact_phone_numbers WHERE dial_base IS NULL",
                    &[],
                )
                .await
                .unwrap()
                .get("n")
        };
        assert_eq!(pending().await, 2500);

        migrate(db.url()).await.unwrap();
        assert_eq!(pending().await, 0);
        let rows = client
            .query(
                "SELECT number, e164, dial_base FROM contact_phone_numbers",
                &[],
            )
            .await
            .unwrap();
        let mut kinds = std::collections::HashSet::new();
        for row in &rows {
            let (number, e164, dial_base): (String, String, String) =
                (row.get("number"), row.get("e164"), row.get("dial_base"));
            let want = dial_base_column(&E164::from_trusted(e164.clone()), &number);
            assert_eq!(dial_base, want, "{number:?}");
            kinds.insert((dial_base.is_empty(), dial_base == e164));
        }
        assert_eq!(
            kinds.len(),
            3,
            "none, the number itself and a shorter base: {kinds:?}"
        );
        assert_eq!(fill_dial_bases(&client).await.unwrap(), 0);
    }
}
