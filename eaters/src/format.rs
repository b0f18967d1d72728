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

fn python_string(out: &mut String, s: &str) {
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

fn python_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        i.to_string()
    } else if let Some(u) = n.as_u64() {
        u.to_string()
    } else {
        python_float(n.as_f64().unwrap_or(f64::NAN))
    }
}

fn pretty_into(out: &mut String, value: &Value, depth: usize) {
    let indent = |out: &mut String, d: usize| {
        out.push('\n');
        for _ in 0..d * 4 {
            out.push(' ');
        }
    };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&python_number(n)),
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
            entries.sort_by(|a, b| a.0.cmp(b.0));
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
    Some(format!(
        "{} hubs ({}), {kitchens} kitchens, {eaters} eaters",
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
}
