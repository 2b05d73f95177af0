//! Building the request a backend wants from the payload: its URL, headers,
//! credentials, and a body in the backend's own encoding. Everything that can
//! be checked is checked at load; here templates are only rendered.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use minijinja::Value;
use url::Url;

use super::Failure;
use crate::outcome::NoneReason;
use crate::template::{TemplateId, Templates};

/// The `User-Agent` of every request the gateway sends.
pub(crate) const UA: HeaderValue =
    HeaderValue::from_static(concat!("thirdparty-gateway/", env!("CARGO_PKG_VERSION")));

/// How to build one backend's requests.
#[derive(Debug)]
pub struct RequestSpec {
    /// GET, POST, ...
    pub method: Method,
    /// The URL.
    pub url: UrlSpec,
    /// The body, in the backend's encoding.
    pub body: BodySpec,
    /// Extra headers, values rendered as text.
    pub headers: Vec<(HeaderName, TemplateId)>,
    /// A prebuilt credential header, marked sensitive so it is never shown.
    pub auth: Option<(HeaderName, HeaderValue)>,
    /// What the reply format wants to receive.
    pub accept: HeaderValue,
    /// Its url or body renders a secret or a session value (`login.*`):
    /// a redirect to another origin would hand them over, so it is refused.
    pub confidential: bool,
    /// Redirects may be followed (up to the backend's `follow_redirects`);
    /// a login step's or token request's never are.
    pub follows_redirects: bool,
    /// [`RequestSpec::shown_headers`], written once.
    pub shown_headers: OnceLock<Option<Arc<str>>>,
}

/// A backend URL: most are fixed, parsed once at load; a templated one is
/// rendered (values percent-encoded) and parsed per request.
#[derive(Debug)]
pub enum UrlSpec {
    /// The same for every request.
    Fixed(Url),
    /// Built from the payload.
    Template(TemplateId),
}

/// The body of a backend request.
#[derive(Debug)]
pub enum BodySpec {
    /// A JSON document.
    Json(JsonSpec),
    /// Form fields in the body.
    Form(Vec<(Box<str>, TemplateId)>),
    /// Fields added to the URL's query string; no body.
    Query(Vec<(Box<str>, TemplateId)>),
    /// A body template with XML-escaped values.
    Xml(TemplateId),
}

/// A JSON value whose strings are templates. A string that is exactly one
/// `{{ expression }}` keeps the expression's type (number, object, ...).
#[derive(Debug)]
pub enum JsonSpec {
    /// No body configured: the payload as templates see it (no token unless
    /// the route forwards it).
    Context,
    /// A TOML value copied as is (number, boolean, date as string).
    Literal(serde_json::Value),
    /// A string template.
    Text(TemplateId),
    /// One expression whose value is kept as JSON.
    Native(TemplateId),
    /// A table.
    Object(Vec<(Box<str>, JsonSpec)>),
    /// An array.
    Array(Vec<JsonSpec>),
}

/// A request ready to send, also what `simulate` prints.
#[derive(Debug, Clone)]
pub struct BackendRequest {
    /// The method.
    pub method: Method,
    /// The absolute URL.
    pub url: Url,
    /// All headers we set (auth marked sensitive).
    pub headers: HeaderMap,
    /// The body; empty for GET.
    pub body: Bytes,
    /// May carry the agent's token (a `forward_token` route): never sent
    /// to another origin. Any templated header or the body could hold it,
    /// so a redirect away from the origin is refused, not stripped.
    pub carries_token: bool,
    /// Its url or body holds a secret or a session value: a redirect away
    /// from the origin is refused, as for the agent's token.
    pub confidential: bool,
    /// Whether redirects may be followed at all (never for a login).
    pub follows_redirects: bool,
    /// What the templates that read a secret or a session rendered, for
    /// `simulate` to hide wherever it shows the request (a value derived
    /// from a secret, `base64('gw:' ~ secret(...))`, is no known secret).
    pub hidden: Vec<String>,
    /// Its url was rendered from a secret or a session: shown by its
    /// origin only.
    pub url_hidden: bool,
}

