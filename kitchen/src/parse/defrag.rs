//! IP reassembly: fragments of one IPv4 or IPv6 datagram put back together, as Wireshark,
//! Zeek and Suricata do before they look at TCP or UDP.
//!
//! Why: a datagram cut into fragments carries its transport header in the first fragment
//! only, so without reassembly its TCP bytes never reach a stream and a large UDP message
//! (an EDNS answer, NFS) is never seen whole. With reassembly on (the default), every
//! fragment is offered to chefs as an IP packet that stops at the transport layer
//! (`parse-stop {transport, fragment}`), and the packet whose fragment *completes* the
//! datagram also carries the reassembled transport header and payload (the payload then
//! lies in the batch arena right after that packet's frame). That is tshark's view: the
//! datagram is dissected at the frame of its last fragment.
//!
//! Bounded whatever the input (fragments are the classic evasion and exhaustion vector):
//! * at most [`DefragLimits::max_bytes`] held over all datagrams in progress (the oldest
//!   datagram is dropped to make room) and at most [`MAX_DATAGRAMS`] of them;
//! * a datagram is dropped when it has not completed [`DefragLimits::timeout_ns`] of
//!   capture time after its first fragment (checked as fragments arrive: a capture whose
//!   time goes backwards keeps its datagrams until the byte or count bound takes them);
//! * at most [`MAX_PIECES`] fragments per datagram, its end at most 65 535 bytes;
//! * overlapping fragments must agree byte for byte, else the datagram is dropped (RFC 5722
//!   asks this of IPv6; for IPv4 it closes the "first or last wins" evasion choice), as is
//!   one whose fragments disagree on its length.
//!
//! Every drop is counted by reason ([`DefragStats`]). Each operation is amortised O(1) in
//! the number of datagrams held (a hash map plus an arrival-ordered queue with lazy
//! deletion, compacted when stale entries outnumber live ones).

use std::collections::{HashMap, VecDeque};

/// Datagrams in progress at most (whatever their size).
pub const MAX_DATAGRAMS: usize = 4096;
/// Fragments of one datagram at most (a 64 KiB datagram in 8-byte pieces would be 8192).
pub const MAX_PIECES: usize = 256;
/// The largest end offset a fragment may reach (IPv6's payload length is 16 bits; IPv4's
/// datagram is smaller still).
pub const MAX_DATAGRAM_BYTES: u32 = 65_535;

/// How much reassembly may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragLimits {
    /// Bytes held over all datagrams in progress; 0 turns reassembly off.
    pub max_bytes: usize,
    /// Capture time a datagram may take to complete, ns.
    pub timeout_ns: u64,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_bytes: 8 << 20,
            timeout_ns: 30_000_000_000,
        }
    }
}

/// Reassembly counters (kitchen-wide, since start): also the `KitchenStatusChef`
/// `ip_reassembly` section, as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DefragStats {
    /// Fragments offered.
    pub fragments: u64,
    /// Datagrams completed and handed on.
    pub reassembled: u64,
    /// Datagrams dropped: not complete within the timeout.
    pub timed_out: u64,
    /// Datagrams dropped to stay within the byte or count bound.
    pub evicted: u64,
    /// Datagrams dropped: fragments that overlap with different bytes, or disagree on
    /// where the datagram ends.
    pub conflicting: u64,
    /// Datagrams dropped: past 65 535 bytes, more than [`MAX_PIECES`] fragments, or a
    /// non-final fragment whose length is not a multiple of 8.
    pub malformed: u64,
    /// Datagrams waiting for fragments now (at the end of a capture: never completed).
    pub incomplete: u64,
}

/// What identifies one datagram's fragments: addresses, protocol (IPv4) and the
/// identification field, as RFC 791 / RFC 8200 say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Source address (IPv4 in the low 32 bits).
    pub source: u128,
    /// Destination address (IPv4 in the low 32 bits).
    pub destination: u128,
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub identification: u32,
    /// IPv4: the protocol field; IPv6: 0 (the next header is not part of the key).
    pub protocol: u8,
    /// IPv6 or IPv4.
    pub ipv6: bool,
}

/// One fragment as the parser found it.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    /// Which datagram.
    pub key: FragKey,
    /// Byte offset of `data` in the datagram's payload.
    pub offset: u32,
    /// More fragments follow (MF).
    pub more: bool,
    /// The protocol of the reassembled payload (IPv4 protocol; IPv6 fragment header's next
    /// header).
    pub ip_number: u8,
    /// This fragment's bytes.
    pub data: &'a [u8],
}

