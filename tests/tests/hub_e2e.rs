//! `nd-hub` end to end, as a real process on 127.0.0.1 driven by raw WebSocket clients:
//! the original's recorded frames replayed, byte-for-byte forwarding, input checks, bad
//! hellos without ghosts, size caps, slow and vanishing eaters, churn, shutdown and bind
//! errors (issue #4).

#[path = "hub_support.rs"]
mod support;

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

/// Kitchen frames recorded from the original `nd-sniff` (hello first, then dumplings).
fn recorded_kitchen_frames() -> Option<Vec<String>> {
    let text =
        std::fs::read_to_string(captures_dir()?.join("kitchen_to_hub_transcript.txt")).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix("MSG "))
            .filter_map(|l| l.split_once(" TEXT ").map(|(_, m)| m.to_owned()))
            .collect(),
    )
}

#[tokio::test]
async fn recorded_kitchen_session_reaches_every_eater_byte_for_byte_in_order() {
    let Some(frames) = recorded_kitchen_frames() else {
        return;
    };
    assert!(frames.len() > 5, "transcript has a hello and dumplings");
    let hub = Hub::start(&["-f", "60"]);
    let (mut a, _) = eater(hub.eaters, "a").await;
    let (mut b, _) = eater(hub.eaters, "b").await;
    let mut k = kitchen(hub.kitchens, &frames[0]).await;
    for frame in &frames[1..] {
        k.send(Message::text(frame.as_str())).await.unwrap();
    }
    for ws in [&mut a, &mut b] {
        for frame in &frames[1..] {
            let got = next_dumpling(ws, T).await.expect("dumpling");
            assert_eq!(got.to_text().unwrap(), frame, "byte for byte, in order");
        }
    }
    // The kitchen's hello is republished verbatim, with our per-kitchen counters.
    let s = status(hub.eaters).await;
    let hello: serde_json::Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!(s["dumpling_kitchens"][0]["info_from_kitchen"], hello);
    assert_eq!(s["dumpling_kitchen_count"], 1);
    assert_eq!(s["total_dumplings_in"], (frames.len() - 1) as u64);
    assert_eq!(
        s["dumpling_kitchens"][0]["info_from_hub"]["dumplings_in"],
        (frames.len() - 1) as u64
    );
    assert_eq!(
        s["dumpling_kitchens"][0]["info_from_hub"]["host"],
        "127.0.0.1"
    );
}

#[tokio::test]
async fn recorded_hub_to_eater_frames_replayed_as_kitchen_input() {
    let Some(dir) = captures_dir() else {
        return;
    };
    let text = std::fs::read_to_string(dir.join("hub_to_eater_transcript.jsonl")).unwrap();
    let frames: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("\"SystemStatusChef\""))
        .collect();
    let hub = Hub::start(&["-f", "60"]);
    let (mut e, _) = eater(hub.eaters, "rawtap").await;
    let mut k = kitchen(
        hub.kitchens,
        r#"{"kitchen_name": "replay", "whatever": true}"#,
    )
    .await;
    for frame in &frames {
        k.send(Message::text(*frame)).await.unwrap();
    }
    // MinimalChef (no driver/creation_time) is the one frame our stricter check drops;
    // FullChef keeps its extra top-level key, byte for byte.
    let expected: Vec<&str> = frames
        .iter()
        .copied()
        .filter(|f| dumpling::check_dumpling(f.as_bytes()).is_ok())
        .collect();
    assert_eq!(
        expected.len() + 1,
        frames.len(),
        "exactly MinimalChef is invalid"
    );
    for frame in &expected {
        let got = next_dumpling(&mut e, T).await.expect("dumpling");
        assert_eq!(got.to_text().unwrap(), *frame);
    }
    assert!(expected
        .iter()
        .any(|f| f.contains("\"extra_top\": \"kept?\"")));
    let s = status(hub.eaters).await;
    assert_eq!(
        s["dumpling_kitchens"][0]["info_from_hub"]["dumplings_invalid"],
        1
    );
    assert_eq!(s["total_dumplings_in"], expected.len() as u64);
}

#[tokio::test]
async fn garbage_frames_are_dropped_counted_and_the_kitchen_stays() {
    let hub = Hub::start(&["-f", "60"]);
    let (mut e, _) = eater(hub.eaters, "e").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "probe_kitchen"}"#).await;
    let garbage = [
        "not json",
        "[1, 2]",
        r#"{"metadata": {}}"#,
        r#"{"metadata": {"chef": "MinimalChef"}}"#,
        r#"{"metadata": {"chef": "C", "driver": "sideways", "creation_time": 1}}"#,
        r#"{"metadata": {"chef": "C", "driver": "packet", "creation_time": "soon"}}"#,
        "",
    ];
    for g in garbage {
        k.send(Message::text(g)).await.unwrap();
    }
    k.send(Message::binary(vec![0xff, 0x00, 0x7b]))
        .await
        .unwrap();
    let good = dumpling_text("probe_kitchen", 1, 200);
    k.send(Message::text(good.as_str())).await.unwrap();
    // A valid dumpling in a binary frame goes out as a binary frame, as the original.
    k.send(Message::binary(good.clone().into_bytes()))
        .await
        .unwrap();
    let first = next_dumpling(&mut e, T).await.expect("the good dumpling");
    assert_eq!(first, Message::text(good.as_str()));
    let second = next_dumpling(&mut e, T).await.expect("the binary dumpling");
    assert_eq!(second, Message::binary(good.clone().into_bytes()));
    let s = status(hub.eaters).await;
    let info = &s["dumpling_kitchens"][0]["info_from_hub"];
    assert_eq!(info["dumplings_invalid"], 8);
    assert_eq!(info["dumplings_in"], 2);
    assert_eq!(
        s["dumpling_kitchen_count"], 1,
        "the kitchen is still connected"
    );
    drop(k);
    drop(e);
    let (_, log) = hub.stop();
    assert!(
        log.contains("Received invalid dumpling: Could not interpret dumpling JSON; kitchen: {\"kitchen_name\": \"probe_kitchen\"}"),
        "invalid dumplings are logged with the kitchen: {log}"
    );
    // The hub ends with its totals (it printed none on SIGTERM).
    let totals = log
        .lines()
        .find(|l| l.contains("hub totals"))
        .unwrap_or_else(|| panic!("no totals at shutdown: {log}"));
    assert_eq!(e2e_tests::log_field(totals, "dumplings_in"), 2, "{totals}");
    assert_eq!(e2e_tests::log_field(totals, "invalid"), 8, "{totals}");
}

