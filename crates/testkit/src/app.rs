//! The server in-process: on a fresh database and port 0, with a fixed clock and real gRPC
//! clients, plus the small request helpers the server tests share.

use crate::database::{TestDatabase, fresh_database};
use callers_domain::phone::Region;
use callers_domain::retention::Retention;
use callers_domain::{Clock, FixedClock};
use callers_proto::v1 as pb;
use callers_proto::v1::call_note_service_client::CallNoteServiceClient;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use callers_server::auth::Authenticator;
use callers_server::grpc::App;
use callers_server::{Deps, Limits, serve};
use callers_store::{PoolConfig, Pooler, Statements, Store};
use chrono::{TimeZone, Utc};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub channel: Channel,
    pub contacts: ContactServiceClient<Channel>,
    pub notes: CallNoteServiceClient<Channel>,
    pub store: Store,
    pub clock: Arc<FixedClock>,
    /// The calls `IdentifyCaller` counted, to flush by hand.
    pub calls: Arc<callers_server::tally::CallTally>,
    pub db: Option<TestDatabase>,
    /// The PgBouncer the server goes through, under `CALLERS_TEST_PGBOUNCER=1`.
    pub pgbouncer: Option<crate::pgbouncer::PgBouncer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Authenticator::disabled()).await
}

pub async fn spawn_app_with(auth: Authenticator) -> TestApp {
    spawn_app_custom(auth, Limits::default()).await
}

/// Under `CALLERS_TEST_PGBOUNCER=1` the server goes through PgBouncer in transaction mode
/// ([`crate::pgbouncer`]) with unnamed statements, and the statement timeout is the database's
/// setting, as operators set it up behind one.
pub async fn spawn_app_custom(auth: Authenticator, limits: Limits) -> TestApp {
    let db = fresh_database().await;
    if crate::pgbouncer::requested() {
        return spawn_through_pgbouncer(auth, db, limits).await;
    }
    let url = db.url().to_owned();
    spawn(auth, &url, Some(db), limits, None).await
}

/// A server on a fresh database through PgBouncer in transaction mode.
pub async fn spawn_app_through_pgbouncer() -> TestApp {
    let db = fresh_database().await;
    spawn_through_pgbouncer(Authenticator::disabled(), db, Limits::default()).await
}

async fn spawn_through_pgbouncer(auth: Authenticator, db: TestDatabase, limits: Limits) -> TestApp {
    let server = callers_devdb::test_server_url()
        .await
        .expect("the test server");
    crate::database::connect(&server)
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET statement_timeout = '10s'",
            db.name()
        ))
        .await
        .expect("the database's statement timeout");
    let bouncer = crate::pgbouncer::PgBouncer::start(&server).await;
    let url = bouncer.url_for(db.name());
    let pool = PoolConfig {
        pooler: Pooler::Transaction,
        statements: Statements::Unnamed,
        ..test_pool()
    };
    let mut app =
        spawn_with_pool(auth, &url, Some(db), limits, None, pool, Options::default()).await;
    app.pgbouncer = Some(bouncer);
    app
}

/// A server speaking TLS; `channel` is unusable, tests connect to `addr` themselves.
pub async fn spawn_app_tls(tls: tonic::transport::ServerTlsConfig) -> TestApp {
    let db = fresh_database().await;
    let url = db.url().to_owned();
    spawn(
        Authenticator::disabled(),
        &url,
        Some(db),
        Limits::default(),
        Some(tls),
    )
    .await
}

/// A server whose database is at `url`, which may be down.
pub async fn spawn_app_against(url: &str) -> TestApp {
    spawn(
        Authenticator::disabled(),
        url,
        None,
        Limits::default(),
        None,
    )
    .await
}

/// A server whose database is at `url` that sweeps expired messages and writes its call counts
/// every `every` by itself, as the binary does.
pub async fn spawn_app_against_with_background(url: &str, every: Duration) -> TestApp {
    let limits = Limits {
        message_sweep: Some(every),
        call_count_flush: Some(every),
        ..Limits::default()
    };
    spawn(Authenticator::disabled(), url, None, limits, None).await
}

