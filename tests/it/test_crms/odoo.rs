//! Odoo's two external APIs over one partner table, as Odoo's documentation
//! and source describe them.
//!
//! - JSON-2 (Odoo 19+, odoo/documentation
//!   content/developer/reference/external_api.rst; odoo/odoo
//!   odoo/addons/base/models/ir_http.py `_auth_method_bearer`,
//!   addons/rpc/controllers/json2.py): `POST
//!   /json/2/<model>/<method>` with `Authorization: bearer <API key>` (the
//!   scheme read case-insensitively), `X-Odoo-Database` naming the database
//!   on a server that hosts several, and a JSON object of the method's named
//!   parameters (`domain`, `fields`, `limit` for `search_read`). Success is
//!   200 with the method's value (a list of records, `id` always included);
//!   errors are 4xx/5xx with `{"name", "message", "arguments", "context",
//!   "debug"}`: a bad key 401 `werkzeug.exceptions.Unauthorized` "Invalid
//!   apikey", a parameter the method does not take 422
//!   `UnprocessableEntity`, a bad domain a 500.
//! - JSON-RPC (Odoo 8 to 19, odoo/odoo odoo/addons/base/controllers/rpc.py
//!   `/jsonrpc`, odoo/service/common.py `login`, odoo/service/model.py
//!   `execute_kw`): `common.login(db, login, password)` answers the uid, or
//!   `false` for bad credentials (an API key stands for the password);
//!   `object.execute_kw(db, uid, password, model, method, args, kwargs)`
//!   answers `result`, and an exception is HTTP 200 with `{"error": {"code":
//!   200, "message": "Odoo Server Error", "data": {"name":
//!   "odoo.exceptions.AccessDenied", ...}}}` (odoo/http.py
//!   `JsonRPCDispatcher.handle_error`).
//!
//! Domains are Odoo's: a list of `[field, operator, value]` terms in Polish
//! notation with `"|"`, `"&"`, `"!"` prefixes and an implicit `&`. The
//! `like` operators are PostgreSQL's `LIKE`/`ILIKE` on the text as stored:
//! `ilike` and `like` wrap the value in `%...%` without escaping anything in
//! it, `=ilike` and `=like` take the value as the whole pattern (odoo/odoo
//! odoo/osv/expression.py up to 17, odoo/models.py `_condition_to_sql` in
//! 17 and 18, odoo/orm/fields.py `_condition_to_sql` in 19: `need_wildcard
//! = '=' not in operator`, `f"%{value}%"`); `%` and `_` in a value are
//! wildcards, `\` escapes the next character (PostgreSQL's default `LIKE`
//! escape). An empty field is SQL `NULL`: no `like` matches it, and it reads
//! back as `false`. Phones are stored as typed (or as Odoo's phone_validation
//! formats them: `+33 6 12 34 56 78`). `res.partner` has `phone` and
//! `mobile` up to 18.0; Odoo 18.2 and 19 dropped `mobile` (odoo/odoo pull
//! request 189739 "[REM] base: remove mobile field"), so the JSON-2 endpoint
//! (Odoo 19) refuses the field and the JSON-RPC one (16 to 18) has it.
//!
//! The caller directory pages with the same `search_read(domain, fields,
//! offset, limit, order)` (odoo/odoo odoo/models.py `search_read`,
//! `_search`): `offset` skips that many rows of the ordered result,
//! `limit` caps it (no upper bound), `order` is a comma list of stored
//! fields each with an optional `asc`/`desc` (`_order_to_sql`; anything
//! else is `ValueError: Invalid "order" specified`); without `order`,
//! res.partner's `_order` (`complete_name ASC, id DESC`). `write_date` is
//! set to the transaction's UTC time by every write (`_write`,
//! `env.cr.now()`; PostgreSQL `timestamp without time zone`, UTC by
//! convention), and a domain compares it with a string read by
//! `fields.Datetime.to_datetime`: `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`,
//! anything else a `ValueError`; `false` stands for `NULL`. Archived
//! partners (`active = false`) are left out unless the domain names
//! `active` (`active_test`).

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::crm::{Answer, Crm, Seen};

/// A partner: id, name, phone and mobile as stored (empty: not set).
pub struct Partner {
    pub id: u64,
    pub name: String,
    pub phone: String,
    pub mobile: String,
    /// When it was last written, UTC, `YYYY-MM-DD HH:MM:SS`.
    pub write_date: String,
}

impl Partner {
    pub fn new(id: u64, name: &str, phone: &str, mobile: &str) -> Self {
        Self {
            id,
            name: name.into(),
            phone: phone.into(),
            mobile: mobile.into(),
            write_date: super::sql_now(),
        }
    }

