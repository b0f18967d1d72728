//! The netdumplings wire protocol, shared by the kitchen, the hub, the eaters and the tests.
//!
//! Everything here is compatible with the Python original (netdumplings 0.5.1): the
//! dumpling envelope `{"metadata": {"chef", "kitchen", "creation_time", "driver"},
//! "payload"}`, the kitchen and eater hellos (unknown keys kept), the default ports and the
//! client close codes. See `shared/docs/netdumplings-original.md` §3 for the contract.
//!
//! Architecture invariant: this crate knows nothing of tokio, WebSockets or wasm. It is
//! serde and plain data, so any part of the system (and any fuzzer) can use it cheaply.

pub mod canonical;
mod check;
pub mod limits;
mod memo;
pub mod repeat;
mod resume;
#[cfg(test)]
mod test_rng;
pub mod text;

pub use check::{check_dumpling, check_dumpling_text, json_value_depth, AnyJson};
pub use limits::{check_json_depth, check_message_limits, LimitError, MAX_JSON_DEPTH};
pub use memo::{CheckedPayload, PayloadMemo};
pub use repeat::RepeatMemo;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Port the hub listens on for kitchens (the original's default).
pub const DEFAULT_IN_PORT: u16 = 11347;
/// Port the hub listens on for eaters (the original's default).
pub const DEFAULT_OUT_PORT: u16 = 11348;
/// Default hub status period, in seconds.
pub const DEFAULT_STATUS_FREQ_SECS: u64 = 5;
/// Default kitchen interval ("poke") period, in seconds.
pub const DEFAULT_POKE_INTERVAL_SECS: f64 = 5.0;
/// Largest message the hub accepts from a kitchen, in bytes (websockets' default, 2^20).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Upgrade header by which our clients and our hub agree that dumplings may travel as
/// binary WebSocket frames that hold UTF-8 JSON, exactly the text a text frame would
/// hold. A kitchen or eater sends it with [`BINARY_FRAMES_VALUE`] on its upgrade request;
/// our hub answers with the same header and value; only then do binary frames carry
/// dumplings on that connection (the original hub and clients never send it, so they keep
/// text frames). Why: a text frame is checked for UTF-8 by the WebSocket library with
/// `std`'s validator, which on dumplings with many non-ASCII bytes (DNS names) was a
/// quarter of the hub's CPU; a binary frame lets the receiver check it once, faster
/// (`simdutf8`).
pub const BINARY_FRAMES_HEADER: &str = "nd-binary-frames";
/// The only value of [`BINARY_FRAMES_HEADER`] (room for later versions).
pub const BINARY_FRAMES_VALUE: &str = "1";

/// Chef name of the hub's own status dumplings.
pub const SYSTEM_STATUS_CHEF: &str = "SystemStatusChef";
/// Chef name of the hub's notices to one eater (e.g. how many dumplings it missed).
pub const HUB_NOTICE_CHEF: &str = "HubNoticeChef";
/// Chef name of a kitchen's own periodic status dumplings.
pub const KITCHEN_STATUS_CHEF: &str = "KitchenStatusChef";

/// Chef names only the hub emits. A kitchen may not send dumplings under them (the hub
/// refuses such dumplings from kitchens), so an eater can trust what it reads under them.
pub const HUB_RESERVED_CHEF_NAMES: &[&str] = &[SYSTEM_STATUS_CHEF, HUB_NOTICE_CHEF];

/// Chef names the kitchen or the hub emit themselves: no chef may take them.
pub const RESERVED_CHEF_NAMES: &[&str] =
    &[SYSTEM_STATUS_CHEF, HUB_NOTICE_CHEF, KITCHEN_STATUS_CHEF];

/// Whether `name` is one of `reserved` as a reader would see it: only its ASCII letters and
/// digits count (fullwidth ones as their ASCII letters), in any case. So
/// `systemstatuschef`, `SystemStatusChef ` (a trailing space, or U+2800, or any invisible
/// or format character), `System_Status-Chef` and `ＳｙｓｔｅｍＳｔａｔｕｓＣｈｅｆ` all
/// pass for the real name and are reserved too. Look-alike letters of other scripts
/// (`SystemStatusCh\u{435}f`) are not letters here; eaters print chef names with every
/// non-ASCII character escaped (`text::escape_ascii`), so those cannot pass for it either.
pub fn is_reserved_name(reserved: &[&str], name: &str) -> bool {
    let shown = name.chars().filter_map(|c| {
        // Fullwidth forms (U+FF01..U+FF5E) are ASCII U+0021..U+007E, drawn wide.
        let c = match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            c => c,
        };
        c.is_ascii_alphanumeric().then_some(c)
    });
    reserved.iter().any(|r| {
        let mut shown = shown.clone();
        r.chars()
            .filter(char::is_ascii_alphanumeric)
            .all(|rc| shown.next().is_some_and(|c| c.eq_ignore_ascii_case(&rc)))
            && shown.next().is_none()
    })
}

