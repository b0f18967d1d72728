//! The DNS slots of a packed record (offsets 224..256, `docs/packed-batch.md`).
//!
//! Why: an interpreted chef that reads `packet.dns` / `packet.parse_dns()` spent most of
//! its time walking the question name byte by byte in the interpreter (a Python or JS
//! loop per label, inside wasm). The kitchen reads the DNS header and the first question
//! here, in Rust, for the packets on the DNS ports, and the SDKs build their DNS views from
//! these slots; the name travels as one byte string in the batch's tail.
//!
//! The rules are the SDKs' own DNS parser (`chef-sdk/python/netdumplings_chef/packet.py`,
//! `chef-sdk/js/netdumplings-chef.js`), so a chef sees the same values whether the slots
//! are filled or the SDK parses the payload itself: the message is the UDP payload, or over
//! TCP the length-prefixed message when it fits; the header needs 12 bytes; names follow at
//! most [`MAX_POINTERS`] compression pointers and at most [`MAX_NAME_LEN`] wire bytes; the
//! questions that parse are listed, stopping at the first that does not. Where the slots
//! cannot say that exactly (a second question, or a label holding a `.` byte, which the
//! dotted form would hide), `QUESTIONS_COMPLETE` stays off and the SDK parses the payload.

/// Offset of the DNS slots in a record.
pub const AT: usize = 224;

/// DNS bits (record offset 224, u8).
pub mod bits {
    /// The packet is UDP or TCP with port 53 or 5353 on either side: the slots are filled.
    /// Off: the SDK parses the payload itself when asked.
    pub const CHECKED: u8 = 1 << 0;
    /// The payload holds a DNS message (at least a 12-byte header): the header slots and
    /// the message span are filled.
    pub const MESSAGE: u8 = 1 << 1;
    /// The first question parsed: name (in the tail), qtype and qclass are filled.
    pub const QUESTION: u8 = 1 << 2;
    /// The questions that parse are exactly the first one (`QUESTION` on) or none.
    pub const QUESTIONS_COMPLETE: u8 = 1 << 3;
}

/// Ports on which the kitchen fills the slots (DNS and mDNS, either side).
const PORTS: [u16; 2] = [53, 5353];
/// Longest name the SDKs decode, in wire bytes (RFC 1035: 255 octets).
const MAX_NAME_LEN: usize = 255;
/// Compression pointers followed before a name is declared a loop.
const MAX_POINTERS: usize = 16;
/// Size of the DNS header.
const HEADER_LEN: usize = 12;

/// Whether the slots are filled for a packet with these ports.
pub fn on_dns_port(source: u16, destination: u16) -> bool {
    PORTS.contains(&source) || PORTS.contains(&destination)
}

/// The DNS message in a UDP or TCP payload, and its offset in the payload; `None` when
/// too short for a header (or over TCP, when the length-prefixed message does not fit).
pub fn message(payload: &[u8], tcp: bool) -> Option<(usize, &[u8])> {
    let (at, msg) = if tcp {
        let len = usize::from(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]));
        (2, payload.get(2..2 + len)?)
    } else {
        (0, payload)
    };
    (msg.len() >= HEADER_LEN).then_some((at, msg))
}

/// The first question of `msg` as the SDKs' parser reads it: the labels joined with `.`
/// (no trailing dot) are appended to `name`; returns `(qtype, raw qclass)`, or `None` when
/// the question does not parse. `dotted` is set when a label holds a `.` byte.
fn first_question(msg: &[u8], name: &mut Vec<u8>, dotted: &mut bool) -> Option<(u16, u16)> {
    let start = name.len();
    let mut pos = HEADER_LEN;
    let mut end = None;
    let mut pointers = 0;
    let mut wire = 0;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0 if len == 0 => {
                let after = end.unwrap_or(pos + 1);
                let b = msg.get(after..after + 4)?;
                return Some((
                    u16::from_be_bytes([b[0], b[1]]),
                    u16::from_be_bytes([b[2], b[3]]),
                ));
            }
            0 => {
                let label = msg.get(pos + 1..pos + 1 + usize::from(len))?;
                wire += 1 + label.len();
                if wire > MAX_NAME_LEN {
                    return None;
                }
                if name.len() > start {
                    name.push(b'.');
                }
                *dotted |= label.contains(&b'.');
                name.extend_from_slice(label);
                pos += 1 + label.len();
            }
            0xc0 => {
                pointers += 1;
                let low = *msg.get(pos + 1)?;
                if pointers > MAX_POINTERS {
                    return None;
                }
                end.get_or_insert(pos + 2);
                pos = (usize::from(len & 0x3f) << 8) | usize::from(low);
            }
            _ => return None,
        }
    }
}

