//! `run --watch`: reload when the config file or a file it names
//! (certificate, key, CA bundle, secret) changes, through the same
//! check-then-swap as SIGHUP ([`crate::reload`]).
//!
//! Files are polled (modification time, size, inode) once a second rather
//! than watched with inotify: polling needs no dependency, sees a file an
//! editor or `certbot` replaces by rename as well as one written in place,
//! and a second is quick enough for a person editing a file. A change is
//! acted on once it has held still for one poll, so a file caught
//! half-written is read on a later tick; a change that fails to load is
//! tried again only when the files change again.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::gateway::Live;
use crate::reload;

/// How often the files are looked at.
const POLL: Duration = Duration::from_secs(1);

/// What a file looked like at one poll; `None` when it could not be read.
type Stamp = Option<(SystemTime, u64, u64)>;

/// Polls until the runtime stops; each settled change triggers a reload.
pub async fn run(live: Arc<Live>) {
    let mut files = watched(&live);
    let mut seen = stamps(files.clone()).await;
    let mut tried = seen.clone();
    tracing::info!(
        files = files.len(),
        "watching the config and the files it names (--watch)"
    );
    loop {
        tokio::time::sleep(POLL).await;
        let now = stamps(files.clone()).await;
        if now != seen {
            // Changed since the last poll: let it settle for one more.
            seen = now;
            continue;
        }
        if now == tried {
            continue;
        }
        let changed = files
            .iter()
            .zip(now.iter().zip(&tried))
            .find(|(_, (a, b))| a != b)
            .map_or_else(
                || "a watched file".to_owned(),
                |(f, _)| f.display().to_string(),
            );
        tried = now;
        let cause = format!("{changed} changed");
        let task_live = Arc::clone(&live);
        let applied = tokio::task::spawn_blocking(move || reload::reload(&task_live, &cause))
            .await
            .is_ok_and(|result| result.is_ok());
        if applied {
            // The new config may name other files.
            files = watched(&live);
            seen = stamps(files.clone()).await;
            tried = seen.clone();
        }
    }
}

/// The config file first, then the files it names.
fn watched(live: &Live) -> Vec<PathBuf> {
    let gateway = live.current();
    let mut files = vec![gateway.config.file.clone()];
    files.extend(gateway.config.files.iter().cloned());
    files
}

async fn stamps(files: Vec<PathBuf>) -> Vec<Stamp> {
    tokio::task::spawn_blocking(move || files.iter().map(|f| stamp(f)).collect())
        .await
        .unwrap_or_default()
}

fn stamp(file: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(file).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}
