//! A backend's caller directory: the gateway's own index from each phone
//! number the CRM stores (country code and national significant number, as
//! [`crate::phone`] compares them) to the few values the backend's reply
//! needs, so a call opens its card with no CRM request, and keeps opening
//! cards while the CRM is slow or down (until `max_age_s`).
//!
//! The index is built by a task of its own, never on a call's path: a full
//! sync at start and every `full_every_s` (paged; it replaces the index, so
//! deleted records go), and an incremental sync every `every_s` of the
//! records modified since the last one (`{{ since }}`). Pages go through the
//! backend's client and login (its session, re-login and backoff), one at a
//! time and at most `pages_per_second`. A page that fails leaves the index
//! as it was. Each gateway instance keeps its own index: nothing is shared.
//!
//! `index` is the in-memory index and its look-up: `compact`'s sorted
//! arrays from the last full sync, under the changes incremental syncs
//! brought since; `values` packs a record's values into bytes; `sync` is
//! the task and its schedule; `page` asks for one page and reads it;
//! `snapshot` saves the index to `state_dir` (after a full sync, then at
//! most every `snapshot_every_s` while it changed, and at a clean stop)
//! and reads it back. The folder touches the backend's
//! client and login (to ask for pages), `phone` (to read numbers),
//! `metrics`, and `files` (the snapshot); never `config`, which builds it.

mod compact;
mod index;
mod page;
mod snapshot;
mod sync;
mod values;

use std::sync::{Mutex, RwLock};
use std::time::Duration;

use minijinja::value::Value;
use tokio::time::Instant;

use crate::backend::RequestSpec;
use crate::extract::JsonPath;
use crate::phone::Number;
use crate::template::Region;

pub use index::Entry;
use index::{key, Index};
pub use snapshot::save_at_stop;
pub use sync::spawn;

/// How often and how hard a directory syncs.
#[derive(Debug, Clone)]
pub struct DirectorySettings {
    /// Time between full syncs.
    pub full_every: Duration,
    /// Time between incremental syncs; `None`: full syncs only.
    pub every: Option<Duration>,
    /// The index answers only while its last good sync is this recent.
    pub max_age: Duration,
    /// Records asked per page (`{{ page.size }}`).
    pub page_size: u32,
    /// The least time between two page requests.
    pub page_interval: Duration,
    /// Pages one sync may read at most (a CRM that pages for ever).
    pub max_pages: u32,
    /// Time one page may take, login included.
    pub timeout: Duration,
    /// How `{{ since }}` is written.
    pub since_format: Vec<time::format_description::OwnedFormatItem>,
    /// How far before the last sync's start `since` reaches, for clocks
    /// that differ and records saved while it ran.
    pub since_overlap: Duration,
    /// Where the index is saved and read at start, so a restart answers
    /// at once and syncs incrementally.
    pub snapshot: Option<std::path::PathBuf>,
    /// The least time between two snapshots of incremental changes (a full
    /// sync's is written at once).
    pub snapshot_every: Duration,
}

/// How to read a page of records, and what to keep of each.
#[derive(Debug)]
pub struct Directory {
    /// Periods and bounds.
    pub settings: DirectorySettings,
    /// The page request; its templates see `page`, `since`, `login`.
    pub request: RequestSpec,
    /// Where a page's list of records is.
    pub records: JsonPath,
    /// A record's phone fields.
    pub phones: Vec<(Box<str>, JsonPath)>,
    /// A record's id (an edited record replaces its numbers).
    pub id: JsonPath,
    /// Where the next page's cursor is, for CRMs that page by cursor.
    pub cursor: Option<JsonPath>,
    /// The values the reply's templates read, as the backend extracts them.
    pub extract: Vec<(Value, JsonPath)>,
    /// The region stored numbers without a country code are read in.
    pub region: Option<Region>,
    /// A hash of everything above: a reload keeps an index whose
    /// definition did not change.
    pub definition: u64,
    index: RwLock<Index>,
    status: Mutex<Status>,
    /// Whether its sync task runs (started once per directory).
    started: std::sync::atomic::AtomicBool,
    /// Its index went to the next generation's directory (a reload): its
    /// task ends, and it writes no snapshot.
    retired: std::sync::atomic::AtomicBool,
}

/// Where the index stands, for calls, `simulate`, logs and metrics.
#[derive(Debug, Default, Clone)]
pub struct Status {
    /// When the last full sync that worked began.
    pub built: Option<Instant>,
    /// When the last sync (full or incremental) that worked began.
    pub fresh: Option<Instant>,
    /// When the last full sync began, whatever its result.
    pub last_full_try: Option<Instant>,
    /// When the last incremental sync began.
    pub last_incremental_try: Option<Instant>,
    /// The wall-clock start of the last sync that worked, for `since`.
    pub since: Option<time::OffsetDateTime>,
    /// Numbers in the index.
    pub entries: usize,
    /// What the last sync said (`full: 1200 records, 1500 numbers, 12 pages`).
    pub last: String,
    /// Syncs that failed in a row.
    pub failures: u32,
    /// The snapshot last written or tried.
    pub written: Written,
}

