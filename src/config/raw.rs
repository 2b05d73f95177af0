//! The config file as written: serde structs that mirror `config.toml` one to
//! one. Nothing here is checked beyond types; `config::load` turns these into
//! validated runtime types. Unknown keys are errors (serde lists the known
//! ones), because a misspelt limit that silently keeps its default is worse.

use serde::Deserialize;

use crate::backend::reply::ReplyFormat;
use crate::contract::Event;
use crate::logging::LogFormat;

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
    pub(super) ops: RawOps,
    pub(super) wrap: Option<RawWrap>,
    pub(super) xuc: Option<RawXuc>,
    pub(super) demo: Option<RawDemo>,
    pub(super) phone: Option<RawPhone>,
    #[serde(default)]
    pub(super) backends: std::collections::BTreeMap<String, RawBackend>,
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
    pub(super) workers: Option<usize>,
    pub h2_max_concurrent_streams: Option<u32>,
    pub(super) deadline_ms: Option<u64>,
    pub(super) drain_ms: Option<u64>,
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
    pub(super) min_version: Option<String>,
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

/// `[ops]`: the operators' listener (health, metrics, the console) and
/// the OTLP export.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOps {
    pub(super) listen: Option<String>,
    pub(super) enabled: Option<bool>,
    pub(super) console: Option<bool>,
    pub(super) console_calls: Option<usize>,
    #[serde(default)]
    pub(super) console_show_caller: bool,
    #[serde(default)]
    pub(super) console_candidates: bool,
    pub(super) console_user: Option<String>,
    pub(super) console_secret_env: Option<String>,
    pub(super) console_secret_file: Option<String>,
    pub(super) otlp_endpoint: Option<String>,
}

/// `[wrap]`: the completion wrapper page.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWrap {
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<String>,
    #[serde(default)]
    pub(super) generate_if_missing: bool,
    pub(super) ttl_s: Option<u64>,
    pub(super) public_url: Option<String>,
    pub(super) frame_check_timeout_ms: Option<u64>,
    pub(super) ca_file: Option<String>,
}

/// `[xuc]`: checking the agent's xuc token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawXuc {
    pub(super) url: String,
    pub(super) check_path: Option<String>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) cache_ttl_s: Option<u64>,
    pub(super) ca_file: Option<String>,
}

/// `[demo]`: the built-in demo agent page and CRM.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDemo {
    #[serde(default)]
    pub(super) enabled: bool,
    pub(super) listen: Option<String>,
}

/// `[phone]`: how phone filters read numbers without a country code.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPhone {
    pub(super) default_region: Option<String>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<String>,
    #[serde(default)]
    pub(super) format: LogFormat,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Option<String>,
    pub(super) path: Option<String>,
    pub(super) when: Option<String>,
    pub(super) backend: Option<OneOrMany>,
    #[serde(default)]
    pub(super) forward_token: bool,
    #[serde(default)]
    pub(super) wrap: bool,
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

/// `backend = "crm"` or `backend = ["crm", "crm-standby"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn names(&self) -> &[String] {
        match self {
            OneOrMany::One(name) => std::slice::from_ref(name),
            OneOrMany::Many(names) => names,
        }
    }
}

/// How the request to a backend is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// A JSON body built from a table of templates.
    Json,
    /// An `application/x-www-form-urlencoded` body.
    Form,
    /// Fields in the query string of a GET.
    Query,
    /// A body template (SOAP envelope) with XML-escaped values.
    Xml,
}

/// `[backends.NAME]`: a CRM the gateway calls.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) url: String,
    pub(super) method: Option<String>,
    pub(super) encoding: Encoding,
    /// Table of templates (json, form, query) or one template (xml).
    pub(super) body: Option<toml::Value>,
    #[serde(default)]
    pub(super) headers: toml::Table,
    pub(super) auth: Option<RawAuth>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) ca_file: Option<String>,
    pub(super) client_cert: Option<String>,
    pub(super) client_key: Option<String>,
    pub(super) follow_redirects: Option<u8>,
    pub(super) max_response_bytes: Option<usize>,
    pub(super) max_concurrency: Option<usize>,
    pub(super) public_base: Option<String>,
    pub(super) login: Option<LoginField>,
    pub(super) directory: Option<RawDirectory>,
    pub(super) reply: RawReply,
}

