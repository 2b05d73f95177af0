//! Zoho CRM as its documentation and its users' logs describe it, on two
//! servers as in production: the accounts server (`accounts.zoho.eu`, ...)
//! mints access tokens, and the API server it names in `api_domain`
//! (`www.zohoapis.eu`, ...) answers the queries.
//!
//! - Token: `POST /oauth/v2/token` with `grant_type=refresh_token`,
//!   `client_id`, `client_secret`, `refresh_token` (form body or query);
//!   reply `{"access_token", "api_domain", "token_type": "Bearer",
//!   "expires_in": 3600}` (zoho.com/crm/developer/docs/api/v8/refresh.html).
//!   Errors are HTTP 200 with `{"error": "invalid_client"}`,
//!   `"invalid_client_secret"` or `"invalid_code"` (a bad refresh token)
//!   (github.com/asciisd/zoho issues 6 and 18 show the 200; zoho/zcrm-csharp-sdk
//!   issue 7). At most 10 access tokens per refresh token in 10 minutes, then
//!   `{"error":"Access Denied","error_description":"You have made too many
//!   requests continuously. Please try again after some time.","status":
//!   "failure"}`, still HTTP 200 (v8/token-validity.html; Zoho's "Kaizen #43
//!   Tokens and Limitations": "the status code ... remains 200"); at most 15
//!   live access tokens per refresh token, the 16th drops the oldest. A token
//!   carries the scopes its refresh token was granted.
//! - Query API: `POST /crm/v8/coql` with `{"select_query": "..."}` and
//!   `Authorization: Zoho-oauthtoken <token>`, which needs the scope
//!   `ZohoCRM.coql.READ` besides the module's (v8/Get-Records-through-COQL-Query.html;
//!   without it 401 `OAUTH_SCOPE_MISMATCH`). COQL is `select <fields> from
//!   <module> where <criteria> [limit <n> [offset <m>]]`; criteria compare
//!   a field with `=`, `!=`, `like`, `not like`, `is null`, `is not null`,
//!   values in single quotes with `''` for a quote (Zoho's "Kaizen #171 FAQs
//!   on COQL"). More than two criteria must be grouped in brackets, `((A or
//!   B) or C)`, at most 25 of them, `limit` at most 2000 (default 200), at
//!   most 50 select columns (v8/COQL-Limitations.html); a malformed query is
//!   400 `SYNTAX_ERROR`, an unknown field or operator 400 `INVALID_QUERY`, a
//!   limit beyond Zoho's 400 `LIMIT_EXCEEDED`. `like` is documented "only
//!   for starts_with, ends_with, and contains": `'%tech'`, `'tech%'`,
//!   `'%tech%'`. A `%` anywhere else is read here as itself, so a pattern
//!   with wildcards between its characters (`'%6%1%2%'`) finds nothing:
//!   Zoho's query language cannot ask for digits however punctuated. Values
//!   are compared case-insensitively as typed: `06.12.34.56.78` contains
//!   `12.34.56.78`, not `12 34 56 78`. Zoho's COQL page lists `like` for
//!   text and picklist fields; phone fields (Phone, Mobile, Home_Phone,
//!   Other_Phone, Asst_Phone, Fax) are single-line text and take it here too,
//!   as Zoho's filters do (Zoho's "Kaizen #178": phone takes contains,
//!   starts_with, ends_with). Records
//!   answer 200 `{"data": [...], "info": {"count", "more_records"}}`, each
//!   with its `id` and the selected fields (`null` when empty); no record
//!   answers HTTP 204 with no body (v8/status-codes.html). An unknown or
//!   expired token answers 401 `{"code":"INVALID_TOKEN","details":{},
//!   "message":"invalid oauth token","status":"error"}` (solspace/craft-freeform
//!   issue 1372 quotes it); no token at all, 401 `AUTHENTICATION_FAILURE`.
//!
//! The caller directory pages Contacts with COQL too
//! (v8/COQL-Overview.html, v8/COQL-Limitations.html): `Modified_Time` is a
//! datetime field compared with `=`, `!=`, `>`, `>=`, `<`, `<=` and a value
//! `'yyyy-MM-ddTHH:mm:ss+HH:mm'` (ISO 8601 with its offset; any other text
//! is 400 `INVALID_QUERY` here), compared as instants to the second; Zoho
//! sets it on every edit. `order by <field> [asc|desc], ...` (at most 10
//! fields) sorts; without it records come by id ascending. LIMIT and OFFSET
//! reach at most 100 000 records (v8/COQL-Limitations.html: "You can fetch
//! up to 1,00,000 records using pagination with LIMIT and OFFSET"); past
//! them Zoho answers 400 `LIMIT_EXCEEDED` "Max records limit exceeded"
//! (v7/Get-Records-through-COQL-Query.html, Possible Errors), so a client
//! reads more pages by `id > 'last id' order by id` with no offset. The
//! id is a number: it takes `=`, `!=`, `>`, `>=`, `<`, `<=` with a quoted
//! value of digits (anything else is 400 `INVALID_QUERY` here).
//!
//! The Search API (`/Contacts/search?phone=`, `criteria=`, `word=`) is not
//! served: Zoho documents `phone=` as searching "all the phone fields" without
//! saying how it compares, and `criteria` offers `equals` and `starts_with`
//! only, so the recipe asks COQL. The accounts server's `Access Denied` is
//! HTTP 200 as Zoho says; some clients report a 400: the gateway fails the
//! token request either way, since the reply has no `access_token`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{fields, query_of};
use crate::crm::{Answer, Crm, Seen};

