//! The end-to-end tests in `tests/tests`: the real binaries, run as processes, against a real
//! PostgreSQL, each test on a fresh database of its own. The harness is the test kit
//! (`callers_testkit`); these names stay for the test files written against them.

pub use callers_testkit::database::{TestDatabase, count, fresh_database, sql};
pub use callers_testkit::process::{
    Finished, ServerProcess as Server, finish, purge_binary, server_binary, terminate,
};
pub use callers_testkit::rows::{
    CallerRow as Row, FIRST_NAME, LAST_NAME, NUMBER, contact_exists as exists,
    insert_caller as insert, insert_callers as insert_many,
};

use callers_testkit::Launch;
use tokio::process::{Child, Command};

/// `callers-purge` with `args`, logging JSON, against `database_url` when given.
pub fn purge_command(database_url: Option<&str>, args: &[&str]) -> Command {
    let mut launch = Launch::purge().env("CALLERS_LOG_FORMAT", "json");
    if let Some(url) = database_url {
        launch = launch.database(url);
    }
    launch.args(args).command()
}

/// Runs `callers-purge` on `db` to the end.
pub async fn purge(db: &TestDatabase, args: &[&str]) -> Finished {
    finish(start_purge(db, args)).await
}

/// Starts `callers-purge` on `db`; see [`finish`].
pub fn start_purge(db: &TestDatabase, args: &[&str]) -> Child {
    purge_command(Some(db.url()), args)
        .spawn()
        .expect("spawn callers-purge")
}

/// Starts `callers-server` on `db`, unauthenticated on a loopback port of its choosing, and
/// waits until it listens.
pub async fn start_server(db: &TestDatabase) -> Server {
    Launch::server()
        .database(db.url())
        .serve()
        .await
        .expect("start callers-server")
}
