//! [`PrivatePostgres`]: a cluster of our own in a folder, started with the machine's binaries.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys::{self, ProcessState, Tool};
use crate::{Error, url};

const PGDATA: &str = "pgdata";
const PGDATA_STAGING: &str = "pgdata.initdb";
const LOG_FILE: &str = "postgres.log";
const LOCK_FILE: &str = "lock";
const MAX_CONNECTIONS: u32 = 300;
/// `sizeof(sockaddr_un.sun_path)` less the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: u32 = 5;

/// Whether the cluster must survive a crash of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    /// fsync on: development data.
    Durable,
    /// fsync, synchronous_commit and full_page_writes off: test data.
    Throwaway,
}

/// Where a new cluster's data comes from.
#[derive(Clone, Debug)]
enum Origin {
    /// A fresh cluster: initdb.
    Initdb,
    /// A streaming replica: `pg_basebackup -R` from the primary at this URL.
    BaseBackup(String),
}

/// How a cluster is made and started.
#[derive(Clone, Debug)]
struct Launch {
    durability: Durability,
    origin: Origin,
    /// Extra server settings, `-c name=value` each.
    settings: Vec<(String, String)>,
}

/// A PostgreSQL cluster of our own, in a folder, listening on 127.0.0.1.
///
/// Dropping the value leaves the server running (so the next start reuses it); call
/// [`PrivatePostgres::stop`] to stop a server that this value started.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    pgdata: PathBuf,
    port: u16,
    started_here: bool,
    tool: Tool,
}

impl PrivatePostgres {
    /// Starts a cluster in `data_dir` (initdb on first use, data kept between runs), or reuses
    /// one that is already running there. Listens on 127.0.0.1 on `port` (None = pick a free
    /// port; a reused running cluster keeps its port) and on a unix socket inside `data_dir`
    /// (when its path is short enough), never in /var/run/postgresql.
    ///
    /// This is the durable cluster for development: fsync stays on. Tests use
    /// [`PrivatePostgres::start_for_tests`].
    ///
    /// Holds an exclusive file lock on `data_dir/lock` while it works, so concurrent starts in
    /// the same folder (from this or other processes) give one server. As root, the programs run
    /// as the `postgres` user and `data_dir` is handed to it.
    pub async fn start(data_dir: &Path, port: Option<u16>) -> Result<PrivatePostgres, Error> {
        let launch = Launch {
            durability: Durability::Durable,
            origin: Origin::Initdb,
            settings: Vec::new(),
        };
        Self::launch(data_dir, port, launch).await
    }

    /// Like [`PrivatePostgres::start`], for throwaway test data: initdb without syncing and the
    /// server with `fsync=off`, `synchronous_commit=off` and `full_page_writes=off` (when it is
    /// started here; a running cluster is reused as it is).
    pub async fn start_for_tests(
        data_dir: &Path,
        port: Option<u16>,
    ) -> Result<PrivatePostgres, Error> {
        Self::start_for_tests_with(data_dir, port, &[]).await
    }