/// Tokens a refresh token may mint in [`MINT_WINDOW`].
const MINT_LIMIT: usize = 10;
const MINT_WINDOW: Duration = Duration::from_secs(600);
/// Live access tokens per refresh token; a new one drops the oldest.
const LIVE_TOKENS: usize = 15;
/// COQL's limits (v8/COQL-Limitations.html).
const MAX_CRITERIA: usize = 25;
const MAX_LIMIT: usize = 2000;
const DEFAULT_LIMIT: usize = 200;
const MAX_COLUMNS: usize = 50;
const MAX_ORDER: usize = 10;
/// Records LIMIT and OFFSET reach (v8/COQL-Limitations.html).
const MAX_PAGED: usize = 100_000;

/// The Contacts fields a query may name: the phone fields first.
pub const PHONE_FIELDS: [&str; 6] = [
    "Phone",
    "Mobile",
    "Home_Phone",
    "Other_Phone",
    "Asst_Phone",
    "Fax",
];
const TEXT_FIELDS: [&str; 5] = ["Full_Name", "First_Name", "Last_Name", "Email", "id"];

/// A contact: id, full name, and its phone fields as typed.
pub struct Contact {
    pub id: String,
    pub name: String,
    /// `(field, value)` for each phone field that is filled.
    pub phones: Vec<(&'static str, String)>,
    /// `Modified_Time`, to the second.
    pub modified: time::OffsetDateTime,
}

/// Now, to the second, as Zoho keeps `Modified_Time`.
fn now() -> time::OffsetDateTime {
    let t = time::OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

impl Contact {
    pub fn new(id: &str, name: &str, phones: &[(&'static str, &str)]) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            phones: phones.iter().map(|(f, v)| (*f, (*v).to_owned())).collect(),
            modified: now(),
        }
    }

    /// The contact edited: `field` (a phone field) now holds `typed`.
    pub fn edit(&mut self, field: &'static str, typed: &str) {
        self.phones.retain(|(f, _)| *f != field);
        self.phones.push((field, typed.to_owned()));
        self.modified = now();
    }

    /// A field's value; `None` for an empty one (Zoho answers `null`).
    fn get(&self, field: &str) -> Option<String> {
        let (first, last) = self.name.split_once(' ').unwrap_or(("", &self.name));
        let value = match field {
            "id" => self.id.clone(),
            "Modified_Time" => self
                .modified
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "Full_Name" => self.name.clone(),
            "First_Name" => first.to_owned(),
            "Last_Name" => last.to_owned(),
            "Email" => String::new(),
            _ => self
                .phones
                .iter()
                .find(|(f, _)| *f == field)
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        };
        (!value.is_empty()).then_some(value)
    }
}

pub struct State {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// The scopes the refresh token was granted.
    pub scopes: Vec<String>,
    /// Lifetime of the tokens minted from now on.
    pub expires_in: Duration,
    /// The API server, as the token reply names it.
    api_domain: String,
    tokens: VecDeque<(String, Instant)>,
    minted_at: VecDeque<Instant>,
    counter: u64,
    /// Tokens minted.
    pub mints: usize,
    /// Token requests refused by the mint limit.
    pub denied: usize,
    /// Queries refused with 401, and answered (200 or 204).
    pub refused: usize,
    pub searches: usize,
    /// Queries answered that compared no phone field (the directory's
    /// pages), and those that compared `Modified_Time`.
    pub pages: usize,
    pub since_pages: usize,
    /// Every `select_query` received.
    pub queries: Vec<String>,
    pub contacts: Vec<Contact>,
}

impl State {
    /// Expires every access token now (as an hour going by would).
    pub fn expire_tokens(&mut self) {
        let now = Instant::now();
        for (_, until) in &mut self.tokens {
            *until = now;
        }
    }

    /// Counts `n` recent mints against the limit (another client of the
    /// same refresh token).
    pub fn spend_mints(&mut self, n: usize) {
        for _ in 0..n {
            self.minted_at.push_back(Instant::now());
        }
    }
}

/// A running Zoho: accounts server and API server.
pub struct Zoho {
    pub accounts: Crm,
    pub api: Crm,
    pub state: Arc<Mutex<State>>,
}

impl Zoho {
    pub async fn start(client_secret: &str, refresh_token: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            client_id: "1000.GATEWAYCLIENTID".into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
            scopes: vec![
                "ZohoCRM.modules.contacts.READ".into(),
                "ZohoCRM.coql.READ".into(),
            ],
            expires_in: Duration::from_secs(3600),
            api_domain: String::new(),
            tokens: VecDeque::new(),
            minted_at: VecDeque::new(),
            counter: 0,
            mints: 0,
            denied: 0,
            refused: 0,
            searches: 0,
            pages: 0,
            since_pages: 0,
            queries: Vec::new(),
            contacts: vec![
                Contact::new(
                    "554023000000238121",
                    "Jeanne O'Neil",
                    &[("Phone", "+33 6 12 34 56 78")],
                ),
                Contact::new(
                    "554023000000238177",
                    "Paul Martin",
                    &[("Phone", "+33 2 98 00 00 00"), ("Mobile", "06.98.76.54.32")],
                ),
            ],
        }));
        let shared = Arc::clone(&state);
        let api = Crm::start(move |seen| api(&mut shared.lock().unwrap(), seen)).await;
        state.lock().unwrap().api_domain = api.url();
        let shared = Arc::clone(&state);
        let accounts = Crm::start(move |seen| token(&mut shared.lock().unwrap(), seen)).await;
        Self {
            accounts,
            api,
            state,
        }
    }
}

