//! The Rust eater library: connect to `nd-hub`'s eater port, send the hello, and read an
//! async stream of typed [`Event`]s: dumplings (filtered by chef, kitchen and driver), lag
//! notices from the hub, invalid messages, and connection changes. Reconnects with
//! exponential backoff when the hub goes away.
//!
//! ```no_run
//! # async fn demo() -> Result<(), eater_client::Error> {
//! let mut eater = eater_client::Eater::new(eater_client::EaterConfig::new("localhost:11348", "myeater"))?;
//! loop {
//!     match eater.next_event().await? {
//!         eater_client::Event::Dumpling(d) => println!("{}", d.raw),
//!         other => eprintln!("{other:?}"),
//!     }
//! }
//! # }
//! ```
//!
//! Compatible with both our hub and the original: the hello is `{"eater_name": name}` and
//! the filters work on the client side as the original `DumplingEater` does.
//!
//! Optional keys that the original hub ignores ask our hub for more: the filter's chefs
//! and kitchens (`nd_chefs`, `nd_kitchens`: the hub then sends only those, and a federated
//! hub does not even pull the rest from NATS), and replay ([`EaterConfig::start`]:
//! `nd_since_seq`, `nd_since`, or `nd_seq` for live dumplings with stream sequences).
//! With [`EaterConfig::resume`] the eater remembers the last `metadata.nd_seq` it saw and,
//! after a lost connection, asks the next hub of its list (`hub` may be `A,B,C`) for
//! `nd_since_seq = last + 1`; a dumpling at or below the last sequence seen before the
//! reconnect is never passed on twice (within one connection the hub sends each once).
//! It also keeps the `nd_stream` of the hub's start notice and sends it with
//! `nd_since_seq`: when the hub's stream is another one (deleted and created again, its
//! sequences started over) the hub starts at its first sequence, and the eater, told a
//! new `nd_stream`, forgets the old stream's sequences instead of skipping the new ones.

use std::time::Duration;

use dumpling::{close_code, Driver, Dumpling, EaterHello, HubNotice, Metadata};
use futures_util::{FutureExt, SinkExt, Stream, StreamExt};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Errors that end an eater: retrying cannot fix them (or retries ran out).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The hub address does not make a valid `ws://` URI.
    #[error("invalid hub address {0:?}: {1}")]
    BadHubAddress(String, String),
    /// Something answered that is not a WebSocket server (an HTTP error status).
    #[error("{uri} is not a dumpling hub: {detail}")]
    NotAHub {
        /// The URI tried.
        uri: String,
        /// What it answered.
        detail: String,
    },
    /// The hub refused this eater (e.g. its hello), which retrying cannot fix.
    #[error("the hub refused this eater: {0}")]
    Refused(String),
    /// TLS or token trouble retrying cannot fix (bad certificate, token refused, unreadable
    /// CA file...); the message says what to do.
    #[error(transparent)]
    Link(hub_link::LinkError),
    /// A connection that was made was lost and no more retries are allowed.
    #[error("lost connection to the dumpling hub: {0}")]
    GaveUp(String),
    /// No connection could be made and no more retries are allowed.
    #[error("could not connect to the dumpling hub at {hub}: {reason}")]
    CannotConnect {
        /// The hub address tried last, as given (`HOST:PORT` or a URI).
        hub: String,
        /// Why (the OS's reason, e.g. "Connection refused (os error 111)").
        reason: String,
        /// Nothing answered at all (see [`Event::ConnectFailed`]).
        unreachable: bool,
    },
}

/// Which dumplings to pass on. Empty lists mean "all".
#[derive(Debug, Clone)]
pub struct Filter {
    /// Only dumplings from these chefs (the original's `chef_filter`).
    pub chefs: Vec<String>,
    /// Only dumplings from these kitchens (hub status dumplings have no kitchen, so any
    /// kitchen filter hides them, as in the original `nd-print`).
    pub kitchens: Vec<String>,
    /// Pass packet-driven dumplings.
    pub packet: bool,
    /// Pass interval-driven dumplings.
    pub interval: bool,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            chefs: Vec::new(),
            kitchens: Vec::new(),
            packet: true,
            interval: true,
        }
    }
}

impl Filter {
    /// Does this dumpling pass?
    pub fn accepts(&self, dumpling: &Dumpling) -> bool {
        let driver_ok = match dumpling.metadata.driver {
            Driver::Packet => self.packet,
            Driver::Interval => self.interval,
        };
        let chef_ok = self.chefs.is_empty() || self.chefs.contains(&dumpling.metadata.chef);
        let kitchen_ok = self.kitchens.is_empty()
            || dumpling
                .metadata
                .kitchen
                .as_ref()
                .is_some_and(|k| self.kitchens.contains(k));
        driver_ok && chef_ok && kitchen_ok
    }
}

/// A lost connection that brought messages and lasted this long starts the reconnect
/// backoff over; a shorter one counts as a failed attempt.
pub const HEALTHY_CONNECTION: Duration = Duration::from_secs(5);

/// Reconnect policy: exponential backoff from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// Reconnect at all?
    pub enabled: bool,
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Give up after this many failed attempts in a row (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            max_attempts: None,
        }
    }
}

/// Where a replaying eater starts (federated hubs, `nd-hub --nats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// At this JetStream stream sequence (`nd_since_seq`).
    Sequence(u64),
    /// At a time: a duration back from now (`10m`) or an RFC 3339 time (`nd_since`).
    Since(String),
}

