//! The config file as written: serde structs that mirror `config.toml` one to
//! one. Nothing here is checked beyond types; `config::load` turns these into
//! validated runtime types. Unknown keys are errors (serde lists the known
//! ones), because a misspelt limit that silently keeps its default is worse.

use serde::Deserialize;

use crate::contract::Event;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    pub(super) tls: Option<RawTls>,
    pub(super) cors: Option<RawCors>,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) routes: Vec<RawRoute>,
}

/// `[server]`: the public listener and its limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) plain_http: bool,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) header_read_timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) tls_handshake_timeout_ms: Option<u64>,
    pub(super) max_connections: Option<usize>,
    pub h2_max_concurrent_streams: Option<u32>,
    pub(super) deadline_ms: Option<u64>,
    pub(super) shutdown_grace_ms: Option<u64>,
}

/// `[tls]`: certificate and key files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: String,
    pub(super) key: String,
    #[serde(default)]
    pub(super) self_signed_if_missing: bool,
}

/// `[cors]`: which browser origins may call the gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    pub(super) allow_origins: Vec<String>,
    #[serde(default)]
    pub(super) allow_headers: Vec<String>,
    pub(super) max_age: Option<u32>,
    #[serde(default)]
    pub(super) allow_private_network: bool,
    #[serde(default)]
    pub(super) allow_credentials: bool,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<String>,
    #[serde(default)]
    pub(super) format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (journald adds the timestamp).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Option<String>,
    pub(super) path: Option<String>,
    pub(super) when: Option<String>,
    pub(super) open: Option<RawOpen>,
}

/// `[routes.open]`: a screen-pop built from the payload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOpen {
    pub(super) event: Event,
    pub(super) url: String,
    #[serde(default)]
    pub(super) title: String,
    #[serde(default)]
    pub(super) autopause: bool,
}
