//! pcapng: every block decoded in place from the buffered block (the section header's fixed
//! fields, an interface description's options walked without collecting them, packet
//! blocks' fixed headers); timestamps per interface (`if_tsresol`, `if_tsoffset`).

use super::{
    describe_magic, linktype_to_dlt, u16_at, u32_at, Ctx, Fill, Located, Source, MAX_RECORD_SIZE,
};
use crate::{CaptureError, InterfaceInfo};
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::PcapNGReader;

pub(super) const SHB_TYPE: u32 = 0x0A0D_0D0A;

pub(super) const IDB_TYPE: u32 = 0x0000_0001;

pub(super) const OBSOLETE_PB_TYPE: u32 = 0x0000_0002;

pub(super) const SPB_TYPE: u32 = 0x0000_0003;

pub(super) const EPB_TYPE: u32 = 0x0000_0006;

/// Shortest section header block: type, length, byte-order magic, versions, section
/// length, trailing length.
const SHB_MIN_LEN: usize = 28;

/// Shortest interface description block: type, length, link type, reserved, snaplen,
/// trailing length.
const IDB_MIN_LEN: usize = 20;

/// Option codes of an interface description block that the reader uses.
const OPT_IF_NAME: u16 = 2;
const OPT_IF_TSRESOL: u16 = 9;
const OPT_IF_TSOFFSET: u16 = 14;

/// An empty little-endian section header (version 1.0, unknown section length) that
/// `PcapNGReader::new` parses in place of the file's own, which `ng_locate` then reads like
/// any block (see `FileReader::open_with_buffer`).
pub(super) const STAND_IN_SHB: [u8; SHB_MIN_LEN] = [
    0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 28, 0, 0, 0,
];

/// Calls `f(code, value)` for each option of a block's option list, in order, where
/// `value` is the option's declared length of bytes (padding excluded). Nothing is
/// collected, so a block's cost does not depend on how many options it holds. As
/// `pcap-parser` read them: the walk goes on past `opt_endofopt` and stops quietly at an
/// option that does not fit what is left.
fn for_each_option<'a>(mut opts: &'a [u8], big_endian: bool, mut f: impl FnMut(u16, &'a [u8])) {
    while opts.len() >= 4 {
        let code = u16_at(opts, 0, big_endian);
        let len = usize::from(u16_at(opts, 2, big_endian));
        let padded = len.div_ceil(4) * 4;
        let Some(value) = opts.get(4..4 + padded) else {
            return;
        };
        f(code, &value[..len]);
        opts = &opts[4 + padded..];
    }
}

/// The options the reader uses from an interface description block.
#[derive(Debug, Default, PartialEq)]
pub(super) struct IdbOptions<'a> {
    /// `if_tsresol` (the last one, as `pcap-parser` took it); 6 (microseconds) if absent.
    pub(super) tsresol: u8,
    /// `if_tsoffset` in seconds (the first one); 0 if absent.
    pub(super) tsoffset: i64,
    /// `if_name` (the first one), if present and UTF-8.
    pub(super) name: Option<&'a str>,
}

/// Reads the options of an interface description block's option list.
pub(super) fn idb_options(opts: &[u8], big_endian: bool) -> IdbOptions<'_> {
    let mut out = IdbOptions {
        tsresol: 6,
        ..IdbOptions::default()
    };
    let (mut seen_offset, mut seen_name) = (false, false);
    for_each_option(opts, big_endian, |code, value| match code {
        OPT_IF_TSRESOL => {
            if let Some(&r) = value.first() {
                out.tsresol = r;
            }
        }
        OPT_IF_TSOFFSET if !seen_offset => {
            if let Some(v) = value.get(..8) {
                seen_offset = true;
                let b = [v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]];
                out.tsoffset = if big_endian {
                    i64::from_be_bytes(b)
                } else {
                    i64::from_le_bytes(b)
                };
            }
        }
        OPT_IF_NAME if !seen_name => {
            seen_name = true;
            out.name = std::str::from_utf8(value).ok();
        }
        _ => {}
    });
    out
}

