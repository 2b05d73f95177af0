//! Loading `config.toml`: parse the raw TOML, then validate it once into the
//! runtime types the server uses (compiled templates, parsed addresses,
//! prebuilt headers). The hot path never re-checks anything checked here.

mod backends;
mod clear_text;
mod diag;
mod directory;
mod extras;
mod login;
mod numbers;
mod oauth2;
mod ops;
mod probe;
mod raw;
mod read;
mod scan;
mod secrets;
mod urls;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use url::Url;

use diag::Diagnostics;
pub use diag::{suggest, Diagnostic, Level, Snippet};
pub use extras::DemoSettings;
use numbers::{millis, within};
pub use raw::Encoding;
use raw::{RawConfig, RawCors, RawPhone, RawRoute, RawServer, RawTls};

use crate::backend::Backend;
use crate::constants::*;
use crate::cors::{AllowedOrigins, Cors};
use crate::logging::LogSettings;
use crate::metrics::Handles;
use crate::route::{Route, Router, ScreenPop};
use crate::template::{phone_region as phone_region_of, Escape, Region, TemplateId, Templates};
use crate::tls::{MinVersion, TlsSettings};
use crate::wrap::WrapSettings;

/// Paths the gateway serves itself; routes cannot use them.
const RESERVED_PATHS: [&str; 3] = ["/wrap", "/wrap.js", "/wrap.css"];
/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was read from; relative paths in it resolve against its folder.
    pub file: PathBuf,
    /// The public listener and its limits.
    pub server: ServerSettings,
    /// Certificate files; `None` only when `server.plain_http = true`.
    pub tls: Option<TlsSettings>,
    /// The CORS policy.
    pub cors: Cors,
    /// Logging.
    pub log: LogSettings,
    /// The operators' listener.
    pub ops: OpsSettings,
    /// The completion wrapper, when configured.
    pub wrap: Option<WrapSettings>,
    /// The agent token check, when configured.
    pub xuc: Option<crate::xuc::XucCheck>,
    /// The built-in demo, when enabled.
    pub demo: Option<DemoSettings>,
    /// The backends by name.
    pub backends: BTreeMap<Box<str>, std::sync::Arc<Backend>>,
    /// The routes and their compiled templates.
    pub router: Router,
    /// Things that work but are probably not what the author meant.
    pub warnings: Vec<Diagnostic>,
    /// The other files it names (certificates, keys, CA bundles, secrets):
    /// `run --watch` reloads when one of them changes.
    pub files: Vec<PathBuf>,
}

/// `[server]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address of the public listener.
    pub listen: SocketAddr,
    /// Largest request body; larger gets 413.
    pub max_body_bytes: usize,
    /// Time allowed to send a request head.
    pub header_read_timeout: Duration,
    /// Time a connection may stay idle.
    pub idle_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Threads serving requests; `None` is one per core.
    pub workers: Option<usize>,
    /// Streams per HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
    /// Budget for one request, body read to reply.
    pub deadline: Duration,
    /// How long a stop keeps serving, health answering 503, before it
    /// closes idle connections.
    pub drain: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
}

impl ServerSettings {
    /// The time backends may use: the deadline less a small margin to write
    /// the reply, so the agent's browser has its answer *before* the deadline.
    /// The margin follows the lateness measured under load
    /// ([`crate::margin`]).
    pub fn work_budget(&self) -> Duration {
        crate::margin::work_budget(self.deadline)
    }
}

/// `[ops]`, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsSettings {
    /// Where `/healthz`, `/metrics` and the console are served; `None`
    /// when disabled.
    pub listen: Option<SocketAddr>,
    /// The console and the OTLP export.
    pub console: crate::console::ConsoleSettings,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid config; each diagnostic says where.
    #[error("{}", Lines(errors))]
    Invalid {
        /// Why it cannot be used, in file order.
        errors: Vec<Diagnostic>,
        /// What else looks wrong, in file order.
        warnings: Vec<Diagnostic>,
    },
}

impl ConfigError {
    /// Every diagnostic as `check` prints it (level, place, the line and a
    /// caret), errors and warnings in file order, then a count.
    pub fn render(&self) -> String {
        match self {
            ConfigError::Read { file, source } => {
                format!("error: {}: cannot read config: {source}", file.display())
            }
            ConfigError::Invalid { errors, warnings } => {
                let mut all: Vec<&Diagnostic> = errors.iter().chain(warnings).collect();
                all.sort_by_key(|d| (d.position.is_none(), d.position, d.level));
                let mut out = String::new();
                for d in all {
                    out.push_str(&d.render());
                    out.push_str("\n\n");
                }
                let plural =
                    |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                out.push_str(&format!("error: {}", plural(errors.len(), "error")));
                if !warnings.is_empty() {
                    out.push_str(&format!(", {}", plural(warnings.len(), "warning")));
                }
                out
            }
        }
    }
}

