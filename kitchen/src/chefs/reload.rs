//! Hot reload of `--chef-dir`: new `*.wasm` files start receiving packets, replaced ones
//! are swapped, deleted ones stop, while the kitchen keeps running.
//!
//! Threads (the packet path never waits for a compile):
//! 1. **watcher**: `notify` (inotify on Linux) through `notify-debouncer-full`
//!    ([`DEBOUNCE`]): a burst of events for one file (create, several writes, close,
//!    rename) becomes one batch of paths.
//! 2. **loader** (`nd-chef-loader`, owns the [`ChefHost`]): for each `*.wasm` path in a
//!    batch, reads the file (never blocking, never more than the size cap: FIFOs,
//!    devices, directories, `/proc` files, symlinks out of the folder and oversized files
//!    are refused, each named once with its reason), and if its SHA-256 differs from the
//!    version it last handled, hands it to a **load worker** (`nd-chef-load`, at most
//!    [`LOAD_WORKERS`] at once) that compiles it (in a bounded child process when the host
//!    says so), instantiates it and calls `describe` (all of [`ChefHost::load`]); the ready
//!    chef, or the exact load error, goes to the dispatch thread over a channel, unless a
//!    newer event for the same file came meanwhile (so versions never go back). A compile
//!    bomb holds one worker until its compile timeout; other files keep loading. A path
//!    that no longer exists is reported as removed. Unchanged content (a `touch`, an
//!    editor saving the same bytes) is ignored. Dropping the [`Reloader`] waits at most
//!    [`LOADER_STOP_WAIT`] for the loader (shutdown never waits for a compile).
//! 3. **dispatch** (the kitchen's main loop, [`crate::run::live`] or [`crate::run::replay`])
//!    asks its [`ReloadHook`] between batches and applies what waits there: a new chef is added (it sees packets from the next
//!    batch on); a replaced chef's pending batch is flushed, it gets a final `on-interval`
//!    poke whose dumplings are sent, and only then the new version takes its place; a
//!    removed chef gets the same final poke and is dropped. Other chefs see every packet:
//!    nothing is skipped or re-ordered for them, the swap only moves a batch boundary.
//!
//! Failures: a file that does not load (not a component, refused import, trap in
//! `describe`, a name clash, ...) leaves the previous version of that file running (if any);
//! the error is logged with the file and the exact reason, and counted in the kitchen
//! status (`load_failures`). A file written in place slowly enough to outlast the debounce
//! may be read half-written: that version fails to load (and is reported), and the next
//! event for the file (the rest of the write) loads the complete one. Writing to a temporary
//! name and renaming into the directory avoids this.
//!
//! Signed chefs (`--trusted-chef-keys`): the host refuses a file without a valid signature
//! by a trusted key like any other load failure (logged with file, reason and key id; the
//! previous version keeps running). A change to `x.wasm.sig` re-checks `x.wasm`, so a chef
//! refused because its new signature had not landed yet loads when it does.
//!
//! A quarantined chef whose file gets new content is replaced by a fresh load, so it gets a
//! fresh chance. A chef exporting `netdumplings:chef/state` keeps its state across the
//! replacement (`snapshot` on the old version after its final poke, `restore` on the new one
//! before its first packet; see [`crate::chef_host::state`]); otherwise, or when that fails,
//! the new version starts fresh and the log says why.
//!
//! Names: the file is the identity. A new file whose chef has the name of a built-in chef
//! replaces the built-in (as at start); one with the name of a chef from another file is
//! refused (as at start, the running one stays). With `-c NAME`, chefs with other names are
//! ignored. A deleted file's chef is not replaced by the built-in it once overrode.
//!
//! A chef file may be a symlink to a file inside the folder (`current.wasm ->
//! releases/chef.wasm`): what it points at is checked once a second
//! ([`super::link_targets`]), so a target rewritten in place or swapped behind the link is
//! loaded, and a target removed is named as a dangling link, within about two seconds.
//!
//! Replay (`-r`): reload works the same (events are applied when the next packet is read,
//! so with a file on disk it only matters for long replays; with a FIFO it is applied when
//! the writer sends the next packet). Which packet a new chef starts at then depends on
//! wall-clock timing, so a replay with reloads is not reproducible; one without reloads is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer, DebounceEventResult, Debouncer, RecommendedCache};

use crate::chef_host::chef_file::{read_chef_file, ChefFileError};
use crate::chef_host::{signature, ChefHost, ChefSource, LoadError, LoadedChef};
use crate::chefs::link_targets::LinkTargets;
use crate::chefs::{name_verdict, qualified_name, NameVerdict};
use crate::dispatch::{ChefCounters, ChefLane, ChefSlot, Dispatcher, InterestMatcher, SinkError};
use dumpling::text::{escape_path, Escaped};
use sha2::{Digest, Sha256};

