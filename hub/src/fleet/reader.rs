//! Reading the JetStream stream through ordered consumers: the one loop behind the hub's
//! live consumer ([`super::consume`], [`super::interest::consume_live`]) and each eater's
//! replay consumer ([`super::replay`]).
//!
//! Invariant: the sink sees each stored message at most once and in stream order. After
//! any error or a silent stall the consumer is re-created from the last delivered sequence
//! plus one (`next`), so a NATS node or the whole cluster going away delays dumplings but
//! neither loses nor repeats them.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tracing::{debug, warn};

use super::BINARY_HEADER;
use crate::state::stopped;

/// How long a consumer may be silent before the server is asked whether it is stalled.
const STALL_CHECK: Duration = Duration::from_secs(1);

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
    /// The consumer's filter subject (one subject; nats-server 2.9 allows no list).
    pub filter: &'a str,
    /// Stop once every matching message with a sequence up to this one was delivered.
    pub until: Option<u64>,
}

/// Read matching messages from `*start` on, handing each (frame, stream sequence) to
/// `sink` (which resolves to `false` to stop). `*start` becomes `Sequence(last + 1)` as
/// messages are delivered, so a caller that restarts the read loses and repeats nothing.
/// Returns on shutdown, when the sink stops, when `changed` (if given) changes, or at
/// `until`.
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
    let whole_stream = spec.filter.ends_with(".>") && !spec.filter.contains('*') && {
        let head = &spec.filter[..spec.filter.len() - 2];
        !head.contains('>')
    };
    loop {
        if *shutdown.borrow() {
            return ReadEnd::Shutdown;
        }
        let deliver_policy = match *start {
            Start::Sequence(sequence) => consumer::DeliverPolicy::ByStartSequence {
                start_sequence: sequence.max(1),
            },
            Start::Time(start_time) => consumer::DeliverPolicy::ByStartTime { start_time },
        };
        if let (Some(until), Start::Sequence(next)) = (spec.until, *start) {
            if next > until {
                return ReadEnd::ReachedUntil;
            }
        }
        let created = async {
            let stream = js
                .get_stream(spec.stream)
                .await
                .map_err(|e| e.to_string())?;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject: spec.filter.to_owned(),
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let info = consumer.cached_info();
            let (name, pending) = (info.name.clone(), info.num_pending);
            let messages = consumer.messages().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((stream, name, pending, messages))
        };
        let wait_change = async {
            match changed.as_deref_mut() {
                Some(rx) => {
                    let _ = rx.changed().await;
                }
                None => std::future::pending().await,
            }
        };
        let (stream, name, mut pending, mut messages) = tokio::select! {
            made = created => match made {
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
            },
            _ = wait_change => return ReadEnd::FilterChanged,
            _ = stopped(shutdown) => return ReadEnd::Shutdown,
        };
        debug!(
            ?start,
            filter = spec.filter,
            pending,
            "fleet: consumer reading"
        );
        // A bounded read with nothing matching left is done at once: no message would
        // ever come to say so.
        if spec.until.is_some() && pending == 0 {
            return ReadEnd::ReachedUntil;
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
            let item = tokio::select! {
                item = tokio::time::timeout(STALL_CHECK, messages.next()) => match item {
                    Ok(item) => item,
                    Err(_) => {
                        // Quiet for a while: fine if nothing matching is new, but an
                        // ordered consumer whose server died can hang without an error
                        // (seen when its node was killed), so ask the server.
                        let stalled = if let (true, Start::Sequence(next)) = (whole_stream, *start) {
                            matches!(super::stream_last_sequence(js, spec.stream).await, Some(last) if last >= next)
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
                    // A re-created consumer never goes back, but be sure: each sequence once.
                    if let Start::Sequence(next) = *start {
                        if sequence < next {
                            continue;
                        }
                    }
                    if spec.until.is_some_and(|until| sequence > until) {
                        return ReadEnd::ReachedUntil;
                    }
                    *start = Start::Sequence(sequence + 1);
                    pending = pending.saturating_sub(1);
                    if !sink(to_frame(&msg), sequence).await {
                        return ReadEnd::SinkClosed;
                    }
                    if let Some(until) = spec.until {
                        // `pending` counted what matched when the consumer was made, which
                        // was after `until` was stored: none left means none up to `until`.
                        if sequence >= until || pending == 0 {
                            return ReadEnd::ReachedUntil;
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
        tokio::select! {
            _ = tokio::time::sleep(backoff(failures)) => {}
            _ = stopped(shutdown) => return ReadEnd::Shutdown,
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(4)).min(1000))
}
