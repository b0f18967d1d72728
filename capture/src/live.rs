//! Live capture with libpcap: one thread per interface, a bounded hand-over queue.
//!
//! Each interface gets its own libpcap handle (read timeout [`LiveConfig::read_timeout_ms`],
//! nanosecond timestamps) and its own thread, which calls `pcap_dispatch` in a loop, copies
//! the packets of one dispatch back to back into one reusable buffer (no allocation per
//! packet while the kernel block is held) and hands that batch to the consumer through an
//! `mpsc` channel; [`LiveCapture::recv_timeout`] then copies each packet into its
//! [`OwnedPacket`] on the consumer's thread and returns emptied buffers for reuse. The queue is bounded in *packets* ([`LiveConfig::queue_capacity`]): a
//! capture thread reserves room before sending and drops (and counts) whatever does not
//! fit, so it never waits for the consumer. Packets of different interfaces are not
//! ordered with respect to each other.
//!
//! [`LiveCapture::stop`] sets a flag, calls `pcap_breakloop` on every handle (libpcap 1.10
//! wakes a thread blocked in `poll` through an eventfd) and joins the threads; the read
//! timeout bounds the wait even where breakloop cannot wake the thread.
//!
//! Loopback duplicates: the kernel hands a packet socket two copies of each loopback
//! packet, the outgoing one and the incoming one. On a loopback interface (`lo`) the
//! capture asks the kernel not to queue the outgoing copies at all
//! (`PACKET_IGNORE_OUTGOING`, Linux 4.20; libpcap 1.10's `pcap_setdirection` only filters
//! them in user space): before, both copies filled the kernel buffer and both were counted
//! in `ps_drop` when it overflowed, so [`CaptureStats::kernel_dropped`] was twice the real
//! loss, and libpcap then discarded the outgoing copies it did read. Without that option
//! (older kernels) libpcap still discards them, and the kernel counts stay doubled (logged).
//! On the `any` device the outgoing copies of other interfaces are real packets, so they
//! cannot be refused there: the kernel queues and counts both copies of each loopback
//! packet, and `kernel_received`/`kernel_dropped` count each loopback packet twice (other
//! interfaces' packets once). The frames are Linux cooked (DLT 113, or 276 when SLL2 is
//! selected); as a second line of defence, a cooked frame whose hardware type is loopback
//! (`ARPHRD_LOOPBACK`, 772) and whose packet type is "outgoing" (4) is dropped here and
//! counted in [`CaptureStats::loopback_outgoing_skipped`], so each loopback packet is
//! delivered once.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pcap::{Active, BreakLoop, Capture, Device, Precision};

use crate::{CaptureError, InterfaceInfo, OwnedPacket};

const DLT_LINUX_SLL: u32 = 113;
const DLT_LINUX_SLL2: u32 = 276;
const ARPHRD_LOOPBACK: u16 = 772;
const PACKET_OUTGOING: u8 = 4;
/// `linux/if_packet.h`: do not queue outgoing packets on this socket (Linux 4.20).
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// How often a capture thread refreshes the libpcap counters behind [`LiveCapture::stats`].
const STATS_INTERVAL: Duration = Duration::from_millis(250);

/// What to capture and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConfig {
    /// Interfaces to capture on, one thread each. `"any"` (or `"all"`) captures every
    /// interface through libpcap's `any` device (Linux cooked frames, DLT 113) and must
    /// then be the only entry.
    pub interfaces: Vec<String>,
    /// BPF filter expression (tcpdump syntax), compiled by libpcap for each interface.
    pub filter: Option<String>,
    /// Put the interfaces in promiscuous mode (default `false`).
    pub promisc: bool,
    /// Snapshot length in bytes (default 262144).
    pub snaplen: i32,
    /// Kernel buffer size in bytes (`None` = libpcap's default, 2 MiB on Linux).
    pub buffer_size: Option<i32>,
    /// Maximum number of packets waiting for the consumer, over all interfaces (default
    /// 65536). Packets beyond it are dropped and counted in
    /// [`CaptureStats::queue_dropped`].
    pub queue_capacity: usize,
    /// libpcap immediate mode: deliver each packet as soon as it arrives instead of in
    /// kernel blocks (lower latency, more CPU). Default `false`.
    pub immediate_mode: bool,
    /// libpcap read timeout in milliseconds (default 100): the longest a packet waits in
    /// a kernel block outside immediate mode, and the longest a capture thread can take to
    /// notice [`LiveCapture::stop`] if `pcap_breakloop` cannot wake it.
    pub read_timeout_ms: i32,
    /// Asked before libpcap compiles `filter` for an interface (default none).
    pub filter_gate: Option<FilterGate>,
}

