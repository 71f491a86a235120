//! Databases for tests: a fresh clone of the migrated template per test, an empty one for the
//! migrations themselves, and plain SQL sessions for arranging rows and looking at them.

use tokio_postgres::types::{FromSqlOwned, ToSql};
use tokio_postgres::{Client, NoTls};

pub use callers_store::testing::{TestDatabase, fresh_database, fresh_store};

/// A plain SQL session on `db`.
pub async fn sql(db: &TestDatabase) -> Client {
    connect(db.url()).await
}

/// A plain SQL session on the database at `url`.
pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(conn);
    client
}

/// The URL of a new, empty database (no template: the migrations must build the schema). Its
/// `callers_t_` prefix lets the private test cluster drop it when the cluster restarts.
pub async fn empty_database() -> String {
    let server = callers_devdb::test_server_url()
        .await
        .expect("the test server");
    let name = format!("callers_t_bin_{}", uuid::Uuid::new_v4().simple());
    connect(&server)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create an empty database");
    match server.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => unreachable!("test server urls are postgres://…/db"),
    }
}

/// The single value of a query answering one row of one column (a count, a setting): a
/// scalar has no name worth spelling out, so it is read by the one column there is.
pub async fn scalar<T: FromSqlOwned>(
    client: &Client,
    query: &str,
    params: &[&(dyn ToSql + Sync)],
) -> T {
    let row = client
        .query_one(query, params)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let [column] = row.columns() else {
        panic!("{query}: wanted one column, got {}", row.len());
    };
    row.get(column.name())
}

/// `SELECT count(*) …` (or any query of one `bigint`).
pub async fn count(client: &Client, query: &str) -> i64 {
    scalar(client, query, &[]).await
}