/// WebSocket close codes used by netdumplings clients.
pub mod close_code {
    /// A client (eater or kitchen) was cancelled, e.g. by Ctrl-C. Reason "connection cancelled".
    pub const CANCELLED: u16 = 4101;
    /// Reason text sent with [`CANCELLED`].
    pub const CANCELLED_REASON: &str = "connection cancelled";
    /// An eater reached its dumpling count. Reason "dumpling eater is full".
    pub const EATER_FULL: u16 = 4102;
    /// Reason text sent with [`EATER_FULL`].
    pub const EATER_FULL_REASON: &str = "dumpling eater is full";
    /// Sent by the hub to an eater that made no write progress for too long (it was too
    /// slow to keep up). Reconnecting is allowed.
    pub const EATER_TOO_SLOW: u16 = 4201;
    /// Reason text sent with [`EATER_TOO_SLOW`].
    pub const EATER_TOO_SLOW_REASON: &str = "eater too slow: no write progress";
    /// Sent by the hub when a peer's hello is bad or late (RFC 6455 "policy violation").
    /// Retrying with the same hello cannot help.
    pub const BAD_HELLO: u16 = 1008;
    /// Sent by the hub on shutdown (RFC 6455 "going away").
    pub const GOING_AWAY: u16 = 1001;
    /// Sent by the hub when a message is over its size cap (RFC 6455 "message too big").
    pub const TOO_BIG: u16 = 1009;
    /// Sent by a federated hub to a kitchen whose dumplings it could not hand to NATS for
    /// [`STALLED_SECS`] (RFC 6455 "try again later"): what the kitchen sent after its last
    /// confirmation is not taken; it reconnects (or fails over) and sends it again.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// Reason text sent with [`TRY_AGAIN_LATER`].
    pub const TRY_AGAIN_LATER_REASON: &str =
        "hub cannot store dumplings now (NATS unavailable); try again later or another hub";
    /// How long a federated hub waits to hand one kitchen dumpling to NATS before it closes
    /// the kitchen with [`TRY_AGAIN_LATER`].
    pub const STALLED_SECS: u64 = 10;
}

/// Which chef handler made a dumpling. On the wire: `"packet"` or `"interval"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Made in answer to a packet.
    Packet,
    /// Made on the kitchen's timer.
    Interval,
}

impl Driver {
    /// The wire name: `"packet"` or `"interval"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Packet => "packet",
            Driver::Interval => "interval",
        }
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metadata the kitchen (or hub) puts on every dumpling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The chef's bare name, e.g. `DNSLookupChef`.
    pub chef: String,
    /// The kitchen's name; `null` for the hub's own dumplings.
    pub kitchen: Option<String>,
    /// Unix epoch seconds, with a fraction (the original's `time.time()`).
    pub creation_time: f64,
    /// Which handler made it.
    pub driver: Driver,
}

/// A dumpling as eaters see it: metadata plus any JSON payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dumpling {
    /// Filled in by the kitchen.
    pub metadata: Metadata,
    /// Whatever the chef returned.
    pub payload: Value,
}

