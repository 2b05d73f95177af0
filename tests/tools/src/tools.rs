// The external tools integration tests drive, and how to get each one: one
// list, which build.rs looks for and the macro names (plain comments, as
// build.rs include!s this file).

/// A tool on PATH and the command that installs it on Debian.
pub(crate) const TOOLS: [(&str, &str); 10] = [
    ("chromium", "apt-get install chromium"),
    ("chromedriver", "apt-get install chromium-driver"),
    ("systemd-analyze", "apt-get install systemd"),
    ("systemd-socket-activate", "apt-get install systemd"),
    ("cargo-deb", "cargo install cargo-deb --locked"),
    ("dpkg-deb", "apt-get install dpkg"),
    ("haproxy", "apt-get install haproxy"),
    ("systemd-nspawn", "apt-get install systemd-container"),
    ("debootstrap", "apt-get install debootstrap"),
    ("curl", "apt-get install curl"),
];
