//! The eater CLIs (`nd-print`, `nd-hubdetails`, `nd-hubstatus`) as real processes against
//! a real `nd-hub`: output formats, `--json` byte-exactness, `--count` (close 4102),
//! Ctrl-C (close 4101, exit 0), reconnect, and exit 1 on errors retrying cannot fix.

#[path = "hub_support.rs"]
mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{bin, test_data, workspace_root, ChildGuard};
use futures_util::SinkExt;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

/// Wait until the hub lists an eater named `name`.
async fn wait_for_eater(hub: &Hub, name: &str) {
    let s = status_until(hub.eaters, T, |s| {
        s["dumpling_eaters"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["info_from_eater"]["eater_name"] == name))
    })
    .await;
    assert!(
        s["dumpling_eaters"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["info_from_eater"]["eater_name"] == name)),
        "{name} never connected: {s}"
    );
}

#[tokio::test]
async fn nd_print_json_prints_exactly_the_dumplings_sent_and_stops_at_count() {
    let hub = Hub::start(&["-f", "60"]);
    let n = 200;
    let print = ChildGuard::spawn(
        "nd-print",
        Command::new(bin("nd-print")).args([
            "-h",
            &hub.eater_hub(),
            "--json",
            "-c",
            "BenchChef",
            "--count",
            &n.to_string(),
        ]),
    );
    wait_for_eater(&hub, "printereater").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "k1"}"#).await;
    let sent: Vec<String> = (0..n).map(|i| dumpling_text("k1", i, 300)).collect();
    for d in &sent {
        k.send(Message::text(d.as_str())).await.unwrap();
    }
    let out = print.wait_output(T);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines, sent, "count and bytes");
    let (_, log) = hub.stop();
    assert!(
        log.contains("printereater connection closed: received 4102 dumpling eater is full"),
        "{log}"
    );
}

