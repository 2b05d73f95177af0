//! Every template and condition, compiled and then looked at the way a call
//! would use it, so `check` (and every reload) catches at load what would
//! otherwise fail per call: a misspelt filter, test or method makes every
//! call that reaches it fail (a `when` that fails skips its route silently).
//!
//! Two looks, because neither sees everything:
//! - the names the template uses ([`scan`]): unknown filters, tests and
//!   methods are errors, wherever they are, even in a branch the samples do
//!   not take; so is a variable that is neither a payload field, a value the
//!   template may read where it runs, nor set by the template itself (a
//!   typo renders empty, and a search for nothing finds every record); a
//!   path that leaves the documented payload (`queue.nam`, anything under
//!   `userData`) is a warning, since a newer XucMgt may send fields we do
//!   not know yet. Each is placed at its column, with a "did you mean".
//! - a render against each sample payload (direct call, queue call, call
//!   with the agent's token) through the same engine and context a call
//!   uses: a failure there (a method on the wrong type, a missing argument)
//!   is a warning naming the sample, because real calls may carry data the
//!   samples lack.
//!
//! What a template may read depends on where it runs ([`Sees`]): a call's
//! templates read the payload, and `login.*` only in a backend that logs
//! in; a login step runs once for all calls, so it reads only `login.*`
//! from the steps before it and secrets, and is rendered against that.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{LazyLock, Mutex};

use minijinja::Value;

use super::diag::{suggest, Diagnostics, Level};
use super::scan::{scan, Use};
use crate::contract::{parse_payload, Field, PAYLOAD_FIELDS, SAMPLE_PAYLOADS};
use crate::template::{Callable, ConditionId, Escape, TemplateId, Templates};

/// Template globals that are not payload fields: the engine's, the
/// session of a backend that logs in (`login.*`, whatever its steps
/// extract), and the gateway's functions.
const TEMPLATE_GLOBALS: [&str; 11] = [
    "range",
    "dict",
    "namespace",
    "debug",
    "loop",
    "login",
    "secret",
    "md5",
    "sha256",
    "hmac_sha256",
    "base64",
];

/// Names offered in "did you mean" (whether a name exists is asked of the
/// engine itself, see [`Templates::knows`]).
const FILTERS: [&str; 66] = [
    "significant",
    "phone_like",
    "safe",
    "escape",
    "lower",
    "upper",
    "title",
    "capitalize",
    "replace",
    "length",
    "count",
    "dictsort",
    "items",
    "reverse",
    "trim",
    "join",
    "split",
    "lines",
    "default",
    "round",
    "abs",
    "int",
    "float",
    "attr",
    "first",
    "last",
    "min",
    "max",
    "sort",
    "list",
    "string",
    "bool",
    "batch",
    "slice",
    "sum",
    "indent",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "map",
    "groupby",
    "unique",
    "chain",
    "zip",
    "pprint",
    "format",
    "tojson",
    "urlencode",
    "digits",
    "e",
    "d",
    "md5",
    "sha256",
    "hmac_sha256",
    "base64",
    "sql_quote",
    "sql_like",
    "odata_quote",
    "sosl_escape",
    "backslash_escape",
    "html_unescape",
    "e164",
    "international",
    "national",
    "national_digits",
];
/// The keyword arguments of the gateway's own filters and functions; a
/// misspelt one fails every call that reaches it.
const KEYWORD_ARGS: [(&str, &[&str]); 5] = [
    ("significant", &["last"]),
    ("phone_like", &["last", "wildcard"]),
    ("md5", &["binary"]),
    ("sha256", &["binary"]),
    ("hmac_sha256", &["binary"]),
];
const TESTS: [&str; 30] = [
    "undefined",
    "defined",
    "none",
    "safe",
    "escaped",
    "boolean",
    "odd",
    "even",
    "divisibleby",
    "number",
    "integer",
    "float",
    "string",
    "sequence",
    "iterable",
    "mapping",
    "startingwith",
    "endingwith",
    "lower",
    "upper",
    "sameas",
    "eq",
    "equalto",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "in",
    "true",
];
const METHODS: [&str; 29] = [
    "upper",
    "lower",
    "islower",
    "isupper",
    "isspace",
    "isdigit",
    "isnumeric",
    "isalnum",
    "isalpha",
    "isascii",
    "strip",
    "lstrip",
    "rstrip",
    "replace",
    "title",
    "split",
    "splitlines",
    "capitalize",
    "count",
    "find",
    "format",
    "rfind",
    "startswith",
    "endswith",
    "join",
    "keys",
    "values",
    "items",
    "get",
];