/// A kitchen's name and hello reach the hub's log escaped and cut (no forged line, no
/// megabyte line), and junk frames are logged the first few times only, however many come.
#[tokio::test]
async fn a_kitchen_cannot_forge_or_flood_the_hub_log() {
    let hub = Hub::start(&["-f", "60"]);
    let (mut e, _) = eater(hub.eaters, "e").await;
    let name = format!(
        "evil\\u001b]0;title\\u0007\\r\\n2099-01-01T00:00:00Z ERROR forged\\u202e{}",
        "x".repeat(100_000)
    );
    let mut k = kitchen(hub.kitchens, &format!(r#"{{"kitchen_name": "{name}"}}"#)).await;
    for _ in 0..300 {
        k.send(Message::text("x")).await.unwrap();
    }
    let good = dumpling_text("k", 1, 10);
    k.send(Message::text(good.as_str())).await.unwrap();
    assert!(
        next_dumpling(&mut e, T).await.is_some(),
        "the good dumpling"
    );
    drop(k);
    drop(e);
    let (_, log) = hub.stop();
    let invalid = log.matches("Received invalid dumpling").count();
    assert!((1..=5).contains(&invalid), "{invalid} lines");
    assert!(!log.lines().any(|l| l.starts_with("2099")), "a forged line");
    assert!(
        !log.contains('\u{1b}') && !log.contains('\u{202e}'),
        "raw escapes"
    );
    assert!(log.contains(r"evil\x1b]0;title\x07\r\n2099"), "{log:.2000}");
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4_000, "a {longest}-byte log line");
}

/// Every log record is one line with no control character whatever a field holds, even
/// where no call site escapes it: with `RUST_LOG=tungstenite=trace` the WebSocket library
/// logs each received message's text as it came (`Received message ...`), so a kitchen's
/// frame with a newline and terminal escapes reached the log raw (a forged line, a
/// retitled terminal). The hub's log writer now escapes each record.
#[tokio::test]
async fn log_records_stay_one_line_whatever_a_field_holds() {
    let hub = Hub::start_logging(&["-f", "60"], "info,tungstenite=trace");
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "k"}"#).await;
    let forged = "junk\n2099-01-01T00:00:00Z  INFO forged: \u{1b}]0;owned\u{7}\u{1b}[2J\r";
    k.send(Message::text(forged)).await.unwrap();
    // Something that reaches the hub after it, so the frame above was read.
    let (mut e, _) = eater(hub.eaters, "e").await;
    k.send(Message::text(dumpling_text("k", 1, 10)))
        .await
        .unwrap();
    assert!(next_dumpling(&mut e, T).await.is_some());
    let (_, log) = hub.stop();
    assert!(log.contains("Received message junk"), "{log:.3000}");
    assert!(!log.lines().any(|l| l.starts_with("2099")), "a forged line");
    assert!(
        !log.contains(['\u{1b}', '\u{7}', '\r']),
        "raw control characters"
    );
    assert!(log.contains(r"junk\n2099"), "{log:.3000}");
}

