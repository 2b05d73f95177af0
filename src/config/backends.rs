//! `[backends.NAME]` from raw TOML to ready backends: templates compiled,
//! secrets read, TLS configs built, limits checked against the deadline.
//! Everything that can fail here is a `check` error at its key.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue, Method};
use tokio::sync::Semaphore;
use url::Url;

use super::compile;
use super::diag::Diagnostics;
use super::numbers::{millis, within, MAX_COUNT, MAX_RESPONSE_BYTES};
use super::probe::{self, Sees};
use super::raw::{AuthKind, Encoding, LoginField, RawAuth, RawBackend, RawReply};
use super::secrets::secret;
use crate::backend::reply::{Candidates, Choice, Extract, ReplyFormat};
use crate::backend::request::{BodySpec, JsonSpec, UrlSpec};
use crate::backend::{Backend, Client, ReplySpec, RequestSpec};
use crate::constants::{DEFAULT_MAX_RESPONSE_BYTES, MAX_FOLLOW_REDIRECTS};
use crate::contract::Event;
use crate::extract::{JsonPath, XmlPath};
use crate::metrics::Handles;
use crate::template::single_expression;
use crate::template::{Escape, TemplateId, Templates};

/// Names reply templates may use besides the payload and extracted values.
const REPLY_NAMES: [&str; 2] = ["http_status", "body"];

/// Validates every backend; the ones with errors are left out (and the
/// config as a whole is refused).
pub(super) fn backends(
    raw: &BTreeMap<String, RawBackend>,
    deadline: Duration,
    base: &Path,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> BTreeMap<Box<str>, Arc<Backend>> {
    let mut out = BTreeMap::new();
    // Backends with a login of their own first: a backend that shares one
    // (`login = "OTHER"`) takes a clone of OTHER's.
    let shares = |b: &RawBackend| matches!(b.login, Some(LoginField::Shared(_)));
    for second in [false, true] {
        for (name, b) in raw.iter().filter(|(_, b)| shares(b) == second) {
            let key = format!("backends.{name}");
            let errors = diags.errors.len();
            let mut backend = backend(name, b, &key, deadline, base, templates, diags);
            if let Some(LoginField::Shared(owner)) = &b.login {
                backend = backend.and_then(|mut built| {
                    built.login = Some(super::login::shared(name, owner, &key, raw, &out, diags)?);
                    if raw.get(owner).and_then(RawBackend::oauth2).is_some() {
                        bearer(&mut built.request, &key, templates)?;
                    }
                    Some(built)
                });
            }
            if let (Some(backend), true) = (backend, diags.errors.len() == errors) {
                out.insert(name.as_str().into(), Arc::new(backend));
            }
        }
    }
    out
}

fn backend(
    name: &str,
    b: &RawBackend,
    key: &str,
    deadline: Duration,
    base: &Path,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<Backend> {
    let oauth2 = b.oauth2();
    let sees = Sees::Call {
        login: b.login.is_some() || oauth2.is_some(),
    };
    let request = request_spec(&Parts::of(b, sees), key, base, templates, diags);
    let timeout = millis(b.timeout_ms, deadline, &format!("{key}.timeout_ms"), diags);
    if timeout > deadline {
        diags.error(
            &format!("{key}.timeout_ms"),
            format!(
                "{} ms exceeds server.deadline_ms ({} ms): the agent would get none first",
                timeout.as_millis(),
                deadline.as_millis()
            ),
        );
    }
    let timeout = timeout.min(deadline);
    let follow_redirects = within(
        b.follow_redirects,
        0..=MAX_FOLLOW_REDIRECTS,
        0,
        &format!("{key}.follow_redirects"),
        diags,
    );
    let max_response_bytes = within(
        b.max_response_bytes,
        1..=MAX_RESPONSE_BYTES,
        DEFAULT_MAX_RESPONSE_BYTES,
        &format!("{key}.max_response_bytes"),
        diags,
    );
    let limit = b.max_concurrency.map(|n| {
        let n = within(
            Some(n),
            1..=MAX_COUNT,
            1,
            &format!("{key}.max_concurrency"),
            diags,
        );
        Arc::new(Semaphore::new(n))
    });
    let public_base = b.public_base.as_deref().and_then(|raw| {
        let k = format!("{key}.public_base");
        match Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                if !u.path().ends_with('/') {
                    diags.warn(
                        &k,
                        format!("{raw:?} does not end with '/': relative urls replace its last path segment"),
                    );
                }
                Some(u)
            }
            _ => {
                diags.error(&k, format!("{raw:?} is not an absolute http(s) URL"));
                None
            }
        }
    });
    let tls = tls(b, key, base, diags);
    let reply = reply(&b.reply, key, public_base, sees, templates, diags);
    let client = Client::new(tls?, timeout, follow_redirects, max_response_bytes);
    let login = match (&b.login, oauth2) {
        (Some(LoginField::Shared(_)), Some(_)) => {
            diags.error(
                &format!("{key}.auth"),
                "a backend that shares a login cannot have auth.type = \"oauth2\" too: the shared login is its session",
            );
            return None;
        }
        (Some(_), Some(_)) => {
            diags.error(
                &format!("{key}.login"),
                "auth.type = \"oauth2\" is a login already: use one or the other",
            );
            return None;
        }
        // Set by the caller, once OTHER is built.
        (Some(LoginField::Shared(_)), None) => None,
        (Some(LoginField::Own(l)), None) => Some(super::login::login(
            l,
            name,
            key,
            base,
            client.clone(),
            templates,
            diags,
        )?),
        (None, Some(a)) => Some(super::oauth2::oauth2(
            a,
            name,
            &format!("{key}.auth"),
            base,
            client.clone(),
            templates,
            diags,
        )?),
        (None, None) => None,
    };
    let mut request = request?;
    if oauth2.is_some() {
        bearer(&mut request, key, templates)?;
    }
    let reply = reply?;
    let directory = match &b.directory {
        Some(d) => Some(super::directory::directory(
            d, b, &reply, key, base, templates, diags,
        )?),
        None => None,
    };
    Some(Backend {
        name: name.into(),
        request,
        reply,
        client,
        timeout,
        limit,
        metrics: Handles::default(),
        login,
        directory,
    })
}

