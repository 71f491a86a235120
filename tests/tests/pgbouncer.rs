//! Behind PgBouncer in transaction mode with Debian's usual configuration: the server serves,
//! and what needs a session of its own (migrations, the purge) refuses with a clear error
//! instead of losing its advisory lock between transactions.

use callers_proto::v1 as pb;
use callers_proto::v1::contact_service_client::ContactServiceClient;
use callers_proto::v1::identification_service_client::IdentificationServiceClient;
use callers_store::{PoolConfig, Store};
use callers_testkit::Launch;
use callers_testkit::app::caller;
use callers_testkit::pgbouncer::{PgBouncer, binary_or_skip};
use callers_tests::{Row, count, exists, fresh_database, insert, purge_command, sql};

async fn bouncer(test: &str) -> Option<PgBouncer> {
    binary_or_skip(test)?;
    let server = callers_devdb::test_server_url().await.expect("test server");
    Some(PgBouncer::start(&server).await)
}

#[tokio::test]
async fn migrating_through_a_transaction_pooler_is_refused_and_names_the_fix() {
    let Some(pgb) = bouncer("migrating_through_a_transaction_pooler").await else {
        return;
    };
    let db = fresh_database().await;
    let run = Launch::server()
        .arg("migrate")
        .database(&pgb.url_for(db.name()))
        .run()
        .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .contains("migrating needs a database session of its own")
            && run.stderr.contains("transaction pooler")
            && run.stderr.contains("direct connection or a session pool"),
        "{run:#?}"
    );
    // A direct connection migrates (the database is already up to date: a no-op).
    let direct = Launch::server()
        .arg("migrate")
        .database(db.url())
        .run()
        .await;
    assert_eq!(direct.code, Some(0), "{direct:#?}");
}

#[tokio::test]
async fn the_purge_through_a_transaction_pooler_is_refused_and_deletes_nothing() {
    let Some(pgb) = bouncer("the_purge_through_a_transaction_pooler").await else {
        return;
    };
    let db = fresh_database().await;
    let sql = sql(&db).await;
    let id = insert(&sql, &Row::caller("acme", 400)).await;
    let run = callers_tests::finish(
        purge_command(Some(&pgb.url_for(db.name())), &[])
            .spawn()
            .expect("spawn callers-purge"),
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.outcome(), "failed");
    let error = run.summary()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("the purge needs a database session of its own"),
        "{error}"
    );
    assert!(exists(&sql, id).await);
    assert_eq!(count(&sql, "SELECT count(*) FROM purge_runs").await, 0);
}

#[tokio::test]
async fn startup_options_are_refused_by_pgbouncer_so_the_transaction_pooler_setting_omits_them() {
    let Some(pgb) = bouncer("startup_options_are_refused_by_pgbouncer").await else {
        return;
    };
    let db = fresh_database().await;
    let url = pgb.url_for(db.name());
    let direct_settings = Store::connect(&url, &PoolConfig::default()).unwrap();
    assert!(direct_settings.ping().await.is_err());
    let behind = Store::connect(
        &url,
        &PoolConfig {
            pooler: callers_store::Pooler::Transaction,
            statements: callers_store::Statements::Unnamed,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    behind.ping().await.unwrap();
}

#[tokio::test]
async fn the_server_binary_behind_pgbouncer_serves_create_identify_and_get() {
    let Some(pgb) = bouncer("the_server_binary_behind_pgbouncer").await else {
        return;
    };
    let db = fresh_database().await;
    let server = Launch::server()
        .database(&pgb.url_for(db.name()))
        .env("CALLERS_DB_POOLER", "transaction")
        .serve()
        .await
        .expect("callers-server starts behind pgbouncer");
    let channel = tonic::transport::Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    // Concurrent flows, so that pooled connections share PgBouncer's four backends.
    let flows = (0..40).map(|i| {
        let channel = channel.clone();
        async move {
            let mut contacts = ContactServiceClient::new(channel.clone());
            // An account each: the name alone would match every flow's contact.
            let account = format!("acme-{i}");
            let number = format!("030 555{i:04}");
            let made = contacts
                .create_contact(pb::CreateContactRequest {
                    account_id: account.clone(),
                    contact: Some(caller("Lange", &number)),
                    request_id: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            let found = IdentificationServiceClient::new(channel)
                .identify_caller(pb::IdentifyCallerRequest {
                    account_id: account.clone(),
                    caller_number: number,
                    caller_name: "Hans Lange".into(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(found.matches.len(), 1, "{found:?}");
            let read = contacts
                .get_contact(pb::GetContactRequest {
                    account_id: account.clone(),
                    contact_id: made.contact_id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(read.contact_id, made.contact_id);
        }
    });
    futures_join(flows).await;
    server.stop().await.unwrap();
}

async fn futures_join<F: std::future::Future<Output = ()> + Send + 'static>(
    flows: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = flows.map(tokio::spawn).collect();
    for h in handles {
        h.await.unwrap();
    }
}
