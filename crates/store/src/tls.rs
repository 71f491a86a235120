//! TLS to PostgreSQL. `sslmode=require` in the database URL turns it on; the server's
//! certificate is then verified against `PGSSLROOTCERT` (a PEM bundle, as libpq reads it) or,
//! without it, the Mozilla roots. Other modes connect in plaintext: `prefer` would silently
//! accept a downgrade, so it buys nothing over saying what one wants.

use crate::Error;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector a config asks for; `None` means plaintext.
pub(crate) fn connector(cfg: &tokio_postgres::Config) -> Result<Option<MakeRustlsConnect>, Error> {
    if cfg.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os("PGSSLROOTCERT") {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(&path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| unavailable(format!("cannot read PGSSLROOTCERT: {e}")))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(unavailable(
                    "PGSSLROOTCERT holds no usable certificate".into(),
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| unavailable(format!("tls setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn unavailable(msg: String) -> Error {
    Error::Unavailable(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn only_sslmode_require_turns_tls_on() {
        let plain = tokio_postgres::Config::from_str("postgres://u@h/db").unwrap();
        assert!(connector(&plain).unwrap().is_none());
        let prefer = tokio_postgres::Config::from_str("postgres://u@h/db?sslmode=prefer").unwrap();
        assert!(connector(&prefer).unwrap().is_none());
        let require =
            tokio_postgres::Config::from_str("postgres://u@h/db?sslmode=require").unwrap();
        assert!(connector(&require).unwrap().is_some());
    }
}
