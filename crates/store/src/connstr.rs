//! The database URL as libpq reads it: URL (`postgres://…?sslmode=verify-full`) and key=value
//! (`host=… sslmode=…`) forms, the `PG*` variables for what the string leaves out, and the
//! password file. tokio-postgres knows only `disable`, `prefer` and `require` and no
//! certificate parameters, so those are taken out here and the rest is handed to it.
//!
//! Errors name the parameter and never quote the string, which may hold a password.

use crate::Error;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tokio_postgres::config::{Host, SslNegotiation};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first; TLS when the server refuses plaintext.
    Allow,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS always; the certificate is verified like `verify-ca` when a root certificate is
    /// configured, else not at all.
    Require,
    /// TLS, the server's chain verified against the root certificate.
    VerifyCa,
    /// As `verify-ca`, and the host name must be in the server's certificate.
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<SslMode, Error> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(invalid(
                    "sslmode",
                    "must be disable, allow, prefer, require, verify-ca or verify-full",
                ));
            }
        })
    }
}

/// Where the trusted roots come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCert {
    File(PathBuf),
    /// `sslrootcert=system`: the Mozilla roots built into the binary.
    System,
}

/// The TLS half of the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tls {
    pub(crate) mode: SslMode,
    pub(crate) root: Option<RootCert>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

/// A database URL read as libpq reads it.
#[derive(Clone)]
pub struct ConnSettings {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: Tls,
}

impl std::fmt::Debug for ConnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnSettings")
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The parameters read here, not by tokio-postgres.
const OURS: [&str; 6] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "passfile",
    "sslnegotiation",
];

