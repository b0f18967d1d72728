//! Reading the JetStream stream through ordered consumers: the one loop behind the hub's
//! live consumer ([`super::consume`], [`super::interest::consume_live`]) and each eater's
//! replay consumer ([`super::replay`]).
//!
//! Invariants, for each reader:
//! - **Never twice.** A dumpling is handed to the sink at most once: by its `Nats-Msg-Id`
//!   among the last [`RECENT_IDS`] delivered ([`super::seen`]), and by stream sequence for
//!   a message without an id.
//! - **Nothing skipped.** The consumer is re-created after any error, after 1 s of silence
//!   while the stream has something for it, and when its replica disagrees with the
//!   stream leader. A re-created consumer starts at the last sequence the leader
//!   confirmed (at most [`RECENT_IDS`] back), not at the last one delivered, so what a
//!   disagreeing replica left out is read again from another one and what it already
//!   gave is dropped by id.
//! - **Confirmed against the leader.** An R1 consumer reads its own server's replica, and
//!   nats-server 2.9.10 can leave replicas disagreeing after a whole-cluster restart. At
//!   most every [`VERIFY_PERIOD`] (and whenever the stream goes quiet) the last delivered
//!   dumpling is compared with what the stream leader holds at its sequence
//!   (`STREAM.MSG.GET`, answered by the leader only). A bounded read (`until`) confirms
//!   its last delivery before it ends, since its end is counted on its own replica.
//!   The leader is the reference: if the leader's own replica lost an acknowledged
//!   message (the same server bug), readers follow the leader and do not see it.
//! - **Bounded waits.** Creating a consumer may take [`CREATE_TIMEOUT`] (up to 4 times
//!   that after repeated misses); then it is tried again (the server places it anew),
//!   instead of waiting the connection's 10 s request timeout on a consumer placed on a
//!   dead node.
//!
//! Order is stream order, except that a dumpling recovered after a disagreement comes
//! later than its neighbours.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream::RawMessageErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::{debug, warn};

use super::seen::Seen;
use super::BINARY_HEADER;
use crate::state::stopped;

/// How long a consumer may be silent before the server is asked whether it is stalled.
const STALL_CHECK: Duration = Duration::from_secs(1);
/// Longest wait for a consumer to be created; then it is abandoned and tried again.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often (at most) the last delivered dumpling is checked against the stream leader.
pub const VERIFY_PERIOD: Duration = Duration::from_secs(1);
/// Longest wait for the leader's answer to a check (no answer: checked again later).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(2);
/// Ids remembered per reader; also the furthest a re-created consumer goes back.
pub const RECENT_IDS: usize = 32_768;

/// Where the first message of a read comes from.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// This stream sequence (or the first one after it that matches).
    Sequence(u64),
    /// The first message stored at or after this time.
    Time(time::OffsetDateTime),
}

/// Why [`read_stream`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// The hub is shutting down.
    Shutdown,
    /// The sink asked to stop.
    SinkClosed,
    /// The filter watch changed (the caller re-reads it).
    FilterChanged,
    /// Every matching message up to `until` was delivered.
    ReachedUntil,
}

/// A message read from the stream: its sequence and the frame as eaters get it.
pub fn to_frame(msg: &jetstream::Message) -> Message {
    let binary = msg
        .headers
        .as_ref()
        .is_some_and(|h| h.get(BINARY_HEADER).is_some());
    let payload = msg.message.payload.clone();
    if binary {
        Message::Binary(payload)
    } else {
        match Utf8Bytes::try_from(payload.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(payload),
        }
    }
}

/// What one [`read_stream`] call reads.
pub struct ReadSpec<'a> {
    /// The stream name.
    pub stream: &'a str,
    /// The consumer's filter: one subject, or (nats-server >= 2.10 only) several
    /// separated by spaces ([`super::interest::filter_subjects`]).
    pub filter: &'a str,
    /// Stop once every matching message with a sequence up to this one was delivered.
    pub until: Option<u64>,
    /// Called when the stream turns out to have been deleted and created again, before
    /// anything of the new one is delivered (an eater's consumer tells its eater).
    pub on_recreated: Option<&'a (dyn Fn(&super::StreamState) + Send + Sync)>,
    /// When the stream the start sequence belongs to was created, if the caller knows it
    /// (an eater's `nd_stream`): a stream created at another time is another stream,
    /// whose sequences say nothing of that one's, and is read from its first sequence.
    pub created: Option<time::OffsetDateTime>,
}