/// Why a message is not a valid dumpling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDumpling {
    /// Not JSON at all (the original's wording).
    #[error("Could not interpret dumpling JSON")]
    NotJson,
    /// JSON, but `metadata.chef` is missing or not a string (the original's wording).
    #[error("Could not determine chef name")]
    NoChef,
    /// `metadata.driver` is missing or is not `"packet"` / `"interval"`.
    #[error("Dumpling driver was not 'packet' or 'interval'")]
    BadDriver,
    /// `metadata.creation_time` is missing or not a number.
    #[error("Dumpling creation_time is missing or not a number")]
    BadCreationTime,
    /// JSON that is not an object with a `metadata` object.
    #[error("Dumpling is not an object with a metadata object")]
    NotAnObject,
    /// Over the wire's size or nesting limit ([`check_message_limits`], the same check
    /// the kitchen applies before sending).
    #[error("{0}")]
    Limits(#[from] LimitError),
    /// `metadata` holds a key only the hub may set ([`HUB_ONLY_METADATA_KEYS`]): a kitchen
    /// could otherwise forge, e.g., the stream sequence a resuming eater trusts.
    #[error("Dumpling metadata key {0:?} is set only by the hub")]
    HubOnlyKey(&'static str),
    /// A key eaters read (`metadata`, `payload`, `metadata.chef`, `.kitchen`, `.driver`,
    /// `.creation_time`) appears twice in its object: a `Value` parse keeps the last, a
    /// typed one (the Rust eaters') refuses the dumpling, so eaters would disagree on what
    /// it says (which kitchen, which chef).
    #[error("Dumpling repeats the key {0:?}")]
    DuplicateKey(&'static str),
}

/// Metadata keys only the hub writes (`nd_seq`: a dumpling's JetStream sequence, added for
/// replaying and resuming eaters); the hub refuses kitchen dumplings that carry them.
pub const HUB_ONLY_METADATA_KEYS: &[&str] = &["nd_seq"];

/// What [`check_dumpling`] learned about a valid dumpling.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedDumpling {
    /// `metadata.chef`.
    pub chef: String,
    /// `metadata.kitchen`, when it is a string (the hub checks it against the sender's
    /// allowed names under `--auth`).
    pub kitchen: Option<String>,
    /// `metadata.driver`.
    pub driver: Driver,
}

/// The envelope's head for one chef and kitchen: `{"metadata":{"chef":…,"kitchen":…,
/// "creation_time":` is made once, and each dumpling adds only its time and driver.
///
/// Why: the kitchen wraps every dumpling of a chef with the same chef and kitchen names;
/// serialising the whole metadata struct with serde (escaping both names again) cost
/// more than the rest of a small packet dumpling's envelope. The bytes are exactly what
/// serde_json writes for the struct `{chef, kitchen, creation_time, driver}` (the same
/// serializer writes each field; a test compares the two).
#[derive(Debug, Clone, PartialEq)]
pub struct EnvelopeHead {
    chef: String,
    kitchen: Option<String>,
    /// `{"metadata":{"chef":"…","kitchen":"…"|null,"creation_time":`.
    prefix: Vec<u8>,
}

impl EnvelopeHead {
    /// The head for dumplings of `chef` made in `kitchen` (`None`: the hub's own).
    pub fn new(chef: &str, kitchen: Option<&str>) -> Self {
        let mut prefix = Vec::with_capacity(chef.len() + kitchen.map_or(4, str::len) + 64);
        write_prefix(&mut prefix, chef, kitchen);
        EnvelopeHead {
            chef: chef.to_owned(),
            kitchen: kitchen.map(str::to_owned),
            prefix,
        }
    }

    /// Whether this is the head of `chef`'s dumplings made in `kitchen`.
    pub fn is_for(&self, chef: &str, kitchen: Option<&str>) -> bool {
        self.chef == chef && self.kitchen.as_deref() == kitchen
    }

    /// The chef's name.
    pub fn chef(&self) -> &str {
        &self.chef
    }

    /// `{"metadata":{...},"payload":` in a buffer with room for a payload of `payload_len`
    /// bytes and the closing `}` (which the caller appends).
    fn bytes(&self, creation_time: f64, driver: Driver, payload_len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + payload_len + 48);
        out.extend_from_slice(&self.prefix);
        write_suffix(&mut out, creation_time, driver);
        out
    }
}

/// `{"metadata":{"chef":…,"kitchen":…,"creation_time":` (see [`EnvelopeHead`]).
fn write_prefix(out: &mut Vec<u8>, chef: &str, kitchen: Option<&str>) {
    out.extend_from_slice(b"{\"metadata\":{\"chef\":");
    // Plain strings cannot fail to serialize; serde_json escapes them as in the struct.
    let _ = serde_json::to_writer(&mut *out, chef);
    out.extend_from_slice(b",\"kitchen\":");
    let _ = serde_json::to_writer(&mut *out, &kitchen);
    out.extend_from_slice(b",\"creation_time\":");
}

/// The head after the prefix: the time, the driver, and `},"payload":`.
fn write_suffix(out: &mut Vec<u8>, creation_time: f64, driver: Driver) {
    // An f64 cannot fail to serialize (a non-finite one becomes `null`, as in the struct).
    let _ = serde_json::to_writer(&mut *out, &creation_time);
    out.extend_from_slice(match driver {
        Driver::Packet => b",\"driver\":\"packet\"},\"payload\":".as_slice(),
        Driver::Interval => b",\"driver\":\"interval\"},\"payload\":".as_slice(),
    });
}

/// The names an envelope is made for: given each time, or cached in an [`EnvelopeHead`].
#[derive(Clone, Copy)]
pub(crate) enum Head<'a> {
    /// A chef's and a kitchen's names, written for this one dumpling.
    Names(&'a str, Option<&'a str>),
    /// A head made once for many dumplings.
    Cached(&'a EnvelopeHead),
}

impl Head<'_> {
    /// `{"metadata":{...},"payload":` with room for the payload and the closing `}`.
    fn bytes(self, creation_time: f64, driver: Driver, payload_len: usize) -> Vec<u8> {
        match self {
            Head::Names(chef, kitchen) => {
                head_bytes(chef, kitchen, creation_time, driver, payload_len)
            }
            Head::Cached(head) => head.bytes(creation_time, driver, payload_len),
        }
    }
}

/// `{"metadata":{...},"payload":` in a buffer with room for a payload of `payload_len`
/// bytes and the closing `}` (which the caller appends).
fn head_bytes(
    chef: &str,
    kitchen: Option<&str>,
    creation_time: f64,
    driver: Driver,
    payload_len: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_len + 128);
    write_prefix(&mut out, chef, kitchen);
    write_suffix(&mut out, creation_time, driver);
    out
}

