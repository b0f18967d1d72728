//! The dumpling ids a stream reader delivered last, so that one dumpling is never handed on
//! twice even when it is read at two stream sequences.
//!
//! Why sequences alone are not enough: nats-server 2.9.10 can leave the replicas of a
//! stream disagreeing after the whole cluster is killed and restarted (seen on disk: one
//! replica missing one message, so every later sequence there names the next message). An
//! R1 consumer reads its own server's replica, so a reader moved from one replica to
//! another sees some dumplings at a different sequence than before. JetStream keeps one
//! message per `Nats-Msg-Id` within its duplicate window, so an id seen again a few
//! thousand messages later is the same dumpling, read twice.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// Ids of the last `cap` dumplings delivered, with their stream sequences.
#[derive(Debug)]
pub struct Seen {
    order: VecDeque<(u64, Arc<str>)>,
    ids: HashSet<Arc<str>>,
    cap: usize,
}

impl Seen {
    /// Remember at most `cap` ids (at least one).
    pub fn new(cap: usize) -> Seen {
        Seen {
            order: VecDeque::new(),
            ids: HashSet::new(),
            cap: cap.max(1),
        }
    }

    /// `true` (and remembered) when `id` was not among the last delivered; `false` for a
    /// dumpling already handed on.
    pub fn admit(&mut self, sequence: u64, id: &str) -> bool {
        self.admit_shared(sequence, id).is_some()
    }

    /// [`Seen::admit`] that hands back the remembered copy of a new id, so a caller that
    /// keeps the id too shares it instead of allocating another (one allocation less per
    /// dumpling read).
    pub fn admit_shared(&mut self, sequence: u64, id: &str) -> Option<Arc<str>> {
        if self.ids.contains(id) {
            return None;
        }
        if self.order.len() >= self.cap {
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        let id: Arc<str> = id.into();
        self.ids.insert(id.clone());
        self.order.push_back((sequence, id.clone()));
        Some(id)
    }

    /// The sequence of the oldest remembered delivery: a reader may go back this far and
    /// still drop every repeat by id.
    pub fn oldest_sequence(&self) -> Option<u64> {
        self.order.front().map(|(sequence, _)| *sequence)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing was delivered yet.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_admitted_once_and_forgotten_only_past_the_bound() {
        let mut seen = Seen::new(3);
        assert!(seen.admit(10, "k-1"));
        assert!(!seen.admit(11, "k-1"), "same id at another sequence");
        assert!(seen.admit(11, "k-2"));
        assert!(seen.admit(12, "k-3"));
        assert_eq!(seen.oldest_sequence(), Some(10));
        assert!(seen.admit(13, "k-4"));
        assert_eq!(seen.len(), 3);
        assert_eq!(seen.oldest_sequence(), Some(11));
        assert!(seen.admit(14, "k-1"), "k-1 fell out of the bound");
        assert!(!seen.admit(15, "k-4"));
    }
}
