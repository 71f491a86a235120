//! Logging setup: JSON lines for machines, pretty for people at a terminal. Nothing below
//! info from the database driver, whatever RUST_LOG says, since it would print parameters.

use crate::config::LogFormat;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // The driver logs statement parameters (names, numbers, texts) at debug level: never.
        .add_directive("tokio_postgres=info".parse().expect("static directive"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