    /// The partner written again with this phone.
    pub fn set_phone(&mut self, phone: &str) {
        phone.clone_into(&mut self.phone);
        self.write_date = super::sql_now();
    }

    /// A field's value, `None` for a field the version lacks.
    fn get(&self, field: &str, version: Version) -> Option<&str> {
        match field {
            "name" | "display_name" => Some(&self.name),
            "phone" => Some(&self.phone),
            "mobile" if version == Version::Upto18 => Some(&self.mobile),
            _ => None,
        }
    }
}

/// `fields.Datetime.to_datetime` of a domain value: the full
/// `YYYY-MM-DD HH:MM:SS`, or a date (its midnight); `None` for anything
/// else (Odoo raises `ValueError`).
fn datetime_value(text: &str) -> Option<String> {
    let shape = |t: &str| {
        t.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b'-',
            10 => c == b' ',
            13 | 16 => c == b':',
            _ => c.is_ascii_digit(),
        })
    };
    match text.len() {
        19 if shape(text) => Some(text.to_owned()),
        10 if shape(text) => Some(format!("{text} 00:00:00")),
        _ => None,
    }
}

/// Which Odoo answers: 19 (JSON-2, no `mobile`) or 16 to 18 (JSON-RPC).
#[derive(Clone, Copy, PartialEq)]
enum Version {
    V19,
    Upto18,
}

#[derive(Default)]
pub struct State {
    pub db: String,
    pub login: String,
    pub api_key: String,
    /// The gateway user's id; changing it makes an old uid fail.
    pub uid: u64,
    pub partners: Vec<Partner>,
    /// JSON-RPC logins that worked, and those that answered `false`.
    pub logins: usize,
    pub failed_logins: usize,
    /// Searches answered, and refused (bad key, uid or password).
    pub searches: usize,
    pub refused: usize,
    /// Every search's domain, as received.
    pub domains: Vec<Value>,
    /// Every search's offset, limit and order, as received.
    pub pages: Vec<(Value, Value, Value)>,
}

pub struct Odoo {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

impl Odoo {
    pub async fn start(api_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            db: "odoo".into(),
            login: "gateway@example.org".into(),
            api_key: api_key.into(),
            uid: 7,
            partners: vec![
                Partner::new(42, "Jeanne O'Neil", "+33 6 12 34 56 78", ""),
                Partner::new(43, "Paul Martin", "06.98.76.54.32", ""),
                Partner::new(44, "Luc Petit", "0033298112233", ""),
                // A mobile only (Odoo 16 to 18; 19 has no such field).
                Partner::new(45, "Marie Durand", "", "+33 7 11 22 33 44"),
            ],
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }
}

fn json_reply(status: u16, body: Value) -> Answer {
    Answer::Reply(status, "application/json; charset=utf-8", body.to_string())
}

/// A JSON-2 error: the Python exception's name and message.
fn json2_error(status: u16, name: &str, message: &str) -> Answer {
    json_reply(
        status,
        json!({"name": name, "message": message, "arguments": [message, status],
               "context": {}, "debug": format!("Traceback (most recent call last):\n{name}: {message}\n")}),
    )
}

/// A JSON-RPC error, HTTP 200 as Odoo sends every one.
fn rpc_error(id: &Value, name: &str, message: &str) -> Answer {
    json_reply(
        200,
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": 200, "message": "Odoo Server Error",
               "data": {"name": name, "debug": "Traceback (most recent call last):\n", "message": message,
                        "arguments": [message], "context": {}}}}),
    )
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    if seen.method != "POST" {
        return json2_error(
            405,
            "werkzeug.exceptions.MethodNotAllowed",
            "405 Method Not Allowed",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&seen.body) else {
        return json2_error(
            400,
            "werkzeug.exceptions.BadRequest",
            "400 Bad Request: invalid JSON",
        );
    };
    match seen.target.as_str() {
        "/json/2/res.partner/search_read" => json2(state, seen, &body),
        "/jsonrpc" => jsonrpc(state, &body),
        _ => json2_error(404, "werkzeug.exceptions.NotFound", "404 Not Found"),
    }
}