impl BackendRequest {
    /// The url as logs and `simulate` may show it: whole, or only its
    /// origin when a secret or a session went into it.
    pub fn shown_url(&self) -> String {
        if self.url_hidden {
            format!("{}/[redacted]", self.url.origin().ascii_serialization())
        } else {
            self.url.to_string()
        }
    }
}

impl RequestSpec {
    /// Renders the request for one payload.
    pub fn build(&self, templates: &Templates, ctx: &Value) -> Result<BackendRequest, Failure> {
        let mut hidden = Vec::new();
        let render = |id: &TemplateId, hidden: &mut Vec<String>| {
            let value = templates
                .render(id, ctx)
                .map_err(|e| Failure::new(NoneReason::Template, e))?;
            if id.is_sensitive() {
                hidden.push(value.clone());
            }
            Ok::<_, Failure>(value)
        };
        let mut url = match &self.url {
            UrlSpec::Fixed(url) => url.clone(),
            UrlSpec::Template(id) => {
                // Its whole text is not a value to hide by substitution:
                // `shown_url` shows its origin only.
                let raw_url = render(id, &mut Vec::new())?;
                if let Some(segment) = crate::template::dot_segment(&raw_url) {
                    return Err(Failure::new(
                        NoneReason::Template,
                        format!("backend url path has a dot segment {segment:?}: refused, it would move the request"),
                    ));
                }
                let url = Url::parse(raw_url.trim()).map_err(|e| {
                    // A url that holds a secret or a session is named by
                    // its key, never quoted: log lines would show them.
                    let shown = if self.confidential || id.is_sensitive() {
                        format!("{} (it reads a secret or login.*)", id.key())
                    } else {
                        format!("{} = {raw_url:?}", id.key())
                    };
                    Failure::new(
                        NoneReason::Template,
                        format!("backend url {shown} is not a URL: {e}"),
                    )
                })?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(Failure::new(
                        NoneReason::Template,
                        format!("backend url scheme {:?} is not http or https", url.scheme()),
                    ));
                }
                url
            }
        };
        let mut headers = self.base_headers();
        let body = match &self.body {
            BodySpec::Json(spec) => {
                let value = spec.render(templates, ctx, &mut hidden)?;
                let body = serde_json::to_vec(&value)
                    .map_err(|e| Failure::new(NoneReason::Template, e))?;
                Bytes::from(body)
            }
            BodySpec::Form(fields) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                for (name, id) in fields {
                    form.append_pair(name, &render(id, &mut hidden)?);
                }
                Bytes::from(form.finish())
            }
            BodySpec::Query(fields) => {
                if !fields.is_empty() {
                    let mut rendered = Vec::with_capacity(fields.len());
                    for (name, id) in fields {
                        rendered.push((name, render(id, &mut hidden)?));
                    }
                    url.query_pairs_mut()
                        .extend_pairs(rendered.iter().map(|(n, v)| (n.as_ref(), v.as_str())));
                }
                Bytes::new()
            }
            BodySpec::Xml(id) => Bytes::from(render(id, &mut hidden)?),
        };
        for (name, id) in &self.headers {
            let value = render(id, &mut hidden)?;
            let mut value = HeaderValue::from_str(value.trim()).map_err(|_| {
                Failure::new(
                    NoneReason::Template,
                    format!("header {name} rendered to a value that cannot be sent"),
                )
            })?;
            value.set_sensitive(id.is_sensitive());
            headers.insert(name.clone(), value);
        }
        if let Some((name, value)) = &self.auth {
            headers.insert(name.clone(), value.clone());
        }
        Ok(BackendRequest {
            method: self.method.clone(),
            url,
            headers,
            body,
            carries_token: false,
            confidential: self.confidential,
            follows_redirects: self.follows_redirects,
            hidden,
            url_hidden: matches!(&self.url, UrlSpec::Template(id) if id.is_sensitive()),
        })
    }

    /// The headers every request carries before its templated ones.
    fn base_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, UA);
        headers.insert(ACCEPT, self.accept.clone());
        if let Some(ct) = self.body.content_type() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        headers
    }

    /// The header lines of every request, as `simulate` shows them
    /// (credentials `[redacted]`), when no header is templated: they are
    /// the same for each request, so the ops console keeps this one text
    /// instead of writing them per call.
    pub fn shown_headers(&self) -> Option<&Arc<str>> {
        self.shown_headers
            .get_or_init(|| {
                self.headers.is_empty().then(|| {
                    let mut headers = self.base_headers();
                    if let Some((name, value)) = &self.auth {
                        headers.insert(name.clone(), value.clone());
                    }
                    let mut out = String::new();
                    super::shown::headers(&mut out, &headers);
                    Arc::from(out)
                })
            })
            .as_ref()
    }

    /// Every template the body renders (fields, or the document's strings).
    pub fn body_templates(&mut self) -> Vec<&mut TemplateId> {
        fn json<'a>(spec: &'a mut JsonSpec, out: &mut Vec<&'a mut TemplateId>) {
            match spec {
                JsonSpec::Context | JsonSpec::Literal(_) => {}
                JsonSpec::Text(id) | JsonSpec::Native(id) => out.push(id),
                JsonSpec::Object(fields) => fields.iter_mut().for_each(|(_, s)| json(s, out)),
                JsonSpec::Array(items) => items.iter_mut().for_each(|s| json(s, out)),
            }
        }
        let mut out = Vec::new();
        match &mut self.body {
            BodySpec::Json(spec) => json(spec, &mut out),
            BodySpec::Form(fields) | BodySpec::Query(fields) => {
                out.extend(fields.iter_mut().map(|(_, id)| id));
            }
            BodySpec::Xml(id) => out.push(id),
        }
        out
    }
}