/// A datagram whose fragments all arrived.
#[derive(Debug)]
pub struct Reassembled<'d> {
    /// The payload's protocol (TCP 6, UDP 17, ...).
    pub ip_number: u8,
    /// The datagram's payload, from offset 0 to its end.
    pub payload: &'d [u8],
}

/// One datagram in progress.
#[derive(Debug)]
struct Pending {
    /// Its entry in the arrival queue (older entries with the same key are stale).
    generation: u64,
    /// Protocol of the payload, from the fragment at offset 0 once seen.
    ip_number: u8,
    data: Vec<u8>,
    /// Received byte ranges, sorted, disjoint and not touching.
    pieces: Vec<(u32, u32)>,
    /// Where the datagram ends, once the last fragment (MF = 0) arrived.
    end: Option<u32>,
}

impl Pending {
    /// True when the received ranges cover 0..end.
    fn complete(&self) -> bool {
        self.end
            .is_some_and(|end| self.pieces.len() == 1 && self.pieces[0] == (0, end))
    }

    /// Do the bytes of `range` already held equal `data` where they overlap?
    fn agrees(&self, start: u32, data: &[u8]) -> bool {
        let end = start + data.len() as u32;
        self.pieces.iter().all(|&(s, e)| {
            let (lo, hi) = (s.max(start), e.min(end));
            lo >= hi
                || self.data[lo as usize..hi as usize]
                    == data[(lo - start) as usize..(hi - start) as usize]
        })
    }

    /// Record that `start..end` was received, merging touching ranges.
    fn add_piece(&mut self, start: u32, end: u32) {
        let mut merged = (start, end);
        self.pieces.retain(|&(s, e)| {
            if e < merged.0 || s > merged.1 {
                true
            } else {
                merged = (merged.0.min(s), merged.1.max(e));
                false
            }
        });
        let at = self.pieces.partition_point(|&(s, _)| s < merged.0);
        self.pieces.insert(at, merged);
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Conflicting,
    Malformed,
}

/// The reassembler: datagrams in progress and the last completed one.
#[derive(Debug)]
pub struct Defragmenter {
    limits: DefragLimits,
    pending: HashMap<FragKey, Pending>,
    /// Datagrams in arrival order: (key, generation, deadline). Entries whose generation no
    /// longer matches are stale (completed or dropped) and skipped.
    order: VecDeque<(FragKey, u64, u64)>,
    next_generation: u64,
    held_bytes: usize,
    /// The last completed datagram's payload ([`Reassembled::payload`] borrows it).
    done: Vec<u8>,
    stats: DefragStats,
}

impl Defragmenter {
    /// A reassembler within `limits`.
    pub fn new(limits: DefragLimits) -> Self {
        Defragmenter {
            limits,
            pending: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            held_bytes: 0,
            done: Vec::new(),
            stats: DefragStats::default(),
        }
    }

    /// False when `--ip-reassembly-kib 0` turned reassembly off.
    pub fn enabled(&self) -> bool {
        self.limits.max_bytes > 0
    }

    /// Counters since start, and the datagrams in progress now.
    pub fn stats(&self) -> DefragStats {
        DefragStats {
            incomplete: self.pending.len() as u64,
            ..self.stats
        }
    }

    /// Bytes held by datagrams in progress now.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Datagrams in progress now.
    pub fn in_progress(&self) -> usize {
        self.pending.len()
    }