/// `Authorization: Bearer {{ login.access_token }}` on the look-ups of a
/// backend whose login is OAuth2 (its own or shared), unless it sets its own
/// `Authorization` header (Zoho's `Zoho-oauthtoken`).
pub(super) fn bearer(
    request: &mut RequestSpec,
    key: &str,
    templates: &mut Templates,
) -> Option<()> {
    if request.headers.iter().any(|(h, _)| h == AUTHORIZATION) {
        return Some(());
    }
    let bearer = templates
        .add(
            &format!("{key}.auth#bearer"),
            "Bearer {{ login.access_token }}",
            Escape::None,
        )
        .ok()?
        .into_sensitive();
    request.headers.push((AUTHORIZATION, bearer));
    Some(())
}

/// The request fields a look-up and a login step share.
pub(super) struct Parts<'a> {
    pub(super) url: &'a str,
    pub(super) method: &'a Option<String>,
    pub(super) encoding: Encoding,
    pub(super) body: &'a Option<toml::Value>,
    pub(super) headers: &'a toml::Table,
    pub(super) auth: Option<&'a RawAuth>,
    pub(super) format: ReplyFormat,
    /// What its templates see at run time.
    pub(super) sees: Sees<'a>,
}

impl<'a> Parts<'a> {
    fn of(b: &'a RawBackend, sees: Sees<'a>) -> Self {
        Self {
            url: &b.url,
            method: &b.method,
            encoding: b.encoding,
            body: &b.body,
            headers: &b.headers,
            auth: b.auth.as_ref(),
            format: b.reply.format,
            sees,
        }
    }
}

