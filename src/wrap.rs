//! The completion wrapper. Many CRM pages refuse to be framed and none post
//! `closeThirdParty`, so an agent on `autopause` stays paused. A route with
//! `wrap = true` hands XucMgt the gateway's own page instead: a title, a
//! **Done** button that posts `closeThirdParty`, and the CRM page in a frame,
//! or a link to open it in a new window when the CRM refuses framing.
//!
//! The page's link is stateless: `/wrap?t=PAYLOAD.SIG`, where PAYLOAD is the
//! target url, title and expiry as JSON, zlib-compressed and base64url, and
//! SIG its HMAC-SHA256 under the configured secret. Any instance with the
//! same secret can serve it; nothing is stored. Compressed because the link
//! must stay within the contract's url limit, and CRM urls with long query
//! strings are common.
//!
//! A CRM page framed in the wrapper that ends the work the way XucMgt's
//! documentation says (`parent.postMessage("closeThirdParty", "*")`) reaches
//! the wrapper, not XucMgt: `wrap.js` relays that one message, from that one
//! frame, to XucMgt.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;
use ring::hmac;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::backend::Client;
use crate::constants::MAX_URL_LEN;
use crate::contract::{Event, Open};
use crate::cors::Cors;
use crate::pages;
use crate::request_id::RequestId;

/// Longest token accepted; a url is at most 4 KiB, so this is generous.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Largest inflated payload read from a (signed) token: a url of at most
/// 4 KiB and a title, JSON-escaped.
const MAX_CLAIMS_LEN: usize = 32 * 1024;
/// How long a framing verdict is remembered.
const FRAMING_TTL: Duration = Duration::from_secs(600);
/// Verdicts remembered at most (the cache is cleared when full).
const FRAMING_CACHE_MAX: usize = 1024;

/// `[wrap]`, validated. The wrapper itself is built with the gateway
/// generation, because the demo secret may have to be generated first.
#[derive(Debug)]
pub struct WrapSettings {
    /// Where the signing secret comes from.
    pub secret: WrapSecret,
    /// How long a link stays valid.
    pub ttl: Duration,
    /// The gateway's public URL; `None`: the origin the browser used.
    pub public_url: Option<Url>,
    /// The client that asks CRM pages whether they may be framed.
    pub client: Client,
    /// Time allowed for that whole check, connect to reply head.
    pub frame_check_timeout: Duration,
}

/// The wrapper's signing secret.
#[derive(Debug)]
pub enum WrapSecret {
    /// Read from the environment or a file.
    Value(Vec<u8>),
    /// Demo only: the file is missing and may be generated at start.
    Generate(PathBuf),
}

/// What a wrapper link carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    /// The target url (absolute http/https).
    u: String,
    /// The title.
    t: String,
    /// Expiry, seconds since the Unix epoch.
    x: u64,
}

/// Why a wrapper link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token this gateway could have made (bad shape or signature).
    #[error("the link is not valid (altered or from another gateway)")]
    Invalid,
    /// Signed by us, but too old.
    #[error("the link has expired")]
    Expired,
}

/// Why an `open` reply could not be pointed at the wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// Neither `wrap.public_url` nor a usable Host header names the gateway.
    #[error("no wrap.public_url and no usable Host header to name the gateway")]
    NoOrigin,
    /// The signed link would be over the contract's url limit.
    #[error(
        "the signed link would be {0} bytes, over the {MAX_URL_LEN}-byte url limit even compressed"
    )]
    TooLong(usize),
}

/// What a `GET /wrap` showed, for its log line and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageOutcome {
    /// The CRM page in a frame.
    Framed,
    /// The CRM page refuses framing: a link to open it in a new window.
    FramingRefused,
    /// The framing check did not finish in time: the new-window link.
    CheckTimeout,
    /// A 400: the link was refused.
    Refused(TokenError),
}

impl PageOutcome {
    /// The label used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PageOutcome::Framed => "framed",
            PageOutcome::FramingRefused => "framing_refused",
            PageOutcome::CheckTimeout => "check_timeout",
            PageOutcome::Refused(TokenError::Invalid) => "invalid_link",
            PageOutcome::Refused(TokenError::Expired) => "expired_link",
        }
    }
}

/// The framing check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Allowed,
    Refused,
    /// No head within `frame_check_timeout_ms`; not remembered.
    TimedOut,
}

