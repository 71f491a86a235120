//! A private PostgreSQL started from the server binaries installed on the machine, for the
//! development mode of `callers-server` and for the tests of every crate.
//!
//! # Two users
//!
//! * **Development** — [`PrivatePostgres::start`] keeps a durable cluster (fsync on) in a folder
//!   such as the repository's git-ignored `.devdb/`: `initdb` on first use, the data kept
//!   between runs, and a cluster that is already running there is reused (with its port).
//! * **Tests** — [`fresh_database`] gives each test its own database, cloned with
//!   `CREATE DATABASE .. TEMPLATE` from a migrated template, so tests run in parallel. The server
//!   is [`test_server_url`]: `DATABASE_URL` when set, else a throwaway cluster (fsync off) in
//!   `<cargo target dir>/callers-test-pg` (or `CALLERS_TEST_PG_DIR`) that all test processes
//!   share. That cluster is started once and **left running** afterwards, so later test runs
//!   start in milliseconds; stop it with
//!   `pg_ctl stop -D target/callers-test-pg/pgdata` (as the `postgres` user when root), or
//!   simply delete the folder after stopping it.
//!
//! # Layout of a cluster folder
//!
//! ```text
//! <data_dir>/
//!   pgdata/         the PostgreSQL data directory (PGDATA), made by initdb
//!   postgres.log    the server log (pg_ctl -l)
//!   .s.PGSQL.PORT   the unix socket (only when the path fits in 107 bytes; TCP is always on)
//!   lock            an exclusive file lock held while starting or stopping
//! ```
//!
//! The server listens on `127.0.0.1` only, with `trust` authentication for the user
//! `postgres`, and allows 300 connections.
//!
//! The async functions need a tokio runtime with its IO and time drivers (`#[tokio::main]`,
//! `#[tokio::test]`); [`TestDatabase`]'s `Drop` needs none.
//!
//! # Running as root
//!
//! `initdb`, `pg_ctl` and `postgres` refuse to run as root, so as root they are run as the
//! `postgres` user (`runuser -u postgres --`, else `su postgres -s /bin/sh -c`), and the cluster
//! folder is handed to that user. Every folder above the cluster folder must then be
//! traversable by `postgres` (o+x, as `/work/...` and `/tmp` are); [`PrivatePostgres::start`]
//! says so clearly when one is not, and the test cluster falls back to
//! `$TMPDIR/callers-test-pg` in that case.
//!
//! # Test databases
//!
//! Templates are named `callers_tpl_<fingerprint>` (see [`template_name`]) and are made once
//! per server under a PostgreSQL advisory lock: the migration runs on
//! `callers_tpl_<fingerprint>_tmp`, which is renamed only when it succeeded. Test databases are
//! named `callers_t_<random>` and are dropped (`WITH (FORCE)`, PostgreSQL 13+) when the
//! [`TestDatabase`] is dropped. Databases left by killed test processes are swept when the
//! private test cluster is (re)started; on a `DATABASE_URL` server they stay until dropped by
//! hand.

mod cluster;
mod sys;
mod testing;
mod url;

pub use cluster::PrivatePostgres;
pub use testing::{TestDatabase, fresh_database, template_name, test_server_url};

/// What can go wrong while starting a private PostgreSQL or making a test database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `initdb`, `pg_ctl` and `postgres` were found.
    #[error(
        "no PostgreSQL server binaries found (initdb, pg_ctl, postgres): install PostgreSQL \
         (Debian/Ubuntu: apt-get install postgresql) or set DATABASE_URL"
    )]
    NoBinaries,
    /// Running as root, but there is no `postgres` user to run the server as.
    #[error(
        "running as root, but there is no `postgres` user to run PostgreSQL as: create one \
         (useradd --system --user-group postgres) or set DATABASE_URL"
    )]
    NoPostgresUser,
    /// Running as root, and the `postgres` user cannot reach the cluster folder.
    #[error(
        "the `postgres` user cannot reach {path}: {blocker} is not traversable by it (chmod o+x \
         {blocker}, or put the cluster elsewhere, or set DATABASE_URL)"
    )]
    NotReachable {
        /// The cluster folder.
        path: String,
        /// The folder above it that `postgres` may not enter.
        blocker: String,
    },
    /// A file system operation failed.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        cause: std::io::Error,
    },
    /// A PostgreSQL program (initdb, pg_ctl) failed.
    #[error("{command} failed: {detail}")]
    Command {
        /// The program and its role, e.g. `pg_ctl start`.
        command: String,
        /// Its exit status and last lines of output (and of the server log).
        detail: String,
    },
    /// Talking to the server failed.
    #[error("{context}: {cause}")]
    Postgres {
        /// What was being done.
        context: String,
        /// The error.
        cause: tokio_postgres::Error,
    },
    /// The migrate closure given to [`fresh_database`] failed.
    #[error("migrating template database {database}: {cause}")]
    Migrate {
        /// The database that was being migrated.
        database: String,
        /// The closure's error.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |cause| Error::Io { context, cause }
    }

    pub(crate) fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
        let context = context.into();
        move |cause| Error::Postgres { context, cause }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn no_binaries_message_is_one_line_with_a_hint() {
        let message = Error::NoBinaries.to_string();
        assert!(!message.contains('\n'));
        assert!(message.starts_with("no PostgreSQL server binaries found"));
        assert!(message.contains("apt-get install postgresql"));
        assert!(message.contains("DATABASE_URL"));
    }
}
