//! Unit tests of the capture-file reader: synthesized pcap and pcapng files, every way
//! of being cut short or corrupt.

use super::*;
use std::io::Write;

/// A temporary file under the system temp dir, removed on drop.
struct TempFile(PathBuf);
impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("capture-unit-{}-{name}", std::process::id()));
        let mut f = File::create(&path).expect("create temp file");
        f.write_all(bytes).expect("write temp file");
        TempFile(path)
    }
}
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pcap_header(magic: u32, big_endian: bool, snaplen: u32, dlt: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let w32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    w32(&mut v, magic);
    let w16 = |v: &mut Vec<u8>, x: u16| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    w16(&mut v, 2);
    w16(&mut v, 4);
    w32(&mut v, 0);
    w32(&mut v, 0);
    w32(&mut v, snaplen);
    w32(&mut v, dlt);
    v
}

fn pcap_record(v: &mut Vec<u8>, big_endian: bool, sec: u32, frac: u32, data: &[u8], orig: u32) {
    for x in [sec, frac, data.len() as u32, orig] {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        });
    }
    v.extend_from_slice(data);
}

/// `bytes` written into a FIFO named after `name` in writes of `chunk` bytes, read back with
/// [`read_all`]; `None` when this system cannot make a FIFO.
fn read_through_fifo(
    name: &str,
    bytes: Vec<u8>,
    chunk: usize,
) -> Option<(Vec<OwnedPkt>, Option<CaptureError>)> {
    let fifo = std::env::temp_dir().join(format!("capture-unit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !matches!(made, Ok(s) if s.success()) {
        return None;
    }
    let path = fifo.clone();
    let writer = std::thread::spawn(move || {
        let mut f = File::create(&path).expect("open fifo for writing");
        for part in bytes.chunks(chunk) {
            f.write_all(part).expect("write fifo");
        }
    });
    let mut r = FileReader::open(&fifo).expect("open fifo");
    let out = read_all(&mut r);
    writer.join().expect("writer");
    let _ = std::fs::remove_file(&fifo);
    Some(out)
}

fn read_all(r: &mut FileReader) -> (Vec<OwnedPkt>, Option<CaptureError>) {
    let mut out = Vec::new();
    loop {
        match r.next_packet() {
            Ok(Some(p)) => out.push(OwnedPkt {
                ts: p.timestamp_ns,
                dlt: p.link_type,
                ifx: p.interface_index,
                orig: p.original_len,
                data: p.data.to_vec(),
            }),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

#[derive(Debug, PartialEq)]
struct OwnedPkt {
    ts: u64,
    dlt: u32,
    ifx: u32,
    orig: u32,
    data: Vec<u8>,
}

#[test]
fn legacy_le_be_us_ns() {
    for (magic, be, nanos) in [
        (0xa1b2c3d4u32, false, false),
        (0xa1b2c3d4, true, false),
        (0xa1b23c4d, false, true),
        (0xa1b23c4d, true, true),
    ] {
        let mut v = pcap_header(magic, be, 65535, 1);
        pcap_record(&mut v, be, 10, 500, b"abcdef", 60);
        pcap_record(&mut v, be, 11, 7, b"xyz", 3);
        let f = TempFile::new(&format!("legacy-{be}-{nanos}.pcap"), &v);
        let mut r = FileReader::open(&f.0).expect("open");
        assert_eq!(
            r.format(),
            if nanos {
                FileFormat::NsecPcap
            } else {
                FileFormat::Pcap
            }
        );
        let (pkts, err) = read_all(&mut r);
        assert!(err.is_none(), "{err:?}");
        let mul = if nanos { 1 } else { 1000 };
        assert_eq!(pkts.len(), 2);
        assert_eq!(pkts[0].ts, 10_000_000_000 + 500 * mul);
        assert_eq!(pkts[0].data, b"abcdef");
        assert_eq!(pkts[0].orig, 60);
        assert_eq!(pkts[0].dlt, 1);
        assert_eq!(pkts[1].ts, 11_000_000_000 + 7 * mul);
        assert_eq!(pkts[1].data, b"xyz");
        assert_eq!(r.packets_read(), 2);
        // fused
        assert!(r.next_packet().expect("fused").is_none());
    }
}

#[test]
fn small_buffer_and_growth() {
    // Records larger than the initial buffer force `grow`; many records force refills.
    let mut v = pcap_header(0xa1b2c3d4, false, 262_144, 1);
    let big = vec![0x5au8; 200_000];
    for i in 0..50u32 {
        let len = if i % 10 == 3 {
            big.len()
        } else {
            (i as usize * 37) % 1500
        };
        pcap_record(&mut v, false, i, 0, &big[..len], len as u32);
    }
    let f = TempFile::new("grow.pcap", &v);
    let mut r = FileReader::open_with_buffer(&f.0, 64).expect("open");
    let (pkts, err) = read_all(&mut r);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pkts.len(), 50);
    for (i, p) in pkts.iter().enumerate() {
        let len = if i % 10 == 3 {
            big.len()
        } else {
            (i * 37) % 1500
        };
        assert_eq!(p.data.len(), len);
        assert_eq!(p.ts, i as u64 * 1_000_000_000);
    }
}

#[test]
fn truncation_everywhere_is_damage_not_panic() {
    let mut v = pcap_header(0xa1b2c3d4, false, 65535, 1);
    pcap_record(&mut v, false, 1, 0, &[1u8; 100], 100);
    pcap_record(&mut v, false, 2, 0, &[2u8; 100], 100);
    let first_end = 24 + 16 + 100;
    for cut in 0..v.len() {
        let f = TempFile::new(&format!("cut-{cut}.pcap"), &v[..cut]);
        match FileReader::open(&f.0) {
            Err(CaptureError::NotCapture { .. }) => assert!(cut < 4),
            Err(CaptureError::Damaged { packets, .. }) => {
                assert!((4..24).contains(&cut), "cut {cut}");
                assert_eq!(packets, 0);
            }
            Err(e) => panic!("cut {cut}: unexpected {e}"),
            Ok(mut r) => {
                let (pkts, err) = read_all(&mut r);
                let whole = usize::from(cut >= first_end);
                assert_eq!(pkts.len(), whole, "cut {cut}");
                let clean = cut == 24 || cut == first_end;
                match err {
                    None => assert!(clean, "cut {cut} should be damaged"),
                    Some(CaptureError::Damaged {
                        offset, packets, ..
                    }) => {
                        assert!(!clean, "cut {cut}");
                        assert_eq!(packets, whole as u64);
                        assert_eq!(offset, if whole == 1 { first_end as u64 } else { 24 });
                    }
                    Some(e) => panic!("cut {cut}: unexpected {e}"),
                }
            }
        }
    }
}

#[test]
fn reads_from_a_pipe() {
    let mut v = pcap_header(0xa1b2c3d4, false, 65535, 1);
    for i in 0..1000u32 {
        pcap_record(&mut v, false, i, 0, &[i as u8; 300], 300);
    }
    // Small writes, so the reader sees short reads.
    let Some((pkts, err)) = read_through_fifo("fifo", v, 1000) else {
        return; // no mkfifo: nothing to test here
    };
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pkts.len(), 1000);
    assert!(pkts
        .iter()
        .enumerate()
        .all(|(i, p)| p.data == [i as u8; 300]));
}

#[test]
fn bogus_caplen_is_damage() {
    let mut v = pcap_header(0xa1b2c3d4, false, 65535, 1);
    pcap_record(&mut v, false, 1, 0, &[1u8; 10], 10);
    for x in [1u32, 0, 4_325_376, 4_325_376] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(&[0u8; 64]);
    let f = TempFile::new("bogus.pcap", &v);
    let mut r = FileReader::open(&f.0).expect("open");
    let (pkts, err) = read_all(&mut r);
    assert_eq!(pkts.len(), 1);
    let err = err.expect("damage");
    let msg = err.to_string();
    assert!(msg.contains("4325376"), "{msg}");
    assert!(msg.contains("bogus.pcap"), "{msg}");
}

#[test]
fn not_capture_and_empty() {
    let f = TempFile::new("text.pcap", b"hello world, not a capture");
    let e = FileReader::open(&f.0).expect_err("must fail");
    let msg = e.to_string();
    assert!(matches!(e, CaptureError::NotCapture { .. }));
    assert!(
        msg.contains("text.pcap") && msg.contains("not a pcap or pcapng"),
        "{msg}"
    );
    let f = TempFile::new("empty.pcap", b"");
    let e = FileReader::open(&f.0).expect_err("must fail");
    assert!(e.to_string().contains("empty file"), "{e}");
    let e = FileReader::open(Path::new("/nonexistent/nd-capture.pcap")).expect_err("fail");
    assert!(matches!(e, CaptureError::Io { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/nd-capture.pcap"));
}

// ---- pcapng builders ----

fn ng_block(v: &mut Vec<u8>, be: bool, block_type: u32, body: &[u8]) {
    let w = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
    let padded = body.len().div_ceil(4) * 4;
    let len = (12 + padded) as u32;
    v.extend_from_slice(&w(block_type));
    v.extend_from_slice(&w(len));
    v.extend_from_slice(body);
    v.extend(std::iter::repeat_n(0u8, padded - body.len()));
    v.extend_from_slice(&w(len));
}

fn shb(v: &mut Vec<u8>, be: bool) {
    let mut body = Vec::new();
    let w32 = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
    body.extend_from_slice(&w32(0x1A2B_3C4D));
    body.extend_from_slice(
        &(if be {
            1u16.to_be_bytes()
        } else {
            1u16.to_le_bytes()
        }),
    );
    body.extend_from_slice(
        &(if be {
            0u16.to_be_bytes()
        } else {
            0u16.to_le_bytes()
        }),
    );
    body.extend_from_slice(&(-1i64).to_le_bytes());
    ng_block(v, be, SHB_TYPE, &body);
}

fn idb(
    v: &mut Vec<u8>,
    be: bool,
    dlt: u16,
    snaplen: u32,
    tsresol: Option<u8>,
    name: &str,
    tsoffset: i64,
) {
    let w16 = |x: u16| if be { x.to_be_bytes() } else { x.to_le_bytes() };
    let w32 = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
    let mut body = Vec::new();
    body.extend_from_slice(&w16(dlt));
    body.extend_from_slice(&w16(0));
    body.extend_from_slice(&w32(snaplen));
    let mut opt = |code: u16, val: &[u8]| {
        body.extend_from_slice(&w16(code));
        body.extend_from_slice(&w16(val.len() as u16));
        body.extend_from_slice(val);
        body.extend(std::iter::repeat_n(
            0u8,
            val.len().div_ceil(4) * 4 - val.len(),
        ));
    };
    if !name.is_empty() {
        opt(2, name.as_bytes());
    }
    if let Some(r) = tsresol {
        opt(9, &[r]);
    }
    if tsoffset != 0 {
        opt(
            14,
            &(if be {
                tsoffset.to_be_bytes()
            } else {
                tsoffset.to_le_bytes()
            }),
        );
    }
    opt(0, &[]);
    ng_block(v, be, IDB_TYPE, &body);
}

fn epb(v: &mut Vec<u8>, be: bool, if_id: u32, ts: u64, data: &[u8], orig: u32) {
    let w32 = |x: u32| if be { x.to_be_bytes() } else { x.to_le_bytes() };
    let mut body = Vec::new();
    for x in [if_id, (ts >> 32) as u32, ts as u32, data.len() as u32, orig] {
        body.extend_from_slice(&w32(x));
    }
    body.extend_from_slice(data);
    body.extend(std::iter::repeat_n(
        0u8,
        data.len().div_ceil(4) * 4 - data.len(),
    ));
    ng_block(v, be, EPB_TYPE, &body);
}

#[test]
fn pcapng_sections_interfaces_resolutions() {
    let mut v = Vec::new();
    // Section 1, little-endian: eth (µs default) and raw IP at ns resolution.
    shb(&mut v, false);
    idb(&mut v, false, 1, 65535, None, "eth0", 0);
    idb(&mut v, false, 101, 8192, Some(9), "tun0", 0);
    epb(&mut v, false, 0, 1_500_000, b"first", 100);
    ng_block(&mut v, false, 4, &[0u8; 8]); // name resolution block: skipped
    epb(&mut v, false, 1, 2_000_000_123, b"second!", 7);
    // Simple packet block on interface 0 (no timestamp: previous one is reused).
    let mut spb = 3u32.to_le_bytes().to_vec();
    spb.extend_from_slice(b"spb");
    ng_block(&mut v, false, SPB_TYPE, &spb);
    // Section 2, big-endian: SLL with 2^-10 resolution.
    shb(&mut v, true);
    idb(&mut v, true, 113, 0, Some(0x80 | 10), "", 100);
    epb(&mut v, true, 0, 3 * 1024 + 512, b"third", 5);
    // Obsolete packet block in section 2.
    let mut pb = Vec::new();
    pb.extend_from_slice(&0u16.to_be_bytes());
    pb.extend_from_slice(&0u16.to_be_bytes());
    for x in [0u32, 1024, 2, 2] {
        pb.extend_from_slice(&x.to_be_bytes());
    }
    pb.extend_from_slice(b"pb\0\0");
    ng_block(&mut v, true, OBSOLETE_PB_TYPE, &pb);

    let f = TempFile::new("multi.pcapng", &v);
    let mut r = FileReader::open(&f.0).expect("open");
    assert_eq!(r.format(), FileFormat::PcapNg);
    let (pkts, err) = read_all(&mut r);
    assert!(err.is_none(), "{err:?}");
    let want = vec![
        OwnedPkt {
            ts: 1_500_000_000,
            dlt: 1,
            ifx: 0,
            orig: 100,
            data: b"first".to_vec(),
        },
        OwnedPkt {
            ts: 2_000_000_123,
            dlt: 12,
            ifx: 1,
            orig: 7,
            data: b"second!".to_vec(),
        },
        OwnedPkt {
            ts: 2_000_000_123,
            dlt: 1,
            ifx: 0,
            orig: 3,
            data: b"spb".to_vec(),
        },
        OwnedPkt {
            ts: 103_500_000_000,
            dlt: 113,
            ifx: 2,
            orig: 5,
            data: b"third".to_vec(),
        },
        OwnedPkt {
            ts: 101_000_000_000,
            dlt: 113,
            ifx: 2,
            orig: 2,
            data: b"pb".to_vec(),
        },
    ];
    assert_eq!(pkts, want);
    let names: Vec<&str> = r.interfaces().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["eth0", "tun0", ""]);
    assert_eq!(r.interfaces()[1].snaplen, 8192);
    assert_eq!(r.byte_offset(), v.len() as u64);

    // Every truncation point: packets before the cut, then damage or a clean end.
    for cut in 4..v.len() {
        let f = TempFile::new(&format!("ngcut-{cut}.pcapng"), &v[..cut]);
        if let Ok(mut r) = FileReader::open(&f.0) {
            let (pkts, _err) = read_all(&mut r);
            assert!(pkts.len() <= want.len());
            assert_eq!(pkts[..], want[..pkts.len()], "cut {cut}");
        }
    }
}

#[test]
fn pcapng_interfaces_are_counted_per_section_and_numbered_over_the_file() {
    // `cat`-ed captures: more sections, each with its own interface 0, than one section may
    // describe interfaces. Each packet names its section's interface and gets a file-wide
    // index; the list keeps the first MAX_INTERFACES.
    let sections = super::pcapng::MAX_INTERFACES + 3;
    let mut v = Vec::new();
    for s in 0..sections {
        shb(&mut v, s % 2 == 1);
        idb(
            &mut v,
            s % 2 == 1,
            if s % 3 == 0 { 1 } else { 101 },
            0,
            None,
            "x",
            0,
        );
        epb(&mut v, s % 2 == 1, 0, s as u64, b"p", 1);
    }
    let f = TempFile::new("sections.pcapng", &v);
    let mut r = FileReader::open(&f.0).expect("open");
    let (pkts, err) = read_all(&mut r);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pkts.len(), sections);
    for (s, p) in pkts.iter().enumerate() {
        assert_eq!(p.ifx, s as u32, "packet {s}");
        assert_eq!(p.dlt, if s % 3 == 0 { 1 } else { 12 }, "packet {s}");
        assert_eq!(p.ts, s as u64 * 1_000, "packet {s}");
    }
    assert_eq!(r.interfaces().len(), super::pcapng::MAX_INTERFACES);

    // One section describing more than MAX_INTERFACES: refused, naming the section.
    let mut v = Vec::new();
    shb(&mut v, false);
    for _ in 0..=super::pcapng::MAX_INTERFACES {
        idb(&mut v, false, 1, 0, None, "", 0);
    }
    epb(&mut v, false, 0, 1, b"p", 1);
    let f = TempFile::new("one-section.pcapng", &v);
    let mut r = FileReader::open(&f.0).expect("open");
    let (pkts, err) = read_all(&mut r);
    assert!(pkts.is_empty());
    let err = err.expect("refused").to_string();
    assert!(
        err.contains("interface descriptions in one section"),
        "{err}"
    );

    // A long if_name is kept cut (at a character boundary).
    let mut v = Vec::new();
    shb(&mut v, false);
    idb(&mut v, false, 1, 0, None, &"\u{e9}".repeat(4000), 0);
    epb(&mut v, false, 0, 1, b"p", 1);
    let f = TempFile::new("long-name.pcapng", &v);
    let mut r = FileReader::open(&f.0).expect("open");
    assert_eq!(read_all(&mut r).0.len(), 1);
    let name = &r.interfaces()[0].name;
    assert!(name.len() <= 256 && name.len() >= 254 && name.chars().all(|c| c == '\u{e9}'));
}

#[test]
fn a_malformed_first_header_is_reported_without_the_file_bytes() {
    // A section header of every implausible length, followed by a megabyte: the error
    // names the problem in one short line (pcap-parser's own text lists the input bytes).
    for len in [0u32, 4, 8, 11, 12, 13, 0xffff_fff0] {
        let mut v = SHB_TYPE.to_le_bytes().to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        v.extend(std::iter::repeat_n(0x41u8, 1 << 20));
        let f = TempFile::new(&format!("shb-{len}.pcapng"), &v);
        let text = match FileReader::open(&f.0) {
            Err(e) => e.to_string(),
            Ok(mut r) => read_all(&mut r).1.expect("refused").to_string(),
        };
        assert!(
            text.len() < 300,
            "length {len}: {} bytes: {text:.300}",
            text.len()
        );
        assert!(!text.contains("65, 65"), "{text}");
    }
}

#[test]
fn frames_longer_than_libpcaps_limit_are_cut_and_counted() {
    // Legacy pcap, snaplen 2^32-1: a 300 000-byte frame, then a small one.
    let mut v = pcap_header(0xa1b2_c3d4, false, u32::MAX, 1);
    for len in [300_000u32, 60] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        pcap_record(&mut v, false, 1, 0, &data, len);
    }
    let f = TempFile::new("long-frame.pcap", &v);
    let mut r = FileReader::open(&f.0).expect("open");
    let (pkts, err) = read_all(&mut r);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pkts.len(), 2);
    assert_eq!(pkts[0].data.len(), crate::MAX_FRAME_BYTES);
    assert_eq!(pkts[0].orig, 300_000);
    assert_eq!(pkts[0].data[1000], (1000 % 256) as u8);
    assert_eq!(pkts[1].data.len(), 60);
    assert_eq!(r.frames_cut(), 1);
}

#[test]
fn pcapng_bad_interface_and_bad_lengths() {
    let mut v = Vec::new();
    shb(&mut v, false);
    idb(&mut v, false, 1, 65535, None, "", 0);
    epb(&mut v, false, 0, 1, b"ok", 2);
    epb(&mut v, false, 5, 1, b"bad", 3);
    let f = TempFile::new("badif.pcapng", &v);
    let mut r = FileReader::open(&f.0).expect("open");
    let (pkts, err) = read_all(&mut r);
    assert_eq!(pkts.len(), 1);
    let msg = err.expect("damage").to_string();
    assert!(msg.contains("interface 5"), "{msg}");

    // Corrupt every byte of a valid file in turn: never a panic.
    let mut base = Vec::new();
    shb(&mut base, false);
    idb(&mut base, false, 1, 65535, Some(9), "x", 0);
    epb(&mut base, false, 0, 1, b"hello", 5);
    epb(&mut base, false, 0, 2, b"world", 5);
    for i in 0..base.len() {
        for val in [0x00u8, 0xff, 0x80] {
            let mut m = base.clone();
            m[i] = val;
            let f = TempFile::new(&format!("flip-{i}-{val}.pcapng"), &m);
            if let Ok(mut r) = FileReader::open(&f.0) {
                let _ = read_all(&mut r);
            }
        }
    }
}

#[test]
fn linktype_mapping() {
    assert_eq!(linktype_to_dlt(101), 12);
    assert_eq!(linktype_to_dlt(1), 1);
    assert_eq!(linktype_to_dlt(228), 228);
    // A legacy header with LINKTYPE_RAW and FCS bits set reads as DLT 12.
    let mut v = pcap_header(0xa1b2c3d4, false, 65535, 101 | 0x1000_0000);
    pcap_record(&mut v, false, 1, 0, b"\x45", 1);
    let f = TempFile::new("raw.pcap", &v);
    let mut r = FileReader::open(&f.0).expect("open");
    assert_eq!(r.next_packet().expect("ok").expect("packet").link_type, 12);
    assert_eq!(r.interfaces()[0].link_type, 12);
}

#[test]
fn random_bytes_after_valid_headers_never_panic() {
    // A small deterministic generator (no extra dependency).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut ng_head = Vec::new();
    shb(&mut ng_head, false);
    idb(&mut ng_head, false, 1, 0, None, "", 0);
    let heads = [
        pcap_header(0xa1b2c3d4, false, 65535, 1),
        pcap_header(0xa1b23c4d, true, 0, 113),
        ng_head,
    ];
    for i in 0..300 {
        let mut v = heads[i % heads.len()].clone();
        let len = (next() % 3000) as usize;
        // Mostly small values, so that lengths are often plausible.
        v.extend((0..len).map(|_| {
            let r = next();
            if r % 4 == 0 {
                (r >> 8) as u8
            } else {
                (r >> 8) as u8 & 0x0f
            }
        }));
        let f = TempFile::new(&format!("rand-{i}"), &v);
        if let Ok(mut r) = FileReader::open(&f.0) {
            let mut n = 0;
            while let Ok(Some(p)) = r.next_packet() {
                assert!(p.data.len() <= v.len());
                n += 1;
            }
            assert_eq!(r.packets_read(), n);
        }
    }
}

#[test]
fn timestamp_conversion() {
    let p = |u, o| TsParams {
        units_per_sec: u,
        offset_secs: o,
    };
    assert_eq!(ts_to_ns(1_500_000, p(1_000_000, 0)), 1_500_000_000);
    assert_eq!(ts_to_ns(7, p(1_000_000_000, 0)), 7);
    assert_eq!(ts_to_ns(15, p(10, 0)), 1_500_000_000);
    assert_eq!(ts_to_ns(1, p(1_000_000, 10)), 10_000_001_000);
    assert_eq!(ts_to_ns(5_000_000, p(1_000_000, -100)), 0);
    assert_eq!(ts_to_ns(u64::MAX, p(1, 0)), u64::MAX);
    assert_eq!(ts_to_ns(512, p(1024, 0)), 500_000_000);
    assert_eq!(units_per_sec(6), Some(1_000_000));
    assert_eq!(units_per_sec(9), Some(1_000_000_000));
    assert_eq!(units_per_sec(0x80 | 10), Some(1024));
    assert_eq!(units_per_sec(0x80 | 63), Some(1 << 63));
    assert_eq!(units_per_sec(0x80 | 64), None);
    assert_eq!(units_per_sec(20), None);
}

#[test]
fn swapped_lengths_of_old_pcap_versions() {
    // Version 2.2 header: libpcap reads caplen and len swapped.
    let mut v = pcap_header(0xa1b2c3d4, false, 65535, 1);
    v[6] = 2; // version_minor = 2
    for x in [1u32, 0, 1500, 4] {
        // "caplen" 1500 is really len, "len" 4 is really caplen
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(b"abcd");
    let f = TempFile::new("swapped.pcap", &v);
    let mut r = FileReader::open(&f.0).expect("open");
    let (pkts, err) = read_all(&mut r);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pkts.len(), 1);
    assert_eq!(
        (pkts[0].data.as_slice(), pkts[0].orig),
        (&b"abcd"[..], 1500)
    );
}

#[test]
fn a_compressed_capture_is_named_with_the_command_that_reads_it() {
    for (bytes, tool) in [
        (&[0x1f, 0x8b, 0x08, 0x08][..], "zcat"),
        (&[0x28, 0xb5, 0x2f, 0xfd][..], "zstdcat"),
        (&[0xfd, b'7', b'z', b'X'][..], "xzcat"),
        (&b"BZh9"[..], "bzcat"),
    ] {
        let mut v = bytes.to_vec();
        v.extend_from_slice(&[0u8; 60]);
        let f = TempFile::new(&format!("compressed-{tool}.pcap"), &v);
        match FileReader::open(&f.0) {
            Err(e @ CaptureError::NotCapture { .. }) => {
                assert!(e.to_string().contains(tool), "{e}");
            }
            Err(e) => panic!("{tool}: {e}"),
            Ok(_) => panic!("{tool}: read as a capture"),
        }
    }
}

/// A little-endian section header whose option list is `comment_bytes` of `opt_comment`s
/// (at most 60 000 bytes each).
fn shb_with_comments(v: &mut Vec<u8>, comment_bytes: usize) {
    let mut body = Vec::new();
    body.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    let mut left = comment_bytes;
    while left > 0 {
        let n = left.min(60_000);
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&(n as u16).to_le_bytes());
        body.extend(std::iter::repeat_n(b'c', n));
        body.extend(std::iter::repeat_n(0u8, n.div_ceil(4) * 4 - n));
        left -= n;
    }
    body.extend_from_slice(&[0, 0, 0, 0]);
    ng_block(v, false, SHB_TYPE, &body);
}