/// Compiles how to build a request: url, method, body, headers, credentials.
pub(super) fn request_spec(
    b: &Parts<'_>,
    key: &str,
    base: &Path,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<RequestSpec> {
    let url_src = b.url.trim_start();
    // A url from a login (`{{ login.api_domain }}/...`) is checked per request.
    if !url_src.starts_with("http://")
        && !url_src.starts_with("https://")
        && !url_src.starts_with("{{")
    {
        diags.error(&format!("{key}.url"), "must start with http:// or https://");
    }
    let is_template = b.url.contains("{{") || b.url.contains("{%");
    let url = if is_template {
        compile(
            templates,
            diags,
            &format!("{key}.url"),
            b.url,
            Escape::Url,
            &[],
            b.sees,
        )
        .map(UrlSpec::Template)
    } else {
        match Url::parse(b.url.trim()) {
            Ok(url) => Some(UrlSpec::Fixed(url)),
            Err(e) => {
                diags.error(
                    &format!("{key}.url"),
                    format!("{:?} is not a URL: {e}", b.url),
                );
                None
            }
        }
    };
    let method = match b.method {
        None if b.encoding == Encoding::Query => Method::GET,
        None => Method::POST,
        Some(m) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                diags.error(
                    &format!("{key}.method"),
                    format!("{m:?} is not an HTTP method"),
                );
                Method::POST
            }
        },
    };
    let body = body(b, key, templates, diags);
    let mut headers = Vec::new();
    for (h, v) in b.headers {
        let hkey = format!("{key}.headers.{h}");
        let Ok(hname) = HeaderName::try_from(h.to_ascii_lowercase()) else {
            diags.error(&hkey, format!("{h:?} is not a header name"));
            continue;
        };
        let Some(src) = v.as_str() else {
            diags.error(&hkey, "must be a string (a template)");
            continue;
        };
        if let Some(id) = compile(templates, diags, &hkey, src, Escape::None, &[], b.sees) {
            // A header built from a session (a token) is a credential.
            let id = if templates.variables(&id).contains("login") {
                id.into_sensitive()
            } else {
                id
            };
            headers.push((hname, id));
        }
    }
    let auth = b
        .auth
        .and_then(|a| auth(a, &format!("{key}.auth"), base, diags));
    let mut spec = RequestSpec {
        method,
        url: url?,
        body: body?,
        headers,
        auth,
        accept: HeaderValue::from_static(match b.format {
            ReplyFormat::Json | ReplyFormat::Contract => "application/json",
            ReplyFormat::Xml => "text/xml, application/xml, application/soap+xml",
            ReplyFormat::Text => "text/plain, */*",
        }),
        confidential: false,
        follows_redirects: true,
        shown_headers: Default::default(),
    };
    // A url or body that holds a secret or a session value never crosses
    // origins on a redirect.
    let reads_credential =
        |id: &TemplateId| id.is_sensitive() || templates.variables(id).contains("login");
    spec.confidential = matches!(&spec.url, UrlSpec::Template(id) if reads_credential(id))
        || spec
            .body_templates()
            .into_iter()
            .any(|id| reads_credential(id));
    // A body value built from a session is a credential too: `simulate`
    // hides what it renders. (A url reading login.* is shown with the
    // session's values redacted; one reading a secret by its origin.)
    for id in spec.body_templates() {
        if templates.variables(id).contains("login") {
            *id = id.clone().into_sensitive();
        }
    }
    Some(spec)
}

fn body(
    b: &Parts<'_>,
    key: &str,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<BodySpec> {
    let bkey = format!("{key}.body");
    match (b.encoding, b.body) {
        (Encoding::Json, None) => Some(BodySpec::Json(JsonSpec::Context)),
        (Encoding::Json, Some(v @ toml::Value::Table(_))) => {
            json_spec(v, &bkey, b.sees, templates, diags).map(BodySpec::Json)
        }
        (Encoding::Json, Some(_)) => {
            diags.error(
                &bkey,
                "with encoding = \"json\", body is a table: [backends.NAME.body]",
            );
            None
        }
        (Encoding::Form | Encoding::Query, body) => {
            let empty = toml::Table::new();
            let table = match body {
                None => &empty,
                Some(toml::Value::Table(t)) => t,
                Some(_) => {
                    diags.error(
                        &bkey,
                        "with form or query encoding, body is a table of fields",
                    );
                    return None;
                }
            };
            let mut fields = Vec::new();
            for (field, v) in table {
                let fkey = format!("{bkey}.{field}");
                let src = match v {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                        v.to_string()
                    }
                    _ => {
                        diags.error(&fkey, "a field is a string template, a number or a boolean");
                        continue;
                    }
                };
                if let Some(id) = compile(templates, diags, &fkey, &src, Escape::None, &[], b.sees)
                {
                    fields.push((field.as_str().into(), id));
                }
            }
            Some(if b.encoding == Encoding::Form {
                BodySpec::Form(fields)
            } else {
                BodySpec::Query(fields)
            })
        }
        (Encoding::Xml, Some(toml::Value::String(src))) => {
            compile(templates, diags, &bkey, src, Escape::Xml, &[], b.sees).map(BodySpec::Xml)
        }
        (Encoding::Xml, _) => {
            diags.error(&bkey, "with encoding = \"xml\", body is the document template (e.g. a SOAP envelope) as a string");
            None
        }
    }
}