fn json2(state: &mut State, seen: &Seen, body: &Value) -> Answer {
    let key = seen.header("authorization").and_then(|h| {
        let (scheme, key) = h.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
    });
    if key != Some(state.api_key.as_str()) {
        state.refused += 1;
        return json2_error(401, "werkzeug.exceptions.Unauthorized", "Invalid apikey");
    }
    if seen.header("x-odoo-database") != Some(state.db.as_str()) {
        return json2_error(
            404,
            "werkzeug.exceptions.NotFound",
            "404 Not Found: no such database",
        );
    }
    if !seen
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return json2_error(
            415,
            "werkzeug.exceptions.UnsupportedMediaType",
            "415 Unsupported Media Type",
        );
    }
    let Some(params) = body.as_object() else {
        return json2_error(400, "werkzeug.exceptions.BadRequest", "400 Bad Request");
    };
    if let Some(name) = params.keys().find(|k| {
        !["domain", "fields", "limit", "offset", "order", "context"].contains(&k.as_str())
    }) {
        return json2_error(
            422,
            "werkzeug.exceptions.UnprocessableEntity",
            &format!("422 Unprocessable Entity: got an unexpected keyword argument '{name}'"),
        );
    }
    match search_read(
        state,
        Version::V19,
        params.get("domain"),
        params.get("fields"),
        params.get("offset"),
        params.get("limit"),
        params.get("order"),
    ) {
        Ok(rows) => json_reply(200, rows),
        Err(message) => json2_error(500, "builtins.ValueError", &message),
    }
}

fn jsonrpc(state: &mut State, body: &Value) -> Answer {
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    if body["jsonrpc"] != "2.0" || body["method"] != "call" {
        return rpc_error(
            &id,
            "werkzeug.exceptions.BadRequest",
            "Invalid JSON-RPC request",
        );
    }
    let params = &body["params"];
    let args = params["args"].as_array().cloned().unwrap_or_default();
    let text = |i: usize| args.get(i).and_then(Value::as_str).unwrap_or("");
    match (params["service"].as_str(), params["method"].as_str()) {
        (Some("common"), Some("login")) => {
            if args.len() != 3 {
                return rpc_error(
                    &id,
                    "builtins.TypeError",
                    "login() takes 3 positional arguments",
                );
            }
            if text(0) != state.db {
                return rpc_error(&id, "psycopg2.OperationalError", "database does not exist");
            }
            if text(1) != state.login || text(2) != state.api_key {
                state.failed_logins += 1;
                return json_reply(200, json!({"jsonrpc": "2.0", "id": id, "result": false}));
            }
            state.logins += 1;
            json_reply(
                200,
                json!({"jsonrpc": "2.0", "id": id, "result": state.uid}),
            )
        }
        (Some("object"), Some("execute_kw")) => {
            let uid = args.get(1).and_then(Value::as_u64);
            if text(0) != state.db || uid != Some(state.uid) || text(2) != state.api_key {
                state.refused += 1;
                return rpc_error(&id, "odoo.exceptions.AccessDenied", "Access Denied");
            }
            if text(3) != "res.partner" || text(4) != "search_read" {
                return rpc_error(&id, "builtins.AttributeError", "unexpected model or method");
            }
            let positional = args
                .get(5)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let kwargs = args.get(6).cloned().unwrap_or(json!({}));
            if positional.len() != 1 {
                return rpc_error(&id, "builtins.TypeError", "search_read() takes a domain");
            }
            match search_read(
                state,
                Version::Upto18,
                positional.first(),
                kwargs.get("fields"),
                kwargs.get("offset"),
                kwargs.get("limit"),
                kwargs.get("order"),
            ) {
                Ok(rows) => json_reply(200, json!({"jsonrpc": "2.0", "id": id, "result": rows})),
                Err(message) => rpc_error(&id, "builtins.ValueError", &message),
            }
        }
        _ => rpc_error(&id, "builtins.KeyError", "unknown service or method"),
    }
}

