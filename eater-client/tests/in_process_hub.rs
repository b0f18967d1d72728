//! The eater library against an in-process hub (`hub::run` on port 0): typed dumplings,
//! filters, the stream API, and what happens when the hub goes away.

use std::time::Duration;

use eater_client::{Eater, EaterConfig, Event, Filter};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

struct TestHub {
    kitchens: std::net::SocketAddr,
    eaters: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_hub() -> TestHub {
    let k = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (kitchens, eaters) = (k.local_addr().unwrap(), e.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let config = hub::Config {
        status_freq: Duration::from_secs(60),
        ..hub::Config::default()
    };
    let task = tokio::spawn(async move {
        let listeners = hub::Listeners {
            kitchens: vec![k],
            eaters: vec![e],
        };
        hub::run(listeners, config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    TestHub {
        kitchens,
        eaters,
        stop: Some(stop),
        task,
    }
}

fn dumpling(chef: &str, driver: &str, seq: u64) -> String {
    format!(
        r#"{{"metadata": {{"chef": "{chef}", "kitchen": "k", "creation_time": 1.5, "driver": "{driver}"}}, "payload": {{"seq": {seq}}}}}"#
    )
}

async fn next(eater: &mut Eater) -> Event {
    tokio::time::timeout(Duration::from_secs(5), eater.next_event())
        .await
        .expect("event in time")
        .expect("no error")
}

#[tokio::test]
async fn typed_filtered_stream_and_hub_loss() {
    let mut hub = start_hub().await;
    let mut config = EaterConfig::new(hub.eaters.to_string(), "libtest");
    config.filter = Filter {
        chefs: vec!["WantedChef".into()],
        packet: true,
        interval: false,
        ..Filter::default()
    };
    config.reconnect.enabled = false;
    let mut eater = Eater::new(config).unwrap();
    assert!(matches!(
        next(&mut eater).await,
        Event::Connected {
            reconnected: false,
            ..
        }
    ));

    let (mut k, _) = tokio_tungstenite::connect_async(format!("ws://{}", hub.kitchens))
        .await
        .unwrap();
    k.send(Message::text(r#"{"kitchen_name": "k"}"#))
        .await
        .unwrap();
    k.send(Message::text(dumpling("OtherChef", "packet", 1)))
        .await
        .unwrap();
    k.send(Message::text(dumpling("WantedChef", "interval", 2)))
        .await
        .unwrap();
    let wanted = dumpling("WantedChef", "packet", 3);
    k.send(Message::text(wanted.as_str())).await.unwrap();
    match next(&mut eater).await {
        Event::Dumpling(d) => {
            assert_eq!(d.raw, wanted, "the exact text");
            assert_eq!(d.dumpling.metadata.chef, "WantedChef");
            assert_eq!(d.dumpling.metadata.kitchen.as_deref(), Some("k"));
            assert_eq!(d.dumpling.payload["seq"], 3);
            assert!(!d.binary);
        }
        other => panic!("{other:?}"),
    }
    // Hub shutdown: 1001, and without reconnect the eater gives up with an error.
    let _ = hub.stop.take().map(|s| s.send(()));
    let end = tokio::time::timeout(Duration::from_secs(5), eater.next_event())
        .await
        .unwrap();
    match end {
        Err(eater_client::Error::GaveUp(reason)) => assert!(reason.contains("1001"), "{reason}"),
        other => panic!("{other:?}"),
    }
    tokio::time::timeout(Duration::from_secs(5), hub.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn stream_api_reports_disconnects_and_reconnects() {
    let hub = start_hub().await;
    let mut config = EaterConfig::new(hub.eaters.to_string(), "streamer");
    config.reconnect.initial = Duration::from_millis(50);
    let stream = Eater::new(config).unwrap().into_stream();
    tokio::pin!(stream);
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Ok(Event::Connected { .. }))));
    // The welcome status is a typed dumpling from SystemStatusChef.
    let status = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    match status {
        Some(Ok(Event::Dumpling(d))) => {
            assert_eq!(d.dumpling.metadata.chef, dumpling::SYSTEM_STATUS_CHEF);
            let s: dumpling::SystemStatus = serde_json::from_value(d.dumpling.payload).unwrap();
            assert_eq!(s.dumpling_eater_count, 1);
        }
        other => panic!("{other:?}"),
    }
    drop(hub.stop);
    // The hub may still send its periodic status before it closes (its first tick can
    // follow the welcome status at once): skip those, then the loss must be reported.
    let lost = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.next().await {
                Some(Ok(Event::Dumpling(d)))
                    if d.dumpling.metadata.chef == dumpling::SYSTEM_STATUS_CHEF => {}
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(lost, Some(Ok(Event::Disconnected { .. }))),
        "{lost:?}"
    );
    // The hub is gone: the attempts after the loss are failed reconnects, not more losses.
    let retry = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(
        matches!(
            retry,
            Some(Ok(Event::ConnectFailed {
                reconnecting: true,
                ..
            }))
        ),
        "{retry:?}"
    );
}

/// With no hub there at all, the eater says it could not connect, to the address as given
/// and with the OS's reason; never that a connection was lost (none was ever made).
#[tokio::test]
async fn no_hub_is_a_failed_connect_not_a_lost_connection() {
    // A port nothing listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = EaterConfig::new(addr.to_string(), "e");
    config.reconnect.initial = Duration::from_millis(10);
    config.reconnect.max_attempts = Some(1);
    let mut eater = Eater::new(config).unwrap();
    match next(&mut eater).await {
        Event::ConnectFailed {
            hub,
            reason,
            unreachable,
            reconnecting,
            ..
        } => {
            assert_eq!(
                hub,
                addr.to_string(),
                "the address as given, not a ws:// URI"
            );
            assert!(reason.contains("refused"), "{reason}");
            assert!(!reason.contains(&addr.to_string()), "said once: {reason}");
            assert!(unreachable && !reconnecting);
        }
        other => panic!("{other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(5), eater.next_event())
        .await
        .unwrap();
    match end {
        Err(error @ eater_client::Error::CannotConnect { .. }) => {
            let text = error.to_string();
            assert!(
                text.starts_with(&format!(
                    "could not connect to the dumpling hub at {addr}: "
                )),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// A one-connection hub stand-in that answers the binary-frames header (or not), reads the
/// hello and sends `frames`, then waits for the eater to leave.
async fn fake_hub(grant: bool, frames: Vec<Message>) -> std::net::SocketAddr {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        #[allow(clippy::result_large_err)] // tungstenite's callback signature
        let answer = |request: &Request, mut response: Response| {
            assert!(
                request
                    .headers()
                    .contains_key(dumpling::BINARY_FRAMES_HEADER),
                "the eater library asks for binary frames"
            );
            if grant {
                response.headers_mut().insert(
                    dumpling::BINARY_FRAMES_HEADER,
                    HeaderValue::from_static(dumpling::BINARY_FRAMES_VALUE),
                );
            }
            Ok(response)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(tcp, answer)
            .await
            .unwrap();
        let _hello = ws.next().await;
        for frame in frames {
            let _ = ws.send(frame).await;
        }
        while let Some(Ok(_)) = ws.next().await {}
    });
    addr
}

#[tokio::test]
async fn binary_frames_hold_text_only_where_the_hub_agreed() {
    let d = dumpling("C", "packet", 1).replace("\"k\"", "\"k\u{fffd}\"");
    let bad = [d.as_bytes(), b"\xff"].concat();
    let no_reconnect = |addr: std::net::SocketAddr| {
        let mut config = EaterConfig::new(addr.to_string(), "e");
        config.reconnect.max_attempts = Some(0);
        config
    };

    // Agreed: a binary frame is the dumpling's text (not flagged binary); invalid UTF-8
    // ends the connection, as in a text frame.
    let addr = fake_hub(
        true,
        vec![
            Message::binary(d.clone().into_bytes()),
            Message::binary(bad.clone()),
        ],
    )
    .await;
    let mut eater = Eater::new(no_reconnect(addr)).unwrap();
    assert!(matches!(next(&mut eater).await, Event::Connected { .. }));
    match next(&mut eater).await {
        Event::Dumpling(r) => {
            assert_eq!(r.raw, d);
            assert!(!r.binary);
        }
        other => panic!("expected the dumpling, got {other:?}"),
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), eater.next_event())
        .await
        .expect("in time");
    match ended {
        Err(eater_client::Error::GaveUp(reason)) => assert!(reason.contains("UTF-8"), "{reason}"),
        other => panic!("expected the connection to end on invalid UTF-8, got {other:?}"),
    }

    // Not agreed (the original hub): binary frames are binary dumplings as before, and
    // invalid UTF-8 in one is an invalid message, the connection kept.
    let addr = fake_hub(
        false,
        vec![
            Message::binary(bad),
            Message::binary(d.clone().into_bytes()),
        ],
    )
    .await;
    let mut eater = Eater::new(no_reconnect(addr)).unwrap();
    assert!(matches!(next(&mut eater).await, Event::Connected { .. }));
    assert!(matches!(next(&mut eater).await, Event::Invalid { .. }));
    match next(&mut eater).await {
        Event::Dumpling(r) => {
            assert_eq!(r.raw, d);
            assert!(r.binary);
        }
        other => panic!("expected the dumpling, got {other:?}"),
    }
}

/// A hub that accepts, reads the hello and then says nothing: the eater counts the
/// connection as lost after its idle timeout instead of waiting forever.
#[tokio::test]
async fn a_silent_hub_is_a_lost_connection() {
    let addr = fake_hub(false, Vec::new()).await;
    let mut config = EaterConfig::new(addr.to_string(), "e");
    config.reconnect.max_attempts = Some(0);
    config.idle_timeout = Duration::from_millis(300);
    let mut eater = Eater::new(config).unwrap();
    assert!(matches!(next(&mut eater).await, Event::Connected { .. }));
    let ended = tokio::time::timeout(Duration::from_secs(5), eater.next_event())
        .await
        .expect("in time");
    match ended {
        Err(eater_client::Error::GaveUp(reason)) => {
            assert!(reason.contains("sent nothing"), "{reason}")
        }
        other => panic!("expected the silent hub to count as lost, got {other:?}"),
    }
}

/// What a hub says (close reasons, notices, errors quoting its message) comes out of the
/// library escaped: no terminal escape or line break reaches the program's output.
#[tokio::test]
async fn hub_words_are_escaped() {
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::CloseCode, CloseFrame};
    let notice = r#"{"metadata":{"chef":"HubNoticeChef","kitchen":null,"creation_time":1,"driver":"interval"},"payload":{"notice":"a\u001b[2Jb\nc"}}"#;
    let bad = r#"{"metadata":{"chef":"C","kitchen":"k","creation_time":1,"driver":"pa\u001b]0;x\u0007"},"payload":1}"#;
    let addr = fake_hub(
        false,
        vec![
            Message::text(notice),
            Message::text(bad),
            Message::Close(Some(CloseFrame {
                code: CloseCode::from(4000),
                reason: "bye\u{1b}[2J\r\nforged".into(),
            })),
        ],
    )
    .await;
    let mut config = EaterConfig::new(addr.to_string(), "e");
    config.reconnect.max_attempts = Some(0);
    let mut eater = Eater::new(config).unwrap();
    let mut texts = Vec::new();
    for _ in 0..6 {
        match tokio::time::timeout(Duration::from_secs(5), eater.next_event()).await {
            Ok(Ok(Event::Connected { .. })) => {}
            Ok(Ok(Event::Notice { text })) => texts.push(text),
            Ok(Ok(Event::Invalid { error })) => texts.push(error),
            Ok(Ok(Event::Disconnected { reason, .. })) => texts.push(reason),
            Ok(Err(eater_client::Error::GaveUp(reason))) => {
                texts.push(reason);
                break;
            }
            Ok(Ok(other)) => panic!("unexpected {other:?}"),
            Ok(Err(e)) => panic!("unexpected {e:?}"),
            Err(_) => break,
        }
    }
    assert!(texts.iter().any(|t| t.contains("forged")), "{texts:?}");
    assert!(texts.len() >= 2, "{texts:?}");
    for t in &texts {
        assert!(!t.chars().any(char::is_control), "{t:?}");
    }
}
