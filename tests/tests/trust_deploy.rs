//! The README's "Deployment: TLS, tokens and a firewall" recipe, run as a three-host
//! deployment simulated on loopback: the hub "host" listens on 127.0.0.2 only (127.0.0.1
//! when that address cannot be bound) and every client reaches it by that address, as a
//! remote host would; two kitchen hosts (`nd-sniff` replaying a capture as `sensor-a` and
//! `sensor-b`, each with its own token) and an eater host (`nd-print` as `dns-team`,
//! restricted to `DNSLookupChef`, and as `reader`, unrestricted).
//!
//! The certificates are made with the recipe's own `openssl` commands (skipped with a
//! message when `openssl` is missing); tokens with `nd-hub token`; the auth file is the
//! recipe's. Checks: each eater gets exactly what it may see, byte for byte; no
//! unauthenticated peer reads or writes anything (plain ws:// on the TLS ports, no token,
//! a wrong token, a token of the wrong role, an `nd-print` without a token); a kitchen
//! using another kitchen's name and a kitchen using the hub's reserved chef names are
//! refused, counted, and reach no eater.

#[path = "hub_support.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{bin, free_port, on_path, test_data, wait_for_port, ChildGuard};
use futures_util::SinkExt;
use hub_link::{Link, LinkError, Token};
use support::{is_chef, nd_hub_token, next_data, Ws};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

