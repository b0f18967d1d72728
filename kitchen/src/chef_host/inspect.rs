//! Load-time limits read from the component before compiling it (wasmparser, no
//! validation: malformed input is left to the compiler's error): data segments and tables
//! that could never be used within the chef's limits are refused up front, instead of
//! being compiled into a large artifact (and the compiled-chef cache) first.

use wasmparser::{Parser, Payload};

use super::error::LoadError;
use super::limits::ChefLimits;

/// Largest initial table size (elements) of any core module: the runtime cap of
/// [`super::limits::ChefLimiter`].
pub const MAX_TABLE_ELEMENTS: u64 = 1 << 20;

/// Check data segments (total bytes over every core module <= the chef's memory cap: a
/// segment is only useful copied into linear memory), initial linear memory (<= the cap)
/// and initial table sizes (<= [`MAX_TABLE_ELEMENTS`]).
pub fn check_sizes(wasm: &[u8], limits: &ChefLimits) -> Result<(), LoadError> {
    let cap = limits.memory_bytes as u64;
    let mut data: u64 = 0;
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            return Ok(()); // the compiler names what is malformed
        };
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
                }
            }
            _ => {}
        }
    }
    Ok(())
}
