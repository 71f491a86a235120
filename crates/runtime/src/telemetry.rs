//! OpenTelemetry traces, exported over OTLP/gRPC when the standard `OTEL_*` variables ask for
//! it, and W3C trace context read from incoming metadata.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set;
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off again. Off means no
//! layer, no exporter and no spans made for it: callers ask [`enabled`] before they make one.
//! The SDK reads the rest itself: `OTEL_TRACES_SAMPLER`/`_ARG` (default parent-based, always
//! on), `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_*`.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported; false until [`Traces::from_env`] made an exporter.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span `make` makes while traces are exported, else a disabled one that costs nothing.
pub fn span(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if enabled() {
        make()
    } else {
        tracing::Span::none()
    }
}

/// Whether the environment asks for OTLP traces.
pub fn requested() -> bool {
    requested_by(|k| std::env::var(k).ok())
}

fn requested_by(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| var(k).is_some_and(|v| !v.trim().is_empty());
    let is = |k: &str, v: &str| var(k).is_some_and(|x| x.trim().eq_ignore_ascii_case(v));
    (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// The exporting tracer provider. Dropping it without [`Traces::shutdown`] loses the spans
/// still in its batch.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The provider the environment asks for, or `None` when it asks for none. Call inside a
    /// Tokio runtime: the gRPC exporter's channel lives on it.
    pub fn from_env(service_name: &'static str) -> Result<Option<Traces>, String> {
        if !requested() {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| format!("OTLP exporter: {e}"))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service_name);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        ENABLED.store(true, Ordering::Relaxed);
        Ok(Some(Traces { provider }))
    }

    pub(crate) fn tracer(&self) -> SdkTracer {
        self.provider.tracer("callers")
    }

    /// Exports what is buffered and stops, off the runtime's threads (the export needs the
    /// runtime, which may have just this one thread).
    pub async fn shutdown(self) {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || {
            provider.shutdown_with_timeout(Duration::from_secs(5))
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "exporting the last spans failed");
        }
    }
}

/// The trace context of incoming `traceparent`/`tracestate` headers (an empty context when
/// there are none or they are malformed).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// The trace id of `traceparent` (32 lowercase hex digits), when it is well formed; for log
/// lines while traces are not exported.
pub fn trace_id_of(headers: &http::HeaderMap) -> Option<String> {
    // Most calls carry none: skip the propagator then.
    if !headers.contains_key("traceparent") {
        return None;
    }
    let cx = extract(headers);
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// Makes `span` (a server span) the child of the trace context in `headers`, and returns the
/// trace id it belongs to: its own while traces are exported, else the caller's, if any.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) -> Option<String> {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if span.is_none() {
        return trace_id_of(headers);
    }
    let _ = span.set_parent(extract(headers));
    let cx = span.context();
    let s = cx.span();
    let sc = s.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_variables_turn_traces_on_and_off() {
        let env = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            requested_by(move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        };
        assert!(!env(&[]));
        assert!(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]));
        assert!(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4317"
        )]));
        assert!(!env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]));
        assert!(!env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_SDK_DISABLED", "TRUE")
        ]));
        assert!(!env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_TRACES_EXPORTER", "none")
        ]));
    }

    #[test]
    fn a_traceparent_gives_its_trace_id_and_garbage_gives_none() {
        let mut h = http::HeaderMap::new();
        assert_eq!(trace_id_of(&h), None);
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            trace_id_of(&h).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        h.insert(
            "traceparent",
            "00-nothex-00f067aa0ba902b7-01".parse().unwrap(),
        );
        assert_eq!(trace_id_of(&h), None);
    }
}
