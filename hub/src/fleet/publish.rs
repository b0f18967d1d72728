//! The publisher task: every dumpling this hub's kitchens send goes into the JetStream
//! stream once, in order, at least once (exactly once by its `Nats-Msg-Id`).
//!
//! Why not `jetstream::Context::publish`: each of its publishes costs an ack-permit
//! semaphore, a oneshot, an entry in the client's request map, a timer around the send
//! and another around the ack, a boxed future and an untagged-enum JSON decode. At
//! thousands of dumplings per second that was most of the hub's publishing CPU
//! (`nd-fleet-bench`, `perf`). Here the acks come back on **one** subscription of this
//! hub's own inbox (`<inbox>.<n>`, one token per publish), the oldest unacknowledged
//! publish has the only deadline, and an ack is decoded into a borrowed struct.
//!
//! The guarantees are the ones the previous loop kept:
//! - at most `max_in_flight` publishes wait for their acks;
//! - acks are taken in publish order (one that arrives early waits for the older ones);
//! - on any error (a JetStream error reply, no responders, no ack within
//!   [`ACK_TIMEOUT`] of a publish becoming the oldest, a send that fails) every
//!   unacknowledged dumpling is published again, in order, with the same `Nats-Msg-Id`
//!   (so one whose ack was lost, e.g. when the stream leader changed, is stored once);
//!   after an error only the oldest goes out, as a probe, until the stream acknowledges
//!   it, so a stream without a leader (a cluster electing after a restart) sees one
//!   publish per backoff from each hub, not the whole window each time;
//! - nothing new goes out before the retries: the stream keeps each hub's order;
//! - a stream that is gone (deleted by someone: publishes get "no responders") is created
//!   again with this hub's settings, on the first such failure and then on every
//!   power-of-two one, so publishing resumes by itself.
//!
//! An ack for a publish that was already given up (a late answer to a retried one) names
//! an `n` no longer waiting and is ignored.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::client::PublishErrorKind;
use async_nats::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::warn;

use super::{FleetStats, Outgoing, BINARY_HEADER, ORIGIN_HEADER};

/// How long the oldest publish may wait for its ack before everything unacknowledged is
/// published again (the JetStream client's own default; checked every [`ACK_CHECK`], so
/// up to one check later).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the oldest publish's wait is checked.
const ACK_CHECK: Duration = Duration::from_secs(1);

/// What the stream said about one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckResult {
    /// Stored at this sequence; `duplicate` when it was already stored (same id).
    Stored {
        /// The stream sequence.
        sequence: u64,
        /// JetStream's duplicate window held this id already.
        duplicate: bool,
    },
    /// Not stored (the text says why); retried.
    Failed(String),
    /// No stream takes the subject (no responders): it was deleted, or JetStream is not
    /// there. Retried, and the stream is created again ([`publish_loop`]'s `recreate`).
    NoStream,
    /// Not stored, and never will be (the stream refuses this message itself: over its
    /// message or header size); dropped and counted, not retried.
    Refused(String),
}

/// JetStream error codes that refuse the message itself, whatever the stream's state:
/// `JSStreamMessageExceedsMaximumErr` and `JSStreamHeaderExceedsMaximumErr`.
const MESSAGE_REFUSED_CODES: [u16; 2] = [10054, 10097];

#[derive(Deserialize)]
struct AckReply<'a> {
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
    #[serde(borrow, default)]
    error: Option<AckError<'a>>,
}

#[derive(Deserialize)]
struct AckError<'a> {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u16,
    #[serde(borrow, default)]
    description: Option<std::borrow::Cow<'a, str>>,
}

/// Decode a JetStream publish reply (`{"stream":..,"seq":N[,"duplicate":true]}` or
/// `{"error":{..}}`); a 503 status is "no responders" (no stream for the subject).
pub fn decode_ack(status: Option<StatusCode>, payload: &[u8]) -> AckResult {
    if status == Some(StatusCode::NO_RESPONDERS) {
        return AckResult::NoStream;
    }
    match serde_json::from_slice::<AckReply<'_>>(payload) {
        Ok(AckReply {
            error: Some(error), ..
        }) => {
            let text = format!(
                "JetStream error {} ({}): {}",
                error.code,
                error.err_code,
                dumpling::text::escape(
                    error.description.as_deref().unwrap_or("(no description)"),
                    256
                )
            );
            if MESSAGE_REFUSED_CODES.contains(&error.err_code) {
                AckResult::Refused(text)
            } else {
                AckResult::Failed(text)
            }
        }
        Ok(AckReply { seq, duplicate, .. }) if seq > 0 => AckResult::Stored {
            sequence: seq,
            duplicate,
        },
        _ => AckResult::Failed(format!(
            "unreadable publish ack ({} bytes, status {status:?})",
            payload.len()
        )),
    }
}