impl BodySpec {
    /// The `Content-Type` of the body it builds; none for a query.
    pub fn content_type(&self) -> Option<&'static str> {
        match self {
            BodySpec::Json(_) => Some("application/json"),
            BodySpec::Form(_) => Some("application/x-www-form-urlencoded"),
            BodySpec::Query(_) => None,
            BodySpec::Xml(_) => Some("text/xml; charset=utf-8"),
        }
    }
}

impl JsonSpec {
    fn render(
        &self,
        templates: &Templates,
        ctx: &Value,
        hidden: &mut Vec<String>,
    ) -> Result<serde_json::Value, Failure> {
        let failed = |e: minijinja::Error| Failure::new(NoneReason::Template, e);
        Ok(match self {
            JsonSpec::Context => {
                serde_json::to_value(ctx).map_err(|e| Failure::new(NoneReason::Template, e))?
            }
            JsonSpec::Literal(v) => v.clone(),
            JsonSpec::Text(id) => {
                let text = templates.render(id, ctx).map_err(failed)?;
                if id.is_sensitive() {
                    hidden.push(text.clone());
                }
                serde_json::Value::String(text)
            }
            JsonSpec::Native(id) => {
                let value = templates.eval_json(id, ctx).map_err(failed)?;
                if id.is_sensitive() {
                    hidden.push(match &value {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    });
                }
                value
            }
            JsonSpec::Object(fields) => {
                let mut map = serde_json::Map::with_capacity(fields.len());
                for (name, spec) in fields {
                    map.insert(name.to_string(), spec.render(templates, ctx, hidden)?);
                }
                serde_json::Value::Object(map)
            }
            JsonSpec::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|spec| spec.render(templates, ctx, hidden))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// `text` with every value in `secrets` replaced by `[redacted]`, as it is
/// and in each encoding a request can give it (JSON, form, URL): a secret,
/// a session token or the agent's token (a `forward_token` route puts it in
/// a header, a body or a URL).
///
/// A secret shorter than [`WHOLE_WORD_BELOW`] characters is hidden only
/// where it stands alone (no letter or digit on either side): hidden
/// everywhere, a one-letter token would blank every `a` of the printout,
/// while it still shows where a template put it (`token=a&`, `Bearer a`).
pub fn redacted(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let json = serde_json::to_string(secret).unwrap_or_default();
        let spellings = [
            secret.to_owned(),
            json.trim_matches('"').to_owned(),
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
            crate::template::url_component(secret),
        ];
        let whole_word = secret.chars().count() < WHOLE_WORD_BELOW;
        for spelling in spellings.iter().filter(|s| !s.is_empty()) {
            if !out.contains(spelling.as_str()) {
                continue;
            }
            out = if whole_word {
                replace_standing_alone(&out, spelling)
            } else {
                out.replace(spelling.as_str(), "[redacted]")
            };
        }
    }
    out
}

/// Secrets shorter than this many characters are redacted only where they
/// stand alone (see [`redacted`]).
const WHOLE_WORD_BELOW: usize = 4;

/// `text` with each `word` that has no letter or digit just before or
/// after it replaced by `[redacted]`.
fn replace_standing_alone(text: &str, word: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = out.chars().next_back().filter(|_| at == 0);
        let before = before.or_else(|| rest[..at].chars().next_back());
        let after = rest[at + word.len()..].chars().next();
        let alone =
            !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..at]);
        out.push_str(if alone { "[redacted]" } else { word });
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Escape;