/// How long a file must be quiet before it is loaded: long enough to merge the events of
/// one `cp` or `cargo build`, short enough to keep "file lands → first dumpling" well
/// under half a second (see `nd-reload-bench`).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// What the loader hands to the dispatch thread.
pub enum ReloadEvent {
    /// A new or changed file loaded: add it or swap it in.
    Ready {
        /// The file.
        path: PathBuf,
        /// The chef, instantiated and described.
        chef: Box<LoadedChef>,
        /// Time the loader spent reading, compiling (or loading from cache), instantiating.
        load_time: Duration,
    },
    /// A file that no longer exists: stop its chef.
    Removed {
        /// The file.
        path: PathBuf,
    },
    /// A new version did not load; the previous one (if any) keeps running.
    Failed {
        /// The file.
        path: PathBuf,
        /// The exact reason.
        error: String,
    },
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// `notify` refused the directory.
    #[error("cannot watch {}: {source}", dir.display())]
    Watch {
        /// The chef directory.
        dir: PathBuf,
        /// notify's error.
        #[source]
        source: notify_debouncer_full::notify::Error,
    },
    /// The loader thread could not be spawned.
    #[error("cannot start the chef loader thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The folder's watcher: the loader re-arms it when the folder comes back.
type SharedWatcher = Arc<Mutex<Option<Debouncer<RecommendedWatcher, RecommendedCache>>>>;

/// How often the loader checks that the chef folder is still the one it watches (a
/// watch dies with its folder: removed, renamed or replaced, it reports nothing more from
/// the path), whether events come or not.
const FOLDER_CHECK: Duration = Duration::from_secs(1);

/// The identity (device, inode) of `dir` if it is a directory now.
fn folder_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir).ok()?;
    m.is_dir().then(|| (m.dev(), m.ino()))
}

/// The watcher and loader of one chef directory. Dropping it stops both (and drops the
/// [`ChefHost`], so drop it only after the dispatcher's chefs are gone).
pub struct Reloader {
    events: Receiver<ReloadEvent>,
    /// Files to read and load again although unchanged ([`Reloader::retry`]).
    retries: Sender<PathBuf>,
    /// Shared with the loader (which watches the folder again when it comes back); taken
    /// on `Drop`, which stops the watcher and so closes the loader's input.
    debouncer: SharedWatcher,
    loader: Option<JoinHandle<()>>,
}

impl Reloader {
    /// Watch `dir` and load what changes in it with `host`. `known` are the files handled at
    /// start, each with the version read then ([`FileVersion::of_read`]). Once the watch is
    /// on, the loader reconciles the whole folder against them: a file replaced, added or
    /// removed while the kitchen was still loading its chefs (compiles may take a minute
    /// each) is applied then, not missed until its next change.
    pub fn start(
        host: ChefHost,
        dir: &Path,
        known: &[(PathBuf, Option<FileVersion>)],
    ) -> Result<Self, ReloadError> {
        let (raw_tx, raw_rx) = mpsc::channel::<DebounceEventResult>();
        let (retries, retry_rx) = mpsc::channel::<PathBuf>();
        let mut debouncer =
            new_debouncer(DEBOUNCE, None, raw_tx).map_err(|source| ReloadError::Watch {
                dir: dir.to_owned(),
                source,
            })?;
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| ReloadError::Watch {
                dir: dir.to_owned(),
                source,
            })?;
        let versions: HashMap<PathBuf, [u8; 32]> = known
            .iter()
            .filter_map(|(path, v)| v.map(|v| (path.clone(), v.0)))
            .collect();
        let (tx, rx) = mpsc::channel();
        // notify reports paths under the absolute form of a relative directory; the kitchen
        // names chefs by `dir.join(file)` as given (that is what `chefs::discover` does), so
        // events are mapped back to that form.
        let abs = if dir.is_absolute() {
            dir.to_owned()
        } else {
            std::env::current_dir()
                .map(|c| c.join(dir))
                .unwrap_or_else(|_| dir.to_owned())
        };
        let dir = dir.to_owned();
        let watcher: SharedWatcher = Arc::new(Mutex::new(Some(debouncer)));
        let loader_watcher = Arc::clone(&watcher);
        let folder = folder_identity(&dir);
        let loader = std::thread::Builder::new()
            .name("nd-chef-loader".into())
            .spawn(move || {
                let host = Arc::new(host);
                let generations = Generations::default();
                let load = Arc::new(LoadContext {
                    host: Arc::clone(&host),
                    dir: dir.clone(),
                    out: tx.clone(),
                    generations: generations.clone(),
                });
                Loader {
                    host,
                    workers: Workers::new(),
                    load,
                    generations,
                    dir,
                    abs,
                    versions,
                    out: tx,
                    watcher: loader_watcher,
                    folder,
                    links: LinkTargets::default(),
                }
                .run(raw_rx, retry_rx)
            })
            .map_err(ReloadError::Thread)?;
        Ok(Reloader {
            events: rx,
            retries,
            debouncer: watcher,
            loader: Some(loader),
        })
    }

    /// Load `path` again although it did not change: it was refused because another file's
    /// chef held its name, and that chef is gone now. Picked up within [`FOLDER_CHECK`].
    pub fn retry(&self, path: PathBuf) {
        let _ = self.retries.send(path);
    }

    /// A loaded (or failed, or removed) chef, if one is waiting. Never blocks.
    pub fn try_recv(&self) -> Option<ReloadEvent> {
        self.events.try_recv().ok()
    }

    /// Wait up to `timeout` for the next event (benchmarks and tests).
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ReloadEvent> {
        self.events.recv_timeout(timeout).ok()
    }
}

/// How long dropping a [`Reloader`] waits for its loader thread to finish the chef it is
/// loading. A loader busy compiling a huge component is left behind (it ends with the
/// process): shutdown and end-of-input exit never wait for a compile.
pub const LOADER_STOP_WAIT: Duration = Duration::from_millis(300);

