//! The deterministic random numbers of the crate's differential tests.

/// A xorshift64 generator from `seed` (not zero): the same sequence on every run, so a
/// failing random edit can be replayed.
pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
