//! The handshake both hub ports share: the WebSocket upgrade (with `--auth`'s token and
//! certificate checks), the hello within `--hello-timeout`, and closing with a reason.
//!
//! Kitchens ([`crate::kitchen`]) and eaters ([`crate::eater`]) differ only in their hello's
//! name key and WebSocket limits, chosen here from [`Side`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use dumpling::close_code;
use futures_util::StreamExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};

use crate::auth::Session;
use crate::hello::{parse_hello, Hello, HelloError};
use crate::state::Shared;
use crate::tls::HubStream;
use crate::Side;

/// A hub-side WebSocket over plain TCP or TLS.
pub type HubWs = WebSocketStream<HubStream>;

/// Read the first data message and parse it as a hello with `name_key`.
pub(crate) async fn read_hello(
    ws: &mut HubWs,
    name_key: &'static str,
) -> Result<Hello, HelloError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return parse_hello(text.as_bytes(), name_key),
            Some(Ok(Message::Binary(bytes))) => return parse_hello(&bytes, name_key),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Err(HelloError::Closed),
        }
    }
}

/// A connection past its handshake and hello.
pub(crate) struct Accepted {
    /// The WebSocket.
    pub ws: HubWs,
    /// Its hello.
    pub hello: Hello,
    /// Its `--auth` session.
    pub session: Option<Session>,
    /// The peer asked for binary frames ([`dumpling::BINARY_FRAMES_HEADER`]) and was told
    /// yes: a kitchen's binary frames hold UTF-8 text, an eater gets dumplings as binary.
    pub binary: bool,
    /// Its connection slot on this port (`--max-kitchens`/`--max-eaters`), taken when the
    /// upgrade was accepted and held until the connection ends.
    pub slot: tokio::sync::OwnedSemaphorePermit,
}

/// Whether an upgrade request asks for binary frames ([`dumpling::BINARY_FRAMES_HEADER`]).
fn asks_binary(request: &Request) -> bool {
    request
        .headers()
        .get(dumpling::BINARY_FRAMES_HEADER)
        .is_some_and(|v| v.as_bytes() == dumpling::BINARY_FRAMES_VALUE.as_bytes())
}

