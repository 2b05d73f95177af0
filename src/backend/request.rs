//! Building the request a backend wants from the payload: its URL, headers,
//! credentials, and a body in the backend's own encoding. Everything that can
//! be checked is checked at load; here templates are only rendered.

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
}

impl RequestSpec {
    /// Renders the request for one payload.
    pub fn build(&self, templates: &Templates, ctx: &Value) -> Result<BackendRequest, Failure> {
        let render = |id: &TemplateId| {
            templates
                .render(id, ctx)
                .map_err(|e| Failure::new(NoneReason::Template, e))
        };
        let mut url = match &self.url {
            UrlSpec::Fixed(url) => url.clone(),
            UrlSpec::Template(id) => {
                let raw_url = render(id)?;
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
        let mut headers = HeaderMap::new();
        headers.insert(USER_AGENT, UA);
        headers.insert(ACCEPT, self.accept.clone());
        let (content_type, body) = match &self.body {
            BodySpec::Json(spec) => {
                let value = spec.render(templates, ctx)?;
                let body = serde_json::to_vec(&value)
                    .map_err(|e| Failure::new(NoneReason::Template, e))?;
                (Some("application/json"), Bytes::from(body))
            }
            BodySpec::Form(fields) => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                for (name, id) in fields {
                    form.append_pair(name, &render(id)?);
                }
                (
                    Some("application/x-www-form-urlencoded"),
                    Bytes::from(form.finish()),
                )
            }
            BodySpec::Query(fields) => {
                if !fields.is_empty() {
                    let mut rendered = Vec::with_capacity(fields.len());
                    for (name, id) in fields {
                        rendered.push((name, render(id)?));
                    }
                    url.query_pairs_mut()
                        .extend_pairs(rendered.iter().map(|(n, v)| (n.as_ref(), v.as_str())));
                }
                (None, Bytes::new())
            }
            BodySpec::Xml(id) => (Some("text/xml; charset=utf-8"), Bytes::from(render(id)?)),
        };
        if let Some(ct) = content_type {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        for (name, id) in &self.headers {
            let value = render(id)?;
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
        })
    }

    /// Every template the url and body render (headers apart: a header
    /// that holds a credential is marked sensitive and stripped on its own).
    pub fn url_and_body_templates(&self) -> Vec<&TemplateId> {
        fn json<'a>(spec: &'a JsonSpec, out: &mut Vec<&'a TemplateId>) {
            match spec {
                JsonSpec::Context | JsonSpec::Literal(_) => {}
                JsonSpec::Text(id) | JsonSpec::Native(id) => out.push(id),
                JsonSpec::Object(fields) => fields.iter().for_each(|(_, s)| json(s, out)),
                JsonSpec::Array(items) => items.iter().for_each(|s| json(s, out)),
            }
        }
        let mut out = Vec::new();
        if let UrlSpec::Template(id) = &self.url {
            out.push(id);
        }
        match &self.body {
            BodySpec::Json(spec) => json(spec, &mut out),
            BodySpec::Form(fields) | BodySpec::Query(fields) => {
                out.extend(fields.iter().map(|(_, id)| id));
            }
            BodySpec::Xml(id) => out.push(id),
        }
        out
    }
}

impl JsonSpec {
    fn render(&self, templates: &Templates, ctx: &Value) -> Result<serde_json::Value, Failure> {
        let failed = |e: minijinja::Error| Failure::new(NoneReason::Template, e);
        Ok(match self {
            JsonSpec::Context => {
                serde_json::to_value(ctx).map_err(|e| Failure::new(NoneReason::Template, e))?
            }
            JsonSpec::Literal(v) => v.clone(),
            JsonSpec::Text(id) => {
                serde_json::Value::String(templates.render(id, ctx).map_err(failed)?)
            }
            JsonSpec::Native(id) => templates.eval_json(id, ctx).map_err(failed)?,
            JsonSpec::Object(fields) => {
                let mut map = serde_json::Map::with_capacity(fields.len());
                for (name, spec) in fields {
                    map.insert(name.to_string(), spec.render(templates, ctx)?);
                }
                serde_json::Value::Object(map)
            }
            JsonSpec::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|spec| spec.render(templates, ctx))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}