    /// Like [`PrivatePostgres::start_for_tests`], with extra server settings (`name`, `value`),
    /// such as `shared_preload_libraries`. They apply when the server is started here; a
    /// running cluster is reused as it is.
    pub async fn start_for_tests_with(
        data_dir: &Path,
        port: Option<u16>,
        settings: &[(&str, &str)],
    ) -> Result<PrivatePostgres, Error> {
        let launch = Launch {
            durability: Durability::Throwaway,
            origin: Origin::Initdb,
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        Self::launch(data_dir, port, launch).await
    }

    /// A hot-standby streaming replica of `primary` in `data_dir`, for tests: made on first use
    /// with `pg_basebackup -R` (streaming from the primary, with the standby signal and the
    /// primary's address written), then started on its own port with the test settings. A
    /// running replica there is reused.
    pub async fn start_replica_for_tests(
        primary: &PrivatePostgres,
        data_dir: &Path,
    ) -> Result<PrivatePostgres, Error> {
        let launch = Launch {
            durability: Durability::Throwaway,
            origin: Origin::BaseBackup(primary.url()),
            settings: vec![("hot_standby".to_owned(), "on".to_owned())],
        };
        Self::launch(data_dir, None, launch).await
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// `postgres://postgres@127.0.0.1:PORT/<database>`.
    pub fn url_for(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}",
            self.port,
            url::encode(database)
        )
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster folder given to `start` (made absolute).
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The server log.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// False when an already running cluster was reused.
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Stops the server (`pg_ctl stop -m fast`) if this value started it; else does nothing.
    pub async fn stop(self) -> Result<(), Error> {
        if !self.started_here {
            return Ok(());
        }
        let _lock = sys::lock_exclusive(self.dir.join(LOCK_FILE)).await?;
        if !self.pgdata.join("postmaster.pid").exists() {
            return Ok(()); // Already stopped by someone else.
        }
        self.tool
            .run_ok(
                "pg_ctl",
                "stop",
                &args([
                    "stop".into(),
                    "-D".into(),
                    self.pgdata.clone().into(),
                    "-m".into(),
                    "fast".into(),
                    "-w".into(),
                    "-t".into(),
                    "60".into(),
                ]),
            )
            .await?;
        tracing::info!(dir = %self.dir.display(), "stopped the private PostgreSQL");
        Ok(())
    }

    async fn launch(
        data_dir: &Path,
        port: Option<u16>,
        launch: Launch,
    ) -> Result<PrivatePostgres, Error> {
        let tool = Tool::new()?;
        let dir = std::path::absolute(data_dir)
            .map_err(Error::io(format!("resolving {}", data_dir.display())))?;
        if let Some(user) = tool.user() {
            sys::check_reachable(&dir, user)?; // Before creating folders that would be useless.
        }
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(Error::io(format!("creating {}", dir.display())))?;
        if let Some(user) = tool.user() {
            sys::check_reachable(&dir, user)?; // Folders just created (umask).
            sys::chown(&dir, user)?;
        }
        let _lock = sys::lock_exclusive(dir.join(LOCK_FILE)).await?;

        let mut cluster = PrivatePostgres {
            pgdata: dir.join(PGDATA),
            dir,
            port: 0,
            started_here: false,
            tool,
        };
        if let Some(running_port) = cluster.running_port().await? {
            cluster.port = running_port;
            cluster.wait_ready().await?;
            tracing::info!(
                dir = %cluster.dir.display(),
                port = cluster.port,
                "reusing the running private PostgreSQL"
            );
            return Ok(cluster);
        }
        if !cluster.pgdata.join("PG_VERSION").is_file() {
            match &launch.origin {
                Origin::Initdb => cluster.initdb(launch.durability).await?,
                Origin::BaseBackup(primary) => cluster.base_backup(primary).await?,
            }
        }
        cluster.remove_stale_socket_locks().await;
        cluster.pg_ctl_start(port, &launch).await?;
        cluster.started_here = true;
        cluster.wait_ready().await?;
        tracing::info!(
            dir = %cluster.dir.display(),
            port = cluster.port,
            "started a private PostgreSQL"
        );
        Ok(cluster)
    }

    /// The port of a server running on our data directory, if one is.
    async fn running_port(&self) -> Result<Option<u16>, Error> {
        let pid_file = self.pgdata.join("postmaster.pid");
        let text = match tokio::fs::read_to_string(&pid_file).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", pid_file.display()))(e)),
        };
        let info = PidFile::parse(&text);
        match info.pid.map(|pid| sys::process_state(pid, &self.pgdata)) {
            // postgres itself ignores a pid file whose process is gone.
            Some(ProcessState::Gone) => return Ok(None),
            // Not a live postgres, yet postgres would refuse to start over this pid file; and
            // nobody else is starting one here (we hold the lock).
            Some(ProcessState::Impostor) | None => {
                tracing::info!(file = %pid_file.display(), "removing a stale postmaster.pid");
                let _ = tokio::fs::remove_file(&pid_file).await;
                return Ok(None);
            }
            Some(ProcessState::Postgres | ProcessState::Unknown) => {}
        }
        let status = self
            .tool
            .run(
                "pg_ctl",
                &args(["status".into(), "-D".into(), self.pgdata.clone().into()]),
            )
            .await?;
        if !status.status.success() {
            return Ok(None);
        }
        match info.port {
            Some(port) => Ok(Some(port)),
            None => Err(Error::Command {
                command: "reading the port of the running server".into(),
                detail: format!("no port on line 4 of {}", pid_file.display()),
            }),
        }
    }