impl Drop for Reloader {
    fn drop(&mut self) {
        // Stopping the debouncer drops its sender: the loader's `recv` fails and it ends.
        drop(
            self.debouncer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        if let Some(t) = self.loader.take() {
            let until = Instant::now() + LOADER_STOP_WAIT;
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!(
                    "the chef loader is still loading a chef; not waiting for it (shutdown)"
                );
            }
        }
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What the loader remembers of a chef file to tell whether an event changed it: the
/// version of its bytes and signature ([`signature::version`]), or, for an entry whose read
/// was refused (a FIFO, too big, a symlink out of the folder), the refusal's text hashed,
/// so it is named once per reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileVersion([u8; 32]);

impl FileVersion {
    /// The version of what reading `path` at start gave (`None`: nothing to remember,
    /// the file was not there).
    pub fn of_read(path: &Path, read: &Result<Vec<u8>, LoadError>) -> Option<FileVersion> {
        match read {
            Ok(bytes) => Some(FileVersion(signature::version(path, bytes))),
            Err(LoadError::File(e)) => Some(Self::refused(&e.to_string())),
            Err(LoadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                None
            }
            // As `ChefFileError::Io` says it when the loader reads the file.
            Err(LoadError::Io { source, .. }) => Some(Self::refused(
                &ChefFileError::Io(std::io::Error::new(source.kind(), source.to_string()))
                    .to_string(),
            )),
            Err(_) => None,
        }
    }

    fn refused(error: &str) -> FileVersion {
        FileVersion(sha256(error.as_bytes()))
    }
}

/// Chef loads that may run at once (each may hold a compile child for up to the compile
/// timeout): one compile bomb per worker can delay nothing but its own worker.
pub const LOAD_WORKERS: usize = 3;

/// One chef load waiting for a worker: the file and the event number it answers. No bytes:
/// the worker reads the file when it starts, so the queue costs a path per file however
/// many wait (a flood of 64 MiB files queued would not).
struct LoadJob {
    path: PathBuf,
    generation: u64,
    queued: Instant,
}

/// What every load needs, shared by the workers.
struct LoadContext {
    host: Arc<ChefHost>,
    dir: PathBuf,
    out: Sender<ReloadEvent>,
    generations: Generations,
}

/// The load workers: at most [`LOAD_WORKERS`] threads, each taking queued loads until none
/// is left. The loader only queues (never waits for a free worker), so a removal or a
/// small chef's event is handled at once even while compile bombs hold every worker;
/// a file queued again before its load started keeps one place, with its newest event.
#[derive(Clone)]
struct Workers(Arc<Mutex<WorkQueue>>);

#[derive(Default)]
struct WorkQueue {
    busy: usize,
    jobs: std::collections::VecDeque<LoadJob>,
}

impl Workers {
    fn new() -> Self {
        Workers(Arc::new(Mutex::new(WorkQueue::default())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WorkQueue> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `job`; start a worker if fewer than [`LOAD_WORKERS`] run.
    fn submit(&self, job: LoadJob, ctx: &Arc<LoadContext>) {
        let mut q = self.lock();
        match q.jobs.iter_mut().find(|j| j.path == job.path) {
            Some(waiting) => waiting.generation = job.generation,
            None => q.jobs.push_back(job),
        }
        if q.busy >= LOAD_WORKERS {
            return;
        }
        q.busy += 1;
        drop(q);
        let (workers, ctx) = (self.clone(), Arc::clone(ctx));
        let spawned = std::thread::Builder::new()
            .name("nd-chef-load".into())
            .spawn(move || workers.work(&ctx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a chef load worker");
            self.lock().busy -= 1;
        }
    }

    /// A worker: take queued loads until none is left.
    fn work(&self, ctx: &LoadContext) {
        loop {
            let job = {
                let mut q = self.lock();
                match q.jobs.pop_front() {
                    Some(job) => job,
                    None => {
                        q.busy -= 1;
                        return;
                    }
                }
            };
            run_load(ctx, job);
            // This thread's arena holds what the load freed (the file, compile buffers):
            // without a trim each reload's leftovers stayed resident (a soak measured the
            // bytes in use flat at ~2.2 MB while the arenas held 15 -> 21 MB and RSS crept
            // +3 MB per 10 minutes of reload churn).
            heap_trim::release_free_memory();
        }
    }
}

/// Read, compile and start one queued file, and send the outcome if no newer event for
/// the file came since (generation check), so versions never go back. A file gone or
/// refused by now is left to the event that says so.
fn run_load(ctx: &LoadContext, job: LoadJob) {
    let LoadJob {
        path,
        generation,
        queued,
    } = job;
    if !ctx.generations.is_current(&path, generation) {
        return;
    }
    let max = ctx.host.limits().max_file_bytes;
    let Ok(bytes) = read_chef_file(Some(&ctx.dir), &path, max) else {
        return;
    };
    let event = match ctx.host.load(ChefSource::File(path.clone()), &bytes) {
        Ok(chef) => ReloadEvent::Ready {
            path: path.clone(),
            chef: Box::new(chef),
            load_time: queued.elapsed(),
        },
        Err(e) => ReloadEvent::Failed {
            path: path.clone(),
            error: e.to_string(),
        },
    };
    ctx.generations
        .send_if_current(&path, generation, &ctx.out, event);
}

/// The latest event number per file: a load finishing after a newer event for its file
/// (a newer version, a removal) is dropped instead of sent. Numbers come from one counter
/// for all files, so a removed file's entry can be forgotten ([`Generations::forget`]: the
/// map holds the files that exist, not every name ever seen) without a later event of a
/// file of the same name ever reusing a number an old load still holds.
#[derive(Clone, Default)]
struct Generations(Arc<Mutex<(u64, HashMap<PathBuf, u64>)>>);

impl Generations {
    fn bump(&self, path: &Path) -> u64 {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let n = g.0;
        g.1.insert(path.to_owned(), n);
        n
    }

    /// Forget `path` (removed): any load still running for it is then stale.
    fn forget(&self, path: &Path) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .remove(path);
    }

    /// Files with an entry (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1.len()
    }

    /// Whether `generation` is still the file's latest event (a queued load not yet
    /// started is skipped when it is not).
    fn is_current(&self, path: &Path, generation: u64) -> bool {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.1.get(path) == Some(&generation)
    }

    /// Send `event` if `generation` is still the file's latest (under the lock, so sends
    /// for one file are in generation order); false only when the receiver is gone.
    fn send_if_current(
        &self,
        path: &Path,
        generation: u64,
        out: &Sender<ReloadEvent>,
        event: ReloadEvent,
    ) -> bool {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.1.get(path) != Some(&generation) {
            return true;
        }
        out.send(event).is_ok()
    }
}

/// The loader thread's state.
struct Loader {
    host: Arc<ChefHost>,
    /// Load workers and their queue.
    workers: Workers,
    /// What the workers need for a load.
    load: Arc<LoadContext>,
    /// Latest event per file.
    generations: Generations,
    /// The chef directory as given.
    dir: PathBuf,
    /// Its absolute form, as notify reports it.
    abs: PathBuf,
    /// SHA-256 of the content last handled per file (loaded, or failed: a broken version is
    /// not retried until it changes).
    versions: HashMap<PathBuf, [u8; 32]>,
    out: Sender<ReloadEvent>,
    /// The folder's watcher, re-armed when the folder comes back.
    watcher: SharedWatcher,
    /// The watched folder's (device, inode); `None` while it is gone.
    folder: Option<(u64, u64)>,
    /// Chef files that are symlinks, with what each resolved to when handled: a target
    /// changed or removed behind the link makes no event on the folder.
    links: LinkTargets,
}

impl Loader {
    fn run(mut self, input: Receiver<DebounceEventResult>, retries: Receiver<PathBuf>) {
        // What changed between the reads at start and the watch (see `Reloader::start`).
        let everything = self.every_entry();
        if !self.reconcile(everything) {
            return;
        }
        let mut folder_checked = Instant::now();
        loop {
            // Every `FOLDER_CHECK`, whether events come or not: the folder renamed away
            // keeps sending events (a process still writing in it) while a new folder
            // stands at the path unwatched.
            if folder_checked.elapsed() >= FOLDER_CHECK {
                folder_checked = Instant::now();
                if !self.check_folder() {
                    return;
                }
                let relinked = self.links.changed();
                if !relinked.is_empty() && !self.reconcile(relinked) {
                    return;
                }
            }
            let retried: Vec<PathBuf> = retries.try_iter().collect();
            if !retried.is_empty() {
                for p in &retried {
                    self.versions.remove(p);
                }
                if !self.reconcile(retried) {
                    return;
                }
            }
            let batch = match input.recv_timeout(FOLDER_CHECK) {
                Ok(batch) => batch,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut paths: Vec<PathBuf> = Vec::new();
            let mut rescan = false;
            match batch {
                Ok(events) => {
                    for e in events {
                        rescan |= e.need_rescan();
                        paths.extend(e.event.paths.iter().cloned());
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!(dir = %escape_path(&self.dir), error = %e,
                            "chef directory watch error; rescanning the directory");
                    }
                    rescan = true;
                }
            }
            if rescan {
                paths.extend(self.every_entry());
            }
            if !self.reconcile(paths) {
                return; // the dispatch side is gone
            }
        }
    }

    /// Every file the loader knows of and every entry of the folder now (a rescan).
    fn every_entry(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.versions.keys().cloned().collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            paths.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
        }
        paths
    }

    /// Reconcile the chef files `paths` (as events or a rescan name them) stand for, each
    /// once; false when the receiver is gone.
    fn reconcile(&mut self, paths: Vec<PathBuf>) -> bool {
        let in_folder = |p: &Path| {
            p.parent() == Some(self.dir.as_path()) || p.parent() == Some(self.abs.as_path())
        };
        for p in paths.iter().filter(|p| in_folder(p)) {
            crate::chef_host::chef_file::warn_if_lookalike(p);
        }
        let mut paths: Vec<PathBuf> = paths
            .into_iter()
            // A changed `x.wasm.sig` re-checks `x.wasm` (see `signature`).
            .filter_map(|p| signature::chef_file_of(&p))
            .filter(|p| in_folder(p))
            .filter_map(|p| p.file_name().map(|n| self.dir.join(n)))
            .collect();
        paths.sort();
        paths.dedup();
        paths.into_iter().all(|path| self.handle(path))
    }

    /// Whether the folder is still the one watched; when it went away, say so once, and
    /// when a folder is there again at its path, watch it and reconcile every file (a
    /// watch dies with its folder and reports nothing more). False when the receiver is
    /// gone.
    fn check_folder(&mut self) -> bool {
        let now = folder_identity(&self.dir);
        if now == self.folder {
            return true;
        }
        let dir = escape_path(&self.dir);
        if self.folder.is_some() {
            tracing::warn!(dir = %dir, "the chef folder is gone or was replaced; \
                hot reload waits for a folder at that path");
        }
        self.folder = None;
        if now.is_none() {
            return true;
        }
        let mut guard = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        let Some(debouncer) = guard.as_mut() else {
            return true; // stopping
        };
        let _ = debouncer.unwatch(&self.dir);
        if let Err(e) = debouncer.watch(&self.dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir, error = %e, "cannot watch the chef folder again; retrying");
            return true;
        }
        drop(guard);
        self.folder = now;
        tracing::info!(dir = %dir, "a chef folder is there again; watching it and loading its chefs");
        let paths = self.every_entry();
        self.reconcile(paths)
    }

    /// Reconcile one path; false when the receiver is gone.
    fn handle(&mut self, path: PathBuf) -> bool {
        let started = Instant::now();
        // `lstat` only: a dangling symlink or any other entry that is there is read (and
        // refused with its reason) below; only a name that is gone is a removal.
        let Ok(entry) = std::fs::symlink_metadata(&path) else {
            self.links.forget(&path);
            if self.versions.remove(&path).is_some() {
                let generation = self.generations.bump(&path);
                let event = ReloadEvent::Removed { path: path.clone() };
                let sent = self
                    .generations
                    .send_if_current(&path, generation, &self.out, event);
                self.generations.forget(&path);
                return sent;
            }
            return true;
        };
        self.links.note(&path, entry.file_type().is_symlink());
        let read = read_chef_file(Some(&self.dir), &path, self.host.limits().max_file_bytes);
        let bytes = match read {
            Ok(b) => b,
            // Gone between the stat and the read: the next event says so. But a symlink
            // that is still there points at nothing: that is refused with its reason (it
            // was skipped without a word).
            Err(ChefFileError::Io(e))
                if e.kind() == std::io::ErrorKind::NotFound
                    && !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) =>
            {
                return true
            }
            Err(e) => {
                // A refused entry (a FIFO, a directory, a device, a symlink out of the
                // folder, too big) is named once per reason, not on every event for it.
                let error = e.to_string();
                let key = sha256(error.as_bytes());
                if self.versions.insert(path.clone(), key) == Some(key) {
                    return true;
                }
                let generation = self.generations.bump(&path);
                let event = ReloadEvent::Failed {
                    path: path.clone(),
                    error,
                };
                return self
                    .generations
                    .send_if_current(&path, generation, &self.out, event);
            }
        };
        // The component and its signature file together (signed chefs, `signature`).
        let sha = signature::version(&path, &bytes);
        if self.versions.get(&path) == Some(&sha) {
            return true;
        }
        self.versions.insert(path.clone(), sha);
        // Compile and start on a worker thread (at most `LOAD_WORKERS` at once, the rest
        // queued): a chef that takes long to compile (up to the compile timeout) holds one
        // worker, not the loader, so removals and other files' events are handled at once.
        let generation = self.generations.bump(&path);
        let job = LoadJob {
            path,
            generation,
            queued: started,
        };
        self.workers.submit(job, &self.load);
        true
    }
}

/// Called after a reload changed the running chefs (the kitchen refreshes its hub hello).
pub type OnChange = std::sync::Arc<dyn Fn(&Dispatcher) + Send + Sync>;

/// Which chefs a kitchen accepts on reload (`-c NAME`; empty = all).
#[derive(Clone, Default)]
pub struct ReloadPolicy {
    /// Requested chef names; empty = every chef.
    pub only: Vec<String>,
    /// Told about every added, replaced or removed chef.
    pub on_change: Option<OnChange>,
}

impl std::fmt::Debug for ReloadPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadPolicy")
            .field("only", &self.only)
            .field("on_change", &self.on_change.is_some())
            .finish()
    }
}