/// A check run with `(expression, link type)` before libpcap compiles a filter in this
/// process, whose compile cannot be interrupted and is superlinear in the expression: the
/// kitchen tries the compile in a bounded child first. `Err(message)` refuses the filter.
#[derive(Clone)]
pub struct FilterGate(pub Arc<FilterGateFn>);

/// The check of a [`FilterGate`]: `(expression, link type)`.
pub type FilterGateFn = dyn Fn(&str, u32) -> Result<(), GateRefusal> + Send + Sync;

/// Why a [`FilterGate`] refused a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRefusal {
    /// What to tell the user.
    pub message: String,
    /// The refusal holds whatever the link type (too complex to compile, the check could
    /// not run), so it is reported before any interface is opened.
    pub for_every_link_type: bool,
}

impl std::fmt::Debug for FilterGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FilterGate")
    }
}

impl PartialEq for FilterGate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for FilterGate {}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            interfaces: Vec::new(),
            filter: None,
            promisc: false,
            snaplen: 262_144,
            buffer_size: None,
            queue_capacity: 65_536,
            immediate_mode: false,
            read_timeout_ms: 100,
            filter_gate: None,
        }
    }
}

impl LiveConfig {
    /// The default configuration for these interfaces.
    pub fn new<I, S>(interfaces: I) -> LiveConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        LiveConfig {
            interfaces: interfaces.into_iter().map(Into::into).collect(),
            ..LiveConfig::default()
        }
    }
}

/// Counters of a [`LiveCapture`], summed over its interfaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets libpcap handed to the capture threads (after the BPF filter), including
    /// those later dropped at the queue or skipped as loopback duplicates.
    pub received: u64,
    /// Packets that reached the queue (`received - queue_dropped - loopback_outgoing_skipped`).
    pub queued: u64,
    /// Packets dropped because the queue to the consumer was full.
    pub queue_dropped: u64,
    /// Outgoing loopback copies skipped on the `any` device (see the module docs).
    pub loopback_outgoing_skipped: u64,
    /// libpcap `ps_recv`: packets the kernel passed to the capture socket (refreshed about
    /// every 250 ms and when a thread ends). On `any`, each loopback packet counts twice
    /// (its outgoing and incoming copies, see the module docs); on `lo`, once.
    pub kernel_received: u64,
    /// libpcap `ps_drop`: packets the kernel dropped because the capture buffer was full.
    /// On `any`, each lost loopback packet counts twice (both copies were dropped); on
    /// `lo`, once.
    pub kernel_dropped: u64,
    /// libpcap `ps_ifdrop`: packets dropped by the interface or its driver.
    pub interface_dropped: u64,
}

impl CaptureStats {
    /// Every packet lost on the way: kernel, interface and queue drops.
    pub fn total_dropped(&self) -> u64 {
        self.kernel_dropped + self.interface_dropped + self.queue_dropped
    }
}

/// Lists the interface names libpcap can capture on (including `any` on Linux).
pub fn list_interfaces() -> Result<Vec<String>, CaptureError> {
    Device::list()
        .map(|devs| devs.into_iter().map(|d| d.name).collect())
        .map_err(|e| CaptureError::Live {
            interface: "*".into(),
            message: format!("cannot list interfaces: {e}"),
        })
}

enum Msg {
    Batch(Batch),
    Error(CaptureError),
}

/// The packets of one `pcap_dispatch` call: their bytes back to back in one buffer, so the
/// capture thread only copies (no allocation per packet) while it holds a kernel block.
/// Buffers go back to their capture thread for reuse once the consumer has emptied them.
struct Batch {
    worker: usize,
    data: Vec<u8>,
    packets: Vec<Meta>,
}

#[derive(Clone, Copy)]
struct Meta {
    timestamp_ns: u64,
    original_len: u32,
    start: usize,
    len: usize,
}

