//! Capture input as the kitchen adjusts it before parsing: the `--filter` BPF expression for
//! replayed files ([`file_filter`]) and the replay's progress line ([`progress`]). Reading
//! captures (live, pcap, pcapng, pipes) is the `capture` crate's job.

pub mod file_filter;
pub mod progress;