fn reply(status: u16, body: Value) -> Answer {
    Answer::Reply(status, "application/json;charset=UTF-8", body.to_string())
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    reply(
        status,
        json!({"code": code, "details": {}, "message": message, "status": "error"}),
    )
}

fn token(state: &mut State, seen: &Seen) -> Answer {
    if seen.method != "POST" || seen.target.split('?').next() != Some("/oauth/v2/token") {
        return Answer::Reply(404, "text/html", "<h1>Not Found</h1>".into());
    }
    let mut params = query_of(&seen.target);
    params.extend(fields(&seen.text()));
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != state.client_id {
        return reply(200, json!({"error": "invalid_client"}));
    }
    if get("client_secret") != state.client_secret {
        return reply(200, json!({"error": "invalid_client_secret"}));
    }
    if get("grant_type") != "refresh_token" {
        return reply(200, json!({"error": "unsupported_grant_type"}));
    }
    if get("refresh_token") != state.refresh_token {
        return reply(200, json!({"error": "invalid_code"}));
    }
    let now = Instant::now();
    while state
        .minted_at
        .front()
        .is_some_and(|at| now.duration_since(*at) >= MINT_WINDOW)
    {
        state.minted_at.pop_front();
    }
    if state.minted_at.len() >= MINT_LIMIT {
        state.denied += 1;
        return reply(
            200,
            json!({"error_description": "You have made too many requests continuously. Please try again after some time.",
                   "error": "Access Denied", "status": "failure"}),
        );
    }
    state.minted_at.push_back(now);
    state.mints += 1;
    state.counter += 1;
    let access = format!(
        "1000.{:032x}.{:x}",
        state.counter * 0x9e37_79b9,
        state.counter
    );
    state
        .tokens
        .push_back((access.clone(), now + state.expires_in));
    if state.tokens.len() > LIVE_TOKENS {
        state.tokens.pop_front();
    }
    reply(
        200,
        json!({"access_token": access, "scope": state.scopes.join(","),
               "api_domain": state.api_domain, "token_type": "Bearer",
               "expires_in": state.expires_in.as_secs()}),
    )
}

