//! The per-request middleware: load shedding at the concurrency limit, the call's deadline
//! (the client's `grpc-timeout` or the server's bound, whichever is sooner, answered with
//! DEADLINE_EXCEEDED), the request id (`x-request-id`, the client's or a new one, returned in
//! the response), the call's span when traces are exported (child of the client's
//! `traceparent`), one log line and the Prometheus series per call. Labels and log fields are
//! method, status code, account, token name, request and trace id, never request contents.

use callers_runtime::telemetry;
use metrics::{counter, histogram};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Code, Status};
use tracing::Instrument;

/// What the request log line learns from inside the call: the account a handler worked for
/// (from `grpc::authorise`) and the token's name (from authentication; never the token).
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Learnt>>);

#[derive(Debug, Clone, Default)]
struct Learnt {
    account: Option<String>,
    token: Option<Arc<str>>,
}

impl RequestLog {
    pub fn set_account(&self, account: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).account = Some(account.to_owned());
    }

    pub fn set_token(&self, name: Arc<str>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).token = Some(name);
    }

    fn get(&self) -> Learnt {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The request's metadata header carrying its id.
pub const REQUEST_ID: &str = "x-request-id";

/// The client's request id when it is a plain token of at most 128 characters (it goes into
/// log lines as it is), else a new one.
fn request_id(headers: &http::HeaderMap) -> http::HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty()
                && b.len() <= 128
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.:/+=".contains(c))
        })
        .cloned()
        .unwrap_or_else(|| {
            http::HeaderValue::from_str(&uuid::Uuid::new_v4().simple().to_string())
                .expect("hex digits are a valid header value")
        })
}

#[derive(Clone)]
pub struct ObserveLayer {
    limit: Arc<Semaphore>,
    timeout: Duration,
}

impl ObserveLayer {
    /// At most `max_concurrent` calls at once; more are refused at once with
    /// `RESOURCE_EXHAUSTED` rather than queued. Health and reflection are never refused.
    /// No call runs longer than `timeout`.
    pub fn new(max_concurrent: usize, timeout: Duration) -> Self {
        Self {
            limit: Arc::new(Semaphore::new(max_concurrent)),
            timeout,
        }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            limit: self.limit.clone(),
            timeout: self.timeout,
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    limit: Arc<Semaphore>,
    timeout: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<Body>> for Observe<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let method = method_label(req.uri().path());
        let start = Instant::now();
        let id = request_id(req.headers());
        let call = Call {
            method,
            request_id: id.to_str().unwrap_or_default().to_owned(),
            span: telemetry::span(|| {
                let (service, name) = method.split_once('/').unwrap_or((method, method));
                tracing::info_span!(
                    "grpc",
                    otel.name = method,
                    otel.kind = "server",
                    otel.status_code = tracing::field::Empty,
                    rpc.system = "grpc",
                    rpc.service = service,
                    rpc.method = name,
                    rpc.grpc.status_code = tracing::field::Empty,
                    request_id = id.to_str().unwrap_or_default(),
                )
            }),
            trace_id: None,
        };
        let call = Call {
            trace_id: telemetry::continue_trace(&call.span, req.headers()),
            ..call
        };
        started(method);
        let permit = if method.starts_with("grpc.") {
            None
        } else {
            match self.limit.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    call.finish(Code::ResourceExhausted, start, Learnt::default());
                    let status = Status::resource_exhausted(
                        "the server is at its concurrency limit; retry with backoff",
                    );
                    let mut res = status.into_http();
                    res.headers_mut().insert(REQUEST_ID, id);
                    return Box::pin(async move { Ok(res) });
                }
            }
        };
        let log = RequestLog::default();
        req.extensions_mut().insert(log.clone());
        // Streams (health Watch, reflection, change streams) live as long as the client wants;
        // a change stream bounds its own age.
        let deadline = (!method.starts_with("grpc.") && method != WATCH_CHANGES)
            .then(|| grpc_timeout(req.headers()).map_or(self.timeout, |t| t.min(self.timeout)));
        // The clone that was driven to readiness must serve this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let span = call.span.clone();
        Box::pin(
            async move {
                let mut res = match deadline {
                    None => inner.call(req).await,
                    Some(d) => match tokio::time::timeout(d, inner.call(req)).await {
                        Ok(r) => r,
                        // Dropping the call drops its database work too; the client is told
                        // why.
                        Err(_) => {
                            Ok(Status::deadline_exceeded("the call's deadline passed").into_http())
                        }
                    },
                };
                drop(permit);
                let code = match &mut res {
                    Ok(r) => {
                        r.headers_mut().insert(REQUEST_ID, id);
                        grpc_code(r.headers())
                    }
                    Err(_) => Code::Unknown,
                };
                call.finish(code, start, log.get());
                res
            }
            .instrument(span),
        )
    }
}