/// Makes and checks wrapper links, and serves the wrapper page.
pub struct Wrapper {
    key: hmac::Key,
    ttl: Duration,
    public_url: Option<Url>,
    client: Client,
    /// Bounds the whole framing check (connect, TLS, request, head), so a
    /// CRM that accepts and never answers cannot hold `GET /wrap`.
    check_timeout: Duration,
    frame_ancestors: String,
    cache: Mutex<HashMap<String, (bool, Instant)>>,
}

impl std::fmt::Debug for Wrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wrapper")
            .field("ttl", &self.ttl)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl Wrapper {
    /// A wrapper signing with `secret`. `frame_ancestors` is who may frame
    /// the page (XucMgt's origins, or `*`); `client` checks framing rules,
    /// within `check_timeout`.
    pub fn new(
        secret: &[u8],
        ttl: Duration,
        public_url: Option<Url>,
        (client, check_timeout): (Client, Duration),
        frame_ancestors: String,
    ) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ttl,
            public_url,
            client,
            check_timeout,
            frame_ancestors,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The wrapper a config describes, signing with `secret`.
    pub fn from_settings(settings: &WrapSettings, secret: &[u8], cors: &Cors) -> Self {
        Self::new(
            secret,
            settings.ttl,
            settings.public_url.clone(),
            (settings.client.clone(), settings.frame_check_timeout),
            cors.origins_as_sources(),
        )
    }

    /// Replaces an `open` reply's url by a signed link to the wrapper page.
    /// `origin` is the gateway's origin as the browser reached it, used when
    /// `wrap.public_url` is not set.
    pub fn wrap(&self, open: &Open, origin: Option<&str>) -> Result<Open, WrapError> {
        let base = match (&self.public_url, origin) {
            (Some(url), _) => url.clone(),
            (None, Some(origin)) => Url::parse(origin).map_err(|_| WrapError::NoOrigin)?,
            (None, None) => return Err(WrapError::NoOrigin),
        };
        let token = self.sign(open.url(), open.title(), SystemTime::now());
        let mut link = base.join("wrap").map_err(|_| WrapError::NoOrigin)?;
        link.query_pairs_mut().append_pair("t", &token);
        if link.as_str().len() > MAX_URL_LEN {
            return Err(WrapError::TooLong(link.as_str().len()));
        }
        Open::new(open.event(), link.as_str(), open.autopause(), open.title())
            .map_err(|_| WrapError::TooLong(link.as_str().len()))
    }

    fn sign(&self, url: &str, title: &str, now: SystemTime) -> String {
        let expiry = now
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(u64::MAX, |d| d.as_secs());
        let claims = Claims {
            u: url.to_owned(),
            t: title.to_owned(),
            x: expiry,
        };
        let json = serde_json::to_vec(&claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(compress(&json));
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks a token's signature, shape and expiry; returns url and title.
    fn verify(&self, token: &str, now: SystemTime) -> Result<(Url, String), TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let (payload, sig) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Invalid)?;
        hmac::verify(&self.key, payload.as_bytes(), &sig).map_err(|_| TokenError::Invalid)?;
        let packed = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Invalid)?;
        let json = inflate(&packed).ok_or(TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Invalid)?;
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now >= claims.x {
            return Err(TokenError::Expired);
        }
        // Signed by us, so it was valid when made; checked again all the same.
        let open = Open::new(Event::EventRinging, &claims.u, false, &claims.t)
            .map_err(|_| TokenError::Invalid)?;
        let url = Url::parse(open.url()).map_err(|_| TokenError::Invalid)?;
        Ok((url, open.title().to_owned()))
    }

    /// Serves `GET /wrap?t=...`: the page, or a clear 400, and what it
    /// showed. `origin` is the gateway's origin as the browser reached it.
    pub async fn page(
        &self,
        query: Option<&str>,
        origin: Option<&str>,
        id: RequestId,
    ) -> (Response<Full<Bytes>>, PageOutcome) {
        let token = query
            .into_iter()
            .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
            .find(|(k, _)| k == "t")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let (url, title) = match self.verify(&token, SystemTime::now()) {
            Ok(found) => found,
            Err(err) => {
                let page = pages::error(
                    StatusCode::BAD_REQUEST,
                    "This link cannot be opened",
                    &format!("{err}. Ask for the screen-pop again from the next call."),
                );
                return (page, PageOutcome::Refused(err));
            }
        };
        // The CRM frame's ancestors: this page, and XucMgt when its origins are known.
        let own = self
            .public_url
            .as_ref()
            .map(|u| u.origin().ascii_serialization())
            .or_else(|| origin.map(str::to_owned));
        let mut ancestors: Vec<&str> = own.as_deref().into_iter().collect();
        if self.frame_ancestors != "*" {
            ancestors.extend(self.frame_ancestors.split_whitespace());
        }
        let framing = self.framing(&url, &ancestors, id).await;
        let frame_src = url.origin().ascii_serialization();
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; frame-src {frame_src}; \
             frame-ancestors {}; base-uri 'none'; form-action 'none'",
            self.frame_ancestors
        );
        let (framable, slow, outcome) = match framing {
            Framing::Allowed => (true, false, PageOutcome::Framed),
            Framing::Refused => (false, false, PageOutcome::FramingRefused),
            Framing::TimedOut => (false, true, PageOutcome::CheckTimeout),
        };
        let page = pages::html(
            StatusCode::OK,
            "wrap.html",
            minijinja::context! { url => url.as_str(), title, framable, slow },
            &csp,
        );
        (page, outcome)
    }

    /// Whether the target lets itself be framed by another origin, asked
    /// once and remembered. A failed check counts as framable (the page
    /// always offers the new-window link too); one that ran out of time
    /// does not, since a page that slow would leave the frame blank.
    async fn framing(&self, url: &Url, ancestors: &[&str], id: RequestId) -> Framing {
        let mut key = url.clone();
        key.set_query(None);
        key.set_fragment(None);
        let key = key.to_string();
        if let Ok(cache) = self.cache.lock() {
            if let Some((verdict, at)) = cache.get(&key) {
                if at.elapsed() < FRAMING_TTL {
                    return if *verdict {
                        Framing::Allowed
                    } else {
                        Framing::Refused
                    };
                }
            }
        }
        let check = tokio::time::timeout(self.check_timeout, self.client.headers_of(url.clone()));
        let verdict = match check.await {
            Ok(Ok((_, headers))) => !refuses_framing(&headers, ancestors),
            Ok(Err(failure)) => {
                tracing::info!(%id, url = %key, reason = %failure, "framing check failed: assuming the page can be framed");
                true
            }
            Err(_) => {
                tracing::info!(%id, url = %key, timeout_ms = self.check_timeout.as_millis(), "framing check: no reply in time: showing the new-window link");
                return Framing::TimedOut;
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= FRAMING_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (verdict, Instant::now()));
        }
        if verdict {
            Framing::Allowed
        } else {
            Framing::Refused
        }
    }
}

