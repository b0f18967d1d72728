//! `nd-print`: print every dumpling from the hub (the original's flags and format), or
//! one JSON dumpling per line with `--json`.
//!
//! Exit status: 0 on Ctrl-C (close 4101) or when `--count` is reached (close 4102); 1 on
//! errors that retrying cannot fix; 2 for usage errors. Reconnects when the hub goes away.

use std::io::Write;

use clap::Parser;
use std::fmt::Write as _;

use dumpling::text::Escaped;
use eater_client::{parse_dumpling_with, Event, Filter, Received};
use eaters::format::{
    colorize_json, local_iso, python_pretty, PrettyScratch, PythonPretty, BOLD, RESET,
};
use eaters::Flow;

/// nd-print: print dumplings from nd-hub.
#[derive(Debug, Parser)]
#[command(
    name = "nd-print",
    version,
    disable_help_flag = true,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    hub: eaters::HubArgs,
    /// Replay from a time: a duration back (10m, 90s, 2h) or an RFC 3339 time.
    #[arg(
        long,
        value_name = "DURATION|TIME",
        conflicts_with = "since_seq",
        value_parser = eaters::parse_since,
        long_help = "Replay first, then go on live: start at a time, given as a duration back \
from now (10m, 90s, 2h, 1.5d) or an RFC 3339 time (2026-12-05T03:00:00Z). Needs a hub \
started with --nats (the backlog comes from its JetStream stream); another hub sends \
a notice and serves live dumplings"
    )]
    since: Option<String>,
    /// Replay from a JetStream stream sequence (see --since).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    since_seq: Option<u64>,
    /// Resume after a lost connection from the last stream sequence seen (default with
    /// several hubs in -h, or with --since/--since-seq).
    #[arg(
        long,
        long_help = "Resume after a lost connection (to the same or the next hub of -h) from \
the last stream sequence seen, so nothing is lost or printed twice. Asks the hub for \
sequence numbers (needs --nats on the hub). On by default with several hubs in -h or \
with --since/--since-seq"
    )]
    resume: bool,
    /// Only dumplings from this chef (repeatable).
    #[arg(short = 'c', long = "chef", value_name = "CHEF_NAME")]
    chefs: Vec<String>,
    /// Only dumplings from this kitchen (repeatable; hides hub status dumplings).
    #[arg(short = 'k', long = "kitchen", value_name = "KITCHEN_NAME")]
    kitchens: Vec<String>,
    /// Name sent to the hub.
    #[arg(
        short = 'n',
        long,
        value_name = "EATER_NAME",
        value_parser = eaters::parse_eater_name,
        default_value = "printereater"
    )]
    eater_name: String,
    /// Show interval-driven dumplings (default).
    #[arg(long, overrides_with = "no_interval_dumplings")]
    interval_dumplings: bool,
    /// Hide interval-driven dumplings.
    #[arg(long)]
    no_interval_dumplings: bool,
    /// Show packet-driven dumplings (default).
    #[arg(long, overrides_with = "no_packet_dumplings")]
    packet_dumplings: bool,
    /// Hide packet-driven dumplings.
    #[arg(long)]
    no_packet_dumplings: bool,
    /// Print the payload (default).
    #[arg(long, overrides_with = "no_payload")]
    payload: bool,
    /// Do not print the payload (not with `--json`, which prints dumplings whole).
    #[arg(long, conflicts_with = "json")]
    no_payload: bool,
    #[command(flatten)]
    color: eaters::ColorArgs,
    /// Print each dumpling as received, one JSON document per line (for jq).
    #[arg(long)]
    json: bool,
    /// Exit after this many dumplings (closes with 4102).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut config = match cli.hub.eater_config(&cli.eater_name) {
        Ok(config) => config,
        Err(code) => return code,
    };
    config.start = match (&cli.since, cli.since_seq) {
        (_, Some(n)) => Some(eater_client::StartAt::Sequence(n)),
        (Some(since), None) => Some(eater_client::StartAt::Since(since.clone())),
        (None, None) => None,
    };
    config.resume = cli.resume || config.start.is_some() || cli.hub.several();
    config.filter = Filter {
        chefs: cli.chefs.clone(),
        kitchens: cli.kitchens.clone(),
        packet: !cli.no_packet_dumplings,
        interval: !cli.no_interval_dumplings,
    };
    // Only `--json` re-serialises a dumpling (one with a newline in its text): everything
    // else prints from the raw text, so the payload need not be built as a `Value`.
    config.payload_value = cli.json;
    let color = cli.color.enabled();
    let mut eaten = 0u64;
    let stdout = std::io::stdout();
    let mut printer = Printer::default();
    eaters::run(config, |event| {
        let mut out = stdout.lock();
        match event {
            Event::Connected {
                uri,
                reconnected: false,
            } if !cli.json => {
                let _ = write!(
                    out,
                    "Connected to nd-hub at {uri}\nWaiting for dumplings...\n\n"
                );
                let _ = out.flush();
            }
            Event::Dumpling(received) => {
                let written = if cli.json {
                    if received.raw.contains('\n') {
                        writeln!(
                            out,
                            "{}",
                            serde_json::to_string(&received.dumpling).unwrap_or_default()
                        )
                    } else {
                        writeln!(out, "{}", received.raw)
                    }
                } else {
                    let text = printer.dumpling(received, !cli.no_payload, color);
                    out.write_all(text.as_bytes())
                };
                if written.and_then(|()| out.flush()).is_err() {
                    // Nobody reads any more (`nd-print | head`): stop, as `cat` would,
                    // instead of eating dumplings into a closed pipe until killed.
                    return Flow::Full;
                }
                eaten += 1;
                if cli.count.is_some_and(|n| eaten >= n) {
                    return Flow::Full;
                }
            }
            _ => {}
        }
        Flow::Continue
    })
}