    /// Take one fragment seen at capture time `now_ns`; the whole datagram's payload when
    /// this fragment completed it.
    pub fn offer(&mut self, frag: &Fragment<'_>, now_ns: u64) -> Option<Reassembled<'_>> {
        if !self.enabled() {
            return None;
        }
        self.stats.fragments += 1;
        self.expire(now_ns);
        match self.place(frag, now_ns) {
            Ok(true) => {
                let p = self.remove(&frag.key)?;
                self.stats.reassembled += 1;
                self.done = p.data;
                Some(Reassembled {
                    ip_number: p.ip_number,
                    payload: &self.done,
                })
            }
            Ok(false) => None,
            Err(why) => {
                if self.remove(&frag.key).is_some() || matches!(why, Refusal::Malformed) {
                    match why {
                        Refusal::Conflicting => self.stats.conflicting += 1,
                        Refusal::Malformed => self.stats.malformed += 1,
                    }
                }
                None
            }
        }
    }

    /// Store `frag`; `Ok(true)` when its datagram is now complete.
    fn place(&mut self, frag: &Fragment<'_>, now_ns: u64) -> Result<bool, Refusal> {
        let len = u32::try_from(frag.data.len()).map_err(|_| Refusal::Malformed)?;
        let start = frag.offset;
        let end = start.checked_add(len).ok_or(Refusal::Malformed)?;
        if end > MAX_DATAGRAM_BYTES || (frag.more && (len == 0 || len % 8 != 0)) {
            return Err(Refusal::Malformed);
        }
        if !self.pending.contains_key(&frag.key) {
            self.make_room_for_one();
            let generation = self.next_generation;
            self.next_generation += 1;
            let deadline_ns = now_ns.saturating_add(self.limits.timeout_ns);
            self.order.push_back((frag.key, generation, deadline_ns));
            self.pending.insert(
                frag.key,
                Pending {
                    generation,
                    ip_number: frag.ip_number,
                    data: Vec::new(),
                    pieces: Vec::new(),
                    end: None,
                },
            );
            self.compact_order();
        }
        let Some(p) = self.pending.get_mut(&frag.key) else {
            return Ok(false);
        };
        if !frag.more {
            if p.end.is_some_and(|e| e != end) || p.pieces.last().is_some_and(|&(_, e)| e > end) {
                return Err(Refusal::Conflicting);
            }
            p.end = Some(end);
        } else if p.end.is_some_and(|e| end > e) {
            return Err(Refusal::Conflicting);
        }
        if !p.agrees(start, frag.data) {
            return Err(Refusal::Conflicting);
        }
        if p.pieces.len() >= MAX_PIECES {
            return Err(Refusal::Malformed);
        }
        if start == 0 {
            p.ip_number = frag.ip_number;
        }
        let before = p.data.capacity();
        if p.data.len() < end as usize {
            p.data.resize(end as usize, 0);
        }
        p.data[start as usize..end as usize].copy_from_slice(frag.data);
        p.add_piece(start, end);
        let grown = p.data.capacity() - before;
        let complete = p.complete();
        self.held_bytes += grown;
        if !complete {
            self.make_room(&frag.key);
        }
        Ok(complete)
    }

    /// Drop the oldest datagrams until one more fits under the count bound.
    fn make_room_for_one(&mut self) {
        while self.pending.len() >= MAX_DATAGRAMS {
            if !self.drop_oldest(None) {
                break;
            }
        }
    }

    /// Drop the oldest datagrams other than `keep` while over the byte bound; then `keep`
    /// itself if it alone is over.
    fn make_room(&mut self, keep: &FragKey) {
        while self.held_bytes > self.limits.max_bytes {
            if !self.drop_oldest(Some(keep)) {
                if self.remove(keep).is_some() {
                    self.stats.evicted += 1;
                }
                break;
            }
        }
    }

    /// Drop the oldest live datagram (not `keep`); false when there is none.
    fn drop_oldest(&mut self, keep: Option<&FragKey>) -> bool {
        let mut skipped = None;
        while let Some((key, generation, deadline)) = self.order.pop_front() {
            if !self.is_live(&key, generation) {
                continue;
            }
            if keep == Some(&key) {
                skipped = Some((key, generation, deadline));
                continue;
            }
            if let Some(s) = skipped {
                self.order.push_front(s);
            }
            self.remove(&key);
            self.stats.evicted += 1;
            return true;
        }
        if let Some(s) = skipped {
            self.order.push_front(s);
        }
        false
    }

    /// Drop the datagrams whose deadline passed at `now_ns` (oldest first: deadlines are
    /// in arrival order unless the capture's time went backwards, in which case a later
    /// datagram waits behind an earlier one; the bounds still hold).
    fn expire(&mut self, now_ns: u64) {
        while let Some(&(key, generation, deadline)) = self.order.front() {
            if !self.is_live(&key, generation) {
                self.order.pop_front();
                continue;
            }
            if deadline >= now_ns {
                break;
            }
            self.order.pop_front();
            self.remove(&key);
            self.stats.timed_out += 1;
        }
    }

    fn is_live(&self, key: &FragKey, generation: u64) -> bool {
        self.pending
            .get(key)
            .is_some_and(|p| p.generation == generation)
    }

    /// Forget a datagram (its queue entry goes stale) and release its bytes.
    fn remove(&mut self, key: &FragKey) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        self.held_bytes -= p.data.capacity();
        Some(p)
    }