/// Build the JSON text of a dumpling from a payload that is already JSON.
///
/// Key order follows the original: `metadata{chef, kitchen, creation_time, driver}` then
/// `payload`. The payload is inserted verbatim, so the caller must have validated it
/// (see [`validate_payload`]); [`wrap_payload`] does both in one pass.
pub fn encode_dumpling(
    chef: &str,
    kitchen: Option<&str>,
    creation_time: f64,
    driver: Driver,
    payload_json: &RawValue,
) -> String {
    let mut out = head_bytes(
        chef,
        kitchen,
        creation_time,
        driver,
        payload_json.get().len(),
    );
    out.extend_from_slice(payload_json.get().as_bytes());
    out.push(b'}');
    // Only UTF-8 went in (serde_json's output and a `RawValue`'s text).
    String::from_utf8(out).unwrap_or_else(|_| String::from("{}"))
}

/// [`validate_payload`] and [`encode_dumpling`] in one pass: the chef's payload text is
/// checked and compacted straight into the envelope, so a large payload is copied once
/// instead of twice (the kitchen does this for every dumpling a chef makes). A payload
/// already in the compact form serde_json writes ([`canonical::canonical_depth`], what
/// serde-based chefs send) is copied as it is, with the same result.
pub fn wrap_payload(
    chef: &str,
    kitchen: Option<&str>,
    creation_time: f64,
    driver: Driver,
    payload: &str,
) -> Result<String, serde_json::Error> {
    wrap_payload_parts(Head::Names(chef, kitchen), creation_time, driver, payload)
        .map(|(json, ..)| json)
}

/// Why [`wrap_checked`] refused a payload.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// The payload is not exactly one JSON value (what [`wrap_payload`] refuses).
    #[error("{0}")]
    Invalid(serde_json::Error),
    /// The whole message breaks the wire's limits ([`check_message_limits`]).
    #[error(transparent)]
    Limit(LimitError),
}

/// [`wrap_payload`] then [`check_message_limits`] on the result: what the kitchen sends is
/// exactly what the hub accepts. A payload the fast path took (see [`canonical`]) is at
/// most [`canonical::MAX_FAST_DEPTH`] deep, so only the message's size is left to check.
pub fn wrap_checked(
    chef: &str,
    kitchen: Option<&str>,
    creation_time: f64,
    driver: Driver,
    payload: &str,
) -> Result<String, WrapError> {
    wrap_checked_parts(Head::Names(chef, kitchen), creation_time, driver, payload)
        .map(|(json, _)| json)
}

/// [`wrap_checked`] with the chef's and kitchen's names from `head` (made once per chef):
/// the same bytes and the same checks.
pub fn wrap_checked_with(
    head: &EnvelopeHead,
    creation_time: f64,
    driver: Driver,
    payload: &str,
) -> Result<String, WrapError> {
    wrap_checked_parts(Head::Cached(head), creation_time, driver, payload).map(|(json, _)| json)
}

/// [`wrap_checked`], also giving where the compacted payload starts in the result (it ends
/// before the final `}`).
pub(crate) fn wrap_checked_parts(
    head: Head<'_>,
    creation_time: f64,
    driver: Driver,
    payload: &str,
) -> Result<(String, usize), WrapError> {
    let fast = canonical::canonical_depth(payload).is_some();
    wrap_checked_known(head, creation_time, driver, payload, fast)
}

/// [`wrap_checked_parts`] when whether the canonical scan takes `payload` is already known
/// (`fast`: it does; the memo learns it from a resumed scan, see [`resume`]).
pub(crate) fn wrap_checked_known(
    head: Head<'_>,
    creation_time: f64,
    driver: Driver,
    payload: &str,
    fast: bool,
) -> Result<(String, usize), WrapError> {
    let (json, head) = if fast {
        wrap_fast(head, creation_time, driver, payload).map_err(WrapError::Invalid)?
    } else {
        wrap_transcoded(head, creation_time, driver, payload).map_err(WrapError::Invalid)?
    };
    check_wrapped(&json, fast)?;
    Ok((json, head))
}

// The envelope adds one level: a fast-path payload can never reach the wire's depth limit.
const _: () = assert!(canonical::MAX_FAST_DEPTH < MAX_JSON_DEPTH);

/// The wire's limits on a wrapped message whose payload's depth is known to be within
/// them (`depth_ok`), or not known.
pub(crate) fn check_wrapped(json: &str, depth_ok: bool) -> Result<(), WrapError> {
    if depth_ok {
        if json.len() > MAX_MESSAGE_BYTES {
            return Err(WrapError::Limit(LimitError::TooBig {
                size: json.len(),
                max: MAX_MESSAGE_BYTES,
            }));
        }
        return Ok(());
    }
    check_message_limits(json.as_bytes()).map_err(WrapError::Limit)
}

/// [`wrap_payload`], also giving where the compacted payload starts in the result (it
/// ends before the final `}`) and whether the fast path took it (its depth is then at most
/// [`canonical::MAX_FAST_DEPTH`]).
pub(crate) fn wrap_payload_parts(
    head: Head<'_>,
    creation_time: f64,
    driver: Driver,
    payload: &str,
) -> Result<(String, usize, bool), serde_json::Error> {
    if canonical::canonical_depth(payload).is_some() {
        let (text, head) = wrap_fast(head, creation_time, driver, payload)?;
        return Ok((text, head, true));
    }
    let (text, head) = wrap_transcoded(head, creation_time, driver, payload)?;
    Ok((text, head, false))
}

