//! `nd-sniff` as a process: exit codes, `--chef-list`, replay to `--stdout`, and delivery
//! to a hub (a minimal WebSocket server on 127.0.0.1 inside the test).

mod common;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// `nd-sniff ARGS` with the tests' chef cache, `RUST_LOG=info` and no stdin.
fn nd_sniff_command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nd-sniff"));
    cmd.args(args)
        .arg("--chef-cache-dir")
        .arg(workspace_root().join("target/kitchen-test-tmp/cli-cache"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    cmd
}

fn nd_sniff(args: &[&str]) -> Output {
    nd_sniff_command(args).output().expect("run nd-sniff")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn chef_list_shows_every_chef_and_exits_0() {
    let dir = fixtures().to_str().unwrap().to_owned();
    let out = nd_sniff(&["-l", "-d", &dir]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("PortChef"), "{stdout}");
    assert!(
        stdout.contains("interest: transport=[udp] ports=[53]"),
        "{stdout}"
    );
    assert!(stdout.contains("drivers:  packet,interval"), "{stdout}");
    // Chefs that do not load are listed with the reason.
    assert!(stdout.contains("fs_chef.wasm"), "{stdout}");
    assert!(stdout.contains("wasi:filesystem"), "{stdout}");
}

#[test]
fn no_valid_chef_exits_1_with_the_original_message() {
    let capture = sample_capture();
    let out = nd_sniff(&[
        "-r",
        capture.to_str().unwrap(),
        "--no-hub",
        "-c",
        "NoSuchChef",
        "-n",
        "k",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("k: Chef NoSuchChef not found"), "{stderr}");
    assert!(
        stderr.contains("k: No valid chefs found. Not starting sniffer."),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = nd_sniff(&["-p", "0", "--no-hub"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = nd_sniff(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn missing_capture_file_exits_1_naming_the_file() {
    let out = nd_sniff(&["-r", "/nonexistent/x.pcap", "--no-hub"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/x.pcap"));
}

#[test]
fn a_full_disk_is_an_error_even_for_a_small_output() {
    // A few dumplings fit stdout's buffer and were only written at exit, where the error
    // was dropped: exit 0 with nothing written. Each error cause is said once.
    let capture = sample_capture();
    let out = Command::new(env!("CARGO_BIN_EXE_nd-sniff"))
        .args(["-r", capture.to_str().unwrap(), "--no-hub", "--stdout"])
        .args(["-c", "PacketCountChef"])
        .arg("--chef-cache-dir")
        .arg(workspace_root().join("target/kitchen-test-tmp/cli-cache"))
        .stdin(Stdio::null())
        .stdout(
            std::fs::File::options()
                .write(true)
                .open("/dev/full")
                .expect("/dev/full"),
        )
        .stderr(Stdio::piped())
        .output()
        .expect("run nd-sniff");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn replay_to_stdout_is_json_lines_and_deterministic() {
    let capture = sample_capture();
    let dir = fixtures().to_str().unwrap().to_owned();
    let args = [
        "-r",
        capture.to_str().unwrap(),
        "--no-hub",
        "--stdout",
        "--no-builtin-chefs",
        "-d",
        &dir,
        "-c",
        "PortChef",
        "-n",
        "cli_kitchen",
    ];
    let a = nd_sniff(&args);
    let b = nd_sniff(&args);
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert_eq!(a.stdout, b.stdout);
    let lines: Vec<String> = text(&a.stdout).lines().map(str::to_owned).collect();
    assert!(lines.len() > 8);
    for l in &lines {
        let v = json(l);
        assert_eq!(v["metadata"]["chef"], "PortChef");
        assert_eq!(v["metadata"]["kitchen"], "cli_kitchen");
    }
    // The summary reaches stderr.
    assert!(text(&a.stderr).contains("summary"));
}

/// A WebSocket server that accepts one kitchen and records its text frames.
fn hub_server(listener: TcpListener) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use futures_util::StreamExt;
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = tokio::time::timeout(Duration::from_secs(30), listener.accept())
                .await
                .unwrap()
                .unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut texts = Vec::new();
            while let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_secs(30), ws.next()).await
            {
                match msg {
                    tokio_tungstenite::tungstenite::Message::Text(t) => texts.push(t.to_string()),
                    tokio_tungstenite::tungstenite::Message::Close(_) => break,
                    _ => {}
                }
            }
            texts
        })
    })
}

#[test]
fn replay_delivers_hello_and_dumplings_to_the_hub() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = hub_server(listener);
    let capture = sample_capture();
    let dir = fixtures().to_str().unwrap().to_owned();
    let out = nd_sniff(&[
        "-r",
        capture.to_str().unwrap(),
        "-h",
        &addr,
        "--no-builtin-chefs",
        "-d",
        &dir,
        "-c",
        "PortChef",
        "-n",
        "hub_kitchen",
        "-p",
        "2.5",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let texts = server.join().unwrap();
    let hello = json(&texts[0]);
    assert_eq!(hello["kitchen_name"], "hub_kitchen");
    assert_eq!(hello["poke_interval"], 2.5);
    // A replay reads every packet unless `-f` is given, and says so in the hello.
    assert_eq!(hello["filter"], "");
    assert!(hello["chefs"][0].as_str().unwrap().ends_with(".PortChef"));
    assert!(texts.len() > 8);
    for t in &texts[1..] {
        assert_eq!(json(t)["metadata"]["chef"], "PortChef");
    }
}

/// `nd-sniff -r` of the sample capture with `PortChef` alone, into a hub address nothing
/// listens on, waiting up to `flush_timeout` seconds for it at the end.
fn port_chef_into_no_hub(flush_timeout: &str) -> Command {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap().to_string();
    drop(probe);
    let capture = sample_capture();
    let dir = fixtures().to_str().unwrap().to_owned();
    nd_sniff_command(&[
        "-r",
        capture.to_str().unwrap(),
        "-h",
        &addr,
        "--no-builtin-chefs",
        "-d",
        &dir,
        "-c",
        "PortChef",
        "--flush-timeout",
        flush_timeout,
    ])
}

#[test]
fn lost_dumplings_make_the_exit_status_non_zero() {
    // Nothing listens on the hub's port: every dumpling is lost after the flush timeout.
    let out = port_chef_into_no_hub("0.5").output().expect("run nd-sniff");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("never reached the hub"), "{stderr}");
    assert!(
        stderr.contains("still queued after the 500ms flush timeout"),
        "{stderr}"
    );
}

/// SIGTERM to `child`, then its exit status within 20 s (`None`: still running then; it is
/// killed).
fn sigterm_and_wait(child: &mut std::process::Child) -> Option<std::process::ExitStatus> {
    let signalled = std::time::Instant::now();
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return Some(s);
        }
        if signalled.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A signal that ends the wait for an unreachable hub is what the loss line names (it said
/// "still queued after the 60s flush timeout" when Ctrl-C had ended the wait at once).
#[test]
fn a_signal_that_ends_the_wait_for_the_hub_is_named_in_the_loss_line() {
    use std::io::BufRead;
    use std::time::Instant;
    let mut child = port_chef_into_no_hub("60")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nd-sniff");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.contains("dumplings to the hub (up to") {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => {
                log.push_str(&l);
                log.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                panic!("no wait for the hub within 30 s:\n{log}");
            }
        }
    }
    let Some(status) = sigterm_and_wait(&mut child) else {
        panic!("nd-sniff still waiting 20 s after SIGTERM:\n{log}");
    };
    while let Ok(l) = lines.recv_timeout(Duration::from_secs(2)) {
        log.push_str(&l);
        log.push('\n');
    }
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("never reached the hub"), "{log}");
    assert!(
        log.contains("still queued when a signal ended the wait"),
        "{log}"
    );
    assert!(!log.contains("flush timeout,"), "{log}");
}

/// `nd-sniff -r FILE --stdout | less` left unscrolled: the thread writing stdout is blocked,
/// so a SIGTERM's clean stop can never finish; the kitchen says why and exits 130 a few
/// seconds after the signal (it needed a second signal).
#[test]
fn a_signal_ends_a_kitchen_whose_stdout_nobody_reads() {
    // 30 000 UDP packets over 3 000 s of capture time: a poke a second, megabytes of
    // interval dumplings, far more than a pipe holds.
    let frame = |i: u32| {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[10, 0, (i >> 8) as u8, i as u8, 10, 1, 0, 1]);
        f.extend_from_slice(&[0x9c, 0x40, 0x27, 0x0f, 0, 12, 0, 0]);
        f.extend_from_slice(&i.to_be_bytes());
        f
    };
    let packets: Vec<(u64, Vec<u8>)> = (0..30_000u32)
        .map(|i| (u64::from(i) * 100_000, frame(i)))
        .collect();
    let capture = write_pcap("cli", "stdout-unread.pcap", &packets);
    let mut child = nd_sniff_command(&[
        "-r",
        capture.to_str().unwrap(),
        "--no-hub",
        "--stdout",
        "-p",
        "1",
        "--kitchen-status",
        "on",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("run nd-sniff");
    // Held, never read: the kitchen fills the pipe and blocks.
    let _unread = child.stdout.take();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the kitchen ended before it filled the pipe"
    );
    let Some(status) = sigterm_and_wait(&mut child) else {
        panic!("nd-sniff still running 20 s after SIGTERM with its stdout unread");
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("a write to stdout has been blocked"),
        "{stderr}"
    );
}

/// A kitchen name or interface with a newline (what a user typed, or a script built) is
/// shown escaped: it forged whole log lines (`-n $'k\n... ERROR forged'`).
#[test]
fn names_typed_on_the_command_line_cannot_forge_log_lines() {
    let forged = "k\n2026-12-07T00:00:00.000000Z ERROR forged";
    let out = nd_sniff(&["--no-hub", "-n", forged, "-i", "lo\nERROR forged too"]);
    let err = text(&out.stderr);
    assert!(
        err.lines()
            .all(|l| !l.starts_with("2026-12-07T00:00:00") && !l.starts_with("ERROR forged")),
        "{err}"
    );
    assert!(err.contains(r"k\n2026-12-07"), "{err}");
}

/// `nd-sniff ... 2>&1 | head -1`: once stderr's reader is gone the logs are dropped and the
/// run ends as it would have (a log write failed, `tracing` reported it with `eprintln!`,
/// and that panicked: exit 101, mid-capture, no summary).
#[test]
fn a_log_reader_that_goes_away_does_not_end_the_kitchen() {
    use std::io::BufRead;
    let capture = workspace_root().join("captures/ndpi__anyconnect-vpn.pcap");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nd-sniff"))
        .arg("-r")
        .arg(&capture)
        .args(["--no-hub", "--chef-cache-dir"])
        .arg(workspace_root().join("target/kitchen-test-tmp/cli-cache"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nd-sniff");
    let stderr = child.stderr.take().expect("stderr");
    let mut first = String::new();
    std::io::BufReader::new(stderr)
        .read_line(&mut first)
        .expect("a first log line");
    // The reader is dropped here: every later log write fails with EPIPE.
    let status = child.wait().expect("nd-sniff ends");
    assert_eq!(status.code(), Some(0), "first line: {first}");
}

/// `host 10.0.x.y or host ...`: libpcap's optimizer is superlinear in the number of terms
/// (600 took 10 s here, 3 000 more than 9 minutes, deaf to Ctrl-C).
fn many_host_terms(n: usize) -> String {
    (0..n)
        .map(|i| format!("host 10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255))
        .collect::<Vec<_>>()
        .join(" or ")
}

#[test]
fn a_filter_too_complex_to_compile_is_refused_in_bounded_time_before_chefs_run() {
    let capture = sample_capture();
    let filter = many_host_terms(3000);
    let started = std::time::Instant::now();
    let out = nd_sniff(&[
        "-r",
        capture.to_str().unwrap(),
        "--no-hub",
        "--stdout",
        "-f",
        &filter,
        "--filter-compile-timeout-secs",
        "1",
    ]);
    let elapsed = started.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("too complex") && stderr.contains("--filter-compile-timeout-secs"),
        "the refusal names the reason and the flag:\n{stderr}"
    );
    // The 50 KB expression is cut in the message, not printed whole.
    assert!(stderr.len() < 8192, "{} bytes of stderr", stderr.len());
    // Refused before any chef ran: no dumpling was written.
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

#[test]
fn a_filter_that_compiles_in_time_still_filters_the_replay() {
    // 20 terms compile in milliseconds: the bounded check passes and the filter applies.
    let capture = sample_capture();
    let filter = format!("udp and not ({})", many_host_terms(20));
    let out = nd_sniff(&[
        "-r",
        capture.to_str().unwrap(),
        "--no-hub",
        "--stdout",
        "-c",
        "PacketCountChef",
        "-f",
        &filter,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("passed the filter"))
        .unwrap_or_else(|| panic!("no end-of-file line:\n{stderr}"));
    let read: u64 = number_before(line, " packets read");
    let passed: u64 = number_before(line, " passed the filter");
    assert!(passed > 0 && passed < read, "{line}");
}

/// The number just before `marker` in `line`.
fn number_before(line: &str, marker: &str) -> u64 {
    let end = line.find(marker).expect("marker");
    let digits: String = line[..end]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .expect("number")
}

#[test]
fn hostile_names_in_arguments_never_split_or_colour_a_log_line() {
    // A capture, a token file, a kitchen name and a cache folder as a hostile script would
    // name them: a newline starts a forged line, ESC ] sets the terminal title. Every
    // record must stay one line with no control character, in errors and in progress alike.
    let forged = "x\u{1b}]0;T\nFAKE-LOG-LINE\u{1b}[31m\r";
    let tmp = workspace_root().join("target/kitchen-test-tmp/hostile-names");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let capture = tmp.join(format!("{forged}.pcap"));
    std::fs::copy(sample_capture(), &capture).expect("copy capture");
    let missing = tmp.join(format!("{forged}.nope"));
    let token = tmp.join(format!("{forged}.token"));
    let cache = format!("/dev/null/{forged}");
    let runs: Vec<Vec<String>> = vec![
        vec![
            "-r".into(),
            capture.display().to_string(),
            "--stdout".into(),
            "--no-hub".into(),
            "-n".into(),
            format!("k{forged}"),
            "-c".into(),
            "PacketCountChef".into(),
        ],
        vec![
            "-r".into(),
            missing.display().to_string(),
            "--no-hub".into(),
        ],
        vec![
            "-r".into(),
            capture.display().to_string(),
            "-h".into(),
            "127.0.0.1:9".into(),
            "--token-file".into(),
            token.display().to_string(),
        ],
        vec![
            "-r".into(),
            capture.display().to_string(),
            "--no-hub".into(),
            "--stdout".into(),
            "-f".into(),
            format!("tcp {forged}"),
        ],
    ];
    for args in runs {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nd-sniff"));
        cmd.args(&args)
            .arg("--chef-cache-dir")
            .arg(&cache)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        let out = cmd.output().expect("run nd-sniff");
        let stderr = text(&out.stderr);
        assert!(!stderr.is_empty(), "{args:?}: nothing logged");
        for line in stderr.lines() {
            assert!(
                line.starts_with("20") || line.starts_with("nd-sniff: "),
                "{args:?}: a line that is no log record:\n{line}\n---\n{stderr}"
            );
            assert!(
                !line.chars().any(|c| c.is_control() && c != '\t'),
                "{args:?}: a control character reached the log:\n{line:?}"
            );
        }
    }
}

#[test]
fn the_reason_a_run_fails_is_said_whatever_rust_log_filters() {
    // `RUST_LOG=kitchen=debug` (the README's example once) and `off` silenced the binary's
    // own target: exit 1 with not a word.
    for filter in ["kitchen=debug", "off", ""] {
        let out = nd_sniff_command(&["-r", "/nonexistent/nd-test.pcap", "--no-hub"])
            .env("RUST_LOG", filter)
            .output()
            .expect("run nd-sniff");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "RUST_LOG={filter}: {stderr}");
        assert!(
            stderr.contains("/nonexistent/nd-test.pcap") && stderr.contains("No such file"),
            "RUST_LOG={filter}: the reason is missing:\n{stderr}"
        );
    }
}

#[test]
fn a_hub_address_without_host_or_port_is_a_usage_error() {
    // These were accepted and retried forever (live) or until the flush timeout (replay).
    for hub in [
        "localhost",
        ":11347",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:abc",
        "http://127.0.0.1:11347",
    ] {
        let out = nd_sniff(&["-r", "/nonexistent/x.pcap", "-h", hub]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "-h {hub}: {stderr}");
        assert!(stderr.contains("HOST:PORT"), "-h {hub}: {stderr}");
    }
    let out = nd_sniff(&["-r", "/nonexistent/x.pcap", "--no-hub", "-h", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn a_live_capture_that_cannot_start_makes_no_dumplings_and_no_summary() {
    // It made a final poke: a round of empty dumplings and a KitchenStatusChef as if the
    // kitchen had run (an eater saw a phantom kitchen), then the summary, then the reason.
    let out = nd_sniff(&["-i", "nd-no-such-if0", "--stdout", "--no-hub"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "dumplings: {}", text(&out.stdout));
    assert!(stderr.contains("nd-no-such-if0"), "{stderr}");
    assert!(!stderr.contains("summary:"), "{stderr}");
}

#[test]
fn an_input_that_never_opens_never_connects_to_the_hub() {
    // The hub client connected (and sent the kitchen's hello) before the input opened, so
    // the hub listed a kitchen that never ran, and a replay of a missing file printed a
    // summary of nothing.
    let hub = TcpListener::bind("127.0.0.1:0").expect("bind");
    hub.set_nonblocking(true).expect("nonblocking");
    let addr = hub.local_addr().expect("addr").to_string();
    let garbage = workspace_root().join("target/kitchen-test-tmp/cli-not-a-capture.pcap");
    std::fs::create_dir_all(garbage.parent().expect("parent")).expect("mkdir");
    std::fs::write(&garbage, b"not a capture at all").expect("write");
    let inputs: [&[&str]; 3] = [
        &["-i", "nd-no-such-if0"],
        &["-r", "/nonexistent/nd-test.pcap"],
        &["-r", garbage.to_str().expect("utf-8 path")],
    ];
    for input in inputs {
        let mut args = input.to_vec();
        args.extend(["-h", &addr]);
        let out = nd_sniff(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{input:?}: {stderr}");
        assert!(!stderr.contains("summary:"), "{input:?}: {stderr}");
        assert!(
            matches!(hub.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{input:?} connected to the hub: {stderr}"
        );
    }
}

#[test]
fn a_stdout_closed_by_its_reader_is_said_and_is_no_failure() {
    // `nd-sniff --stdout | head -1`: exit 0 as ever, but the summary is of a partial run.
    let capture = sample_capture();
    let mut child = nd_sniff_command(&["-r", capture.to_str().unwrap(), "--no-hub", "--stdout"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nd-sniff");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("stdout was closed by its reader"),
        "{stderr}"
    );
}

#[test]
fn a_chef_name_not_found_gets_the_one_meant_or_the_list() {
    let capture = sample_capture();
    let path = capture.to_str().unwrap();
    let out = nd_sniff(&[
        "-r",
        path,
        "--no-hub",
        "--stdout",
        "-c",
        "packetcountchef",
        "-c",
        "PacketCountChef",
    ]);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("did you mean PacketCountChef?"), "{stderr}");
    let out = nd_sniff(&[
        "-r",
        path,
        "--no-hub",
        "--stdout",
        "-c",
        "NoSuchChef",
        "-c",
        "PacketCountChef",
    ]);
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("NoSuchChef not found"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains("chefs found:") && line.contains("DNSLookupChef"),
        "{line}"
    );
}

/// `-c A,B` is a list, as `-h A,B` is (it was taken as one chef named "A,B", not found):
/// the same chefs run as with `-c A -c B`.
#[test]
fn dash_c_takes_a_comma_separated_list() {
    let capture = sample_capture();
    let path = capture.to_str().unwrap();
    let chefs_run = |chef_args: &[&str]| {
        let mut args = vec!["-r", path, "--no-hub", "--stdout"];
        args.extend_from_slice(chef_args);
        let out = nd_sniff(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut chefs: Vec<String> = text(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|d| d["metadata"]["chef"].as_str().map(str::to_owned))
            .collect();
        chefs.sort();
        chefs.dedup();
        (chefs, text(&out.stderr))
    };
    let (listed, stderr) = chefs_run(&["-c", "PacketCountChef,DNSLookupChef"]);
    assert_eq!(listed, ["DNSLookupChef", "PacketCountChef"], "{stderr}");
    assert!(!stderr.contains("not found"), "{stderr}");
    let (repeated, _) = chefs_run(&["-c", "PacketCountChef", "-c", "DNSLookupChef"]);
    assert_eq!(listed, repeated);
    // A name no chef can have is a usage error, before any chef is loaded.
    let out = nd_sniff(&["-r", path, "--no-hub", "-c", "PacketCountChef,"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("invalid chef name"));
}

/// Every warning about the compiled-chef cache names the flag that sets its folder and the
/// one that turns it off: a folder that cannot be made (not used), a damaged entry, a cache
/// too small to hold a chef (nothing written; it was a debug line), and no folder at all.
#[test]
fn cache_warnings_name_the_flags() {
    let root = workspace_root().join(format!(
        "target/kitchen-test-tmp/cache-warnings-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let list = |cache: &[&str], env_clear: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nd-sniff"));
        cmd.args(["-l", "-d", fixtures().to_str().unwrap()])
            .args(cache)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if env_clear {
            cmd.env_remove("HOME").env_remove("XDG_CACHE_HOME");
        }
        let out = cmd.output().expect("run nd-sniff");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let warnings = |stderr: &str, what: &str| -> Vec<String> {
        let lines: Vec<String> = stderr
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("cache"))
            .map(str::to_owned)
            .collect();
        assert!(
            lines.iter().any(|l| l.contains(what)),
            "no {what:?} warning: {stderr}"
        );
        for line in &lines {
            assert!(
                line.contains("--chef-cache-dir DIR sets the cache folder")
                    && line.contains("--no-chef-cache turns the cache off"),
                "{line}"
            );
        }
        lines
    };
    // A folder that cannot be one (a file is there): not used.
    let file = root.join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let stderr = list(&["--chef-cache-dir", file.to_str().unwrap()], false);
    warnings(&stderr, "compiled-chef cache disabled");
    // A damaged entry: compiled again.
    let private = root.join("private");
    let dir = private.to_str().unwrap();
    list(&["--chef-cache-dir", dir], false);
    for entry in std::fs::read_dir(&private).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        }
    }
    let stderr = list(&["--chef-cache-dir", dir], false);
    warnings(&stderr, "damaged compiled-chef cache entry");
    // A cache too small for any chef: said once, with the size flag too.
    let small = root.join("small");
    let stderr = list(
        &[
            "--chef-cache-dir",
            small.to_str().unwrap(),
            "--chef-cache-mib",
            "0",
        ],
        false,
    );
    let lines = warnings(&stderr, "cannot write the compiled-chef cache");
    assert_eq!(lines.len(), 1, "once: {stderr}");
    assert!(lines[0].contains("--chef-cache-mib"), "{}", lines[0]);
    // No folder to put it in (no $HOME, no $XDG_CACHE_HOME): said, not silent.
    let stderr = list(&[], true);
    warnings(&stderr, "no folder for it");
    let _ = std::fs::remove_dir_all(&root);
}

/// The exit summary gives each chef one line, each fact once (it gave two, which repeated
/// the packets seen, the calls and the state).
#[test]
fn the_exit_summary_gives_each_chef_one_line() {
    let capture = sample_capture();
    let out = nd_sniff(&["-r", capture.to_str().unwrap(), "--no-hub", "--stdout"]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(" status: state "), "{stderr}");
    for chef in [
        "ARPChef",
        "DNSLookupChef",
        "PacketCountChef",
        "TopTalkersChef",
    ] {
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains(&format!("chef {chef}")) && l.contains(" seen"))
            .collect();
        assert_eq!(lines.len(), 1, "{chef}: {lines:#?}");
        let line = lines[0];
        assert!(
            line.contains(&format!(": chef {chef}: running; ")),
            "{line}"
        );
        for fact in [
            "packets offered",
            " seen",
            "packet calls",
            "interval calls",
            "dumplings",
            "ms in chef",
        ] {
            assert_eq!(line.matches(fact).count(), 1, "{fact:?} once: {line}");
        }
        // A clean run: nothing refused, nothing failed, so neither is listed.
        assert!(
            !line.contains("refused") && !line.contains("failures"),
            "{line}"
        );
    }
}
