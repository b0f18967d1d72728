//! Crash capsules (`--chef-crash-dir DIR`): when a chef call traps, times out or runs out of
//! memory, the input of that call is saved as a small capture file plus a JSON note, so the
//! chef's author can reproduce the failure with `nd-sniff -r CAPSULE.pcap -d DIR -c CHEF`.
//!
//! * **What is saved.** For `on-packets`: the frames of the batch the chef was handed (the
//!   whole batch for a chef interested in everything, its own packets for a selective
//!   one: queued, or picked from a batch it mostly matches), with their capture times
//!   (ns), lengths and link types: a nanosecond pcap (`.pcap`) when they share one link
//!   type, a pcapng (`.pcapng`, one interface per link type) otherwise. For
//!   `on-interval`: a pcap without packets, and the poke's time and interval in the note
//!   (`--capsule-poke-ns` replays that poke). For `on-stream` and
//!   `on-flow-events` (chef API 0.2), whose input is not packets the kitchen keeps: packets
//!   synthesized to give the same input when replayed ([`synth`]: a TCP conversation
//!   carrying the chunks at their stream offsets; packets with the flows' keys, times,
//!   counts and endings).
//! * **The note** (`.json`, same stem): chef name, version, source, component SHA-256, call
//!   kind, error kind and text, the limits the call ran under, kitchen version and mode,
//!   wall time, kitchen clock, a summary of the input, and the `replay` command line with
//!   the same limits.
//! * **Off the hot path.** The dispatcher only copies the failing call's frames (at most
//!   one batch, [`crate::parse::batch::MAX_BATCH_BYTES`]) and hands them to a writer thread over a
//!   bounded channel with `try_send`: when the writer is behind, the capsule is refused and
//!   counted (`refused_busy`), never waited for. Failures are rare by construction (a
//!   failing chef is backed off and quarantined, see `chef_host::failure_policy`).
//! * **Bounded.** At most `--chef-crash-max-files` capsules and `--chef-crash-max-mib` bytes
//!   in DIR (capsules already there from earlier runs count): the **oldest are evicted**
//!   (by name, which starts with the UTC time) to make room, and counted (`evicted`); a
//!   single capsule larger than the byte cap is refused (`refused_too_big`).
//! * **Atomic and safe names.** Each file is written as `.capsule-*.tmp` in DIR and renamed;
//!   the pcap first, the note last (a note means a complete capsule). Names are
//!   `capsule-<UTC time>-<pid>-<seq>-<chef>-<call>` with the chef name escaped (only
//!   `A-Za-z0-9_-` kept, others as `~HH`, cut to 64 bytes).
//!
//! What a capsule cannot hold: the chef's state built from earlier calls. A chef that fails
//! only after some history may not fail on its capsule alone; the note says so.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use flowtrack::table::{FlowConfig, FlowEvent};

use crate::chef_host::bindings::StreamChunk;
use crate::chef_host::{CallError, ChefSource, LoadedChef, WirePacket};
use crate::dispatch::chef_queue::packet_bytes;

pub mod synth;

/// Default `--chef-crash-max-files`.
pub const DEFAULT_MAX_FILES: usize = 32;
/// Default `--chef-crash-max-mib`.
pub const DEFAULT_MAX_MIB: u64 = 64;
/// Capsules waiting for the writer; a full queue refuses new ones (never blocks dispatch).
/// Each holds at most one batch (1 MiB of frames), so this bounds the memory too (16 MiB);
/// a replay can fail several chefs 5 times each within milliseconds, so it is not tiny.
pub const QUEUE: usize = 16;
/// Most `--capsule-evict-ns` times (a capsule's call holds at most one batch of events).
pub const MAX_EVICTIONS: usize = 65_536;
/// Format version of the note (`"capsule"` key).
pub const NOTE_VERSION: u32 = 1;

/// Command-line flags of crash capsules (flattened into `nd-sniff`'s arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct CapsuleArgs {
    /// Save the input of every chef call that traps, times out or runs out of memory in
    /// DIR (created if missing), as a pcap of the frames the chef was handed plus a JSON
    /// note (chef, component SHA-256, call, error, limits, and the `nd-sniff` command that
    /// replays it). Written by a background thread, never slowing the chefs down.
    #[arg(long, value_name = "DIR")]
    pub chef_crash_dir: Option<PathBuf>,

    /// With --chef-crash-dir: keep at most this many capsules in DIR (the oldest are
    /// deleted to make room for a new one).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_FILES)]
    pub chef_crash_max_files: usize,

    /// With --chef-crash-dir: keep at most this many MiB of capsules in DIR (the oldest are
    /// deleted to make room; a single capsule larger than this is not saved).
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_MAX_MIB)]
    pub chef_crash_max_mib: u64,

    /// Replay only: after the file, poke the interval chefs once at this capture time (ns
    /// since the Unix epoch), even when the file holds no packet. The `replay` line of an
    /// `on-interval` crash capsule's note uses it to repeat the failing poke.
    #[arg(long, value_name = "NS", requires = "read")]
    pub capsule_poke_ns: Option<u64>,

    /// Replay only: at each of these capture times (ns since the Unix epoch,
    /// comma-separated), the flow table evicts its least recently used flow, as a full table
    /// does for a new flow. The `replay` line of an `on-flow-events` crash capsule whose call
    /// saw flows end by eviction uses it.
    #[arg(long, value_name = "NS,...", value_delimiter = ',', requires = "read")]
    pub capsule_evict_ns: Vec<u64>,
}