struct Lines<'a>(&'a [Diagnostic]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Reads and validates a config file.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let source =
        crate::files::read_to_string(file, crate::files::MAX_CONFIG_BYTES).map_err(|source| {
            ConfigError::Read {
                file: file.to_owned(),
                source,
            }
        })?;
    parse(file, &source)
}

/// Validates config text as if read from `file`.
pub fn parse(file: &Path, source: &str) -> Result<Config, ConfigError> {
    let mut diags = Diagnostics::new(file, source);
    let Some((raw, removed)) = read::read(source, &mut diags) else {
        return Err(ConfigError::Invalid {
            errors: diags.errors,
            warnings: diags.warnings,
        });
    };
    let structural = diags.errors.len();
    let base = file.parent().unwrap_or(Path::new("."));
    let server = server(&raw.server, &mut diags);
    let tls = tls(raw.tls.as_ref(), raw.server.plain_http, base, &mut diags);
    let cors = cors(raw.cors.as_ref(), &mut diags);
    let level = raw.log.level.clone().unwrap_or_else(|| "info".to_owned());
    if let Err(err) = level.parse::<tracing_subscriber::EnvFilter>() {
        diags.error("log.level", format!("invalid filter {level:?}: {err}"));
    }
    let mut templates = Templates::new();
    templates.set_phone_region(phone_region(raw.phone.as_ref(), &mut diags));
    let backends = backends::backends(
        &raw.backends,
        server.deadline,
        base,
        &mut templates,
        &mut diags,
    );
    clear_text::warn(&raw.backends, &mut diags);
    let router = routes(&raw.routes, &raw.backends, &backends, templates, &mut diags);
    let ops = ops::ops(&raw.ops, base, &mut diags);
    let wrap = raw
        .wrap
        .as_ref()
        .and_then(|w| extras::wrap(w, base, &mut diags));
    let xuc = raw
        .xuc
        .as_ref()
        .and_then(|x| extras::xuc(x, server.deadline, base, &mut diags));
    let demo = raw.demo.as_ref().and_then(|d| extras::demo(d, &mut diags));
    if raw.wrap.is_none() {
        for (i, r) in raw.routes.iter().enumerate() {
            if r.wrap {
                diags.error(
                    &format!("routes[{i}].wrap"),
                    "needs a [wrap] section (its secret signs the links)",
                );
            }
        }
    }
    if !removed.is_empty() {
        // What follows from a key taken out is not news.
        let independent = |d: &Diagnostic| !removed.iter().any(|r| read::related(&d.key, r));
        let later = diags.errors.split_off(structural);
        diags.errors.extend(later.into_iter().filter(independent));
        diags.warnings.retain(independent);
    }
    if !diags.errors.is_empty() {
        return Err(ConfigError::Invalid {
            errors: diags.errors,
            warnings: diags.warnings,
        });
    }
    Ok(Config {
        file: file.to_owned(),
        server,
        tls,
        cors: cors
            .unwrap_or_else(|| Cors::new(AllowedOrigins::List(vec![]), vec![], 0, false, false)),
        log: LogSettings {
            level,
            format: raw.log.format,
        },
        ops,
        wrap,
        xuc,
        demo,
        backends,
        router,
        warnings: diags.warnings,
        files: named_files(&raw, base),
    })
}

/// `[phone] default_region`, an ISO 3166 code such as "FR".
fn phone_region(raw: Option<&RawPhone>, diags: &mut Diagnostics<'_>) -> Option<Region> {
    let code = raw?.default_region.as_deref()?;
    let region = phone_region_of(code);
    if region.is_none() {
        diags.error(
            "phone.default_region",
            format!("{code:?} is not an ISO 3166 region code such as \"FR\" or \"US\""),
        );
    }
    region
}

