//! Templates and `when` conditions, compiled once at load into one minijinja
//! environment; the hot path only looks them up by handle and renders.
//!
//! Escaping follows where the output goes, chosen per template at compile
//! time: values placed in a URL are percent-encoded, values placed in XML are
//! XML-escaped, plain text is left alone. A config author writes
//! `?phone={{ caller }}` and cannot forget the encoding.
//!
//! Most templates in real configs are one variable (`{{ caller }}`,
//! `{{ queue.name }}`) and most conditions one flag (`found`). Those are
//! recognized at compile time and answered by looking the path up, without
//! starting the template engine (a render costs an order of magnitude more
//! than the look-up); anything the look-up cannot answer exactly as
//! the engine would (a name not in the context, a list or a map to print)
//! still goes to the engine.

mod filters;
mod phone;
mod secret;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, Output, State, UndefinedBehavior};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub use crate::phone::region as phone_region;
pub use phonenumber::country::Id as Region;

/// Bounds the work one render may do, so no template can spin on hostile data.
const RENDER_FUEL: u64 = 100_000;

/// What `encodeURIComponent` leaves alone; everything else is percent-encoded.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// How values are escaped when printed into a template's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Plain text (titles, header values).
    None,
    /// A URL or a URL component: values are percent-encoded.
    Url,
    /// XML or SOAP: values are XML-escaped.
    Xml,
}

impl Escape {
    fn suffix(self) -> &'static str {
        match self {
            Escape::None => "#text",
            Escape::Url => "#url",
            Escape::Xml => "#xml",
        }
    }
}

/// A compiled template, rendered with [`Templates::render`].
#[derive(Debug, Clone)]
pub struct TemplateId {
    name: Box<str>,
    escape: Escape,
    path: Option<VarPath>,
    sensitive: bool,
}

impl TemplateId {
    /// The config key it was compiled from (`backends.crm.url`).
    pub fn key(&self) -> &str {
        let name = self.name.as_ref();
        name.rsplit_once('#').map_or(name, |(key, _)| key)
    }

    /// Whether it reads a `secret(...)`: what it renders is never shown.
    pub fn is_sensitive(&self) -> bool {
        self.sensitive
    }

    /// Marks it sensitive (it renders a credential, e.g. a bearer token).
    pub fn into_sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }
}

/// A compiled `when` condition, tested with [`Templates::test`].
#[derive(Debug, Clone)]
pub struct ConditionId {
    name: Box<str>,
    path: Option<VarPath>,
}

/// A template or condition that is one variable path such as `queue.name`.
#[derive(Debug, Clone)]
struct VarPath(Box<[Box<str>]>);

impl VarPath {
    /// `a.b.c` (identifiers only, not a literal) or nothing.
    fn parse(expr: &str) -> Option<Self> {
        let expr = expr.trim();
        let segments: Vec<Box<str>> = expr.split('.').map(Box::from).collect();
        let ident = |s: &str| {
            let mut chars = s.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let literal = matches!(expr, "true" | "false" | "none" | "True" | "False" | "None");
        (!literal && segments.iter().all(|s| ident(s))).then(|| Self(segments.into()))
    }

    /// `{{ a.b }}` as a whole template (no text, not even blanks, around it).
    fn of_template(source: &str) -> Option<Self> {
        if source.trim() != source {
            return None;
        }
        single_expression(source).and_then(Self::parse)
    }

    /// The value at this path as the engine would see it, or `None` when
    /// only the engine can tell (the first name is not in the context and
    /// may be a global; a step goes through something other than a map).
    fn lookup(&self, ctx: &Value) -> Option<Value> {
        let (first, rest) = self.0.split_first()?;
        let mut value = ctx.get_attr(first).ok()?;
        if value.is_undefined() {
            return None;
        }
        for segment in rest {
            if value.is_undefined() {
                return Some(value);
            }
            if value.kind() != ValueKind::Map {
                return None;
            }
            value = value.get_attr(segment).ok()?;
        }
        Some(value)
    }
}

/// The kinds of names a template calls, for [`Templates::knows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Callable {
    /// `x | name`.
    Filter,
    /// `x is name`.
    Test,
    /// `x.name()`, on a string, a map or a list.
    Method,
}

