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
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use dumpling::close_code;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use crate::auth::Principal;
use crate::fleet::replay::{notice, start_notice, Plan};
use crate::handshake::{accept_with_hello, close, HubWs};
use crate::state::{Frame, Origin, Peer, Shared};
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
    /// The hub is shutting down.
    Shutdown,
}

/// Feed up to one batch from the ring (starting with `first`) into the socket, then flush.
async fn write_batch(
    ws: &mut HubWs,
    rx: &mut Receiver<Frame>,
    first: Result<Frame, RecvError>,
    shared: &Shared,
    peer: &Peer,
    pending_lag: &mut u64,
    plan: &Plan,
) -> Result<BatchEnd, WsError> {
    let config = &shared.config;
    let mut next = Some(first);
    let mut sent = 0u64;
    let mut bytes = 0usize;
    let mut end = BatchEnd::Written;
    while let Some(item) = next.take() {
        match item {
            Ok(frame) if !plan.admits(&frame) => {}
            Ok(frame) => {
                let behind = shared
                    .published_bytes
                    .load(Ordering::Relaxed)
                    .saturating_sub(frame.end_offset)
                    + frame.len();
                if behind > config.eater_queue_bytes {
                    // Too far behind in bytes: drop the oldest (this one).
                    *pending_lag += 1;
                    peer.bad.fetch_add(1, Ordering::Relaxed);
                    shared.total_dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    if *pending_lag > 0 {
                        ws.feed(status::lag_notice(*pending_lag)).await?;
                        shared.lag_notices.fetch_add(1, Ordering::Relaxed);
                        *pending_lag = 0;
                        sent += 1;
                    }
                    bytes += frame.message.len();
                    ws.feed(frame.message).await?;
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
        if sent as usize >= config.batch_max || bytes >= config.batch_max_bytes {
            break;
        }
        next = match rx.try_recv() {
            Ok(frame) => Some(Ok(frame)),
            Err(TryRecvError::Lagged(missed)) => Some(Err(RecvError::Lagged(missed))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
            Err(TryRecvError::Empty) => None,
        };
    }
    if sent > 0 {
        ws.flush().await?;
        peer.good.fetch_add(sent, Ordering::Relaxed);
        shared.total_out.fetch_add(sent, Ordering::Relaxed);
    }
    Ok(end)
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
pub async fn serve_eater(stream: HubStream, addr: SocketAddr, shared: Arc<Shared>) {
    let Some((mut ws, hello, session)) =
        accept_with_hello(stream, addr, &shared, Side::Eater).await
    else {
        return;
    };
    let name = hello.name.clone();
    let principal = session.as_ref().map(|s| s.principal.clone());
    // Optional hello keys: interest (nd_chefs/nd_kitchens) and replay (nd_since...).
    let mut plan = crate::fleet::replay::plan(&shared, &hello.raw, principal.clone()).await;
    let mut revoked = std::pin::pin!(crate::auth::revoked(session));
    // Subscribe before registering: everything published from now on reaches this eater.
    let mut rx = shared.ring.subscribe();
    let registration = shared.register(Side::Eater, hello.raw, addr, principal.clone());
    let peer = registration.peer.clone();
    info!(eater = %name, %addr, "Received dumpling eater connection from {name} at {addr}");

    let config = &shared.config;
    let mut shutdown = shared.shutdown.clone();
    // One shutdown future for the whole connection: re-creating it on every wake-up cost a
    // waiter registration and removal per delivery.
    let mut stop = std::pin::pin!(crate::state::stopped(&mut shutdown));
    let mut pending_lag = 0u64;

    // A new eater gets the current status at once (the original made it wait up to
    // status_freq seconds), and is listed in it.
    let welcome = status::build_status_for(&shared, Some(registration.id), principal.as_deref());
    let mut reason: Option<String> =
        match timeout(config.write_timeout, ws.send(Message::text(welcome))).await {
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
    for message in notices.chain(plan.starts_at.map(start_notice)) {
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
    while reason.is_none() {
        tokio::select! {
            biased;
            _ = stop.as_mut() => {
                close(&mut ws, close_code::GOING_AWAY, "hub shutting down").await;
                reason = Some("hub shutting down".into());
            }
            _ = revoked.as_mut() => {
                warn!(eater = %name, %addr, "token revoked or changed in the auth file; closing");
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
                                Some(frame) => format!("received {} {}", u16::from(frame.code), frame.reason),
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
            first = rx.recv() => {
                let outcome = {
                    let mut batch = std::pin::pin!(write_batch(&mut ws, &mut rx, first, &shared, &peer, &mut pending_lag, &plan));
                    // Fast path: a writable socket takes the whole batch in one poll, so no
                    // timer is armed (a timer per delivery cost measurable CPU at 1000 eaters).
                    match std::future::poll_fn(|cx| Poll::Ready(batch.as_mut().poll(cx))).await {
                        Poll::Ready(result) => Outcome::Done(result),
                        Poll::Pending => tokio::select! {
                            written = timeout(config.write_timeout, batch.as_mut()) => match written {
                                Ok(result) => Outcome::Done(result),
                                Err(_) => Outcome::Stuck,
                            },
                            _ = stop.as_mut() => Outcome::Shutdown,
                        },
                    }
                };
                match outcome {
                    Outcome::Done(Ok(BatchEnd::Written)) => {}
                    Outcome::Done(Ok(BatchEnd::RingClosed)) => reason = Some("hub stopping".into()),
                    Outcome::Done(Err(error)) => reason = Some(error.to_string()),
                    Outcome::Stuck => {
                        warn!(eater = %name, %addr, "eater made no write progress for {:?}; disconnecting", config.write_timeout);
                        close(&mut ws, close_code::EATER_TOO_SLOW, close_code::EATER_TOO_SLOW_REASON).await;
                        reason = Some(close_code::EATER_TOO_SLOW_REASON.into());
                    }
                    Outcome::Shutdown => {
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
    let delivered = peer.good.load(Ordering::Relaxed);
    let dropped = peer.bad.load(Ordering::Relaxed);
    drop(registration);
    let reason = reason.unwrap_or_default();
    info!(eater = %name, delivered, dropped, "Dumpling eater {name} connection closed: {reason}");
}
