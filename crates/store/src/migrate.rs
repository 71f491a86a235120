//! Schema migrations: numbered `.sql` files under `migrations/`, applied by refinery while
//! holding a Postgres advisory lock, so servers starting together do not race.

use crate::Error;

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
    // Unlock explicitly; closing the session would release it too.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    let _ = conn.await;
    let report = report.map_err(|e| Error::Unavailable(Box::new(e)))?;
    unlocked?;
    for m in report.applied_migrations() {
        tracing::info!(version = m.version(), name = m.name(), "migration applied");
    }
    Ok(())
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
