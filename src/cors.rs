//! CORS, answered by the gateway itself: legacy CRMs cannot. XucMgt's page and
//! the gateway are on different origins, so the browser preflights every POST
//! and reads the reply only if it carries the right headers.
//!
//! The policy is compiled once at load; every header value that does not echo
//! the request is prebuilt, and a preflight reply starts from a copy of its
//! prebuilt header block: one copy instead of four map insertions.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ORIGIN,
    VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::constants::BASE_ALLOWED_HEADERS;
use crate::request_id;

/// Private Network Access request header (not in `http`'s list).
const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
/// Private Network Access reply header.
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// The methods a route path answers.
pub const ALLOWED_METHODS: HeaderValue = HeaderValue::from_static("POST, OPTIONS");
const PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
const TRUE: HeaderValue = HeaderValue::from_static("true");

/// Which origins may call the gateway.
#[derive(Debug, Clone)]
pub enum AllowedOrigins {
    /// Any origin (`["*"]`): replies carry `Access-Control-Allow-Origin: *`.
    Any,
    /// Exactly these serialized origins, lowercase, e.g. `https://xuc.example.org`.
    List(Vec<String>),
}

/// The compiled CORS policy.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: AllowedOrigins,
    /// Request headers allowed beyond [`BASE_ALLOWED_HEADERS`], lowercase.
    extra_headers: Vec<HeaderName>,
    base_headers: HeaderValue,
    /// Every preflight reply header that does not depend on the request,
    /// and the slots of the allowed origin and of `X-Request-Id`, whose
    /// values are replaced for each reply.
    preflight: HeaderMap,
    allow_private_network: bool,
    allow_credentials: bool,
}

/// What the `Origin` of a request means for the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin`: not a cross-origin browser request (curl, a health check).
    Absent,
    /// Allowed; the value for `Access-Control-Allow-Origin`.
    Allowed(HeaderValue),
    /// Refused: the reply is 403 with no CORS headers.
    Denied,
}

impl Cors {
    /// The origins allowed, as a CSP source list: `*`, or the origins
    /// separated by spaces (who may frame the gateway's own pages).
    pub fn origins_as_sources(&self) -> String {
        match &self.origins {
            AllowedOrigins::Any => "*".to_owned(),
            AllowedOrigins::List(list) => list.join(" "),
        }
    }

