//! The kitchen side: after the shared handshake ([`crate::handshake`]), every valid dumpling
//! into the fan-out ring, byte for byte and in arrival order.
//!
//! [`classify`] is the pure per-message decision (fuzzed by `fuzz/`); [`serve_kitchen`]
//! is the connection task. A kitchen that asked for binary frames
//! ([`dumpling::BINARY_FRAMES_HEADER`]: ours) sends its dumplings' text in them; the hub
//! checks that text's UTF-8 once (`simdutf8`, [`hub_link::text_from_binary`]) and from then
//! on treats it as the text frame it stands for: eaters get it as text (or as binary when
//! they asked so), and invalid UTF-8 ends the connection exactly as in a text frame.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use dumpling::{
    check_dumpling, check_dumpling_text, close_code, is_reserved_name, InvalidDumpling, RepeatMemo,
    HUB_RESERVED_CHEF_NAMES,
};
use futures_util::{SinkExt, StreamExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, error, info, warn};

use crate::fleet::{Submitted, SUBMIT_STALL_LIMIT};
use crate::handshake::{accept_with_hello, close, Accepted};
use crate::state::{Origin, Shared};
use crate::tls::HubStream;
use crate::Side;

/// What to do with one message from a kitchen.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// A valid dumpling: forward it unchanged (text stays text, binary stays binary).
    Forward {
        /// The dumpling's chef, for debug logs.
        chef: String,
        /// Its `metadata.kitchen` (checked against the principal under `--auth`).
        kitchen: Option<String>,
    },
    /// A valid dumpling under a chef name only the hub may use
    /// ([`dumpling::HUB_RESERVED_CHEF_NAMES`]): refuse it in every mode, keep the
    /// connection.
    Reserved {
        /// The claimed chef name.
        chef: String,
    },
    /// Not a valid dumpling: drop it, count it and log it; keep the connection.
    Invalid(InvalidDumpling),
    /// A ping, pong or raw frame: nothing to forward.
    Ignore,
    /// The kitchen is closing.
    Close,
}

/// Decide what to do with one message from a kitchen. Binary frames are checked and
/// forwarded like text frames, as the original does (its `json.loads` accepts bytes).
pub fn classify(message: &Message) -> Action {
    match message {
        // A text frame's UTF-8 was checked by the WebSocket layer: not again per string.
        Message::Text(text) => verdict(check_dumpling_text(text.as_str())),
        Message::Binary(bytes) => verdict(check_dumpling(bytes)),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Action::Ignore,
        Message::Close(_) => Action::Close,
    }
}

/// [`classify`] for one connection's messages in order: the same answer for every message,
/// but a payload that repeats the same chef's previous one byte for byte is not parsed
/// again ([`dumpling::repeat`]: a chef answering each poke with an unchanged table).
pub fn classify_repeating(message: &Message, repeats: &mut RepeatMemo) -> Action {
    match message {
        Message::Text(text) => verdict(repeats.check_text(text.as_str())),
        Message::Binary(bytes) => verdict(repeats.check(bytes, false)),
        _ => classify(message),
    }
}

fn verdict(checked: Result<dumpling::CheckedDumpling, InvalidDumpling>) -> Action {
    match checked {
        Ok(checked) if is_reserved_name(HUB_RESERVED_CHEF_NAMES, &checked.chef) => {
            Action::Reserved { chef: checked.chef }
        }
        Ok(checked) => Action::Forward {
            chef: checked.chef,
            kitchen: checked.kitchen,
        },
        Err(invalid) => Action::Invalid(invalid),
    }
}

