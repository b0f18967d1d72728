//! The original eaters' output formats.
//!
//! * [`python_pretty`]: Python's `json.dumps(sort_keys=True, indent=4,
//!   separators=(',', ': '))` with `ensure_ascii`, including Python's float `repr`.
//! * [`local_iso`]: `datetime.fromtimestamp(t).isoformat()` (local time, microseconds
//!   that disappear when zero).
//! * [`colorize_json`]: ANSI colours close to Pygments' `TerminalFormatter` for JSON.

use std::fmt::Write;

use chrono::{Local, TimeZone};
use serde_json::Value;

/// Bold on (termcolor's `attrs=['bold']`).
pub const BOLD: &str = "\x1b[1m";
/// Reset after bold.
pub const RESET: &str = "\x1b[0m";

/// Python's `repr(float)`: shortest round-trip digits; fixed notation when the decimal
/// exponent is in [-4, 16), else `d.ddde+XX`.
pub fn python_float(value: f64) -> String {
    let mut out = String::new();
    write_python_float(&mut out, value);
    out
}

/// [`python_float`], appended to `out` (no allocation but `out`'s growth: the pretty printer
/// writes thousands of floats per table).
fn write_python_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if value == 0.0 {
        out.push_str(if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.7957398625128865e9":
    // at most 17 digits, a point, an `e` and a 4-character exponent.
    let mut sci = Scratch::default();
    let _ = write!(sci, "{:e}", value.abs());
    let sci = sci.as_str();
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits = [0u8; 24];
    let mut n = 0;
    for b in mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .take(digits.len())
    {
        digits[n] = b;
        n += 1;
    }
    let digits = std::str::from_utf8(&digits[..n]).unwrap_or("0");
    if value < 0.0 {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            push_repeated(out, '0', (-point) as usize);
            out.push_str(digits);
        } else if point as usize >= digits.len() {
            out.push_str(digits);
            push_repeated(out, '0', point as usize - digits.len());
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// A fixed buffer for one float's `{:e}` text (never more than 32 bytes; more is cut).
#[derive(Default)]
struct Scratch {
    bytes: [u8; 32],
    len: usize,
}

impl Scratch {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("0e0")
    }
}

impl Write for Scratch {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = self.bytes.len() - self.len;
        let take = s.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

fn push_repeated(out: &mut String, c: char, times: usize) {
    const SPACES: &str = "                                                                ";
    if c == ' ' && times <= SPACES.len() {
        out.push_str(&SPACES[..times]);
    } else {
        out.extend(std::iter::repeat_n(c, times));
    }
}

/// Appends `s` as a JSON string the way Python's `json.dumps` writes it with
/// `ensure_ascii`: printable ASCII as is (runs copied at once), `"` `\\` and the short
/// escapes, everything else as `\uXXXX` (UTF-16 units, lowercase hex).
fn python_string(out: &mut String, s: &str) {
    out.push('"');
    let mut rest = s;
    while !rest.is_empty() {
        let plain = rest
            .bytes()
            .position(|b| !(b' '..=b'~').contains(&b) || b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
        out.push_str(&rest[..plain]);
        rest = &rest[plain..];
        let Some(c) = rest.chars().next() else {
            break;
        };
        rest = &rest[c.len_utf8()..];
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            _ => dumpling::text::push_json_u_escape(out, c),
        }
    }
    out.push('"');
}

fn python_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        write_python_float(out, n.as_f64().unwrap_or(f64::NAN));
    }
}

fn pretty_into(out: &mut String, value: &Value, depth: usize) {
    let indent = |out: &mut String, d: usize| {
        out.push('\n');
        push_repeated(out, ' ', d * 4);
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => python_number(out, n),
        Value::String(s) => python_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                pretty_into(out, item, depth + 1);
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push('{');
            // Python's sort_keys order: code points, which is UTF-8 byte order. Sorted
            // here explicitly: serde_json's map keeps insertion order when any crate in
            // the build enables its `preserve_order` feature.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                python_string(out, key);
                out.push_str(": ");
                pretty_into(out, item, depth + 1);
            }
            indent(out, depth);
            out.push('}');
        }
    }
}

/// `json.dumps(value, sort_keys=True, indent=4, separators=(',', ': '))`.
pub fn python_pretty(value: &Value) -> String {
    let mut out = String::new();
    pretty_into(&mut out, value, 0);
    out
}