    /// Builds the policy. `origins` must already be validated and lowercase;
    /// credentials with [`AllowedOrigins::Any`] are refused by config validation.
    pub fn new(
        origins: AllowedOrigins,
        extra_headers: Vec<HeaderName>,
        max_age: u32,
        allow_private_network: bool,
        allow_credentials: bool,
    ) -> Self {
        let base_headers =
            HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept");
        // The slots of the origin and of the request id (set on every reply
        // by the handler) are taken now and their values replaced: a copy
        // has no spare room, and a new entry would grow and rehash it.
        let mut preflight = HeaderMap::with_capacity(9);
        preflight.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static(""));
        preflight.insert(request_id::HEADER, HeaderValue::from_static(""));
        preflight.insert(ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS);
        preflight.insert(ACCESS_CONTROL_ALLOW_HEADERS, base_headers.clone());
        preflight.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(max_age));
        preflight.insert(VARY, PREFLIGHT_VARY);
        if allow_credentials {
            preflight.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        Self {
            origins,
            extra_headers,
            base_headers,
            preflight,
            allow_private_network,
            allow_credentials,
        }
    }

    /// Decides on the request's `Origin`.
    pub fn check(&self, headers: &HeaderMap) -> OriginCheck {
        let Some(origin) = headers.get(ORIGIN) else {
            return OriginCheck::Absent;
        };
        match &self.origins {
            AllowedOrigins::Any => OriginCheck::Allowed(HeaderValue::from_static("*")),
            AllowedOrigins::List(list) => {
                let allowed = origin
                    .to_str()
                    .is_ok_and(|o| list.iter().any(|a| a.eq_ignore_ascii_case(o)));
                if allowed {
                    OriginCheck::Allowed(origin.clone())
                } else {
                    OriginCheck::Denied
                }
            }
        }
    }

    /// Adds the headers every reply to an allowed cross-origin request carries.
    pub fn apply_to_reply(&self, allow_origin: &HeaderValue, out: &mut HeaderMap) {
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin.clone());
        out.append(VARY, HeaderValue::from_static("Origin"));
        if self.allow_credentials {
            out.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
    }

    /// The headers of a preflight reply (the status is 204), with an empty
    /// `X-Request-Id` for the handler to fill.
    pub fn preflight_headers(&self, allow_origin: &HeaderValue, request: &HeaderMap) -> HeaderMap {
        let mut out = self.preflight.clone();
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin.clone());
        if let Some(extended) = self.allow_headers(request) {
            out.insert(ACCESS_CONTROL_ALLOW_HEADERS, extended);
        }
        let wants_private_network = || {
            request
                .get(&REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
        };
        if self.allow_private_network && wants_private_network() {
            out.insert(ALLOW_PRIVATE_NETWORK, TRUE);
        }
        out
    }

    /// The base headers plus those requested that the config allows, or
    /// `None` when that is just the base headers.
    fn allow_headers(&self, request: &HeaderMap) -> Option<HeaderValue> {
        let requested = request.get(ACCESS_CONTROL_REQUEST_HEADERS)?.to_str().ok()?;
        let mut value: Option<String> = None;
        for name in requested
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let is_base = BASE_ALLOWED_HEADERS
                .iter()
                .any(|b| b.eq_ignore_ascii_case(name));
            let is_extra = self
                .extra_headers
                .iter()
                .any(|e| e.as_str().eq_ignore_ascii_case(name));
            if is_extra && !is_base {
                let v = value.get_or_insert_with(|| {
                    self.base_headers.to_str().unwrap_or_default().to_owned()
                });
                v.push_str(", ");
                v.push_str(&name.to_ascii_lowercase());
            }
        }
        value.and_then(|v| HeaderValue::try_from(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(origins: &[&str]) -> Cors {
        Cors::new(
            AllowedOrigins::List(origins.iter().map(|s| s.to_string()).collect()),
            vec![HeaderName::from_static("x-trace")],
            600,
            true,
            false,
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::try_from(*k).unwrap(),
                    HeaderValue::try_from(*v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn listed_origin_is_echoed_and_others_denied() {
        let cors = list(&["https://xuc.example.org"]);
        let ok = headers(&[("origin", "https://xuc.example.org")]);
        assert_eq!(
            cors.check(&ok),
            OriginCheck::Allowed(HeaderValue::from_static("https://xuc.example.org"))
        );
        assert_eq!(
            cors.check(&headers(&[("origin", "https://evil.example")])),
            OriginCheck::Denied
        );
        assert_eq!(
            cors.check(&headers(&[("origin", "null")])),
            OriginCheck::Denied
        );
        assert_eq!(cors.check(&HeaderMap::new()), OriginCheck::Absent);
    }

    #[test]
    fn any_origin_answers_star() {
        let cors = Cors::new(AllowedOrigins::Any, vec![], 600, false, false);
        let check = cors.check(&headers(&[("origin", "http://a")]));
        assert_eq!(check, OriginCheck::Allowed(HeaderValue::from_static("*")));
    }

    #[test]
    fn preflight_allows_base_headers_and_requested_extras_only() {
        let cors = list(&["http://a"]);
        let req = headers(&[(
            "access-control-request-headers",
            "content-type, X-Trace, x-other",
        )]);
        let out = cors.preflight_headers(&HeaderValue::from_static("http://a"), &req);
        assert_eq!(
            out[ACCESS_CONTROL_ALLOW_HEADERS],
            "Origin, X-Requested-With, Content-Type, Accept, x-trace"
        );
        assert_eq!(out[ACCESS_CONTROL_ALLOW_METHODS], "POST, OPTIONS");
        assert_eq!(out[ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "http://a");
        assert!(out.get(&ALLOW_PRIVATE_NETWORK).is_none());
        let req = headers(&[("access-control-request-headers", "content-type")]);
        let out = cors.preflight_headers(&HeaderValue::from_static("http://a"), &req);
        assert_eq!(
            out[ACCESS_CONTROL_ALLOW_HEADERS],
            "Origin, X-Requested-With, Content-Type, Accept"
        );
        assert_eq!(out[request_id::HEADER], "", "the handler's slot");
        assert_eq!(out.len(), 6, "{out:?}");
    }

    #[test]
    fn private_network_is_allowed_only_when_asked_and_configured() {
        let req = headers(&[(REQUEST_PRIVATE_NETWORK.as_str(), "true")]);
        let origin = HeaderValue::from_static("http://a");
        let out = list(&["http://a"]).preflight_headers(&origin, &req);
        assert_eq!(out[&ALLOW_PRIVATE_NETWORK], "true");
        let out = Cors::new(AllowedOrigins::Any, vec![], 1, false, false)
            .preflight_headers(&origin, &req);
        assert!(out.get(&ALLOW_PRIVATE_NETWORK).is_none());
    }
}