/// The sample payloads as templates see them: (what it is, context).
pub(super) static SAMPLES: LazyLock<Vec<(&'static str, Value)>> = LazyLock::new(|| {
    SAMPLE_PAYLOADS
        .iter()
        .filter_map(|(what, json)| {
            let payload = parse_payload(json.as_bytes()).ok()?;
            let ctx = if payload.token().is_some() {
                payload.context_with_token()
            } else {
                payload.context()
            };
            Some((*what, ctx))
        })
        .collect()
});

/// Names already asked about: every config's engine has the same filters,
/// tests and methods, and asking costs a template compile.
static KNOWN: LazyLock<Mutex<HashMap<(Callable, String), bool>>> = LazyLock::new(Mutex::default);

fn knows(templates: &Templates, kind: Callable, name: &str) -> bool {
    let key = (kind, name.to_owned());
    if let Some(known) = KNOWN.lock().ok().and_then(|k| k.get(&key).copied()) {
        return known;
    }
    let known = templates.knows(kind, name);
    if let Ok(mut cache) = KNOWN.lock() {
        cache.insert(key, known);
    }
    known
}

/// What is being checked: the config key, the names besides the payload's
/// that its templates may use (a reply's extracted values), what context
/// it runs in, and diagnostics.
pub(super) struct At<'k, 'd, 'a> {
    pub(super) key: &'k str,
    pub(super) extra: &'k [&'k str],
    pub(super) sees: Sees<'k>,
    pub(super) diags: &'d mut Diagnostics<'a>,
}

/// The context a template gets at run time.
#[derive(Debug, Clone, Copy)]
pub(super) enum Sees<'k> {
    /// A call's: the payload, and `login.*` when `login` (its backend logs
    /// in; elsewhere `login` is always empty).
    Call {
        /// Whether `login.*` holds a session here.
        login: bool,
    },
    /// A login step's: `login.*` with the values the earlier steps extract
    /// (these names), and `secret(...)`; no payload, since one login serves
    /// every call.
    LoginStep(&'k [&'k str]),
    /// A login step's `ok_when`: only what that step extracts (`extra`).
    StepReply,
    /// A directory sync's page request: `page.*`, `since`, `login.*` (when
    /// `login`) and `secret(...)`; no payload, since a sync serves every call.
    Sync {
        /// Whether `login.*` holds a session here.
        login: bool,
    },
}

/// What a directory sync's templates read besides `login` and secrets.
const SYNC_NAMES: [&str; 2] = ["page", "since"];

/// What a template of a backend without a session reads from `login`.
const EMPTY_LOGIN: &str = "login.* is always empty here: only the templates of a backend with [backends.NAME.login], login = \"OTHER\" (a shared login) or auth.type = \"oauth2\" see a session";

/// Compiles a template and checks it.
pub(super) fn template(
    templates: &mut Templates,
    at: At<'_, '_, '_>,
    source: &str,
    escape: Escape,
) -> Option<TemplateId> {
    let compiled = templates.add(at.key, source, escape);
    let text = Text {
        source,
        expression: false,
        offset: 0,
    };
    let look = Look {
        vars: Templates::variables,
        render: Some(&|t, id, ctx| t.render(id, ctx).map(drop)),
    };
    checked(templates, at, compiled, text, look)
}

/// Compiles a `when`-style condition and checks it.
pub(super) fn condition(
    templates: &mut Templates,
    at: At<'_, '_, '_>,
    expr: &str,
) -> Option<ConditionId> {
    let compiled = templates.add_condition(at.key, expr);
    let text = Text {
        source: expr,
        expression: true,
        offset: 0,
    };
    let look = Look {
        vars: Templates::condition_variables,
        render: Some(&|t, id, ctx| t.test(id, ctx).map(drop)),
    };
    checked(templates, at, compiled, text, look)
}

/// Compiles a condition over what a CRM replied (`relogin_when`: the
/// reply's own fields, whatever they are named) and checks its filters,
/// tests and methods; its variables are not the payload's, so they are not
/// judged, nor is it rendered against the sample payloads.
pub(super) fn reply_condition(
    templates: &mut Templates,
    at: At<'_, '_, '_>,
    expr: &str,
) -> Option<ConditionId> {
    let compiled = templates.add_condition(at.key, expr);
    let text = Text {
        source: expr,
        expression: true,
        offset: 0,
    };
    let look = Look {
        vars: |_, _| HashSet::new(),
        render: None,
    };
    checked(templates, at, compiled, text, look)
}

