//! `nd-hub` as a library: the kitchen side, the eater side, the fan-out ring, the status
//! dumplings and shutdown.
//!
//! Entry point: [`run`], which takes already-bound listeners (tests bind port 0), a
//! validated [`Config`] and a shutdown future, in the style of mini-redis.
//!
//! Architecture invariant: ingest never waits on an eater. Kitchens publish into one
//! bounded broadcast ring ([`state::Shared::publish`]); each eater task drains the ring at
//! its own pace, batches writes, drops its oldest dumplings when it falls behind (and is
//! told so with a `HubNoticeChef` notice) and is disconnected when its socket makes no
//! write progress for [`Config::write_timeout`].

pub mod admission;
pub mod auth;
mod backlog;
pub mod config;
pub mod eater;
pub mod fleet;
pub mod handshake;
pub mod hello;
pub mod kitchen;
pub mod log_limit;
pub mod metrics;
pub mod origin;
pub mod route;
pub mod route_tls;
pub mod state;
pub mod status;
pub mod tls;
pub mod trim;
pub mod web;

pub use config::Config;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use state::Shared;

/// Errors from [`run`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No listener was given for one side.
    #[error("no {0} listener given")]
    NoListener(&'static str),
    /// `--nats` was given but the federation could not start.
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
    /// `--metrics-address` could not be bound.
    #[error("cannot listen for metrics on {0}: {1} (choose another --metrics-address)")]
    MetricsBind(SocketAddr, std::io::Error),
}

/// The listeners the hub serves: kitchens on one set, eaters on the other.
#[derive(Debug)]
pub struct Listeners {
    /// Kitchen-facing ("in") listeners.
    pub kitchens: Vec<TcpListener>,
    /// Eater-facing ("out") listeners.
    pub eaters: Vec<TcpListener>,
}

/// Which side a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A kitchen (producer).
    Kitchen,
    /// An eater (consumer).
    Eater,
}

/// How long [`run`] waits for connections to close after shutdown before giving up on
/// them (a stuck eater cannot take a close frame).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serve kitchens and eaters until `shutdown` completes, then close every connection
/// with 1001 ("going away") and return.
pub async fn run(
    listeners: Listeners,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    if listeners.kitchens.is_empty() {
        return Err(Error::NoListener("kitchen"));
    }
    if listeners.eaters.is_empty() {
        return Err(Error::NoListener("eater"));
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // Every connection task holds a clone of `done_tx`; when all are dropped, `done_rx`
    // returns `None` and every connection has finished (mini-redis's pattern).
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let metrics_address = config.metrics_address;
    let shared = Arc::new(Shared::new(config, shutdown_rx));
    let metrics_listener = match metrics_address {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| Error::MetricsBind(addr, e))?;
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "Metrics: http://{addr}/metrics");
            }
            Some(listener)
        }
        None => None,
    };
    // Federation starts before any kitchen is accepted, so its consumer sees their first
    // dumpling. Without --nats nothing here runs.
    let fleet = match &shared.config.fleet {
        Some(options) => {
            let fleet = fleet::start(options, shared.clone()).await?;
            let _ = shared.fleet.set(fleet.publisher.clone());
            Some(fleet)
        }
        None => None,
    };

    // Before anyone can connect (or send a signal after seeing the ports open): SIGHUP's
    // default action ends the process.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    info!("Dumpling hub initiated; waiting for connections");
    let scheme = if shared.config.tls.is_some() {
        "wss"
    } else {
        "ws"
    };
    for listener in &listeners.kitchens {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "Dumplings in: {scheme}://{addr}");
        }
    }
    for listener in &listeners.eaters {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "Dumplings out: {scheme}://{addr}");
        }
    }

    let mut tasks = Vec::new();
    for listener in listeners.kitchens {
        tasks.push(tokio::spawn(accept_loop(
            listener,
            Side::Kitchen,
            shared.clone(),
            done_tx.clone(),
        )));
    }
    for listener in listeners.eaters {
        tasks.push(tokio::spawn(accept_loop(
            listener,
            Side::Eater,
            shared.clone(),
            done_tx.clone(),
        )));
    }
    tasks.push(tokio::spawn(status::status_loop(shared.clone())));
    tasks.push(tokio::spawn(trim::trim_loop(shared.clone())));
    tasks.push(tokio::spawn(reload_loop(shared.clone(), hup)));
    if let Some(listener) = metrics_listener {
        tasks.push(tokio::spawn(metrics::serve(listener, shared.clone())));
    }
    drop(done_tx);

    shutdown.await;
    info!("shutting down: closing every connection with 1001");
    // Ignore the error: it only means no task is listening any more.
    let _ = shutdown_tx.send(true);
    for task in &tasks {
        task.abort();
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv())
        .await
        .is_err()
    {
        warn!("some connections did not close within {SHUTDOWN_GRACE:?}; dropping them");
    }
    // The kitchens are gone: what they handed the publisher is stored before it stops.
    if let Some(fleet) = &fleet {
        fleet.drain(fleet::DRAIN_GRACE).await;
        fleet.stop();
    }
    // What the run did, as `nd-sniff` ends with its summary (the status dumplings went
    // to eaters only; an operator stopping the hub saw no totals).
    {
        use std::sync::atomic::Ordering::Relaxed;
        info!(
            dumplings_in = shared.total_in.load(Relaxed),
            dumplings_out = shared.total_out.load(Relaxed),
            invalid = shared.total_invalid.load(Relaxed),
            refused = shared.total_refused.load(Relaxed),
            dropped_for_slow_eaters = shared.total_dropped.load(Relaxed),
            kitchens_stalled = shared.kitchens_stalled.load(Relaxed),
            "hub totals"
        );
    }
    info!("Dumpling hub signing off.  Thanks!");
    Ok(())
}

