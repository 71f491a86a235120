//! The `callers-server` and `callers-purge` binaries as processes: where they come from, the one
//! launcher that runs them (for the tests and the benchmark alike), and what a run left.
//!
//! # Where the binaries come from
//!
//! `env!("CARGO_BIN_EXE_…")` exists only inside the package that owns a binary (the server's
//! own tests pass it to [`Launch::new`]); elsewhere [`server_binary`] and [`purge_binary`]
//! build them: the first use in a process runs `cargo build --workspace --all-targets
//! --message-format=json` with the test's own profile (the features `cargo test --workspace`
//! builds with) and takes the executable's path from cargo's report. After `cargo test
//! --workspace` that is a no-op of a second or two; either way the tests run the current source, never a stale
//! binary. To run prebuilt binaries instead (CI, a container), set `CALLERS_PURGE_BIN` /
//! `CALLERS_SERVER_BIN` to their paths; nothing is built then.
//!
//! # The environment
//!
//! A launched binary gets a cleared environment, so nothing from the developer's shell leaks
//! in, unless [`Launch::inherit_env`] says otherwise (the benchmark passes the operator's
//! settings through).

use anyhow::{Context, bail};
use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// What the server prints on stderr once it accepts connections.
const LISTENING: &str = "callers-server listening on ";
/// How long a server may take to listen, a run to finish and a server to drain on SIGTERM.
const START_PATIENCE: Duration = Duration::from_secs(60);
const RUN_PATIENCE: Duration = Duration::from_secs(60);
const STOP_PATIENCE: Duration = Duration::from_secs(30);

/// The path of `callers-purge`, built on first use.
pub fn purge_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("callers-purge", "CALLERS_PURGE_BIN"))
}

/// The path of `callers-server`, built on first use.
pub fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("callers-server", "CALLERS_SERVER_BIN"))
}