/// Compiles `expr`, the expression of the one-expression template `source`
/// (a JSON body value that keeps its type), and checks it.
pub(super) fn json_expression(
    templates: &mut Templates,
    at: At<'_, '_, '_>,
    source: &str,
    expr: &str,
) -> Option<TemplateId> {
    // `expr` is a slice of `source`: where it starts places errors.
    let offset = (expr.as_ptr() as usize).saturating_sub(source.as_ptr() as usize);
    let compiled = templates.add_json_expression(at.key, expr);
    let text = Text {
        source: expr,
        expression: true,
        offset,
    };
    let look = Look {
        vars: Templates::variables,
        render: Some(&|t, id, ctx| t.eval_json(id, ctx).map(drop)),
    };
    checked(templates, at, compiled, text, look)
}

/// How to look at a compiled template or condition: the variables whose
/// names are judged, and how to render it against the samples (`None`:
/// not rendered).
struct Look<'r, I> {
    vars: fn(&Templates, &I) -> HashSet<String>,
    render: Option<Render<'r, I>>,
}

/// Renders a compiled template or condition against a context.
type Render<'r, I> = &'r dyn Fn(&Templates, &I, &Value) -> Result<(), minijinja::Error>;

/// The checks every kind of template gets once compiled: a syntax error
/// placed in the value, else its names judged and, if they are sound, a
/// render against the samples.
fn checked<I>(
    templates: &Templates,
    mut at: At<'_, '_, '_>,
    compiled: Result<I, minijinja::Error>,
    text: Text<'_>,
    look: Look<'_, I>,
) -> Option<I> {
    match compiled {
        Ok(id) => {
            let vars = (look.vars)(templates, &id);
            if names(templates, &mut at, text, &vars) {
                if let Some(render) = look.render {
                    renders(&mut at, |ctx| render(templates, &id, ctx));
                }
            }
            Some(id)
        }
        Err(err) => {
            syntax(at.diags, at.key, text.offset, &err);
            None
        }
    }
}

/// A syntax error, placed at its column inside the value when known.
fn syntax(diags: &mut Diagnostics<'_>, key: &str, offset: usize, err: &minijinja::Error) {
    let mut message = in_words(err);
    match err.range() {
        Some(r) => diags.in_value(Level::Error, key, offset + r.start..offset + r.end, message),
        None => {
            if let Some(line) = err.line().filter(|l| *l > 1) {
                message.push_str(&format!(" (template line {line})"));
            }
            diags.error(key, message);
        }
    }
}

/// Where a template's text sits: its source, whether it is one bare
/// expression, and its byte offset inside the TOML value.
struct Text<'s> {
    source: &'s str,
    expression: bool,
    offset: usize,
}

/// Judges every name a template uses; `false` when one is an error.
fn names(
    templates: &Templates,
    at: &mut At<'_, '_, '_>,
    text: Text<'_>,
    vars: &HashSet<String>,
) -> bool {
    let (key, extra, sees, offset) = (at.key, at.extra, at.sees, text.offset);
    let diags = &mut *at.diags;
    let errors = diags.errors.len();
    let mut said = HashSet::new();
    let place = |diags: &mut Diagnostics<'_>, level, range: &std::ops::Range<usize>, msg| {
        diags.in_value(level, key, offset + range.start..offset + range.end, msg);
    };
    for u in scan(text.source, text.expression) {
        let (kind, what, list, name, range): (_, _, &[&str], _, _) = match &u {
            Use::Filter(n, r) => (Callable::Filter, "filter", &FILTERS, *n, r),
            Use::Test(n, r) => (Callable::Test, "test", &TESTS, *n, r),
            Use::Method(n, r) => (Callable::Method, "method", &METHODS, *n, r),
            Use::Path(path) => {
                let names = Names { extra, sees, vars };
                path_use(path, &names, &mut said, |level, range, msg| {
                    place(diags, level, range, msg)
                });
                continue;
            }
            Use::Keyword(callee, name, range) => {
                let known = KEYWORD_ARGS.iter().find(|(c, _)| c == callee);
                if let Some((_, args)) = known.filter(|(_, args)| !args.contains(name)) {
                    let msg = format!(
                        "unknown argument {name:?} of {callee}{}",
                        suggest(name, args.iter().copied())
                    );
                    place(diags, Level::Error, range, msg);
                }
                continue;
            }
        };
        if !knows(templates, kind, name) {
            let known = list.iter().copied().filter(|c| knows(templates, kind, c));
            let msg = format!("unknown {what} {name:?}{}", suggest(name, known));
            place(diags, Level::Error, range, msg);
        }
    }
    // Variables the scan could not place (rare), still reported at the key.
    let mut rest: Vec<&String> = vars.iter().filter(|v| !said.contains(v.as_str())).collect();
    rest.sort();
    for var in rest {
        match judge_root(var, extra, sees) {
            Some((Level::Error, msg)) => diags.error(key, msg),
            Some((Level::Warning, msg)) => diags.warn(key, msg),
            None => {}
        }
    }
    diags.errors.len() == errors
}

