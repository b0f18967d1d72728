//! Reads every capture of the shared third-party corpus (`/work/shared/pcaps`) with
//! [`capture::FileReader`] and checks it against `MANIFEST.tsv`: no panic, the packet count,
//! the container format and the link type (DLT) of every packet.
//!
//! Corpus location: `$ND_SHARED_PCAPS`, else `../shared/pcaps` relative to the workspace
//! root. When it is missing the test fails if `CI` is set and is skipped (with a message)
//! otherwise.
//!
//! Damaged files: the manifest's `packets` column comes from capinfos/libpcap, which count
//! the complete packets before the damage. The reader returns exactly those packets and
//! then `CaptureError::Damaged`; `DAMAGED` below lists the expected packet count and byte
//! offset of the damage for each.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Prints a skip message straight to stderr: libtest captures `eprintln!` of passing
/// tests, and a skip must be visible.
macro_rules! skip_note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use capture::{CaptureError, FileFormat, FileReader};

/// (file, packets before the damage, byte offset of the damaged record, reason fragment)
const DAMAGED: &[(&str, u64, u64, &str)] = &[
    // nsec pcap v2.0 (so caplen and len are swapped in record headers, as libpcap reads
    // them), DLT 0: one record of 16 + 197 bytes, then 2 stray bytes where the next 16-byte
    // record header should be. libpcap: "truncated dump file; tried to read 16 header
    // bytes, only got 2"; capinfos counts 1 packet.
    (
        "ndpi__fuzz-2021-10-13.pcap",
        1,
        237,
        "record header cut short",
    ),
    // 6 good records, then a record header with caplen 4325376 (> snaplen 262144).
    // libpcap: "invalid packet capture length 4325376, bigger than snaplen of 262144";
    // capinfos counts 6 packets.
    (
        "suricata-verify__bug-1450-05__tls_DER-incomplete-content.pcap",
        6,
        OFFSET_SURICATA,
        "invalid packet capture length 4325376",
    ),
];
const OFFSET_SURICATA: u64 = 5035;

/// Files libpcap 1.10 refuses (pcapng with interfaces of differing snaplen/link type).
const LIBPCAP_REFUSES: &[&str] = &[
    "zeek__ldap__modify-request.pcapng",
    "zeek__ldap__gap-data-missing.pcapng",
    "pcapplusplus__Packet++Test__PacketExamples__gtp.pcap",
];

struct Entry {
    file: String,
    dlt: u32,
    per_packet: bool,
    format: String,
    packets: u64,
}

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("ND_SHARED_PCAPS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps"),
    };
    if dir.join("MANIFEST.tsv").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "capture corpus not found at {} (set ND_SHARED_PCAPS to the folder holding MANIFEST.tsv)",
        dir.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    skip_note!("SKIPPED: {msg}");
    None
}

fn load_manifest(dir: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv")).expect("read MANIFEST.tsv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("manifest header").split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("manifest has no {name} column"))
    };
    let (c_file, c_link, c_fmt, c_pk) = (
        col("file"),
        col("link_type"),
        col("file_format"),
        col("packets"),
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let link = f[c_link];
            let dlt = link
                .rsplit_once("(DLT ")
                .and_then(|(_, rest)| rest.trim_end_matches(')').parse().ok())
                .unwrap_or_else(|| panic!("bad link_type {link:?}"));
            Entry {
                file: f[c_file].to_owned(),
                dlt,
                per_packet: link.starts_with("per-packet"),
                format: f[c_fmt].to_owned(),
                packets: f[c_pk].parse().expect("packets column"),
            }
        })
        .collect()
}

struct Outcome {
    packets: u64,
    dlts: BTreeMap<u32, u64>,
    format: Option<FileFormat>,
    error: Option<CaptureError>,
    bytes: u64,
}

fn read_file(path: &Path) -> Outcome {
    let mut out = Outcome {
        packets: 0,
        dlts: BTreeMap::new(),
        format: None,
        error: None,
        bytes: 0,
    };
    let mut reader = match FileReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    out.format = Some(reader.format());
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => {
                out.packets += 1;
                out.bytes += p.data.len() as u64;
                *out.dlts.entry(p.link_type).or_default() += 1;
                assert!(
                    (p.interface_index as usize) < reader_interfaces_len_hint(),
                    "interface index out of range"
                );
            }
            Ok(None) => break,
            Err(e) => {
                out.error = Some(e);
                break;
            }
        }
    }
    assert_eq!(reader.packets_read(), out.packets);
    // After the end or an error the reader stays finished.
    assert!(matches!(reader.next_packet(), Ok(None)));
    out
}

fn reader_interfaces_len_hint() -> usize {
    // Interface indices are checked against the reader's list in `interface_indices`;
    // here only a sanity bound (no corpus file has more than a handful).
    64
}

