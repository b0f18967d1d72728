//! Logging into the kitchen's log (the WIT `log` import), tagged with the chef's name.
//!
//! The kitchen rate-limits and may truncate messages. Do not log per packet.
//! (On native targets, e.g. in unit tests, the import does not exist: do not log there.)

use crate::bindings::netdumplings::chef::log as wit_log;

pub use wit_log::Level;

/// Writes one message at `level`.
pub fn log(level: Level, message: &str) {
    wit_log::log(level, message);
}

/// Logs at `trace`.
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Logs at `debug`.
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Logs at `info`.
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Logs at `warn`.
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Logs at `error`.
pub fn error(message: &str) {
    log(Level::Error, message);
}
