//! A two-site fleet with real processes on 127.0.0.1: a main `nats-server` (JetStream
//! domain `hub`, leaf-node listener) and a site `nats-server` (JetStream domain `site1`)
//! that is its leaf node; a site hub (`--nats-domain site1`) on the site server, a main
//! hub (`--nats-source-domain site1`) on the main server, an eater on each, and a kitchen
//! at the site. The leaf link is cut by kill -9 of the main server: the site keeps
//! serving its eater, and once the main server is back the main hub's eater gets every
//! site dumpling, the ones from the cut included, exactly once.
//!
//! Skips with a message when `nats-server` is missing (never in CI).

#[path = "hub_support.rs"]
mod support;

#[path = "nats_support.rs"]
mod nats;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_tests::wait_for_port;
use futures_util::{SinkExt, StreamExt};
use support::{connect, eater, is_chef, kitchen, Hub, Ws};
use tokio_tungstenite::tungstenite::Message;

/// One `nats-server` with its config, restartable on the same ports and store.
struct Server {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    client: std::net::SocketAddr,
    child: Option<Child>,
}

impl Server {
    fn start(binary: &Path, dir: &Path, name: &str, text: &str, client: u16) -> Server {
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(&config, text).expect("write nats config");
        let mut server = Server {
            binary: binary.to_owned(),
            config,
            log: dir.join(format!("{name}.log")),
            client: ([127, 0, 0, 1], client).into(),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("nats log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        assert!(
            wait_for_port(self.client, Duration::from_secs(10)),
            "nats-server did not listen on {}",
            self.client
        );
    }

    /// kill -9 (by PID) and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(20).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An eater collecting the `payload` of every non-hub dumpling.
struct Collector {
    got: Arc<Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start(hub: &Hub, name: &str) -> Collector {
        let mut ws: Ws = connect(hub.eaters).await;
        let hello = serde_json::json!({ "eater_name": name }).to_string();
        ws.send(Message::text(hello)).await.expect("eater hello");
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if !matches!(m, Message::Text(_)) || is_chef(&m, "SystemStatusChef") {
                    continue;
                }
                let value: serde_json::Value =
                    serde_json::from_str(m.to_text().unwrap_or("{}")).unwrap_or_default();
                if let Some(n) = value["payload"]["n"].as_u64() {
                    g.lock().expect("lock").push(n);
                }
            }
        });
        Collector { got, task }
    }

    fn seen(&self) -> Vec<u64> {
        self.got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Wait until `n` dumplings arrived (or `limit`); returns what arrived.
    async fn wait_for(&self, n: usize, limit: Duration) -> Vec<u64> {
        let deadline = Instant::now() + limit;
        while self.seen().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.seen()
    }
}

/// A federated hub, ready once an eater handshake completes (it accepts nobody before
/// its stream and consumer exist).
async fn leaf_hub(args: &[&str]) -> Hub {
    let hub = Hub::start(args);
    if !nats::handshake_within(hub.eaters, Duration::from_secs(45)).await {
        let (_, log) = hub.stop();
        panic!("hub did not federate: {log}");
    }
    hub
}