/// What [`apply`] did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A new chef started.
    Added(String),
    /// A chef was replaced by a new version (old name, new name).
    Replaced(String, String),
    /// A chef stopped.
    Removed(String),
    /// Nothing changed (load failure, refused name, unknown file).
    Unchanged,
}

fn chef_source_is(lane: &ChefLane, path: &Path) -> bool {
    matches!(lane.chef.source(), ChefSource::File(p) if p == path)
}

/// New versions refused only because another *file*'s running chef holds their name, kept
/// until that file changes too: files that swap contents (`a.wasm` <-> `b.wasm`, a branch
/// checkout) each conflict with the other's old version, and without this never settled.
/// Owned by the run's [`ReloadHook`]; a later event for the same file supersedes its entry.
/// Each waits at most [`PARKED_FOR`] (its instance and memory, charged to
/// `--chefs-memory-mib`, are held meanwhile): a swap lands within one debounce, and a
/// version that waits longer is refused like any duplicate name, until its file changes.
pub struct ParkedVersions {
    versions: Vec<Parked>,
    limit: Duration,
    /// Files refused because another file's chef held their chef's name (parked or not
    /// any more), by that name: tried again when the name is free ([`Reloader::retry`]).
    refused_for_name: HashMap<PathBuf, String>,
}