fn api(state: &mut State, seen: &Seen) -> Answer {
    if seen.method != "POST" || seen.target != "/crm/v8/coql" {
        return error(
            404,
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
        );
    }
    let Some(token) = seen
        .header("authorization")
        .and_then(|h| h.strip_prefix("Zoho-oauthtoken "))
    else {
        state.refused += 1;
        return error(401, "AUTHENTICATION_FAILURE", "Authentication failed");
    };
    let now = Instant::now();
    if !state
        .tokens
        .iter()
        .any(|(t, until)| t == token && now < *until)
    {
        state.refused += 1;
        return error(401, "INVALID_TOKEN", "invalid oauth token");
    }
    if !state.scopes.iter().any(|s| s == "ZohoCRM.coql.READ") {
        state.refused += 1;
        return error(
            401,
            "OAUTH_SCOPE_MISMATCH",
            "invalid oauth scope to access this URL",
        );
    }
    let body: Value = serde_json::from_slice(&seen.body).unwrap_or(Value::Null);
    let Some(text) = body.get("select_query").and_then(Value::as_str) else {
        return error(
            400,
            "INVALID_DATA",
            "select_query is missing or not a string",
        );
    };
    state.queries.push(text.to_owned());
    let query = match parse(text) {
        Ok(q) => q,
        Err((code, why)) => return error(400, code, &why),
    };
    state.searches += 1;
    if !query.criteria.names(&|f| PHONE_FIELDS.contains(&f)) {
        state.pages += 1;
        if query.criteria.names(&|f| f == "Modified_Time") {
            state.since_pages += 1;
        }
    }
    let mut found: Vec<&Contact> = state
        .contacts
        .iter()
        .filter(|c| query.criteria.matches(c))
        .collect();
    // By id unless `order by` says otherwise; last key first, stable.
    let id_order = |a: &&Contact, b: &&Contact| id_order(&a.id, &b.id);
    found.sort_by(id_order);
    for (field, descending) in query.order.iter().rev() {
        found.sort_by(|a, b| {
            let o = match field.as_str() {
                "id" => id_order(a, b),
                "Modified_Time" => a.modified.cmp(&b.modified),
                _ => a.get(field).cmp(&b.get(field)),
            };
            if *descending {
                o.reverse()
            } else {
                o
            }
        });
    }
    let page: Vec<Value> = found
        .iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|c| {
            let mut row = serde_json::Map::new();
            for column in &query.columns {
                row.insert(column.clone(), json!(c.get(column)));
            }
            row.insert("id".into(), json!(c.id));
            Value::Object(row)
        })
        .collect();
    if page.is_empty() {
        return Answer::Reply(204, "application/json;charset=UTF-8", String::new());
    }
    let more = found.len() > query.offset + page.len();
    reply(
        200,
        json!({"data": page, "info": {"count": page.len(), "more_records": more}}),
    )
}

/// A parsed `select`.
#[derive(Debug)]
pub struct Query {
    pub columns: Vec<String>,
    pub criteria: Criteria,
    pub limit: usize,
    pub offset: usize,
    /// `order by`: fields, descending or not.
    pub order: Vec<(String, bool)>,
}

/// A `where` clause: one comparison, or two joined by `and`/`or`.
#[derive(Debug, PartialEq)]
pub enum Criteria {
    /// A field, its operator (`=`, `!=`, `like`, `not like`) and the value.
    Compare(String, String, String),
    /// A field `is null` (`true`) or `is not null` (`false`).
    Null(String, bool),
    And(Box<Criteria>, Box<Criteria>),
    Or(Box<Criteria>, Box<Criteria>),
}

