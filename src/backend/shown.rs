//! How a backend request or reply is shown to a person: `simulate` prints
//! it, and the ops console keeps it in a recent call's trace. Credential
//! headers (marked sensitive) show `[redacted]`, a url rendered from a
//! secret shows its origin only, and bodies are cut; a query string and a
//! form body are shown decoded too, as the CRM reads them.

use std::fmt::Write as _;

use http::HeaderMap;

use super::BackendRequest;

/// A request as it is shown, from its parts: a request about to be sent
/// ([`request`]), or the parts the ops console keeps of one to show it
/// later.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// Its method.
    pub method: &'a str,
    /// Its url as it may be shown ([`BackendRequest::shown_url`]).
    pub url: &'a str,
    /// Its query string, when the url is shown whole.
    pub query: Option<&'a str>,
    /// Its headers.
    pub headers: Headers<'a>,
    /// Its body, or as much of it as was kept.
    pub body: &'a [u8],
    /// The whole body's length.
    pub body_len: usize,
    /// Whether the body is a form (`application/x-www-form-urlencoded`).
    pub form: bool,
}

/// A request's headers: the map, or their lines as [`headers`] writes
/// them.
#[derive(Debug, Clone, Copy)]
pub enum Headers<'a> {
    /// The headers themselves.
    Map(&'a HeaderMap),
    /// Their lines, already written.
    Written(&'a str),
}

impl<'a> Parts<'a> {
    /// The parts of `req`, whose url as shown is `url`.
    pub fn of(req: &'a BackendRequest, url: &'a str) -> Self {
        let form = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| is_form(v.as_bytes()));
        Self {
            method: req.method.as_str(),
            url,
            query: (!req.url_hidden).then(|| req.url.query()).flatten(),
            headers: Headers::Map(&req.headers),
            body: &req.body,
            body_len: req.body.len(),
            form,
        }
    }
}

/// Whether a `Content-Type` is a form's.
pub fn is_form(content_type: &[u8]) -> bool {
    content_type.starts_with(b"application/x-www-form-urlencoded")
}

/// `  METHOD url`, the query decoded, the headers, then the body (at most
/// `max_body` bytes) and a form body decoded, one item a line, each
/// indented by two spaces.
pub fn request(out: &mut String, req: &BackendRequest, max_body: usize) {
    let shown_url = req.url_hidden.then(|| req.shown_url());
    let url = shown_url.as_deref().unwrap_or(req.url.as_str());
    write(out, &Parts::of(req, url), max_body);
}

/// A request from its parts, as [`request`] writes it.
pub fn write(out: &mut String, parts: &Parts<'_>, max_body: usize) {
    out.push_str("  ");
    out.push_str(parts.method);
    out.push(' ');
    out.push_str(parts.url);
    out.push('\n');
    if let Some(query) = parts.query {
        decoded(out, "query string", query.as_bytes());
    }
    match parts.headers {
        Headers::Map(map) => headers(out, map),
        Headers::Written(lines) => out.push_str(lines),
    }
    let cut = parts.body.len().min(max_body);
    body_cut(out, &parts.body[..cut], parts.body_len.saturating_sub(cut));
    if parts.form && !parts.body.is_empty() {
        out.push('\n');
        decoded(out, "form body", parts.body);
    }
}

/// A query string or form body, decoded: one `name = value` a line, as
/// the CRM reads them (`%2C` is `,`, `+` a space).
pub fn decoded(out: &mut String, what: &str, encoded: &[u8]) {
    let _ = writeln!(out, "  {what}, decoded:");
    for (name, value) in url::form_urlencoded::parse(encoded) {
        let _ = writeln!(
            out,
            "    {} = {}",
            printable(&name),
            printable(&value).replace('\n', "\n      ")
        );
    }
}

/// `text` with control characters other than newlines and tabs escaped,
/// so a decoded value cannot move the cursor or colour the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

const REDACTED: &str = "[redacted]";

/// One `  name: value` line a header; credentials show `[redacted]`.
pub fn headers(out: &mut String, headers: &HeaderMap) {
    for (name, value) in headers {
        out.push_str("  ");
        out.push_str(name.as_str());
        out.push_str(": ");
        if value.is_sensitive() {
            out.push_str(REDACTED);
        } else {
            // A header value holds no control character but tabs: it is
            // shown as UTF-8, lossily.
            match std::str::from_utf8(value.as_bytes()) {
                Ok(text) => out.push_str(text),
                Err(_) => out.push_str(&String::from_utf8_lossy(value.as_bytes())),
            }
        }
        out.push('\n');
    }
}

/// A blank line, then the body's first `max` bytes a line at a time, and
/// how many bytes were left out; nothing for an empty body.
pub fn body(out: &mut String, body: &[u8], max: usize) {
    let cut = body.len().min(max);
    body_cut(out, &body[..cut], body.len() - cut);
}

/// A blank line, then `kept` a line at a time, and that `left_out` bytes
/// were; nothing for an empty body.
fn body_cut(out: &mut String, kept: &[u8], left_out: usize) {
    if kept.is_empty() && left_out == 0 {
        return;
    }
    out.push('\n');
    let text = match std::str::from_utf8(kept) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(kept),
    };
    if memchr::memchr(b'\n', text.as_bytes()).is_none() {
        // One line (a form, a query, compact JSON): as `lines` gives it.
        out.push_str("  ");
        out.push_str(&text);
        out.push('\n');
    } else {
        for line in text.lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    if left_out > 0 {
        let _ = writeln!(out, "  ... ({left_out} more bytes)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Method};

    fn sample(body: &str) -> BackendRequest {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let mut auth = HeaderValue::from_static("Bearer s3cr3t");
        auth.set_sensitive(true);
        headers.insert("authorization", auth);
        BackendRequest {
            method: Method::POST,
            url: url::Url::parse("https://crm.example.org/find?q=1").unwrap(),
            headers,
            body: bytes::Bytes::from(body.to_owned()),
            carries_token: false,
            confidential: false,
            follows_redirects: false,
            hidden: Vec::new(),
            url_hidden: false,
        }
    }

    #[test]
    fn a_request_shows_method_url_headers_and_body_with_credentials_redacted() {
        let mut out = String::new();
        request(&mut out, &sample("{\"a\":1}\n{\"b\":2}"), 1024);
        assert_eq!(
            out,
            "  POST https://crm.example.org/find?q=1\n  query string, decoded:\n    q = 1\n  content-type: application/json\n  authorization: [redacted]\n\n  {\"a\":1}\n  {\"b\":2}\n"
        );
    }

    #[test]
    fn a_long_body_is_cut_and_says_how_much_is_left_out() {
        let mut out = String::new();
        body(&mut out, b"abcdef", 4);
        assert_eq!(out, "\n  abcd\n  ... (2 more bytes)\n");
        let mut hidden = sample("");
        hidden.url_hidden = true;
        let mut out = String::new();
        request(&mut out, &hidden, 4);
        assert!(
            out.starts_with("  POST https://crm.example.org/[redacted]\n"),
            "{out}"
        );
    }
}