impl ConnSettings {
    /// Reads `s` with the process's environment.
    pub fn parse(s: &str) -> Result<ConnSettings, Error> {
        Self::parse_with(s, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Reads `s`, taking the `PG*` variables from `env`.
    pub fn parse_with(
        s: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnSettings, Error> {
        let (rest, ours) = split(s)?;
        let mut pg = tokio_postgres::Config::from_str(&rest).map_err(|e| {
            let detail = std::error::Error::source(&e).map_or(e.to_string(), |c| c.to_string());
            Error::Config(format!("invalid database url: {detail}"))
        })?;
        let get = |key: &str, var: &str| -> Option<String> {
            ours.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| env(var))
        };
        if pg.get_hosts().is_empty()
            && let Some(hosts) = env("PGHOST")
        {
            for h in hosts.split(',') {
                pg.host(h);
            }
        }
        if pg.get_ports().is_empty()
            && let Some(port) = env("PGPORT")
        {
            pg.port(
                port.parse()
                    .map_err(|_| invalid("PGPORT", "must be a port number"))?,
            );
        }
        if pg.get_dbname().is_none()
            && let Some(db) = env("PGDATABASE")
        {
            pg.dbname(db);
        }
        if pg.get_user().is_none()
            && let Some(user) = env("PGUSER")
        {
            pg.user(user);
        }
        if pg.get_application_name().is_none()
            && let Some(name) = env("PGAPPNAME")
        {
            pg.application_name(name);
        }
        if pg.get_options().is_none()
            && let Some(options) = env("PGOPTIONS")
        {
            pg.options(options);
        }
        if pg.get_connect_timeout().is_none()
            && let Some(secs) = env("PGCONNECT_TIMEOUT")
        {
            let secs: u64 = secs
                .parse()
                .map_err(|_| invalid("PGCONNECT_TIMEOUT", "must be whole seconds"))?;
            pg.connect_timeout(std::time::Duration::from_secs(secs));
        }
        if pg.get_password().is_none() {
            if let Some(password) = env("PGPASSWORD") {
                pg.password(password);
            } else if let Some(password) = password_file(&pg, get("passfile", "PGPASSFILE"), env)? {
                pg.password(password);
            }
        }
        match get("sslnegotiation", "PGSSLNEGOTIATION").as_deref() {
            None | Some("postgres") => {}
            Some("direct") => {
                pg.ssl_negotiation(SslNegotiation::Direct);
            }
            Some(_) => return Err(invalid("sslnegotiation", "must be postgres or direct")),
        }
        let mode = match get("sslmode", "PGSSLMODE") {
            Some(m) => m.parse()?,
            None => SslMode::Prefer,
        };
        let home = env("HOME").map(PathBuf::from);
        let in_home = |name: &str| {
            home.as_ref()
                .map(|h| h.join(".postgresql").join(name))
                .filter(|p| p.is_file())
        };
        let root = match get("sslrootcert", "PGSSLROOTCERT") {
            Some(s) if s == "system" => Some(RootCert::System),
            Some(path) => Some(RootCert::File(readable("sslrootcert", path)?)),
            None => in_home("root.crt").map(RootCert::File),
        };
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root.is_none() {
            return Err(invalid(
                "sslrootcert",
                "sslmode verify-ca and verify-full need a root certificate (a PEM file, or \
                 `system` for the public roots)",
            ));
        }
        let cert = get("sslcert", "PGSSLCERT")
            .map(|p| readable("sslcert", p))
            .transpose()?
            .or_else(|| in_home("postgresql.crt"));
        let key = get("sslkey", "PGSSLKEY")
            .map(|p| readable("sslkey", p))
            .transpose()?
            .or_else(|| cert.as_ref().and_then(|_| in_home("postgresql.key")));
        if cert.is_some() != key.is_some() {
            return Err(invalid("sslkey", "sslcert and sslkey go together"));
        }
        if pg.get_ssl_negotiation() == SslNegotiation::Direct
            && matches!(mode, SslMode::Disable | SslMode::Allow | SslMode::Prefer)
        {
            return Err(invalid(
                "sslnegotiation",
                "direct needs sslmode require, verify-ca or verify-full",
            ));
        }
        pg.ssl_mode(match mode {
            SslMode::Disable | SslMode::Allow => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        Ok(ConnSettings {
            pg,
            tls: Tls {
                mode,
                root,
                cert,
                key,
            },
        })
    }

    /// The `sslmode` in force.
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }
}

fn invalid(parameter: &str, what: &str) -> Error {
    Error::Config(format!("invalid database url: {parameter}: {what}"))
}

fn readable(parameter: &str, path: String) -> Result<PathBuf, Error> {
    let path = PathBuf::from(path);
    std::fs::metadata(&path).map_err(|e| {
        Error::Config(format!(
            "invalid database url: {parameter}: cannot read {}: {e}",
            path.display()
        ))
    })?;
    Ok(path)
}

/// Takes our parameters out of `s`; returns the rest (for tokio-postgres) and ours, in order.
fn split(s: &str) -> Result<(String, Vec<(String, String)>), Error> {
    let s = s.trim();
    let mut ours = Vec::new();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let Some((head, query)) = s.split_once('?') else {
            return Ok((s.to_owned(), ours));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if OURS.contains(&k) {
                ours.push((k.to_owned(), percent_decode(k, v)?));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{}", kept.join("&"))
        };
        return Ok((rest, ours));
    }
    let mut kept = String::new();
    for (k, v, raw) in key_values(s)? {
        if OURS.contains(&k.as_str()) {
            ours.push((k, v));
        } else {
            kept.push_str(raw);
            kept.push(' ');
        }
    }
    Ok((kept, ours))
}

/// The pairs of a key=value string, each with its raw text.
fn key_values(s: &str) -> Result<Vec<(String, String, &str)>, Error> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let start = rest;
        let eq = rest.find('=').ok_or_else(|| {
            Error::Config("invalid database url: a key without `=` (key=value form)".into())
        })?;
        let key = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let mut value = String::new();
        if let Some(quoted) = rest.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '\'' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.ok_or_else(|| invalid(&key, "unterminated quoted value"))?;
            rest = &quoted[end..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let mut chars = rest[..end].chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            rest = &rest[end..];
        }
        let raw = &start[..start.len() - rest.len()];
        out.push((key, value, raw));
        rest = rest.trim_start();
    }
    Ok(out)
}

fn percent_decode(parameter: &str, v: &str) -> Result<String, Error> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = v
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(parameter, "bad percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(parameter, "not UTF-8"))
}

/// The password for this host, port, database and user from the password file (libpq's
/// `~/.pgpass` format), if there is one and it has a line for them. Like libpq, a file others
/// may read is ignored, with a warning.
fn password_file(
    pg: &tokio_postgres::Config,
    path: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, Error> {
    let explicit = path.is_some();
    let Some(path) = path
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".pgpass")))
    else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if explicit && e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Config(format!(
                "invalid database url: passfile: cannot read {}: {e}",
                path.display()
            )));
        }
        Err(_) => return Ok(None),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                "password file is readable by group or others; ignored (chmod 0600)"
            );
            return Ok(None);
        }
    }
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(_)) => "localhost".to_owned(),
        None => "localhost".to_owned(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432).to_string();
    let db = pg.get_dbname().or(pg.get_user()).unwrap_or_default();
    let user = pg.get_user().unwrap_or_default();
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(pgpass_fields)
        .find(|f| {
            [&host, &port, db, user]
                .iter()
                .zip(f)
                .all(|(want, field)| field == "*" || field == *want)
        })
        .and_then(|mut f| f.pop()))
}

