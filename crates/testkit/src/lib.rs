//! The test kit: what the test suites and the benchmark share, so each exists once.
//!
//! * [`database`] — a fresh database per test, cloned from a migrated template (the template
//!   machinery is `callers_devdb`'s; the migration glue is `callers_store::testing`'s, which
//!   the store's own unit tests use), an empty one, and a plain SQL session on either.
//! * [`app`] — the server in-process on port 0 with a fixed clock, and gRPC clients of it.
//! * [`process`] — the `callers-server` and `callers-purge` binaries: where they come from and
//!   the one launcher that runs them, for the tests and the benchmark alike.
//! * [`logs`] — every log line of the test process, captured.
//! * [`pgbouncer`] — PgBouncer in transaction mode in front of the test PostgreSQL.
//! * [`mirror`] — a CRM's copy of an account kept from the change feed, and its comparison
//!   with the account's lists.
//! * [`replication`] — a private primary with a streaming replica, for the replica tests.
//! * [`rows`] — raw rows written straight into the tables, for tests and the benchmark's seed.

pub mod app;
pub mod database;
pub mod logs;
pub mod mirror;
pub mod otlp;
pub mod pgbouncer;
pub mod process;
pub mod replication;
pub mod rows;

pub use app::{
    TestApp, spawn_app, spawn_app_against, spawn_app_custom, spawn_app_through_pgbouncer,
    spawn_app_tls, spawn_app_with, spawn_app_with_replicas,
};
pub use database::{TestDatabase, count, empty_database, fresh_database, fresh_store, scalar, sql};
pub use process::{Finished, Launch, ServerProcess, purge_binary, server_binary};
