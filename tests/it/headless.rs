//! Headless Chromium (and chromedriver) for the browser tests, started so
//! that they always end: a failing test unwinds past any `close()`, so the
//! processes are ended by a drop guard instead.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::require_tool;

/// The browser binary, or `None` (with a loud message) when it is missing
/// outside CI; in CI a missing browser fails the test.
pub fn chromium() -> Option<PathBuf> {
    require_tool("chromium", "apt-get install chromium fonts-dejavu-core")
}

/// Ends, on drop, a process started in a process group of its own, with
/// everything it started: the group (chromedriver, the browser and its
/// renderers), then any process left that names the test's own profile
/// folder (Chromium's crash handler leaves the group).
pub struct Reaper {
    group: Option<u32>,
    profile: PathBuf,
}

impl Reaper {
    /// Spawns `command` as the leader of a new process group; `profile` is
    /// the `--user-data-dir` the browser it starts is given.
    pub fn spawn(
        command: &mut tokio::process::Command,
        profile: &Path,
    ) -> (tokio::process::Child, Self) {
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let reaper = Self {
            group: child.id(),
            profile: profile.to_owned(),
        };
        (child, reaper)
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(group) = self.group {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stderr(Stdio::null())
                .status();
        }
        for pid in naming(&self.profile) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Processes whose command line mentions `folder`.
fn naming(folder: &Path) -> Vec<u32> {
    let needle = folder.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}
