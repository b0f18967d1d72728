//! Fuzz the hub's per-message handling: hello parsing for both sides, the kitchen message
//! classifier (text and binary frames; with the repeat memo too), the dumpling check, and the status/notice builders'
//! inputs. Invariants: nothing panics; a forwarded dumpling is valid JSON with a string
//! `metadata.chef`, a `packet`/`interval` driver and a numeric `creation_time`; a valid
//! hello keeps its object verbatim and is valid JSON.
#![no_main]

use hub::hello::parse_hello;
use hub::kitchen::{classify, classify_repeating, Action};
use dumpling::RepeatMemo;
use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::Message;

fuzz_target!(|data: &[u8]| {
    for key in ["kitchen_name", "eater_name"] {
        if let Ok(hello) = parse_hello(data, key) {
            let v: serde_json::Value =
                serde_json::from_str(hello.raw.get()).expect("kept hello is JSON");
            assert!(v.get(key).is_some_and(|n| !n.is_null()));
        }
    }
    let messages = [
        Message::binary(data.to_vec()),
        match std::str::from_utf8(data) {
            Ok(text) => Message::text(text),
            Err(_) => Message::binary(Vec::new()),
        },
    ];
    // The per-connection memo answers exactly as the plain classifier, first time and on
    // a repeat.
    let mut repeats = RepeatMemo::new();
    for message in messages.iter().chain(&messages) {
        assert_eq!(classify_repeating(message, &mut repeats), classify(message));
    }
    for message in &messages {
        if let Action::Forward { chef, .. } = classify(message) {
            let bytes: &[u8] = match message {
                Message::Text(t) => t.as_bytes(),
                Message::Binary(b) => b,
                _ => unreachable!(),
            };
            let v: serde_json::Value = serde_json::from_slice(bytes).expect("forwarded is JSON");
            let meta = &v["metadata"];
            assert_eq!(meta["chef"].as_str(), Some(chef.as_str()));
            assert!(matches!(
                meta["driver"].as_str(),
                Some("packet" | "interval")
            ));
            assert!(meta["creation_time"].is_number());
        }
    }
});
