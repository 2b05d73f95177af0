//! One page of a sync: asked through the backend's client and session (one
//! re-login and retry when the CRM refuses it), then read: the list of
//! records, each record's numbers and the values its reply needs, and
//! where the next page starts (a cursor, or the last record's id).

use minijinja::value::Value;
use tokio::time::Instant;

use super::index::{id_hash, key, Record};
use super::{values, Directory};
use crate::backend::Backend;
use crate::metrics::Metrics;
use crate::phone::Number;
use crate::template::Templates;

/// Where a sync is in its pages.
#[derive(Debug, Default)]
pub(super) struct Page {
    pub(super) number: u32,
    pub(super) offset: u64,
    pub(super) cursor: Option<String>,
    pub(super) last: Option<String>,
}

/// One page: built from the directory's request with `page`, `since` and
/// the backend's session; re-login and one retry when the CRM refuses the
/// session, as a look-up does.
pub(super) async fn fetch(
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

/// A page read: each record as the index keeps it, the next cursor.
#[derive(Debug)]
pub(super) struct PageRead {
    pub(super) records: Vec<Record>,
    pub(super) cursor: Option<String>,
    /// The id of the page's last record: `page.last` of the next page,
    /// for CRMs paged by "id greater than" (keyset paging).
    pub(super) last: Option<String>,
}

/// Parses a page and reads every record's numbers (blocking work).
pub(super) fn read_page(dir: &Directory, body: &[u8]) -> Result<PageRead, String> {
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
        records: records.iter().map(|r| record_of(dir, r)).collect(),
        cursor,
        last,
    })
}

/// One record as the index keeps it: its id's hash, its numbers, and
/// (when it has numbers) the values its reply reads.
pub(super) fn record_of(dir: &Directory, record: &serde_json::Value) -> Record {
    let id = dir.id.lookup(record).and_then(id_hash);
    let mut numbers = Vec::new();
    let mut found = Vec::new();
    for (_, path) in &dir.phones {
        found.clear();
        path.lookup_all(record, 16, &mut found);
        for value in &found {
            let text = match value {
                serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                serde_json::Value::Number(n) => std::borrow::Cow::Owned(n.to_string()),
                _ => continue,
            };
            if let Some(n) = Number::read(&text, dir.region) {
                numbers.push(key(&n));
            }
        }
    }
    numbers.sort_unstable();
    numbers.dedup();
    let mut values = Vec::new();
    if !numbers.is_empty() {
        values::encode(
            dir.extract.iter().map(|(_, path)| path.lookup(record)),
            &mut values,
        );
    }
    Record {
        id,
        numbers: numbers.into_boxed_slice(),
        values: values.into_boxed_slice(),
    }
}
