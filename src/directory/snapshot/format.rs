//! The snapshot's bytes: the compact arrays as they are in memory
//! ([`Compact`]), little-endian, then the changes incremental syncs made
//! beside them since ([`Frozen`]: the masked records, and each changed
//! record with its numbers and values), after a header: a magic, a format
//! version, the directory's definition (a changed config does not read
//! it), when the last full and last sync began, and the lengths. So
//! saving costs a write of the index, never a sort of it.
//!
//! Reading checks the arrays' lengths against the file's size before
//! allocating, reads the changes within the file's bounds, and checks the
//! arrays' order before answering from them: a damaged or foreign file is
//! refused, never a panic.

use std::io::{self, Write};

use crate::directory::compact::{Compact, Slot};
use crate::directory::index::{Frozen, Key, Record};

pub(super) const MAGIC: &[u8; 8] = b"tpgw-dir";
/// Version 1 was JSON, in `directory-NAME.json`; version 2 had no changes
/// beside the arrays (they were folded in before each write) and no prints.
pub(super) const VERSION: u32 = 3;
/// Magic, version, definition, built, fresh, six lengths.
pub(super) const HEADER: u64 = 8 + 4 + 8 + 8 + 8 + 6 * 4;
/// A slot on disk: code, national number, zeros, record.
const SLOT: u64 = 2 + 8 + 1 + 4;

/// What a snapshot says besides the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) definition: u64,
    /// When the last good full sync began (Unix seconds).
    pub(super) built: i64,
    /// When the last good sync began (Unix seconds): `since`, and its age.
    pub(super) fresh: i64,
}

/// The index a snapshot holds, as [`crate::directory::index::Index::thaw`] takes it.
#[derive(Debug)]
pub(super) struct Thawed {
    pub(super) base: Compact,
    pub(super) masked: Vec<u32>,
    pub(super) changed: Vec<(Record, Vec<bool>)>,
}

/// Writes the index to `out` (blocking work: tens of megabytes for a
/// million numbers).
pub(super) fn encode(f: &Frozen, h: Header, out: &mut impl Write) -> io::Result<()> {
    let c = &f.base;
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&h.definition.to_le_bytes())?;
    out.write_all(&h.built.to_le_bytes())?;
    out.write_all(&h.fresh.to_le_bytes())?;
    let lengths = [
        c.records(),
        c.ids.len(),
        c.numbers.len(),
        c.values.len(),
        f.masked.len(),
        f.changed.len(),
    ];
    for n in lengths {
        // Each below 2^32: the builder refuses more, and the changes are
        // a share of the records.
        out.write_all(&(n as u32).to_le_bytes())?;
    }
    for i in c.ids.iter() {
        out.write_all(&i.to_le_bytes())?;
    }
    for s in c.starts.iter().chain(c.prints.iter()) {
        out.write_all(&s.to_le_bytes())?;
    }
    out.write_all(&c.values)?;
    for s in c.numbers.iter() {
        key(out, s.key())?;
        out.write_all(&s.record.to_le_bytes())?;
    }
    for r in &f.masked {
        out.write_all(&r.to_le_bytes())?;
    }
    for (record, owned) in &f.changed {
        out.write_all(&[u8::from(record.id.is_some())])?;
        out.write_all(&record.id.unwrap_or(0).to_le_bytes())?;
        out.write_all(&(record.numbers.len() as u32).to_le_bytes())?;
        out.write_all(&(record.values.len() as u32).to_le_bytes())?;
        for (k, owns) in record.numbers.iter().zip(owned) {
            key(out, *k)?;
            out.write_all(&[u8::from(*owns)])?;
        }
        out.write_all(&record.values)?;
    }
    Ok(())
}

fn key(out: &mut impl Write, (code, national, zeros): Key) -> io::Result<()> {
    out.write_all(&code.to_le_bytes())?;
    out.write_all(&national.to_le_bytes())?;
    out.write_all(&[zeros])
}

/// Why a snapshot was not read.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error("not a directory snapshot of this version ({0})")]
    Format(String),
    #[error("of another definition (the directory's settings changed)")]
    Definition,
    #[error("damaged: {0}")]
    Damaged(&'static str),
}

const TRUNCATED: Refused = Refused::Damaged("truncated");