/// Formats dumplings as the original `nd-print` prints them, into one reusable buffer (one
/// write per dumpling; the payload written while it is parsed from the raw text).
#[derive(Default)]
struct Printer {
    text: String,
    scratch: PrettyScratch,
    /// The last large payload each recent chef sent, with its printed form.
    printed: Vec<PrintedPayload>,
    /// The entry of `printed` replaced next when it is full.
    next: usize,
}

/// A payload's bytes and what the printer made of them (colours included: the flag is fixed
/// for the run).
struct PrintedPayload {
    chef: String,
    payload: Vec<u8>,
    text: String,
}

/// Chefs whose last payload the printer keeps (each entry at most `MAX_KEPT_BYTES` of
/// payload and its printed text).
const PRINTED_SLOTS: usize = 8;

impl Printer {
    /// The text for one dumpling: the header line, then (with `payload`) a blank line, the
    /// payload as Python's `json.dumps(sort_keys=True, indent=4)` and two newlines.
    fn dumpling(&mut self, received: &Received, payload: bool, color: bool) -> &str {
        let meta = &received.dumpling.metadata;
        // Any kitchen names its chefs and itself: escaped and cut, so a name cannot move
        // the cursor, retitle the terminal or forge a line (the payload is escaped by the
        // JSON printer). A chef name shows every non-ASCII character escaped, so a look-alike
        // letter cannot make a kitchen's chef pass for the hub's `SystemStatusChef`.
        let chef = Escaped::ascii(&meta.chef);
        let kitchen = Escaped::new(meta.kitchen.as_deref().unwrap_or("None"));
        let when = local_iso(meta.creation_time);
        let driver = meta.driver.as_str();
        let out = &mut self.text;
        out.clear();
        if color {
            let _ = writeln!(
                out,
                "{when} [{driver:<8}] {BOLD}{chef}{RESET} from {BOLD}{kitchen}{RESET}"
            );
        } else {
            let _ = writeln!(out, "{when} [{driver:<8}] {chef} from {kitchen}");
        }
        if payload {
            out.push('\n');
            if let Some(i) = self.printed_payload(received, color) {
                self.text.push_str(&self.printed[i].text);
                self.text.push_str("\n\n");
                return &self.text;
            }
            let out = &mut self.text;
            let start = out.len();
            let printed = parse_dumpling_with(
                &received.raw,
                PythonPretty::new(&mut *out, &mut self.scratch),
            );
            if printed.is_err() {
                // Cannot happen: the eater library checked this text with the same parse.
                // Should it, print what a `Value` parse makes of it rather than half a
                // payload.
                out.truncate(start);
                let value = serde_json::from_str::<dumpling::Dumpling>(&received.raw)
                    .map(|d| d.payload)
                    .unwrap_or_default();
                out.push_str(&python_pretty(&value));
            }
            if color {
                let colored = colorize_json(&out[start..]);
                out.truncate(start);
                out.push_str(&colored);
            }
            out.push_str("\n\n");
        }
        &self.text
    }

