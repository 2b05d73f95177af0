//! A SuiteCRM 8 (7.10+) V8 JSON:API with its OAuth2 token endpoint, as
//! salesagility/SuiteCRM 7.14 and SuiteCRM-Core 8.8 answer
//! (`Api/V8/Config/routes.php`, `Api/V8/Config/services/middlewares.php`,
//! `Api/V8/OAuth2/Repository/ClientRepository.php`, `Api/V8/Param/*`,
//! `Api/V8/JsonApi/*`, `Api/V8/Service/ModuleService.php`; SuiteCRM 8 routes
//! `/Api/access_token` and `/Api/V8` to them, `config/services/legacy/api_paths.yaml`)
//! on league/oauth2-server 8.4 (`AbstractGrant`, `OAuthServerException`,
//! `BearerTokenResponse`, `BearerTokenValidator`):
//!
//! - `POST /Api/access_token`, a form: `grant_type=client_credentials`, the
//!   client from `client_id`/`client_secret` in the body, else from a Basic
//!   header (base64 of `id:secret`, not form-decoded). The stored secret is
//!   its sha256, and the client must be a client-credentials client. Reply
//!   `{"token_type":"Bearer","expires_in":3600,"access_token":<JWT>}`. A bad
//!   secret is HTTP 401 `invalid_client`; no `client_id` 400
//!   `invalid_request`; another grant 400 `unsupported_grant_type`; an
//!   unknown client id makes the bean look-up throw: HTTP 500.
//! - `GET /Api/V8/module/{module}` with `Authorization: Bearer <JWT>`: no
//!   header, or a token expired or never issued, is HTTP 401 `access_denied`.
//!   Query parameters are PHP arrays: `filter[<field>][<op>]=value` (fields
//!   of the module, operators eq, neq, gt, gte, lt, lte, like) joined by
//!   `filter[operator]` (and, or), `fields[<module>]=a,b`, `page[size]`,
//!   `page[number]`, `sort`; anything else is HTTP 400 with a JSON:API
//!   `errors` object. `Api/V8/JsonApi/Repository/Filter::parseWhere` writes
//!   each `filter[<field>][<op>]` as `contacts.<field> <OP> <quoted value>`
//!   (`$db->quoted`: the value is one SQL string whatever it holds, `%` and
//!   `_` included) and joins them with the operator; so `like` is MySQL's
//!   `LIKE` with the value as its pattern (`%`, `_`, `\` escapes, letters in
//!   either case), `eq` the stored text exactly. One field takes one value per
//!   operator (a PHP array key), so a search over several fields names each.
//!   `page[size]` bounds the records (no cap of its own).
//!   Records are `{"type":"Contact","id":<uuid>,"attributes":{...}}` (the
//!   bean's object name) with the bean's values as the database holds them
//!   (`AttributeObjectHelper` decodes nothing): text as SuiteCRM saves it,
//!   HTML-encoded ([`saved_text`]). No match is
//!   `{"meta":{"message":...},"data":[]}`.
//!
//! This CRM compares with `eq`, `neq` and `like`, and `gt`, `gte`, `lt`,
//! `lte` on `date_modified` only (other fields: HTTP 400 here, a real
//! SuiteCRM would run them). `date_modified` is a `datetime` column in UTC
//! (`TimeDate::nowDb()`, `Y-m-d H:i:s`, set by every save), compared with
//! the quoted value as MySQL compares a datetime with a literal; a value
//! that is not such a date (MySQL would compare it as text, silently wrong)
//! is HTTP 400 here, so a recipe writing `since` the wrong way fails.
//!
//! Paging (`Api/V8/Service/ModuleService::getRecords`,
//! `Api/V8/Param/PageParams.php`): `page[size]` and `page[number]` are
//! strings greater than 0; the rows are `LIMIT (number - 1) * size, size`
//! of the sorted list. `sort` (`Api/V8/Param/Options/Sort.php`,
//! `Api/V8/JsonApi/Repository/Sort::parseOrderBy`) is ONE field of the
//! bean, `-` before it for descending (`[\w-]` only: no list); an unknown
//! field is HTTP 400 `Sort field ... is not found`. Without it the order
//! is the database's (insertion order here).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::fields;
use super::sugar::{mysql_like, saved_text};
use crate::crm::{Answer, Crm, Seen};

