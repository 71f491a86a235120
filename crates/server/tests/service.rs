//! The standard services and the behaviour every RPC shares: health, reflection, outages.

use callers_testkit::app;

use callers_proto::v1 as pb;
use callers_testkit::app::{caller, reason, spawn_app, spawn_app_against};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn health(app: &app::TestApp, service: &str) -> i32 {
    let mut client = HealthClient::new(app.channel.clone());
    // The watcher reports within one check interval after start.
    for _ in 0..50 {
        let r = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await;
        if let Ok(r) = r {
            let status = r.into_inner().status;
            if status != ServingStatus::Unknown as i32
                && status != ServingStatus::ServiceUnknown as i32
            {
                return status;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ServingStatus::Unknown as i32
}

#[tokio::test]
async fn health_is_serving_while_the_database_answers() {
    let app = spawn_app().await;
    assert_eq!(health(&app, "").await, ServingStatus::Serving as i32);
    assert_eq!(
        health(&app, "callers.v1.ContactService").await,
        ServingStatus::Serving as i32
    );
}

#[tokio::test]
async fn a_database_outage_is_unavailable_and_not_serving() {
    // Nothing listens on this port: the database is "down".
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut app =
        spawn_app_against(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await;
    assert_eq!(health(&app, "").await, ServingStatus::NotServing as i32);
    let e = app
        .contacts
        .create_contact(pb::CreateContactRequest {
            account_id: "acme".into(),
            contact: Some(caller("Müller", "030 1234567")),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(reason(&e), "DATABASE_UNAVAILABLE");
    let e = app
        .contacts
        .get_contact(pb::GetContactRequest {
            account_id: "acme".into(),
            contact_id: uuid::Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
}

#[tokio::test]
async fn reflection_lists_every_service() {
    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "callers.v1.ContactService",
        "callers.v1.IdentificationService",
        "callers.v1.CallNoteService",
        "callers.v1.CallHandlingService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}
