//! The hub's check of a message from a kitchen, in one streaming pass.
//!
//! Why streaming: the hub checks every dumpling every kitchen sends. Parsing each one into a
//! `serde_json::Value` built a map per object (hashing and allocating every key and string of
//! the payload) only to read four metadata fields; with a chef that sends a 40 KB table per
//! poke that was most of the hub's CPU. This pass runs serde_json's own parser over the whole
//! message (`deserialize_any` everywhere, so numbers, strings, escapes, surrogates, nesting
//! and trailing bytes are checked exactly as a `Value` parse checks them: what this accepts,
//! every eater's `serde_json` accepts) but keeps only what it needs from `metadata`. A key
//! eaters read that appears twice in its object (`metadata`, `payload`, and the four
//! metadata fields) is refused ([`InvalidDumpling::DuplicateKey`]): a `Value` parse keeps
//! the last and a typed parse refuses the dumpling, so eaters would disagree.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::{limits, CheckedDumpling, Driver, InvalidDumpling, HUB_ONLY_METADATA_KEYS};

/// The scalar `visit_*` methods of a visitor whose answer for every scalar is `$value`.
macro_rules! scalars_as {
    ($value:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}
/// Check a message a kitchen sent: JSON, an object with `metadata.chef` (a string),
/// `metadata.driver` of `packet`/`interval`, and a numeric `metadata.creation_time`.
///
/// This is stricter than the original hub (which needed only `metadata.chef`) so that
/// every forwarded dumpling is one the original eaters can parse.
pub fn check_dumpling(message: &[u8]) -> Result<CheckedDumpling, InvalidDumpling> {
    // UTF-8 text (nearly always): checked once by `simdutf8`, then parsed as text, instead
    // of serde_json checking each string with `std`'s slower validator. A parse of valid
    // UTF-8 gives the same answer from a slice or a str; invalid UTF-8 keeps the slice
    // parse, so its answer (and which error comes first) is unchanged.
    if let Ok(text) = simdutf8::basic::from_utf8(message) {
        return check_dumpling_text(text);
    }
    verdict(message, serde_json::Deserializer::from_slice(message))
}

/// [`check_dumpling`] for a message already known to be UTF-8 (a WebSocket text frame,
/// which the WebSocket layer has validated): the same answer, without checking the UTF-8 of
/// every string a second time.
pub fn check_dumpling_text(message: &str) -> Result<CheckedDumpling, InvalidDumpling> {
    verdict(
        message.as_bytes(),
        serde_json::Deserializer::from_str(message),
    )
}

/// The verdict on `message`, parsed by `de`.
///
/// The depth limit is the kitchen's ([`limits::check_json_depth`], one shared function), so
/// a message the kitchen let through is never refused here for its depth, and its answer
/// comes first, as it always did: a message nested deeper than [`limits::MAX_JSON_DEPTH`] is
/// `TooDeep` whatever else is wrong with it. (Size is the hub's WebSocket frame limit,
/// `--max-message-bytes`; the kitchen checks the default.)
///
/// Why the depth is measured during the parse instead of by a bracket count first: the
/// count was a second pass over every byte of every dumpling (~17 % of the hub's CPU on the
/// mixed corpus). On JSON the parser accepts, the deepest container it visits is exactly
/// the bracket count's depth (brackets in strings are skipped by both); a message it
/// refuses gets the bracket count afterwards to tell `TooDeep` from `NotJson`, so every
/// answer is the one the count-first order gave.
fn verdict<'de, R: serde_json::de::Read<'de>>(
    message: &[u8],
    mut de: serde_json::Deserializer<R>,
) -> Result<CheckedDumpling, InvalidDumpling> {
    let deepest = Cell::new(0);
    let parsed = scan(&mut de, &deepest).and_then(|doc| de.end().map(|()| doc));
    match parsed {
        Ok(_) if deepest.get() > limits::MAX_JSON_DEPTH => Err(limits::LimitError::TooDeep {
            max: limits::MAX_JSON_DEPTH,
        }
        .into()),
        Ok(doc) => finish(Ok(doc)),
        Err(error) => {
            limits::check_json_depth(message)?;
            finish(Err(error))
        }
    }
}

/// [`check_dumpling`] (`text` false) or [`check_dumpling_text`] (`text` true, `message`
/// then UTF-8) with the deepest nesting the parse saw, for [`crate::repeat`]; the depth is
/// meaningful only on `Ok`.
pub(crate) fn verdict_with_depth(
    message: &[u8],
    text: bool,
) -> (Result<CheckedDumpling, InvalidDumpling>, usize) {
    let deepest = Cell::new(0);
    let parsed = if text {
        let Ok(message) = std::str::from_utf8(message) else {
            return (check_dumpling(message), 0);
        };
        let mut de = serde_json::Deserializer::from_str(message);
        scan(&mut de, &deepest).and_then(|doc| de.end().map(|()| doc))
    } else {
        let mut de = serde_json::Deserializer::from_slice(message);
        scan(&mut de, &deepest).and_then(|doc| de.end().map(|()| doc))
    };
    let verdict = match parsed {
        Ok(_) if deepest.get() > limits::MAX_JSON_DEPTH => Err(limits::LimitError::TooDeep {
            max: limits::MAX_JSON_DEPTH,
        }
        .into()),
        Ok(doc) => finish(Ok(doc)),
        // The exact error (depth first) is the plain check's business.
        Err(_) => check_dumpling(message),
    };
    (verdict, deepest.get())
}

/// The nesting depth of `text` if it is exactly one JSON value (surrounding whitespace
/// allowed) that a `serde_json::Value` parse accepts; `None` otherwise. `{}` and `[]` are 1,
/// a scalar 0.
pub fn json_value_depth(text: &[u8]) -> Option<usize> {
    let deepest = Cell::new(0);
    let walk = Walk {
        level: 0,
        deepest: &deepest,
    };
    // Strings are where a slice parse checks UTF-8 (anywhere else a non-ASCII byte is a
    // syntax error), so "UTF-8 and parses as text" is exactly "parses as a slice"; one
    // `simdutf8` pass is much cheaper than `std`'s check of every string (the hub checks
    // each table payload this way the first time it repeats).
    let text = simdutf8::basic::from_utf8(text).ok()?;
    let mut de = serde_json::Deserializer::from_str(text);
    walk.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(deepest.get())
}

/// Parse the whole message; JSON errors come first (the original's "Could not interpret
/// dumpling JSON"), as the whole text is parsed before any field is looked at. `deepest`
/// ends as the deepest nesting of arrays and objects seen.
fn scan<'de, D: Deserializer<'de>>(de: D, deepest: &Cell<usize>) -> Result<Document, D::Error> {
    de.deserialize_any(DocumentVisitor(Walk { level: 0, deepest }))
}

/// Turn a parsed document into the hub's verdict, in the order the checks were always made.
fn finish(doc: Result<Document, serde_json::Error>) -> Result<CheckedDumpling, InvalidDumpling> {
    let doc = doc.map_err(|_| InvalidDumpling::NotJson)?;
    let Document::Object {
        metadata: Some(Metadata::Object(meta)),
        duplicate,
    } = doc
    else {
        return Err(InvalidDumpling::NotAnObject);
    };
    if let Some(key) = duplicate.or(meta.duplicate) {
        return Err(InvalidDumpling::DuplicateKey(key));
    }
    let Some(Field::Str(chef)) = meta.chef else {
        return Err(InvalidDumpling::NoChef);
    };
    let driver = match meta.driver {
        Some(Field::Str(ref d)) if d == "packet" => Driver::Packet,
        Some(Field::Str(ref d)) if d == "interval" => Driver::Interval,
        _ => return Err(InvalidDumpling::BadDriver),
    };
    if !matches!(meta.creation_time, Some(Field::Number)) {
        return Err(InvalidDumpling::BadCreationTime);
    }
    if let Some(key) = meta.hub_only_key {
        return Err(InvalidDumpling::HubOnlyKey(key));
    }
    Ok(CheckedDumpling {
        chef,
        kitchen: match meta.kitchen {
            Some(Field::Str(kitchen)) => Some(kitchen),
            _ => None,
        },
        driver,
    })
}

/// The top level of a message, as far as the check needs it.
enum Document {
    /// A JSON object; `metadata` is its last `metadata` key's value.
    Object {
        metadata: Option<Metadata>,
        /// `metadata` or `payload`, when it appears twice.
        duplicate: Option<&'static str>,
    },
    /// Any other JSON value.
    Other,
}

/// A `metadata` key's value.
enum Metadata {
    /// An object, with the fields the check reads.
    Object(MetaFields),
    /// AnyJson else.
    Other,
}

/// What the check reads from a `metadata` object (each the last of its key, as in a map).
#[derive(Default)]
struct MetaFields {
    chef: Option<Field>,
    kitchen: Option<Field>,
    driver: Option<Field>,
    creation_time: Option<Field>,
    /// The first hub-only key present, in [`HUB_ONLY_METADATA_KEYS`] order.
    hub_only_key: Option<&'static str>,
    /// One of the four fields, when it appears twice.
    duplicate: Option<&'static str>,
}

/// A metadata field's value, reduced to what the check asks of it.
enum Field {
    /// A string (chef, kitchen and driver are kept).
    Str(String),
    /// A number (integer or float).
    Number,
    /// AnyJson else (null, bool, array, object).
    Other,
}

/// Where a value sits: `level` arrays and objects enclose it; `deepest` is the deepest
/// nesting seen so far in the whole message.
#[derive(Clone, Copy)]
struct Walk<'a> {
    level: usize,
    deepest: &'a Cell<usize>,
}