pub(super) fn decode(b: &[u8], definition: u64) -> Result<(Thawed, Header), Refused> {
    let mut r = Reader(b);
    if r.take(8) != Some(MAGIC) {
        return Err(Refused::Format("no directory snapshot's magic".into()));
    }
    let version = r.u32().ok_or(TRUNCATED)?;
    if version != VERSION {
        return Err(Refused::Format(format!(
            "version {version}, this gateway reads {VERSION}"
        )));
    }
    let h = Header {
        definition: r.u64().ok_or(TRUNCATED)?,
        built: r.u64().ok_or(TRUNCATED)? as i64,
        fresh: r.u64().ok_or(TRUNCATED)? as i64,
    };
    if h.definition != definition {
        return Err(Refused::Definition);
    }
    let mut lengths = [0u64; 6];
    for l in &mut lengths {
        *l = u64::from(r.u32().ok_or(TRUNCATED)?);
    }
    let [records, ids, numbers, values, masked, changed] = lengths;
    // The arrays must fit in the file, before anything is allocated.
    let arrays = ids * 8 + (records + 1) * 4 + records * 4 + values + numbers * SLOT + masked * 4;
    if HEADER + arrays > b.len() as u64 {
        return Err(TRUNCATED);
    }
    let ids = r.chunks(ids, |x: &[u8; 8]| u64::from_le_bytes(*x));
    let starts = r.chunks(records + 1, |x: &[u8; 4]| u32::from_le_bytes(*x));
    let prints = r.chunks(records, |x: &[u8; 4]| u32::from_le_bytes(*x));
    let values = r.take(values as usize).map(Box::from);
    let numbers = r.chunks(numbers, |x: &[u8; 15]| slot(x));
    let (Some(ids), Some(starts), Some(prints), Some(values), Some(numbers)) =
        (ids, starts, prints, values, numbers)
    else {
        return Err(TRUNCATED);
    };
    let base = Compact::from_parts(numbers, ids, starts, values, prints);
    let base = base.map_err(Refused::Damaged)?;
    let masked: Vec<u32> = r
        .chunks(masked, |x: &[u8; 4]| u32::from_le_bytes(*x))
        .ok_or(TRUNCATED)?
        .into();
    if masked.windows(2).any(|w| w[0] >= w[1])
        || masked.iter().any(|&m| m as usize >= records as usize)
    {
        return Err(Refused::Damaged("masked records out of order"));
    }
    let mut thawed = Vec::new();
    for _ in 0..changed {
        thawed.push(r.record().ok_or(TRUNCATED)?);
    }
    if !r.0.is_empty() {
        return Err(Refused::Damaged("bytes after the index"));
    }
    Ok((
        Thawed {
            base,
            masked,
            changed: thawed,
        },
        h,
    ))
}

fn slot(x: &[u8; 15]) -> Slot {
    let (code, national, zeros) = key_of(x);
    Slot {
        code,
        national,
        zeros,
        record: u32::from_le_bytes([x[11], x[12], x[13], x[14]]),
    }
}

fn key_of(x: &[u8]) -> Key {
    let mut national = [0u8; 8];
    national.copy_from_slice(x.get(2..10).unwrap_or(&[0; 8]));
    (
        u16::from_le_bytes([x[0], x[1]]),
        u64::from_le_bytes(national),
        x[10],
    )
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

    /// `count` items of `N` bytes each.
    fn chunks<const N: usize, T>(
        &mut self,
        count: u64,
        f: impl Fn(&[u8; N]) -> T,
    ) -> Option<Box<[T]>> {
        let bytes = self.take(usize::try_from(count).ok()?.checked_mul(N)?)?;
        Some(
            bytes
                .chunks_exact(N)
                .map(|x| f(x.try_into().unwrap_or(&[0; N])))
                .collect(),
        )
    }

    /// A changed record and which of its numbers it answers.
    fn record(&mut self) -> Option<(Record, Vec<bool>)> {
        let has_id = *self.take(1)?.first()? == 1;
        let id = self.u64()?;
        let numbers = self.u32()?;
        let values = self.u32()?;
        let keys = self.chunks(u64::from(numbers), |x: &[u8; 12]| (key_of(x), x[11] == 1))?;
        let values = self.take(values as usize)?;
        let (numbers, owned) = keys.iter().copied().unzip::<_, _, Vec<Key>, Vec<bool>>();
        Some((
            Record {
                id: has_id.then_some(id),
                numbers: numbers.into(),
                values: values.into(),
            },
            owned,
        ))
    }
}
