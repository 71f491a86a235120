//! What both binaries share at start-up: secrets that never print, logging that never
//! carries the database driver's statement parameters, and OpenTelemetry traces.

pub mod logging;
mod secret;
pub mod telemetry;

pub use logging::LogFormat;
pub use secret::Secret;
