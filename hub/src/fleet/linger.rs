//! Handing the live consumer's dumplings to the fan-out ring in small bursts
//! (`--nats-deliver-linger`).
//!
//! Why: every ring send wakes every eater task, and a woken eater drains what is there and
//! writes it out (one socket write per wake-up). A kitchen's socket delivers dumplings in
//! bursts, so its eaters write many per wake-up; a JetStream consumer delivers them spread
//! out at the stream's pace, so without this each eater woke and wrote about once per
//! dumpling (measured: the hub's CPU per delivered dumpling rose from 280 to 440 ns with
//! `--nats`, with 100 eaters). Holding what arrives for at most the linger time and
//! sending it to the ring back to back lets each eater take the whole burst in one write.
//!
//! Order is kept (one channel, one task). The cost is at most the linger time of added
//! latency, paid only while dumplings keep arriving: the first dumpling after a quiet
//! spell waits the linger time, later ones less. A linger of 0 sends each one at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::state::{Origin, Shared};

/// Most dumplings sent to the ring in one burst (then the next burst starts at once).
pub const MAX_BURST: usize = 1024;
/// Dumplings waiting between the consumer and the ring before the consumer waits.
pub const QUEUE: usize = 4096;

/// One dumpling on its way to the ring.
pub type Item = (Message, Option<Arc<Origin>>, u64);

/// Start the task that moves dumplings from the returned sender to `shared`'s ring in
/// bursts gathered for `linger` (> 0). Ends when every sender is dropped.
pub fn start(
    shared: Arc<Shared>,
    linger: Duration,
) -> (mpsc::Sender<Item>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
    let task = tokio::spawn(async move {
        let mut burst: Vec<Item> = Vec::with_capacity(64);
        while let Some(first) = rx.recv().await {
            burst.push(first);
            // Let the burst gather (neither this task nor the eaters wake meanwhile),
            // then take whatever is queued.
            tokio::time::sleep(linger).await;
            while burst.len() < MAX_BURST {
                match rx.try_recv() {
                    Ok(item) => burst.push(item),
                    Err(_) => break,
                }
            }
            for (message, origin, seq) in burst.drain(..) {
                shared.publish_seq(message, origin, seq);
            }
        }
    });
    (tx, task)
}
