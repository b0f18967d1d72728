//! `wasi:io/poll` for chefs, bounded by the current call's budget.
//!
//! Epoch interruption only fires while guest code runs: a chef blocked inside a host call
//! (`std::thread::sleep` is `monotonic-clock.subscribe-duration` + `poll`/`block`) would
//! hold the kitchen's thread for as long as it asked. So every blocking `wasi:io/poll`
//! entry point (`poll`, `pollable.block`) here waits at most for what is left of the budget
//! of the call in progress ([`CallBudget`]: its CPU time and earlier waits so far, and its
//! wall-clock ceiling), and the time it waited is charged to the call like CPU time; when
//! the wait reaches the end of the budget with nothing ready the host call fails with
//! [`Trap::Interrupt`], which the chef host reports exactly like an epoch timeout ("ran past
//! its N ms deadline"). A wait that ends sooner behaves as in wasmtime-wasi (short sleeps
//! still sleep).
//!
//! The other pollables a chef can reach never block: stdin is closed and stdout/stderr
//! (the chef's log sink) are always ready. Non-blocking `pollable.ready` and `drop` are
//! passed through unchanged.

use std::time::Instant;

use super::call_budget::CallBudget;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime::Trap;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::runtime::in_tokio;

/// What the poll host functions see of a chef's store: its resource table and the budget
/// of the call in progress (`None`: no bound, only outside calls).
pub struct DeadlinePoll<'a> {
    /// The chef's resource table (pollables live there).
    pub table: &'a mut ResourceTable,
    /// The budget of the call in progress; blocking waits are charged to it.
    pub(crate) call: Option<&'a mut CallBudget>,
}

/// `HasData` projection for [`DeadlinePoll`].
pub struct HasDeadlinePoll;

impl HasData for HasDeadlinePoll {
    type Data<'a> = DeadlinePoll<'a>;
}

/// Run `fut` on the calling thread until it completes or the budget of `call` runs out
/// (then [`Trap::Interrupt`]), and charge the wait to `call`.
fn bounded<F, R>(call: Option<&mut CallBudget>, fut: F) -> wasmtime::Result<R>
where
    F: std::future::Future<Output = wasmtime::Result<R>>,
{
    let Some(call) = call else {
        return in_tokio(fut);
    };
    let start = Instant::now();
    // Read here, on the thread running the call (the CPU clock is per thread).
    let Some(left) = call.remaining(start) else {
        return Err(wasmtime::Error::from(Trap::Interrupt));
    };
    let result = in_tokio(async move {
        match tokio::time::timeout_at((start + left).into(), fut).await {
            Ok(r) => r,
            // A blocking wait outlived the call's budget: stop the chef as an epoch
            // deadline would if it were running guest code.
            Err(_) => Err(wasmtime::Error::from(Trap::Interrupt)),
        }
    });
    call.add_wait(start.elapsed());
    if result.is_err() {
        // Notes whether the budget or the ceiling ran out (the message says which).
        let _ = call.remaining(Instant::now());
    }
    result
}

impl sync_poll::Host for DeadlinePoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let table = &mut *self.table;
        bounded(
            self.call.as_deref_mut(),
            async_poll::Host::poll(table, pollables),
        )
    }
}

impl sync_poll::HostPollable for DeadlinePoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        sync_poll::HostPollable::ready(&mut *self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let table = &mut *self.table;
        bounded(
            self.call.as_deref_mut(),
            async_poll::HostPollable::block(table, pollable),
        )
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        sync_poll::HostPollable::drop(&mut *self.table, pollable)
    }
}