/// Every file the config names, resolved as loading resolves them.
fn named_files(raw: &RawConfig, base: &Path) -> Vec<PathBuf> {
    let mut names: Vec<&String> = Vec::new();
    if let Some(t) = &raw.tls {
        names.extend([&t.cert, &t.key]);
    }
    if let Some(w) = &raw.wrap {
        names.extend(w.ca_file.iter().chain(&w.secret_file));
    }
    if let Some(x) = &raw.xuc {
        names.extend(&x.ca_file);
    }
    for b in raw.backends.values() {
        names.extend(b.ca_file.iter().chain(&b.client_cert).chain(&b.client_key));
        let steps = b
            .login
            .iter()
            .filter_map(|l| l.own())
            .flat_map(|l| &l.steps);
        for a in b.auth.iter().chain(steps.filter_map(|s| s.auth.as_ref())) {
            names.extend(
                a.password_file
                    .iter()
                    .chain(&a.token_file)
                    .chain(&a.value_file)
                    .chain(&a.client_secret_file)
                    .chain(&a.refresh_token_file),
            );
        }
    }
    let mut files: Vec<PathBuf> = names
        .into_iter()
        .filter_map(|n| secrets::credential_path(n).ok())
        .map(|p| base.join(p))
        .collect();
    files.sort();
    files.dedup();
    files
}

