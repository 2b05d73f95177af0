//! The sync task: when the next sync is due (full or incremental), and one
//! sync read page after page, at most `pages_per_second`, its result put
//! in the index (a full sync's only once every page was read), logged and
//! counted; and when the index's snapshot is due ([`super::snapshot`]).

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::compact::Builder;
use super::index::Index;
use super::page::{fetch, read_page, Page};
use super::snapshot;
use super::Directory;
use crate::backend::Backend;
use crate::constants::DIRECTORY_RETRY;
use crate::metrics::Metrics;
use crate::template::Templates;

/// What one sync does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Full,
    Incremental,
}

/// Starts the sync task of `backend`'s directory. It holds the backend only
/// weakly: when its config generation is gone (or its index went to the
/// next one), the task ends.
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
        snapshot::restore(&weak).await;
        run(weak, templates, metrics).await;
    });
}

async fn run(backend: Weak<Backend>, templates: Arc<Templates>, metrics: Arc<Metrics>) {
    loop {
        let (kind, wait) = {
            let Some(b) = backend.upgrade() else { return };
            let Some(dir) = b.directory.as_ref() else {
                return;
            };
            if dir.retired() {
                return;
            }
            if snapshot::due(dir, Instant::now()) {
                snapshot::save(&b, &metrics);
            }
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
    let retry = DIRECTORY_RETRY.min(dir.settings.full_every);
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
async fn sync(backend: &Weak<Backend>, templates: &Templates, metrics: &Arc<Metrics>, kind: Kind) {
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
    let mut fresh = Builder::default();
    let mut page = Page::default();
    let mut records_seen = 0usize;
    let mut changed = 0usize;
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
        let count = read.records.len();
        records_seen += count;
        match kind {
            Kind::Full => {
                let pushed = read
                    .records
                    .iter()
                    .filter(|r| !r.numbers.is_empty())
                    .try_for_each(|r| fresh.push(r.id, &r.numbers, &r.values));
                if let Err(e) = pushed {
                    break Err(e);
                }
            }
            Kind::Incremental => {
                let mut index = dir.index.write().unwrap_or_else(|e| e.into_inner());
                changed += index.apply(read.records);
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
    let result = match result {
        Ok(()) => settle(&b, kind, fresh).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(entries) => {
            let changes = match kind {
                Kind::Full => String::new(),
                Kind::Incremental => format!(", {changed} changed"),
            };
            let last = format!(
                "{what} sync: {records_seen} record(s) in {} page(s), {entries} number(s) in the index{changes}, {} ms",
                page.number + 1,
                started.elapsed().as_millis()
            );
            tracing::info!(backend = %b.name, "directory {last}");
            let result = match kind {
                Kind::Full => "full_ok",
                Kind::Incremental => "incremental_ok",
            };
            metrics.directory_sync(&b.name, result, page.number + 1, entries);
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
            if kind == Kind::Full {
                snapshot::save(&b, metrics);
            }
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

/// Puts a sync that read every page in the index, off the async workers:
/// a full sync's arrays sorted and swapped in, an incremental sync's
/// changes folded into new arrays when they grew past their bound.
/// Returns the numbers in the index.
async fn settle(b: &Arc<Backend>, kind: Kind, fresh: Builder) -> Result<usize, String> {
    let Some(dir) = b.directory.as_ref() else {
        return Err("the backend has no directory".into());
    };
    match kind {
        Kind::Full => {
            let built = tokio::task::spawn_blocking(move || fresh.finish())
                .await
                .map_err(|e| format!("building the index: {e}"))?;
            dir.replace(built);
        }
        Kind::Incremental => {
            drop(fresh);
            let merge = dir
                .index
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .wants_merge();
            if merge {
                match with_index(b, |i| (i.version(), i.merged())).await {
                    Some((version, Ok(merged))) => {
                        dir.fold(merged, version);
                    }
                    Some((_, Err(e))) => {
                        tracing::warn!(backend = %b.name, error = %e, "directory changes not folded into the index");
                    }
                    None => {}
                }
            }
        }
    }
    with_index(b, Index::len)
        .await
        .ok_or_else(|| "counting the index failed".to_owned())
}

/// Runs `f` on the index off the async workers (a sort or a pass over a
/// million numbers takes milliseconds); calls keep reading it meanwhile.
pub(super) async fn with_index<T: Send + 'static>(
    b: &Arc<Backend>,
    f: impl FnOnce(&Index) -> T + Send + 'static,
) -> Option<T> {
    let owner = Arc::clone(b);
    tokio::task::spawn_blocking(move || {
        let dir = owner.directory.as_ref()?;
        let index = dir.index.read().unwrap_or_else(|e| e.into_inner());
        Some(f(&index))
    })
    .await
    .ok()
    .flatten()
}