/// Token lifetime: `new DateInterval('PT1H')` for every grant.
pub const TOKEN_LIFE: Duration = Duration::from_secs(3600);

/// The Contacts attributes this CRM has: names and the five phone fields.
const ATTRIBUTES: &[&str] = &[
    "first_name",
    "last_name",
    "phone_home",
    "phone_mobile",
    "phone_work",
    "phone_other",
    "phone_fax",
];

/// A contact: id and attributes.
#[derive(Clone)]
pub struct Contact {
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    /// When it was last saved, UTC, `Y-m-d H:i:s`.
    pub date_modified: String,
}

impl Contact {
    /// A contact saved through SuiteCRM: every text as [`saved_text`]
    /// stores it, phones named by their field, the others empty.
    pub fn saved(id: &str, first: &str, last: &str, phones: &[(&str, &str)]) -> Self {
        let attributes = ATTRIBUTES
            .iter()
            .map(|a| {
                let typed = match *a {
                    "first_name" => first,
                    "last_name" => last,
                    field => phones
                        .iter()
                        .find(|(f, _)| *f == field)
                        .map_or("", |(_, v)| *v),
                };
                ((*a).to_owned(), saved_text(typed))
            })
            .collect();
        Self {
            id: id.into(),
            attributes,
            date_modified: super::sql_now(),
        }
    }

    /// The contact saved again with `field` (a phone field) set to `typed`.
    pub fn edit(&mut self, field: &str, typed: &str) {
        self.attributes.insert(field.to_owned(), saved_text(typed));
        self.date_modified = super::sql_now();
    }

    /// A column: an attribute, `id` or `date_modified`.
    fn column(&self, name: &str) -> &str {
        match name {
            "id" => &self.id,
            "date_modified" => &self.date_modified,
            _ => self.attributes.get(name).map_or("", String::as_str),
        }
    }
}

/// What the CRM knows and counts.
pub struct State {
    pub client_id: String,
    /// sha256 hex of the client secret, as `oauth2clients.secret` holds it.
    pub secret_sha256: String,
    tokens: HashMap<String, Instant>,
    counter: u64,
    /// Tokens minted, and token requests refused.
    pub mints: usize,
    pub refused_mints: usize,
    /// Look-ups answered (a filter on a phone field), and refused with 401.
    pub lookups: usize,
    /// Listings answered that filter no phone field (the directory's
    /// pages), and those that filtered `date_modified`.
    pub pages: usize,
    pub since_pages: usize,
    pub refused: usize,
    /// Each answered look-up's query parameters, as PHP parsed them.
    pub queries: Vec<Value>,
    pub contacts: Vec<Contact>,
}

impl State {
    /// Makes every token issued so far expired.
    pub fn expire_tokens(&mut self) {
        let now = Instant::now();
        for until in self.tokens.values_mut() {
            *until = now;
        }
    }
}

/// A running SuiteCRM.
pub struct SuiteCrm8 {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

impl SuiteCrm8 {
    /// A SuiteCRM with one client-credentials client and two contacts:
    /// Jeanne O'Neil, work phone typed `06 12 34 56 78`, and Paul Durand,
    /// mobile typed `06 98 76 54 32`.
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        Self::with_contacts(
            client_id,
            client_secret,
            vec![
                Contact::saved(
                    "8d2e6f10-3a4b-4c5d-9e8f-0a1b2c3d4e5f",
                    "Jeanne",
                    "O'Neil",
                    &[("phone_work", "06 12 34 56 78")],
                ),
                Contact::saved(
                    "9e3f7021-4b5c-4d6e-8f90-1b2c3d4e5f60",
                    "Paul",
                    "Durand",
                    &[
                        ("phone_work", "01 44 55 66 77"),
                        ("phone_mobile", "06 98 76 54 32"),
                    ],
                ),
            ],
        )
        .await
    }