impl<'a> Walk<'a> {
    /// Entering an array or object at this place: note its depth, and give the place of
    /// the values inside it.
    fn enter(self) -> Walk<'a> {
        let level = self.level + 1;
        if level > self.deepest.get() {
            self.deepest.set(level);
        }
        Walk {
            level,
            deepest: self.deepest,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

/// [`AnyJson`] that also measures the nesting.
impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inside = self.enter();
        while map.next_key_seed(AnyJson)?.is_some() {
            map.next_value_seed(inside)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inside = self.enter();
        while seq.next_element_seed(inside)?.is_some() {}
        Ok(())
    }

    scalars_as!(());
}

struct DocumentVisitor<'a>(Walk<'a>);

impl<'de> Visitor<'de> for DocumentVisitor<'_> {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let inside = self.0.enter();
        let mut metadata = None;
        let mut payload = false;
        let mut duplicate = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key.is("metadata") {
                if metadata.is_some() {
                    duplicate = duplicate.or(Some("metadata"));
                }
                metadata = Some(map.next_value_seed(MetadataSeed(inside))?);
            } else {
                if key.is("payload") {
                    if payload {
                        duplicate = duplicate.or(Some("payload"));
                    }
                    payload = true;
                }
                map.next_value_seed(inside)?;
            }
        }
        Ok(Document::Object {
            metadata,
            duplicate,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Document, A::Error> {
        self.0.visit_seq(seq).map(|()| Document::Other)
    }

    scalars_as!(Document::Other);
}

struct MetadataSeed<'a>(Walk<'a>);

