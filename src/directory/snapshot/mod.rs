//! The index on disk (`state_dir`), so a restart answers at once and
//! syncs incrementally: written atomically, mode 0600, after each full
//! sync, then at most every `snapshot_every_s` while incremental syncs
//! changed the index (a record seen again as it was is no change), and at
//! a clean stop if it changed, within a bound (a stop never waits on a
//! hung disk: the write is abandoned, and the previous snapshot stays).
//! Writing is the index's arrays as they are and the changes beside them
//! ([`format`]), off the async workers, in a task of its own: a sync never
//! waits on the disk. Read at start; only the numbers and the values the
//! reply needs are kept.

mod format;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::index::Index;
use super::Directory;
use crate::backend::Backend;
use crate::constants::DIRECTORY_STOP_SAVE;
use crate::metrics::Metrics;
use format::{decode, encode, Header};

/// One snapshot written at a time in the process: two writes never share
/// the temporary file, and a stop waits for the write under way.
static WRITER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Reads the snapshot at start, off the async workers, when the index is
/// still empty (a reload may have handed it over) and the snapshot was
/// written by a directory defined the same way.
pub(super) async fn restore(backend: &Weak<Backend>) {
    let (name, path, definition) = {
        let Some(b) = backend.upgrade() else { return };
        let Some(dir) = b.directory.as_ref() else {
            return;
        };
        let Some(path) = dir.settings.snapshot.clone() else {
            return;
        };
        if dir.status().built.is_some() {
            return;
        }
        (b.name.clone(), path, dir.definition)
    };
    let read = tokio::task::spawn_blocking(move || {
        leftovers(&path);
        let bytes = match crate::files::read(&path, crate::files::MAX_SNAPSHOT_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(older(&path)),
            Err(e) => return Err(e.to_string()),
        };
        match decode(&bytes, definition) {
            // The changes go back into maps: off the workers too.
            Ok((t, header)) => Ok(Some((Index::thaw(t.base, t.masked, t.changed), header))),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let (index, header) = match read {
        Ok(Ok(Some(read))) => read,
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(e)) => {
            tracing::warn!(backend = %name, "directory snapshot not read, {e}: a full sync builds the index");
            return;
        }
    };
    let Some(b) = backend.upgrade() else { return };
    let Some(dir) = b.directory.as_ref() else {
        return;
    };
    let now_wall = time::OffsetDateTime::now_utc();
    let ago = |unix: i64| {
        let secs = (now_wall.unix_timestamp() - unix).max(0);
        Instant::now()
            .checked_sub(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
            .unwrap_or_else(Instant::now)
    };
    let entries = index.len();
    let version = index.version();
    *dir.index.write().unwrap_or_else(|e| e.into_inner()) = index;
    dir.update_status(|s| {
        s.written = super::Written {
            at: Some(Instant::now()),
            version: Some(version),
        };
        s.built = Some(ago(header.built));
        s.fresh = Some(ago(header.fresh));
        s.last_full_try = s.built;
        s.since = time::OffsetDateTime::from_unix_timestamp(header.fresh).ok();
        s.entries = entries;
        s.last = format!("read from its snapshot: {entries} number(s)");
    });
    tracing::info!(
        backend = %name, entries,
        age_s = (now_wall.unix_timestamp() - header.fresh).max(0),
        "directory read from its snapshot"
    );
}

/// A snapshot of version 1 (JSON, `directory-NAME.json` beside the
/// current one) is not read; it is removed, since it holds contacts'
/// names the gateway no longer keeps up to date.
fn older(path: &std::path::Path) -> Option<(Index, Header)> {
    let old = path.with_extension("json");
    if std::fs::remove_file(&old).is_ok() {
        tracing::info!(file = %old.display(), "directory snapshot of an older format removed: a full sync builds the index");
    }
    None
}

/// Whether the snapshot is to be written now: the index changed since
/// the last one, which was tried at least `snapshot_every` ago or before
/// the last full sync (whose write found another under way).
pub(super) fn due(dir: &Directory, now: Instant) -> bool {
    if dir.settings.snapshot.is_none() || dir.retired() {
        return false;
    }
    let status = dir.status();
    let Some(built) = status.built else {
        return false;
    };
    let version = dir
        .index
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .version();
    status.written.version != Some(version)
        && status
            .written
            .at
            .is_none_or(|at| now >= at + dir.settings.snapshot_every || at < built)
}

/// Starts writing the snapshot, unless a write is under way (then the
/// next due check tries again).
pub(super) fn save(b: &Arc<Backend>, metrics: &Arc<Metrics>) {
    let Ok(guard) = WRITER.try_lock() else {
        return;
    };
    let (backend, metrics) = (Arc::downgrade(b), Arc::clone(metrics));
    tokio::spawn(async move {
        write(&backend, &metrics).await;
        drop(guard);
    });
}

/// At a clean stop, writes the snapshot of each directory whose index
/// changed since its last one, within [`DIRECTORY_STOP_SAVE`] in all.
pub async fn save_at_stop<'a>(
    backends: impl IntoIterator<Item = &'a Arc<Backend>>,
    metrics: &Metrics,
) {
    let deadline = Instant::now() + DIRECTORY_STOP_SAVE;
    for b in backends {
        if b.directory
            .as_ref()
            .is_none_or(|d| d.settings.snapshot.is_none())
        {
            continue;
        }
        let backend = Arc::downgrade(b);
        let written = tokio::time::timeout_at(deadline, async {
            let _guard = WRITER.lock().await;
            write(&backend, metrics).await;
        })
        .await;
        if written.is_err() {
            tracing::warn!(
                backend = %b.name,
                after_s = DIRECTORY_STOP_SAVE.as_secs(),
                "directory snapshot not written in time at the stop: abandoned, the previous snapshot stays"
            );
        }
    }
}

/// Writes the snapshot if the index changed since the last one: its state
/// taken under the read lock (the arrays shared, the changes copied), then
/// encoded and written, all off the async workers.
async fn write(backend: &Weak<Backend>, metrics: &Metrics) {
    let Some(b) = backend.upgrade() else { return };
    let Some(dir) = b.directory.as_ref() else {
        return;
    };
    let Some(path) = dir.settings.snapshot.clone() else {
        return;
    };
    let status = dir.status();
    let (Some(built), Some(fresh)) = (status.built, status.fresh) else {
        return;
    };
    if dir.retired() {
        return;
    }
    // The status is read before the index: the snapshot holds at least
    // what the syncs up to `fresh` brought.
    let wall = |at: Instant| (time::OffsetDateTime::now_utc() - at.elapsed()).unix_timestamp();
    let header = Header {
        definition: dir.definition,
        built: wall(built),
        fresh: wall(fresh),
    };
    let started = Instant::now();
    dir.update_status(|s| s.written.at = Some(started));
    let (name, owner, last) = (b.name.clone(), Arc::clone(&b), status.written.version);
    drop(b);
    let done = tokio::task::spawn_blocking(move || {
        let (version, numbers, frozen) = {
            let dir = owner.directory.as_ref()?;
            let index = dir.index.read().unwrap_or_else(|e| e.into_inner());
            (index.version(), index.len(), index.freeze())
        };
        drop(owner);
        if last == Some(version) {
            return None;
        }
        let written =
            crate::files::write_atomic_with(&path, 0o600, |out| encode(&frozen, header, out));
        Some((version, numbers, frozen.changed.len(), written))
    })
    .await;
    let Ok(Some((version, numbers, changed, written))) = done else {
        return;
    };
    match written {
        Ok(()) => {
            if let Some(dir) = backend
                .upgrade()
                .as_ref()
                .and_then(|b| b.directory.as_ref())
            {
                dir.update_status(|s| s.written.version = Some(version));
            }
            metrics.directory_snapshot_write(&name, "ok");
            tracing::info!(
                backend = %name, numbers, changed,
                ms = started.elapsed().as_millis() as u64,
                "directory snapshot written"
            );
        }
        Err(e) => {
            metrics.directory_snapshot_write(&name, "failed");
            tracing::warn!(backend = %name, error = %e, "directory snapshot not written");
        }
    }
}

/// Removes the temporary files of snapshot writes a stop abandoned (or a
/// crash cut), beside `path`.
fn leftovers(path: &std::path::Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let prefix = format!(".{name}.");
    // This process's own: a write of another generation may be under way.
    let own = format!(".{name}.{}.tmp", std::process::id());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten().take(10_000) {
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if file.starts_with(&prefix) && file.ends_with(".tmp") && file != own {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