    /// A SuiteCRM with one client-credentials client and these contacts.
    pub async fn with_contacts(
        client_id: &str,
        client_secret: &str,
        contacts: Vec<Contact>,
    ) -> Self {
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.into(),
            secret_sha256: sha256_hex(client_secret),
            tokens: HashMap::new(),
            counter: 0,
            mints: 0,
            refused_mints: 0,
            lookups: 0,
            pages: 0,
            since_pages: 0,
            refused: 0,
            queries: Vec::new(),
            contacts,
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }
}

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An `OAuthServerException` as `generateHttpResponse` writes it.
fn oauth_error(status: u16, error: &str, description: &str, hint: Option<&str>) -> Answer {
    let mut body = json!({"error": error, "error_description": description});
    if let Some(hint) = hint {
        body["hint"] = json!(hint);
    }
    body["message"] = json!(description);
    Answer::Reply(status, "application/json", body.to_string())
}

fn access_denied(hint: &str) -> Answer {
    oauth_error(
        401,
        "access_denied",
        "The resource owner or authorization server denied the request.",
        Some(hint),
    )
}

/// A JSON:API error as `ParamsMiddleware` answers a bad parameter.
fn bad_param(detail: &str) -> Answer {
    Answer::Reply(
        400,
        "application/json",
        json!({"errors": {"status": 400, "title": null, "detail": detail}}).to_string(),
    )
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    let path = seen.target.split('?').next().unwrap_or("");
    match (seen.method.as_str(), path) {
        ("POST", "/Api/access_token") => token(state, seen),
        ("GET", p) if p.starts_with("/Api/V8/module/") => {
            let module = &p["/Api/V8/module/".len()..];
            module_records(state, seen, module)
        }
        _ => Answer::Reply(
            404,
            "application/json",
            json!({"message": "Not found"}).to_string(),
        ),
    }
}

fn token(state: &mut State, seen: &Seen) -> Answer {
    // Slim parses a form body; without one no parameter is seen.
    let form = if seen
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        fields(&seen.text())
    } else {
        HashMap::new()
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        state.refused_mints += 1;
        return oauth_error(
            400,
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
            Some("Check that all required parameters have been provided"),
        );
    }
    let basic = seen
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(i, s)| (i.to_owned(), s.to_owned()))
        });
    let client_id = form
        .get("client_id")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.0.clone()));
    let secret = form
        .get("client_secret")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.1.clone()));
    let Some(client_id) = client_id else {
        state.refused_mints += 1;
        return oauth_error(
            400,
            "invalid_request",
            "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed.",
            Some("Check the `client_id` parameter"),
        );
    };
    if client_id != state.client_id {
        state.refused_mints += 1;
        return Answer::Reply(
            500,
            "application/json",
            json!({"message": "Slim Application Error"}).to_string(),
        );
    }
    if secret.as_deref().map(sha256_hex) != Some(state.secret_sha256.clone()) {
        state.refused_mints += 1;
        return oauth_error(401, "invalid_client", "Client authentication failed", None);
    }
    state.mints += 1;
    state.counter += 1;
    let jti = format!("{:040x}", state.counter * 0x9e37_79b9);
    let header = b64url(br#"{"typ":"JWT","alg":"RS256"}"#);
    let claims = b64url(
        json!({"aud": client_id, "jti": jti, "iat": 1, "nbf": 1, "exp": 3601, "sub": "", "scopes": []})
            .to_string()
            .as_bytes(),
    );
    let jwt = format!("{header}.{claims}.{}", b64url(jti.as_bytes()));
    state
        .tokens
        .insert(jwt.clone(), Instant::now() + TOKEN_LIFE);
    Answer::Reply(
        200,
        "application/json; charset=UTF-8",
        json!({"token_type": "Bearer", "expires_in": TOKEN_LIFE.as_secs(), "access_token": jwt})
            .to_string(),
    )
}

