//! A filtering eater's own backlog: the frames it admits, taken from the ring ahead of
//! writing them, so `--eater-queue-bytes` is measured in what *it* still has to take.
//!
//! Why: an eater is behind by the bytes published after the frame it is about to write.
//! For an eater that takes everything that is exactly its backlog. For one that takes a
//! few chefs (`nd_chefs`), kitchens, or what its `--auth` principal may see, it is not:
//! under a flood of other chefs' dumplings the ring's head ran far ahead of such an eater
//! in the time it took to walk past them, and it lost its own dumplings, though it had
//! almost nothing of its own to write. So when the ring's count says such an eater is too
//! far behind, the eater takes what the ring holds now (skipping what it does not admit),
//! and only the bytes it admits after the frame at hand decide whether that frame is
//! dropped. What is held stays within the bound plus one frame, and each fill takes a
//! bounded number of frames, so a fill never holds a worker thread for long.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::broadcast::Receiver;

use crate::fleet::replay::Plan;
use crate::state::Frame;

/// Most frames one [`Backlog::fill`] takes from the ring.
const FILL_MAX_FRAMES: usize = 4096;

/// Admitted frames taken from the ring and not written yet, oldest first.
#[derive(Default)]
pub(crate) struct Backlog {
    frames: VecDeque<Frame>,
    /// Message bytes of `frames`.
    bytes: u64,
}

impl Backlog {
    /// The oldest held frame.
    pub(crate) fn pop(&mut self) -> Option<Frame> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.message.len() as u64;
        Some(frame)
    }

    /// Bytes of the admitted frames held (all after the frame being written).
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Take what the ring holds now, keeping the frames `plan` admits, until more than
    /// `bound` bytes are held, the ring is empty or [`FILL_MAX_FRAMES`] were taken.
    /// `position` follows the last frame taken (see `eater::far_behind`). Returns how many
    /// frames the ring dropped before this eater could take them.
    pub(crate) fn fill(
        &mut self,
        rx: &mut Receiver<Frame>,
        plan: &Plan,
        position: &AtomicU64,
        bound: u64,
    ) -> u64 {
        let mut missed = 0;
        for _ in 0..FILL_MAX_FRAMES {
            if self.bytes > bound {
                break;
            }
            match rx.try_recv() {
                Ok(frame) => {
                    position.store(frame.end_offset, Ordering::Relaxed);
                    if plan.admits(&frame) {
                        self.bytes += frame.message.len() as u64;
                        self.frames.push_back(frame);
                    }
                }
                Err(TryRecvError::Lagged(n)) => missed += n,
                // Closed is seen again by the next receive, once the held frames are out.
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        missed
    }

    /// The next frame: a held one at once, else the ring's next.
    pub(crate) async fn next(&mut self, rx: &mut Receiver<Frame>) -> Result<Frame, RecvError> {
        match self.pop() {
            Some(frame) => Ok(frame),
            None => rx.recv().await,
        }
    }

    /// The next frame without waiting: a held one, else whatever the ring has ready.
    pub(crate) fn try_next(
        &mut self,
        rx: &mut Receiver<Frame>,
    ) -> Option<Result<Frame, RecvError>> {
        if let Some(frame) = self.pop() {
            return Some(Ok(frame));
        }
        match rx.try_recv() {
            Ok(frame) => Some(Ok(frame)),
            Err(TryRecvError::Lagged(missed)) => Some(Err(RecvError::Lagged(missed))),
            Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
            Err(TryRecvError::Empty) => None,
        }
    }
}
