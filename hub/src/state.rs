//! State shared by every connection task: the fan-out ring, the registry of kitchens and
//! eaters, and the counters.
//!
//! Invariant: a peer is in the registry only between a valid hello and the end of its
//! task ([`Registration`] removes it on drop, whatever the exit path), so a bad hello can
//! never leave a ghost.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::config::Config;
use crate::Side;

/// One message in the fan-out ring.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The message as it goes to eaters (text or binary, shared bytes).
    pub message: Message,
    /// Bytes published into the ring up to and including this frame; lets an eater work
    /// out how many bytes it is behind.
    pub end_offset: u64,
    /// Who made it, for eaters restricted to some chefs or kitchens (set only when the
    /// hub runs with `--auth`, so the plain path clones no extra pointer).
    pub origin: Option<Arc<Origin>>,
    /// The dumpling's JetStream stream sequence when a federated hub read it from the
    /// stream; 0 for everything else (an eater replaying from its own consumer skips
    /// the ring's copies of stream dumplings).
    pub seq: u64,
    /// The frame as it goes on the wire, built once for every eater (see [`Wire`]); `None`
    /// for frames each eater's WebSocket writer frames itself.
    pub wire: Option<Wire>,
}

/// A frame's bytes on the wire (WebSocket header and payload, unmasked as a server
/// sends them), a span of a buffer that holds a whole burst of frames back to back.
///
/// Why: with `--nats` the dumplings come in bursts ([`crate::fleet::linger`]). Framing a
/// burst once into one buffer lets every eater write it straight to its socket, from
/// memory all eaters share (so it stays in cache), instead of each eater's WebSocket
/// writer copying every payload into its own buffer and the kernel copying that again.
/// Adjacent frames of one burst are adjacent spans, so an eater writes a run of them as
/// one slice.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The burst's buffer.
    pub buffer: Bytes,
    /// Where this frame starts in it.
    pub start: usize,
    /// Where it ends (exclusive).
    pub end: usize,
}

impl Wire {
    /// The frame's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }

    /// Whether `next` follows this span directly in the same buffer.
    pub fn precedes(&self, next: &Wire) -> bool {
        self.end == next.start && self.buffer.as_ptr() == next.buffer.as_ptr()
    }
}

/// Where a frame in the ring came from (see [`crate::auth`]).
#[derive(Debug)]
pub enum Origin {
    /// A kitchen's dumpling.
    Dumpling {
        /// `metadata.chef`.
        chef: Box<str>,
        /// `metadata.kitchen`, when present.
        kitchen: Option<Box<str>>,
    },
    /// A status dumpling for the eaters of one restricted principal (`Some(name)`), or
    /// for every unrestricted eater (`None`).
    Status(Option<Box<str>>),
}

impl Frame {
    /// Payload length in bytes.
    pub fn len(&self) -> u64 {
        self.message.len() as u64
    }

    /// True for an empty payload.
    pub fn is_empty(&self) -> bool {
        self.message.len() == 0
    }
}

/// A registered kitchen or eater.
#[derive(Debug)]
pub struct Peer {
    /// The hello, verbatim when it is at most `status::MAX_KEPT_HELLO_BYTES`, else its cut
    /// form (the same as `hello_cut`).
    pub hello: Box<RawValue>,
    /// The hello as a status lists it when it does not fit the status's share for hellos
    /// (`status::fit_hellos`): its name, cut, and how long it was.
    pub hello_cut: Box<RawValue>,
    /// Where it connected from.
    pub addr: SocketAddr,
    /// Kitchens: valid dumplings in. Eaters: frames delivered.
    pub good: AtomicU64,
    /// Kitchens: invalid messages. Eaters: dumplings dropped (lag).
    pub bad: AtomicU64,
    /// Kitchens: valid dumplings refused (reserved chef name, or a kitchen name its
    /// principal may not use).
    pub refused: AtomicU64,
    /// The auth principal it connected as (`--auth` only).
    pub principal: Option<Arc<crate::auth::Principal>>,
}

/// Kitchens and eaters in connection order (ids only grow).
#[derive(Debug, Default)]
pub struct Registry {
    next_id: u64,
    /// Connected kitchens.
    pub kitchens: BTreeMap<u64, Arc<Peer>>,
    /// Connected eaters.
    pub eaters: BTreeMap<u64, Arc<Peer>>,
}

