//! Hub federation over NATS JetStream (`nd-hub --nats URL[,URL...]`).
//!
//! Without `--nats` none of this runs: no connection, no task, kitchens publish straight
//! into the local fan-out ring as before.
//!
//! With `--nats`, every valid dumpling a kitchen sends to this hub goes out once
//! ([`Publisher::submit`]) to the JetStream stream (default `ND_DUMPLINGS`, file storage,
//! age and byte limits) on the subject `<prefix>.<kitchen>.<chef>.<driver>`
//! ([`subject`]), with `Nats-Msg-Id` set to the dumpling's stable id (`metadata.nd_id`,
//! put there by `nd-sniff`, prefixed with its kitchen's subject token so one kitchen's
//! ids cannot stand for another's; else one the hub makes), so a dumpling re-sent after a
//! kitchen failover is stored once (JetStream's duplicate window). The publisher task
//! ([`publish`]) keeps up to `max_in_flight` publishes waiting for their acks and
//! re-publishes everything unacknowledged, in order, after an error: at-least-once into
//! the stream, made exactly-once by the id.
//!
//! Every hub, the publishing one included, delivers to its eaters what it reads back
//! from the stream through one ordered consumer ([`consume`]), so each eater sees each
//! stored dumpling once and every hub sees the fleet in the same (stream) order. The
//! consumer starts at the stream's next sequence when the hub starts (before any kitchen
//! is accepted). After any error, a stall, or a disagreement with the stream leader it is
//! re-created from the last sequence the leader confirmed, and what is read again is
//! dropped by `Nats-Msg-Id` ([`reader`]): a NATS node or the whole cluster going away
//! delays dumplings but neither loses nor repeats them. The cost is one NATS round trip
//! for local dumplings too.
//!
//! The payload is the kitchen's bytes, unchanged; a binary frame is marked with the
//! `Nd-Binary` header and goes back out as binary.

pub mod args;
pub mod interest;
pub mod linger;
pub mod nats_link;
pub mod publish;
pub mod reader;
pub mod replay;
pub mod seen;
pub mod status;
pub mod stream_check;
pub mod subject;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info};

use crate::state::{stopped, Shared};

pub use args::FleetArgs;

/// Header marking a dumpling that arrived in a binary frame.
pub const BINARY_HEADER: &str = "Nd-Binary";
/// Header naming the hub that published a dumpling (for operators; delivery ignores it).
pub const ORIGIN_HEADER: &str = "Nd-Origin";
/// Longest `metadata.nd_id` used as `Nats-Msg-Id`; a longer one is ignored (the hub makes
/// its own id) so an outsider cannot grow the dedup table's keys without bound.
pub const MAX_ID_BYTES: usize = 128;

/// Validated settings of the NATS federation.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// NATS server URLs (`nats://`, `tls://`, with optional `user:pass@`).
    pub servers: Vec<async_nats::ServerAddr>,
    /// A NATS `.creds` file (JWT + NKey seed).
    pub creds: Option<PathBuf>,
    /// A token for token authentication.
    pub token: Option<String>,
    /// User and password.
    pub user_password: Option<(String, String)>,
    /// Extra root certificates (PEM) to trust for TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
    /// Require TLS even for `nats://` URLs.
    pub tls_required: bool,
    /// JetStream stream name.
    pub stream: String,
    /// Subject prefix (the stream holds `<prefix>.>`).
    pub subject_prefix: String,
    /// Oldest dumpling the stream keeps.
    pub max_age: Duration,
    /// Most bytes the stream keeps (oldest dropped first).
    pub max_bytes: i64,
    /// Stream replicas (3 on a 3-node cluster survives the loss of one node).
    pub replicas: usize,
    /// JetStream duplicate window: how long a dumpling id is remembered.
    pub duplicate_window: Duration,
    /// This hub's id in the fleet (`Nd-Origin`, fallback dumpling ids).
    pub hub_id: String,
    /// Dumplings waiting to be published before kitchens are slowed down.
    pub publish_queue: usize,
    /// Publishes waiting for their JetStream ack at once.
    pub max_in_flight: usize,
    /// JetStream domain of the server this hub uses (a site behind a leaf node).
    pub domain: Option<String>,
    /// JetStream domains whose stream of the same name this hub's stream sources.
    pub source_domains: Vec<String>,
    /// Dumplings per second one replaying eater's consumer may deliver.
    pub replay_rate: u32,
    /// Eaters with their own (replay) consumer at once on this hub.
    pub replay_max_eaters: usize,
    /// Core NATS subject prefix of the hubs' status reports ([`status`]).
    pub status_prefix: String,
    /// How often this hub publishes its status report.
    pub status_period: Duration,
    /// How long dumplings read from the stream are gathered before the eaters get them
    /// ([`linger`]; zero: each at once).
    pub deliver_linger: Duration,
}

