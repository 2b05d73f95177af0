//! `simulate --crm-reply BACKEND=FILE`: a CRM reply saved in a file, read
//! instead of asking that backend (no login, no request), so the reply side
//! of a config (extraction, candidates, reply templates, the contract's
//! checks) can be tried before the CRM is reachable from the gateway, or
//! on a reply that is hard to get again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::backend::RawReply;
use crate::config::{suggest, Config};

/// One backend's saved reply.
#[derive(Debug)]
pub(super) struct SavedReply {
    /// Where it was read from, as given.
    pub(super) file: PathBuf,
    /// The reply body, as the CRM sent it.
    pub(super) body: Bytes,
}

impl SavedReply {
    /// The reply as the backend's client would have read it: HTTP 200,
    /// no headers (the reply's `format` says how to read the body).
    pub(super) fn raw(&self) -> RawReply {
        // Only shown (`from file:///...`); nothing resolves against it.
        let url = std::path::absolute(&self.file)
            .ok()
            .and_then(|p| url::Url::from_file_path(p).ok())
            .unwrap_or_else(|| url::Url::parse("file:///").expect("a literal URL parses"));
        RawReply {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: self.body.clone(),
            url,
        }
    }
}

/// Reads each `BACKEND=FILE` argument. The backend must be one of the
/// config's (a misspelt name gets a "did you mean"), named once; the file a
/// regular file of at most that backend's `max_response_bytes`, as the
/// gateway would read the CRM's reply.
pub(super) fn load(
    config: &Config,
    args: &[String],
) -> anyhow::Result<BTreeMap<Box<str>, SavedReply>> {
    let mut saved = BTreeMap::new();
    for arg in args {
        let Some((name, file)) = arg.split_once('=') else {
            bail!("--crm-reply {arg:?}: expected BACKEND=FILE, e.g. --crm-reply crm=reply.json");
        };
        let Some(backend) = config.backends.get(name) else {
            let names: Vec<&str> = config.backends.keys().map(|k| &**k).collect();
            let known = if names.is_empty() {
                "it has no backends".to_owned()
            } else {
                format!("its backends: {}", names.join(", "))
            };
            bail!(
                "--crm-reply {arg:?}: no backend {name:?} in {}{} ({known})",
                config.file.display(),
                suggest(name, names.iter().copied())
            );
        };
        let file = PathBuf::from(file);
        let body = read(&file, backend.client.max_response_bytes())
            .map_err(|e| anyhow!("--crm-reply {arg:?}: {e}"))?;
        if saved
            .insert(name.into(), SavedReply { file, body })
            .is_some()
        {
            bail!("--crm-reply: backend {name:?} is given twice");
        }
    }
    Ok(saved)
}

fn read(file: &Path, cap: usize) -> Result<Bytes, String> {
    let cap = u64::try_from(cap).unwrap_or(u64::MAX);
    crate::files::read(file, cap)
        .map(Bytes::from)
        .map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::InvalidData {
                format!("{e} (the backend's max_response_bytes: the gateway refuses a reply this large from the CRM too)")
            } else {
                e.to_string()
            };
            format!("cannot read {}: {why}", file.display())
        })
}
