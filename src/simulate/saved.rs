//! `simulate --crm-reply BACKEND=FILE`: a CRM reply saved in a file, read
//! instead of asking that backend (no login, no request), so the reply side
//! of a config (extraction, candidates, reply templates, the contract's
//! checks) can be tried before the CRM is reachable from the gateway, or
//! on a reply that is hard to get again.
//!
//! A file saved with `curl -i` starts with the response's status line and
//! headers: they are the reply's (a 401 tells a refused session, a 204 an
//! empty search). A file without them is the body, taken as HTTP 200.

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
    /// The reply's status: the saved head's, or 200.
    pub(super) status: StatusCode,
    /// The saved head's headers (none without a head), less those that
    /// describe the transfer `curl` already undid.
    pub(super) headers: HeaderMap,
    /// The reply body, as the CRM sent it.
    pub(super) body: Bytes,
    /// Whether the file had a head (`curl -i`).
    pub(super) had_head: bool,
}

impl SavedReply {
    /// The reply as the backend's client would have read it.
    pub(super) fn raw(&self) -> RawReply {
        // Only shown (`from file:///...`); nothing resolves against it.
        let url = std::path::absolute(&self.file)
            .ok()
            .and_then(|p| url::Url::from_file_path(p).ok())
            .unwrap_or_else(|| url::Url::parse("file:///").expect("a literal URL parses"));
        RawReply {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
            url,
            redirected: false,
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
        let bytes = read(&file, backend.client.max_response_bytes())
            .map_err(|e| anyhow!("--crm-reply {arg:?}: {e}"))?;
        let reply = parse(file, bytes).map_err(|e| anyhow!("--crm-reply {arg:?}: {e}"))?;
        if saved.insert(name.into(), reply).is_some() {
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

/// Headers a saved head may hold at most.
const MAX_HEADERS: usize = 100;

/// Reads a saved reply: a head (`HTTP/1.1 401 Unauthorized`, `HTTP/2 200`)
/// and its headers when the file starts with one, then the body. `curl -i`
/// prints an interim `100 Continue` head and, with `-L`, each redirect's
/// head before the last response: those are skipped.
fn parse(file: PathBuf, bytes: Bytes) -> Result<SavedReply, String> {
    let shown = file.display().to_string();
    let mut rest = bytes;
    let mut head = None;
    while rest.starts_with(b"HTTP/") {
        let (status, headers, used) =
            read_head(&rest).map_err(|e| format!("{shown}: not an HTTP response head: {e}"))?;
        rest = rest.slice(used..);
        let skipped = status.is_informational() || status.is_redirection();
        head = Some((status, headers));
        if !(skipped && rest.starts_with(b"HTTP/")) {
            break;
        }
    }
    let had_head = head.is_some();
    let (status, headers) = head.unwrap_or((StatusCode::OK, HeaderMap::new()));
    Ok(SavedReply {
        file,
        status,
        headers,
        body: rest,
        had_head,
    })
}

/// One head: the status line (any HTTP version, as `curl -i` writes it),
/// then the headers; returns how many bytes it took.
fn read_head(bytes: &[u8]) -> Result<(StatusCode, HeaderMap, usize), String> {
    let line_end = memchr::memchr(b'\n', bytes).ok_or("no end to the status line")?;
    let line = String::from_utf8_lossy(&bytes[..line_end]);
    let line = line.trim_end_matches('\r');
    let code = line
        .split(' ')
        .nth(1)
        .ok_or_else(|| format!("{line:?} has no status code"))?;
    let status = code
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| format!("{line:?}: {code:?} is not a status code"))?;
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (used, parsed) = match httparse::parse_headers(&bytes[line_end + 1..], &mut slots) {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) => {
            return Err("the headers have no end (an empty line)".into())
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!("more than {MAX_HEADERS} headers"))
        }
        Err(e) => return Err(format!("the headers: {e}")),
    };
    let mut headers = HeaderMap::new();
    for h in parsed {
        let name = http::HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("{:?} is not a header name", h.name))?;
        // The body in the file is what `curl` made of the transfer:
        // de-chunked, decompressed, of its own length.
        if [
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
            http::header::CONTENT_ENCODING,
        ]
        .contains(&name)
        {
            continue;
        }
        let value = http::HeaderValue::from_bytes(h.value)
            .map_err(|_| format!("header {:?} has a value that is not one", h.name))?;
        headers.append(name, value);
    }
    Ok((status, headers, line_end + 1 + used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(text: &str) -> Result<SavedReply, String> {
        parse(PathBuf::from("reply.http"), Bytes::from(text.to_owned()))
    }

    #[test]
    fn a_body_alone_is_taken_as_http_200() {
        let s = saved(r#"{"ok":true}"#).unwrap();
        assert_eq!((s.status, s.had_head), (StatusCode::OK, false));
        assert!(s.headers.is_empty());
        assert_eq!(&s.body[..], br#"{"ok":true}"#);
    }

    #[test]
    fn a_curl_i_head_gives_status_and_headers() {
        let s = saved(
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
             Content-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n{\"error\":\"INVALID_SESSIONID\"}",
        )
        .unwrap();
        assert_eq!((s.status, s.had_head), (StatusCode::UNAUTHORIZED, true));
        assert_eq!(s.headers.len(), 1, "{:?}", s.headers);
        assert_eq!(s.headers["content-type"], "application/json");
        assert_eq!(&s.body[..], br#"{"error":"INVALID_SESSIONID"}"#);
        // HTTP/2 as curl prints it, LF line ends as an editor saves them.
        let s = saved("HTTP/2 204 \ndate: Mon, 07 Dec 2026 10:00:00 GMT\n\n").unwrap();
        assert_eq!(s.status, StatusCode::NO_CONTENT);
        assert!(s.body.is_empty());
    }

    #[test]
    fn interim_and_redirect_heads_are_skipped() {
        let s = saved(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[]",
        )
        .unwrap();
        assert_eq!(s.status, StatusCode::OK);
        assert!(s.headers.get("location").is_none());
        assert_eq!(&s.body[..], b"[]");
        // A redirect that is the last head is the reply.
        let s = saved("HTTP/1.1 302 Found\r\nLocation: /login\r\n\r\n").unwrap();
        assert_eq!(s.status, StatusCode::FOUND);
    }

    #[test]
    fn a_broken_head_is_refused_with_the_file_named() {
        for (text, want) in [
            ("HTTP/1.1\r\n\r\n", "has no status code"),
            ("HTTP/1.1 abc OK\r\n\r\n", "is not a status code"),
            ("HTTP/1.1 200 OK\r\nContent-Type: a", "have no end"),
            ("HTTP/1.1 200 OK", "no end to the status line"),
            (
                "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
                "reply.http: not an HTTP response head",
            ),
        ] {
            let e = saved(text).err().unwrap_or_default();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.starts_with("reply.http: "), "{e}");
        }
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "X-A: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(saved(&many)
            .err()
            .unwrap_or_default()
            .contains("more than 100 headers"));
    }
}
