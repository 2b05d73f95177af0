//! Who may see the console. On a loopback address (the default) the host's
//! own users may, as they may read its logs; on any other address the
//! config must name a secret (`console_secret_env` or `_file`), and then
//! every console request needs it, as HTTP basic authentication (what a
//! browser asks for) or a bearer token (what a script sends). A secret, when
//! set, is required on loopback too. The comparison takes the same time
//! whatever the guess.

use std::net::SocketAddr;

use base64::Engine as _;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue};

/// The user name and secret the console asks for.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The basic-authentication user name.
    pub user: String,
    /// The secret: the basic-authentication password, or the bearer token.
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// The challenge of a 401: browsers then ask for a user name and password.
pub const CHALLENGE: HeaderValue =
    HeaderValue::from_static("Basic realm=\"thirdparty-gateway console\", charset=\"UTF-8\"");

/// The header a 401 carries its challenge in.
pub const CHALLENGE_HEADER: http::HeaderName = WWW_AUTHENTICATE;

/// Whether a console on `listen` must ask for credentials: on any address
/// but a loopback one (`0.0.0.0` and `::` are every address, not loopback).
pub fn required(listen: SocketAddr) -> bool {
    !listen.ip().is_loopback()
}

/// Whether `headers` carry the credentials; always true without any.
pub fn allowed(credentials: Option<&Credentials>, headers: &HeaderMap) -> bool {
    let Some(expected) = credentials else {
        return true;
    };
    let Some(given) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let (scheme, rest) = given.trim().split_once(' ').unwrap_or((given, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return same(rest.as_bytes(), expected.secret.as_bytes());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    // Both compared, so the time does not say which one was wrong.
    let user_ok = same(user, expected.user.as_bytes());
    let password_ok = same(password, expected.secret.as_bytes());
    user_ok & password_ok
}

/// Compares in a time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn only_loopback_addresses_go_without_credentials() {
        for (addr, required_there) in [
            ("127.0.0.1:9090", false),
            ("127.0.0.2:9090", false),
            ("[::1]:9090", false),
            ("0.0.0.0:9090", true),
            ("[::]:9090", true),
            ("192.0.2.10:9090", true),
        ] {
            assert_eq!(required(addr.parse().unwrap()), required_there, "{addr}");
        }
    }

    #[test]
    fn basic_or_bearer_with_the_secret_is_let_in_and_nothing_else() {
        let c = Credentials {
            user: "ops".into(),
            secret: "s3cret-console".into(),
        };
        let basic = |user: &str, pass: &str| {
            let raw = format!("{user}:{pass}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        };
        assert!(allowed(None, &HeaderMap::new()));
        assert!(!allowed(Some(&c), &HeaderMap::new()));
        assert!(allowed(Some(&c), &headers(&basic("ops", "s3cret-console"))));
        assert!(allowed(Some(&c), &headers("Bearer s3cret-console")));
        assert!(allowed(Some(&c), &headers("bearer  s3cret-console ")));
        assert!(!allowed(
            Some(&c),
            &headers(&basic("root", "s3cret-console"))
        ));
        assert!(!allowed(
            Some(&c),
            &headers(&basic("ops", "s3cret-consolE"))
        ));
        assert!(!allowed(Some(&c), &headers("Bearer s3cret")));
        assert!(!allowed(Some(&c), &headers("Basic !!!")));
        assert!(!allowed(Some(&c), &headers("Digest s3cret-console")));
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