pub(super) struct NgState {
    pub(super) reader: PcapNGReader<Source>,
    pub(super) big_endian: bool,
    /// Interfaces described by the sections before the current one: the current
    /// section's interface `i` is the file's interface `section_base + i`
    /// ([`crate::PacketRecord::interface_index`]).
    pub(super) section_base: u64,
    /// The current section's interfaces (a packet block names one by its index here).
    pub(super) section: Vec<SectionInterface>,
    pub(super) last_ts: u64,
    /// Odd timestamps are logged once per file, not once per packet or interface.
    pub(super) warned_tsresol: bool,
    pub(super) warned_range: bool,
}

/// What a packet block needs from the interface it names.
#[derive(Debug, Clone, Copy)]
pub(super) struct SectionInterface {
    pub(super) link_type: u32,
    pub(super) snaplen: u32,
    pub(super) ts: TsParams,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct TsParams {
    /// Timestamp units per second.
    pub(super) units_per_sec: u64,
    /// `if_tsoffset`, seconds added to every timestamp.
    pub(super) offset_secs: i64,
}

/// Interfaces one pcapng section may describe, and how many the file's interface list
/// ([`super::FileReader::interfaces`]) keeps: each costs memory while it is kept, so a file
/// of nothing but interface blocks must not grow it unbounded. A new section starts a new
/// table (the spec scopes interface ids to their section), so concatenated files with any
/// number of sections read fine; past the first `MAX_INTERFACES` of the file, interfaces are
/// not listed (their packets still carry their file-wide index).
pub const MAX_INTERFACES: usize = 1 << 16;

/// Longest `if_name` kept for [`super::FileReader::interfaces`] (a longer one is cut at a
/// character boundary): the name is only reported, and a block may be 64 MiB.
const MAX_INTERFACE_NAME: usize = 256;

/// The file-wide index of the current section's interface `if_id` (saturating: a file
/// would need 4 G interface blocks to reach it).
fn file_index(section_base: u64, if_id: u32) -> u32 {
    u32::try_from(section_base.saturating_add(u64::from(if_id))).unwrap_or(u32::MAX)
}

/// `name` cut to at most [`MAX_INTERFACE_NAME`] bytes, at a character boundary.
fn truncate_name(name: &str) -> &str {
    let mut end = name.len().min(MAX_INTERFACE_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Converts `units` (at `units_per_sec`) plus an offset in seconds to Unix nanoseconds,
/// saturating instead of overflowing.
#[cfg(test)]
pub(super) fn ts_to_ns(units: u64, p: TsParams) -> u64 {
    ts_to_ns_clamped(units, p).0
}

/// [`ts_to_ns`], plus whether the time was out of range (before 1970 or after 2554) and
/// clamped to 0 or `u64::MAX`.
pub(super) fn ts_to_ns_clamped(units: u64, p: TsParams) -> (u64, bool) {
    if p.offset_secs == 0 {
        if p.units_per_sec == 1_000_000 {
            return match units.checked_mul(1_000) {
                Some(ns) => (ns, false),
                None => (u64::MAX, true),
            };
        }
        if p.units_per_sec == 1_000_000_000 {
            return (units, false);
        }
    }
    let per = u128::from(p.units_per_sec.max(1));
    let units = u128::from(units);
    let secs = (units / per) as i128 + i128::from(p.offset_secs);
    let frac_ns = (units % per) * 1_000_000_000 / per;
    let total = secs * 1_000_000_000 + frac_ns as i128;
    match u64::try_from(total) {
        Ok(ns) => (ns, false),
        Err(_) if total < 0 => (0, true),
        Err(_) => (u64::MAX, true),
    }
}

/// Timestamp units per second for an `if_tsresol` value: `10^-n` seconds when the top bit
/// is clear, `2^-n` when it is set. `None` when the unit is finer than what fits a `u64`.
pub(super) fn units_per_sec(tsresol: u8) -> Option<u64> {
    let n = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(n)
    } else {
        1u64.checked_shl(n).filter(|_| n < 64)
    }
}

/// Processes pcapng blocks until a packet block is at the front of the buffer and returns
/// where its packet lies. With `stop_before_packet`, returns `Ok(None)` as soon as a packet
/// block is at the front without decoding it (used to read the headers at open time).
pub(super) fn ng_locate(
    ng: &mut NgState,
    ctx: &mut Ctx<'_>,
    stop_before_packet: bool,
) -> Result<Option<Located>, CaptureError> {
    loop {
        match ctx.fill(&mut ng.reader, 8)? {
            Fill::Ready => {}
            Fill::Short(0) => return Ok(None),
            Fill::Short(n) => {
                return Err(ctx.damaged(format!(
                    "block header cut short: the file ends {n} byte(s) into an 8-byte block header"
                )))
            }
        }
        let first = {
            let d = ng.reader.data();
            [d[0], d[1], d[2], d[3]]
        };
        let (big_endian, block_type) = if u32::from_le_bytes(first) == SHB_TYPE {
            match ctx.fill(&mut ng.reader, 12)? {
                Fill::Ready => {}
                Fill::Short(_) => {
                    return Err(ctx.damaged("section header block cut short".into()));
                }
            }
            let d = ng.reader.data();
            match [d[8], d[9], d[10], d[11]] {
                [0x4d, 0x3c, 0x2b, 0x1a] => (false, SHB_TYPE),
                [0x1a, 0x2b, 0x3c, 0x4d] => (true, SHB_TYPE),
                other => {
                    return Err(ctx.damaged(format!(
                        "section header with an invalid byte-order magic {}",
                        describe_magic(&other)
                    )))
                }
            }
        } else {
            let bt = if ng.big_endian {
                u32::from_be_bytes(first)
            } else {
                u32::from_le_bytes(first)
            };
            (ng.big_endian, bt)
        };
        if stop_before_packet && matches!(block_type, EPB_TYPE | SPB_TYPE | OBSOLETE_PB_TYPE) {
            return Ok(None);
        }
        let block_len = u32_at(ng.reader.data(), 4, big_endian) as usize;
        if block_len > MAX_RECORD_SIZE {
            return Err(ctx.damaged(format!(
                "block of type {block_type:#x} is {block_len} bytes, over the reader's \
                 {MAX_RECORD_SIZE}-byte block limit"
            )));
        }
        if block_len < 12 {
            return Err(ctx.damaged(format!(
                "block of type {block_type:#x} has an implausible length {block_len}"
            )));
        }
        match ctx.fill(&mut ng.reader, block_len)? {
            Fill::Ready => {}
            Fill::Short(n) => {
                return Err(ctx.damaged(format!(
                    "last block (type {block_type:#x}) cut short: it needs {block_len} bytes, \
                     the file has only {n} left"
                )))
            }
        }
        let block = &ng.reader.data()[..block_len];
        let trailer = u32_at(block, block_len - 4, big_endian) as usize;
        if trailer != block_len {
            return Err(ctx.damaged(format!(
                "block of type {block_type:#x}: leading length {block_len} and trailing length \
                 {trailer} differ"
            )));
        }
        let body = &block[8..block_len - 4];
        match block_type {
            SHB_TYPE => {
                if block_len < SHB_MIN_LEN {
                    return Err(ctx.damaged(format!(
                        "invalid section header block: {block_len} bytes, shorter than its \
                         {SHB_MIN_LEN}-byte header"
                    )));
                }
                ng.big_endian = big_endian;
                ng.section_base = ng.section_base.saturating_add(ng.section.len() as u64);
                ng.section.clear();
            }
            IDB_TYPE => {
                if block_len < IDB_MIN_LEN {
                    return Err(ctx.damaged(format!(
                        "invalid interface description block: {block_len} bytes, shorter \
                         than its {IDB_MIN_LEN}-byte header"
                    )));
                }
                if ng.section.len() >= MAX_INTERFACES {
                    return Err(ctx.damaged(format!(
                        "more than {MAX_INTERFACES} interface descriptions in one section"
                    )));
                }
                let raw_linktype = u16_at(body, 0, big_endian);
                let snaplen = u32_at(body, 4, big_endian);
                let opts = idb_options(&body[8..], big_endian);
                let units_per_sec = match units_per_sec(opts.tsresol) {
                    Some(r) => r,
                    None => {
                        if !ng.warned_tsresol {
                            ng.warned_tsresol = true;
                            tracing::warn!(
                                path = %ctx.path.display(),
                                if_tsresol = opts.tsresol,
                                "unusable if_tsresol; assuming microseconds (logged once \
                                 per file)"
                            );
                        }
                        1_000_000
                    }
                };
                let offset_secs = opts.tsoffset;
                let link_type = linktype_to_dlt(u32::from(raw_linktype));
                ng.section.push(SectionInterface {
                    link_type,
                    snaplen,
                    ts: TsParams {
                        units_per_sec,
                        offset_secs,
                    },
                });
                // Listed while the list is in step with the file-wide numbering (it is
                // until it fills up).
                let index = ng.section_base + (ng.section.len() as u64 - 1);
                if ctx.interfaces.len() < MAX_INTERFACES && ctx.interfaces.len() as u64 == index {
                    let name = opts.name.map(truncate_name).unwrap_or_default().to_owned();
                    ctx.interfaces.push(InterfaceInfo {
                        name,
                        link_type,
                        snaplen,
                    });
                }
            }
            EPB_TYPE | OBSOLETE_PB_TYPE => {
                if body.len() < 20 {
                    return Err(ctx.damaged(format!(
                        "packet block of {block_len} bytes is too short for its header"
                    )));
                }
                let if_id = if block_type == EPB_TYPE {
                    u32_at(body, 0, big_endian)
                } else {
                    u32::from(u16_at(body, 0, big_endian))
                };
                let ts_high = u32_at(body, 4, big_endian);
                let ts_low = u32_at(body, 8, big_endian);
                let caplen = u32_at(body, 12, big_endian);
                let origlen = u32_at(body, 16, big_endian);
                if caplen as usize > body.len() - 20 {
                    return Err(ctx.damaged(format!(
                        "packet length {caplen} does not fit in its {block_len}-byte block"
                    )));
                }
                let Some(iface) = ng.section.get(if_id as usize).copied() else {
                    return Err(ctx.damaged(format!(
                        "packet refers to interface {if_id}, but its section describes only {}",
                        ng.section.len()
                    )));
                };
                let params = iface.ts;
                let units = (u64::from(ts_high) << 32) | u64::from(ts_low);
                let (timestamp_ns, clamped) = ts_to_ns_clamped(units, params);
                if clamped && !ng.warned_range {
                    ng.warned_range = true;
                    tracing::warn!(
                        path = %ctx.path.display(),
                        packet = ctx.packets + 1,
                        "packet time out of range (before 1970 or after 2554): clamped \
                         (logged once per file)"
                    );
                }
                ng.last_ts = timestamp_ns;
                return Ok(Some(Located {
                    start: 28,
                    caplen: caplen as usize,
                    record_len: block_len,
                    timestamp_ns,
                    link_type: iface.link_type,
                    interface_index: file_index(ng.section_base, if_id),
                    original_len: origlen,
                }));
            }
            SPB_TYPE => {
                if body.len() < 4 {
                    return Err(ctx.damaged("simple packet block too short".into()));
                }
                let Some(iface) = ng.section.first().copied() else {
                    return Err(
                        ctx.damaged("simple packet block in a section without an interface".into())
                    );
                };
                let origlen = u32_at(body, 0, big_endian);
                let mut caplen = (origlen as usize).min(body.len() - 4);
                if iface.snaplen > 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                return Ok(Some(Located {
                    start: 12,
                    caplen,
                    record_len: block_len,
                    timestamp_ns: ng.last_ts,
                    link_type: iface.link_type,
                    interface_index: file_index(ng.section_base, 0),
                    original_len: origlen,
                }));
            }
            _ => {}
        }
        ng.reader.consume_noshift(block_len);
        *ctx.offset += block_len as u64;
    }
}
