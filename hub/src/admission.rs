//! Connection slots per port: connections still in their handshake (TLS, request head,
//! WebSocket upgrade with `--auth`'s check) wait in a bounded *pending* pool of their own,
//! and take one of the `--max-kitchens`/`--max-eaters` slots only once their upgrade is
//! accepted.
//!
//! Why: the slots used to be taken at accept, so idle TCP connections that never said a
//! word (reopened each time `--hello-timeout` dropped them) filled `--max-kitchens`, and a
//! kitchen with a valid token was turned away. Now such connections only compete with each
//! other, and even there they lose: when the pending pool is full, or one address holds
//! [`PENDING_PER_ADDRESS`] of it, the *oldest* pending connection (of that address) is
//! closed to make room. A real client finishes its handshake in milliseconds; a flood must
//! open a whole pool's worth of connections within that time to crowd it out.
//!
//! Everything is bounded: the pool (`--max-pending` per port) and the slots
//! (`--max-kitchens`/`--max-eaters`) together are what a port may hold open.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Most pending connections one address may hold on a port; past it, that address's oldest
/// pending connection is closed (so one source churns only its own connections).
pub const PENDING_PER_ADDRESS: usize = 32;

#[derive(Debug, Default)]
struct Pool {
    next_id: u64,
    /// Pending connections by age (ids only grow): their address and eviction signal.
    by_age: BTreeMap<u64, (IpAddr, Arc<Notify>)>,
    /// Pending connections per address.
    per_address: HashMap<IpAddr, usize>,
}

impl Pool {
    fn remove(&mut self, id: u64) -> Option<(IpAddr, Arc<Notify>)> {
        let (ip, notify) = self.by_age.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&ip);
            }
        }
        Some((ip, notify))
    }
}

/// One port's pending pool and connection slots.
#[derive(Debug)]
pub struct Admission {
    pool: Mutex<Pool>,
    max_pending: usize,
    per_address: usize,
    slots: Arc<Semaphore>,
    max_slots: usize,
    /// Pending connections closed to make room for newer ones.
    pub evicted: AtomicU64,
    /// Upgrades refused because every slot was taken.
    pub refused: AtomicU64,
}