impl CapsuleArgs {
    /// Check the bounds (clear errors naming the flag).
    pub fn validate(&self) -> Result<(), String> {
        if self.chef_crash_max_files == 0 || self.chef_crash_max_files > 100_000 {
            return Err("--chef-crash-max-files must be between 1 and 100000".into());
        }
        if self.chef_crash_max_mib == 0 || self.chef_crash_max_mib > 1 << 20 {
            return Err("--chef-crash-max-mib must be between 1 and 1048576".into());
        }
        if self.capsule_evict_ns.len() > MAX_EVICTIONS {
            return Err(format!(
                "--capsule-evict-ns takes at most {MAX_EVICTIONS} times"
            ));
        }
        Ok(())
    }
}

/// Where and how many capsules are kept, plus what the replay line needs.
#[derive(Debug, Clone)]
pub struct CapsuleSettings {
    /// The directory.
    pub dir: PathBuf,
    /// Most capsules kept.
    pub max_files: usize,
    /// Most bytes kept (pcaps and notes together).
    pub max_bytes: u64,
    /// The kitchen's poke interval (for `-p` in the replay line).
    pub poke_interval: Duration,
    /// Replaying a file (else live capture), for the note.
    pub replay: bool,
    /// The kitchen's flow table settings: flow-event capsules replay idle timeouts with
    /// them, and the replay line of 0.2 calls carries them ([`CapsuleSettings::with_flows`]).
    pub flows: Option<FlowConfig>,
}

impl CapsuleSettings {
    /// Settings from the flags, `None` without `--chef-crash-dir`.
    pub fn from_args(args: &CapsuleArgs, poke_interval: Duration, replay: bool) -> Option<Self> {
        args.chef_crash_dir.as_ref().map(|dir| CapsuleSettings {
            dir: dir.clone(),
            max_files: args.chef_crash_max_files,
            max_bytes: args.chef_crash_max_mib << 20,
            poke_interval,
            replay,
            flows: None,
        })
    }

    /// The same settings, knowing the kitchen's flow table settings.
    pub fn with_flows(self, flows: FlowConfig) -> Self {
        CapsuleSettings {
            flows: Some(flows),
            ..self
        }
    }
}

