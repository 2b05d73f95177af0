//! The index on disk (`state_dir`): written atomically, mode 0600, after
//! each sync that changed it, and read at start, so a restart answers at
//! once and syncs incrementally. Only the numbers and the values the reply
//! needs are kept.
//!
//! The file is the compact arrays as they are in memory ([`Compact`]),
//! little-endian, after a header: a magic, a format version, the
//! directory's definition (a changed config does not read it), when the
//! last full and last sync began, and the arrays' lengths. Reading checks
//! the lengths against the file's size before allocating, and the arrays'
//! order before answering from them: a damaged or foreign file is
//! refused with a log line, and a full sync builds the index.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::compact::{Compact, Slot};
use super::index::Index;
use super::sync::with_index;
use crate::backend::Backend;

const MAGIC: &[u8; 8] = b"tpgw-dir";
/// Version 1 was JSON, in `directory-NAME.json`.
const VERSION: u32 = 2;
/// Magic, version, definition, built, fresh, four lengths.
const HEADER: u64 = 8 + 4 + 8 + 8 + 8 + 4 * 4;
/// A slot on disk: code, national number, zeros, record.
const SLOT: u64 = 2 + 8 + 1 + 4;

/// What a snapshot says besides its arrays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    definition: u64,
    /// When the last good full sync began (Unix seconds).
    built: i64,
    /// When the last good sync began (Unix seconds): `since`, and its age.
    fresh: i64,
}

fn encode(c: &Compact, h: Header) -> Vec<u8> {
    let len = HEADER as usize
        + c.ids.len() * 8
        + c.starts.len() * 4
        + c.values.len()
        + c.numbers.len() * SLOT as usize;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&h.definition.to_le_bytes());
    out.extend_from_slice(&h.built.to_le_bytes());
    out.extend_from_slice(&h.fresh.to_le_bytes());
    for n in [c.records(), c.ids.len(), c.numbers.len(), c.values.len()] {
        // Each below 2^32: the builder refuses more.
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    c.ids
        .iter()
        .for_each(|i| out.extend_from_slice(&i.to_le_bytes()));
    c.starts
        .iter()
        .for_each(|s| out.extend_from_slice(&s.to_le_bytes()));
    out.extend_from_slice(&c.values);
    for s in c.numbers.iter() {
        out.extend_from_slice(&s.code.to_le_bytes());
        out.extend_from_slice(&s.national.to_le_bytes());
        out.push(s.zeros);
        out.extend_from_slice(&s.record.to_le_bytes());
    }
    out
}

/// Why a snapshot was not read.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("not a directory snapshot of this version ({0})")]
    Format(String),
    #[error("of another definition (the directory's settings changed)")]
    Definition,
    #[error("damaged: {0}")]
    Damaged(&'static str),
}

fn decode(b: &[u8], definition: u64) -> Result<(Compact, Header), Refused> {
    let mut r = Reader(b);
    if r.take(8) != Some(MAGIC) {
        return Err(Refused::Format("no directory snapshot's magic".into()));
    }
    let version = r.u32().ok_or(Refused::Damaged("truncated"))?;
    if version != VERSION {
        return Err(Refused::Format(format!(
            "version {version}, this gateway reads {VERSION}"
        )));
    }
    let truncated = Refused::Damaged("truncated");
    let h = Header {
        definition: r.u64().ok_or(Refused::Damaged("truncated"))?,
        built: r.u64().ok_or(Refused::Damaged("truncated"))? as i64,
        fresh: r.u64().ok_or(Refused::Damaged("truncated"))? as i64,
    };
    if h.definition != definition {
        return Err(Refused::Definition);
    }
    let mut lengths = [0u64; 4];
    for l in &mut lengths {
        *l = u64::from(r.u32().ok_or(Refused::Damaged("truncated"))?);
    }
    let [records, ids, numbers, values] = lengths;
    // The lengths must add up to the file, before anything is allocated.
    if HEADER + ids * 8 + (records + 1) * 4 + values + numbers * SLOT != b.len() as u64 {
        return Err(truncated);
    }
    let c = Compact {
        ids: r.chunks(ids, |x: &[u8; 8]| u64::from_le_bytes(*x)),
        starts: r.chunks(records + 1, |x: &[u8; 4]| u32::from_le_bytes(*x)),
        values: r.take(values as usize).unwrap_or_default().into(),
        numbers: r.chunks(numbers, |x: &[u8; 15]| Slot {
            code: u16::from_le_bytes([x[0], x[1]]),
            national: u64::from_le_bytes([x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9]]),
            zeros: x[10],
            record: u32::from_le_bytes([x[11], x[12], x[13], x[14]]),
        }),
    };
    c.check().map_err(Refused::Damaged)?;
    Ok((c, h))
}

