//! The callers gRPC server: configuration, authentication, health, reflection and the
//! services. `main.rs` only wires these together.

pub mod auth;
pub mod config;
pub mod convert;
mod error;
pub mod grpc;
mod health;
pub mod metrics;
mod observe;
mod page_token;
mod sweep;
pub mod tally;

use auth::Authenticator;
use callers_proto::v1::call_handling_service_server::CallHandlingServiceServer;
use callers_proto::v1::call_note_service_server::CallNoteServiceServer;
use callers_proto::v1::change_service_server::ChangeServiceServer;
use callers_proto::v1::contact_service_server::ContactServiceServer;
use callers_proto::v1::identification_service_server::IdentificationServiceServer;
use callers_proto::v1::privacy_service_server::PrivacyServiceServer;
use grpc::App;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// Everything `serve` needs from outside.
pub struct Deps {
    pub app: App,
    pub auth: Arc<Authenticator>,
    /// How long in-flight calls may take to finish after shutdown begins.
    pub shutdown_grace: Duration,
    pub limits: Limits,
    /// TLS, and with a client CA mutual TLS; `None` serves plaintext HTTP/2.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// A store of its own for health checks, so a saturated request pool does not make a
    /// healthy replica look unhealthy; `None` uses the app's store.
    pub health_probe: Option<callers_store::Store>,
}

/// Protection against oversized, slow and too many requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request message, decoded.
    pub max_message_bytes: usize,
    /// Upper bound of every call; a client's shorter `grpc-timeout` wins.
    pub request_timeout: Duration,
    /// Calls in flight at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_requests: usize,
    /// HTTP/2 PING interval that detects dead client connections.
    pub http2_keepalive: Duration,
    /// A connection older than this is asked to close (GOAWAY), so that clients spread over
    /// replicas added since; `None` keeps connections for ever. Change streams end on their own
    /// before the grace that follows runs out.
    pub max_connection_age: Option<Duration>,
    /// `WatchChanges` streams.
    pub watch: grpc::changes::WatchLimits,
    /// How often this replica sweeps expired caller messages into undelivered records; `None`
    /// never (tests that sweep by hand).
    pub message_sweep: Option<Duration>,
    /// How often this replica writes the calls it counted; `None` never on its own (tests that
    /// flush by hand).
    pub call_count_flush: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 256,
            http2_keepalive: Duration::from_secs(30),
            max_connection_age: None,
            watch: grpc::changes::WatchLimits::default(),
            // The binary sweeps (`--message-sweep-secs`); embedded servers, as in tests with a
            // clock they move by hand, sweep only when asked to.
            message_sweep: None,
            call_count_flush: None,
        }
    }
}