/// The envelope around a payload the canonical scan took (it is already what the
/// transcode would write, see `canonical`): copied as it is. The head is serde_json's
/// output, so the whole is UTF-8 without a second look. Also gives where the payload starts.
fn wrap_fast(
    head: Head<'_>,
    creation_time: f64,
    driver: Driver,
    payload: &str,
) -> Result<(String, usize), serde_json::Error> {
    let mut text = wrap_head(head, creation_time, driver, payload.len())?;
    let head = text.len();
    text.push_str(payload);
    text.push('}');
    Ok((text, head))
}

/// The envelope around `payload` checked and compacted by the transcode. Also gives where
/// the compacted payload starts.
fn wrap_transcoded(
    head: Head<'_>,
    creation_time: f64,
    driver: Driver,
    payload: &str,
) -> Result<(String, usize), serde_json::Error> {
    let mut out = head.bytes(creation_time, driver, payload.len());
    let head = out.len();
    transcode_compact(payload, &mut out)?;
    out.push(b'}');
    let text = String::from_utf8(out).map_err(<serde_json::Error as serde::de::Error>::custom)?;
    Ok((text, head))
}

/// The envelope's head (`{"metadata":{...},"payload":`) as a string with room for a
/// payload of `payload_len` bytes and the closing `}`.
pub(crate) fn wrap_head(
    head: Head<'_>,
    creation_time: f64,
    driver: Driver,
    payload_len: usize,
) -> Result<String, serde_json::Error> {
    let out = head.bytes(creation_time, driver, payload_len);
    String::from_utf8(out).map_err(<serde_json::Error as serde::de::Error>::custom)
}

/// Check that `payload` is exactly one JSON value and append it, compacted, to `out`.
fn transcode_compact(payload: &str, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_str(payload);
    serde_transcode::transcode(&mut reader, &mut serde_json::Serializer::new(&mut *out))?;
    reader.end()
}

/// Check that a chef's payload text is exactly one valid JSON value (no NaN, no trailing
/// garbage) and return it as a raw JSON value ready for [`encode_dumpling`].
///
/// The payload is re-written compactly on the way through (a transcode, not a tree: key
/// order and number spelling are kept), so a dumpling is always one line, and anything
/// serde_json would refuse downstream is refused here instead: nesting deeper than 128,
/// lone UTF-16 surrogates in escapes, numbers out of `f64` range, trailing garbage.
pub fn validate_payload(payload: &str) -> Result<Box<RawValue>, serde_json::Error> {
    let mut compact = Vec::with_capacity(payload.len());
    transcode_compact(payload, &mut compact)?;
    // serde_json only writes UTF-8, so this conversion cannot fail; map it anyway.
    let text =
        String::from_utf8(compact).map_err(<serde_json::Error as serde::de::Error>::custom)?;
    RawValue::from_string(text)
}

/// Seconds since the Unix epoch as the float the wire uses, from nanoseconds.
pub fn epoch_seconds_from_nanos(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// The hello a kitchen sends first. Only `kitchen_name` is required; every other key is
/// kept verbatim (the hub republishes the whole object as `info_from_kitchen`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KitchenHello {
    /// The kitchen's name.
    pub kitchen_name: String,
    /// Every other key, in order (`interface`, `filter`, `chefs`, `poke_interval`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The keys our eaters may add to their hello (the original hub ignores unknown keys). The
/// eater library writes them and the hub reads them by these names.
pub mod eater_hello_keys {
    /// Chef names the eater wants (interest pushdown); absent = every chef.
    pub const CHEFS: &str = "nd_chefs";
    /// Kitchen names the eater wants; absent = every kitchen.
    pub const KITCHENS: &str = "nd_kitchens";
    /// Start at this stream sequence (replay, or resume at last seen + 1).
    pub const SINCE_SEQ: &str = "nd_since_seq";
    /// Start at this time: a duration back from now (`"10m"`) or an RFC 3339 time.
    pub const SINCE: &str = "nd_since";
    /// Longest [`SINCE`] duration a hub takes, in seconds (about 317 years).
    pub const MAX_SINCE_SECS: f64 = 1e10;
    /// `true`: live from now, with each dumpling's stream sequence in its metadata.
    pub const SEQ: &str = "nd_seq";
    /// Which stream the sequence of [`SINCE_SEQ`] belongs to: the `nd_stream` of the hub's
    /// last start notice. When the hub's stream is another one (deleted and created again:
    /// its sequences started over) it starts at that stream's first sequence and says so.
    pub const STREAM: &str = "nd_stream";
    /// Longest [`STREAM`] value a hub reads (a longer one is ignored, with a notice).
    pub const MAX_STREAM_BYTES: usize = 512;
}

/// The hello an eater sends first. Only `eater_name` is required; other keys are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EaterHello {
    /// The eater's name.
    pub eater_name: String,
    /// Every other key, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Where the hub saw a peer connect from (`info_from_hub`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Peer IP address as text.
    pub host: String,
    /// Peer TCP port.
    pub port: u16,
}

