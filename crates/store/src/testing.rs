//! Test support: a store on a fresh database cloned from a migrated template. It lives here
//! for the store's own unit tests (the store cannot depend on the test kit, which depends on
//! it); every other crate's tests take it from `callers-testkit`.

use crate::{PoolConfig, Store};
pub use callers_devdb::TestDatabase;

/// A fresh, migrated database of its own and a store on it.
pub async fn fresh_store() -> (Store, TestDatabase) {
    let db = fresh_database().await;
    let store = Store::connect(db.url(), &PoolConfig::default()).expect("pool");
    (store, db)
}

/// A fresh database cloned from the template of the current migrations.
pub async fn fresh_database() -> TestDatabase {
    callers_devdb::fresh_database(&crate::migrations_fingerprint(), |url| async move {
        crate::migrate(&url).await.map_err(|e| e.into())
    })
    .await
    .expect("test database")
}