/// The set of every template and condition a config uses.
pub struct Templates {
    env: Environment<'static>,
    /// Every `secret("NAME")` the templates use, read when compiled.
    secrets: BTreeMap<String, String>,
    region: Option<Region>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    /// An empty set with the gateway's escaping, undefined and method rules.
    pub fn new() -> Self {
        let mut env = Environment::new();
        // `queue.name` on a call without a queue is undefined, not an error.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        // `caller.startswith("06")` reads as integrators expect from Jinja.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_auto_escape_callback(|name| {
            if name.ends_with(Escape::Url.suffix()) {
                AutoEscape::Custom("url".into())
            } else if name.ends_with(Escape::Xml.suffix()) {
                AutoEscape::Custom("xml".into())
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(format_value);
        env.add_filter("digits", digits);
        filters::register(&mut env);
        let mut templates = Self {
            env,
            secrets: BTreeMap::new(),
            region: None,
        };
        templates.set_phone_region(None);
        templates
    }

    /// An empty set with the same phone region, for templates owned apart
    /// (a backend's login steps).
    pub fn sibling(&self) -> Self {
        let mut t = Self::new();
        t.set_phone_region(self.region);
        t
    }

    /// The region phone filters read numbers without a country code in;
    /// without one such numbers fall back to their digits.
    pub fn set_phone_region(&mut self, region: Option<Region>) {
        self.region = region;
        phone::register(&mut self.env, region);
        if let Some(region) = region {
            crate::phone::warm(region);
        }
    }

    /// Feeds every template's name and source and every secret value to
    /// `state`: two sets that hash alike render alike (a login whose
    /// definition did not change keeps its session across a reload).
    pub fn hash_into(&self, state: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        let mut all: Vec<(String, String)> = self
            .env
            .templates()
            .map(|(n, t)| (n.to_owned(), t.source().to_owned()))
            .collect();
        all.sort_unstable();
        all.hash(state);
        self.secrets.hash(state);
        self.region.map(|r| r.as_ref().to_owned()).hash(state);
    }

    /// The region phone filters read numbers without a country code in
    /// (`[phone] default_region`).
    pub fn region(&self) -> Option<Region> {
        self.region
    }

    /// The secret values templates use, for `simulate` to hide wherever
    /// they appear.
    pub fn secret_values(&self) -> impl Iterator<Item = &str> {
        self.secrets.values().map(String::as_str)
    }

    /// Provides a secret read elsewhere (an OAuth2 client secret), for
    /// templates to use as `secret(name)`.
    pub fn add_secret(&mut self, name: &str, value: String) {
        self.secrets.insert(name.to_owned(), value);
        self.register_secrets();
    }

    fn register_secrets(&mut self) {
        let secrets = Arc::new(self.secrets.clone());
        self.env.add_function("secret", move |name: &str| {
            secrets.get(name).cloned().ok_or_else(|| {
                Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("secret({name:?}) was not read at load"),
                )
            })
        });
    }

    /// Reads the secrets `source` names; `true` when it names any.
    fn read_secrets(&mut self, source: &str) -> Result<bool, Error> {
        let invalid = |msg: String| Error::new(minijinja::ErrorKind::InvalidOperation, msg);
        let names = secret::names(source).map_err(invalid)?;
        let mut added = false;
        for name in &names {
            if !self.secrets.contains_key(name) {
                let value = secret::read(name).map_err(invalid)?;
                self.secrets.insert(name.clone(), value);
                added = true;
            }
        }
        if added {
            self.register_secrets();
        }
        Ok(!names.is_empty())
    }

