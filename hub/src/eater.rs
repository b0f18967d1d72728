//! The eater side: handshake, hello, a welcome status, then the drain-then-flush loop
//! over the fan-out ring.
//!
//! Invariants: an eater never slows the kitchens or other eaters (it reads the shared ring
//! at its own pace); one that falls behind by more than the ring or
//! [`crate::Config::eater_queue_bytes`] loses its oldest dumplings and gets a
//! `HubNoticeChef` `{"lagged": n}` notice before its next dumpling; one whose socket makes
//! no write progress for [`crate::Config::write_timeout`] is closed with
//! [`dumpling::close_code::EATER_TOO_SLOW`]. Eater loss is seen at once because the task
//! always polls the socket for reading too.

use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use dumpling::close_code;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use crate::auth::Principal;
use crate::backlog::Backlog;
use crate::fleet::replay::{notice, start_notice, Plan};
use crate::handshake::{accept_with_hello, close, Accepted, HubWs};
use crate::state::{Frame, Origin, Peer, Shared, Wire};
use crate::status;
use crate::tls::HubStream;
use crate::Side;

/// How a batch ended.
enum BatchEnd {
    /// Written; keep going.
    Written,
    /// The ring is closed (the hub is stopping).
    RingClosed,
}

/// How a batch write went, from the connection task's point of view.
enum Outcome {
    /// The batch finished (written, or the socket failed).
    Done(Result<BatchEnd, WsError>),
    /// No write progress for the write timeout.
    Stuck,
    /// Stuck in a write while [`STUCK_BEHIND_BYTES`] were published past its position.
    FarBehind,
    /// The hub is shutting down.
    Shutdown,
}

/// How far (bytes published into the ring) an eater stuck in a write may fall behind
/// before it is disconnected, without waiting for the write timeout.
///
/// Why: the ring keeps every frame some eater has not taken yet, and an eater blocked in a
/// write takes none. With 1 MiB dumplings and one eater that never read, the ring held
/// its 4096 slots' worth, 3.3 GB, until the 10 s write timeout. An eater that is reading,
/// however slowly, is never disconnected for this: it skips ahead by itself
/// (`--eater-queue-bytes`, lag notices). So whatever eaters do, the ring holds at most
/// about this much beyond what the eaters that keep up hold.
pub const STUCK_BEHIND_BYTES: u64 = 64 << 20;

/// How often a stuck write checks how far behind its eater is.
const FAR_BEHIND_CHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// Resolves once the ring has taken [`STUCK_BEHIND_BYTES`] more than `position` (the offset
/// of the last frame the eater took); polled only while a write is stuck.
async fn far_behind(shared: &Shared, position: &AtomicU64) {
    loop {
        tokio::time::sleep(FAR_BEHIND_CHECK).await;
        let published = shared.published_bytes.load(Ordering::Relaxed);
        if published.saturating_sub(position.load(Ordering::Relaxed)) > STUCK_BEHIND_BYTES {
            return;
        }
    }
}

/// How many times `batch_max` frames one batch may hold when they were framed once for
/// all eaters ([`Wire`]); the byte bound (`batch_max_bytes`) applies as ever.
const WIRE_BATCH_FACTOR: usize = 16;

/// Frames waiting to be written straight to the socket: runs of adjacent [`Wire`] spans
/// (a run is one slice of one burst buffer), with how much of them is written already,
/// so a write that was cut short (timeout, shutdown) can be finished before a close
/// frame goes out and the eater never sees half a frame.
#[derive(Default)]
struct Runs {
    runs: Vec<Wire>,
    /// Runs fully written.
    first: usize,
    /// Bytes of `runs[first]` written.
    offset: usize,
}

impl Runs {
    /// Add a frame's span, joining it to the last run when it follows it directly.
    fn push(&mut self, wire: Wire) {
        if let Some(last) = self.runs.last_mut() {
            if last.precedes(&wire) {
                last.end = wire.end;
                return;
            }
        }
        self.runs.push(wire);
    }

