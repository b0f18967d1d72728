//! A pcapng block's option list costs the reader its bytes in the read buffer and nothing
//! per option, whatever the block type: a file of blocks packed with empty 4-byte options
//! (the smallest an option can be) is read with the heap of a file of equally large blocks
//! holding one long option each. `pcap-parser`'s block parsers collect the options into a
//! `Vec` (~40 bytes each), so one 64 MiB block used to cost ~600 MB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use capture::FileReader;

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// A test-only allocator: counting the heap needs `GlobalAlloc`, which is unsafe to implement.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = IN_USE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes of options per block: the block stays under the read buffer's 4 MiB step.
const OPTION_BYTES: usize = 3 << 20;

fn block(v: &mut Vec<u8>, block_type: u32, fixed: &[u8], options: &[u8]) {
    let len = (12 + fixed.len() + options.len()) as u32;
    assert_eq!(len % 4, 0);
    v.extend_from_slice(&block_type.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(fixed);
    v.extend_from_slice(options);
    v.extend_from_slice(&len.to_le_bytes());
}

fn option(code: u16, value: &[u8]) -> Vec<u8> {
    let mut o = code.to_le_bytes().to_vec();
    o.extend_from_slice(&(value.len() as u16).to_le_bytes());
    o.extend_from_slice(value);
    o.extend(std::iter::repeat_n(
        0u8,
        value.len().div_ceil(4) * 4 - value.len(),
    ));
    o
}

/// `OPTION_BYTES` of options: empty comments (`many`) or comments of 60 000 bytes; then,
/// for an interface, its name and a nanosecond resolution (read past the others).
fn options(many: bool, interface: bool) -> Vec<u8> {
    let mut o = Vec::with_capacity(OPTION_BYTES + 64);
    if many {
        while o.len() < OPTION_BYTES {
            o.extend_from_slice(&option(1, &[]));
        }
    } else {
        while o.len() + 60_004 <= OPTION_BYTES {
            o.extend_from_slice(&option(1, &[b'c'; 60_000]));
        }
        o.extend_from_slice(&option(1, &vec![b'c'; OPTION_BYTES - o.len() - 4]));
    }
    if interface {
        o.extend_from_slice(&option(2, b"bomb0"));
        o.extend_from_slice(&option(9, &[9]));
    }
    o.extend_from_slice(&option(0, &[]));
    o
}

/// A file in which every kind of block carries `OPTION_BYTES` of options: the first and
/// a later section header, interface descriptions, enhanced packets, name resolution,
/// interface statistics, a custom block.
fn file(many: bool) -> PathBuf {
    let mut shb_fixed = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    shb_fixed.extend_from_slice(&[1, 0, 0, 0]);
    shb_fixed.extend_from_slice(&(-1i64).to_le_bytes());
    let mut idb_fixed = 1u16.to_le_bytes().to_vec();
    idb_fixed.extend_from_slice(&[0, 0]);
    idb_fixed.extend_from_slice(&65535u32.to_le_bytes());
    let mut epb_fixed = Vec::new();
    for x in [0u32, 0, 1_500_000_000, 8, 8] {
        epb_fixed.extend_from_slice(&x.to_le_bytes());
    }
    epb_fixed.extend_from_slice(b"packet!!");
    let mut isb_fixed = 0u32.to_le_bytes().to_vec();
    isb_fixed.extend_from_slice(&[0; 8]);

    let (plain, interface) = (options(many, false), options(many, true));
    let mut v = Vec::new();
    for _section in 0..2 {
        block(&mut v, 0x0A0D_0D0A, &shb_fixed, &plain);
        block(&mut v, 1, &idb_fixed, &interface);
        block(&mut v, 6, &epb_fixed, &plain);
        block(&mut v, 4, &[0, 0, 0, 0], &plain);
        block(&mut v, 5, &isb_fixed, &plain);
        block(&mut v, 0xBAD, &[0x7e, 0x7f, 0, 0], &plain);
    }
    let path = std::env::temp_dir().join(format!(
        "capture-options-{}-{}.pcapng",
        std::process::id(),
        if many { "many" } else { "few" }
    ));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&v))
        .expect("write capture");
    path
}

/// Reads every packet of `path`; returns the peak heap in use meanwhile.
fn read_peak(path: &Path) -> usize {
    let base = IN_USE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let mut r = FileReader::open(path).expect("open");
    assert_eq!(r.interfaces()[0].name, "bomb0");
    let mut packets = 0;
    while let Some(p) = r.next_packet().expect("read") {
        assert_eq!(p.data, b"packet!!");
        // if_tsresol 9, found after the many options: nanoseconds.
        assert_eq!(p.timestamp_ns, 1_500_000_000);
        packets += 1;
    }
    assert_eq!(packets, 2);
    assert_eq!(r.interfaces().len(), 2);
    drop(r);
    PEAK.load(Ordering::Relaxed) - base
}

#[test]
fn option_count_costs_no_memory_in_any_block() {
    let (many, few) = (file(true), file(false));
    let peak_few = read_peak(&few);
    let peak_many = read_peak(&many);
    let _ = std::fs::remove_file(&many);
    let _ = std::fs::remove_file(&few);
    eprintln!("peak heap: {peak_many} bytes with ~786k options per block, {peak_few} with 53");
    assert!(
        peak_many <= peak_few + (256 << 10),
        "{peak_many} bytes at peak with 4-byte options vs {peak_few} with long ones"
    );
}
