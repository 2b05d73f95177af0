//! `[wrap]`, `[xuc]` and `[demo]`: the agent-experience sections, validated
//! into runtime settings (secrets read, clients built) at load.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use url::Url;

use super::diag::Diagnostics;
use super::numbers::{millis, seconds, MAX_DURATION_MS, MAX_WRAP_TTL_S};
use super::raw::{RawDemo, RawWrap, RawXuc};
use super::secrets::{credential_path, secret};
use crate::backend::Client;
use crate::constants::*;
use crate::wrap::{WrapSecret, WrapSettings};
use crate::xuc::XucCheck;

/// Redirects the framing check follows (a CRM often redirects to a login page).
const FRAME_CHECK_REDIRECTS: u8 = 3;

/// `[demo]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSettings {
    /// Where the demo agent page and CRM are served (a second origin).
    pub listen: SocketAddr,
}

pub(super) fn wrap(
    raw: &RawWrap,
    base: &Path,
    diags: &mut Diagnostics<'_>,
) -> Option<WrapSettings> {
    let generate_at = match (&raw.secret_file, raw.generate_if_missing) {
        (None, true) => {
            diags.error(
                "wrap.generate_if_missing",
                "needs secret_file: where to write the generated secret",
            );
            return None;
        }
        (Some(file), true) if raw.secret_env.is_none() => credential_path(file)
            .ok()
            .map(|p| base.join(p))
            .filter(|p| !p.exists()),
        _ => None,
    };
    let secret = match generate_at {
        Some(path) => Some(WrapSecret::Generate(path)),
        None => secret(
            raw.secret_env.as_ref(),
            raw.secret_file.as_ref(),
            "wrap",
            "secret",
            base,
            diags,
        )
        .map(|s| WrapSecret::Value(s.into_bytes())),
    };
    if let Some(WrapSecret::Value(bytes)) = &secret {
        if bytes.len() < 16 {
            diags.error("wrap", "the secret is shorter than 16 bytes: use a long random value (openssl rand -hex 32)");
        }
    }
    let ttl = seconds(
        raw.ttl_s,
        1..=MAX_WRAP_TTL_S,
        DEFAULT_WRAP_TTL,
        "wrap.ttl_s",
        diags,
    );
    let public_url = raw.public_url.as_deref().and_then(|u| match Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Some(url),
        _ => {
            diags.error("wrap.public_url", format!("{u:?} is not an absolute http(s) URL such as https://gateway.example.org:8443/"));
            None
        }
    });
    let timeout = millis(
        raw.frame_check_timeout_ms,
        DEFAULT_FRAME_CHECK_TIMEOUT,
        "wrap.frame_check_timeout_ms",
        diags,
    );
    let client = client(
        raw.ca_file.as_deref(),
        base,
        "wrap.ca_file",
        timeout,
        FRAME_CHECK_REDIRECTS,
        diags,
    )?;
    Some(WrapSettings {
        secret: secret?,
        ttl,
        public_url,
        client,
        frame_check_timeout: timeout,
    })
}

pub(super) fn xuc(
    raw: &RawXuc,
    deadline: Duration,
    base: &Path,
    diags: &mut Diagnostics<'_>,
) -> Option<XucCheck> {
    let path = raw.check_path.as_deref().unwrap_or(DEFAULT_XUC_CHECK_PATH);
    let url = match Url::parse(&raw.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => match u.join(path) {
            Ok(url) => Some(url),
            Err(e) => {
                diags.error("xuc.check_path", format!("{path:?}: {e}"));
                None
            }
        },
        _ => {
            diags.error(
                "xuc.url",
                format!(
                    "{:?} is not the xuc server's base URL, such as https://xuc.example.org:8090",
                    raw.url
                ),
            );
            None
        }
    };
    let timeout = millis(raw.timeout_ms, DEFAULT_XUC_TIMEOUT, "xuc.timeout_ms", diags);
    if timeout > deadline {
        diags.error(
            "xuc.timeout_ms",
            format!("exceeds server.deadline_ms ({} ms)", deadline.as_millis()),
        );
    }
    let ttl = seconds(
        raw.cache_ttl_s,
        0..=MAX_DURATION_MS / 1000,
        DEFAULT_XUC_CACHE_TTL,
        "xuc.cache_ttl_s",
        diags,
    );
    let client = client(
        raw.ca_file.as_deref(),
        base,
        "xuc.ca_file",
        timeout,
        0,
        diags,
    )?;
    Some(XucCheck::new(url?, client, timeout, ttl))
}

pub(super) fn demo(raw: &RawDemo, diags: &mut Diagnostics<'_>) -> Option<DemoSettings> {
    if !raw.enabled {
        return None;
    }
    let listen = raw.listen.as_deref().unwrap_or(DEFAULT_DEMO_LISTEN);
    match listen.parse() {
        Ok(listen) => Some(DemoSettings { listen }),
        Err(_) => {
            diags.error(
                "demo.listen",
                format!("{listen:?} is not an address:port such as 127.0.0.1:8444"),
            );
            None
        }
    }
}

fn client(
    ca_file: Option<&str>,
    base: &Path,
    key: &str,
    timeout: Duration,
    redirects: u8,
    diags: &mut Diagnostics<'_>,
) -> Option<Client> {
    let ca = ca_file.map(|f| base.join(f));
    match crate::tls::client_config(ca.as_deref(), None) {
        Ok(tls) => Some(Client::new(tls, timeout, redirects, 64 * 1024)),
        Err(e) => {
            diags.error(key, e);
            None
        }
    }
}
