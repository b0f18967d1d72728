//! The `--filter` BPF expression applied to packets replayed from a file, so a replay sees
//! what a live capture with the same filter would have seen (the original's offline mode
//! pre-filtered with tcpdump). Live capture applies the filter in libpcap itself.
//!
//! libpcap compiles one program per link type (a pcapng file can mix several); the packets
//! of a link type libpcap cannot compile the filter for do not pass (one warning; counted as
//! not passing): a filter that excludes traffic (privacy, noise) must never fail open. With a
//! [`FilterCheck`], each compile is first tried in a bounded child, so a filter too complex
//! for libpcap's optimizer is refused instead of stalling the replay.

use std::collections::HashMap;

use capture::PacketRecord;
use dumpling::text::Escaped;
use pcap::{BpfProgram, Capture, Linktype};

use super::filter_check::FilterCheck;

/// A compiled filter, per link type.
pub struct FileFilter {
    expression: String,
    programs: HashMap<u32, Option<BpfProgram>>,
    check: Option<FilterCheck>,
}

/// The filter expression does not compile.
#[derive(Debug, thiserror::Error)]
#[error(
    "bad capture filter \"{}\": {}",
    Escaped::with_max(expression, 200),
    Escaped::with_max(message, 1024)
)]
pub struct FilterError {
    /// The expression.
    pub expression: String,
    /// libpcap's message, or why the check refused it.
    pub message: String,
    /// The refusal holds whatever the link type: the filter is too complex to compile in
    /// time, or the check could not run (libpcap's own refusals are per link type).
    pub for_every_link_type: bool,
}

impl FileFilter {
    /// Compile `expression` for Ethernet up front, so a typo fails at start-up; with
    /// `check`, every compile (this one and one per further link type) is first tried in a
    /// bounded child.
    pub fn new(expression: &str, check: Option<FilterCheck>) -> Result<Self, FilterError> {
        let mut f = FileFilter {
            expression: expression.to_owned(),
            programs: HashMap::new(),
            check,
        };
        let ethernet = compile_checked(&f.expression, f.check.as_ref(), 1)?;
        f.programs.insert(1, Some(ethernet));
        Ok(f)
    }

    /// Does the packet pass?
    pub fn matches(&mut self, record: &PacketRecord<'_>) -> bool {
        let (expression, check) = (&self.expression, self.check.as_ref());
        let program =
            self.programs.entry(record.link_type).or_insert_with(|| {
                match compile_checked(expression, check, record.link_type) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(
                            link_type = record.link_type,
                            "{e}; \
                        the filter cannot be applied to this link type: its packets are left out \
                        (counted as not passing the filter)"
                        );
                        None
                    }
                }
            });
        match program {
            Some(p) => p.filter(record.data),
            None => false,
        }
    }
}

/// The bounded check (when set), then the compile in this process.
fn compile_checked(
    expression: &str,
    check: Option<&FilterCheck>,
    link_type: u32,
) -> Result<BpfProgram, FilterError> {
    if let Some(check) = check {
        check.check(expression, link_type)?;
    }
    compile(expression, link_type).map_err(|message| FilterError {
        expression: expression.to_owned(),
        message,
        for_every_link_type: false,
    })
}

/// libpcap's optimizing compile of `expression` for `link_type`; `Err`: libpcap's message.
pub(super) fn compile(expression: &str, link_type: u32) -> Result<BpfProgram, String> {
    let dlt =
        i32::try_from(link_type).map_err(|_| format!("link type {link_type} out of range"))?;
    let dead = Capture::dead(Linktype(dlt)).map_err(|e| e.to_string())?;
    dead.compile(expression, true).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` as a whole frame of `link_type`.
    fn record(link_type: u32, data: &[u8]) -> PacketRecord<'_> {
        PacketRecord {
            timestamp_ns: 0,
            link_type,
            interface_index: 0,
            original_len: data.len() as u32,
            data,
        }
    }

    #[test]
    fn filters_by_protocol_and_rejects_typos() {
        assert!(FileFilter::new("tcp or udp or arp", None).is_ok());
        assert!(FileFilter::new("tcp and and", None).is_err());
        let mut f = FileFilter::new("arp", None).unwrap();
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert!(f.matches(&record(1, &arp)));
        let mut ip = arp.clone();
        ip[12] = 0x08;
        ip[13] = 0x00;
        assert!(!f.matches(&record(1, &ip)));
    }

    #[test]
    fn packets_of_a_link_type_the_filter_cannot_apply_to_do_not_pass() {
        // libpcap cannot filter NFLOG (239) by protocol: an exclusion filter let every
        // packet of such a capture through.
        let mut f = FileFilter::new("not tcp", None).unwrap();
        let data = [0u8; 64];
        let rec = record(239, &data);
        assert!(!f.matches(&rec));
        assert!(
            !f.matches(&rec),
            "the second packet too (the verdict is kept)"
        );
    }
}
