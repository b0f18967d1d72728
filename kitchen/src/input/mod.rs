//! Capture input as the kitchen adjusts it before parsing: the `--filter` BPF expression for
//! replayed files ([`file_filter`]), the bounded check of any filter before libpcap
//! compiles it ([`filter_check`]), and the replay's progress line ([`progress`]). Reading
//! captures (live, pcap, pcapng, pipes) is the `capture` crate's job.

pub mod file_filter;
pub mod filter_check;
pub mod progress;
