//! A cache prefetch hint: the one place in the crate that needs `unsafe`.
//!
//! Why: on a table with hundreds of thousands of flows, a packet's index bucket and the
//! eviction victim's bucket are cache (and TLB) misses. [`super::FlowTable::track_batch`]
//! names them all before tracking the batch, so they are fetched in parallel (and the
//! reassembler its ending flows' states, `reassembly::store`). A prefetch instruction,
//! unlike a plain load, neither waits for the line nor holds up the instructions after it,
//! and it cannot fault.

/// Asks the processor to bring the cache line holding `*r` into all cache levels; no
/// effect on the program's results (a no-op on targets other than x86-64).
#[inline(always)]
pub(crate) fn prefetch<T>(r: &T) {
    prefetch_at((r as *const T).cast::<u8>());
}

/// [`prefetch`] for every cache line `*r` lies on (its first four at most).
#[inline(always)]
pub(crate) fn prefetch_all<T>(r: &T) {
    let start = (r as *const T).cast::<u8>();
    let lines = (start as usize % 64 + std::mem::size_of::<T>()).div_ceil(64);
    for i in 0..lines.min(4) {
        // Inside `*r` (or its last line): plain address arithmetic, never dereferenced here.
        prefetch_at(start.wrapping_add(i * 64));
    }
}

#[inline(always)]
fn prefetch_at(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is `unsafe` only because it is an SSE intrinsic (a
    // `#[target_feature]` function); SSE is part of the x86-64 baseline, so the instruction
    // exists on every processor this code runs on. PREFETCHT0 is a hint: it never
    // dereferences the pointer architecturally (no fault, no read the program can observe,
    // no write), whatever address it is given; ours point into a live object anyway.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