/// Send dumplings `range` from a raw kitchen, each with a stable id (as `nd-sniff` does).
async fn send(k: &mut Ws, range: std::ops::Range<u64>) {
    for n in range {
        let text = format!(
            r#"{{"metadata":{{"nd_id":"site1k-{n}","chef":"LeafChef","kitchen":"site1k","creation_time":1.5,"driver":"packet"}},"payload":{{"n":{n}}}}}"#
        );
        k.send(Message::text(text)).await.expect("kitchen send");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn exactly(got: &[u64], n: u64) -> bool {
    let mut sorted = got.to_vec();
    sorted.sort_unstable();
    sorted == (0..n).collect::<Vec<_>>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_behind_a_leaf_node_keeps_serving_while_cut_off_and_the_main_cluster_catches_up() {
    let Some(binary) = nats::nats_server() else {
        return;
    };
    let dir = nats::scratch("leaf");
    let ports = nats::free_ports(3);
    let (main_port, leaf_port, site_port) = (ports[0], ports[1], ports[2]);
    let mut main = Server::start(
        &binary,
        &dir,
        "main",
        &format!(
            "server_name: main\nlisten: 127.0.0.1:{main_port}\nhttp: 0\n\
             jetstream {{\n  domain: hub\n  store_dir: \"{}\"\n}}\n\
             leafnodes {{\n  listen: 127.0.0.1:{leaf_port}\n}}\n",
            dir.join("js-main").display()
        ),
        main_port,
    );
    // The site's dumpling subjects stay on its side of the link (its stream is sourced
    // instead); status subjects cross it.
    // No `reconnect` in leafnodes: the default is 1 s in both 2.9 and 2.15, and 2.9 wants
    // it as a number where 2.15 wants a duration string.
    let _site = Server::start(
        &binary,
        &dir,
        "site1",
        &format!(
            "server_name: site1\nlisten: 127.0.0.1:{site_port}\nhttp: 0\n\
             jetstream {{\n  domain: site1\n  store_dir: \"{}\"\n}}\n\
             leafnodes {{\n  remotes: [ {{ url: \"nats-leaf://127.0.0.1:{leaf_port}\", \
             deny_exports: [\"nd.dumplings.>\"], deny_imports: [\"nd.dumplings.>\"] }} ]\n}}\n",
            dir.join("js-site1").display()
        ),
        site_port,
    );
    let main_url = format!("nats://127.0.0.1:{main_port}");
    let site_url = format!("nats://127.0.0.1:{site_port}");
    let status = ["--nats-status-period", "1"];
    let site_hub = leaf_hub(
        &[
            &[
                "--nats",
                &site_url,
                "--nats-domain",
                "site1",
                "--nats-hub-id",
                "site",
            ][..],
            &status[..],
        ]
        .concat(),
    )
    .await;
    let main_hub = leaf_hub(
        &[
            &[
                "--nats",
                &main_url,
                "--nats-source-domain",
                "site1",
                "--nats-hub-id",
                "main",
            ][..],
            &status[..],
        ]
        .concat(),
    )
    .await;
    let site_eater = Collector::start(&site_hub, "site-eater").await;
    let main_eater = Collector::start(&main_hub, "main-eater").await;
    let mut k = kitchen(site_hub.kitchens, r#"{"kitchen_name": "site1k"}"#).await;
    let context = |main: &Server| format!("main nats:\n{}\n", main.tail());

    // Link up: the main cluster gets the site's dumplings through the sourced stream.
    send(&mut k, 0..100).await;
    let got = main_eater.wait_for(100, Duration::from_secs(30)).await;
    assert!(
        exactly(&got, 100),
        "main got {} of 100 before the cut\n{}",
        got.len(),
        context(&main)
    );

    // Status subjects cross the link: the main hub's status lists the site hub and its
    // kitchen in its fleet section (status every second; a fresh eater's welcome status).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut fleet = serde_json::Value::Null;
    while Instant::now() < deadline {
        let (mut ws, status) = eater(main_hub.eaters, "fleet-probe").await;
        let _ = ws.close(None).await;
        fleet = status["payload"]["fleet"].clone();
        let site_listed = fleet["hubs"].as_array().into_iter().flatten().any(|h| {
            h["hub_id"] == "site"
                && h["kitchens"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kitchen_name"] == "site1k")
        });
        if site_listed {
            break;
        }
        fleet = serde_json::Value::Null;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !fleet.is_null(),
        "the main hub's fleet section never listed hub `site` with kitchen site1k\n{}",
        context(&main)
    );

    // Cut the link (kill -9 the main server): the site keeps serving its eater.
    main.kill();
    send(&mut k, 100..200).await;
    let got = site_eater.wait_for(200, Duration::from_secs(20)).await;
    assert!(
        exactly(&got, 200),
        "the site served {} of 200 while cut off",
        got.len()
    );
    assert_eq!(main_eater.seen().len(), 100, "nothing crossed a cut link");

    // Link back: the main cluster catches up, each dumpling once.
    main.spawn();
    send(&mut k, 200..250).await;
    // nats-server 2.15.1 re-creates the main stream's source of the site ~40 s after the
    // link returns (its own retry backoff: the first try, as the restarted server starts,
    // precedes the leaf link); 2.9.10 within ~2 s. The hubs do not nudge it.
    let got = main_eater.wait_for(250, Duration::from_secs(90)).await;
    assert!(
        exactly(&got, 250),
        "main got {} of 250 after the link returned\n{}",
        got.len(),
        context(&main)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(exactly(&main_eater.seen(), 250), "no duplicate afterwards");
    assert!(
        exactly(
            &site_eater.wait_for(250, Duration::from_secs(10)).await,
            250
        ),
        "the site eater got everything once"
    );
    drop(k);
    site_eater.task.abort();
    main_eater.task.abort();
    let _ = main_hub.stop();
    let _ = site_hub.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
