//! Logging: JSON lines for machines, pretty for people at a terminal, filtered by `RUST_LOG`,
//! and nothing below info from the database driver, whatever `RUST_LOG` says.

use crate::telemetry::Traces;
use clap::ValueEnum;
use opentelemetry_sdk::trace::SdkTracer;
use std::io::IsTerminal;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The driver's log target. At debug it logs every statement's parameters (names, numbers,
/// message texts), and batch statements in full.
const DRIVER: &str = "tokio_postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

/// The stream a binary logs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

/// Installs the global subscriber: `RUST_LOG` (default `info`) writing to `output`, `Auto`
/// being pretty when `output` is a terminal and JSON otherwise.
pub fn init(format: LogFormat, output: Output) {
    init_with_traces(format, output, None);
}

/// [`init`], and spans to `traces` when given.
pub fn init_with_traces(format: LogFormat, output: Output, traces: Option<&Traces>) {
    let tracer = traces.map(Traces::tracer);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = |terminal: bool| match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !terminal,
    };
    let _ = match output {
        Output::Stdout => subscriber_with(
            filter,
            json(std::io::stdout().is_terminal()),
            std::io::stdout,
            tracer,
        )
        .try_init(),
        Output::Stderr => subscriber_with(
            filter,
            json(std::io::stderr().is_terminal()),
            std::io::stderr,
            tracer,
        )
        .try_init(),
    };
}

/// The subscriber [`init`] installs, for any filter and writer (tests capture logs with it).
/// The driver guard filters the whole subscriber beside `filter`: no directive in `filter`,
/// however specific, lets the driver's debug lines through to any layer, and the driver, which
/// asks before it formats a statement's parameters, is told no.
pub fn subscriber<W>(filter: EnvFilter, json: bool, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    subscriber_with(filter, json, writer, None)
}

/// [`subscriber`], with spans also going to `tracer` when given.
pub fn subscriber_with<W>(
    filter: EnvFilter,
    json: bool,
    writer: W,
    tracer: Option<SdkTracer>,
) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let otel = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
    let lines = tracing_subscriber::fmt::layer().with_writer(writer);
    let lines = if json {
        lines.json().flatten_event(true).boxed()
    } else {
        lines.boxed()
    };
    Registry::default()
        .with(filter)
        .with(DriverGuard)
        .with(lines)
        .with(otel)
}

/// Disables the driver's events and spans below info. It sees the driver's `log` records too:
/// the `log` bridge asks the subscriber with the record's own target.
#[derive(Debug, Clone, Copy)]
struct DriverGuard;

impl DriverGuard {
    fn allows(meta: &Metadata<'_>) -> bool {
        *meta.level() <= Level::INFO || !is_driver(meta.target())
    }
}

fn is_driver(target: &str) -> bool {
    target
        .strip_prefix(DRIVER)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

// A global filter rather than a per-layer one: a per-layer filter leaves the subscriber's
// `enabled` true, so the driver would still format the parameters it then drops.
impl<S: Subscriber> Layer<S> for DriverGuard {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if Self::allows(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        Self::allows(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex, OnceLock};

    const MARKER: &str = "Wolfhart Quendelbrück";

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Self;
        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// What `f` logged under `rust_log`, in JSON or pretty lines.
    fn logged(rust_log: &str, json: bool, f: impl FnOnce()) -> String {
        let captured = Captured::default();
        let subscriber = subscriber(EnvFilter::new(rust_log), json, captured.clone());
        tracing::subscriber::with_default(subscriber, f);
        captured.text()
    }

    /// Directives that ask for the driver's debug lines, the specific ones included, which a
    /// plain `tokio_postgres=info` directive added to the filter would not override.
    const ASKING_FOR_THE_DRIVER: [&str; 4] = [
        "trace",
        "tokio_postgres::query=debug",
        "tokio_postgres=trace",
        "info,tokio_postgres::query=trace,tokio_postgres::prepare=debug",
    ];

    #[test]
    fn the_driver_logs_nothing_below_info_whatever_rust_log_says() {
        for rust_log in ASKING_FOR_THE_DRIVER {
            for json in [true, false] {
                let text = logged(rust_log, json, || {
                    tracing::debug!(target: "tokio_postgres::query", "parameters: [{MARKER:?}]");
                    tracing::trace!(target: "tokio_postgres", "{MARKER}");
                    let span =
                        tracing::debug_span!(target: "tokio_postgres::query", "query", p = MARKER);
                    let _entered = span.enter();
                    tracing::info!(target: "tokio_postgres::query", "the driver at info");
                });
                assert!(!text.contains(MARKER), "{rust_log} json={json}: {text}");
                // The guard drops only what it must: the driver's info lines pass.
                assert!(
                    text.contains("the driver at info"),
                    "{rust_log} json={json}: {text}"
                );
            }
        }
    }

    #[test]
    fn other_targets_follow_rust_log_down_to_trace() {
        let text = logged("trace", true, || {
            tracing::trace!(target: "callers_store::pool", "a trace line");
            tracing::debug!(target: "tokio_postgres_rustls", "a neighbour's debug line");
        });
        assert!(text.contains("a trace line"), "{text}");
        assert!(text.contains("a neighbour's debug line"), "{text}");
        assert!(logged("info", true, || tracing::debug!("hidden")).is_empty());
    }

    /// The driver logs through the `log` crate; the bridge must meet the guard as well, and
    /// `log_enabled!`, which the driver asks before formatting parameters, must say no.
    #[test]
    fn the_drivers_log_records_meet_the_guard() {
        static BRIDGE: OnceLock<()> = OnceLock::new();
        BRIDGE.get_or_init(|| tracing_log::LogTracer::init().expect("the only log bridge"));
        for rust_log in ASKING_FOR_THE_DRIVER {
            let mut asked = None;
            let text = logged(rust_log, true, || {
                asked = Some(log::log_enabled!(target: "tokio_postgres::query", log::Level::Debug));
                log::debug!(target: "tokio_postgres::query", "parameters: [{MARKER:?}]");
                log::info!(target: "tokio_postgres::query", "the driver at info");
            });
            assert_eq!(asked, Some(false), "{rust_log}");
            assert!(!text.contains(MARKER), "{rust_log}: {text}");
            assert!(text.contains("the driver at info"), "{rust_log}: {text}");
        }
    }

    #[test]
    fn only_the_driver_and_its_modules_are_guarded() {
        assert!(is_driver("tokio_postgres"));
        assert!(is_driver("tokio_postgres::query"));
        assert!(!is_driver("tokio_postgres_rustls"));
        assert!(!is_driver("callers_store"));
    }
}