/// The last delivered dumpling, as the leader should hold it.
#[derive(Debug, Clone)]
struct Delivered {
    sequence: u64,
    id: Option<std::sync::Arc<str>>,
    payload: Bytes,
}

/// What the stream leader said about a delivered dumpling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// It holds the same dumpling at that sequence.
    Agreed,
    /// It holds another one, or none while still holding later ones.
    Disagreed,
    /// No answer in time, or the message aged out: ask again later.
    Unknown,
}

type CheckFuture = Pin<Box<dyn Future<Output = (Delivered, Check)> + Send>>;

/// Ask the stream leader what it holds at `delivered.sequence`.
fn check_with_leader(js: jetstream::Context, stream: String, delivered: Delivered) -> CheckFuture {
    Box::pin(async move {
        let asked = async {
            let handle = js.get_stream_no_info(&stream).await.ok()?;
            match handle.get_raw_message(delivered.sequence).await {
                Ok(held) => {
                    let id = held
                        .headers
                        .get(async_nats::header::NATS_MESSAGE_ID)
                        .map(|v| v.as_str());
                    Some(
                        if id == delivered.id.as_deref() && held.payload == delivered.payload {
                            Check::Agreed
                        } else {
                            Check::Disagreed
                        },
                    )
                }
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {
                    // Gone from the leader: aged out (nothing to compare), or never there.
                    let first = super::stream_first_sequence(&js, &stream).await?;
                    Some(if delivered.sequence < first {
                        Check::Unknown
                    } else {
                        Check::Disagreed
                    })
                }
                Err(_) => None,
            }
        };
        let check = tokio::time::timeout(VERIFY_TIMEOUT, asked)
            .await
            .ok()
            .flatten()
            .unwrap_or(Check::Unknown);
        (delivered, check)
    })
}

/// Where a re-created consumer starts: back at the last sequence the leader confirmed, but
/// no further back than the remembered ids reach (and never after `next`).
fn rewind(next: u64, agreed: u64, seen: &Seen) -> u64 {
    let floor = seen.oldest_sequence().unwrap_or(next);
    (agreed + 1).max(floor).min(next).max(1)
}

/// Before a bounded read ends, confirm its last delivery with the leader: a replica that
/// left something out would otherwise end the read early (its `pending` counted on that
/// replica) with nothing left to notice. `false`: the replica disagreed, read again.
async fn confirm_end(
    js: &jetstream::Context,
    stream: &str,
    unchecked: &mut Option<Delivered>,
    checking: &mut Option<CheckFuture>,
    agreed: &mut u64,
) -> bool {
    // A check in flight is about an older delivery: the newest one decides.
    let check = match (unchecked.take(), checking.take()) {
        (Some(delivered), _) => check_with_leader(js.clone(), stream.to_owned(), delivered),
        (None, Some(check)) => check,
        (None, None) => return true,
    };
    let (delivered, check) = check.await;
    match check {
        Check::Agreed => {
            *agreed = (*agreed).max(delivered.sequence);
            true
        }
        // No answer: ending is the best left (the live read after it is checked again).
        Check::Unknown => true,
        Check::Disagreed => {
            warn!(
                sequence = delivered.sequence,
                agreed = *agreed,
                stream,
                "fleet: a bounded read's stream replica disagrees with the stream leader; re-reading from the last agreed sequence"
            );
            false
        }
    }
}