fn module_records(state: &mut State, seen: &Seen, module: &str) -> Answer {
    let Some(header) = seen.header("authorization") else {
        state.refused += 1;
        return access_denied("Missing \"Authorization\" header");
    };
    let jwt = header
        .trim_start()
        .strip_prefix("Bearer")
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .unwrap_or(header)
        .trim();
    if jwt.matches('.').count() != 2 {
        state.refused += 1;
        return access_denied("The JWT string must have two dots");
    }
    let good = state
        .tokens
        .get(jwt)
        .is_some_and(|until| Instant::now() < *until);
    if !good {
        state.refused += 1;
        return access_denied("Access token could not be verified");
    }
    if module != "Contacts" {
        return bad_param(&format!("Module with name {module} is not found"));
    }
    let query = php_query(seen.target.split_once('?').map_or("", |(_, q)| q));
    let Some(params) = query.as_object() else {
        return bad_param("invalid query");
    };
    for key in params.keys() {
        if !["fields", "filter", "page", "sort"].contains(&key.as_str()) {
            return bad_param(&format!(
                "The option \"{key}\" does not exist. Defined options are: \"fields\", \"filter\", \"moduleName\", \"page\", \"sort\"."
            ));
        }
    }
    let selected: Option<Vec<String>> = match params.get("fields") {
        None => None,
        Some(f) => {
            let Some(list) = f.get("Contacts").and_then(Value::as_str) else {
                return bad_param("fields must name the module");
            };
            let list: Vec<String> = list.split(',').map(str::to_owned).collect();
            if let Some(bad) = list.iter().find(|f| !ATTRIBUTES.contains(&f.as_str())) {
                return bad_param(&format!(
                    "The following field in Contact module is not found: {bad}"
                ));
            }
            Some(list)
        }
    };
    let filter = match params.get("filter").map(Filter::parse).transpose() {
        Ok(filter) => filter,
        Err(detail) => return bad_param(&detail),
    };
    let (size, number) = match page(params.get("page")) {
        Ok(page) => page,
        Err(detail) => return bad_param(&detail),
    };
    let sort = match params.get("sort").map(sort_key).transpose() {
        Ok(sort) => sort,
        Err(detail) => return bad_param(&detail),
    };
    let terms = filter.as_ref().map_or(&[][..], |f| &f.terms[..]);
    if terms.iter().any(|(f, _, _)| f.starts_with("phone_")) {
        state.lookups += 1;
    } else {
        state.pages += 1;
        if terms.iter().any(|(f, _, _)| f == "date_modified") {
            state.since_pages += 1;
        }
    }
    state.queries.push(query.clone());
    let mut matching: Vec<&Contact> = state
        .contacts
        .iter()
        .filter(|c| filter.as_ref().is_none_or(|f| f.holds(c)))
        .collect();
    if let Some((field, descending)) = sort {
        matching.sort_by(|a, b| {
            let o = a.column(&field).cmp(b.column(&field));
            if descending {
                o.reverse()
            } else {
                o
            }
        });
    }
    let offset = size.map_or(0, |s| s * number.saturating_sub(1));
    let data: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(size.unwrap_or(usize::MAX))
        .map(|c| {
            let attributes: serde_json::Map<String, Value> = c
                .attributes
                .iter()
                .filter(|(k, _)| selected.as_ref().is_none_or(|s| s.contains(k)))
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({"type": "Contact", "id": c.id, "attributes": attributes})
        })
        .collect();
    let body = if data.is_empty() {
        json!({"meta": {"message": "Request was successful, but there is no result"}, "data": []})
    } else {
        let pages = size.map_or(1, |s| matching.len().div_ceil(s));
        json!({"meta": {"total-pages": pages, "records-on-this-page": data.len()}, "data": data})
    };
    Answer::Reply(200, "application/vnd.api+json", body.to_string())
}

/// `page[size]` and `page[number]`: digits, greater than 0.
fn page(value: Option<&Value>) -> Result<(Option<usize>, usize), String> {
    let Some(value) = value else {
        return Ok((None, 1));
    };
    let read = |name: &str| -> Result<Option<usize>, String> {
        match value.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .filter(|n: &usize| *n > 0)
                .map(Some)
                .ok_or_else(|| format!("page[{name}] must be a number greater than 0")),
        }
    };
    Ok((read("size")?, read("number")?.unwrap_or(1)))
}

