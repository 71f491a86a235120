//! What both binaries share at start-up: secrets that never print, and logging that never
//! carries the database driver's statement parameters.

pub mod logging;
mod secret;

pub use logging::LogFormat;
pub use secret::Secret;
