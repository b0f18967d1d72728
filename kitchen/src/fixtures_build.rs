//! Builds the kitchen's test fixtures (`kitchen/fixtures/`, tiny chef components) and
//! returns the directory holding the `.wasm` files. Shared by `kitchen/tests/` and
//! `nd-kitchen-bench` through `#[path]`, so neither needs a manual build step.
//!
//! The nested cargo runs with the variables an outer `cargo test`/`cargo run` exports
//! removed (they would redirect the target dir or leak host rustflags into a wasm build).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (`kitchen/..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("kitchen/ lives in the workspace")
        .to_path_buf()
}

/// Build the fixtures (incremental: ~1 s when nothing changed) and return the directory
/// with `noop_chef.wasm`, `noop_sdk_chef.wasm`, `slots_chef{,_plain}.wasm`, `echo_chef.wasm`, `clock_chef.wasm`, `port_chef.wasm`,
/// `panic_chef.wasm`, `spin_chef.wasm`, `work_chef.wasm`, `hog_chef.wasm`, `fs_chef.wasm`, `v2_chef.wasm`,
/// `reload_chef{,_v2}.wasm`, `state_chef{,_v2}.wasm`, `sparse_chef.wasm`, `answer_chef.wasm`,
/// `verdict_chef.wasm`, `same_chef.wasm`, `pairs_chef.wasm`, `snapshot_trap_chef.wasm`.
pub fn build_fixtures() -> Result<PathBuf, String> {
    let root = workspace_root();
    let target = root.join("target").join("kitchen-fixtures");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--manifest-path"])
        .arg(root.join("kitchen/fixtures/Cargo.toml"))
        .args(["--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target);
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building kitchen/fixtures failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target.join("wasm32-wasip2").join("release"))
}
