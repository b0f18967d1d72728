//! Replay and resume for eaters (federated hubs, `--nats`).
//!
//! Optional hello keys (the original hub ignores them; an eater that sends none is served
//! from the live ring exactly as before):
//!
//! * `"nd_since_seq": N` — start at stream sequence N (resume: last seen + 1);
//! * `"nd_since": "10m"` or `"2026-12-05T03:00:00Z"` — start at a time (a duration is
//!   counted back from the hub's clock; an RFC 3339 time is absolute);
//! * `"nd_seq": true` — live from now, but with sequence numbers (so the eater can
//!   resume later).
//!
//! Such an eater is served **all** its dumplings from its own ordered JetStream consumer
//! (filtered by its interest), from the start it asked for and on into the live stream:
//! one reader, so there is no seam at which to lose or repeat anything. It skips the
//! ring's copies of stream dumplings (`Frame::seq != 0`) and still gets the hub's status
//! dumplings and notices from the ring. Each dumpling it gets carries its stream sequence
//! as `metadata.nd_seq` (inserted only for these eaters), which the eater libraries keep
//! to reconnect, to this or another hub, with `nd_since_seq = last + 1`.
//!
//! Bounds: at most `--replay-max-eaters` such consumers per hub (further requests are
//! told so and served live), each paced to `--replay-rate` dumplings per second through a
//! 256-message queue, so one replaying eater can neither flood the hub's memory nor take
//! the CPU from the live eaters. Without `--nats` a request gets a `HubNoticeChef` notice
//! saying replay is unavailable, and the eater is served live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::{info, warn};

use futures_util::{Sink, SinkExt};
use tokio_tungstenite::tungstenite::Error as WsError;

use super::interest::{Interest, Member, Union};
use super::reader::{read_stream, ReadSpec, Start};
use crate::auth::Principal;
use crate::kitchen::{classify, Action};
use crate::state::{Frame, Shared};

/// Messages queued between an eater's consumer and its socket.
pub const QUEUE: usize = 256;

/// Where an eater asked to start.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    /// At this stream sequence.
    Sequence(u64),
    /// This long before the hello reached the hub.
    Ago(Duration),
    /// At this time.
    At(time::OffsetDateTime),
    /// Live from now, with sequence numbers.
    Live,
}

/// Read the replay keys of a hello: `Ok(None)` when there are none, `Err` with a
/// message naming the bad key.
pub fn request_from_hello(hello: &RawValue) -> Result<Option<From>, String> {
    use dumpling::eater_hello_keys as key;
    let value: Value = serde_json::from_str(hello.get()).map_err(|e| e.to_string())?;
    if let Some(seq) = value.get(key::SINCE_SEQ).filter(|v| !v.is_null()) {
        return match seq.as_u64() {
            Some(n) if n >= 1 => Ok(Some(From::Sequence(n))),
            _ => Err("nd_since_seq must be a stream sequence >= 1".into()),
        };
    }
    if let Some(since) = value.get(key::SINCE).filter(|v| !v.is_null()) {
        let Some(text) = since.as_str().filter(|t| t.len() <= 64) else {
            return Err("nd_since must be a duration (10m) or an RFC 3339 time".into());
        };
        return parse_since(text).map(Some);
    }
    match value.get(key::SEQ) {
        Some(Value::Bool(true)) => Ok(Some(From::Live)),
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(_) => Err("nd_seq must be true or false".into()),
    }
}

/// `10m`, `90s`, `1.5h` (back from now) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<From, String> {
    if let Ok(at) =
        time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
    {
        return Ok(From::At(at));
    }
    super::args::parse_duration(text)
        .map(From::Ago)
        .map_err(|_| {
            format!(
                "nd_since {:?}: expected a duration (10m, 90s, 2h) or an RFC 3339 time (2026-12-05T03:00:00Z)",
                text.escape_debug().to_string()
            )
        })
}

/// The `nd_stream` of a hello (which stream its `nd_since_seq` came from): `Ok(None)` when
/// absent, `Err` naming the problem when it is not a string or too long.
pub fn stream_from_hello(hello: &RawValue) -> Result<Option<String>, String> {
    use dumpling::eater_hello_keys as key;
    let value: Value = serde_json::from_str(hello.get()).map_err(|e| e.to_string())?;
    match value.get(key::STREAM) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= key::MAX_STREAM_BYTES => Ok(Some(s.clone())),
        Some(_) => Err(format!(
            "nd_stream must be the text of a hub's start notice (at most {} bytes)",
            key::MAX_STREAM_BYTES
        )),
    }
}

