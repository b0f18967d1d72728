//! Strings an outsider controls (chef `describe` fields and log lines, chef file names,
//! names from hellos), made safe to print: one escaping helper, used by the kitchen's
//! logs, `nd-sniff -l`, status dumplings and the hub, so a newline cannot forge a log line
//! or a list entry and a terminal escape never reaches a terminal.
//!
//! Escaped: every control character (C0, DEL, C1: `\n`, `\r`, `\t`, ESC, ...), the
//! backslash itself (so the output is unambiguous), and every character that reorders or
//! hides text: Unicode's format characters (general category Cf: bidi marks, embeddings,
//! overrides and isolates, U+061C, zero-width joiners, BOM, tags, ...), the other default
//! ignorable ones (variation selectors, Hangul fillers, U+034F, ...) and the line and
//! paragraph separators. Everything else, including non-ASCII letters, is kept.

use std::fmt::{self, Write as _};

/// Default number of characters kept by [`escape`] callers that have no better bound:
/// enough for any real file name or chef description, small enough for one log line.
pub const DEFAULT_MAX_CHARS: usize = 256;

/// Whether `c` is printed as an escape rather than as itself.
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\' || is_invisible_format(c)
}

/// Whether `c` reorders or hides text: general category Cf (format), Default_Ignorable_Code_Point
/// and the line/paragraph separators (Zl, Zp), as of Unicode 15.1. Listed as a class, not as
/// the characters some attack used: a terminal or log viewer may act on any of them.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' // soft hyphen
        | '\u{034F}' // combining grapheme joiner
        | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}' // Arabic/Syriac format, ALM
        | '\u{0890}'..='\u{0891}' | '\u{08E2}'
        | '\u{115F}'..='\u{1160}' | '\u{3164}' | '\u{FFA0}' // Hangul fillers (invisible)
        | '\u{17B4}'..='\u{17B5}' | '\u{180B}'..='\u{180F}' // Khmer vowels, Mongolian selectors
        | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM/RLM
        | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings/overrides
        | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
        | '\u{FE00}'..='\u{FE0F}' // variation selectors
        | '\u{FEFF}' // BOM / zero-width no-break space
        | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}') // tags, variation selectors supplement
}

/// Appends `c` as JSON `\uXXXX` escapes (UTF-16 units, lowercase hex, a surrogate pair
/// above U+FFFF), as Python's `json.dumps` writes it: the one writer of such escapes for
/// `nd-print` and [`escape_json_text`].
pub fn push_json_u_escape(out: &mut String, c: char) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u16; 2];
    for unit in c.encode_utf16(&mut buf) {
        out.push_str("\\u");
        for shift in [12, 8, 4, 0] {
            out.push(char::from(HEX[usize::from((*unit >> shift) & 0xf)]));
        }
    }
}

/// Where the first character [`escape_json_text`] escapes starts in `b` (valid UTF-8),
/// found without decoding every character: the output of a replay is hundreds of MB, most
/// of it (DNSLookupChef's tables) dense with U+FFFD from names that were not UTF-8, and
/// `--stdout` is on the replay's hot path.
///
/// One pass over 64-byte blocks (a loop the compiler turns into SIMD compares) looks for a
/// *candidate* byte: DEL, or a non-ASCII byte other than 0xEF, 0xBF and 0xBD, the three
/// bytes of U+FFFD. Every character `needs_escape` names outside ASCII holds such a byte
/// (a unit test checks every character), so only blocks holding one are looked at closer:
/// there the character around each candidate is decoded and checked with `needs_escape`,
/// the one definition of the class.
fn first_escaped(b: &[u8]) -> Option<usize> {
    const BLOCK: usize = 64;
    let candidate = |x: u8| x >= 0x7F && x != 0xEF && x != 0xBF && x != 0xBD;
    let mut start = 0;
    for block in b.chunks(BLOCK) {
        // No early exit inside the block: this form vectorises.
        let any = block.iter().fold(false, |any, &x| any | candidate(x));
        if any {
            for (i, &x) in block.iter().enumerate() {
                if candidate(x) {
                    let at = start + i;
                    let char_start = char_start(b, at);
                    if let Some(c) = decode_at(b, char_start) {
                        if needs_escape(c) {
                            return Some(char_start);
                        }
                    }
                }
            }
        }
        start += block.len();
    }
    None
}