/// Why crash capsules could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CapsuleError {
    /// The directory could not be created, listed or written.
    #[error("--chef-crash-dir {dir} is not a writable directory")]
    Dir {
        /// The directory (escaped).
        dir: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the crash capsule writer: {0}")]
    Thread(#[source] std::io::Error),
}

/// What happened to capsules so far (for the exit summary and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapsuleCounts {
    /// Capsules written.
    pub written: u64,
    /// Capsules deleted (oldest first) to stay within the count and byte caps.
    pub evicted: u64,
    /// Capsules not saved because the writer was still busy with earlier ones.
    pub refused_busy: u64,
    /// Capsules not saved because one alone is over `--chef-crash-max-mib`.
    pub refused_too_big: u64,
    /// Capsules that could not be written (I/O errors, logged).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    evicted: AtomicU64,
    refused_busy: AtomicU64,
    refused_too_big: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> CapsuleCounts {
        CapsuleCounts {
            written: self.written.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            refused_busy: self.refused_busy.load(Ordering::Relaxed),
            refused_too_big: self.refused_too_big.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// One captured frame of a capsule (its bytes are in [`Job::data`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapsuleFrame {
    /// Capture time, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// pcap link type.
    pub link_type: u32,
    /// Bytes on the wire.
    pub original_len: u32,
    /// Where its bytes start in the data.
    pub offset: usize,
    /// How many bytes were captured.
    pub len: usize,
}

/// One capsule for the writer.
struct Job {
    stem: String,
    note: Value,
    frames: Vec<CapsuleFrame>,
    data: Vec<u8>,
}

/// The kitchen's crash capsule recorder: cheap calls from the dispatcher, files written by
/// a background thread.
pub struct CrashCapsules {
    settings: CapsuleSettings,
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    seq: u64,
}

impl CrashCapsules {
    /// Create DIR if needed, take stock of the capsules already there (they count against
    /// the caps), remove stale temporary files and start the writer thread.
    pub fn start(settings: CapsuleSettings) -> Result<Self, CapsuleError> {
        let dir_err = |source| CapsuleError::Dir {
            dir: dumpling::text::escape_path(&settings.dir),
            source,
        };
        std::fs::create_dir_all(&settings.dir).map_err(dir_err)?;
        // Writable now, not at the first crash (a read-only folder was accepted, and the
        // first capsule failed with the run long under way).
        let probe = settings
            .dir
            .join(format!(".nd-write-check-{}", std::process::id()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .map_err(dir_err)?;
        let _ = std::fs::remove_file(&probe);
        let store = Store::open(&settings).map_err(dir_err)?;
        let counters = Arc::new(Counters::default());
        let (tx, rx) = sync_channel(QUEUE);
        let thread = {
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("crash-capsules".into())
                .spawn(move || writer(store, rx, &counters))
                .map_err(CapsuleError::Thread)?
        };
        tracing::info!(
            dir = %dumpling::text::escape_path(&settings.dir),
            max_files = settings.max_files,
            max_bytes = settings.max_bytes,
            "crash capsules on"
        );
        Ok(CrashCapsules {
            settings,
            tx: Some(tx),
            thread: Some(thread),
            counters,
            seq: 0,
        })
    }

    /// What happened so far (capsules still queued are not counted yet).
    pub fn counts(&self) -> CapsuleCounts {
        self.counters.snapshot()
    }

    /// Stop: the writer finishes the queued capsules, then the counts are final.
    pub fn finish(mut self) -> CapsuleCounts {
        self.stop();
        self.counters.snapshot()
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the crash capsule writer panicked");
            }
        }
    }

    /// An `on-packets` call of `chef` failed with `err` on `packets` (spans into `arena`);
    /// `kitchen_ns` is the kitchen clock of the call. Saves a capsule if `err` is a crash
    /// (trap, timeout, memory); other failures (backing off, quarantined) are ignored.
    pub fn packets_failed(
        &mut self,
        chef: &LoadedChef,
        err: &CallError,
        packets: &[WirePacket],
        arena: &[u8],
        kitchen_ns: u64,
    ) {
        if !is_crash(err) {
            return;
        }
        let (frames, data, synthesized) = copy_frames(packets, arena);
        let mut input = packets_summary(&frames, data.len());
        if synthesized > 0 {
            input["synthesized_fragments"] = json!(synthesized);
        }
        self.submit(
            chef,
            err,
            "on-packets",
            input,
            kitchen_ns,
            ReplayFlags::default(),
            frames,
            data,
        );
    }

    /// An `on-interval` call at `now_ns` (interval `interval_ns`) failed with `err`.
    pub fn interval_failed(
        &mut self,
        chef: &LoadedChef,
        err: &CallError,
        now_ns: u64,
        interval_ns: u64,
    ) {
        if !is_crash(err) {
            return;
        }
        let input = json!({
            "poke_ns": now_ns,
            "interval_ns": interval_ns,
            "packets": 0,
        });
        self.submit(
            chef,
            err,
            "on-interval",
            input,
            now_ns,
            ReplayFlags {
                poke_ns: Some(now_ns),
                ..ReplayFlags::default()
            },
            Vec::new(),
            Vec::new(),
        );
    }

    /// An `on-stream` call failed on `chunks` (spans into `arena`): the capsule holds a
    /// synthesized TCP conversation whose reassembly gives the chef the same chunks
    /// ([`synth::stream_packets`]).
    pub fn stream_failed(
        &mut self,
        chef: &LoadedChef,
        err: &CallError,
        chunks: &[StreamChunk],
        arena: &[u8],
        kitchen_ns: u64,
    ) {
        if !is_crash(err) {
            return;
        }
        let interval_ns = u64::try_from(self.settings.poke_interval.as_nanos()).unwrap_or(u64::MAX);
        let (made, input) = synth::stream_packets(chunks, arena, interval_ns);
        self.submit(
            chef,
            err,
            "on-stream",
            input,
            kitchen_ns,
            ReplayFlags::default(),
            made.frames,
            made.data,
        );
    }

    /// An `on-flow-events` call failed on `events`: the capsule holds synthesized packets
    /// that make the flow table produce the same events ([`synth::flow_packets`]).
    pub fn flow_events_failed(
        &mut self,
        chef: &LoadedChef,
        err: &CallError,
        events: &[FlowEvent],
        kitchen_ns: u64,
    ) {
        if !is_crash(err) {
            return;
        }
        let (made, input, evict_ns) = synth::flow_packets(events, self.settings.flows.as_ref());
        let replay = ReplayFlags {
            evict_ns,
            ..ReplayFlags::default()
        };
        self.submit(
            chef,
            err,
            "on-flow-events",
            input,
            kitchen_ns,
            replay,
            made.frames,
            made.data,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn submit(
        &mut self,
        chef: &LoadedChef,
        err: &CallError,
        call: &'static str,
        input: Value,
        kitchen_ns: u64,
        replay: ReplayFlags,
        frames: Vec<CapsuleFrame>,
        data: Vec<u8>,
    ) {
        let Some(tx) = &self.tx else { return };
        self.seq += 1;
        let wall = crate::dispatch::wall_ns();
        let stem = format!(
            "capsule-{}-{}-{:06}-{}-{call}",
            chrono::DateTime::from_timestamp_nanos(wall as i64).format("%Y%m%dT%H%M%S%.3fZ"),
            std::process::id(),
            self.seq,
            escape_name(chef.name())
        );
        let ext = capture_extension(&frames);
        let note = note(
            &self.settings,
            chef,
            err,
            call,
            input,
            NoteTimes {
                wall_ns: wall,
                kitchen_ns,
                replay,
            },
            &format!("{stem}.{ext}"),
        );
        let job = Job {
            stem,
            note,
            frames,
            data,
        };
        match tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                self.counters.refused_busy.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(chef = %chef.name(), capsule = %job.stem,
                    "crash capsule not saved: the writer is still busy with earlier ones");
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for CrashCapsules {
    fn drop(&mut self) {
        if self.tx.is_some() {
            self.stop();
            let c = self.counters.snapshot();
            tracing::info!(
                written = c.written,
                evicted = c.evicted,
                refused_busy = c.refused_busy,
                refused_too_big = c.refused_too_big,
                failed = c.failed,
                "crash capsules"
            );
        }
    }
}

/// Trap, timeout, memory: the failures a capsule is for (not skipped calls).
fn is_crash(err: &CallError) -> bool {
    matches!(
        err,
        CallError::Trap(_)
            | CallError::Timeout { .. }
            | CallError::MemoryLimit { .. }
            | CallError::KitchenMemory { .. }
    )
}

/// Copy each packet's frame out of the arena (spans are checked: a bad one is skipped).
/// The frames of `packets` (spans into `arena`), for an `on-packets` capsule. A packet that
/// completed a reassembled IP datagram is preceded by the datagram's other fragments,
/// synthesized from the reassembled bytes ([`synth::other_fragments`]), so that replaying
/// the capsule hands the chef the same datagram; returns how many were synthesized too.
fn copy_frames(packets: &[WirePacket], arena: &[u8]) -> (Vec<CapsuleFrame>, Vec<u8>, u64) {
    let total: usize = packets.iter().map(|p| packet_bytes(&p.0)).sum();
    let mut data = Vec::with_capacity(total.min(arena.len()));
    let mut frames = Vec::with_capacity(packets.len());
    let mut synthesized = 0u64;
    let mut push =
        |frames: &mut Vec<CapsuleFrame>, timestamp_ns, link_type, original_len, bytes: &[u8]| {
            frames.push(CapsuleFrame {
                timestamp_ns,
                link_type,
                original_len: u32::max(original_len, bytes.len() as u32),
                offset: data.len(),
                len: bytes.len(),
            });
            data.extend_from_slice(bytes);
        };
    for WirePacket(p) in packets {
        let start = p.frame.offset as usize;
        let Some(bytes) = arena.get(start..start.saturating_add(p.frame.len as usize)) else {
            continue;
        };
        let whole = arena.get(start + bytes.len()..start.saturating_add(packet_bytes(p)));
        if let (Some(whole), Some(last)) = (
            whole.filter(|w| !w.is_empty()),
            crate::parse::packet::fragment_of(p.link_type, bytes),
        ) {
            for f in synth::other_fragments(&last, whole) {
                push(&mut frames, p.timestamp_ns, synth::LINK_TYPE, 0, &f);
                synthesized += 1;
            }
        }
        push(
            &mut frames,
            p.timestamp_ns,
            p.link_type,
            p.original_len,
            bytes,
        );
    }
    (frames, data, synthesized)
}

fn packets_summary(frames: &[CapsuleFrame], bytes: usize) -> Value {
    let mut link_types: Vec<u32> = frames.iter().map(|f| f.link_type).collect();
    link_types.sort_unstable();
    link_types.dedup();
    json!({
        "packets": frames.len(),
        "bytes": bytes,
        "first_ns": frames.first().map(|f| f.timestamp_ns),
        "last_ns": frames.last().map(|f| f.timestamp_ns),
        "link_types": link_types,
    })
}

/// The times a note records.
struct NoteTimes {
    wall_ns: u64,
    kitchen_ns: u64,
    replay: ReplayFlags,
}

/// What a note's `replay` line repeats beyond the capture: the poke of an `on-interval`
/// call (`--capsule-poke-ns`), the evictions of an `on-flow-events` call
/// (`--capsule-evict-ns`).
#[derive(Debug, Default)]
struct ReplayFlags {
    poke_ns: Option<u64>,
    evict_ns: Vec<u64>,
}

fn note(
    settings: &CapsuleSettings,
    chef: &LoadedChef,
    err: &CallError,
    call: &str,
    input: Value,
    times: NoteTimes,
    capture_file: &str,
) -> Value {
    let limits = chef.limits();
    let chefs_memory_mib = limits.kitchen_memory.total() >> 20;
    let dir = match chef.source() {
        ChefSource::File(path) => path.parent().map(Path::to_path_buf),
        ChefSource::Builtin(_) => None,
    };
    let mut replay = vec![
        "nd-sniff".to_owned(),
        "-r".into(),
        shell_quote(&settings.dir.join(capture_file).to_string_lossy()),
        "--no-hub".into(),
        "--stdout".into(),
    ];
    if let Some(dir) = &dir {
        replay.push("-d".into());
        replay.push(shell_quote(&dir.to_string_lossy()));
    }
    replay.extend([
        "-c".into(),
        chef.name().to_owned(),
        "-p".into(),
        format!("{}", settings.poke_interval.as_secs_f64()),
        "--chef-deadline-ms".into(),
        limits.deadline.as_millis().to_string(),
        "--chef-memory-mib".into(),
        limits.memory_mib().to_string(),
        "--chefs-memory-mib".into(),
        chefs_memory_mib.to_string(),
        "--chef-output-bytes-per-call".into(),
        limits.max_output_bytes_per_call.to_string(),
        "--chef-output-bytes-per-sec".into(),
        limits.max_output_bytes_per_sec.to_string(),
    ]);
    if let Some(t) = times.replay.poke_ns {
        replay.push("--capsule-poke-ns".into());
        replay.push(t.to_string());
    }
    if !times.replay.evict_ns.is_empty() {
        let times: Vec<String> = times.replay.evict_ns.iter().map(u64::to_string).collect();
        replay.push("--capsule-evict-ns".into());
        replay.push(times.join(","));
    }
    if let (Some(f), "on-flow-events" | "on-stream") = (&settings.flows, call) {
        // The flow table as it was, so idle timeouts (and the table size) replay alike.
        replay.extend([
            "--flow-table-size".into(),
            f.max_flows.to_string(),
            "--flow-idle-tcp-secs".into(),
            f.idle_tcp.as_secs().to_string(),
            "--flow-idle-udp-secs".into(),
            f.idle_udp.as_secs().to_string(),
            "--flow-idle-icmp-secs".into(),
            f.idle_icmp.as_secs().to_string(),
        ]);
    }
    json!({
        "capsule": NOTE_VERSION,
        "chef": chef.name(),
        "chef_version": chef.description().version,
        "source": chef.source().to_string(),
        "component_sha256": chef.provenance().sha256,
        "call": call,
        "error": { "kind": err.kind(), "message": err.to_string() },
        "limits": {
            "deadline_ms": limits.deadline.as_millis() as u64,
            "first_call_grace": limits.first_call_grace,
            "init_deadline_ms": limits.init_deadline.as_millis() as u64,
            "memory_mib": limits.memory_mib(),
            "chefs_memory_mib": chefs_memory_mib,
            "max_dumplings_per_call": limits.max_dumplings_per_call,
            "max_dumpling_bytes": limits.max_dumpling_bytes,
            "output_bytes_per_call": limits.max_output_bytes_per_call,
            "output_bytes_per_sec": limits.max_output_bytes_per_sec,
        },
        "kitchen": {
            "version": env!("CARGO_PKG_VERSION"),
            "mode": if settings.replay { "replay" } else { "live" },
            "poke_interval_ns": settings.poke_interval.as_nanos() as u64,
        },
        "time": chrono::DateTime::from_timestamp_nanos(times.wall_ns as i64)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "time_ns": times.wall_ns,
        "kitchen_clock_ns": times.kitchen_ns,
        "capture": capture_file,
        "input": input,
        "state": "only this call's input is saved: state the chef built in earlier calls is \
                  not, so a failure that depends on it may not repeat on the capsule alone",
        "replay": replay.join(" "),
    })
}

/// `name` for a file name: `A-Za-z0-9_-` kept, every other byte as `~HH`, cut to 64 bytes.
pub fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if out.len() >= 64 {
            break;
        }
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('~');
    }
    out
}

/// `s` as one shell word (single-quoted unless it is plainly safe).
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `pcap` for one link type (or none), `pcapng` for several.
fn capture_extension(frames: &[CapsuleFrame]) -> &'static str {
    match frames.split_first() {
        Some((first, rest)) if rest.iter().any(|f| f.link_type != first.link_type) => "pcapng",
        _ => "pcap",
    }
}

/// Link type of a capsule without packets (Ethernet; any would do).
const EMPTY_LINK_TYPE: u32 = 1;

/// The capture file of `frames`: nanosecond pcap for one link type, pcapng otherwise.
pub fn capture_bytes(frames: &[CapsuleFrame], data: &[u8]) -> Vec<u8> {
    if capture_extension(frames) == "pcap" {
        pcap_ns(frames, data)
    } else {
        pcapng(frames, data)
    }
}

/// snaplen of the file: at least 262144 (tcpdump's default), more for jumbo frames.
fn snaplen(frames: &[CapsuleFrame]) -> u32 {
    frames
        .iter()
        .map(|f| f.len as u32)
        .max()
        .unwrap_or(0)
        .max(262_144)
}

fn pcap_ns(frames: &[CapsuleFrame], data: &[u8]) -> Vec<u8> {
    let link = frames.first().map_or(EMPTY_LINK_TYPE, |f| f.link_type);
    let mut out = Vec::with_capacity(24 + frames.len() * 16 + data.len());
    out.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&snaplen(frames).to_le_bytes());
    out.extend_from_slice(&link.to_le_bytes());
    for f in frames {
        let secs = (f.timestamp_ns / 1_000_000_000) as u32;
        let nanos = (f.timestamp_ns % 1_000_000_000) as u32;
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&nanos.to_le_bytes());
        out.extend_from_slice(&(f.len as u32).to_le_bytes());
        out.extend_from_slice(&f.original_len.to_le_bytes());
        out.extend_from_slice(&data[f.offset..f.offset + f.len]);
    }
    out
}

/// One pcapng block: type, total length, body (padded to 4), total length.
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let pad = (4 - body.len() % 4) % 4;
    let total = (12 + body.len() + pad) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend(std::iter::repeat_n(0u8, pad));
    out.extend_from_slice(&total.to_le_bytes());
}

