//! Bearer-token authentication and per-account authorisation.
//!
//! The tokens file stores only SHA-256 hashes of tokens, each with a name (for logs and
//! audit rows), the accounts it may use and, optionally, what it may do there:
//! ```toml
//! [[tokens]]
//! name = "telephony-eu"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! accounts = ["acme", "globex"]   # or ["*"] for all accounts
//! scopes = ["identify", "write"]  # optional; see `Scope`
//! ```
//! A token without `scopes` may do everything but privacy requests ([`Scope::DEFAULT`]), so
//! tokens files written before scopes keep their meaning.

use callers_domain::AccountId;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounts {
    All,
    Only(Vec<String>),
}

/// What a request does, and so which scope a token needs for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Get, list and search contacts, call notes and settings.
    Read,
    /// Create, update and delete contacts, write call notes, deliver messages, change settings.
    Write,
    /// `IdentifyCaller`.
    Identify,
    /// The change feed.
    Watch,
    /// Erasure, suppression, export and account offboarding (`PrivacyService`).
    Privacy,
    /// Everything.
    Admin,
}

impl Scope {
    /// A token without `scopes`: everything it could do before scopes existed.
    pub const DEFAULT: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Identify, Scope::Watch];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Identify => "identify",
            Scope::Watch => "watch",
            Scope::Privacy => "privacy",
            Scope::Admin => "admin",
        }
    }
}

/// What the presented token may do; put into each request's extensions by the interceptor.
#[derive(Debug, Clone)]
pub struct Grant {
    pub token_name: Arc<str>,
    pub accounts: Accounts,
    pub scopes: Vec<Scope>,
}

impl Grant {
    fn unrestricted() -> Self {
        Self {
            token_name: Arc::from("unauthenticated"),
            accounts: Accounts::All,
            scopes: vec![Scope::Admin],
        }
    }

    /// Whether the grant allows requests of `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|&s| s == scope || s == Scope::Admin)
    }
}

#[derive(Debug)]
struct Token {
    hash: [u8; 32],
    grant: Grant,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    accounts: Vec<String>,
    scopes: Option<Vec<Scope>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read tokens file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid tokens file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The token table, replaceable at run time for rotation without downtime.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// `None`: authentication is off (loopback development only).
    tokens: RwLock<Option<Arc<Vec<Token>>>>,
}

impl Authenticator {
    pub fn disabled() -> Self {
        Self::default()
    }

    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let a = Self::default();
        a.reload(path)?;
        Ok(a)
    }

    /// Replaces the token table from `path`; on error the old table stays in force.
    pub fn reload(&self, path: &Path) -> Result<usize, LoadError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: shown.clone(),
            source,
        })?;
        let tokens = parse(&text).map_err(|reason| LoadError::Invalid {
            path: shown,
            reason,
        })?;
        let n = tokens.len();
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(tokens));
        Ok(n)
    }

    /// The grant of the request's bearer token; `UNAUTHENTICATED` when missing or unknown.
    pub fn authenticate<T>(&self, req: &Request<T>) -> Result<Grant, Status> {
        let table = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(table) = table else {
            return Ok(Grant::unrestricted());
        };
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Status::unauthenticated("expected `authorization: Bearer <token>`"))?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every entry so the time taken does not tell which one matched.
        let mut found: Option<&Token> = None;
        for t in table.iter() {
            if bool::from(t.hash.ct_eq(&presented)) {
                found = Some(t);
            }
        }
        found
            .map(|t| t.grant.clone())
            .ok_or_else(|| Status::unauthenticated("unknown bearer token"))
    }
}

fn parse(text: &str) -> Result<Vec<Token>, String> {
    let file: TokensFile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let mut out = Vec::with_capacity(file.tokens.len());
    for (i, e) in file.tokens.into_iter().enumerate() {
        let bytes = hex::decode(e.sha256.trim())
            .ok()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| format!("tokens[{i}].sha256 must be 64 hex digits"))?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes);
        let accounts = if e.accounts.iter().any(|a| a == "*") {
            Accounts::All
        } else {
            for a in &e.accounts {
                AccountId::parse(a).map_err(|d| format!("tokens[{i}].accounts: {d}"))?;
            }
            Accounts::Only(e.accounts)
        };
        if e.name.is_empty() {
            return Err(format!("tokens[{i}].name is required"));
        }
        out.push(Token {
            hash,
            grant: Grant {
                token_name: Arc::from(e.name),
                accounts,
                scopes: e.scopes.unwrap_or_else(|| Scope::DEFAULT.to_vec()),
            },
        });
    }
    Ok(out)
}

/// `PERMISSION_DENIED` unless the request's grant allows `scope`.
pub fn require<T>(req: &Request<T>, scope: Scope) -> Result<(), Status> {
    let grant = grant(req)?;
    if grant.allows(scope) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "this token lacks the `{}` scope this request needs",
        scope.as_str()
    )))
}