impl Batch {
    fn new(worker: usize) -> Batch {
        Batch {
            worker,
            data: Vec::with_capacity(BATCH_BYTES),
            packets: Vec::with_capacity(256),
        }
    }
}

/// Initial capacity of a batch buffer (grows for bigger dispatches, then is reused).
const BATCH_BYTES: usize = 256 * 1024;
/// Emptied batch buffers kept for reuse per capture thread.
const RECYCLED_BATCHES: usize = 8;

#[derive(Default)]
struct IfaceCounters {
    kernel_received: AtomicU64,
    kernel_dropped: AtomicU64,
    interface_dropped: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    queued_now: AtomicUsize,
    capacity: usize,
    received: AtomicU64,
    queued: AtomicU64,
    queue_dropped: AtomicU64,
    skipped: AtomicU64,
    per_iface: Vec<IfaceCounters>,
}

struct Consumer {
    rx: Receiver<Msg>,
    /// The batch being handed out, with the next index in it.
    current: Option<(Batch, usize)>,
    /// Per capture thread: where emptied batch buffers go back.
    recycle: Vec<SyncSender<Batch>>,
    /// Link type and interface index per capture thread.
    iface: Vec<(u32, u32)>,
}

impl Consumer {
    fn next_packet(&mut self) -> Option<OwnedPacket> {
        let (batch, at) = self.current.as_mut()?;
        if let Some(m) = batch.packets.get(*at).copied() {
            *at += 1;
            let (link_type, interface_index) = self.iface[batch.worker];
            return Some(OwnedPacket {
                timestamp_ns: m.timestamp_ns,
                link_type,
                interface_index,
                original_len: m.original_len,
                data: batch.data[m.start..m.start + m.len].to_vec(),
            });
        }
        if let Some((mut batch, _)) = self.current.take() {
            batch.data.clear();
            batch.packets.clear();
            let _ = self.recycle[batch.worker].try_send(batch);
        }
        None
    }
}

/// A running capture on one or more interfaces. Dropping it stops it.
pub struct LiveCapture {
    interfaces: Vec<InterfaceInfo>,
    shared: Arc<Shared>,
    consumer: Mutex<Consumer>,
    breakers: Vec<BreakLoop>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("interfaces", &self.interfaces)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn is_permission_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("permission") || m.contains("not permitted")
}

