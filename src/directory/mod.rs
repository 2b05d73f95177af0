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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use minijinja::value::Value;
use tokio::time::Instant;

use crate::backend::{Backend, RequestSpec};
use crate::extract::JsonPath;
use crate::metrics::Metrics;
use crate::phone::Number;
use crate::template::{Region, Templates};

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
    /// Where the index is saved after each sync and read at start, so a
    /// restart answers at once and syncs incrementally.
    pub snapshot: Option<std::path::PathBuf>,
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
}

/// A number as the index keys it: country code, national number, leading zeros.
type Key = (u16, u64, u8);

#[derive(Debug, Default)]
struct Index {
    numbers: HashMap<Key, Arc<Entry>>,
    /// Each record by a hash of its id, so an edited record drops its old
    /// numbers. A hash, not the id, keeps the index small; two ids with
    /// one 64-bit hash (a chance of about 3 in 10^8 for a million records) would
    /// lose a number until the next full sync.
    ids: HashMap<u64, Arc<Entry>>,
}

/// What the index keeps of one record: the values its reply needs, in the
/// order of the backend's `extract` (undefined where the record had none).
#[derive(Debug)]
pub struct Entry {
    id: Option<u64>,
    numbers: Box<[Key]>,
    values: Box<[Value]>,
}

impl Entry {
    /// The values by name, as the reply's templates see them.
    pub fn values(&self, names: &[(Value, JsonPath)]) -> Vec<(Value, Value)> {
        names
            .iter()
            .zip(self.values.iter())
            .filter(|(_, v)| !v.is_undefined())
            .map(|((n, _), v)| (n.clone(), v.clone()))
            .collect()
    }
}

/// A record id's hash, as the index keys records.
fn id_hash(id: &serde_json::Value) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    match id {
        serde_json::Value::String(s) => s.hash(&mut h),
        serde_json::Value::Number(n) => n.to_string().hash(&mut h),
        _ => return None,
    }
    Some(h.finish())
}

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
}