/// Connection lines (comings and goings) logged per side per [`CONNECTION_LINES_WINDOW`]:
/// 100 connections' worth, far above a deployment's kitchens and eaters reconnecting.
pub const CONNECTION_LINES: u32 = 200;
/// The window of [`CONNECTION_LINES`].
pub const CONNECTION_LINES_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Everything the connection tasks share.
#[derive(Debug)]
pub struct Shared {
    /// Validated settings.
    pub config: Config,
    /// When the hub started (for `server_uptime`).
    pub started: Instant,
    /// The fan-out ring. Kitchens and the status loop send; each eater task holds a
    /// receiver. Sending never waits.
    pub ring: broadcast::Sender<Frame>,
    /// Total bytes published into the ring.
    pub published_bytes: AtomicU64,
    /// Valid dumplings received from all kitchens.
    pub total_in: AtomicU64,
    /// Frames delivered to eaters (status and notices included).
    pub total_out: AtomicU64,
    /// Invalid messages received from all kitchens.
    pub total_invalid: AtomicU64,
    /// Dumplings dropped for slow eaters.
    pub total_dropped: AtomicU64,
    /// Valid dumplings refused (reserved chef names, kitchen names not allowed).
    pub total_refused: AtomicU64,
    /// `HubNoticeChef` lag notices sent (for `/metrics`).
    pub lag_notices: AtomicU64,
    /// Budget of the kitchen connections' "connection from" / "connection closed" lines
    /// (peers choose how often they connect: [`crate::log_limit`]).
    pub kitchen_lines: crate::log_limit::LogLimit,
    /// The same for eater connections.
    pub eater_lines: crate::log_limit::LogLimit,
    /// Kitchens closed because their dumplings could not be handed to NATS for
    /// [`dumpling::close_code::STALLED_SECS`] (`--nats` only).
    pub kitchens_stalled: AtomicU64,
    /// Connections (either side, registered or not) whose task has ended; the trim loop
    /// watches it to give memory back after a burst.
    pub connections_ended: AtomicU64,
    /// The kitchen port's pending pool and slots (`--max-kitchens`, `--max-pending`).
    pub kitchen_admission: Arc<crate::admission::Admission>,
    /// The eater port's pending pool and slots (`--max-eaters`, `--max-pending`).
    pub eater_admission: Arc<crate::admission::Admission>,
    /// WebSocket upgrades refused for their `Origin` (cross-site pages).
    pub origin_refusals: crate::origin::OriginRefusals,
    registry: Mutex<Registry>,
    /// The NATS publisher when the hub federates (`--nats`); kitchens hand dumplings to
    /// it instead of the ring, and the fleet consumer fills the ring.
    pub fleet: std::sync::OnceLock<crate::fleet::Publisher>,
    /// The hubs of the fleet, for the `fleet` section of status dumplings (`--nats` only).
    pub fleet_status: std::sync::OnceLock<Arc<crate::fleet::status::FleetBoard>>,
    /// Becomes `true` once on shutdown; every connection task watches it.
    pub shutdown: watch::Receiver<bool>,
}

impl Shared {
    /// New state with an empty registry.
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> Self {
        let (ring, _) = broadcast::channel(config.ring_capacity.max(16));
        Shared {
            kitchen_admission: crate::admission::Admission::new(
                config.max_kitchens,
                config.max_pending,
            ),
            eater_admission: crate::admission::Admission::new(
                config.max_eaters,
                config.max_pending,
            ),
            config,
            started: Instant::now(),
            ring,
            published_bytes: AtomicU64::new(0),
            total_in: AtomicU64::new(0),
            total_out: AtomicU64::new(0),
            total_invalid: AtomicU64::new(0),
            total_dropped: AtomicU64::new(0),
            total_refused: AtomicU64::new(0),
            lag_notices: AtomicU64::new(0),
            kitchens_stalled: AtomicU64::new(0),
            kitchen_lines: crate::log_limit::LogLimit::new(
                CONNECTION_LINES,
                CONNECTION_LINES_WINDOW,
            ),
            eater_lines: crate::log_limit::LogLimit::new(CONNECTION_LINES, CONNECTION_LINES_WINDOW),
            connections_ended: AtomicU64::new(0),
            origin_refusals: crate::origin::OriginRefusals::default(),
            registry: Mutex::new(Registry::default()),
            fleet: std::sync::OnceLock::new(),
            fleet_status: std::sync::OnceLock::new(),
            shutdown,
        }
    }