const WATCH_CHANGES: &str = "callers.v1.ChangeService/WatchChanges";

/// The client's deadline from the `grpc-timeout` header ("100m", "5S", …); `None` when absent
/// or malformed.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (n, unit) = v.split_at(v.len() - 1);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Errors travel as a trailers-only response with `grpc-status` in the headers; a success
/// puts `grpc-status: 0` in the trailers, so headers without it mean OK.
fn grpc_code(headers: &http::HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
        .unwrap_or(Code::Ok)
}

/// One call, as the log line, its span and the series see it.
struct Call {
    method: &'static str,
    request_id: String,
    span: tracing::Span,
    trace_id: Option<String>,
}

impl Call {
    fn finish(&self, code: Code, start: Instant, learnt: Learnt) {
        let elapsed = start.elapsed();
        let code_name = code_label(code);
        let method = self.method;
        counter!("callers_grpc_requests_total", "method" => method, "code" => code_name)
            .increment(1);
        histogram!("callers_grpc_request_duration_seconds", "method" => method)
            .record(elapsed.as_secs_f64());
        let (grpc_type, grpc_service, grpc_method) = go_grpc_labels(method);
        counter!(
            "grpc_server_handled_total",
            "grpc_type" => grpc_type,
            "grpc_service" => grpc_service,
            "grpc_method" => grpc_method,
            "grpc_code" => go_code_label(code)
        )
        .increment(1);
        histogram!(
            "grpc_server_handling_seconds",
            "grpc_type" => grpc_type,
            "grpc_service" => grpc_service,
            "grpc_method" => grpc_method
        )
        .record(elapsed.as_secs_f64());
        self.span.record("rpc.grpc.status_code", code as i32);
        if server_fault(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        let account_id = learnt.account.as_deref().unwrap_or("");
        let token = learnt.token.as_deref().unwrap_or("");
        let request_id = self.request_id.as_str();
        let trace_id = self.trace_id.as_deref().unwrap_or("");
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    method,
                    code = code_name,
                    latency_ms,
                    account_id,
                    token,
                    request_id,
                    trace_id,
                    "grpc request"
                )
            };
        }
        match code {
            Code::Internal | Code::Unknown | Code::DataLoss => line!(error),
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded => line!(warn),
            _ => line!(info),
        }
    }
}

/// Failures of the service rather than of the request.
fn server_fault(code: Code) -> bool {
    matches!(
        code,
        Code::Internal
            | Code::Unknown
            | Code::DataLoss
            | Code::Unavailable
            | Code::DeadlineExceeded
    )
}

fn started(method: &'static str) {
    let (grpc_type, grpc_service, grpc_method) = go_grpc_labels(method);
    counter!(
        "grpc_server_started_total",
        "grpc_type" => grpc_type,
        "grpc_service" => grpc_service,
        "grpc_method" => grpc_method
    )
    .increment(1);
}