    /// Compiles `source` under `key` (the config key path, which error
    /// messages show) with the escaping its output needs.
    pub fn add(&mut self, key: &str, source: &str, escape: Escape) -> Result<TemplateId, Error> {
        let name = format!("{key}{}", escape.suffix());
        self.env
            .add_template_owned(name.clone(), source.to_owned())?;
        let sensitive = self.read_secrets(source)?;
        Ok(TemplateId {
            name: name.into(),
            escape,
            path: VarPath::of_template(source),
            sensitive,
        })
    }

    /// Compiles a boolean expression such as `queue.name == "trucks"`.
    pub fn add_condition(&mut self, key: &str, expr: &str) -> Result<ConditionId, Error> {
        // Compiling it alone first rejects anything that is not one expression.
        self.env.compile_expression(expr)?;
        self.read_secrets(expr)?;
        let name = format!("{key}#when");
        self.env
            .add_template_owned(name.clone(), format!("{{% if {expr} %}}1{{% endif %}}"))?;
        Ok(ConditionId {
            name: name.into(),
            path: VarPath::parse(expr),
        })
    }

    /// Compiles an expression whose value is kept as JSON (`{{ user.userId }}`
    /// gives the number 42, not the string "42"); see [`Templates::eval_json`].
    pub fn add_json_expression(&mut self, key: &str, expr: &str) -> Result<TemplateId, Error> {
        self.env.compile_expression(expr)?;
        let name = format!("{key}#json");
        self.env
            .add_template_owned(name.clone(), format!("{{{{ ({expr}) | tojson }}}}"))?;
        let sensitive = self.read_secrets(expr)?;
        Ok(TemplateId {
            name: name.into(),
            escape: Escape::None,
            path: VarPath::parse(expr),
            sensitive,
        })
    }

    /// Evaluates an expression added with [`Templates::add_json_expression`];
    /// undefined becomes `null`.
    pub fn eval_json(&self, id: &TemplateId, ctx: &Value) -> Result<serde_json::Value, Error> {
        if let Some(value) = id.path.as_ref().and_then(|p| p.lookup(ctx)) {
            match value.kind() {
                ValueKind::Undefined | ValueKind::None => return Ok(serde_json::Value::Null),
                ValueKind::Bool | ValueKind::Number | ValueKind::String => {
                    if let Ok(json) = serde_json::to_value(&value) {
                        return Ok(json);
                    }
                }
                _ => {}
            }
        }
        let text = self.env.get_template(&id.name)?.render(ctx)?;
        serde_json::from_str(&text).map_err(|e| {
            Error::new(
                minijinja::ErrorKind::BadSerialization,
                format!("value is not JSON: {e}"),
            )
        })
    }

    /// Renders a template against a context.
    pub fn render(&self, id: &TemplateId, ctx: &Value) -> Result<String, Error> {
        if let Some(text) = id
            .path
            .as_ref()
            .and_then(|p| p.lookup(ctx))
            .and_then(|v| print(&v, id.escape))
        {
            return Ok(text);
        }
        self.env.get_template(&id.name)?.render(ctx)
    }

    /// Evaluates a condition against a context.
    pub fn test(&self, id: &ConditionId, ctx: &Value) -> Result<bool, Error> {
        if let Some(value) = id.path.as_ref().and_then(|p| p.lookup(ctx)) {
            return Ok(value.is_true());
        }
        Ok(self.env.get_template(&id.name)?.render(ctx)? == "1")
    }

    /// Whether a filter, test or method of this name exists. Asked by
    /// trying it (minijinja resolves them only when a template runs), so
    /// the answer follows the engine's version. `name` is an identifier.
    pub fn knows(&self, kind: Callable, name: &str) -> bool {
        use minijinja::ErrorKind::{UnknownFilter, UnknownMethod, UnknownTest};
        let tries: &[(String, minijinja::ErrorKind)] = &match kind {
            Callable::Filter => vec![(format!("{{{{ none | {name} }}}}"), UnknownFilter)],
            Callable::Test => vec![(format!("{{{{ none is {name} }}}}"), UnknownTest)],
            Callable::Method => ["''", "{}", "[]"]
                .iter()
                .map(|on| (format!("{{{{ {on}.{name}() }}}}"), UnknownMethod))
                .collect(),
        };
        tries
            .iter()
            .any(|(source, unknown)| match self.env.render_str(source, ()) {
                Ok(_) => true,
                Err(e) => e.kind() != *unknown,
            })
    }