/// The name a hub gives one stream, for `nd_stream`: its name and creation time. A stream
/// deleted and created again gets another one (and its sequences start over).
pub fn stream_token(stream: &str, created: time::OffsetDateTime) -> String {
    format!("{stream}@{}", created.unix_timestamp_nanos())
}

/// The creation time a [`stream_token`] of `stream` names (`None` for another stream's
/// token or one that is not a hub's).
fn created_of_token(stream: &str, token: &str) -> Option<time::OffsetDateTime> {
    let nanos = token.strip_prefix(stream)?.strip_prefix('@')?;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos.parse().ok()?).ok()
}

/// Where a replay starts, and what its eater is told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StartNotice {
    /// The stream sequence its consumer reads from (not known for a start time).
    pub sequence: Option<u64>,
    /// The stream's [`stream_token`], when the stream answered.
    pub stream: Option<String>,
    /// What is worth saying about the start (a gap, a re-created stream).
    pub note: Option<String>,
}

/// Decide the start for an eater that asked for sequence `n` of the stream `asked` (its
/// `nd_stream`, if it sent one), given the stream's `state` and `token` now.
fn sequence_start(
    n: u64,
    asked: Option<&str>,
    state: Option<super::StreamState>,
    token: Option<&str>,
) -> (u64, Option<String>) {
    let Some(state) = state else {
        return (n, None);
    };
    let first = state.first.max(1);
    match asked {
        Some(asked) if token.is_some_and(|t| t != asked) => (
            first,
            Some(format!(
                "the stream is not the one sequence {n} came from (it was deleted and created \
                 again, its sequences started over; or this hub reads another stream): \
                 replaying it from its first sequence {first}; what the old stream held after \
                 your last dumpling is not here"
            )),
        ),
        _ if n < first => (
            first,
            Some(format!(
                "sequences {n} to {} are no longer in the stream (removed by its age or size \
                 limits, --nats-max-age / --nats-max-bytes): replaying from {first}; up to {} \
                 dumplings missed",
                first - 1,
                first - n
            )),
        ),
        None if n > state.last.saturating_add(1) => (
            n,
            Some(format!(
                "sequence {n} is past the stream's end ({}): waiting for it. If the stream was \
                 created again since your last dumpling, resume with the nd_stream of the \
                 hub's start notice (the eater libraries do), or without nd_since_seq",
                state.last
            )),
        ),
        _ => (n, None),
    }
}

/// The replay side of a federated hub: stream access, the interest union and the bounds.
#[derive(Debug)]
pub struct Service {
    js: jetstream::Context,
    stream: String,
    prefix: String,
    /// The live eaters' interests (drives the live consumer's filter).
    pub union: Arc<Union>,
    rate: u32,
    permits: Arc<Semaphore>,
    max_eaters: usize,
}

impl Service {
    /// A service for `stream` under `prefix`.
    pub fn new(
        js: jetstream::Context,
        stream: &str,
        prefix: &str,
        union: Arc<Union>,
        rate: u32,
        max_eaters: usize,
    ) -> Service {
        Service {
            js,
            stream: stream.to_owned(),
            prefix: prefix.to_owned(),
            union,
            rate: rate.max(1),
            permits: Arc::new(Semaphore::new(max_eaters)),
            max_eaters,
        }
    }