/// The publish number an ack answers, from its subject `<inbox>.<n>`.
pub fn ack_number(subject: &str) -> Option<u64> {
    subject.rsplit_once('.')?.1.parse().ok()
}

/// One publish waiting for its ack.
struct Waiting {
    n: u64,
    out: Outgoing,
    result: Option<AckResult>,
}

/// The publishes waiting for their acks, oldest first, numbered consecutively.
struct Window {
    waiting: VecDeque<Waiting>,
}

impl Window {
    fn push(&mut self, n: u64, out: Outgoing) {
        self.waiting.push_back(Waiting {
            n,
            out,
            result: None,
        });
    }

    /// Record an ack for publish `n` (ignored when `n` no longer waits).
    fn record(&mut self, n: u64, result: AckResult) {
        let Some(first) = self.waiting.front().map(|w| w.n) else {
            return;
        };
        let Some(index) = n.checked_sub(first) else {
            return;
        };
        if let Some(w) = self.waiting.get_mut(index as usize) {
            if w.n == n && w.result.is_none() {
                w.result = Some(result);
            }
        }
    }

    fn pop_front(&mut self) -> Option<Waiting> {
        self.waiting.pop_front()
    }

    /// Everything waiting, oldest first, without its acks.
    fn drain(&mut self) -> impl Iterator<Item = Outgoing> + '_ {
        self.waiting.drain(..).map(|w| w.out)
    }
}

/// Bytes the headers of `out` take on the wire (`NATS/1.0`, one `Name: value` line each,
/// the blank line), as [`headers`] builds them: the server's `max_payload` counts them.
pub fn header_bytes(out: &Outgoing, hub_id: &str) -> usize {
    let line = |name: &str, value: &str| name.len() + 2 + value.len() + 2;
    let mut bytes = "NATS/1.0\r\n".len() + 2;
    bytes += line(async_nats::header::NATS_MESSAGE_ID.as_ref(), &out.msg_id);
    bytes += line(ORIGIN_HEADER, hub_id);
    if out.binary {
        bytes += line(BINARY_HEADER, "1");
    }
    bytes
}

/// A publish's size as the server's `max_payload` sees it: headers and payload.
pub fn wire_bytes(out: &Outgoing, hub_id: &str) -> usize {
    header_bytes(out, hub_id) + out.payload.len()
}

fn headers(out: &Outgoing, hub_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, out.msg_id.as_str());
    headers.insert(ORIGIN_HEADER, hub_id);
    if out.binary {
        headers.insert(BINARY_HEADER, "1");
    }
    headers
}

