//! Load-time limits read from the component before compiling it (wasmparser, no
//! validation: malformed input is left to the compiler's error): data segments and tables
//! that could never be used within the chef's limits are refused up front, instead of
//! being compiled into a large artifact (and the compiled-chef cache) first.

use wasmparser::{Parser, Payload};

use super::error::LoadError;
use super::limits::{ChefLimits, TABLE_ELEMENT_BYTES};

/// Largest initial table size (elements) of any core module: the runtime cap of
/// [`super::limits::ChefLimiter`].
pub const MAX_TABLE_ELEMENTS: u64 = 1 << 20;

/// Check data segments (total bytes over every core module <= the chef's memory cap: a
/// segment is only useful copied into linear memory), initial linear memories and tables
/// of every core module together (<= the cap, counted as the runtime limiter counts them:
/// tables at [`TABLE_ELEMENT_BYTES`] per element) and each initial table size
/// (<= [`MAX_TABLE_ELEMENTS`]).
pub fn check_sizes(wasm: &[u8], limits: &ChefLimits) -> Result<(), LoadError> {
    let cap = limits.memory_bytes as u64;
    let mut data: u64 = 0;
    // Initial memories and tables of every core module: the least the instance holds.
    let mut initial: u64 = 0;
    let over_cap = |initial: u64| {
        LoadError::TooLarge(format!(
            "its core modules start with {initial} bytes of linear memory and tables \
             together, over the chef memory limit of {} MiB (--chef-memory-mib)",
            cap >> 20
        ))
    };
    for payload in Parser::new(0).parse_all(wasm) {
        // Parsing (not validating: function bodies are not read) is linear and cheap, so a
        // file that does not even parse is refused here, without a compile child process
        // (3000 such files took 30 s of child starts before the kitchen ran).
        let payload = payload
            .map_err(|e| LoadError::Compile(format!("malformed, refused before compiling: {e}")))?;
        match payload {
            Payload::DataSection(reader) => {
                for d in reader.into_iter().flatten() {
                    data = data.saturating_add(d.data.len() as u64);
                }
                if data > cap {
                    return Err(LoadError::TooLarge(format!(
                        "its data segments hold more than {data} bytes, over the chef memory \
                         limit of {} MiB (--chef-memory-mib)",
                        cap >> 20
                    )));
                }
            }
            Payload::MemorySection(reader) => {
                for m in reader.into_iter().flatten() {
                    let bytes = m
                        .initial
                        .saturating_mul(1 << m.page_size_log2.unwrap_or(16));
                    if bytes > cap {
                        return Err(LoadError::TooLarge(format!(
                            "it starts with {bytes} bytes of linear memory, over the chef \
                             memory limit of {} MiB (--chef-memory-mib)",
                            cap >> 20
                        )));
                    }
                    initial = initial.saturating_add(bytes);
                    if initial > cap {
                        return Err(over_cap(initial));
                    }
                }
            }
            Payload::TableSection(reader) => {
                for t in reader.into_iter().flatten() {
                    if t.ty.initial > MAX_TABLE_ELEMENTS {
                        return Err(LoadError::TooLarge(format!(
                            "it starts with a table of {} elements, over the limit of \
                             {MAX_TABLE_ELEMENTS}",
                            t.ty.initial
                        )));
                    }
                    initial = initial.saturating_add(t.ty.initial * TABLE_ELEMENT_BYTES);
                    if initial > cap {
                        return Err(over_cap(initial));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leb(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// A core module with `memories` (initial pages each) and `tables` (initial funcref
    /// elements each), encoded by hand.
    fn module(memories: &[u64], tables: &[u64]) -> Vec<u8> {
        let mut wasm = b"\0asm\x01\0\0\0".to_vec();
        let mut section = |id: u8, entries: &[u64], prefix: &[u8]| {
            if entries.is_empty() {
                return;
            }
            let mut body = Vec::new();
            leb(entries.len() as u64, &mut body);
            for &e in entries {
                body.extend_from_slice(prefix);
                body.push(0x00); // limits: minimum only
                leb(e, &mut body);
            }
            wasm.push(id);
            leb(body.len() as u64, &mut wasm);
            wasm.extend(body);
        };
        section(4, tables, &[0x70]);
        section(5, memories, &[]);
        wasm
    }

    fn limits_mib(mib: usize) -> ChefLimits {
        ChefLimits {
            memory_bytes: mib << 20,
            ..ChefLimits::default()
        }
    }

    #[test]
    fn memories_and_tables_are_checked_together_against_the_chef_cap() {
        let limits = limits_mib(128);
        // One 100 MiB memory and a small table: fine.
        assert!(check_sizes(&module(&[1600], &[1024]), &limits).is_ok());
        // Two memories each under the cap, together over it.
        let err = check_sizes(&module(&[1600, 1600], &[]), &limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("linear memory and tables together"),
            "{err}"
        );
        // 121 MiB of memory plus a 2^20-element table (8 MiB) is over 128 MiB.
        let err = check_sizes(&module(&[1936], &[1 << 20]), &limits).unwrap_err();
        assert!(err.to_string().contains("--chef-memory-mib"), "{err}");
        // The same table beside 120 MiB reaches the cap exactly.
        assert!(check_sizes(&module(&[1920], &[1 << 20]), &limits).is_ok());
    }

    #[test]
    fn one_table_over_the_element_limit_is_refused() {
        let err =
            check_sizes(&module(&[], &[MAX_TABLE_ELEMENTS + 1]), &limits_mib(4096)).unwrap_err();
        assert!(err.to_string().contains("table of"), "{err}");
    }

    #[test]
    fn a_file_that_does_not_parse_is_refused_before_compiling() {
        // A component header and junk: refused here, no compile (no child process).
        let mut junk = b"\0asm\x0d\0\x01\0junk0".to_vec();
        let limits = ChefLimits::default();
        let err = check_sizes(&junk, &limits).unwrap_err();
        assert!(
            matches!(&err, LoadError::Compile(m) if m.contains("malformed")),
            "{err}"
        );
        // A truncated section, likewise.
        junk.truncate(9);
        assert!(check_sizes(&junk, &limits).is_err());
    }
}