#[tokio::test]
async fn nd_print_default_format_filters_and_ctrl_c() {
    let hub = Hub::start(&["-f", "60"]);
    let print = ChildGuard::spawn(
        "nd-print",
        Command::new(bin("nd-print")).args([
            "-h",
            &hub.eater_hub(),
            "--no-color",
            "--no-interval-dumplings",
            "-k",
            "kitchen_a",
            "-n",
            "fmt",
        ]),
    );
    wait_for_eater(&hub, "fmt").await;
    let mut a = kitchen(hub.kitchens, r#"{"kitchen_name": "kitchen_a"}"#).await;
    let mut b = kitchen(hub.kitchens, r#"{"kitchen_name": "kitchen_b"}"#).await;
    let packet = r#"{"metadata": {"chef": "DNSLookupChef", "kitchen": "kitchen_a", "creation_time": 1.5, "driver": "packet"}, "payload": {"lookup": {"hostname": "example.test", "when": 2.25}}}"#;
    let interval = r#"{"metadata": {"chef": "DNSLookupChef", "kitchen": "kitchen_a", "creation_time": 1.5, "driver": "interval"}, "payload": {"lookups_seen": {}}}"#;
    let other = r#"{"metadata": {"chef": "ARPChef", "kitchen": "kitchen_b", "creation_time": 1.5, "driver": "packet"}, "payload": {}}"#;
    b.send(Message::text(other)).await.unwrap();
    a.send(Message::text(interval)).await.unwrap();
    a.send(Message::text(packet)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    print.interrupt();
    let out = print.wait_output(T);
    assert!(out.status.success(), "Ctrl-C exits 0");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let uri = format!("ws://{}", hub.eater_hub());
    // The status dumpling (kitchen null) is hidden by -k, the interval one by
    // --no-interval-dumplings, kitchen_b's by -k.
    let expected_tail = "[packet  ] DNSLookupChef from kitchen_a\n\n{\n    \"lookup\": {\n        \"hostname\": \"example.test\",\n        \"when\": 2.25\n    }\n}\n\n";
    assert!(
        stdout.starts_with(&format!(
            "Connected to nd-hub at {uri}\nWaiting for dumplings...\n\n"
        )),
        "{stdout}"
    );
    assert!(stdout.ends_with(expected_tail), "{stdout:?}");
    assert_eq!(stdout.matches(" from ").count(), 1, "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fmt: Connection to dumpling hub cancelled; closing..."));
    assert!(stderr.contains("fmt: Done eating dumplings."));
    let (_, log) = hub.stop();
    assert!(
        log.contains("fmt connection closed: received 4101 connection cancelled"),
        "{log}"
    );
}

#[tokio::test]
async fn nd_hubdetails_answers_at_once() {
    let hub = Hub::start(&["-f", "60"]);
    let _k = kitchen(
        hub.kitchens,
        r#"{"kitchen_name": "default_kitchen", "interface": "lo"}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let out = ChildGuard::spawn(
        "nd-hubdetails",
        Command::new(bin("nd-hubdetails")).args(["-h", &hub.eater_hub(), "--no-color"]),
    )
    .wait_output(T);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no wait for the status tick"
    );
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let header = format!(
        "Connected to nd-hub at ws://{}\nWaiting for a SystemStatus dumpling...\n\n",
        hub.eater_hub()
    );
    assert!(stdout.starts_with(&header), "{stdout}");
    let payload: serde_json::Value = serde_json::from_str(&stdout[header.len()..]).unwrap();
    assert_eq!(payload["dumpling_kitchen_count"], 1);
    assert_eq!(
        payload["dumpling_kitchens"][0]["info_from_kitchen"]["kitchen_name"],
        "default_kitchen"
    );
    assert_eq!(
        payload["dumpling_eaters"][0]["info_from_eater"]["eater_name"],
        "detailseater"
    );
    assert!(
        stdout.contains("\n    \"dumpling_eater_count\": 1,\n"),
        "sorted keys, indent 4"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("detailseater: Done eating dumplings."));
}

#[tokio::test]
async fn nd_hubstatus_draws_one_line_per_status() {
    let hub = Hub::start(&["-f", "0.3"]);
    let status = ChildGuard::spawn(
        "nd-hubstatus",
        Command::new(bin("nd-hubstatus")).args(["-h", &hub.eater_hub(), "--no-color"]),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    status.terminate();
    let out = status.wait_output(T);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with(&format!(
        "nd-hub status from ws://{}\nWaiting for data... \r",
        hub.eater_hub()
    )));
    let redraws: Vec<&str> = stdout.split('\r').skip(1).collect();
    assert!(redraws.len() >= 3, "{stdout:?}");
    for line in redraws {
        assert!(line.contains("  uptime: 00:00:0"), "{line:?}");
        assert!(line.contains("  kitchens: 0  eaters: 1 "), "{line:?}");
        assert!(!line.contains('\n'));
    }
}

#[tokio::test]
async fn eaters_reconnect_when_the_hub_comes_back() {
    let hub = Hub::start(&["-f", "60"]);
    let (i, o) = (hub.kitchens.port(), hub.eaters.port());
    let print = ChildGuard::spawn(
        "nd-print",
        Command::new(bin("nd-print")).args([
            "-h",
            &hub.eater_hub(),
            "--json",
            "-c",
            "BenchChef",
            "--count",
            "2",
        ]),
    );
    wait_for_eater(&hub, "printereater").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "k"}"#).await;
    k.send(Message::text(dumpling_text("k", 1, 200)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (stopped, _) = hub.stop();
    assert!(stopped.success());
    // Same ports again.
    let mut cmd = Command::new(bin("nd-hub"));
    cmd.args([
        "-a",
        "127.0.0.1",
        "-i",
        &i.to_string(),
        "-o",
        &o.to_string(),
        "-f",
        "60",
    ]);
    let _hub2 = ChildGuard::spawn("nd-hub", &mut cmd);
    assert!(e2e_tests::wait_for_port(([127, 0, 0, 1], i).into(), T));
    let deadline = Instant::now() + T;
    let mut connected = false;
    while Instant::now() < deadline && !connected {
        let s = status(([127, 0, 0, 1], o).into()).await;
        connected = s["dumpling_eater_count"] == 2;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(connected, "nd-print reconnected");
    let mut k = kitchen(([127, 0, 0, 1], i).into(), r#"{"kitchen_name": "k"}"#).await;
    k.send(Message::text(dumpling_text("k", 2, 200)))
        .await
        .unwrap();
    let out = print.wait_output(T);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("printereater: Lost connection to dumpling hub"),
        "{stderr}"
    );
    assert!(
        stderr.contains("printereater: Reconnected to dumpling hub"),
        "{stderr}"
    );
    // Attempts while the hub was down came after a connection: no "is nd-hub running".
    assert!(!stderr.contains("Could not connect"), "{stderr}");
    assert!(!stderr.contains("Is nd-hub running"), "{stderr}");
}

#[test]
fn errors_retrying_cannot_fix_exit_1() {
    // Something that answers HTTP but is not a WebSocket server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let out = ChildGuard::spawn(
        "nd-print",
        Command::new(bin("nd-print")).args(["-h", &addr.to_string()]),
    )
    .wait_output(T);
    let _ = server.join();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a dumpling hub"));
    // A bad address is a usage error, said before any attempt.
    let out = ChildGuard::spawn(
        "nd-hubdetails",
        Command::new(bin("nd-hubdetails")).args(["-h", "bad host:1"]),
    )
    .wait_output(T);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST:PORT"));
    // Nothing listening: nd-hubdetails gives up after its retries.
    let out = ChildGuard::spawn(
        "nd-hubdetails",
        Command::new(bin("nd-hubdetails")).args([
            "-h",
            &format!("127.0.0.1:{}", e2e_tests::free_port()),
            "--retries",
            "1",
        ]),
    )
    .wait_output(T);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2_and_dash_h_means_hub() {
    let out = ChildGuard::spawn("nd-print", Command::new(bin("nd-print")).arg("-h")).wait_output(T);
    assert_eq!(
        out.status.code(),
        Some(2),
        "-h needs a value, as the original"
    );
    let out =
        ChildGuard::spawn("nd-print", Command::new(bin("nd-print")).arg("--help")).wait_output(T);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--hub",
        "--chef",
        "--kitchen",
        "--eater-name",
        "--no-interval-dumplings",
        "--no-packet-dumplings",
        "--no-payload",
        "--no-color",
        "--json",
        "--count",
    ] {
        assert!(help.contains(flag), "{flag} in --help");
    }
}

/// A hub's notice reaches the terminal escaped once: `A<ESC>B<LF>C` prints as
/// `A\x1bB\nC` (it was escaped twice, `A\\x1bB\\nC`). The hub here is a fake one that
/// sends the notice, then one dumpling (`--count 1` ends the run).
#[tokio::test]
async fn nd_print_shows_a_hub_notice_escaped_once() {
    use futures_util::StreamExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let print = ChildGuard::spawn(
        "nd-print",
        Command::new(bin("nd-print")).args(["-h", &addr.to_string(), "--count", "1"]),
    );
    let (tcp, _) = tokio::time::timeout(T, listener.accept())
        .await
        .expect("nd-print connects")
        .unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let _hello = ws.next().await;
    let notice = r#"{"metadata":{"chef":"HubNoticeChef","kitchen":null,"creation_time":1.0,"driver":"interval"},"payload":{"notice":"A\u001bB\nC"}}"#;
    ws.send(Message::text(notice)).await.unwrap();
    ws.send(Message::text(dumpling_text("k1", 1, 100)))
        .await
        .unwrap();
    let out = print.wait_output(T);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r"hub notice: A\x1bB\nC"), "{err}");
    assert!(!err.contains('\x1b'), "no raw escape: {err}");
}