/// The name of the request's token, for audit rows; never the token.
pub fn token_name<T>(req: &Request<T>) -> Result<Arc<str>, Status> {
    Ok(grant(req)?.token_name.clone())
}

fn grant<T>(req: &Request<T>) -> Result<&Grant, Status> {
    req.extensions()
        .get::<Grant>()
        .ok_or_else(|| Status::unauthenticated("missing credentials"))
}

/// `PERMISSION_DENIED` unless the request's grant covers `account`.
pub fn authorize<T>(req: &Request<T>, account: &AccountId) -> Result<(), Status> {
    let grant = grant(req)?;
    match &grant.accounts {
        Accounts::All => Ok(()),
        Accounts::Only(list) if list.iter().any(|a| a == account.as_str()) => Ok(()),
        Accounts::Only(_) => Err(Status::permission_denied(
            "this token is not allowed to use this account",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(t: &str) -> String {
        hex::encode(Sha256::digest(t.as_bytes()))
    }

    fn auth(text: &str) -> Authenticator {
        let a = Authenticator::default();
        *a.tokens.write().unwrap() = Some(Arc::new(parse(text).unwrap()));
        a
    }

    fn req(header: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(h) = header {
            r.metadata_mut().insert("authorization", h.parse().unwrap());
        }
        r
    }

    #[test]
    fn tokens_map_to_their_grants() {
        let a = auth(&format!(
            "[[tokens]]\nname = \"one\"\nsha256 = \"{}\"\naccounts = [\"acme\"]\n\
             [[tokens]]\nname = \"all\"\nsha256 = \"{}\"\naccounts = [\"*\"]\n",
            hash("s3cret"),
            hash("root")
        ));
        let g = a.authenticate(&req(Some("Bearer s3cret"))).unwrap();
        assert_eq!(g.accounts, Accounts::Only(vec!["acme".into()]));
        assert_eq!(
            a.authenticate(&req(Some("Bearer root"))).unwrap().accounts,
            Accounts::All
        );
        for bad in [
            None,
            Some("Bearer nope"),
            Some("Basic s3cret"),
            Some("Bearer "),
        ] {
            let e = a.authenticate(&req(bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }

    #[test]
    fn scopes_default_to_everything_but_privacy() {
        let a = auth(&format!(
            "[[tokens]]\nname = \"old\"\nsha256 = \"{}\"\naccounts = [\"*\"]\n\
             [[tokens]]\nname = \"dpo\"\nsha256 = \"{}\"\naccounts = [\"*\"]\n\
             scopes = [\"privacy\", \"read\"]\n\
             [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\naccounts = [\"*\"]\n\
             scopes = [\"admin\"]\n",
            hash("old"),
            hash("dpo"),
            hash("ops")
        ));
        let grant = |t: &str| a.authenticate(&req(Some(&format!("Bearer {t}")))).unwrap();
        let old = grant("old");
        for s in Scope::DEFAULT {
            assert!(old.allows(s), "{s:?}");
        }
        assert!(!old.allows(Scope::Privacy));
        let dpo = grant("dpo");
        assert!(dpo.allows(Scope::Privacy) && dpo.allows(Scope::Read));
        assert!(!dpo.allows(Scope::Write) && !dpo.allows(Scope::Identify));
        let ops = grant("ops");
        assert!(
            [Scope::Privacy, Scope::Write, Scope::Watch]
                .iter()
                .all(|&s| ops.allows(s))
        );
        assert!(
            parse(&format!(
                "[[tokens]]\nname = \"x\"\nsha256 = \"{}\"\naccounts = [\"*\"]\n\
             scopes = [\"everything\"]\n",
                hash("x")
            ))
            .is_err()
        );
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(parse("[[tokens]]\nname = \"x\"\nsha256 = \"abc\"\naccounts = []\n").is_err());
        assert!(parse("nonsense").is_err());
        assert!(
            parse(&format!(
                "[[tokens]]\nname = \"x\"\nsha256 = \"{}\"\naccounts = [\"bad account\"]\n",
                hash("t")
            ))
            .is_err()
        );
    }

    #[test]
    fn grants_cover_only_their_accounts() {
        let acme = AccountId::parse("acme").unwrap();
        let other = AccountId::parse("other").unwrap();
        let mut r = Request::new(());
        r.extensions_mut().insert(Grant {
            token_name: Arc::from("t"),
            accounts: Accounts::Only(vec!["acme".into()]),
            scopes: Scope::DEFAULT.to_vec(),
        });
        assert!(authorize(&r, &acme).is_ok());
        assert_eq!(
            authorize(&r, &other).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }
}
