//! The web view in a real browser: a real `nd-hub`, a real `nd-sniff` replaying the
//! bundled capture, and Debian's headless Chromium driven over WebDriver (chromedriver on
//! a loopback port, started and killed by the test).
//!
//! Skips with a message when `chromium` or `chromedriver` is missing, except in CI or as
//! root, where `scripts/setup.sh` installs them and their absence is a failure.
//! Screenshots of every view go to `target/web-view/` (test output).

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "nats_support.rs"]
mod nats;

use e2e_tests::{
    bin, free_port, is_root, on_path, spawn_hub, truth_rows, wait_for_port, workspace_root,
    ChildGuard, LiveProcess,
};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The capture replayed: bundled with the repository, with DNS, ARP, HTTP and TLS in it.
const CAPTURE: &str = "captures/ndpi__anyconnect-vpn.pcap";

/// chromium and chromedriver, or `None` (with a SKIP message) where they may be missing.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    match (on_path("chromium"), on_path("chromedriver")) {
        (Some(chromium), Some(driver)) => Some((chromium, driver)),
        _ => {
            assert!(
                std::env::var_os("CI").is_none() && !is_root(),
                "chromium/chromedriver missing: scripts/setup.sh installs them (apt-get install chromium chromium-driver)"
            );
            eprintln!("SKIP: chromium or chromedriver not found (sudo apt-get install -y chromium chromium-driver)");
            None
        }
    }
}

/// A hub on fixed ports (so it can be restarted on the same ones), status every 0.5 s.
fn start_hub(in_port: u16, out_port: u16) -> ChildGuard {
    spawn_hub(in_port, out_port, &["-f", "0.5"])
}

/// chromedriver on a loopback port plus a WebDriver session with headless Chromium.
/// chromedriver runs in a process group of its own, which the Chromium it starts joins;
/// dropping the browser kills that whole group, so a test that ends (or fails) without
/// closing its session leaves no Chromium behind (killing chromedriver alone orphans it).
struct Browser {
    client: Client,
    driver: ChildGuard,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group's id is chromedriver's pid (`process_group(0)` below): only processes
        // this test started are in it.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg("--")
            .arg(format!("-{}", self.driver.child.id()))
            .status();
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "nd-web-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start_browser(driver_bin: &Path, chromium: &Path, width: u32, height: u32) -> Browser {
    let port = free_port();
    let driver = ChildGuard::spawn(
        "chromedriver",
        Command::new(driver_bin)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .process_group(0),
    );
    assert!(
        wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(15)),
        "chromedriver did not listen on 127.0.0.1:{port}"
    );
    let profile = TempDir::new("profile");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                // No crash handler: it would start in a session of its own, outside the
                // process group the browser is killed by.
                "--disable-breakpad",
                "--disable-dev-shm-usage", "--enable-precise-memory-info", "--js-flags=--expose-gc",
                format!("--user-data-dir={}", profile.0.display()),
                format!("--window-size={width},{height}"),
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    // The TLS test's hub has a self-signed certificate (WebDriver's standard switch).
    caps.insert("acceptInsecureCerts".into(), json!(true));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session with headless chromium");
    Browser {
        client,
        driver,
        _profile: profile,
    }
}

/// chromedriver's browser console log (`/session/{id}/se/log`), which fantoccini has no
/// method for.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }
    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