fn search_read(
    state: &mut State,
    version: Version,
    domain: Option<&Value>,
    fields: Option<&Value>,
    offset: Option<&Value>,
    limit: Option<&Value>,
    order: Option<&Value>,
) -> Result<Value, String> {
    let domain = domain.cloned().unwrap_or(json!([]));
    state.domains.push(domain.clone());
    let null = Value::Null;
    state.pages.push((
        offset.unwrap_or(&null).clone(),
        limit.unwrap_or(&null).clone(),
        order.unwrap_or(&null).clone(),
    ));
    let terms = domain.as_array().ok_or("domain must be a list")?;
    let fields: Vec<String> = match fields {
        None => vec!["name".into(), "phone".into()],
        Some(f) => f
            .as_array()
            .ok_or("fields must be a list")?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or("a field name is a string")
            })
            .collect::<Result<_, _>>()?,
    };
    let limit = match limit {
        None | Some(Value::Null) => usize::MAX,
        Some(v) => v.as_u64().ok_or("limit must be an integer")? as usize,
    };
    let offset = match offset {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or("offset must be an integer")? as usize,
    };
    let order = sort_keys(order)?;
    let mut matching = Vec::new();
    for p in &state.partners {
        let mut at = 0;
        let mut ok = true;
        // An implicit "&" between the top-level expressions.
        while at < terms.len() {
            ok &= eval(terms, &mut at, p, version, 0)?;
        }
        if ok {
            matching.push(p);
        }
    }
    // A stable sort, last key first: the keys in order.
    for (field, descending) in order.iter().rev() {
        matching.sort_by(|a, b| {
            let o = match field.as_str() {
                "id" => a.id.cmp(&b.id),
                "write_date" => a.write_date.cmp(&b.write_date),
                _ => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            };
            if *descending {
                o.reverse()
            } else {
                o
            }
        });
    }
    let mut rows = Vec::new();
    for p in matching.into_iter().skip(offset) {
        if rows.len() < limit {
            let mut row = serde_json::Map::new();
            row.insert("id".into(), json!(p.id));
            for f in &fields {
                let v = match (f.as_str(), p.get(f, version)) {
                    ("id", _) => json!(p.id),
                    (_, Some("")) => json!(false),
                    (_, Some(v)) => json!(v),
                    (_, None) => return Err(format!("Invalid field '{f}' on model 'res.partner'")),
                };
                row.insert(f.clone(), v);
            }
            rows.push(Value::Object(row));
        }
    }
    state.searches += 1;
    Ok(Value::Array(rows))
}

/// `order` as `_order_to_sql` reads it: stored fields, each with an
/// optional `asc`/`desc`; none given is res.partner's `_order`
/// (`complete_name ASC, id DESC`, the name here).
fn sort_keys(order: Option<&Value>) -> Result<Vec<(String, bool)>, String> {
    let text = match order {
        None | Some(Value::Null) => return Ok(vec![("name".into(), false), ("id".into(), true)]),
        Some(Value::String(text)) => text,
        Some(_) => return Err("Invalid \"order\" specified".into()),
    };
    text.split(',')
        .map(|term| {
            let words: Vec<&str> = term.split_whitespace().collect();
            let (field, descending) = match words.as_slice() {
                [f] => (*f, false),
                [f, d] if d.eq_ignore_ascii_case("asc") => (*f, false),
                [f, d] if d.eq_ignore_ascii_case("desc") => (*f, true),
                _ => return Err(format!("Invalid \"order\" specified ({text})")),
            };
            if !["id", "name", "complete_name", "write_date"].contains(&field) {
                return Err(format!("Invalid \"order\" specified ({text})"));
            }
            Ok((field.to_owned(), descending))
        })
        .collect()
}

fn eval(
    terms: &[Value],
    at: &mut usize,
    p: &Partner,
    version: Version,
    depth: usize,
) -> Result<bool, String> {
    if depth > 32 {
        return Err("domain too deep".into());
    }
    let term = terms.get(*at).ok_or("domain ends early")?;
    *at += 1;
    let mut next = || eval(terms, at, p, version, depth + 1);
    match term.as_str() {
        Some("|") => Ok(next()? | next()?),
        Some("&") => Ok(next()? & next()?),
        Some("!") => Ok(!next()?),
        Some(other) => Err(format!("Invalid domain operator {other:?}")),
        None => {
            let leaf = term
                .as_array()
                .filter(|l| l.len() == 3)
                .ok_or("Invalid leaf")?;
            let (field, op, value) = (leaf[0].as_str().unwrap_or(""), leaf[1].as_str(), &leaf[2]);
            if field == "write_date" {
                // Never NULL here: every partner was written once.
                let at = p.write_date.as_str();
                return match (op, value) {
                    (Some("="), Value::Bool(false)) => Ok(false),
                    (Some("!="), Value::Bool(false)) => Ok(true),
                    (Some(op), Value::String(text)) => {
                        let when = datetime_value(text).ok_or_else(|| {
                            format!("time data {text:?} does not match format '%Y-%m-%d %H:%M:%S'")
                        })?;
                        let when = when.as_str();
                        match op {
                            ">" => Ok(at > when),
                            ">=" => Ok(at >= when),
                            "<" => Ok(at < when),
                            "<=" => Ok(at <= when),
                            "=" => Ok(at == when),
                            "!=" => Ok(at != when),
                            _ => Err(format!("Invalid operator {op:?}")),
                        }
                    }
                    _ => Err(format!("Invalid leaf {term}")),
                };
            }
            let stored = p
                .get(field, version)
                .ok_or_else(|| format!("Invalid field res.partner.{field} in leaf {term}"))?;
            // An empty char field is NULL: no comparison holds.
            let stored = (!stored.is_empty()).then_some(stored);
            let value = value
                .as_str()
                .ok_or("a like or = value must be a string here")?;
            let sql_like =
                |pattern: &str, fold: bool| stored.is_some_and(|s| like(pattern, s, fold));
            match op {
                Some("=") => Ok(stored == Some(value)),
                Some("ilike") => Ok(sql_like(&format!("%{value}%"), true)),
                Some("like") => Ok(sql_like(&format!("%{value}%"), false)),
                Some("=ilike") => Ok(sql_like(value, true)),
                Some("=like") => Ok(sql_like(value, false)),
                Some("not ilike") => Ok(!sql_like(&format!("%{value}%"), true)),
                _ => Err(format!("Invalid operator {op:?}")),
            }
        }
    }
}