/// The kitchen connection task.
pub async fn serve_kitchen(
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
    }) = accept_with_hello(stream, addr, &shared, Side::Kitchen, deadline, pending).await
    else {
        return;
    };
    let name = hello.name.clone();
    // For logs only (a peer chooses both): escaped and cut, so a name or hello can neither
    // forge a log line nor make one megabytes long.
    let shown = crate::hello::shown_name(&name);
    let hello_text = dumpling::text::escape(hello.raw.get(), 256);
    let principal = session.as_ref().map(|s| s.principal.clone());
    let mut revoked = std::pin::pin!(crate::auth::revoked(session));
    let tag_origin = shared.config.auth.is_some();
    let registration = shared.register(Side::Kitchen, hello, addr, principal.clone());
    let peer = registration.peer.clone();
    shared.kitchen_lines.log("kitchen connection lines", || {
        info!(kitchen = %shown, %addr, binary_frames = binary, "Received dumpling kitchen connection from {shown} at {addr}");
    });

    let mut shutdown = shared.shutdown.clone();
    let mut ping = tokio::time::interval(shared.config.ping_interval);
    ping.reset();
    let mut last_seen = Instant::now();
    // This connection's recent table payloads, one per chef (bounded: `dumpling::repeat`).
    let mut repeats = RepeatMemo::new();
    let reason: String = loop {
        tokio::select! {
            _ = crate::state::stopped(&mut shutdown) => {
                close(&mut ws, close_code::GOING_AWAY, "hub shutting down").await;
                break "hub shutting down".into();
            }
            _ = revoked.as_mut() => {
                warn!(kitchen = %shown, %addr, "token revoked or changed in the auth file; closing");
                close(&mut ws, crate::auth::REVOKED_CODE, crate::auth::REVOKED_REASON).await;
                break crate::auth::REVOKED_REASON.into();
            }
            message = ws.next() => {
                last_seen = Instant::now();
                // A kitchen that asked for binary frames sends text in them: checked here
                // as a text frame would have been, and refused the same way (the
                // connection ends with tungstenite's UTF-8 error), then it is a text frame.
                let message = match message {
                    Some(Ok(Message::Binary(bytes))) if binary => {
                        Some(hub_link::text_from_binary(bytes).map(Message::Text))
                    }
                    other => other,
                };
                match message {
                    Some(Ok(message)) => match classify_repeating(&message, &mut repeats) {
                        Action::Forward { chef, kitchen } => {
                            if let Some(principal) = &principal {
                                if !principal.may_send_as(kitchen.as_deref()) {
                                    let why = format!("kitchen name {} not allowed for principal {:?}", crate::auth::shown(kitchen.as_deref()), principal.name);
                                    refuse(&shared, &peer, &shown, addr, &why);
                                    continue;
                                }
                            }
                            debug!(kitchen = %shown, chef = ?chef, bytes = message.len(), "Received dumpling from {shown}");
                            match shared.fleet.get() {
                                // Federated: stored in JetStream once; every hub (this one
                                // too) delivers it from the stream, tagging it there.
                                Some(fleet) => match fleet.submit(message, &name, &mut shutdown).await {
                                    Submitted::Queued => {
                                        peer.good.fetch_add(1, Ordering::Relaxed);
                                        shared.total_in.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Submitted::TooLarge { bytes, max } => {
                                        let why = format!("{bytes} bytes with the fleet's headers, over the NATS server's max_payload of {max} (raise max_payload in nats-server's configuration, or send smaller dumplings)");
                                        refuse(&shared, &peer, &shown, addr, &why);
                                    }
                                    Submitted::Stopping => break "hub shutting down".into(),
                                    Submitted::Stalled => {
                                        let stalled = shared.kitchens_stalled.fetch_add(1, Ordering::Relaxed) + 1;
                                        if stalled <= 5 || stalled.is_power_of_two() {
                                            warn!(kitchen = %shown, %addr, stalled, "could not hand a dumpling to NATS for {}s; closing the kitchen with {} (it sends what was not confirmed again when it reconnects)", SUBMIT_STALL_LIMIT.as_secs(), close_code::TRY_AGAIN_LATER);
                                        }
                                        close(&mut ws, close_code::TRY_AGAIN_LATER, close_code::TRY_AGAIN_LATER_REASON).await;
                                        break format!("dumplings not taken by NATS for {}s", SUBMIT_STALL_LIMIT.as_secs());
                                    }
                                },
                                None => {
                                    peer.good.fetch_add(1, Ordering::Relaxed);
                                    shared.total_in.fetch_add(1, Ordering::Relaxed);
                                    let origin = tag_origin.then(|| Arc::new(Origin::Dumpling {
                                        chef: chef.into(),
                                        kitchen: kitchen.map(Into::into),
                                    }));
                                    shared.publish_from(message, origin);
                                }
                            }
                        }
                        Action::Reserved { chef } => {
                            let why = format!("chef name {} is reserved for the hub", crate::auth::shown(Some(&chef)));
                            refuse(&shared, &peer, &shown, addr, &why);
                        }
                        Action::Invalid(invalid) => {
                            let n = peer.bad.fetch_add(1, Ordering::Relaxed) + 1;
                            shared.total_invalid.fetch_add(1, Ordering::Relaxed);
                            // The first few per connection, then every 1000th: a kitchen
                            // sending 7-byte junk frames cannot make the log grow faster
                            // than its own traffic.
                            if n <= 5 || n.is_multiple_of(1000) {
                                let invalid = dumpling::text::escape(&invalid.to_string(), 256);
                                error!(kitchen = %shown, %addr, invalid = n, "Received invalid dumpling: {invalid}; kitchen: {hello_text}");
                            }
                        }
                        Action::Ignore => {}
                        Action::Close => {
                            // tungstenite queued the echo of the kitchen's close; send it.
                            let _ = timeout(std::time::Duration::from_secs(1), ws.flush()).await;
                            break match message {
                            Message::Close(Some(frame)) => format!("received {} {}", u16::from(frame.code), dumpling::text::escape(&frame.reason, 128)),
                            _ => "received close".into(),
                        }},
                    },
                    Some(Err(WsError::Capacity(CapacityError::MessageTooLong { size, max_size }))) => {
                        warn!(kitchen = %shown, size, max_size, "kitchen message over the size cap; closing with 1009");
                        close(&mut ws, close_code::TOO_BIG, "message too big").await;
                        break format!("message of {size} bytes over the {max_size}-byte cap");
                    }
                    Some(Err(error)) => break error.to_string(),
                    None => break "connection ended".into(),
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() > shared.config.kitchen_idle_timeout {
                    break "no traffic from kitchen (dead peer?)".into();
                }
                // A kitchen that never reads will not answer; its dumplings count as life.
                if timeout(shared.config.write_timeout, ws.send(Message::Ping(Default::default()))).await.is_err() {
                    break "ping could not be written".into();
                }
            }
        }
    };
    drop(registration);
    shared.kitchen_lines.log("kitchen connection lines", || {
        info!(kitchen = %shown, "Dumpling kitchen {shown} connection closed: {reason}");
    });
}

/// Count a refused dumpling and log it: the first few per connection, then every
/// 1000th, so a kitchen cannot flood the log.
fn refuse(shared: &Shared, peer: &crate::state::Peer, name: &str, addr: SocketAddr, why: &str) {
    let n = peer.refused.fetch_add(1, Ordering::Relaxed) + 1;
    shared.total_refused.fetch_add(1, Ordering::Relaxed);
    if n <= 5 || n.is_multiple_of(1000) {
        warn!(kitchen = %name, %addr, refused = n, "refused dumpling: {why}; connection kept");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_forwards_text_and_binary_and_flags_invalid() {
        let good = r#"{"metadata": {"chef": "C", "kitchen": "k", "creation_time": 1.5, "driver": "packet"}, "payload": 1}"#;
        assert_eq!(
            classify(&Message::text(good)),
            Action::Forward {
                chef: "C".into(),
                kitchen: Some("k".into())
            }
        );
        assert_eq!(
            classify(&Message::binary(good.as_bytes().to_vec())),
            Action::Forward {
                chef: "C".into(),
                kitchen: Some("k".into())
            }
        );
        let forged = good.replace("\"C\"", "\"systemStatusChef\"");
        assert_eq!(
            classify(&Message::text(forged)),
            Action::Reserved {
                chef: "systemStatusChef".into()
            }
        );
        assert_eq!(
            classify(&Message::text("not json")),
            Action::Invalid(InvalidDumpling::NotJson)
        );
        assert_eq!(
            classify(&Message::text(r#"{"metadata": {"chef": "MinimalChef"}}"#)),
            Action::Invalid(InvalidDumpling::BadDriver)
        );
        assert_eq!(classify(&Message::Ping(Default::default())), Action::Ignore);
        assert_eq!(classify(&Message::Close(None)), Action::Close);
    }
}