/// Console entries at level SEVERE (errors) since the last call.
async fn console_errors(client: &Client) -> Vec<String> {
    let log = client.issue_cmd(BrowserLog).await.expect("browser log");
    log.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn js(client: &Client, script: &str) -> Value {
    client
        .execute(script, vec![])
        .await
        .unwrap_or_else(|e| panic!("script failed: {script}: {e}"))
}

/// Poll `script` until `done` accepts its value, within `limit`.
async fn wait_js(
    client: &Client,
    script: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let v = js(client, script).await;
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting on `{script}`; last value {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn show(client: &Client, view: &str) {
    client
        .find(Locator::Css(&format!("#tabs button[data-view={view}]")))
        .await
        .expect("tab button")
        .click()
        .await
        .expect("click tab");
    // One render period, so the view shows what the stores hold.
    tokio::time::sleep(Duration::from_millis(700)).await;
}

fn shot_dir() -> PathBuf {
    let dir = workspace_root().join("target/web-view");
    std::fs::create_dir_all(&dir).expect("create target/web-view");
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    std::fs::write(shot_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

/// Column `col` (0-based) of every row of table `id`.
async fn column(client: &Client, id: &str, col: usize) -> Vec<String> {
    let v = js(
        client,
        &format!("return Array.from(document.querySelectorAll('#{id} tbody tr')).map(r => r.cells[{col}] ? r.cells[{col}].textContent : '')"),
    )
    .await;
    serde_json::from_value(v).unwrap_or_default()
}

/// A kitchen replaying the capture through a FIFO that the test keeps open, so the
/// kitchen stays connected (and listed by the hub) after the last packet.
struct PipedKitchen {
    process: LiveProcess,
    _fifo: std::fs::File,
    _dir: TempDir,
}

fn start_piped_kitchen(in_port: u16, name: &str) -> PipedKitchen {
    let dir = TempDir::new("fifo");
    let fifo = dir.0.join("capture.pcap");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    // Opened read-write, so this open never waits for the kitchen's.
    let mut writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open fifo");
    let process = LiveProcess::spawn(
        Command::new(bin("nd-sniff"))
            .args(["-n", name, "-h", &format!("127.0.0.1:{in_port}"), "-p", "1"])
            .args(["--kitchen-status", "on", "--stdout", "-r"])
            .arg(&fifo),
    );
    let capture = std::fs::read(workspace_root().join(CAPTURE)).expect("read the bundled capture");
    writer
        .write_all(&capture)
        .expect("write capture into the fifo");
    PipedKitchen {
        process,
        _fifo: writer,
        _dir: dir,
    }
}

/// The page, a hub and a replaying kitchen: what the page shows matches the kitchen's own
/// output and tshark's ground truth; the feed filter works; screenshots of every view; a
/// narrow window has no page-wide horizontal scroll; the page reconnects after the hub is
/// restarted on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_view_shows_a_replay_and_recovers_after_a_hub_restart() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    let (in_port, out_port) = (free_port(), free_port());
    let hub = start_hub(in_port, out_port);
    let browser = start_browser(&driver, &chromium, 1280, 900).await;
    let c = &browser.client;
    let url = format!("http://127.0.0.1:{out_port}/");
    c.goto(&url).await.expect("open the page");
    wait_js(
        c,
        "return ndView.stats().connected",
        Duration::from_secs(10),
        |v| v == &json!(true),
    )
    .await;

    let kitchen = start_piped_kitchen(in_port, "webkitchen");

    // The kitchens table lists the kitchen with the hub's count of its dumplings (so the
    // row comes from the hub's SystemStatusChef, not only from the kitchen's own status).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let names = column(c, "kitchens", 0).await;
        let counts = column(c, "kitchens", 5).await;
        if names
            .iter()
            .zip(&counts)
            .any(|(n, k)| n == "webkitchen" && !k.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kitchen never listed by the hub: {names:?} {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chefs = column(c, "chefs", 1).await;
    assert!(
        chefs.contains(&"DNSLookupChef".to_owned()),
        "chefs table: {chefs:?}"
    );
    screenshot(c, "fleet").await;

    // Ground truth for the chart: the last PacketCountChef dumpling the kitchen printed
    // (the page draws 11 layers by first sight and sums the rest as "other": 12 series).
    show(c, "protocols").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = kitchen
            .process
            .stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let last = lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|d| d["metadata"]["chef"] == "PacketCountChef")
            .map(|d| d["payload"]["packet_counts"].clone())
            .enumerate()
            .last();
        let got = js(c, "return ndView.chartLatest()").await;
        if let Some((index, counts)) = last {
            let counts = counts.as_object().cloned().unwrap_or_default();
            let named = if counts.len() > 12 { 11 } else { counts.len() };
            let mut want: serde_json::Map<String, Value> = counts
                .iter()
                .take(named)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if counts.len() > named {
                let rest: u64 = counts
                    .iter()
                    .skip(named)
                    .filter_map(|(_, n)| n.as_u64())
                    .sum();
                want.insert("other".into(), json!(rest));
            }
            // The capture spans 47 s of one-second pokes.
            if index >= 40 && got == Value::Object(want.clone()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chart's latest values {got} vs the last PacketCountChef dumpling (#{index}) {want:?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "no PacketCountChef dumpling from the kitchen"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    screenshot(c, "protocols").await;

    // The DNS table lists every name tshark sees queried in the capture.
    let truth: BTreeSet<String> = truth_rows("ndpi__anyconnect-vpn.dns.tsv")
        .into_iter()
        .filter(|r| r.get(2).map(String::as_str) == Some("0"))
        .filter_map(|r| r.get(4).cloned())
        .filter(|n| n != "<Root>")
        .collect();
    assert!(truth.len() >= 10, "ground truth has {} names", truth.len());
    show(c, "dns").await;
    let names: BTreeSet<String> = column(c, "dns", 0).await.into_iter().collect();
    let missing: Vec<_> = truth.difference(&names).collect();
    assert!(
        missing.is_empty(),
        "DNS names tshark sees but the page does not list: {missing:?}"
    );
    screenshot(c, "dns").await;

    for view in ["arp", "tls", "http", "dhcp", "talkers", "other"] {
        show(c, view).await;
        screenshot(c, view).await;
    }
    let http_rows = column(c, "http", 1).await;
    assert!(
        !http_rows.is_empty(),
        "HTTP view lists the capture's requests"
    );
    let tls_rows = column(c, "tls", 0).await;
    assert!(!tls_rows.is_empty(), "TLS view lists server names");

    // Feed filtered by chef shows only that chef.
    show(c, "feed").await;
    c.find(Locator::Css("#f-chef"))
        .await
        .expect("chef filter")
        .select_by_value("DNSLookupChef")
        .await
        .expect("choose DNSLookupChef");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let shown = js(
        c,
        "return Array.from(document.querySelectorAll('#feed .feed-row')).map(r => r.dataset.chef)",
    )
    .await;
    let shown: Vec<String> = serde_json::from_value(shown).expect("list of chefs");
    assert!(
        !shown.is_empty(),
        "the filtered feed shows DNSLookupChef dumplings"
    );
    assert!(
        shown.iter().all(|chef| chef == "DNSLookupChef"),
        "filtered feed: {shown:?}"
    );
    // Pause (rows stop being redrawn), then open one row: pretty JSON, as text.
    c.find(Locator::Css("#f-pause"))
        .await
        .expect("pause button")
        .click()
        .await
        .expect("pause");
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.find(Locator::Css("#feed .feed-row"))
        .await
        .expect("a feed row")
        .click()
        .await
        .expect("click row");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pretty = js(
        c,
        "const p = document.querySelector('#feed .feed-row pre'); return p ? p.textContent : ''",
    )
    .await;
    assert!(
        pretty
            .as_str()
            .is_some_and(|t| t.contains("\n  \"metadata\"")),
        "pretty JSON: {pretty}"
    );
    screenshot(c, "feed").await;

    // A narrow window: the page itself never scrolls sideways (tables scroll in their box).
    c.set_window_size(390, 844).await.expect("narrow window");
    show(c, "fleet").await;
    let overflow = js(
        c,
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(
        overflow.as_i64().is_some_and(|o| o <= 1),
        "page scrolls sideways by {overflow} px in a narrow window"
    );
    screenshot(c, "narrow").await;
    c.set_window_size(1280, 900).await.expect("wide window");

    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let diag = js(c, "return ndView.diag().errors").await;
    assert_eq!(diag, json!([]), "errors caught by the page");

    // Hub restart on the same ports: the page notices, then reconnects by itself.
    drop(hub);
    drop(kitchen);
    wait_js(
        c,
        "return ndView.stats().connected",
        Duration::from_secs(10),
        |v| v == &json!(false),
    )
    .await;
    let _hub = start_hub(in_port, out_port);
    wait_js(
        c,
        "return ndView.stats().connects",
        Duration::from_secs(15),
        |v| v.as_u64() >= Some(2),
    )
    .await;
    wait_js(
        c,
        "return ndView.stats().connected",
        Duration::from_secs(5),
        |v| v == &json!(true),
    )
    .await;
    // And it is live again: the new hub's status lists the page as its eater.
    show(c, "fleet").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !column(c, "eaters", 0).await.contains(&"webview".to_owned()) {
        assert!(
            Instant::now() < deadline,
            "the restarted hub's status never reached the page"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let errors = console_errors(c).await;
    // The WebSocket failing while the hub is down is logged by Chromium; nothing else may be.
    let unexpected: Vec<_> = errors
        .iter()
        .filter(|e| !e.contains("WebSocket connection to"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "console errors after the restart: {unexpected:?}"
    );
    let _ = browser.client.clone().close().await;
}

/// Send `rate` dumplings/s for `secs` seconds from one kitchen connection: a mix of the
/// sample chefs' shapes and an unknown chef, with ever new DNS names (to fill the page's
/// bounded stores). Returns how many were sent.
async fn load(in_port: u16, rate: u64, secs: u64, offset: u64) -> u64 {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{in_port}"))
        .await
        .expect("kitchen connection");
    ws.send(Message::text(json!({"kitchen_name": "loadkitchen", "interface": "lo", "filter": "", "chefs": ["LoadChef"]}).to_string()))
        .await
        .expect("hello");
    let per_tick = rate / 100;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        for _ in 0..per_tick {
            let n = offset + sent;
            let now = 1.8e9 + n as f64 / rate as f64;
            let (chef, driver, payload) = match n % 10 {
                0 => (
                    "PacketCountChef",
                    "interval",
                    json!({"packet_counts": {"Ethernet": n, "IP": n / 2, "TCP": n / 4, "UDP": n / 8}}),
                ),
                1..=3 => (
                    "DNSLookupChef",
                    "packet",
                    json!({"lookup": {"hostname": format!("host{n}.load.test"), "when": now}}),
                ),
                4 => (
                    "ARPChef",
                    "packet",
                    json!({"operation": "reply", "src_hw": format!("02:00:00:00:{:02x}:{:02x}", (n >> 8) & 255, n & 255), "src_ip": format!("10.0.{}.{}", (n >> 8) & 255, n & 255), "dst_hw": "02:00:00:00:00:01", "dst_ip": "10.0.0.1", "time": now, "notes": null}),
                ),
                5 | 6 => (
                    "HTTPRequestChef",
                    "packet",
                    json!({"http_request": {"method": "GET", "host": "load.test", "path": format!("/item/{n}"), "user_agent": "<script>alert(1)</script>", "client": "10.0.0.2:1234", "server": "10.0.0.1:80", "time": now}}),
                ),
                _ => (
                    "LoadChef",
                    "packet",
                    json!({"n": n, "note": "<img src=x onerror=alert(1)>"}),
                ),
            };
            let d = json!({"metadata": {"chef": chef, "kitchen": "loadkitchen", "creation_time": now, "driver": driver}, "payload": payload});
            ws.feed(Message::text(d.to_string()))
                .await
                .expect("send dumpling");
            sent += 1;
        }
        ws.flush().await.expect("flush");
    }
    let _ = ws.close(None).await;
    sent
}

/// At 10 k dumplings/s the page's main thread stays responsive (long tasks measured by a
/// PerformanceObserver in the page) and its JS heap stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_view_stays_responsive_and_bounded_at_10k_dumplings_per_second() {
    let Some(page) = hub_and_browser().await else {
        return;
    };
    let (in_port, out_port, c) = (page.in_port, page.out_port, &page.browser.client);
    c.goto(&format!("http://127.0.0.1:{out_port}/#feed"))
        .await
        .expect("open the page");
    wait_js(
        c,
        "return ndView.stats().connected",
        Duration::from_secs(10),
        |v| v == &json!(true),
    )
    .await;

    let mut heaps = Vec::new();
    let mut sent = 0;
    // Two phases on two views (the feed and the DNS table are the heaviest to draw); the
    // heap after the second must not have grown much beyond the first: bounded stores.
    for view in ["feed", "dns"] {
        show(c, view).await;
        js(c, "ndView.resetLongTaskMax()").await;
        let before = js(c, "return ndView.diag()").await;
        let t0 = Instant::now();
        sent += load(in_port, 10_000, 4, sent).await;
        let window_ms = t0.elapsed().as_secs_f64() * 1000.0;
        // Let the page drain what is in flight, then measure.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let after = js(c, "return ndView.diag()").await;
        let long_ms = after["longTaskMs"].as_f64().unwrap_or(0.0)
            - before["longTaskMs"].as_f64().unwrap_or(0.0);
        let longest = after["longTaskMax"].as_f64().unwrap_or(0.0);
        let stats = js(c, "return ndView.stats()").await;
        let renders =
            after["renders"].as_f64().unwrap_or(0.0) - before["renders"].as_f64().unwrap_or(0.0);
        let render_ms =
            after["renderMs"].as_f64().unwrap_or(0.0) - before["renderMs"].as_f64().unwrap_or(0.0);
        eprintln!(
            "view {view}: {renders} renders, {:.1} ms each",
            render_ms / renders.max(1.0)
        );
        let heap = js(c, "if (window.gc) window.gc(); return performance.memory ? performance.memory.usedJSHeapSize : -1").await;
        let heap = heap.as_f64().expect("heap size");
        eprintln!(
            "view {view}: sent {sent} in total; page {stats}; long tasks {long_ms:.0} ms of {window_ms:.0} ms, longest {longest:.0} ms; JS heap {:.1} MiB",
            heap / 1048576.0
        );
        assert!(
            long_ms < 0.25 * window_ms,
            "{view}: main thread blocked {long_ms:.0} ms of {window_ms:.0} ms"
        );
        assert!(
            longest < 250.0,
            "{view}: a task blocked the main thread for {longest:.0} ms"
        );
        heaps.push(heap);
    }
    let stats = js(c, "return ndView.stats()").await;
    let received = stats["received"].as_u64().unwrap_or(0);
    let lagged = stats["lagged"].as_u64().unwrap_or(0);
    assert!(
        received + lagged >= sent * 9 / 10,
        "page saw {received} (+{lagged} dropped by the hub) of {sent}"
    );
    assert_eq!(stats["feedKept"], json!(1000), "the feed keeps its bound");
    assert!(
        stats["dnsNames"].as_u64() <= Some(5000),
        "DNS store bounded: {stats}"
    );
    // The page says how much it let go of.
    let dropped = js(
        c,
        "return document.getElementById('st-dropped').textContent",
    )
    .await;
    assert_ne!(dropped, json!("0"), "dropped count visible");
    assert!(
        heaps[0] > 0.0 && heaps[1] < 64.0 * 1048576.0,
        "JS heap {heaps:?}"
    );
    assert!(
        heaps[1] < heaps[0] * 1.5 + 4.0 * 1048576.0,
        "JS heap grew from {:.1} to {:.1} MiB",
        heaps[0] / 1048576.0,
        heaps[1] / 1048576.0
    );
    // Chef-controlled markup stayed text: no element was made from it.
    let injected = js(
        c,
        "return document.querySelectorAll('main img, main script').length",
    )
    .await;
    assert_eq!(injected, json!(0), "markup from a chef reached the DOM");
    show(c, "http").await;
    screenshot(c, "load-http").await;
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let _ = page.browser.client.clone().close().await;
}

/// The test's own kitchen connection.
type KitchenWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A kitchen connection of the test's own, whose dumplings carry whatever chef and kitchen
/// names the test gives them (the hub checks neither without `--auth`).
async fn raw_kitchen(in_port: u16) -> KitchenWs {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{in_port}"))
        .await
        .expect("kitchen connection");
    ws.send(Message::text(
        json!({"kitchen_name": "namer", "interface": "lo", "filter": "", "chefs": []}).to_string(),
    ))
    .await
    .expect("hello");
    ws
}

/// A dumpling as a kitchen sends it.
fn dumpling(chef: &str, kitchen: &str, driver: &str, time: f64, payload: Value) -> Message {
    Message::text(
        json!({"metadata": {"chef": chef, "kitchen": kitchen, "creation_time": time, "driver": driver}, "payload": payload})
            .to_string(),
    )
}

/// A hub on two free ports and a 1280 x 900 browser; `None` (skip) without the browser.
struct HubPage {
    in_port: u16,
    out_port: u16,
    _hub: ChildGuard,
    browser: Browser,
}

async fn hub_and_browser() -> Option<HubPage> {
    let (chromium, driver) = browser_tools()?;
    let (in_port, out_port) = (free_port(), free_port());
    let hub = start_hub(in_port, out_port);
    let browser = start_browser(&driver, &chromium, 1280, 900).await;
    Some(HubPage {
        in_port,
        out_port,
        _hub: hub,
        browser,
    })
}

/// The page at `view`, connected to the hub on `out_port`.
async fn open_page(c: &Client, out_port: u16, view: &str) {
    c.goto(&format!("http://127.0.0.1:{out_port}/#{view}"))
        .await
        .expect("open the page");
    wait_js(
        c,
        "return ndView.stats().connected",
        Duration::from_secs(10),
        |v| v == &json!(true),
    )
    .await;
}

/// Wait until the page has received at least `count` messages.
async fn wait_received(c: &Client, count: u64) {
    wait_js(
        c,
        "return ndView.stats().received",
        Duration::from_secs(60),
        |v| v.as_u64() >= Some(count),
    )
    .await;
}

/// The page's JS heap in bytes, after a full garbage collection (`--expose-gc`).
async fn heap_after_gc(c: &Client) -> f64 {
    js(
        c,
        "if (window.gc) window.gc(); return performance.memory ? performance.memory.usedJSHeapSize : -1",
    )
    .await
    .as_f64()
    .expect("heap size")
}

/// `KitchenStatusChef` dumplings of ~100 KB under 1000 made-up kitchen names: the page keeps
/// the latest status of its 300 most recently updated kitchens, and of each only what the
/// Fleet view draws, so its heap stays small (it held every payload: 869 MB after 3000). A
/// kitchen that reported again lately outlives the burst of names after its first status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_view_keeps_a_bounded_number_of_kitchen_statuses() {
    let Some(page) = hub_and_browser().await else {
        return;
    };
    let (in_port, out_port, c) = (page.in_port, page.out_port, &page.browser.client);
    open_page(c, out_port, "fleet").await;
    let heap_before = heap_after_gc(c).await;

    // 800 chefs of ~128 bytes each, as the reproducer's statuses.
    let chefs: serde_json::Map<String, Value> = (0..800)
        .map(|j| {
            (
                format!("c{j}"),
                json!({"state": "x".repeat(90), "version": j.to_string()}),
            )
        })
        .collect();
    let junk = json!({"capture": {"packets": 1}, "chefs": chefs});
    let real = json!({"capture": {"packets": 42, "kernel_dropped": 1, "queue_dropped": 2},
        "chefs": {"RealChef": {"state": "running", "packets_offered": 7, "dumplings": 3, "version": "1.0"}}});
    let mut ws = raw_kitchen(in_port).await;
    let mut sent = 0u64;
    let status = |kitchen: &str, payload: &Value| {
        dumpling(
            "KitchenStatusChef",
            kitchen,
            "interval",
            1.8e9,
            payload.clone(),
        )
    };
    // The real kitchen's first status, 750 made-up kitchens, its second status, 250 more:
    // the first status is the oldest entry, the second among the 300 newest.
    ws.send(status("a-real-kitchen", &real))
        .await
        .expect("send");
    sent += 1;
    for i in 0..1000 {
        if i == 750 {
            ws.send(status("a-real-kitchen", &real))
                .await
                .expect("send");
            sent += 1;
        }
        ws.send(status(&format!("kitchen-{i:04}"), &junk))
            .await
            .expect("send");
        sent += 1;
        // At most ~20 MB/s, and never far ahead of the page, so the hub need not drop
        // any for it (its queue holds 40 of these).
        if i % 20 == 19 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            wait_received(c, sent.saturating_sub(20)).await;
        }
    }
    let stats = wait_js(c, "return ndView.stats()", Duration::from_secs(60), |v| {
        v["received"].as_u64().unwrap_or(0) + v["lagged"].as_u64().unwrap_or(0) >= sent
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let heap = heap_after_gc(c).await;
    eprintln!(
        "page {stats}; JS heap {:.1} MiB before, {:.1} MiB after {sent} statuses",
        heap_before / 1048576.0,
        heap / 1048576.0
    );
    assert_eq!(
        stats["lagged"],
        json!(0),
        "the hub dropped statuses for the page"
    );
    assert!(
        heap > 0.0 && heap < 64.0 * 1048576.0,
        "JS heap {:.1} MiB after {sent} kitchen statuses of ~100 KB",
        heap / 1048576.0
    );
    let sizes = js(c, "return ndView.sizes()").await;
    assert_eq!(
        sizes["kitchenStatuses"],
        json!(300),
        "kitchen statuses kept: {sizes}"
    );
    let kitchens = column(c, "kitchens", 0).await;
    assert!(
        kitchens.contains(&"a-real-kitchen".to_owned()),
        "the kitchen updated lately was forgotten: {:?}",
        &kitchens[..kitchens.len().min(5)]
    );
    let row = js(
        c,
        "const r = Array.from(document.querySelectorAll('#chefs tbody tr')).find(r => r.cells[1].textContent === 'RealChef'); return r ? Array.from(r.cells).map(c => c.textContent) : null",
    )
    .await;
    assert_eq!(
        row,
        json!([
            "a-real-kitchen",
            "RealChef",
            "running",
            "7",
            "3",
            "",
            "",
            "",
            "1.0"
        ]),
        "the chefs table draws the kept status"
    );
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let _ = page.browser.client.clone().close().await;
}

/// Names and keys of 20 000 characters (chef, kitchen, payload key, layer, host, ...) in
/// every view: the page never gets wider than the window, wide or narrow (they made it
/// ~300 000 px wide: the chart legend, the talkers summary, payload keys in a `th`, the
/// feed filters' options).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_view_wraps_or_cuts_long_names() {
    let Some(page) = hub_and_browser().await else {
        return;
    };
    let (in_port, out_port, c) = (page.in_port, page.out_port, &page.browser.client);
    open_page(c, out_port, "fleet").await;

    let long = "W".repeat(20_000);
    let l = long.as_str();
    let mut ws = raw_kitchen(in_port).await;
    let messages = [
        dumpling(l, l, "packet", 1.8e9, json!({ l: l, "short": 1 })),
        dumpling(
            "PacketCountChef",
            l,
            "interval",
            1.8e9,
            json!({"packet_counts": { l: 3, "IP": 5 }}),
        ),
        dumpling(
            "PacketCountChef",
            l,
            "interval",
            1.8e9 + 1.0,
            json!({"packet_counts": { l: 4, "IP": 6 }}),
        ),
        dumpling(
            "DNSLookupChef",
            l,
            "packet",
            1.8e9,
            json!({"lookup": {"hostname": l, "when": 1.8e9}}),
        ),
        dumpling(
            "ARPChef",
            l,
            "packet",
            1.8e9,
            json!({"src_ip": l, "src_hw": l, "time": 1.8e9}),
        ),
        dumpling(
            "TLSServerNameChef",
            l,
            "packet",
            1.8e9,
            json!({"tls": {"server_name": l, "client": l, "server": l, "version": l, "alpn": [l], "time": 1.8e9}}),
        ),
        dumpling(
            "HTTPRequestChef",
            l,
            "packet",
            1.8e9,
            json!({"http_request": {"method": l, "host": l, "path": l, "user_agent": l, "client": l, "server": l, "time": 1.8e9}}),
        ),
        dumpling(
            "DHCPLeaseChef",
            l,
            "packet",
            1.8e9,
            json!({"dhcp": {"event": l, "client_hw": l, "ip": l, "hostname": l, "server": l, "time": 1.8e9}, "leases": { l: {"ip": l, "hostname": l, "expires": null}}}),
        ),
        dumpling(
            "TopTalkersChef",
            l,
            "interval",
            1.8e9,
            json!({"top_talkers": {"packets": 1, "bytes": 1, "flows": 1, "interval": l, "top_hosts": [{"ip": l, "bytes": 5, "packets": 1}], "top_flows": [{"protocol": l, "src": l, "dst": l, "bytes": 3, "packets": 1}]}}),
        ),
        dumpling(
            "KitchenStatusChef",
            l,
            "interval",
            1.8e9,
            json!({"capture": {"packets": 1}, "chefs": { l: {"state": l, "version": l}}}),
        ),
    ];
    let count = messages.len() as u64;
    for m in messages {
        ws.send(m).await.expect("send");
    }
    wait_received(c, count).await;

    let mut wide = Vec::new();
    for (width, height) in [(1280, 900), (390, 844)] {
        c.set_window_size(width, height).await.expect("window size");
        for view in [
            "fleet",
            "protocols",
            "dns",
            "arp",
            "tls",
            "http",
            "dhcp",
            "talkers",
            "other",
            "feed",
        ] {
            show(c, view).await;
            let size = js(
                c,
                "const d = document.documentElement; return [d.scrollWidth, d.clientWidth]",
            )
            .await;
            let (scroll, client) = (
                size[0].as_i64().unwrap_or(-1),
                size[1].as_i64().unwrap_or(0),
            );
            eprintln!("{width} px window, {view}: scrollWidth {scroll}, clientWidth {client}");
            if scroll < 0 || scroll > client + 1 {
                wide.push(format!(
                    "{view} at {width} px: scrollWidth {scroll} > {client}"
                ));
            }
            if width == 1280 {
                screenshot(c, &format!("long-names-{view}")).await;
            }
        }
    }
    assert!(wide.is_empty(), "the page scrolls sideways: {wide:?}");
    // The names are cut, not lost: the feed filter offers the chef (its option shortened,
    // the whole kept name in its title).
    let option = js(
        c,
        "const o = Array.from(document.getElementById('f-chef').options).find(o => o.value.startsWith('WWWW')); return o ? [o.value.length, o.textContent.length, o.title.length] : null",
    )
    .await;
    let lengths: Vec<u64> = serde_json::from_value(option.clone()).unwrap_or_default();
    assert!(
        lengths.len() == 3 && lengths[0] < 1000 && lengths[1] < 100 && lengths[2] == lengths[0],
        "the long chef's option (value, label, title lengths): {option}"
    );
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let diag = js(c, "return ndView.diag().errors").await;
    assert_eq!(diag, json!([]), "errors caught by the page");
    let _ = page.browser.client.clone().close().await;
}

/// 300 made-up chef and kitchen names, then a real chef: the feed filters still offer it
/// (they kept the first 200 names they saw, for good). A chosen chef stays chosen, and the
/// filter keeps working, through another 300 made-up names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_view_feed_filters_offer_names_seen_after_a_flood() {
    let Some(page) = hub_and_browser().await else {
        return;
    };
    let (in_port, out_port, c) = (page.in_port, page.out_port, &page.browser.client);
    open_page(c, out_port, "feed").await;
    let mut ws = raw_kitchen(in_port).await;
    let mut sent = 0u64;
    let options = "const o = s => Array.from(document.getElementById(s).options).map(x => x.value); \
        return {chefs: o('f-chef'), kitchens: o('f-kitchen'), chosen: document.getElementById('f-chef').value}";

    for i in 0..300 {
        ws.send(dumpling(
            &format!("Junk{i}"),
            &format!("junkkitchen{i}"),
            "packet",
            1.8e9,
            json!(1),
        ))
        .await
        .expect("send");
        sent += 1;
    }
    let real = |n: u64| {
        dumpling(
            "DNSLookupChef",
            "sensor1",
            "packet",
            1.8e9 + n as f64,
            json!({"lookup": {"hostname": format!("host{n}.example"), "when": 1.8e9}}),
        )
    };
    ws.send(real(0)).await.expect("send");
    sent += 1;
    wait_received(c, sent).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let seen = js(c, options).await;
    let has = |v: &Value, list: &str, name: &str| {
        v[list]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == name))
    };
    assert!(has(&seen, "chefs", "DNSLookupChef"), "chef filter: {seen}");
    assert!(has(&seen, "kitchens", "sensor1"), "kitchen filter: {seen}");

    c.find(Locator::Css("#f-chef"))
        .await
        .expect("chef filter")
        .select_by_value("DNSLookupChef")
        .await
        .expect("choose DNSLookupChef");
    for i in 300..600 {
        ws.send(dumpling(
            &format!("Junk{i}"),
            &format!("junkkitchen{i}"),
            "packet",
            1.8e9,
            json!(1),
        ))
        .await
        .expect("send");
        sent += 1;
    }
    wait_received(c, sent).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after = js(c, options).await;
    assert_eq!(
        after["chosen"],
        json!("DNSLookupChef"),
        "the choice stayed: {after}"
    );
    assert!(
        has(&after, "chefs", "DNSLookupChef"),
        "chef filter: {after}"
    );
    assert!(
        has(&after, "chefs", "Junk599"),
        "newest names offered: {after}"
    );
    let shown = js(
        c,
        "return Array.from(document.querySelectorAll('#feed .feed-row')).map(r => r.dataset.chef)",
    )
    .await;
    assert_eq!(shown, json!(["DNSLookupChef"]), "the filtered feed");
    let sizes = js(c, "return ndView.sizes()").await;
    assert!(
        sizes["seenChefs"] == json!(200) && sizes["seenKitchens"] == json!(200),
        "the filters' names stay bounded: {sizes}"
    );
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    let _ = page.browser.client.clone().close().await;
}

/// Without a browser: a plain GET on the eater port gets the page and its assets (with a
/// CSP), an unknown path a 404, and a WebSocket eater on the same port still gets status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eater_port_serves_the_page_and_still_speaks_websocket() {
    let (in_port, out_port) = (free_port(), free_port());
    let _hub = start_hub(in_port, out_port);
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", out_port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut s, &mut out).expect("response");
        out
    };
    let page = get("/");
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("Content-Security-Policy: default-src 'self'"));
    assert!(page.contains("<script src=\"app.js\"></script>"));
    for asset in [
        "/app.js",
        "/style.css",
        "/vendor/uplot/uPlot.iife.min.js",
        "/vendor/uplot/uPlot.min.css",
    ] {
        assert!(get(asset).starts_with("HTTP/1.1 200 OK"), "{asset}");
    }
    assert!(get("/nope").starts_with("HTTP/1.1 404"));

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{out_port}"))
        .await
        .expect("eater connection");
    ws.send(Message::text(r#"{"eater_name":"plain"}"#))
        .await
        .expect("hello");
    let first = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::StreamExt::next(&mut ws),
    )
    .await
    .expect("a status within 5 s")
    .expect("a message")
    .expect("not an error");
    let v: Value = serde_json::from_str(first.to_text().expect("text")).expect("JSON");
    assert_eq!(v["metadata"]["chef"], "SystemStatusChef");
}

/// With `--tls-cert/--tls-key`, the page loads over `https://` from the eater port and its
/// WebSocket goes `wss://` to the same port (the browser accepts the test's self-signed
/// certificate through WebDriver's `acceptInsecureCerts`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_view_over_https_on_a_tls_hub() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    let dir = TempDir::new("tls");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let (cert, key) = (dir.0.join("hub.pem"), dir.0.join("hub-key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let (in_port, out_port) = (free_port(), free_port());
    let (cert_text, key_text) = (cert.display().to_string(), key.display().to_string());
    let _hub = spawn_hub(
        in_port,
        out_port,
        &[
            "-f",
            "0.5",
            "--tls-cert",
            &cert_text,
            "--tls-key",
            &key_text,
        ],
    );
    let browser = start_browser(&driver, &chromium, 1280, 900).await;
    let c = &browser.client;
    c.goto(&format!("https://localhost:{out_port}/"))
        .await
        .expect("open the page over https");
    wait_js(
        c,
        "return ndView.stats().connected && ndView.stats().hubStatuses > 0",
        Duration::from_secs(15),
        |v| v == &json!(true),
    )
    .await;
    assert_eq!(js(c, "return location.protocol").await, json!("https:"));
    // The hub's status, rendered: the eaters table lists the page's own wss connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while column(c, "eaters", 0).await.is_empty() {
        assert!(Instant::now() < deadline, "the eaters table stayed empty");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    screenshot(c, "over-https").await;
    let _ = browser.client.clone().close().await;
}

/// A federated hub's NATS outage shows on the Fleet view: the hub summary says NATS is
/// down and for how long, and says the fleet again once NATS is back (real `nats-server`
/// killed and restarted by PID).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_view_says_when_a_federated_hubs_nats_is_down() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    let Some(mut cluster) = nats::Cluster::start(1) else {
        return;
    };
    let (in_port, out_port) = (free_port(), free_port());
    let urls = cluster.urls();
    let _hub = spawn_hub(
        in_port,
        out_port,
        &["-f", "0.5", "--nats", &urls, "--nats-hub-id", "webHub"],
    );
    assert!(
        nats::handshake_within(([127, 0, 0, 1], out_port).into(), Duration::from_secs(30)).await,
        "the hub did not federate"
    );
    let browser = start_browser(&driver, &chromium, 1280, 900).await;
    let c = &browser.client;
    open_page(c, out_port, "fleet").await;
    let summary = "return document.getElementById('hub-summary').textContent";
    let says = |part: &'static str| move |v: &Value| v.as_str().is_some_and(|t| t.contains(part));
    wait_js(
        c,
        summary,
        Duration::from_secs(20),
        says("fleet of 1 hubs over NATS"),
    )
    .await;

    cluster.kill(0);
    wait_js(c, summary, Duration::from_secs(20), says("NATS down for")).await;
    let text = js(c, summary).await;
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains("nothing is delivered until it is back")),
        "{text}"
    );
    screenshot(c, "fleet-nats-down").await;

    cluster.restart(0);
    wait_js(
        c,
        summary,
        Duration::from_secs(30),
        says("fleet of 1 hubs over NATS"),
    )
    .await;
    assert!(console_errors(c).await.is_empty(), "console errors");
}
