//! What a hub delivers from the stream is checked as kitchen ingest checks it: a valid
//! dumpling, no hub-reserved chef name, within `--max-message-bytes`.
//!
//! Why again, when the publishing hub checked it: the stream stores whatever any NATS
//! client with publish rights on `<prefix>.>` sends, headers included. A client that is
//! no hub put invalid JSON, raw bytes, a forged `SystemStatusChef` and a forged
//! `HubNoticeChef` in front of every eater of every hub. The hub cannot tell a forged
//! kitchen name from a real one (the kitchen's identity was enforced by the hub that
//! published it, and a header saying so could be forged too): restricting publish rights
//! on the stream's subjects to the hubs' NATS users is what makes the stream trusted
//! (ARCHITECTURE.md, *Fleet*). This check keeps everything else out.

use std::sync::atomic::Ordering;

use dumpling::repeat::RepeatMemo;
use tokio_tungstenite::tungstenite::Message;
use tracing::warn;

use super::FleetStats;
use crate::kitchen::{classify_repeating, Action};

/// The read-back check of one consumer (its memo of repeated payloads is its own).
#[derive(Debug)]
pub struct StreamCheck {
    max_bytes: usize,
    repeats: RepeatMemo,
}

impl StreamCheck {
    /// A check for messages of at most `max_bytes` (`--max-message-bytes`).
    pub fn new(max_bytes: usize) -> Self {
        StreamCheck {
            max_bytes,
            repeats: RepeatMemo::new(),
        }
    }

    /// The chef and kitchen of a message a hub could have published; `None` (counted in
    /// `stats.unchecked`, logged the first few times and every 1000th) for anything else.
    pub fn check(
        &mut self,
        message: &Message,
        sequence: u64,
        stats: &FleetStats,
    ) -> Option<(String, Option<String>)> {
        let why = if message.len() > self.max_bytes {
            format!(
                "{} bytes, over --max-message-bytes ({})",
                message.len(),
                self.max_bytes
            )
        } else {
            match classify_repeating(message, &mut self.repeats) {
                Action::Forward { chef, kitchen } => return Some((chef, kitchen)),
                Action::Reserved { chef } => format!(
                    "chef name {} is reserved for the hub",
                    dumpling::text::escape(&chef, 64)
                ),
                Action::Invalid(invalid) => {
                    format!(
                        "not a dumpling: {}",
                        dumpling::text::escape(&invalid.to_string(), 256)
                    )
                }
                Action::Ignore | Action::Close => "not a data message".to_owned(),
            }
        };
        let n = stats.unchecked.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 5 || n.is_multiple_of(1000) {
            warn!(
                sequence,
                dropped = n,
                "fleet: stream message no hub would have published ({why}); not delivered (restrict publish rights on the stream's subjects to the hubs)"
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_hub_would_publish_passes() {
        let stats = FleetStats::default();
        let mut check = StreamCheck::new(1024);
        let good = r#"{"metadata": {"chef": "C", "kitchen": "k", "creation_time": 1.5, "driver": "packet"}, "payload": {}}"#;
        assert_eq!(
            check.check(&Message::text(good), 1, &stats),
            Some(("C".to_owned(), Some("k".to_owned())))
        );
        let forged_status = good.replace("\"C\"", "\"SystemStatusChef\"");
        let forged_notice = good.replace("\"C\"", "\"HubNoticeChef\"");
        let big = good.replace("{}}", &format!("\"{}\"}}", "x".repeat(2000)));
        for bad in [
            Message::text("this is not json"),
            Message::binary(b"\xff\xfe\x00garbage".to_vec()),
            Message::text(forged_status),
            Message::text(forged_notice),
            Message::text(big),
        ] {
            assert_eq!(check.check(&bad, 2, &stats), None, "{bad:?}");
        }
        assert_eq!(stats.unchecked.load(Ordering::Relaxed), 5);
    }
}