impl Criteria {
    /// Whether a comparison names a field `which` accepts.
    fn names(&self, which: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Criteria::Compare(f, ..) | Criteria::Null(f, _) => which(f),
            Criteria::And(a, b) | Criteria::Or(a, b) => a.names(which) || b.names(which),
        }
    }

    fn matches(&self, c: &Contact) -> bool {
        match self {
            Criteria::Compare(field, op, value) if field == "Modified_Time" => {
                let Some(when) = zoho_datetime(value) else {
                    return false;
                };
                let at = c.modified;
                match op.as_str() {
                    "=" => at == when,
                    "!=" => at != when,
                    ">" => at > when,
                    ">=" => at >= when,
                    "<" => at < when,
                    _ => at <= when,
                }
            }
            Criteria::Compare(field, op, value) if field == "id" => {
                let o = id_order(&c.id, value);
                match op.as_str() {
                    "=" => o.is_eq(),
                    "!=" => o.is_ne(),
                    ">" => o.is_gt(),
                    ">=" => o.is_ge(),
                    "<" => o.is_lt(),
                    _ => o.is_le(),
                }
            }
            Criteria::Compare(field, op, value) => {
                let stored = c.get(field).unwrap_or_default().to_lowercase();
                let value = value.to_lowercase();
                match op.as_str() {
                    "=" => stored == value,
                    "!=" => stored != value,
                    "like" => like(&value, &stored),
                    _ => !like(&value, &stored),
                }
            }
            Criteria::Null(field, null) => c.get(field).is_none() == *null,
            Criteria::And(a, b) => a.matches(c) && b.matches(c),
            Criteria::Or(a, b) => a.matches(c) || b.matches(c),
        }
    }

    fn count(&self) -> usize {
        match self {
            Criteria::And(a, b) | Criteria::Or(a, b) => a.count() + b.count(),
            _ => 1,
        }
    }
}