/// What a call finds in the index.
#[derive(Debug)]
pub enum Lookup {
    /// The caller's record, and how old the index is.
    Hit(Arc<Entry>, Duration),
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
        }
    }

    /// The caller's record, if the index can say.
    pub fn lookup(&self, caller: &Number) -> Lookup {
        let status = self.status();
        let (Some(_), Some(fresh)) = (status.built, status.fresh) else {
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
    pub fn entry(&self, number: &Number) -> Option<Arc<Entry>> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.numbers.get(&key(number)).cloned()
    }

    /// Adds records as an incremental sync's page does (an edited record
    /// replaces its numbers); returns the numbers in the index. What a
    /// sync does with each page, for the directory benchmark.
    pub fn apply(&self, records: &[serde_json::Value]) -> usize {
        let entries = records.iter().map(|r| entry_of(self, r)).collect();
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        apply(&mut index, entries);
        index.numbers.len()
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
        let taken = std::mem::take(&mut *old.index.write().unwrap_or_else(|e| e.into_inner()));
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = taken;
        let status = old.status();
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
        true
    }

    fn update_status(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

fn key(n: &Number) -> Key {
    let (value, zeros) = n.national_parts();
    (n.code(), value, zeros)
}

/// Starts the sync task of `backend`'s directory. It holds the backend only
/// weakly: when its config generation is gone, the task ends.
pub fn spawn(backend: &Arc<Backend>, templates: Arc<Templates>, metrics: Arc<Metrics>) {
    let Some(directory) = &backend.directory else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if directory
        .started
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        return;
    }
    let weak = Arc::downgrade(backend);
    runtime.spawn(async move {
        restore(&weak).await;
        run(weak, templates, metrics).await;
    });
}

/// Reads the snapshot at start, off the async workers, when the index is
/// still empty (a reload may have handed it over) and the snapshot was
/// written by a directory defined the same way.
async fn restore(backend: &Weak<Backend>) {
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
async fn save(dir: &Directory, name: &str) {
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

/// What one sync does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Full,
    Incremental,
}

async fn run(backend: Weak<Backend>, templates: Arc<Templates>, metrics: Arc<Metrics>) {
    loop {
        let (kind, wait) = {
            let Some(b) = backend.upgrade() else { return };
            let Some(dir) = b.directory.as_ref() else {
                return;
            };
            next(dir, Instant::now())
        };
        if let Some(wait) = wait {
            // Checked again after the sleep: the generation may be gone.
            tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
            continue;
        }
        sync(&backend, &templates, &metrics, kind).await;
    }
}

/// What to do next: a kind of sync now, or a wait.
fn next(dir: &Directory, now: Instant) -> (Kind, Option<Duration>) {
    let s = dir.status();
    let retry = Duration::from_secs(30).min(dir.settings.full_every);
    let full_due = match (s.built, s.last_full_try) {
        (None, None) => now,
        // Not built: try again soon, spaced after failures.
        (None, Some(tried)) => tried + retry * (1 << s.failures.min(5)),
        (Some(_), Some(tried)) => tried + dir.settings.full_every,
        (Some(built), None) => built + dir.settings.full_every,
    };
    if now >= full_due {
        return (Kind::Full, None);
    }
    if let (Some(every), Some(_)) = (dir.settings.every, s.built) {
        let last = s.last_incremental_try.max(s.last_full_try).unwrap_or(now);
        let due = last + every;
        if now >= due {
            return (Kind::Incremental, None);
        }
        return (Kind::Incremental, Some((due - now).min(full_due - now)));
    }
    (Kind::Full, Some(full_due - now))
}

/// One sync, full or incremental; the index changes only if every page
/// of a full sync was read (an incremental one applies page by page).
async fn sync(backend: &Weak<Backend>, templates: &Templates, metrics: &Metrics, kind: Kind) {
    let started = Instant::now();
    let wall = time::OffsetDateTime::now_utc();
    let since = {
        let Some(b) = backend.upgrade() else { return };
        let Some(dir) = b.directory.as_ref() else {
            return;
        };
        let status = dir.status();
        dir.update_status(|s| match kind {
            Kind::Full => s.last_full_try = Some(started),
            Kind::Incremental => s.last_incremental_try = Some(started),
        });
        match kind {
            Kind::Full => None,
            Kind::Incremental => status.since.map(|t| {
                let from = t - dir.settings.since_overlap;
                from.format(&dir.settings.since_format).unwrap_or_default()
            }),
        }
    };
    let mut fresh = Index::default();
    let mut page = Page::default();
    let mut records_seen = 0usize;
    let result: Result<(), String> = loop {
        let Some(b) = backend.upgrade() else { return };
        let Some(dir) = b.directory.as_ref() else {
            return;
        };
        if page.number >= dir.settings.max_pages {
            break Err(format!(
                "more than max_pages = {} pages: the index is left as it was",
                dir.settings.max_pages
            ));
        }
        let body = match fetch(&b, dir, templates, metrics, &page, since.as_deref()).await {
            Ok(body) => body,
            Err(e) => break Err(format!("page {}: {e}", page.number + 1)),
        };
        // Parsing a page and reading its numbers costs milliseconds: off
        // the async workers, so a sync never delays a call.
        let owner = Arc::clone(&b);
        let read = tokio::task::spawn_blocking(move || match owner.directory.as_ref() {
            Some(dir) => read_page(dir, &body),
            None => Err("the backend has no directory".into()),
        })
        .await;
        let read = match read {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => break Err(format!("page {}: {e}", page.number + 1)),
            Err(e) => break Err(format!("page {}: {e}", page.number + 1)),
        };
        let count = read.records;
        records_seen += count;
        match kind {
            Kind::Full => apply(&mut fresh, read.entries),
            Kind::Incremental => {
                let mut index = dir.index.write().unwrap_or_else(|e| e.into_inner());
                apply(&mut index, read.entries);
            }
        }
        let cursor = read.cursor;
        let last = read.last;
        let last_page = match &dir.cursor {
            Some(_) => cursor.is_none(),
            None => count < dir.settings.page_size as usize,
        };
        if last_page {
            break Ok(());
        }
        page.number += 1;
        page.offset += count as u64;
        page.cursor = cursor;
        page.last = last;
        let interval = dir.settings.page_interval;
        drop(b);
        tokio::time::sleep(interval).await;
    };
    let Some(b) = backend.upgrade() else { return };
    let Some(dir) = b.directory.as_ref() else {
        return;
    };
    let what = match kind {
        Kind::Full => "full",
        Kind::Incremental => "incremental",
    };
    match result {
        Ok(()) => {
            let entries = {
                let mut index = dir.index.write().unwrap_or_else(|e| e.into_inner());
                if kind == Kind::Full {
                    *index = fresh;
                }
                index.numbers.len()
            };
            let last = format!(
                "{what} sync: {records_seen} record(s) in {} page(s), {entries} number(s) in the index, {} ms",
                page.number + 1,
                started.elapsed().as_millis()
            );
            tracing::info!(backend = %b.name, "directory {last}");
            let result = match kind {
                Kind::Full => "full_ok",
                Kind::Incremental => "incremental_ok",
            };
            metrics.directory_sync(&b.name, result, page.number + 1, entries);
            if kind == Kind::Full || records_seen > 0 {
                save(dir, &b.name).await;
            }
            dir.update_status(|s| {
                if kind == Kind::Full {
                    s.built = Some(started);
                }
                s.fresh = Some(started);
                s.since = Some(wall);
                s.entries = entries;
                s.last = last;
                s.failures = 0;
            });
        }
        Err(detail) => {
            tracing::warn!(backend = %b.name, kind = what, detail, "directory sync failed: the index is left as it was");
            let result = match kind {
                Kind::Full => "full_failed",
                Kind::Incremental => "incremental_failed",
            };
            let entries = dir.status().entries;
            metrics.directory_sync(&b.name, result, page.number, entries);
            dir.update_status(|s| {
                s.last = format!("{what} sync failed: {detail}");
                s.failures = s.failures.saturating_add(1);
            });
        }
    }
}

/// Where a sync is in its pages.
#[derive(Debug, Default)]
struct Page {
    number: u32,
    offset: u64,
    cursor: Option<String>,
    last: Option<String>,
}

/// One page: built from the directory's request with `page`, `since` and
/// the backend's session; re-login and one retry when the CRM refuses the
/// session, as a look-up does.
async fn fetch(
    b: &Backend,
    dir: &Directory,
    templates: &Templates,
    metrics: &Metrics,
    page: &Page,
    since: Option<&str>,
) -> Result<bytes::Bytes, String> {
    let deadline = Instant::now() + dir.settings.timeout;
    let page_value = Value::from(minijinja::value::Serde(serde_json::json!({
        "number": page.number + 1,
        "offset": page.offset,
        "size": dir.settings.page_size,
        "cursor": page.cursor,
        "last": page.last,
    })));
    let mut ctx: std::collections::BTreeMap<&str, Value> = std::collections::BTreeMap::new();
    ctx.insert("page", page_value);
    ctx.insert("since", since.map_or(Value::UNDEFINED, Value::from));
    let counters = b.login.as_ref().map(|l| metrics.login_counters(l.owner()));
    let mut session = match (&b.login, &counters) {
        (Some(login), Some(counters)) => Some(
            login
                .session(deadline, counters)
                .await
                .map_err(|f| f.to_string())?
                .0,
        ),
        _ => None,
    };
    for attempt in 0..2 {
        if let Some(s) = &session {
            ctx.insert("login", s.values.clone());
        }
        let request = dir
            .request
            .build(templates, &Value::from(ctx.clone()))
            .map_err(|f| f.to_string())?;
        let raw = tokio::time::timeout_at(deadline, b.client.send(request))
            .await
            .map_err(|_| format!("no reply within {} ms", dir.settings.timeout.as_millis()))?
            .map_err(|f| f.to_string())?;
        if let (Some(login), Some(s), Some(counters)) = (&b.login, &session, &counters) {
            if login.refused(templates, &raw) {
                login.invalidate(s, counters);
                if attempt == 0 {
                    session = Some(
                        login
                            .session(deadline, counters)
                            .await
                            .map_err(|f| f.to_string())?
                            .0,
                    );
                    continue;
                }
                return Err("the CRM refused a fresh session too".into());
            }
            login.accepted(s);
        }
        let accepted = match &b.reply.accept_status {
            Some(list) => list.contains(&raw.status.as_u16()),
            None => raw.status.is_success(),
        };
        if !accepted {
            return Err(format!("HTTP {}", raw.status));
        }
        // A page with no records: 204 No Content (Zoho's COQL when nothing
        // matches, as an incremental sync often finds), or a status the
        // backend accepts as "nothing found" (Dolibarr's 404 for a page past
        // the end, or nothing modified since).
        if !raw.status.is_success() || raw.status.as_u16() == 204 {
            return Ok(bytes::Bytes::from_static(b"null"));
        }
        return Ok(raw.body);
    }
    Err("the CRM refused the session".into())
}

/// A page read: each record as the index keeps it (its id and, when it
/// has numbers, its entry), how many records, the next cursor.
#[derive(Debug)]
struct PageRead {
    entries: Vec<(Option<u64>, Option<Arc<Entry>>)>,
    records: usize,
    cursor: Option<String>,
    /// The id of the page's last record: `page.last` of the next page,
    /// for CRMs paged by "id greater than" (keyset paging).
    last: Option<String>,
}

/// Parses a page and reads every record's numbers (blocking work).
fn read_page(dir: &Directory, body: &[u8]) -> Result<PageRead, String> {
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("reply is not JSON: {e}"))?;
    let records: &[serde_json::Value] = match dir.records.lookup(&doc) {
        // No content, or the list empty as null.
        _ if doc.is_null() => &[],
        Some(serde_json::Value::Null) => &[],
        Some(serde_json::Value::Array(items)) => items,
        Some(_) => return Err("records is not a list".into()),
        // A reply without its list is an error the CRM answered with a
        // success status (vTiger's `success: false`), not an empty page: a
        // full sync ending there would drop every record after it.
        None => {
            return Err("no list of records in the reply (an error answered as a success?)".into())
        }
    };
    let cursor = dir
        .cursor
        .as_ref()
        .and_then(|p| p.lookup(&doc))
        .and_then(|v| match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let last = records
        .last()
        .and_then(|r| dir.id.lookup(r))
        .and_then(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    Ok(PageRead {
        entries: records.iter().map(|r| entry_of(dir, r)).collect(),
        records: records.len(),
        cursor,
        last,
    })
}

/// Puts a page's records in `index`: each in place of its earlier self,
/// and a record that lost every number out.
fn apply(index: &mut Index, entries: Vec<(Option<u64>, Option<Arc<Entry>>)>) {
    for (id, entry) in entries {
        match entry {
            Some(entry) => insert(index, entry),
            None => {
                if let Some(old) = id.and_then(|id| index.ids.remove(&id)) {
                    remove(index, &old);
                }
            }
        }
    }
}

/// One record as the index keeps it: its id's hash, and its entry when it
/// holds at least one phone number.
fn entry_of(dir: &Directory, record: &serde_json::Value) -> (Option<u64>, Option<Arc<Entry>>) {
    let id = dir.id.lookup(record).and_then(id_hash);
    let mut numbers = Vec::new();
    let mut found = Vec::new();
    for (_, path) in &dir.phones {
        found.clear();
        path.lookup_all(record, 16, &mut found);
        for value in &found {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => continue,
            };
            if let Some(n) = Number::read(&text, dir.region) {
                numbers.push(key(&n));
            }
        }
    }
    if numbers.is_empty() {
        return (id, None);
    }
    let values = dir
        .extract
        .iter()
        .map(|(_, path)| {
            path.lookup(record).map_or(Value::UNDEFINED, |v| {
                Value::from(minijinja::value::Serde(v))
            })
        })
        .collect();
    let entry = Entry {
        id,
        numbers: numbers.into_boxed_slice(),
        values,
    };
    (id, Some(Arc::new(entry)))
}

/// Puts a record in the index, in place of its earlier self.
fn insert(index: &mut Index, entry: Arc<Entry>) {
    if let Some(old) = entry
        .id
        .and_then(|id| index.ids.insert(id, Arc::clone(&entry)))
    {
        remove(index, &old);
    }
    for k in entry.numbers.iter() {
        index.numbers.insert(*k, Arc::clone(&entry));
    }
}

/// Takes a record's numbers out of the index (those still its own).
fn remove(index: &mut Index, old: &Arc<Entry>) {
    for k in old.numbers.iter() {
        if index.numbers.get(k).is_some_and(|e| Arc::ptr_eq(e, old)) {
            index.numbers.remove(k);
        }
    }
}