/// The payload of a hub `SystemStatusChef` dumpling: what the hub writes and eaters read.
///
/// The keys are the original's. Lists may be capped by our hub (the counts stay exact);
/// our hub adds per-peer counters inside each `info_from_hub`. `H` is how a peer's hello is
/// held: a parsed [`Value`] for readers, borrowed raw JSON for the hub, which republishes
/// each hello verbatim without parsing it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus<H = Value> {
    /// Valid dumplings received from all kitchens since the hub started.
    pub total_dumplings_in: u64,
    /// Frames sent to eaters (each dumpling once per eater, status dumplings included).
    pub total_dumplings_out: u64,
    /// Seconds since the hub started.
    pub server_uptime: f64,
    /// Number of connected kitchens (exact, even when the list is capped).
    pub dumpling_kitchen_count: u64,
    /// Number of connected eaters (exact, even when the list is capped).
    pub dumpling_eater_count: u64,
    /// Connected kitchens, in connection order (possibly capped).
    #[serde(default = "Vec::new")]
    pub dumpling_kitchens: Vec<KitchenStatus<H>>,
    /// Connected eaters, in connection order (possibly capped).
    #[serde(default = "Vec::new")]
    pub dumpling_eaters: Vec<EaterStatus<H>>,
    /// The hubs of the fleet (hubs started with `--nats` only; absent otherwise). Kept as
    /// JSON: its strings come from other hubs, so print them escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<Value>,
}

/// One kitchen in a [`SystemStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KitchenStatus<H = Value> {
    /// The kitchen's hello, verbatim.
    pub info_from_kitchen: H,
    /// Where the hub saw it connect from, plus counters.
    pub info_from_hub: HubPeerInfo,
}

/// One eater in a [`SystemStatus`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EaterStatus<H = Value> {
    /// The eater's hello, verbatim.
    pub info_from_eater: H,
    /// Where the hub saw it connect from, plus counters.
    pub info_from_hub: HubPeerInfo,
}

/// `info_from_hub`: the peer address (as the original) plus our hub's counters; a counter
/// that does not apply to the peer's side is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HubPeerInfo {
    /// Peer IP address as text.
    pub host: String,
    /// Peer TCP port.
    pub port: u16,
    /// Kitchens: valid dumplings received from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dumplings_in: Option<u64>,
    /// Kitchens: invalid messages received from it (dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dumplings_invalid: Option<u64>,
    /// Kitchens: dumplings refused (a reserved chef or a kitchen name the kitchen's token
    /// does not allow); the hub writes it only when some were, so the original's shape is
    /// unchanged otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dumplings_refused: Option<u64>,
    /// Eaters: frames delivered to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dumplings_delivered: Option<u64>,
    /// Eaters: dumplings it missed because it fell behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dumplings_dropped: Option<u64>,
}