    /// Write every run, in order, to `stream` (whole, through partial writes), then
    /// flush it (TLS). At most `MAX_SLICES` runs per vectored write.
    async fn write_to(&mut self, stream: &mut HubStream) -> std::io::Result<()> {
        const MAX_SLICES: usize = 16;
        if self.runs.is_empty() {
            return Ok(());
        }
        while self.first < self.runs.len() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (i, run) in self.runs[self.first..].iter().take(MAX_SLICES).enumerate() {
                let bytes = run.bytes();
                slices[i] = IoSlice::new(if i == 0 { &bytes[self.offset..] } else { bytes });
                count += 1;
            }
            let mut written = stream.write_vectored(&slices[..count]).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while written > 0 {
                let left = self.runs[self.first].bytes().len() - self.offset;
                if written >= left {
                    written -= left;
                    self.first += 1;
                    self.offset = 0;
                } else {
                    self.offset += written;
                    written = 0;
                }
            }
        }
        self.runs.clear();
        self.first = 0;
        self.offset = 0;
        stream.flush().await
    }

    /// Before a close frame: finish a write that was cut short, briefly.
    async fn finish(&mut self, ws: &mut HubWs) {
        if !self.runs.is_empty() {
            let _ = timeout(
                std::time::Duration::from_secs(1),
                self.write_to(ws.get_mut()),
            )
            .await;
        }
    }
}

/// Feed up to one batch from the ring (starting with `first`) into the socket, then flush.
///
/// Frames framed once for all eaters ([`Frame::wire`]) are written to the socket as they
/// are; others (statuses, notices, local kitchens' dumplings) go through the WebSocket
/// writer. Order is kept: whatever one path holds is written before the other path
/// writes.
// One call per wake-up with the connection's own state; a struct for it would only be
// taken apart again here.
#[allow(clippy::too_many_arguments)]
async fn write_batch(
    ws: &mut HubWs,
    rx: &mut Receiver<Frame>,
    first: Result<Frame, RecvError>,
    shared: &Shared,
    peer: &Peer,
    pending_lag: &mut u64,
    plan: &Plan,
    runs: &mut Runs,
    binary: bool,
    position: &AtomicU64,
    backlog: &mut Backlog,
) -> Result<BatchEnd, WsError> {
    let config = &shared.config;
    let mut next = Some(first);
    let mut sent = 0u64;
    // Frames this eater's WebSocket writer framed and copied (notices included): the
    // `batch_max` bound is theirs. Frames framed once for all eaters cost a slice each,
    // so they are bounded by bytes (and by WIRE_BATCH_FACTOR x batch_max): fewer, larger
    // socket writes per delivery.
    let mut framed = 0usize;
    let mut bytes = 0usize;
    let mut end = BatchEnd::Written;
    // Something was fed to the WebSocket writer and not flushed yet.
    let mut fed = false;
    while let Some(item) = next.take() {
        if let Ok(frame) = &item {
            // A held frame (`backlog`) moved the position when it was taken. Only this
            // task writes the position, so a load and a store do (no read-modify-write).
            if frame.end_offset > position.load(Ordering::Relaxed) {
                position.store(frame.end_offset, Ordering::Relaxed);
            }
        }
        match item {
            Ok(frame) if !plan.admits(&frame) => {}
            Ok(frame) => {
                // Bytes published after this frame: what the eater would still have to
                // take after it. The frame's own size is not counted, so one frame larger
                // than the bound (a status listing many large kitchen hellos) still
                // reaches an eater that keeps up; counting it dropped every status for
                // every eater once the hellos passed 4 MiB together.
                let behind = shared
                    .published_bytes
                    .load(Ordering::Relaxed)
                    .saturating_sub(frame.end_offset);
                let bound = config.eater_queue_bytes;
                // An eater that takes only some frames is measured by what it takes (see
                // backlog.rs): the ring's count overstates its backlog.
                let too_far = behind > bound
                    && (!plan.filters() || {
                        let missed = backlog.fill(rx, plan, position, bound);
                        if missed > 0 {
                            *pending_lag += missed;
                            peer.bad.fetch_add(missed, Ordering::Relaxed);
                            shared.total_dropped.fetch_add(missed, Ordering::Relaxed);
                        }
                        backlog.bytes() > bound
                    });
                if too_far {
                    // Too far behind in bytes: drop the oldest (this one).
                    *pending_lag += 1;
                    peer.bad.fetch_add(1, Ordering::Relaxed);
                    shared.total_dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    if *pending_lag > 0 {
                        runs.write_to(ws.get_mut()).await?;
                        ws.feed(for_eater(status::lag_notice(*pending_lag), binary))
                            .await?;
                        fed = true;
                        framed += 1;
                        shared.lag_notices.fetch_add(1, Ordering::Relaxed);
                        *pending_lag = 0;
                        sent += 1;
                    }
                    bytes += frame.message.len();
                    match frame.wire {
                        Some(wire) => {
                            if fed {
                                ws.flush().await?;
                                fed = false;
                            }
                            runs.push(wire);
                        }
                        None => {
                            runs.write_to(ws.get_mut()).await?;
                            ws.feed(for_eater(frame.message, binary)).await?;
                            fed = true;
                            framed += 1;
                        }
                    }
                    sent += 1;
                }
            }
            Err(RecvError::Lagged(missed)) => {
                *pending_lag += missed;
                peer.bad.fetch_add(missed, Ordering::Relaxed);
                shared.total_dropped.fetch_add(missed, Ordering::Relaxed);
            }
            Err(RecvError::Closed) => {
                end = BatchEnd::RingClosed;
                break;
            }
        }
        if framed >= config.batch_max
            || sent as usize >= config.batch_max * WIRE_BATCH_FACTOR
            || bytes >= config.batch_max_bytes
        {
            break;
        }
        next = backlog.try_next(rx);
    }
    runs.write_to(ws.get_mut()).await?;
    if fed {
        ws.flush().await?;
    }
    if sent > 0 {
        peer.good.fetch_add(sent, Ordering::Relaxed);
        shared.total_out.fetch_add(sent, Ordering::Relaxed);
    }
    Ok(end)
}