/// Reads a snapshot front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// `count` items of `N` bytes each (the caller checked they are there).
    fn chunks<const N: usize, T>(&mut self, count: u64, f: impl Fn(&[u8; N]) -> T) -> Box<[T]> {
        let bytes = self.take(count as usize * N).unwrap_or_default();
        bytes
            .chunks_exact(N)
            .map(|x| f(x.try_into().unwrap_or(&[0; N])))
            .collect()
    }
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
        let bytes = match crate::files::read(&path, crate::files::MAX_SNAPSHOT_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(older(&path)),
            Err(e) => return Err(e.to_string()),
        };
        match decode(&bytes, definition) {
            Ok(read) => Ok(Some(read)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let (compact, header) = match read {
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
    let entries = compact.numbers.len();
    *dir.index.write().unwrap_or_else(|e| e.into_inner()) = Index::new(compact);
    dir.update_status(|s| {
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
fn older(path: &std::path::Path) -> Option<(Compact, Header)> {
    let old = path.with_extension("json");
    if std::fs::remove_file(&old).is_ok() {
        tracing::info!(file = %old.display(), "directory snapshot of an older format removed: a full sync builds the index");
    }
    None
}

/// Writes the index to its snapshot, off the async workers: the arrays as
/// they are (the sync folded its changes into them first).
pub(super) async fn save(b: &Arc<Backend>) {
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
    let wall = |at: Instant| (time::OffsetDateTime::now_utc() - at.elapsed()).unix_timestamp();
    let header = Header {
        definition: dir.definition,
        built: wall(built),
        fresh: wall(fresh),
    };
    let bytes = match with_index(b, move |i| i.compact().map(|c| encode(c, header))).await {
        Some(Some(bytes)) => bytes,
        Some(None) => {
            tracing::warn!(backend = %b.name, "directory snapshot not written: the index's changes are not folded in");
            return;
        }
        None => return,
    };
    let written =
        tokio::task::spawn_blocking(move || crate::files::write_atomic(&path, &bytes, 0o600)).await;
    if let Ok(Err(e)) = written {
        tracing::warn!(backend = %b.name, error = %e, "directory snapshot not written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::compact::Builder;

    fn sample() -> Compact {
        let mut b = Builder::default();
        b.push(
            Some(7),
            &[(33, 612345678, 0), (39, 612345, 1)],
            b"\x01\x05Marie",
        )
        .unwrap();
        b.push(None, &[(1, 4155550101, 0)], b"").unwrap();
        b.finish()
    }

    const H: Header = Header {
        definition: 42,
        built: 1_700_000_000,
        fresh: 1_700_000_060,
    };

    #[test]
    fn a_snapshot_reads_back_as_it_was_written() {
        let c = sample();
        let bytes = encode(&c, H);
        let (back, h) = decode(&bytes, 42).unwrap();
        assert_eq!(h, H);
        assert_eq!(back.numbers, c.numbers);
        assert_eq!(back.ids, c.ids);
        assert_eq!(back.starts, c.starts);
        assert_eq!(back.values, c.values);
        let empty = encode(&Compact::default(), H);
        assert_eq!(decode(&empty, 42).unwrap().0.records(), 0);
    }

    #[test]
    fn a_foreign_old_or_damaged_snapshot_is_refused_without_a_panic() {
        let bytes = encode(&sample(), H);
        assert!(matches!(decode(&bytes, 43), Err(Refused::Definition)));
        assert!(matches!(
            decode(br#"{"definition":42,"built":0,"fresh":0,"records":[]}"#, 42),
            Err(Refused::Format(_))
        ));
        let mut v3 = bytes.clone();
        v3[8] = 3;
        let e = decode(&v3, 42).unwrap_err().to_string();
        assert!(e.contains("version 3"), "{e}");
        // Every truncation, and every single byte changed: refused or read,
        // never a panic.
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 42).is_err());
        }
        for i in 0..bytes.len() {
            for x in [0u8, 1, 0x7f, 0xff] {
                let mut b = bytes.clone();
                b[i] = x;
                let _ = decode(&b, 42);
            }
        }
        // A length that claims more than the file holds allocates nothing.
        let mut huge = bytes.clone();
        huge[HEADER as usize - 8..HEADER as usize - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&huge, 42), Err(Refused::Damaged(_))));
    }
}