/// Why the federation could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The `.creds` file could not be read.
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Creds {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No NATS server answered.
    #[error(
        "cannot connect to NATS at {servers} (is nats-server running? check --nats): {source}"
    )]
    Connect {
        /// The URLs tried.
        servers: String,
        /// Why.
        source: async_nats::ConnectError,
    },
    /// A stream of the configured name exists for other subjects.
    #[error("JetStream stream {stream}: {detail}")]
    OtherSubjects {
        /// The stream name.
        stream: String,
        /// What it takes and what to do.
        detail: String,
    },
    /// The stream could not be created or read in time.
    #[error("JetStream stream {stream} is not available after {secs} s (is JetStream enabled, `nats-server -js`?): {detail}")]
    Stream {
        /// The stream name.
        stream: String,
        /// How long we tried.
        secs: u64,
        /// The last error.
        detail: String,
    },
}

/// One dumpling on its way to JetStream.
#[derive(Debug, Clone)]
pub struct Outgoing {
    subject: String,
    msg_id: String,
    payload: Bytes,
    binary: bool,
}

/// Counters of the federation, for logs and status.
#[derive(Debug, Default)]
pub struct FleetStats {
    /// Dumplings stored in the stream (acknowledged, new).
    pub acked: AtomicU64,
    /// Publishes JetStream acknowledged as duplicates (re-sent dumplings, deduplicated).
    pub duplicates: AtomicU64,
    /// Publishes retried after an error.
    pub retried: AtomicU64,
    /// Dumplings read from the stream and handed to the local eaters.
    pub delivered: AtomicU64,
    /// Consumer (re)creations.
    pub consumers: AtomicU64,
    /// Messages read from the stream that no hub would have published (not a valid
    /// dumpling, a hub-reserved chef name, over `--max-message-bytes`): someone else
    /// wrote to the stream's subjects. Dropped, counted, never delivered.
    pub unchecked: AtomicU64,
    /// Dumplings NATS or the stream refused for good (over the server's `max_payload` or
    /// the stream's message size): dropped and counted, never retried, so one cannot stop
    /// everything behind it.
    pub refused: AtomicU64,
    /// Dumplings queued for the publisher ([`Publisher::submit`]).
    pub submitted: AtomicU64,
    /// Of those, the ones the publisher is done with: stored (new or duplicate) or
    /// refused for good. `submitted - settled` are still to be published.
    pub settled: AtomicU64,
    /// Dumplings a kitchen connection had read and was handing to the publisher when the
    /// hub stopped (not queued).
    pub dropped_at_stop: AtomicU64,
    /// The NATS connection: up or down, since when, how often lost.
    pub nats: nats_link::NatsLink,
}

impl FleetStats {
    /// Dumplings queued for JetStream and not stored (nor refused for good) yet.
    pub fn unpublished(&self) -> u64 {
        self.submitted
            .load(Ordering::Relaxed)
            .saturating_sub(self.settled.load(Ordering::Relaxed))
    }
}

/// What [`Publisher::submit`] did with a dumpling.
#[derive(Debug, PartialEq, Eq)]
pub enum Submitted {
    /// Queued for JetStream.
    Queued,
    /// Not queued: with its headers it is larger than the NATS server takes.
    TooLarge {
        /// Its size on the wire (headers and payload).
        bytes: usize,
        /// The server's `max_payload`.
        max: usize,
    },
    /// The hub is shutting down.
    Stopping,
    /// Not queued: the queue stayed full for [`SUBMIT_STALL_LIMIT`] (NATS away or too
    /// slow). The kitchen is then closed with 1013: while it waits this connection reads
    /// nothing, so it would not see its kitchen leave (its FIN waits behind the unread
    /// bytes), and dead connections held every `--max-kitchens` slot.
    Stalled,
}

/// How long one dumpling may wait for room in the publisher's queue ([`Submitted::Stalled`]).
pub const SUBMIT_STALL_LIMIT: Duration = Duration::from_secs(dumpling::close_code::STALLED_SECS);