    /// Top-level variables a template reads, to warn about likely typos at load.
    pub fn variables(&self, id: &TemplateId) -> HashSet<String> {
        self.undeclared(&id.name)
    }

    /// Top-level variables a condition reads.
    pub fn condition_variables(&self, id: &ConditionId) -> HashSet<String> {
        self.undeclared(&id.name)
    }

    fn undeclared(&self, name: &str) -> HashSet<String> {
        self.env
            .get_template(name)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
    }
}

/// Whether a string is exactly one `{{ expression }}` and nothing else.
pub fn single_expression(source: &str) -> Option<&str> {
    let inner = source.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then(|| inner.trim())
}

/// `text` percent-encoded as a url template prints a value.
pub fn url_component(text: &str) -> String {
    utf8_percent_encode(text, URL_COMPONENT).to_string()
}

/// What [`format_value`] prints for a scalar, for templates answered without
/// the engine; `None` for values only the engine prints (lists, maps, ...).
fn print(value: &Value, escape: Escape) -> Option<String> {
    let text = match value.kind() {
        ValueKind::Undefined | ValueKind::None => return Some(String::new()),
        ValueKind::String if !value.is_safe() => Cow::Borrowed(value.as_str()?),
        ValueKind::Number | ValueKind::Bool => Cow::Owned(value.to_string()),
        _ => return None,
    };
    Some(match escape {
        Escape::None => text.into_owned(),
        Escape::Url => utf8_percent_encode(&text, URL_COMPONENT).to_string(),
        Escape::Xml => {
            let mut out = String::with_capacity(text.len());
            write_xml_escaped(&mut out, &text).ok()?;
            out
        }
    })
}

/// Prints a value with the escaping the template's output needs; `none` and
/// undefined print as nothing in every mode.
fn format_value(
    out: &mut Output<'_>,
    state: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(());
    }
    let escape = match state.auto_escape() {
        AutoEscape::Custom(name) if !value.is_safe() => name.clone(),
        _ => return minijinja::escape_formatter(out, state, value),
    };
    let text = match value.as_str() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(value.to_string()),
    };
    match escape.as_ref() {
        "url" => write!(out, "{}", utf8_percent_encode(&text, URL_COMPONENT))?,
        _ => write_xml_escaped(out, &text)?,
    }
    Ok(())
}

/// Escapes the five XML special characters and removes the characters XML
/// 1.0 forbids in a document (C0 controls other than tab, LF and CR;
/// U+FFFE, U+FFFF): no escape can carry them, and a CRM's parser refuses
/// the whole body for one of them. Other text is copied as is.
fn write_xml_escaped(out: &mut impl std::fmt::Write, text: &str) -> std::fmt::Result {
    let mut rest = text;
    while let Some(i) =
        rest.find(|c: char| matches!(c, '&' | '<' | '>' | '"' | '\'') || !xml_char(c))
    {
        out.write_str(&rest[..i])?;
        let Some(c) = rest[i..].chars().next() else {
            break;
        };
        out.write_str(match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&apos;",
            _ => "",
        })?;
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// XML 1.0's `Char` production (surrogates cannot be in a `str`).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The first segment of a rendered URL's path that a URL parser would read
/// as `.` or `..`, if any. Values are percent-encoded, but a dot is left as
/// it is (as `encodeURIComponent` leaves it) and `%2E` is a dot to URL
/// parsers too, so a payload value `..` in `/customers/{{ caller }}/card`
/// would move the request to `/card`, with the backend's credentials. Such a
/// URL must fail its call instead; segments are decoded until nothing is
/// left to decode, for a server that decodes twice. A backslash separates
/// segments as `/` does in http(s) URLs. A reference without a scheme (a
/// reply url resolved against `public_base`) is all path.
pub fn dot_segment(url: &str) -> Option<&str> {
    let url = url.trim();
    let path = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            &after[after.find(['/', '\\', '?', '#']).unwrap_or(after.len())..]
        }
        None => url,
    };
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    path.split(['/', '\\']).find(|segment| {
        let mut text = Cow::Borrowed(*segment);
        // Each round removes at least one `%`; a few rounds cover any
        // server that decodes more than once.
        for _ in 0..4 {
            let decoded = percent_encoding::percent_decode_str(&text)
                .decode_utf8_lossy()
                .into_owned();
            if decoded == text {
                break;
            }
            text = Cow::Owned(decoded);
        }
        text == "." || text == ".."
    })
}

