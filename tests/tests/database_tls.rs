//! TLS to PostgreSQL as a managed database asks for it: a PostgreSQL of the test's own with
//! `ssl = on`, a certificate for `localhost` from a test CA, TCP only through `hostssl` (but for
//! one plaintext user), and one user that must present a client certificate.

use callers_devdb::PrivatePostgres;
use callers_store::{PoolConfig, Store};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::{Path, PathBuf};

fn ca() -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(names: &[&str], common_name: &str, issuer: &Issuer<'_, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes `text` to `dir/name`, owned by whoever runs the cluster, readable by it alone.
fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // As root the cluster runs as `postgres` (callers_devdb); elsewhere this fails harmlessly.
    let _ = std::process::Command::new("chown")
        .arg("postgres")
        .arg(&path)
        .status();
    path
}

struct Case {
    what: &'static str,
    url: String,
    connects: bool,
}

#[tokio::test]
async fn sslmodes_verify_the_server_and_client_certificates_as_libpq_does() {
    let dir = std::env::temp_dir().join(format!("callers-tls-pg-{}", uuid::Uuid::new_v4()));
    let pg = PrivatePostgres::start_for_tests(&dir, None).await.unwrap();
    let (ca_pem, issuer) = ca();
    let (other_ca_pem, _) = ca();
    let (server_cert, server_key) = leaf(&["localhost"], "localhost", &issuer);
    let (client_cert, client_key) = leaf(&[], "certuser", &issuer);
    let (stranger_cert, stranger_key) = leaf(&[], "certuser", &ca().1);
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let _ = std::process::Command::new("chown")
        .arg("postgres")
        .arg(&keys)
        .status();
    let ca_file = file(&keys, "ca.pem", &ca_pem);
    let other_ca = file(&keys, "other-ca.pem", &other_ca_pem);
    let server_cert = file(&keys, "server.crt", &server_cert);
    let server_key = file(&keys, "server.key", &server_key);
    let client_cert = file(&keys, "client.crt", &client_cert);
    let client_key = file(&keys, "client.key", &client_key);
    let stranger_cert = file(&keys, "stranger.crt", &stranger_cert);
    let stranger_key = file(&keys, "stranger.key", &stranger_key);
    std::fs::write(
        dir.join("pgdata").join("pg_hba.conf"),
        "hostssl all certuser 127.0.0.1/32 cert\n\
         hostssl all all 127.0.0.1/32 trust\n\
         host all plainuser 127.0.0.1/32 trust\n",
    )
    .unwrap();
    let (admin, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    for setting in [
        "CREATE ROLE certuser LOGIN".to_owned(),
        "CREATE ROLE plainuser LOGIN".to_owned(),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            server_cert.display()
        ),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", server_key.display()),
        format!("ALTER SYSTEM SET ssl_ca_file = '{}'", ca_file.display()),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        admin.batch_execute(&setting).await.unwrap();
    }
    drop(admin);
    // The reload is a signal: wait until a new session gets TLS.
    let probe = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        pg.port()
    );
    loop {
        let probing = Store::connect(&probe, &PoolConfig::default()).unwrap();
        if probing.ping().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let port = pg.port();
    let url = |user: &str, host: &str, params: &str| {
        format!("postgres://{user}@{host}:{port}/postgres?{params}")
    };
    let root = |p: &Path| format!("sslrootcert={}", p.display());
    let ca = root(&ca_file);
    let wrong = root(&other_ca);
    let client = format!(
        "sslcert={}&sslkey={}",
        client_cert.display(),
        client_key.display()
    );
    let stranger = format!(
        "sslcert={}&sslkey={}",
        stranger_cert.display(),
        stranger_key.display()
    );
    let cases = [
        Case {
            what: "verify-full with the right CA and host name",
            url: url(
                "postgres",
                "localhost",
                &format!("sslmode=verify-full&{ca}"),
            ),
            connects: true,
        },
        Case {
            what: "verify-full with a host name the certificate does not name",
            url: url(
                "postgres",
                "127.0.0.1",
                &format!("sslmode=verify-full&{ca}"),
            ),
            connects: false,
        },
        Case {
            what: "verify-full with a wrong CA",
            url: url(
                "postgres",
                "localhost",
                &format!("sslmode=verify-full&{wrong}"),
            ),
            connects: false,
        },
        Case {
            what: "verify-ca ignores the host name",
            url: url("postgres", "127.0.0.1", &format!("sslmode=verify-ca&{ca}")),
            connects: true,
        },
        Case {
            what: "verify-ca with a wrong CA",
            url: url(
                "postgres",
                "127.0.0.1",
                &format!("sslmode=verify-ca&{wrong}"),
            ),
            connects: false,
        },
        Case {
            what: "require with a root certificate verifies like verify-ca",
            url: url("postgres", "127.0.0.1", &format!("sslmode=require&{wrong}")),
            connects: false,
        },
        Case {
            what: "require without a root certificate encrypts without verifying",
            url: url("postgres", "127.0.0.1", "sslmode=require"),
            connects: true,
        },
        Case {
            what: "prefer uses TLS when the server offers it",
            url: url("postgres", "127.0.0.1", "sslmode=prefer"),
            connects: true,
        },
        Case {
            what: "disable is refused where only hostssl admits",
            url: url("postgres", "127.0.0.1", "sslmode=disable"),
            connects: false,
        },
        Case {
            what: "allow falls back to TLS when plaintext is refused",
            url: url("postgres", "127.0.0.1", "sslmode=allow"),
            connects: true,
        },
        Case {
            what: "disable connects where plaintext is admitted",
            url: url("plainuser", "127.0.0.1", "sslmode=disable"),
            connects: true,
        },
        Case {
            what: "a required client certificate is accepted",
            url: url(
                "certuser",
                "localhost",
                &format!("sslmode=verify-full&{ca}&{client}"),
            ),
            connects: true,
        },
        Case {
            what: "a required client certificate missing",
            url: url(
                "certuser",
                "localhost",
                &format!("sslmode=verify-full&{ca}"),
            ),
            connects: false,
        },
        Case {
            what: "a client certificate of another CA",
            url: url(
                "certuser",
                "localhost",
                &format!("sslmode=verify-full&{ca}&{stranger}"),
            ),
            connects: false,
        },
    ];
    let mut wrong_outcomes = Vec::new();
    for case in &cases {
        let store = Store::connect(
            &case.url,
            &PoolConfig {
                max_size: 1,
                shared_connections: 0,
                ..PoolConfig::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", case.what));
        let outcome = store.ping().await;
        if outcome.is_ok() != case.connects {
            wrong_outcomes.push(format!("{}: {outcome:?}", case.what));
        }
    }
    pg.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(wrong_outcomes.is_empty(), "{wrong_outcomes:#?}");
}
