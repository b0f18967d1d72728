//! A chef's state across a hot reload (chef API 0.2, `netdumplings:chef/state`): the
//! snapshot format of [`crate::export_stateful_chef!`], and the *state form* some SDK types
//! take inside a snapshot.
//!
//! A snapshot is one format line, then the chef serialised with serde as JSON:
//!
//! ```text
//! chef-sdk-state-json-2 DNSLookupChef 1
//! {"seen":{"capacity":1000,"evicted":0,"entries":[["example.test",{"count":2,"latest":1795739862513954000}]],"recency":[0]},...}
//! ```
//!
//! The line names the format, the chef ([`crate::ChefInfo`] name) and the chef's
//! [`crate::Chef::STATE_VERSION`]. A new version reads the state only when all three match
//! and the JSON fits its fields; anything else is refused with a reason (the kitchen logs
//! it and the new version starts fresh), so a state is never misread. Then
//! [`crate::Chef::restored`] runs (re-apply the new version's bounds, or refuse).
//!
//! Inside a snapshot (and while restoring one), [`in_state_form`] is true and:
//! * [`crate::Timestamp`] is written as integer nanoseconds (exact; dumplings get float
//!   seconds, which cannot hold nanoseconds);
//! * [`crate::bounded::BoundedMap`] is written with its bounds and its recency order
//!   (`capacity`, `evicted`, `entries` in first-seen order, `recency` = entry indices from
//!   least to most recently touched; dumplings get a plain object), and only the newest
//!   entries that fit its [`crate::bounded::BoundedMap::with_state_budget`].
//!
//! So `#[derive(Serialize, Deserialize)]` on a chef whose fields are these types carries
//! them exactly. [`Bytes`] is a byte buffer written as hex (a partial record, say).

use std::cell::Cell;
use std::fmt;

use crate::Chef;

/// The format word of the first line of every snapshot this SDK writes.
pub const FORMAT: &str = "chef-sdk-state-json-2";

/// The format word of chef-sdk 0.2.0's first state format (a bare line, no chef name),
/// recognised only to refuse it with a clear reason.
const OLD_FORMAT: &str = "chef-sdk-state-json-1";

/// The kitchen's default `--chef-state-max-bytes` (4 MiB): sample chefs keep their
/// worst-case snapshot under it (their tests check), so their state is never refused for
/// its size at the default setting.
pub const KITCHEN_DEFAULT_MAX_BYTES: usize = 4 << 20;

thread_local! {
    static STATE_FORM: Cell<bool> = const { Cell::new(false) };
}

/// Whether a snapshot is being written or read right now (see the module docs). A chef's
/// own `Serialize` impl can use it to write a different form into its state than into its
/// dumplings.
pub fn in_state_form() -> bool {
    STATE_FORM.with(Cell::get)
}

/// Runs `f` with [`in_state_form`] true (restored afterwards, even if `f` unwinds).
fn with_state_form<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            STATE_FORM.with(|s| s.set(self.0));
        }
    }
    let _reset = Reset(STATE_FORM.with(|s| s.replace(true)));
    f()
}

/// `value` as JSON in the state form (tests of state-form types).
#[cfg(test)]
pub(crate) fn to_state_json<T: serde::Serialize>(value: &T) -> String {
    with_state_form(|| serde_json::to_string(value)).unwrap_or_default()
}

/// A `T` read from JSON in the state form (tests of state-form types).
#[cfg(test)]
pub(crate) fn from_state_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, String> {
    with_state_form(|| serde_json::from_slice(json)).map_err(|e| e.to_string())
}

/// The first line of `C`'s snapshots (without the newline).
fn format_line<C: Chef>() -> String {
    format!("{FORMAT} {} {}", C::info().name, C::STATE_VERSION)
}

/// `chef`'s snapshot: the format line, then the chef as JSON in the state form.
pub fn snapshot<C: Chef + serde::Serialize>(chef: &C) -> Result<Vec<u8>, String> {
    let mut out = format_line::<C>().into_bytes();
    out.push(b'\n');
    with_state_form(|| serde_json::to_writer(&mut out, chef))
        .map_err(|e| format!("the chef's state does not serialise: {e}"))?;
    Ok(out)
}

/// A chef made from a snapshot (of this or an older version), or why not. Runs
/// [`Chef::restored`] on it.
pub fn restore<C: Chef + serde::de::DeserializeOwned>(state: &[u8]) -> Result<C, String> {
    let expected = format_line::<C>();
    let (line, body) = match state.iter().position(|&b| b == b'\n') {
        Some(at) => (&state[..at], &state[at + 1..]),
        None => (state, &[][..]),
    };
    let line = String::from_utf8_lossy(&line[..line.len().min(200)]);
    if line != expected {
        return Err(why_not(&line, &expected));
    }
    let mut chef: C = with_state_form(|| serde_json::from_slice(body))
        .map_err(|e| format!("the state does not fit this version of the chef: {e}"))?;
    chef.restored()?;
    Ok(chef)
}