/// Read matching messages from `*start` on, handing each (frame, stream sequence) to
/// `sink` (which resolves to `false` to stop). `*start` becomes `Sequence(last + 1)` as
/// messages are delivered, so a caller that restarts the read loses and repeats nothing.
/// Returns on shutdown, when the sink stops, when `changed` (if given) changes, or at
/// `until`. See the module docs for the guarantees.
pub async fn read_stream<F, Fut>(
    js: &jetstream::Context,
    spec: ReadSpec<'_>,
    start: &mut Start,
    mut changed: Option<&mut watch::Receiver<String>>,
    shutdown: &mut watch::Receiver<bool>,
    sink: &mut F,
) -> ReadEnd
where
    F: FnMut(Message, u64) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut failures: u32 = 0;
    // The full-stream filter can use the cheap stall check (stream's last sequence);
    // a narrower one must ask its consumer how much it has pending.
    let whole_stream = spec.filter.ends_with(".>") && !spec.filter.contains(['*', ' ']) && {
        let head = &spec.filter[..spec.filter.len() - 2];
        !head.contains('>')
    };
    let mut seen = Seen::new(RECENT_IDS);
    // The last sequence at which the leader confirmed what this reader delivered (the read
    // starts there by definition).
    let mut agreed: u64 = match *start {
        Start::Sequence(sequence) => sequence.max(1) - 1,
        Start::Time(_) => 0,
    };
    let mut unchecked: Option<Delivered> = None;
    let mut checking: Option<CheckFuture> = None;
    let mut last_check = Instant::now();
    let mut disagreements: u32 = 0;
    // A sequence where the last consumer's replica disagreed with the leader: the next
    // consumer is checked right there, since a replica that lost a message can agree
    // again further on (the leader's later messages reach it too).
    let mut probe_at: Option<u64> = None;
    let mut dropped: u64 = 0;
    let mut first_consumer = true;
    // When the stream read was created (see `recreated`).
    let mut stream_created: Option<time::OffsetDateTime> = spec.created;
    loop {
        if *shutdown.borrow() {
            return ReadEnd::Shutdown;
        }
        let from = match *start {
            Start::Sequence(next) if !first_consumer => {
                Start::Sequence(rewind(next, agreed, &seen))
            }
            other => other,
        };
        let deliver_policy = match from {
            Start::Sequence(sequence) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: sequence.max(1),
            },
            Start::Time(start_time) => consumer::DeliverPolicy::ByStartTime { start_time },
        };
        if let (Some(until), Start::Sequence(next)) = (spec.until, from) {
            if next > until {
                return ReadEnd::ReachedUntil;
            }
        }
        // Short at first (a consumer placed on a dead node never answers), longer after
        // repeated misses (a loaded server may just be slow).
        let create_timeout = CREATE_TIMEOUT * (failures + 1).min(4);
        let created = tokio::time::timeout(create_timeout, async {
            let stream = js
                .get_stream(spec.stream)
                .await
                .map_err(|e| e.to_string())?;
            // Several subjects go in `filter_subjects` (a 2.10 field; 2.9 only ever gets
            // one, in `filter_subject`).
            let mut subjects = super::interest::filter_subjects(spec.filter);
            let (filter_subject, filter_subjects) = if subjects.len() == 1 {
                (subjects.pop().unwrap_or_default(), Vec::new())
            } else {
                (String::new(), subjects)
            };
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject,
                    filter_subjects,
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let info = consumer.cached_info();
            let (name, pending) = (info.name.clone(), info.num_pending);
            let messages = consumer.messages().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((stream, name, pending, messages))
        });
        let wait_change = async {
            match changed.as_deref_mut() {
                Some(rx) => {
                    let _ = rx.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        let made = tokio::select! {
            made = created => made.unwrap_or_else(|_| Err(format!("no answer within {} s", create_timeout.as_secs()))),
            _ = wait_change => return ReadEnd::FilterChanged,
            _ = stopped(shutdown) => return ReadEnd::Shutdown,
        };
        let (stream, name, mut pending, mut messages) = match made {
            Ok(made) => made,
            Err(error) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(%error, attempts = failures, filter = spec.filter, "fleet: cannot create a stream consumer; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => {}
                    _ = stopped(shutdown) => return ReadEnd::Shutdown,
                }
                continue;
            }
        };
        first_consumer = false;
        let info = stream.cached_info();
        let state = super::StreamState {
            created: info.created,
            first: info.state.first_sequence,
            last: info.state.last_sequence,
        };
        if recreated(&state, stream_created) {
            // Made on another stream than the one being read (deleted and created again
            // since): nothing of it was delivered yet; read it from its first sequence.
            warn!(
                stream = spec.stream,
                first = state.first,
                last = state.last,
                "fleet: the stream was deleted and created again; reading the new one from its first sequence"
            );
            if let Some(tell) = spec.on_recreated {
                tell(&state);
            }
            *start = Start::Sequence(state.first.max(1));
            agreed = state.first.max(1) - 1;
            unchecked = None;
            checking = None;
            probe_at = None;
            stream_created = Some(state.created);
            first_consumer = true;
            continue;
        }
        stream_created.get_or_insert(state.created);
        debug!(
            ?from,
            filter = spec.filter,
            pending,
            "fleet: consumer reading"
        );
        // A bounded read with nothing matching left is done at once: no message would
        // ever come to say so.
        if spec.until.is_some() && pending == 0 {
            if confirm_end(js, spec.stream, &mut unchecked, &mut checking, &mut agreed).await {
                return ReadEnd::ReachedUntil;
            }
            disagreements += 1;
            tokio::select! {
                _ = tokio::time::sleep(backoff(1)) => {}
                _ = stopped(shutdown) => return ReadEnd::Shutdown,
            }
            continue;
        }
        loop {
            let wait_change = async {
                match changed.as_deref_mut() {
                    Some(rx) => {
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let wait_check = async {
                match checking.as_mut() {
                    Some(check) => check.await,
                    None => std::future::pending().await,
                }
            };
            let item = tokio::select! {
                (delivered, check) = wait_check => {
                    checking = None;
                    match check {
                        Check::Agreed => agreed = agreed.max(delivered.sequence),
                        Check::Unknown => {
                            // Asked again with whatever is the last delivery then.
                            if unchecked.is_none() {
                                unchecked = Some(delivered);
                            }
                        }
                        Check::Disagreed => {
                            disagreements += 1;
                            unchecked = None;
                            probe_at = Some(delivered.sequence);
                            if disagreements == 1 || disagreements.is_power_of_two() {
                                warn!(
                                    sequence = delivered.sequence,
                                    agreed,
                                    consumer = %name,
                                    filter = spec.filter,
                                    "fleet: this consumer's stream replica disagrees with the stream leader; re-reading from the last agreed sequence on a new consumer"
                                );
                            }
                            break;
                        }
                    }
                    continue;
                }
                item = tokio::time::timeout(STALL_CHECK, messages.next()) => match item {
                    Ok(item) => item,
                    Err(_) => {
                        // Quiet for a while: a good moment to confirm the last deliveries.
                        if checking.is_none() {
                            if let Some(delivered) = unchecked.take() {
                                last_check = Instant::now();
                                checking = Some(check_with_leader(js.clone(), spec.stream.to_owned(), delivered));
                            }
                        }
                        // The stream may have been deleted and created again: its
                        // sequences started over, and this consumer, waiting past the
                        // old ones, would deliver nothing until the new stream passed
                        // them.
                        // The next consumer, made on the new stream, finds it so and
                        // starts it from its first sequence (where consumers are made).
                        let state = super::stream_state(js, spec.stream).await;
                        if state.is_some_and(|s| recreated(&s, stream_created)) {
                            break;
                        }
                        // Fine if nothing matching is new, but an ordered consumer whose
                        // server died can hang without an error (seen when its node was
                        // killed), so ask the server.
                        let stalled = if let (true, Start::Sequence(next)) = (whole_stream, *start) {
                            matches!(state, Some(state) if state.last >= next)
                        } else {
                            // The ordered consumer re-creates itself under a new name after
                            // some errors; a name that is gone means: re-create it here.
                            match stream.consumer_info(&name).await {
                                Ok(info) => info.num_pending > 0,
                                Err(_) => true,
                            }
                        };
                        if stalled {
                            warn!(?start, filter = spec.filter, "fleet: stream consumer stalled; re-creating it");
                            break;
                        }
                        continue;
                    }
                },
                _ = wait_change => return ReadEnd::FilterChanged,
                _ = stopped(shutdown) => return ReadEnd::Shutdown,
            };
            match item {
                Some(Ok(msg)) => {
                    failures = 0;
                    let sequence = match msg.info() {
                        Ok(info) => info.stream_sequence,
                        Err(_) => continue,
                    };
                    if spec.until.is_some_and(|until| sequence > until) {
                        if confirm_end(js, spec.stream, &mut unchecked, &mut checking, &mut agreed)
                            .await
                        {
                            return ReadEnd::ReachedUntil;
                        }
                        disagreements += 1;
                        break;
                    }
                    pending = pending.saturating_sub(1);
                    let next = match *start {
                        Start::Sequence(next) => next,
                        Start::Time(_) => 0,
                    };
                    let id = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                        .map(|v| v.as_str());
                    // The id as remembered (shared with `unchecked` below: no copy).
                    let (fresh, kept_id) = match id {
                        Some(id) => match seen.admit_shared(sequence, id) {
                            Some(kept) => (true, Some(kept)),
                            None => (false, None),
                        },
                        None => (sequence >= next, None),
                    };
                    if sequence >= next {
                        *start = Start::Sequence(sequence + 1);
                    }
                    if probe_at == Some(sequence) {
                        probe_at = None;
                        last_check = Instant::now();
                        checking = Some(check_with_leader(
                            js.clone(),
                            spec.stream.to_owned(),
                            Delivered {
                                sequence,
                                id: id.map(Into::into),
                                payload: msg.message.payload.clone(),
                            },
                        ));
                    }
                    if fresh {
                        unchecked = Some(Delivered {
                            sequence,
                            id: kept_id,
                            payload: msg.message.payload.clone(),
                        });
                        if !sink(to_frame(&msg), sequence).await {
                            return ReadEnd::SinkClosed;
                        }
                    } else {
                        dropped += 1;
                        debug!(
                            sequence,
                            dropped, "fleet: dumpling already delivered; dropped"
                        );
                    }
                    if checking.is_none() && last_check.elapsed() >= VERIFY_PERIOD {
                        if let Some(delivered) = unchecked.take() {
                            last_check = Instant::now();
                            checking = Some(check_with_leader(
                                js.clone(),
                                spec.stream.to_owned(),
                                delivered,
                            ));
                        }
                    }
                    if let Some(until) = spec.until {
                        // `pending` counted what matched when the consumer was made, which
                        // was after `until` was stored: none left means none up to `until`.
                        if sequence >= until || pending == 0 {
                            if confirm_end(
                                js,
                                spec.stream,
                                &mut unchecked,
                                &mut checking,
                                &mut agreed,
                            )
                            .await
                            {
                                return ReadEnd::ReachedUntil;
                            }
                            disagreements += 1;
                            break;
                        }
                    }
                }
                Some(Err(error)) => {
                    failures += 1;
                    warn!(%error, ?start, "fleet: stream consumer error; re-creating it");
                    break;
                }
                None => {
                    failures += 1;
                    break;
                }
            }
        }
        // A check in flight belongs to the consumer being dropped; its answer would still
        // be right, but the new consumer re-reads from `agreed` anyway.
        if let Some(check) = checking.take() {
            drop(check);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff(failures)) => {}
            _ = stopped(shutdown) => return ReadEnd::Shutdown,
        }
    }
}

/// Whether the stream was deleted and created again since this reader first saw it (at
/// `created`, taken when its first consumer was made): its creation time changed. (Not
/// "its last sequence is behind the reader": an eater may ask to start past the end, and
/// was then given the whole stream.)
fn recreated(state: &super::StreamState, created: Option<time::OffsetDateTime>) -> bool {
    created.is_some_and(|was| was != state.created)
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(4)).min(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_created_again_is_told_by_its_creation_time() {
        let t0 = time::OffsetDateTime::UNIX_EPOCH;
        let t1 = t0 + time::Duration::seconds(5);
        let state = |created, first, last| super::super::StreamState {
            created,
            first,
            last,
        };
        // Same stream, whatever the reader's position (an eater may start past the end).
        assert!(!recreated(&state(t0, 1, 500), Some(t0)));
        assert!(!recreated(&state(t0, 1, 400), Some(t0)));
        // A new creation time, behind or past the reader's position.
        assert!(recreated(&state(t1, 1, 900), Some(t0)));
        assert!(recreated(&state(t1, 0, 0), Some(t0)));
        assert!(!recreated(&state(t1, 0, 0), None));
    }

    #[test]
    fn a_new_consumer_goes_back_to_the_last_agreed_sequence_within_the_remembered_ids() {
        let mut seen = Seen::new(4);
        assert_eq!(rewind(10, 9, &seen), 10, "nothing delivered yet");
        for s in 10..20 {
            seen.admit(s, &format!("k-{s}"));
        }
        // Remembered: 16..=19; agreed at 12 -> only back to 16 (older ids are forgotten).
        assert_eq!(rewind(20, 12, &seen), 16);
        // Agreed at 18 -> from 19.
        assert_eq!(rewind(20, 18, &seen), 19);
        // Agreed everything -> from next.
        assert_eq!(rewind(20, 19, &seen), 20);
    }
}