fn pcapng(frames: &[CapsuleFrame], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + frames.len() * 32 + data.len());
    // Section header: byte-order magic, version 1.0, section length unknown.
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    // One interface per link type, in order of first use, with nanosecond timestamps.
    let mut links: Vec<u32> = Vec::new();
    for f in frames {
        if !links.contains(&f.link_type) {
            links.push(f.link_type);
        }
    }
    let snap = snaplen(frames);
    for &link in &links {
        let mut idb = Vec::new();
        idb.extend_from_slice(&(link as u16).to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&snap.to_le_bytes());
        // if_tsresol = 9 (10^-9 s), then opt_endofopt.
        idb.extend_from_slice(&9u16.to_le_bytes());
        idb.extend_from_slice(&1u16.to_le_bytes());
        idb.extend_from_slice(&[9, 0, 0, 0]);
        idb.extend_from_slice(&[0, 0, 0, 0]);
        block(&mut out, 1, &idb);
    }
    for f in frames {
        let iface = links.iter().position(|&l| l == f.link_type).unwrap_or(0) as u32;
        let mut epb = Vec::with_capacity(20 + f.len);
        epb.extend_from_slice(&iface.to_le_bytes());
        epb.extend_from_slice(&((f.timestamp_ns >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(f.timestamp_ns as u32).to_le_bytes());
        epb.extend_from_slice(&(f.len as u32).to_le_bytes());
        epb.extend_from_slice(&f.original_len.to_le_bytes());
        epb.extend_from_slice(&data[f.offset..f.offset + f.len]);
        block(&mut out, 6, &epb);
    }
    out
}

/// The capsules in DIR, oldest first, and what they weigh.
struct Store {
    dir: PathBuf,
    max_files: usize,
    max_bytes: u64,
    /// (stem, bytes of its files), oldest first.
    kept: VecDeque<(String, u64)>,
    bytes: u64,
}

/// The extensions of a capsule's files.
const EXTENSIONS: [&str; 3] = ["pcap", "pcapng", "json"];

impl Store {
    /// List DIR's capsules (and delete temporary files a crashed kitchen left).
    fn open(settings: &CapsuleSettings) -> std::io::Result<Store> {
        let mut stems: std::collections::BTreeMap<String, u64> = Default::default();
        for entry in std::fs::read_dir(&settings.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".capsule-") && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if !name.starts_with("capsule-") {
                continue;
            }
            let Some((stem, ext)) = name.rsplit_once('.') else {
                continue;
            };
            if !EXTENSIONS.contains(&ext) {
                continue;
            }
            let len = entry.metadata().map_or(0, |m| m.len());
            *stems.entry(stem.to_owned()).or_default() += len;
        }
        let bytes = stems.values().sum();
        Ok(Store {
            dir: settings.dir.clone(),
            max_files: settings.max_files,
            max_bytes: settings.max_bytes,
            kept: stems.into_iter().collect(),
            bytes,
        })
    }

    /// Delete the oldest capsule; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some((stem, bytes)) = self.kept.pop_front() else {
            return false;
        };
        // The note first: a pcap without its note is an incomplete capsule, never the
        // other way round.
        for ext in ["json", "pcap", "pcapng"] {
            let _ = std::fs::remove_file(self.dir.join(format!("{stem}.{ext}")));
        }
        self.bytes = self.bytes.saturating_sub(bytes);
        true
    }

    /// Write one file atomically (temporary name in DIR, then rename).
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let result = (|| {
            // No fsync: the rename keeps readers from seeing half a file; surviving a power
            // cut is not worth stalling the writer (and the queue behind it) on the disk.
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            std::fs::rename(&tmp, self.dir.join(name))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// The writer thread: make room, write, count.
fn writer(mut store: Store, rx: Receiver<Job>, counters: &Counters) {
    while let Ok(job) = rx.recv() {
        let ext = capture_extension(&job.frames);
        let capture = capture_bytes(&job.frames, &job.data);
        let mut note = serde_json::to_vec_pretty(&job.note).unwrap_or_default();
        note.push(b'\n');
        let size = (capture.len() + note.len()) as u64;
        if size > store.max_bytes {
            counters.refused_too_big.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(capsule = %job.stem, bytes = size, max_bytes = store.max_bytes,
                "crash capsule not saved: larger than --chef-crash-max-mib alone");
            continue;
        }
        while store.kept.len() >= store.max_files || store.bytes + size > store.max_bytes {
            if !store.evict_oldest() {
                break;
            }
            counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let capture_name = format!("{}.{ext}", job.stem);
        let written = store
            .write_atomic(&capture_name, &capture)
            .and_then(|()| store.write_atomic(&format!("{}.json", job.stem), &note));
        match written {
            Ok(()) => {
                store.kept.push_back((job.stem.clone(), size));
                store.bytes += size;
                counters.written.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    capsule = %store.dir.join(&capture_name).display(),
                    packets = job.frames.len(),
                    "crash capsule saved (replay command in its .json note)"
                );
            }
            Err(e) => {
                let _ = std::fs::remove_file(store.dir.join(&capture_name));
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(capsule = %job.stem, error = %e, "cannot write a crash capsule");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ts: u64, link: u32, offset: usize, len: usize) -> CapsuleFrame {
        CapsuleFrame {
            timestamp_ns: ts,
            link_type: link,
            original_len: len as u32 + 10,
            offset,
            len,
        }
    }

    /// (time, link type, original length, bytes) of each packet read back.
    type ReadBack = Vec<(u64, u32, u32, Vec<u8>)>;

    /// Read a capture file back with the kitchen's own reader.
    fn read_back(bytes: &[u8], name: &str) -> ReadBack {
        let path = std::env::temp_dir().join(format!("nd-capsule-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let mut r = capture::FileReader::open(&path).unwrap();
        let mut out = Vec::new();
        while let Some(p) = r.next_packet().unwrap() {
            out.push((p.timestamp_ns, p.link_type, p.original_len, p.data.to_vec()));
        }
        let _ = std::fs::remove_file(&path);
        out
    }

    /// Two frames of `link_types` written and read back: (extension, what was read).
    fn two_frames(link_types: [u32; 2]) -> (&'static str, ReadBack) {
        let data = b"abcdefghij".to_vec();
        let frames = [
            frame(1_700_000_000_123_456_789, link_types[0], 0, 4),
            frame(1_700_000_001_000_000_001, link_types[1], 4, 6),
        ];
        let ext = capture_extension(&frames);
        let bytes = capture_bytes(&frames, &data);
        (ext, read_back(&bytes, &format!("two.{ext}")))
    }

    #[test]
    fn one_link_type_is_a_nanosecond_pcap_and_several_a_pcapng_both_read_back() {
        for links in [[1, 1], [1, 113]] {
            let (ext, back) = two_frames(links);
            assert_eq!(
                ext,
                if links[0] == links[1] {
                    "pcap"
                } else {
                    "pcapng"
                }
            );
            assert_eq!(
                back,
                vec![
                    (1_700_000_000_123_456_789, links[0], 14, b"abcd".to_vec()),
                    (1_700_000_001_000_000_001, links[1], 16, b"efghij".to_vec()),
                ]
            );
        }
        assert_eq!(
            &capture_bytes(&[frame(1, 1, 0, 0)], &[])[..4],
            &0xa1b2_3c4du32.to_le_bytes()
        );
    }

    #[test]
    fn an_empty_capsule_is_a_valid_empty_pcap() {
        assert!(read_back(&capture_bytes(&[], &[]), "empty.pcap").is_empty());
    }

    #[test]
    fn names_are_escaped_and_cut() {
        assert_eq!(escape_name("DNSLookupChef"), "DNSLookupChef");
        assert_eq!(escape_name("../x y"), "~2E~2E~2Fx~20y");
        assert_eq!(escape_name(""), "~");
        assert!(escape_name(&"é".repeat(100)).len() <= 66);
        assert_eq!(shell_quote("/a/b.pcap"), "/a/b.pcap");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
    }

    /// Replay settings for `dir` with these caps.
    fn test_settings(dir: &Path, max_files: usize, max_bytes: u64) -> CapsuleSettings {
        CapsuleSettings {
            dir: dir.to_path_buf(),
            max_files,
            max_bytes,
            poke_interval: Duration::from_secs(1),
            replay: true,
            flows: None,
        }
    }

    #[test]
    fn a_folder_that_cannot_take_capsules_is_refused_at_start_naming_the_cause_once() {
        // A file where the folder should be, and (read-only without root) /proc.
        let file = std::env::temp_dir().join(format!("nd-capsule-file-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        for dir in [file.clone(), PathBuf::from("/proc/self")] {
            let settings = test_settings(&dir, 2, 1000);
            let Err(e) = CrashCapsules::start(settings) else {
                panic!("{} accepted", dir.display());
            };
            let shown = e.to_string();
            let cause = std::error::Error::source(&e).map(|s| s.to_string());
            assert!(shown.contains("not a writable directory"), "{shown}");
            assert!(cause.is_some(), "the OS error is the source");
            // `{:#}` (anyhow) prints the display and then the cause: not twice.
            assert!(!shown.contains("os error"), "{shown}");
        }
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn the_store_evicts_the_oldest_and_counts_existing_capsules() {
        let dir = std::env::temp_dir().join(format!("nd-capsule-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for stem in ["capsule-1", "capsule-2"] {
            std::fs::write(dir.join(format!("{stem}.pcap")), [0u8; 100]).unwrap();
            std::fs::write(dir.join(format!("{stem}.json")), [0u8; 10]).unwrap();
        }
        std::fs::write(dir.join(".capsule-3.pcap.tmp"), b"x").unwrap();
        std::fs::write(dir.join("unrelated.pcap"), b"x").unwrap();
        let settings = test_settings(&dir, 2, 1000);
        let mut store = Store::open(&settings).unwrap();
        assert_eq!(store.kept.len(), 2);
        assert_eq!(store.bytes, 220);
        assert!(!dir.join(".capsule-3.pcap.tmp").exists());
        assert!(store.evict_oldest());
        assert!(!dir.join("capsule-1.pcap").exists());
        assert!(!dir.join("capsule-1.json").exists());
        assert!(dir.join("capsule-2.pcap").exists());
        assert!(dir.join("unrelated.pcap").exists());
        assert_eq!(store.bytes, 110);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_writer_refuses_a_capsule_over_the_byte_cap_and_writes_the_rest() {
        let dir = std::env::temp_dir().join(format!("nd-capsule-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let settings = test_settings(&dir, 10, 4096);
        let store = Store::open(&settings).unwrap();
        let (tx, rx) = sync_channel(4);
        let job = |stem: &str, len: usize| Job {
            stem: stem.to_owned(),
            note: json!({"n": stem}),
            frames: vec![frame(1, 1, 0, len)],
            data: vec![7u8; len],
        };
        tx.send(job("capsule-a", 8000)).unwrap();
        tx.send(job("capsule-b", 100)).unwrap();
        drop(tx);
        let counters = Counters::default();
        writer(store, rx, &counters);
        let c = counters.snapshot();
        assert_eq!((c.written, c.refused_too_big, c.evicted), (1, 1, 0));
        assert!(!dir.join("capsule-a.pcap").exists());
        assert_eq!(
            read_back(
                &std::fs::read(dir.join("capsule-b.pcap")).unwrap(),
                "b.pcap"
            )
            .len(),
            1
        );
        let note: Value =
            serde_json::from_slice(&std::fs::read(dir.join("capsule-b.json")).unwrap()).unwrap();
        assert_eq!(note["n"], "capsule-b");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Ethernet frames of IPv4 fragments of one UDP datagram (ports 5353 -> 53) carrying
    /// `message`, cut after every `piece` bytes of the IP payload (a multiple of 8).
    fn ethernet_ipv4_fragments(message: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut udp = vec![0x14, 0xe9, 0x00, 0x35];
        udp.extend_from_slice(&((8 + message.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(message);
        udp.chunks(piece)
            .enumerate()
            .map(|(i, chunk)| {
                let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
                f.extend_from_slice(&[0x45, 0]);
                f.extend_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
                f.extend_from_slice(&0x4242u16.to_be_bytes());
                let more = (i + 1) * piece < udp.len();
                let field = ((i * piece / 8) as u16) | if more { 0x2000 } else { 0 };
                f.extend_from_slice(&field.to_be_bytes());
                f.extend_from_slice(&[64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
                f.extend_from_slice(chunk);
                f
            })
            .collect()
    }

    /// Raw IPv6 fragments (UDP inside) of `udp`, cut after `at` bytes (a multiple of 8).
    fn raw_ipv6_fragments(udp: &[u8], at: usize) -> Vec<Vec<u8>> {
        use crate::parse::packet::test_frames::raw_ipv6_udp_fragment;
        vec![
            raw_ipv6_udp_fragment(0, true, &udp[..at]),
            raw_ipv6_udp_fragment(at as u16, false, &udp[at..]),
        ]
    }

    /// Frames through the kitchen's parser with IP reassembly on, as a replay runs them:
    /// the packets and their arena.
    fn parsed(frames: &[(u32, &[u8])]) -> (Vec<WirePacket>, Vec<u8>) {
        use crate::parse::defrag::{DefragLimits, Defragmenter};
        let mut defrag = Defragmenter::new(DefragLimits::default());
        let (mut packets, mut arena) = (Vec::new(), Vec::new());
        for (link_type, data) in frames {
            let rec = capture::PacketRecord {
                timestamp_ns: 5_000,
                original_len: data.len() as u32,
                link_type: *link_type,
                interface_index: 0,
                data,
            };
            crate::parse::packet::parse_push_reassembling(
                &rec,
                &mut arena,
                &mut packets,
                Some(&mut defrag),
            );
        }
        (packets, arena)
    }

    /// What the chef is handed for a packet: its transport header and payload bytes.
    fn handed(p: &WirePacket, arena: &[u8]) -> (String, Vec<u8>) {
        let s = p.0.payload;
        let payload = arena[s.offset as usize..(s.offset + s.len) as usize].to_vec();
        (format!("{:?}", p.0.transport), payload)
    }

    #[test]
    fn a_capsule_of_a_completing_fragment_replays_to_the_same_datagram() {
        let ether = crate::parse::packet::dlt::ETHERNET;
        let raw = crate::parse::packet::dlt::RAW;
        // IPv4 in Ethernet, three fragments; the middle one arrives last and completes the
        // datagram, so the capsule needs the bytes before and after it.
        let message: Vec<u8> = (0..100u8).collect();
        let v4 = ethernet_ipv4_fragments(&message, 48);
        assert_eq!(v4.len(), 3);
        // IPv6, two fragments; the first arrives last: only the bytes after it are needed.
        let udp: Vec<u8> = [&[0x13, 0x88, 0x00, 0x35, 0, 36, 0, 0][..], &[9u8; 28]].concat();
        let v6 = raw_ipv6_fragments(&udp, 16);
        for (link_type, arrival, made_up) in [
            (ether, vec![&v4[0], &v4[2], &v4[1]], 2),
            (raw, vec![&v6[1], &v6[0]], 1),
        ] {
            let frames: Vec<(u32, &[u8])> =
                arrival.iter().map(|f| (link_type, f.as_slice())).collect();
            let (packets, arena) = parsed(&frames);
            let completing = &packets[packets.len() - 1..];
            let want = handed(&completing[0], &arena);
            assert!(want.0.contains("Udp"), "{want:?}");
            // The failing call was handed only the completing packet.
            let (saved, data, synthesized) = copy_frames(completing, &arena);
            assert_eq!(synthesized, made_up);
            assert_eq!(saved.len(), made_up as usize + 1);
            let last = saved[saved.len() - 1];
            assert_eq!(
                &data[last.offset..last.offset + last.len],
                arrival[arrival.len() - 1].as_slice()
            );
            assert_eq!(last.link_type, link_type);
            // Replayed, the capsule's last packet is handed the same datagram.
            let replay: Vec<(u32, &[u8])> = saved
                .iter()
                .map(|f| (f.link_type, &data[f.offset..f.offset + f.len]))
                .collect();
            let (again, arena_again) = parsed(&replay);
            assert_eq!(handed(&again[again.len() - 1], &arena_again), want);
            for p in &again[..again.len() - 1] {
                assert!(p.0.transport.is_none(), "a made-up fragment is a fragment");
            }
        }
        // A packet that completed nothing is saved alone.
        let (packets, arena) = parsed(&[(ether, v4[0].as_slice())]);
        let (saved, _, synthesized) = copy_frames(&packets, &arena);
        assert_eq!((saved.len(), synthesized), (1, 0));
    }
}
