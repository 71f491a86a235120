//! What operators and client backends rely on: authentication, authorisation and limits.

use callers_testkit::app;

use callers_proto::v1 as pb;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use callers_server::Limits;
use callers_server::auth::Authenticator;
use callers_testkit::app::{caller, spawn_app_custom, spawn_app_with};
use sha2::{Digest, Sha256};
use std::time::Duration;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn tokens_file() -> tempfile_path::Path {
    let hash = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let text = format!(
        "[[tokens]]\nname = \"acme-crm\"\nsha256 = \"{}\"\naccounts = [\"acme\"]\n\n\
         [[tokens]]\nname = \"telephony\"\nsha256 = \"{}\"\naccounts = [\"*\"]\n",
        hash("acme-secret"),
        hash("root-secret")
    );
    tempfile_path::Path::with_contents(&text)
}

/// A file removed when dropped; enough for one tokens file per test.
mod tempfile_path {
    pub struct Path(pub std::path::PathBuf);
    impl Path {
        pub fn with_contents(text: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("callers-tokens-{}.toml", uuid::Uuid::new_v4()));
            std::fs::write(&p, text).unwrap();
            Self(p)
        }
    }
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn get(account: &str, token: Option<&str>) -> tonic::Request<pb::GetContactRequest> {
    let mut r = tonic::Request::new(pb::GetContactRequest {
        account_id: account.into(),
        contact_id: uuid::Uuid::now_v7().to_string(),
    });
    if let Some(t) = token {
        let v: MetadataValue<_> = format!("Bearer {t}").parse().unwrap();
        r.metadata_mut().insert("authorization", v);
    }
    r
}

#[tokio::test]
async fn each_authentication_outcome() {
    let file = tokens_file();
    let app = spawn_app_with(Authenticator::from_file(&file.0).unwrap()).await;
    let mut c = ContactServiceClient::new(app.channel.clone());
    let cases = [
        ("acme", None, Code::Unauthenticated),
        ("acme", Some("wrong"), Code::Unauthenticated),
        ("globex", Some("acme-secret"), Code::PermissionDenied),
        // Allowed through to the lookup, which finds nothing.
        ("acme", Some("acme-secret"), Code::NotFound),
        ("globex", Some("root-secret"), Code::NotFound),
        ("anyone", Some("root-secret"), Code::NotFound),
    ];
    for (account, token, want) in cases {
        let e = c.get_contact(get(account, token)).await.unwrap_err();
        assert_eq!(e.code(), want, "{account} {token:?}: {e:?}");
    }
    // Health needs no token.
    let mut h = HealthClient::new(app.channel.clone());
    h.check(HealthCheckRequest::default()).await.unwrap();
}

