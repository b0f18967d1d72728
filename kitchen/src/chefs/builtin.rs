//! The sample chefs built into `nd-sniff` (compiled from `chefs/` by `build.rs`).

/// One embedded chef component.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinChef {
    /// File name of the component, e.g. `arp_chef.wasm`.
    pub file: &'static str,
    /// The component bytes.
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtin_chefs.rs"));

/// The hello's `chefs` entry prefix for built-in chefs: the original's module name, so
/// `"netdumplings.dumplingchefs.ARPChef"` reads the same as from the Python kitchen.
pub const BUILTIN_MODULE: &str = "netdumplings.dumplingchefs";