/// Where the snapshot stands against the index.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    /// When a snapshot was last written or tried (a failure waits too).
    pub at: Option<Instant>,
    /// The index's version the snapshot on disk holds.
    pub version: Option<u64>,
}

/// What a call finds in the index.
#[derive(Debug)]
pub enum Lookup {
    /// The caller's record, and how old the index is.
    Hit(Entry, Duration),
    /// The index is good and has no such number.
    Miss(Duration),
    /// The index cannot answer (not built yet, or older than `max_age_s`).
    NotReady(&'static str),
}

impl Directory {
    /// A directory with an empty index.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: DirectorySettings,
        request: RequestSpec,
        records: JsonPath,
        phones: Vec<(Box<str>, JsonPath)>,
        id: JsonPath,
        cursor: Option<JsonPath>,
        extract: Vec<(Value, JsonPath)>,
        region: Option<Region>,
        definition: u64,
    ) -> Self {
        Self {
            settings,
            request,
            records,
            phones,
            id,
            cursor,
            extract,
            region,
            definition,
            index: RwLock::new(Index::default()),
            status: Mutex::new(Status::default()),
            started: std::sync::atomic::AtomicBool::new(false),
            retired: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The caller's record, if the index can say.
    pub fn lookup(&self, caller: &Number) -> Lookup {
        let (built, fresh) = {
            let s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            (s.built, s.fresh)
        };
        let (Some(_), Some(fresh)) = (built, fresh) else {
            return Lookup::NotReady("not built yet");
        };
        let age = fresh.elapsed();
        if age > self.settings.max_age {
            return Lookup::NotReady("older than max_age_s");
        }
        match self.entry(caller) {
            Some(entry) => Lookup::Hit(entry, age),
            None => Lookup::Miss(age),
        }
    }

    /// The record holding `number`, however old the index.
    pub fn entry(&self, number: &Number) -> Option<Entry> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.get(&key(number))
    }

    /// Replaces the index with these pages' records, as a full sync does;
    /// returns the numbers in the index. For the directory benchmark,
    /// which measures what a sync builds without a CRM.
    pub fn rebuild<P: AsRef<[serde_json::Value]>>(
        &self,
        pages: impl IntoIterator<Item = P>,
    ) -> Result<usize, String> {
        let mut build = compact::Builder::default();
        for records in pages {
            for record in records.as_ref().iter().map(|r| page::record_of(self, r)) {
                if !record.numbers.is_empty() {
                    build.push(record.id, &record.numbers, &record.values)?;
                }
            }
        }
        self.replace(build.finish());
        Ok(self.index.read().unwrap_or_else(|e| e.into_inner()).len())
    }

    /// Puts a full sync's arrays in place of the index: a new version.
    fn replace(&self, compact: compact::Compact) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let version = index.version() + 1;
        *index = Index::new(compact).at(version);
    }

    /// Puts the changes folded into arrays in place of the index, unless
    /// it changed meanwhile: the same answers, the same version.
    fn fold(&self, merged: compact::Compact, version: u64) -> bool {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        if index.version() != version {
            return false;
        }
        *index = Index::new(merged).at(version);
        true
    }

    /// Applies records as an incremental sync's page does (an edited
    /// record replaces its numbers, a record as the index holds it changes
    /// nothing), and folds them into the arrays when they grew past their
    /// bound; returns the records that changed and the numbers in the
    /// index. For the directory benchmark.
    pub fn apply(&self, records: &[serde_json::Value]) -> Result<(usize, usize), String> {
        let records = records.iter().map(|r| page::record_of(self, r)).collect();
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        let changed = index.apply(records);
        if index.wants_merge() {
            let version = index.version();
            *index = Index::new(index.merged()?).at(version);
        }
        Ok((changed, index.len()))
    }

    /// A copy of where the index stands.
    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes over `old`'s index when both read the same records the same
    /// way: a reload keeps a built index, and the next sync is incremental.
    pub fn adopt(&self, old: &Directory) -> bool {
        if std::ptr::eq(self, old) || self.definition != old.definition {
            return false;
        }
        old.retired
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let taken = std::mem::take(&mut *old.index.write().unwrap_or_else(|e| e.into_inner()));
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = taken;
        let status = old.status();
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
        true
    }

    fn update_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Relaxed)
    }
}