/// COQL's `like`: a leading `%` (ends with), a trailing `%` (starts with),
/// both (contains), neither (equals); the text between is compared as is.
fn like(pattern: &str, stored: &str) -> bool {
    let (starts, rest) = match pattern.strip_prefix('%') {
        Some(rest) => (false, rest),
        None => (true, pattern),
    };
    let (ends, text) = match rest.strip_suffix('%') {
        Some(text) => (false, text),
        None => (true, rest),
    };
    match (starts, ends) {
        (true, true) => stored == text,
        (true, false) => stored.starts_with(text),
        (false, true) => stored.ends_with(text),
        (false, false) => stored.contains(text),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(usize),
    Open,
    Close,
    Comma,
    Op(&'static str),
}

type Refusal = (&'static str, String);

fn syntax(why: impl Into<String>) -> Refusal {
    ("SYNTAX_ERROR", why.into())
}

fn tokens(text: &str) -> Result<Vec<Token>, Refusal> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(&c) = chars.get(at) {
        at += 1;
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            ',' => out.push(Token::Comma),
            '=' => out.push(Token::Op("=")),
            '!' | '<' | '>' => {
                let eq = chars.get(at) == Some(&'=');
                at += usize::from(eq);
                out.push(Token::Op(match (c, eq) {
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => return Err(syntax("unexpected '!'")),
                }));
            }
            '\'' => {
                let mut value = String::new();
                loop {
                    match chars.get(at) {
                        None => return Err(syntax("unterminated string")),
                        Some('\'') if chars.get(at + 1) == Some(&'\'') => {
                            value.push('\'');
                            at += 2;
                        }
                        Some('\'') => {
                            at += 1;
                            break;
                        }
                        Some(c) => {
                            value.push(*c);
                            at += 1;
                        }
                    }
                }
                out.push(Token::Text(value));
            }
            c if c.is_ascii_digit() => {
                let mut n = c.to_digit(10).unwrap_or(0) as usize;
                while let Some(d) = chars.get(at).and_then(|c| c.to_digit(10)) {
                    n = n.saturating_mul(10).saturating_add(d as usize);
                    at += 1;
                }
                out.push(Token::Number(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut word = c.to_string();
                while let Some(&c) = chars.get(at) {
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                        break;
                    }
                    word.push(c);
                    at += 1;
                }
                out.push(Token::Word(word));
            }
            c => return Err(syntax(format!("unexpected {c:?}"))),
        }
    }
    Ok(out)
}

/// Reads a `select_query` as Zoho does, with its limits.
pub fn parse(text: &str) -> Result<Query, Refusal> {
    let toks = tokens(text)?;
    let mut at = 0;
    let keyword = |at: &mut usize, kw: &str| -> bool {
        match toks.get(*at) {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw) => {
                *at += 1;
                true
            }
            _ => false,
        }
    };
    if !keyword(&mut at, "select") {
        return Err(syntax("only a select query is supported"));
    }
    let mut columns = Vec::new();
    loop {
        match toks.get(at) {
            Some(Token::Word(w)) => columns.push(w.clone()),
            _ => return Err(syntax("expected a column")),
        }
        at += 1;
        if toks.get(at) != Some(&Token::Comma) {
            break;
        }
        at += 1;
    }
    if !keyword(&mut at, "from") {
        return Err(syntax("the query has no from clause"));
    }
    match toks.get(at) {
        Some(Token::Word(m)) if m == "Contacts" => at += 1,
        _ => {
            return Err((
                "INVALID_MODULE",
                "the module name given seems to be invalid".into(),
            ))
        }
    }
    if !keyword(&mut at, "where") {
        return Err(syntax("the query has no where clause"));
    }
    let criteria = level(&toks, &mut at, 0)?;
    let mut order = Vec::new();
    if keyword(&mut at, "order") {
        if !keyword(&mut at, "by") {
            return Err(syntax("order needs by"));
        }
        loop {
            let Some(Token::Word(field)) = toks.get(at) else {
                return Err(syntax("order by needs a field"));
            };
            if !known(field) {
                return Err(("INVALID_QUERY", format!("invalid column name {field}")));
            }
            at += 1;
            let descending = if keyword(&mut at, "desc") {
                true
            } else {
                keyword(&mut at, "asc");
                false
            };
            if order.iter().any(|(f, _)| f == field) {
                return Err((
                    "DUPLICATE_DATA",
                    format!("duplicate field {field} in order by"),
                ));
            }
            order.push((field.clone(), descending));
            if toks.get(at) != Some(&Token::Comma) {
                break;
            }
            at += 1;
        }
        if order.len() > MAX_ORDER {
            return Err(("LIMIT_EXCEEDED", "order by limit exceeded".into()));
        }
    }
    let (mut limit, mut offset) = (DEFAULT_LIMIT, 0);
    if keyword(&mut at, "limit") {
        let Some(Token::Number(n)) = toks.get(at) else {
            return Err(syntax("limit needs a number"));
        };
        limit = *n;
        at += 1;
        if keyword(&mut at, "offset") {
            let Some(Token::Number(n)) = toks.get(at) else {
                return Err(syntax("offset needs a number"));
            };
            offset = *n;
            at += 1;
        }
    }
    if at != toks.len() {
        return Err(syntax(format!("unexpected text after token {at}")));
    }
    for column in &columns {
        if !known(column) {
            return Err(("INVALID_QUERY", format!("invalid column name {column}")));
        }
    }
    if columns.len() > MAX_COLUMNS {
        return Err(("LIMIT_EXCEEDED", "select column limit exceeded".into()));
    }
    if limit > MAX_LIMIT || limit == 0 {
        return Err(("LIMIT_EXCEEDED", "limit clause exceeded".into()));
    }
    if criteria.count() > MAX_CRITERIA {
        return Err(("LIMIT_EXCEEDED", "criteria limit exceeded".into()));
    }
    if offset + limit > MAX_PAGED {
        return Err(("LIMIT_EXCEEDED", "Max records limit exceeded".into()));
    }
    Ok(Query {
        columns,
        criteria,
        limit,
        offset,
        order,
    })
}

fn known(field: &str) -> bool {
    PHONE_FIELDS.contains(&field) || TEXT_FIELDS.contains(&field) || field == "Modified_Time"
}

/// A COQL datetime value, `yyyy-MM-ddTHH:mm:ss+HH:mm` (or `-HH:mm`).
fn zoho_datetime(text: &str) -> Option<time::OffsetDateTime> {
    let format = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]",
    )
    .ok()?;
    time::OffsetDateTime::parse(text, &format).ok()
}