/// Ask the kernel not to queue outgoing packets on the capture socket of a loopback
/// interface, where each is also seen incoming (see the module docs). False where the
/// kernel does not know the option.
fn ignore_outgoing(cap: &Capture<Active>) -> bool {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: `setsockopt` reads one `c_int` we own, of the size passed, on the capture's
    // own socket, which lives as long as `cap`.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            cap.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

fn is_no_such_device(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("no such device") || m.contains("doesn't exist")
}

/// Whether a cooked (SLL/SLL2) frame is the outgoing copy of a loopback packet.
fn is_loopback_outgoing(link_type: u32, data: &[u8]) -> bool {
    match link_type {
        DLT_LINUX_SLL if data.len() >= 4 => {
            let pkttype = u16::from_be_bytes([data[0], data[1]]);
            let hatype = u16::from_be_bytes([data[2], data[3]]);
            pkttype == u16::from(PACKET_OUTGOING) && hatype == ARPHRD_LOOPBACK
        }
        DLT_LINUX_SLL2 if data.len() >= 11 => {
            let hatype = u16::from_be_bytes([data[8], data[9]]);
            data[10] == PACKET_OUTGOING && hatype == ARPHRD_LOOPBACK
        }
        _ => false,
    }
}

impl LiveCapture {
    /// Opens every interface of `config` (all of them, before any thread starts, so a bad
    /// name, filter or missing privilege is reported here) and starts the capture threads.
    pub fn start(config: LiveConfig) -> Result<LiveCapture, CaptureError> {
        let names = Self::check_config(&config)?;
        // Syntax errors in the filter are reported before any privilege is needed: compile
        // it once for Ethernet on a dead handle. Only a *syntax* error counts here (a filter
        // may be valid only for the interface's own link type, e.g. `wlan ...`); the real
        // compile per interface follows after opening.
        if let Some(filter) = &config.filter {
            let refused = match &config.filter_gate {
                // The gate compiles in its own bounded way (libpcap's compile cannot be
                // interrupted and can take minutes).
                Some(gate) => match (gate.0)(filter, pcap::Linktype::ETHERNET.0 as u32) {
                    Err(r) if r.for_every_link_type || r.message.contains("syntax error") => {
                        Some(r.message)
                    }
                    _ => None,
                },
                None => match Capture::dead(pcap::Linktype::ETHERNET) {
                    Ok(dead) => match dead.compile(filter, true) {
                        Err(pcap::Error::PcapError(m)) if m.contains("syntax error") => Some(m),
                        _ => None,
                    },
                    Err(_) => None,
                },
            };
            if let Some(message) = refused {
                return Err(CaptureError::BadFilter {
                    interface: names.join(","),
                    filter: filter.clone(),
                    message,
                });
            }
        }
        let devices = Device::list().map_err(|e| CaptureError::Live {
            interface: names.join(","),
            message: format!("cannot list interfaces: {e}"),
        })?;
        let known: Vec<String> = devices.iter().map(|d| d.name.clone()).collect();
        let unknown = |name: &str| {
            let mut available = known.clone();
            if !available.iter().any(|n| n == "any") {
                available.push("any".into());
            }
            CaptureError::UnknownInterface {
                name: name.to_owned(),
                available,
            }
        };
        for name in &names {
            if name != "any" && !known.contains(name) {
                return Err(unknown(name));
            }
        }

        let mut opened = Vec::with_capacity(names.len());
        for name in &names {
            let mut cap = Self::open_one(name, &config).map_err(|e| match e {
                CaptureError::Live { ref message, .. } if is_no_such_device(message) => {
                    unknown(name)
                }
                other => other,
            })?;
            if let Some(filter) = &config.filter {
                let bad = |message: String| CaptureError::BadFilter {
                    interface: name.clone(),
                    filter: filter.clone(),
                    message,
                };
                if let Some(gate) = &config.filter_gate {
                    (gate.0)(filter, cap.get_datalink().0 as u32).map_err(|r| bad(r.message))?;
                }
                cap.filter(filter, true).map_err(|e| {
                    bad(match e {
                        pcap::Error::PcapError(m) => m,
                        other => other.to_string(),
                    })
                })?;
            }
            let loopback = devices
                .iter()
                .any(|d| &d.name == name && d.flags.is_loopback());
            if loopback && !ignore_outgoing(&cap) {
                tracing::warn!(
                    interface = %name,
                    error = %std::io::Error::last_os_error(),
                    "the kernel cannot skip outgoing loopback copies (PACKET_IGNORE_OUTGOING, \
                     Linux 4.20): its received and dropped counts on this interface count \
                     each packet twice"
                );
            }
            let link_type = cap.get_datalink().0 as u32;
            opened.push((name.clone(), link_type, cap));
        }

        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            queued_now: AtomicUsize::new(0),
            capacity: config.queue_capacity,
            received: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            queue_dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            per_iface: opened.iter().map(|_| IfaceCounters::default()).collect(),
        });
        let (tx, rx) = mpsc::channel();
        let mut interfaces = Vec::with_capacity(opened.len());
        let mut breakers = Vec::with_capacity(opened.len());
        let mut threads = Vec::with_capacity(opened.len());
        let mut recycle = Vec::with_capacity(opened.len());
        let mut iface = Vec::with_capacity(opened.len());
        for (index, (name, link_type, mut cap)) in opened.into_iter().enumerate() {
            let (recycle_tx, recycle_rx) = mpsc::sync_channel(RECYCLED_BATCHES);
            recycle.push(recycle_tx);
            iface.push((link_type, index as u32));
            interfaces.push(InterfaceInfo {
                name: name.clone(),
                link_type,
                snaplen: config.snaplen.max(0) as u32,
            });
            breakers.push(cap.breakloop_handle());
            let worker = Worker {
                name: name.clone(),
                index,
                link_type,
                shared: Arc::clone(&shared),
                tx: tx.clone(),
                recycled: recycle_rx,
            };
            let spawned = std::thread::Builder::new()
                .name(format!("capture-{name}"))
                .spawn(move || worker.run(&mut cap));
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    shared.stop.store(true, Ordering::SeqCst);
                    for b in &breakers {
                        b.breakloop();
                    }
                    for t in threads {
                        let _ = t.join();
                    }
                    return Err(CaptureError::Live {
                        interface: name,
                        message: format!("cannot start the capture thread: {e}"),
                    });
                }
            }
        }
        drop(tx);
        tracing::debug!(interfaces = ?interfaces, "live capture started");
        Ok(LiveCapture {
            interfaces,
            shared,
            consumer: Mutex::new(Consumer {
                rx,
                current: None,
                recycle,
                iface,
            }),
            breakers,
            threads: Mutex::new(threads),
        })
    }

    fn check_config(config: &LiveConfig) -> Result<Vec<String>, CaptureError> {
        if config.interfaces.is_empty() {
            return Err(CaptureError::Config("no interface given".into()));
        }
        let names: Vec<String> = config
            .interfaces
            .iter()
            .map(|n| {
                if n == "all" {
                    "any".to_owned()
                } else {
                    n.clone()
                }
            })
            .collect();
        if names.len() > 1 && names.iter().any(|n| n == "any") {
            return Err(CaptureError::Config(
                "\"any\"/\"all\" already captures every interface; give it alone".into(),
            ));
        }
        for (i, n) in names.iter().enumerate() {
            if n.is_empty() {
                return Err(CaptureError::Config("empty interface name".into()));
            }
            if names[..i].contains(n) {
                return Err(CaptureError::Config(format!("interface {n} given twice")));
            }
        }
        if config.queue_capacity == 0 {
            return Err(CaptureError::Config(
                "queue_capacity must be at least 1".into(),
            ));
        }
        if config.snaplen <= 0 {
            return Err(CaptureError::Config("snaplen must be positive".into()));
        }
        if config.read_timeout_ms <= 0 {
            return Err(CaptureError::Config(
                "read_timeout_ms must be positive".into(),
            ));
        }
        Ok(names)
    }

    fn open_one(name: &str, config: &LiveConfig) -> Result<Capture<Active>, CaptureError> {
        let live_err = |e: pcap::Error| {
            let message = match e {
                pcap::Error::PcapError(m) => m,
                other => other.to_string(),
            };
            if is_permission_error(&message) {
                CaptureError::PermissionDenied {
                    interface: name.to_owned(),
                    message,
                    program: crate::error::running_program(),
                }
            } else {
                CaptureError::Live {
                    interface: name.to_owned(),
                    message,
                }
            }
        };
        let mut inactive = Capture::from_device(name)
            .map_err(live_err)?
            .promisc(config.promisc)
            .snaplen(config.snaplen)
            .timeout(config.read_timeout_ms)
            .immediate_mode(config.immediate_mode)
            .precision(Precision::Nano);
        if let Some(size) = config.buffer_size {
            inactive = inactive.buffer_size(size);
        }
        inactive.open().map_err(live_err)
    }

    /// Waits up to `timeout` for the next packet: `Ok(None)` on timeout,
    /// `Err(CaptureError::Closed)` after [`LiveCapture::stop`] or once every capture thread
    /// has ended; an error that ended a capture thread is returned once before that.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<OwnedPacket>, CaptureError> {
        if self.shared.stop.load(Ordering::SeqCst) {
            return Err(CaptureError::Closed);
        }
        let mut consumer = match self.consumer.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = consumer.next_packet() {
                self.shared.queued_now.fetch_sub(1, Ordering::AcqRel);
                return Ok(Some(p));
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match consumer.rx.recv_timeout(wait) {
                Ok(Msg::Batch(batch)) => consumer.current = Some((batch, 0)),
                Ok(Msg::Error(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => return Err(CaptureError::Closed),
            }
        }
    }

    /// After [`LiveCapture::stop`]: the next packet still queued for the consumer, without
    /// waiting (`None` once the queue is empty). A kitchen drains what was captured before
    /// the stop instead of losing it uncounted; [`LiveCapture::queued_now`] says how many
    /// are left if it gives up.
    pub fn take_queued(&self) -> Option<OwnedPacket> {
        let mut consumer = match self.consumer.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        loop {
            if let Some(p) = consumer.next_packet() {
                self.shared.queued_now.fetch_sub(1, Ordering::AcqRel);
                return Some(p);
            }
            match consumer.rx.try_recv() {
                Ok(Msg::Batch(batch)) => consumer.current = Some((batch, 0)),
                // An error that ended a capture thread: nothing queued behind it to lose.
                Ok(Msg::Error(_)) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Packets captured and queued but not yet taken by the consumer.
    pub fn queued_now(&self) -> u64 {
        self.shared.queued_now.load(Ordering::Acquire) as u64
    }

    /// Current counters (libpcap's are refreshed about every 250 ms and when a thread ends).
    pub fn stats(&self) -> CaptureStats {
        let s = &self.shared;
        let mut stats = CaptureStats {
            received: s.received.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            queue_dropped: s.queue_dropped.load(Ordering::Relaxed),
            loopback_outgoing_skipped: s.skipped.load(Ordering::Relaxed),
            ..CaptureStats::default()
        };
        for c in &s.per_iface {
            stats.kernel_received += c.kernel_received.load(Ordering::Relaxed);
            stats.kernel_dropped += c.kernel_dropped.load(Ordering::Relaxed);
            stats.interface_dropped += c.interface_dropped.load(Ordering::Relaxed);
        }
        stats
    }

    /// Stops capturing: wakes every capture thread and waits for it to end. Idempotent;
    /// afterwards [`LiveCapture::recv_timeout`] returns [`CaptureError::Closed`].
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for b in &self.breakers {
            b.breakloop();
        }
        let threads = match self.threads.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a capture thread panicked");
            }
        }
    }

    /// The interfaces being captured; [`OwnedPacket::interface_index`] indexes this list.
    pub fn interfaces(&self) -> &[InterfaceInfo] {
        &self.interfaces
    }
}