    /// Runs initdb into a staging folder and renames it, so a crash halfway never leaves a
    /// half-made data directory.
    async fn initdb(&self, durability: Durability) -> Result<(), Error> {
        let staging = self.dir.join(PGDATA_STAGING);
        remove_dir_if_present(&staging).await?;
        let mut base: Vec<OsString> = vec![
            "-D".into(),
            staging.clone().into(),
            "--auth=trust".into(),
            "--username=postgres".into(),
            "--encoding=UTF8".into(),
        ];
        if durability == Durability::Throwaway {
            base.push("--no-sync".into());
        }
        tracing::info!(dir = %self.pgdata.display(), "initdb of a private PostgreSQL");
        let with_locale = [base.clone(), vec!["--locale=C.UTF-8".into()]].concat();
        let first = self.tool.run("initdb", &with_locale).await?;
        if !first.status.success() {
            let detail = sys::describe(&first);
            remove_dir_if_present(&staging).await?;
            if !detail.to_lowercase().contains("locale") {
                return Err(Error::Command {
                    command: "initdb".into(),
                    detail,
                });
            }
            tracing::info!("locale C.UTF-8 is missing; initdb --no-locale");
            let no_locale = [base, vec!["--no-locale".into()]].concat();
            self.tool
                .run_ok("initdb", "--no-locale", &no_locale)
                .await?;
        }
        tokio::fs::rename(&staging, &self.pgdata)
            .await
            .map_err(Error::io(format!(
                "moving {} to {}",
                staging.display(),
                self.pgdata.display()
            )))
    }

    /// Copies the primary at `primary` into a staging folder with `pg_basebackup -R` and renames
    /// it, so a crash halfway never leaves a half-made data directory.
    async fn base_backup(&self, primary: &str) -> Result<(), Error> {
        let staging = self.dir.join(PGDATA_STAGING);
        remove_dir_if_present(&staging).await?;
        tracing::info!(dir = %self.pgdata.display(), "pg_basebackup of a private replica");
        self.tool
            .run_ok(
                "pg_basebackup",
                "-R",
                &args([
                    "-d".into(),
                    primary.into(),
                    "-D".into(),
                    staging.clone().into(),
                    "-R".into(),
                    "-X".into(),
                    "stream".into(),
                    "--no-sync".into(),
                    // Not a spread checkpoint: that takes minutes on an idle primary.
                    "--checkpoint=fast".into(),
                ]),
            )
            .await?;
        tokio::fs::rename(&staging, &self.pgdata)
            .await
            .map_err(Error::io(format!(
                "moving {} to {}",
                staging.display(),
                self.pgdata.display()
            )))
    }

