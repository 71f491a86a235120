//! Test support: a store on a fresh database cloned from a migrated template. It lives here
//! for the store's own unit tests (the store cannot depend on the test kit, which depends on
//! it); every other crate's tests take it from `callers-testkit`.

use crate::{PoolConfig, Store};
pub use callers_devdb::TestDatabase;
#[cfg(test)]
use serde_json::Value;

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

/// Names of every node in an `EXPLAIN (FORMAT JSON)` plan, with the relation and index.
/// (node type, relation, index, index condition) of every node of `plan`.
#[cfg(test)]
pub(crate) type PlanNode = (String, String, String, String);

#[cfg(test)]
fn plan_nodes(plan: &Value, out: &mut Vec<PlanNode>) {
    let field = |k: &str| plan.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    out.push((
        field("Node Type"),
        field("Relation Name"),
        field("Index Name"),
        field("Index Cond"),
    ));
    for child in plan
        .get("Plans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        plan_nodes(child, out);
    }
}

/// The plan of `sql` run with `args` after `setup`, in a transaction whose plan cache mode
/// is `mode` unless `setup` changes it.
#[cfg(test)]
pub(crate) async fn explain(
    client: &deadpool_postgres::Object,
    mode: &str,
    setup: &str,
    sql: &str,
    args: &str,
) -> Vec<PlanNode> {
    client
        .batch_execute(&format!(
            "DEALLOCATE ALL; BEGIN; SET LOCAL plan_cache_mode = {mode}; {setup}; \
             PREPARE q AS {sql}"
        ))
        .await
        .unwrap();
    let row = client
        .query_one(&format!("EXPLAIN (FORMAT JSON) EXECUTE q({args})"), &[])
        .await
        .unwrap();
    client
        .batch_execute("ROLLBACK; DEALLOCATE ALL")
        .await
        .unwrap();
    let json: Value = row.get("QUERY PLAN");
    let mut nodes = Vec::new();
    plan_nodes(&json[0]["Plan"], &mut nodes);
    // A partition (migration V7) and its indexes by the names of their partitioned parents.
    for (_, relation, index, _) in &mut nodes {
        for name in [relation, index] {
            if !name.is_empty() {
                *name = client
                    .query_one(
                        "SELECT coalesce(pg_partition_root($1::text::regclass), \
                                         $1::text::regclass)::text AS root",
                        &[&*name],
                    )
                    .await
                    .unwrap()
                    .get("root");
            }
        }
    }
    nodes
}