    /// Rebuild the queue without stale entries once they outnumber the live ones, so the
    /// queue stays within twice the datagrams held (amortised O(1) per datagram).
    fn compact_order(&mut self) {
        if self.order.len() <= 2 * self.pending.len() + 64 {
            return;
        }
        let pending = &self.pending;
        self.order.retain(|(key, generation, _)| {
            pending
                .get(key)
                .is_some_and(|p| p.generation == *generation)
        });
    }
}

/// The IP reassembly flags (`nd-sniff --help`, "IP fragments").
#[derive(Debug, Clone, clap::Args)]
pub struct DefragArgs {
    /// Bytes held over all IP datagrams waiting for their fragments (IPv4 and IPv6); the
    /// oldest datagram is dropped (and counted) to stay within it. 0 turns reassembly off:
    /// each fragment is then offered alone, the first one with its transport header.
    #[arg(
        long,
        value_name = "KIB",
        default_value_t = 8192,
        help_heading = "IP fragments"
    )]
    pub ip_reassembly_kib: usize,
    /// Capture time a fragmented datagram may take to complete before it is dropped
    /// (counted), seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600),
        help_heading = "IP fragments"
    )]
    pub ip_reassembly_timeout: u64,
}

impl DefragArgs {
    /// The limits these flags give.
    pub fn limits(&self) -> DefragLimits {
        DefragLimits {
            max_bytes: self.ip_reassembly_kib.saturating_mul(1024),
            timeout_ns: self.ip_reassembly_timeout.saturating_mul(1_000_000_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            source: 0x0a00_0001,
            destination: 0x0a00_0002,
            identification: id,
            protocol: 6,
            ipv6: false,
        }
    }

    fn frag(id: u32, offset: u32, more: bool, data: &[u8]) -> Fragment<'_> {
        Fragment {
            key: key(id),
            offset,
            more,
            ip_number: 6,
            data,
        }
    }

    fn defrag() -> Defragmenter {
        Defragmenter::new(DefragLimits::default())
    }