/// A ring message as it goes to one eater: a text frame goes out as a binary frame with
/// the same bytes to an eater that asked for binary frames
/// ([`dumpling::BINARY_FRAMES_HEADER`]), so the eater checks its UTF-8 once, faster, instead
/// of its WebSocket library doing it with `std`'s validator. Shared bytes: no copy.
/// Used for the ring's messages, the welcome status and lag notices. Binary stays binary;
/// frames framed once for all eaters ([`Wire`], `--nats`), replayed dumplings and the
/// notices at the start of a replay stay text, which such an eater reads as ever.
pub fn for_eater(message: Message, binary: bool) -> Message {
    match message {
        Message::Text(text) if binary => Message::Binary(text.into()),
        other => other,
    }
}

/// Whether an eater authorised as `principal` gets `frame`. Unrestricted eaters get
/// everything except the statuses made for restricted principals; restricted ones get
/// their chefs' and kitchens' dumplings and their own status view.
pub fn admits(principal: Option<&Principal>, frame: &Frame) -> bool {
    let Some(origin) = frame.origin.as_deref() else {
        return true;
    };
    match principal.filter(|p| p.is_restricted()) {
        None => !matches!(origin, Origin::Status(Some(_))),
        Some(principal) => match origin {
            Origin::Dumpling { chef, kitchen } => principal.may_see(chef, kitchen.as_deref()),
            Origin::Status(audience) => audience.as_deref() == Some(principal.name.as_str()),
        },
    }
}