/// How long a new version refused for a name another file holds waits for that file.
pub const PARKED_FOR: Duration = Duration::from_secs(10);

/// Most versions waiting at once. Each holds its instance and memory against
/// `--chefs-memory-mib`: 1000 copies of a running chef dropped in held 400 MB and the
/// whole budget for 10 s, so a distinct chef dropped in then was refused. Past this, the
/// longest waiting is refused like any duplicate (retried when its file changes).
pub const MAX_PARKED: usize = 8;

struct Parked {
    path: PathBuf,
    chef: Box<LoadedChef>,
    load_time: Duration,
    since: Instant,
}

impl Default for ParkedVersions {
    fn default() -> Self {
        ParkedVersions::waiting_at_most(PARKED_FOR)
    }
}

impl ParkedVersions {
    /// Versions waiting at most `limit` each (tests; the kitchen waits [`PARKED_FOR`]).
    pub fn waiting_at_most(limit: Duration) -> Self {
        ParkedVersions {
            versions: Vec::new(),
            limit,
            refused_for_name: HashMap::new(),
        }
    }

    /// How many new versions wait.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    fn forget(&mut self, path: &Path) {
        self.versions.retain(|p| p.path != path);
        self.refused_for_name.remove(path);
    }

    /// The files refused for the chef name `name`, which is free now (forgotten here: a
    /// retry brings a new event for each).
    fn refused_for(&mut self, name: &str) -> Vec<PathBuf> {
        let paths: Vec<PathBuf> = self
            .refused_for_name
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(p, _)| p.clone())
            .collect();
        for p in &paths {
            self.refused_for_name.remove(p);
        }
        paths
    }

    /// Drop (and log) the versions that waited longer than the limit at `now`; their
    /// instances are freed. Returns how many were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.versions.len();
        let limit = self.limit;
        self.versions.retain(|p| {
            let keep = now.saturating_duration_since(p.since) < limit;
            if !keep {
                tracing::warn!(file = %escape_path(&p.path), chef = %Escaped::new(p.chef.name()),
                    "chef not loaded: its name is still used by another chef file after {} s; \
                     refused until this file changes",
                    limit.as_secs());
            }
            keep
        });
        before - self.versions.len()
    }
}