impl<'de> DeserializeSeed<'de> for MetadataSeed<'_> {
    type Value = Metadata;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Metadata, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetadataSeed<'_> {
    type Value = Metadata;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
        let inside = self.0.enter();
        let mut fields = MetaFields::default();
        let mut hub_only = [false; HUB_ONLY_METADATA_KEYS.len()];
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let (slot, name) = if key.is("chef") {
                (&mut fields.chef, "chef")
            } else if key.is("kitchen") {
                (&mut fields.kitchen, "kitchen")
            } else if key.is("driver") {
                (&mut fields.driver, "driver")
            } else if key.is("creation_time") {
                (&mut fields.creation_time, "creation_time")
            } else {
                if let Some(i) = HUB_ONLY_METADATA_KEYS.iter().position(|k| key.is(k)) {
                    hub_only[i] = true;
                }
                map.next_value_seed(inside)?;
                continue;
            };
            if slot.is_some() {
                fields.duplicate = fields.duplicate.or(Some(name));
            }
            *slot = Some(map.next_value_seed(FieldSeed(inside))?);
        }
        fields.hub_only_key = HUB_ONLY_METADATA_KEYS
            .iter()
            .zip(hub_only)
            .find_map(|(k, present)| present.then_some(*k));
        Ok(Metadata::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Metadata, A::Error> {
        self.0.visit_seq(seq).map(|()| Metadata::Other)
    }

    scalars_as!(Metadata::Other);
}