/// zlib-compresses the claims (zlib rather than raw deflate: its first byte,
/// 0x78, never starts JSON, so links made before compression still open).
fn compress(json: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(json.len()),
        flate2::Compression::best(),
    );
    // Writing to a Vec cannot fail; an empty payload fails verification.
    encoder
        .write_all(json)
        .and_then(|()| encoder.finish())
        .unwrap_or_default()
}

/// The claims' JSON from a verified payload: inflated, at most
/// [`MAX_CLAIMS_LEN`] bytes, or as is when it is plain JSON.
fn inflate(packed: &[u8]) -> Option<Vec<u8>> {
    if packed.first() == Some(&b'{') {
        return Some(packed.to_vec());
    }
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(packed)
        .take(MAX_CLAIMS_LEN as u64 + 1)
        .read_to_end(&mut json)
        .ok()?;
    (json.len() <= MAX_CLAIMS_LEN).then_some(json)
}

/// Whether headers forbid framing by another origin: `X-Frame-Options`
/// (DENY, SAMEORIGIN, or the obsolete ALLOW-FROM), or a CSP `frame-ancestors`
/// that allows neither `*` nor every origin in `ancestors`.
pub fn refuses_framing(headers: &HeaderMap, ancestors: &[&str]) -> bool {
    let xfo = headers
        .get_all(http::header::X_FRAME_OPTIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "deny" || v == "sameorigin" || v.starts_with("allow-from")
        });
    let csp = headers
        .get_all(http::header::CONTENT_SECURITY_POLICY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|policy| policy.split(';'))
        .filter_map(|directive| {
            let mut words = directive.split_whitespace();
            words
                .next()
                .filter(|name| name.eq_ignore_ascii_case("frame-ancestors"))
                .map(|_| words.map(str::to_ascii_lowercase).collect::<Vec<_>>())
        })
        .any(|sources| {
            if sources.iter().any(|s| s == "*") {
                return false;
            }
            // Every framing origin must be listed (the gateway and XucMgt).
            !ancestors
                .iter()
                .all(|a| sources.iter().any(|s| s == &a.to_ascii_lowercase()))
        });
    xfo || csp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapper() -> Wrapper {
        let tls = crate::tls::client_config(None, None).unwrap();
        Wrapper::new(
            b"test secret",
            Duration::from_secs(60),
            Url::parse("https://gw.example.org:8443/").ok(),
            (
                Client::new(tls, Duration::from_millis(100), 0, 1024),
                Duration::from_millis(100),
            ),
            "*".into(),
        )
    }

    #[test]
    fn round_trip_tamper_and_expiry() {
        let w = wrapper();
        let now = SystemTime::now();
        let token = w.sign("https://crm.example.org/c?id=1", "Card <1>", now);
        let (url, title) = w.verify(&token, now).unwrap();
        assert_eq!(
            (url.as_str(), title.as_str()),
            ("https://crm.example.org/c?id=1", "Card <1>")
        );

        // Any change to payload or signature is refused.
        let (payload, sig) = token.split_once('.').unwrap();
        let forged =
            URL_SAFE_NO_PAD.encode(br#"{"u":"https://evil.example/","t":"x","x":99999999999}"#);
        for bad in [
            format!("{forged}.{sig}"),
            format!("{payload}.{}", URL_SAFE_NO_PAD.encode([0u8; 32])),
            format!("{payload}x.{sig}"),
            payload.to_owned(),
            String::new(),
            "a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(w.verify(&bad, now), Err(TokenError::Invalid), "{bad}");
        }
        // Another secret's token is refused.
        let other = Wrapper::new(
            b"other",
            Duration::from_secs(60),
            None,
            (wrapper().client, Duration::from_millis(100)),
            "*".into(),
        );
        assert_eq!(other.verify(&token, now), Err(TokenError::Invalid));
        // Expired after the ttl.
        assert_eq!(
            w.verify(&token, now + Duration::from_secs(61)),
            Err(TokenError::Expired)
        );
    }

    /// Signs an arbitrary payload as `sign` would, for shapes `sign` never makes.
    fn signed(w: &Wrapper, payload: &[u8]) -> String {
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let tag = hmac::sign(&w.key, payload.as_bytes());
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    #[test]
    fn links_from_before_compression_still_open_and_bombs_do_not() {
        let w = wrapper();
        let now = SystemTime::now();
        let plain = signed(
            &w,
            br#"{"u":"https://crm.example.org/c","t":"T","x":99999999999}"#,
        );
        let (url, _) = w.verify(&plain, now).unwrap();
        assert_eq!(url.as_str(), "https://crm.example.org/c");
        // Even signed by us, a payload inflating past the bound is refused.
        let bomb = compress(&vec![b' '; 4 * MAX_CLAIMS_LEN]);
        assert!(bomb.len() < 1024);
        assert_eq!(w.verify(&signed(&w, &bomb), now), Err(TokenError::Invalid));
    }

    #[test]
    fn wrapped_reply_points_at_the_wrapper_and_keeps_the_rest() {
        let w = wrapper();
        let open = Open::new(
            Event::EventEstablished,
            "https://crm.example.org/c",
            true,
            "T",
        )
        .unwrap();
        let wrapped = w.wrap(&open, None).unwrap();
        assert!(wrapped
            .url()
            .starts_with("https://gw.example.org:8443/wrap?t="));
        assert_eq!(
            (wrapped.event(), wrapped.autopause(), wrapped.title()),
            (Event::EventEstablished, true, "T")
        );
    }

    #[test]
    fn framing_rules() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        let gw = &["https://gw.example.org"][..];
        assert!(!refuses_framing(&h(&[]), gw));
        assert!(refuses_framing(&h(&[("x-frame-options", "DENY")]), gw));
        assert!(refuses_framing(
            &h(&[("x-frame-options", "sameorigin")]),
            gw
        ));
        assert!(refuses_framing(
            &h(&[(
                "content-security-policy",
                "default-src 'self'; frame-ancestors 'self'"
            )]),
            gw
        ));
        assert!(refuses_framing(
            &h(&[("content-security-policy", "frame-ancestors 'none'")]),
            gw
        ));
        assert!(!refuses_framing(
            &h(&[("content-security-policy", "frame-ancestors *")]),
            gw
        ));
        assert!(!refuses_framing(
            &h(&[(
                "content-security-policy",
                "frame-ancestors https://gw.example.org"
            )]),
            gw
        ));
        assert!(!refuses_framing(
            &h(&[("content-security-policy", "script-src 'self'")]),
            gw
        ));
        let both = &["https://gw.example.org", "https://xuc.example.org"][..];
        let only_gw = h(&[(
            "content-security-policy",
            "frame-ancestors https://gw.example.org",
        )]);
        assert!(refuses_framing(&only_gw, both));
    }
}