#[test]
fn every_corpus_file_matches_the_manifest() {
    let Some(dir) = corpus_dir() else {
        return;
    };
    let manifest = load_manifest(&dir);
    assert_eq!(manifest.len(), 164, "the manifest lists 164 captures");

    // Every file on disk is in the manifest and vice versa.
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("list corpus")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "MANIFEST.tsv" && n != "README.md")
        .collect();
    let listed: BTreeSet<String> = manifest.iter().map(|e| e.file.clone()).collect();
    assert_eq!(on_disk, listed, "files on disk vs MANIFEST.tsv");

    let mut failures = Vec::new();
    let mut total = 0u64;
    let mut damaged_seen = 0;
    for e in &manifest {
        let path = dir.join(&e.file);
        let o = match std::panic::catch_unwind(|| read_file(&path)) {
            Ok(o) => o,
            Err(_) => {
                failures.push(format!("{}: PANIC", e.file));
                continue;
            }
        };
        total += o.packets;
        if o.packets != e.packets {
            failures.push(format!(
                "{}: {} packets, manifest says {}",
                e.file, o.packets, e.packets
            ));
        }
        let want_format = match e.format.as_str() {
            "pcap" => FileFormat::Pcap,
            "nsecpcap" => FileFormat::NsecPcap,
            "pcapng" => FileFormat::PcapNg,
            other => panic!("unknown manifest format {other}"),
        };
        if o.format != Some(want_format) {
            failures.push(format!(
                "{}: format {:?}, manifest says {}",
                e.file, o.format, e.format
            ));
        }
        // Link types: every packet has the manifest's DLT, except for files whose
        // encapsulation capinfos calls "per-packet" (several interfaces), where the
        // manifest's DLT must be among them.
        let dlts: Vec<u32> = o.dlts.keys().copied().collect();
        let dlt_ok = if e.per_packet {
            o.dlts.contains_key(&e.dlt)
        } else {
            e.packets == 0 || dlts == [e.dlt]
        };
        if !dlt_ok {
            failures.push(format!(
                "{}: link types {:?}, manifest says {}DLT {}",
                e.file,
                o.dlts,
                if e.per_packet {
                    "per-packet incl. "
                } else {
                    ""
                },
                e.dlt
            ));
        }
        match (&o.error, DAMAGED.iter().find(|d| d.0 == e.file)) {
            (None, None) => {}
            (
                Some(CaptureError::Damaged {
                    path: p,
                    offset,
                    packets,
                    reason,
                }),
                Some(&(_, want_packets, want_offset, want_reason)),
            ) => {
                damaged_seen += 1;
                let msg = o
                    .error
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                if *packets != want_packets
                    || *offset != want_offset
                    || !reason.contains(want_reason)
                    || p != &path
                    || !msg.contains(&e.file)
                {
                    failures.push(format!(
                        "{}: damage reported as {msg:?} (offset {offset}), expected {want_packets} \
                         packets, offset {want_offset}, reason containing {want_reason:?}",
                        e.file
                    ));
                }
            }
            (Some(err), _) => failures.push(format!("{}: unexpected error: {err}", e.file)),
            (None, Some(_)) => failures.push(format!("{}: expected damage, read cleanly", e.file)),
        }
        if LIBPCAP_REFUSES.contains(&e.file.as_str()) && (o.packets == 0 || o.error.is_some()) {
            failures.push(format!("{}: a file libpcap refuses must be read", e.file));
        }
    }
    assert_eq!(damaged_seen, DAMAGED.len(), "both damaged files were seen");
    let manifest_total: u64 = manifest.iter().map(|e| e.packets).sum();
    println!(
        "corpus: {} files, {total} packets read (manifest total {manifest_total})",
        manifest.len()
    );
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(total, manifest_total);
}

#[test]
fn interface_indices_point_into_the_interface_list() {
    let Some(dir) = corpus_dir() else {
        return;
    };
    let mut multi = 0;
    for e in load_manifest(&dir) {
        let Ok(mut r) = FileReader::open(&dir.join(&e.file)) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        while let Ok(Some(p)) = r.next_packet() {
            seen.insert((p.interface_index, p.link_type));
        }
        for (idx, dlt) in &seen {
            let iface = r
                .interfaces()
                .get(*idx as usize)
                .unwrap_or_else(|| panic!("{}: interface {idx} not listed", e.file));
            assert_eq!(
                iface.link_type, *dlt,
                "{}: interface {idx} link type",
                e.file
            );
        }
        if r.interfaces().len() > 1 {
            multi += 1;
        }
    }
    // The three pcapng files libpcap refuses have several interfaces.
    assert!(multi >= 3, "only {multi} multi-interface files");
}