/// Settings of one eater.
#[derive(Debug, Clone)]
pub struct EaterConfig {
    /// The hub's eater port: `HOST:PORT` (as the original) or a full `ws://` URI; several,
    /// comma-separated, are tried in turn after each lost connection.
    pub hub: String,
    /// The name sent in the hello.
    pub name: String,
    /// Which dumplings to pass on.
    pub filter: Filter,
    /// Reconnect policy.
    pub reconnect: Reconnect,
    /// Time allowed to connect and send the hello.
    pub connect_timeout: Duration,
    /// How long the hub may send nothing at all (no dumpling, no ping) before the
    /// connection counts as lost ([`IDLE_TIMEOUT`] by default).
    pub idle_timeout: Duration,
    /// TLS settings (CA file, client certificate) and token for `wss://` or `--auth`
    /// hubs; see the `hub-link` crate.
    pub link: hub_link::Link,
    /// Tell the hub the filter's chefs and kitchens (`nd_chefs`, `nd_kitchens`), so it
    /// sends only those. Default on; the filter still runs here too.
    pub send_interest: bool,
    /// Replay from here on the first connection (`None`: live, as the original).
    pub start: Option<StartAt>,
    /// Resume after a lost connection from the last stream sequence seen (asks for
    /// sequence numbers from the first connection on).
    pub resume: bool,
    /// Parse each dumpling's payload into [`Received::dumpling`]'s `Value` (default on).
    ///
    /// Off: every message is still checked exactly as a full parse checks it (the same
    /// messages pass, the same become [`Event::Invalid`]), but the payload is not built:
    /// [`Received::dumpling`]'s `payload` is `Null` and the payload is read from
    /// [`Received::raw`] with [`parse_dumpling_with`] and a seed of the caller's (e.g. a
    /// printer that writes as it parses). Hub notices are parsed in full either way.
    /// Why: building a `Value` (a map per object, every key and string allocated) was most
    /// of `nd-print`'s time.
    pub payload_value: bool,
}

impl EaterConfig {
    /// Defaults: no filter, reconnect forever.
    pub fn new(hub: impl Into<String>, name: impl Into<String>) -> Self {
        EaterConfig {
            hub: hub.into(),
            name: name.into(),
            filter: Filter::default(),
            reconnect: Reconnect::default(),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: IDLE_TIMEOUT,
            link: hub_link::Link::plain(),
            send_interest: true,
            start: None,
            resume: false,
            payload_value: true,
        }
    }
}

/// How long the hub may send nothing at all (no dumpling, no ping) before the eater counts
/// the connection as lost (three of the hub's 20 s pings).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes an eater's connection may have waiting to be written (hello, pongs, close).
const MAX_WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Text from the hub (a notice, a close reason, an error quoting the message) as it may be
/// shown: control and bidi characters escaped, at most [`dumpling::text::DEFAULT_MAX_CHARS`]
/// characters.
fn peer_text(text: &str) -> String {
    dumpling::text::escape(text, dumpling::text::DEFAULT_MAX_CHARS)
}

/// A dumpling as received: typed, plus the exact text the hub sent.
#[derive(Debug, Clone)]
pub struct Received {
    /// The parsed dumpling (its payload is `Null` when [`EaterConfig::payload_value`] is
    /// off: read it from `raw`).
    pub dumpling: Dumpling,
    /// The message exactly as received.
    pub raw: String,
    /// It came in a binary frame because a kitchen sent it so (never on a connection where
    /// the hub sends every dumpling as a binary frame holding its text, as ours does when
    /// asked: [`dumpling::BINARY_FRAMES_HEADER`]; there the two cannot be told apart).
    pub binary: bool,
    /// Its JetStream stream sequence (`metadata.nd_seq`), when the eater asked for
    /// replay or resume from a federated hub.
    pub seq: Option<u64>,
}