#[test]
fn a_first_section_header_of_any_size_up_to_the_block_limit_is_read() {
    // The first section header used to be parsed within the reader's initial 1 MiB buffer
    // ("pcapng file header is cut short" for a 1.1 MB one), unlike every later block.
    for (comments, buffer) in [
        (1_100_000, DEFAULT_BUFFER_SIZE),
        (5_000_000, DEFAULT_BUFFER_SIZE),
        (1_100_000, 64),
    ] {
        let mut v = Vec::new();
        shb_with_comments(&mut v, comments);
        idb(&mut v, false, 1, 65535, None, "eth0", 0);
        epb(&mut v, false, 0, 1_000_000, b"first", 5);
        shb_with_comments(&mut v, comments);
        idb(&mut v, false, 1, 65535, None, "eth1", 0);
        epb(&mut v, false, 0, 2_000_000, b"second", 6);
        let f = TempFile::new(&format!("big-shb-{comments}-{buffer}.pcapng"), &v);
        let mut r = FileReader::open_with_buffer(&f.0, buffer).expect("open");
        assert_eq!(r.interfaces().len(), 1);
        assert_eq!(r.interfaces()[0].name, "eth0");
        let (pkts, err) = read_all(&mut r);
        assert!(err.is_none(), "{comments} bytes: {err:?}");
        assert_eq!(pkts.len(), 2);
        assert_eq!(pkts[0].data, b"first");
        assert_eq!(pkts[1].data, b"second");
        assert_eq!(pkts[1].ifx, 1);
        assert_eq!(r.byte_offset(), v.len() as u64);
    }
}