/// The eater connection task.
pub async fn serve_eater(
    stream: HubStream,
    addr: SocketAddr,
    shared: Arc<Shared>,
    deadline: tokio::time::Instant,
    pending: &crate::admission::Pending,
) {
    let Some(Accepted {
        mut ws,
        hello,
        session,
        binary,
        slot: _slot,
    }) = accept_with_hello(stream, addr, &shared, Side::Eater, deadline, pending).await
    else {
        return;
    };
    let name = hello.name.clone();
    // For logs only: escaped and cut (the eater chose it).
    let shown = crate::hello::shown_name(&name);
    let principal = session.as_ref().map(|s| s.principal.clone());
    // Optional hello keys: interest (nd_chefs/nd_kitchens) and replay (nd_since...).
    let mut plan = crate::fleet::replay::plan(&shared, &hello.raw, principal.clone()).await;
    let mut revoked = std::pin::pin!(crate::auth::revoked(session));
    // Subscribe before registering: everything published from now on reaches this eater.
    let mut rx = shared.ring.subscribe();
    let registration = shared.register(Side::Eater, hello, addr, principal.clone());
    let peer = registration.peer.clone();
    shared.eater_lines.log("eater connection lines", || {
        info!(eater = %shown, %addr, binary_frames = binary, "Received dumpling eater connection from {shown} at {addr}");
    });

    let config = &shared.config;
    let mut shutdown = shared.shutdown.clone();
    // One shutdown future for the whole connection: re-creating it on every wake-up cost a
    // waiter registration and removal per delivery.
    let mut stop = std::pin::pin!(crate::state::stopped(&mut shutdown));
    let mut pending_lag = 0u64;
    // Kept across batches so its Vec is allocated once per connection.
    let mut runs = Runs::default();
    // What a filtering eater took from the ring ahead of writing it (backlog.rs).
    let mut backlog = Backlog::default();

    // A new eater gets the current status at once (the original made it wait up to
    // status_freq seconds), and is listed in it.
    let welcome = status::build_status_for(&shared, Some(registration.id), principal.as_deref());
    let mut reason: Option<String> = match timeout(
        config.write_timeout,
        ws.send(for_eater(Message::text(welcome), binary)),
    )
    .await
    {
        Ok(Ok(())) => {
            peer.good.fetch_add(1, Ordering::Relaxed);
            shared.total_out.fetch_add(1, Ordering::Relaxed);
            None
        }
        Ok(Err(error)) => Some(error.to_string()),
        Err(_) => Some("welcome status could not be written".into()),
    };
    let notices = std::mem::take(&mut plan.notices)
        .into_iter()
        .map(|t| notice(&t));
    for message in notices.chain(plan.starts_at.take().map(start_notice)) {
        if reason.is_none()
            && !matches!(
                timeout(config.write_timeout, ws.send(message)).await,
                Ok(Ok(()))
            )
        {
            reason = Some("notice could not be written".into());
        }
    }

    let mut ping = tokio::time::interval(config.ping_interval);
    ping.reset();
    let mut last_seen = Instant::now();
    // The ring offset of the last frame this eater took (see `far_behind`).
    let position = AtomicU64::new(shared.published_bytes.load(Ordering::Relaxed));
    // Stuck or far behind: closed with 4201 after the loop, once the ring is let go.
    let mut close_slow = false;
    while reason.is_none() {
        tokio::select! {
            biased;
            _ = stop.as_mut() => {
                close(&mut ws, close_code::GOING_AWAY, "hub shutting down").await;
                reason = Some("hub shutting down".into());
            }
            _ = revoked.as_mut() => {
                warn!(eater = %shown, %addr, "token revoked or changed in the auth file; closing");
                close(&mut ws, crate::auth::REVOKED_CODE, crate::auth::REVOKED_REASON).await;
                reason = Some(crate::auth::REVOKED_REASON.into());
            }
            // Poll the WebSocket for reading only when the socket is readable: tungstenite
            // zero-fills its read buffer on every read attempt, which at 1000 eaters was
            // paid on every delivery. Readiness is only cleared by a read that would
            // block, so frames tungstenite already buffered are never stranded.
            // A read that would block registers the wake-up itself, so one future does both.
            message = std::future::poll_fn(|cx| match ws.get_ref().poll_incoming_ready(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(error)) => Poll::Ready(Some(Err(WsError::Io(error)))),
                Poll::Ready(Ok(())) => ws.poll_next_unpin(cx),
            }) => {
                {
                    last_seen = Instant::now();
                    match message {
                        // The original ignores whatever an eater sends after its hello.
                        Some(Ok(Message::Close(frame))) => {
                            // tungstenite queued the echo of the eater's close; send it.
                            let _ = timeout(std::time::Duration::from_secs(1), ws.flush()).await;
                            reason = Some(match frame {
                                Some(frame) => format!("received {} {}", u16::from(frame.code), dumpling::text::escape(&frame.reason, 128)),
                                None => "received close".into(),
                            });
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => reason = Some(error.to_string()),
                        None => reason = Some("connection ended".into()),
                    }
                }
            }
            replayed = plan.next_replayed() => match replayed {
                Some(first) => match timeout(config.write_timeout, plan.write_replayed(&mut ws, first, config.batch_max)).await {
                    Ok(Ok(sent)) => {
                        peer.good.fetch_add(sent, Ordering::Relaxed);
                        shared.total_out.fetch_add(sent, Ordering::Relaxed);
                    }
                    Ok(Err(error)) => reason = Some(error.to_string()),
                    Err(_) => {
                        close(&mut ws, close_code::EATER_TOO_SLOW, close_code::EATER_TOO_SLOW_REASON).await;
                        reason = Some(close_code::EATER_TOO_SLOW_REASON.into());
                    }
                },
                None => {
                    close(&mut ws, close_code::GOING_AWAY, "replay consumer ended").await;
                    reason = Some("replay consumer ended".into());
                }
            },
            first = backlog.next(&mut rx) => {
                let outcome = {
                    let mut batch = std::pin::pin!(write_batch(&mut ws, &mut rx, first, &shared, &peer, &mut pending_lag, &plan, &mut runs, binary, &position, &mut backlog));
                    // Fast path: a writable socket takes the whole batch in one poll, so no
                    // timer is armed (a timer per delivery cost measurable CPU at 1000 eaters).
                    match std::future::poll_fn(|cx| Poll::Ready(batch.as_mut().poll(cx))).await {
                        Poll::Ready(result) => Outcome::Done(result),
                        Poll::Pending => tokio::select! {
                            written = timeout(config.write_timeout, batch.as_mut()) => match written {
                                Ok(result) => Outcome::Done(result),
                                Err(_) => Outcome::Stuck,
                            },
                            () = far_behind(&shared, &position) => Outcome::FarBehind,
                            _ = stop.as_mut() => Outcome::Shutdown,
                        },
                    }
                };
                match outcome {
                    Outcome::Done(Ok(BatchEnd::Written)) => {}
                    Outcome::Done(Ok(BatchEnd::RingClosed)) => reason = Some("hub stopping".into()),
                    Outcome::Done(Err(error)) => reason = Some(error.to_string()),
                    Outcome::Stuck => {
                        warn!(eater = %shown, %addr, "eater made no write progress for {:?}; disconnecting", config.write_timeout);
                        close_slow = true;
                        reason = Some(close_code::EATER_TOO_SLOW_REASON.into());
                    }
                    Outcome::FarBehind => {
                        warn!(eater = %shown, %addr, "eater stuck in a write while {} MiB were published after its position; disconnecting", STUCK_BEHIND_BYTES >> 20);
                        close_slow = true;
                        reason = Some(close_code::EATER_TOO_SLOW_REASON.into());
                    }
                    Outcome::Shutdown => {
                        runs.finish(&mut ws).await;
                        close(&mut ws, close_code::GOING_AWAY, "hub shutting down").await;
                        reason = Some("hub shutting down".into());
                    }
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > config.ping_interval + config.ping_timeout {
                    reason = Some("no pong from eater (dead peer)".into());
                } else if timeout(config.write_timeout, ws.send(Message::Ping(Default::default()))).await.is_err() {
                    close(&mut ws, close_code::EATER_TOO_SLOW, close_code::EATER_TOO_SLOW_REASON).await;
                    reason = Some(close_code::EATER_TOO_SLOW_REASON.into());
                }
            }
        }
    }
    // Let go of the ring before the close, which may wait up to the write timeout: until
    // then the ring would keep everything published for this eater.
    drop(rx);
    drop(backlog);
    if close_slow {
        runs.finish(&mut ws).await;
        close(
            &mut ws,
            close_code::EATER_TOO_SLOW,
            close_code::EATER_TOO_SLOW_REASON,
        )
        .await;
    }
    let delivered = peer.good.load(Ordering::Relaxed);
    let dropped = peer.bad.load(Ordering::Relaxed);
    drop(registration);
    let reason = reason.unwrap_or_default();
    shared.eater_lines.log("eater connection lines", || {
        info!(eater = %shown, delivered, dropped, "Dumpling eater {shown} connection closed: {reason}");
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::fleet::linger::{frame_burst, Item};
    use crate::tls::HubStream;

    /// A real loopback WebSocket: the hub's side (as the eater task has it) and a client.
    async fn pair() -> (
        HubWs,
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let client = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
                .await
                .expect("client handshake")
                .0
        };
        let server = async {
            let (tcp, _) = listener.accept().await.expect("accept");
            tokio_tungstenite::accept_async(HubStream::Plain(tcp))
                .await
                .expect("server handshake")
        };
        let (client, server) = tokio::join!(client, server);
        (server, client)
    }

    fn publish_burst(shared: &Shared, texts: &[&str], first_seq: u64) {
        let mut burst: Vec<Item> = texts
            .iter()
            .zip(first_seq..)
            .map(|(text, seq)| (Message::text(*text), None, seq))
            .collect();
        frame_burst(&mut burst, |message, origin, seq, wire| {
            assert!(wire.is_some());
            shared.publish_wire(message, origin, seq, wire);
        });
    }

    #[test]
    fn an_eater_that_asked_gets_text_as_binary_with_the_same_bytes() {
        let text = Message::text("{\"a\": \"\u{fffd}\"}");
        let bytes = text.clone().into_data();
        assert_eq!(for_eater(text.clone(), false), text);
        assert_eq!(
            for_eater(text.clone(), true),
            Message::Binary(bytes.clone())
        );
        // No copy: the binary frame shares the text's bytes.
        let Message::Binary(shared) = for_eater(text, true) else {
            unreachable!("binary above")
        };
        assert_eq!(shared, bytes);
        let binary = Message::binary(b"binary".to_vec());
        assert_eq!(for_eater(binary.clone(), true), binary);
        assert_eq!(for_eater(binary.clone(), false), binary);
    }

    #[tokio::test]
    async fn wire_and_framed_frames_reach_the_eater_in_ring_order_with_the_lag_notice_first() {
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let shared = Shared::new(Config::default(), stop_rx);
        let (mut ws, mut client) = pair().await;
        let mut rx = shared.ring.subscribe();
        // Framed by the eater's writer, then a burst framed once, then mixed again, and a
        // burst longer than one batch (batch_max 64), so runs span batches.
        shared.publish(Message::text("status 1"));
        publish_burst(&shared, &["a1", "a2", "a3"], 1);
        shared.publish(Message::binary(b"binary status".to_vec()));
        publish_burst(&shared, &["b1"], 4);
        let long: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let long_refs: Vec<&str> = long.iter().map(String::as_str).collect();
        publish_burst(&shared, &long_refs, 5);
        shared.publish(Message::text("status 2"));
        // The lag notice comes first (checked by its payload: it carries the time).
        let mut expected: Vec<Message> = vec![
            Message::text("notice"),
            Message::text("status 1"),
            Message::text("a1"),
            Message::text("a2"),
            Message::text("a3"),
            Message::binary(b"binary status".to_vec()),
            Message::text("b1"),
        ];
        expected.extend(long.iter().map(|t| Message::text(t.as_str())));
        expected.push(Message::text("status 2"));

        let peer = Peer {
            hello: serde_json::value::RawValue::from_string("{}".into()).expect("valid JSON"),
            hello_cut: serde_json::value::RawValue::from_string("{}".into()).expect("valid JSON"),
            addr: "127.0.0.1:1".parse().expect("address"),
            good: Default::default(),
            bad: Default::default(),
            refused: Default::default(),
            principal: None,
        };
        // Two dumplings were lost before: the notice must precede everything else.
        let mut pending_lag = 2u64;
        let plan = Plan::default();
        let mut runs = Runs::default();
        let writer = async {
            while let Ok(frame) = rx.try_recv() {
                let end = write_batch(
                    &mut ws,
                    &mut rx,
                    Ok(frame),
                    &shared,
                    &peer,
                    &mut pending_lag,
                    &plan,
                    &mut runs,
                    false,
                    &AtomicU64::new(0),
                    &mut Backlog::default(),
                )
                .await
                .expect("batch written");
                assert!(matches!(end, BatchEnd::Written));
            }
            ws
        };
        let reader = async {
            let mut got = Vec::new();
            while got.len() < expected.len() {
                match client.next().await {
                    Some(Ok(message)) => got.push(message),
                    other => panic!("connection ended early: {other:?}"),
                }
            }
            got
        };
        let (_ws, mut got) = tokio::join!(writer, reader);
        let notice: serde_json::Value =
            serde_json::from_str(got[0].to_text().expect("a text notice")).expect("JSON");
        assert_eq!(notice["metadata"]["chef"], "HubNoticeChef");
        assert_eq!(notice["payload"]["lagged"], 2);
        got[0] = Message::text("notice");
        assert_eq!(got, expected);
        assert_eq!(pending_lag, 0);
        assert_eq!(
            peer.good.load(Ordering::Relaxed),
            expected.len() as u64,
            "every frame and the notice counted as delivered"
        );
    }
}
