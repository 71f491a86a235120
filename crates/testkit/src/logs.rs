//! Log capture: every line this test process logs, as JSON, at the most verbose level the
//! server allows, so tests can check that nothing personal reaches the logs.

use std::sync::{Arc, Mutex, OnceLock};

/// Everything logged since [`capture`] was first called.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    /// The captured lines so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber for the whole process on first call (a test binary has
/// one global subscriber) and returns the capture.
pub fn capture() -> &'static CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = CapturedLogs::default();
        let sink = captured.clone();
        // The binaries' own setup, so the driver's guard is the real one; the driver itself
        // at trace, which the guard must hold back.
        let filter = tracing_subscriber::EnvFilter::new(
            "trace,tokio_postgres=trace,h2=info,hyper=info,hyper_util=info,tower=info",
        );
        let subscriber = callers_runtime::logging::subscriber(filter, true, move || sink.clone());
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        captured
    })
}