fn server(raw: &RawServer, diags: &mut Diagnostics<'_>) -> ServerSettings {
    let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = listen.parse().unwrap_or_else(|_| {
        diags.error(
            "server.listen",
            format!("{listen:?} is not an address:port such as 127.0.0.1:8443"),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });
    ServerSettings {
        listen,
        max_body_bytes: within(
            raw.max_body_bytes,
            1..=numbers::MAX_BODY_BYTES,
            DEFAULT_MAX_BODY_BYTES,
            "server.max_body_bytes",
            diags,
        ),
        header_read_timeout: millis(
            raw.header_read_timeout_ms,
            DEFAULT_HEADER_READ_TIMEOUT,
            "server.header_read_timeout_ms",
            diags,
        ),
        idle_timeout: millis(
            raw.idle_timeout_ms,
            DEFAULT_IDLE_TIMEOUT,
            "server.idle_timeout_ms",
            diags,
        ),
        tls_handshake_timeout: millis(
            raw.tls_handshake_timeout_ms,
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            "server.tls_handshake_timeout_ms",
            diags,
        ),
        max_connections: within(
            raw.max_connections,
            1..=numbers::MAX_COUNT,
            DEFAULT_MAX_CONNECTIONS,
            "server.max_connections",
            diags,
        ),
        workers: raw.workers.map(|n| {
            within(
                Some(n),
                1..=numbers::MAX_WORKERS,
                1,
                "server.workers",
                diags,
            )
        }),
        h2_max_concurrent_streams: within(
            raw.h2_max_concurrent_streams,
            1..=numbers::MAX_H2_STREAMS,
            DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            "server.h2_max_concurrent_streams",
            diags,
        ),
        deadline: millis(
            raw.deadline_ms,
            DEFAULT_DEADLINE,
            "server.deadline_ms",
            diags,
        ),
        // 0 is allowed: stop at once, as before drains existed.
        drain: Duration::from_millis(within(
            raw.drain_ms,
            0..=numbers::MAX_DURATION_MS,
            DEFAULT_DRAIN.as_millis() as u64,
            "server.drain_ms",
            diags,
        )),
        shutdown_grace: millis(
            raw.shutdown_grace_ms,
            DEFAULT_SHUTDOWN_GRACE,
            "server.shutdown_grace_ms",
            diags,
        ),
    }
}

fn tls(
    raw: Option<&RawTls>,
    plain_http: bool,
    base: &Path,
    diags: &mut Diagnostics<'_>,
) -> Option<TlsSettings> {
    match (raw, plain_http) {
        (Some(_), true) => {
            diags.error(
                "server.plain_http",
                "plain_http = true but a [tls] section is present: choose one",
            );
            None
        }
        (None, false) => {
            diags.error(
                "tls",
                "missing [tls] section with cert and key (or set server.plain_http = true to serve without TLS)",
            );
            None
        }
        (None, true) => None,
        (Some(t), false) => {
            let mut path = |key: &str, raw: &str| match secrets::credential_path(raw) {
                Ok(p) => base.join(p),
                Err(msg) => {
                    diags.error(key, msg);
                    PathBuf::new()
                }
            };
            let (cert, key) = (path("tls.cert", &t.cert), path("tls.key", &t.key));
            let min_version = match t.min_version.as_deref() {
                None | Some("1.2") => MinVersion::Tls12,
                Some("1.3") => MinVersion::Tls13,
                Some(other) => {
                    diags.error(
                        "tls.min_version",
                        format!("{other:?} is not offered: use \"1.2\" (TLS 1.2 and 1.3, the default) or \"1.3\" (TLS 1.3 only)"),
                    );
                    MinVersion::Tls12
                }
            };
            let settings = TlsSettings {
                cert,
                key,
                self_signed_if_missing: t.self_signed_if_missing,
                min_version,
            };
            let named =
                !settings.cert.as_os_str().is_empty() && !settings.key.as_os_str().is_empty();
            if named {
                tls_pair(&settings, diags);
            }
            Some(settings)
        }
    }
}

/// The certificate and key read and paired as the listener will, in the
/// same pass as every other check, each fault at its key with what to do.
/// A demo pair still to be generated (`self_signed_if_missing`, both files
/// missing) is not read.
fn tls_pair(settings: &TlsSettings, diags: &mut Diagnostics<'_>) {
    let (cert, key) = (&settings.cert, &settings.key);
    if settings.self_signed_if_missing && !cert.exists() && !key.exists() {
        return;
    }
    let Err(err) = crate::tls::server_config(settings) else {
        return;
    };
    let at = match &err {
        crate::tls::TlsError::Pem { path, .. } if path == key => "tls.key",
        crate::tls::TlsError::HalfPair { missing, .. } if missing == key => "tls.key",
        _ => "tls.cert",
    };
    let both_missing = !cert.exists() && !key.exists();
    let hint = if both_missing && !settings.self_signed_if_missing {
        "; on a test box, self_signed_if_missing = true in [tls] makes a self-signed pair when both files are missing"
    } else {
        ""
    };
    let message = match err {
        crate::tls::TlsError::Rustls(e) => {
            format!(
                "{} and {}: certificate and key rejected: {e}; are they a pair?",
                cert.display(),
                key.display()
            )
        }
        other => other.to_string(),
    };
    diags.value_error(at, format!("{message}{hint}"));
    // Reading stops at the certificate: say what is wrong with the key too.
    if at == "tls.cert" {
        if let Err(io) = crate::files::read(key, crate::files::MAX_PEM_BYTES) {
            let why = crate::unreadable::explain(&io, key, "tls-key", "tls.key");
            diags.value_error(
                "tls.key",
                format!("{}: cannot read: {why}{hint}", key.display()),
            );
        }
    }
}

fn cors(raw: Option<&RawCors>, diags: &mut Diagnostics<'_>) -> Option<Cors> {
    let Some(raw) = raw else {
        diags.error(
            "cors",
            "missing [cors] section: set allow_origins to XucMgt's origin(s), e.g. [\"https://xuc.example.org\"], or [\"*\"]",
        );
        return None;
    };
    let origins = if raw.allow_origins.iter().any(|o| o == "*") {
        if raw.allow_origins.len() > 1 {
            diags.error(
                "cors.allow_origins",
                "\"*\" allows every origin: list it alone",
            );
        }
        if raw.allow_credentials {
            diags.error(
                "cors.allow_credentials",
                "credentials cannot be allowed with allow_origins = [\"*\"]",
            );
        }
        AllowedOrigins::Any
    } else {
        if raw.allow_origins.is_empty() {
            diags.error(
                "cors.allow_origins",
                "is empty: no browser could call the gateway",
            );
        }
        let mut list = Vec::new();
        for (i, o) in raw.allow_origins.iter().enumerate() {
            match origin(o) {
                Ok(o) => list.push(o),
                Err(msg) => diags.error(&format!("cors.allow_origins[{i}]"), msg),
            }
        }
        AllowedOrigins::List(list)
    };
    let mut headers = Vec::new();
    for (i, h) in raw.allow_headers.iter().enumerate() {
        match HeaderName::try_from(h.to_ascii_lowercase()) {
            Ok(name) => headers.push(name),
            Err(_) => diags.error(
                &format!("cors.allow_headers[{i}]"),
                format!("{h:?} is not a header name"),
            ),
        }
    }
    let max_age = within(
        raw.max_age,
        0..=numbers::MAX_CORS_MAX_AGE,
        DEFAULT_CORS_MAX_AGE,
        "cors.max_age",
        diags,
    );
    Some(Cors::new(
        origins,
        headers,
        max_age,
        raw.allow_private_network,
        raw.allow_credentials,
    ))
}

/// Normalizes an origin as browsers serialize it: scheme, host, port if not
/// the default, lowercase, no path.
fn origin(raw: &str) -> Result<String, String> {
    let url = Url::parse(raw)
        .map_err(|e| format!("{raw:?} is not an origin such as https://xuc.example.org: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("{raw:?} is not an http(s) origin"));
    }
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(format!(
            "{raw:?} has more than scheme, host and port: an origin has no path"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn routes(
    raw: &[RawRoute],
    raw_backends: &BTreeMap<String, raw::RawBackend>,
    backends: &BTreeMap<Box<str>, std::sync::Arc<Backend>>,
    mut templates: Templates,
    diags: &mut Diagnostics<'_>,
) -> Router {
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("routes[{i}]");
        let name = r.name.clone().unwrap_or_else(|| key.clone());
        if !names.insert(name.clone()) {
            diags.error(
                &format!("{key}.name"),
                format!("duplicate route name {name:?}"),
            );
        }
        let path = r.path.clone().unwrap_or_else(|| "/".to_owned());
        if !path.starts_with('/') || path.contains(['?', '#']) {
            diags.error(
                &format!("{key}.path"),
                format!("{path:?} must be a path starting with / and no query"),
            );
        }
        if RESERVED_PATHS.contains(&path.as_str()) || path.starts_with("/demo/") {
            diags.error(
                &format!("{key}.path"),
                format!("{path:?} is the gateway's own page (reserved: /wrap, /wrap.js, /wrap.css, /demo/...)"),
            );
        }
        let when = r.when.as_deref().and_then(|expr| {
            let at = probe::At {
                key: &format!("{key}.when"),
                extra: &[],
                sees: probe::Sees::Call { login: false },
                diags,
            };
            probe::condition(&mut templates, at, expr)
        });
        let mut route_backends = Vec::new();
        for (j, b) in r.backend.iter().flat_map(|b| b.names()).enumerate() {
            match backends.get(b.as_str()) {
                Some(backend) => route_backends.push(std::sync::Arc::clone(backend)),
                // A backend with errors of its own was reported already.
                None if raw_backends.contains_key(b) => {}
                None => {
                    let known: Vec<&str> = raw_backends.keys().map(String::as_str).collect();
                    let k = match &r.backend {
                        Some(raw::OneOrMany::Many(_)) => format!("{key}.backend[{j}]"),
                        _ => format!("{key}.backend"),
                    };
                    diags.error(&k, format!("no [backends.{b}] (known: {known:?})"));
                }
            }
        }
        if r.forward_token && r.backend.is_none() {
            diags.warn(
                &format!("{key}.forward_token"),
                "has no effect on a route without backend",
            );
        }
        let open = r
            .open
            .as_ref()
            .and_then(|open| screen_pop(open, &key, &mut templates, diags));
        if r.open.is_none() && r.backend.is_none() {
            diags.error(
                &key,
                "a route needs an action: backend = \"NAME\" and/or an [routes.open] table",
            );
            continue;
        }
        routes.push((
            path.into_boxed_str(),
            Route {
                name: name.into_boxed_str(),
                when,
                when_source: r.when.as_deref().map(Into::into),
                backends: route_backends,
                open,
                forward_token: r.forward_token,
                wrap: r.wrap,
                metrics: Handles::default(),
                card: Default::default(),
            },
        ));
    }
    if raw.is_empty() {
        diags.warn(
            "routes",
            "no [[routes]]: every call gets {\"action\":\"none\"}",
        );
    }
    Router::new(templates, routes)
}

fn screen_pop(
    open: &raw::RawOpen,
    key: &str,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<ScreenPop> {
    let url = compile(
        templates,
        diags,
        &format!("{key}.open.url"),
        &open.url,
        Escape::Url,
        &[],
        probe::Sees::Call { login: false },
    );
    let title = compile(
        templates,
        diags,
        &format!("{key}.open.title"),
        &open.title,
        Escape::None,
        &[],
        probe::Sees::Call { login: false },
    );
    let pop = ScreenPop {
        event: open.event,
        url: url?,
        title: title?,
        autopause: open.autopause,
    };
    urls::screen_pop(
        templates,
        &pop,
        &format!("{key}.open.url"),
        &open.url,
        diags,
    );
    Some(pop)
}

/// Compiles a template at `key`, reporting errors and likely typos there.
/// `extra` names variables the template may use besides the payload's;
/// `sees` is the context it runs in.
#[allow(clippy::too_many_arguments)]
fn compile(
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
    key: &str,
    source: &str,
    escape: Escape,
    extra: &[&str],
    sees: probe::Sees<'_>,
) -> Option<TemplateId> {
    let at = probe::At {
        key,
        extra,
        sees,
        diags,
    };
    probe::template(templates, at, source, escape)
}