/// The five fields of a password file line, `:` and `\` escaped by `\`.
fn pgpass_fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, env: &[(&str, &str)]) -> Result<ConnSettings, Error> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ConnSettings::parse_with(s, &move |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn message(r: Result<ConnSettings, Error>) -> String {
        r.expect_err("an error").to_string()
    }

    #[test]
    fn every_libpq_sslmode_is_read_in_both_forms() {
        let ca = std::env::temp_dir().join("callers-connstr-ca.pem");
        std::fs::write(&ca, "").unwrap();
        let ca = ca.display();
        for (mode, want) in [
            ("disable", SslMode::Disable),
            ("allow", SslMode::Allow),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let url =
                format!("postgres://u:pw@db.example:6432/app?sslmode={mode}&sslrootcert={ca}");
            let s = parse(&url, &[]).unwrap();
            assert_eq!(s.tls.mode, want, "{url}");
            assert_eq!(s.pg.get_ports(), [6432]);
            let kv =
                format!("host=db.example user=u password='p w' sslmode={mode} sslrootcert='{ca}'");
            let s = parse(&kv, &[]).unwrap();
            assert_eq!(s.tls.mode, want, "{kv}");
            assert_eq!(s.pg.get_password(), Some(&b"p w"[..]));
        }
        assert_eq!(
            parse("postgres://u@h/db", &[]).unwrap().tls.mode,
            SslMode::Prefer
        );
    }

    #[test]
    fn errors_name_the_parameter_and_never_the_password() {
        let cases = [
            ("postgres://u:hunter2@h/db?sslmode=verify-fully", "sslmode"),
            (
                "postgres://u:hunter2@h/db?sslmode=verify-full",
                "sslrootcert",
            ),
            (
                "postgres://u:hunter2@h/db?sslrootcert=/no/such/ca.pem",
                "sslrootcert",
            ),
            ("postgres://u:hunter2@h/db?sslcert=/no/such.crt", "sslcert"),
            (
                "postgres://u:hunter2@h/db?sslnegotiation=sideways",
                "sslnegotiation",
            ),
            ("postgres://u:hunter2@h:port/db", "port"),
            ("postgres://u:hunter2@h/db?colour=blue", "colour"),
            ("host=h password=hunter2 sslmode=nope", "sslmode"),
        ];
        for (url, parameter) in cases {
            let m = message(parse(url, &[]));
            assert!(m.contains(parameter), "{url}: {m}");
            assert!(!m.contains("hunter2"), "{url}: {m}");
        }
    }

    #[test]
    fn pg_variables_fill_in_what_the_url_leaves_out() {
        let s = parse(
            "postgres:///app",
            &[
                ("PGHOST", "db.internal"),
                ("PGPORT", "6432"),
                ("PGUSER", "callers"),
                ("PGPASSWORD", "pw"),
                ("PGSSLMODE", "require"),
                ("PGAPPNAME", "callers-x"),
            ],
        )
        .unwrap();
        assert_eq!(s.pg.get_hosts(), [Host::Tcp("db.internal".into())]);
        assert_eq!(s.pg.get_ports(), [6432]);
        assert_eq!(s.pg.get_user(), Some("callers"));
        assert_eq!(s.pg.get_password(), Some(&b"pw"[..]));
        assert_eq!(s.pg.get_application_name(), Some("callers-x"));
        assert_eq!(s.tls.mode, SslMode::Require);
        // The string wins over the variables.
        let s = parse(
            "postgres://u@h:1/db?sslmode=disable",
            &[("PGSSLMODE", "require"), ("PGPORT", "2")],
        )
        .unwrap();
        assert_eq!(s.tls.mode, SslMode::Disable);
        assert_eq!(s.pg.get_ports(), [1]);
    }

    #[test]
    fn the_password_file_gives_the_password_of_the_matching_line() {
        let dir = std::env::temp_dir().join(format!("callers-pgpass-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:callers:wrong\ndb.internal:6432:app:callers:s\\:cret\n*:*:*:*:fallback\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let path = file.display().to_string();
        let s = parse(
            "postgres://callers@db.internal:6432/app",
            &[("PGPASSFILE", &path)],
        )
        .unwrap();
        assert_eq!(s.pg.get_password(), Some(&b"s:cret"[..]));
        let s = parse(
            &format!("host=elsewhere user=x dbname=y passfile='{path}'"),
            &[],
        )
        .unwrap();
        assert_eq!(s.pg.get_password(), Some(&b"fallback"[..]));
        let s = parse(
            "postgres://callers:given@db.internal:6432/app",
            &[("PGPASSFILE", &path)],
        )
        .unwrap();
        assert_eq!(s.pg.get_password(), Some(&b"given"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