/// Handshake plus hello, both by `deadline` (`--hello-timeout` after the connection came). Under `--auth` the token is checked
/// on the upgrade (HTTP 401/403, before any hello is read). On a bad hello the connection
/// is closed with 1008 and a reason saying what was wrong; nothing is registered. A peer
/// that asks for binary frames is answered with the same header (the answer is what
/// makes them so: a client sends binary only after reading it).
pub(crate) async fn accept_with_hello(
    stream: HubStream,
    addr: SocketAddr,
    shared: &Shared,
    side: Side,
    deadline: tokio::time::Instant,
    pending: &crate::admission::Pending,
) -> Option<Accepted> {
    let (ws_config, name_key, what) = match side {
        Side::Kitchen => (shared.config.kitchen_ws_config(), "kitchen_name", "kitchen"),
        Side::Eater => (shared.config.eater_ws_config(), "eater_name", "eater"),
    };
    let mut principal = None;
    let auth = shared.config.auth.as_ref();
    let cert_names = match auth {
        Some(_) => stream.client_cert_names(),
        None => Vec::new(),
    };
    let peer = crate::auth::Peer {
        addr,
        cert_names: &cert_names,
    };
    // Where the peer connected to: on loopback a browser page must name a loopback host
    // (DNS rebinding, origin::check_host). Unknown (it cannot be) counts as loopback, the
    // stricter side.
    let local = stream
        .local_addr()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |a| a.ip());
    let mut binary = false;
    let mut slot = None;
    #[allow(clippy::result_large_err)] // tungstenite's callback signature
    let check = |request: &Request, response: Response| {
        // The page that opened it, before any token is looked at: a cross-site page must
        // learn nothing, not even whether its token would do.
        if let Err(origin) = crate::origin::check(request, &shared.config.allowed_origins) {
            if shared.origin_refusals.note(addr.ip()) {
                warn!(%addr, ?side, origin = %dumpling::text::Escaped::with_max(&origin, 128),
                    "refused a WebSocket from a web page of another origin (HTTP 403; \
                     --allow-origin allows one); further refusals for this address are only counted");
            }
            return Err(crate::origin::refusal(&origin));
        }
        if let Err(host) = crate::origin::check_host(request, local, &shared.config.allowed_hosts) {
            if shared.origin_refusals.note(addr.ip()) {
                warn!(%addr, ?side, host = %dumpling::text::Escaped::with_max(&host, 128),
                    "refused a WebSocket from a web page sent to a host name that is not loopback \
                     on a loopback address (DNS rebinding? HTTP 403; --allow-host allows a name); \
                     further refusals for this address are only counted");
            }
            return Err(crate::origin::host_refusal(&host));
        }
        let mut response =
            crate::auth::check_upgrade(auth, request, response, side, peer, &mut principal)?;
        // Authorised: only now does the connection take one of the port's slots, so
        // connections that never get this far cannot keep a real peer out.
        match pending.promote() {
            Ok(permit) => slot = Some(permit),
            Err(no_slot) => {
                let refused = match side {
                    Side::Kitchen => shared.kitchen_admission.refused.load(Ordering::Relaxed),
                    Side::Eater => shared.eater_admission.refused.load(Ordering::Relaxed),
                };
                if matches!(no_slot, crate::admission::NoSlot::Full(_))
                    && (refused <= 5 || refused.is_multiple_of(1000))
                {
                    warn!(%addr, ?side, refused, "{no_slot}: upgrade refused with HTTP 503");
                }
                return Err(crate::auth::refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("netdumplings hub: {no_slot}; try again later"),
                ));
            }
        }
        if asks_binary(request) {
            response.headers_mut().insert(
                dumpling::BINARY_FRAMES_HEADER,
                HeaderValue::from_static(dumpling::BINARY_FRAMES_VALUE),
            );
            binary = true;
        }
        Ok(response)
    };
    let accepted = tokio::time::timeout_at(
        deadline,
        tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(ws_config)),
    )
    .await;
    let mut ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            debug!(%addr, %error, "{what} WebSocket handshake failed");
            return None;
        }
        Err(_) => {
            debug!(%addr, "{what} WebSocket handshake timed out");
            return None;
        }
    };
    let hello = match tokio::time::timeout_at(deadline, read_hello(&mut ws, name_key)).await {
        Ok(Ok(hello)) => hello,
        Ok(Err(HelloError::Closed)) => {
            debug!(%addr, "{what} left before its hello");
            return None;
        }
        Ok(Err(refused)) => {
            warn!(%addr, reason = %refused, "refused dumpling {what} connection");
            close(&mut ws, close_code::BAD_HELLO, &refused.to_string()).await;
            return None;
        }
        Err(_) => {
            let refused = HelloError::Timeout(shared.config.hello_timeout.as_secs());
            warn!(%addr, reason = %refused, "refused dumpling {what} connection");
            close(&mut ws, close_code::BAD_HELLO, &refused.to_string()).await;
            return None;
        }
    };
    // The hello's name is held to the same rule as every dumpling's `metadata.kitchen`:
    // status dumplings, restricted eaters' views, the log and `/metrics` list a kitchen by
    // this name, so an impostor must not get that far.
    if let (Side::Kitchen, Some(principal)) = (side, &principal) {
        if let Err(refused) = crate::hello::check_kitchen_name(&hello, principal) {
            warn!(%addr, reason = %refused, "refused dumpling {what} connection");
            close(&mut ws, close_code::BAD_HELLO, &refused.to_string()).await;
            return None;
        }
    }
    let session = match (auth, principal) {
        (Some(auth), Some(principal)) => Some(auth.session(principal)),
        _ => None,
    };
    // An accepted upgrade always took a slot; `None` cannot happen, but is no panic.
    let slot = slot?;
    Some(Accepted {
        ws,
        hello,
        session,
        binary,
        slot,
    })
}

/// Send a close frame and wait briefly for the peer's; never blocks for long.
pub(crate) async fn close(ws: &mut HubWs, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    let closing = async {
        ws.close(Some(frame)).await?;
        // Drain until the peer's close arrives (or the stream ends).
        while let Some(message) = ws.next().await {
            message?;
        }
        Ok::<(), WsError>(())
    };
    let _ = timeout(std::time::Duration::from_secs(1), closing).await;
}