    /// Start an eater's own consumer; `asked_stream` is its `nd_stream`. `Err` is the
    /// notice text when it cannot.
    pub async fn start(
        &self,
        from: &From,
        asked_stream: Option<&str>,
        interest: Option<&Interest>,
        principal: Option<Arc<Principal>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Replay, String> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            format!(
                "replay refused: {} eaters are already replaying on this hub (--replay-max-eaters); serving live dumplings without sequence numbers",
                self.max_eaters
            )
        })?;
        // One request: which stream this is (for `nd_stream`) and where it begins and ends.
        let state = super::stream_state(&self.js, &self.stream).await;
        let token = state.map(|s| stream_token(&self.stream, s.created));
        let mut note = None;
        let start = match from {
            From::Sequence(n) => {
                let (sequence, said) = sequence_start(*n, asked_stream, state, token.as_deref());
                note = said;
                Start::Sequence(sequence)
            }
            From::Ago(ago) => Start::Time(time::OffsetDateTime::now_utc() - *ago),
            From::At(at) => Start::Time(*at),
            From::Live => match state {
                Some(state) => Start::Sequence(state.last + 1),
                None => return Err("replay refused: the JetStream stream is not reachable; serving live dumplings without sequence numbers".into()),
            },
        };
        let filter = match interest {
            Some(i) => i.filter(&self.prefix, self.union.multi()),
            None => format!("{}.>", self.prefix),
        };
        // The consumer's subject only covers the interest; check it exactly here, and
        // the eater's principal too (replay never widens what `--auth` allows). Only
        // what a hub could have published is replayed (`stream_check.rs`: anyone with
        // publish rights on the subjects could have written the rest).
        let interest = interest.cloned();
        let admit = move |message: &Message| {
            let restricted = principal.as_ref().filter(|p| p.is_restricted());
            match classify(message) {
                Action::Forward { chef, kitchen } => {
                    interest
                        .as_ref()
                        .is_none_or(|i| i.wants(&chef, kitchen.as_deref()))
                        && restricted.is_none_or(|p| p.may_see(&chef, kitchen.as_deref()))
                }
                _ => false,
            }
        };
        // The stream did not answer now: the reader checks the eater's stream against the
        // one it finds once it can (a resume during an outage that re-created it).
        let resume_created = match (state, asked_stream, from) {
            (None, Some(asked), From::Sequence(_)) => created_of_token(&self.stream, asked),
            _ => None,
        };
        let first = StartNotice {
            sequence: match start {
                Start::Sequence(n) => Some(n),
                Start::Time(_) => None,
            },
            stream: token,
            note,
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(
            self.js.clone(),
            Target {
                stream: self.stream.clone(),
                filter,
                start,
                rate: self.rate,
                created: resume_created,
            },
            shutdown,
            tx,
            admit,
            permit,
        ));
        Ok(Replay { rx, task, first })
    }
}

