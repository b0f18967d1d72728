//! The kitchen's WebSocket client to the hub (`ws://HOST:PORT`), on its own tokio thread.
//!
//! Protocol (original §3.3): the hello first, then every dumpling as one text frame, in
//! order; the kitchen never reads anything but control frames from the hub. Against our
//! hub, which answers the upgrade's [`dumpling::BINARY_FRAMES_HEADER`], each dumpling goes
//! as a binary frame holding the same UTF-8 text instead (the hub checks it once, faster
//! than a text frame's check); any other hub gets text frames.
//!
//! Unlike the original (no retry, exit 0 when the hub goes away) this client:
//! * keeps dumplings in a bounded queue while the hub is down (count and byte caps; when
//!   full, new dumplings are dropped and counted, and the queue stays a contiguous run);
//! * reconnects with exponential backoff plus jitter, resends the hello, and drains the
//!   queue in order. Dumplings in flight when a connection breaks are re-queued at the
//!   front, so delivery across a reconnect is at-least-once;
//! * applies back-pressure instead of dropping while connected and replaying a file
//!   ([`HubOptions::block_when_full`]): a replay must not lose dumplings just because the
//!   file reads faster than the network sends;
//! * fails over: with several hubs ([`HubOptions::fallbacks`]) a lost or unreachable hub
//!   makes it move to the next one in the list (round robin) at once; it backs off only
//!   after a whole round of hubs failed (so each hub is tried at most once per backoff);
//! * with [`HubOptions::dumpling_ids`], stamps each dumpling with a stable id
//!   (`metadata.nd_id` = `<kitchen id>-<sequence>`) and, after every reconnect, re-sends
//!   its last [`HubOptions::resend_tail`] written dumplings first: a hub killed with
//!   dumplings in its socket buffers would otherwise lose them. Federated hubs store each
//!   id once (JetStream dedup), so the re-sent copies are dropped there;
//! * notices a hub that is gone without a word ([`HubOptions::keepalive`]): a hub whose
//!   host froze, lost power or sits behind a cut link sends no reset, so without pings the
//!   kitchen would wait on it for as long as TCP retransmits (about 15 minutes). It pings
//!   the hub every `keepalive`; a hub silent (no frame, no pong) for three of them, or one
//!   that takes no data for that long, is given up and the kitchen fails over;
//! * knows what the hub has taken: with the keep-alive on, after each write it pings the
//!   hub (one ping outstanding at a time) with the count of dumplings written on the
//!   connection as the payload; the hub's pong comes back only once it has read every
//!   frame before the ping (frames are read in order), so the pong confirms that count.
//!   The hub's reply to the final close confirms everything. Dumplings a connection ends
//!   with unconfirmed (a hub that stopped reading, then was given up or killed; a close
//!   never answered within `--flush-timeout`) may be lost in its socket buffers: with ids
//!   they are re-sent from the tail after the reconnect, otherwise (or beyond the tail)
//!   they are counted as [`HubReport::unconfirmed`] and said in the log, not reported
//!   as sent-and-safe;
//! * at the end, flushes with a bounded wait and closes with 1000 (normal closure), and
//!   reports what was lost so `nd-sniff` can exit non-zero.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::dispatch::{DumplingSink, SinkError};

/// Settings of the hub client.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// `HOST:PORT` (ws://) or `ws(s)://HOST:PORT` of the hub's kitchen port.
    pub hub: String,
    /// TLS settings and token (see the `hub-link` crate).
    pub link: hub_link::Link,
    /// The hello object, already serialized.
    pub hello: String,
    /// Dumplings kept while the hub is unreachable.
    pub max_queued: usize,
    /// Bytes kept while the hub is unreachable.
    pub max_queued_bytes: usize,
    /// Wait for queue space while connected (replay) instead of dropping (live).
    pub block_when_full: bool,
    /// First reconnect delay; doubles per failed attempt.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// More hubs to fail over to, in order, after [`HubOptions::hub`].
    pub fallbacks: Vec<String>,
    /// The kitchen id to stamp dumplings with; `None` leaves dumplings unchanged.
    pub dumpling_ids: Option<String>,
    /// With ids: how many of the last written dumplings to re-send after a reconnect.
    pub resend_tail: usize,
    /// How often to ping the hub; a hub silent for [`DEAD_AFTER_KEEPALIVES`] of these (or
    /// not taking data for as long) is given up. Zero turns pings and the check off.
    pub keepalive: Duration,
    /// Connect only after [`HubClient::release`]: `nd-sniff` releases the client once its
    /// input is open, so a capture that cannot start (no such interface, no permission, no
    /// such file) never shows the hub a kitchen that is not there.
    pub held: bool,
}

/// A backlog at least this big, once sent, is followed by one `malloc_trim`.
pub const TRIM_AFTER_BACKLOG_BYTES: usize = 8 << 20;

/// A hub silent for this many keep-alive periods is taken for gone.
pub const DEAD_AFTER_KEEPALIVES: u32 = 3;

impl HubOptions {
    /// Defaults for `hub` with `hello`.
    pub fn new(hub: impl Into<String>, hello: impl Into<String>) -> Self {
        HubOptions {
            hub: hub.into(),
            link: hub_link::Link::plain(),
            hello: hello.into(),
            max_queued: 65_536,
            max_queued_bytes: 64 << 20,
            block_when_full: false,
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(10),
            fallbacks: Vec::new(),
            dumpling_ids: None,
            resend_tail: 0,
            keepalive: Duration::from_secs(5),
            held: false,
        }
    }
}

/// What happened to the dumplings given to the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubReport {
    /// Written to a hub connection (and flushed).
    pub sent: u64,
    /// Dropped because the queue was full.
    pub dropped: u64,
    /// Still queued when the flush timeout ran out.
    pub unsent: u64,
    /// Connections made (1 = no reconnect was needed).
    pub connections: u64,
    /// Dumplings re-sent after a reconnect (the resend tail; counted in `sent` too).
    pub resent: u64,
    /// Connections the hub refused after the hello (a wrong port, a kitchen name the token
    /// may not use, a policy close); each is logged with the hub's reason.
    pub refused: u64,
    /// Dumplings written on connections the hub then refused: not accepted (not in `sent`).
    pub rejected: u64,
    /// Dumplings written (in `sent`) on connections that ended before the hub confirmed
    /// them, and not re-sent: they may be lost (see the module docs).
    pub unconfirmed: u64,
}