/// Something that happened to the eater.
#[derive(Debug, Clone)]
pub enum Event {
    /// Connected (or reconnected) and the hello was sent.
    Connected {
        /// The hub URI.
        uri: String,
        /// True on a reconnect.
        reconnected: bool,
    },
    /// A dumpling that passed the filter.
    Dumpling(Box<Received>),
    /// The hub dropped this many dumplings because the eater fell behind.
    Lagged {
        /// Dumplings missed.
        missed: u64,
    },
    /// A notice from the hub (e.g. replay unavailable on a hub without `--nats`).
    Notice {
        /// The hub's text, escaped and cut already (print it as it is).
        text: String,
    },
    /// A message that is not a valid dumpling (skipped).
    Invalid {
        /// Why.
        error: String,
    },
    /// A connection that was made ([`Event::Connected`]) was lost; the eater retries
    /// after `retry_in`.
    Disconnected {
        /// Why.
        reason: String,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// An attempt to connect failed (no hub there yet, or not any more); the eater retries
    /// after `retry_in`. Apart from [`Event::Disconnected`] so that a user whose hub never
    /// ran is not told a connection was lost.
    ConnectFailed {
        /// The hub address tried, as given (`HOST:PORT` or a URI).
        hub: String,
        /// Why (the OS's reason, e.g. "Connection refused (os error 111)").
        reason: String,
        /// Nothing answered at all (refused, no route, no such host), as opposed to a hub
        /// that answered but could not take the eater (at its connection limit, say).
        unreachable: bool,
        /// A connection was made before (this is an attempt to reconnect).
        reconnecting: bool,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
}

/// Build the hub URI from `HOST:PORT` (the original prefixes `ws://`) or a `ws://` URI.
pub fn hub_uri(hub: &str) -> Result<String, Error> {
    hub_link::hub_uri(hub).map_err(|e| match e {
        hub_link::LinkError::BadAddress(hub, detail) => Error::BadHubAddress(hub, detail),
        other => Error::Link(other),
    })
}

/// Why one message was not passed on as a dumpling.
enum Parsed {
    Pass(Box<Received>),
    Lagged(u64),
    Notice(String),
    Filtered,
    Invalid(String),
}

/// An eater: call [`Eater::next_event`] in a loop, or use [`Eater::into_stream`].
#[derive(Debug)]
pub struct Eater {
    config: EaterConfig,
    uri: String,
    uris: Vec<String>,
    /// The hub addresses as given, beside `uris` (what messages name).
    addrs: Vec<String>,
    current: usize,
    last_seq: Option<u64>,
    /// `last_seq` when this connection was made: what this connection must not repeat.
    /// Within a connection the hub sends each dumpling once, and a dumpling it recovers
    /// late (a stream replica that disagreed with the leader) comes with a lower sequence
    /// than its neighbours, so only the reconnect seam is filtered by sequence.
    seam: Option<u64>,
    /// The stream `last_seq` belongs to (`nd_stream` of the hub's last start notice).
    stream: Option<String>,
    ws: Option<Ws>,
    /// The hub agreed to send dumplings as binary frames holding their UTF-8 text on this
    /// connection ([`dumpling::BINARY_FRAMES_HEADER`]).
    binary: bool,
    connected_once: bool,
    failures: u32,
    /// When the current connection was made, and whether it brought any message: only a
    /// connection that did and lasted [`HEALTHY_CONNECTION`] starts the backoff over (a
    /// hub that accepted and dropped every connection was retried every 0.5 s forever, and
    /// `nd-hubdetails --retries` never gave up on it).
    connected_at: Option<std::time::Instant>,
    heard: bool,
    retry_delay: Option<Duration>,
    /// Recent table payloads, one per chef, so a repeated one is not parsed again
    /// ([`dumpling::repeat`]; used when the payload is not built as a `Value`).
    repeats: dumpling::RepeatMemo,
}

impl Eater {
    /// Check the configuration. Nothing connects until the first [`Eater::next_event`].
    pub fn new(config: EaterConfig) -> Result<Self, Error> {
        let addrs: Vec<String> = config
            .hub
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect();
        let uris = addrs
            .iter()
            .map(|h| hub_uri(h))
            .collect::<Result<Vec<_>, _>>()?;
        let uri = match uris.first() {
            Some(uri) => uri.clone(),
            None => hub_uri(&config.hub)?,
        };
        Ok(Eater {
            config,
            uri,
            uris,
            addrs,
            current: 0,
            last_seq: None,
            seam: None,
            stream: None,
            ws: None,
            binary: false,
            repeats: dumpling::RepeatMemo::new(),
            connected_once: false,
            failures: 0,
            connected_at: None,
            heard: false,
            retry_delay: None,
        })
    }

    /// The hub URI (`ws://HOST:PORT`).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The eater's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The last stream sequence passed on (resume point minus one), if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The hello: the name, plus the optional interest and replay keys.
    pub fn hello(&self) -> EaterHello {
        use dumpling::eater_hello_keys as key;
        let mut extra = serde_json::Map::new();
        let filter = &self.config.filter;
        if self.config.send_interest {
            if !filter.chefs.is_empty() {
                extra.insert(key::CHEFS.into(), serde_json::json!(filter.chefs));
            }
            if !filter.kitchens.is_empty() {
                extra.insert(key::KITCHENS.into(), serde_json::json!(filter.kitchens));
            }
        }
        let start = match (self.last_seq, &self.config.start) {
            (Some(last), _) if self.config.resume || self.config.start.is_some() => {
                // The hub's number: a hostile one at u64::MAX must not wrap the resume
                // back to the stream's start (nor panic in a debug build).
                Some((key::SINCE_SEQ, serde_json::json!(last.saturating_add(1))))
            }
            (_, Some(StartAt::Sequence(n))) => Some((key::SINCE_SEQ, serde_json::json!(n))),
            (_, Some(StartAt::Since(since))) => Some((key::SINCE, serde_json::json!(since))),
            (_, None) if self.config.resume => Some((key::SEQ, serde_json::json!(true))),
            _ => None,
        };
        if let Some((k, v)) = start {
            if let (key::SINCE_SEQ, Some(stream)) = (k, &self.stream) {
                extra.insert(key::STREAM.into(), serde_json::json!(stream));
            }
            extra.insert(k.into(), v);
        }
        EaterHello {
            eater_name: self.config.name.clone(),
            extra,
        }
    }

    /// Wait for the next event. `Err` means the eater cannot go on.
    pub async fn next_event(&mut self) -> Result<Event, Error> {
        loop {
            let Some(ws) = self.ws.as_mut() else {
                if let Some(delay) = self.retry_delay.take() {
                    tokio::time::sleep(delay).await;
                }
                match self.connect().await {
                    Ok((ws, binary)) => {
                        self.ws = Some(ws);
                        self.binary = binary;
                        // The hello just sent asked for what follows `last_seq`.
                        self.seam = self.last_seq;
                        self.connected_at = Some(std::time::Instant::now());
                        self.heard = false;
                        let reconnected = self.connected_once;
                        self.connected_once = true;
                        return Ok(Event::Connected {
                            uri: self.uri.clone(),
                            reconnected,
                        });
                    }
                    Err(ConnectError::Fatal(error)) => return Err(error),
                    Err(ConnectError::Retry {
                        reason,
                        unreachable,
                    }) => return self.connect_failed(reason, unreachable),
                }
            };
            // The hub pings every 20 s (the original's `websockets` library too): a hub
            // that sends nothing at all for `idle_timeout` is gone or not a hub.
            let idle = self.config.idle_timeout;
            // A message already waiting is taken without arming a timer (one per message
            // was the eater's cost at high rates); only a wait gets the timeout.
            let waiting = ws.next().now_or_never();
            let message = match waiting {
                Some(message) => Ok(message),
                None => tokio::time::timeout(idle, ws.next()).await,
            };
            let Ok(message) = message else {
                self.ws = None;
                return self.lost(format!(
                    "the hub sent nothing, not even a ping, for {:.1} s",
                    idle.as_secs_f64()
                ));
            };
            if matches!(message, Some(Ok(Message::Text(_) | Message::Binary(_)))) {
                self.heard = true;
            }
            let parsed = match message {
                Some(Ok(Message::Text(text))) => self.parse(text.as_str(), false),
                // Text in a binary frame, as asked for: its UTF-8 checked once here
                // (`simdutf8`), refused as a text frame's would be (connection lost).
                Some(Ok(Message::Binary(bytes))) if self.binary => {
                    match hub_link::text_from_binary(bytes) {
                        Ok(text) => self.parse(text.as_str(), false),
                        Err(error) => {
                            self.ws = None;
                            return self.lost(error.to_string());
                        }
                    }
                }
                Some(Ok(Message::Binary(bytes))) => match std::str::from_utf8(&bytes) {
                    Ok(text) => self.parse(text, true),
                    Err(_) => Parsed::Invalid("binary message is not UTF-8".into()),
                },
                Some(Ok(Message::Close(frame))) => {
                    self.ws = None;
                    let (code, reason) = match frame {
                        Some(f) => (u16::from(f.code), f.reason.to_string()),
                        None => (1005, String::new()),
                    };
                    let reason = peer_text(&reason);
                    if code == close_code::BAD_HELLO {
                        return Err(Error::Refused(format!("{code} {reason}")));
                    }
                    let note = hub_link::close_note(code, &reason);
                    return self.lost(format!("hub closed the connection: {code} {reason}{note}"));
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => {
                    self.ws = None;
                    return self.lost(error.to_string());
                }
                None => {
                    self.ws = None;
                    return self.lost("connection ended".into());
                }
            };
            match parsed {
                Parsed::Pass(received) => return Ok(Event::Dumpling(received)),
                Parsed::Lagged(missed) => return Ok(Event::Lagged { missed }),
                // The hub's words reach a terminal or a log: escaped and cut here, for
                // every program built on this library.
                Parsed::Notice(text) => {
                    return Ok(Event::Notice {
                        text: peer_text(&text),
                    })
                }
                Parsed::Invalid(error) => {
                    return Ok(Event::Invalid {
                        error: peer_text(&error),
                    })
                }
                Parsed::Filtered => continue,
            }
        }
    }

    /// Close the connection with `code` and `reason` (e.g. 4101 on Ctrl-C, 4102 when
    /// full), waiting briefly for the hub's answer.
    pub async fn close(&mut self, code: u16, reason: &str) {
        if let Some(mut ws) = self.ws.take() {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let closing = async {
                ws.close(Some(frame)).await?;
                while let Some(message) = ws.next().await {
                    message?;
                }
                Ok::<(), WsError>(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
        }
    }

    /// The events as a stream, ending after the first error.
    pub fn into_stream(self) -> impl Stream<Item = Result<Event, Error>> {
        futures_util::stream::unfold(Some(self), |state| async move {
            let mut eater = state?;
            match eater.next_event().await {
                Ok(event) => Some((Ok(event), Some(eater))),
                Err(error) => Some((Err(error), None)),
            }
        })
    }

    /// A connection that was made is gone: retry (after a delay) or give up.
    fn lost(&mut self, reason: String) -> Result<Event, Error> {
        let healthy = self.heard
            && self
                .connected_at
                .is_some_and(|at| at.elapsed() >= HEALTHY_CONNECTION);
        if healthy {
            self.failures = 0;
        }
        self.connected_at = None;
        match self.next_attempt() {
            Some(retry_in) => Ok(Event::Disconnected { reason, retry_in }),
            None => Err(Error::GaveUp(reason)),
        }
    }

    /// An attempt to connect failed: retry (after a delay) or give up.
    fn connect_failed(&mut self, reason: String, unreachable: bool) -> Result<Event, Error> {
        // The address tried, before `next_attempt` moves on to the next hub of the list.
        let hub = self
            .addrs
            .get(self.current)
            .cloned()
            .unwrap_or_else(|| self.config.hub.clone());
        match self.next_attempt() {
            Some(retry_in) => Ok(Event::ConnectFailed {
                hub,
                reason,
                unreachable,
                reconnecting: self.connected_once,
                retry_in,
            }),
            None => Err(Error::CannotConnect {
                hub,
                reason,
                unreachable,
            }),
        }
    }

    /// Count a failure, move to the next hub of the list, and give the delay before the
    /// next attempt (`None`: the policy says give up).
    fn next_attempt(&mut self) -> Option<Duration> {
        if self.uris.len() > 1 {
            self.current = (self.current + 1) % self.uris.len();
            self.uri = self.uris[self.current].clone();
        }
        let policy = &self.config.reconnect;
        self.failures += 1;
        if !policy.enabled || policy.max_attempts.is_some_and(|max| self.failures > max) {
            return None;
        }
        let shift = self.failures.saturating_sub(1).min(16);
        let delay = policy.initial.saturating_mul(1 << shift).min(policy.max);
        self.retry_delay = Some(delay);
        Some(delay)
    }

    /// `parse_dumpling_with(text, AnyJson)`'s answer, without parsing the payload when it
    /// repeats, byte for byte, the same chef's previous one (checked then, and once on its
    /// own; `dumpling::repeat` says why a parse of the envelope alone is then exact).
    /// Remembers the payloads of large messages for next time.
    fn parse_metadata(&mut self, text: &str) -> Result<Metadata, serde_json::Error> {
        use dumpling::repeat::{head_with_zero_payload, split_envelope, REPEAT_MIN_BYTES};
        let full = |text: &str| parse_dumpling_with(text, dumpling::AnyJson).map(|(m, ())| m);
        let Some(start) =
            split_envelope(text.as_bytes()).filter(|_| text.len() >= REPEAT_MIN_BYTES)
        else {
            return full(text);
        };
        // The split is after ASCII bytes, so the head is UTF-8 as `text` is.
        let head = head_with_zero_payload(text.as_bytes(), start);
        let Ok(Ok(metadata)) = std::str::from_utf8(&head).map(full) else {
            return full(text);
        };
        let payload = &text.as_bytes()[start..text.len() - 1];
        // The envelope adds one level to the payload's; serde_json refuses past 127 and
        // `MAX_REPEAT_DEPTH` is far below.
        if self.repeats.repeated(&metadata.chef, payload).is_some() {
            return Ok(metadata);
        }
        let parsed = full(text);
        if parsed.is_ok() {
            self.repeats.remember(&metadata.chef, payload);
        }
        parsed
    }

    fn parse(&mut self, text: &str, binary: bool) -> Parsed {
        let dumpling: Dumpling = if self.config.payload_value {
            match serde_json::from_str(text) {
                Ok(d) => d,
                Err(error) => return Parsed::Invalid(error.to_string()),
            }
        } else {
            match self.parse_metadata(text) {
                // A notice's payload is read below: parse it in full (rare).
                Ok(metadata) if metadata.chef == dumpling::HUB_NOTICE_CHEF => {
                    match serde_json::from_str(text) {
                        Ok(d) => d,
                        Err(error) => return Parsed::Invalid(error.to_string()),
                    }
                }
                Ok(metadata) => Dumpling {
                    metadata,
                    payload: serde_json::Value::Null,
                },
                Err(error) => return Parsed::Invalid(error.to_string()),
            }
        };
        if dumpling.metadata.chef == dumpling::HUB_NOTICE_CHEF {
            let extra: Option<NoticeExtra> = serde_json::from_value(dumpling.payload.clone()).ok();
            if let Some(extra) = &extra {
                if let Some(stream) = &extra.nd_stream {
                    if self.stream.as_ref().is_some_and(|old| old != stream) {
                        // Another stream: its sequences say nothing of the old one's, so
                        // none of it is "already passed on".
                        self.seam = None;
                        self.last_seq = None;
                    }
                    // A name the hub would not read back is not kept (it is the hub's).
                    if stream.len() <= dumpling::eater_hello_keys::MAX_STREAM_BYTES {
                        self.stream = Some(stream.clone());
                    }
                }
                // Where a live-with-sequences read starts: resume from there even if
                // nothing arrives before the hub goes away.
                if let (None, Some(next)) = (self.last_seq, extra.nd_next_seq) {
                    self.last_seq = Some(next.saturating_sub(1));
                }
            }
            return match (
                extra.and_then(|e| e.notice),
                serde_json::from_value::<HubNotice>(dumpling.payload),
            ) {
                (Some(text), _) => Parsed::Notice(text),
                (None, Ok(notice)) => Parsed::Lagged(notice.lagged),
                (None, Err(error)) => Parsed::Invalid(error.to_string()),
            };
        }
        let seq = if self.config.resume || self.config.start.is_some() {
            serde_json::from_str::<SeqOnly>(text)
                .ok()
                .and_then(|s| s.metadata.nd_seq)
        } else {
            None
        };
        if let Some(seq) = seq {
            // Already passed on before a reconnect: never twice.
            if self.seam.is_some_and(|seam| seq <= seam) {
                return Parsed::Filtered;
            }
            self.last_seq = Some(self.last_seq.map_or(seq, |last| last.max(seq)));
        }
        if !self.config.filter.accepts(&dumpling) {
            return Parsed::Filtered;
        }
        Parsed::Pass(Box::new(Received {
            dumpling,
            raw: text.to_owned(),
            binary,
            seq,
        }))
    }

    /// Connect and send the hello; also whether the hub agreed to binary frames.
    async fn connect(&self) -> Result<(Ws, bool), ConnectError> {
        // The write buffer bounded: an eater writes only its hello, pongs and the close,
        // but a hub that pings and never reads made tungstenite queue every pong
        // (6 GB in 30 s). Past the bound only the latest pong waits.
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(64 * 1024)
            .write_buffer_size(0)
            .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES);
        // The link says which step ran out of time (no TCP connection: unreachable; no
        // answer to the upgrade: something else listens there).
        let (mut ws, response) = self
            .config
            .link
            .connect_frames_within(
                self.uri.as_str(),
                Some(ws_config),
                true,
                self.config.connect_timeout,
            )
            .await
            .map_err(classify_connect_error)?;
        let binary = hub_link::binary_granted(&response);
        let hello = serde_json::to_string(&self.hello()).unwrap_or_default();
        match tokio::time::timeout(self.config.connect_timeout, ws.send(Message::text(hello))).await
        {
            Ok(Ok(())) => Ok((ws, binary)),
            Ok(Err(e)) => Err(ConnectError::Retry {
                reason: format!("the hello could not be sent: {e}"),
                unreachable: false,
            }),
            Err(_) => Err(ConnectError::Retry {
                reason: format!(
                    "the hub took no hello within {:.1} s",
                    self.config.connect_timeout.as_secs_f64()
                ),
                unreachable: false,
            }),
        }
    }
}

/// Parse `text` as `serde_json::from_str::<Dumpling>` parses it (the same texts accepted,
/// the same refused), but hand the payload to `seed` instead of building a `Value`.
///
/// `seed` must ask for `deserialize_any` (as a `Value` does) for the answers to agree:
/// [`dumpling::AnyJson`] checks and forgets the payload; a printer can write it as it goes.
/// The document is read as the derived `Deserialize` of [`Dumpling`] reads it: an object
/// (each of `metadata` and `payload` exactly once, other keys skipped as `IgnoredAny`) or a
/// two-element array, then nothing but whitespace.
pub fn parse_dumpling_with<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    seed: S,
) -> Result<(Metadata, S::Value), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de.deserialize_struct("Dumpling", DUMPLING_FIELDS, DumplingVisitor(seed))?;
    de.end()?;
    Ok(parsed)
}

/// `Dumpling`'s fields, as its derived `Deserialize` names them.
const DUMPLING_FIELDS: &[&str] = &["metadata", "payload"];

/// [`parse_dumpling_with`]'s visitor: `Dumpling`'s derived visitor with a seed for the
/// payload.
struct DumplingVisitor<S>(S);

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for DumplingVisitor<S> {
    type Value = (Metadata, S::Value);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("struct Dumpling")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let metadata: Metadata = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &"struct Dumpling with 2 elements"))?;
        let payload = seq
            .next_element_seed(self.0)?
            .ok_or_else(|| de::Error::invalid_length(1, &"struct Dumpling with 2 elements"))?;
        Ok((metadata, payload))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seed = Some(self.0);
        let mut metadata: Option<Metadata> = None;
        let mut payload: Option<S::Value> = None;
        while let Some(field) = map.next_key::<DumplingField>()? {
            match field {
                DumplingField::Metadata => {
                    if metadata.is_some() {
                        return Err(de::Error::duplicate_field("metadata"));
                    }
                    metadata = Some(map.next_value()?);
                }
                DumplingField::Payload => match seed.take() {
                    Some(seed) => payload = Some(map.next_value_seed(seed)?),
                    None => return Err(de::Error::duplicate_field("payload")),
                },
                DumplingField::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        let metadata = metadata.ok_or_else(|| de::Error::missing_field("metadata"))?;
        let payload = payload.ok_or_else(|| de::Error::missing_field("payload"))?;
        Ok((metadata, payload))
    }
}

/// A key of the dumpling object, read as the derived `Deserialize` reads it (an
/// identifier: a string, compared exactly).
enum DumplingField {
    Metadata,
    Payload,
    Other,
}

impl<'de> Deserialize<'de> for DumplingField {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = DumplingField;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("field identifier")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DumplingField, E> {
                Ok(match v {
                    "metadata" => DumplingField::Metadata,
                    "payload" => DumplingField::Payload,
                    _ => DumplingField::Other,
                })
            }
        }
        de.deserialize_identifier(FieldVisitor)
    }
}