#[tokio::test]
async fn a_denied_request_writes_nothing() {
    let file = tokens_file();
    let app = spawn_app_with(Authenticator::from_file(&file.0).unwrap()).await;
    let mut c = ContactServiceClient::new(app.channel.clone());
    let mut req = tonic::Request::new(pb::CreateContactRequest {
        account_id: "globex".into(),
        contact: Some(caller("Müller", "030 1234567")),
        request_id: String::new(),
    });
    req.metadata_mut()
        .insert("authorization", "Bearer acme-secret".parse().unwrap());
    let e = c.create_contact(req).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut list = tonic::Request::new(pb::ListContactsRequest {
        account_id: "globex".into(),
        ..Default::default()
    });
    list.metadata_mut()
        .insert("authorization", "Bearer root-secret".parse().unwrap());
    assert!(
        c.list_contacts(list)
            .await
            .unwrap()
            .into_inner()
            .contacts
            .is_empty()
    );
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_writes_nothing() {
    let limits = Limits {
        max_message_bytes: 64 * 1024,
        ..Limits::default()
    };
    let mut app = spawn_app_custom(Authenticator::disabled(), limits).await;
    let mut c = caller("Groß", "030 1234567");
    c.handling_instruction = "x".repeat(100 * 1024);
    let e = app
        .contacts
        .create_contact(pb::CreateContactRequest {
            account_id: "acme".into(),
            contact: Some(c),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{e:?}"
    );
    let list = app
        .contacts
        .list_contacts(pb::ListContactsRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(list.contacts.is_empty());
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_shed_at_once() {
    let limits = Limits {
        max_concurrent_requests: 1,
        ..Limits::default()
    };
    let mut app = spawn_app_custom(Authenticator::disabled(), limits).await;
    let created = app::create(&mut app, "acme", caller("Langsam", "030 1234567")).await;
    // Hold the contact's row lock so one update stays in flight.
    let db = app.sql().await;
    db.batch_execute("BEGIN").await.unwrap();
    let id = uuid::Uuid::parse_str(&created.contact_id).unwrap();
    db.execute(
        "SELECT 1 FROM contacts WHERE contact_id = $1 FOR UPDATE",
        &[&id],
    )
    .await
    .unwrap();
    let mut slow = app.contacts.clone();
    let update = pb::UpdateContactRequest {
        account_id: "acme".into(),
        contact: Some(pb::Contact {
            contact_id: created.contact_id.clone(),
            company: "Langsam AG".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["company".into()],
        }),
        etag: String::new(),
    };
    let in_flight = tokio::spawn(async move { slow.update_contact(update).await });
    // Wait until the update holds the only slot (it is blocked on the row lock).
    let mut shed = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = app
            .contacts
            .get_contact(pb::GetContactRequest {
                account_id: "acme".into(),
                contact_id: created.contact_id.clone(),
            })
            .await;
        if let Err(e) = r {
            shed = Some(e);
            break;
        }
    }
    let shed = shed.expect("no call was shed while the limit was taken");
    assert_eq!(shed.code(), Code::ResourceExhausted);
    // Health is never shed.
    let mut h = HealthClient::new(app.channel.clone());
    h.check(HealthCheckRequest::default()).await.unwrap();
    db.batch_execute("COMMIT").await.unwrap();
    let done = in_flight.await.unwrap().unwrap().into_inner();
    assert_eq!(done.company, "Langsam AG");
}

mod mtls {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};

    struct Pki {
        ca_pem: String,
        server: (String, String),
        client: (String, String),
        stranger: (String, String),
    }

    fn leaf(names: &[&str], issuer: &Issuer<'_, KeyPair>) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn ca() -> (String, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    }

    fn pki() -> Pki {
        let (ca_pem, issuer) = ca();
        let (_, other) = ca();
        Pki {
            server: leaf(&["localhost"], &issuer),
            client: leaf(&["telephony-backend"], &issuer),
            stranger: leaf(&["stranger"], &other),
            ca_pem,
        }
    }

    async fn check(
        addr: std::net::SocketAddr,
        pki: &Pki,
        client: Option<&(String, String)>,
    ) -> bool {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca_pem))
            .domain_name("localhost");
        if let Some((cert, key)) = client {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let Ok(endpoint) = Channel::from_shared(format!("https://localhost:{}", addr.port()))
            .unwrap()
            .tls_config(tls)
        else {
            return false;
        };
        let Ok(channel) = endpoint.connect().await else {
            return false;
        };
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn mutual_tls_admits_only_clients_signed_by_the_client_ca() {
        let pki = pki();
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&pki.server.0, &pki.server.1))
            .client_ca_root(Certificate::from_pem(&pki.ca_pem));
        let app = app::spawn_app_tls(tls).await;
        assert!(
            check(app.addr, &pki, Some(&pki.client)).await,
            "a signed client gets in"
        );
        assert!(
            !check(app.addr, &pki, None).await,
            "no client certificate, no entry"
        );
        assert!(
            !check(app.addr, &pki, Some(&pki.stranger)).await,
            "a foreign CA, no entry"
        );
    }
}

#[tokio::test]
async fn a_call_past_its_deadline_is_deadline_exceeded() {
    let limits = Limits {
        request_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    let mut app = spawn_app_custom(Authenticator::disabled(), limits).await;
    // Arranged and checked through a server without the short bound: on a loaded machine a
    // first write (connecting, preparing) may itself take longer than 400 ms.
    let url = app.db.as_ref().unwrap().url().to_owned();
    let mut patient = app::spawn_app_against(&url).await;
    let created = app::create(&mut patient, "acme", caller("Warten", "030 1234567")).await;
    let db = app.sql().await;
    db.batch_execute("BEGIN").await.unwrap();
    let id = uuid::Uuid::parse_str(&created.contact_id).unwrap();
    db.execute(
        "SELECT 1 FROM contacts WHERE contact_id = $1 FOR UPDATE",
        &[&id],
    )
    .await
    .unwrap();
    let update = || pb::UpdateContactRequest {
        account_id: "acme".into(),
        contact: Some(pb::Contact {
            contact_id: created.contact_id.clone(),
            company: "Nie".into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["company".into()],
        }),
        etag: String::new(),
    };
    // The server's own bound.
    let e = app.contacts.update_contact(update()).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    db.batch_execute("ROLLBACK").await.unwrap();
    let still = app::get(&mut patient, "acme", &created.contact_id)
        .await
        .unwrap();
    assert_eq!(still.company, "", "a call that timed out wrote nothing");
}