fn json_spec(
    v: &toml::Value,
    key: &str,
    sees: Sees<'_>,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<JsonSpec> {
    Some(match v {
        toml::Value::String(src) => match single_expression(src) {
            Some(expr) => {
                let at = probe::At {
                    key,
                    extra: &[],
                    sees,
                    diags,
                };
                JsonSpec::Native(probe::json_expression(templates, at, src, expr)?)
            }
            None => JsonSpec::Text(compile(
                templates,
                diags,
                key,
                src,
                Escape::None,
                &[],
                sees,
            )?),
        },
        toml::Value::Table(t) => {
            let mut fields = Vec::with_capacity(t.len());
            for (k, v) in t {
                fields.push((
                    k.as_str().into(),
                    json_spec(v, &format!("{key}.{k}"), sees, templates, diags)?,
                ));
            }
            JsonSpec::Object(fields)
        }
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                out.push(json_spec(
                    v,
                    &format!("{key}[{i}]"),
                    sees,
                    templates,
                    diags,
                )?);
            }
            JsonSpec::Array(out)
        }
        toml::Value::Integer(i) => JsonSpec::Literal((*i).into()),
        toml::Value::Float(f) => JsonSpec::Literal((*f).into()),
        toml::Value::Boolean(b) => JsonSpec::Literal((*b).into()),
        toml::Value::Datetime(d) => JsonSpec::Literal(d.to_string().into()),
    })
}

