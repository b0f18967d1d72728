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
//! Each burst is framed once into one buffer ([`frame_burst`], [`crate::state::Wire`]):
//! every eater writes those bytes as they are, instead of framing and copying each
//! dumpling into its own write buffer.
//!
//! Order is kept (one channel, one task). The cost is at most the linger time of added
//! latency, paid only while dumplings keep arriving: the first dumpling after a quiet
//! spell waits the linger time, later ones less. A linger of 0 sends each one at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::state::{Origin, Shared, Wire};

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
            frame_burst(&mut burst, |message, origin, seq, wire| {
                shared.publish_wire(message, origin, seq, wire);
            });
        }
    });
    (tx, task)
}

/// Most bytes framed into one buffer: a longer burst is framed into several. Kept under
/// glibc's 64 KiB free-consolidation threshold (freeing a larger chunk sweeps the
/// allocator's fast bins, which showed in profiles of the eaters' path) and small enough
/// that a slow eater holding one frame of it holds little memory.
pub const BUFFER_BYTES: usize = 32 * 1024;

/// Frame every text and binary message of `burst` (emptied) back to back into shared
/// buffers ([`BUFFER_BYTES`] each, or one message's frame when larger) and hand each, in
/// order, to `emit` with its span, its payload re-pointed into that buffer (so the ring
/// holds these buffers rather than the NATS client's read buffers). Other messages are
/// handed on as they were, without a span.
pub fn frame_burst(
    burst: &mut Vec<Item>,
    mut emit: impl FnMut(Message, Option<Arc<Origin>>, u64, Option<Wire>),
) {
    let mut items = burst.drain(..).peekable();
    while items.peek().is_some() {
        // One buffer's worth: at least one item, then as many as fit.
        let mut chunk: Vec<Item> = Vec::new();
        let mut size = 0;
        while let Some((message, ..)) = items.peek() {
            let framed = message.len() + 10;
            if !chunk.is_empty() && size + framed > BUFFER_BYTES {
                break;
            }
            size += framed;
            chunk.extend(items.next());
        }
        let mut buffer = BytesMut::with_capacity(size);
        let mut spans = Vec::with_capacity(chunk.len());
        for (message, ..) in &chunk {
            let (data, payload): (Data, &[u8]) = match message {
                Message::Text(text) => (Data::Text, text.as_bytes()),
                Message::Binary(data) => (Data::Binary, data),
                _ => {
                    spans.push(None);
                    continue;
                }
            };
            let start = buffer.len();
            // tungstenite's own header writer (final, unmasked: as a server frames it).
            let header = FrameHeader {
                opcode: OpCode::Data(data),
                ..FrameHeader::default()
            };
            if header
                .format(payload.len() as u64, &mut (&mut buffer).writer())
                .is_err()
            {
                // Cannot happen writing to memory; the eater's writer frames it instead.
                buffer.truncate(start);
                spans.push(None);
                continue;
            }
            let body = buffer.len();
            buffer.extend_from_slice(payload);
            spans.push(Some((start, body, buffer.len())));
        }
        let buffer = buffer.freeze();
        for ((message, origin, seq), span) in chunk.into_iter().zip(spans) {
            let Some((start, body, end)) = span else {
                emit(message, origin, seq, None);
                continue;
            };
            let payload = buffer.slice(body..end);
            let message = match message {
                // Valid UTF-8 already (a copy of a `Utf8Bytes`): the check cannot fail,
                // and is paid once per dumpling, not per eater.
                Message::Text(text) => match Utf8Bytes::try_from(payload) {
                    Ok(copy) => Message::Text(copy),
                    Err(_) => Message::Text(text),
                },
                _ => Message::Binary(payload),
            };
            let wire = Wire {
                buffer: buffer.clone(),
                start,
                end,
            };
            emit(message, origin, seq, Some(wire));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::OpCode, Frame};

    /// What tungstenite itself writes for `message` as a server.
    fn tungstenite_bytes(message: &Message) -> Vec<u8> {
        let (opcode, data) = match message {
            Message::Text(t) => (
                OpCode::Data(tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text),
                bytes::Bytes::copy_from_slice(t.as_bytes()),
            ),
            Message::Binary(b) => (
                OpCode::Data(tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Binary),
                b.clone(),
            ),
            _ => unreachable!("only data frames here"),
        };
        let mut out = Vec::new();
        Frame::message(data, opcode, true)
            .format(&mut out)
            .expect("a Vec takes any frame");
        out
    }

    #[test]
    fn a_burst_is_framed_byte_for_byte_as_tungstenite_frames_each_message() {
        // Every length form: short, 16-bit and 64-bit lengths and their edges.
        let lengths = [0usize, 1, 125, 126, 127, 500, 65_535, 65_536, 70_000];
        let mut burst: Vec<Item> = Vec::new();
        for (i, &len) in lengths.iter().enumerate() {
            let body: String = (0..len)
                .map(|j| char::from(b'a' + ((i + j) % 26) as u8))
                .collect();
            burst.push((Message::text(body.clone()), None, i as u64));
            burst.push((Message::binary(body.into_bytes()), None, 100 + i as u64));
        }
        burst.push((Message::Ping(Default::default()), None, 999));
        let expected: Vec<Message> = burst.iter().map(|(m, ..)| m.clone()).collect();
        let mut framed = Vec::new();
        frame_burst(&mut burst, |m, o, s, w| framed.push((m, o, s, w)));
        assert!(burst.is_empty(), "the burst is taken");
        assert_eq!(framed.len(), expected.len());
        let mut previous: Option<Wire> = None;
        let mut buffers = 0;
        for ((message, _, seq, wire), original) in framed.into_iter().zip(expected) {
            assert_eq!(message, original, "message {seq} keeps its kind and bytes");
            if matches!(original, Message::Ping(_)) {
                assert!(wire.is_none(), "only data frames are framed");
                continue;
            }
            let wire = wire.expect("data frames have their wire bytes");
            assert_eq!(wire.bytes(), tungstenite_bytes(&original), "frame {seq}");
            // The payload is the span's tail: the ring holds the burst buffer only.
            assert_eq!(
                message.clone().into_data().as_ptr(),
                wire.bytes()[wire.bytes().len() - original.len()..].as_ptr()
            );
            assert!(
                wire.buffer.len() <= BUFFER_BYTES || wire.start == 0,
                "a buffer is at most {BUFFER_BYTES} bytes unless it holds one large frame"
            );
            match &previous {
                Some(previous) if previous.precedes(&wire) => {}
                _ => {
                    assert_eq!(wire.start, 0, "frame {seq} starts a new buffer");
                    buffers += 1;
                }
            }
            previous = Some(wire);
        }
        // 18 data frames, six of them over 32 KiB: more than one buffer, fewer than 18.
        assert!((2..18).contains(&buffers), "{buffers} buffers");
    }
}