/// The parts of a `HubNoticeChef` payload beyond `lagged`.
#[derive(serde::Deserialize)]
struct NoticeExtra {
    #[serde(default)]
    notice: Option<String>,
    #[serde(default)]
    nd_next_seq: Option<u64>,
    #[serde(default)]
    nd_stream: Option<String>,
}

#[derive(serde::Deserialize)]
struct SeqOnly {
    metadata: SeqMeta,
}

#[derive(serde::Deserialize)]
struct SeqMeta {
    #[serde(default)]
    nd_seq: Option<u64>,
}

enum ConnectError {
    Fatal(Error),
    /// Worth another attempt; `reason` does not repeat the address (the event names it).
    Retry {
        reason: String,
        unreachable: bool,
    },
}

fn classify_connect_error(error: hub_link::LinkError) -> ConnectError {
    use hub_link::LinkError;
    match error {
        LinkError::NotAHub { uri, status } => ConnectError::Fatal(Error::NotAHub {
            uri,
            detail: format!("HTTP {status}"),
        }),
        LinkError::BadAddress(uri, detail) => {
            ConnectError::Fatal(Error::BadHubAddress(uri, detail))
        }
        LinkError::Connect {
            detail,
            unreachable,
            ..
        } => ConnectError::Retry {
            reason: detail,
            unreachable,
        },
        fatal => ConnectError::Fatal(Error::Link(fatal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumpling(chef: &str, kitchen: Option<&str>, driver: Driver) -> Dumpling {
        Dumpling {
            metadata: dumpling::Metadata {
                chef: chef.into(),
                kitchen: kitchen.map(Into::into),
                creation_time: 1.0,
                driver,
            },
            payload: serde_json::Value::Null,
        }
    }

    #[test]
    fn hub_uri_prefixes_ws_like_the_original() {
        assert_eq!(hub_uri("localhost:11348").unwrap(), "ws://localhost:11348");
        assert_eq!(hub_uri("ws://h:1/x").unwrap(), "ws://h:1/x");
        assert!(hub_uri("bad host:99999999").is_err());
    }

    #[test]
    fn filter_by_chef_kitchen_and_driver() {
        let mut f = Filter::default();
        assert!(f.accepts(&dumpling("A", None, Driver::Packet)));
        f.kitchens = vec!["k".into()];
        assert!(!f.accepts(&dumpling("A", None, Driver::Packet)));
        assert!(f.accepts(&dumpling("A", Some("k"), Driver::Packet)));
        f.packet = false;
        assert!(!f.accepts(&dumpling("A", Some("k"), Driver::Packet)));
        assert!(f.accepts(&dumpling("A", Some("k"), Driver::Interval)));
        f.chefs = vec!["B".into()];
        assert!(!f.accepts(&dumpling("A", Some("k"), Driver::Interval)));
    }

    #[test]
    fn backoff_grows_and_gives_up() {
        let mut config = EaterConfig::new("127.0.0.1:1", "t");
        config.reconnect.max_attempts = Some(3);
        let mut eater = Eater::new(config).unwrap();
        let delays: Vec<Duration> = (0..3)
            .map(|_| match eater.lost("x".into()) {
                Ok(Event::Disconnected { retry_in, .. }) => retry_in,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            delays,
            [500, 1000, 2000].map(Duration::from_millis).to_vec()
        );
        assert!(matches!(eater.lost("x".into()), Err(Error::GaveUp(_))));
    }

    /// A peer that accepts the connection and never answers the upgrade is not hinted as
    /// "is nd-hub running?" (the attempt's timeout said "no connection" and
    /// `unreachable`); a port nothing listens on still is.
    #[test]
    fn a_silent_peer_is_told_from_no_hub() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let attempt = |hub: String| {
            let mut config = EaterConfig::new(&hub, "t");
            config.connect_timeout = Duration::from_millis(300);
            let eater = Eater::new(config).unwrap();
            match rt.block_on(eater.connect()) {
                Err(ConnectError::Retry {
                    reason,
                    unreachable,
                }) => (reason, unreachable),
                Err(ConnectError::Fatal(e)) => panic!("{hub}: fatal {e}"),
                Ok(_) => panic!("{hub}: connected"),
            }
        };
        let (reason, unreachable) = attempt(silent.local_addr().unwrap().to_string());
        assert!(!unreachable, "{reason}");
        assert!(
            reason.contains("no answer to the WebSocket upgrade") && reason.contains("wss://"),
            "{reason}"
        );
        let (reason, unreachable) = attempt(closed_addr.to_string());
        assert!(unreachable, "{reason}");
    }

    /// Only a connection that brought messages and lasted starts the backoff over: a hub
    /// that accepts and drops every connection is not retried every 0.5 s forever.
    #[test]
    fn only_a_healthy_connection_starts_the_backoff_over() {
        let mut config = EaterConfig::new("127.0.0.1:1", "t");
        config.reconnect.max_attempts = Some(3);
        let mut eater = Eater::new(config).unwrap();
        let mut lose = |heard: bool, lasted: Duration| {
            eater.connected_at = std::time::Instant::now().checked_sub(lasted);
            eater.heard = heard;
            eater.lost("x".into())
        };
        let delay = |e: Result<Event, Error>| match e {
            Ok(Event::Disconnected { retry_in, .. }) => retry_in.as_millis(),
            other => panic!("{other:?}"),
        };
        // Dropped at once, silent, or heard but brief: each counts.
        assert_eq!(delay(lose(false, Duration::ZERO)), 500);
        assert_eq!(delay(lose(false, Duration::from_secs(60))), 1000);
        assert_eq!(delay(lose(true, Duration::from_secs(1))), 2000);
        // A long connection that brought messages: from the start again.
        assert_eq!(delay(lose(true, Duration::from_secs(6))), 500);
        assert_eq!(delay(lose(false, Duration::ZERO)), 1000);
        assert_eq!(delay(lose(false, Duration::ZERO)), 2000);
        assert!(matches!(lose(false, Duration::ZERO), Err(Error::GaveUp(_))));
    }

    #[test]
    fn notices_become_lag_events_and_bad_messages_are_invalid() {
        let mut eater = Eater::new(EaterConfig::new("127.0.0.1:1", "t")).unwrap();
        let notice = r#"{"metadata":{"chef":"HubNoticeChef","kitchen":null,"creation_time":1.0,"driver":"interval"},"payload":{"lagged":7}}"#;
        assert!(matches!(eater.parse(notice, false), Parsed::Lagged(7)));
        assert!(matches!(
            eater.parse(r#"{"metadata": {"chef": "MinimalChef"}}"#, false),
            Parsed::Invalid(_)
        ));
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }

        /// Replaces up to two characters somewhere in `text` with one of `edits`.
        fn edit(&mut self, text: &mut String, edits: &[&str]) {
            let mut cut = (self.next() % (text.len() as u64 + 1)) as usize;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut end = (cut + (self.next() % 3) as usize).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(cut..end, self.pick(edits));
        }

        /// A payload-ish JSON text: nested, numbers at the edges of their range, escapes.
        fn json(&mut self, depth: u32, out: &mut String) {
            const SCALARS: &[&str] = &[
                "null",
                "true",
                "1",
                "-0",
                "2.5e-3",
                "1e308",
                "18446744073709551616",
                "\"x\"",
                "\"\\u00e9\\ud83d\\ude00\"",
                "\"\\n\"",
                "\"é\"",
            ];
            match self.next() % if depth > 3 { 1 } else { 3 } {
                0 => out.push_str(self.pick(SCALARS)),
                1 => {
                    out.push('[');
                    for i in 0..self.next() % 4 {
                        if i > 0 {
                            out.push(',');
                        }
                        self.json(depth + 1, out);
                    }
                    out.push(']');
                }
                _ => {
                    out.push('{');
                    for i in 0..self.next() % 4 {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(self.pick(&["\"a\":", "\"b\" : ", "\"\\u0061\":"]));
                        self.json(depth + 1, out);
                    }
                    out.push('}');
                }
            }
        }

        /// A dumpling-ish text: the envelope's keys in any order, repeated or missing, good
        /// and bad metadata, extra keys, the array form.
        fn dumpling(&mut self) -> String {
            const METADATA: &[&str] = &[
                r#"{"chef": "C", "kitchen": "k", "creation_time": 1.5, "driver": "packet"}"#,
                r#"{"driver": "interval", "creation_time": 17, "chef": "C\u00e9", "kitchen": null}"#,
                r#"{"chef": "C", "kitchen": "k", "creation_time": 1.5, "driver": "packet", "nd_seq": 4, "x": [1e400]}"#,
                r#"{"chef": "C", "creation_time": 1.5, "driver": "packet"}"#,
                r#"{"chef": "C", "kitchen": "k", "creation_time": "1.5", "driver": "packet"}"#,
                r#"{"chef": "C", "kitchen": "k", "creation_time": 1.5, "driver": "other"}"#,
                r#"{"chef": 1, "kitchen": "k", "creation_time": 1.5, "driver": "packet"}"#,
                r#"{"chef": "C", "chef": "D", "kitchen": "k", "creation_time": 1.5, "driver": "packet"}"#,
                r#"["C", "k", 1.5, "packet"]"#,
                "null",
            ];
            let mut out = String::new();
            if self.next().is_multiple_of(2) {
                // A well-formed envelope, either order, maybe with an extra key.
                let mut payload = String::new();
                self.json(0, &mut payload);
                let metadata = self.pick(&METADATA[..3]);
                let extra = self.pick(&["", "\"x\": 1e400, ", "\"nd\": {\"a\": []}, "]);
                return if self.next().is_multiple_of(2) {
                    format!("{{{extra}\"metadata\": {metadata}, \"payload\": {payload}}}")
                } else {
                    format!("{{\"payload\": {payload}, {extra}\"metadata\": {metadata}}}")
                };
            }
            if self.next().is_multiple_of(8) {
                out.push('[');
                out.push_str(self.pick(METADATA));
                if !self.next().is_multiple_of(4) {
                    out.push(',');
                    self.json(0, &mut out);
                }
                if self.next().is_multiple_of(4) {
                    out.push_str(", 3");
                }
                out.push(']');
                return out;
            }
            out.push('{');
            for i in 0..self.next() % 5 {
                if i > 0 {
                    out.push(',');
                }
                match self.next() % 5 {
                    0 | 1 => {
                        out.push_str("\"metadata\": ");
                        out.push_str(self.pick(METADATA));
                    }
                    2 | 3 => {
                        out.push_str(self.pick(&["\"payload\": ", "\"pay\\u006coad\":"]));
                        self.json(0, &mut out);
                    }
                    _ => {
                        out.push_str(self.pick(&["\"x\": ", "\"nd_seq\": ", "\"Payload\": "]));
                        out.push_str(self.pick(&["1", "1e400", "[\"\\ud800\"]", "{}"]));
                    }
                }
            }
            out.push('}');
            out
        }
    }

    /// `parse_dumpling_with` accepts and refuses what `from_str::<Dumpling>` does, with the
    /// same metadata; and an eater with `payload_value` off passes on the same events.
    #[test]
    fn parse_without_a_value_agrees_with_the_full_parse() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        const EDITS: &[&str] = &[
            "", ",", "]", "}", "\"", "\\ud800", "1e400", "01", ":", "é", "[", "{",
        ];
        let mut full = Eater::new(EaterConfig::new("127.0.0.1:1", "t")).unwrap();
        let mut config = EaterConfig::new("127.0.0.1:1", "t");
        config.payload_value = false;
        let mut lazy = Eater::new(config).unwrap();
        let (mut accepted, mut refused) = (0, 0);
        for i in 0..40_000 {
            let mut text = rng.dumpling();
            if i % 2 == 1 {
                rng.edit(&mut text, EDITS);
            }
            let old = serde_json::from_str::<Dumpling>(&text);
            let new = parse_dumpling_with(&text, dumpling::AnyJson);
            match (&old, &new) {
                (Ok(d), Ok((metadata, ()))) => {
                    accepted += 1;
                    assert_eq!(&d.metadata, metadata, "{text}");
                }
                (Err(_), Err(_)) => refused += 1,
                _ => panic!("disagree on {text}: {old:?} against {new:?}"),
            }
            match (full.parse(&text, false), lazy.parse(&text, false)) {
                (Parsed::Pass(a), Parsed::Pass(b)) => {
                    assert_eq!(a.dumpling.metadata, b.dumpling.metadata);
                    assert_eq!(
                        (a.raw, b.dumpling.payload),
                        (b.raw, serde_json::Value::Null)
                    );
                }
                (Parsed::Invalid(_), Parsed::Invalid(_)) | (Parsed::Filtered, Parsed::Filtered) => {
                }
                (Parsed::Lagged(a), Parsed::Lagged(b)) => assert_eq!(a, b),
                _ => panic!("the eaters disagree on {text}"),
            }
        }
        assert!(
            accepted > 10_000 && refused > 10_000,
            "{accepted} {refused}"
        );
        // Hub notices still carry their payload.
        let notice = r#"{"metadata":{"chef":"HubNoticeChef","kitchen":null,"creation_time":1.0,"driver":"interval"},"payload":{"lagged":7}}"#;
        assert!(matches!(lazy.parse(notice, false), Parsed::Lagged(7)));
    }

    /// Large tables that repeat (the kitchen's compact envelope), clean and with random
    /// edits anywhere, each seen again right after: the eater that skips a repeated payload
    /// passes on and refuses exactly what a full parse does, with the same metadata.
    #[test]
    fn repeated_tables_agree_with_the_full_parse() {
        let mut rng = Rng(0x0bad_cafe_1234_5678);
        const EDITS: &[&str] = &[
            "",
            ",",
            "]",
            "}",
            "{",
            "\"",
            "\\ud800",
            "1e400",
            "01",
            ":",
            "é",
            " ",
            ",\"payload\":",
            ",\"metadata\":{}",
            ",\"payload\":1",
        ];
        let table = |n: usize, salt: usize| {
            let rows: Vec<String> = (0..n)
                .map(|i| format!("\"n{i}.test\":{{\"count\":{},\"latest\":1.5}}", i + salt))
                .collect();
            format!("{{\"lookups_seen\":{{{}}}}}", rows.join(","))
        };
        let bases: Vec<String> = [("DNSLookupChef", 0), ("DNSLookupChef", 1), ("TLSServerNameChef", 2)]
            .iter()
            .map(|(chef, salt)| {
                format!(
                    "{{\"metadata\":{{\"chef\":\"{chef}\",\"kitchen\":\"k\",\"creation_time\":1.5,\"driver\":\"interval\"}},\"payload\":{}}}",
                    table(40, *salt)
                )
            })
            .collect();
        let mut config = EaterConfig::new("127.0.0.1:1", "t");
        config.payload_value = false;
        let mut lazy = Eater::new(config).unwrap();
        let (mut accepted, mut refused) = (0, 0);
        for i in 0..6_000 {
            let mut text = bases[(rng.next() % 3) as usize].clone();
            if i % 2 == 1 {
                rng.edit(&mut text, EDITS);
            }
            for _ in 0..2 {
                match (
                    serde_json::from_str::<Dumpling>(&text),
                    lazy.parse(&text, false),
                ) {
                    (Ok(d), Parsed::Pass(b)) => {
                        accepted += 1;
                        assert_eq!(d.metadata, b.dumpling.metadata, "{text}");
                    }
                    (Err(_), Parsed::Invalid(_)) => refused += 1,
                    (old, _) => panic!("disagree on {text}: {old:?}"),
                }
            }
        }
        assert!(accepted > 4_000 && refused > 500, "{accepted} {refused}");
        assert!(
            lazy.repeats.hits() > 3_000,
            "repeats skipped: {}",
            lazy.repeats.hits()
        );
    }
}