/// Run an eater CLI whose stderr reader is gone from the start (as in `nd-print 2>&1 |
/// head -1` once `head` exits), optionally stopping it with SIGTERM after `stop_after`;
/// returns its exit status and stdout.
fn run_with_stderr_gone(
    cmd: &mut Command,
    stop_after: Option<Duration>,
) -> (std::process::ExitStatus, String) {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Close the read end of stderr's pipe: every write to it now fails with EPIPE.
    drop(child.stderr.take());
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    if let Some(after) = stop_after {
        std::thread::sleep(after);
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    }
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {T:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, reader.join().unwrap_or_default())
}

/// A stderr nobody reads any more (`nd-print ... 2>&1 | head -1`) no longer ends the eater
/// CLIs with a panic (exit 101): what they would say there is dropped, they finish their
/// work and exit as usual.
#[tokio::test]
async fn eater_clis_exit_quietly_when_stderr_is_gone() {
    let hub = Hub::start(&["-f", "0.2"]);
    let _k = kitchen(hub.kitchens, r#"{"kitchen_name": "k1"}"#).await;
    let eaters = hub.eater_hub();
    let (status, stdout) = run_with_stderr_gone(
        Command::new(bin("nd-hubdetails")).args(["-h", &eaters, "--no-color"]),
        None,
    );
    assert_eq!(status.code(), Some(0), "nd-hubdetails: {status}");
    assert!(stdout.contains("dumpling_kitchen_count"), "{stdout}");
    let (status, _) = run_with_stderr_gone(
        Command::new(bin("nd-hubstatus")).args(["-h", &eaters, "--no-color"]),
        Some(Duration::from_millis(800)),
    );
    assert_eq!(status.code(), Some(0), "nd-hubstatus: {status}");
    // nd-print: one dumpling, then "Done eating dumplings." goes nowhere.
    let hub_addr = hub.kitchens;
    let sender = tokio::spawn(async move {
        let mut k = kitchen(hub_addr, r#"{"kitchen_name": "k2"}"#).await;
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if k.send(Message::text(dumpling_text("k2", i, 50)))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let (status, stdout) = tokio::task::spawn_blocking(move || {
        run_with_stderr_gone(
            Command::new(bin("nd-print")).args(["-h", &eaters, "--json", "--count", "1"]),
            None,
        )
    })
    .await
    .unwrap();
    sender.abort();
    assert_eq!(status.code(), Some(0), "nd-print: {status}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

/// `nd-print | head -1`: once the reader of stdout is gone, nd-print stops (it ate dumplings
/// into the closed pipe until killed), and says nothing about it (exit 0, as `cat` would
/// not complain either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nd_print_stops_when_its_stdout_reader_is_gone() {
    use std::process::Stdio;
    let hub = Hub::start(&["-f", "60"]);
    let eaters = hub.eater_hub();
    let hub_addr = hub.kitchens;
    let sender = tokio::spawn(async move {
        let mut k = kitchen(hub_addr, r#"{"kitchen_name": "k3"}"#).await;
        for i in 0..400 {
            tokio::time::sleep(Duration::from_millis(25)).await;
            if k.send(Message::text(dumpling_text("k3", i, 400)))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    for json in [true, false] {
        let mut cmd = Command::new(bin("nd-print"));
        cmd.args(["-h", &eaters]);
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nd-print");
        // Read until the first dumpling line, then close the pipe (as `head -1` does).
        let mut stdout = child.stdout.take().expect("stdout");
        let first = tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            // Until a line naming the kitchen is complete.
            while stdout.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
                seen.push(byte[0]);
                if byte[0] == b'\n' && String::from_utf8_lossy(&seen).contains("k3") {
                    break;
                }
            }
            String::from_utf8_lossy(&seen).into_owned()
        })
        .await
        .unwrap();
        assert!(first.contains("k3"), "json={json}: {first}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("json={json}: nd-print went on after its stdout reader left");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(0), "json={json}: {status}");
    }
    sender.abort();
}

#[test]
fn eaters_refuse_a_hub_address_without_a_port_before_connecting() {
    // `-h localhost` went to port 80, `-h 48012` to a host named 48012.
    for tool in ["nd-print", "nd-hubstatus", "nd-hubdetails"] {
        for hub in ["localhost", "48012", "127.0.0.1:0", ",,", " "] {
            let out = Command::new(bin(tool))
                .args(["-h", hub])
                .output()
                .expect("run eater");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{tool} -h {hub}: {stderr}");
            assert!(stderr.contains("HOST:PORT"), "{tool} -h {hub}: {stderr}");
        }
    }
}

/// A token or CA file that cannot be used fails with 1 in every tool, naming the file (the
/// kitchen said 2, the eaters 1); a bad address stays a usage error (2) in all of them.
#[test]
fn an_unusable_token_or_ca_file_fails_alike_in_the_kitchen_and_the_eaters() {
    let missing = workspace_root().join("target/eater-e2e/no-such-file");
    let missing = missing.to_str().expect("UTF-8 path");
    let hub = "127.0.0.1:1";
    let capture = test_data("original/loopback_dns_arp_http.pcap");
    let kitchen_at = |hub: &str, extra: &[&str]| {
        let mut cmd = Command::new(bin("nd-sniff"));
        cmd.arg("-r").arg(&capture).args(["-h", hub]).args(extra);
        cmd
    };
    let kitchen = |extra: &[&str]| kitchen_at(hub, extra);
    let eater = |tool: &str, extra: &[&str]| {
        let mut cmd = Command::new(bin(tool));
        cmd.args(["-h", hub]).args(extra);
        cmd
    };
    for flag in ["--token-file", "--tls-ca"] {
        let mut runs = vec![("nd-sniff".to_owned(), kitchen(&[flag, missing]))];
        for tool in ["nd-print", "nd-hubstatus", "nd-hubdetails"] {
            runs.push((tool.to_owned(), eater(tool, &[flag, missing])));
        }
        for (tool, mut cmd) in runs {
            let out = cmd
                .env_remove("ND_HUB_TOKEN")
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{tool} {flag}: {stderr}");
            assert!(stderr.contains("no-such-file"), "{tool} {flag}: {stderr}");
        }
    }
    let out = kitchen_at("localhost", &[])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An empty or blank eater name is a usage error (`-n ""` was sent to the hub, and every
/// line the eater logged began with `: `).
#[test]
fn eaters_refuse_an_empty_name() {
    for tool in ["nd-print", "nd-hubstatus", "nd-hubdetails"] {
        for name in ["", "  "] {
            let out = Command::new(bin(tool))
                .args(["-n", name, "-h", "127.0.0.1:1"])
                .output()
                .expect("run eater");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{tool} -n {name:?}: {stderr}");
            assert!(
                stderr.contains("must not be empty"),
                "{tool} -n {name:?}: {stderr}"
            );
        }
    }
}

/// With no hub running, each eater says it could not connect to the address given, with the
/// OS's reason and what to do (once), and never that a connection was lost: none was made.
#[test]
fn eaters_without_a_hub_say_they_cannot_connect() {
    let hub = format!("127.0.0.1:{}", e2e_tests::free_port());
    for tool in ["nd-print", "nd-hubstatus", "nd-hubdetails"] {
        let eater = ChildGuard::spawn(tool, Command::new(bin(tool)).args(["-h", &hub]));
        // Two attempts at least (0.5 s apart), then Ctrl-C's twin; nd-hubdetails may have
        // given up by then on its own.
        std::thread::sleep(Duration::from_millis(1200));
        eater.terminate();
        let out = eater.wait_output(T);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failed = format!("Could not connect to dumpling hub at {hub}: Connection refused");
        assert!(stderr.contains(&failed), "{tool}: {stderr}");
        assert!(stderr.matches(&failed).count() >= 2, "{tool}: {stderr}");
        assert_eq!(
            stderr.matches("Is nd-hub running there?").count(),
            1,
            "{tool}: the hint once: {stderr}"
        );
        assert!(stderr.contains("-h HOST:PORT"), "{tool}: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("lost connection"),
            "{tool}: no connection was ever made: {stderr}"
        );
    }
    // Giving up (nd-hubdetails --retries 0) says the same, hint included, and exits 1.
    let out = ChildGuard::spawn(
        "nd-hubdetails",
        Command::new(bin("nd-hubdetails")).args(["-h", &hub, "--retries", "0"]),
    )
    .wait_output(T);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "detailseater: could not connect to the dumpling hub at {hub}: Connection refused"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Is nd-hub running there?"), "{stderr}");
    assert!(
        !stderr.to_lowercase().contains("lost connection"),
        "{stderr}"
    );
}

/// `nd-hubstatus` keeps stdout for the status: connection trouble and retries are said on
/// stderr only (they were printed on both), with no hub at all or after one went away.
#[tokio::test]
async fn nd_hubstatus_says_retries_on_stderr_only() {
    let nobody = format!("127.0.0.1:{}", e2e_tests::free_port());
    let status = ChildGuard::spawn(
        "nd-hubstatus",
        Command::new(bin("nd-hubstatus")).args(["-h", &nobody, "--no-color"]),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    status.terminate();
    let out = status.wait_output(T);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "no data, nothing on stdout"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Could not connect"));

    let hub = Hub::start(&["-f", "0.3"]);
    let status = ChildGuard::spawn(
        "nd-hubstatus",
        Command::new(bin("nd-hubstatus")).args(["-h", &hub.eater_hub(), "--no-color"]),
    );
    wait_for_eater(&hub, "statuseater").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (stopped, _) = hub.stop();
    assert!(stopped.success());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    status.terminate();
    let out = status.wait_output(T);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("  uptime: "), "{stdout:?}");
    for word in ["Lost", "lost", "retrying", "connect to"] {
        assert!(!stdout.contains(word), "{word:?} on stdout: {stdout:?}");
    }
    // The status line is ended, so stderr's message starts a line of its own.
    assert!(stdout.ends_with(" \n"), "{stdout:?}");
    assert!(
        stderr.contains("statuseater: Lost connection to dumpling hub"),
        "{stderr}"
    );
    assert!(
        stderr.contains("statuseater: Could not reconnect to dumpling hub"),
        "{stderr}"
    );
}

/// `nd-print | less` left unscrolled: stdout blocks, and the eater, printing from its only
/// runtime thread, never saw Ctrl-C or SIGTERM (only SIGKILL ended it). It now ends within
/// a few seconds of the signal, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eater_whose_output_nobody_reads_still_ends_on_sigterm() {
    let hub = Hub::start(&["-f", "60"]);
    // stdout is a pipe nobody reads (64 KiB, then every write blocks).
    let mut child = Command::new(bin("nd-print"))
        .args(["-h", &hub.eater_hub(), "--json", "-n", "blocked"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nd-print");
    let _unread = child.stdout.take();
    let pid = child.id();
    wait_for_eater(&hub, "blocked").await;
    let mut k = kitchen(hub.kitchens, r#"{"kitchen_name": "k1"}"#).await;
    for i in 0..400 {
        k.send(Message::text(dumpling_text("k1", i, 1000)))
            .await
            .unwrap();
    }
    // Let it fill the pipe and block in a write.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut err);
    }
    let status = status.unwrap_or_else(|| panic!("still running 10 s after SIGTERM:\n{err}"));
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("its output is not being read"), "{err}");
}