/// `[backends.NAME.directory]`: the gateway's own index of the CRM's numbers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    pub(super) url: Option<String>,
    pub(super) method: Option<String>,
    pub(super) encoding: Option<Encoding>,
    pub(super) body: Option<toml::Value>,
    pub(super) headers: Option<toml::Table>,
    pub(super) records: Option<String>,
    pub(super) id: Option<String>,
    pub(super) cursor: Option<String>,
    pub(super) full_every_s: Option<u64>,
    pub(super) every_s: Option<u64>,
    pub(super) max_age_s: Option<u64>,
    pub(super) page_size: Option<u32>,
    pub(super) pages_per_second: Option<u32>,
    pub(super) max_pages: Option<u32>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) since_format: Option<String>,
    pub(super) since_overlap_s: Option<u64>,
    pub(super) state_dir: Option<String>,
    pub(super) snapshot_every_s: Option<u64>,
}

impl RawBackend {
    /// Its `auth`, when that is `type = "oauth2"`: a login of its own.
    pub(super) fn oauth2(&self) -> Option<&RawAuth> {
        self.auth.as_ref().filter(|a| a.kind == AuthKind::OAuth2)
    }
}

/// `login`: a `[backends.NAME.login]` table of the backend's own, or
/// `login = "OTHER"`, the login of backend OTHER shared (one session for
/// backends that query several modules of one CRM).
#[derive(Debug)]
pub(super) enum LoginField {
    Own(RawLogin),
    Shared(String),
}

impl LoginField {
    /// The backend's own login table, if it has one.
    pub(super) fn own(&self) -> Option<&RawLogin> {
        match self {
            LoginField::Own(l) => Some(l),
            LoginField::Shared(_) => None,
        }
    }
}

// By hand rather than `#[serde(untagged)]`, so a misspelt key in the table
// keeps serde's "unknown field ..., expected one of ..." message.
impl<'de> Deserialize<'de> for LoginField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = LoginField;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a [login] table, or the name of the backend whose login to share")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LoginField, E> {
                Ok(LoginField::Shared(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<LoginField, A::Error> {
                RawLogin::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(LoginField::Own)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `[backends.NAME.login]`: requests run before a look-up, their result cached.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    #[serde(default)]
    pub(super) steps: Vec<RawStep>,
    pub(super) ttl_s: Option<u64>,
    pub(super) idle_ttl_s: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) relogin_when: Option<String>,
}

/// `[[backends.NAME.login.steps]]`: one login request, shaped like a look-up.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) url: String,
    pub(super) method: Option<String>,
    pub(super) encoding: Encoding,
    pub(super) body: Option<toml::Value>,
    #[serde(default)]
    pub(super) headers: toml::Table,
    pub(super) auth: Option<RawAuth>,
    pub(super) reply: RawStepReply,
}

/// `[backends.NAME.login.steps.reply]`: what a login step keeps.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStepReply {
    pub(super) format: ReplyFormat,
    #[serde(default)]
    pub(super) extract: toml::Table,
    pub(super) accept_status: Option<Vec<u16>>,
    pub(super) ok_when: Option<String>,
}

/// `[backends.NAME.auth]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(rename = "type")]
    pub(super) kind: AuthKind,
    pub(super) username: Option<String>,
    pub(super) header: Option<String>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<String>,
    pub(super) value_env: Option<String>,
    pub(super) value_file: Option<String>,
    pub(super) grant: Option<Grant>,
    pub(super) token_url: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret_env: Option<String>,
    pub(super) client_secret_file: Option<String>,
    pub(super) refresh_token_env: Option<String>,
    pub(super) refresh_token_file: Option<String>,
    pub(super) scope: Option<String>,
    #[serde(default)]
    pub(super) params: toml::Table,
    pub(super) client_auth: Option<ClientAuth>,
    pub(super) ttl_s: Option<u64>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) relogin_when: Option<String>,
}

/// Which OAuth2 grant gets the token (RFC 6749).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Grant {
    ClientCredentials,
    RefreshToken,
    Password,
}

/// How the OAuth2 client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum ClientAuth {
    Basic,
    Body,
}

/// Which kind of credentials a backend wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum AuthKind {
    Basic,
    Bearer,
    Header,
    #[serde(rename = "oauth2")]
    OAuth2,
}

/// `[backends.NAME.reply]`: how to read what the backend answers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReply {
    pub(super) format: ReplyFormat,
    #[serde(default)]
    pub(super) extract: toml::Table,
    pub(super) accept_status: Option<Vec<u16>>,
    pub(super) open_when: Option<String>,
    pub(super) event: Option<String>,
    pub(super) url: Option<String>,
    pub(super) title: Option<String>,
    pub(super) autopause: Option<toml::Value>,
    pub(super) records: Option<String>,
    pub(super) phones: Option<Vec<String>>,
    pub(super) region: Option<String>,
}