/// Apply one reload event to the dispatcher, between batches. Errors are only the output's
/// (a closed stdout); chef problems are logged, counted and leave the running chefs alone.
/// A new version refused for a name another file's running chef holds is not kept (see
/// [`apply_with`]).
pub fn apply(
    d: &mut Dispatcher,
    event: ReloadEvent,
    policy: &ReloadPolicy,
) -> Result<Applied, SinkError> {
    apply_with(d, event, policy, &mut ParkedVersions::default())
}

/// [`apply`], keeping new versions refused for a name another file's running chef holds in
/// `parked`, and swapping every parked version in together as soon as that leaves each
/// name to one chef.
pub fn apply_with(
    d: &mut Dispatcher,
    event: ReloadEvent,
    policy: &ReloadPolicy,
    parked: &mut ParkedVersions,
) -> Result<Applied, SinkError> {
    let path = match &event {
        ReloadEvent::Ready { path, .. }
        | ReloadEvent::Removed { path }
        | ReloadEvent::Failed { path, .. } => path.clone(),
    };
    parked.forget(&path);
    let mut applied = match apply_event(d, event, policy)? {
        Outcome::Done(applied) => applied,
        Outcome::NameHeldByFile {
            path,
            chef,
            load_time,
        } => {
            parked
                .refused_for_name
                .insert(path.clone(), chef.name().to_owned());
            if parked.versions.len() >= MAX_PARKED {
                let oldest = parked.versions.remove(0);
                tracing::warn!(file = %escape_path(&oldest.path),
                    chef = %Escaped::new(oldest.chef.name()),
                    "chef version no longer waits for its name: more than {MAX_PARKED} versions \
                     wait for names other files hold (it is tried again when its file changes)");
            }
            parked.versions.push(Parked {
                path,
                chef,
                load_time,
                since: Instant::now(),
            });
            Applied::Unchanged
        }
    };
    if !parked.is_empty() {
        if let Some(settled) = settle(d, policy, parked)? {
            applied = settled;
        }
    }
    after_change(d, policy, &applied);
    Ok(applied)
}

/// Swap every parked version in, if together they leave each chef name to one chef: the
/// old versions of their files are retired first, so no name is ever held twice.
fn settle(
    d: &mut Dispatcher,
    policy: &ReloadPolicy,
    parked: &mut ParkedVersions,
) -> Result<Option<Applied>, SinkError> {
    let is_parked = |src: &ChefSource| matches!(src, ChefSource::File(p) if parked.versions.iter().any(|q| &q.path == p));
    let mut after: Vec<(&str, &ChefSource)> = d
        .chefs()
        .iter()
        .map(|s| (s.chef.name(), s.chef.source()))
        .filter(|(_, src)| !is_parked(src))
        .collect();
    for Parked { chef, .. } in &parked.versions {
        match name_verdict(after.iter().copied(), chef.name(), chef.source()) {
            NameVerdict::Duplicate(_) => return Ok(None),
            NameVerdict::New | NameVerdict::OverridesBuiltin(_) => {
                after.push((chef.name(), chef.source()))
            }
        }
    }
    for Parked { path, chef, .. } in &parked.versions {
        if let Some(i) = d.chefs().iter().position(|s| chef_source_is(s, path)) {
            let (old, _) = d.retire_chef(i)?;
            tracing::info!(file = %escape_path(path), old_chef = %Escaped::new(old.chef.name()),
                chef = %Escaped::new(chef.name()),
                "chef files swapped names: the old version stopped, the new one starts");
        }
    }
    let mut last = None;
    for Parked {
        path,
        chef,
        load_time,
        ..
    } in std::mem::take(&mut parked.versions)
    {
        parked.refused_for_name.remove(&path);
        let event = ReloadEvent::Ready {
            path,
            chef,
            load_time,
        };
        // Every name is free now: each is added (a refusal here is only logged).
        if let Outcome::Done(applied) = apply_event(d, event, policy)? {
            last = Some(applied);
        }
    }
    Ok(last)
}