/// Accept connections on one listener until shutdown, one task per connection.
async fn accept_loop(
    listener: TcpListener,
    side: Side,
    shared: Arc<Shared>,
    done: mpsc::Sender<()>,
) {
    let admission = match side {
        Side::Kitchen => shared.kitchen_admission.clone(),
        Side::Eater => shared.eater_admission.clone(),
    };
    let mut accept_failures: u64 = 0;
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(pair) => pair,
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning, and say it the
                // first few times, then every 1000th (it repeats 20 times a second).
                accept_failures += 1;
                if accept_failures <= 5 || accept_failures.is_multiple_of(1000) {
                    warn!(%error, ?side, failures = accept_failures, "accept failed");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Every connection starts in the port's bounded pending pool (admission.rs): a
        // flood of idle connections (20 000 took every file descriptor; 20 filled
        // --max-kitchens and locked out a kitchen with a valid token) only crowds out its
        // own oldest, and a slot is taken only once the upgrade is accepted.
        let pending = admission.enter(addr);
        let shared = shared.clone();
        let done = done.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = serve(stream, addr, side, shared.clone(), &pending) => {}
                _ = pending.evicted() => {
                    tracing::debug!(%addr, ?side, "pending connection closed to make room for newer ones");
                }
            }
            drop(pending);
            shared.connections_ended.fetch_add(1, Ordering::Relaxed);
            drop(done);
        });
    }
}

async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    side: Side,
    shared: Arc<Shared>,
    pending: &admission::Pending,
) {
    // Small frames matter for latency; batching is done by the eater loop, not Nagle.
    let _ = stream.set_nodelay(true);
    // One deadline for everything before the connection is a kitchen or an eater (TLS
    // handshake, request head, WebSocket handshake, hello), so a silent or trickling peer
    // costs no more than `--hello-timeout` however far it gets.
    let deadline = tokio::time::Instant::now() + shared.config.hello_timeout;
    let stream = match &shared.config.tls {
        None => tls::HubStream::Plain(stream),
        Some(tls) => match tokio::time::timeout_at(deadline, tls.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => tls::HubStream::Tls(Box::new(stream)),
            Ok(Err(error)) => {
                tracing::debug!(%addr, %error, ?side, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%addr, ?side, "TLS handshake timed out");
                return;
            }
        },
    };
    // The first request decides (route.rs): a WebSocket upgrade is a kitchen or an eater,
    // a plain GET/HEAD on the eater port is the web view (see web.rs for why), and a
    // request that can never become either gets an HTTP error saying so.
    let (route, stream) = match stream {
        tls::HubStream::Plain(tcp) => (
            route::route(&tcp, side, deadline).await,
            tls::HubStream::Plain(tcp),
        ),
        tls::HubStream::Tls(tls_stream) => {
            let (route, rewound) = route_tls::route(*tls_stream, side, deadline).await;
            (route, tls::HubStream::TlsRewound(Box::new(rewound)))
        }
        rewound => (route::Route::WebSocket, rewound),
    };
    match (route, side) {
        (route::Route::WebSocket, Side::Kitchen) => {
            kitchen::serve_kitchen(stream, addr, shared, deadline, pending).await
        }
        (route::Route::WebSocket, Side::Eater) => {
            eater::serve_eater(stream, addr, shared, deadline, pending).await
        }
        (
            route::Route::Page {
                head_only,
                path,
                head_len,
            },
            _,
        ) => web::serve_page(stream, addr, &path, head_only, head_len, deadline).await,
        (route::Route::Refuse { refusal, head_len }, _) => {
            route::serve_refusal(stream, addr, side, &refusal, head_len, deadline).await
        }
    }
}