/// What a template may read besides its locals.
struct Names<'n> {
    extra: &'n [&'n str],
    sees: Sees<'n>,
    /// The variables the template reads that it does not set itself.
    vars: &'n HashSet<String>,
}

/// Judges a variable a template reads, where it runs: `None` when fine.
fn judge_root(var: &str, extra: &[&str], sees: Sees<'_>) -> Option<(Level, String)> {
    if extra.contains(&var) {
        return None;
    }
    let payload = PAYLOAD_FIELDS.iter().any(|(n, _)| *n == var);
    match sees {
        Sees::LoginStep(_) | Sees::StepReply if payload => Some((
            Level::Error,
            format!("a login step runs once for all calls: it cannot read `{var}`"),
        )),
        Sees::LoginStep(_) if var == "login" || TEMPLATE_GLOBALS.contains(&var) => None,
        Sees::StepReply if var != "login" && TEMPLATE_GLOBALS.contains(&var) => None,
        Sees::StepReply => Some((
            Level::Error,
            format!(
                "unknown variable {var:?}: ok_when sees only what this step extracts{}",
                suggest(var, extra.iter().copied())
            ),
        )),
        Sees::LoginStep(_) => Some((
            Level::Error,
            format!(
                "unknown variable {var:?}: a login step sees only login.* (what the steps before it extract) and secret(...){}",
                suggest(var, ["login"].into_iter().chain(extra.iter().copied()))
            ),
        )),
        Sees::Sync { .. } if payload => Some((
            Level::Error,
            format!("a directory sync runs for all calls: it cannot read `{var}`"),
        )),
        Sees::Sync { login: false } if var == "login" => {
            Some((Level::Warning, EMPTY_LOGIN.to_owned()))
        }
        Sees::Sync { .. } if SYNC_NAMES.contains(&var) || TEMPLATE_GLOBALS.contains(&var) => None,
        Sees::Sync { .. } => Some((
            Level::Error,
            format!(
                "unknown variable {var:?}: a directory sync sees page.offset, page.number, page.size, page.cursor, since, login.* and secret(...){}",
                suggest(var, SYNC_NAMES.iter().copied().chain(["login"]))
            ),
        )),
        Sees::Call { login: false } if var == "login" => {
            Some((Level::Warning, EMPTY_LOGIN.to_owned()))
        }
        // A misspelt variable renders empty: a search for nothing, which
        // a CRM answers with every record. Refused, not warned.
        Sees::Call { .. } => unknown_variable(var, extra).map(|m| (Level::Error, m)),
    }
}

/// Judges a path: a variable the template cannot read where it runs, a
/// path that leaves the documented payload, a login value no earlier
/// step extracts.
fn path_use(
    path: &[(&str, std::ops::Range<usize>)],
    names: &Names<'_>,
    said: &mut HashSet<String>,
    mut warn: impl FnMut(Level, &std::ops::Range<usize>, String),
) {
    let Some(((root, root_range), steps)) = path.split_first() else {
        return;
    };
    // Locally set (`{% set %}`, loop variables) or a reply's own value.
    if !names.vars.contains(*root) || names.extra.contains(root) {
        return;
    }
    let first = said.insert((*root).to_owned());
    if let Some((level, msg)) = judge_root(root, names.extra, names.sees) {
        // Said once per template; an error at every place it is read.
        if first || level == Level::Error {
            warn(level, root_range, msg);
        }
        return;
    }
    if let (Sees::LoginStep(earlier), "login", Some((value, range))) =
        (names.sees, *root, steps.first())
    {
        if !earlier.contains(value) {
            let msg = match earlier {
                [] => format!("login.{value} is empty here: no login step runs before this one"),
                _ => format!(
                    "login.{value} is empty here: no earlier login step extracts {value:?}{}",
                    suggest(value, earlier.iter().copied())
                ),
            };
            warn(Level::Warning, range, msg);
        }
        return;
    }
    let Some(field) = PAYLOAD_FIELDS
        .iter()
        .find(|(n, _)| n == root)
        .map(|(_, f)| *f)
    else {
        return;
    };
    let mut shape = field;
    let mut at = (*root).to_owned();
    for (step, range) in steps {
        match shape {
            Field::AnyKeys => return,
            Field::Scalar => {
                warn(
                    Level::Warning,
                    range,
                    format!("{at} is a string or number in the XucMgt payload: it has no field {step:?}"),
                );
                return;
            }
            Field::Object(fields) => {
                if !fields.contains(step) {
                    warn(
                        Level::Warning,
                        range,
                        format!(
                            "unknown field {step:?} of {at}{}: not in the XucMgt contract",
                            suggest(step, fields.iter().copied())
                        ),
                    );
                    return;
                }
                shape = Field::Scalar;
                at = format!("{at}.{step}");
            }
        }
    }
}

