//! The completion wrapper. Many CRM pages refuse to be framed and none post
//! `closeThirdParty`, so an agent on `autopause` stays paused. A route with
//! `wrap = true` hands XucMgt the gateway's own page instead: a title, a
//! **Done** button that posts `closeThirdParty`, and the CRM page in a frame,
//! or a link to open it in a new window when the CRM refuses framing.
//!
//! The page's link is stateless: `/wrap?t=PAYLOAD.SIG`, where PAYLOAD is the
//! target url, title and expiry as base64url JSON and SIG its HMAC-SHA256
//! under the configured secret. Any instance with the same secret can serve
//! it; nothing is stored.

use std::collections::HashMap;
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
use crate::contract::{Event, Open};
use crate::cors::Cors;
use crate::pages;
use crate::request_id::RequestId;

/// Longest token accepted; a url is at most 4 KiB, so this is generous.
const MAX_TOKEN_LEN: usize = 8 * 1024;
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

/// Makes and checks wrapper links, and serves the wrapper page.
pub struct Wrapper {
    key: hmac::Key,
    ttl: Duration,
    public_url: Option<Url>,
    client: Client,
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
    /// the page (XucMgt's origins, or `*`); `client` checks framing rules.
    pub fn new(
        secret: &[u8],
        ttl: Duration,
        public_url: Option<Url>,
        client: Client,
        frame_ancestors: String,
    ) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            ttl,
            public_url,
            client,
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
            settings.client.clone(),
            cors.origins_as_sources(),
        )
    }

    /// Replaces an `open` reply's url by a signed link to the wrapper page.
    /// `origin` is the gateway's origin as the browser reached it, used when
    /// `wrap.public_url` is not set.
    pub fn wrap(&self, open: &Open, origin: Option<&str>) -> Option<Open> {
        let base = match (&self.public_url, origin) {
            (Some(url), _) => url.clone(),
            (None, Some(origin)) => Url::parse(origin).ok()?,
            (None, None) => return None,
        };
        let token = self.sign(open.url(), open.title(), SystemTime::now());
        let mut link = base.join("wrap").ok()?;
        link.query_pairs_mut().append_pair("t", &token);
        Open::new(open.event(), link.as_str(), open.autopause(), open.title()).ok()
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
        let payload = URL_SAFE_NO_PAD.encode(json);
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
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Invalid)?;
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

    /// Serves `GET /wrap?t=...`: the page, or a clear 400. `origin` is the
    /// gateway's origin as the browser reached it.
    pub async fn page(
        &self,
        query: Option<&str>,
        origin: Option<&str>,
        id: RequestId,
    ) -> Response<Full<Bytes>> {
        let token = query
            .into_iter()
            .flat_map(|q| url::form_urlencoded::parse(q.as_bytes()))
            .find(|(k, _)| k == "t")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let (url, title) = match self.verify(&token, SystemTime::now()) {
            Ok(found) => found,
            Err(err) => {
                tracing::info!(%id, error = %err, "wrapper link refused");
                return pages::error(
                    StatusCode::BAD_REQUEST,
                    "This link cannot be opened",
                    &format!("{err}. Ask for the screen-pop again from the next call."),
                );
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
        let framable = self.framable(&url, &ancestors, id).await;
        let frame_src = url.origin().ascii_serialization();
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; frame-src {frame_src}; \
             frame-ancestors {}; base-uri 'none'; form-action 'none'",
            self.frame_ancestors
        );
        pages::html(
            StatusCode::OK,
            "wrap.html",
            minijinja::context! { url => url.as_str(), title, framable },
            &csp,
        )
    }

    /// Whether the target lets itself be framed by another origin, asked
    /// once (short timeout) and remembered. Unknown counts as framable: the
    /// page always offers the new-window link too.
    async fn framable(&self, url: &Url, ancestors: &[&str], id: RequestId) -> bool {
        let mut key = url.clone();
        key.set_query(None);
        key.set_fragment(None);
        let key = key.to_string();
        if let Ok(cache) = self.cache.lock() {
            if let Some((verdict, at)) = cache.get(&key) {
                if at.elapsed() < FRAMING_TTL {
                    return *verdict;
                }
            }
        }
        let verdict = match self.client.headers_of(url.clone()).await {
            Ok((_, headers)) => !refuses_framing(&headers, ancestors),
            Err(failure) => {
                tracing::info!(%id, url = %key, reason = %failure, "framing check failed: assuming the page can be framed");
                true
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= FRAMING_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (verdict, Instant::now()));
        }
        verdict
    }
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
            Client::new(tls, Duration::from_millis(100), 0, 1024),
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
            wrapper().client,
            "*".into(),
        );
        assert_eq!(other.verify(&token, now), Err(TokenError::Invalid));
        // Expired after the ttl.
        assert_eq!(
            w.verify(&token, now + Duration::from_secs(61)),
            Err(TokenError::Expired)
        );
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