/// What a change means beyond its chefs: the chef threads follow the chef count, and the
/// run's own hook (hello, status) is told.
fn after_change(d: &mut Dispatcher, policy: &ReloadPolicy, applied: &Applied) {
    if *applied != Applied::Unchanged {
        // The default `--chef-threads` follows the chef count.
        let before = d.chef_threads();
        match d.fit_chef_threads() {
            Ok(()) if d.chef_threads() != before => tracing::info!(
                chefs = d.chefs().len(),
                threads = d.chef_threads(),
                "chef threads now {} (the default: at most one per chef)",
                d.chef_threads()
            ),
            Ok(()) => {}
            Err(e) => tracing::warn!(
                threads = d.chef_threads(),
                "cannot start more chef threads ({e}); the chefs stay on {}",
                d.chef_threads()
            ),
        }
        if let Some(hook) = &policy.on_change {
            hook(d);
        }
    }
}

/// How [`apply_event`] ended.
enum Outcome {
    /// Applied, or refused for good (logged).
    Done(Applied),
    /// Refused (logged) because another file's running chef holds the name: worth keeping
    /// in case that file changes too.
    NameHeldByFile {
        path: PathBuf,
        chef: Box<LoadedChef>,
        load_time: Duration,
    },
}

fn apply_event(
    d: &mut Dispatcher,
    event: ReloadEvent,
    policy: &ReloadPolicy,
) -> Result<Outcome, SinkError> {
    match event {
        ReloadEvent::Failed { path, error } => {
            let running = d.chefs().iter().find(|s| chef_source_is(s, &path));
            match running {
                Some(s) => {
                    tracing::error!(file = %escape_path(&path), chef = %Escaped::new(s.chef.name()),
                    "chef reload failed: {}; the previous version keeps running",
                    Escaped::composed(&error, 1024))
                }
                None => tracing::error!(file = %escape_path(&path), "chef not loaded: {}",
                    Escaped::composed(&error, 1024)),
            }
            d.status_inputs()
                .record_load_failure(&escape_path(&path), &error);
            Ok(Outcome::Done(Applied::Unchanged))
        }
        ReloadEvent::Removed { path } => {
            // A file that never loaded has only its failures to forget (they were kept, and
            // reported in every status, for files long gone).
            d.status_inputs().clear_load_failures(&escape_path(&path));
            let Some(i) = d.chefs().iter().position(|s| chef_source_is(s, &path)) else {
                return Ok(Outcome::Done(Applied::Unchanged));
            };
            let slot = d.remove_chef(i)?;
            tracing::info!(file = %escape_path(&path), chef = slot.chef.name(),
                "chef file removed; chef stopped (after its final interval dumpling)");
            Ok(Outcome::Done(Applied::Removed(slot.chef.name().to_owned())))
        }
        ReloadEvent::Ready {
            path,
            chef,
            load_time,
        } => {
            let chef = *chef;
            let name = chef.name().to_owned();
            let key = escape_path(&path);
            if !policy.only.is_empty() && !policy.only.contains(&name) {
                tracing::info!(file = %escape_path(&path), chef = %Escaped::new(&name),
                    "chef file ignored: not one of the chefs selected with -c");
                return Ok(Outcome::Done(Applied::Unchanged));
            }
            let same_file = d.chefs().iter().position(|s| chef_source_is(s, &path));
            // The kitchen's name rule, among the chefs other than this file's old version.
            let others = d
                .chefs()
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != same_file)
                .map(|(_, s)| (s.chef.name(), s.chef.source()));
            let overrides_builtin = match name_verdict(others.clone(), &name, chef.source()) {
                NameVerdict::New => false,
                NameVerdict::OverridesBuiltin(_) => true,
                NameVerdict::Duplicate(n) => {
                    // The running chef stays; this file is refused (kept by `apply_with`
                    // when the holder is a file that may change too).
                    let holder = others.clone().nth(n).map(|(_, src)| src.clone());
                    let by_file = matches!(holder, Some(ChefSource::File(_)));
                    let other = holder.map(|src| src.to_string()).unwrap_or_default();
                    let mut error = format!("its chef name {name:?} is already used by {other}");
                    if by_file {
                        error.push_str(&format!(
                            " (this version starts if that file changes within {} s)",
                            PARKED_FOR.as_secs()
                        ));
                    }
                    let failed = ReloadEvent::Failed {
                        path: path.clone(),
                        error,
                    };
                    apply_event(d, failed, policy)?;
                    return Ok(if by_file {
                        Outcome::NameHeldByFile {
                            path,
                            chef: Box::new(chef),
                            load_time,
                        }
                    } else {
                        Outcome::Done(Applied::Unchanged)
                    });
                }
            };
            let mut slot = ChefSlot {
                matcher: InterestMatcher::new(&chef.description().interest),
                qualified_name: qualified_name(&chef),
                chef,
            };
            let version = slot.chef.description().version.clone();
            d.status_inputs().clear_load_failures(&key);
            // Retire the old version of this file, and a built-in of the same name.
            let mut counters = None;
            let mut old_name = None;
            if let Some(i) = same_file {
                let (mut old, rt) = d.retire_chef(i)?;
                // The chef's counts and failure history go on across its versions (a file
                // that now holds another chef starts that chef from nothing).
                counters = Some(if old.chef.name() == name {
                    slot.chef.inherit_from(&old.chef);
                    if let Some(at) = slot.chef.starts_at_ns() {
                        let wait = Duration::from_nanos(at.saturating_sub(d.clock_ns()));
                        tracing::warn!(file = %escape_path(&path), chef = %Escaped::new(&name),
                            "the previous version was quarantined; the new one starts in {:.0} s \
                             of kitchen time (the wait doubles with each quarantine)",
                            wait.as_secs_f64().ceil());
                    }
                    rt.for_next_version()
                } else {
                    ChefCounters {
                        reloads: rt.reloads + 1,
                        ..ChefCounters::default()
                    }
                });
                let max = old.chef.limits().max_state_bytes;
                crate::chef_host::state::carry(&mut old.chef, &mut slot.chef, max, d.clock_ns());
                old_name = Some(old.chef.name().to_owned());
                tracing::info!(file = %escape_path(&path), chef = %Escaped::new(&name),
                    old_version = %Escaped::new(&old.chef.description().version),
                    new_version = %Escaped::new(&version),
                    load_ms = %format_args!("{:.1}", load_time.as_secs_f64() * 1e3),
                    "chef reloaded: new version swapped in");
            }
            // (Looked up again: retiring the old version moved the others.)
            let builtin = d.chefs().iter().position(|s| {
                s.chef.name() == name && matches!(s.chef.source(), ChefSource::Builtin(_))
            });
            if let (true, Some(j)) = (overrides_builtin, builtin) {
                d.retire_chef(j)?;
                tracing::warn!(chef = %Escaped::new(&name), file = %escape_path(&path),
                    "chef file overrides the built-in chef of the same name");
            }
            d.add_reloaded_chef(slot, counters)?;
            match old_name {
                Some(old) => Ok(Outcome::Done(Applied::Replaced(old, name))),
                None => {
                    tracing::info!(file = %escape_path(&path), chef = %Escaped::new(&name),
                        version = %Escaped::new(&version),
                        load_ms = %format_args!("{:.1}", load_time.as_secs_f64() * 1e3),
                        "chef added from the chef directory");
                    Ok(Outcome::Done(Applied::Added(name)))
                }
            }
        }
    }
}