/// How often the auth file and TLS certificate files are checked for changes.
const RELOAD_POLL: Duration = Duration::from_secs(1);

/// Reload `--auth` and the TLS certificate on SIGHUP and when their files change. SIGHUP
/// is taken even with nothing to reload: its default action killed a plain hub at once,
/// without a word or a close to its peers (a closed terminal, a `kill -HUP` meant as
/// "reload").
async fn reload_loop(shared: Arc<Shared>, mut hup: Option<tokio::signal::unix::Signal>) {
    let (auth, tls) = (shared.config.auth.clone(), shared.config.tls.clone());
    if auth.is_none() && tls.is_none() {
        if let Some(signal) = hup.as_mut() {
            while signal.recv().await.is_some() {
                tracing::info!("SIGHUP: nothing to reload (no --auth, no TLS); the hub runs on");
            }
        }
        return;
    }
    let mut tick = tokio::time::interval(RELOAD_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let hangup = async {
            match hup.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let forced = tokio::select! {
            _ = hangup => true,
            _ = tick.tick() => false,
        };
        if let Some(auth) = &auth {
            if forced {
                auth.reload("SIGHUP");
            } else {
                auth.reload_if_changed();
            }
        }
        if let Some(tls) = &tls {
            tls.reload(forced);
        }
    }
}

/// Resolve `address` and bind one listener per resolved address on `port`.
///
/// Like the original, `localhost` binds every address it resolves to. An IPv6 address
/// that cannot be bound (IPv6 disabled) is skipped when another address was bound.
pub async fn bind_all(address: &str, port: u16) -> std::io::Result<Vec<TcpListener>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((address, port)).await?.collect();
    let mut listeners = Vec::new();
    let mut last_error = None;
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(listener) => listeners.push(listener),
            Err(error) if addr.is_ipv6() => last_error = Some((addr, error)),
            Err(error) => {
                return Err(std::io::Error::new(
                    error.kind(),
                    format!("cannot bind {addr}: {error}"),
                ))
            }
        }
    }
    if listeners.is_empty() {
        return Err(match last_error {
            Some((addr, error)) => {
                std::io::Error::new(error.kind(), format!("cannot bind {addr}: {error}"))
            }
            None => std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!(
                    "{} resolved to no address",
                    dumpling::text::Escaped::new(address)
                ),
            ),
        });
    }
    Ok(listeners)
}

/// The one warning printed when the hub listens beyond loopback without TLS or without
/// `--auth`, saying what is exposed; `None` when nothing is.
pub fn exposure_warning(bound: &[SocketAddr], tls: bool, auth: bool) -> Option<String> {
    let public: Vec<String> = bound
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.to_string())
        .collect();
    if public.is_empty() || (tls && auth) {
        return None;
    }
    let mut exposed = Vec::new();
    if !auth {
        exposed.push("anyone who can reach it may send dumplings under any kitchen name and read every dumpling (no --auth)");
    }
    if !tls {
        exposed
            .push("all traffic, tokens included, crosses the network unencrypted (no --tls-cert)");
    }
    Some(format!(
        "listening on non-loopback {}: {}. See README \"Deployment\".",
        public.join(", "),
        exposed.join("; ")
    ))
}

/// Resolves when the process gets Ctrl-C or (on Unix) SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => info!("Caught keyboard interrupt; attempting graceful shutdown..."),
        _ = term => info!("Caught SIGTERM; attempting graceful shutdown..."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_only_beyond_loopback_without_tls_and_auth() {
        let local: SocketAddr = ([127, 0, 0, 1], 1).into();
        let public: SocketAddr = ([0, 0, 0, 0], 1).into();
        assert_eq!(exposure_warning(&[local], false, false), None);
        assert_eq!(exposure_warning(&[public], true, true), None);
        let warning = exposure_warning(&[local, public], true, false).unwrap();
        assert!(warning.contains("0.0.0.0:1") && warning.contains("no --auth"));
        assert!(!warning.contains("unencrypted"));
        let warning = exposure_warning(&[public], false, true).unwrap();
        assert!(warning.contains("unencrypted") && !warning.contains("no --auth"));
    }
}