/// An eater that connects and never reads does not make the hub keep every large dumpling
/// published after it (the ring held 3.3 GB for one such eater until the 10 s write
/// timeout): stuck while 64 MiB pass, it is disconnected.
#[tokio::test]
async fn an_eater_that_never_reads_does_not_hold_the_ring() {
    let hub = Hub::start(&["-f", "60"]);
    let (_mute, _) = eater(hub.eaters, "mute").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "big"}"#).await;
    let mut peak = 0;
    for seq in 0..1200 {
        k.send(Message::text(dumpling_text("big", seq, 900_000)))
            .await
            .expect("send");
        if seq % 50 == 0 {
            peak = peak.max(hub.rss_kib());
        }
    }
    // The hub's stderr is read only when it stops: sample a little longer, then look.
    for _ in 0..20 {
        peak = peak.max(hub.rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(k);
    let (_, log) = hub.stop();
    assert!(
        log.contains("eater stuck in a write while 64 MiB were published"),
        "{log:.3000}"
    );
    // ~1 GB went through; the ring kept about 64 MiB of it for the mute eater.
    assert!(peak < 400 * 1024, "hub peak {peak} KiB");
    eprintln!("hub peak with a mute eater: {peak} KiB");
}

/// Kitchens with large (legal) hellos make a status dumpling larger than an eater's queue
/// bound (`--eater-queue-bytes`, 64 KiB here): it still reaches eaters that keep up
/// (every periodic status was dropped for every eater, silently). (Hellos are kept whole
/// up to 32 KiB each and listed whole up to 768 KiB together, see
/// `large_kitchen_hellos_are_listed_cut...`.)
#[tokio::test]
async fn a_status_larger_than_the_eater_queue_bound_still_arrives() {
    let hub = Hub::start(&["-f", "1", "--eater-queue-bytes", "65536"]);
    let mut kitchens = Vec::new();
    for i in 0..5 {
        let hello = format!(
            r#"{{"kitchen_name": "k{i}", "pad": "{}"}}"#,
            "x".repeat(30_000)
        );
        kitchens.push(kitchen(hub.kitchens, &hello).await);
    }
    let (mut e, welcome) = eater(hub.eaters, "e").await;
    assert_eq!(
        welcome["payload"]["dumpling_kitchen_count"], 5,
        "all five registered"
    );
    // The next (periodic) status, about 150 KB.
    let mut got = None;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while got.is_none() && std::time::Instant::now() < until {
        if let Some(m) = next_data(&mut e, Duration::from_secs(3)).await {
            if is_chef(&m, "SystemStatusChef") {
                got = Some(m.len());
            }
        }
    }
    let size = got.expect("no periodic status reached the eater");
    assert!(size > 128 << 10, "{size} bytes");
    drop(kitchens);
    drop(e);
    let _ = hub.stop();
}

/// A flood of connections on one port is closed at accept past `--max-kitchens`, and the
/// eater port keeps working (20 000 idle kitchens took every file descriptor).
#[tokio::test]
async fn connections_past_the_limit_are_closed_and_the_other_port_keeps_working() {
    let hub = Hub::start(&["-f", "60", "--max-kitchens", "3"]);
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(kitchen(hub.kitchens, &format!(r#"{{"kitchen_name": "k{i}"}}"#)).await);
    }
    // The fourth is closed before its handshake completes.
    let url = format!("ws://{}/", hub.kitchens);
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .expect("answered in time");
    assert!(refused.is_err(), "a fourth kitchen was accepted");
    // Eaters are not affected.
    let (_e, welcome) = eater(hub.eaters, "e").await;
    assert_eq!(welcome["payload"]["dumpling_kitchen_count"], 3);
    // One kitchen leaves: a new one gets its place.
    drop(held.pop());
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        {
            ok = true;
            break;
        }
    }
    assert!(ok, "no room after a kitchen left");
    let (_, log) = hub.stop();
    assert!(
        log.contains("connection limit reached (3 open on this port"),
        "{log}"
    );
}

/// Under an open-files hard limit too low for the connection caps, the hub lowers both
/// caps to fit (and says so) instead of letting kitchens take every descriptor.
#[test]
fn connection_caps_fit_a_low_open_files_limit() {
    let (i, o) = (e2e_tests::free_port(), e2e_tests::free_port());
    let script = format!(
        "ulimit -n 300 && exec {} -a 127.0.0.1 -i {i} -o {o}",
        e2e_tests::bin("nd-hub").display()
    );
    let hub = e2e_tests::ChildGuard::spawn(
        "nd-hub",
        std::process::Command::new("sh").args(["-c", &script]),
    );
    assert!(
        e2e_tests::wait_for_port(([127, 0, 0, 1], o).into(), Duration::from_secs(10)),
        "nd-hub did not listen"
    );
    hub.terminate();
    let out = hub.wait_output(Duration::from_secs(10));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("the open-files limit is 300") && log.contains("using 27, 111 and 17 instead"),
        "{log}"
    );
}

#[tokio::test]
async fn bad_hellos_are_closed_with_a_reason_and_leave_no_ghost() {
    let hub = Hub::start(&["-f", "60", "--hello-timeout", "1"]);
    let cases: [(&str, &str); 4] = [
        ("not json", "bad hello: not JSON"),
        (r#"{"name": "nameless"}"#, "bad hello: no kitchen_name"),
        ("[1]", "bad hello: not a JSON object"),
        (
            r#"{"metadata": {"chef": "C", "kitchen": "k", "creation_time": 1, "driver": "packet"}}"#,
            "bad hello: no kitchen_name",
        ),
    ];
    for (hello, reason) in cases {
        let mut k = kitchen(hub.kitchens, hello).await;
        assert_eq!(
            close_frame(&mut k, T).await,
            Some((1008, reason.to_owned())),
            "kitchen hello {hello}"
        );
    }
    let mut e = connect(hub.eaters).await;
    e.send(Message::text(r#"{"name": "x"}"#)).await.unwrap();
    assert_eq!(
        close_frame(&mut e, T).await,
        Some((1008, "bad hello: no eater_name".to_owned()))
    );
    // Silence: closed after the hello timeout.
    let started = Instant::now();
    let mut silent = connect(hub.eaters).await;
    assert_eq!(
        close_frame(&mut silent, T).await,
        Some((1008, "bad hello: none within 1 s".to_owned()))
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // A raw TCP connection that never even upgrades is dropped too.
    let mut raw = tokio::net::TcpStream::connect(hub.kitchens).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(T, tokio::io::AsyncReadExt::read(&mut raw, &mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "half-open handshake dropped"
    );

    let s = status(hub.eaters).await;
    assert_eq!(s["dumpling_kitchen_count"], 0, "no ghost kitchens: {s}");
    assert_eq!(s["dumpling_eater_count"], 1, "only the probe itself: {s}");
}

/// Send `request` on a raw TCP connection and read the answer to its end (bounded).
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(T, tcp.take(64 * 1024).read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer to {request:?} within {T:?}");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A request that can never become a WebSocket (a plain GET on the kitchen port, an
/// upgrade without its key or version, a POST) gets an HTTP error naming what is wrong,
/// not a bare close; the hub keeps serving kitchens and eaters.
#[tokio::test]
async fn requests_that_are_no_websocket_get_an_http_error_that_says_why() {
    let hub = Hub::start(&["-f", "60"]);
    let upgrade = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let cases = [
        (
            hub.kitchens,
            "GET / HTTP/1.1\r\nHost: h\r\n\r\n".to_owned(),
            "426 Upgrade Required",
            "kitchen port",
        ),
        (
            hub.kitchens,
            upgrade.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            "400 Bad Request",
            "Sec-WebSocket-Key",
        ),
        (
            hub.eaters,
            upgrade.replace("Sec-WebSocket-Version: 13\r\n", ""),
            "426 Upgrade Required",
            "Sec-WebSocket-Version: 13",
        ),
        (
            hub.eaters,
            upgrade
                .replace("Upgrade: websocket\r\n", "")
                .replacen("GET", "POST", 1),
            "405 Method Not Allowed",
            "only GET",
        ),
    ];
    for (addr, request, status, says) in cases {
        let answer = raw_http(addr, &request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{request:?} -> {answer:?}"
        );
        assert!(answer.contains(says), "{request:?} -> {answer:?}");
    }
    // The page is still served, and kitchens and eaters still connect.
    let page = raw_http(hub.eaters, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "after"}"#).await;
    k.send(Message::text(dumpling_text("after", 1, 10)))
        .await
        .unwrap();
    let s = status_until(hub.eaters, T, |s| s["dumpling_kitchen_count"] == 1).await;
    assert_eq!(s["dumpling_kitchen_count"], 1, "{s}");
}

/// A request head over the hub's limits (16 KiB, or more than 124 header fields) got a
/// bare close or a TCP reset; now it is answered 431 with a body naming the limit, on both
/// ports, and the hub serves on.
#[tokio::test]
async fn oversized_request_heads_get_431_naming_the_limit() {
    let hub = Hub::start(&["-f", "60"]);
    let upgrade = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let long = format!("{upgrade}Cookie: c={}\r\n\r\n", "x".repeat(40 * 1024));
    let many: String = (0..200).map(|i| format!("X-Many-{i}: v\r\n")).collect();
    let many = format!("{upgrade}{many}\r\n");
    let page = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nCookie: c={}\r\n\r\n",
        "y".repeat(20_000)
    );
    for (addr, request, says) in [
        (hub.kitchens, &long, "16384 bytes"),
        (hub.eaters, &long, "16384 bytes"),
        (hub.kitchens, &many, "more than 124 header fields"),
        (hub.eaters, &many, "more than 124 header fields"),
        (hub.eaters, &page, "16384 bytes"),
    ] {
        let answer = raw_http(addr, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{addr} {:.80?} -> {answer:?}",
            request
        );
        assert!(answer.contains(says), "{answer}");
    }
    // Just under the limit is still an upgrade.
    let fits = format!("{upgrade}Cookie: c={}\r\n\r\n", "x".repeat(15 * 1024));
    let answer = raw_http_head(hub.eaters, &fits).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer:?}");
    let (mut e, _) = eater(hub.eaters, "after").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "k"}"#).await;
    k.send(Message::text(dumpling_text("k", 1, 10)))
        .await
        .unwrap();
    assert!(next_dumpling(&mut e, T).await.is_some());
}

/// Send `request` and read what comes back until the end of the answer's head.
async fn raw_http_head(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(T, tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn oversized_frames_close_the_kitchen_with_1009_and_the_hub_stays_up() {
    let hub = Hub::start(&["-f", "60", "--max-message-bytes", "4096"]);
    let (mut e, _) = eater(hub.eaters, "e").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "big"}"#).await;
    let _ = k.send(Message::text(dumpling_text("big", 1, 10_000))).await;
    let closed = close_frame(&mut k, T).await;
    assert_eq!(closed.map(|c| c.0), Some(1009));
    // The hub still serves: a new kitchen's dumpling reaches the eater.
    let mut k2 = kitchen(hub.kitchens, r#"{"kitchen_name": "small"}"#).await;
    let small = dumpling_text("small", 2, 1000);
    k2.send(Message::text(small.as_str())).await.unwrap();
    assert_eq!(
        next_dumpling(&mut e, T).await,
        Some(Message::text(small.as_str()))
    );
}

#[tokio::test]
async fn new_eaters_get_status_at_once_and_departures_are_seen_at_once() {
    let hub = Hub::start(&["-f", "60"]);
    let started = Instant::now();
    let (mut a, welcome) = eater(hub.eaters, "first").await;
    assert!(started.elapsed() < Duration::from_secs(2), "status at once");
    let p = &welcome["payload"];
    assert_eq!(p["dumpling_eater_count"], 1);
    assert_eq!(
        p["dumpling_eaters"][0]["info_from_eater"]["eater_name"],
        "first"
    );
    for key in support::ORIGINAL_STATUS_KEYS {
        assert!(p.get(key).is_some(), "status has the original key {key}");
    }
    assert_eq!(welcome["metadata"]["kitchen"], serde_json::Value::Null);
    assert_eq!(welcome["metadata"]["driver"], "interval");
    // Extra hello keys survive.
    let mut chatty = connect(hub.eaters).await;
    chatty
        .send(Message::text(
            r#"{"eater_name": "chatty", "extra": [1, 2]}"#,
        ))
        .await
        .unwrap();
    let w = next_data(&mut chatty, T).await.unwrap();
    let w: serde_json::Value = serde_json::from_str(w.to_text().unwrap()).unwrap();
    assert_eq!(
        w["payload"]["dumpling_eaters"][1]["info_from_eater"],
        serde_json::json!({"eater_name": "chatty", "extra": [1, 2]})
    );
    // Departures: one closes cleanly, one just drops its TCP connection.
    a.close(None).await.unwrap();
    drop(chatty);
    let s = status_until(hub.eaters, Duration::from_secs(2), |s| {
        s["dumpling_eater_count"] == 1
    })
    .await;
    assert_eq!(
        s["dumpling_eater_count"], 1,
        "departed eaters seen at once: {s}"
    );
}

#[tokio::test]
async fn status_lists_are_capped_but_counts_stay_exact() {
    let hub = Hub::start(&["-f", "60", "--status-list-max", "3"]);
    let mut eaters = Vec::new();
    for i in 0..6 {
        eaters.push(eater(hub.eaters, &format!("e{i}")).await.0);
    }
    let (_last, welcome) = eater(hub.eaters, "newest").await;
    let p = &welcome["payload"];
    assert_eq!(p["dumpling_eater_count"], 7);
    let listed = p["dumpling_eaters"].as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed[2]["info_from_eater"]["eater_name"], "newest",
        "the receiving eater is listed in its welcome status"
    );
}

/// Kitchens choose their hellos (up to the 1 MiB message limit) and a status lists them:
/// three one-megabyte hellos are listed cut (name, `nd_hello_cut`, their length) so the
/// status stays under 1 MiB, which the original's eaters and the Python library take,
/// while a small hello beside them is listed whole.
#[tokio::test]
async fn large_kitchen_hellos_are_listed_cut_and_the_status_stays_under_a_megabyte() {
    let hub = Hub::start(&["-f", "60"]);
    let pad = "A".repeat(1_000_000);
    let mut big = Vec::new();
    for i in 0..3 {
        let hello = serde_json::json!({"kitchen_name": format!("big{i}"), "pad": pad});
        big.push(kitchen(hub.kitchens, &hello.to_string()).await);
    }
    let _small = kitchen(
        hub.kitchens,
        r#"{"kitchen_name": "small", "interface": "eth0"}"#,
    )
    .await;
    let s = status_until(hub.eaters, T, |s| s["dumpling_kitchen_count"] == 4).await;
    assert_eq!(s["dumpling_kitchen_count"], 4, "{s}");
    let size = s.to_string().len();
    assert!(size < 1 << 20, "status of {size} bytes");
    let listed = s["dumpling_kitchens"].as_array().unwrap();
    for entry in listed {
        let hello = &entry["info_from_kitchen"];
        if hello["kitchen_name"] == "small" {
            assert_eq!(hello["interface"], "eth0", "small hello whole: {hello}");
        } else {
            assert_eq!(hello["nd_hello_cut"], true, "{hello}");
            assert!(hello["nd_hello_bytes"].as_u64().unwrap() > 1_000_000);
            assert!(hello["kitchen_name"].as_str().unwrap().starts_with("big"));
        }
    }
}

/// A peer's hello is kept whole only up to 32 KiB: a 100 KiB hello, even alone (it would
/// fit the status's budget), is listed cut, because the hub no longer holds the rest (each
/// connection held its whole hello, up to 1 MiB, for its life: 100 kitchens, 100 MiB).
#[tokio::test]
async fn a_hello_over_the_kept_size_is_listed_cut_even_alone() {
    let hub = Hub::start(&["-f", "60"]);
    let hello = serde_json::json!({"kitchen_name": "wordy", "pad": "B".repeat(100_000)});
    let _k = kitchen(hub.kitchens, &hello.to_string()).await;
    let s = status_until(hub.eaters, T, |s| s["dumpling_kitchen_count"] == 1).await;
    let listed = &s["dumpling_kitchens"][0]["info_from_kitchen"];
    assert_eq!(listed["kitchen_name"], "wordy", "{s}");
    assert_eq!(listed["nd_hello_cut"], true, "{listed}");
    assert!(
        listed["nd_hello_bytes"].as_u64().unwrap() > 100_000,
        "{listed}"
    );
    // A hello of ordinary size is still listed verbatim.
    let _small = kitchen(
        hub.kitchens,
        r#"{"kitchen_name": "plain", "interface": "eth0"}"#,
    )
    .await;
    let s = status_until(hub.eaters, T, |s| s["dumpling_kitchen_count"] == 2).await;
    let plain = s["dumpling_kitchens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["info_from_kitchen"]["kitchen_name"] == "plain")
        .cloned()
        .unwrap_or_default();
    assert_eq!(plain["info_from_kitchen"]["interface"], "eth0", "{s}");
}

#[tokio::test]
async fn periodic_status_reaches_every_eater() {
    let hub = Hub::start(&["-f", "0.2"]);
    let (mut a, _) = eater(hub.eaters, "a").await;
    let mut seen = 0;
    let deadline = Instant::now() + T;
    while seen < 3 && Instant::now() < deadline {
        if let Some(m) = next_data(&mut a, T).await {
            if is_chef(&m, "SystemStatusChef") {
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 3, "a status dumpling every 0.2 s");
}

#[tokio::test]
async fn a_slow_eater_is_told_what_it_missed_and_never_slows_the_fast_one() {
    // Tiny ring and byte cap so that a paused eater overflows quickly.
    let hub = Hub::start(&[
        "-f",
        "60",
        "--ring-capacity",
        "1024",
        "--eater-queue-bytes",
        "262144",
        // The paused eater must lag, not be evicted, even on a loaded machine.
        "--write-timeout",
        "60",
    ]);
    let mut eater_cfg = eater_client::EaterConfig::new(hub.eater_hub(), "slowpoke");
    eater_cfg.reconnect.enabled = false;
    let mut slow = eater_client::Eater::new(eater_cfg).unwrap();
    assert!(matches!(
        slow.next_event().await.unwrap(),
        eater_client::Event::Connected { .. }
    ));
    let (mut fast, _) = eater(hub.eaters, "fast").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "flood"}"#).await;
    let n: u64 = 30_000;
    let sender = tokio::spawn(async move {
        // Bursts with short pauses, so the fast eater can keep up on a busy machine.
        for seq in 0..n {
            k.feed(Message::text(dumpling_text("flood", seq, 1000)))
                .await
                .unwrap();
            if seq % 50 == 49 {
                k.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        k.flush().await.unwrap();
        k
    });
    // The fast eater keeps up and gets everything, in order.
    let mut expect = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while expect < n && Instant::now() < deadline {
        let Some(m) = next_dumpling(&mut fast, T).await else {
            break;
        };
        let v: serde_json::Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        assert_eq!(
            v["payload"]["seq"], expect,
            "fast eater in order, nothing lost"
        );
        expect += 1;
    }
    assert_eq!(expect, n, "the fast eater got every dumpling");
    let _k = sender.await.unwrap();
    // Now the slow eater (which read nothing so far) drains: dumplings + lag = n.
    let (mut got, mut lagged, mut notices) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(60);
    while got + lagged < n && Instant::now() < deadline {
        match tokio::time::timeout(T, slow.next_event()).await {
            Ok(Ok(eater_client::Event::Dumpling(d))) if d.dumpling.metadata.chef == "BenchChef" => {
                got += 1
            }
            Ok(Ok(eater_client::Event::Lagged { missed })) => {
                lagged += missed;
                notices += 1;
            }
            Ok(Ok(_)) => {}
            other => panic!("slow eater ended: {other:?}"),
        }
    }
    assert!(notices > 0, "the slow eater was told it lagged");
    assert_eq!(
        got + lagged,
        n,
        "every dumpling is either delivered or reported missed"
    );
    let s = status(hub.eaters).await;
    let entry = s["dumpling_eaters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["info_from_eater"]["eater_name"] == "slowpoke")
        .cloned()
        .unwrap();
    assert_eq!(entry["info_from_hub"]["dumplings_dropped"], lagged);
}

/// An eater that takes one chef (`nd_chefs`) keeps every dumpling of it while another chef
/// floods the ring far past `--eater-queue-bytes`: its backlog is what it takes, not what
/// the ring holds (the hub used to drop its dumplings, with lag notices, whenever the
/// flood ran ahead of it while it walked past the other chef's frames).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eater_of_one_chef_keeps_all_of_it_under_a_flood_of_others() {
    const MINE: usize = 200;
    const EVERY: usize = 20;
    let hub = Hub::start(&["-f", "60", "--eater-queue-bytes", "32768"]);
    let mut mine = connect(hub.eaters).await;
    mine.send(Message::text(
        r#"{"eater_name": "just-mine", "nd_chefs": ["MineChef"]}"#,
    ))
    .await
    .unwrap();
    assert!(next_data(&mut mine, T).await.is_some(), "welcome status");
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "flood"}"#).await;
    let other = dumpling_text("flood", 0, 8192);
    for seq in 0..MINE * EVERY {
        let frame = if seq % EVERY == EVERY - 1 {
            dumpling_text("flood", seq as u64, 100).replace("BenchChef", "MineChef")
        } else {
            other.clone()
        };
        k.feed(Message::text(frame)).await.unwrap();
    }
    k.flush().await.unwrap();
    let mut got = 0;
    while got < MINE {
        let Some(message) = next_dumpling(&mut mine, Duration::from_secs(10)).await else {
            break;
        };
        assert!(
            is_chef(&message, "MineChef"),
            "only its chef, no lag notice: {}",
            message.to_text().unwrap_or("(binary)")
        );
        got += 1;
    }
    assert_eq!(got, MINE, "every MineChef dumpling arrived");
}

#[tokio::test]
async fn a_stuck_eater_is_disconnected_and_its_registration_removed() {
    let hub = Hub::start(&["-f", "60", "--write-timeout", "1"]);
    // This eater never reads after the hello: its socket fills up.
    let (stuck, _) = eater(hub.eaters, "stuck").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "flood"}"#).await;
    let big = dumpling_text("flood", 0, 60_000);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut gone = false;
    let mut sent = 0;
    while Instant::now() < deadline {
        for _ in 0..200 {
            k.send(Message::text(big.as_str())).await.unwrap();
            sent += 1;
        }
        let s = status(hub.eaters).await;
        if s["dumpling_eater_count"] == 1 {
            gone = true;
            break;
        }
    }
    assert!(gone, "stuck eater dropped after {sent} dumplings");
    drop(stuck);
    drop(k);
    let (_, log) = hub.stop();
    // Either bound may come first: the write timeout (1 s without progress), or 64 MiB
    // published past its position (a fast kitchen gets there within the second).
    assert!(
        log.contains("no write progress") || log.contains("eater stuck in a write"),
        "{log}"
    );
}

#[tokio::test]
async fn a_thousand_eaters_come_and_go_without_ghosts_or_leaks() {
    let hub = Hub::start(&["-f", "60"]);
    let n = 1000;
    let mut after_rounds = Vec::new();
    let fresh = hub.rss_kib();
    // The pre-churn baseline is a hub that has served one connection (code paths paged
    // in, runtime tables set up) and had time to trim after it.
    let _ = status(hub.eaters).await;
    // (nd-hub checks once a second; trimming needs two quiet checks.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = hub.rss_kib();
    let idle_anon = proc_status_kib(hub.guard.child.id(), "RssAnon:");
    let idle_file = proc_status_kib(hub.guard.child.id(), "RssFile:");
    eprintln!("fresh hub {fresh} KiB, after one connection {idle} KiB");
    let rounds: usize = std::env::var("ND_CHURN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    for round in 0..rounds {
        let before = hub.rss_kib();
        let mut eaters = Vec::with_capacity(n);
        for i in 0..n {
            let mut ws = connect(hub.eaters).await;
            ws.send(Message::text(format!(r#"{{"eater_name": "churn{i}"}}"#)))
                .await
                .unwrap();
            eaters.push(ws);
        }
        let s = status_until(hub.eaters, Duration::from_secs(20), |s| {
            s["dumpling_eater_count"] == (n + 1) as u64
        })
        .await;
        assert_eq!(s["dumpling_eater_count"], (n + 1) as u64);
        assert_eq!(
            s["dumpling_eaters"].as_array().unwrap().len(),
            25,
            "list capped"
        );
        let loaded = hub.rss_kib();
        // Half leave cleanly, half just vanish.
        for (i, mut ws) in eaters.into_iter().enumerate() {
            if i % 2 == 0 {
                let _ = ws.close(None).await;
            }
        }
        let s = status_until(hub.eaters, Duration::from_secs(20), |s| {
            s["dumpling_eater_count"] == 1
        })
        .await;
        assert_eq!(s["dumpling_eater_count"], 1, "no ghosts after churn: {s}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = hub.rss_kib();
        eprintln!(
            "round {round}: {n} eaters; hub RSS before {before} KiB, loaded {loaded} KiB ({:.1} KiB/eater), after {after} KiB (idle hub {idle} KiB)",
            loaded.saturating_sub(before) as f64 / n as f64
        );
        if round == 0 {
            let per_eater = loaded.saturating_sub(before) as f64 / n as f64;
            assert!(per_eater < 64.0, "about {per_eater:.1} KiB per idle eater");
        }
        after_rounds.push(after);
    }
    // Nothing grows per connection served.
    let last = after_rounds[rounds - 1];
    assert!(
        last <= after_rounds[1] + 2048,
        "RSS keeps growing across rounds: {after_rounds:?}"
    );
    // And the memory goes back: once the burst is over the hub hands its freed heap back
    // to the OS (malloc_trim about a second after the last connection ended), so RSS
    // returns to within a small margin of the pre-churn baseline. Bounded wait.
    let peak = after_rounds.iter().copied().max().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut settled = hub.rss_kib();
    while settled > idle + CHURN_RSS_MARGIN_KIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        settled = hub.rss_kib();
    }
    let pid = hub.guard.child.id();
    eprintln!(
        "pre-churn hub {idle} KiB (anon {idle_anon}, file {idle_file}); right after churn up to {peak} KiB; settled {settled} KiB (anon {}, file {})",
        proc_status_kib(pid, "RssAnon:"),
        proc_status_kib(pid, "RssFile:")
    );
    assert!(
        idle > 0 && settled <= idle + CHURN_RSS_MARGIN_KIB,
        "RSS did not return to the pre-churn baseline: {idle} KiB before, {settled} KiB after (margin {CHURN_RSS_MARGIN_KIB} KiB), after rounds {after_rounds:?}"
    );
    // Most of what the burst took is given back, not just "stays flat".
    let grown = peak.saturating_sub(idle);
    assert!(
        settled.saturating_sub(idle) * 4 <= grown,
        "less than 3/4 of the burst's {grown} KiB was returned: {idle} KiB before, {settled} KiB after"
    );
}

/// How far above the pre-churn RSS the hub may settle after 1000 eaters came and went.
/// Measured: ~+1.3 MiB of ~+11 MiB at the peak (heap fragmentation that malloc_trim cannot
/// return, and code pages first touched by the burst).
const CHURN_RSS_MARGIN_KIB: u64 = 2048;

/// One `kB` field of `/proc/<pid>/status` (0 when unreadable).
fn proc_status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn shutdown_closes_everyone_with_1001_at_once_and_exits_0() {
    let hub = Hub::start(&["-f", "60"]);
    let (mut e, _) = eater(hub.eaters, "e").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "k"}"#).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    hub.guard.terminate();
    assert_eq!(close_frame(&mut e, T).await.map(|c| c.0), Some(1001));
    assert_eq!(close_frame(&mut k, T).await.map(|c| c.0), Some(1001));
    let (status, log) = hub.stop();
    assert!(status.success(), "exit 0 after SIGTERM: {log}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown is prompt"
    );
}

#[tokio::test]
async fn ctrl_c_also_shuts_down_cleanly() {
    let hub = Hub::start(&["-f", "60"]);
    let (mut e, _) = eater(hub.eaters, "e").await;
    hub.guard.interrupt();
    assert_eq!(close_frame(&mut e, T).await.map(|c| c.0), Some(1001));
    let out = hub.guard.wait_output(T);
    assert!(out.status.success());
}

#[test]
fn a_failed_bind_names_the_address_and_port_and_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = e2e_tests::ChildGuard::spawn(
        "nd-hub",
        std::process::Command::new(e2e_tests::bin("nd-hub")).args([
            "-a",
            "127.0.0.1",
            "-i",
            &port.to_string(),
            "-o",
            &e2e_tests::free_port().to_string(),
        ]),
    )
    .wait_output(T);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// Files named on the command line are read bounded and only when regular: `/dev/zero`
/// as the auth file (its size says 0) took gigabytes, and a token file that is a FIFO
/// hung an eater forever.
#[test]
fn auth_and_token_files_that_are_no_regular_files_are_refused_at_once() {
    let refused = |bin: &str, args: &[&str], says: &str| {
        let out = e2e_tests::ChildGuard::spawn(
            bin,
            std::process::Command::new(e2e_tests::bin(bin)).args(args),
        )
        .wait_output(T);
        assert!(!out.status.success(), "{bin} {args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{bin} {args:?}: {err}");
    };
    let hub = [
        "-a",
        "127.0.0.1",
        "-i",
        "0",
        "-o",
        "0",
        "--auth",
        "/dev/zero",
    ];
    refused("nd-hub", &hub, "auth file /dev/zero: not a regular file");
    let print = ["--token-file", "/dev/zero", "-h", "127.0.0.1:1"];
    refused(
        "nd-print",
        &print,
        "token file /dev/zero: not a regular file",
    );
}

/// A flag value the hub cannot use is a usage error, exit 2 like clap's own refusals and
/// the other tools' (it was 1, the status of a file or port problem); a file that cannot
/// be read stays 1.
#[test]
fn bad_flag_values_exit_2_and_unreadable_files_exit_1() {
    let run = |args: &[&str]| {
        e2e_tests::ChildGuard::spawn(
            "nd-hub",
            std::process::Command::new(e2e_tests::bin("nd-hub"))
                .args(["-a", "127.0.0.1", "-i", "0", "-o", "0"])
                .args(args),
        )
        .wait_output(T)
    };
    for (args, says) in [
        (&["-f", "0"][..], "status-freq"),
        (&["--hello-timeout=-1"], "hello-timeout"),
        (&["--max-eaters", "0"], "max-eaters"),
        (&["--metrics-address", "nowhere"], "metrics-address"),
        (&["--status-freq", "x"], "status-freq"),
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let missing = "/nonexistent/nd-hub-test/hub.pem";
    for args in [
        &["--auth", "/nonexistent/nd-hub-test/auth.toml"][..],
        &["--tls-cert", missing, "--tls-key", missing],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("/nonexistent/nd-hub-test/"), "{args:?}: {err}");
    }
}

/// An `--auth` file with no principal (empty, or only comments) started a hub that
/// refused every connection, without a word. At start it is now a usage error (exit 2)
/// naming the file and what to do; emptied while the hub runs, it is not taken (every
/// connection would be closed): the hub warns and keeps the principals it had.
#[tokio::test]
async fn an_auth_file_with_no_principal_is_refused_at_start_and_ignored_on_reload() {
    let dir = std::env::temp_dir().join(format!("nd-hub-empty-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let auth = dir.join("auth.toml");
    for text in ["", "# principals go here\n"] {
        std::fs::write(&auth, text).unwrap();
        let out = e2e_tests::ChildGuard::spawn(
            "nd-hub",
            std::process::Command::new(e2e_tests::bin("nd-hub"))
                .args(["-a", "127.0.0.1", "-i", "0", "-o", "0", "--auth"])
                .arg(&auth),
        )
        .wait_output(T);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {err}");
        assert!(
            err.contains(&auth.display().to_string())
                && err.contains("lists no principal")
                && err.contains("nd-hub token"),
            "{err}"
        );
    }
    let (token, hash) = nd_hub_token();
    std::fs::write(
        &auth,
        format!("[[principal]]\nname = \"e\"\nrole = \"eater\"\ntoken_sha256 = \"{hash}\"\n"),
    )
    .unwrap();
    let hub = Hub::start(&["-f", "60", "--auth", auth.to_str().unwrap()]);
    std::fs::write(&auth, "# emptied\n").unwrap();
    // The file is polled every second (the hub's stderr is read when it ends).
    tokio::time::sleep(Duration::from_secs(3)).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{}/", hub.eaters)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("the token still admits its eater");
    ws.send(Message::text(r#"{"eater_name": "e"}"#))
        .await
        .unwrap();
    assert!(next_data(&mut ws, T).await.is_some(), "no status");
    let (_, log) = hub.stop();
    assert!(
        log.contains("auth file not reloaded") && log.contains("lists no principal"),
        "{log}"
    );
    assert!(log.contains(&auth.display().to_string()), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn any_request_path_works() {
    let hub = Hub::start(&["-f", "60"]);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/anything/here", hub.eaters))
            .await
            .unwrap();
    ws.send(Message::text(r#"{"eater_name": "pathy"}"#))
        .await
        .unwrap();
    let m = next_data(&mut ws, T).await.unwrap();
    assert!(is_chef(&m, "SystemStatusChef"));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn a_silent_eater_that_never_answers_pings_is_dropped() {
    let hub = Hub::start(&["-f", "60", "--ping-interval", "0.5"]);
    // Sends its hello, then is never polled again: it answers no ping (like a peer whose
    // host vanished without a FIN).
    let (_silent, _) = eater(hub.eaters, "silent").await;
    let s = status_until(hub.eaters, Duration::from_secs(6), |s| {
        s["dumpling_eater_count"] == 1
    })
    .await;
    assert_eq!(
        s["dumpling_eater_count"], 1,
        "the silent eater was dropped: {s}"
    );
    let (_, log) = hub.stop();
    assert!(
        log.contains("silent connection closed: no pong from eater"),
        "{log}"
    );
}

/// The upgrade `request`: the HTTP status and body of a refusal, or the socket when
/// accepted.
async fn upgrade(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<Ws, (u16, String)> {
    let connected = tokio::time::timeout(T, tokio_tungstenite::connect_async(request))
        .await
        .expect("answered in time");
    match connected {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err((
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(other) => Err((0, other.to_string())),
    }
}

/// An upgrade to `addr` carrying `Origin: origin` (as a browser page sends): the HTTP
/// status and body of a refusal, or the socket when accepted.
async fn upgrade_from_origin(
    addr: std::net::SocketAddr,
    origin: Option<&str>,
) -> Result<Ws, (u16, String)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    upgrade(request).await
}

/// Cross-site WebSocket hijacking: a web page of another origin (any page the operator
/// visits) can neither read dumplings from nor send dumplings to a default hub (no
/// `--auth`, localhost). Clients without `Origin` (every kitchen and eater program) and the
/// hub's own page are unaffected; `--allow-origin` lets a named page in.
#[tokio::test]
async fn web_pages_of_other_origins_are_refused_on_both_ports() {
    let hub = Hub::start(&["-f", "60", "--allow-origin", "https://dash.example"]);
    let evil = "https://evil.example";
    for addr in [hub.kitchens, hub.eaters] {
        let (status, body) = upgrade_from_origin(addr, Some(evil))
            .await
            .expect_err("a foreign origin was accepted");
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains("https://evil.example") && body.contains("--allow-origin"),
            "{body}"
        );
    }
    // Twice more from the same address: counted, not logged again.
    for _ in 0..2 {
        assert!(upgrade_from_origin(hub.eaters, Some(evil)).await.is_err());
    }
    // The page the hub served (same host and port, either scheme), a listed origin, and
    // programs that send no Origin at all.
    let own = format!("http://{}", hub.eaters);
    let own_tls = format!("https://{}", hub.eaters);
    for origin in [
        None,
        Some(own.as_str()),
        Some(own_tls.as_str()),
        Some("https://dash.example"),
    ] {
        let mut ws = upgrade_from_origin(hub.eaters, origin)
            .await
            .unwrap_or_else(|e| panic!("{origin:?} refused: {e:?}"));
        ws.send(Message::text(r#"{"eater_name": "e"}"#))
            .await
            .unwrap();
        assert!(
            next_data(&mut ws, T).await.is_some(),
            "{origin:?}: no status"
        );
    }
    // The eater port's page may not send dumplings to the kitchen port.
    assert_eq!(
        upgrade_from_origin(hub.kitchens, Some(&own))
            .await
            .err()
            .map(|e| e.0),
        Some(403)
    );
    assert!(upgrade_from_origin(hub.kitchens, None).await.is_ok());
    let (_, log) = hub.stop();
    let logged = log
        .lines()
        .filter(|l| l.contains("refused a WebSocket from a web page of another origin"))
        .count();
    assert_eq!(logged, 1, "{log}");
}

/// An upgrade to `addr` as a browser page at `http://HOST` sends it (`Host: host`,
/// `Origin: http://host`, or no Origin): the HTTP status and body of a refusal, or the
/// socket when accepted.
async fn upgrade_as_page(
    addr: std::net::SocketAddr,
    host: &str,
    origin: bool,
) -> Result<Ws, (u16, String)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    if origin {
        request
            .headers_mut()
            .insert("origin", format!("http://{host}").parse().unwrap());
    }
    upgrade(request).await
}

/// DNS rebinding: a page on an attacker's name that resolves to 127.0.0.1 sends an Origin
/// matching its Host, which the origin rule lets through. A browser request on the
/// loopback hub must name a loopback host (or one `--allow-host` lists); programs without
/// Origin and the hub's own page under localhost or 127.0.0.1 are unaffected.
#[tokio::test]
async fn a_page_on_a_rebound_dns_name_is_refused_on_a_loopback_hub() {
    let hub = Hub::start(&["-f", "60", "--allow-host", "hub.internal"]);
    for addr in [hub.kitchens, hub.eaters] {
        let host = format!("evil.example:{}", addr.port());
        let (status, body) = upgrade_as_page(addr, &host, true)
            .await
            .expect_err("a rebound page was accepted");
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains(&host) && body.contains("--allow-host"),
            "{body}"
        );
    }
    let port = hub.eaters.port();
    for (host, origin) in [
        (format!("127.0.0.1:{port}"), true),
        (format!("localhost:{port}"), true),
        (format!("[::1]:{port}"), true),
        (format!("hub.internal:{port}"), true),
        (format!("evil.example:{port}"), false),
    ] {
        let mut ws = upgrade_as_page(hub.eaters, &host, origin)
            .await
            .unwrap_or_else(|e| panic!("{host} (Origin: {origin}) refused: {e:?}"));
        ws.send(Message::text(r#"{"eater_name": "e"}"#))
            .await
            .unwrap();
        assert!(next_data(&mut ws, T).await.is_some(), "{host}: no status");
    }
    // The page itself is still served, whatever name it was asked for under.
    let page = raw_http(hub.eaters, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page:.200}");
    let (_, log) = hub.stop();
    assert!(log.contains("DNS rebinding?"), "{log}");
}

/// `--allow-origin` values that are no origin are refused at start, escaped.
#[test]
fn a_bad_allow_origin_is_a_usage_error() {
    let out = e2e_tests::ChildGuard::spawn(
        "nd-hub",
        std::process::Command::new(e2e_tests::bin("nd-hub"))
            .args(["-a", "127.0.0.1", "-i", "0", "-o", "0"])
            .args(["--allow-origin", "evil.example\u{1b}[31m"]),
    )
    .wait_output(T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--allow-origin") && !err.contains('\u{1b}'),
        "{err:?}"
    );
}

/// File names and addresses typed on the command line are shown escaped in nd-hub's
/// errors: a name holding ESC, BEL or a newline could retitle the terminal, colour it, or
/// forge a log line.
#[test]
fn file_names_and_addresses_in_errors_are_escaped() {
    let dir = std::env::temp_dir().join(format!("nd-hub-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let evil = "x\u{1b}]0;T\u{7}\nFAKE-LOG-LINE\u{1b}[31m";
    let missing = dir.join(format!("{evil}.toml"));
    let bad_auth = dir.join(format!("{evil}.bad"));
    std::fs::write(&bad_auth, "not toml [[[").unwrap();
    let cert = dir.join(format!("{evil}.pem"));
    std::fs::write(&cert, "not a certificate").unwrap();
    let ports = ["-i", "0", "-o", "0"];
    let runs: Vec<Vec<String>> = vec![
        vec![
            "-a".into(),
            "127.0.0.1".into(),
            "--auth".into(),
            missing.display().to_string(),
        ],
        vec![
            "-a".into(),
            "127.0.0.1".into(),
            "--auth".into(),
            bad_auth.display().to_string(),
        ],
        vec![
            "-a".into(),
            "127.0.0.1".into(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            cert.display().to_string(),
        ],
        vec!["-a".into(), evil.into()],
    ];
    for args in runs {
        let out = e2e_tests::ChildGuard::spawn(
            "nd-hub",
            std::process::Command::new(e2e_tests::bin("nd-hub"))
                .args(&args)
                .args(ports),
        )
        .wait_output(T);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            !err.contains(['\u{1b}', '\u{7}']) && !err.contains("\nFAKE-LOG-LINE"),
            "{args:?}: {err:?}"
        );
        assert!(
            err.contains(r"x\x1b]0;T\x07\nFAKE-LOG-LINE\x1b[31m"),
            "{args:?}: {err:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP means "reload" to a daemon: a plain hub (no `--auth`, no TLS, nothing to reload)
/// died of it at once, silently, without closing its peers.
#[tokio::test]
async fn a_plain_hub_survives_sighup() {
    let mut hub = Hub::start(&["-f", "60"]);
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &hub.guard.child.id().to_string()])
        .status();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        hub.guard.child.try_wait().unwrap().is_none(),
        "the hub died of SIGHUP"
    );
    // Still serving: a kitchen can join.
    let _k = kitchen(hub.kitchens, r#"{"kitchen_name": "after-hup"}"#).await;
    let (status, log) = hub.stop();
    assert!(status.success(), "{status}: {log}");
    assert!(
        log.contains("nothing to reload"),
        "no word of the SIGHUP:\n{log}"
    );
}

/// An eater that floods pings and never reads: tungstenite queued a pong for each ping in
/// an unbounded write buffer (the hub grew by ~1 GB in 4 s). Now the buffer is bounded
/// (a pong that does not fit replaces the one waiting): the hub's memory stays flat and
/// it keeps serving other eaters meanwhile.
#[tokio::test]
async fn an_eater_flooding_pings_without_reading_leaves_the_hub_small_and_serving() {
    let hub = Hub::start(&["-f", "60"]);
    let addr = hub.eaters;
    let before = hub.rss_kib();
    let flood = std::thread::spawn(move || -> (u64, bool) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
            if s.read(&mut b).unwrap_or(0) == 0 {
                break;
            }
            head.push(b[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "no upgrade");
        // Masked frames (zero mask): the hello, then pings of 125 bytes, 100 per write.
        let frame = |opcode: u8, payload: &[u8]| {
            let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
            f.extend_from_slice(payload);
            f
        };
        s.write_all(&frame(1, br#"{"eater_name": "pinger"}"#))
            .unwrap();
        let pings: Vec<u8> = (0..100).flat_map(|_| frame(9, &[b'p'; 125])).collect();
        s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        let mut sent = 0u64;
        while Instant::now() < until {
            match s.write_all(&pings) {
                Ok(()) => sent += 100,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return (sent, true),
            }
        }
        (sent, false)
    });
    let mut peak = before;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Meanwhile a kitchen's dumpling reaches a real eater.
    let (mut e, _) = eater(hub.eaters, "e").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "k"}"#).await;
    k.send(Message::text(dumpling_text("k", 1, 100)))
        .await
        .unwrap();
    let got = next_dumpling(&mut e, T).await;
    assert!(
        got.is_some_and(|m| is_chef(&m, "BenchChef")),
        "no dumpling reached an eater during the flood"
    );
    while !flood.is_finished() {
        peak = peak.max(hub.rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (sent, _) = flood.join().unwrap();
    assert!(sent > 10_000, "the flood never got going ({sent} pings)");
    assert!(
        peak < before + 100 * 1024,
        "hub grew from {before} KiB to {peak} KiB under a ping flood of {sent} pings"
    );
}

/// A peer connecting and leaving in a loop made the hub log two INFO lines per connection
/// without bound (the original's access-log lines, which peers control the rate of): at
/// most 200 such lines per side per 10 s are logged now, the rest counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_churn_cannot_flood_the_hub_log() {
    let hub = Hub::start(&[]);
    for i in 0..150 {
        let (mut ws, _) = eater(hub.eaters, &format!("churn{i}")).await;
        let _ = ws.close(None).await;
    }
    // The last ones were closed and logged (or counted) by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, log) = hub.stop();
    let lines = log
        .lines()
        .filter(|l| l.contains("eater connection from churn") || l.contains("connection closed"))
        .count();
    assert!(
        (150..=200).contains(&lines),
        "150 connections made 300 lines; {lines} logged:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
}