/// Fill the DNS slots of `rec` for a UDP/TCP packet on a DNS port whose payload is
/// `payload` (at `payload_offset` in the arena); the first question's name is appended to
/// `tail`, whose first byte sits at `tail_base` in `headers`.
pub fn fill(
    rec: &mut [u8],
    payload: &[u8],
    payload_offset: u32,
    tcp: bool,
    tail: &mut Vec<u8>,
    tail_base: usize,
) {
    let mut b = bits::CHECKED;
    if let Some((at, msg)) = message(payload, tcp) {
        b |= bits::MESSAGE;
        for i in 0..6 {
            let v = u16::from_be_bytes([msg[2 * i], msg[2 * i + 1]]);
            rec[AT + 8 + 2 * i..AT + 10 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        // `at` is 0 or 2 and `msg` lies inside the payload, whose span fits a u32.
        let off = payload_offset.saturating_add(at as u32);
        rec[AT + 24..AT + 28].copy_from_slice(&off.to_le_bytes());
        rec[AT + 28..AT + 32].copy_from_slice(&(msg.len() as u32).to_le_bytes());
        let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
        let start = tail.len();
        let mut dotted = false;
        let question = if qdcount == 0 {
            None
        } else {
            first_question(msg, tail, &mut dotted)
        };
        match question {
            Some((qtype, qclass)) if !dotted => {
                b |= bits::QUESTION;
                if qdcount == 1 {
                    b |= bits::QUESTIONS_COMPLETE;
                }
                // A name is at most 255 wire bytes, and a batch's tail stays far below 4 GiB.
                let name_len = (tail.len() - start) as u16;
                let name_at = (tail_base + start) as u32;
                rec[AT + 2..AT + 4].copy_from_slice(&name_len.to_le_bytes());
                rec[AT + 4..AT + 8].copy_from_slice(&name_at.to_le_bytes());
                rec[AT + 20..AT + 22].copy_from_slice(&qtype.to_le_bytes());
                rec[AT + 22..AT + 24].copy_from_slice(&qclass.to_le_bytes());
            }
            Some(_) => tail.truncate(start),
            None => {
                tail.truncate(start);
                // No question parses, so the list of those that parse is empty.
                b |= bits::QUESTIONS_COMPLETE;
            }
        }
    }
    rec[AT] = b;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message with `names` as questions (labels given as byte strings).
    fn msg(flags: u16, names: &[&[&[u8]]]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&(names.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 2, 0, 3, 0, 4]);
        for labels in names {
            for l in *labels {
                m.push(l.len() as u8);
                m.extend_from_slice(l);
            }
            m.extend_from_slice(&[0, 0, 28, 0x80, 1]);
        }
        m
    }

    fn slots(payload: &[u8], tcp: bool) -> (Vec<u8>, Vec<u8>) {
        let mut rec = vec![0u8; 256];
        let mut tail = b"xx".to_vec();
        fill(&mut rec, payload, 100, tcp, &mut tail, 1000);
        (rec, tail)
    }

    fn u16_at(rec: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([rec[at], rec[at + 1]])
    }

    fn u32_at(rec: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(rec[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn one_question() {
        let m = msg(0x8180, &[&[b"www", b"example", b"test"]]);
        let (rec, tail) = slots(&m, false);
        assert_eq!(
            rec[AT],
            bits::CHECKED | bits::MESSAGE | bits::QUESTION | bits::QUESTIONS_COMPLETE
        );
        let (len, at) = (u16_at(&rec, AT + 2) as usize, u32_at(&rec, AT + 4) as usize);
        assert_eq!(at, 1002);
        assert_eq!(&tail[at - 1000..at - 1000 + len], b"www.example.test");
        let header: Vec<u16> = (0..6).map(|i| u16_at(&rec, AT + 8 + 2 * i)).collect();
        assert_eq!(header, [0x1234, 0x8180, 1, 2, 3, 4]);
        assert_eq!((u16_at(&rec, AT + 20), u16_at(&rec, AT + 22)), (28, 0x8001));
        assert_eq!(
            (u32_at(&rec, AT + 24), u32_at(&rec, AT + 28)),
            (100, m.len() as u32)
        );
    }

    #[test]
    fn tcp_length_prefix() {
        let m = msg(0x0100, &[&[b"a", b"test"]]);
        let mut seg = (m.len() as u16).to_be_bytes().to_vec();
        seg.extend_from_slice(&m);
        let (rec, _) = slots(&seg, true);
        assert_eq!(rec[AT] & bits::QUESTION, bits::QUESTION);
        assert_eq!(
            (u32_at(&rec, AT + 24), u32_at(&rec, AT + 28)),
            (102, m.len() as u32)
        );
        // A prefix claiming more than the segment holds: not a message.
        seg.pop();
        assert_eq!(slots(&seg, true).0[AT], bits::CHECKED);
        assert_eq!(slots(&[0; 11], false).0[AT], bits::CHECKED);
    }

    #[test]
    fn what_the_slots_cannot_say_is_left_to_the_sdk() {
        // Two questions: the first is given, the list is not complete.
        let (rec, _) = slots(&msg(0, &[&[b"a"], &[b"b"]]), false);
        assert_eq!(rec[AT], bits::CHECKED | bits::MESSAGE | bits::QUESTION);
        // A label holding a dot: no name, not complete, nothing left in the tail.
        let (rec, tail) = slots(&msg(0, &[&[b"a.b", b"c"]]), false);
        assert_eq!(rec[AT], bits::CHECKED | bits::MESSAGE);
        assert_eq!(tail, b"xx");
        // No question, or a first question that does not parse: complete and empty.
        let (rec, _) = slots(&msg(0, &[]), false);
        assert_eq!(
            rec[AT],
            bits::CHECKED | bits::MESSAGE | bits::QUESTIONS_COMPLETE
        );
        let mut bad = msg(0, &[&[b"abc"]]);
        bad.truncate(bad.len() - 3);
        let (rec, tail) = slots(&bad, false);
        assert_eq!(
            rec[AT],
            bits::CHECKED | bits::MESSAGE | bits::QUESTIONS_COMPLETE
        );
        assert_eq!(tail, b"xx");
    }

    #[test]
    fn names_follow_pointers_within_bounds() {
        // Root name, then a pointer back to a name in the header area.
        let mut m = msg(0, &[]);
        m[5] = 1;
        m.extend_from_slice(&[0xc0, 18, 0, 1, 0, 1]);
        m.extend_from_slice(&[3, b'f', b'o', b'o', 0]);
        let (rec, tail) = slots(&m, false);
        assert_eq!(rec[AT] & bits::QUESTION, bits::QUESTION);
        let at = u32_at(&rec, AT + 4) as usize - 1000;
        assert_eq!(&tail[at..at + u16_at(&rec, AT + 2) as usize], b"foo");
        // A pointer loop is refused after MAX_POINTERS.
        let mut l = msg(0, &[]);
        l[5] = 1;
        l.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(slots(&l, false).0[AT] & bits::QUESTION, 0);
        // A name over 255 wire bytes is refused.
        let long: Vec<&[u8]> = vec![&[b'x'; 63][..]; 4];
        assert_eq!(slots(&msg(0, &[&long]), false).0[AT] & bits::QUESTION, 0);
        let ok: Vec<&[u8]> = vec![&[b'x'; 63][..]; 3];
        assert_eq!(
            slots(&msg(0, &[&ok]), false).0[AT] & bits::QUESTION,
            bits::QUESTION
        );
    }
}
