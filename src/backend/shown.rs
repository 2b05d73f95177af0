//! How a backend request or reply is shown to a person: `simulate` prints
//! it, and the ops console keeps it in a recent call's trace. Credential
//! headers (marked sensitive) show `[redacted]`, a url rendered from a
//! secret shows its origin only, and bodies are cut. Written with
//! `push_str` rather than `write!`: the console writes one on every call.

use std::fmt::Write as _;

use http::HeaderMap;

use super::BackendRequest;

/// `  METHOD url`, the headers, then the body (at most `max_body` bytes),
/// one item a line, each indented by two spaces. Room for it all is made
/// first, so the text is written without growing.
pub fn request(out: &mut String, req: &BackendRequest, max_body: usize) {
    let shown_url = req.url_hidden.then(|| req.shown_url());
    let url = shown_url.as_deref().unwrap_or(req.url.as_str());
    out.reserve(request_len(req, url, max_body));
    out.push_str("  ");
    out.push_str(req.method.as_str());
    out.push(' ');
    out.push_str(url);
    out.push('\n');
    headers(out, &req.headers);
    body(out, &req.body, max_body);
}

/// About the length [`request`] writes (a body of one line, headers of
/// usual length); more only grows the text once.
fn request_len(req: &BackendRequest, url: &str, max_body: usize) -> usize {
    let line = 4 + req.method.as_str().len() + url.len();
    // A header line is rarely longer; one that is grows the text once.
    let headers = req.headers.len() * 64;
    let body = match req.body.len() {
        0 => 0,
        n if n <= max_body => 4 + n,
        // The cut, and "  ... (N more bytes)".
        _ => 4 + max_body + 40,
    };
    line + headers + body
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
            // Visible ASCII, as nearly every header is, is checked fastest
            // by `to_str`; anything else is read as UTF-8, lossily.
            match value.to_str() {
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
    if body.is_empty() {
        return;
    }
    let cut = body.len().min(max);
    out.push('\n');
    let text = match std::str::from_utf8(&body[..cut]) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(&body[..cut]),
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
    if cut < body.len() {
        let _ = writeln!(out, "  ... ({} more bytes)", body.len() - cut);
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
            "  POST https://crm.example.org/find?q=1\n  content-type: application/json\n  authorization: [redacted]\n\n  {\"a\":1}\n  {\"b\":2}\n"
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