    fn hide(text: &str, secret: &str) -> String {
        redacted(text, &[secret.to_owned()])
    }

    #[test]
    fn a_short_secret_is_hidden_where_it_stands_alone_only() {
        let text = "POST https://crm.example.org/api?token=a&name=Jane\nAuthorization: Bearer a\n{\"t\":\"a\"}";
        assert_eq!(
            hide(text, "a"),
            "POST https://crm.example.org/api?token=[redacted]&name=Jane\nAuthorization: Bearer [redacted]\n{\"t\":\"[redacted]\"}"
        );
        // Beside letters or digits it is part of another word.
        assert_eq!(hide("aaa banana a1 1a", "a"), "aaa banana a1 1a");
        assert_eq!(hide("x=ab&y=abc", "ab"), "x=[redacted]&y=abc");
        // Twice in a row, each alone.
        assert_eq!(hide("a a", "a"), "[redacted] [redacted]");
        assert_eq!(hide("é", "é"), "[redacted]");
    }

    #[test]
    fn a_longer_secret_is_hidden_everywhere_in_every_spelling() {
        assert_eq!(hide("xs3cretx", "s3cret"), "x[redacted]x");
        assert_eq!(
            hide("p=p%40ss+w0rd&q=\"p@ss w0rd\"", "p@ss w0rd"),
            "p=[redacted]&q=\"[redacted]\""
        );
        assert_eq!(hide("a%2Fb%3F", "a/b?"), "[redacted]");
    }

    /// The console writes a request's headers from
    /// [`RequestSpec::shown_headers`] instead of the request's own: they
    /// must be the same lines, credentials redacted, for every body.
    #[test]
    fn the_shared_header_lines_are_the_requests_own() {
        let mut templates = Templates::new();
        let caller = templates.add("t#q", "{{ caller }}", Escape::None).unwrap();
        let mut auth = HeaderValue::from_static("Basic c2VjcmV0");
        auth.set_sensitive(true);
        let bodies = [
            BodySpec::Form(vec![("q".into(), caller.clone())]),
            BodySpec::Query(vec![("q".into(), caller.clone())]),
            BodySpec::Json(JsonSpec::Text(caller.clone())),
            BodySpec::Xml(caller),
        ];
        for body in bodies {
            let spec = RequestSpec {
                method: Method::POST,
                url: UrlSpec::Fixed(Url::parse("https://crm.example.org/find").unwrap()),
                body,
                headers: Vec::new(),
                auth: Some((http::header::AUTHORIZATION, auth.clone())),
                accept: HeaderValue::from_static("application/json"),
                confidential: false,
                follows_redirects: true,
                shown_headers: OnceLock::new(),
            };
            let ctx = minijinja::context! { caller => "0612345678" };
            let request = spec.build(&templates, &ctx).unwrap();
            let mut own = String::new();
            crate::backend::shown::headers(&mut own, &request.headers);
            let shared = spec.shown_headers().map(|s| s.to_string());
            assert_eq!(shared.as_deref(), Some(own.as_str()));
            assert!(own.contains("authorization: [redacted]\n"), "{own}");
        }
    }
}