/// go-grpc-prometheus's labels: the call's type, service and method.
fn go_grpc_labels(method: &'static str) -> (&'static str, &'static str, &'static str) {
    let grpc_type = match method {
        WATCH_CHANGES | "grpc.health.v1.Health/Watch" => "server_stream",
        m if m.contains("ServerReflection/") => "bidi_stream",
        _ => "unary",
    };
    let (service, name) = method.split_once('/').unwrap_or((method, method));
    (grpc_type, service, name)
}

/// Status codes as Go spells them (`codes.Code.String()`), as go-grpc-prometheus labels them.
fn go_code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// A fixed set of labels, so a client cannot grow the metrics with made-up paths.
fn method_label(path: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "callers.v1.ContactService/CreateContact",
        "callers.v1.ContactService/GetContact",
        "callers.v1.ContactService/UpdateContact",
        "callers.v1.ContactService/DeleteContact",
        "callers.v1.ContactService/ListContacts",
        "callers.v1.ContactService/ListExpiringContacts",
        "callers.v1.ContactService/SearchContacts",
        "callers.v1.ContactService/ListUndeliveredMessages",
        "callers.v1.IdentificationService/IdentifyCaller",
        "callers.v1.CallNoteService/CreateCallNote",
        "callers.v1.CallNoteService/GetCallNote",
        "callers.v1.CallNoteService/ListCallNotes",
        "callers.v1.CallNoteService/DeliverCallerMessage",
        "callers.v1.CallHandlingService/GetCallHandling",
        "callers.v1.CallHandlingService/UpdateCallHandling",
        "callers.v1.CallHandlingService/CheckCallerRecognition",
        "callers.v1.ChangeService/GetChangeCursor",
        "callers.v1.ChangeService/ListChanges",
        "callers.v1.ChangeService/WatchChanges",
        "callers.v1.PrivacyService/EraseCaller",
        "callers.v1.PrivacyService/LiftSuppression",
        "callers.v1.PrivacyService/ExportCallerData",
        "callers.v1.PrivacyService/DeleteAccountData",
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];
    let p = path.strip_prefix('/').unwrap_or(path);
    KNOWN
        .iter()
        .find(|k| **k == p)
        .copied()
        .unwrap_or("unknown")
}

fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_per_the_spec() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&m)
        };
        assert_eq!(h("100m"), Some(Duration::from_millis(100)));
        assert_eq!(h("5S"), Some(Duration::from_secs(5)));
        assert_eq!(h("2M"), Some(Duration::from_secs(120)));
        assert_eq!(h("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(h("5"), None);
        assert_eq!(h("5x"), None);
        assert_eq!(h("1234567890S"), None);
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn request_ids_are_kept_when_plain_and_made_otherwise() {
        let id = |v: Option<&str>| {
            let mut m = http::HeaderMap::new();
            if let Some(v) = v {
                m.insert(REQUEST_ID, v.parse().unwrap());
            }
            request_id(&m).to_str().unwrap().to_owned()
        };
        assert_eq!(id(Some("req-42_a.b:c")), "req-42_a.b:c");
        let long = "x".repeat(129);
        for bad in [
            None,
            Some(""),
            Some("a b"),
            Some("x\"y"),
            Some(long.as_str()),
        ] {
            let made = id(bad);
            assert_eq!(made.len(), 32, "{bad:?}");
            assert!(made.chars().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn go_grpc_prometheus_labels() {
        assert_eq!(
            go_grpc_labels("callers.v1.ContactService/GetContact"),
            ("unary", "callers.v1.ContactService", "GetContact")
        );
        assert_eq!(go_grpc_labels(WATCH_CHANGES).0, "server_stream");
        assert_eq!(go_code_label(Code::Cancelled), "Canceled");
    }

    #[test]
    fn unknown_paths_share_one_label() {
        assert_eq!(
            method_label("/callers.v1.ContactService/GetContact"),
            "callers.v1.ContactService/GetContact"
        );
        assert_eq!(method_label("/evil/Müller-030-1234567"), "unknown");
    }
}