impl Admission {
    /// A port with `max_slots` connection slots and `max_pending` pending places.
    pub fn new(max_slots: usize, max_pending: usize) -> Arc<Admission> {
        let max_pending = max_pending.max(1);
        Arc::new(Admission {
            pool: Mutex::new(Pool::default()),
            max_pending,
            per_address: PENDING_PER_ADDRESS.min(max_pending),
            slots: Arc::new(Semaphore::new(max_slots)),
            max_slots,
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        // Plain maps a panicking holder cannot leave half-updated.
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection from `addr` enters the pending pool; the oldest pending connection
    /// of its address (past [`PENDING_PER_ADDRESS`]) or of the port (pool full) is told to
    /// close to make room.
    pub fn enter(self: &Arc<Self>, addr: SocketAddr) -> Pending {
        let ip = addr.ip();
        let notify = Arc::new(Notify::new());
        let mut pool = self.pool();
        let from_address = pool.per_address.get(&ip).copied().unwrap_or(0);
        let victim = if from_address >= self.per_address {
            pool.by_age
                .iter()
                .find(|(_, (owner, _))| *owner == ip)
                .map(|(id, _)| *id)
        } else if pool.by_age.len() >= self.max_pending {
            pool.by_age.keys().next().copied()
        } else {
            None
        };
        if let Some((_, evicted)) = victim.and_then(|id| pool.remove(id)) {
            // `notify_one` keeps the wake-up for a task not yet waiting.
            evicted.notify_one();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = pool.next_id;
        pool.next_id += 1;
        pool.by_age.insert(id, (ip, notify.clone()));
        *pool.per_address.entry(ip).or_insert(0) += 1;
        Pending {
            admission: self.clone(),
            id,
            notify,
        }
    }

    /// Slots on this port (`--max-kitchens` or `--max-eaters`).
    pub fn max_slots(&self) -> usize {
        self.max_slots
    }

    /// Connections in the pending pool now.
    pub fn pending(&self) -> usize {
        self.pool().by_age.len()
    }
}

/// A connection in the pending pool; leaves it when dropped or promoted.
#[derive(Debug)]
pub struct Pending {
    admission: Arc<Admission>,
    id: u64,
    notify: Arc<Notify>,
}

/// Why a pending connection could not take a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoSlot {
    /// Every slot of the port is taken by connections past their upgrade.
    #[error("connection limit reached ({0} open on this port; --max-kitchens/--max-eaters)")]
    Full(usize),
    /// It was closed to make room for a newer pending connection.
    #[error("closed to make room for newer connections")]
    Evicted,
}

impl Pending {
    /// Resolves when this connection must close to make room for newer ones; never once
    /// promoted (then it is no longer in the pool).
    pub async fn evicted(&self) {
        self.notify.notified().await;
    }

    /// The upgrade was accepted: leave the pending pool and take a slot, held until the
    /// permit is dropped (the connection ends).
    pub fn promote(&self) -> Result<OwnedSemaphorePermit, NoSlot> {
        let mut pool = self.admission.pool();
        if !pool.by_age.contains_key(&self.id) {
            return Err(NoSlot::Evicted);
        }
        match self.admission.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                pool.remove(self.id);
                Ok(permit)
            }
            Err(_) => {
                self.admission.refused.fetch_add(1, Ordering::Relaxed);
                Err(NoSlot::Full(self.admission.max_slots))
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.admission.pool().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: [u8; 4], port: u16) -> SocketAddr {
        (ip, port).into()
    }

    #[test]
    fn pending_connections_take_no_slot_until_promoted() {
        let admission = Admission::new(2, 100);
        let idle: Vec<Pending> = (0..50)
            .map(|i| admission.enter(at([10, 0, 0, 1 + (i % 5) as u8], 1)))
            .collect();
        assert_eq!(admission.pending(), 50);
        let a = admission.enter(at([10, 0, 0, 9], 1));
        let b = admission.enter(at([10, 0, 0, 9], 2));
        let c = admission.enter(at([10, 0, 0, 9], 3));
        let _pa = a.promote().expect("a slot");
        let pb = b.promote().expect("a slot");
        assert_eq!(c.promote().unwrap_err(), NoSlot::Full(2));
        drop(pb);
        assert!(c.promote().is_ok(), "a slot came free");
        assert_eq!(admission.pending(), 50);
        drop(idle);
        assert_eq!(admission.pending(), 0);
    }

    #[tokio::test]
    async fn a_full_pool_closes_its_oldest_and_one_address_only_its_own() {
        let admission = Admission::new(10, 4);
        let old = admission.enter(at([10, 0, 0, 1], 1));
        let rest: Vec<Pending> = (2..5)
            .map(|p| admission.enter(at([10, 0, 0, 2], p)))
            .collect();
        let newest = admission.enter(at([10, 0, 0, 3], 1));
        tokio::time::timeout(std::time::Duration::from_secs(1), old.evicted())
            .await
            .expect("the oldest was told to close");
        assert_eq!(old.promote().unwrap_err(), NoSlot::Evicted);
        assert!(newest.promote().is_ok());
        assert_eq!(admission.evicted.load(Ordering::Relaxed), 1);
        drop(rest);

        // One address past its share evicts its own oldest, not another's.
        let admission = Admission::new(10, 1000);
        let other = admission.enter(at([10, 0, 0, 7], 1));
        let flood: Vec<Pending> = (0..PENDING_PER_ADDRESS + 1)
            .map(|p| admission.enter(at([10, 0, 0, 8], p as u16)))
            .collect();
        assert_eq!(flood[0].promote().unwrap_err(), NoSlot::Evicted);
        assert!(flood[1].promote().is_ok());
        assert!(other.promote().is_ok(), "another address is untouched");
    }
}
