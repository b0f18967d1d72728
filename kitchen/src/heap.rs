//! Giving free heap memory back to the OS after work that leaves glibc holding it.
//!
//! glibc keeps freed pages for reuse, per arena, and each thread allocates from an arena
//! of its own (up to 8 per core). Two kinds of the kitchen's work left its RSS well above
//! what it used: a hub outage's backlog (up to `max_queued_bytes`, all freed once sent: 83
//! MB resident after the queue drained, 46 MB once trimmed), and hot reloads, each loaded on
//! a fresh thread (chef bytes, the compiled code, the instance; a soak probe measured the
//! bytes in use flat at ~2.2 MB while the arenas held 15 -> 21 MB and RSS crept +3 MB per
//! 10 minutes of reload churn). Both are rare next to packets, so each ends with one
//! [`release_free_memory`].

/// `malloc_trim(0)`: give the free pages of every arena back to the OS; whether any were.
/// Takes milliseconds on a large heap: call it after rare work, never per packet.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes no pointers and only works on glibc's own free lists under
    // its arena locks; callable from any thread at any time.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// No-op without glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}
