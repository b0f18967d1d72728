//! DNS messages (RFC 1035), as seen on UDP/TCP 53, mDNS (5353) and LLMNR (5355).
//!
//! * [`question`]: the header flags and the first question, read by hand with no
//!   allocation except the name: what most chefs need, at a few ns per packet.
//! * [`parse`]: the whole message via the [`simple_dns`] crate (answers, records), after
//!   a sanity check that stops hostile section counts from making it allocate megabytes.
//! * [`strip_tcp_length`]: DNS over TCP prefixes each message with a 2-byte length.

pub use simple_dns;

/// Size of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name we decode (RFC 1035 says 255 octets on the wire).
const MAX_NAME_LEN: usize = 255;
/// Compression pointers we follow before declaring a loop.
const MAX_POINTERS: usize = 16;

/// The header and the first question of a DNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Message id.
    pub id: u16,
    /// QR bit: `true` for a response, `false` for a query.
    pub is_response: bool,
    /// Opcode (0 = standard query).
    pub opcode: u8,
    /// Response code (0 = no error, 3 = NXDOMAIN).
    pub rcode: u8,
    /// Number of questions in the message.
    pub question_count: u16,
    /// Number of answers in the message.
    pub answer_count: u16,
    /// First question's name, labels joined with `.`, no trailing dot (the root is `""`).
    /// Label bytes that are not UTF-8 become U+FFFD.
    pub name: String,
    /// First question's type (1 = A, 28 = AAAA, 12 = PTR, ...).
    pub qtype: u16,
    /// First question's class, without the mDNS unicast-response bit (1 = IN).
    pub qclass: u16,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads the name at `start`; returns it and the offset just after it (in the original,
/// not the compressed-to, position).
pub fn read_name(msg: &[u8], start: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut pos = start;
    let mut end_after = None;
    let mut pointers = 0;
    let mut wire_len = 0usize;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Some((name, end_after.unwrap_or(pos + 1)));
                }
                let label = msg.get(pos + 1..pos + 1 + usize::from(len))?;
                wire_len += 1 + label.len();
                if wire_len > MAX_NAME_LEN {
                    return None;
                }
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&String::from_utf8_lossy(label));
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return None;
                }
                let target = usize::from(be16(msg, pos)? & 0x3fff);
                end_after.get_or_insert(pos + 2);
                pos = target;
            }
            // 0x40 / 0x80: extended label types, obsolete and unsupported.
            _ => return None,
        }
    }
}

/// The header flags and first question of `msg`; `None` if it is not a DNS message with
/// at least one readable question.
pub fn question(msg: &[u8]) -> Option<Question> {
    if msg.len() < HEADER_LEN {
        return None;
    }
    let flags = be16(msg, 2)?;
    let question_count = be16(msg, 4)?;
    if question_count == 0 {
        return None;
    }
    let (name, after) = read_name(msg, HEADER_LEN)?;
    Some(Question {
        id: be16(msg, 0)?,
        is_response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0x0f) as u8,
        rcode: (flags & 0x0f) as u8,
        question_count,
        answer_count: be16(msg, 6)?,
        name,
        qtype: be16(msg, after)?,
        qclass: be16(msg, after + 2)? & 0x7fff,
    })
}

/// Strips the 2-byte length prefix of DNS over TCP; `None` if the segment does not hold
/// a whole message (a chef that sees single segments cannot do better without
/// reassembly, which it should keep bounded if it tries).
pub fn strip_tcp_length(segment: &[u8]) -> Option<&[u8]> {
    let len = usize::from(be16(segment, 0)?);
    segment.get(2..2 + len)
}

/// The whole message, parsed by [`simple_dns`]. Returns `None` for anything malformed,
/// including section counts that could not fit in `msg` (checked first, so that a
/// 12-byte packet claiming 65535 records costs nothing).
pub fn parse(msg: &[u8]) -> Option<simple_dns::Packet<'_>> {
    let body = msg.len().checked_sub(HEADER_LEN)?;
    let qd = usize::from(be16(msg, 4)?);
    let records =
        usize::from(be16(msg, 6)?) + usize::from(be16(msg, 8)?) + usize::from(be16(msg, 10)?);
    // A question is at least 5 bytes (root name + type + class), a record at least 11.
    if qd * 5 + records * 11 > body {
        return None;
    }
    simple_dns::Packet::parse(msg).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `www.example.test` A, id 0x1234.
    fn query() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["www", "example", "test"] {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    #[test]
    fn reads_first_question() {
        let bytes = query();
        let q = question(&bytes).expect("valid query");
        assert_eq!(q.name, "www.example.test");
        assert_eq!(
            (q.id, q.is_response, q.qtype, q.qclass),
            (0x1234, false, 1, 1)
        );
        let full = parse(&bytes).expect("simple-dns parses it");
        assert_eq!(full.questions.len(), 1);
        assert_eq!(full.questions[0].qname.to_string(), "www.example.test");
    }

    #[test]
    fn follows_compression_and_stops_loops() {
        // Response with the question name given as a pointer to offset 12 (itself):
        let mut m = vec![
            0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ];
        assert_eq!(question(&m), None, "self-pointer loop is rejected");
        // A pointer to a real name later in the message.
        m = vec![
            0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 18, 0, 1, 0, 1,
        ];
        m.extend_from_slice(&[1, b'a', 0]);
        let q = question(&m).expect("pointer followed");
        assert_eq!((q.name.as_str(), q.is_response, q.qtype), ("a", true, 1));
    }

    #[test]
    fn garbage_never_panics() {
        let q = query();
        for cut in 0..q.len() {
            let _ = question(&q[..cut]);
            let _ = parse(&q[..cut]);
        }
        assert_eq!(question(&q[..q.len() - 1]), None, "qclass cut short");
        // Hostile counts: 12 bytes claiming 65535 of everything.
        let hostile = [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(parse(&hostile).is_none());
        assert!(question(&hostile).is_none());
        // Pseudo-random bytes.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let buf: Vec<u8> = (0..64)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = question(&buf);
            let _ = parse(&buf);
        }
        // Zero questions.
        let mut none = query();
        none[5] = 0;
        assert!(question(&none).is_none());
    }

    #[test]
    fn tcp_framing() {
        let q = query();
        let mut seg = vec![0, q.len() as u8];
        seg.extend_from_slice(&q);
        assert_eq!(strip_tcp_length(&seg), Some(&q[..]));
        assert_eq!(strip_tcp_length(&seg[..5]), None);
    }
}