#[test]
fn a_first_section_header_over_the_block_limit_is_named_as_such() {
    // Declared one byte over the limit (the file is intact up to it): the error gives the
    // size and the limit, not "cut short".
    let len = (MAX_RECORD_SIZE + 4) as u32;
    let mut v = SHB_TYPE.to_le_bytes().to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    v.extend(std::iter::repeat_n(0u8, 1000));
    let f = TempFile::new("shb-over-limit.pcapng", &v);
    let text = match FileReader::open(&f.0) {
        Err(e) => e.to_string(),
        Ok(mut r) => read_all(&mut r).1.expect("refused").to_string(),
    };
    assert!(!text.contains("cut short"), "{text}");
    assert!(text.contains(&len.to_string()), "{text}");
    assert!(text.contains(&MAX_RECORD_SIZE.to_string()), "{text}");
}

#[test]
fn a_big_first_section_header_reads_from_a_pipe() {
    let mut v = Vec::new();
    shb_with_comments(&mut v, 1_100_000);
    idb(&mut v, false, 1, 65535, None, "", 0);
    epb(&mut v, false, 0, 1, b"piped", 5);
    let Some((pkts, err)) = read_through_fifo("shb-fifo", v, 7000) else {
        return; // no mkfifo: nothing to test here
    };
    assert!(err.is_none(), "{err:?}");
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].data, b"piped");
}