/// A random kitchen id for [`HubOptions::dumpling_ids`]: 16 hex digits, new per run, so
/// two runs of one kitchen never share ids.
pub fn kitchen_id() -> String {
    format!("{:016x}", crate::chef_host::cache::random_u64())
}

/// Put `"nd_id":"<id>-<seq>"` first in the metadata of a dumpling made by
/// `dumpling::encode_dumpling` (which always starts `{"metadata":{`); anything else is
/// left as it is.
pub fn stamp_id(json: String, kitchen_id: &str, seq: u64) -> String {
    match json.strip_prefix(r#"{"metadata":{"#) {
        Some(rest) => format!(r#"{{"metadata":{{"nd_id":"{kitchen_id}-{seq}",{rest}"#),
        None => json,
    }
}

impl HubReport {
    /// Dumplings that never reached the hub, or may not have ([`HubReport::unconfirmed`]).
    pub fn lost(&self) -> u64 {
        self.dropped + self.unsent + self.rejected + self.unconfirmed
    }
}

#[derive(Default)]
struct State {
    /// Dumplings to send, each held as shared bytes: sending one, keeping it in `tail` and
    /// putting it back after a failed write share them (no copy per dumpling; the copy
    /// into each WebSocket message was ~2 % of the kitchen's CPU into a hub).
    queue: VecDeque<Utf8Bytes>,
    queued_bytes: usize,
    /// The most bytes queued since the queue was last empty after a backlog
    /// ([`TRIM_AFTER_BACKLOG_BYTES`]).
    backlog_peak_bytes: usize,
    connected: bool,
    /// `finish` was called: drain, close, stop.
    closing: bool,
    /// `finish` gave up waiting: stop now.
    abandon: bool,
    /// The sender task has ended.
    done: bool,
    /// [`HubClient::release`] was called (see [`HubOptions::held`]).
    released: bool,
    /// A newer hello than `HubOptions::hello` (the chefs changed): sent on the next
    /// (re)connection.
    hello: Option<String>,
    report: HubReport,
    /// Next dumpling sequence (with ids).
    next_seq: u64,
    /// The last dumplings written to the current hub (with ids), re-sent after a reconnect.
    tail: VecDeque<Utf8Bytes>,
    /// How the hub ended the current connection (set by [`closed_by_hub`]).
    hub_closed: HubClosed,
    /// Dumplings written on the current connection.
    conn_sent: u64,
    /// Of those, how many the hub confirmed (a pong carrying the count, or its close reply).
    conn_confirmed: u64,
    /// `finish`'s deadline: the final close waits for the hub's reply until shortly before.
    close_by: Option<Instant>,
}

/// How the hub ended a connection, as [`closed_by_hub`] read its close frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum HubClosed {
    /// It did not send a close frame (yet).
    #[default]
    No,
    /// It closed, said in the log.
    Closed,
    /// It refused the hello (said in the log): nothing of the connection was taken.
    Refused,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when queue space frees up or the connection state changes (producer side).
    space: Condvar,
    /// Signalled when the sender task ends (`finish` waits on it).
    done: Condvar,
    /// Wakes the sender task: new dumplings, closing, abandon.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is only held for queue operations that cannot panic; recover the data
        // if a panic elsewhere poisoned it rather than lose every later dumpling.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to the hub client thread. Implements [`DumplingSink`].
pub struct HubClient {
    shared: Arc<Shared>,
    options: HubOptions,
    thread: Option<JoinHandle<()>>,
}

/// A session that lasted this long starts the reconnect backoff over; a shorter one
/// counts as a failed attempt.
const HEALTHY_SESSION: Duration = Duration::from_secs(5);

/// How long one connection attempt (TCP, TLS, the upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`HubClient::finish`] asks whether it was interrupted.
const FINISH_CHECK: Duration = Duration::from_millis(100);

impl HubClient {
    /// Start the client thread; it connects in the background.
    pub fn start(options: HubOptions) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            space: Condvar::new(),
            done: Condvar::new(),
            wake: Notify::new(),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let task_shared = shared.clone();
        let task_options = options.clone();
        let thread = std::thread::Builder::new()
            .name("nd-hub-client".into())
            .spawn(move || {
                rt.block_on(run(task_shared.clone(), task_options));
                let mut st = task_shared.lock();
                st.done = true;
                st.connected = false;
                drop(st);
                task_shared.done.notify_all();
                task_shared.space.notify_all();
            })?;
        Ok(HubClient {
            shared,
            options,
            thread: Some(thread),
        })
    }

    /// Queue one dumpling. One over [`dumpling::MAX_MESSAGE_BYTES`] is refused (logged and
    /// counted as dropped): the hub would close the connection with 1009 and every
    /// dumpling queued behind it would wait for a reconnect. The dispatcher already refuses
    /// those; this is the last line of defence for any other producer.
    pub fn enqueue(&self, json: String) {
        if json.len() > dumpling::MAX_MESSAGE_BYTES {
            let mut st = self.shared.lock();
            st.report.dropped += 1;
            drop(st);
            tracing::error!(
                bytes = json.len(),
                max = dumpling::MAX_MESSAGE_BYTES,
                "refused a {}-byte dumpling: the hub accepts at most {} bytes",
                json.len(),
                dumpling::MAX_MESSAGE_BYTES
            );
            return;
        }
        let mut st = self.shared.lock();
        loop {
            if st.queue.len() < self.options.max_queued
                && st.queued_bytes + json.len() <= self.options.max_queued_bytes
            {
                let json = match &self.options.dumpling_ids {
                    Some(id) => {
                        let seq = st.next_seq;
                        st.next_seq += 1;
                        stamp_id(json, id, seq)
                    }
                    None => json,
                };
                st.queued_bytes += json.len();
                st.backlog_peak_bytes = st.backlog_peak_bytes.max(st.queued_bytes);
                st.queue.push_back(Utf8Bytes::from(json));
                drop(st);
                self.shared.wake.notify_one();
                return;
            }
            if self.options.block_when_full && st.connected && !st.closing && !st.done {
                st = self
                    .shared
                    .space
                    .wait_timeout(st, Duration::from_millis(100))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
                continue;
            }
            st.report.dropped += 1;
            let dropped = st.report.dropped;
            drop(st);
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "hub unreachable and the dumpling queue is full; dropping dumplings"
                );
            }
            return;
        }
    }

    /// Replace the hello sent on the next (re)connection (the running chefs changed). The
    /// hub takes one hello per connection, so the current connection keeps the old one.
    pub fn set_hello(&self, hello: String) {
        self.shared.lock().hello = Some(hello);
    }

    /// Let a client started with [`HubOptions::held`] connect.
    pub fn release(&self) {
        self.shared.lock().released = true;
        self.shared.wake.notify_one();
    }

    /// Counters so far.
    pub fn report(&self) -> HubReport {
        let st = self.shared.lock();
        let mut r = st.report;
        r.unsent = st.queue.len() as u64;
        r
    }

    /// Flush (waiting at most `timeout`), close the connection with 1000, stop the thread.
    /// `interrupted` is asked every [`FINISH_CHECK`]: once it says yes (a signal came
    /// during the wait), the wait ends there, as it does at the timeout.
    pub fn finish(mut self, timeout: Duration, interrupted: &dyn Fn() -> bool) -> HubReport {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        st.closing = true;
        st.close_by = Some(deadline);
        drop(st);
        self.shared.wake.notify_one();
        let mut st = self.shared.lock();
        while !st.done {
            let now = Instant::now();
            if now >= deadline || interrupted() {
                break;
            }
            st = self
                .shared
                .done
                .wait_timeout(st, (deadline - now).min(FINISH_CHECK))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let done = st.done;
        if !done {
            st.abandon = true;
        }
        let mut report = st.report;
        report.unsent = st.queue.len() as u64;
        if !done && st.connected && !self.options.keepalive.is_zero() {
            // The connection still open when the wait ended: what it wrote and the hub
            // has not confirmed may sit unread in its buffers (a hub that stopped reading
            // looked delivered: 14 080 of them in one run).
            report.unconfirmed += st.conn_sent.saturating_sub(st.conn_confirmed);
        }
        drop(st);
        self.shared.wake.notify_one();
        if done {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        // When not done, the thread is left to notice `abandon` (or to die with the
        // process): joining could block on a stalled TCP write.
        report
    }
}

impl DumplingSink for HubClient {
    fn send(&mut self, _chef: &str, json: String) -> Result<(), SinkError> {
        self.enqueue(json);
        Ok(())
    }
}

/// How a session ended.
enum SessionEnd {
    /// Drained and closed cleanly after `finish`.
    Finished,
    /// `finish` gave up.
    Abandoned,
}

async fn run(shared: Arc<Shared>, options: HubOptions) {
    if options.held {
        loop {
            {
                let st = shared.lock();
                if st.released {
                    break;
                }
                // Finished before the input ever opened: nothing to show the hub.
                if st.closing || st.abandon {
                    return;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a release or finish made
            // between the check and this wait is not missed.
            shared.wake.notified().await;
        }
    }
    let mut hubs: Vec<String> = Vec::new();
    for hub in std::iter::once(&options.hub).chain(&options.fallbacks) {
        match hub_link::hub_uri(hub) {
            Ok(url) => hubs.push(url),
            Err(error) => {
                tracing::error!(%error, "not connecting to the hub");
                return;
            }
        }
    }
    let mut current = 0;
    let mut failures: u32 = 0;
    // Failover without hammering: after a failed connect the next hub is tried at once;
    // only when every hub failed in a row (one round) does the kitchen sleep, with the
    // jittered backoff growing per round, so it never tries a hub more than once a round.
    let mut untried = hubs.len();
    let mut rounds: u32 = 0;
    loop {
        let url = hubs[current].clone();
        {
            let st = shared.lock();
            // Closing with nothing left to send while disconnected: no point connecting
            // just to close.
            if st.abandon || (st.closing && st.queue.is_empty()) {
                return;
            }
        }
        match options
            .link
            .connect_frames_within(url.as_str(), None, true, CONNECT_TIMEOUT)
            .await
        {
            Ok((ws, response)) => {
                // Our hub agrees to binary frames (each holds the dumpling's UTF-8 text, so
                // it checks that once, fast); any other hub gets text frames as ever.
                let binary = hub_link::binary_granted(&response);
                failures = 0;
                untried = hubs.len();
                {
                    let mut st = shared.lock();
                    st.connected = true;
                    st.report.connections += 1;
                    if st.report.connections > 1 {
                        // The previous hub may have died with these unpublished; ids let
                        // a federated hub drop the copies it already stored.
                        let tail = std::mem::take(&mut st.tail);
                        st.report.resent += tail.len() as u64;
                        for m in tail.into_iter().rev() {
                            st.queued_bytes += m.len();
                            st.queue.push_front(m);
                        }
                        tracing::info!(hub = %url, queued = st.queue.len(), "reconnected to the hub");
                    } else {
                        tracing::info!(hub = %url, "connected to the hub");
                    }
                }
                let (hello, sent_before) = {
                    let mut st = shared.lock();
                    st.hub_closed = HubClosed::No;
                    st.conn_sent = 0;
                    st.conn_confirmed = 0;
                    (st.hello.clone(), st.report.sent)
                };
                let session_started = Instant::now();
                let end = session(
                    ws,
                    &shared,
                    hello.as_deref().unwrap_or(&options.hello),
                    options.resend_tail,
                    options.keepalive,
                    binary,
                )
                .await;
                let hub_closed = {
                    let mut st = shared.lock();
                    st.connected = false;
                    if st.hub_closed == HubClosed::Refused {
                        // Written, but the hub did not take them (it refused the hello).
                        let rejected = st.report.sent - sent_before;
                        st.report.sent = sent_before;
                        st.report.rejected += rejected;
                        // Counted as rejected: not re-sent as a resend tail too.
                        st.tail.clear();
                    } else {
                        settle_unconfirmed(&mut st, &url, !options.keepalive.is_zero());
                    }
                    st.hub_closed
                };
                let refused = hub_closed == HubClosed::Refused;
                shared.space.notify_all();
                match end {
                    Ok(SessionEnd::Finished) | Ok(SessionEnd::Abandoned) => return,
                    // Said by `closed_by_hub`.
                    Err(_) if hub_closed != HubClosed::No => {}
                    Err(e) => tracing::warn!(hub = %url, error = %e,
                        "lost the connection to the hub; reconnecting"),
                }
                if refused {
                    let st = shared.lock();
                    if st.closing && st.queue.is_empty() {
                        return;
                    }
                }
                current = (current + 1) % hubs.len();
                // A refused hello gets the same answer again: it waits out the backoff
                // below, growing per refusal (a kitchen on the eater port reconnected 4
                // times a second). A session that was accepted fails over at once (the
                // next hub is probably up) and, if it lasted, starts the backoff over: one
                // the hub dropped at once (a frame refused, a close) counts as a failed
                // attempt, or such a hub was reconnected to 5 times a second forever.
                if !refused {
                    if session_started.elapsed() >= HEALTHY_SESSION {
                        rounds = 0;
                    }
                    if hubs.len() > 1 {
                        continue;
                    }
                }
            }
            Err(e) if e.is_fatal() => {
                // A bad certificate or token: say so plainly (retries continue, since the
                // hub's auth file or certificate may be fixed while the kitchen runs).
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::error!(attempts = failures, "{e}");
                }
            }
            Err(e) => {
                failures += 1;
                log_connect_failure(&url, failures, &e);
                current = (current + 1) % hubs.len();
                untried = untried.saturating_sub(1);
                if untried > 0 {
                    continue;
                }
            }
        }
        untried = hubs.len();
        rounds += 1;
        let delay = backoff(rounds, &options);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.wake.notified() => {
                // New dumplings or closing: keep the schedule unless we must stop.
                let abandon = shared.lock().abandon;
                if abandon { return; }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A failed attempt, logged at the first and at powers of two. Where nothing answered
/// (refused, no route, no TCP connection in time) where to look is said; when something did
/// answer (HTTP 503, a TLS port, a peer that is no hub) that hint misled, and the error
/// says what it answered.
fn log_connect_failure(url: &str, failures: u32, error: &hub_link::LinkError) {
    if failures == 1 || failures.is_power_of_two() {
        if error.is_unreachable() {
            tracing::warn!(hub = %url, attempts = failures, error = %error,
                "cannot connect to the hub (is nd-hub running there, and is the address \
                 right?); retrying");
        } else {
            tracing::warn!(hub = %url, attempts = failures, error = %error,
                "cannot connect to the hub; retrying");
        }
    } else {
        tracing::debug!(hub = %url, attempts = failures, error = %error, "cannot connect to the hub");
    }
}

/// Exponential backoff with ±25 % jitter, so many kitchens do not reconnect in lockstep.
fn backoff(failures: u32, o: &HubOptions) -> Duration {
    let base = o
        .reconnect_min
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(o.reconnect_max);
    let jitter = (crate::chef_host::cache::random_u64() % 501) as f64 / 1000.0 + 0.75;
    base.mul_f64(jitter)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Pings and the silence check of one connection (see [`HubOptions::keepalive`]).
struct Liveness {
    /// Zero: off.
    every: Duration,
    /// When the hub last sent anything (a pong, a ping, a close).
    heard: Instant,
    /// When the next ping is due.
    next_ping: Instant,
    /// A confirming ping is out (its pong not back yet): no other is sent meanwhile.
    confirming: bool,
}

impl Liveness {
    fn new(every: Duration) -> Self {
        let now = Instant::now();
        Liveness {
            every,
            heard: now,
            next_ping: now + every,
            confirming: false,
        }
    }

    fn on(&self) -> bool {
        !self.every.is_zero()
    }

    /// How long a hub may stay silent, or take no data, before it is given up.
    fn dead_after(&self) -> Duration {
        self.every.saturating_mul(DEAD_AFTER_KEEPALIVES)
    }

    /// The next moment something is due: a ping, or the silence check.
    fn next_due(&self) -> Instant {
        self.next_ping.min(self.heard + self.dead_after())
    }

    /// An error when the hub has been silent too long.
    fn check(&self, now: Instant) -> Result<(), tungstenite::Error> {
        if self.on() && now.duration_since(self.heard) >= self.dead_after() {
            return Err(gone(format!(
                "the hub sent nothing, not even a pong, for {:?} (3 keep-alives)",
                now.duration_since(self.heard)
            )));
        }
        Ok(())
    }
}

/// The error for a hub given up by the keep-alive (handled like a lost connection).
fn gone(why: String) -> tungstenite::Error {
    tungstenite::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, why))
}

/// `fut` within the keep-alive's `dead_after`: a write to a frozen hub blocks once its
/// socket buffers are full, and must end in a failover rather than a hang.
async fn within<T>(
    live: &Liveness,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, tungstenite::Error>>,
) -> Result<T, tungstenite::Error> {
    if !live.on() {
        return fut.await;
    }
    match tokio::time::timeout(live.dead_after(), fut).await {
        Ok(r) => r,
        Err(_) => Err(gone(format!(
            "the hub took no data for {:?} ({what})",
            live.dead_after()
        ))),
    }
}

/// The hub closed the connection: say why, plainly (its reason is escaped; a `Debug` dump
/// of the frame was all a user saw), and note a refusal so the reconnects back off.
fn closed_by_hub(shared: &Shared, frame: Option<CloseFrame>) -> tungstenite::Error {
    let (code, reason) = match &frame {
        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
        None => (None, String::new()),
    };
    let reason = dumpling::text::escape(&reason, 256);
    // 1008 (policy) and 1003 are how a hub refuses a hello (`nd-hub` closes a kitchen with
    // them only there): nothing of the connection was taken, and the same hello gets the
    // same answer, so this is a refusal, not a hiccup. (1009 and the hub's own 4xxx codes
    // come mid-session, after dumplings it accepted.)
    let refused = matches!(code, Some(1003 | 1008));
    let refusals = {
        let mut st = shared.lock();
        st.hub_closed = if refused {
            st.report.refused += 1;
            HubClosed::Refused
        } else {
            HubClosed::Closed
        };
        st.report.refused
    };
    if refused {
        let n = refusals;
        if n == 1 || n.is_power_of_two() {
            let hint = if reason.contains("eater_name") {
                "; -h must name the hub's kitchen port (nd-hub -i, default 11347), not its \
                 eater port"
            } else {
                ""
            };
            tracing::error!(
                code,
                times = n,
                "the hub refused this kitchen: {reason}{hint}; what was sent on the \
                 connection is not accepted, retrying with backoff"
            );
        }
    } else if code == Some(1001) {
        tracing::info!(reason = %reason, "the hub is going away (shutting down?); reconnecting");
    } else if matches!(code, Some(4000..=4999)) {
        tracing::error!(code, reason = %reason, "the hub closed the connection; reconnecting");
    } else {
        let note = code.map_or("", |c| hub_link::close_note(c, &reason));
        tracing::warn!(code, reason = %reason, "the hub closed the connection{note}");
    }
    tungstenite::Error::ConnectionClosed
}

/// Take in whatever the hub sent, without waiting: it proves the hub alive (and lets
/// tungstenite queue its pongs); a close or an error ends the session.
fn take_incoming(
    ws: &mut Ws,
    live: &mut Liveness,
    shared: &Shared,
) -> Result<(), tungstenite::Error> {
    while let Some(next) = ws.next().now_or_never() {
        match next {
            None => return Err(tungstenite::Error::ConnectionClosed),
            Some(Err(e)) => return Err(e),
            Some(Ok(Message::Close(frame))) => return Err(closed_by_hub(shared, frame)),
            Some(Ok(msg)) => {
                live.heard = Instant::now();
                note_pong(&msg, live, shared);
            }
        }
    }
    Ok(())
}

/// A pong carrying a count of dumplings written (our confirming pings' payload): the hub
/// has read them all. Other frames confirm nothing.
fn note_pong(msg: &Message, live: &mut Liveness, shared: &Shared) {
    let Message::Pong(payload) = msg else {
        return;
    };
    let Ok(count) = <[u8; 8]>::try_from(payload.as_ref()) else {
        return;
    };
    live.confirming = false;
    let mut st = shared.lock();
    let count = u64::from_be_bytes(count).min(st.conn_sent);
    st.conn_confirmed = st.conn_confirmed.max(count);
}

/// Ask the hub to confirm the `written` dumplings of this connection: a ping carrying the
/// count, which its pong echoes once it has read every frame before it ([`note_pong`]).
async fn send_count_ping(
    ws: &mut Ws,
    live: &mut Liveness,
    written: u64,
) -> Result<(), tungstenite::Error> {
    live.confirming = true;
    let ping = Message::Ping(written.to_be_bytes().to_vec().into());
    within(live, "a ping", ws.send(ping)).await
}

/// At the end of a session: read what the hub sends until `until`, noting its pongs, and
/// return its close frame if one comes (`Some(None)`: a close without a frame). With
/// `until_confirmed`, stop as soon as everything written is confirmed.
async fn read_until_close(
    ws: &mut Ws,
    live: &mut Liveness,
    shared: &Shared,
    until: tokio::time::Instant,
    until_confirmed: bool,
) -> Option<Option<CloseFrame>> {
    tokio::time::timeout_at(until, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Close(frame) = msg {
                return Some(frame);
            }
            note_pong(&msg, live, shared);
            let st = shared.lock();
            if until_confirmed && st.conn_confirmed >= st.conn_sent {
                return None;
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// A connection ended (not refused): what it wrote and the hub never confirmed may be lost
/// in its socket buffers. With ids the whole resend tail goes first on the next connection
/// (as before: a confirmation says the hub *read* a dumpling, and a federated hub killed
/// before publishing it loses it too); what the tail does not cover, or everything without
/// ids, is counted as [`HubReport::unconfirmed`] and said.
/// `tracked`: the keep-alive is on, so confirmations were asked for.
fn settle_unconfirmed(st: &mut State, url: &str, tracked: bool) {
    let unconfirmed = st.conn_sent.saturating_sub(st.conn_confirmed);
    st.conn_sent = 0;
    st.conn_confirmed = 0;
    if !tracked {
        return; // no keep-alive, no confirmations: nothing known either way
    }
    // The tail is re-sent only on a reconnect: a session that ends the run (closing with
    // nothing left to send) sends nothing more.
    let resent = if st.closing && st.queue.is_empty() {
        0
    } else {
        (st.tail.len() as u64).min(unconfirmed)
    };
    let lost = unconfirmed - resent;
    if lost > 0 {
        st.report.unconfirmed += lost;
        tracing::warn!(hub = %url, unconfirmed = lost,
            "the connection ended with {lost} dumplings written to the hub that it never \
             confirmed having read (it stopped reading, or went away with them unread); \
             they may be lost");
    }
}

async fn session(
    mut ws: Ws,
    shared: &Shared,
    hello: &str,
    resend_tail: usize,
    keepalive: Duration,
    binary: bool,
) -> Result<SessionEnd, tungstenite::Error> {
    let mut live = Liveness::new(keepalive);
    within(&live, "the hello", ws.send(Message::text(hello))).await?;
    loop {
        if live.on() {
            take_incoming(&mut ws, &mut live, shared)?;
            let now = Instant::now();
            live.check(now)?;
            let (written, confirmed) = {
                let st = shared.lock();
                (st.conn_sent, st.conn_confirmed)
            };
            // The keep-alive's ping confirms what was written so far too; and a pong that
            // confirmed less than was written by then is followed by another ping at once,
            // so the last write is confirmed within a round trip, not at the next keep-alive.
            if now >= live.next_ping || (!live.confirming && confirmed < written) {
                if now >= live.next_ping {
                    live.next_ping = now + live.every;
                }
                send_count_ping(&mut ws, &mut live, written).await?;
            }
        }
        let (batch, closing, abandon, trim) = {
            let mut st = shared.lock();
            let n = st.queue.len().min(64);
            let batch: Vec<Utf8Bytes> = st.queue.drain(..n).collect();
            st.queued_bytes -= batch.iter().map(|m| m.len()).sum::<usize>();
            // The queue empty after a backlog held while the hub was away (up to
            // `max_queued_bytes`): all freed now, but glibc keeps the pages (the kitchen
            // stayed at its peak: 83 MB after one outage, 46 MB once trimmed). Trimmed
            // once per backlog, when the session next goes idle.
            let trim = n == 0 && st.backlog_peak_bytes >= TRIM_AFTER_BACKLOG_BYTES;
            if trim {
                st.backlog_peak_bytes = 0;
            }
            (batch, st.closing, st.abandon, trim)
        };
        if abandon {
            requeue(shared, batch);
            return Ok(SessionEnd::Abandoned);
        }
        if !batch.is_empty() {
            shared.space.notify_all();
            let n = batch.len() as u64;
            if let Err(e) = within(&live, "dumplings", send_all(&mut ws, &batch, binary)).await {
                requeue(shared, batch);
                return Err(e);
            }
            let mut st = shared.lock();
            st.report.sent += n;
            st.conn_sent += n;
            if resend_tail > 0 {
                st.tail.extend(batch);
                let excess = st.tail.len().saturating_sub(resend_tail);
                st.tail.drain(..excess);
            }
            // The loop's top asks the hub to confirm them (a counting ping).
            continue;
        }
        if closing {
            // A hub that refused the hello closed at once: its close may be waiting.
            take_incoming(&mut ws, &mut live, shared)?;
            // Until shortly before `finish`'s deadline (`--flush-timeout`), so what is left
            // unconfirmed is counted before `finish` reads the report.
            let until = tokio::time::Instant::now()
                + shared
                    .lock()
                    .close_by
                    .map_or(Duration::from_secs(2), |d| {
                        d.saturating_duration_since(Instant::now())
                            .saturating_sub(Duration::from_millis(250))
                    })
                    .max(Duration::from_millis(100));
            // First a last counting ping, and its pong: a hub (or a proxy) that drops the
            // connection on our close without replying still confirms what it read.
            let (written, confirmed) = {
                let st = shared.lock();
                (st.conn_sent, st.conn_confirmed)
            };
            let mut hub_close = None;
            let mut we_closed = false;
            if live.on() && confirmed < written {
                send_count_ping(&mut ws, &mut live, written).await?;
                hub_close = read_until_close(&mut ws, &mut live, shared, until, true).await;
            }
            if hub_close.is_none() {
                we_closed = true;
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = ws.close(Some(frame)).await;
                // The hub's close reply comes once it has read every frame before our
                // close, so it confirms them all.
                hub_close = read_until_close(&mut ws, &mut live, shared, until, false).await;
            }
            // A refusal that crossed our close still counts as one. Only a reply to our
            // close confirms everything (a close of the hub's own may cross our frames).
            match hub_close {
                Some(Some(f)) if f.code != CloseCode::Normal && f.code != CloseCode::Away => {
                    return Err(closed_by_hub(shared, Some(f)));
                }
                Some(_) if we_closed => {
                    let mut st = shared.lock();
                    st.conn_confirmed = st.conn_sent;
                }
                _ => {}
            }
            return Ok(SessionEnd::Finished);
        }
        if trim {
            // The backlog (up to `max_queued_bytes`) is all freed once sent, but glibc kept
            // it: 83 MB resident after an outage's queue drained, 46 MB once trimmed.
            let released = heap_trim::release_free_memory();
            tracing::debug!(released, "hub backlog sent: free memory given back");
        }
        // Idle: wait for dumplings, a frame from the hub, or the next keep-alive duty.
        let due = if live.on() {
            tokio::time::Instant::from_std(live.next_due())
        } else {
            tokio::time::Instant::now() + Duration::from_secs(3600)
        };
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(due) => {}
            msg = ws.next() => match msg {
                None => return Err(tungstenite::Error::ConnectionClosed),
                Some(Err(e)) => return Err(e),
                Some(Ok(Message::Close(frame))) => return Err(closed_by_hub(shared, frame)),
                // Pings are answered by tungstenite; the pong goes out on the next flush.
                Some(Ok(msg)) => {
                    live.heard = Instant::now();
                    note_pong(&msg, &mut live, shared);
                    within(&live, "a pong", ws.flush()).await?;
                }
            },
        }
    }
}

/// Send a batch of dumplings: as binary frames holding their text when the hub agreed to
/// that on the upgrade (`binary`, [`dumpling::BINARY_FRAMES_HEADER`]), else as text.
async fn send_all(
    ws: &mut Ws,
    batch: &[Utf8Bytes],
    binary: bool,
) -> Result<(), tungstenite::Error> {
    for m in batch {
        // Shared bytes either way: a clone is a reference count, not a copy.
        let message = if binary {
            Message::Binary(m.clone().into())
        } else {
            Message::Text(m.clone())
        };
        ws.feed(message).await?;
    }
    ws.flush().await
}

/// Put a batch whose delivery is unknown back at the front, in order.
fn requeue(shared: &Shared, batch: Vec<Utf8Bytes>) {
    let mut st = shared.lock();
    for m in batch.into_iter().rev() {
        st.queued_bytes += m.len();
        st.queue.push_front(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn options(addr: std::net::SocketAddr) -> HubOptions {
        let mut o = HubOptions::new(addr.to_string(), r#"{"kitchen_name":"t"}"#);
        o.reconnect_min = Duration::from_millis(20);
        o.reconnect_max = Duration::from_millis(100);
        o
    }

    /// Run `server` on `listener` (made async) on a thread of its own; its result at join.
    fn serve<T, F>(
        listener: std::net::TcpListener,
        server: impl FnOnce(TcpListener) -> F + Send + 'static,
    ) -> std::thread::JoinHandle<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T>,
    {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                server(TcpListener::from_std(listener).unwrap()).await
            })
        })
    }

    /// A one-connection WebSocket server on 127.0.0.1 that records every text frame and
    /// the close code, then ends.
    fn spawn_server(
        listener: std::net::TcpListener,
    ) -> std::thread::JoinHandle<(Vec<String>, Option<u16>)> {
        serve(listener, |listener| async move {
            let (tcp, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
                .await
                .unwrap()
                .unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut texts = Vec::new();
            let mut code = None;
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_secs(10), ws.next()).await
            {
                match msg {
                    Message::Text(t) => texts.push(t.to_string()),
                    Message::Close(f) => {
                        code = f.map(|f| u16::from(f.code));
                        break;
                    }
                    _ => {}
                }
            }
            (texts, code)
        })
    }

    #[test]
    fn a_backlog_sent_is_followed_by_one_trim() {
        // The kitchen kept a hub outage's backlog pages for good (RSS at its peak).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_server(listener);
        let mut o = options(addr);
        o.held = true;
        let mut client = HubClient::start(o).unwrap();
        let text = format!("{{\"pad\":\"{}\"}}", "x".repeat(100_000));
        let n = TRIM_AFTER_BACKLOG_BYTES / text.len() + 2;
        for _ in 0..n {
            client.send("C", text.clone()).unwrap();
        }
        assert!(client.shared.lock().backlog_peak_bytes >= TRIM_AFTER_BACKLOG_BYTES);
        client.release();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.report().sent < n as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // The trim comes at the first idle moment after the queue emptied.
        while client.shared.lock().backlog_peak_bytes != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            client.shared.lock().backlog_peak_bytes,
            0,
            "no trim after the backlog"
        );
        // Small traffic afterwards does not arm it again.
        client.send("C", "{}".to_owned()).unwrap();
        let report = client.finish(Duration::from_secs(10), &|| false);
        assert_eq!(report.sent, n as u64 + 1);
        let (texts, _) = server.join().unwrap();
        assert_eq!(texts.len(), n + 2);
    }

    #[test]
    fn a_held_client_never_connects_unless_released() {
        // Finished while held (the input never opened): no connection at all.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut o = options(addr);
        o.held = true;
        let client = HubClient::start(o.clone()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let report = client.finish(Duration::from_secs(5), &|| false);
        assert_eq!(report.connections, 0, "{report:?}");
        assert!(
            matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a held client connected"
        );
        // Released: it connects and sends the hello and what was queued while held.
        listener.set_nonblocking(false).unwrap();
        let server = spawn_server(listener);
        let mut client = HubClient::start(o).unwrap();
        client.send("C", "{\"n\":0}".to_owned()).unwrap();
        client.release();
        let report = client.finish(Duration::from_secs(10), &|| false);
        let (texts, code) = server.join().unwrap();
        assert_eq!((report.connections, report.sent), (1, 1), "{report:?}");
        assert_eq!(texts, [r#"{"kitchen_name":"t"}"#, r#"{"n":0}"#]);
        assert_eq!(code, Some(1000));
    }

    #[test]
    fn sends_hello_then_dumplings_in_order_and_closes_normally() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_server(listener);
        let mut client = HubClient::start(options(addr)).unwrap();
        for i in 0..100 {
            client.send("C", format!("{{\"n\":{i}}}")).unwrap();
        }
        let report = client.finish(Duration::from_secs(10), &|| false);
        let (texts, code) = server.join().unwrap();
        assert_eq!(report.lost(), 0, "{report:?}");
        assert_eq!(report.sent, 100);
        assert_eq!(texts[0], r#"{"kitchen_name":"t"}"#);
        assert_eq!(texts.len(), 101);
        for (i, t) in texts[1..].iter().enumerate() {
            assert_eq!(t, &format!("{{\"n\":{i}}}"));
        }
        assert_eq!(code, Some(1000));
    }

    #[test]
    fn queues_while_the_hub_is_down_then_reconnects() {
        // Reserve a port, release it, start the client against it (refused), then start
        // the server on the same port.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let mut client = HubClient::start(options(addr)).unwrap();
        for i in 0..10 {
            client.send("C", format!("{i}")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(150));
        let Ok(listener) = std::net::TcpListener::bind(addr) else {
            // Someone else took the port meanwhile; nothing meaningful to check.
            let _ = client.finish(Duration::from_millis(10), &|| false);
            return;
        };
        let server = spawn_server(listener);
        let report = client.finish(Duration::from_secs(10), &|| false);
        let (texts, _) = server.join().unwrap();
        assert_eq!(report.lost(), 0, "{report:?}");
        assert_eq!(texts.len(), 11);
        assert_eq!(texts[10], "9");
    }

    /// A server that accepts every connection, reads the hello and closes it with 1008 (as
    /// `nd-hub`'s eater port does to a kitchen hello); returns the connections it saw.
    fn spawn_refusing_server(
        listener: std::net::TcpListener,
        for_how_long: Duration,
    ) -> std::thread::JoinHandle<u32> {
        serve(listener, move |listener| async move {
            let mut connections = 0;
            let end = tokio::time::Instant::now() + for_how_long;
            while let Ok(Ok((tcp, _))) = tokio::time::timeout_at(end, listener.accept()).await {
                connections += 1;
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    continue;
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.next()).await;
                let _ = ws
                    .close(Some(CloseFrame {
                        code: CloseCode::Policy,
                        reason: "bad hello: no eater_name".into(),
                    }))
                    .await;
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            }
            connections
        })
    }

    #[test]
    fn a_hub_that_refuses_the_hello_gets_nothing_counted_as_sent_and_a_backoff() {
        // A kitchen pointed at the eater port: every hello is refused. Nothing written on
        // those connections may count as sent, and the reconnects back off (it reconnected
        // 4 times a second, logging each).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_refusing_server(listener, Duration::from_secs(3));
        let mut o = options(addr);
        o.reconnect_min = Duration::from_millis(100);
        o.reconnect_max = Duration::from_secs(10);
        let mut client = HubClient::start(o).unwrap();
        for i in 0..5 {
            client.send("C", format!("{i}")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(2500));
        let report = client.finish(Duration::from_millis(300), &|| false);
        let connections = server.join().unwrap();
        assert_eq!(report.sent, 0, "{report:?}");
        assert!(report.refused >= 1, "{report:?}");
        assert_eq!(
            report.lost(),
            5,
            "every dumpling is lost and counted: {report:?}"
        );
        // 100, 200, 400, 800 ms (±25 %) between refusals: at most ~6 in 2.5 s, where
        // reconnecting at the first delay each time would make ~20.
        assert!(
            connections <= 7,
            "{connections} connections in 2.5 s: {report:?}"
        );
    }

    #[test]
    fn ids_are_stamped_first_in_metadata_and_other_text_is_left_alone() {
        let d = r#"{"metadata":{"chef":"C","kitchen":"k","creation_time":1.5,"driver":"packet"},"payload":1}"#;
        assert_eq!(
            stamp_id(d.to_owned(), "ab12", 7),
            r#"{"metadata":{"nd_id":"ab12-7","chef":"C","kitchen":"k","creation_time":1.5,"driver":"packet"},"payload":1}"#
        );
        assert_eq!(stamp_id("{\"n\":1}".to_owned(), "ab12", 7), "{\"n\":1}");
        assert_eq!(kitchen_id().len(), 16);
    }

    #[test]
    fn fails_over_to_the_next_hub_with_ids_in_order() {
        // The first hub refuses connections (nothing listens); the second gets everything.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = probe.local_addr().unwrap();
        drop(probe);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = listener.local_addr().unwrap();
        let server = spawn_server(listener);
        let mut o = options(dead);
        o.fallbacks = vec![live.to_string()];
        o.dumpling_ids = Some("k1".into());
        o.resend_tail = 16;
        let mut client = HubClient::start(o).unwrap();
        for i in 0..20 {
            let d = format!(r#"{{"metadata":{{"chef":"C","n":{i}}},"payload":{i}}}"#);
            client.send("C", d).unwrap();
        }
        let report = client.finish(Duration::from_secs(10), &|| false);
        let (texts, code) = server.join().unwrap();
        assert_eq!(report.lost(), 0, "{report:?}");
        assert_eq!(texts.len(), 21);
        for (i, t) in texts[1..].iter().enumerate() {
            assert_eq!(
                t,
                &format!(r#"{{"metadata":{{"nd_id":"k1-{i}","chef":"C","n":{i}}},"payload":{i}}}"#)
            );
        }
        assert_eq!(code, Some(1000));
    }

    /// A hub that takes the connection and the hello, then goes silent without closing it
    /// (a frozen host): it reads nothing more, so it answers no ping, until `release`.
    fn spawn_frozen_server(
        listener: std::net::TcpListener,
        release: std::sync::mpsc::Receiver<()>,
    ) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let mut ws = tungstenite::accept(tcp).unwrap();
            let hello = ws.read().unwrap().into_text().unwrap().to_string();
            let _ = release.recv_timeout(Duration::from_secs(20));
            hello
        })
    }

    #[test]
    fn a_hub_that_goes_silent_is_given_up_and_the_kitchen_fails_over() {
        let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let frozen_addr = frozen.local_addr().unwrap();
        let (release, released) = std::sync::mpsc::channel();
        let silent = spawn_frozen_server(frozen, released);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let live = listener.local_addr().unwrap();
        let server = spawn_server(listener);
        let mut o = options(frozen_addr);
        o.fallbacks = vec![live.to_string()];
        o.dumpling_ids = Some("k1".into());
        o.resend_tail = 16;
        o.keepalive = Duration::from_millis(100);
        let started = Instant::now();
        let mut client = HubClient::start(o).unwrap();
        for i in 0..5 {
            client
                .send(
                    "C",
                    format!(r#"{{"metadata":{{"chef":"C"}},"payload":{i}}}"#),
                )
                .unwrap();
        }
        // Written into the silent hub's socket buffers (they take data), so only the
        // missing pongs can tell the kitchen that hub is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.report().connections < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let failed_over_after = started.elapsed();
        let report = client.finish(Duration::from_secs(10), &|| false);
        let _ = release.send(());
        assert_eq!(silent.join().unwrap(), r#"{"kitchen_name":"t"}"#);
        let (texts, code) = server.join().unwrap();
        assert_eq!(report.connections, 2, "{report:?}");
        assert_eq!(report.lost(), 0, "{report:?}");
        // Three silent keep-alives (300 ms), not TCP's minutes.
        assert!(
            failed_over_after < Duration::from_secs(5),
            "{failed_over_after:?}"
        );
        // The re-sent tail brings everything the silent hub swallowed, in order.
        let payloads: Vec<&str> = texts[1..].iter().map(String::as_str).collect();
        let want: Vec<String> = (0..5)
            .map(|i| format!(r#"{{"metadata":{{"nd_id":"k1-{i}","chef":"C"}},"payload":{i}}}"#))
            .collect();
        assert_eq!(payloads, want);
        assert_eq!(code, Some(1000));
    }

    /// The connection still open when the final wait ends (a hub that took the upgrade,
    /// then never read): what it wrote counts as unconfirmed, not delivered (14 080 of a
    /// run's dumplings were reported as delivered). A signal ends the wait early.
    #[test]
    fn a_hub_still_not_reading_at_the_end_leaves_its_dumplings_unconfirmed() {
        let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = frozen.local_addr().unwrap();
        let (release, released) = std::sync::mpsc::channel();
        let silent = spawn_frozen_server(frozen, released);
        let mut o = options(addr);
        o.keepalive = Duration::from_secs(30);
        let mut client = HubClient::start(o).unwrap();
        for i in 0..20 {
            client
                .send(
                    "C",
                    format!(r#"{{"metadata":{{"chef":"C"}},"payload":{i}}}"#),
                )
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.report().sent < 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let interrupted_at = Instant::now() + Duration::from_millis(300);
        let started = Instant::now();
        let report = client.finish(Duration::from_secs(30), &|| {
            Instant::now() >= interrupted_at
        });
        let waited = started.elapsed();
        let _ = release.send(());
        let _ = silent.join();
        assert_eq!(report.sent, 20, "{report:?}");
        assert_eq!(report.unconfirmed, 20, "{report:?}");
        assert_eq!(report.lost(), 20, "{report:?}");
        assert!(
            waited < Duration::from_secs(5),
            "the signal ended the wait: {waited:?}"
        );
    }

    /// A hub that takes the upgrade and drops each connection at once: the reconnects
    /// back off (they came every reconnect_min, 5 a second with the defaults, forever).
    #[test]
    fn a_hub_that_drops_every_connection_at_once_gets_a_growing_backoff() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = serve(listener, |listener| async move {
            let mut n = 0u32;
            let until = tokio::time::Instant::now() + Duration::from_millis(1500);
            while let Ok(Ok((tcp, _))) = tokio::time::timeout_at(until, listener.accept()).await {
                if let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await {
                    n += 1;
                    let _ = ws.close(None).await;
                }
            }
            n
        });
        let mut client = HubClient::start(options(addr)).unwrap();
        client
            .send("C", r#"{"metadata":{"chef":"C"},"payload":1}"#.into())
            .unwrap();
        let n = accepted.join().unwrap();
        let _ = client.finish(Duration::ZERO, &|| false);
        // 20 ms doubling to the 100 ms cap: about 17 in 1.5 s; every 20 ms it was ~60.
        assert!((2..=25).contains(&n), "{n} connections in 1.5 s");
    }

    #[test]
    fn a_quiet_healthy_hub_is_kept() {
        // Pings are answered while idle: a hub that only answers pongs is not given up.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_server(listener);
        let mut o = options(addr);
        o.keepalive = Duration::from_millis(50);
        let mut client = HubClient::start(o).unwrap();
        client.send("C", "1".to_owned()).unwrap();
        // Twenty keep-alive periods of silence from the kitchen's side.
        std::thread::sleep(Duration::from_millis(1000));
        client.send("C", "2".to_owned()).unwrap();
        let report = client.finish(Duration::from_secs(10), &|| false);
        let (texts, _) = server.join().unwrap();
        assert_eq!(report.connections, 1, "{report:?}");
        assert_eq!(texts, [r#"{"kitchen_name":"t"}"#, "1", "2"]);
    }

    #[test]
    fn over_size_dumplings_are_refused_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn_server(listener);
        let mut client = HubClient::start(options(addr)).unwrap();
        client.send("C", "1".into()).unwrap();
        let huge = format!("\"{}\"", "x".repeat(dumpling::MAX_MESSAGE_BYTES));
        client.send("C", huge).unwrap();
        client.send("C", "2".into()).unwrap();
        let report = client.finish(Duration::from_secs(10), &|| false);
        let (texts, code) = server.join().unwrap();
        assert_eq!(report.sent, 2, "{report:?}");
        assert_eq!(report.dropped, 1, "{report:?}");
        assert_eq!(&texts[1..], &["1".to_owned(), "2".to_owned()]);
        assert_eq!(code, Some(1000));
    }

    #[test]
    fn bounded_queue_counts_drops_and_finish_reports_loss() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let mut o = options(addr);
        o.max_queued = 5;
        let mut client = HubClient::start(o).unwrap();
        for i in 0..8 {
            client.send("C", format!("{i}")).unwrap();
        }
        let report = client.finish(Duration::from_millis(200), &|| false);
        assert_eq!(report.dropped, 3);
        assert_eq!(report.unsent, 5);
        assert_eq!(report.lost(), 8);
    }
}
