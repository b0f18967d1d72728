//! Reading a capture from a FIFO that a slow writer fills in pieces, cut at arbitrary
//! bytes (mid-record, mid-block): with `report_stalls`, the reader says when it has
//! stalled and then carries on exactly where it stopped, so the packets are the ones a
//! plain read of the file gives.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use capture::{CaptureError, FileReader, STALL_WAIT};

fn corpus(name: &str) -> PathBuf {
    let dir = match std::env::var_os("ND_SHARED_PCAPS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps"),
    };
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "missing {} (set ND_SHARED_PCAPS to the folder holding MANIFEST.tsv)",
        p.display()
    );
    p
}

/// (timestamp, link type, interface, bytes) of a packet.
type Seen = (u64, u32, u32, Vec<u8>);

/// Every packet of a plain read.
fn plain(path: &Path) -> Vec<Seen> {
    let mut r = FileReader::open(path).unwrap();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        out.push((
            p.timestamp_ns,
            p.link_type,
            p.interface_index,
            p.data.to_vec(),
        ));
    }
    out
}

/// Every packet read through a FIFO written in pieces, and how many stalls were reported.
fn through_a_slow_fifo(path: &Path, cuts: &[usize]) -> (Vec<Seen>, u32) {
    let bytes = std::fs::read(path).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/capture-test-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join(format!(
        "{}-{}.fifo",
        path.file_stem().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&fifo);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let writer_fifo = fifo.clone();
    let cuts = cuts.to_vec();
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_fifo)
            .unwrap();
        let mut from = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            let cut = cut.min(bytes.len());
            f.write_all(&bytes[from..cut]).unwrap();
            f.flush().unwrap();
            from = cut;
            // Long enough for the reader to report a stall between pieces.
            std::thread::sleep(STALL_WAIT * 8);
        }
    });
    let mut r = FileReader::open(&fifo).unwrap();
    assert!(r.report_stalls(true), "a FIFO can stall");
    let mut out = Vec::new();
    let mut stalls = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "the FIFO read did not end");
        match r.next_packet() {
            Ok(Some(p)) => out.push((
                p.timestamp_ns,
                p.link_type,
                p.interface_index,
                p.data.to_vec(),
            )),
            Ok(None) => break,
            Err(CaptureError::Stalled) => stalls += 1,
            Err(e) => panic!("{}: {e}", path.display()),
        }
    }
    writer.join().unwrap();
    let _ = std::fs::remove_file(&fifo);
    (out, stalls)
}

#[test]
fn a_stalled_fifo_resumes_mid_record_and_mid_block() {
    for (name, cuts) in [
        // Legacy pcap: inside the file header's tail, a record header, a record's data.
        (
            "pcapplusplus__Pcap++Test__PcapExamples__sll.pcap",
            vec![30, 1000, 1007, 50_000],
        ),
        // pcapng with several interfaces: inside the section header, an interface
        // description block, packet blocks.
        ("ndpi__opera-vpn.pcapng", vec![20, 200, 5000, 5003, 60_000]),
    ] {
        let path = corpus(name);
        let want = plain(&path);
        assert!(!want.is_empty());
        let (got, stalls) = through_a_slow_fifo(&path, &cuts);
        assert!(stalls > 0, "{name}: no stall was reported");
        assert_eq!(got.len(), want.len(), "{name}");
        assert!(got == want, "{name}: packets differ from a plain read");
    }
}

#[test]
fn a_regular_file_never_stalls() {
    let path = corpus("pcapplusplus__Pcap++Test__PcapExamples__sll.pcap");
    let mut r = FileReader::open(&path).unwrap();
    assert!(!r.report_stalls(true));
    let mut n = 0;
    while r.next_packet().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, plain(&path).len());
}