    /// The index in `printed` of this dumpling's printed payload, printed now if it is not
    /// the same bytes as its chef's last. Only for large messages in the kitchen's compact
    /// envelope, and only where printing the payload on its own is exactly what printing it
    /// inside the message gives (`dumpling::repeat`: the envelope with the payload replaced
    /// by `0` parses as a dumpling, and the payload is one JSON value); `None` otherwise.
    /// Why: a chef sends its whole table every poke, mostly unchanged, and parsing and
    /// pretty-printing ~40 KB each time was most of `nd-print`'s CPU.
    fn printed_payload(&mut self, received: &Received, color: bool) -> Option<usize> {
        use dumpling::repeat::{
            head_with_zero_payload, split_envelope, MAX_KEPT_BYTES, REPEAT_MIN_BYTES,
        };
        let raw = received.raw.as_str();
        // Kept payloads are bounded as the eater library's are: larger ones print in full.
        if raw.len() < REPEAT_MIN_BYTES || raw.len() > MAX_KEPT_BYTES {
            return None;
        }
        let start = split_envelope(raw.as_bytes())?;
        let head = head_with_zero_payload(raw.as_bytes(), start);
        parse_dumpling_with(std::str::from_utf8(&head).ok()?, dumpling::AnyJson).ok()?;
        // `start` and the end are next to ASCII bytes: char boundaries.
        let payload = &raw[start..raw.len() - 1];
        let chef = received.dumpling.metadata.chef.as_str();
        let found = self.printed.iter().position(|p| p.chef == chef);
        if let Some(i) = found.filter(|i| self.printed[*i].payload == payload.as_bytes()) {
            return Some(i);
        }
        let mut text = String::new();
        let mut de = serde_json::Deserializer::from_str(payload);
        serde::de::DeserializeSeed::deserialize(
            PythonPretty::new(&mut text, &mut self.scratch),
            &mut de,
        )
        .ok()?;
        de.end().ok()?;
        if color {
            text = colorize_json(&text);
        }
        let entry = PrintedPayload {
            chef: chef.to_owned(),
            payload: payload.as_bytes().to_vec(),
            text,
        };
        Some(match found {
            Some(i) => {
                self.printed[i] = entry;
                i
            }
            None if self.printed.len() < PRINTED_SLOTS => {
                self.printed.push(entry);
                self.printed.len() - 1
            }
            None => {
                let i = self.next % PRINTED_SLOTS;
                self.printed[i] = entry;
                self.next = (i + 1) % PRINTED_SLOTS;
                i
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// What the printer made of this message before it kept printed payloads: the reference.
    fn printed_in_full(received: &Received, color: bool) -> String {
        let mut printer = Printer::default();
        let mut text = String::new();
        let meta = &received.dumpling.metadata;
        let (bold, reset) = if color { (BOLD, RESET) } else { ("", "") };
        let _ = writeln!(
            text,
            "{} [{:<8}] {bold}{}{reset} from {bold}{}{reset}",
            local_iso(meta.creation_time),
            meta.driver.as_str(),
            Escaped::new(&meta.chef),
            Escaped::new(meta.kitchen.as_deref().unwrap_or("None"))
        );
        text.push('\n');
        let start = text.len();
        parse_dumpling_with(
            &received.raw,
            PythonPretty::new(&mut text, &mut printer.scratch),
        )
        .expect("valid");
        if color {
            let colored = colorize_json(&text[start..]);
            text.truncate(start);
            text.push_str(&colored);
        }
        text.push_str("\n\n");
        text
    }

    /// A kitchen controls the chef and kitchen names: terminal escapes, line breaks and bidi
    /// overrides in them are printed escaped, never raw (the payload already was).
    #[test]
    fn names_in_the_header_line_are_escaped() {
        let raw = r#"{"metadata":{"chef":"C\u001b]0;owned\u0007\r\n2099 [packet  ] Fake","kitchen":"k\u001b[2J\u202e\u009b\u0000","creation_time":1.5,"driver":"packet"},"payload":{"a":"\u001b"}}"#;
        let received = Received {
            dumpling: serde_json::from_str(raw).expect("dumpling"),
            raw: raw.to_owned(),
            binary: false,
            seq: None,
        };
        for color in [false, true] {
            let mut printer = Printer::default();
            let text = printer.dumpling(&received, true, color).to_owned();
            let header = text.lines().next().expect("header line");
            assert!(
                header.contains(r"C\x1b]0;owned\x07\r\n2099 [packet  ] Fake"),
                "{header:?}"
            );
            assert!(header.contains(r"k\x1b[2J\u{202e}\x9b\x00"), "{header:?}");
            // Nothing but the printer's own colour sequences (ESC [ digits/';' m).
            let mut rest = text.as_str();
            let mut plain = String::new();
            while let Some(i) = rest.find("\u{1b}[") {
                plain.push_str(&rest[..i]);
                let after = &rest[i + 2..];
                let end = after
                    .find(|c: char| !(c.is_ascii_digit() || c == ';'))
                    .filter(|&e| after[e..].starts_with('m'))
                    .unwrap_or_else(|| panic!("not a colour sequence: {text:?}"));
                rest = &after[end + 1..];
            }
            plain.push_str(rest);
            assert!(
                !plain
                    .chars()
                    .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
                "{text:?}"
            );
        }
    }

    /// Tables repeated and changed, of several chefs, in the compact envelope and others:
    /// every dumpling prints exactly as a full parse prints it, first time and repeated.
    #[test]
    fn kept_payloads_print_as_a_full_parse_does() {
        let table = |n: usize, salt: usize| {
            let rows: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        r#""n{i}.test":{{"count":{},"latest":1.25,"x":[1,"é\n",null]}}"#,
                        i + salt
                    )
                })
                .collect();
            format!(r#"{{"lookups_seen":{{{}}}}}"#, rows.join(","))
        };
        let message = |chef: &str, payload: &str, compact: bool| {
            if compact {
                format!(
                    r#"{{"metadata":{{"chef":"{chef}","kitchen":"k","creation_time":1.5,"driver":"interval"}},"payload":{payload}}}"#
                )
            } else {
                format!(
                    r#"{{"metadata": {{"chef": "{chef}", "kitchen": "k", "creation_time": 1.5, "driver": "interval"}}, "payload": {payload}}}"#
                )
            }
        };
        let mut texts = Vec::new();
        for round in 0..3 {
            for chef in 0..10 {
                let payload = table(30, chef + usize::from(round == 2 && chef % 2 == 0));
                texts.push(message(&format!("Chef{chef}"), &payload, chef != 3));
                texts.push(message(&format!("Chef{chef}"), &payload, chef != 3));
            }
        }
        // A payload followed by another member: not one value, so never printed on its own.
        let odd = format!(
            r#"{{"metadata":{{"chef":"Odd","creation_time":1,"driver":"packet"}},"payload":{},"x":1}}"#,
            table(30, 0)
        );
        texts.push(odd.clone());
        texts.push(odd);
        for color in [false, true] {
            let mut printer = Printer::default();
            for raw in &texts {
                let received = Received {
                    dumpling: serde_json::from_str(raw).expect("dumpling"),
                    raw: raw.clone(),
                    binary: false,
                    seq: None,
                };
                let want = printed_in_full(&received, color);
                let got = printer.dumpling(&received, true, color);
                assert!(got == want, "printed differently (color {color}): {raw}");
            }
            assert_eq!(printer.printed.len(), PRINTED_SLOTS, "payloads kept");
            assert!(!printer
                .printed
                .iter()
                .any(|p| p.chef == "Odd" || p.chef == "Chef3"));
        }
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn original_flags_parse() {
        let cli = Cli::try_parse_from([
            "nd-print",
            "-h",
            "127.0.0.1:1",
            "-c",
            "A",
            "-c",
            "B",
            "-k",
            "k",
            "-n",
            "me",
            "--no-interval-dumplings",
            "--no-payload",
            "--no-color",
            "--count",
            "3",
        ])
        .unwrap();
        assert_eq!(cli.hub.hub, "127.0.0.1:1");
        assert_eq!(cli.chefs, ["A", "B"]);
        assert_eq!(cli.kitchens, ["k"]);
        assert_eq!(cli.eater_name, "me");
        assert!(cli.no_interval_dumplings && !cli.no_packet_dumplings && cli.no_payload);
        assert_eq!(cli.count, Some(3));
        let cli = Cli::try_parse_from(["nd-print", "--no-packet-dumplings", "--packet-dumplings"])
            .unwrap();
        assert!(
            !cli.no_packet_dumplings,
            "the last of --packet-dumplings/--no-... wins"
        );
        let cli = Cli::try_parse_from(["nd-print"]).unwrap();
        assert_eq!(cli.hub.hub, "localhost:11348");
        assert_eq!(cli.eater_name, "printereater");
        let cli = Cli::try_parse_from(["nd-print", "--since", "10m", "--resume"]).unwrap();
        assert_eq!(cli.since.as_deref(), Some("10m"));
        assert!(cli.resume);
        assert!(Cli::try_parse_from(["nd-print", "--since", "soon"]).is_err());
        assert!(Cli::try_parse_from(["nd-print", "--since-seq", "0"]).is_err());
        assert!(Cli::try_parse_from(["nd-print", "--since-seq", "5", "--since", "1h"]).is_err());
    }

    fn received(raw: &str) -> Received {
        let (metadata, ()) = parse_dumpling_with(raw, dumpling::AnyJson).unwrap();
        Received {
            dumpling: dumpling::Dumpling {
                metadata,
                payload: serde_json::Value::Null,
            },
            raw: raw.to_owned(),
            binary: false,
            seq: None,
        }
    }

    /// The printer as it was (header and payload from the parsed `Value`): the reference.
    fn print_by_value(
        out: &mut impl Write,
        dumpling: &dumpling::Dumpling,
        payload: bool,
        color: bool,
    ) {
        let meta = &dumpling.metadata;
        let kitchen = meta.kitchen.as_deref().unwrap_or("None");
        let driver = format!("[{:<8}]", meta.driver.as_str());
        let when = local_iso(meta.creation_time);
        if color {
            let _ = writeln!(
                out,
                "{when} {driver} {BOLD}{}{RESET} from {BOLD}{kitchen}{RESET}",
                Escaped::ascii(&meta.chef)
            );
        } else {
            let _ = writeln!(
                out,
                "{when} {driver} {} from {kitchen}",
                Escaped::ascii(&meta.chef)
            );
        }
        if payload {
            let text = python_pretty(&dumpling.payload);
            let text = if color { colorize_json(&text) } else { text };
            let _ = write!(out, "\n{text}\n\n");
        }
    }

    #[test]
    fn prints_like_the_value_printer() {
        let mut printer = Printer::default();
        for raw in [
            r#"{"metadata": {"chef": "DNSLookupChef", "kitchen": "default_kitchen", "creation_time": 1.5, "driver": "packet"}, "payload": {"lookup": {"hostname": "example.test", "when": 2.25}}}"#,
            r#"{"payload": {"b": [1, -2, 3.5e-7, {"z": null, "a": true}], "a": {}, "a": "\u00e9\n"}, "metadata": {"chef": "C", "kitchen": null, "creation_time": 1e9, "driver": "interval"}, "x": 1}"#,
            r#"[{"chef": "C", "kitchen": "k", "creation_time": 0, "driver": "packet"}, []]"#,
        ] {
            let d: dumpling::Dumpling = serde_json::from_str(raw).unwrap();
            for (payload, color) in [(true, false), (false, false), (true, true), (false, true)] {
                let mut old = Vec::new();
                print_by_value(&mut old, &d, payload, color);
                let new = printer.dumpling(&received(raw), payload, color);
                assert_eq!(
                    new,
                    String::from_utf8(old).unwrap(),
                    "{raw} {payload} {color}"
                );
            }
        }
    }

    #[test]
    fn prints_the_original_format() {
        let raw = r#"{"metadata": {"chef": "DNSLookupChef", "kitchen": "default_kitchen", "creation_time": 1.5, "driver": "packet"}, "payload": {"lookup": {"hostname": "example.test", "when": 2.25}}}"#;
        let text = Printer::default()
            .dumpling(&received(raw), true, false)
            .to_owned();
        let first = text.lines().next().unwrap();
        assert!(
            first.ends_with(".500000 [packet  ] DNSLookupChef from default_kitchen"),
            "{first}"
        );
        assert!(text.ends_with("\n\n{\n    \"lookup\": {\n        \"hostname\": \"example.test\",\n        \"when\": 2.25\n    }\n}\n\n"), "{text}");
    }
}
