//! `nd-hub --metrics-address`: a real hub with a real kitchen and eater connection serves
//! `/metrics` whose values match what went through it, and which `promtool check metrics`
//! (Debian `prometheus`) accepts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e_tests::{free_port, http_get, metric_sample, promtool_check, spawn_hub, wait_for_port};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_metrics_count_what_passed_and_pass_promtool() {
    let (in_port, out_port, metrics_port) = (free_port(), free_port(), free_port());
    let metrics_text = metrics_port.to_string();
    let _hub = spawn_hub(in_port, out_port, &["--metrics-address", &metrics_text]);
    let metrics: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
    assert!(
        wait_for_port(metrics, Duration::from_secs(10)),
        "no metrics listener"
    );

    let (mut eater, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{out_port}"))
        .await
        .expect("eater");
    eater
        .send(Message::text(r#"{"eater_name":"metrics-eater"}"#))
        .await
        .expect("eater hello");
    let (mut kitchen, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{in_port}"))
        .await
        .expect("kitchen");
    kitchen
        .send(Message::text(
            r#"{"kitchen_name":"metrics \"quoted\" kitchen"}"#,
        ))
        .await
        .expect("kitchen hello");
    for n in 0..3 {
        let d = format!(
            r#"{{"metadata":{{"chef":"C","kitchen":"k","creation_time":{n},"driver":"packet"}},"payload":{{}}}}"#
        );
        kitchen.send(Message::text(d)).await.expect("dumpling");
    }
    kitchen
        .send(Message::text("not json"))
        .await
        .expect("invalid");
    // The eater gets the welcome status and the three dumplings.
    let mut got = 0;
    while got < 4 {
        let m = tokio::time::timeout(Duration::from_secs(5), eater.next())
            .await
            .expect("eater message within 5 s");
        assert!(matches!(m, Some(Ok(_))), "eater stream ended: {m:?}");
        got += 1;
    }

    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let response = http_get(metrics, "/metrics");
        let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        if metric_sample(body, "netdumplings_hub_invalid_messages_total") == Some(1.0) {
            break body.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "metrics never counted the invalid message:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        metric_sample(&body, "netdumplings_hub_dumplings_in_total"),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        metric_sample(&body, "netdumplings_hub_connections{role=\"kitchen\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric_sample(&body, "netdumplings_hub_connections{role=\"eater\"}"),
        Some(1.0),
        "{body}"
    );
    assert!(
        body.contains(
            "netdumplings_hub_kitchen_dumplings_total{kitchen=\"metrics \\\"quoted\\\" kitchen\""
        ),
        "per-kitchen series with an escaped label:\n{body}"
    );
    assert!(
        body.contains("netdumplings_hub_eater_delivered_total{eater=\"metrics-eater\""),
        "{body}"
    );
    assert!(metric_sample(&body, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(http_get(metrics, "/other").starts_with("HTTP/1.1 404"));

    // promtool, on the real output.
    promtool_check(&body);
}