    /// Removes socket lock files left by a server that is not running (we hold the lock); a
    /// reused pid in one would make postgres refuse to start.
    async fn remove_stale_socket_locks(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".s.PGSQL.") {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    async fn pg_ctl_start(&mut self, requested: Option<u16>, launch: &Launch) -> Result<(), Error> {
        let log = self.log_file();
        if let Some(user) = self.tool.user()
            && log.exists()
        {
            sys::chown(&log, user)?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = match requested {
                Some(port) => port,
                None => free_port()?,
            };
            let log_offset = tokio::fs::metadata(&log).await.map_or(0, |m| m.len());
            let output = self
                .tool
                .run(
                    "pg_ctl",
                    &args([
                        "start".into(),
                        "-D".into(),
                        self.pgdata.clone().into(),
                        "-l".into(),
                        log.clone().into(),
                        "-w".into(),
                        "-t".into(),
                        "120".into(),
                        "-o".into(),
                        self.server_options(port, launch).into(),
                    ]),
                )
                .await?;
            if output.status.success() {
                self.port = port;
                return Ok(());
            }
            let server_log = read_from(&log, log_offset).await;
            let port_taken = server_log.contains("could not bind")
                || server_log.contains("Address already in use")
                || server_log.contains("could not create any TCP/IP sockets");
            if port_taken && requested.is_none() && attempt < START_ATTEMPTS {
                tracing::info!(port, "port taken meanwhile; trying another");
                continue;
            }
            return Err(Error::Command {
                command: format!("pg_ctl start (port {port})"),
                detail: format!(
                    "{}; server log {}: {}",
                    sys::describe(&output),
                    log.display(),
                    sys::last_lines(&server_log, 12)
                ),
            });
        }
    }

    fn server_options(&self, port: u16, launch: &Launch) -> String {
        let mut options =
            format!("-p {port} -c listen_addresses=127.0.0.1 -c max_connections={MAX_CONNECTIONS}");
        match socket_dir(&self.dir, port) {
            Some(dir) => {
                options.push_str(" -k ");
                options.push_str(&sys::sh_quote(dir.as_os_str()));
            }
            None => options.push_str(" -k ''"),
        }
        if launch.durability == Durability::Throwaway {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        for (name, value) in &launch.settings {
            options.push_str(" -c ");
            options.push_str(&sys::sh_quote(std::ffi::OsStr::new(&format!(
                "{name}={value}"
            ))));
        }
        options
    }

    /// Waits until the server accepts connections.
    async fn wait_ready(&self) -> Result<(), Error> {
        let url = self.url();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_postgres::connect(&url, tokio_postgres::NoTls),
            )
            .await;
            match attempt {
                Ok(Ok((client, connection))) => {
                    drop(client);
                    let _ = connection.await;
                    return Ok(());
                }
                Ok(Err(e)) if Instant::now() >= deadline => {
                    return Err(Error::pg(format!(
                        "waiting for the private PostgreSQL in {} on port {}",
                        self.dir.display(),
                        self.port
                    ))(e));
                }
                _ if Instant::now() >= deadline => {
                    return Err(Error::Command {
                        command: format!("connecting to {url}"),
                        detail: format!("no answer within {}s", READY_TIMEOUT.as_secs()),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

fn args<const N: usize>(list: [OsString; N]) -> Vec<OsString> {
    list.into()
}

/// The socket folder for `port`: `dir` when the socket path fits, else none (TCP only).
fn socket_dir(dir: &Path, port: u16) -> Option<&Path> {
    let socket = dir.join(format!(".s.PGSQL.{port}"));
    (socket.as_os_str().len() <= MAX_SOCKET_PATH).then_some(dir)
}

/// A free TCP port on 127.0.0.1 (free now; taken ports are retried by the caller).
fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(Error::io("finding a free port on 127.0.0.1"))
}

async fn remove_dir_if_present(dir: &Path) -> Result<(), Error> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()))(e))
        }
        _ => Ok(()),
    }
}

/// The text of `file` from byte `offset` on (empty when unreadable).
async fn read_from(file: &Path, offset: u64) -> String {
    match tokio::fs::read(file).await {
        Ok(bytes) => {
            let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(_) => String::new(),
    }
}

/// The parts of `postmaster.pid` we use.
#[derive(Debug, PartialEq, Eq)]
struct PidFile {
    pid: Option<u32>,
    port: Option<u16>,
}

impl PidFile {
    /// Line 1 is the pid, line 4 the port.
    fn parse(text: &str) -> PidFile {
        let mut lines = text.lines().map(str::trim);
        let pid = lines.next().and_then(|l| l.parse().ok());
        let port = lines.nth(2).and_then(|l| l.parse().ok());
        PidFile { pid, port }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postmaster_pid() {
        let text = "4242\n/x/pgdata\n1700000000\n54321\n/x\n127.0.0.1\n  1234  5678\nready   \n";
        assert_eq!(
            PidFile::parse(text),
            PidFile {
                pid: Some(4242),
                port: Some(54321)
            }
        );
        assert_eq!(
            PidFile::parse("garbage"),
            PidFile {
                pid: None,
                port: None
            }
        );
    }

    #[test]
    fn long_socket_paths_fall_back_to_tcp_only() {
        assert!(socket_dir(Path::new("/work/main/.devdb"), 5432).is_some());
        let long = PathBuf::from(format!("/{}", "x".repeat(100)));
        assert!(socket_dir(&long, 5432).is_none());
    }

    #[test]
    fn finds_a_free_port() {
        assert_ne!(free_port().unwrap(), 0);
    }
}
