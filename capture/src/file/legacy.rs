//! Legacy pcap (and the modified Kuznetzov variant): record headers decoded in place.

use super::{u32_at, Ctx, Fill, Located, Source};
use crate::CaptureError;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::LegacyPcapReader;

/// Largest packet length accepted in a legacy pcap record when the file's snaplen is
/// smaller (libpcap's `MAXIMUM_SNAPLEN`, 262144). Like libpcap, a record longer than both
/// the snaplen and this is treated as damage.
pub(super) const LEGACY_MAX_SNAPLEN: usize = 262_144;

pub(super) struct LegacyState {
    pub(super) reader: LegacyPcapReader<Source>,
    pub(super) big_endian: bool,
    pub(super) nanos: bool,
    /// 16, or 24 for the modified format.
    pub(super) record_header_len: usize,
    pub(super) snaplen: u32,
    pub(super) max_caplen: usize,
    pub(super) link_type: u32,
    pub(super) lengths: Lengths,
}

/// Whether a legacy file's record headers have caplen and len swapped (as libpcap decides
/// from the file's version: files older than 2.3 wrote them swapped, 2.3 files may have).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lengths {
    Normal,
    Swapped,
    MaybeSwapped,
}

pub(super) fn legacy_locate(
    l: &mut LegacyState,
    ctx: &mut Ctx<'_>,
) -> Result<Option<Located>, CaptureError> {
    let hdr = l.record_header_len;
    match ctx.fill(&mut l.reader, hdr)? {
        Fill::Ready => {}
        Fill::Short(0) => return Ok(None),
        Fill::Short(n) => {
            return Err(ctx.damaged(format!(
                "record header cut short: the file ends {n} byte(s) into a {hdr}-byte record header"
            )))
        }
    }
    let d = l.reader.data();
    let ts_sec = u32_at(d, 0, l.big_endian);
    let ts_frac = u32_at(d, 4, l.big_endian);
    let mut caplen = u32_at(d, 8, l.big_endian);
    let mut origlen = u32_at(d, 12, l.big_endian);
    let swap = match l.lengths {
        Lengths::Normal => false,
        Lengths::Swapped => true,
        Lengths::MaybeSwapped => caplen > origlen,
    };
    if swap {
        std::mem::swap(&mut caplen, &mut origlen);
    }
    if caplen as usize > l.max_caplen {
        return Err(ctx.damaged(format!(
            "invalid packet capture length {caplen}, bigger than the snapshot length {} \
             (and than {})",
            l.snaplen, l.max_caplen
        )));
    }
    let total = hdr + caplen as usize;
    match ctx.fill(&mut l.reader, total)? {
        Fill::Ready => {}
        Fill::Short(n) => {
            return Err(ctx.damaged(format!(
                "last record cut short: it needs {total} bytes (caplen {caplen}), the file has \
                 only {n} left"
            )))
        }
    }
    let frac_ns = if l.nanos {
        u64::from(ts_frac)
    } else {
        u64::from(ts_frac) * 1_000
    };
    Ok(Some(Located {
        start: hdr,
        caplen: caplen as usize,
        record_len: total,
        timestamp_ns: u64::from(ts_sec) * 1_000_000_000 + frac_ns,
        link_type: l.link_type,
        interface_index: 0,
        original_len: origlen,
    }))
}
