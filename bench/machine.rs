//! What the benchmark examples print about the machine they ran on: times
//! on a shared machine mean little without its load.

/// The load average over 1, 5 and 15 minutes, as `/proc/loadavg` says.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}