    /// Put a message into the fan-out ring. Never waits; with no eater it is dropped.
    pub fn publish(&self, message: Message) {
        self.publish_from(message, None);
    }

    /// [`Shared::publish`] with the frame's origin (for filtered eaters).
    pub fn publish_from(&self, message: Message, origin: Option<Arc<Origin>>) {
        self.publish_seq(message, origin, 0);
    }

    /// [`Shared::publish_from`] for a dumpling read from the stream at sequence `seq`.
    pub fn publish_seq(&self, message: Message, origin: Option<Arc<Origin>>, seq: u64) {
        self.publish_wire(message, origin, seq, None);
    }

    /// [`Shared::publish_seq`] with the frame's bytes on the wire built already.
    pub fn publish_wire(
        &self,
        message: Message,
        origin: Option<Arc<Origin>>,
        seq: u64,
        wire: Option<Wire>,
    ) {
        let len = message.len() as u64;
        let end_offset = self.published_bytes.fetch_add(len, Ordering::Relaxed) + len;
        // An error only means no eater is subscribed right now.
        let _ = self.ring.send(Frame {
            message,
            end_offset,
            origin,
            seq,
            wire,
        });
    }

    /// Lock the registry. A poisoned lock is recovered: the registry holds plain maps
    /// that a panicking holder cannot leave half-updated.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Register a peer after a valid hello. Dropping the returned guard unregisters it.
    pub fn register(
        self: &Arc<Self>,
        side: Side,
        hello: crate::hello::Hello,
        addr: SocketAddr,
        principal: Option<Arc<crate::auth::Principal>>,
    ) -> Registration {
        let hello_cut = crate::status::cut_hello(side, &hello);
        // Only a bounded hello is kept whole (see `status::MAX_KEPT_HELLO_BYTES`): a larger
        // one is listed cut by every status anyway, or nearly so.
        let hello = if hello.raw.get().len() > crate::status::MAX_KEPT_HELLO_BYTES {
            hello_cut.clone()
        } else {
            hello.raw
        };
        let peer = Arc::new(Peer {
            hello_cut,
            hello,
            addr,
            good: AtomicU64::new(0),
            bad: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            principal,
        });
        let mut registry = self.registry();
        let id = registry.next_id;
        registry.next_id += 1;
        match side {
            Side::Kitchen => registry.kitchens.insert(id, peer.clone()),
            Side::Eater => registry.eaters.insert(id, peer.clone()),
        };
        Registration {
            shared: self.clone(),
            side,
            id,
            peer,
        }
    }

    /// Numbers of connected kitchens and eaters.
    pub fn counts(&self) -> (usize, usize) {
        let registry = self.registry();
        (registry.kitchens.len(), registry.eaters.len())
    }
}

/// A peer's place in the registry; removes it when dropped.
#[derive(Debug)]
pub struct Registration {
    shared: Arc<Shared>,
    side: Side,
    /// Registry id (connection order).
    pub id: u64,
    /// The registered peer and its counters.
    pub peer: Arc<Peer>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = self.shared.registry();
        match self.side {
            Side::Kitchen => registry.kitchens.remove(&self.id),
            Side::Eater => registry.eaters.remove(&self.id),
        };
    }
}

/// Resolves once the hub is shutting down (or its shutdown sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard returned by `wait_for` is dropped here, so callers can hold this across
    // awaits in Send futures.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_hello_is_kept_only_cut() {
        let (_stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(Config::default(), stop_rx));
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let hello = |pad: usize| {
            let text = serde_json::json!({"kitchen_name": "k", "pad": "x".repeat(pad)});
            crate::hello::parse_hello(text.to_string().as_bytes(), "kitchen_name").unwrap()
        };
        let small = shared.register(Side::Kitchen, hello(1000), addr, None);
        assert!(small.peer.hello.get().contains(&"x".repeat(1000)));
        let large = shared.register(Side::Kitchen, hello(1 << 20), addr, None);
        let kept = large.peer.hello.get();
        assert!(
            kept.len() <= crate::status::MAX_KEPT_HELLO_BYTES,
            "{}",
            kept.len()
        );
        assert_eq!(kept, large.peer.hello_cut.get());
        assert!(kept.contains("\"nd_hello_cut\":true"), "{kept}");
    }
}