/// The kitchen-facing handle: hands dumplings to the publisher task.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Outgoing>,
    prefix: Arc<str>,
    hub_id: Arc<str>,
    /// Random per run: hub-made ids of a hub restarted under the same `--nats-hub-id`
    /// must not repeat the last run's, or JetStream's duplicate window would drop them.
    run_id: Arc<str>,
    next_id: Arc<AtomicU64>,
    /// Shared counters.
    pub stats: Arc<FleetStats>,
    /// Replay for eaters and the interest union (`None` only in unit tests).
    pub service: Option<Arc<replay::Service>>,
    /// The NATS connection, for the server's `max_payload` (`None` only in unit tests).
    client: Option<async_nats::Client>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    metadata: Meta<'a>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow)]
    chef: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    kitchen: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    driver: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    nd_id: Option<std::borrow::Cow<'a, str>>,
}

impl Publisher {
    /// Build the outgoing form of a valid dumpling: subject from its metadata (the
    /// connection's kitchen name when `metadata.kitchen` is null) and its id.
    pub fn prepare(&self, message: Message, connection_kitchen: &str) -> Outgoing {
        let binary = matches!(message, Message::Binary(_));
        let payload = message.into_data();
        let (subject, id) = match serde_json::from_slice::<Envelope<'_>>(&payload) {
            Ok(env) => {
                let m = env.metadata;
                let kitchen = m.kitchen.as_deref().unwrap_or(connection_kitchen);
                // The id is the kitchen's word, so it is made the kitchen's own: under
                // `--auth` another kitchen that sent the same `nd_id` first made JetStream
                // drop this one as a duplicate (it cannot send under this kitchen's name).
                let id = m
                    .nd_id
                    .filter(|id| !id.is_empty() && id.len() <= MAX_ID_BYTES)
                    .map(|id| format!("{}:{id}", subject::escape_token(kitchen)));
                (
                    subject::dumpling_subject(&self.prefix, Some(kitchen), &m.chef, &m.driver),
                    id,
                )
            }
            // The kitchen task already checked it; a shape serde cannot borrow (escaped
            // strings are Cow-owned, so this is only reached for odd input) still goes out.
            Err(_) => (
                subject::dumpling_subject(&self.prefix, Some(connection_kitchen), "~", "~"),
                None,
            ),
        };
        let msg_id = id.unwrap_or_else(|| {
            format!(
                "{}-{}-{}",
                self.hub_id,
                self.run_id,
                self.next_id.fetch_add(1, Ordering::Relaxed)
            )
        });
        Outgoing {
            subject,
            msg_id,
            payload,
            binary,
        }
    }

    /// Queue one dumpling for JetStream, waiting while the queue is full (back-pressure
    /// on the kitchen, never on eaters). A dumpling the NATS server cannot carry (its
    /// `max_payload` counts the headers too, so a dumpling just under the hub's own 1 MiB
    /// cap may be over NATS's default 1 MiB) is refused here, before it could stop the
    /// publisher.
    pub async fn submit(
        &self,
        message: Message,
        connection_kitchen: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Submitted {
        let out = self.prepare(message, connection_kitchen);
        if let Some(client) = &self.client {
            let (bytes, max) = (
                publish::wire_bytes(&out, &self.hub_id),
                client.max_payload(),
            );
            if bytes > max {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                return Submitted::TooLarge { bytes, max };
            }
        }
        // Room in the queue (NATS keeping up): no timer is armed for the dumpling.
        let submitted = match self.tx.try_send(out) {
            Ok(()) => Submitted::Queued,
            Err(mpsc::error::TrySendError::Closed(_)) => Submitted::Stopping,
            Err(mpsc::error::TrySendError::Full(out)) => tokio::select! {
                sent = self.tx.send(out) => match sent {
                    Ok(()) => Submitted::Queued,
                    Err(_) => Submitted::Stopping,
                },
                _ = stopped(shutdown) => Submitted::Stopping,
                // Not queued, and never confirmed to its kitchen: it sends it again.
                () = tokio::time::sleep(SUBMIT_STALL_LIMIT) => return Submitted::Stalled,
            },
        };
        let counter = match submitted {
            Submitted::Queued => &self.stats.submitted,
            _ => &self.stats.dropped_at_stop,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        submitted
    }
}

/// A running federation: the publisher handle and the background tasks.
#[derive(Debug)]
pub struct Fleet {
    /// Where kitchens hand their dumplings.
    pub publisher: Publisher,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a stopping hub waits for its publisher to store what kitchens handed it (NATS
/// answers in milliseconds when it is up; while it is down nothing would come of a longer
/// wait, and the count of what was left is said).
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

impl Fleet {
    /// On hub shutdown, once the kitchens' connections are closed: wait up to `grace` for
    /// the publisher to store every dumpling it was handed (it was aborted at once, and
    /// 2 206 accepted dumplings were lost without a word while NATS was slow). Returns
    /// how many are left.
    pub async fn drain(&self, grace: Duration) -> u64 {
        let stats = &self.publisher.stats;
        let until = tokio::time::Instant::now() + grace;
        while stats.unpublished() > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stats.unpublished()
    }

    /// Stop the background tasks (called on hub shutdown, after [`Fleet::drain`]) and
    /// log the counters, with what was accepted from kitchens and never stored.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
        let s = &self.publisher.stats;
        let unpublished = s.unpublished();
        let dropped_at_stop = s.dropped_at_stop.load(Ordering::Relaxed);
        if unpublished + dropped_at_stop > 0 {
            tracing::warn!(
                unpublished,
                dropped_at_stop,
                "fleet: {} dumplings accepted from kitchens were not stored in the stream \
                 before the hub stopped (NATS did not take them within {:?}); they are lost \
                 unless their kitchens send them again (dumpling ids and --resend-tail, to \
                 another hub)",
                unpublished + dropped_at_stop,
                DRAIN_GRACE
            );
        }
        info!(
            unpublished,
            dropped_at_stop,
            stored = s.acked.load(Ordering::Relaxed),
            duplicates = s.duplicates.load(Ordering::Relaxed),
            retried = s.retried.load(Ordering::Relaxed),
            refused = s.refused.load(Ordering::Relaxed),
            unchecked = s.unchecked.load(Ordering::Relaxed),
            delivered = s.delivered.load(Ordering::Relaxed),
            "fleet: stopped"
        );
    }
}

/// Connect to NATS with the options' credentials and TLS settings; the connection's
/// events go to `stats.nats`.
pub async fn connect(
    options: &FleetOptions,
    stats: &Arc<FleetStats>,
) -> Result<async_nats::Client, FleetError> {
    let mut connect = match &options.creds {
        // Read here, bounded and regular files only (the client library would read a
        // FIFO or /dev/zero forever).
        Some(path) => {
            let creds_error = |source| FleetError::Creds {
                path: path.clone(),
                source,
            };
            let bytes = bounded_read::read_bounded(path, 64 << 10).map_err(creds_error)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| creds_error(std::io::Error::other("not a text file (not UTF-8)")))?;
            async_nats::ConnectOptions::with_credentials(&text).map_err(creds_error)?
        }
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(token) = &options.token {
        connect = connect.token(token.clone());
    }
    if let Some((user, password)) = &options.user_password {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &options.tls_ca {
        connect = connect.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &options.tls_client {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    let events = Arc::clone(stats);
    let servers: Arc<str> = options
        .servers
        .iter()
        .map(|s| format!("{}:{}", s.host(), s.port()))
        .collect::<Vec<_>>()
        .join(",")
        .into();
    connect = connect
        .require_tls(options.tls_required)
        .name(format!("nd-hub {}", options.hub_id))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        // Keep retrying quickly: a hub with no NATS cannot deliver anything.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).min(2000))
        })
        .event_callback(move |event| {
            let events = Arc::clone(&events);
            let servers = servers.clone();
            async move { events.nats.on_event(&event, &servers) }
        });
    let client = connect
        .connect(options.servers.clone())
        .await
        .map_err(|source| FleetError::Connect {
            servers: options
                .servers
                .iter()
                .map(|s| format!("{}:{}", s.host(), s.port()))
                .collect::<Vec<_>>()
                .join(","),
            source,
        })?;
    stats.nats.mark_connected();
    Ok(client)
}

/// `detail` with what to do when JetStream refused the stream for its size: the stream
/// reserves `--nats-max-bytes` of file storage up front, and a server with less room
/// answers "insufficient storage resources", which named neither the flag nor the size.
fn storage_hint(detail: String, max_bytes: i64) -> String {
    if detail.contains("insufficient storage") {
        format!(
            "{detail}; the stream asks for --nats-max-bytes {max_bytes} bytes of JetStream \
             file storage: lower it, or give nats-server more (its max_file_store, or free \
             disk under its -sd directory)"
        )
    } else {
        detail
    }
}

/// The stream configuration for the options.
pub fn stream_config(options: &FleetOptions) -> stream::Config {
    stream::Config {
        name: options.stream.clone(),
        subjects: vec![format!("{}.>", options.subject_prefix)],
        max_age: options.max_age,
        max_bytes: options.max_bytes,
        storage: stream::StorageType::File,
        num_replicas: options.replicas,
        duplicate_window: options.duplicate_window,
        discard: stream::DiscardPolicy::Old,
        // Sites behind leaf nodes: their streams are copied in (with their subjects and
        // Nats-Msg-Id) whenever the leaf link is up, from where the copy left off.
        sources: (!options.source_domains.is_empty()).then(|| {
            options
                .source_domains
                .iter()
                .map(|domain| stream::Source {
                    name: options.stream.clone(),
                    external: Some(stream::External {
                        api_prefix: format!("$JS.{domain}.API"),
                        delivery_prefix: None,
                    }),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    }
}

/// Create the stream (or find it), retrying for up to 30 s while a JetStream cluster
/// elects its leaders. Returns the stream's last sequence.
pub async fn ensure_stream(
    js: &jetstream::Context,
    options: &FleetOptions,
) -> Result<u64, FleetError> {
    let limit = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + limit;
    let mut last_error;
    let mut told = false;
    loop {
        match js.get_or_create_stream(stream_config(options)).await {
            Ok(mut stream) => match stream.info().await {
                // A stream of this name made by someone else for other subjects would
                // take none of the hub's publishes ("no responders", forever).
                Ok(info) if !takes_subjects(&info.config.subjects, options) => {
                    return Err(FleetError::OtherSubjects {
                        stream: options.stream.clone(),
                        detail: other_subjects(&info.config.subjects, options),
                    })
                }
                Ok(info) => return Ok(info.state.last_sequence),
                Err(e) => last_error = e.to_string(),
            },
            Err(e) => last_error = e.to_string(),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(FleetError::Stream {
                stream: options.stream.clone(),
                secs: limit.as_secs(),
                detail: storage_hint(last_error, options.max_bytes),
            });
        }
        // Said once at WARN: the hub opens no port until the stream answers, and a
        // JetStream that cannot store (its disk full, no quorum) left it silent for 30 s.
        if !told {
            told = true;
            tracing::warn!(stream = %options.stream,
                "fleet: the JetStream stream is not ready ({}); retrying for up to {} s before \
                 giving up (the hub's ports open once it answers)",
                dumpling::text::escape(&last_error, 512), limit.as_secs());
        } else {
            debug!(error = %last_error, "fleet: stream not ready; retrying");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether a stream with `subjects` stores what this hub publishes (`<prefix>.>`).
fn takes_subjects(subjects: &[String], options: &FleetOptions) -> bool {
    let wanted = format!("{}.>", options.subject_prefix);
    subjects.iter().any(|s| *s == wanted || s == ">")
}

/// What to say about a stream of the hub's name that takes other subjects.
fn other_subjects(subjects: &[String], options: &FleetOptions) -> String {
    format!(
        "the stream exists but takes {:?}, not {}.> (made or changed by someone else): nothing this hub publishes is stored; delete it (`nats stream rm {}`) or choose --nats-stream / --nats-subject-prefix",
        subjects
            .iter()
            .map(|s| dumpling::text::escape(s, 64))
            .collect::<Vec<_>>(),
        options.subject_prefix,
        options.stream
    )
}

/// Create the stream again when it is gone (one try; the publisher calls this again on
/// later failures). Someone deleted it: the hub is configured to use it, so it puts it
/// back with its own settings, and says so.
async fn recreate_stream(js: &jetstream::Context, options: &FleetOptions) {
    if let Ok(stream) = js.get_stream(&options.stream).await {
        // There, but changed by someone to take other subjects: say so (a publish to it
        // has no responder); the hub does not change another's stream behind its back.
        let subjects = &stream.cached_info().config.subjects;
        if !takes_subjects(subjects, options) {
            tracing::warn!(stream = %options.stream, "fleet: {}", other_subjects(subjects, options));
        }
        return;
    }
    match js.get_or_create_stream(stream_config(options)).await {
        Ok(_) => {
            tracing::warn!(stream = %options.stream, "fleet: the stream was gone (deleted?); created it again with this hub's settings")
        }
        Err(error) => {
            tracing::warn!(stream = %options.stream, %error, "fleet: the stream is gone and could not be created again; retrying")
        }
    }
}

/// Connect, make sure the stream exists, and start the publisher and the consumer.
/// Call before accepting kitchens, so the consumer starts before their first dumpling.
pub async fn start(options: &FleetOptions, shared: Arc<Shared>) -> Result<Fleet, FleetError> {
    let stats = Arc::new(FleetStats::default());
    let client = connect(options, &stats).await?;
    // The connected server's version decides the interest filter's form (one subject on
    // 2.9, an exact list from 2.10); a fleet's servers are expected to share a version.
    let server_version = client.server_info().version;
    let multi_filter = interest::supports_multi_filter(&server_version);
    let js = match &options.domain {
        Some(domain) => jetstream::with_domain(client.clone(), domain),
        None => jetstream::new(client.clone()),
    };
    let last = ensure_stream(&js, options).await?;
    info!(
        stream = %options.stream,
        prefix = %options.subject_prefix,
        hub_id = %options.hub_id,
        next_sequence = last + 1,
        server_version = %server_version,
        multi_filter,
        "fleet: federating over NATS JetStream"
    );
    let (tx, rx) = mpsc::channel(options.publish_queue.max(1));
    let union = interest::Union::new(&options.subject_prefix, multi_filter);
    let service = Arc::new(replay::Service::new(
        js.clone(),
        &options.stream,
        &options.subject_prefix,
        union.clone(),
        options.replay_rate,
        options.replay_max_eaters,
    ));
    let publisher = Publisher {
        tx,
        prefix: options.subject_prefix.as_str().into(),
        hub_id: options.hub_id.as_str().into(),
        run_id: args::random_id().into(),
        next_id: Arc::new(AtomicU64::new(0)),
        stats: stats.clone(),
        service: Some(service),
        client: Some(client.clone()),
    };
    let mut tasks = status::start(client.clone(), shared.clone(), options, stats.clone());
    let recreate_js = js.clone();
    let recreate_options = options.clone();
    tasks.push(tokio::spawn(publish::publish_loop(
        client,
        rx,
        options.max_in_flight.max(1),
        options.hub_id.clone(),
        stats.clone(),
        move || {
            let (js, options) = (recreate_js.clone(), recreate_options.clone());
            async move { recreate_stream(&js, &options).await }
        },
    )));
    let sink_shared = shared.clone();
    let sink_stats = stats.clone();
    // What is read back is checked as kitchen ingest checks it (stream_check.rs): the
    // stream takes whatever any NATS client with publish rights on its subjects sends.
    let mut stream_check = stream_check::StreamCheck::new(shared.config.max_message_bytes);
    let to_ring = (!options.deliver_linger.is_zero()).then(|| {
        let (tx, task) = linger::start(shared.clone(), options.deliver_linger);
        tasks.push(task);
        tx
    });
    // The live consumer's filter follows the interests of this hub's eaters.
    tasks.push(tokio::spawn(interest::consume_live(
        js,
        options.stream.clone(),
        last + 1,
        union.subscribe(),
        shared.shutdown.clone(),
        move |message, sequence| {
            let Some((chef, kitchen)) = stream_check.check(&message, sequence, &sink_stats) else {
                return futures_util::future::Either::Left(std::future::ready(true));
            };
            sink_stats.delivered.fetch_add(1, Ordering::Relaxed);
            // Under --auth restricted eaters are filtered by origin, so a frame read back
            // from the stream is tagged exactly as a local kitchen's would be.
            let origin = sink_shared.config.auth.is_some().then(|| {
                std::sync::Arc::new(crate::state::Origin::Dumpling {
                    chef: chef.into(),
                    kitchen: kitchen.map(Into::into),
                })
            });
            match &to_ring {
                None => {
                    sink_shared.publish_seq(message, origin, sequence);
                    futures_util::future::Either::Left(std::future::ready(true))
                }
                Some(tx) => {
                    let tx = tx.clone();
                    futures_util::future::Either::Right(async move {
                        tx.send((message, origin, sequence)).await.is_ok()
                    })
                }
            }
        },
    )));
    Ok(Fleet { publisher, tasks })
}

async fn stream_last_sequence(js: &jetstream::Context, name: &str) -> Option<u64> {
    // get_stream fetches the stream's info: one request.
    let stream = js.get_stream(name).await.ok()?;
    Some(stream.cached_info().state.last_sequence)
}

/// A stream's creation time and first and last sequences (one request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// When the stream was created: a different time means it was deleted and created
    /// again, and its sequences started over.
    pub created: time::OffsetDateTime,
    /// Its first stored sequence.
    pub first: u64,
    /// Its last stored sequence.
    pub last: u64,
}

async fn stream_state(js: &jetstream::Context, name: &str) -> Option<StreamState> {
    let stream = js.get_stream(name).await.ok()?;
    let info = stream.cached_info();
    Some(StreamState {
        created: info.created,
        first: info.state.first_sequence,
        last: info.state.last_sequence,
    })
}

async fn stream_first_sequence(js: &jetstream::Context, name: &str) -> Option<u64> {
    let stream = js.get_stream(name).await.ok()?;
    Some(stream.cached_info().state.first_sequence)
}

/// Read the stream from `start_sequence` on through an ordered consumer filtered on
/// `filter`, handing each dumpling to `sink` (which returns `false` to stop). The sink
/// sees each stored dumpling once ([`reader::read_stream`]). Ends on shutdown.
pub async fn consume(
    js: jetstream::Context,
    stream_name: String,
    filter: String,
    start_sequence: u64,
    mut shutdown: watch::Receiver<bool>,
    mut sink: impl FnMut(Message) -> bool + Send,
) {
    let mut start = reader::Start::Sequence(start_sequence.max(1));
    let spec = reader::ReadSpec {
        stream: &stream_name,
        filter: &filter,
        until: None,
        on_recreated: None,
        created: None,
    };
    let mut sink = |message, _sequence| std::future::ready(sink(message));
    reader::read_stream(&js, spec, &mut start, None, &mut shutdown, &mut sink).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_refused_for_its_size_names_the_flag_and_the_size() {
        let refused = "insufficient storage resources available (10047)".to_owned();
        let hint = storage_hint(refused.clone(), 1 << 30);
        assert!(hint.starts_with(&refused), "{hint}");
        assert!(hint.contains("--nats-max-bytes 1073741824"), "{hint}");
        assert_eq!(storage_hint("timed out".into(), 1 << 30), "timed out");
    }

    fn publisher() -> (Publisher, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(4);
        let p = Publisher {
            tx,
            prefix: "nd.dumplings".into(),
            hub_id: "hubX".into(),
            run_id: "r1".into(),
            next_id: Arc::new(AtomicU64::new(0)),
            stats: Arc::new(FleetStats::default()),
            service: None,
            client: None,
        };
        (p, rx)
    }

    #[test]
    fn subject_and_id_come_from_the_metadata() {
        let (p, _rx) = publisher();
        let text = r#"{"metadata":{"nd_id":"k1-5","chef":"DNS.Chef","kitchen":"site a>1","creation_time":1.5,"driver":"packet"},"payload":{}}"#;
        let out = p.prepare(Message::text(text), "hello-name");
        assert_eq!(out.subject, "nd.dumplings.site~20a~3E1.DNS~2EChef.packet");
        assert_eq!(out.msg_id, "site~20a~3E1:k1-5", "the id, the kitchen's own");
        assert_eq!(
            &out.payload[..],
            text.as_bytes(),
            "payload is the kitchen's bytes"
        );
        assert!(!out.binary);
    }

    #[test]
    fn original_kitchens_get_hub_made_ids_and_their_connection_name() {
        let (p, _rx) = publisher();
        let text = r#"{"metadata": {"chef": "C", "kitchen": null, "creation_time": 1.5, "driver": "interval"}, "payload": 1}"#;
        let a = p.prepare(Message::binary(text.as_bytes().to_vec()), "k");
        let b = p.prepare(Message::text(text), "k");
        assert_eq!(a.subject, "nd.dumplings.k.C.interval");
        assert_eq!(
            (a.msg_id.as_str(), b.msg_id.as_str()),
            ("hubX-r1-0", "hubX-r1-1")
        );
        assert!(a.binary && !b.binary);
        let long_id = format!(
            r#"{{"metadata":{{"nd_id":"{}","chef":"C","kitchen":"k","creation_time":1,"driver":"packet"}}}}"#,
            "x".repeat(MAX_ID_BYTES + 1)
        );
        assert_eq!(p.prepare(Message::text(long_id), "k").msg_id, "hubX-r1-2");
    }
}