fn build(package: &str, override_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = std::process::Command::new(cargo);
    // The whole workspace with every target, as `cargo test --workspace` builds it: the same
    // features everywhere, so after that command this is a no-op instead of a rebuild of the
    // binary (and the dependencies whose features differ) for one package alone.
    cmd.args([
        "build",
        "--message-format=json-render-diagnostics",
        "--workspace",
        "--all-targets",
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"))
    .stdin(Stdio::null())
    .stderr(Stdio::inherit());
    // What cargo sets for the running test binary, not for a build: build scripts that watch
    // one of these (ring watches CARGO_MANIFEST_DIR) would see a change and rebuild a score of
    // crates here, and again in the next plain `cargo test`.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_")
            || matches!(
                k.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            cmd.env_remove(&key);
        }
    }
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(out.status.success(), "cargo build -p {package} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact"
                && m["target"]["name"] == package
                && m["target"]["kind"][0] == "bin"
                && m["profile"]["test"] == false
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build -p {package} reported no executable"))
}

/// A binary to run, its arguments and environment; see the module documentation.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    inherit_env: bool,
    log_file: Option<PathBuf>,
}

impl Launch {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            inherit_env: false,
            log_file: None,
        }
    }

    /// `callers-server`, built on first use.
    pub fn server() -> Self {
        Self::new(server_binary())
    }

    /// `callers-purge`, built on first use.
    pub fn purge() -> Self {
        Self::new(purge_binary())
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--database-url <url>`.
    pub fn database(self, url: &str) -> Self {
        self.args(["--database-url", url])
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Keeps this process's environment (less what [`Launch::env_remove`] names) instead of
    /// clearing it.
    pub fn inherit_env(mut self) -> Self {
        self.inherit_env = true;
        self
    }

    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// A server on a loopback port of its choosing, logging JSON, that migrates the database
    /// at `url` before it serves.
    pub fn migrating_on(self, url: &str) -> Self {
        self.args([
            "--listen",
            "127.0.0.1:0",
            "--migrate",
            "--log-format",
            "json",
        ])
        .env("DATABASE_URL", url)
    }

    /// Sends what a server prints to `path` instead of keeping it in memory (a benchmark's
    /// server logs a line per request).
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.log_file = Some(path.into());
        self
    }

    /// The command: no stdin, stdout and stderr piped, killed when dropped.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        if !self.inherit_env {
            cmd.env_clear();
        }
        for key in &self.env_remove {
            cmd.env_remove(key);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Starts the binary; see [`finish`].
    pub fn spawn(&self) -> Child {
        self.command()
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display()))
    }

    /// Runs the binary to its end.
    pub async fn run(&self) -> Finished {
        finish(self.spawn()).await
    }

    /// Starts a server and waits until it listens: on a loopback port of its choosing unless
    /// the arguments name one with `--listen`.
    pub async fn serve(self) -> anyhow::Result<ServerProcess> {
        let mut launch = self;
        if !launch.args.iter().any(|a| a == "--listen") {
            launch = launch.args(["--listen", "127.0.0.1:0"]);
        }
        let mut cmd = launch.command();
        let sink = match &launch.log_file {
            Some(path) => {
                let file = std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                // Straight to the file: the bench measures its own CPU, not a copy loop.
                cmd.stdout(file.try_clone()?);
                Sink::File(Arc::new(Mutex::new(file)))
            }
            None => Sink::Memory(Arc::default()),
        };
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", launch.program.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(drain(stdout, sink.clone(), None));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stderr = child.stderr.take().context("no stderr")?;
        readers.push(drain(stderr, sink.clone(), Some(tx)));
        let where_ = launch
            .log_file
            .as_ref()
            .map_or_else(String::new, |p| format!("; log: {}", p.display()));
        let addr = match tokio::time::timeout(START_PATIENCE, rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => bail!(
                "{} ended before listening{where_}{}",
                launch.program.display(),
                sink.text()
            ),
            Err(_) => bail!(
                "{} not listening after {START_PATIENCE:?}{where_}",
                launch.program.display()
            ),
        };
        Ok(ServerProcess {
            child,
            pid,
            addr,
            sink,
            readers,
        })
    }
}

/// Where a server's output goes.
#[derive(Clone)]
enum Sink {
    Memory(Arc<Mutex<String>>),
    File(Arc<Mutex<std::fs::File>>),
}

impl Sink {
    fn push(&self, line: &str) {
        match self {
            Sink::Memory(text) => {
                let mut text = text.lock().expect("output buffer");
                text.push_str(line);
                text.push('\n');
            }
            Sink::File(file) => {
                let _ = writeln!(file.lock().expect("log file"), "{line}");
            }
        }
    }

    fn text(&self) -> String {
        match self {
            Sink::Memory(text) => format!(":\n{}", text.lock().expect("output buffer")),
            Sink::File(_) => String::new(),
        }
    }
}

/// Copies `from` into `sink` line by line until the process closes it; with `listening`, the
/// address the server announces is sent there.
fn drain(
    from: impl AsyncRead + Unpin + Send + 'static,
    sink: Sink,
    mut listening: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.strip_prefix(LISTENING)
                && let Ok(addr) = addr.trim().parse()
                && let Some(tx) = listening.take()
            {
                let _ = tx.send(addr);
            }
            sink.push(&line);
        }
    })
}

/// A running `callers-server`; killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    sink: Sink,
    readers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("pid", &self.pid)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// How a server ended.
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    /// Whether it had to be killed because it did not stop on SIGTERM in time.
    pub killed: bool,
    /// Everything it printed (empty when it logged to a file).
    pub output: String,
}

impl ServerProcess {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything printed so far (empty when it logs to a file).
    pub fn output(&self) -> String {
        match &self.sink {
            Sink::Memory(text) => text.lock().expect("output buffer").clone(),
            Sink::File(_) => String::new(),
        }
    }

    /// Sends `signal` (`HUP`, `TERM`…).
    pub async fn signal(&self, signal: &str) {
        assert!(
            send_signal(self.pid, signal).await,
            "kill -{signal} {}",
            self.pid
        );
    }

    /// SIGTERM, then a bounded wait for the graceful drain; SIGKILL after that.
    pub async fn stop(mut self) -> anyhow::Result<Stopped> {
        // It may have ended already: the wait below tells.
        send_signal(self.pid, "TERM").await;
        let (status, killed) = match tokio::time::timeout(STOP_PATIENCE, self.child.wait()).await {
            Ok(status) => (status?, false),
            Err(_) => {
                self.child.start_kill()?;
                (self.child.wait().await?, true)
            }
        };
        // The pipes close with the process: what it printed last is in the sink after this.
        for reader in self.readers.drain(..) {
            let _ = reader.await;
        }
        Ok(Stopped {
            status,
            killed,
            output: self.output(),
        })
    }
}

/// What a finished run left: its exit code and what it printed.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The JSON summary, the one line on stdout (`callers-purge`).
    pub fn summary(&self) -> serde_json::Value {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "stdout is one summary line: {self:#?}");
        serde_json::from_str(lines[0]).expect("the summary is JSON")
    }

    pub fn deleted(&self) -> u64 {
        self.summary()["deleted"].as_u64().expect("deleted")
    }

    pub fn outcome(&self) -> String {
        self.summary()["outcome"]
            .as_str()
            .expect("outcome")
            .to_owned()
    }

    /// The non-empty lines on stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Waits (at most a minute) for `child` and collects what it printed.
pub async fn finish(child: Child) -> Finished {
    let out = tokio::time::timeout(RUN_PATIENCE, child.wait_with_output())
        .await
        .expect("the run finishes within a minute")
        .expect("wait for the run");
    Finished {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Sends SIGTERM, as Kubernetes does to stop a pod.
pub async fn terminate(child: &Child) {
    let pid = child.id().expect("the child is running");
    assert!(send_signal(pid, "TERM").await, "kill -TERM {pid}");
}

/// `kill -<signal> <pid>`; whether it was delivered.
async fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .await
        .expect("run kill")
        .success()
}
