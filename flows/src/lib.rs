//! Connection tracking for the netdumplings kitchen (issue 13, chef API 0.2).
//!
//! * [`table`]: the bounded flow table: TCP, UDP and ICMP connections by 5-tuple, both
//!   directions, TCP state from flags, idle timeouts, least-recently-used eviction, and the
//!   `started` / `ended(summary)` events chefs may ask for.
//! * [`reassembly`]: in-order TCP stream reassembly per flow and direction, up to the bytes
//!   chefs ask for, with bounded out-of-order buffers (helper `streams`).
//! * [`idset`]: a set of keys handed out in increasing order (flow ids), whose recent keys
//!   sit next to each other in memory (a stream lane's given-up directions).
//!
//! The crate knows nothing of WIT records or capture formats: the kitchen hands it the few
//! facts of each parsed packet ([`table::PacketMeta`]) and converts what comes back.
//! Each module lives in its own file; this file only lists them.

pub mod idset;
pub mod reassembly;
pub mod table;
