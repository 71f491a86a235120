//! `grpc.health.v1`: SERVING while the database answers, NOT_SERVING otherwise.

use callers_proto::v1::contact_service_server::ContactServiceServer;
use callers_store::Store;
use std::time::Duration;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

const INTERVAL: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The services whose health follows the database, by their full gRPC names.
const SERVICES: [&str; 4] = [
    "callers.v1.ContactService",
    "callers.v1.IdentificationService",
    "callers.v1.CallNoteService",
    "callers.v1.CallHandlingService",
];

pub async fn watch(store: Store, reporter: HealthReporter) {
    // Referenced so a renamed service breaks the build rather than the health check.
    let _ = <ContactServiceServer<crate::grpc::contacts::Contacts> as tonic::server::NamedService>::NAME;
    let mut last: Option<bool> = None;
    loop {
        let ok = matches!(
            tokio::time::timeout(PING_TIMEOUT, store.ping()).await,
            Ok(Ok(()))
        );
        if last != Some(ok) {
            if ok {
                tracing::info!("database reachable: serving");
            } else {
                tracing::warn!("database unreachable: not serving");
            }
            set_all(&reporter, ok).await;
            last = Some(ok);
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

pub async fn set_all(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    for s in SERVICES {
        reporter.set_service_status(s, status).await;
    }
}