/// An eater's running consumer; stops when dropped.
#[derive(Debug)]
pub struct Replay {
    /// Dumplings (with `metadata.nd_seq`), in stream order.
    pub rx: mpsc::Receiver<Message>,
    task: tokio::task::JoinHandle<()>,
    /// Where it starts, for the eater's start notice.
    pub first: StartNotice,
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one eater's consumer reads.
struct Target {
    stream: String,
    filter: String,
    start: Start,
    rate: u32,
    /// When the stream its start sequence belongs to was created, if known only from the
    /// eater's `nd_stream` ([`ReadSpec::created`]).
    created: Option<time::OffsetDateTime>,
}

async fn run(
    js: jetstream::Context,
    target: Target,
    mut shutdown: watch::Receiver<bool>,
    tx: mpsc::Sender<Message>,
    admit: impl Fn(&Message) -> bool,
    _permit: OwnedSemaphorePermit,
) {
    let Target {
        stream,
        filter,
        mut start,
        rate,
        created,
    } = target;
    info!(%filter, ?start, rate, "fleet: eater replay consumer started");
    let mut pacer = Pacer::new(rate);
    // The stream deleted and created again while this eater reads it: the eater learns
    // the new stream's name (`nd_stream`) before its first dumpling, so it resumes in the
    // new stream's sequences, not the old one's.
    let told = std::sync::Mutex::new(None::<Message>);
    let on_recreated = |state: &super::StreamState| {
        let first = state.first.max(1);
        let notice = start_notice(StartNotice {
            sequence: Some(first),
            stream: Some(stream_token(&stream, state.created)),
            note: Some(
                "the stream was deleted and created again (its sequences started over); \
                 what the old stream held after your last dumpling is not here"
                    .into(),
            ),
        });
        *told.lock().unwrap_or_else(|p| p.into_inner()) = Some(notice);
    };
    let mut sink = |message: Message, sequence: u64| {
        let tx = tx.clone();
        let notice = told.lock().unwrap_or_else(|p| p.into_inner()).take();
        let wanted = admit(&message);
        let wait = if wanted { pacer.take() } else { Duration::ZERO };
        async move {
            if let Some(notice) = notice {
                if tx.send(notice).await.is_err() {
                    return false;
                }
            }
            if !wanted {
                return true;
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            tx.send(with_seq(message, sequence)).await.is_ok()
        }
    };
    let spec = ReadSpec {
        stream: &stream,
        filter: &filter,
        until: None,
        on_recreated: Some(&on_recreated),
        created,
    };
    let end = read_stream(&js, spec, &mut start, None, &mut shutdown, &mut sink).await;
    info!(?end, ?start, "fleet: eater replay consumer ended");
}

/// A token bucket: `rate` per second with one second of burst.
#[derive(Debug)]
struct Pacer {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    fn new(rate: u32) -> Pacer {
        Pacer {
            rate: rate as f64,
            tokens: rate as f64,
            last: Instant::now(),
        }
    }

    /// Take one token; returns how long to wait first.
    fn take(&mut self) -> Duration {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    metadata: &'a RawValue,
}

/// The dumpling with `"nd_seq": sequence` as the first key of its metadata (same frame
/// type). A message whose metadata cannot be found is passed on unchanged.
pub fn with_seq(message: Message, sequence: u64) -> Message {
    let binary = matches!(message, Message::Binary(_));
    let data = message.into_data();
    let Some(out) = insert_seq(&data, sequence) else {
        return if binary {
            Message::Binary(data)
        } else {
            match Utf8Bytes::try_from(data.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(data),
            }
        };
    };
    if binary {
        Message::Binary(out.into_bytes().into())
    } else {
        Message::text(out)
    }
}

fn insert_seq(data: &[u8], sequence: u64) -> Option<String> {
    let text = std::str::from_utf8(data).ok()?;
    let envelope: Envelope<'_> = serde_json::from_str(text).ok()?;
    let meta = envelope.metadata.get();
    // RawValue borrows from `text`, so its position is an offset into it.
    let offset = (meta.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    if !meta.starts_with('{') || offset >= text.len() {
        return None;
    }
    let inner_empty = meta[1..].trim_start().starts_with('}');
    let mut out = String::with_capacity(text.len() + 24);
    out.push_str(&text[..offset + 1]);
    out.push_str(&format!("\"nd_seq\":{sequence}"));
    if !inner_empty {
        out.push(',');
    }
    out.push_str(&text[offset + 1..]);
    Some(out)
}

/// What the hub does for one eater beyond the plain ring, decided from its hello.
#[derive(Debug, Default)]
pub struct Plan {
    /// Its interest, if it named one.
    pub interest: Option<Interest>,
    /// Its own consumer, when it asked for replay and got it.
    pub replay: Option<Replay>,
    /// Its place in the live consumer's interest union (live eaters of a federated hub).
    pub member: Option<Member>,
    /// Notices to send it after the welcome status (bad keys, replay refused...).
    pub notices: Vec<String>,
    /// The eater's `--auth` principal, if any.
    pub principal: Option<Arc<Principal>>,
    /// Where its own consumer starts: sent in a notice (`nd_next_seq`, `nd_stream`) so an
    /// eater can resume from there even before its first dumpling.
    pub starts_at: Option<StartNotice>,
}

impl Plan {
    /// Does this eater take `frame` from the ring? Only what its principal may see
    /// (`--auth`), not the stream dumplings when it has its own consumer, and only what
    /// its interest names.
    pub fn admits(&self, frame: &Frame) -> bool {
        if !crate::eater::admits(self.principal.as_deref(), frame) {
            return false;
        }
        if self.replay.is_some() && frame.seq != 0 {
            return false;
        }
        self.interest.as_ref().is_none_or(|i| i.admits(frame))
    }

    /// Whether this eater takes only some of the ring's frames (its principal is
    /// restricted, it has its own consumer, or it named an interest): then its backlog is
    /// not the ring's (see `backlog.rs`).
    pub fn filters(&self) -> bool {
        self.interest.is_some()
            || self.replay.is_some()
            || self.principal.as_deref().is_some_and(|p| p.is_restricted())
    }

    /// The next dumpling from the eater's own consumer; `None` when it has none (then
    /// this never resolves) or when the consumer ended (the hub is stopping).
    pub async fn next_replayed(&mut self) -> Option<Message> {
        match self.replay.as_mut() {
            Some(replay) => replay.rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Write `first` and whatever else is queued (up to `max` messages), then flush.
    /// Returns the number written.
    pub async fn write_replayed<S>(
        &mut self,
        ws: &mut S,
        first: Message,
        max: usize,
    ) -> Result<u64, WsError>
    where
        S: Sink<Message, Error = WsError> + Unpin,
    {
        ws.feed(first).await?;
        let mut sent = 1u64;
        if let Some(replay) = self.replay.as_mut() {
            while (sent as usize) < max {
                match replay.rx.try_recv() {
                    Ok(message) => {
                        ws.feed(message).await?;
                        sent += 1;
                    }
                    Err(_) => break,
                }
            }
        }
        ws.flush().await?;
        Ok(sent)
    }
}

/// Decide an eater's [`Plan`] from its hello.
pub async fn plan(shared: &Shared, hello: &RawValue, principal: Option<Arc<Principal>>) -> Plan {
    let mut plan = Plan {
        principal: principal.clone(),
        ..Plan::default()
    };
    match Interest::from_hello(hello) {
        Ok(interest) => plan.interest = interest,
        Err(error) => plan.notices.push(format!("interest ignored: {error}")),
    }
    let request = match request_from_hello(hello) {
        Ok(request) => request,
        Err(error) => {
            plan.notices.push(format!("replay ignored: {error}"));
            None
        }
    };
    let asked_stream = match stream_from_hello(hello) {
        Ok(stream) => stream,
        Err(error) => {
            plan.notices.push(format!("nd_stream ignored: {error}"));
            None
        }
    };
    let service = shared.fleet.get().and_then(|f| f.service.clone());
    match (request, &service) {
        (None, _) => {}
        (Some(_), None) => plan.notices.push(
            "replay unavailable: this hub runs without --nats (no stream to replay from); serving live dumplings without sequence numbers".into(),
        ),
        (Some(from), Some(service)) => {
            match service
                .start(
                    &from,
                    asked_stream.as_deref(),
                    plan.interest.as_ref(),
                    principal,
                    shared.shutdown.clone(),
                )
                .await
            {
                Ok(replay) => {
                    if let Some(note) = &replay.first.note {
                        info!(%note, "fleet: eater replay start");
                    }
                    plan.starts_at = Some(replay.first.clone());
                    plan.replay = Some(replay);
                }
                Err(notice) => {
                    warn!(%notice, "fleet: eater replay refused");
                    plan.notices.push(notice);
                }
            }
        }
    }
    if let (None, Some(service)) = (&plan.replay, &service) {
        plan.member = Some(service.union.join(plan.interest.clone()));
    }
    plan
}

/// A `HubNoticeChef` dumpling with a text for the eater (`lagged` 0, so older eaters
/// that only read `lagged` see nothing missed).
pub fn notice(text: &str) -> Message {
    notice_payload(serde_json::json!({ "lagged": 0, "notice": text }))
}

/// The notice telling a replaying eater where its consumer starts (`nd_next_seq`, when
/// known) and which stream it reads (`nd_stream`, for its next resume), with anything worth
/// saying about the start (a gap, a stream created again).
pub fn start_notice(start: StartNotice) -> Message {
    let mut text = match start.sequence {
        Some(sequence) => format!("replaying from stream sequence {sequence}"),
        None => "replaying from the requested time".to_owned(),
    };
    if let Some(note) = &start.note {
        text = format!("{text}: {note}");
    }
    let mut payload = serde_json::json!({ "lagged": 0, "notice": text });
    if let Some(sequence) = start.sequence {
        payload["nd_next_seq"] = sequence.into();
    }
    if let Some(stream) = start.stream {
        payload["nd_stream"] = stream.into();
    }
    notice_payload(payload)
}

fn notice_payload(payload: Value) -> Message {
    let payload = payload.to_string();
    let raw = match dumpling::validate_payload(&payload) {
        Ok(raw) => raw,
        Err(_) => return crate::status::lag_notice(0),
    };
    Message::text(dumpling::encode_dumpling(
        dumpling::HUB_NOTICE_CHEF,
        None,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        dumpling::Driver::Interval,
        &raw,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn a_resume_in_another_stream_or_a_trimmed_one_starts_where_the_stream_begins() {
        let created = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let state = |first, last| {
            Some(crate::fleet::StreamState {
                created,
                first,
                last,
            })
        };
        let token = stream_token("ND", created);
        assert_eq!(token, "ND@1800000000000000000");
        assert_eq!(created_of_token("ND", &token), Some(created));
        assert_eq!(created_of_token("OTHER", &token), None);
        assert_eq!(created_of_token("ND", "ND@x"), None);
        assert_eq!(
            created_of_token("ND", "ND@99999999999999999999999999999999"),
            None
        );
        let now = Some(token.as_str());
        // Same stream, inside it: as asked, nothing to say.
        assert_eq!(sequence_start(50, now, state(1, 100), now), (50, None));
        assert_eq!(sequence_start(101, None, state(1, 100), now), (101, None));
        // Another stream (created again): from its first sequence, said.
        let (at, note) = sequence_start(5000, Some("ND@1"), state(1, 100), now);
        assert_eq!(at, 1);
        assert!(note.unwrap().contains("deleted and created again"));
        // Trimmed: from the first sequence still stored, the gap said.
        let (at, note) = sequence_start(5, now, state(770, 900), now);
        assert_eq!(at, 770);
        let note = note.unwrap();
        assert!(
            note.contains("sequences 5 to 769") && note.contains("up to 765"),
            "{note}"
        );
        // Past the end without nd_stream: waits, and says how to resume properly.
        let (at, note) = sequence_start(1000, None, state(1, 50), now);
        assert_eq!(at, 1000);
        assert!(note.unwrap().contains("past the stream's end (50)"));
        // The stream did not answer: as asked.
        assert_eq!(sequence_start(7, Some("x"), None, None), (7, None));
        // nd_stream: a string of bounded length.
        assert_eq!(
            stream_from_hello(&raw(r#"{"eater_name":"e","nd_stream":"ND@5"}"#)),
            Ok(Some("ND@5".to_owned()))
        );
        let long = format!(r#"{{"eater_name":"e","nd_stream":"{}"}}"#, "x".repeat(600));
        assert!(stream_from_hello(&raw(&long)).is_err());
        assert!(stream_from_hello(&raw(r#"{"eater_name":"e","nd_stream":5}"#)).is_err());
    }

    #[test]
    fn hello_keys_parse() {
        assert_eq!(request_from_hello(&raw(r#"{"eater_name":"e"}"#)), Ok(None));
        assert_eq!(
            request_from_hello(&raw(r#"{"eater_name":"e","nd_since_seq":42}"#)),
            Ok(Some(From::Sequence(42)))
        );
        assert_eq!(
            request_from_hello(&raw(r#"{"eater_name":"e","nd_since":"10m"}"#)),
            Ok(Some(From::Ago(Duration::from_secs(600))))
        );
        assert!(matches!(
            request_from_hello(&raw(
                r#"{"eater_name":"e","nd_since":"2026-12-05T03:00:00Z"}"#
            )),
            Ok(Some(From::At(_)))
        ));
        assert_eq!(
            request_from_hello(&raw(r#"{"eater_name":"e","nd_seq":true}"#)),
            Ok(Some(From::Live))
        );
        assert!(request_from_hello(&raw(r#"{"eater_name":"e","nd_since_seq":0}"#)).is_err());
        assert!(
            request_from_hello(&raw(r#"{"eater_name":"e","nd_since":"soon"}"#))
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    #[test]
    fn sequence_goes_first_in_the_metadata() {
        let text = r#"{"metadata": {"chef": "C", "kitchen": "k"}, "payload": {"metadata": 1}}"#;
        let out = with_seq(Message::text(text), 7);
        assert_eq!(
            out.to_text().unwrap(),
            r#"{"metadata": {"nd_seq":7,"chef": "C", "kitchen": "k"}, "payload": {"metadata": 1}}"#
        );
        let text = r#"{"payload":1,"metadata":{ }}"#;
        assert_eq!(
            with_seq(Message::binary(text.as_bytes().to_vec()), 1).into_data(),
            r#"{"payload":1,"metadata":{"nd_seq":1 }}"#.as_bytes()
        );
        assert_eq!(
            with_seq(Message::text("not json"), 1).to_text().unwrap(),
            "not json"
        );
    }

    #[test]
    fn pacer_allows_a_burst_then_spaces_out() {
        let mut p = Pacer::new(10);
        let waits: Vec<Duration> = (0..11).map(|_| p.take()).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()));
        assert!(waits[10] > Duration::from_millis(50), "{:?}", waits[10]);
    }

    #[test]
    fn notices_are_hub_notices_with_lagged_zero() {
        let m = notice("replay unavailable");
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        assert_eq!(v["metadata"]["chef"], "HubNoticeChef");
        assert_eq!(v["payload"]["lagged"], 0);
        assert_eq!(v["payload"]["notice"], "replay unavailable");
    }
}
