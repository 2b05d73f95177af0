//! Finds the external tools some integration tests drive (Chromium,
//! chromedriver, systemd's tools, cargo-deb, haproxy, debootstrap, curl) and sets a
//! `has_<tool>` cfg for each one found, so a test whose tool is missing
//! shows as `ignored, <how to install it>` in the default `cargo test`
//! output instead of passing silently. With `CI` set every cfg is on: a
//! missing tool then fails its test, since `.ci/run` must have installed it.

use std::env;
use std::path::PathBuf;

/// Tool on PATH, and the cfg set when it is there.
const TOOLS: [(&str, &str); 10] = [
    ("chromium", "has_chromium"),
    ("chromedriver", "has_chromedriver"),
    ("systemd-analyze", "has_systemd_analyze"),
    ("systemd-socket-activate", "has_systemd_socket_activate"),
    ("cargo-deb", "has_cargo_deb"),
    ("dpkg-deb", "has_dpkg_deb"),
    ("haproxy", "has_haproxy"),
    ("systemd-nspawn", "has_systemd_nspawn"),
    ("debootstrap", "has_debootstrap"),
    ("curl", "has_curl"),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=CI");
    let path = env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    // Installing a tool changes its directory: look again then.
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let ci = env::var_os("CI").is_some();
    for (tool, cfg) in TOOLS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if ci || dirs.iter().any(|d| d.join(tool).is_file()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
