//! Signed chefs and provenance (issue 10, items 5, 6 and 8's chef part), end to end with the
//! real binaries: `nd-chef keygen/sign/verify` (the Python front end over `nd-chef-trust`),
//! `nd-sniff --trusted-chef-keys` with real chef components (the kitchen's fixtures), a real
//! `nd-hub` and a raw WebSocket eater.
//!
//! The kitchen replays a FIFO that a writer thread feeds with small UDP packets (capture
//! times 100 ms apart, so `-p 1` pokes every 10 packets and a `KitchenStatusChef` dumpling
//! follows every poke); chef files and signatures are dropped into its chef directory while
//! it runs. Every wait is bounded.

#[path = "../../kitchen/src/fixtures_build.rs"]
mod fixtures_build;

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use e2e_tests::{
    bin, free_port, is_root, sha256_hex, spawn_hub, workspace_root, ChildGuard, LiveProcess,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Longest wait for one step (a chef compile on a busy 2-core machine included).
const STEP: Duration = Duration::from_secs(90);
const KITCHEN: &str = "signed_kitchen";

fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| fixtures_build::build_fixtures().unwrap_or_else(|e| panic!("{e}")))
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(format!("{name}.wasm"))
}

fn scratch(name: &str) -> PathBuf {
    let d = workspace_root()
        .join("target/signed-chefs-test")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// `nd-chef-trust ARGS`: (exit code, stdout + stderr).
fn trust(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin("nd-chef-trust"))
        .args(args)
        .output()
        .expect("run nd-chef-trust");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// `nd-chef-trust keygen --out PREFIX`, returning the key id it printed.
fn keygen(prefix: &Path) -> String {
    let (code, text) = trust(&["keygen", "--out", prefix.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("key id "))
        .expect("keygen prints the key id")
        .to_owned()
}

fn sign(chef: &Path, key: &Path, output: Option<&Path>) {
    let mut args = vec![
        "sign",
        chef.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    if let Some(o) = output {
        args.extend(["--output", o.to_str().unwrap()]);
    }
    let (code, text) = trust(&args);
    assert_eq!(code, 0, "{text}");
}

/// `nd-chef-trust sign CHEF --key KEY --signed-at AT [--output OUT]`.
fn sign_at(chef: &Path, key: &Path, at: u64, output: Option<&Path>) {
    let at = at.to_string();
    let mut args = vec![
        "sign",
        chef.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--signed-at",
        &at,
    ];
    if let Some(o) = output {
        args.extend(["--output", o.to_str().unwrap()]);
    }
    let (code, text) = trust(&args);
    assert_eq!(code, 0, "{text}");
}

fn flip_last_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Copy `from` to `to` the way a deploy should: a temporary name, then a rename.
fn land(from: &Path, to: &Path) {
    let tmp = to.with_extension("landing");
    std::fs::copy(from, &tmp).expect("copy");
    std::fs::rename(&tmp, to).expect("rename");
}

#[test]
fn nd_chef_keygen_sign_verify_round_trip() {
    let nd_chef = workspace_root().join("tools/nd-chef/nd-chef");
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "python3 is missing in CI");
        eprintln!("SKIP: python3 not found");
        return;
    }
    let root = scratch("round-trip");
    let run = |args: &[&str]| {
        let out = Command::new("python3")
            .arg(&nd_chef)
            .args(args)
            .env("ND_CHEF_TRUST", bin("nd-chef-trust"))
            .output()
            .expect("run nd-chef");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let (code, text) = run(&["keygen", "-o", &p(&root.join("alice"))]);
    assert_eq!(code, 0, "{text}");
    let alice_id = text
        .lines()
        .find_map(|l| l.strip_prefix("key id "))
        .unwrap()
        .to_owned();
    assert_eq!(alice_id.len(), 16, "{text}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(root.join("alice.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "private key mode");
    }
    assert!(std::fs::read_to_string(root.join("alice.key"))
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(std::fs::read_to_string(root.join("alice.pub"))
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    // The id is the same from either file, and stable.
    for f in ["alice.pub", "alice.key"] {
        let (code, text) = run(&["key-id", &p(&root.join(f))]);
        assert_eq!((code, text.trim()), (0, alice_id.as_str()));
    }
    // keygen never overwrites a key.
    let (code, text) = run(&["keygen", "-o", &p(&root.join("alice"))]);
    assert_ne!(code, 0);
    assert!(text.contains("already exists"), "{text}");
    let (code, _) = run(&["keygen", "-o", &p(&root.join("mallory"))]);
    assert_eq!(code, 0);
    let trusted = root.join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(root.join("alice.pub"), trusted.join("alice.pub")).unwrap();

    let chef = root.join("chef.wasm");
    std::fs::copy(fixture("echo_chef"), &chef).unwrap();
    let verify = |chef: &Path| run(&["verify", &p(chef), "--trusted-keys", &p(&trusted)]);
    // Unsigned.
    let (code, text) = verify(&chef);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("unsigned") && text.contains("key id none"),
        "{text}"
    );
    // Signed by a trusted key.
    let (code, text) = run(&["sign", &p(&chef), "--key", &p(&root.join("alice.key"))]);
    assert_eq!(code, 0, "{text}");
    let sig = std::fs::read_to_string(root.join("chef.wasm.sig")).unwrap();
    let sig: serde_json::Value = serde_json::from_str(&sig).unwrap();
    assert_eq!(sig["key_id"], alice_id.as_str());
    assert_eq!(sig["sha256"], sha256_hex(&chef).as_str());
    let (code, text) = verify(&chef);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&alice_id), "{text}");
    // One byte flipped after signing.
    flip_last_byte(&chef);
    let (code, text) = verify(&chef);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("does not match its signature") && text.contains(&alice_id),
        "{text}"
    );
    flip_last_byte(&chef);
    // Signed by a key that is not trusted.
    let (code, text) = run(&["sign", &p(&chef), "--key", &p(&root.join("mallory.key"))]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = verify(&chef);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("not in the trusted keys directory"), "{text}");
    // A private key others can read is refused, as ssh does.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("alice.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
    }
    let (code, text) = run(&["sign", &p(&chef), "--key", &p(&root.join("alice.key"))]);
    assert_ne!(code, 0);
    assert!(text.contains("chmod 600"), "{text}");
}

