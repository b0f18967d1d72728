//! Where dumplings go once a chef has made them, and what the kitchen says about itself:
//! the [`DumplingSink`] every output implements, stdout and a tee ([`stdout`]), the
//! WebSocket client to the hub ([`hub_client`]) with its hello ([`hello`]), the
//! `KitchenStatusChef` report ([`status`]), `/metrics` ([`metrics`]) and crash capsules
//! ([`crash_capsule`]).

pub mod crash_capsule;
pub mod hello;
pub mod hub_client;
pub mod metrics;
pub mod status;
pub mod stdout;

/// Why the output refused a dumpling.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The consumer went away (e.g. `nd-sniff --stdout | head`): stop cleanly.
    #[error("the output was closed")]
    Closed,
    /// Any other I/O failure.
    // The OS error is the source (`{:#}` chains print it after this), not repeated here.
    #[error("cannot write dumplings")]
    Io(#[from] std::io::Error),
}

/// Where finished dumplings go (stdout, the hub client, a test vector).
pub trait DumplingSink {
    /// Take one encoded dumpling (JSON text, at most `dumpling::MAX_MESSAGE_BYTES`).
    fn send(&mut self, chef: &str, json: String) -> Result<(), SinkError>;

    /// Write out whatever is buffered, at the end of a run: an error here is an output
    /// that lost dumplings (a full disk), which must not pass for a clean run.
    fn flush_output(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

impl DumplingSink for Vec<String> {
    fn send(&mut self, _chef: &str, json: String) -> Result<(), SinkError> {
        self.push(json);
        Ok(())
    }
}