/// PostgreSQL's `LIKE` (`ILIKE` with `fold`) with its default escape `\`:
/// `%` any run, `_` one character, `\x` the character x.
pub fn like(pattern: &str, text: &str, fold: bool) -> bool {
    enum Tok {
        Any,
        One,
        Char(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Char(chars.next().unwrap_or('\\')),
            c => Tok::Char(c),
        });
    }
    let text: Vec<char> = if fold {
        text.to_lowercase().chars().collect()
    } else {
        text.chars().collect()
    };
    // matched[j]: the tokens so far match text[..j].
    let mut matched = vec![false; text.len() + 1];
    matched[0] = true;
    for tok in &toks {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            match tok {
                Tok::Any => next[j] = matched[j] || (j > 0 && next[j - 1]),
                Tok::One => next[j] = j > 0 && matched[j - 1],
                Tok::Char(c) => {
                    next[j] = j > 0
                        && matched[j - 1]
                        && if fold {
                            c.to_lowercase().eq(text[j - 1].to_lowercase())
                        } else {
                            *c == text[j - 1]
                        }
                }
            }
        }
        matched = next;
    }
    matched[text.len()]
}

#[test]
fn ilike_is_sql_like_with_backslash_escapes() {
    let ilike = |p: &str, t: &str| like(p, t, true);
    assert!(ilike("%12 34%", "+33 6 12 34 56 78"));
    assert!(ilike("%%%", "anything"));
    assert!(ilike("%6_1%", "+33 6 12"));
    assert!(!ilike("%6\\_1%", "+33 6 12"));
    assert!(ilike("%6\\_1%", "x6_1y"));
    assert!(ilike("%O'NEIL%", "Jeanne O'Neil"));
    assert!(!like("%O'NEIL%", "Jeanne O'Neil", false));
    assert!(!ilike("%612345678%", "+33 6 12 34 56 78"));
    // phone_like's pattern: the digits in order, anything around them.
    assert!(ilike("%6%1%2%3%4%5%6%7%8%", "+33 (0)6 12.34.56.78 (home)"));
    assert!(!ilike("%6%1%2%3%4%5%6%7%8%", "+33 6 12 34 56 87"));
}

#[test]
fn domains_are_read_as_odoo_reads_them() {
    let p = Partner::new(1, "Jeanne", "06.12.34.56.78", "");
    let eval_all = |domain: Value, version| {
        let terms = domain.as_array().unwrap().clone();
        let mut at = 0;
        let mut ok = true;
        while at < terms.len() {
            ok &= eval(&terms, &mut at, &p, version, 0)?;
        }
        Ok::<bool, String>(ok)
    };
    let pat = "%6%1%2%3%4%5%6%7%8%";
    // ilike wraps the value in %...%, =ilike takes it as is.
    assert_eq!(
        eval_all(json!([["phone", "ilike", "34.56"]]), Version::V19),
        Ok(true)
    );
    assert_eq!(
        eval_all(json!([["phone", "=ilike", "34.56"]]), Version::V19),
        Ok(false)
    );
    assert_eq!(
        eval_all(json!([["phone", "=ilike", pat]]), Version::V19),
        Ok(true)
    );
    // An empty mobile is NULL: even "%" does not match it.
    assert_eq!(
        eval_all(
            json!(["|", ["mobile", "=ilike", "%"], ["phone", "=", "x"]]),
            Version::Upto18
        ),
        Ok(false)
    );
    // Odoo 19 has no mobile.
    assert!(eval_all(json!([["mobile", "=ilike", pat]]), Version::V19).is_err());
    assert!(eval_all(json!([["phone", "regex", pat]]), Version::V19).is_err());
}