/// The payload of a `HubNoticeChef` dumpling: a notice from the hub to one eater.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubNotice {
    /// How many dumplings this eater missed (dropped by the hub) since the last notice.
    pub lagged: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_ignore_case_and_kitchen_status_is_kitchen_only() {
        assert!(is_reserved_name(
            HUB_RESERVED_CHEF_NAMES,
            "SystemStatusChef"
        ));
        assert!(is_reserved_name(HUB_RESERVED_CHEF_NAMES, "hubnoticechef"));
        assert!(!is_reserved_name(
            HUB_RESERVED_CHEF_NAMES,
            KITCHEN_STATUS_CHEF
        ));
        assert!(is_reserved_name(RESERVED_CHEF_NAMES, "KITCHENSTATUSCHEF"));
        assert!(!is_reserved_name(RESERVED_CHEF_NAMES, "PacketCountChef"));
        // What prints as the real name is the real name.
        for shown_alike in [
            "SystemStatusChef ",
            " SystemStatusChef",
            "System StatusChef",
            "SystemStatusChef\n",
            "System\u{200b}StatusChef",
            "\u{202e}SystemStatusChef",
            "\u{feff}HubNoticeChef\u{2060}",
            "SystemStatusChef\u{2800}",
            "HubNoticeChef\u{1d173}\u{1bca0}\u{13430}\u{110bd}\u{fffb}",
            "System_Status-Chef",
            "\u{ff33}ystemStatus\u{ff23}hef",
        ] {
            assert!(
                is_reserved_name(HUB_RESERVED_CHEF_NAMES, shown_alike),
                "{shown_alike:?}"
            );
        }
        assert!(!is_reserved_name(
            HUB_RESERVED_CHEF_NAMES,
            "SystemStatusChefs"
        ));
        assert!(!is_reserved_name(HUB_RESERVED_CHEF_NAMES, "SystemStatus"));
        assert!(!is_reserved_name(HUB_RESERVED_CHEF_NAMES, ""));
        // Another script's look-alike letter is no letter here (eaters escape it).
        assert!(!is_reserved_name(
            HUB_RESERVED_CHEF_NAMES,
            "SystemStatusCh\u{435}f"
        ));
    }

    #[test]
    fn encode_matches_original_key_order() {
        let payload = validate_payload(r#"{"packet_counts": {"IP": 1}}"#).unwrap();
        let text = encode_dumpling(
            "PacketCountChef",
            Some("k"),
            1.5,
            Driver::Interval,
            &payload,
        );
        assert_eq!(
            text,
            r#"{"metadata":{"chef":"PacketCountChef","kitchen":"k","creation_time":1.5,"driver":"interval"},"payload":{"packet_counts":{"IP":1}}}"#
        );
        let back: Dumpling = serde_json::from_str(&text).unwrap();
        assert_eq!(back.metadata.driver, Driver::Interval);
        assert_eq!(back.payload["packet_counts"]["IP"], 1);
    }

    /// What the head was before [`EnvelopeHead`]: serde_json writing the metadata struct.
    fn serde_head(chef: &str, kitchen: Option<&str>, creation_time: f64, driver: Driver) -> String {
        #[derive(Serialize)]
        struct EnvelopeMetadata<'a> {
            chef: &'a str,
            kitchen: Option<&'a str>,
            creation_time: f64,
            driver: Driver,
        }
        let metadata = EnvelopeMetadata {
            chef,
            kitchen,
            creation_time,
            driver,
        };
        format!(
            "{{\"metadata\":{},\"payload\":",
            serde_json::to_string(&metadata).unwrap()
        )
    }

    #[test]
    fn a_cached_head_writes_what_serde_writes_for_the_metadata() {
        let names: [(&str, Option<&str>); 5] = [
            ("DNSLookupChef", Some("kitchen-1")),
            ("C", None),
            (
                "quote\"back\\slash\u{1}\u{7f}",
                Some("new\nline\t\u{202e}é😀"),
            ),
            ("", Some("")),
            ("ARPChef", Some("k\"\n")),
        ];
        let mut times = vec![
            0.0,
            -0.0,
            1.5,
            1e-7,
            1e21,
            1e22,
            -1795739862.513954,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            5e-324,
        ];
        // Capture-time stamps as the kitchen makes them (nanoseconds / 1e9).
        let mut ns = 1_795_739_862_513_954_123u64;
        for _ in 0..2000 {
            times.push(epoch_seconds_from_nanos(ns));
            ns = ns
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407)
                >> 3;
        }
        for (chef, kitchen) in names {
            let head = EnvelopeHead::new(chef, kitchen);
            assert!(head.is_for(chef, kitchen));
            assert!(!head.is_for(chef, Some("other")));
            for &t in &times {
                for driver in [Driver::Packet, Driver::Interval] {
                    let want = serde_head(chef, kitchen, t, driver);
                    let got = head.bytes(t, driver, 0);
                    assert_eq!(String::from_utf8(got).unwrap(), want);
                    let uncached = head_bytes(chef, kitchen, t, driver, 0);
                    assert_eq!(String::from_utf8(uncached).unwrap(), want);
                    // And whole dumplings: with the cached head or with the names.
                    for payload in [r#"{"a":[1,"x"]}"#, "{ \"b\" : 2.50 }", "nope"] {
                        let a = wrap_checked_with(&head, t, driver, payload);
                        let b = wrap_checked(chef, kitchen, t, driver, payload);
                        match (a, b) {
                            (Ok(a), Ok(b)) => {
                                assert_eq!(a, b);
                                assert!(a.starts_with(&want));
                            }
                            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                            (a, b) => panic!("{payload}: {a:?} vs {b:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn wrapping_in_one_pass_equals_validating_then_encoding() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let payloads = [
            r#"{"packet_counts": {"IP": 1}}"#,
            "{\n  \"a\": [1, 2.50, -0, 1e3],\n  \"b\": \"x\\n\\u00e9\\ud83d\\ude00\"\n}",
            "\"ok\"",
            "null",
            "NaN",
            "{\"a\":1} trailing",
            "",
            r#""\ud800""#,
            "1e400",
            deep.as_str(),
        ];
        for payload in payloads {
            for kitchen in [Some("k\"\n"), None] {
                let two_pass = validate_payload(payload)
                    .map(|raw| encode_dumpling("C", kitchen, 1.25, Driver::Packet, &raw));
                let one_pass = wrap_payload("C", kitchen, 1.25, Driver::Packet, payload);
                match (two_pass, one_pass) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{payload:?}"),
                    (Err(_), Err(_)) => {}
                    (a, b) => panic!("{payload:?}: {a:?} vs {b:?}"),
                }
            }
        }
    }

    #[test]
    fn payload_validation_rejects_non_json() {
        assert!(validate_payload("NaN").is_err());
        assert!(validate_payload("{\"a\":1} trailing").is_err());
        assert!(validate_payload("").is_err());
        assert!(validate_payload("\"ok\"").is_ok());
        // Refused here because serde_json (hub, eaters) would refuse them later.
        assert!(validate_payload(r#""\ud800""#).is_err(), "lone surrogate");
        assert!(validate_payload("1e400").is_err(), "out of f64 range");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(validate_payload(&deep).is_err(), "nesting deeper than 128");
        // Pretty-printed input becomes one compact line, key order kept.
        let pretty = "{\n  \"b\": 1,\n  \"a\": [1, 2.50]\n}";
        assert_eq!(
            validate_payload(pretty).unwrap().get(),
            r#"{"b":1,"a":[1,2.5]}"#
        );
    }

    #[test]
    fn check_dumpling_reports_the_original_errors() {
        assert_eq!(check_dumpling(b"not json"), Err(InvalidDumpling::NotJson));
        assert_eq!(check_dumpling(b"[1]"), Err(InvalidDumpling::NotAnObject));
        assert_eq!(
            check_dumpling(br#"{"metadata": {}}"#),
            Err(InvalidDumpling::NoChef)
        );
        assert_eq!(
            check_dumpling(br#"{"metadata": {"chef": "C", "driver": "x", "creation_time": 1}}"#),
            Err(InvalidDumpling::BadDriver)
        );
        assert_eq!(
            check_dumpling(br#"{"metadata": {"chef": "C", "driver": "packet"}}"#),
            Err(InvalidDumpling::BadCreationTime)
        );
        // A kitchen cannot forge the sequence the hub gives resuming eaters, even as a
        // duplicate key behind a harmless first one.
        for forged in [
            br#"{"metadata": {"chef": "C", "driver": "packet", "creation_time": 1, "nd_seq": 9}}"#
                .as_slice(),
            br#"{"metadata": {"nd_seq": 1, "chef": "C", "driver": "packet", "creation_time": 1, "nd_seq": 9}}"#,
        ] {
            assert_eq!(
                check_dumpling(forged),
                Err(InvalidDumpling::HubOnlyKey("nd_seq"))
            );
        }
        let ok = check_dumpling(
            br#"{"metadata": {"chef": "C", "kitchen": null, "driver": "packet", "creation_time": 1.0}, "payload": 1}"#,
        )
        .unwrap();
        assert_eq!(ok.chef, "C");
        assert_eq!(ok.driver, Driver::Packet);
    }

    #[test]
    fn hello_keeps_unknown_keys_in_order() {
        let text = r#"{"kitchen_name": "k", "interface": "lo", "filter": "udp", "chefs": ["a"], "poke_interval": 2.0}"#;
        let hello: KitchenHello = serde_json::from_str(text).unwrap();
        assert_eq!(hello.kitchen_name, "k");
        assert_eq!(hello.extra["interface"], "lo");
        let eater: EaterHello =
            serde_json::from_str(r#"{"eater_name": "chatty", "extra": [1, 2]}"#).unwrap();
        assert_eq!(eater.extra["extra"], serde_json::json!([1, 2]));
    }

    #[test]
    fn a_status_written_with_raw_hellos_reads_back_as_the_same_status() {
        use std::borrow::Cow;
        let kitchen_hello = serde_json::value::RawValue::from_string(
            r#"{"kitchen_name":"k","zeta":[1,2],"alpha":"\n"}"#.to_owned(),
        )
        .unwrap();
        let eater_hello =
            serde_json::value::RawValue::from_string(r#"{"eater_name":"e"}"#.to_owned()).unwrap();
        let written: SystemStatus<Cow<serde_json::value::RawValue>> = SystemStatus {
            total_dumplings_in: 3,
            total_dumplings_out: 9,
            server_uptime: 1.5,
            dumpling_kitchen_count: 1,
            dumpling_eater_count: 1,
            dumpling_kitchens: vec![KitchenStatus {
                info_from_kitchen: Cow::Borrowed(&*kitchen_hello),
                info_from_hub: HubPeerInfo {
                    host: "127.0.0.1".into(),
                    port: 7,
                    dumplings_in: Some(3),
                    ..HubPeerInfo::default()
                },
            }],
            dumpling_eaters: vec![EaterStatus {
                info_from_eater: Cow::Borrowed(&*eater_hello),
                info_from_hub: HubPeerInfo {
                    host: "::1".into(),
                    port: 8,
                    dumplings_delivered: Some(9),
                    ..HubPeerInfo::default()
                },
            }],
            fleet: None,
        };
        let text = serde_json::to_string(&written).unwrap();
        // The hello is republished verbatim; counters that do not apply are absent.
        assert!(
            text.contains(r#""info_from_kitchen":{"kitchen_name":"k","zeta":[1,2],"alpha":"\n"}"#),
            "{text}"
        );
        assert!(
            !text.contains("dumplings_refused") && !text.contains("fleet"),
            "{text}"
        );
        let read: SystemStatus = serde_json::from_str(&text).unwrap();
        assert_eq!(
            read.dumpling_kitchens[0].info_from_kitchen["zeta"],
            serde_json::json!([1, 2])
        );
        assert_eq!(
            read.dumpling_eaters[0].info_from_hub.dumplings_delivered,
            Some(9)
        );
        assert_eq!(
            read.dumpling_kitchens[0].info_from_hub.dumplings_in,
            Some(3)
        );
        assert_eq!(serde_json::to_string(&read).unwrap().len(), text.len());
    }
}
