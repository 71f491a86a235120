//! The machine: where the PostgreSQL binaries are, who we are, running programs (as the
//! `postgres` user when we are root), file locks and ownership.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;

use crate::Error;

const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// The user that runs the PostgreSQL programs when we are root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PgUser {
    pub uid: u32,
    pub gid: u32,
}

/// Runs the PostgreSQL programs of one bin directory, as the `postgres` user when root.
#[derive(Clone, Debug)]
pub(crate) struct Tool {
    bindir: PathBuf,
    user: Option<PgUser>,
}

impl Tool {
    pub fn new() -> Result<Tool, Error> {
        let bindir = bindir()?.to_path_buf();
        let user = run_as()?;
        Ok(Tool { bindir, user })
    }

    /// The `postgres` user when we are root (the programs then run as it).
    pub fn user(&self) -> Option<PgUser> {
        self.user
    }

    /// Runs `program` (from the bin directory) and returns its output whatever its exit status.
    pub async fn run(&self, program: &str, args: &[OsString]) -> Result<Output, Error> {
        let binary = self.bindir.join(program);
        let mut command = match self.user {
            None => {
                let mut command = tokio::process::Command::new(&binary);
                command.args(args);
                command
            }
            Some(_) => as_postgres(&binary, args),
        };
        command
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
            .output()
            .await
            .map_err(Error::io(format!("running {}", binary.display())))
    }

    /// Like [`Tool::run`], but a non-zero exit status is an [`Error::Command`].
    pub async fn run_ok(
        &self,
        program: &str,
        what: &str,
        args: &[OsString],
    ) -> Result<Output, Error> {
        let output = self.run(program, args).await?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(Error::Command {
                command: format!("{program} {what}"),
                detail: describe(&output),
            })
        }
    }
}

/// A command that runs `binary args..` as the `postgres` user.
fn as_postgres(binary: &Path, args: &[OsString]) -> tokio::process::Command {
    if let Some(runuser) = find_program("runuser", &["/usr/sbin", "/sbin", "/usr/bin", "/bin"]) {
        let mut command = tokio::process::Command::new(runuser);
        command
            .args(["-u", "postgres", "--"])
            .arg(binary)
            .args(args);
        command
    } else {
        let mut line = sh_quote(binary.as_os_str());
        for arg in args {
            line.push(' ');
            line.push_str(&sh_quote(arg));
        }
        let mut command = tokio::process::Command::new("su");
        command.args(["postgres", "-s", "/bin/sh", "-c"]).arg(line);
        command
    }
}

fn find_program(name: &str, dirs: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    dirs.iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The exit status and the last lines of a program's output, on one line.
pub(crate) fn describe(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.trim().is_empty() {
        text.push('\n');
        text.push_str(&stdout);
    }
    let tail = last_lines(&text, 8);
    if tail.is_empty() {
        output.status.to_string()
    } else {
        format!("{}: {tail}", output.status)
    }
}

/// The last `n` non-empty lines of `text`, joined with " | ".
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Quotes `s` for /bin/sh.
pub(crate) fn sh_quote(s: &OsStr) -> String {
    format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"))
}

/// The bin directory holding initdb, pg_ctl and postgres: `pg_config --bindir` if it has them,
/// else the highest version under /usr/lib/postgresql/*/bin, else where `initdb` on PATH is.
pub(crate) fn bindir() -> Result<&'static Path, Error> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR
        .get_or_init(find_bindir)
        .as_deref()
        .ok_or(Error::NoBinaries)
}

fn has_server_binaries(dir: &Path) -> bool {
    SERVER_BINARIES.iter().all(|b| dir.join(b).is_file())
}

fn find_bindir() -> Option<PathBuf> {
    if let Ok(out) = std::process::Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server_binaries(&dir) {
            return Some(dir);
        }
    }
    if let Some(dir) = highest_versioned_bindir(Path::new("/usr/lib/postgresql")) {
        return Some(dir);
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        let initdb = dir.join("initdb");
        if !initdb.is_file() {
            continue;
        }
        if has_server_binaries(&dir) {
            return Some(dir);
        }
        // A symlink (e.g. /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb).
        if let Ok(real) = std::fs::canonicalize(&initdb)
            && let Some(real_dir) = real.parent()
            && has_server_binaries(real_dir)
        {
            return Some(real_dir.to_path_buf());
        }
    }
    None
}

/// `<root>/<version>/bin` with the highest version that has the server binaries.
pub(crate) fn highest_versioned_bindir(root: &Path) -> Option<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in std::fs::read_dir(root).ok()?.flatten() {
        let name = entry.file_name();
        let Some(version) = parse_version(&name.to_string_lossy()) else {
            continue;
        };
        let bin = entry.path().join("bin");
        if !has_server_binaries(&bin) {
            continue;
        }
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
}

fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// `Some(postgres user)` when we run as root, `None` otherwise.
pub(crate) fn run_as() -> Result<Option<PgUser>, Error> {
    // Outer None: we are root, but there is no postgres user.
    static RUN_AS: OnceLock<Option<Option<PgUser>>> = OnceLock::new();
    let found = RUN_AS.get_or_init(|| {
        if effective_uid() != Some(0) {
            return Some(None);
        }
        let uid = id_of(&["-u", "postgres"])?;
        let gid = id_of(&["-g", "postgres"])?;
        Some(Some(PgUser { uid, gid }))
    });
    found.ok_or(Error::NoPostgresUser)
}

fn effective_uid() -> Option<u32> {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        // "Uid:\treal\teffective\tsaved\tfs"
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            return line.split_whitespace().nth(2)?.parse().ok();
        }
    }
    id_of(&["-u"])
}

fn id_of(args: &[&str]) -> Option<u32> {
    let out = std::process::Command::new("id")
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Hands `path` to `user`.
pub(crate) fn chown(path: &Path, user: PgUser) -> Result<(), Error> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).map_err(Error::io(format!(
        "handing {} to the postgres user",
        path.display()
    )))
}

/// Checks that `user` can traverse every existing folder above `dir`.
pub(crate) fn check_reachable(dir: &Path, user: PgUser) -> Result<(), Error> {
    for folder in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(folder) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let bit = if meta.uid() == user.uid {
            0o100
        } else if meta.gid() == user.gid {
            0o010
        } else {
            0o001
        };
        if mode & bit == 0 {
            return Err(Error::NotReachable {
                path: dir.display().to_string(),
                blocker: folder.display().to_string(),
            });
        }
    }
    Ok(())
}

/// Takes an exclusive lock on `path` (created if missing), waiting for other holders (in this
/// or other processes). The lock is released when the file is dropped.
pub(crate) async fn lock_exclusive(path: PathBuf) -> Result<File, Error> {
    let context = format!("locking {}", path.display());
    tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(Error::io(context))
}

/// What a process id in a pid file is now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProcessState {
    /// A running postgres.
    Postgres,
    /// A process that is not a running postgres: the pid was reused (e.g. after a reboot), or
    /// it is a zombie that nobody reaped yet (a killed postmaster, when PID 1 does not reap).
    /// postgres would refuse to start over its pid file.
    Impostor,
    /// No such process.
    Gone,
    /// Cannot tell (no /proc).
    Unknown,
}

/// What `pid` (from the pid file of the data directory `pgdata`) is now.
pub(crate) fn process_state(pid: u32, pgdata: &Path) -> ProcessState {
    // "pid (comm) S ...": the state follows the last ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let Some((head, tail)) = stat.rsplit_once(')') else {
                return ProcessState::Unknown;
            };
            let comm = head.split_once('(').map_or("", |(_, comm)| comm);
            let state = tail.trim_start().chars().next();
            if matches!(state, Some('Z' | 'X')) {
                ProcessState::Impostor
            } else if matches!(comm, "postgres" | "postmaster") {
                // A postmaster works in its data directory; another postgres (say the machine's
                // own cluster, after a reboot reused the pid) does not.
                match (
                    std::fs::read_link(format!("/proc/{pid}/cwd")),
                    std::fs::canonicalize(pgdata),
                ) {
                    (Ok(cwd), Ok(pgdata)) if cwd != pgdata => ProcessState::Impostor,
                    _ => ProcessState::Postgres,
                }
            } else {
                ProcessState::Impostor
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if Path::new("/proc/self/stat").exists() {
                ProcessState::Gone
            } else {
                ProcessState::Unknown
            }
        }
        Err(_) => ProcessState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(sh_quote(OsStr::new("/a b/c")), "'/a b/c'");
        assert_eq!(sh_quote(OsStr::new("it's")), r"'it'\''s'");
    }

    #[test]
    fn keeps_the_last_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(last_lines("", 2), "");
    }

    #[test]
    fn picks_the_highest_version() {
        let root = std::env::temp_dir().join(format!("devdb-bindir-{}", uuid::Uuid::new_v4()));
        for version in ["9.6", "13", "15", "16"] {
            let bin = root.join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            // 16 lacks postgres, so it does not count.
            for b in SERVER_BINARIES {
                if version != "16" || b != "postgres" {
                    std::fs::write(bin.join(b), "").unwrap();
                }
            }
        }
        std::fs::create_dir_all(root.join("common/bin")).unwrap();
        assert_eq!(
            highest_versioned_bindir(&root),
            Some(root.join("15").join("bin"))
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn finds_binaries_and_this_process() {
        // The machines this project runs on have PostgreSQL installed.
        assert!(bindir().is_ok());
        let here = Path::new("/");
        assert_eq!(
            process_state(std::process::id(), here),
            ProcessState::Impostor
        );
        assert_eq!(process_state(u32::MAX - 1, here), ProcessState::Gone);
    }
}
