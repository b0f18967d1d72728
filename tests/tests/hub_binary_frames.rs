//! Binary frames agreed on the upgrade (`nd-binary-frames: 1`, `dumpling::BINARY_FRAMES_HEADER`)
//! with a real `nd-hub` on 127.0.0.1: only a client that asks gets the answer; a kitchen's
//! binary frames then carry text (forwarded to plain eaters as text frames, byte for byte),
//! an asking eater gets dumplings as binary frames; clients that do not ask (the original
//! kitchens and eaters) see exactly what they saw before; and what was refused before is
//! refused the same way in a binary frame (invalid UTF-8 ends the connection as in a text
//! frame, invalid JSON is dropped and counted, too big is 1009).

#[path = "hub_support.rs"]
mod support;

use std::time::Duration;

use futures_util::SinkExt;
use support::*;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

/// A dumpling whose text has many non-ASCII bytes, as the DNS tables of real captures do.
fn non_ascii_dumpling(kitchen: &str, n: u64) -> String {
    format!(
        r#"{{"metadata":{{"chef":"DNSLookupChef","kitchen":"{kitchen}","creation_time":1.5,"driver":"packet"}},"payload":{{"lookup":{{"hostname":"��bücher-{n}.名前.test","when":2.25}}}}}}"#
    )
}

/// Connect to `addr` asking (or not) for binary frames; whether the hub said yes.
async fn connect_asking(addr: std::net::SocketAddr, ask: bool) -> (Ws, bool) {
    let (ws, response) = tokio::time::timeout(
        T,
        hub_link::Link::plain().connect_frames(&format!("ws://{addr}/"), None, ask),
    )
    .await
    .expect("connect in time")
    .expect("connect");
    (ws, hub_link::binary_granted(&response))
}

/// A kitchen that asked for binary frames and was told yes, hello sent.
async fn binary_kitchen(addr: std::net::SocketAddr, name: &str) -> Ws {
    let (mut ws, granted) = connect_asking(addr, true).await;
    assert!(granted, "our hub agrees to binary frames when asked");
    let hello = serde_json::json!({ "kitchen_name": name }).to_string();
    ws.send(Message::text(hello)).await.expect("hello");
    ws
}

/// A raw text frame, whatever its bytes (tungstenite's `Message::Text` must be UTF-8).
fn raw_text_frame(bytes: &[u8]) -> Message {
    Message::Frame(Frame::message(
        bytes.to_vec(),
        OpCode::Data(Data::Text),
        true,
    ))
}

/// True when the connection ends within `limit` without a close frame from the hub (what
/// tungstenite's UTF-8 error on a text frame has always meant: the hub drops the socket).
async fn ends_without_close_frame(ws: &mut Ws, limit: Duration) -> bool {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(Some(Ok(Message::Close(_)))) => return false,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => return true,
        }
    }
}