/// `{{ caller | digits }}`: keeps only the digits of a phone number, as most
/// CRM search APIs want (`+33 6 12-34` → `3361234`).
fn digits(value: &str) -> String {
    crate::phone::ascii_digits(value)
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn render(source: &str, escape: Escape, ctx: Value) -> String {
        let mut t = Templates::new();
        let id = t.add("k", source, escape).unwrap();
        t.render(&id, &ctx).unwrap()
    }

    #[test]
    fn url_templates_percent_encode_values_but_not_the_template() {
        let out = render(
            "https://crm/s?q={{ q }}&n={{ n }}",
            Escape::Url,
            context! { q => "a b&c=d/é#", n => 42 },
        );
        assert_eq!(out, "https://crm/s?q=a%20b%26c%3Dd%2F%C3%A9%23&n=42");
    }

    #[test]
    fn safe_values_are_not_encoded_twice() {
        assert_eq!(
            render("{{ q | safe }}", Escape::Url, context! { q => "a/b" }),
            "a/b"
        );
    }

    #[test]
    fn xml_templates_escape_markup() {
        let out = render(
            "<n>{{ v }}</n>",
            Escape::Xml,
            context! { v => "<a href=\"x\">&'" },
        );
        assert_eq!(out, "<n>&lt;a href=&quot;x&quot;&gt;&amp;&apos;</n>");
    }

    #[test]
    fn xml_templates_remove_what_xml_forbids() {
        let value = "a\u{0}b\u{1}\u{8}\u{B}\u{C}\u{1F}c\t\n\rd\u{FFFE}\u{FFFF}e\u{7F}\u{85}é😀<";
        let want = "<n>abc\t\n\rde\u{7F}\u{85}é😀&lt;</n>";
        assert_eq!(
            render("<n>{{ v }}</n>", Escape::Xml, context! { v => value }),
            want
        );
        // The engine's path (more than one variable) escapes the same way.
        assert_eq!(
            render(
                "<n>{{ v }}{{ w }}</n>",
                Escape::Xml,
                context! { v => value, w => "" }
            ),
            want
        );
    }

    #[test]
    fn text_templates_leave_values_alone_and_print_missing_as_empty() {
        let out = render(
            "{{ a }}|{{ queue.name }}|{{ n }}",
            Escape::None,
            context! { a => "<x>", n => () },
        );
        assert_eq!(out, "<x>||");
    }

    #[test]
    fn conditions_are_truthiness_of_one_expression() {
        let mut t = Templates::new();
        let c = t
            .add_condition(
                "w",
                r#"caller.startswith("06") and queue.name is not defined"#,
            )
            .unwrap();
        assert!(t.test(&c, &context! { caller => "0612" }).unwrap());
        assert!(!t.test(&c, &context! { caller => "0298" }).unwrap());
        assert!(t.add_condition("w2", "a %} x {% if b").is_err());
        assert!(t.add_condition("w3", "a ==").is_err());
    }

    #[test]
    fn json_expressions_keep_types() {
        let mut t = Templates::new();
        let ctx = context! { n => 42, s => "a\"<b>", m => context!{ k => [1, 2] } };
        for (expr, want) in [
            ("n", serde_json::json!(42)),
            ("s", serde_json::json!("a\"<b>")),
            ("m", serde_json::json!({"k": [1, 2]})),
            ("missing.x", serde_json::Value::Null),
            ("n > 1", serde_json::json!(true)),
        ] {
            let id = t.add_json_expression(expr, expr).unwrap();
            assert_eq!(t.eval_json(&id, &ctx).unwrap(), want, "{expr}");
        }
    }

    #[test]
    fn single_expressions_are_recognized() {
        assert_eq!(single_expression("{{ user.userId }}"), Some("user.userId"));
        assert_eq!(single_expression(" {{- x -}} "), Some("x"));
        assert_eq!(single_expression("id-{{ x }}"), None);
        assert_eq!(single_expression("{{ a }}{{ b }}"), None);
        assert_eq!(single_expression("plain"), None);
    }

    #[test]
    fn plain_paths_answer_as_the_engine_does() {
        let ctx = context! {
            s => "a b&<é>'\"", n => 42, f => 1.5, big => 12345678901234_i64, t => true, z => false,
            e => "", nothing => (), m => context! { k => "v", deep => context! { x => 7 } },
            list => vec![1, 2],
        };
        let mut t = Templates::new();
        let mut checked = 0;
        for expr in [
            "s",
            "n",
            "f",
            "big",
            "t",
            "z",
            "e",
            "nothing",
            "m.k",
            "m.deep.x",
            "m.missing",
            "m.missing.more",
            "missing",
            "missing.x",
            "s.x",
            "list",
            "m",
            "range",
            "m.k.x",
        ] {
            for escape in [Escape::None, Escape::Url, Escape::Xml] {
                for source in [format!("{{{{ {expr} }}}}"), format!("{{{{- {expr} -}}}}")] {
                    let key = format!("k{checked}");
                    let id = t.add(&key, &source, escape).unwrap();
                    assert!(id.path.is_some(), "{source} is a plain path");
                    let engine = t.env.get_template(&id.name).unwrap().render(&ctx);
                    let fast = t.render(&id, &ctx);
                    assert_eq!(fast.ok(), engine.ok(), "{source} {escape:?}");
                    checked += 1;
                }
            }
            let c = t.add_condition(&format!("c{checked}"), expr).unwrap();
            let engine = t
                .env
                .get_template(&c.name)
                .unwrap()
                .render(&ctx)
                .map(|o| o == "1");
            assert_eq!(t.test(&c, &ctx).ok(), engine.ok(), "when {expr}");
            let j = t.add_json_expression(&format!("j{checked}"), expr).unwrap();
            let text = t.env.get_template(&j.name).unwrap().render(&ctx).unwrap();
            let engine: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(t.eval_json(&j, &ctx).unwrap(), engine, "json {expr}");
        }
        for not_a_path in [
            "{{ s }} ",
            "x{{ s }}",
            "{{ true }}",
            "{{ s|upper }}",
            "{{ a.1 }}",
        ] {
            assert!(
                t.add("p", not_a_path, Escape::None).unwrap().path.is_none(),
                "{not_a_path}"
            );
        }
    }

    #[test]
    fn dot_segments_are_found_in_every_spelling() {
        for (value, dot) in [
            ("..", true),
            (".", true),
            ("%2e", true),
            ("%2E%2e", true),
            (".%2E", true),
            ("%2e.", true),
            ("%252e%252E", true),
            ("...", false),
            ("a..b", false),
            (".x", false),
            ("0612", false),
        ] {
            let mut t = Templates::new();
            let id = t
                .add(
                    "u",
                    "https://crm/api/customers/{{ caller }}/card?q={{ caller }}",
                    Escape::Url,
                )
                .unwrap();
            let url = t.render(&id, &context! { caller => value }).unwrap();
            assert_eq!(dot_segment(&url).is_some(), dot, "{value}: {url}");
        }
        assert_eq!(dot_segment("http://crm/a\\..\\b"), Some(".."));
        assert_eq!(dot_segment("http://crm/a/b?x=/../#/../"), None);
        assert_eq!(dot_segment("http://crm"), None);
        assert_eq!(dot_segment("http://crm/."), Some("."));
        assert_eq!(dot_segment("../cards/1"), Some(".."));
        assert_eq!(dot_segment("cards/1?a=.."), None);
    }

    #[test]
    fn digits_filter_strips_formatting() {
        assert_eq!(
            render(
                "{{ p | digits }}",
                Escape::None,
                context! { p => "+33 6 12-34" }
            ),
            "3361234"
        );
    }

    #[test]
    fn quoting_filters_keep_hostile_callers_inside_their_string() {
        let hostile = "x' OR '1'='1\\' -- %_";
        let vtql = render(
            "SELECT id FROM Contacts WHERE phone='{{ caller | sql_quote }}';",
            Escape::None,
            context! { caller => hostile },
        );
        assert_eq!(
            vtql,
            "SELECT id FROM Contacts WHERE phone='x'' OR ''1''=''1\\\\'' -- %_';"
        );
        let like = render(
            "(t.phone:like:'%{{ caller | sql_like }}%')",
            Escape::None,
            context! { caller => "1%_'" },
        );
        // Escaped for LIKE (`\%`), then for the string (`\\%`).
        assert_eq!(like, "(t.phone:like:'%1\\\\%\\\\_''%')");
        let odata = render(
            "$filter=telephone1 eq '{{ caller | odata_quote }}'",
            Escape::Url,
            context! { caller => "a' or 1 eq 1" },
        );
        assert_eq!(odata, "$filter=telephone1 eq 'a''%20or%201%20eq%201'");
        let sosl = render(
            "FIND {{ '{' }}{{ caller | sosl_escape }}{{ '}' }}",
            Escape::None,
            context! { caller => "+33} RETURNING User(Id) {x" },
        );
        assert_eq!(sosl, "FIND {\\+33\\} RETURNING User\\(Id\\) \\{x}");
    }

    #[test]
    fn ids_split_and_digests_compose() {
        assert_eq!(
            render(
                "{{ id | split('x') | last }}",
                Escape::None,
                context! { id => "12x345" }
            ),
            "345"
        );
        assert_eq!(
            render(
                "{{ md5(a ~ b) }}|{{ 'GET /Contact' | hmac_sha256('k') | length }}",
                Escape::None,
                context! { a => "ab", b => "c" }
            ),
            "900150983cd24fb0d6963f7d28e17f72|64"
        );
    }

    #[test]
    fn secrets_are_read_at_compile_time_and_mark_the_template() {
        let name = "TPGW_TEST_SECRET_7F3A";
        // No other test uses this variable.
        std::env::set_var(name, "s3cret");
        let mut t = Templates::new();
        let id = t
            .add(
                "k",
                &format!("{{{{ md5('tok' ~ secret('{name}')) }}}}"),
                Escape::None,
            )
            .unwrap();
        assert!(id.is_sensitive());
        assert_eq!(t.render(&id, &context! {}).unwrap(), digest_of("toks3cret"));
        assert_eq!(t.secret_values().collect::<Vec<_>>(), ["s3cret"]);
        let plain = t.add("p", "{{ caller }}", Escape::None).unwrap();
        assert!(!plain.is_sensitive());
        let err = t
            .add(
                "m",
                "{{ secret('TPGW_TEST_SECRET_MISSING_9') }}",
                Escape::None,
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("TPGW_TEST_SECRET_MISSING_9"),
            "{err}"
        );
        assert!(t.add("v", "{{ secret(caller) }}", Escape::None).is_err());
    }

    fn digest_of(s: &str) -> String {
        render("{{ s | md5 }}", Escape::None, context! { s => s })
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let mut t = Templates::new();
        let id = t
            .add(
                "k",
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
                Escape::None,
            )
            .unwrap();
        assert!(t.render(&id, &context! {}).is_err());
    }
}