    #[test]
    fn fragments_in_any_order_make_the_datagram() {
        let bytes: Vec<u8> = (0..40u8).collect();
        let orders: [[usize; 3]; 6] = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            let mut d = defrag();
            let parts = [(0u32, true), (16, true), (32, false)];
            let mut got = None;
            for (n, &i) in order.iter().enumerate() {
                let (off, more) = parts[i];
                let end = if more { off as usize + 16 } else { 40 };
                let r = d.offer(&frag(7, off, more, &bytes[off as usize..end]), 1);
                if n < 2 {
                    assert!(r.is_none(), "{order:?}");
                } else {
                    got = r.map(|r| (r.ip_number, r.payload.to_vec()));
                }
            }
            assert_eq!(got, Some((6, bytes.clone())), "{order:?}");
            assert_eq!(d.in_progress(), 0);
            assert_eq!(d.held_bytes(), 0);
            assert_eq!(d.stats().reassembled, 1);
        }
    }

    #[test]
    fn identical_duplicates_are_accepted_and_conflicting_overlaps_drop_the_datagram() {
        let mut d = defrag();
        assert!(d.offer(&frag(1, 0, true, &[1; 8]), 1).is_none());
        assert!(d.offer(&frag(1, 0, true, &[1; 8]), 1).is_none());
        let whole = d
            .offer(&frag(1, 8, false, &[2; 4]), 1)
            .map(|r| r.payload.to_vec());
        assert_eq!(whole, Some([[1u8; 8].as_slice(), &[2; 4]].concat()));

        assert!(d.offer(&frag(2, 0, true, &[1; 16]), 1).is_none());
        // Overlaps 8..16 with other bytes: the evasion case; the datagram is dropped.
        assert!(d.offer(&frag(2, 8, false, &[9; 16]), 1).is_none());
        assert_eq!(d.stats().conflicting, 1);
        assert_eq!(d.in_progress(), 0);
        // A later fragment of the dropped datagram starts a new one, which never completes
        // from it alone.
        assert!(d.offer(&frag(2, 16, false, &[3; 8]), 1).is_none());
        assert_eq!(d.in_progress(), 1);
    }

    #[test]
    fn disagreeing_ends_and_malformed_fragments_are_refused() {
        let mut d = defrag();
        assert!(d.offer(&frag(1, 8, false, &[1; 8]), 1).is_none());
        assert!(d.offer(&frag(1, 16, false, &[1; 8]), 1).is_none());
        assert_eq!(d.stats().conflicting, 1);
        // Not a multiple of 8 in a non-final fragment.
        assert!(d.offer(&frag(3, 0, true, &[1; 5]), 1).is_none());
        // Past 65 535 bytes.
        assert!(d.offer(&frag(4, 65_528, false, &[1; 16]), 1).is_none());
        assert_eq!(d.stats().malformed, 2);
        assert_eq!(d.held_bytes(), 0);
    }

    #[test]
    fn datagrams_time_out_by_capture_time() {
        let mut d = Defragmenter::new(DefragLimits {
            max_bytes: 1 << 20,
            timeout_ns: 100,
        });
        assert!(d.offer(&frag(1, 0, true, &[1; 8]), 1_000).is_none());
        assert!(d.offer(&frag(2, 0, true, &[1; 8]), 1_050).is_none());
        // 1 101: datagram 1's deadline (1 100) passed, datagram 2's (1 150) not.
        assert!(d.offer(&frag(3, 0, true, &[1; 8]), 1_101).is_none());
        assert_eq!(d.stats().timed_out, 1);
        assert!(d.offer(&frag(1, 8, false, &[1; 8]), 1_101).is_none());
        let done = d.offer(&frag(2, 8, false, &[2; 8]), 1_101);
        assert!(done.is_some());
        // Time going backwards expires nothing.
        assert!(d.offer(&frag(5, 0, true, &[1; 8]), 0).is_none());
        assert_eq!(d.stats().timed_out, 1);
    }

    #[test]
    fn the_byte_bound_drops_the_oldest_datagram() {
        let mut d = Defragmenter::new(DefragLimits {
            max_bytes: 4096,
            timeout_ns: u64::MAX,
        });
        for id in 0..100u32 {
            assert!(d.offer(&frag(id, 0, true, &[0; 1024]), 1).is_none());
            assert!(d.held_bytes() <= 4096, "held {} at {id}", d.held_bytes());
        }
        assert!(d.stats().evicted >= 96);
        // The newest datagrams are still there and complete.
        assert!(d.offer(&frag(99, 1024, false, &[0; 8]), 1).is_some());
        // A datagram larger than the whole bound is dropped alone.
        let mut small = Defragmenter::new(DefragLimits {
            max_bytes: 100,
            timeout_ns: u64::MAX,
        });
        assert!(small.offer(&frag(1, 0, true, &[0; 1024]), 1).is_none());
        assert_eq!((small.in_progress(), small.held_bytes()), (0, 0));
    }

    #[test]
    fn the_count_bound_and_the_queue_stay_bounded_under_a_flood() {
        let mut d = Defragmenter::new(DefragLimits {
            max_bytes: usize::MAX,
            timeout_ns: u64::MAX,
        });
        // Many datagrams that each complete, at one capture time: the queue's stale
        // entries are compacted.
        for id in 0..20_000u32 {
            assert!(d.offer(&frag(id, 0, true, &[0; 8]), 1).is_none());
            assert!(d.offer(&frag(id, 8, false, &[0; 8]), 1).is_some());
        }
        assert!(d.order.len() <= 2 * d.pending.len() + 65);
        // Many that never complete: at most MAX_DATAGRAMS held.
        for id in 0..(MAX_DATAGRAMS as u32 + 500) {
            d.offer(&frag(100_000 + id, 0, true, &[0; 8]), 1);
        }
        assert_eq!(d.in_progress(), MAX_DATAGRAMS);
        assert_eq!(d.stats().evicted, 500);
    }

    #[test]
    fn too_many_pieces_drop_the_datagram() {
        let mut d = defrag();
        // Every other 8-byte piece: no two touch, so each is its own range.
        for i in 0..MAX_PIECES as u32 {
            d.offer(&frag(1, i * 16, true, &[0; 8]), 1);
        }
        assert_eq!(d.in_progress(), 1);
        d.offer(&frag(1, MAX_PIECES as u32 * 16, true, &[0; 8]), 1);
        assert_eq!(d.in_progress(), 0);
        assert_eq!(d.stats().malformed, 1);
    }

    #[test]
    fn off_means_nothing_is_held() {
        let mut d = Defragmenter::new(DefragLimits {
            max_bytes: 0,
            timeout_ns: 1,
        });
        assert!(!d.enabled());
        assert!(d.offer(&frag(1, 0, false, &[1; 8]), 1).is_none());
        assert_eq!(d.stats(), DefragStats::default());
    }
}