/// The publisher task (see the module docs). Ends when every [`super::Publisher`] is
/// dropped.
pub async fn publish_loop(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Outgoing>,
    max_in_flight: usize,
    hub_id: String,
    stats: Arc<FleetStats>,
    recreate: impl AsyncFn(),
) {
    let inbox = client.new_inbox();
    let mut acks = loop {
        match client.subscribe(format!("{inbox}.*")).await {
            Ok(sub) => break sub,
            Err(error) => {
                warn!(%error, "fleet: cannot subscribe to the publish-ack inbox; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut window = Window {
        waiting: VecDeque::new(),
    };
    // The ack deadline is checked once per ACK_CHECK (no timer per publish): the oldest
    // publish fails when it was the oldest, unanswered, at ACK_TIMEOUT / ACK_CHECK checks
    // in a row.
    let mut check = tokio::time::interval(ACK_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stuck: Option<(u64, u32)> = None;
    // Messages to (re)publish before anything new: filled after an error.
    let mut retry: VecDeque<Outgoing> = VecDeque::new();
    let mut failures: u32 = 0;
    let mut next_n: u64 = 0;
    // One publish: `Ok` once the client took it (the ack comes later).
    let publish = |out: &Outgoing, n: u64| {
        let reply = format!("{inbox}.{n}");
        client.publish_with_reply_and_headers(
            out.subject.clone(),
            reply,
            headers(out, &hub_id),
            out.payload.clone(),
        )
    };
    loop {
        // Settle the acks that arrived, oldest first.
        while let Some(front) = window.waiting.front() {
            match &front.result {
                None => break,
                Some(AckResult::Stored { duplicate, .. }) => {
                    failures = 0;
                    stats.settled.fetch_add(1, Ordering::Relaxed);
                    if *duplicate {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    window.pop_front();
                }
                Some(AckResult::Refused(error)) => {
                    let error = error.clone();
                    refuse_log(&stats, &error);
                    window.pop_front();
                }
                Some(result @ (AckResult::Failed(_) | AckResult::NoStream)) => {
                    let (error, no_stream) = match result {
                        AckResult::Failed(error) => (error.clone(), false),
                        _ => ("no responders: the stream is not there".to_owned(), true),
                    };
                    failures += 1;
                    stats
                        .retried
                        .fetch_add(window.waiting.len() as u64, Ordering::Relaxed);
                    // What was waiting is older than what waits to be retried.
                    let mut again: VecDeque<Outgoing> = window.drain().collect();
                    again.append(&mut retry);
                    retry = again;
                    backoff_log(failures, &error).await;
                    if no_stream && (failures == 1 || failures.is_power_of_two()) {
                        recreate().await;
                    }
                }
            }
        }
        let probing = failures > 0 && !window.waiting.is_empty();
        if !probing {
            if let Some(out) = retry.pop_front() {
                let n = next_n;
                next_n += 1;
                match publish(&out, n).await {
                    Ok(()) => window.push(n, out),
                    // The server this client is connected to now takes less than the one
                    // `submit` checked against (a reconnect): this one can never go out.
                    Err(error) if error.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        refuse_log(&stats, &error.to_string());
                    }
                    Err(error) => {
                        retry.push_front(out);
                        failures += 1;
                        backoff_log(failures, &error.to_string()).await;
                    }
                }
                continue;
            }
        }
        tokio::select! {
            ack = acks.next() => match ack {
                Some(msg) => {
                    if let Some(n) = ack_number(&msg.subject) {
                        window.record(n, decode_ack(msg.status, &msg.payload));
                    }
                }
                None => {
                    // The subscription ended (the client is closing): nothing more will
                    // be acknowledged; the hub is stopping.
                    return;
                }
            },
            _ = check.tick() => {
                let front = window.waiting.front().filter(|w| w.result.is_none()).map(|w| w.n);
                stuck = match (front, stuck) {
                    (Some(n), Some((was, checks))) if n == was => Some((n, checks + 1)),
                    (Some(n), _) => Some((n, 1)),
                    (None, _) => None,
                };
                if let Some((n, checks)) = stuck {
                    if checks > ACK_TIMEOUT.as_secs() as u32 {
                        stuck = None;
                        window.record(n, AckResult::Failed(format!("no publish ack within {} s", ACK_TIMEOUT.as_secs())));
                    }
                }
            }
            // Nothing new before the retries: the stream keeps each hub's order.
            next = rx.recv(), if retry.is_empty() && window.waiting.len() < max_in_flight => {
                let Some(out) = next else { return };
                let n = next_n;
                next_n += 1;
                match publish(&out, n).await {
                    Ok(()) => window.push(n, out),
                    Err(error) if error.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        refuse_log(&stats, &error.to_string());
                    }
                    Err(error) => {
                        // Keep the order: everything waiting goes before this one.
                        failures += 1;
                        retry.extend(window.drain());
                        retry.push_back(out);
                        backoff_log(failures, &error.to_string()).await;
                    }
                }
            }
        }
    }
}

/// Count a dumpling refused for good and say so: the first few, then every 1000th.
fn refuse_log(stats: &FleetStats, error: &str) {
    stats.settled.fetch_add(1, Ordering::Relaxed);
    let n = stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= 5 || n.is_multiple_of(1000) {
        warn!(
            refused = n,
            error, "fleet: a dumpling can never be stored (too large for NATS or the stream); dropped, not retried"
        );
    }
}

async fn backoff_log(failures: u32, error: &str) {
    if failures == 1 || failures.is_power_of_two() {
        warn!(
            attempts = failures,
            error, "fleet: JetStream publish failed; retrying unacknowledged dumplings"
        );
    }
    let delay = Duration::from_millis((50u64 << failures.min(5)).min(1000));
    tokio::time::sleep(delay).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_decode_stored_duplicate_and_errors() {
        assert_eq!(
            decode_ack(None, br#"{"stream":"ND_DUMPLINGS","seq":42}"#),
            AckResult::Stored {
                sequence: 42,
                duplicate: false
            }
        );
        assert_eq!(
            decode_ack(
                None,
                br#"{"stream":"ND_DUMPLINGS","domain":"site1","seq":7,"duplicate":true}"#
            ),
            AckResult::Stored {
                sequence: 7,
                duplicate: true
            }
        );
        let AckResult::Failed(text) = decode_ack(
            None,
            br#"{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled"}}"#,
        ) else {
            panic!("an error reply is a failure");
        };
        assert!(
            text.contains("503") && text.contains("jetstream not enabled"),
            "{text}"
        );
        assert_eq!(
            decode_ack(Some(StatusCode::NO_RESPONDERS), b""),
            AckResult::NoStream
        );
        assert!(matches!(decode_ack(None, b"garbage"), AckResult::Failed(_)));
        assert!(matches!(decode_ack(None, b"{}"), AckResult::Failed(_)));
    }

    #[test]
    fn a_message_the_stream_refuses_itself_is_not_retried() {
        let too_big = br#"{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}"#;
        assert!(matches!(decode_ack(None, too_big), AckResult::Refused(_)));
        let no_leader = br#"{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}"#;
        assert!(matches!(decode_ack(None, no_leader), AckResult::Failed(_)));
    }

    #[test]
    fn header_bytes_are_what_the_header_block_takes_on_the_wire() {
        let mut out = Outgoing {
            subject: "nd.dumplings.k.C.packet".into(),
            msg_id: "k1-5".into(),
            payload: bytes::Bytes::from_static(b"{}"),
            binary: false,
        };
        let text = "NATS/1.0\r\nNats-Msg-Id: k1-5\r\nNd-Origin: hubX\r\n\r\n";
        assert_eq!(header_bytes(&out, "hubX"), text.len());
        assert_eq!(wire_bytes(&out, "hubX"), text.len() + 2);
        out.binary = true;
        assert_eq!(
            header_bytes(&out, "hubX"),
            text.len() + "Nd-Binary: 1\r\n".len()
        );
        assert_eq!(headers(&out, "hubX").len(), 3);
    }

    #[test]
    fn acks_are_matched_by_their_subjects_number_and_taken_in_order() {
        assert_eq!(ack_number("_INBOX.abc.17"), Some(17));
        assert_eq!(ack_number("_INBOX.abc.x"), None);
        let out = |id: &str| Outgoing {
            subject: "nd.dumplings.k.C.packet".into(),
            msg_id: id.into(),
            payload: bytes::Bytes::from_static(b"{}"),
            binary: false,
        };
        let mut w = Window {
            waiting: VecDeque::new(),
        };
        for n in 5..8 {
            w.push(n, out(&format!("k-{n}")));
        }
        let stored = |sequence| AckResult::Stored {
            sequence,
            duplicate: false,
        };
        // An ack for a publish already given up, or never made, is ignored.
        w.record(4, stored(1));
        w.record(9, stored(1));
        // The newer one arrives first: it waits for the oldest.
        w.record(6, stored(101));
        assert!(w.waiting[0].result.is_none());
        assert_eq!(w.waiting[1].result, Some(stored(101)));
        // A second answer for the same publish does not replace the first.
        w.record(6, AckResult::Failed("late".into()));
        assert_eq!(w.waiting[1].result, Some(stored(101)));
        assert_eq!(w.pop_front().map(|w| w.n), Some(5));
        let rest: Vec<String> = w.drain().map(|o| o.msg_id).collect();
        assert_eq!(rest, ["k-6", "k-7"]);
    }
}