#[test]
fn without_the_flag_every_chef_loads_and_the_list_shows_provenance() {
    let root = scratch("no-flag");
    let chefs = root.join("chefs");
    std::fs::create_dir_all(&chefs).unwrap();
    let a = keygen(&root.join("a"));
    let signed = chefs.join("signed.wasm");
    std::fs::copy(fixture("reload_chef"), &signed).unwrap();
    sign(&signed, &root.join("a.key"), None);
    std::fs::copy(fixture("echo_chef"), chefs.join("unsigned.wasm")).unwrap();
    let out = Command::new(bin("nd-sniff"))
        .args(["-l", "--no-chef-cache", "-d"])
        .arg(&chefs)
        .output()
        .expect("nd-sniff -l");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let block = |name: &str| -> String {
        text.split("\n\n")
            .find(|b| b.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .to_owned()
    };
    let r = block("ReloadChef");
    assert!(
        r.contains(&format!("sha256:   {}", sha256_hex(&signed))),
        "{r}"
    );
    assert!(
        r.contains(&format!("signed:   key {a} (not enforced")),
        "{r}"
    );
    let e = block("EchoChef");
    assert!(e.contains("signed:   no"), "{e}");
    // Built-ins: covered by the binary.
    let b = block("PacketCountChef");
    assert!(b.contains("signed:   built-in"), "{b}");
    assert!(b.contains("sha256:   "), "{b}");
}

/// A raw eater that reconnects, keeping every dumpling it gets.
struct Eater {
    got: Arc<Mutex<Vec<serde_json::Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Eater {
    fn start(port: u16) -> Eater {
        let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let url = format!("ws://127.0.0.1:{port}/");
                while !st.load(Ordering::Relaxed) {
                    let Ok(Ok((mut ws, _))) = tokio::time::timeout(
                        Duration::from_secs(2),
                        tokio_tungstenite::connect_async(url.as_str()),
                    )
                    .await
                    else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    if ws
                        .send(Message::text(r#"{"eater_name": "signed-test"}"#))
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    while !st.load(Ordering::Relaxed) {
                        match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
                            Err(_) => continue,
                            Ok(Some(Ok(Message::Text(t)))) => {
                                if let Ok(v) = serde_json::from_str(t.as_str()) {
                                    g.lock().unwrap().push(v);
                                }
                            }
                            Ok(Some(Ok(_))) => {}
                            Ok(_) => break,
                        }
                    }
                }
            });
        });
        Eater {
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Wait for a dumpling from `chef` (received after position `from`) that `ok` accepts.
    fn wait_for(
        &self,
        chef: &str,
        from: usize,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + STEP;
        loop {
            {
                let got = self.got.lock().unwrap();
                if let Some(v) = got
                    .iter()
                    .skip(from)
                    .rev()
                    .find(|v| v["metadata"]["chef"] == chef && ok(v))
                {
                    return v.clone();
                }
                if Instant::now() > deadline {
                    let last = got.iter().rev().find(|v| v["metadata"]["chef"] == chef);
                    panic!("no {chef} dumpling with {what} within {STEP:?}; last: {last:?}");
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

impl Drop for Eater {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_hub(kitchen_port: u16, eater_port: u16) -> ChildGuard {
    spawn_hub(kitchen_port, eater_port, &["-f", "0.3"])
}

fn pcap_header() -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // Ethernet
    h
}

/// One record: Ethernet + IPv4 + UDP 40000 → 9999 carrying `seq`, at T0 + seq × 100 ms.
fn packet(seq: u32) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 32, 0, 1, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 1]);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&9999u16.to_be_bytes());
    f.extend_from_slice(&[0, 12, 0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    let ts_ms = 1_700_000_000_000u64 + u64::from(seq) * 100;
    let mut r = Vec::new();
    r.extend_from_slice(&((ts_ms / 1000) as u32).to_le_bytes());
    r.extend_from_slice(&(((ts_ms % 1000) * 1000) as u32).to_le_bytes());
    r.extend_from_slice(&(f.len() as u32).to_le_bytes());
    r.extend_from_slice(&(f.len() as u32).to_le_bytes());
    r.extend_from_slice(&f);
    r
}

/// Feeds the kitchen's FIFO from a thread: the header, then a packet every 5 ms.
struct Feeder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    fn start(fifo: &Path, kitchen: &mut LiveProcess) -> Feeder {
        use std::os::unix::fs::OpenOptionsExt;
        let deadline = Instant::now() + STEP;
        // Non-blocking open (ENXIO until nd-sniff opens its end), bounded.
        let mut file = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(0o4000) // O_NONBLOCK
                .open(fifo)
            {
                Ok(f) => break f,
                Err(_) if Instant::now() < deadline => {
                    if let Ok(Some(s)) = kitchen.child.try_wait() {
                        panic!("nd-sniff exited early ({s}):\n{}", kitchen.stderr_text());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("nd-sniff never opened the FIFO: {e}"),
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut write_all = |mut bytes: &[u8]| -> bool {
                while !bytes.is_empty() {
                    match file.write(bytes) {
                        Ok(n) => bytes = &bytes[n..],
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            if st.load(Ordering::Relaxed) {
                                return false;
                            }
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => return false,
                    }
                }
                true
            };
            if !write_all(&pcap_header()) {
                return;
            }
            let mut seq = 0u32;
            while !st.load(Ordering::Relaxed) {
                if !write_all(&packet(seq)) {
                    return;
                }
                seq += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Feeder {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wait until one stderr line (after line `from`) contains every needle; returns it.
fn wait_line(k: &LiveProcess, from: usize, needles: &[&str]) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        {
            let lines = k.stderr.lock().unwrap();
            if let Some(l) = lines
                .iter()
                .skip(from)
                .find(|l| needles.iter().all(|n| l.contains(n)))
            {
                return l.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no stderr line with {needles:?} within {STEP:?}:\n{}",
            k.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_len(k: &LiveProcess) -> usize {
    k.stderr.lock().unwrap().len()
}

#[test]
fn trusted_chef_keys_at_start_and_on_hot_reload() {
    let root = scratch("enforced");
    let (chefs, trusted, cache) = (root.join("chefs"), root.join("trusted"), root.join("cache"));
    for d in [&chefs, &trusted] {
        std::fs::create_dir_all(d).unwrap();
    }
    let a = keygen(&root.join("a"));
    let b = keygen(&root.join("b"));
    std::fs::copy(root.join("a.pub"), trusted.join("a.pub")).unwrap();
    let (a_key, b_key) = (root.join("a.key"), root.join("b.key"));

    // At start: one good chef, and an unsigned, a tampered and a wrongly keyed one.
    let good = chefs.join("good.wasm");
    std::fs::copy(fixture("reload_chef"), &good).unwrap();
    sign(&good, &a_key, None);
    let unsigned = chefs.join("unsigned.wasm");
    std::fs::copy(fixture("echo_chef"), &unsigned).unwrap();
    let tampered = chefs.join("tampered.wasm");
    std::fs::copy(fixture("port_chef"), &tampered).unwrap();
    sign(&tampered, &a_key, None);
    flip_last_byte(&tampered);
    let wrong = chefs.join("wrongkey.wasm");
    std::fs::copy(fixture("clock_chef"), &wrong).unwrap();
    sign(&wrong, &b_key, None);

    // `-l` shows the provenance and the refusals.
    let out = Command::new(bin("nd-sniff"))
        .args(["-l", "--chef-cache-dir"])
        .arg(&cache)
        .arg("-d")
        .arg(&chefs)
        .arg("--trusted-chef-keys")
        .arg(&trusted)
        .output()
        .expect("nd-sniff -l");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{list}");
    let good_sha = sha256_hex(&good);
    assert!(list.contains(&format!("sha256:   {good_sha}")), "{list}");
    assert!(
        list.contains(&format!("signed:   key {a} (trusted)")),
        "{list}"
    );
    assert!(
        !list.contains("EchoChef") && !list.contains("PortChef") && !list.contains("ClockChef")
    );
    for (file, needle) in [
        ("unsigned.wasm", "unsigned: no signature file".to_owned()),
        ("tampered.wasm", "does not match its signature".to_owned()),
        ("wrongkey.wasm", format!("key id {b}")),
    ] {
        let block = list
            .split("\n\n")
            .find(|b| b.contains(file))
            .unwrap_or_else(|| panic!("{file} not listed:\n{list}"));
        assert!(
            block.contains("untrusted chef refused") && block.contains(&needle),
            "{block}"
        );
    }

    let (kport, eport) = (free_port(), free_port());
    let hub = start_hub(kport, eport);
    let eater = Eater::start(eport);
    let fifo = root.join("packets.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut k = LiveProcess::spawn(
        Command::new(bin("nd-sniff"))
            .arg("-r")
            .arg(&fifo)
            .arg("-d")
            .arg(&chefs)
            .arg("--trusted-chef-keys")
            .arg(&trusted)
            .arg("--chef-cache-dir")
            .arg(&cache)
            .args(["-h", &format!("127.0.0.1:{kport}"), "-n", KITCHEN])
            .args(["-p", "1", "--kitchen-status", "on", "--flush-timeout", "1"])
            .env("RUST_LOG", "info"),
    );
    let feeder = Feeder::start(&fifo, &mut k);

    // One line per refused chef: file, reason, key id.
    let l = wait_line(&k, 0, &["unsigned.wasm", "unsigned: no signature file"]);
    assert!(l.contains("key id none"), "{l}");
    let l = wait_line(&k, 0, &["tampered.wasm", "does not match its signature"]);
    assert!(l.contains(&format!("key id {a}")), "{l}");
    let l = wait_line(
        &k,
        0,
        &["wrongkey.wasm", "not in the trusted keys directory"],
    );
    assert!(l.contains(&format!("key id {b}")), "{l}");

    // The hello (as the hub shows it) and the kitchen status carry the provenance.
    let hello_of = |v: &serde_json::Value| -> Option<serde_json::Value> {
        v["payload"]["dumpling_kitchens"]
            .as_array()?
            .iter()
            .find(|k| k["info_from_kitchen"]["kitchen_name"] == KITCHEN)
            .map(|k| k["info_from_kitchen"].clone())
    };
    let status = eater.wait_for("SystemStatusChef", 0, "our kitchen", |v| {
        hello_of(v).is_some()
    });
    let hello = hello_of(&status).unwrap();
    let ids = &hello["chef_identities"];
    assert_eq!(ids["ReloadChef"]["sha256"], good_sha.as_str(), "{hello}");
    assert_eq!(ids["ReloadChef"]["key_id"], a.as_str(), "{hello}");
    assert!(
        ids["PacketCountChef"]["sha256"].is_string(),
        "built-ins have a hash"
    );
    assert!(ids["PacketCountChef"].get("key_id").is_none());
    for refused in ["EchoChef", "PortChef", "ClockChef"] {
        assert!(ids.get(refused).is_none(), "{refused} runs: {hello}");
    }
    // The original's list of names is still there, for original eaters.
    let names = hello["chefs"].as_array().expect("chefs list");
    assert!(names
        .iter()
        .any(|n| n.as_str().is_some_and(|n| n.ends_with(".ReloadChef"))));
    let ks = eater.wait_for("KitchenStatusChef", 0, "ReloadChef's hash", |v| {
        v["payload"]["chefs"]["ReloadChef"]["sha256"] == good_sha.as_str()
    });
    assert_eq!(ks["payload"]["chefs"]["ReloadChef"]["key_id"], a.as_str());

    // Hot reload. An unsigned chef dropped in is refused...
    let staging = root.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let late = chefs.join("late.wasm");
    let mark = stderr_len(&k);
    land(&fixture("noop_chef"), &late);
    let l = wait_line(&k, mark, &["late.wasm", "unsigned: no signature file"]);
    assert!(l.contains("key id none"), "{l}");
    // ...and starts when its signature lands.
    let mark = stderr_len(&k);
    sign(&late, &a_key, None);
    wait_line(
        &k,
        mark,
        &["chef added from the chef directory", "NoopChef"],
    );
    let late_sha = sha256_hex(&late);

    // A chef signed by an untrusted key (signature first, then the chef).
    let mark = stderr_len(&k);
    let wrong_late = chefs.join("late_wrong.wasm");
    std::fs::copy(fixture("v2_chef"), staging.join("late_wrong.wasm")).unwrap();
    sign(
        &staging.join("late_wrong.wasm"),
        &b_key,
        Some(&chefs.join("late_wrong.wasm.sig")),
    );
    land(&staging.join("late_wrong.wasm"), &wrong_late);
    let l = wait_line(
        &k,
        mark,
        &["late_wrong.wasm", "not in the trusted keys directory"],
    );
    assert!(l.contains(&format!("key id {b}")), "{l}");

    // A tampered chef (signed, then one byte flipped).
    let mark = stderr_len(&k);
    let t = staging.join("late_tampered.wasm");
    std::fs::copy(fixture("echo_chef"), &t).unwrap();
    sign(&t, &a_key, Some(&chefs.join("late_tampered.wasm.sig")));
    flip_last_byte(&t);
    land(&t, &chefs.join("late_tampered.wasm"));
    let l = wait_line(
        &k,
        mark,
        &["late_tampered.wasm", "does not match its signature"],
    );
    assert!(l.contains(&format!("key id {a}")), "{l}");

    // A new version of the good chef: the component lands before its signature. It is
    // refused until then (the verified version keeps running), and swapped in after.
    let mark = stderr_len(&k);
    let v2 = staging.join("good.wasm");
    std::fs::copy(fixture("reload_chef_v2"), &v2).unwrap();
    sign(&v2, &a_key, Some(&staging.join("good.wasm.sig")));
    land(&v2, &good);
    let l = wait_line(&k, mark, &["good.wasm", "does not match its signature"]);
    assert!(l.contains("the previous version keeps running"), "{l}");
    let mark = stderr_len(&k);
    land(&staging.join("good.wasm.sig"), &chefs.join("good.wasm.sig"));
    wait_line(&k, mark, &["chef reloaded", "ReloadChef"]);
    let v2_sha = sha256_hex(&good);
    assert_ne!(v2_sha, good_sha);

    // The status after the reload carries the new identities.
    let from = eater.len();
    let ks = eater.wait_for("KitchenStatusChef", from, "the new hashes", |v| {
        v["payload"]["chefs"]["ReloadChef"]["sha256"] == v2_sha.as_str()
            && v["payload"]["chefs"]["NoopChef"]["sha256"] == late_sha.as_str()
    });
    assert_eq!(ks["payload"]["chefs"]["NoopChef"]["key_id"], a.as_str());
    let failures = &ks["payload"]["load_failures"];
    for f in ["late_wrong.wasm", "late_tampered.wasm", "unsigned.wasm"] {
        assert!(
            failures
                .as_object()
                .is_some_and(|m| m.keys().any(|p| p.ends_with(f))),
            "{f} not in load_failures: {failures}"
        );
    }

    // The hello sent on the next connection lists the chefs running now: restart the hub.
    drop(eater);
    drop(hub);
    let _hub = start_hub(kport, eport);
    let eater = Eater::start(eport);
    let status = eater.wait_for("SystemStatusChef", 0, "our kitchen's new hello", |v| {
        hello_of(v).is_some_and(|h| h["chef_identities"]["ReloadChef"]["sha256"] == v2_sha.as_str())
    });
    let hello = hello_of(&status).unwrap();
    assert_eq!(
        hello["chef_identities"]["NoopChef"]["key_id"],
        a.as_str(),
        "{hello}"
    );
    assert!(hello["chefs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().is_some_and(|n| n.ends_with(".NoopChef"))));

    // Rollback on hot reload: the first build with a signature older than the running
    // version's is refused (the newer version keeps running)...
    let old = root.join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(fixture("reload_chef"), old.join("good.wasm")).unwrap();
    sign_at(&old.join("good.wasm"), &a_key, 1000, None);
    let mark = stderr_len(&k);
    land(&old.join("good.wasm.sig"), &chefs.join("good.wasm.sig"));
    land(&old.join("good.wasm"), &good);
    let l = wait_line(&k, mark, &["good.wasm", "signed at 1000", "a rollback"]);
    assert!(l.contains("sign it again"), "{l}");
    // ...and signing it again (now, later than the running version) is how to go back.
    let mark = stderr_len(&k);
    sign(&good, &a_key, None);
    wait_line(&k, mark, &["chef reloaded", "ReloadChef"]);
    drop(feeder);
}

/// `nd-sniff -l --no-builtin-chefs -d CHEFS --trusted-chef-keys TRUSTED ARGS`: the listing
/// block of `file` (or of the chef `file` names), and stderr.
fn list_block(
    chefs: &Path,
    trusted: &Path,
    args: &[&std::ffi::OsStr],
    file: &str,
) -> (String, String) {
    let mut all = vec![os("-d"), os(chefs), os("--trusted-chef-keys"), os(trusted)];
    all.extend_from_slice(args);
    let (code, out, err) = sniff_list(&all);
    assert_eq!(code, 0, "{out}{err}");
    let block = out
        .split("\n\n")
        .find(|b| b.contains(file))
        .unwrap_or_else(|| panic!("{file} not listed:\n{out}\n{err}"))
        .to_owned();
    (block, err)
}

/// Signature v2: an older signed build put back is refused (also after a restart: the
/// memory is kept in the compiled-chef cache folder), re-signing it is how to go back, a
/// signed chef copied under another name is refused, and v1 signatures load with a warning
/// until a v2 version of that file ran.
#[test]
fn rollbacks_and_copies_under_another_name_are_refused() {
    let root = scratch("rollback");
    let (chefs, trusted, cache) = (root.join("chefs"), root.join("trusted"), root.join("cache"));
    let (old, new) = (root.join("old"), root.join("new"));
    for d in [&chefs, &trusted, &old, &new] {
        std::fs::create_dir_all(d).unwrap();
    }
    let a = keygen(&root.join("a"));
    std::fs::copy(root.join("a.pub"), trusted.join("a.pub")).unwrap();
    let a_key = root.join("a.key");
    std::fs::copy(fixture("reload_chef"), old.join("good.wasm")).unwrap();
    sign_at(&old.join("good.wasm"), &a_key, 1000, None);
    std::fs::copy(fixture("reload_chef_v2"), new.join("good.wasm")).unwrap();
    sign_at(&new.join("good.wasm"), &a_key, 2000, None);
    let sig: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(new.join("good.wasm.sig")).unwrap()).unwrap();
    assert_eq!(sig["format"], "netdumplings-chef-signature-v2");
    assert_eq!(sig["file_name"], "good.wasm");
    assert_eq!(sig["signed_at"], 2000);
    let good = chefs.join("good.wasm");
    let put = |from: &Path| {
        land(&from.join("good.wasm.sig"), &chefs.join("good.wasm.sig"));
        land(&from.join("good.wasm"), &good);
    };
    let with_cache = [os("--chef-cache-dir"), os(&cache)];

    // The newer build runs (one kitchen run)...
    put(&new);
    let (b, _) = list_block(&chefs, &trusted, &with_cache, "ReloadChef");
    assert!(b.contains(&format!("signed:   key {a} (trusted)")), "{b}");
    assert!(cache.join("signed-chef-versions.json").is_file());
    // ...so in the next run the older one is a rollback.
    put(&old);
    let (b, _) = list_block(&chefs, &trusted, &with_cache, "good.wasm");
    assert!(
        b.contains("untrusted chef refused")
            && b.contains("signed at 1000")
            && b.contains("signed at 2000")
            && b.contains("a rollback"),
        "{b}"
    );
    // Without the cache the memory is for one run only, and the warning says so.
    let (b, err) = list_block(&chefs, &trusted, &[os("--no-chef-cache")], "ReloadChef");
    assert!(b.contains("(trusted)"), "{b}");
    assert!(err.contains("kept for this run only"), "{err}");
    // Going back on purpose: sign the older build again.
    sign_at(&good, &a_key, 3000, None);
    let (b, _) = list_block(&chefs, &trusted, &with_cache, "ReloadChef");
    assert!(
        b.contains(&format!("sha256:   {}", sha256_hex(&old.join("good.wasm")))),
        "{b}"
    );
    assert!(b.contains("(trusted)"), "{b}");

    // A signed chef copied under another name.
    let copy = chefs.join("copy.wasm");
    std::fs::copy(&good, &copy).unwrap();
    std::fs::copy(chefs.join("good.wasm.sig"), chefs.join("copy.wasm.sig")).unwrap();
    let (b, _) = list_block(&chefs, &trusted, &with_cache, "copy.wasm");
    assert!(
        b.contains("untrusted chef refused")
            && b.contains("signed for the file name good.wasm, not copy.wasm"),
        "{b}"
    );
    std::fs::remove_file(&copy).unwrap();
    std::fs::remove_file(chefs.join("copy.wasm.sig")).unwrap();

    // A v1 signature (older deployments): loads, with a warning naming the file...
    let legacy = chefs.join("legacy.wasm");
    std::fs::copy(fixture("echo_chef"), &legacy).unwrap();
    let key = chef_trust::read_signing_key(&a_key).unwrap();
    let v1 = chef_trust::SignatureFile::sign_v1(&std::fs::read(&legacy).unwrap(), &key).to_text();
    std::fs::write(chefs.join("legacy.wasm.sig"), &v1).unwrap();
    let (b, err) = list_block(&chefs, &trusted, &with_cache, "EchoChef");
    assert!(b.contains("(trusted)"), "{b}");
    assert!(
        err.contains("legacy.wasm")
            && err.contains("old v1 signature")
            && err.contains("not protected against")
            && err.contains("nd-chef sign"),
        "{err}"
    );
    // ...until a v2-signed version of that file has run: then a v1 signature is a way back.
    sign_at(&legacy, &a_key, 5000, None);
    let (b, _) = list_block(&chefs, &trusted, &with_cache, "EchoChef");
    assert!(b.contains("(trusted)"), "{b}");
    std::fs::write(chefs.join("legacy.wasm.sig"), &v1).unwrap();
    let (b, _) = list_block(&chefs, &trusted, &with_cache, "legacy.wasm");
    assert!(
        b.contains("untrusted chef refused") && b.contains("v1") && b.contains("a rollback"),
        "{b}"
    );
}

/// `nd-sniff -l --no-builtin-chefs ARGS`: (exit code, stdout, stderr).
fn sniff_list(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(bin("nd-sniff"))
        .args(["-l", "--no-builtin-chefs"])
        .args(args)
        .output()
        .expect("nd-sniff -l");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn os<P: AsRef<std::ffi::OsStr> + ?Sized>(p: &P) -> &std::ffi::OsStr {
    p.as_ref()
}

fn chown_nobody(path: &Path) {
    let ok = Command::new("chown")
        .arg("nobody")
        .arg(path)
        .status()
        .expect("chown")
        .success();
    assert!(ok, "chown nobody {}", path.display());
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Probe F7: `nd-chef-trust` printed file names raw, so an unsigned chef named
/// `x.wasm\r\e[2Ktrusted: ...` read, on a terminal, as "trusted". Every name it prints now
/// comes out escaped: no control character but the line ends, one line per verdict. (The old
/// binary printed the CR, ESC, BEL and newline as they were.)
#[test]
fn nd_chef_trust_prints_file_names_escaped() {
    let root = scratch("escaped");
    keygen(&root.join("a"));
    let trusted = root.join("trusted");
    std::fs::create_dir_all(&trusted).unwrap();
    std::fs::copy(root.join("a.pub"), trusted.join("a.pub")).unwrap();
    let spoof = root.join("dns.wasm\r\x1b[0m\x1b[2Ktrusted: dns.wasm signed by key\x1b[8m");
    std::fs::copy(fixture("echo_chef"), &spoof).unwrap();
    let forged = root.join("a\x1b]0;T\x07\nFORGED: trusted.wasm");
    std::fs::copy(fixture("echo_chef"), &forged).unwrap();
    let clean = |text: &str| {
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "control characters in {text:?}"
        );
    };
    let trusted_arg = trusted.to_str().unwrap();
    // Unsigned: one line, "refused", with the name escaped.
    let (code, text) = trust(&[
        "verify",
        spoof.to_str().unwrap(),
        "--trusted-keys",
        trusted_arg,
    ]);
    assert_eq!(code, 1, "{text}");
    clean(&text);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("refused: ") && text.contains("\\r\\x1b[0m"),
        "{text}"
    );
    // Signed, verified, and keygen/key-id with odd names: all escaped.
    let key = root.join("a.key");
    let (code, text) = trust(&[
        "sign",
        forged.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    clean(&text);
    assert!(text.contains("a\\x1b]0;T\\x07\\nFORGED"), "{text}");
    let (code, text) = trust(&[
        "verify",
        forged.to_str().unwrap(),
        "--trusted-keys",
        trusted_arg,
    ]);
    assert_eq!(code, 0, "{text}");
    clean(&text);
    assert_eq!(text.lines().count(), 1, "{text}");
    let odd = root.join("k\x1b[31m\nx");
    let (code, text) = trust(&["keygen", "--out", odd.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    clean(&text);
    let missing = root.join("no\x1b[31mkey\n.pub");
    let (code, text) = trust(&["key-id", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    clean(&text);
    assert!(text.contains("no\\x1b[31mkey\\n.pub"), "{text}");
}

/// Probe F4: `nd-chef-trust sign` wrote `CHEF.wasm.sig.tmp` with O_CREAT|O_TRUNC, following
/// a link planted there by whoever can write the chef folder: a root signer overwrote the
/// link's target (the old binary replaced `victim.txt` with the signature). Now the
/// signature goes through a new, randomly named file and a rename.
#[test]
fn signing_never_writes_through_a_planted_link() {
    let root = scratch("planted-link");
    keygen(&root.join("a"));
    let chefs = root.join("chefs");
    std::fs::create_dir_all(&chefs).unwrap();
    let victim = root.join("victim.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    let chef = chefs.join("new_chef.wasm");
    std::fs::copy(fixture("echo_chef"), &chef).unwrap();
    std::os::unix::fs::symlink(&victim, chefs.join("new_chef.wasm.sig.tmp")).unwrap();
    sign(&chef, &root.join("a.key"), None);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    let sig = std::fs::read_to_string(chefs.join("new_chef.wasm.sig")).unwrap();
    assert!(sig.contains("netdumplings-chef-signature-v2"), "{sig}");
    // A link at the signature's own name is replaced, not written through.
    std::fs::remove_file(chefs.join("new_chef.wasm.sig")).unwrap();
    std::os::unix::fs::symlink(&victim, chefs.join("new_chef.wasm.sig")).unwrap();
    sign(&chef, &root.join("a.key"), None);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!std::fs::symlink_metadata(chefs.join("new_chef.wasm.sig"))
        .unwrap()
        .is_symlink());
    // Nothing else left in the folder (no temporary files).
    assert_eq!(std::fs::read_dir(&chefs).unwrap().count(), 3);
}

/// Probe F6 and F10: a trusted `.pub` holding a small-order point (the identity) was
/// accepted, and a signature anyone can write (R = identity, s = 0) then verified for any
/// chef (`nd-sniff -l` listed it as signed by a trusted key). Now such a key file is an
/// error naming it, in `nd-sniff` and `nd-chef-trust verify`; and a bad key file whose name
/// holds a newline is named escaped.
#[test]
fn weak_trusted_keys_are_refused() {
    let root = scratch("weak-key");
    let (keys, chefs) = (root.join("keys"), root.join("chefs"));
    for d in [&keys, &chefs] {
        std::fs::create_dir_all(d).unwrap();
    }
    // SPKI PEM of the ed25519 identity point (01 00 .. 00).
    std::fs::write(
        keys.join("weak.pub"),
        "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let chef = chefs.join("evil.wasm");
    std::fs::copy(fixture("echo_chef"), &chef).unwrap();
    let mut identity = "01".to_owned();
    identity.push_str(&"00".repeat(31));
    // key id: sha256 of the raw key, first 8 bytes.
    let key_id = {
        let raw = root.join("raw");
        let mut b = vec![1u8];
        b.extend([0u8; 31]);
        std::fs::write(&raw, b).unwrap();
        sha256_hex(&raw)[..16].to_owned()
    };
    let sig = serde_json::json!({
        "format": "netdumplings-chef-signature-v1",
        "key_id": key_id,
        "public_key": identity,
        "sha256": sha256_hex(&chef),
        "signature": format!("{identity}{}", "00".repeat(32)),
    });
    std::fs::write(chefs.join("evil.wasm.sig"), sig.to_string()).unwrap();
    let (code, text) = trust(&[
        "verify",
        chef.to_str().unwrap(),
        "--trusted-keys",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("weak.pub") && text.contains("weak (small-order)"),
        "{text}"
    );
    let (code, out, err) =
        sniff_list(&[os("-d"), os(&chefs), os("--trusted-chef-keys"), os(&keys)]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(!out.contains("EchoChef"), "{out}");
    assert!(
        err.contains("weak.pub") && err.contains("weak (small-order)"),
        "{err}"
    );
    // A bad key file named with a terminal escape and a newline: named escaped.
    std::fs::remove_file(keys.join("weak.pub")).unwrap();
    std::fs::write(keys.join("bad\x1b[31m\nname.pub"), "x").unwrap();
    let (code, _, err) = sniff_list(&[os("-d"), os(&chefs), os("--trusted-chef-keys"), os(&keys)]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("bad\\x1b[31m\\nname.pub"), "{err}");
    assert!(!err.contains('\x1b'), "{err:?}");
}

/// Probe F8: a `--trusted-chef-keys` folder others can write (0777), or a key in it owned by
/// another user, was trusted silently: anyone could add a key and have their chefs run (the
/// old binary listed such a chef as signed by a trusted key). Refused now, as ssh's
/// `StrictModes`, naming the folder or file and the fix.
#[test]
fn trusted_keys_others_can_write_are_refused() {
    let root = scratch("key-perms");
    let (keys, chefs) = (root.join("keys"), root.join("chefs"));
    for d in [&keys, &chefs] {
        std::fs::create_dir_all(d).unwrap();
    }
    keygen(&root.join("a"));
    std::fs::copy(root.join("a.pub"), keys.join("a.pub")).unwrap();
    let chef = chefs.join("chef.wasm");
    std::fs::copy(fixture("echo_chef"), &chef).unwrap();
    sign(&chef, &root.join("a.key"), None);
    let list = || sniff_list(&[os("-d"), os(&chefs), os("--trusted-chef-keys"), os(&keys)]);
    let (code, out, err) = list();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("EchoChef"), "{out}");
    set_mode(&keys, 0o777);
    let (code, out, err) = list();
    assert_ne!(code, 0, "{out}{err}");
    assert!(!out.contains("EchoChef"), "{out}");
    assert!(
        err.contains("writable by group or others (mode 0777)") && err.contains("chmod go-w"),
        "{err}"
    );
    let (code, text) = trust(&[
        "verify",
        chef.to_str().unwrap(),
        "--trusted-keys",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("chmod go-w"), "{text}");
    set_mode(&keys, 0o755);
    set_mode(&keys.join("a.pub"), 0o666);
    let (code, _, err) = list();
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("a.pub") && err.contains("mode 0666"), "{err}");
    set_mode(&keys.join("a.pub"), 0o644);
    if !is_root() {
        eprintln!("SKIP trusted_keys_others_can_write_are_refused (another owner): needs root to chown to nobody");
        return;
    }
    // A key someone else owns (mode 0644), then a whole folder someone else owns.
    chown_nobody(&keys.join("a.pub"));
    let (code, _, err) = list();
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("a.pub") && err.contains("owned by uid"),
        "{err}"
    );
    std::fs::copy(root.join("a.pub"), keys.join("b.pub")).unwrap();
    std::fs::remove_file(keys.join("a.pub")).unwrap();
    chown_nobody(&keys);
    let (code, _, err) = list();
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("owned by uid") && err.contains("chown root"),
        "{err}"
    );
}

/// Probe F1: a compiled-chef cache folder owned by another user (mode 0755, so the
/// group/other write check passed) let that user swap the compiled code of a signed chef for
/// another chef's: a root kitchen with `--trusted-chef-keys` ran it, and `-l` listed the
/// impostor as signed by a trusted key (the old binary listed EchoChef here). Now the folder
/// is not used (one warning naming it and the fix) and the signed chef is what runs.
#[test]
fn a_compiled_chef_cache_another_user_owns_is_not_used() {
    if !is_root() {
        eprintln!("SKIP a_compiled_chef_cache_another_user_owns_is_not_used: needs root to chown to nobody");
        return;
    }
    let root = scratch("cache-owner");
    let (signed, unsigned, trusted) = (
        root.join("signed"),
        root.join("unsigned"),
        root.join("trusted"),
    );
    for d in [&signed, &unsigned, &trusted] {
        std::fs::create_dir_all(d).unwrap();
    }
    keygen(&root.join("a"));
    std::fs::copy(root.join("a.pub"), trusted.join("a.pub")).unwrap();
    std::fs::copy(fixture("reload_chef"), signed.join("good.wasm")).unwrap();
    sign(&signed.join("good.wasm"), &root.join("a.key"), None);
    std::fs::copy(fixture("echo_chef"), unsigned.join("evil.wasm")).unwrap();
    // Compile both into a cache of ours, to get the signed chef's entry name and the
    // impostor's compiled code.
    let own = root.join("own-cache");
    let entries = || -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&own)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    };
    let (code, out, err) = sniff_list(&[os("-d"), os(&signed), os("--chef-cache-dir"), os(&own)]);
    assert_eq!(code, 0, "{out}{err}");
    let good_entry = entries().pop().expect("an entry");
    let (code, out, err) = sniff_list(&[os("-d"), os(&unsigned), os("--chef-cache-dir"), os(&own)]);
    assert_eq!(code, 0, "{out}{err}");
    let evil_entry = entries().into_iter().find(|p| *p != good_entry).unwrap();
    // The other user's cache: the impostor under the signed chef's name.
    let foreign = root.join("foreign-cache");
    std::fs::create_dir_all(&foreign).unwrap();
    set_mode(&foreign, 0o755);
    let planted = foreign.join(good_entry.file_name().unwrap());
    std::fs::copy(&evil_entry, &planted).unwrap();
    chown_nobody(&planted);
    chown_nobody(&foreign);
    let (code, out, err) = sniff_list(&[
        os("-d"),
        os(&signed),
        os("--trusted-chef-keys"),
        os(&trusted),
        os("--chef-cache-dir"),
        os(&foreign),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ReloadChef") && !out.contains("EchoChef"),
        "{out}"
    );
    assert!(
        err.contains("compiled-chef cache disabled")
            && err.contains("foreign-cache")
            && err.contains("owned by uid")
            && err.contains("chown"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&foreign).unwrap().count(),
        1,
        "nothing written there"
    );
}