/// `sort` as `Sort::parseOrderBy` reads it: one field, `-` for descending.
fn sort_key(value: &Value) -> Result<(String, bool), String> {
    let text = value.as_str().ok_or("sort must be a string")?;
    if text.is_empty() || text.contains(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')) {
        return Err(format!(
            "The option \"sort\" with value {text:?} is invalid."
        ));
    }
    let (field, descending) = match text.strip_prefix('-') {
        Some(rest) => (rest.trim_start_matches('-'), true),
        None => (text, false),
    };
    if !(ATTRIBUTES.contains(&field) || field == "id" || field == "date_modified") {
        return Err(format!("Sort field {field} in Contact module is not found"));
    }
    Ok((field.to_owned(), descending))
}

/// The comparisons this CRM runs.
#[derive(Clone, Copy)]
enum Op {
    Eq,
    Neq,
    Like,
    Gt,
    Gte,
    Lt,
    Lte,
}

/// `filter[...]` as `Api/V8/JsonApi/Repository/Filter::parseWhere` reads it.
struct Filter {
    any: bool,
    terms: Vec<(String, Op, String)>,
}

impl Filter {
    fn parse(value: &Value) -> Result<Self, String> {
        let map = value.as_object().ok_or("filter must be an array")?;
        let mut any = false;
        let mut terms = Vec::new();
        for (field, expr) in map {
            if field == "operator" {
                match expr.as_str().map(str::to_ascii_uppercase).as_deref() {
                    Some("AND") => any = false,
                    Some("OR") => any = true,
                    _ => return Err(format!("Filter operator {expr} is invalid")),
                }
                continue;
            }
            if !ATTRIBUTES.contains(&field.as_str()) && field != "date_modified" {
                return Err(format!(
                    "Filter field {field} in Contact module is not found"
                ));
            }
            let ops = expr
                .as_object()
                .ok_or(format!("Filter field {field} must be an array"))?;
            for (op, v) in ops {
                let op_ = match op.to_ascii_lowercase().as_str() {
                    "eq" => Op::Eq,
                    "neq" => Op::Neq,
                    "like" => Op::Like,
                    "gt" if field == "date_modified" => Op::Gt,
                    "gte" if field == "date_modified" => Op::Gte,
                    "lt" if field == "date_modified" => Op::Lt,
                    "lte" if field == "date_modified" => Op::Lte,
                    "gt" | "gte" | "lt" | "lte" => {
                        return Err(format!("operator {op}: not in this test CRM"))
                    }
                    _ => return Err(format!("Filter operator {op} is invalid")),
                };
                let v = v.as_str().ok_or("Array to string conversion")?;
                if field == "date_modified" && !super::is_sql_datetime(v) {
                    return Err(format!("date_modified compared with {v:?}: not a datetime"));
                }
                terms.push((field.clone(), op_, v.to_owned()));
            }
        }
        Ok(Self { any, terms })
    }

    fn holds(&self, c: &Contact) -> bool {
        let term = |(field, op, v): &(String, Op, String)| {
            let stored = c.column(field);
            // Dates are `Y-m-d H:i:s` both: their text orders as their time.
            match op {
                Op::Eq => stored == v,
                Op::Neq => stored != v,
                Op::Like => mysql_like(stored, v),
                Op::Gt => stored > v.as_str(),
                Op::Gte => stored >= v.as_str(),
                Op::Lt => stored < v.as_str(),
                Op::Lte => stored <= v.as_str(),
            }
        };
        if self.terms.is_empty() {
            true
        } else if self.any {
            self.terms.iter().any(term)
        } else {
            self.terms.iter().all(term)
        }
    }
}

/// A query string as PHP parses it into `$_GET`: `a[b][c]=v` nests;
/// a later value for the same key wins.
pub fn php_query(query: &str) -> Value {
    let mut root = json!({});
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let (base, mut rest) = match key.find('[') {
            Some(i) if i > 0 => (&key[..i], &key[i..]),
            _ => (&key[..], ""),
        };
        let mut path = vec![base.to_owned()];
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            path.push(inner[..end].to_owned());
            rest = &inner[end + 1..];
        }
        let mut at = &mut root;
        for (i, segment) in path.iter().enumerate() {
            if !at.is_object() {
                *at = json!({});
            }
            let Some(map) = at.as_object_mut() else { break };
            if i + 1 == path.len() {
                map.insert(segment.clone(), json!(value));
                break;
            }
            at = map.entry(segment.clone()).or_insert_with(|| json!({}));
        }
    }
    root
}