fn auth(
    a: &RawAuth,
    key: &str,
    base: &Path,
    diags: &mut Diagnostics<'_>,
) -> Option<(HeaderName, HeaderValue)> {
    // Each credential field belongs to one type; any other is a mistake.
    let owned = [
        ("username", a.username.is_some(), AuthKind::Basic),
        ("password_env", a.password_env.is_some(), AuthKind::Basic),
        ("password_file", a.password_file.is_some(), AuthKind::Basic),
        ("token_env", a.token_env.is_some(), AuthKind::Bearer),
        ("token_file", a.token_file.is_some(), AuthKind::Bearer),
        ("header", a.header.is_some(), AuthKind::Header),
        ("value_env", a.value_env.is_some(), AuthKind::Header),
        ("value_file", a.value_file.is_some(), AuthKind::Header),
        ("grant", a.grant.is_some(), AuthKind::OAuth2),
        ("token_url", a.token_url.is_some(), AuthKind::OAuth2),
        ("client_id", a.client_id.is_some(), AuthKind::OAuth2),
        (
            "client_secret_env",
            a.client_secret_env.is_some(),
            AuthKind::OAuth2,
        ),
        (
            "client_secret_file",
            a.client_secret_file.is_some(),
            AuthKind::OAuth2,
        ),
        (
            "refresh_token_env",
            a.refresh_token_env.is_some(),
            AuthKind::OAuth2,
        ),
        (
            "refresh_token_file",
            a.refresh_token_file.is_some(),
            AuthKind::OAuth2,
        ),
        ("scope", a.scope.is_some(), AuthKind::OAuth2),
        ("params", !a.params.is_empty(), AuthKind::OAuth2),
        ("client_auth", a.client_auth.is_some(), AuthKind::OAuth2),
        ("ttl_s", a.ttl_s.is_some(), AuthKind::OAuth2),
        ("timeout_ms", a.timeout_ms.is_some(), AuthKind::OAuth2),
        ("relogin_when", a.relogin_when.is_some(), AuthKind::OAuth2),
    ];
    // The password grant sends a username and password too.
    let shared = |field: &str| {
        a.kind == AuthKind::OAuth2 && matches!(field, "username" | "password_env" | "password_file")
    };
    let kind_name = |k: AuthKind| format!("{k:?}").to_lowercase();
    for (field, set, owner) in owned {
        if set && owner != a.kind && !shared(field) {
            diags.error(
                &format!("{key}.{field}"),
                format!(
                    "belongs to type = {:?}, not {:?}",
                    kind_name(owner),
                    kind_name(a.kind)
                ),
            );
        }
    }
    let (name, value) = match a.kind {
        // A token from a login, set per request (config::login::oauth2).
        AuthKind::OAuth2 => return None,
        AuthKind::Basic => {
            let Some(user) = &a.username else {
                diags.error(key, "type = \"basic\" needs username");
                return None;
            };
            if user.contains(':') {
                diags.error(
                    &format!("{key}.username"),
                    "a basic-auth username cannot contain ':'",
                );
            }
            let password = secret(
                a.password_env.as_ref(),
                a.password_file.as_ref(),
                key,
                "password",
                base,
                diags,
            )?;
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            (AUTHORIZATION, format!("Basic {encoded}"))
        }
        AuthKind::Bearer => {
            let token = secret(
                a.token_env.as_ref(),
                a.token_file.as_ref(),
                key,
                "token",
                base,
                diags,
            )?;
            (AUTHORIZATION, format!("Bearer {token}"))
        }
        AuthKind::Header => {
            let Some(header) = &a.header else {
                diags.error(key, "type = \"header\" needs header, e.g. \"X-Api-Key\"");
                return None;
            };
            let Ok(name) = HeaderName::try_from(header.to_ascii_lowercase()) else {
                diags.error(
                    &format!("{key}.header"),
                    format!("{header:?} is not a header name"),
                );
                return None;
            };
            let value = secret(
                a.value_env.as_ref(),
                a.value_file.as_ref(),
                key,
                "value",
                base,
                diags,
            )?;
            (name, value)
        }
    };
    match HeaderValue::from_str(&value) {
        Ok(mut v) => {
            v.set_sensitive(true);
            Some((name, v))
        }
        Err(_) => {
            diags.error(key, "the secret holds characters a header cannot carry");
            None
        }
    }
}