/// The warning for a variable that is not a payload field, if it is not.
fn unknown_variable(var: &str, extra: &[&str]) -> Option<String> {
    let payload = PAYLOAD_FIELDS.iter().map(|(n, _)| *n);
    if payload.clone().any(|n| n == var) || TEMPLATE_GLOBALS.contains(&var) || extra.contains(&var)
    {
        return None;
    }
    Some(format!(
        "unknown variable {var:?}{}: not a field of the XucMgt payload",
        suggest(var, payload.chain(extra.iter().copied()))
    ))
}

/// Runs `render` against each sample (a login step: against the login
/// values it gets); the first failure is a warning.
fn renders(
    at: &mut At<'_, '_, '_>,
    mut render: impl FnMut(&Value) -> Result<(), minijinja::Error>,
) {
    let (key, extra, diags) = (at.key, at.extra, &mut *at.diags);
    let earlier = match at.sees {
        Sees::LoginStep(earlier) => Some(earlier),
        Sees::StepReply | Sees::Sync { .. } => Some(&[][..]),
        Sees::Call { .. } => None,
    };
    if let Some(earlier) = earlier {
        let login: BTreeMap<String, Value> = earlier
            .iter()
            .map(|n| ((*n).to_owned(), Value::from("")))
            .collect();
        let mut only_login = BTreeMap::from([("login".to_owned(), Value::from(login))]);
        if let Sees::Sync { .. } = at.sees {
            // A page as a sync's first one is: its numbers can be computed
            // with (`page.number - 1` for a CRM that counts pages from 0).
            let page = BTreeMap::from([
                ("number", Value::from(1)),
                ("offset", Value::from(0)),
                ("size", Value::from(100)),
                ("cursor", Value::from(())),
            ]);
            only_login.insert("page".to_owned(), Value::from(page));
        }
        let ctx = with_reply_values(&Value::from(only_login), extra);
        if let Err(err) = render(&ctx) {
            diags.warn(
                key,
                format!("fails with empty login values: {}", in_words(&err)),
            );
        }
        return;
    }
    for (what, payload) in SAMPLES.iter() {
        let ctx = if extra.is_empty() {
            payload.clone()
        } else {
            with_reply_values(payload, extra)
        };
        if let Err(err) = render(&ctx) {
            diags.warn(
                key,
                format!("fails on the sample payload of {what}: {}", in_words(&err)),
            );
            return;
        }
    }
}

/// A reply template's context: the payload and its own values (the reply's
/// status, body and extracted values, here empty strings).
fn with_reply_values(payload: &Value, extra: &[&str]) -> Value {
    let mut map = BTreeMap::new();
    for key in payload.try_iter().into_iter().flatten() {
        if let Ok(value) = payload.get_item(&key) {
            map.insert(key.to_string(), value);
        }
    }
    for name in extra {
        let value = if *name == "http_status" {
            Value::from(200)
        } else {
            Value::from("")
        };
        map.insert((*name).to_owned(), value);
    }
    Value::from(map)
}

/// A template engine error in a config author's words: the engine's own
/// kind names ("invalid operation") say nothing to them, its detail does.
fn in_words(err: &minijinja::Error) -> String {
    use minijinja::ErrorKind;
    let kind = match err.kind() {
        ErrorKind::InvalidOperation => None,
        ErrorKind::UndefinedError => Some("a value it reads is missing".to_owned()),
        ErrorKind::MissingArgument => Some("an argument is missing".to_owned()),
        ErrorKind::TooManyArguments => Some("too many arguments".to_owned()),
        other => Some(other.to_string()),
    };
    match (kind, err.detail()) {
        (Some(kind), Some(detail)) => format!("{kind}: {detail}"),
        (None, Some(detail)) => detail.to_owned(),
        (Some(kind), None) => kind,
        (None, None) => "this cannot be done with these values".to_owned(),
    }
}