/// One level of criteria: one term, or two joined by `and`/`or`; a third
/// at the same level is ambiguous to Zoho and refused.
fn level(toks: &[Token], at: &mut usize, depth: usize) -> Result<Criteria, Refusal> {
    let first = term(toks, at, depth)?;
    let join = match toks.get(*at) {
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("and") => "and",
        Some(Token::Word(w)) if w.eq_ignore_ascii_case("or") => "or",
        _ => return Ok(first),
    };
    *at += 1;
    let second = term(toks, at, depth)?;
    if matches!(toks.get(*at), Some(Token::Word(w)) if w.eq_ignore_ascii_case("and") || w.eq_ignore_ascii_case("or"))
    {
        return Err(syntax(
            "more than two criteria must be enclosed in brackets",
        ));
    }
    Ok(match join {
        "and" => Criteria::And(Box::new(first), Box::new(second)),
        _ => Criteria::Or(Box::new(first), Box::new(second)),
    })
}

fn term(toks: &[Token], at: &mut usize, depth: usize) -> Result<Criteria, Refusal> {
    if depth > 64 {
        return Err(syntax("the query is too complex"));
    }
    if toks.get(*at) == Some(&Token::Open) {
        *at += 1;
        let inner = level(toks, at, depth + 1)?;
        if toks.get(*at) != Some(&Token::Close) {
            return Err(syntax("unbalanced parentheses"));
        }
        *at += 1;
        return Ok(inner);
    }
    let Some(Token::Word(field)) = toks.get(*at) else {
        return Err(syntax("expected a criteria"));
    };
    *at += 1;
    if !known(field) {
        return Err(("INVALID_QUERY", format!("invalid column name {field}")));
    }
    let word = |at: usize, kw: &str| matches!(toks.get(at), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw));
    let op = match toks.get(*at) {
        // Text and phone fields take = and != only (v8/Get-Records-through-COQL-Query.html).
        Some(Token::Op(op @ ("=" | "!="))) => {
            *at += 1;
            *op
        }
        // A datetime field, and the record id (a number), take the
        // comparisons too.
        Some(Token::Op(op @ (">" | ">=" | "<" | "<=")))
            if field == "Modified_Time" || field == "id" =>
        {
            *at += 1;
            *op
        }
        _ if word(*at, "like") => {
            *at += 1;
            "like"
        }
        _ if word(*at, "not") && word(*at + 1, "like") => {
            *at += 2;
            "not like"
        }
        _ if word(*at, "is") && word(*at + 1, "null") => {
            *at += 2;
            return Ok(Criteria::Null(field.clone(), true));
        }
        _ if word(*at, "is") && word(*at + 1, "not") && word(*at + 2, "null") => {
            *at += 3;
            return Ok(Criteria::Null(field.clone(), false));
        }
        _ => return Err(("INVALID_QUERY", format!("invalid operator after {field}"))),
    };
    let Some(Token::Text(value)) = toks.get(*at) else {
        return Err(syntax(format!("{field} {op} needs a quoted value")));
    };
    *at += 1;
    if field == "Modified_Time" && (op.contains("like") || zoho_datetime(value).is_none()) {
        return Err((
            "INVALID_QUERY",
            format!("invalid value {value:?} for the datetime field Modified_Time"),
        ));
    }
    if field == "id" && (op.contains("like") || !is_id(value)) {
        return Err((
            "INVALID_QUERY",
            format!("invalid value {value:?} for the id field"),
        ));
    }
    Ok(Criteria::Compare(field.clone(), op.into(), value.clone()))
}

/// A record id: digits, as Zoho's are (18 or 19 of them).
fn is_id(value: &str) -> bool {
    !value.is_empty() && value.len() <= 20 && value.bytes().all(|b| b.is_ascii_digit())
}

/// Two ids in numeric order (digits without leading zeros: by length, then
/// as text).
fn id_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a.len(), a).cmp(&(b.len(), b))
}