async fn spawn(
    auth: Authenticator,
    url: &str,
    db: Option<TestDatabase>,
    limits: Limits,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> TestApp {
    spawn_with_pool(auth, url, db, limits, tls, test_pool(), Options::default()).await
}

/// A second server on the database of `url` (another replica), with its own privacy keys.
pub async fn spawn_app_against_with_keys(
    url: &str,
    keys: callers_domain::privacy::HashKeys,
) -> TestApp {
    let (auth, limits) = (Authenticator::disabled(), Limits::default());
    let options = Options {
        keys: Some(keys),
        ..Options::default()
    };
    spawn_with_pool(auth, url, None, limits, None, test_pool(), options).await
}

/// A server on the primary at `primary` that reads from the streaming replicas at `replicas`
/// while their measured lag is at most `max_lag` (`--database-replica-url`).
pub async fn spawn_app_with_replicas(
    primary: &str,
    replicas: &[String],
    max_lag: Duration,
) -> TestApp {
    let (auth, limits) = (Authenticator::disabled(), Limits::default());
    let options = Options {
        replicas: replicas.to_vec(),
        max_lag,
        ..Options::default()
    };
    spawn_with_pool(auth, primary, None, limits, None, test_pool(), options).await
}

/// What some servers get besides the defaults.
#[derive(Default)]
struct Options {
    keys: Option<callers_domain::privacy::HashKeys>,
    replicas: Vec<String>,
    max_lag: Duration,
}

fn test_pool() -> PoolConfig {
    PoolConfig {
        wait_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        ..PoolConfig::default()
    }
}

async fn spawn_with_pool(
    auth: Authenticator,
    url: &str,
    db: Option<TestDatabase>,
    limits: Limits,
    tls: Option<tonic::transport::ServerTlsConfig>,
    pool: PoolConfig,
    options: Options,
) -> TestApp {
    let store = Store::connect(url, &pool)
        .and_then(|s| s.with_replicas(&options.replicas, &pool, options.max_lag))
        .unwrap();
    let keys = options.keys;
    let clock = Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
    ));
    // Measurements shown by IdentifyCaller are read again after 50 ms, not a minute.
    let calls = callers_server::tally::CallTally::with_refresh(Duration::from_millis(50));
    let app = App {
        store: store.clone(),
        clock: clock.clone() as Arc<dyn Clock>,
        default_region: Region::germany(),
        retention: Retention::default(),
        calls: calls.clone(),
        privacy_keys: Arc::new(keys.unwrap_or_else(|| test_privacy_keys(&["test-1"]))),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let deps = Deps {
        app,
        auth: Arc::new(auth),
        shutdown_grace: Duration::from_secs(5),
        limits,
        tls: tls.clone(),
        health_probe: None,
    };
    let server = tokio::spawn(serve(
        listener,
        async {
            let _ = rx.await;
        },
        deps,
    ));
    let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
    let channel = if tls.is_some() {
        endpoint.connect_lazy()
    } else {
        endpoint.connect().await.unwrap()
    };
    TestApp {
        addr,
        contacts: ContactServiceClient::new(channel.clone()),
        notes: CallNoteServiceClient::new(channel.clone()),
        channel,
        store,
        clock,
        calls,
        db,
        pgbouncer: None,
        stop: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            s.await.unwrap().unwrap();
        }
    }

    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        self.clock.now()
    }

    pub fn advance_days(&self, days: i64) {
        self.clock
            .set(self.clock.now() + chrono::Duration::days(days));
    }

    /// A plain SQL session on the app's database (none for [`spawn_app_against`]).
    pub async fn sql(&self) -> tokio_postgres::Client {
        crate::database::sql(self.db.as_ref().expect("the app owns its database")).await
    }
}

/// A caller as a customer would enter one in advance.
pub fn caller(last_name: &str, number: &str) -> pb::Contact {
    pb::Contact {
        categories: vec!["caller".into()],
        salutation: "Herr".into(),
        first_name: "Hans".into(),
        last_name: last_name.into(),
        phone_numbers: vec![pb::PhoneNumber {
            number: number.into(),
            r#type: pb::PhoneType::Mobile as i32,
            ..Default::default()
        }],
        origin: pb::Origin::ExpectedCall as i32,
        ..Default::default()
    }
}

pub async fn create(app: &mut TestApp, account: &str, contact: pb::Contact) -> pb::Contact {
    app.contacts
        .create_contact(pb::CreateContactRequest {
            account_id: account.into(),
            contact: Some(contact),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// Runs `call` again while it fails the way a call caught in a connection's renewal (the
/// server's GOAWAY) can fail a tonic client, `CANCELLED` or `UNAVAILABLE`, as docs/OPERATIONS.md
/// tells clients to; returns the last result and how many retries it took.
pub async fn retrying_renewal<T, F, Fut>(mut call: F) -> (Result<T, tonic::Status>, u32)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let mut retries = 0;
    loop {
        match call().await {
            Err(s)
                if retries < 10
                    && matches!(s.code(), tonic::Code::Cancelled | tonic::Code::Unavailable) =>
            {
                retries += 1;
            }
            result => return (result, retries),
        }
    }
}

/// `IdentifyCaller` in `account` by `number` alone.
pub async fn identify_by_number(
    app: &TestApp,
    account: &str,
    number: &str,
) -> Result<pb::IdentifyCallerResponse, tonic::Status> {
    pb::identification_service_client::IdentificationServiceClient::new(app.channel.clone())
        .identify_caller(pb::IdentifyCallerRequest {
            account_id: account.into(),
            caller_number: number.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// `UpdateContact` of the fields in `paths`, without an etag condition.
pub async fn update(app: &mut TestApp, mut contact: pb::Contact, paths: &[&str]) -> pb::Contact {
    contact.etag.clear();
    app.contacts
        .update_contact(pb::UpdateContactRequest {
            account_id: contact.account_id.clone(),
            contact: Some(contact),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// `CreateCallNote` without a request id.
pub async fn note(
    app: &mut TestApp,
    account: &str,
    note: pb::CallNote,
) -> pb::CreateCallNoteResponse {
    app.notes
        .create_call_note(pb::CreateCallNoteRequest {
            account_id: account.into(),
            call_note: Some(note),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// How many contacts the account has (one page of up to 500).
pub async fn contact_count(app: &mut TestApp, account: &str) -> usize {
    app.contacts
        .list_contacts(pb::ListContactsRequest {
            account_id: account.into(),
            page_size: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contacts
        .len()
}

pub async fn get(
    app: &mut TestApp,
    account: &str,
    contact_id: &str,
) -> Result<pb::Contact, tonic::Status> {
    app.contacts
        .get_contact(pb::GetContactRequest {
            account_id: account.into(),
            contact_id: contact_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// The fields named in a `BadRequest`, in order.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The `ErrorInfo` reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// Privacy keys for tests, current first; each id always gives the same secret, so a server
/// with `["test-2", "test-1"]` still finds what one with `["test-1"]` suppressed.
pub fn test_privacy_keys(ids: &[&str]) -> callers_domain::privacy::HashKeys {
    callers_domain::privacy::HashKeys::new(
        ids.iter()
            .map(|id| callers_domain::privacy::HashKey {
                id: (*id).to_owned(),
                secret: format!("callers test privacy key {id:>16}").into_bytes(),
            })
            .collect(),
    )
    .expect("test keys are long enough")
}
