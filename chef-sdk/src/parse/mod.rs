//! Parsers for what chefs commonly look at. Every parser takes hostile bytes: it returns
//! `None` on anything it does not understand, never panics, and never allocates more than
//! a small multiple of its input.
//!
//! * [`dns`]: DNS / mDNS / LLMNR messages (hand-read first question; full parse via
//!   `simple-dns`).
//! * [`tls`]: the TLS ClientHello's server name (SNI) and ALPN.
//! * [`http`]: an HTTP/1.x request line and headers (via `httparse`).
//! * [`dhcp`]: DHCPv4 (BOOTP) messages and their options.
//! * [`tunnel`]: HTTP `CONNECT` and SOCKS4/5 preludes before a stream's real conversation.

pub mod dhcp;
pub mod dns;
pub mod http;
pub mod tls;
pub mod tunnel;