/// Where the UTF-8 character holding byte `at` starts (at most three continuation bytes back).
fn char_start(b: &[u8], at: usize) -> usize {
    let mut i = at;
    while i > 0 && at - i < 3 && (b[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

/// The character starting at `i` of valid UTF-8 text.
fn decode_at(b: &[u8], i: usize) -> Option<char> {
    let end = (i + 4).min(b.len());
    let tail = &b[i..end];
    // The longest valid prefix of at most four bytes holds the whole character.
    let valid = match std::str::from_utf8(tail) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&tail[..e.valid_up_to()]).ok()?,
    };
    valid.chars().next()
}

/// A JSON text (as serde_json writes it: controls below U+0020 already escaped) with every
/// character outside printable ASCII that [`escape`] escapes (DEL, C1 controls such as
/// U+009B, the 8-bit CSI many terminals act on, bidi overrides and isolates, zero-width
/// characters, line and paragraph separators, BOM, tags) written as a JSON `\uXXXX`
/// escape: the same JSON value, safe to write to a terminal. Such characters can only be
/// inside strings of a JSON text, where the escape means the same character. `None` when
/// there is nothing to escape (the usual case: a few SIMD byte searches, no allocation).
pub fn escape_json_text(json: &str) -> Option<String> {
    let first = first_escaped(json.as_bytes())?;
    // Rare from here: a character walk, as `escape` does.
    let mut out = String::with_capacity(json.len() + 16);
    out.push_str(&json[..first]);
    for c in json[first..].chars() {
        if needs_escape(c) && (c == '\u{7f}' || !c.is_ascii()) {
            push_json_u_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// `s` with control and formatting characters escaped (`\n`, `\r`, `\t`, `\\`, `\x1b`,
/// `\u{202e}`), cut after `max_chars` characters of input; a cut is marked with
/// `…[+N bytes]` so a reader knows text is missing. The result has no control characters
/// and at most about `6 * max_chars + 20` bytes.
pub fn escape(s: &str, max_chars: usize) -> String {
    escape_as(s, max_chars, false, false)
}

/// [`escape`], with every non-ASCII character escaped too when `ascii` is set, and
/// backslashes kept as they are when `keep_backslash` is ([`Escaped::composed`]).
fn escape_as(s: &str, max_chars: usize, ascii: bool, keep_backslash: bool) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(2)) + 2);
    let mut kept_bytes = 0;
    for (n, c) in s.chars().enumerate() {
        if n == max_chars {
            let _ = write!(out, "…[+{} bytes]", s.len() - kept_bytes);
            return out;
        }
        kept_bytes += c.len_utf8();
        if keep_backslash && c == '\\' {
            out.push(c);
        } else {
            push_escaped(&mut out, c, ascii);
        }
    }
    out
}

fn push_escaped(out: &mut String, c: char, ascii: bool) {
    if !needs_escape(c) && (c.is_ascii() || !ascii) {
        out.push(c);
        return;
    }
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\\' => out.push_str("\\\\"),
        c if (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// A `Display` of [`escape`] for `tracing` fields and `format!` (`%Escaped::new(name)`).
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a> {
    text: &'a str,
    max_chars: usize,
    /// Escape every non-ASCII character too ([`Escaped::ascii`]).
    ascii: bool,
    /// Keep backslashes as they are ([`Escaped::composed`]).
    keep_backslash: bool,
}

impl<'a> Escaped<'a> {
    /// `text`, escaped and cut at [`DEFAULT_MAX_CHARS`].
    pub fn new(text: &'a str) -> Self {
        Escaped {
            text,
            max_chars: DEFAULT_MAX_CHARS,
            ascii: false,
            keep_backslash: false,
        }
    }

    /// `text` with every non-ASCII character escaped as well (`\u{435}`), cut at
    /// [`DEFAULT_MAX_CHARS`]: for names that must not pass for another by a look-alike
    /// letter of another script (eaters print chef names this way, so a kitchen's
    /// `SystemStatusCh\u{435}f` cannot pass for the hub's `SystemStatusChef`).
    pub fn ascii(text: &'a str) -> Self {
        Escaped {
            text,
            max_chars: DEFAULT_MAX_CHARS,
            ascii: true,
            keep_backslash: false,
        }
    }

    /// `text`, escaped and cut at `max_chars` characters.
    pub fn with_max(text: &'a str, max_chars: usize) -> Self {
        Escaped {
            text,
            max_chars,
            ascii: false,
            keep_backslash: false,
        }
    }

    /// `text` composed of parts some of which are escaped already (an error naming a path
    /// it escaped, around words of the OS or of a chef that it did not), cut at
    /// `max_chars`: every character [`escape`] escapes is escaped except the backslash,
    /// which is kept, so `\x1b` from an escaped path does not print as `\\x1b`. Nothing
    /// unsafe gets through; only a backslash the text held itself reads as it is.
    pub fn composed(text: &'a str, max_chars: usize) -> Self {
        Escaped {
            text,
            max_chars,
            ascii: false,
            keep_backslash: true,
        }
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The usual case (a plain name within the cut) is written as it is, without building
        // a copy: `nd-print` writes two per dumpling.
        let plain = |c: char| {
            (!needs_escape(c) || (self.keep_backslash && c == '\\'))
                && (c.is_ascii() || !self.ascii)
        };
        if self.text.len() <= self.max_chars && self.text.chars().all(plain) {
            return f.write_str(self.text);
        }
        f.write_str(&escape_as(
            self.text,
            self.max_chars,
            self.ascii,
            self.keep_backslash,
        ))
    }
}

/// A file path (as the OS gave it: not necessarily UTF-8), escaped and cut at
/// [`DEFAULT_MAX_CHARS`] characters: each byte that is not UTF-8 shows as `\xNN` (not as
/// U+FFFD, so two names differing only in such bytes never print alike).
pub fn escape_path(path: &std::path::Path) -> String {
    let bytes = path.as_os_str().as_encoded_bytes();
    if let Ok(text) = std::str::from_utf8(bytes) {
        return escape(text, DEFAULT_MAX_CHARS);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    let mut shown = 0;
    let mut kept_bytes = 0;
    for chunk in bytes.utf8_chunks() {
        let units = chunk
            .valid()
            .chars()
            .map(|c| (c.len_utf8(), Some(c)))
            .chain(chunk.invalid().iter().map(|_| (1, None)));
        for (len, c) in units {
            if shown == DEFAULT_MAX_CHARS {
                let _ = write!(out, "…[+{} bytes]", bytes.len() - kept_bytes);
                return out;
            }
            match c {
                Some(c) => push_escaped(&mut out, c, false),
                None => {
                    let _ = write!(out, "\\x{:02x}", bytes[kept_bytes]);
                }
            }
            kept_bytes += len;
            shown += 1;
        }
    }
    out
}

/// One formatted log record made safe for a terminal, whatever its fields held: every
/// control or formatting character is escaped as [`escape`] would (a newline inside the
/// record cannot start a forged log line, a title-setting or cursor escape never reaches
/// the terminal), except the record's final newline, tabs, and — when `keep_colours` (the
/// logger colours its own output) — SGR colour sequences `ESC [ digits ; ... m`. The
/// backslash is kept as it is (the record's own text may hold escapes already). Borrowed
/// when nothing needs escaping (the usual case).
///
/// For the writer under a `tracing` subscriber: messages are escaped by their authors
/// already, but a field's `Display` (a path, an error from the OS naming a file) may not be.
pub fn sanitize_log_record(record: &str, keep_colours: bool) -> std::borrow::Cow<'_, str> {
    let body = record.strip_suffix('\n').unwrap_or(record);
    let unsafe_char = |c: char| c != '\\' && c != '\t' && needs_escape(c);
    if !body.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(record);
    }
    let mut out = String::with_capacity(record.len() + 16);
    let mut rest = body;
    while let Some(c) = rest.chars().next() {
        if keep_colours && c == '\u{1b}' {
            if let Some(len) = sgr_len(rest) {
                out.push_str(&rest[..len]);
                rest = &rest[len..];
                continue;
            }
        }
        if unsafe_char(c) {
            push_escaped(&mut out, c, false);
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    if body.len() < record.len() {
        out.push('\n');
    }
    std::borrow::Cow::Owned(out)
}

/// Length of the SGR sequence (`ESC [ 0-9 ; ... m`, at most 32 bytes) `s` starts with.
fn sgr_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(1) != Some(&b'[') {
        return None;
    }
    let params = b[2..]
        .iter()
        .take(30)
        .take_while(|&&x| x.is_ascii_digit() || x == b';')
        .count();
    (b.get(2 + params) == Some(&b'm')).then_some(3 + params)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_byte_search_finds_exactly_the_escaped_characters() {
        // `escape_json_text` finds candidates by a few bytes: for every character, alone
        // and between others (U+FFFD, é, ASCII), it must find the character exactly when
        // `needs_escape` names it (DEL and non-ASCII: ASCII controls are serde's to escape).
        for c in (0x7Fu32..=0x10_FFFF).filter_map(char::from_u32) {
            let must = needs_escape(c);
            for (before, after) in [("", ""), ("a\u{fffd}", "\u{fffd}b"), ("é", "\u{bf}")] {
                let text = format!("{before}{c}{after}");
                assert_eq!(
                    first_escaped(text.as_bytes()),
                    must.then_some(before.len()),
                    "U+{:04X} in {text:?}",
                    c as u32
                );
            }
        }
    }

    #[test]
    fn json_text_escapes_are_the_same_value_and_leave_nothing_to_a_terminal() {
        // Every character of the class, and neighbours that are kept, inside a key and a
        // value: the escaped text parses to the same value and holds none of them raw.
        let mut chars: Vec<char> = (0x7Fu32..0x3000)
            .chain(0xFE00..0x1_0000)
            .chain(0xE0000..0xE0100)
            .chain([0x1F600, 0x10FFFF])
            .filter_map(char::from_u32)
            .collect();
        chars.extend("é漢😀".chars());
        for c in chars {
            let value = serde_json::json!({ format!("k{c}"): format!("a{c}b\\\"{c}") });
            let text = serde_json::to_string(&value).expect("serialize");
            let escaped = escape_json_text(&text);
            let out = escaped.as_deref().unwrap_or(&text);
            let back: serde_json::Value = serde_json::from_str(out).expect("still JSON");
            assert_eq!(back, value, "U+{:04X}: {out}", c as u32);
            let raw_left = out
                .chars()
                .any(|x| needs_escape(x) && !x.is_ascii() || x == '\u{7f}');
            assert!(!raw_left, "U+{:04X} left raw: {out:?}", c as u32);
            // Only what must change changes.
            let must = needs_escape(c) && (c == '\u{7f}' || !c.is_ascii());
            assert_eq!(escaped.is_some(), must, "U+{:04X}", c as u32);
        }
        assert_eq!(
            escape_json_text("{\"a\":\"\u{9b}2J\u{202e}\u{e0041}x\u{7f}\"}").as_deref(),
            Some("{\"a\":\"\\u009b2J\\u202e\\udb40\\udc41x\\u007f\"}")
        );
        assert_eq!(escape_json_text("{\"a\":\"plain ascii, é and 漢\"}"), None);
    }

    #[test]
    fn escaped_displays_exactly_what_escape_gives() {
        for s in [
            "",
            "plain",
            "default_kitchen",
            "a\\b",
            "\u{1b}[2J",
            "é".repeat(300).as_str(),
            "x".repeat(256).as_str(),
            "x".repeat(257).as_str(),
            "\u{202e}rtl",
        ] {
            for max in [0, 1, 5, 64, 256, 1024] {
                assert_eq!(
                    super::Escaped::with_max(s, max).to_string(),
                    super::escape(s, max),
                    "{s:?} {max}"
                );
            }
        }
    }

    use super::*;

    #[test]
    fn ascii_escapes_look_alike_letters_of_other_scripts() {
        assert_eq!(
            Escaped::ascii("SystemStatusCh\u{435}f").to_string(),
            "SystemStatusCh\\u{435}f"
        );
        assert_eq!(
            Escaped::ascii("PacketCountChef").to_string(),
            "PacketCountChef"
        );
        assert_eq!(Escaped::ascii("a\u{2800}\n").to_string(), "a\\u{2800}\\n");
        assert_eq!(Escaped::new("caf\u{e9}").to_string(), "caf\u{e9}");
    }

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert_eq!(escape("a\nb\rc\td", 100), "a\\nb\\rc\\td");
        assert_eq!(escape("\u{1b}[31mred", 100), "\\x1b[31mred");
        assert_eq!(escape("back\\slash", 100), "back\\\\slash");
        assert_eq!(escape("\u{202e}evil", 100), "\\u{202e}evil");
        assert_eq!(escape("\u{85}\u{7f}\0", 100), "\\x85\\x7f\\x00");
        // Format characters beyond the well-known bidi overrides: the Arabic letter mark
        // (a bidi control), a variation selector, a Hangul filler, a tag, a soft hyphen.
        assert_eq!(
            escape("a\u{61c}b\u{fe0f}c\u{3164}d\u{e0041}e\u{ad}", 100),
            "a\\u{61c}b\\u{fe0f}c\\u{3164}d\\u{e0041}e\\xad"
        );
        assert_eq!(
            escape_json_text("{\"k\":\"x\u{61c}y\"}").as_deref(),
            Some("{\"k\":\"x\\u061cy\"}")
        );
        assert_eq!(escape("ARPChef ünïcode ✓", 100), "ARPChef ünïcode ✓");
        for c in (0u32..0x110000).filter_map(char::from_u32) {
            let e = escape(&c.to_string(), 10);
            assert!(!e.chars().any(|c| c.is_control()), "{c:?} -> {e:?}");
            assert!(!e.contains('\u{202e}') && !e.contains('\u{2028}'));
        }
    }

    #[test]
    fn long_text_is_cut_and_marked() {
        let s = "x".repeat(2 << 20);
        let e = escape(&s, 256);
        assert!(e.starts_with(&"x".repeat(256)));
        assert!(
            e.ends_with(&format!("…[+{} bytes]", (2 << 20) - 256)),
            "{e}"
        );
        assert!(e.len() < 300);
        // Worst case: every kept character escapes to `\u{10fff}`-like text.
        let worst = "\u{202e}".repeat(1000);
        assert!(escape(&worst, 256).len() <= 6 * 256 + 3 * 256 + 20);
        assert_eq!(Escaped::with_max("a\nb", 1).to_string(), "a…[+2 bytes]");
    }

    #[test]
    fn log_records_keep_one_line_and_only_their_own_colours() {
        use super::sanitize_log_record as clean;
        let plain = "2026 INFO k: Reading packets from a.pcap\n";
        assert!(matches!(clean(plain, true), std::borrow::Cow::Borrowed(_)));
        // A newline and a title escape from a path in a field: one line, no ESC left.
        let forged = "WARN cache dir=/x\u{1b}]0;T\nFAKE-LOG-LINE\u{1b}[31m\n";
        let out = clean(forged, false);
        assert_eq!(out, "WARN cache dir=/x\\x1b]0;T\\nFAKE-LOG-LINE\\x1b[31m\n");
        assert_eq!(out.matches('\n').count(), 1);
        // The logger's own colours survive when it colours; any other escape does not.
        let coloured = "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m k: \u{1b}]0;T\u{7}x\r\n";
        assert_eq!(
            clean(coloured, true),
            "\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m k: \\x1b]0;T\\x07x\\r\n"
        );
        // Bidi overrides and C1 controls too; tabs and backslashes stay.
        assert_eq!(
            clean("a\u{202e}b\u{85}c\td\\e", false),
            "a\\u{202e}b\\x85c\td\\e"
        );
    }

    #[test]
    fn paths_show_bytes_that_are_not_utf8_as_hex() {
        use std::os::unix::ffi::OsStrExt;
        let p = |b: &[u8]| std::path::Path::new(std::ffi::OsStr::from_bytes(b)).to_owned();
        assert_eq!(escape_path(&p(b"dir/a\xffb.wasm")), "dir/a\\xffb.wasm");
        assert_ne!(
            escape_path(&p(b"a\xff.wasm")),
            escape_path(&p(b"a\xfe.wasm"))
        );
        assert_eq!(escape_path(&p(b"\x1b[31m\xc3.wasm")), "\\x1b[31m\\xc3.wasm");
        assert_eq!(escape_path(&p("ok é.wasm".as_bytes())), "ok é.wasm");
        let long: Vec<u8> = std::iter::repeat_n(0xffu8, 300).collect();
        let shown = escape_path(&p(&long));
        assert!(shown.ends_with("…[+44 bytes]"), "{shown}");
        assert_eq!(shown.matches("\\xff").count(), DEFAULT_MAX_CHARS);
    }

    #[test]
    fn composed_text_keeps_escapes_it_holds_and_escapes_the_rest() {
        // An error naming a path it escaped, around raw words: the path's escapes read
        // once (they printed as `\\x1b`), the raw control characters are still escaped.
        let path = escape_path(std::path::Path::new("chefs/a\u{1b}[31m.wasm"));
        let error = format!("a symlink to {path}, which does not exist\n\u{202e}forged");
        assert_eq!(
            Escaped::composed(&error, 1024).to_string(),
            "a symlink to chefs/a\\x1b[31m.wasm, which does not exist\\n\\u{202e}forged"
        );
        assert_eq!(
            Escaped::with_max(&error, 1024).to_string(),
            "a symlink to chefs/a\\\\x1b[31m.wasm, which does not exist\\n\\u{202e}forged"
        );
        // Plain text, and the cut.
        assert_eq!(Escaped::composed("plain", 10).to_string(), "plain");
        assert_eq!(
            Escaped::composed("a\\b\u{7}cdef", 4).to_string(),
            "a\\b\\x07…[+4 bytes]"
        );
    }
}
