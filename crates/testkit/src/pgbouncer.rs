//! PgBouncer in transaction mode in front of the test PostgreSQL, as operators run it: Debian's
//! package with its usual setting `ignore_startup_parameters = extra_float_digits` (so startup
//! `options` are refused), a small server pool so that consecutive transactions of one client
//! land on different backends.
//!
//! One PgBouncer per [`PgBouncer`] value, on a free port, stopped when the value is dropped.
//! `CALLERS_TEST_PGBOUNCER=1` sends the in-process server of [`crate::spawn_app`] through one.
//! Missing the binary fails the test under `CI=true`; elsewhere the PgBouncer tests say loudly
//! that they were skipped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

/// Whether the tests of this process go through PgBouncer (`CALLERS_TEST_PGBOUNCER=1`).
pub fn requested() -> bool {
    std::env::var("CALLERS_TEST_PGBOUNCER").is_ok_and(|v| v == "1" || v == "true")
}

/// The `pgbouncer` binary: on PATH, or where Debian installs it.
pub fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("pgbouncer"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/sbin/pgbouncer");
        debian.is_file().then_some(debian)
    })
}

/// `None` (after a loud line on stderr) when PgBouncer is not installed outside CI; under
/// `CI=true` a missing PgBouncer fails the test.
pub fn binary_or_skip(test: &str) -> Option<PathBuf> {
    match binary() {
        Some(b) => Some(b),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: pgbouncer is not installed, and CI=true (apt-get install pgbouncer)")
        }
        None => {
            eprintln!(
                "SKIPPED {test}: pgbouncer is not installed (apt-get install pgbouncer); \
                 CI installs it and fails without it"
            );
            None
        }
    }
}

/// A running PgBouncer; stopped on drop.
pub struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode in front of the PostgreSQL at `server_url` (its
    /// host and port; every database and the user `postgres`, trusted).
    pub async fn start(server_url: &str) -> PgBouncer {
        Self::start_with_pool(server_url, 4).await
    }

    /// As [`PgBouncer::start`], with `pool_size` backends per database and user.
    pub async fn start_with_pool(server_url: &str, pool_size: usize) -> PgBouncer {
        let binary = binary().expect("pgbouncer is installed");
        let pg = tokio_postgres::Config::from_str(server_url).expect("a server url");
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let pg_port = pg.get_ports().first().copied().unwrap_or(5432);
        let dir = std::env::temp_dir().join(format!("callers-pgb-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("pgbouncer folder");
        let root = is_root();
        for attempt in 0.. {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let ini = dir.join("pgbouncer.ini");
            let users = dir.join("users.txt");
            std::fs::write(&users, "\"postgres\" \"\"\n").expect("users file");
            std::fs::write(
                &ini,
                format!(
                    "[databases]\n* = host={host} port={pg_port}\n\n[pgbouncer]\n\
                     listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                     auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                     ignore_startup_parameters = extra_float_digits\n\
                     default_pool_size = {pool_size}\nmax_client_conn = 500\n\
                     logfile =\npidfile =\n",
                    users = users.display()
                ),
            )
            .expect("pgbouncer.ini");
            let mut cmd = Command::new(&binary);
            if root {
                // PgBouncer refuses to run as root.
                cmd.args(["-u", "postgres"]);
            }
            let mut child = cmd
                .arg(&ini)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start pgbouncer");
            loop {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return PgBouncer { child, port, dir };
                }
                if child.try_wait().expect("pgbouncer state").is_some() {
                    break; // The port was taken meanwhile: try another.
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(attempt < 5, "pgbouncer would not start");
        }
        unreachable!()
    }

    /// The URL of `database` through this PgBouncer.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