/// Serves on an already bound listener until `shutdown` resolves, then drains for at most
/// the grace period.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    deps: Deps,
) -> anyhow::Result<()> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let probe = deps
        .health_probe
        .clone()
        .unwrap_or_else(|| deps.app.store.clone());
    let health_task = tokio::spawn(health::watch(probe, reporter.clone()));
    // A delivery handled before a message's instant has finished (or timed out) by the time the
    // sweep takes the message: the grace is the longest a call may run.
    let tally_task = deps.limits.call_count_flush.map(|every| {
        let (calls, store) = (deps.app.calls.clone(), deps.app.store.clone());
        tokio::spawn(calls.run(store, every))
    });
    let replicas_task = {
        let store = deps.app.store.clone();
        tokio::spawn(async move { store.watch_replicas().await })
    };
    let sweep_task = deps.limits.message_sweep.map(|every| {
        tokio::spawn(sweep::run(
            deps.app.clone(),
            every,
            deps.limits.request_timeout + Duration::from_secs(5),
        ))
    });

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(callers_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(callers_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let auth = deps.auth.clone();
    let authenticate = move |mut req: tonic::Request<()>| {
        let grant = auth.authenticate(&req)?;
        if let Some(log) = req.extensions().get::<observe::RequestLog>() {
            log.set_token(grant.token_name.clone());
        }
        req.extensions_mut().insert(grant);
        Ok(req)
    };
    let max = deps.limits.max_message_bytes;
    let contacts = InterceptedService::new(
        ContactServiceServer::new(grpc::contacts::Contacts(deps.app.clone()))
            .max_decoding_message_size(max),
        authenticate.clone(),
    );
    let identification = InterceptedService::new(
        IdentificationServiceServer::new(grpc::identification::Identification(deps.app.clone()))
            .max_decoding_message_size(max),
        authenticate.clone(),
    );
    let call_notes = InterceptedService::new(
        CallNoteServiceServer::new(grpc::call_notes::CallNotes(deps.app.clone()))
            .max_decoding_message_size(max),
        authenticate.clone(),
    );
    let call_handling = InterceptedService::new(
        CallHandlingServiceServer::new(grpc::call_handling::CallHandlings(deps.app.clone()))
            .max_decoding_message_size(max),
        authenticate.clone(),
    );
    let privacy = InterceptedService::new(
        PrivacyServiceServer::new(grpc::privacy::Privacy {
            app: deps.app.clone(),
            deletion_time: deps.limits.request_timeout / 2,
        })
        .max_decoding_message_size(max),
        authenticate.clone(),
    );
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let changes = InterceptedService::new(
        ChangeServiceServer::new(grpc::changes::Changes::new(
            deps.app.clone(),
            deps.limits.watch.clone(),
            stopping,
        ))
        .max_decoding_message_size(max),
        authenticate,
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = &deps.limits;
    let mut builder = Server::builder();
    if let Some(tls) = deps.tls.clone() {
        builder = builder.tls_config(tls)?;
    }
    if let Some(age) = limits.max_connection_age {
        // No grace: tonic 0.14 with a grace skips the GOAWAY and only cuts the connection
        // after age + grace, calls in flight included. Without one the GOAWAY goes out at
        // `age` and the connection closes once its calls end (change streams within their
        // own maximum age).
        builder = builder.max_connection_age(age);
    }
    let router = builder
        .http2_keepalive_interval(Some(limits.http2_keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .layer(observe::ObserveLayer::new(
            limits.max_concurrent_requests,
            limits.request_timeout,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(contacts)
        .add_service(identification)
        .add_service(call_notes)
        .add_service(call_handling)
        .add_service(privacy)
        .add_service(changes);
    let server = tokio::spawn(router.serve_with_incoming_shutdown(
        // `serve_with_incoming` ignores the builder's TCP_NODELAY: set it on every accepted
        // connection, or Nagle's algorithm holds each answer until the client's delayed ACK
        // (tens of milliseconds on Linux; BENCHMARKS.md has the measurement).
        TcpIncoming::from(listener).with_nodelay(Some(true)),
        async {
            let _ = stop_rx.await;
        },
    ));

    shutdown.await;
    tracing::info!("shutting down: draining in-flight calls");
    health_task.abort();
    replicas_task.abort();
    if let Some(t) = sweep_task {
        t.abort();
    }
    health::set_all(&reporter, false).await;
    // Change streams end with OK; their clients resume with their cursors elsewhere.
    let _ = stopping_tx.send(true);
    let _ = stop_tx.send(());
    match tokio::time::timeout(deps.shutdown_grace, server).await {
        Ok(joined) => joined??,
        Err(_) => tracing::warn!(
            grace_secs = deps.shutdown_grace.as_secs(),
            "drain took longer than the grace period; stopping anyway"
        ),
    }
    if let Some(t) = tally_task {
        // The calls counted since the last flush, once the calls are done.
        t.abort();
        if let Err(e) = deps.app.calls.flush(&deps.app.store).await {
            tracing::warn!(error = %e, "flushing call counts at shutdown failed; they are lost");
        }
    }
    Ok(())
}