#[tokio::test]
async fn binary_frames_only_when_asked_and_the_same_text_everywhere() {
    let hub = Hub::start(&["-f", "60"]);
    // A plain eater (as the original's) and one that asks for binary frames.
    let (mut plain, _) = eater(hub.eaters, "plain").await;
    let (mut asking, granted) = connect_asking(hub.eaters, true).await;
    assert!(granted, "an eater that asks is told yes");
    asking
        .send(Message::text(r#"{"eater_name": "asking"}"#))
        .await
        .expect("hello");
    // Its welcome status is binary too, the same JSON.
    let welcome = next_data(&mut asking, T).await.expect("welcome");
    assert!(matches!(welcome, Message::Binary(_)), "{welcome:?}");
    assert!(is_chef(&welcome, "SystemStatusChef"));
    // A client that does not ask is not told so.
    let (_quiet, granted) = connect_asking(hub.kitchens, false).await;
    assert!(!granted, "no header unless asked");

    // Our kitchen's binary frame: text to the plain eater, binary to the asking one, the
    // same bytes (non-ASCII ones included).
    let mut ours = binary_kitchen(hub.kitchens, "ours").await;
    let d1 = non_ascii_dumpling("ours", 1);
    ours.send(Message::binary(d1.clone().into_bytes()))
        .await
        .expect("send");
    assert_eq!(
        next_dumpling(&mut plain, T).await,
        Some(Message::text(d1.as_str()))
    );
    assert_eq!(
        next_dumpling(&mut asking, T).await,
        Some(Message::binary(d1.clone().into_bytes()))
    );

    // An original-style kitchen: its text frame is text to the plain eater, binary to the
    // asking one; its binary frame stays binary for both, as the original hub forwards it.
    let mut original = kitchen(hub.kitchens, r#"{"kitchen_name": "original"}"#).await;
    let d2 = non_ascii_dumpling("original", 2);
    original
        .send(Message::text(d2.as_str()))
        .await
        .expect("send");
    let d3 = non_ascii_dumpling("original", 3);
    original
        .send(Message::binary(d3.clone().into_bytes()))
        .await
        .expect("send");
    assert_eq!(
        next_dumpling(&mut plain, T).await,
        Some(Message::text(d2.as_str()))
    );
    assert_eq!(
        next_dumpling(&mut plain, T).await,
        Some(Message::binary(d3.clone().into_bytes()))
    );
    assert_eq!(
        next_dumpling(&mut asking, T).await,
        Some(Message::binary(d2.into_bytes()))
    );
    assert_eq!(
        next_dumpling(&mut asking, T).await,
        Some(Message::binary(d3.into_bytes()))
    );
    let s = status(hub.eaters).await;
    assert_eq!(s["total_dumplings_in"], 3, "{s}");
    let (_, log) = hub.stop();
    assert!(
        log.contains("binary_frames=true") && log.contains("binary_frames=false"),
        "the hub logs which connections agreed: {log}"
    );
}

#[tokio::test]
async fn binary_frames_are_refused_as_text_frames_were() {
    let hub = Hub::start(&["-f", "60", "--max-message-bytes", "4096"]);
    let (mut e, _) = eater(hub.eaters, "e").await;
    let invalid_utf8: &[u8] =
        br#"{"metadata":{"chef":"C","kitchen":"k","creation_time":1.5,"driver":"packet"},"payload":"bad "#;
    let invalid_utf8 = [invalid_utf8, b"\xff\xfe\"}"].concat();

    // Invalid UTF-8 in a text frame (before this change, the only way our kitchen sent):
    // the hub drops the connection, counts nothing in.
    let mut text_kitchen = kitchen(hub.kitchens, r#"{"kitchen_name": "text"}"#).await;
    text_kitchen
        .send(raw_text_frame(&invalid_utf8))
        .await
        .expect("send");
    assert!(ends_without_close_frame(&mut text_kitchen, T).await);
    // The same bytes in a binary frame from a kitchen that agreed to binary frames: the
    // same outcome.
    let mut ours = binary_kitchen(hub.kitchens, "ours").await;
    ours.send(Message::binary(invalid_utf8.clone()))
        .await
        .expect("send");
    assert!(ends_without_close_frame(&mut ours, T).await);

    // From a kitchen that did not ask, a binary frame is an original-style binary
    // dumpling, as before: invalid UTF-8 is an invalid dumpling, the connection stays.
    let mut original = kitchen(hub.kitchens, r#"{"kitchen_name": "original"}"#).await;
    original
        .send(Message::binary(invalid_utf8.clone()))
        .await
        .expect("send");
    let after = non_ascii_dumpling("original", 1);
    original
        .send(Message::binary(after.clone().into_bytes()))
        .await
        .expect("send");
    assert_eq!(
        next_dumpling(&mut e, T).await,
        Some(Message::binary(after.into_bytes()))
    );

    // Valid UTF-8 that is not a dumpling, in a binary frame of an agreeing kitchen: dropped
    // and counted, the connection stays, as for a text frame.
    let mut ours = binary_kitchen(hub.kitchens, "ours2").await;
    ours.send(Message::binary(b"not json \xc3\xa9".to_vec()))
        .await
        .expect("send");
    ours.send(Message::binary(
        br#"{"metadata": {"chef": "MinimalChef"}}"#.to_vec(),
    ))
    .await
    .expect("send");
    let good = non_ascii_dumpling("ours2", 2);
    ours.send(Message::binary(good.clone().into_bytes()))
        .await
        .expect("send");
    assert_eq!(
        next_dumpling(&mut e, T).await,
        Some(Message::text(good.as_str())),
        "forwarded as the text it holds"
    );
    // Too big: 1009, as for a text frame.
    ours.send(Message::binary(
        dumpling_text("ours2", 3, 10_000).into_bytes(),
    ))
    .await
    .expect("send");
    assert_eq!(close_frame(&mut ours, T).await.map(|c| c.0), Some(1009));

    let s = status(hub.eaters).await;
    assert_eq!(s["total_dumplings_in"], 2, "only the two valid ones: {s}");
    let (_, log) = hub.stop();
    // Both UTF-8 refusals end the connection with tungstenite's own words.
    assert_eq!(
        log.matches("connection closed: UTF-8 encoding error")
            .count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches("Received invalid dumpling").count(), 3, "{log}");
}
