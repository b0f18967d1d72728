//! The state of the hub's NATS connection, as its events tell it: whether it is up, since
//! when it is down, how often it went down, and the rate-limited log of its trouble.
//!
//! Why it is kept: a federated hub delivers nothing while NATS is away (its eaters read
//! what comes back from the stream), and before this the only trace was a warning in the
//! hub's log: `/metrics` had no fleet series and the status's `fleet` section still listed
//! the hub as healthy 12 s into an outage. The status section and `/metrics` read this.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::info;

/// The NATS connection's state, written by the client's event callback only.
#[derive(Debug, Default)]
pub struct NatsLink {
    connected: AtomicBool,
    /// When the connection went down (`None` while it is up or never was).
    down_since: Mutex<Option<Instant>>,
    /// Times an established connection was lost.
    disconnects: AtomicU64,
    /// Consecutive error events since the connection was last up (reconnect attempts).
    trouble: AtomicU64,
}

impl NatsLink {
    /// Whether the connection is up now.
    pub fn connected(&self) -> bool {
        self.connected.load(Relaxed)
    }

    /// How long it has been down (`None` while it is up).
    pub fn down_for(&self) -> Option<Duration> {
        if self.connected() {
            return None;
        }
        let since = *self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        since.map(|t| t.elapsed())
    }

    /// Times an established connection was lost since the hub started.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Relaxed)
    }

    /// Failed attempts since the connection was last up (0 while it is up).
    pub fn failed_attempts(&self) -> u64 {
        self.trouble.load(Relaxed)
    }

    /// The first connection is up (the client reports its first connect as an event
    /// too, but the hub may read this before the callback ran).
    pub fn mark_connected(&self) {
        self.connected.store(true, Relaxed);
        *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn mark_down(&self) {
        if self.connected.swap(false, Relaxed) {
            self.disconnects.fetch_add(1, Relaxed);
        }
        let mut since = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        since.get_or_insert_with(Instant::now);
    }

    /// Take one NATS connection event: update the state and log it. A server that stays
    /// away makes the client retry every 2 s, each attempt an error event: logged at INFO
    /// each, that was ~4 500 lines an hour of "client error: nats: IO error" naming no
    /// server. Errors are warnings naming the servers, the 1st, 2nd, 4th, 8th, ... of a
    /// run of them; the connection back up says after how many.
    pub fn on_event(&self, event: &async_nats::Event, servers: &str) {
        match event {
            async_nats::Event::Connected => {
                self.mark_connected();
                let failed = self.trouble.swap(0, Relaxed);
                if failed > 0 {
                    tracing::warn!(
                        servers,
                        failed_attempts = failed,
                        "fleet: NATS connection back up"
                    );
                } else {
                    info!(servers, "fleet: NATS connected");
                }
            }
            async_nats::Event::Disconnected | async_nats::Event::ClientError(_) => {
                if matches!(event, async_nats::Event::Disconnected) {
                    self.mark_down();
                }
                let n = self.trouble.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(servers, %event, times = n,
                        "fleet: NATS connection trouble; retrying (dumplings wait for it)");
                }
            }
            async_nats::Event::Closed => {
                self.mark_down();
                info!(servers, "fleet: NATS connection closed");
            }
            _ => info!(%event, "fleet: NATS connection event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_down_until_it_is_back_and_counted_once() {
        let link = NatsLink::default();
        link.mark_connected();
        assert!(link.connected());
        assert_eq!(link.down_for(), None);
        link.on_event(&async_nats::Event::Disconnected, "x:1");
        // Reconnect attempts failing do not count as more disconnects.
        for _ in 0..5 {
            link.on_event(
                &async_nats::Event::ClientError(async_nats::ClientError::MaxReconnects),
                "x:1",
            );
        }
        assert!(!link.connected());
        assert_eq!(link.disconnects(), 1);
        assert_eq!(link.failed_attempts(), 6);
        let first = link.down_for().expect("down");
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            link.down_for().expect("still down") > first,
            "since the first loss"
        );
        link.on_event(&async_nats::Event::Connected, "x:1");
        assert!(link.connected());
        assert_eq!(link.down_for(), None);
        assert_eq!(link.failed_attempts(), 0);
        link.on_event(&async_nats::Event::Disconnected, "x:1");
        assert_eq!(link.disconnects(), 2);
    }
}
