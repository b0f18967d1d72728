//! Admission: what a file must be before the kitchen instantiates it.
//!
//! 1. The bytes: not empty, `\0asm` magic, the component layer (not a core module).
//! 2. The imports (read from the compiled component's type, before anything runs): only the
//!    chef's own `netdumplings:chef/{types,log}` of its version and the WASI interfaces a Rust or C
//!    `wasm32-wasip2` guest needs just to start (`wasi:io`, `wasi:cli` environment/exit/std
//!    streams/terminals, `wasi:clocks`, `wasi:random`). Filesystem, sockets, HTTP and
//!    anything unknown are refused by name.
//! 3. The exports: `netdumplings:chef/handler@0.2.0` or `@0.1.0` (the version decides how
//!    the kitchen calls it, see [`super::api`]); another version is a clear error.

use wasmtime::component::Component;
use wasmtime::Engine;

use super::api::ChefApi;
use super::error::LoadError;

/// The handler exports this kitchen accepts, for error messages.
pub const ACCEPTED_HANDLERS: &str =
    "netdumplings:chef/handler@0.2.0` or `netdumplings:chef/handler@0.1.0";

/// The WASI interfaces (package/interface, without version) linked for chefs. Each is
/// backed by a deny-all `WasiCtx`: no environment, no arguments, stdin closed, stdout and
/// stderr into the chef's log.
pub const ALLOWED_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Interfaces of our own package a chef may import.
const ALLOWED_OWN: &[&str] = &["netdumplings:chef/types", "netdumplings:chef/log"];

/// Check the raw bytes: a WebAssembly component, not something else.
pub fn check_binary(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.is_empty() {
        return Err(LoadError::Empty);
    }
    let Some(header) = bytes.get(..8) else {
        return Err(LoadError::NotWasm);
    };
    if &header[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Bytes 4..8: version (u16 LE) and layer (u16 LE). Core modules are version 1 layer 0;
    // components are version 0x0d layer 1 (the component-model binary format).
    let version = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    match version {
        0x0000_0001 => Err(LoadError::CoreModule),
        0x0001_000d => Ok(()),
        other => Err(LoadError::UnknownBinaryVersion(other)),
    }
}

/// Split `pkg:ns/iface@1.2.3` into (`pkg:ns/iface`, `Some("1.2.3")`).
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    }
}

fn is_wasi_0_2(version: Option<&str>) -> bool {
    version.is_some_and(|v| v.starts_with("0.2."))
}

fn forbidden_reason(iface: &str) -> &'static str {
    if iface.starts_with("wasi:filesystem/") {
        "file-system access"
    } else if iface.starts_with("wasi:sockets/") {
        "network sockets"
    } else if iface.starts_with("wasi:http/") {
        "HTTP requests"
    } else if iface.starts_with("wasi:") {
        "a WASI interface the kitchen does not provide to chefs"
    } else {
        "an interface the kitchen does not provide"
    }
}

/// Check a compiled component's imports and exports against the chef contract; answer
/// which version of it the chef was built against.
pub fn check_component(engine: &Engine, component: &Component) -> Result<ChefApi, LoadError> {
    let ty = component.component_type();
    // Exports first: a chef for another WIT version imports that version's `types` too,
    // and "built for handler@0.3.0" is the clearer message.
    let api = check_exports(engine, &ty)?;
    // Every forbidden import is collected, so the refusal names all of them (a chef using
    // `std::net` imports `wasi:filesystem/*` and `wasi:sockets/*`: both matter).
    let mut forbidden: Vec<(String, &'static str)> = Vec::new();
    for (name, _) in ty.imports(engine) {
        let (iface, version) = split_version(name);
        if ALLOWED_OWN.contains(&iface) {
            // Its own imports must be of the version its handler was built for.
            if ChefApi::from_version(version) != Some(api) {
                return Err(LoadError::WrongWitVersion {
                    found: name.to_owned(),
                    expected: api.handler_export(),
                });
            }
        } else if ALLOWED_WASI.contains(&iface) && is_wasi_0_2(version) {
            // Linked (semver-compatible within 0.2.x).
        } else {
            forbidden.push((name.to_owned(), forbidden_reason(iface)));
        }
    }
    let mut rest = forbidden.into_iter();
    match rest.next() {
        None => Ok(api),
        Some((import, why)) => Err(LoadError::ForbiddenImport {
            import,
            why,
            also: rest.collect(),
        }),
    }
}

fn check_exports(
    engine: &Engine,
    ty: &wasmtime::component::types::Component,
) -> Result<ChefApi, LoadError> {
    let exports: Vec<&str> = ty.exports(engine).map(|(n, _)| n).collect();
    for api in [ChefApi::V0_2, ChefApi::V0_1] {
        if exports.contains(&api.handler_export()) {
            return Ok(api);
        }
    }
    if let Some(other) = exports
        .iter()
        .find(|n| split_version(n).0 == "netdumplings:chef/handler")
    {
        return Err(LoadError::WrongWitVersion {
            found: (*other).to_owned(),
            expected: ACCEPTED_HANDLERS,
        });
    }
    Err(LoadError::NotAChef {
        exports: if exports.is_empty() {
            "nothing".to_owned()
        } else {
            exports.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_checks() {
        assert!(matches!(check_binary(b""), Err(LoadError::Empty)));
        assert!(matches!(
            check_binary(b"garbage garbage"),
            Err(LoadError::NotWasm)
        ));
        assert!(matches!(check_binary(b"\0asm"), Err(LoadError::NotWasm)));
        assert!(matches!(
            check_binary(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_binary(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            check_binary(b"\0asm\x0c\0\x01\0"),
            Err(LoadError::UnknownBinaryVersion(_))
        ));
    }

    #[test]
    fn versions() {
        assert!(is_wasi_0_2(Some("0.2.6")));
        assert!(!is_wasi_0_2(Some("0.3.0")));
        assert_eq!(
            forbidden_reason("wasi:filesystem/types"),
            "file-system access"
        );
    }

    #[test]
    fn forbidden_imports_are_all_named() {
        let e = LoadError::ForbiddenImport {
            import: "wasi:filesystem/types@0.2.6".into(),
            why: "file-system access",
            also: vec![("wasi:sockets/tcp@0.2.6".into(), "network sockets")],
        };
        let text = e.to_string();
        assert!(
            text.contains("`wasi:filesystem/types@0.2.6` (file-system access)"),
            "{text}"
        );
        assert!(
            text.contains("`wasi:sockets/tcp@0.2.6` (network sockets)"),
            "{text}"
        );
        assert!(text.ends_with("may not use them"), "{text}");
    }
}