/// Reusable buffers of [`PythonPretty`] (keep one per printer: after the first few
/// dumplings, printing allocates nothing).
#[derive(Debug, Default)]
pub struct PrettyScratch {
    /// The keys of every object still open, back to back (decoded, as Python sorts them).
    keys: String,
    /// The entries of every object still open, innermost last.
    entries: Vec<Entry>,
    /// An unsorted object's text while its entries are written back in order.
    moved: String,
}

/// One written `"key": value` of an object still open.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The decoded key: a span of [`PrettyScratch::keys`].
    key: (usize, usize),
    /// The entry's text (from the key's opening quote to the end of the value): a span of
    /// the output.
    text: (usize, usize),
}

/// [`python_pretty`] as a serde seed: writes the value into `out` while serde_json parses
/// it, instead of building a `Value` first.
///
/// Same bytes as [`python_pretty`] of the `Value` the same parse would build (a test
/// compares them on random documents): numbers, strings and escapes come from the same
/// `deserialize_any` visits a `Value` gets; each object's entries are written as they come
/// and, when the keys did not come sorted and unique, moved into sorted order at the
/// object's end (the last of a repeated key kept, as in a map). Why: building the `Value`
/// (a map per object, every key and string allocated and hashed) was most of `nd-print`'s
/// time.
pub struct PythonPretty<'a> {
    out: &'a mut String,
    depth: usize,
    scratch: &'a mut PrettyScratch,
}

impl<'a> PythonPretty<'a> {
    /// A seed that appends the value it is given to `out`, as a top-level value.
    pub fn new(out: &'a mut String, scratch: &'a mut PrettyScratch) -> Self {
        // No object is open at the top: drop what a parse that failed half-way left.
        scratch.entries.clear();
        scratch.keys.clear();
        PythonPretty {
            out,
            depth: 0,
            scratch,
        }
    }
}

fn indent(out: &mut String, depth: usize) {
    out.push('\n');
    push_repeated(out, ' ', depth * 4);
}

impl<'de> serde::de::DeserializeSeed<'de> for PythonPretty<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PythonPretty<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        let _ = write!(self.out, "{v}");
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        write_python_float(self.out, v);
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        python_string(self.out, v);
        Ok(())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.out.push_str("null");
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let PythonPretty {
            out,
            depth,
            scratch,
        } = self;
        let mut items = 0usize;
        loop {
            // The separator goes out before we know whether an item follows; taken back
            // if none does.
            let mark = out.len();
            out.push(if items == 0 { '[' } else { ',' });
            indent(out, depth + 1);
            let item = PythonPretty {
                out: &mut *out,
                depth: depth + 1,
                scratch: &mut *scratch,
            };
            if seq.next_element_seed(item)?.is_none() {
                out.truncate(mark);
                break;
            }
            items += 1;
        }
        if items == 0 {
            out.push_str("[]");
        } else {
            indent(out, depth);
            out.push(']');
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let PythonPretty {
            out,
            depth,
            scratch,
        } = self;
        let (first_entry, keys_mark) = (scratch.entries.len(), scratch.keys.len());
        let mut body = 0usize; // where the first entry's separator starts
        let mut sorted = true;
        while let Some(key) = map.next_key_seed(KeyInto(&mut scratch.keys))? {
            if scratch.entries.len() == first_entry {
                out.push('{');
                body = out.len();
            } else {
                out.push(',');
                if let Some(last) = scratch.entries.last() {
                    // Strictly increasing keys need no reordering; anything else does.
                    sorted &= scratch.keys[last.key.0..last.key.1] < scratch.keys[key.0..key.1];
                }
            }
            indent(out, depth + 1);
            let start = out.len();
            python_string(out, &scratch.keys[key.0..key.1]);
            out.push_str(": ");
            map.next_value_seed(PythonPretty {
                out: &mut *out,
                depth: depth + 1,
                scratch: &mut *scratch,
            })?;
            scratch.entries.push(Entry {
                key,
                text: (start, out.len()),
            });
        }
        if scratch.entries.len() == first_entry {
            out.push_str("{}");
            return Ok(());
        }
        if !sorted {
            let PrettyScratch {
                keys,
                entries,
                moved,
            } = scratch;
            let entries = &mut entries[first_entry..];
            // Stable: of a repeated key, the last written stays last and is the one kept.
            entries.sort_by(|a, b| keys[a.key.0..a.key.1].cmp(&keys[b.key.0..b.key.1]));
            moved.clear();
            moved.push_str(&out[body..]);
            out.truncate(body);
            let mut written = 0usize;
            for (i, entry) in entries.iter().enumerate() {
                if let Some(next) = entries.get(i + 1) {
                    if keys[next.key.0..next.key.1] == keys[entry.key.0..entry.key.1] {
                        continue;
                    }
                }
                if written > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                out.push_str(&moved[entry.text.0 - body..entry.text.1 - body]);
                written += 1;
            }
        }
        scratch.entries.truncate(first_entry);
        scratch.keys.truncate(keys_mark);
        indent(out, depth);
        out.push('}');
        Ok(())
    }
}

