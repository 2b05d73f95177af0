//! `[ops]`: the operators' listener (health, metrics and the console), who
//! may see the console, and where calls are exported as OpenTelemetry
//! traces. The one rule with teeth: a console on an address that is not a
//! loopback address needs a secret (without one it is off, and asking for
//! it with `console = true` is an error).

use std::path::Path;

use url::Url;

use super::diag::Diagnostics;
use super::numbers::within;
use super::raw::RawOps;
use super::secrets::secret;
use super::OpsSettings;
use crate::console::auth::{self, Credentials};
use crate::console::ConsoleSettings;
use crate::constants::{
    DEFAULT_CONSOLE_CALLS, DEFAULT_CONSOLE_USER, DEFAULT_OPS_LISTEN, MAX_CONSOLE_CALLS,
};

/// The shortest console secret accepted.
const MIN_SECRET_BYTES: usize = 16;

/// The OTLP/HTTP path of traces, added to an endpoint given without a path.
const OTLP_TRACES_PATH: &str = "v1/traces";

pub(super) fn ops(raw: &RawOps, base: &Path, diags: &mut Diagnostics<'_>) -> OpsSettings {
    let listen = match raw.enabled {
        Some(false) => None,
        _ => {
            let listen = raw.listen.as_deref().unwrap_or(DEFAULT_OPS_LISTEN);
            match listen.parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    diags.error(
                        "ops.listen",
                        format!("{listen:?} is not an address:port such as 127.0.0.1:9090"),
                    );
                    None
                }
            }
        }
    };
    let mut page = listen.is_some() && raw.console != Some(false);
    let calls = within(
        raw.console_calls,
        1..=MAX_CONSOLE_CALLS,
        DEFAULT_CONSOLE_CALLS,
        "ops.console_calls",
        diags,
    );
    let auth = credentials(raw, base, diags);
    if let (true, Some(addr), None) = (page, listen, &auth) {
        if auth::required(addr) {
            if raw.console == Some(true) {
                diags.error(
                    "ops.console",
                    format!(
                        "the console on {addr} (not a loopback address) needs a secret: set console_secret_env or console_secret_file (the console then asks for it), or listen on 127.0.0.1"
                    ),
                );
            } else {
                // A config from before the console (ops on a management
                // address for the load balancer) keeps working.
                diags.warn(
                    "ops.listen",
                    format!(
                        "{addr} is not a loopback address: the console is off there until it has a secret (console_secret_env or console_secret_file); /healthz and /metrics are served as before"
                    ),
                );
            }
            page = false;
        }
    }
    OpsSettings {
        listen,
        console: ConsoleSettings {
            page,
            calls,
            show_caller: raw.console_show_caller,
            candidates: raw.console_candidates,
            auth,
            otlp: raw
                .otlp_endpoint
                .as_deref()
                .and_then(|u| otlp_endpoint(u, diags)),
        },
    }
}

/// The console's user name and secret, when a secret is configured.
fn credentials(raw: &RawOps, base: &Path, diags: &mut Diagnostics<'_>) -> Option<Credentials> {
    if raw.console_secret_env.is_none() && raw.console_secret_file.is_none() {
        if raw.console_user.is_some() {
            diags.warn(
                "ops.console_user",
                "without console_secret_env or console_secret_file the console asks for no user",
            );
        }
        return None;
    }
    let secret = secret(
        raw.console_secret_env.as_ref(),
        raw.console_secret_file.as_ref(),
        "ops",
        "console_secret",
        base,
        diags,
    )?;
    if secret.len() < MIN_SECRET_BYTES {
        diags.error(
            "ops",
            format!("the console secret is shorter than {MIN_SECRET_BYTES} bytes: use a long random value (openssl rand -hex 32)"),
        );
        return None;
    }
    let user = raw
        .console_user
        .clone()
        .unwrap_or_else(|| DEFAULT_CONSOLE_USER.to_owned());
    if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
        diags.error(
            "ops.console_user",
            format!("{user:?} cannot be a basic-authentication user name (empty, or holds `:`)"),
        );
        return None;
    }
    Some(Credentials { user, secret })
}

/// The collector's OTLP/HTTP traces url; one given without a path gets
/// the standard `/v1/traces`.
fn otlp_endpoint(raw: &str, diags: &mut Diagnostics<'_>) -> Option<Url> {
    match Url::parse(raw) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.has_host()
                && url.username().is_empty()
                && url.password().is_none() =>
        {
            if url.path() == "/" {
                url.join(OTLP_TRACES_PATH).ok()
            } else {
                Some(url)
            }
        }
        _ => {
            diags.error(
                "ops.otlp_endpoint",
                format!("{raw:?} is not an http(s) URL such as http://127.0.0.1:4318/v1/traces (no user or password in it)"),
            );
            None
        }
    }
}
