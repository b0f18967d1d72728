//! `wasi:io/poll` for chefs, bounded by the current call's deadline.
//!
//! Epoch interruption only fires while guest code runs: a chef blocked inside a host call
//! (`std::thread::sleep` is `monotonic-clock.subscribe-duration` + `poll`/`block`) would
//! hold the kitchen's thread for as long as it asked. So every blocking `wasi:io/poll`
//! entry point (`poll`, `pollable.block`) here waits at most until the deadline of the call
//! in progress ([`ChefState::call_deadline`](super::instance::ChefState)); when that passes
//! with nothing ready the host call fails with [`Trap::Interrupt`], which the chef host
//! reports exactly like an epoch timeout ("ran past its N ms deadline"). A wait that ends
//! before the deadline behaves as in wasmtime-wasi (short sleeps still sleep).
//!
//! The other pollables a chef can reach never block: stdin is closed and stdout/stderr
//! (the chef's log sink) are always ready. Non-blocking `pollable.ready` and `drop` are
//! passed through unchanged.

use std::time::Instant;

use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime::Trap;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::runtime::in_tokio;

/// What the poll host functions see of a chef's store: its resource table and the deadline
/// of the call in progress (`None`: no bound, only outside calls).
pub struct DeadlinePoll<'a> {
    /// The chef's resource table (pollables live there).
    pub table: &'a mut ResourceTable,
    /// When the call in progress must end.
    pub deadline: Option<Instant>,
}

/// `HasData` projection for [`DeadlinePoll`].
pub struct HasDeadlinePoll;

impl HasData for HasDeadlinePoll {
    type Data<'a> = DeadlinePoll<'a>;
}

/// Run `fut` until it completes or `deadline` passes (then [`Trap::Interrupt`]).
async fn bounded<F, R>(deadline: Option<Instant>, fut: F) -> wasmtime::Result<R>
where
    F: std::future::Future<Output = wasmtime::Result<R>>,
{
    match deadline {
        None => fut.await,
        Some(d) => match tokio::time::timeout_at(d.into(), fut).await {
            Ok(r) => r,
            // A blocking wait outlived the call's deadline: stop the chef as an epoch
            // deadline would if it were running guest code.
            Err(_) => Err(wasmtime::Error::from(Trap::Interrupt)),
        },
    }
}

impl sync_poll::Host for DeadlinePoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let deadline = self.deadline;
        let table = &mut *self.table;
        in_tokio(bounded(deadline, async_poll::Host::poll(table, pollables)))
    }
}

impl sync_poll::HostPollable for DeadlinePoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        sync_poll::HostPollable::ready(&mut *self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let deadline = self.deadline;
        let table = &mut *self.table;
        in_tokio(bounded(
            deadline,
            async_poll::HostPollable::block(table, pollable),
        ))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        sync_poll::HostPollable::drop(&mut *self.table, pollable)
    }
}