/// An object key, decoded and appended to the scratch keys; its span there.
struct KeyInto<'a>(&'a mut String);

impl<'de> serde::de::DeserializeSeed<'de> for KeyInto<'_> {
    type Value = (usize, usize);

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(usize, usize), D::Error> {
        // As a `Value` map reads its keys.
        de.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyInto<'_> {
    type Value = (usize, usize);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(usize, usize), E> {
        let start = self.0.len();
        self.0.push_str(v);
        Ok((start, self.0.len()))
    }
}

/// Local time of an epoch-seconds float, as Python's `datetime.fromtimestamp(t).isoformat()`.
pub fn local_iso(epoch: f64) -> String {
    if !epoch.is_finite() {
        return epoch.to_string();
    }
    let mut secs = epoch.floor();
    // Python rounds the fraction to microseconds, half to even.
    let mut micros = ((epoch - secs) * 1e6).round_ties_even() as i64;
    if micros >= 1_000_000 {
        secs += 1.0;
        micros -= 1_000_000;
    }
    let Some(time) = Local.timestamp_opt(secs as i64, 0).single() else {
        return epoch.to_string();
    };
    let base = time.format("%Y-%m-%dT%H:%M:%S").to_string();
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

/// `HH:MM:SS` with unbounded hours (nd-hubstatus's uptime).
pub fn hms(seconds: f64) -> String {
    let total = if seconds.is_finite() && seconds > 0.0 {
        seconds as u64
    } else {
        0
    };
    format!(
        "{:02}:{:02}:{:02}",
        total / 3600,
        (total / 60) % 60,
        total % 60
    )
}

/// Colour pretty JSON text like Pygments' `TerminalFormatter` with `JsonLexer`: keys
/// bright blue, strings yellow, numbers and constants blue. Trailing whitespace stripped.
pub fn colorize_json(pretty: &str) -> String {
    const RESET_PYG: &str = "\x1b[39;49;00m";
    let mut out = String::with_capacity(pretty.len() * 2);
    let chars: Vec<char> = pretty.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(chars.len());
            let token: String = chars[start..i].iter().collect();
            // A key is a string followed by ':'.
            let is_key = chars.get(i) == Some(&':');
            let color = if is_key { "\x1b[94m" } else { "\x1b[33m" };
            let _ = write!(out, "{color}{token}{RESET_PYG}");
        } else if c == '-' || c.is_ascii_digit() || c.is_ascii_alphabetic() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '-' | '+' | '.'))
            {
                i += 1;
            }
            let token: String = chars[start..i].iter().collect();
            let _ = write!(out, "\x1b[34m{token}{RESET_PYG}");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` with every character outside printable ASCII written as a `\uXXXX` escape (as
/// in JSON), so a name from the network cannot move the cursor or recolour a terminal.
pub fn escape_terminal(text: &str) -> String {
    let mut out = String::new();
    python_string(&mut out, text);
    // Drop the quotes python_string adds.
    out[1..out.len() - 1].to_owned()
}

/// Most hub ids [`fleet_summary`] names before it only counts.
pub const FLEET_SUMMARY_HUBS: usize = 8;

/// A one-line summary of a status payload's `fleet` section (hubs by id, escaped and cut,
/// with their kitchen and eater counts), `None` when there is none (a hub without
/// `--nats`, or the original hub).
pub fn fleet_summary(fleet: &Value) -> Option<String> {
    let hubs = fleet.get("hubs")?.as_array()?;
    let mut parts = Vec::new();
    let (mut kitchens, mut eaters) = (0u64, 0u64);
    for hub in hubs {
        let k = hub["dumpling_kitchen_count"].as_u64().unwrap_or(0);
        kitchens += k;
        let e = hub["dumpling_eater_count"].as_u64();
        eaters += e.unwrap_or(0);
        if parts.len() < FLEET_SUMMARY_HUBS {
            let id: String = hub["hub_id"]
                .as_str()
                .unwrap_or("?")
                .chars()
                .take(32)
                .collect();
            let counts = match e {
                Some(e) => format!("{k}k/{e}e"),
                None => format!("{k}k"),
            };
            parts.push(format!("{} {counts}", escape_terminal(&id)));
        }
    }
    if hubs.len() > FLEET_SUMMARY_HUBS {
        parts.push(format!("+{} more", hubs.len() - FLEET_SUMMARY_HUBS));
    }
    // A federated hub delivers nothing while its NATS connection is down: said first.
    let nats = &fleet["nats"];
    let down = match (nats["connected"].as_bool(), nats["down_for"].as_f64()) {
        (Some(false), Some(secs)) if secs.is_finite() => {
            format!("NATS DOWN for {:.0} s, ", secs.max(0.0))
        }
        (Some(false), _) => "NATS DOWN, ".to_owned(),
        _ => String::new(),
    };
    Some(format!(
        "{down}{} hubs ({}), {kitchens} kitchens, {eaters} eaters",
        hubs.len(),
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_python_repr() {
        assert_eq!(python_float(1.5), "1.5");
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(1795739862.5128865), "1795739862.5128865");
        assert_eq!(python_float(90.206168), "90.206168");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(1.5e16), "1.5e+16");
        assert_eq!(python_float(1e15), "1000000000000000.0");
        assert_eq!(python_float(0.0001), "0.0001");
        assert_eq!(python_float(0.00001), "1e-05");
        assert_eq!(python_float(-2.5e-7), "-2.5e-07");
        assert_eq!(python_float(123.0), "123.0");
    }

    #[test]
    fn pretty_matches_python_json_dumps() {
        let value: Value = serde_json::from_str(
            r#"{"b": [1, {"z": null, "a": "é"}], "a": {}, "c": [], "d": 2.5, "e": true}"#,
        )
        .unwrap();
        let expected = "{\n    \"a\": {},\n    \"b\": [\n        1,\n        {\n            \"a\": \"\\u00e9\",\n            \"z\": null\n        }\n    ],\n    \"c\": [],\n    \"d\": 2.5,\n    \"e\": true\n}";
        assert_eq!(python_pretty(&value), expected);
    }

    #[test]
    fn recorded_nd_hubdetails_output_matches() {
        // From shared/docs/netdumplings-captures/nd-hubdetails.nocolor.out.
        let payload: Value = serde_json::from_str(r#"{"total_dumplings_in": 0, "total_dumplings_out": 3, "server_uptime": 50.0645, "dumpling_kitchen_count": 0, "dumpling_eater_count": 2, "dumpling_kitchens": [], "dumpling_eaters": [{"info_from_eater": {"eater_name": "detailseater"}, "info_from_hub": {"host": "127.0.0.1", "port": 49670}}, {"info_from_eater": {"eater_name": "mydetails"}, "info_from_hub": {"host": "127.0.0.1", "port": 49682}}]}"#).unwrap();
        let expected = "{\n    \"dumpling_eater_count\": 2,\n    \"dumpling_eaters\": [\n        {\n            \"info_from_eater\": {\n                \"eater_name\": \"detailseater\"\n            },\n            \"info_from_hub\": {\n                \"host\": \"127.0.0.1\",\n                \"port\": 49670\n            }\n        },\n        {\n            \"info_from_eater\": {\n                \"eater_name\": \"mydetails\"\n            },\n            \"info_from_hub\": {\n                \"host\": \"127.0.0.1\",\n                \"port\": 49682\n            }\n        }\n    ],\n    \"dumpling_kitchen_count\": 0,\n    \"dumpling_kitchens\": [],\n    \"server_uptime\": 50.0645,\n    \"total_dumplings_in\": 0,\n    \"total_dumplings_out\": 3\n}";
        assert_eq!(python_pretty(&payload), expected);
    }

    #[test]
    fn hms_has_unbounded_hours() {
        assert_eq!(hms(90.2), "00:01:30");
        assert_eq!(hms(360000.0), "100:00:00");
    }

    #[test]
    fn colours_keys_strings_and_numbers() {
        let text = colorize_json("{\n    \"a\": \"b\",\n    \"n\": 1\n}");
        assert!(text.contains("\x1b[94m\"a\"\x1b[39;49;00m"));
        assert!(text.contains("\x1b[33m\"b\"\x1b[39;49;00m"));
        assert!(text.contains("\x1b[34m1\x1b[39;49;00m"));
    }

    /// The printer as it was before it wrote into one buffer: the reference the faster
    /// one must match byte for byte.
    mod reference {
        use serde_json::Value;
        use std::fmt::Write;

        fn old_float(value: f64) -> String {
            if value.is_nan() {
                return "NaN".into();
            }
            if value.is_infinite() {
                return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
            }
            if value == 0.0 {
                return if value.is_sign_negative() {
                    "-0.0"
                } else {
                    "0.0"
                }
                .into();
            }
            // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.7957398625128865e9".
            let sci = format!("{:e}", value.abs());
            let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
            let exp: i32 = exp.parse().unwrap_or(0);
            let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
            let sign = if value < 0.0 { "-" } else { "" };
            if (-4..16).contains(&exp) {
                let point = exp + 1; // digits before the decimal point
                let text = if point <= 0 {
                    format!("0.{}{}", "0".repeat((-point) as usize), digits)
                } else if point as usize >= digits.len() {
                    format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
                } else {
                    format!(
                        "{}.{}",
                        &digits[..point as usize],
                        &digits[point as usize..]
                    )
                };
                format!("{sign}{text}")
            } else {
                let mantissa = if digits.len() > 1 {
                    format!("{}.{}", &digits[..1], &digits[1..])
                } else {
                    digits
                };
                let exp_sign = if exp < 0 { '-' } else { '+' };
                format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
            }
        }
        fn old_string(out: &mut String, s: &str) {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    ' '..='~' => out.push(c),
                    _ => {
                        let mut buf = [0u16; 2];
                        for unit in c.encode_utf16(&mut buf) {
                            let _ = write!(out, "\\u{unit:04x}");
                        }
                    }
                }
            }
            out.push('"');
        }
        fn old_number(n: &serde_json::Number) -> String {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else if let Some(u) = n.as_u64() {
                u.to_string()
            } else {
                old_float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        fn old_pretty_into(out: &mut String, value: &Value, depth: usize) {
            let indent = |out: &mut String, d: usize| {
                out.push('\n');
                for _ in 0..d * 4 {
                    out.push(' ');
                }
            };
            match value {
                Value::Null => out.push_str("null"),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Number(n) => out.push_str(&old_number(n)),
                Value::String(s) => old_string(out, s),
                Value::Array(items) if items.is_empty() => out.push_str("[]"),
                Value::Array(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        indent(out, depth + 1);
                        old_pretty_into(out, item, depth + 1);
                    }
                    indent(out, depth);
                    out.push(']');
                }
                Value::Object(map) if map.is_empty() => out.push_str("{}"),
                Value::Object(map) => {
                    out.push('{');
                    // Python's sort_keys order: code points, which is UTF-8 byte order. Sorted
                    // here explicitly: serde_json's map keeps insertion order when any crate in
                    // the build enables its `preserve_order` feature.
                    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                    for (i, (key, item)) in entries.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        indent(out, depth + 1);
                        old_string(out, key);
                        out.push_str(": ");
                        old_pretty_into(out, item, depth + 1);
                    }
                    indent(out, depth);
                    out.push('}');
                }
            }
        }

        pub fn pretty(value: &Value) -> String {
            let mut out = String::new();
            old_pretty_into(&mut out, value, 0);
            out
        }

        pub fn float(value: f64) -> String {
            old_float(value)
        }
    }

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn text(&mut self) -> String {
            const PIECES: &[&str] = &[
                "a",
                "Z",
                " ",
                "~",
                "\"",
                "\\",
                "\n",
                "\r",
                "\t",
                "\u{8}",
                "\u{c}",
                "\u{0}",
                "\u{1f}",
                "\u{7f}",
                "é",
                "ß",
                "\u{2028}",
                "中",
                "😀",
                "\u{10ffff}",
                "key",
            ];
            let n = self.next() % 8;
            (0..n)
                .map(|_| PIECES[(self.next() % PIECES.len() as u64) as usize])
                .collect()
        }

        fn float(&mut self) -> f64 {
            match self.next() % 4 {
                0 => f64::from_bits(self.next()),
                1 => (self.next() % 2_000_000_000) as f64 + (self.next() % 1_000_000) as f64 / 1e6,
                2 => (self.next() % 1000) as f64 * 10f64.powi((self.next() % 40) as i32 - 20),
                _ => -((self.next() % 100_000) as f64) / 7.0,
            }
        }

        fn value(&mut self, depth: u32) -> Value {
            match self.next() % if depth > 3 { 6 } else { 8 } {
                0 => Value::Null,
                1 => Value::Bool(self.next().is_multiple_of(2)),
                2 => Value::from(self.next() as i64),
                3 => Value::from(self.next()),
                4 => serde_json::Number::from_f64(self.float()).map_or(Value::Null, Value::Number),
                5 => Value::String(self.text()),
                6 => Value::Array(
                    (0..self.next() % 4)
                        .map(|_| self.value(depth + 1))
                        .collect(),
                ),
                _ => Value::Object(
                    (0..self.next() % 5)
                        .map(|_| (self.text(), self.value(depth + 1)))
                        .collect(),
                ),
            }
        }
    }

    #[test]
    fn pretty_printing_matches_the_reference_byte_for_byte() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let value = rng.value(0);
            assert_eq!(python_pretty(&value), reference::pretty(&value), "{value}");
        }
        for _ in 0..200_000 {
            let f = rng.float();
            assert_eq!(python_float(f), reference::float(f), "{f:e}");
        }
        for f in [
            f64::MIN_POSITIVE,
            f64::MAX,
            -f64::MAX,
            5e-324,
            1e-4,
            9.999e-5,
            1e16,
            9.999999999999998e15,
        ] {
            assert_eq!(python_float(f), reference::float(f), "{f:e}");
        }
    }

    /// Random JSON text of the kinds a payload can hold, written the ways a kitchen or a
    /// hand-written sender may write them: keys unsorted, repeated and `\u`-escaped,
    /// numbers in every form serde_json reads, odd whitespace.
    fn json_text(rng: &mut Rng, depth: u32, out: &mut String) {
        const NUMBERS: &[&str] = &[
            "0",
            "-0",
            "12",
            "-7",
            "1.5",
            "1e5",
            "1E+5",
            "-2.5e-3",
            "0.1",
            "1e308",
            "5e-324",
            "2.2250738585072014e-308",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "100000000000000000000",
            "1.7976931348623157e308",
            "0.0",
            "-0.0",
            "123456789012345678901234567890e-20",
        ];
        const KEYS: &[&str] = &[
            "a",
            "b",
            "A",
            "é",
            "\\u00e9",
            "\\u00E9x",
            "key",
            "",
            "\\ud83d\\ude00",
            "\\n",
            "z",
        ];
        let space = |rng: &mut Rng, out: &mut String| {
            out.push_str([" ", "", "", "\n\t ", ""][(rng.next() % 5) as usize]);
        };
        match rng.next() % if depth > 4 { 5 } else { 7 } {
            0 => out.push_str("null"),
            1 => out.push_str(if rng.next().is_multiple_of(2) {
                "true"
            } else {
                "false"
            }),
            2 => out.push_str(NUMBERS[(rng.next() % NUMBERS.len() as u64) as usize]),
            3 => {
                let f = rng.float();
                if f.is_finite() {
                    let _ = if rng.next().is_multiple_of(2) {
                        write!(out, "{f:?}")
                    } else {
                        write!(out, "{f:e}")
                    };
                } else {
                    out.push('1');
                }
            }
            4 => {
                let text = rng.text();
                if rng.next().is_multiple_of(2) {
                    out.push_str(&serde_json::to_string(&text).unwrap_or_default());
                } else {
                    // Every character as a \u escape (UTF-16 units, pairs for the rest).
                    out.push('"');
                    for unit in text.encode_utf16() {
                        let _ = write!(out, "\\u{unit:04X}");
                    }
                    out.push('"');
                }
            }
            5 => {
                out.push('[');
                for i in 0..rng.next() % 5 {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    json_text(rng, depth + 1, out);
                    space(rng, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.next() % 7 {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    let _ = write!(
                        out,
                        "\"{}\"",
                        KEYS[(rng.next() % KEYS.len() as u64) as usize]
                    );
                    space(rng, out);
                    out.push(':');
                    json_text(rng, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    /// [`PythonPretty`] over `text` as a whole document (then nothing but whitespace).
    fn pretty_streamed(
        text: &str,
        scratch: &mut PrettyScratch,
    ) -> Result<String, serde_json::Error> {
        use serde::de::DeserializeSeed;
        let mut out = String::from("kept ");
        let mut de = serde_json::Deserializer::from_str(text);
        PythonPretty::new(&mut out, scratch).deserialize(&mut de)?;
        de.end()?;
        assert!(out.starts_with("kept "), "the seed only appends");
        Ok(out["kept ".len()..].to_owned())
    }

    #[test]
    fn the_streaming_printer_matches_the_value_printer() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut scratch = PrettyScratch::default();
        let (mut unsorted, mut repeated) = (0, 0);
        for _ in 0..20_000 {
            let mut text = String::new();
            json_text(&mut rng, 0, &mut text);
            let value: Value = serde_json::from_str(&text).expect("the generator writes JSON");
            let streamed = pretty_streamed(&text, &mut scratch).expect("the same parse");
            assert_eq!(streamed, python_pretty(&value), "{text}");
            unsorted += usize::from(text.contains("\"b\"") && text.contains("\"a\""));
            repeated += usize::from(text.matches("\"a\"").count() > 1);
            // Values as serde writes them (insertion order) too.
            let compact = serde_json::to_string(&rng.value(0)).expect("serialises");
            let value: Value = serde_json::from_str(&compact).expect("JSON");
            assert_eq!(
                pretty_streamed(&compact, &mut scratch).expect("JSON"),
                python_pretty(&value),
                "{compact}"
            );
        }
        assert!(unsorted > 500 && repeated > 300, "{unsorted} {repeated}");
        assert!(
            scratch.entries.is_empty() && scratch.keys.is_empty(),
            "nothing left open"
        );
    }

    #[test]
    fn the_streaming_printer_refuses_what_a_value_parse_refuses() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let mut scratch = PrettyScratch::default();
        const EDITS: &[&str] = &[
            "",
            ",",
            "]",
            "}",
            "[",
            "{",
            "\"",
            "\\",
            "\\u",
            "\\ud800",
            "\\udc00\\ud800",
            "1e400",
            "-1e400",
            "01",
            "1.",
            ".5",
            "-",
            "nul",
            "tru",
            ":",
            "\u{1}",
            "\u{7f}",
            "é",
            "\n",
            "9",
            "e9",
        ];
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        let mut probes: Vec<String> = vec![
            deep(127),
            deep(128),
            deep(129),
            deep(5000),
            "{\"a\":1e400}".into(),
            "[\"\\ud800\"]".into(),
            "{\"\\udfff\":1}".into(),
            "1 2".into(),
            " 1 ".into(),
            "\u{feff}1".into(),
        ];
        for _ in 0..40_000 {
            let mut text = String::new();
            json_text(&mut rng, 0, &mut text);
            let mut cut = (rng.next() % (text.len() as u64 + 1)) as usize;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut end = cut + (rng.next() % 3) as usize;
            while end > text.len() || !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(cut..end, EDITS[(rng.next() % EDITS.len() as u64) as usize]);
            probes.push(text);
        }
        let (mut refused, mut accepted) = (0, 0);
        for text in &probes {
            match (
                serde_json::from_str::<Value>(text),
                pretty_streamed(text, &mut scratch),
            ) {
                (Ok(value), Ok(streamed)) => {
                    accepted += 1;
                    assert_eq!(streamed, python_pretty(&value), "{text}");
                }
                (Err(_), Err(_)) => refused += 1,
                (old, new) => panic!("disagree on {text:?}: {old:?} against {new:?}"),
            }
        }
        assert!(refused > 5000 && accepted > 5000, "{refused} {accepted}");
    }
}
