//! `[backends.NAME.directory]` from raw TOML to a ready [`Directory`]: the
//! page request compiled like a look-up (its templates see `page.*`,
//! `since`, `login.*` and secrets, never the payload), the periods and
//! bounds range-checked, and the record shape taken from the backend's own
//! reply (`records`, `phones`, `extract`), so the index keeps exactly what
//! the reply's templates read.

use std::hash::{Hash, Hasher};
use std::path::Path;
use std::time::Duration;

use super::backends::{request_spec, Parts};
use super::diag::Diagnostics;
use super::numbers::{
    millis, seconds, within, MAX_DIRECTORY_AGE_S, MAX_DIRECTORY_FULL_EVERY_S, MAX_DIRECTORY_PAGES,
    MAX_DIRECTORY_PAGES_PER_SECOND, MAX_DIRECTORY_PAGE_SIZE, MAX_PERIOD_S,
};
use super::probe::Sees;
use super::raw::{RawBackend, RawDirectory};
use crate::backend::reply::{Extract, ReplyFormat};
use crate::backend::ReplySpec;
use crate::constants::*;
use crate::directory::{Directory, DirectorySettings};
use crate::extract::JsonPath;
use crate::template::Templates;

/// Builds a backend's directory; `None` with errors in `diags` when it
/// cannot be.
pub(super) fn directory(
    d: &RawDirectory,
    b: &RawBackend,
    reply: &ReplySpec,
    key: &str,
    base: &Path,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<Directory> {
    let key = format!("{key}.directory");
    let Some(candidates) = &reply.candidates else {
        diags.error(
            &key,
            "a directory indexes records by their phone numbers: set reply.records and reply.phones (the same record shape the index is built from)",
        );
        return None;
    };
    let extract = match (&reply.extract, reply.format) {
        (Extract::Json(paths), ReplyFormat::Json) => paths.clone(),
        _ => {
            diags.error(
                &key,
                "a directory reads JSON pages: the backend's reply.format must be \"json\"",
            );
            return None;
        }
    };
    let login = b.login.is_some() || b.oauth2().is_some();
    let headers = d.headers.as_ref().unwrap_or(&b.headers);
    let parts = Parts {
        url: d.url.as_deref().unwrap_or(&b.url),
        method: if d.url.is_some() || d.method.is_some() {
            &d.method
        } else {
            &b.method
        },
        encoding: d.encoding.unwrap_or(b.encoding),
        body: &d.body,
        headers,
        auth: b.auth.as_ref(),
        format: ReplyFormat::Json,
        sees: Sees::Sync { login },
    };
    let mut request = request_spec(&parts, &key, base, templates, diags);
    if let (Some(request), true) = (request.as_mut(), b.oauth2().is_some()) {
        super::backends::bearer(request, &key, templates)?;
    }
    let path =
        |raw: &Option<String>, field: &str, default: Option<&str>, diags: &mut Diagnostics<'_>| {
            let text = raw.as_deref().or(default)?;
            let text = if text == "/" { "" } else { text };
            match JsonPath::parse(text) {
                Ok(p) => Some(p),
                Err(msg) => {
                    diags.error(&format!("{key}.{field}"), msg);
                    None
                }
            }
        };
    let records = match &d.records {
        Some(_) => path(&d.records, "records", None, diags)?,
        None => candidates.records.clone(),
    };
    let id = path(&d.id, "id", Some("id"), diags)?;
    let cursor = path(&d.cursor, "cursor", None, diags);
    let full_every = seconds(
        d.full_every_s,
        1..=MAX_DIRECTORY_FULL_EVERY_S,
        DEFAULT_DIRECTORY_FULL_EVERY,
        &format!("{key}.full_every_s"),
        diags,
    );
    // Without `every_s`, full syncs only (no default); one out of range is
    // an error, so the fallback below never runs.
    let every = d.every_s.map(|_| {
        seconds(
            d.every_s,
            1..=MAX_PERIOD_S,
            Duration::from_secs(MAX_PERIOD_S),
            &format!("{key}.every_s"),
            diags,
        )
    });
    let max_age = seconds(
        d.max_age_s,
        1..=MAX_DIRECTORY_AGE_S,
        full_every * DEFAULT_DIRECTORY_MAX_AGE_FULLS,
        &format!("{key}.max_age_s"),
        diags,
    );
    if max_age < every.unwrap_or(full_every) {
        diags.warn(
            &format!("{key}.max_age_s"),
            "shorter than the time between syncs: the index will often be too old to answer",
        );
    }
    let page_size = within(
        d.page_size,
        1..=MAX_DIRECTORY_PAGE_SIZE,
        DEFAULT_DIRECTORY_PAGE_SIZE,
        &format!("{key}.page_size"),
        diags,
    );
    let pps = within(
        d.pages_per_second,
        1..=MAX_DIRECTORY_PAGES_PER_SECOND,
        DEFAULT_DIRECTORY_PAGES_PER_SECOND,
        &format!("{key}.pages_per_second"),
        diags,
    );
    let max_pages = within(
        d.max_pages,
        1..=MAX_DIRECTORY_PAGES,
        DEFAULT_DIRECTORY_MAX_PAGES,
        &format!("{key}.max_pages"),
        diags,
    );
    let timeout = millis(
        d.timeout_ms,
        DEFAULT_DIRECTORY_PAGE_TIMEOUT,
        &format!("{key}.timeout_ms"),
        diags,
    );
    let since_overlap = seconds(
        d.since_overlap_s,
        0..=MAX_PERIOD_S,
        DEFAULT_DIRECTORY_SINCE_OVERLAP,
        &format!("{key}.since_overlap_s"),
        diags,
    );
    let snapshot_every = seconds(
        d.snapshot_every_s,
        1..=MAX_PERIOD_S,
        DEFAULT_DIRECTORY_SNAPSHOT_EVERY,
        &format!("{key}.snapshot_every_s"),
        diags,
    );
    let format_text = d
        .since_format
        .as_deref()
        .unwrap_or(DEFAULT_DIRECTORY_SINCE_FORMAT);
    let since_format = match time::format_description::parse_owned::<2>(format_text) {
        Ok(item) => vec![item],
        Err(e) => {
            diags.error(
                &format!("{key}.since_format"),
                format!("{format_text:?} is not a date format ({e}); e.g. \"[year]-[month]-[day] [hour]:[minute]:[second]\""),
            );
            return None;
        }
    };
    let snapshot = d.state_dir.as_deref().and_then(|dir| {
        // systemd's StateDirectory= is handed over as $STATE_DIRECTORY.
        let dir = match dir.strip_prefix("$STATE_DIRECTORY") {
            Some(rest) => match std::env::var_os("STATE_DIRECTORY") {
                Some(state) => Path::new(&state).join(rest.trim_start_matches('/')),
                None => {
                    diags.warn(
                        &format!("{key}.state_dir"),
                        "$STATE_DIRECTORY is not set (systemd's StateDirectory= sets it): no snapshot",
                    );
                    return None;
                }
            },
            None => base.join(dir),
        };
        let file: String = name_of(&key)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        Some(dir.join(format!("directory-{file}.snapshot")))
    });
    let request = request?;
    let definition = {
        let mut h = std::hash::DefaultHasher::new();
        format!("{d:?}").hash(&mut h);
        format!("{:?}", (&b.url, &b.encoding, &b.body, &b.headers, &b.reply)).hash(&mut h);
        h.finish()
    };
    Some(Directory::new(
        DirectorySettings {
            full_every,
            every,
            max_age,
            page_size,
            page_interval: Duration::from_secs(1) / pps,
            max_pages,
            timeout,
            since_format,
            since_overlap,
            snapshot,
            snapshot_every,
        },
        request,
        records,
        candidates.phones.clone(),
        id,
        cursor,
        extract,
        candidates.region,
        definition,
    ))
}

/// The backend's name in `backends.NAME.directory`.
fn name_of(key: &str) -> &str {
    let inner = key.strip_prefix("backends.").unwrap_or(key);
    inner.strip_suffix(".directory").unwrap_or(inner)
}