struct FieldSeed<'a>(Walk<'a>);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Field;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Field, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field::Str(v.to_owned()))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Field, E> {
        Ok(Field::Number)
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Field, E> {
        Ok(Field::Number)
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Field, E> {
        Ok(Field::Number)
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Field, E> {
        Ok(Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field, A::Error> {
        self.0.visit_map(map).map(|()| Field::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field, A::Error> {
        self.0.visit_seq(seq).map(|()| Field::Other)
    }
}

/// An object key, reduced to which of the keys the check reads it is (never kept: a key is
/// borrowed from the message unless it has escapes).
struct Key(Option<&'static str>);

impl Key {
    fn is(&self, name: &str) -> bool {
        self.0 == Some(name)
    }
}

/// Every key the check looks for, at any level it looks.
const KNOWN_KEYS: &[&str] = &[
    "metadata",
    "payload",
    "chef",
    "kitchen",
    "driver",
    "creation_time",
];

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Key, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key(KNOWN_KEYS
            .iter()
            .chain(HUB_ONLY_METADATA_KEYS)
            .find(|k| **k == v)
            .copied()))
    }
}

/// Any JSON value, checked by serde_json's full parser and then forgotten: a seed that
/// accepts exactly what a `serde_json::Value` parse at the same place accepts, building
/// nothing. Public so that eaters can check a dumpling as a `Value` parse would without
/// building one (`eater_client::parse_dumpling_with`).
///
/// Not `serde::de::IgnoredAny`: serde_json's `deserialize_ignored_any` skips numbers without
/// checking their range (`1e400`) where a `Value` parse refuses them, so this asks for
/// `deserialize_any`, the parse a `Value` gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyJson;

impl<'de> DeserializeSeed<'de> for AnyJson {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyJson {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(AnyJson)?.is_some() {
            map.next_value_seed(AnyJson)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(AnyJson)?.is_some() {}
        Ok(())
    }

    scalars_as!(());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// An object's keys in order, repeats kept (a `Value` map keeps only the last).
    struct Keys(Vec<String>);

    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Keys, D::Error> {
            struct KeysVisitor;
            impl<'de> Visitor<'de> for KeysVisitor {
                type Value = Keys;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            de.deserialize_map(KeysVisitor)
        }
    }

    /// The first of `watched` that `keys` repeats, at its second appearance.
    fn first_repeat(keys: &[String], watched: &[&'static str]) -> Option<&'static str> {
        let mut seen = Vec::new();
        for key in keys {
            if let Some(w) = watched.iter().find(|w| **w == key.as_str()) {
                if seen.contains(w) {
                    return Some(w);
                }
                seen.push(w);
            }
        }
        None
    }

    /// The check as it was, parsing into a `Value`, plus the repeated-key rule read from
    /// the keys in order: the reference the streaming pass must agree with on every input.
    fn check_by_value(message: &[u8]) -> Result<CheckedDumpling, InvalidDumpling> {
        limits::check_json_depth(message)?;
        let value: Value = serde_json::from_slice(message).map_err(|_| InvalidDumpling::NotJson)?;
        let metadata = value
            .as_object()
            .and_then(|o| o.get("metadata"))
            .and_then(Value::as_object)
            .ok_or(InvalidDumpling::NotAnObject)?;
        let top: Keys = serde_json::from_slice(message).map_err(|_| InvalidDumpling::NotJson)?;
        let meta_text = serde_json::to_string(metadata).map_err(|_| InvalidDumpling::NotJson)?;
        // The last `metadata`'s own keys, repeats kept: found in the message by position.
        let last_meta: Vec<String> = {
            let raw: std::collections::BTreeMap<String, Box<serde_json::value::RawValue>> =
                serde_json::from_slice(message).map_err(|_| InvalidDumpling::NotJson)?;
            match raw.get("metadata") {
                Some(m) => {
                    serde_json::from_str::<Keys>(m.get())
                        .map_err(|_| InvalidDumpling::NotJson)?
                        .0
                }
                None => {
                    serde_json::from_str::<Keys>(&meta_text)
                        .map_err(|_| InvalidDumpling::NotJson)?
                        .0
                }
            }
        };
        if let Some(key) = first_repeat(&top.0, &["metadata", "payload"]).or(first_repeat(
            &last_meta,
            &["chef", "kitchen", "driver", "creation_time"],
        )) {
            return Err(InvalidDumpling::DuplicateKey(key));
        }
        let chef = metadata
            .get("chef")
            .and_then(Value::as_str)
            .ok_or(InvalidDumpling::NoChef)?;
        let driver = match metadata.get("driver").and_then(Value::as_str) {
            Some("packet") => Driver::Packet,
            Some("interval") => Driver::Interval,
            _ => return Err(InvalidDumpling::BadDriver),
        };
        if !metadata.get("creation_time").is_some_and(Value::is_number) {
            return Err(InvalidDumpling::BadCreationTime);
        }
        if let Some(key) = HUB_ONLY_METADATA_KEYS
            .iter()
            .find(|k| metadata.contains_key(**k))
        {
            return Err(InvalidDumpling::HubOnlyKey(key));
        }
        Ok(CheckedDumpling {
            chef: chef.to_owned(),
            kitchen: metadata
                .get("kitchen")
                .and_then(Value::as_str)
                .map(str::to_owned),
            driver,
        })
    }

    fn agree(message: &[u8]) {
        let want = check_by_value(message);
        assert_eq!(
            check_dumpling(message),
            want,
            "bytes: {:?}",
            String::from_utf8_lossy(message)
        );
        if let Ok(text) = std::str::from_utf8(message) {
            assert_eq!(check_dumpling_text(text), want, "text: {text:?}");
        }
    }

    /// Messages that probe each rule: repeated keys (last wins, at both levels), wrong
    /// types, escapes in keys, numbers out of range, lone surrogates, trailing bytes,
    /// nesting, a byte-order mark, and ordinary dumplings.
    const CASES: &[&str] = &[
        r#"{"metadata":{"chef":"C","kitchen":"k","creation_time":1.5,"driver":"packet"},"payload":{"a":[1,2,{"b":null}]}}"#,
        r#"{"metadata":{"chef":"C","kitchen":null,"creation_time":1,"driver":"interval"},"payload":1}"#,
        r#"{"metadata":{"chef":"C","creation_time":-0,"driver":"interval"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":1e400,"driver":"packet"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"payload":1e400}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"payload":-1e400}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"payload":18446744073709551616}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"payload":"\ud800"}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"payload":"\ud83d\ude00"}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"\ud800":1}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"}} x"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"}}   "#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"metadata":5}"#,
        r#"{"metadata":5,"metadata":{"chef":"C","creation_time":1,"driver":"packet"}}"#,
        r#"{"metadata":{"chef":"A","creation_time":1,"driver":"packet"},"metadata":{"chef":"B"}}"#,
        r#"{"metadata":{"chef":"A","chef":7,"creation_time":1,"driver":"packet"}}"#,
        r#"{"metadata":{"chef":7,"chef":"B","creation_time":1,"driver":"packet"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"creation_time":"1","driver":"packet"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":"1","creation_time":2,"driver":"packet"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet","driver":"x"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet","kitchen":"a","kitchen":3}}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet","nd_seq":null}}"#,
        r#"{"metadata":{"ch\u0065f":"C","creation_time":1,"driver":"p\u0061cket"}}"#,
        r#"{"\u006detadata":{"chef":"C","creation_time":1,"driver":"packet"}}"#,
        r#"{"metadata":{"chef":"C\n\u0000","creation_time":1,"driver":"packet","nd_s\u0065q":1}}"#,
        r#"{"metadata":{"chef":"C","creation_time":[1],"driver":"packet"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":true,"driver":"packet"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":{"packet":1}}}"#,
        r#"{"metadata":{"chef":null,"creation_time":1,"driver":"packet"}}"#,
        r#"{"metadata":[],"payload":1}"#,
        r#"{"payload":1}"#,
        r#"{}"#,
        r#"[{"metadata":{"chef":"C","creation_time":1,"driver":"packet"}}]"#,
        r#""metadata""#,
        r#"null"#,
        r#"12"#,
        r#"1e400"#,
        r#""#,
        r#"   "#,
        "\u{feff}{\"metadata\":{\"chef\":\"C\",\"creation_time\":1,\"driver\":\"packet\"}}",
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"payload":[[[[[[[[[[]]]]]]]]]]}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"payload":NaN}"#,
        r#"{"metadata":{"chef":"C","creation_time":01,"driver":"packet"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":1.,"driver":"packet"}}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"payload":"\x"}"#,
        r#"{"metadata":{"chef":"C","creation_time":1,"driver":"packet"},"payload":"tab	in"}"#,
    ];

    #[test]
    fn keys_eaters_read_may_not_repeat() {
        let meta = r#""chef":"C","kitchen":"k","creation_time":1,"driver":"packet""#;
        for (message, key) in [
            (
                format!(r#"{{"metadata":{{{meta},"kitchen":"other"}}}}"#),
                "kitchen",
            ),
            (
                format!(r#"{{"metadata":{{{meta},"chef":"SystemStatusChef"}}}}"#),
                "chef",
            ),
            (
                format!(r#"{{"metadata":{{{meta}}},"payload":1,"payload":2}}"#),
                "payload",
            ),
            (
                format!(r#"{{"metadata":{{{meta}}},"metadata":{{{meta}}}}}"#),
                "metadata",
            ),
        ] {
            assert_eq!(
                check_dumpling(message.as_bytes()),
                Err(InvalidDumpling::DuplicateKey(key)),
                "{message}"
            );
        }
        // Other metadata keys, and keys inside the payload, are the eaters' business.
        let fine = format!(r#"{{"metadata":{{{meta},"x":1,"x":2}},"payload":{{"a":1,"a":2}}}}"#);
        assert!(check_dumpling(fine.as_bytes()).is_ok());
    }

    #[test]
    fn agrees_with_a_value_parse_on_every_probe() {
        for case in CASES {
            agree(case.as_bytes());
        }
        let deep = |n: usize| {
            format!(
                r#"{{"metadata":{{"chef":"C","creation_time":1,"driver":"packet"}},"payload":{}{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        for n in [100, 125, 126, 127, 128, 129, 200, 5000] {
            agree(deep(n).as_bytes());
            // The depth is measured during the parse now: deep and also malformed, before
            // or after the deep part, deep in metadata, brackets inside strings.
            agree(format!("{} x", deep(n)).as_bytes());
            agree(deep(n).replacen(",", ",,", 1).as_bytes());
            agree(deep(n).replacen("1,", "1e400,", 1).as_bytes());
            agree(
                deep(n)
                    .replacen("\"payload\":", "\"payload\":\"", 1)
                    .as_bytes(),
            );
            agree(format!("{}{}", "[".repeat(n), deep(3)).as_bytes());
            agree(
                format!(
                    r#"{{"metadata":{{"chef":"C","x":{}{},"creation_time":1,"driver":"packet"}}}}"#,
                    "{\"a\":".repeat(n),
                    "}".repeat(n)
                )
                .as_bytes(),
            );
            agree(
                format!(
                    r#"{{"metadata":{{"chef":"C","creation_time":1,"driver":"packet"}},"payload":"{}\"{}"}}"#,
                    "[".repeat(n),
                    "{".repeat(n)
                )
                .as_bytes(),
            );
        }
        // Not UTF-8: in a string, in a key, outside any string.
        agree(b"{\"metadata\":{\"chef\":\"C\xff\",\"creation_time\":1,\"driver\":\"packet\"}}");
        agree(
            b"{\"metadata\":{\"chef\":\"C\",\"creation_time\":1,\"driver\":\"packet\"},\"\xc3\":1}",
        );
        agree(b"{\"metadata\":{\"chef\":\"C\",\"creation_time\":1,\"driver\":\"packet\"}}\xff");
    }

    /// Random edits of valid and nearly valid dumplings (bytes flipped, dropped, repeated,
    /// swapped for JSON punctuation), so the two checks are compared far from the probes
    /// above. Deterministic (a fixed xorshift seed).
    #[test]
    fn agrees_with_a_value_parse_on_random_edits() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        const ALPHABET: &[u8] = br#"{}[]":,\ 0123456789.eE+-nultrfasmetadchkipn_qv"#;
        let mut checked = 0;
        // Nesting around the limit, so edits that break the JSON meet the depth too.
        let deep: Vec<String> = (125..=130)
            .map(|n| {
                format!(
                    r#"{{"metadata":{{"chef":"C","creation_time":1,"driver":"packet"}},"payload":{}"[{{"{}}}"#,
                    "[{\"a\":".repeat(n / 2),
                    "}]".repeat(n / 2)
                )
            })
            .collect();
        for round in 0..40_000 {
            let seed = match round % 4 {
                0 => deep[(round / 4) % deep.len()].as_bytes(),
                _ => CASES[round % CASES.len()].as_bytes(),
            };
            let mut bytes = seed.to_vec();
            for _ in 0..1 + next() % 4 {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 5 {
                    0 => bytes[at] = ALPHABET[(next() % ALPHABET.len() as u64) as usize],
                    1 => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, ALPHABET[(next() % ALPHABET.len() as u64) as usize]),
                    3 => {
                        let end = (at + 1 + (next() % 12) as usize).min(bytes.len());
                        let copy = bytes[at..end].to_vec();
                        bytes.splice(at..at, copy);
                    }
                    _ => bytes[at] = (next() & 0xff) as u8,
                }
            }
            agree(&bytes);
            checked += 1;
        }
        assert_eq!(checked, 40_000);
    }
}