/// Why a snapshot whose first line is `line` is not for this chef (`expected`).
fn why_not(line: &str, expected: &str) -> String {
    let mut got = line.split(' ');
    let mut want = expected.split(' ');
    let (format, want_format) = (got.next().unwrap_or(""), want.next().unwrap_or(""));
    if format == OLD_FORMAT {
        return format!("the state is in {OLD_FORMAT}, an older chef-sdk's format; this version reads {want_format}");
    }
    if format != want_format {
        return "the state is not a chef-sdk JSON state (another SDK or language wrote it)"
            .to_owned();
    }
    // The version is the last word, the name what is between (the kitchen admits no spaces
    // in names, but this must not misreport one).
    let split = |l: &str| -> (String, String) {
        let rest = l.get(want_format.len() + 1..).unwrap_or("");
        match rest.rsplit_once(' ') {
            Some((name, version)) => (name.to_owned(), version.to_owned()),
            None => (rest.to_owned(), String::new()),
        }
    };
    let (name, version) = split(line);
    let (want_name, want_version) = split(expected);
    if name != want_name {
        format!("the state is {name:?}'s, not {want_name:?}'s")
    } else {
        format!(
            "the state is {name} state version {version}; this version of the chef reads \
             version {want_version}"
        )
    }
}

/// A byte buffer in a chef's state, written as a hex string (two characters a byte; a
/// JSON array of numbers would take up to four).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::ops::Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl serde::Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Hex<'a>(&'a [u8]);
        impl fmt::Display for Hex<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
        s.collect_str(&Hex(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let digit = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        let hex = text.as_bytes();
        if hex.len() % 2 != 0 {
            return Err(D::Error::custom("odd number of hex digits"));
        }
        hex.chunks_exact(2)
            .map(|p| Some((digit(p[0])? << 4) | digit(p[1])?))
            .collect::<Option<Vec<u8>>>()
            .map(Bytes)
            .ok_or_else(|| D::Error::custom("not a hex string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChefInfo, Timestamp};

    #[derive(Default, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Counter {
        seen: u64,
        at: Timestamp,
        raw: Bytes,
    }
    impl Chef for Counter {
        fn info() -> ChefInfo {
            ChefInfo::new("Counter", "test")
        }
    }

    #[derive(Default, Debug, serde::Serialize, serde::Deserialize)]
    struct CounterV2 {
        seen: u64,
    }
    impl Chef for CounterV2 {
        const STATE_VERSION: u32 = 2;
        fn info() -> ChefInfo {
            ChefInfo::new("Counter", "test")
        }
    }

    #[derive(Default, Debug, serde::Serialize, serde::Deserialize)]
    struct Other {
        seen: u64,
    }
    impl Chef for Other {
        fn info() -> ChefInfo {
            ChefInfo::new("Other Chef", "test")
        }
    }

    #[test]
    fn round_trip_is_exact_and_the_form_is_scoped() {
        let chef = Counter {
            seen: 7,
            at: Timestamp::from_nanos(1_795_739_862_513_954_123),
            raw: Bytes(vec![0, 0x7f, 0xff]),
        };
        let state = snapshot(&chef).unwrap();
        let text = String::from_utf8(state.clone()).unwrap();
        assert_eq!(
            text,
            "chef-sdk-state-json-2 Counter 1\n\
             {\"seen\":7,\"at\":1795739862513954123,\"raw\":\"007fff\"}"
        );
        assert_eq!(restore::<Counter>(&state).unwrap(), chef);
        assert!(!in_state_form());
        // Outside a snapshot a timestamp is float seconds, as in dumplings.
        assert_eq!(
            serde_json::to_string(&chef.at).unwrap(),
            "1795739862.5139542"
        );
    }

    #[test]
    fn refusals_say_why() {
        let state = snapshot(&Counter::default()).unwrap();
        let e = restore::<CounterV2>(&state).unwrap_err();
        assert_eq!(
            e,
            "the state is Counter state version 1; this version of the chef reads version 2"
        );
        let e = restore::<Other>(&state).unwrap_err();
        assert_eq!(e, "the state is \"Counter\"'s, not \"Other Chef\"'s");
        let e = restore::<Counter>(&snapshot(&Other::default()).unwrap()).unwrap_err();
        assert_eq!(e, "the state is \"Other Chef\"'s, not \"Counter\"'s");
        let e = restore::<Counter>(b"chef-sdk-state-json-1\n{\"seen\":1}").unwrap_err();
        assert!(e.contains("older chef-sdk's format"), "{e}");
        let e = restore::<Counter>(b"{\"packet_counts\":{}}").unwrap_err();
        assert!(e.contains("not a chef-sdk JSON state"), "{e}");
        let e =
            restore::<Counter>(b"chef-sdk-state-json-2 Counter 1\n{\"seen\":\"x\"}").unwrap_err();
        assert!(e.starts_with("the state does not fit"), "{e}");
        let e = restore::<Counter>(
            b"chef-sdk-state-json-2 Counter 1\n{\"seen\":1,\"at\":0,\"raw\":\"0g\"}",
        )
        .unwrap_err();
        assert!(e.contains("not a hex string"), "{e}");
        assert!(!in_state_form());
    }
}
