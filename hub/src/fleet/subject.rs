//! NATS subjects for dumplings: `<prefix>.<kitchen>.<chef>.<driver>`, one escaped token
//! per name.
//!
//! NATS splits subjects on `.`, treats `*` and `>` as wildcards, and rejects whitespace
//! and control bytes; kitchen and chef names are chosen by outsiders and may hold any of
//! these. So every token is escaped:
//!
//! * bytes `A-Z a-z 0-9 _ -` are kept as they are;
//! * every other byte (including `~` itself, `.`, `*`, `>`, spaces, non-ASCII UTF-8
//!   bytes and control bytes) becomes `~` followed by two upper-case hex digits;
//! * an empty name (or a missing kitchen, as on hub status dumplings) becomes `~`;
//! * an escaped token longer than [`MAX_TOKEN`] is cut and ends with `~h` plus 16 hex
//!   digits of a hash of the whole name, so subjects stay bounded and distinct.
//!
//! The escaping is reversible for every token that was not cut ([`unescape_token`]),
//! and an eater-side filter can be written with plain wildcards:
//! `nd.dumplings.*.DNSLookupChef.>` is every kitchen's `DNSLookupChef`.

/// Longest escaped token before it is cut and hashed.
pub const MAX_TOKEN: usize = 128;

/// Escape one name into one subject token (see the module docs).
pub fn escape_token(name: &str) -> String {
    if name.is_empty() {
        return "~".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('~');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    if out.len() > MAX_TOKEN {
        // The escaped text is ASCII; cut it, but never inside a `~HH` escape, then add
        // the hash of the full name so two long names that share a prefix stay distinct.
        let mut cut = MAX_TOKEN - 18;
        if let Some(p) = out[..cut].rfind('~') {
            if p + 3 > cut {
                cut = p;
            }
        }
        out.truncate(cut);
        out.push_str("~h");
        out.push_str(&format!("{:016X}", fnv1a(name.as_bytes())));
    }
    out
}

/// Undo [`escape_token`] for a token that was not cut; `None` for a cut token or
/// anything that is not a valid escaped token.
pub fn unescape_token(token: &str) -> Option<String> {
    if token == "~" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'~' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The subject of one dumpling.
pub fn dumpling_subject(prefix: &str, kitchen: Option<&str>, chef: &str, driver: &str) -> String {
    format!(
        "{prefix}.{}.{}.{}",
        escape_token(kitchen.unwrap_or("")),
        escape_token(chef),
        escape_token(driver)
    )
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// FNV-1a 64: a fixed hash, so every hub derives the same subject for the same name.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_valid_token(token: &str) -> bool {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'~')
    }

    #[test]
    fn plain_names_are_kept_and_specials_escaped() {
        assert_eq!(escape_token("DNSLookupChef"), "DNSLookupChef");
        assert_eq!(escape_token("my_kitchen-1"), "my_kitchen-1");
        assert_eq!(escape_token("a.b"), "a~2Eb");
        assert_eq!(escape_token("*"), "~2A");
        assert_eq!(escape_token(">"), "~3E");
        assert_eq!(escape_token("a b\t"), "a~20b~09");
        assert_eq!(escape_token("~"), "~7E");
        assert_eq!(escape_token(""), "~");
        assert_eq!(escape_token("é"), "~C3~A9");
        assert_eq!(
            dumpling_subject("nd.dumplings", Some("k.1"), "C", "packet"),
            "nd.dumplings.k~2E1.C.packet"
        );
        assert_eq!(
            dumpling_subject("nd.dumplings", None, "SystemStatusChef", "interval"),
            "nd.dumplings.~.SystemStatusChef.interval"
        );
    }

    #[test]
    fn escaping_round_trips_and_is_injective() {
        let names = [
            "",
            "~",
            "~7E",
            "a.b",
            "a~2Eb",
            "x y>z*",
            "日本",
            "\u{0}\u{7f}",
        ];
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let token = escape_token(name);
            assert!(is_valid_token(&token), "{token:?}");
            assert_eq!(unescape_token(&token).as_deref(), Some(name));
            assert!(seen.insert(token), "collision for {name:?}");
        }
    }

    #[test]
    fn long_names_are_cut_and_hashed() {
        let a = "é".repeat(200);
        let b = format!("{}x", "é".repeat(199));
        let (ta, tb) = (escape_token(&a), escape_token(&b));
        assert!(ta.len() <= MAX_TOKEN && tb.len() <= MAX_TOKEN, "{ta} {tb}");
        assert!(is_valid_token(&ta) && is_valid_token(&tb));
        assert_ne!(ta, tb);
        assert_eq!(unescape_token(&ta), None);
        let long_plain = "k".repeat(500);
        let t = escape_token(&long_plain);
        assert!(t.len() <= MAX_TOKEN && t.contains("~h"));
    }
}