/// The hub host's address: 127.0.0.2 when it can be bound, else 127.0.0.1.
fn hub_host() -> Ipv4Addr {
    let second = Ipv4Addr::new(127, 0, 0, 2);
    if TcpListener::bind((second, 0)).is_ok() {
        second
    } else {
        Ipv4Addr::LOCALHOST
    }
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Principal {
    name: &'static str,
    token: String,
    token_file: PathBuf,
}

/// Step 2 of the recipe: a token per principal, the auth file with their hashes, and a
/// 0600 token file per client.
fn principals(dir: &Path) -> (Vec<Principal>, PathBuf) {
    let spec = [
        ("sensor-a", "kitchen", "kitchens = [\"sensor-a\"]"),
        ("sensor-b", "kitchen", "kitchens = [\"sensor-b\"]"),
        ("dns-team", "eater", "chefs = [\"DNSLookupChef\"]"),
        ("reader", "eater", ""),
    ];
    let mut auth = String::new();
    let mut out = Vec::new();
    for (name, role, extra) in spec {
        let (token, hash) = nd_hub_token();
        auth.push_str(&format!(
            "[[principal]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{hash}\"\n{extra}\n\n"
        ));
        let token_file = dir.join(format!("{name}.token"));
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        sh(dir, &format!("chmod 600 {name}.token"));
        out.push(Principal {
            name,
            token,
            token_file,
        });
    }
    let path = dir.join("auth.toml");
    assert!(
        !auth.contains(&out[0].token),
        "the hub's file holds no token"
    );
    std::fs::write(&path, auth).unwrap();
    (out, path)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

async fn connect(link: &Link, uri: &str, hello: serde_json::Value) -> Result<Ws, LinkError> {
    let (mut ws, _) = tokio::time::timeout(T, link.connect(uri, None))
        .await
        .expect("connect in time")?;
    ws.send(Message::text(hello.to_string())).await.unwrap();
    Ok(ws)
}

fn dumpling(chef: &str, kitchen: &str, seq: u64) -> Message {
    Message::text(
        serde_json::json!({
            "metadata": {"chef": chef, "kitchen": kitchen, "creation_time": 1.5, "driver": "interval"},
            "payload": {"seq": seq, "dumpling_kitchen_count": 999}
        })
        .to_string(),
    )
}

fn json(message: &Message) -> serde_json::Value {
    serde_json::from_str(message.to_text().unwrap()).unwrap()
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn nd_print(uri: &str, ca: &Path, token_file: Option<&Path>) -> ChildGuard {
    let mut cmd = Command::new(bin("nd-print"));
    cmd.args(["-h", uri, "--json", "--tls-ca", s(ca)])
        .args(["-k", "sensor-a", "-k", "sensor-b"])
        .env_remove("ND_HUB_TOKEN");
    if let Some(file) = token_file {
        cmd.args(["--token-file", s(file)]);
    }
    ChildGuard::spawn("nd-print", &mut cmd)
}

#[tokio::test]
async fn three_host_recipe_with_tls_and_tokens() {
    let capture = test_data("original/loopback_dns_arp_http.pcap");
    if on_path("openssl").is_none() || !capture.exists() {
        eprintln!(
            "SKIP: needs the openssl command (apt-get install openssl) and {}",
            capture.display()
        );
        return;
    }
    let host = hub_host();
    let dir = std::env::temp_dir().join(format!("nd-deploy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // 1. The recipe's private CA and hub certificate naming the hub's address.
    sh(
        &dir,
        &format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
               -subj '/CN=netdumplings CA' -keyout ca.key -out ca.pem 2>/dev/null
             openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=hub' \
               -keyout hub.key -out hub.csr 2>/dev/null
             printf 'subjectAltName=DNS:localhost,IP:{host}\\n' > san.ext
             openssl x509 -req -in hub.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
               -extfile san.ext -out hub.pem 2>/dev/null && chmod 600 hub.key ca.key"
        ),
    );
    let ca = dir.join("ca.pem");
    // 2. Tokens and the auth file.
    let (people, auth) = principals(&dir);
    let [sensor_a, sensor_b, dns_team, reader] = &people[..] else {
        unreachable!()
    };
    // 3. The hub host: TLS and tokens on both ports, on its own address only.
    let (kp, ep) = (free_port(), free_port());
    let _hub = ChildGuard::spawn(
        "nd-hub",
        Command::new(bin("nd-hub"))
            .args([
                "-a",
                &host.to_string(),
                "-i",
                &kp.to_string(),
                "-o",
                &ep.to_string(),
            ])
            .args(["-f", "0.5", "--tls-cert", s(&dir.join("hub.pem"))])
            .args(["--tls-key", s(&dir.join("hub.key")), "--auth", s(&auth)]),
    );
    let (kitchens, eaters): (SocketAddr, SocketAddr) = ((host, kp).into(), (host, ep).into());
    assert!(
        wait_for_port(kitchens, T) && wait_for_port(eaters, T),
        "hub up"
    );
    let k_uri = format!("wss://{kitchens}");
    let e_uri = format!("wss://{eaters}");

    // No unauthenticated peer reads or writes: plain ws:// on a TLS port, no token, a
    // wrong token, a token of the other role.
    for uri in [format!("ws://{kitchens}"), format!("ws://{eaters}")] {
        assert!(
            Link::plain().connect(&uri, None).await.is_err(),
            "plain {uri}"
        );
    }
    let with = |t: Option<&str>| {
        Link::new(Some(&ca), None, t.map(|t| Token::new(t, "test").unwrap())).unwrap()
    };
    for uri in [&k_uri, &e_uri] {
        for link in [with(None), with(Some("not-a-token"))] {
            let error = connect(&link, uri, serde_json::json!({"eater_name": "x"}))
                .await
                .expect_err("refused");
            assert!(
                matches!(error, LinkError::Unauthorized { .. }),
                "{uri}: {error}"
            );
        }
    }
    let error = connect(
        &with(Some(&reader.token)),
        &k_uri,
        serde_json::json!({"kitchen_name": "sensor-a"}),
    )
    .await
    .expect_err("an eater token cannot write");
    assert!(
        matches!(error, LinkError::NotAHub { status: 403, .. }),
        "{error}"
    );
    let error = connect(
        &with(Some(&sensor_a.token)),
        &e_uri,
        serde_json::json!({"eater_name": "x"}),
    )
    .await
    .expect_err("a kitchen token cannot read");
    assert!(
        matches!(error, LinkError::NotAHub { status: 403, .. }),
        "{error}"
    );
    let anonymous = nd_print(&e_uri, &ca, None).wait_output(T);
    assert!(
        !anonymous.status.success(),
        "nd-print without a token fails"
    );
    let message = String::from_utf8_lossy(&anonymous.stderr);
    assert!(
        message.contains("401") && message.contains("--token-file"),
        "{message}"
    );
    assert!(lines(&anonymous.stdout).is_empty(), "and reads nothing");

    // The eater host: nd-print for dns-team and reader, plus a raw reader connection
    // that sees statuses and anything a forgery could slip through.
    let dns_print = nd_print(&e_uri, &ca, Some(&dns_team.token_file));
    let all_print = nd_print(&e_uri, &ca, Some(&reader.token_file));
    let reader_link = with(Some(&reader.token));
    let mut watch = connect(
        &reader_link,
        &e_uri,
        serde_json::json!({"eater_name": "watch"}),
    )
    .await
    .expect("reader joins");
    let deadline = Instant::now() + T;
    loop {
        let status = json(&next_data(&mut watch, T).await.expect("status"));
        if status["payload"]["dumpling_eater_count"] == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both printers registered: {status}"
        );
    }

    // The kitchen hosts, each with its own token file.
    let mut produced = Vec::new();
    for p in [sensor_a, sensor_b] {
        let out = ChildGuard::spawn(
            "nd-sniff",
            Command::new(bin("nd-sniff"))
                .arg("-r")
                .arg(&capture)
                .args(["-n", p.name, "-h", &k_uri, "--tls-ca", s(&ca)])
                .args(["--token-file", s(&p.token_file), "--stdout", "-p", "3600"])
                .env_remove("ND_HUB_TOKEN"),
        )
        .wait_output(Duration::from_secs(60));
        assert!(
            out.status.success(),
            "{}: {}",
            p.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let made = lines(&out.stdout);
        assert!(!made.is_empty(), "{} made dumplings", p.name);
        produced.extend(made);
    }
    let dns_expected: Vec<String> = produced
        .iter()
        .filter(|l| l.contains("\"chef\":\"DNSLookupChef\""))
        .cloned()
        .collect();
    assert!(!dns_expected.is_empty(), "the capture has DNS lookups");

    // A compromised sensor-b: another kitchen's name and the hub's own chef names.
    let mut rogue = connect(
        &with(Some(&sensor_b.token)),
        &k_uri,
        serde_json::json!({"kitchen_name": "sensor-b"}),
    )
    .await
    .expect("sensor-b joins");
    rogue
        .send(dumpling("DNSLookupChef", "sensor-a", 1))
        .await
        .unwrap();
    rogue
        .send(dumpling("SystemStatusChef", "sensor-b", 2))
        .await
        .unwrap();
    rogue
        .send(dumpling("HubNoticeChef", "hub", 3))
        .await
        .unwrap();
    rogue
        .send(dumpling("MarkerChef", "sensor-b", 4))
        .await
        .unwrap();
    // The watcher gets every honest dumpling, then the marker, and never a forgery.
    let mut seen = 0;
    loop {
        let message = next_data(&mut watch, T).await.expect("watcher data");
        let v = json(&message);
        if v["metadata"]["chef"] == "MarkerChef" {
            break;
        }
        assert_ne!(
            v["payload"]["dumpling_kitchen_count"], 999,
            "forgery delivered: {v}"
        );
        if is_chef(&message, "SystemStatusChef") {
            continue;
        }
        assert_eq!(
            message.to_text().unwrap(),
            produced[seen],
            "in order, byte for byte"
        );
        seen += 1;
    }
    assert_eq!(
        seen,
        produced.len(),
        "the watcher got everything before the marker"
    );
    let status = loop {
        let message = next_data(&mut watch, T).await.expect("a status");
        if is_chef(&message, "SystemStatusChef") {
            break json(&message);
        }
    };
    let rogue_entry = status["payload"]["dumpling_kitchens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["info_from_hub"]["dumplings_refused"] == 3)
        .cloned();
    assert!(
        rogue_entry.is_some(),
        "3 forgeries refused and counted: {status}"
    );

    // Printers: exactly what each may see.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (guard, expected, who) in [
        (dns_print, &dns_expected, "dns-team"),
        (all_print, &produced, "reader"),
    ] {
        guard.interrupt();
        let out = guard.wait_output(T);
        let got: Vec<String> = lines(&out.stdout)
            .into_iter()
            .filter(|l| !l.contains("MarkerChef"))
            .collect();
        assert_eq!(
            &got,
            expected,
            "{who}; stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
