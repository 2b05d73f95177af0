//! Looks for the tools of `src/tools.rs` on `PATH` and writes the ones found
//! to `$OUT_DIR/found.rs`, which the macro reads. With `CI` set every tool
//! counts as found: a missing one then fails its test, since `.ci/run` must
//! have installed it.
//!
//! Installing a tool changes a `PATH` directory, which reruns this script,
//! which rebuilds this crate and so the tests that use it: `cargo test` sees
//! a new tool without a `cargo clean`. This crate is a dev-dependency only,
//! so none of that reaches the gateway's own build.

use std::env;
use std::path::PathBuf;

include!("src/tools.rs");

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/tools.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    let path = env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let ci = env::var_os("CI").is_some();
    let found: Vec<&str> = TOOLS
        .iter()
        .map(|(tool, _)| *tool)
        .filter(|tool| ci || dirs.iter().any(|d| d.join(tool).is_file()))
        .collect();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(
        out.join("found.rs"),
        format!("pub(crate) const FOUND: &[&str] = &{found:?};\n"),
    )
    .expect("OUT_DIR is writable");
}
