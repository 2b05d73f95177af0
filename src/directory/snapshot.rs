//! The index on disk (`state_dir`): written atomically, mode 0600, after
//! each sync that changed it, and read at start, so a restart answers at
//! once and syncs incrementally. Only the numbers and the values the reply
//! needs are kept.

use std::sync::{Arc, Weak};
use std::time::Duration;

use minijinja::value::Value;
use tokio::time::Instant;

use super::index::{insert, Entry, Index, Key};
use super::Directory;
use crate::backend::Backend;

/// The index on disk: only the values the reply needs, and the numbers.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Snapshot {
    /// The directory's definition: a changed config does not read it.
    definition: u64,
    /// When the last good full sync began (Unix seconds).
    built: i64,
    /// When the last good sync began (Unix seconds): `since`, and its age.
    fresh: i64,
    records: Vec<SavedRecord>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedRecord {
    id: Option<u64>,
    numbers: Vec<Key>,
    /// In the order of the backend's `extract` (the definition is the same).
    values: Vec<serde_json::Value>,
}

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
        let bytes = crate::files::read(&path, crate::files::MAX_SNAPSHOT_BYTES)?;
        serde_json::from_slice::<Snapshot>(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    })
    .await;
    let snapshot = match read {
        Ok(Ok(s)) if s.definition == definition => s,
        Ok(Ok(_)) => {
            tracing::info!(backend = %name, "directory snapshot is of another definition: a full sync builds the index");
            return;
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
        Ok(Err(e)) => {
            tracing::warn!(backend = %name, error = %e, "directory snapshot not read: a full sync builds the index");
            return;
        }
        Err(_) => return,
    };
    let Some(b) = backend.upgrade() else { return };
    let Some(dir) = b.directory.as_ref() else {
        return;
    };
    let mut index = Index::default();
    for saved in snapshot.records {
        let entry = Arc::new(Entry {
            id: saved.id,
            numbers: saved.numbers.into_boxed_slice(),
            values: saved
                .values
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::Null => Value::UNDEFINED,
                    v => Value::from(minijinja::value::Serde(v)),
                })
                .collect(),
        });
        insert(&mut index, entry);
    }
    let now_wall = time::OffsetDateTime::now_utc();
    let ago = |unix: i64| {
        let secs = (now_wall.unix_timestamp() - unix).max(0);
        Instant::now()
            .checked_sub(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
            .unwrap_or_else(Instant::now)
    };
    let entries = index.numbers.len();
    *dir.index.write().unwrap_or_else(|e| e.into_inner()) = index;
    dir.update_status(|s| {
        s.built = Some(ago(snapshot.built));
        s.fresh = Some(ago(snapshot.fresh));
        s.last_full_try = s.built;
        s.since = time::OffsetDateTime::from_unix_timestamp(snapshot.fresh).ok();
        s.entries = entries;
        s.last = format!("read from its snapshot: {entries} number(s)");
    });
    tracing::info!(
        backend = %name, entries,
        age_s = (now_wall.unix_timestamp() - snapshot.fresh).max(0),
        "directory read from its snapshot"
    );
}

/// Writes the index to its snapshot, off the async workers: every record
/// once, with its numbers and the values its reply needs.
pub(super) async fn save(dir: &Directory, name: &str) {
    let Some(path) = dir.settings.snapshot.clone() else {
        return;
    };
    let status = dir.status();
    let (Some(built), Some(fresh)) = (status.built, status.fresh) else {
        return;
    };
    let wall = |at: Instant| (time::OffsetDateTime::now_utc() - at.elapsed()).unix_timestamp();
    let records = {
        let index = dir.index.read().unwrap_or_else(|e| e.into_inner());
        let mut seen = std::collections::HashSet::new();
        index
            .numbers
            .values()
            .filter(|entry| seen.insert(Arc::as_ptr(entry)))
            .map(|entry| SavedRecord {
                id: entry.id,
                numbers: entry.numbers.to_vec(),
                values: entry
                    .values
                    .iter()
                    .map(|v| {
                        if v.is_undefined() {
                            serde_json::Value::Null
                        } else {
                            serde_json::to_value(v).unwrap_or_default()
                        }
                    })
                    .collect(),
            })
            .collect::<Vec<_>>()
    };
    let snapshot = Snapshot {
        definition: dir.definition,
        built: wall(built),
        fresh: wall(fresh),
        records,
    };
    let name = name.to_owned();
    let written = tokio::task::spawn_blocking(move || {
        let bytes = serde_json::to_vec(&snapshot)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        crate::files::write_atomic(&path, &bytes, 0o600)
    })
    .await;
    if let Ok(Err(e)) = written {
        tracing::warn!(backend = %name, error = %e, "directory snapshot not written");
    }
}