/// Hot reload as a [`crate::run::BetweenSteps`] hook: an event waiting from the loader
/// thread asks the run (replay or live) for a batch boundary, where it is applied (with
/// any others).
pub struct ReloadHook<'a> {
    reloader: Option<&'a Reloader>,
    policy: &'a ReloadPolicy,
    held: Option<ReloadEvent>,
    parked: ParkedVersions,
}

impl<'a> ReloadHook<'a> {
    /// A hook for `reloader` (none: nothing ever waits).
    pub fn new(reloader: Option<&'a Reloader>, policy: &'a ReloadPolicy) -> Self {
        ReloadHook {
            reloader,
            policy,
            held: None,
            parked: ParkedVersions::default(),
        }
    }
}

impl crate::run::BetweenSteps for ReloadHook<'_> {
    fn waiting(&mut self) -> bool {
        if !self.parked.is_empty() {
            self.parked.expire(Instant::now());
        }
        if self.held.is_none() {
            self.held = self.reloader.and_then(Reloader::try_recv);
        }
        self.held.is_some()
    }

    fn apply(&mut self, d: &mut Dispatcher) -> Result<(), SinkError> {
        if let Some(event) = self.held.take() {
            let applied = apply_with(d, event, self.policy, &mut self.parked)?;
            retry_freed_names(self.reloader, &applied, &mut self.parked);
        }
        apply_pending(self.reloader, d, self.policy, &mut self.parked)
    }
}

/// Apply every waiting event (the dispatch loop calls this between packets).
pub fn apply_pending(
    reloader: Option<&Reloader>,
    d: &mut Dispatcher,
    policy: &ReloadPolicy,
    parked: &mut ParkedVersions,
) -> Result<(), SinkError> {
    let Some(r) = reloader else {
        return Ok(());
    };
    while let Some(event) = r.try_recv() {
        let applied = apply_with(d, event, policy, parked)?;
        retry_freed_names(reloader, &applied, parked);
    }
    Ok(())
}

/// When `applied` freed a chef name (its file removed, or now holding another chef), the
/// files refused for that name are loaded again: one of them takes it (a restart would
/// have run it; it waited for its file to change).
fn retry_freed_names(reloader: Option<&Reloader>, applied: &Applied, parked: &mut ParkedVersions) {
    let freed = match applied {
        Applied::Removed(name) => name,
        Applied::Replaced(old, new) if old != new => old,
        _ => return,
    };
    let Some(r) = reloader else { return };
    for path in parked.refused_for(freed) {
        tracing::info!(file = %escape_path(&path), chef = %Escaped::new(freed),
            "the chef name this file was refused for is free: loading it again");
        r.retry(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_file_is_forgotten_and_its_old_loads_stay_stale() {
        let g = Generations::default();
        let (tx, rx) = mpsc::channel();
        let path = PathBuf::from("/nonexistent/chefs/a.wasm");
        let failed = || ReloadEvent::Failed {
            path: path.clone(),
            error: "old".into(),
        };
        // A load starts, the file is removed (the removal is sent), then forgotten.
        let old_load = g.bump(&path);
        let removal = g.bump(&path);
        assert!(g.send_if_current(
            &path,
            removal,
            &tx,
            ReloadEvent::Removed { path: path.clone() }
        ));
        g.forget(&path);
        assert_eq!(g.len(), 0, "a removed file keeps no entry");
        // The file comes back: its new event's number is new, so the old load, finishing
        // now, is still dropped.
        let new_load = g.bump(&path);
        assert_ne!(new_load, old_load);
        assert!(g.send_if_current(&path, old_load, &tx, failed()));
        assert!(g.send_if_current(&path, new_load, &tx, failed()));
        let sent: Vec<ReloadEvent> = rx.try_iter().collect();
        assert_eq!(sent.len(), 2, "the removal and the new load only");
        assert!(matches!(sent[0], ReloadEvent::Removed { .. }));
    }
}