#[test]
fn coql_is_read_as_zoho_reads_it() {
    let q = parse("select Full_Name, Phone from Contacts where ((Phone like '%12 34%' or Mobile = 'O''Neil') or Fax is not null) limit 50").unwrap();
    assert_eq!(q.columns, ["Full_Name", "Phone"]);
    assert_eq!((q.limit, q.offset, q.criteria.count()), (50, 0, 3));
    assert_eq!(
        parse("select id from Contacts where Mobile = 'O''Neil'")
            .unwrap()
            .criteria,
        Criteria::Compare("Mobile".into(), "=".into(), "O'Neil".into())
    );
    let refused = |text: &str| parse(text).err().map(|(code, _)| code);
    // Three criteria at one level are ambiguous to Zoho.
    assert_eq!(
        refused("select id from Contacts where Phone = '1' or Mobile = '2' or Fax = '3'"),
        Some("SYNTAX_ERROR")
    );
    assert_eq!(
        refused("select id from Contacts where Phone = '1"),
        Some("SYNTAX_ERROR")
    );
    assert_eq!(
        refused("select id from Contacts where Phone = '1' or Mobile = '2')"),
        Some("SYNTAX_ERROR")
    );
    assert_eq!(
        refused("select Pager from Contacts where Phone = '1'"),
        Some("INVALID_QUERY")
    );
    assert_eq!(
        refused("select id from Contacts where Phone >= '1'"),
        Some("INVALID_QUERY")
    );
    assert_eq!(
        refused("select id from Contacts where Phone = '1' limit 2001"),
        Some("LIMIT_EXCEEDED")
    );
    assert_eq!(refused("select id from Contacts"), Some("SYNTAX_ERROR"));
    assert_eq!(
        refused("update Contacts set Phone = '1' where id = '2'"),
        Some("SYNTAX_ERROR")
    );
    // Modified_Time: a datetime with its offset, compared; paging by id.
    let q = parse("select id from Contacts where Modified_Time > '2026-12-07T14:05:00+00:00' order by id limit 2000 offset 98000").unwrap();
    assert_eq!((q.limit, q.offset), (2000, 98000));
    assert_eq!(q.order, [("id".to_owned(), false)]);
    for bad in [
        "2026-12-07 14:05:00",
        "2026-12-07T14:05:00Z",
        "2026-12-07T14:05:00",
        "07/12/2026",
    ] {
        assert_eq!(
            refused(&format!(
                "select id from Contacts where Modified_Time > '{bad}'"
            )),
            Some("INVALID_QUERY"),
            "{bad}"
        );
    }
    assert_eq!(
        refused("select id from Contacts where id is not null order by id limit 2000 offset 98001"),
        Some("LIMIT_EXCEEDED")
    );
    // Past 100 000 records: the id of the last record read, no offset.
    let q = parse("select id from Contacts where (Modified_Time > '2026-12-07T14:05:00+00:00' and id > '554023000000900024') order by id limit 2000").unwrap();
    let contact = |id: &str| Contact::new(id, "A B", &[]);
    assert!(q.criteria.matches(&Contact {
        modified: time::OffsetDateTime::now_utc(),
        ..contact("554023000000900025")
    }));
    for (id, above) in [
        ("554023000000900024", false),
        ("554023000000900025", true),
        ("99", false),
        ("1554023000000900000", true),
    ] {
        let q = parse("select id from Contacts where id > '554023000000900024'").unwrap();
        assert_eq!(q.criteria.matches(&contact(id)), above, "{id}");
    }
    for bad in [
        "select id from Contacts where id > 'abc'",
        "select id from Contacts where id like '5%'",
    ] {
        assert_eq!(refused(bad), Some("INVALID_QUERY"), "{bad}");
    }
    assert_eq!(
        refused("select id from Contacts where id is not null order by id, id"),
        Some("DUPLICATE_DATA")
    );
    let mut many = String::from("Phone = '0'");
    for i in 1..26 {
        many = format!("({many} or Phone = '{i}')");
    }
    assert_eq!(
        refused(&format!("select id from Contacts where {many}")),
        Some("LIMIT_EXCEEDED")
    );
}

#[test]
fn like_is_only_starts_with_ends_with_or_contains() {
    assert!(like("%12.34.56.78%", "06.12.34.56.78"));
    assert!(!like("%12 34 56 78%", "06.12.34.56.78"));
    assert!(like("06%", "06.12.34.56.78"));
    assert!(like("%78", "06.12.34.56.78"));
    assert!(!like("%78", "06.12.34.56.78 (home)"));
    assert!(like("06.12.34.56.78", "06.12.34.56.78"));
    // A wildcard between characters is not one.
    assert!(!like("%6%1%2%", "06 12 34"));
    assert!(like("%6%1%2%", "x6%1%2y"));
}