fn tls(
    b: &RawBackend,
    key: &str,
    base: &Path,
    diags: &mut Diagnostics<'_>,
) -> Option<rustls::ClientConfig> {
    let ca = b.ca_file.as_ref().map(|f| base.join(f));
    let identity = match (&b.client_cert, &b.client_key) {
        (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
        (None, None) => None,
        (Some(_), None) => {
            diags.error(&format!("{key}.client_key"), "client_cert needs client_key");
            return None;
        }
        (None, Some(_)) => {
            diags.error(
                &format!("{key}.client_cert"),
                "client_key needs client_cert",
            );
            return None;
        }
    };
    let identity_ref = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    match crate::tls::client_config(ca.as_deref(), identity_ref) {
        Ok(c) => Some(c),
        Err(e) => {
            let field = match (&e, &ca) {
                (crate::tls::TlsError::Pem { path, .. }, Some(ca)) if path == ca => "ca_file",
                _ => "client_cert",
            };
            diags.error(&format!("{key}.{field}"), e);
            None
        }
    }
}

fn reply(
    r: &RawReply,
    key: &str,
    public_base: Option<Url>,
    sees: Sees<'_>,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<ReplySpec> {
    let rkey = format!("{key}.reply");
    let mut names: Vec<&str> = REPLY_NAMES.to_vec();
    names.extend(r.extract.keys().map(String::as_str));
    if r.format == ReplyFormat::Contract {
        for (set, field) in [
            (!r.extract.is_empty(), "extract"),
            (r.open_when.is_some(), "open_when"),
            (r.event.is_some(), "event"),
            (r.url.is_some(), "url"),
            (r.title.is_some(), "title"),
            (r.autopause.is_some(), "autopause"),
        ] {
            if set {
                diags.error(
                    &format!("{rkey}.{field}"),
                    "a contract backend's reply is used as it comes (validated): remove this key",
                );
            }
        }
    }
    let mut extract = Extract::Nothing;
    match r.format {
        ReplyFormat::Json | ReplyFormat::Xml => {
            let mut json = Vec::new();
            let (mut xml_names, mut xml_paths) = (Vec::new(), Vec::new());
            for (name, path) in &r.extract {
                let k = format!("{rkey}.extract.{name}");
                let payload_field = crate::contract::PAYLOAD_FIELDS
                    .iter()
                    .any(|(n, _)| n == name);
                if payload_field || REPLY_NAMES.contains(&name.as_str()) {
                    diags.warn(&k, format!("{name:?} hides the payload or reply value of that name in reply templates"));
                }
                let Some(path) = path.as_str() else {
                    diags.error(&k, "must be a path string");
                    continue;
                };
                let parsed = if r.format == ReplyFormat::Json {
                    JsonPath::parse(path).map(|p| json.push((name.as_str().into(), p)))
                } else {
                    XmlPath::parse(path).map(|p| {
                        xml_names.push(name.as_str().into());
                        xml_paths.push(p);
                    })
                };
                if let Err(msg) = parsed {
                    diags.error(&k, msg);
                }
            }
            extract = if r.format == ReplyFormat::Json {
                Extract::Json(json)
            } else {
                Extract::Xml(xml_names, xml_paths)
            };
            if r.url.is_none() && !r.extract.contains_key("url") {
                diags.error(
                    &rkey,
                    "no url: set reply.url (a template) or extract a value named url",
                );
            }
        }
        ReplyFormat::Text if !r.extract.is_empty() => {
            diags.error(
                &format!("{rkey}.extract"),
                "a text reply has nothing to extract: use {{ body }}",
            );
        }
        ReplyFormat::Text | ReplyFormat::Contract => {}
    }
    let candidates = candidates(r, &rkey, templates.region(), diags);
    let open_when = r.open_when.as_deref().and_then(|expr| {
        let at = probe::At {
            key: &format!("{rkey}.open_when"),
            extra: &names,
            sees,
            diags,
        };
        probe::condition(templates, at, expr)
    });
    let event = match r.event.as_deref() {
        None => Choice::Fixed(Event::EventRinging),
        Some(src) if src.contains("{{") || src.contains("{%") => Choice::Dynamic(compile(
            templates,
            diags,
            &format!("{rkey}.event"),
            src,
            Escape::None,
            &names,
            sees,
        )?),
        Some(src) => match Event::parse(src) {
            Some(e) => Choice::Fixed(e),
            None => {
                diags.error(
                    &format!("{rkey}.event"),
                    format!("{src:?} is not EventRinging, EventEstablished or EventReleased"),
                );
                return None;
            }
        },
    };
    let url = match &r.url {
        Some(src) => Some(compile(
            templates,
            diags,
            &format!("{rkey}.url"),
            src,
            Escape::Url,
            &names,
            sees,
        )?),
        None => None,
    };
    let title = match &r.title {
        Some(src) => Some(compile(
            templates,
            diags,
            &format!("{rkey}.title"),
            src,
            Escape::None,
            &names,
            sees,
        )?),
        None => None,
    };
    let autopause = match &r.autopause {
        None => Choice::Fixed(false),
        Some(toml::Value::Boolean(b)) => Choice::Fixed(*b),
        Some(toml::Value::String(expr)) => {
            let at = probe::At {
                key: &format!("{rkey}.autopause"),
                extra: &names,
                sees,
                diags,
            };
            Choice::Dynamic(probe::condition(templates, at, expr)?)
        }
        Some(_) => {
            diags.error(
                &format!("{rkey}.autopause"),
                "true, false, or an expression string",
            );
            return None;
        }
    };
    let accept_status = accept_status(r.accept_status.as_ref(), &rkey, diags);
    // Converting a whole reply for templates costs; only do it when one reads it.
    let mut used = std::collections::HashSet::new();
    for id in [&url, &title].into_iter().flatten() {
        used.extend(templates.variables(id));
    }
    if let Choice::Dynamic(id) = &event {
        used.extend(templates.variables(id));
    }
    for cond in [
        open_when.as_ref(),
        match &autopause {
            Choice::Dynamic(c) => Some(c),
            Choice::Fixed(_) => None,
        },
    ]
    .into_iter()
    .flatten()
    {
        used.extend(templates.condition_variables(cond));
    }
    let spec = ReplySpec {
        format: r.format,
        body_in_templates: used.contains("body"),
        accept_status,
        extract,
        open_when,
        event,
        url,
        title,
        autopause,
        public_base,
        candidates,
    };
    if let Some(src) = &r.url {
        let ukey = format!("{rkey}.url");
        super::urls::reply(templates, &spec, &names, &ukey, src, diags);
    }
    Some(spec)
}

/// `records` and `phones`: the reply is a list of candidate records and the
/// caller's is picked by phone number, so both go together, in JSON, with a
/// region to read numbers stored without their country code.
fn candidates(
    r: &RawReply,
    rkey: &str,
    caller_region: Option<crate::template::Region>,
    diags: &mut Diagnostics<'_>,
) -> Option<Candidates> {
    let (records, phones) = match (&r.records, &r.phones) {
        (None, None) => {
            if r.region.is_some() {
                diags.error(
                    &format!("{rkey}.region"),
                    "region reads the numbers of records: set records and phones too",
                );
            }
            return None;
        }
        (Some(records), Some(phones)) => (records, phones),
        (Some(_), None) => {
            diags.error(
                &format!("{rkey}.records"),
                "records needs phones: the fields of a record that hold its phone numbers, e.g. phones = [\"phone\", \"mobile\"]",
            );
            return None;
        }
        (None, Some(_)) => {
            diags.error(
                &format!("{rkey}.phones"),
                "phones needs records: where the list of records is in the reply, e.g. records = \"result\" (\"\" for a reply that is the list)",
            );
            return None;
        }
    };
    if r.format != ReplyFormat::Json {
        diags.error(
            &format!("{rkey}.records"),
            "candidate records are read from JSON replies: set format = \"json\"",
        );
        return None;
    }
    let mut ok = true;
    let records_path = match JsonPath::parse(if records == "/" { "" } else { records }) {
        Ok(p) => Some(p),
        Err(msg) => {
            diags.error(&format!("{rkey}.records"), msg);
            None
        }
    };
    if phones.is_empty() {
        diags.error(
            &format!("{rkey}.phones"),
            "no phone field: name at least one, e.g. phones = [\"phone\", \"mobile\"]",
        );
        ok = false;
    }
    let mut parsed = Vec::new();
    for (i, path) in phones.iter().enumerate() {
        match JsonPath::parse(path) {
            Ok(p) if !path.is_empty() => parsed.push((path.as_str().into(), p)),
            Ok(_) => {
                diags.error(
                    &format!("{rkey}.phones[{i}]"),
                    "an empty path: name a field of the record",
                );
                ok = false;
            }
            Err(msg) => {
                diags.error(&format!("{rkey}.phones[{i}]"), msg);
                ok = false;
            }
        }
    }
    let region = match &r.region {
        Some(code) => match crate::template::phone_region(code) {
            Some(region) => Some(region),
            None => {
                diags.error(
                    &format!("{rkey}.region"),
                    format!("{code:?} is not a region: an ISO 3166 code such as \"FR\" or \"US\""),
                );
                ok = false;
                None
            }
        },
        None => caller_region,
    };
    if region.is_none() && r.region.is_none() {
        diags.error(
            &format!("{rkey}.records"),
            "comparing phone numbers needs a region to read numbers stored without a country code: set [phone] default_region (or reply.region)",
        );
        ok = false;
    }
    if let Some(region) = region {
        crate::phone::warm(region);
    }
    Some(Candidates {
        records: records_path?,
        phones: parsed,
        region,
        caller_region,
    })
    .filter(|_| ok)
}

/// A reply's `accept_status` list, each entry checked to be an HTTP status
/// (look-ups and login steps share it).
pub(super) fn accept_status(
    list: Option<&Vec<u16>>,
    rkey: &str,
    diags: &mut Diagnostics<'_>,
) -> Option<Vec<u16>> {
    let list = list?;
    for (i, status) in list.iter().enumerate() {
        if !(100..=599).contains(status) {
            diags.error(
                &format!("{rkey}.accept_status[{i}]"),
                format!("{status} is not an HTTP status"),
            );
        }
    }
    Some(list.clone())
}
