//! The whole pipeline with real processes on 127.0.0.1: our kitchen (`nd-sniff -r`)
//! replays a capture into our hub; our `nd-print --json`, a raw WebSocket eater and the
//! Python `DumplingEater` (when its venv from `python/run-tests.sh` exists) each receive
//! exactly the dumplings the kitchen produced, count and bytes: our kitchen and `nd-print`
//! over binary frames (agreed on the upgrade), the raw and Python eaters over text frames.

#[path = "hub_support.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{bin, test_data, workspace_root, ChildGuard};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(60);

const PY_EATER: &str = r#"
import asyncio, signal, sys
from netdumplings_eater import DumplingEater
async def on_dumpling(d):
    if d.kitchen == "test_kitchen":
        sys.stdout.write(d.raw + "\n"); sys.stdout.flush()
e = DumplingEater(name="pyeater", hub=sys.argv[1], on_dumpling=on_dumpling)
async def main():
    task = asyncio.ensure_future(e._run(None))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
asyncio.run(main())
"#;

#[tokio::test]
async fn kitchen_replay_reaches_every_eater_exactly() {
    let capture = test_data("original/loopback_dns_arp_http.pcap");
    if !capture.exists() {
        eprintln!("SKIP: {} missing", capture.display());
        return;
    }
    let hub = Hub::start(&["-f", "60"]);
    let print = ChildGuard::spawn(
        "nd-print",
        Command::new(bin("nd-print")).args([
            "-h",
            &hub.eater_hub(),
            "--json",
            "-k",
            "test_kitchen",
        ]),
    );
    let venv_python = workspace_root().join("target/py-eater-venv/bin/python");
    let py = if venv_python.exists() {
        Some(ChildGuard::spawn(
            "python eater",
            Command::new(&venv_python).args(["-c", PY_EATER, &hub.eater_hub()]),
        ))
    } else {
        eprintln!("SKIP (python part): run python/run-tests.sh first to build the venv");
        None
    };
    let want = if py.is_some() { 3 } else { 2 };
    let (mut raw, _) = eater(hub.eaters, "rawtap").await;
    let s = status_until(hub.eaters, Duration::from_secs(20), |s| {
        s["dumpling_eater_count"] == want + 1
    })
    .await;
    assert_eq!(
        s["dumpling_eater_count"],
        want + 1,
        "all eaters connected: {s}"
    );

    let kitchen = ChildGuard::spawn(
        "nd-sniff",
        Command::new(bin("nd-sniff")).arg("-r").arg(&capture).args([
            "-h",
            &hub.kitchens.to_string(),
            "--stdout",
            "-p",
            "3600",
            "-n",
            "test_kitchen",
        ]),
    )
    .wait_output(T);
    assert!(
        kitchen.status.success(),
        "nd-sniff: {}",
        String::from_utf8_lossy(&kitchen.stderr)
    );
    let produced: Vec<String> = String::from_utf8(kitchen.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert!(!produced.is_empty(), "the kitchen made dumplings");

    // The raw eater: exactly the produced dumplings, byte for byte, in order.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < produced.len() && Instant::now() < deadline {
        match next_dumpling(&mut raw, Duration::from_secs(5)).await {
            Some(Message::Text(t)) => got.push(t.to_string()),
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(got, produced, "raw eater: count and bytes");

    // Give the other eaters a moment, then stop them.
    tokio::time::sleep(Duration::from_millis(700)).await;
    print.interrupt();
    let out = print.wait_output(Duration::from_secs(10));
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines, produced, "nd-print --json: count and bytes");
    if let Some(py) = py {
        py.terminate();
        let out = py.wait_output(Duration::from_secs(10));
        let lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            lines,
            produced,
            "python eater: count and bytes; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = status(hub.eaters).await;
    assert_eq!(s["total_dumplings_in"], produced.len() as u64);
    // Our kitchen and nd-print asked for binary frames and got them; the raw eater (and
    // the Python one) did not ask, and got the same bytes as text above.
    let (_, log) = hub.stop();
    let agreed = |what: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains("binary_frames=true"))
            .count()
    };
    assert_eq!(agreed("kitchen connection from test_kitchen"), 1, "{log}");
    assert_eq!(agreed("eater connection from printereater"), 1, "{log}");
    assert_eq!(agreed("eater connection from rawtap"), 0, "{log}");
}
