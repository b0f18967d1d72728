//! The hub's validated settings ([`Config`]) and the WebSocket settings derived from them.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Validated hub settings. Build with [`Config::default`] and adjust the fields; the CLI
/// checks ranges before building one.
#[derive(Debug, Clone)]
pub struct Config {
    /// Period of the `SystemStatusChef` dumplings (the original's `--status-freq`).
    pub status_freq: Duration,
    /// Largest message accepted from a kitchen, in bytes (the original's 1 MiB).
    pub max_message_bytes: usize,
    /// Largest message accepted from an eater (only hellos are expected).
    pub max_eater_message_bytes: usize,
    /// Capacity of the shared fan-out ring, in dumplings. An eater that falls further
    /// behind than this loses its oldest dumplings.
    pub ring_capacity: usize,
    /// How many bytes an eater may fall behind before its oldest dumplings are dropped.
    pub eater_queue_bytes: u64,
    /// An eater whose socket makes no write progress for this long is disconnected.
    pub write_timeout: Duration,
    /// Time allowed for the WebSocket handshake plus the hello.
    pub hello_timeout: Duration,
    /// Period of WebSocket pings to every peer.
    pub ping_interval: Duration,
    /// An eater silent (not even a pong) for `ping_interval + ping_timeout` is dropped.
    pub ping_timeout: Duration,
    /// A kitchen silent for this long is dropped (kitchens may not answer pings if they
    /// never read, so this is longer than the eater limit).
    pub kitchen_idle_timeout: Duration,
    /// At most this many kitchens and eaters are listed in a status dumpling (the counts
    /// stay exact), so status traffic grows linearly with the number of eaters.
    pub status_list_max: usize,
    /// Per-eater WebSocket read buffer (tungstenite's default is 128 KiB, eagerly
    /// allocated; eaters only send a hello, so small keeps idle eaters cheap).
    pub read_buffer_bytes: usize,
    /// Per-kitchen WebSocket read buffer (kitchens are few and send a lot).
    pub kitchen_read_buffer_bytes: usize,
    /// Eater write batching: up to this many dumplings per flush that the eater's
    /// WebSocket writer frames itself (up to 16 times as many framed once for all eaters,
    /// `state::Wire`, within `batch_max_bytes`).
    pub batch_max: usize,
    /// Eater write batching: up to about this many bytes per flush.
    pub batch_max_bytes: usize,
    /// `--auth`: principals and tokens (none: every peer is accepted, as the original).
    pub auth: Option<std::sync::Arc<crate::auth::Auth>>,
    /// `--tls-cert/--tls-key`: serve `wss://` on both ports.
    pub tls: Option<std::sync::Arc<crate::tls::Tls>>,
    /// Federation over NATS JetStream (`--nats`); `None` is the single hub.
    pub fleet: Option<crate::fleet::FleetOptions>,
    /// Where to serve Prometheus `/metrics` (off when `None`).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Kitchen connections past their WebSocket upgrade (authorised under `--auth`); an
    /// upgrade past it gets HTTP 503.
    pub max_kitchens: usize,
    /// Eater connections past their WebSocket upgrade.
    pub max_eaters: usize,
    /// Connections per port still in their handshake (TLS, request, upgrade) or being
    /// served the web page; when full, the oldest is closed for a new one
    /// ([`crate::admission`]).
    pub max_pending: usize,
    /// Web origins besides the hub's own that may open a WebSocket (`--allow-origin`;
    /// requests without `Origin` are always allowed, see [`crate::origin`]).
    pub allowed_origins: crate::origin::AllowedOrigins,
    /// Host names besides the loopback ones a browser request on a loopback address may
    /// name (`--allow-host`; DNS rebinding, see [`crate::origin::check_host`]).
    pub allowed_hosts: crate::origin::AllowedHosts,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            status_freq: Duration::from_secs(dumpling::DEFAULT_STATUS_FREQ_SECS),
            max_message_bytes: dumpling::MAX_MESSAGE_BYTES,
            max_eater_message_bytes: 64 * 1024,
            ring_capacity: 4096,
            eater_queue_bytes: 4 << 20,
            write_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(20),
            kitchen_idle_timeout: Duration::from_secs(120),
            status_list_max: 25,
            read_buffer_bytes: 2048,
            kitchen_read_buffer_bytes: 64 * 1024,
            batch_max: 64,
            batch_max_bytes: 256 * 1024,
            auth: None,
            tls: None,
            fleet: None,
            metrics_address: None,
            max_kitchens: 1024,
            max_eaters: 4096,
            max_pending: 256,
            allowed_origins: crate::origin::AllowedOrigins::default(),
            allowed_hosts: crate::origin::AllowedHosts::default(),
        }
    }
}

/// Most bytes the WebSocket writer of a kitchen connection holds unsent: the hub only
/// writes control frames to kitchens (pongs, pings, a close), so a kitchen flooding pings
/// without reading is cut off here instead of growing the hub.
pub const KITCHEN_MAX_WRITE_BUFFER_BYTES: usize = 256 * 1024;

impl Config {
    /// Most bytes the WebSocket writer of an eater connection holds unsent: one batch and
    /// a few of the largest messages on top (what a legitimate write can leave queued
    /// while the socket is full), well under the bytes an eater may lag behind
    /// (`eater_queue_bytes`).
    pub fn eater_max_write_buffer_bytes(&self) -> usize {
        self.batch_max_bytes
            .saturating_add(self.max_message_bytes.saturating_mul(4))
            .saturating_add(64 * 1024)
    }

    /// WebSocket settings for kitchen connections.
    pub fn kitchen_ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.kitchen_read_buffer_bytes.max(1024))
            .write_buffer_size(0)
            .max_write_buffer_size(KITCHEN_MAX_WRITE_BUFFER_BYTES)
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }

    /// WebSocket settings for eater connections. The write buffer target is the batch
    /// size, so one flush writes one batch in few syscalls.
    ///
    /// The write buffer is bounded ([`Config::eater_max_write_buffer_bytes`]): tungstenite
    /// queues a pong for every ping it reads, and an eater that floods pings and never
    /// reads grew the hub by ~1 GB in 4 s. Past the bound its connection ends.
    pub fn eater_ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_bytes.max(1024))
            .write_buffer_size(self.batch_max_bytes)
            .max_write_buffer_size(self.eater_max_write_buffer_bytes())
            .max_message_size(Some(self.max_eater_message_bytes))
            .max_frame_size(Some(self.max_eater_message_bytes))
    }
}
