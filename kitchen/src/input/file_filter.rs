//! The `--filter` BPF expression applied to packets replayed from a file, so a replay sees
//! what a live capture with the same filter would have seen (the original's offline mode
//! pre-filtered with tcpdump). Live capture applies the filter in libpcap itself.
//!
//! libpcap compiles one program per link type (a pcapng file can mix several); a link type
//! libpcap cannot compile the filter for lets its packets through, with one warning.

use std::collections::HashMap;

use capture::PacketRecord;
use pcap::{BpfProgram, Capture, Linktype};

/// A compiled filter, per link type.
pub struct FileFilter {
    expression: String,
    programs: HashMap<u32, Option<BpfProgram>>,
}

/// The filter expression does not compile.
#[derive(Debug, thiserror::Error)]
#[error("bad capture filter {expression:?}: {message}")]
pub struct FilterError {
    /// The expression.
    pub expression: String,
    /// libpcap's message.
    pub message: String,
}

impl FileFilter {
    /// Compile `expression` for Ethernet up front, so a typo fails at start-up.
    pub fn new(expression: &str) -> Result<Self, FilterError> {
        let mut f = FileFilter {
            expression: expression.to_owned(),
            programs: HashMap::new(),
        };
        let ethernet = compile(expression, 1).map_err(|message| FilterError {
            expression: expression.to_owned(),
            message,
        })?;
        f.programs.insert(1, Some(ethernet));
        Ok(f)
    }

    /// Does the packet pass?
    pub fn matches(&mut self, record: &PacketRecord<'_>) -> bool {
        let expression = &self.expression;
        let program = self.programs.entry(record.link_type).or_insert_with(|| {
            match compile(expression, record.link_type) {
                Ok(p) => Some(p),
                Err(message) => {
                    tracing::warn!(link_type = record.link_type, filter = %expression, %message,
                        "cannot apply the filter to this link type; its packets pass unfiltered");
                    None
                }
            }
        });
        match program {
            Some(p) => p.filter(record.data),
            None => true,
        }
    }
}

fn compile(expression: &str, link_type: u32) -> Result<BpfProgram, String> {
    let dlt =
        i32::try_from(link_type).map_err(|_| format!("link type {link_type} out of range"))?;
    let dead = Capture::dead(Linktype(dlt)).map_err(|e| e.to_string())?;
    dead.compile(expression, true).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_protocol_and_rejects_typos() {
        assert!(FileFilter::new("tcp or udp or arp").is_ok());
        assert!(FileFilter::new("tcp and and").is_err());
        let mut f = FileFilter::new("arp").unwrap();
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        let rec = PacketRecord {
            timestamp_ns: 0,
            link_type: 1,
            interface_index: 0,
            original_len: arp.len() as u32,
            data: &arp,
        };
        assert!(f.matches(&rec));
        let mut ip = arp.clone();
        ip[12] = 0x08;
        ip[13] = 0x00;
        let rec = PacketRecord { data: &ip, ..rec };
        assert!(!f.matches(&rec));
    }
}
