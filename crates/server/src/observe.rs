//! The per-request middleware: load shedding at the concurrency limit, the call's deadline
//! (the client's `grpc-timeout` or the server's bound, whichever is sooner, answered with
//! DEADLINE_EXCEEDED), one log line and the Prometheus series per call. Labels and log fields are method, status code and account only,
//! never request contents.

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

/// The account a handler worked for, filled in by `grpc::authorise` for the request log line.
#[derive(Debug, Clone, Default)]
pub struct RequestAccount(Arc<Mutex<Option<String>>>);

impl RequestAccount {
    pub fn set(&self, account: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(account.to_owned());
    }

    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
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
        let permit = if method.starts_with("grpc.") {
            None
        } else {
            match self.limit.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    finish(method, Code::ResourceExhausted, start, None);
                    let status = Status::resource_exhausted(
                        "the server is at its concurrency limit; retry with backoff",
                    );
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        };
        let account = RequestAccount::default();
        req.extensions_mut().insert(account.clone());
        // Streams (health Watch, reflection, change streams) live as long as the client wants;
        // a change stream bounds its own age.
        let deadline = (!method.starts_with("grpc.") && method != WATCH_CHANGES)
            .then(|| grpc_timeout(req.headers()).map_or(self.timeout, |t| t.min(self.timeout)));
        // The clone that was driven to readiness must serve this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let res = match deadline {
                None => inner.call(req).await,
                Some(d) => match tokio::time::timeout(d, inner.call(req)).await {
                    Ok(r) => r,
                    // Dropping the call drops its database work too; the client is told why.
                    Err(_) => {
                        Ok(Status::deadline_exceeded("the call's deadline passed").into_http())
                    }
                },
            };
            drop(permit);
            let code = match &res {
                Ok(r) => grpc_code(r.headers()),
                Err(_) => Code::Unknown,
            };
            finish(method, code, start, account.get());
            res
        })
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

fn finish(method: &'static str, code: Code, start: Instant, account: Option<String>) {
    let elapsed = start.elapsed();
    let code_name = code_label(code);
    counter!("callers_grpc_requests_total", "method" => method, "code" => code_name).increment(1);
    histogram!("callers_grpc_request_duration_seconds", "method" => method)
        .record(elapsed.as_secs_f64());
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let account_id = account.as_deref().unwrap_or("");
    match code {
        Code::Internal | Code::Unknown | Code::DataLoss => {
            tracing::error!(
                method,
                code = code_name,
                latency_ms,
                account_id,
                "grpc request"
            )
        }
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded => {
            tracing::warn!(
                method,
                code = code_name,
                latency_ms,
                account_id,
                "grpc request"
            )
        }
        _ => tracing::info!(
            method,
            code = code_name,
            latency_ms,
            account_id,
            "grpc request"
        ),
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
    fn unknown_paths_share_one_label() {
        assert_eq!(
            method_label("/callers.v1.ContactService/GetContact"),
            "callers.v1.ContactService/GetContact"
        );
        assert_eq!(method_label("/evil/Müller-030-1234567"), "unknown");
    }
}
