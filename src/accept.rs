//! Content negotiation for the few answers that exist for people (HTML) as
//! well as programs (JSON): an admin's browser opening the gateway's URL gets
//! a page, `curl` and XucMgt get JSON. As nginx and Caddy do, the best
//! matching media range's `q` decides; a tie (`*/*`, no `Accept`) is JSON.

use http::HeaderValue;

/// Whether `Accept` ranks `text/html` above `application/json`.
pub fn prefers_html(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    quality(accept, "text", "html") > quality(accept, "application", "json")
}

/// The `q` of the most specific range in `accept` that matches
/// `kind/sub` (0 when none does).
fn quality(accept: &str, kind: &str, sub: &str) -> f32 {
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let Some((k, s)) = media.split_once('/') else {
            continue;
        };
        let specificity = match (k.trim(), s.trim()) {
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => 2,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(accept: &str) -> bool {
        prefers_html(Some(&HeaderValue::from_str(accept).unwrap()))
    }

    #[test]
    fn browsers_get_html() {
        // Chromium's and Firefox's navigation Accept headers.
        assert!(html("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"));
        assert!(html(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ));
        assert!(html("application/json;q=0.5, text/*"));
    }

    #[test]
    fn programs_and_ties_get_json() {
        assert!(!prefers_html(None));
        assert!(!html("*/*"));
        assert!(!html("application/json"));
        assert!(!html("text/html;q=0.5, application/json"));
        assert!(!html("text/html, application/json"));
        assert!(!html("text/html;q=0, */*"));
        assert!(!html("nonsense"));
    }
}
