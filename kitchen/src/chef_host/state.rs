//! A chef's state across a hot reload (chef API 0.2, optional `state` export).
//!
//! When a chef's file is replaced, the reload code calls [`carry`] between batches, after
//! the old version's final poke and before the new version sees its first packet:
//! 1. `snapshot` on the old instance, with the call deadline; the snapshot's length is
//!    checked against `--chef-state-max-bytes` before it is copied out of the chef.
//! 2. `restore` on the new instance (fresh from `describe`), with the call deadline.
//!
//! Anything else and the new version starts fresh, and the log says why: either version
//! does not export `state` (0.1 chefs never do), the file now holds a chef of another
//! name (its state format is not this chef's), the old instance is not running (it
//! trapped, timed out or is quarantined: a trapped instance's state is not trusted, and a
//! restart after a trap never restores either), `snapshot` fails or is over the cap,
//! `restore` fails or returns `err` (the chef refused the state; a refused or failed
//! restore also replaces the new instance by a fresh one, so nothing half-restored runs).
//! An empty snapshot means "no state" (what `chef_sdk::export_chef!` returns): nothing is
//! restored and nothing is logged as a failure. Outcomes are counted on the new version
//! (`ChefStats::state_restored`, `state_fresh`; status and metrics).

use dumpling::text::Escaped;

use super::error::CallError;
use super::instance::LoadedChef;

/// Default of `--chef-state-max-bytes`: the largest snapshot carried across a reload.
pub const DEFAULT_MAX_STATE_BYTES: usize = 4 << 20;

/// Why a chef's state was not carried to its new version.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// `--chef-state-max-bytes 0`: state carrying is off.
    #[error("state carrying is off (--chef-state-max-bytes 0)")]
    Disabled,
    /// The old version has no `state` export.
    #[error("the old version does not export netdumplings:chef/state (no state to carry)")]
    OldHasNoState,
    /// The new version has no `state` export.
    #[error("the new version does not export netdumplings:chef/state")]
    NewHasNoState,
    /// The file now holds a chef of another name: another chef's state is not its own.
    #[error("the file now holds another chef ({new}, was {old}); it does not read {old}'s state")]
    OtherChef {
        /// The old version's name.
        old: String,
        /// The new version's name.
        new: String,
    },
    /// The old instance was not running (failed, restarting or quarantined).
    #[error("the old version was not running (after a failure its state is not trusted)")]
    OldNotRunning,
    /// The snapshot was longer than the cap.
    #[error("the snapshot is {bytes} bytes, over --chef-state-max-bytes ({max})")]
    TooLarge {
        /// Its length.
        bytes: usize,
        /// The cap.
        max: usize,
    },
    /// `snapshot` failed (trap, timeout, memory).
    #[error("snapshot failed: {0}")]
    Snapshot(CallError),
    /// `restore` failed (trap, timeout, memory).
    #[error("restore failed: {0}")]
    Restore(CallError),
    /// The new version refused the state.
    #[error("the new version refused the state: {0}")]
    Refused(String),
}

/// What [`carry`] did.
#[derive(Debug)]
pub enum Carried {
    /// The new version took over this many bytes of state.
    Restored(usize),
    /// The old version had nothing to carry (an empty snapshot).
    Empty,
    /// The new version starts fresh, for this reason.
    Fresh(StateError),
}

/// Carry `old`'s state into `new` (see the module docs). `now_ns` is the kitchen's clock.
/// Logs the outcome (chef name, bytes, or the escaped reason) and counts it on `new`.
pub fn carry(old: &mut LoadedChef, new: &mut LoadedChef, max_bytes: usize, now_ns: u64) -> Carried {
    let carried = match snapshot_and_restore(old, new, max_bytes, now_ns) {
        Ok(0) => Carried::Empty,
        Ok(n) => Carried::Restored(n),
        Err(e) => Carried::Fresh(e),
    };
    let chef = new.name().to_owned();
    match &carried {
        Carried::Restored(bytes) => {
            new.stats.state_restored += 1;
            tracing::info!(chef = %chef, bytes, "chef state carried across the reload");
        }
        Carried::Empty => {
            tracing::debug!(chef = %chef, "chef reloaded with no state to carry");
        }
        // Not carrying state because neither version has any is the ordinary case.
        Carried::Fresh(StateError::OldHasNoState | StateError::Disabled) => {
            tracing::debug!(chef = %chef, "chef reloaded; the old version keeps no state");
        }
        Carried::Fresh(e) => {
            new.stats.state_fresh += 1;
            // The reason can carry the chef's own words (a refusal): escaped and bounded.
            tracing::warn!(chef = %chef, "chef state not carried; the new version starts fresh: {}",
                Escaped::composed(&e.to_string(), 512));
        }
    }
    carried
}

fn snapshot_and_restore(
    old: &mut LoadedChef,
    new: &mut LoadedChef,
    max_bytes: usize,
    now_ns: u64,
) -> Result<usize, StateError> {
    if !old.description().stateful {
        return Err(StateError::OldHasNoState);
    }
    if max_bytes == 0 {
        return Err(StateError::Disabled);
    }
    if old.name() != new.name() {
        return Err(StateError::OtherChef {
            old: old.name().to_owned(),
            new: new.name().to_owned(),
        });
    }
    if !old.is_live() {
        return Err(StateError::OldNotRunning);
    }
    let state = match old.call_snapshot(max_bytes, now_ns) {
        Ok(Ok(state)) => state,
        Ok(Err(bytes)) => {
            return Err(StateError::TooLarge {
                bytes,
                max: max_bytes,
            })
        }
        Err(e) => {
            // The failure happened on the version being retired, after the new one took
            // over its counters and failure history (`LoadedChef::inherit_from`): take them
            // over again, so it counts for the chef (summary, `/metrics`, quarantine) and is
            // not lost with the old version.
            new.inherit_from(old);
            return Err(StateError::Snapshot(e));
        }
    };
    if state.is_empty() {
        return Ok(0);
    }
    if !new.description().stateful {
        return Err(StateError::NewHasNoState);
    }
    let outcome = match new.call_restore(&state, now_ns) {
        Ok(Ok(())) => return Ok(state.len()),
        Ok(Err(reason)) => StateError::Refused(reason.chars().take(300).collect()),
        Err(e) => StateError::Restore(e),
    };
    // Whatever the restore left behind must not run: a fresh instance replaces it (a failed
    // call already dropped it; then the failure policy would restart it, this is sooner).
    if let Err(e) = new.fresh_instance() {
        tracing::warn!(chef = %new.name(), "chef could not be re-instantiated after a refused \
            state ({e}); it restarts under the failure policy");
    }
    Err(outcome)
}
