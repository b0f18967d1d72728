//! glibc's heap, handed back to the OS when a long-running process is done with a burst.
//!
//! glibc keeps freed pages for reuse, per arena, and each thread allocates from an arena of
//! its own (up to 8 per core), so after a burst (a hub outage's backlog in the kitchen, a
//! thousand eaters leaving the hub, hot-reload churn) the RSS stays at its peak although
//! the bytes in use went back down. The owners of those bursts (the kitchen's hub client
//! and reloader, the hub's trim loop) call [`release_free_memory`] once after each; the
//! hub also asks glibc, once at start, to grow and trim its heap in large steps
//! ([`set_heap_thresholds`]) so steady traffic does not fault pages in and out.
//!
//! On targets without glibc every function does nothing and says so.

/// `malloc_trim(0)`: give the free pages of every arena back to the OS; whether any were.
/// Takes milliseconds on a large heap: call it after rare work, never per packet or message.
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

/// Grow the heap at least `growth_pad` bytes at a time (`M_TOP_PAD`) and keep up to
/// `trim_threshold` free bytes at its top before glibc trims on its own
/// (`M_TRIM_THRESHOLD`); whether glibc took both. Pages grown but never touched cost no
/// memory. Call once, at start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn set_heap_thresholds(growth_pad: usize, trim_threshold: usize) -> bool {
    let to_int = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt takes plain integers and only changes glibc's own tuning variables,
    // under its arena lock; callable from any thread at any time.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, to_int(growth_pad)) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, to_int(trim_threshold)) == 1
    }
}

/// No-op without glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn set_heap_thresholds(_growth_pad: usize, _trim_threshold: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_blocks_kept_by_glibc_are_given_back() {
        // A trim threshold far above what is freed: glibc keeps the pages on its own...
        assert!(set_heap_thresholds(16 << 20, 1 << 30));
        let blocks: Vec<Vec<u8>> = (0..2000u32).map(|i| vec![i as u8; 64 << 10]).collect();
        assert_eq!(
            blocks.iter().map(Vec::len).sum::<usize>(),
            2000 * (64 << 10)
        );
        drop(blocks);
        // ...until asked: 125 MiB of free pages in the arena, so some are released.
        assert!(release_free_memory());
    }
}