impl Drop for LiveCapture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What one capture thread needs.
struct Worker {
    name: String,
    index: usize,
    link_type: u32,
    shared: Arc<Shared>,
    tx: Sender<Msg>,
    recycled: Receiver<Batch>,
}

/// libpcap's cumulative 32-bit counters, widened.
#[derive(Default)]
struct StatTracker {
    last: Option<pcap::Stat>,
}

impl Worker {
    fn run(self, cap: &mut Capture<Active>) {
        let mut batch = Batch::new(self.index);
        let mut tracker = StatTracker::default();
        let mut last_stats = Instant::now();
        let mut received = 0u64;
        let mut skipped = 0u64;
        let loopback_check = matches!(self.link_type, DLT_LINUX_SLL | DLT_LINUX_SLL2);
        let link_type = self.link_type;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let result = cap.dispatch(None, |pkt| {
                received += 1;
                if loopback_check && is_loopback_outgoing(link_type, pkt.data) {
                    skipped += 1;
                    return;
                }
                // With nanosecond precision `tv_usec` holds nanoseconds.
                let secs = u64::try_from(pkt.header.ts.tv_sec).unwrap_or(0);
                let nanos = u64::try_from(pkt.header.ts.tv_usec).unwrap_or(0);
                let start = batch.data.len();
                batch.data.extend_from_slice(pkt.data);
                batch.packets.push(Meta {
                    timestamp_ns: secs.saturating_mul(1_000_000_000).saturating_add(nanos),
                    original_len: pkt.header.len,
                    start,
                    len: pkt.data.len(),
                });
            });
            self.shared.received.fetch_add(received, Ordering::Relaxed);
            self.shared.skipped.fetch_add(skipped, Ordering::Relaxed);
            received = 0;
            skipped = 0;
            let receiver_alive = self.flush(&mut batch);
            if let Err(e) = result {
                if !self.shared.stop.load(Ordering::Relaxed) {
                    let message = match e {
                        pcap::Error::PcapError(m) => m,
                        other => other.to_string(),
                    };
                    tracing::error!(interface = %self.name, %message, "capture thread ends");
                    let _ = self.tx.send(Msg::Error(CaptureError::Live {
                        interface: self.name.clone(),
                        message,
                    }));
                }
                break;
            }
            if !receiver_alive {
                break;
            }
            if last_stats.elapsed() >= STATS_INTERVAL {
                self.update_stats(cap, &mut tracker);
                last_stats = Instant::now();
            }
        }
        self.update_stats(cap, &mut tracker);
    }

    /// Hands the batch to the consumer, keeping the queue within its capacity (the excess
    /// is dropped and counted), and replaces it with a recycled or new buffer. Returns
    /// false when the consumer is gone.
    fn flush(&self, batch: &mut Batch) -> bool {
        let n = batch.packets.len();
        if n == 0 {
            batch.data.clear();
            return true;
        }
        let cap = self.shared.capacity;
        let reserved =
            match self
                .shared
                .queued_now
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                    Some(q + n.min(cap.saturating_sub(q)))
                }) {
                Ok(prev) | Err(prev) => n.min(cap.saturating_sub(prev)),
            };
        if reserved < n {
            self.shared
                .queue_dropped
                .fetch_add((n - reserved) as u64, Ordering::Relaxed);
            batch.packets.truncate(reserved);
        }
        if reserved == 0 {
            batch.data.clear();
            return true;
        }
        self.shared
            .queued
            .fetch_add(reserved as u64, Ordering::Relaxed);
        let fresh = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Batch::new(self.index));
        let full = std::mem::replace(batch, fresh);
        self.tx.send(Msg::Batch(full)).is_ok()
    }

    fn update_stats(&self, cap: &mut Capture<Active>, tracker: &mut StatTracker) {
        let Ok(now) = cap.stats() else {
            return;
        };
        let prev = tracker.last.unwrap_or(pcap::Stat {
            received: 0,
            dropped: 0,
            if_dropped: 0,
        });
        let c = &self.shared.per_iface[self.index];
        c.kernel_received.fetch_add(
            u64::from(now.received.wrapping_sub(prev.received)),
            Ordering::Relaxed,
        );
        c.kernel_dropped.fetch_add(
            u64::from(now.dropped.wrapping_sub(prev.dropped)),
            Ordering::Relaxed,
        );
        c.interface_dropped.fetch_add(
            u64::from(now.if_dropped.wrapping_sub(prev.if_dropped)),
            Ordering::Relaxed,
        );
        tracker.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_outgoing_detection() {
        // SLL: pkttype(2) hatype(2) ...
        let mut sll = vec![0u8; 16];
        sll[1] = PACKET_OUTGOING;
        sll[2..4].copy_from_slice(&ARPHRD_LOOPBACK.to_be_bytes());
        assert!(is_loopback_outgoing(DLT_LINUX_SLL, &sll));
        sll[1] = 0; // PACKET_HOST
        assert!(!is_loopback_outgoing(DLT_LINUX_SLL, &sll));
        sll[1] = PACKET_OUTGOING;
        sll[2..4].copy_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
        assert!(!is_loopback_outgoing(DLT_LINUX_SLL, &sll));
        // SLL2: proto(2) reserved(2) ifindex(4) hatype(2) pkttype(1) ...
        let mut sll2 = vec![0u8; 20];
        sll2[8..10].copy_from_slice(&ARPHRD_LOOPBACK.to_be_bytes());
        sll2[10] = PACKET_OUTGOING;
        assert!(is_loopback_outgoing(DLT_LINUX_SLL2, &sll2));
        sll2[10] = 0;
        assert!(!is_loopback_outgoing(DLT_LINUX_SLL2, &sll2));
        // Other link types and short frames never match.
        assert!(!is_loopback_outgoing(1, &sll));
        assert!(!is_loopback_outgoing(DLT_LINUX_SLL, &sll[..3]));
    }

    #[test]
    fn config_checks() {
        let err = |c: LiveConfig| LiveCapture::check_config(&c).expect_err("must fail");
        assert!(matches!(
            err(LiveConfig::new(Vec::<String>::new())),
            CaptureError::Config(_)
        ));
        assert!(matches!(
            err(LiveConfig::new(["any", "lo"])),
            CaptureError::Config(_)
        ));
        assert!(matches!(
            err(LiveConfig::new(["lo", "lo"])),
            CaptureError::Config(_)
        ));
        let mut c = LiveConfig::new(["lo"]);
        c.queue_capacity = 0;
        assert!(matches!(err(c), CaptureError::Config(_)));
        let names = LiveCapture::check_config(&LiveConfig::new(["all"])).expect("ok");
        assert_eq!(names, ["any"]);
        let d = LiveConfig::default();
        assert_eq!((d.snaplen, d.promisc), (262_144, false));
    }

    #[test]
    fn error_classification() {
        assert!(is_permission_error(
            "You don't have permission to perform this capture on that device (socket: \
             Operation not permitted)"
        ));
        assert!(!is_permission_error("No such device exists"));
        assert!(is_no_such_device(
            "No such device exists (SIOCGIFHWADDR: No such device)"
        ));
    }
}
