//! Microsoft Dynamics 365 (Dataverse Web API) behind Microsoft Entra ID, as
//! Microsoft Learn describes them:
//!
//! - The client credentials grant of the Microsoft identity platform
//!   (`entra/identity-platform/v2-oauth2-client-creds-grant-flow`, source
//!   MicrosoftDocs/entra-docs `docs/identity-platform/
//!   v2-oauth2-client-creds-grant-flow.md`): `POST
//!   /{tenant}/oauth2/v2.0/token` with `client_id`, `client_secret` (in the
//!   body, or as RFC 6749 Basic), `grant_type=client_credentials` and
//!   `scope` = the resource's identifier with `/.default`; the reply is
//!   `{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,
//!   "access_token":...}`; errors carry `error`, `error_description`
//!   (`AADSTSnnnn: ...`), `error_codes`, `timestamp`, `trace_id`,
//!   `correlation_id`, HTTP 400 (bad scope, unknown tenant or app) or 401
//!   (`invalid_client`, AADSTS7000215, a wrong secret).
//! - Dataverse Web API queries (`power-apps/developer/data-platform/webapi/
//!   query/filter-rows` and `compose-http-requests-handle-errors`, source
//!   MicrosoftDocs/powerapps-docs): `GET [Organization URI]/api/data/v9.2/
//!   contacts?$select=...&$filter=...` with `Accept: application/json`,
//!   `OData-MaxVersion: 4.0`, `OData-Version: 4.0`; the reply is
//!   `{"@odata.context":...,"value":[...]}`; string comparisons are case
//!   insensitive; inside a string literal a single quote is doubled
//!   (`lastname eq 'O''Bryan'`), and a lone one ends the literal, so
//!   `'O'Bryan'` is refused: "There is an unterminated literal at position
//!   21 in 'lastname eq 'O'Bryan''." Errors are `{"error":{"code":...,
//!   "message":...}}`. A token that is missing, expired or for another
//!   resource answers HTTP 401 with `WWW-Authenticate: Bearer
//!   error="invalid_token"` (RFC 6750 section 3) and no body.
//! - String functions in `$filter` (same page, "Use OData query functions"
//!   and "Use wildcard characters"; `developer/data-platform/
//!   wildcard-characters.md`): `contains`, `startswith`, `endswith` take
//!   Transact-SQL `LIKE` wildcards in their value: `%` any run of
//!   characters, `_` one character, `[...]` one of a set or range, `[^...]`
//!   one not in it; a wildcard in brackets is literal (`[%]`). So
//!   `contains(telephone1,'%6%1%2%')` is `telephone1 LIKE '%%6%1%2%%'`,
//!   without regard to case; a column without a value (null) matches
//!   nothing.
//! - Phone columns of a contact (`telephone1` Business Phone, `telephone2`
//!   Home Phone, `telephone3`, `mobilephone`) are single-line text kept as
//!   typed: Dataverse neither normalizes nor validates them.
//!
//! - Dates and paging (`webapi/query/filter-rows` "Filter using date
//!   values", `webapi/query/order-rows`, `webapi/query/page-results`): a
//!   `DateTimeOffset` column (`modifiedon`, set by Dataverse on every
//!   change, UTC) compares with `eq`, `gt`, `ge`, `lt`, `le` to a literal
//!   written without quotes (`modifiedon gt 2026-12-07T14:00:00Z`); a
//!   quoted one is refused ("A binary operator with incompatible types was
//!   detected. Found operand types 'Edm.DateTimeOffset' and 'Edm.String'
//!   for operator kind 'GreaterThan'."). `$orderby=column [asc|desc]`.
//!   Pages: `Prefer: odata.maxpagesize=n` (at most 5000, the default)
//!   answers n rows with `Preference-Applied` and, when more rows match,
//!   `@odata.nextLink`: the whole url of the next page, the same query
//!   options plus `$skiptoken` (a paging cookie); "don't change the
//!   nextLink value or append additional query options to it" (a query
//!   option given twice is a 400 here, as OData refuses it). `$top` does
//!   not page.
//!
//! A token is only good at the organization its scope named, and only until
//! its `expires_in`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use super::{fields, query_of};
use crate::crm::{Answer, Crm, Seen};

/// The entity set the recipe queries.
pub const CONTACTS_PATH: &str = "/api/data/v9.2/contacts";

/// A contact: its phone columns as typed (empty: null), contactid, full
/// name.
#[derive(Debug, Clone)]
pub struct Contact {
    pub telephone1: &'static str,
    pub telephone2: &'static str,
    pub telephone3: &'static str,
    pub mobilephone: &'static str,
    pub id: String,
    pub name: String,
    /// `modifiedon`.
    pub modifiedon: time::OffsetDateTime,
}

impl Contact {
    /// A contact with no phone yet.
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            telephone1: "",
            telephone2: "",
            telephone3: "",
            mobilephone: "",
            id: id.into(),
            name: name.into(),
            modifiedon: time::OffsetDateTime::from_unix_timestamp(1_763_480_403).unwrap(),
        }
    }
}

/// Jeanne's business phone typed internationally.
pub fn jeanne() -> Contact {
    Contact {
        telephone1: "+33 6 12 34 56 78",
        ..Contact::new("6f3c1d2e-8a4b-ef11-a72d-000d3a4b5c6d", "Jeanne O'Neil")
    }
}

/// Paul's mobile typed nationally.
pub fn paul() -> Contact {
    Contact {
        mobilephone: "06 11 22 33 44",
        ..Contact::new("0a9b8c7d-6e5f-ef11-a72d-000d3a4b5c6d", "Paul Martin")
    }
}

/// Contact columns the recipe may name.
const COLUMNS: [&str; 7] = [
    "modifiedon",
    "telephone1",
    "telephone2",
    "telephone3",
    "mobilephone",
    "contactid",
    "fullname",
];

pub struct State {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of the tokens minted from now on.
    pub expires_in: Duration,
    tokens: HashMap<String, (String, Instant)>,
    counter: u64,
    /// Tokens minted.
    pub mints: usize,
    /// Token requests refused.
    pub refused_logins: usize,
    /// Queries answered.
    pub queries: usize,
    /// Queries refused with 401.
    pub refused: usize,
    /// Queries refused with 400 (a filter OData cannot parse).
    pub malformed: usize,
    /// Every `$filter` received, decoded.
    pub filters: Vec<String>,
    pub contacts: Vec<Contact>,
    /// Pages read by an `@odata.nextLink`.
    pub next_pages: usize,
}

impl State {
    /// Saves a contact as an edit does: replaced (or added), `modifiedon`
    /// now.
    pub fn save(&mut self, mut contact: Contact) {
        contact.modifiedon = time::OffsetDateTime::now_utc();
        self.contacts.retain(|c| c.id != contact.id);
        self.contacts.push(contact);
    }

    /// Queries that looked a caller up (not the directory's pages).
    pub fn lookups(&self) -> usize {
        self.filters
            .iter()
            .filter(|f| f.contains("contains("))
            .count()
    }

    /// Forgets every token, as their expiry does.
    pub fn expire_tokens(&mut self) {
        self.tokens.clear();
    }
}

/// A running Entra ID token endpoint and Dataverse organization on one
/// origin.
pub struct Dynamics {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

impl Dynamics {
    pub async fn start(tenant: &str, client_id: &str, client_secret: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            expires_in: Duration::from_secs(3599),
            tokens: HashMap::new(),
            counter: 0,
            mints: 0,
            refused_logins: 0,
            queries: 0,
            refused: 0,
            malformed: 0,
            filters: Vec::new(),
            contacts: vec![jeanne(), paul()],
            next_pages: 0,
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }
}

fn origin(seen: &Seen) -> String {
    format!("http://{}", seen.header("host").unwrap_or("127.0.0.1"))
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    let path = seen.target.split('?').next().unwrap_or("");
    if seen.method == "POST" {
        if let Some(tenant) = path
            .strip_prefix('/')
            .and_then(|p| p.strip_suffix("/oauth2/v2.0/token"))
        {
            return token(state, seen, tenant);
        }
    }
    if seen.method == "GET" && path == CONTACTS_PATH {
        return contacts(state, seen);
    }
    dataverse_error(
        404,
        "0x80060888",
        &format!("Resource not found for the segment '{path}'."),
    )
}

fn aad_error(state: &mut State, status: u16, error: &str, code: u32, text: &str) -> Answer {
    state.refused_logins += 1;
    Answer::Reply(
        status,
        "application/json; charset=utf-8",
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text} Trace ID: 0b6f4c1e-2d3a-4b5c-9d8e-7f6a5b4c3d2e Correlation ID: 1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6 Timestamp: 2026-11-30 08:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-11-30 08:00:00Z",
            "trace_id": "0b6f4c1e-2d3a-4b5c-9d8e-7f6a5b4c3d2e",
            "correlation_id": "1c2d3e4f-5a6b-7c8d-9e0f-a1b2c3d4e5f6",
        })
        .to_string(),
    )
}

fn token(state: &mut State, seen: &Seen, tenant: &str) -> Answer {
    if tenant != state.tenant {
        return aad_error(state, 400, "invalid_tenant", 90002, &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."));
    }
    let form = fields(&seen.text());
    let get = |k: &str| form.get(k).cloned();
    if get("grant_type").as_deref() != Some("client_credentials") {
        return aad_error(
            state,
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    // Client authentication: in the body, or Basic as RFC 6749 2.3.1.
    let basic = seen
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let dec = |s: &str| fields(&format!("x={s}")).remove("x").unwrap_or_default();
            Some((dec(id), dec(secret)))
        });
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => (
            get("client_id").unwrap_or_default(),
            get("client_secret").unwrap_or_default(),
        ),
    };
    if id != state.client_id {
        return aad_error(
            state,
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{id}' was not found in the directory '{tenant}'."
            ),
        );
    }
    if secret != state.client_secret {
        return aad_error(state, 401, "invalid_client", 7000215, &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{id}'."));
    }
    let Some(scope) = get("scope") else {
        return aad_error(
            state,
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let Some(resource) = scope.strip_suffix("/.default") else {
        return aad_error(state, 400, "invalid_scope", 1002012, &format!("The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."));
    };
    if resource.trim_end_matches('/') != origin(seen) {
        return aad_error(state, 400, "invalid_resource", 500011, &format!("The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."));
    }
    state.mints += 1;
    state.counter += 1;
    let token = format!(
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.dataverse{}",
        state.counter
    );
    state.tokens.insert(
        token.clone(),
        (origin(seen), Instant::now() + state.expires_in),
    );
    Answer::Reply(
        200,
        "application/json; charset=utf-8",
        json!({
            "token_type": "Bearer",
            "expires_in": state.expires_in.as_secs(),
            "ext_expires_in": state.expires_in.as_secs(),
            "access_token": token,
        })
        .to_string(),
    )
}

fn dataverse_error(status: u16, code: &str, message: &str) -> Answer {
    Answer::Reply(
        status,
        "application/json; odata.metadata=minimal",
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
}

fn contacts(state: &mut State, seen: &Seen) -> Answer {
    let token = seen
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let good = state
        .tokens
        .get(token)
        .is_some_and(|(audience, until)| *audience == origin(seen) && Instant::now() < *until);
    if !good {
        state.refused += 1;
        return Answer::Headed(
            401,
            "text/plain",
            vec![(
                "www-authenticate",
                format!(
                    "Bearer error=\"invalid_token\", error_description=\"The access token is missing, expired or for another resource\", authorization_uri=\"https://login.microsoftonline.com/{}/oauth2/authorize\", resource_id=\"{}\"",
                    state.tenant,
                    origin(seen)
                ),
            )],
            String::new(),
        );
    }
    let query = query_of(&seen.target);
    let raw = seen.target.split_once('?').map_or("", |(_, q)| q);
    let mut named = std::collections::HashSet::new();
    for (name, _) in url::form_urlencoded::parse(raw.as_bytes()) {
        if !named.insert(name.clone()) {
            return dataverse_error(
                400,
                "0x80060888",
                &format!("Query option '{name}' was specified more than once, but it must be specified at most once."),
            );
        }
    }
    for name in query.keys() {
        if name.starts_with('$')
            && !matches!(
                name.as_str(),
                "$select" | "$filter" | "$top" | "$orderby" | "$skiptoken"
            )
        {
            return dataverse_error(
                400,
                "0x80060888",
                &format!("The query parameter {name} is not supported"),
            );
        }
    }
    let order = match query.get("$orderby").map(|o| {
        let mut words = o.split(' ').filter(|w| !w.is_empty());
        (
            words.next().unwrap_or(""),
            words.next().unwrap_or("asc"),
            words.next(),
        )
    }) {
        None => None,
        Some((column, dir @ ("asc" | "desc"), None)) if COLUMNS.contains(&column) => {
            Some((column.to_owned(), dir == "asc"))
        }
        Some((column, _, _)) if !COLUMNS.contains(&column) => return unknown_column(column),
        Some(_) => return syntax(&query["$orderby"], 0),
    };
    let select: Vec<&str> = query
        .get("$select")
        .map_or(Vec::new(), |s| s.split(',').collect());
    if let Some(bad) = select.iter().find(|c| !COLUMNS.contains(c)) {
        return unknown_column(bad);
    }
    // No $filter: every row.
    let predicate = match query.get("$filter") {
        None => None,
        Some(filter) => {
            state.filters.push(filter.clone());
            match Filter::parse(filter) {
                Ok(p) => Some(p),
                Err(answer) => {
                    state.malformed += 1;
                    return answer;
                }
            }
        }
    };
    // The paging cookie names the last contactid read: the next page
    // starts after it (rows are kept in contactid order when paged).
    let after = match query.get("$skiptoken") {
        None => None,
        Some(cookie) => match cookie
            .split("last=")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        {
            Some(id) => Some(id.to_owned()),
            None => {
                return dataverse_error(400, "0x80040203", "Invalid paging cookie.");
            }
        },
    };
    if after.is_some() {
        state.next_pages += 1;
    }
    state.queries += 1;
    let top = query
        .get("$top")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let mut matching: Vec<&Contact> = state
        .contacts
        .iter()
        .filter(|c| predicate.as_ref().is_none_or(|p| p.holds(c)))
        .collect();
    matching.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some((column, ascending)) = &order {
        let key = |c: &Contact| match column.as_str() {
            "modifiedon" => format!("{:040}", c.modifiedon.unix_timestamp_nanos()),
            col => column_of(c, col).unwrap_or("").to_lowercase(),
        };
        matching.sort_by_key(|c| key(c));
        if !ascending {
            matching.reverse();
        }
    }
    if let Some(last) = &after {
        if order.as_ref().is_some_and(|(c, _)| c != "contactid") {
            return dataverse_error(400, "0x80040203", "Invalid paging cookie.");
        }
        matching.retain(|c| c.id > *last);
    }
    let max_page = seen
        .header("prefer")
        .and_then(|p| {
            p.split(',')
                .find_map(|o| o.trim().strip_prefix("odata.maxpagesize="))
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .filter(|n| *n > 0);
    let page = if top == usize::MAX {
        max_page.unwrap_or(5000).min(5000)
    } else {
        top
    };
    let more = top == usize::MAX && matching.len() > page;
    let rows: Vec<_> = matching
        .iter()
        .take(page)
        .map(|c| {
            let mut row = serde_json::Map::new();
            row.insert("@odata.etag".into(), json!("W/\"4812345\""));
            for column in &select {
                let value = match *column {
                    "modifiedon" => json!(c
                        .modifiedon
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap()),
                    _ => json!(column_of(c, column)),
                };
                row.insert((*column).into(), value);
            }
            serde_json::Value::Object(row)
        })
        .collect();
    let mut reply = json!({
        "@odata.context": format!("{}/api/data/v9.2/$metadata#contacts({})", origin(seen), select.join(",")),
        "value": rows,
    });
    if more {
        let last = &matching[page - 1].id;
        let number = query
            .get("$skiptoken")
            .and_then(|c| {
                c.split("pagenumber=\"")
                    .nth(1)?
                    .split('"')
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
            .unwrap_or(1)
            + 1;
        let cookie = format!(
            "<cookie pagenumber=\"{number}\" pagingcookie=\"last={last}\" istracking=\"False\" />"
        );
        let mut options: Vec<(String, String)> = ["$select", "$filter", "$orderby"]
            .iter()
            .filter_map(|o| query.get(*o).map(|v| ((*o).to_owned(), v.clone())))
            .collect();
        options.push(("$skiptoken".into(), cookie));
        let encoded: Vec<String> = options
            .iter()
            .map(|(n, v)| {
                let v: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
                format!("{n}={}", v.replace('+', "%20"))
            })
            .collect();
        reply["@odata.nextLink"] = json!(format!(
            "{}{CONTACTS_PATH}?{}",
            origin(seen),
            encoded.join("&")
        ));
    }
    let mut headers = Vec::new();
    if let (Some(n), true) = (max_page, top == usize::MAX) {
        headers.push(("preference-applied", format!("odata.maxpagesize={n}")));
    }
    Answer::Headed(
        200,
        "application/json; odata.metadata=minimal",
        headers,
        reply.to_string(),
    )
}

fn unknown_column(name: &str) -> Answer {
    dataverse_error(
        400,
        "0x80060888",
        &format!(
            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.contact'."
        ),
    )
}

/// A column's value; `None` for a phone column without one (null).
fn column_of<'a>(c: &'a Contact, column: &str) -> Option<&'a str> {
    let value = match column {
        "telephone1" => c.telephone1,
        "telephone2" => c.telephone2,
        "telephone3" => c.telephone3,
        "mobilephone" => c.mobilephone,
        "contactid" => &c.id,
        _ => &c.name,
    };
    (!value.is_empty()).then_some(value)
}

/// A `$filter` of `eq` comparisons and `contains`/`startswith`/`endswith`
/// calls joined by `or`, `and` and parentheses, parsed as OData reads it.
enum Filter {
    Eq(String, String),
    /// A string function as the `LIKE` pattern it stands for.
    Like(String, String),
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    /// `modifiedon` compared to a date: the operator, the date.
    Time(String, time::OffsetDateTime),
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Open,
    Close,
    Comma,
}

impl Filter {
    fn parse(text: &str) -> Result<Filter, Answer> {
        let tokens = tokens(text)?;
        let mut at = 0;
        let filter = Self::or(&tokens, &mut at, text)?;
        if at != tokens.len() {
            return Err(syntax(text, tokens[at].0));
        }
        Ok(filter)
    }

    fn or(tokens: &[(usize, Token)], at: &mut usize, text: &str) -> Result<Filter, Answer> {
        let mut left = Self::and(tokens, at, text)?;
        while matches!(tokens.get(*at), Some((_, Token::Word(w))) if w == "or") {
            *at += 1;
            left = Filter::Or(Box::new(left), Box::new(Self::and(tokens, at, text)?));
        }
        Ok(left)
    }

    fn and(tokens: &[(usize, Token)], at: &mut usize, text: &str) -> Result<Filter, Answer> {
        let mut left = Self::primary(tokens, at, text)?;
        while matches!(tokens.get(*at), Some((_, Token::Word(w))) if w == "and") {
            *at += 1;
            left = Filter::And(Box::new(left), Box::new(Self::primary(tokens, at, text)?));
        }
        Ok(left)
    }

    fn primary(tokens: &[(usize, Token)], at: &mut usize, text: &str) -> Result<Filter, Answer> {
        let end = text.chars().count();
        let expect = |at: &mut usize, want: Token| match tokens.get(*at) {
            Some((_, t)) if *t == want => {
                *at += 1;
                Ok(())
            }
            Some((pos, _)) => Err(syntax(text, *pos)),
            None => Err(syntax(text, end)),
        };
        match tokens.get(*at) {
            Some((_, Token::Open)) => {
                *at += 1;
                let inner = Self::or(tokens, at, text)?;
                expect(at, Token::Close)?;
                Ok(inner)
            }
            Some((_, Token::Word(f)))
                if matches!(f.as_str(), "contains" | "startswith" | "endswith") =>
            {
                *at += 1;
                expect(at, Token::Open)?;
                let column = match tokens.get(*at) {
                    Some((_, Token::Word(c))) if COLUMNS.contains(&c.as_str()) => c.clone(),
                    Some((_, Token::Word(c))) => return Err(unknown_column(c)),
                    Some((pos, _)) => return Err(syntax(text, *pos)),
                    None => return Err(syntax(text, end)),
                };
                *at += 1;
                expect(at, Token::Comma)?;
                let value = match tokens.get(*at) {
                    Some((_, Token::Text(v))) => v.clone(),
                    Some((pos, _)) => return Err(syntax(text, *pos)),
                    None => return Err(syntax(text, end)),
                };
                *at += 1;
                expect(at, Token::Close)?;
                let pattern = match f.as_str() {
                    "contains" => format!("%{value}%"),
                    "startswith" => format!("{value}%"),
                    _ => format!("%{value}"),
                };
                Ok(Filter::Like(column, pattern))
            }
            Some((pos, Token::Word(column))) => {
                if !COLUMNS.contains(&column.as_str()) {
                    return Err(unknown_column(column));
                }
                if column == "modifiedon" {
                    let op = match tokens.get(*at + 1) {
                        Some((_, Token::Word(op)))
                            if matches!(op.as_str(), "eq" | "gt" | "ge" | "lt" | "le") =>
                        {
                            op.clone()
                        }
                        _ => return Err(syntax(text, *pos)),
                    };
                    let kind = match op.as_str() {
                        "eq" => "Equal",
                        "gt" => "GreaterThan",
                        "ge" => "GreaterThanOrEqual",
                        "lt" => "LessThan",
                        _ => "LessThanOrEqual",
                    };
                    return match tokens.get(*at + 2) {
                        Some((p, Token::Word(value))) => {
                            let t = time::OffsetDateTime::parse(
                                value,
                                &time::format_description::well_known::Rfc3339,
                            )
                            .map_err(|_| syntax(text, *p))?;
                            *at += 3;
                            Ok(Filter::Time(op, t))
                        }
                        Some((_, Token::Text(_))) => Err(dataverse_error(
                            400,
                            "0x80060888",
                            &format!("A binary operator with incompatible types was detected. Found operand types 'Edm.DateTimeOffset' and 'Edm.String' for operator kind '{kind}'."),
                        )),
                        Some((p, _)) => Err(syntax(text, *p)),
                        None => Err(syntax(text, end)),
                    };
                }
                match (tokens.get(*at + 1), tokens.get(*at + 2)) {
                    (Some((_, Token::Word(op))), Some((_, Token::Text(value)))) if op == "eq" => {
                        *at += 3;
                        Ok(Filter::Eq(column.clone(), value.clone()))
                    }
                    _ => Err(syntax(text, *pos)),
                }
            }
            Some((pos, _)) => Err(syntax(text, *pos)),
            None => Err(syntax(text, end)),
        }
    }

    fn holds(&self, c: &Contact) -> bool {
        match self {
            // Dataverse compares strings without regard to case; a null
            // column equals and contains nothing.
            Filter::Eq(column, value) => {
                column_of(c, column).is_some_and(|v| v.to_lowercase() == value.to_lowercase())
            }
            Filter::Like(column, pattern) => {
                column_of(c, column).is_some_and(|v| tsql_like(v, pattern))
            }
            Filter::Or(a, b) => a.holds(c) || b.holds(c),
            Filter::And(a, b) => a.holds(c) && b.holds(c),
            Filter::Time(op, t) => match op.as_str() {
                "gt" => c.modifiedon > *t,
                "ge" => c.modifiedon >= *t,
                "lt" => c.modifiedon < *t,
                "le" => c.modifiedon <= *t,
                _ => c.modifiedon == *t,
            },
        }
    }
}

fn syntax(text: &str, at: usize) -> Answer {
    dataverse_error(
        400,
        "0x80060888",
        &format!("Syntax error at position {at} in '{text}'."),
    )
}

/// `value LIKE pattern` as SQL Server reads it under Dataverse's case
/// insensitive collation: `%` any run, `_` one character, `[abc]`/`[a-c]`
/// one of a set or range, `[^...]` one not in it (a wildcard in brackets is
/// literal).
pub fn tsql_like(value: &str, pattern: &str) -> bool {
    let value: Vec<char> = value.to_lowercase().chars().collect();
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    like_at(&value, &pattern)
}

fn like_at(value: &[char], pattern: &[char]) -> bool {
    match pattern.first() {
        None => value.is_empty(),
        Some('%') => (0..=value.len()).any(|skip| like_at(&value[skip..], &pattern[1..])),
        Some('_') => !value.is_empty() && like_at(&value[1..], &pattern[1..]),
        Some('[') => match pattern.iter().position(|c| *c == ']') {
            // An unclosed bracket is a literal `[`.
            None => value.first() == Some(&'[') && like_at(&value[1..], &pattern[1..]),
            Some(close) => {
                let Some(c) = value.first() else {
                    return false;
                };
                let (negated, set) = match pattern.get(1) {
                    Some('^') => (true, &pattern[2..close]),
                    _ => (false, &pattern[1..close]),
                };
                in_set(*c, set) != negated && like_at(&value[1..], &pattern[close + 1..])
            }
        },
        Some(p) => value.first() == Some(p) && like_at(&value[1..], &pattern[1..]),
    }
}

fn in_set(c: char, set: &[char]) -> bool {
    let mut i = 0;
    while i < set.len() {
        if set.get(i + 1) == Some(&'-') && i + 2 < set.len() {
            if set[i] <= c && c <= set[i + 2] {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// The filter's tokens with their character positions; a literal whose
/// closing quote is missing is the error OData gives.
fn tokens(text: &str) -> Result<Vec<(usize, Token)>, Answer> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' => i += 1,
            '(' | ')' | ',' => {
                let token = match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                };
                out.push((i, token));
                i += 1;
            }
            '\'' => {
                let start = i;
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(dataverse_error(
                                400,
                                "0x80060888",
                                &format!(
                                "There is an unterminated literal at position {start} in '{text}'."
                            ),
                            ))
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            value.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            value.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push((start, Token::Text(value)));
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let start = i;
                let mut word = String::new();
                // A date literal (2026-12-07T14:00:00Z) is one token.
                let date = c.is_ascii_digit();
                while let Some(c) = chars.get(i).filter(|c| {
                    c.is_ascii_alphanumeric()
                        || **c == '_'
                        || (date && matches!(**c, '-' | ':' | '.' | '+'))
                }) {
                    word.push(*c);
                    i += 1;
                }
                out.push((start, Token::Word(word)));
            }
            _ => {
                return Err(dataverse_error(
                    400,
                    "0x80060888",
                    &format!(
                        "Syntax error: character '{c}' is not valid at position {i} in '{text}'."
                    ),
                ))
            }
        }
    }
    Ok(out)
}

#[test]
fn tsql_like_reads_wildcards_sets_and_case_as_sql_server() {
    assert!(tsql_like("+33 6 12 34 56 78", "%%6%1%2%3%4%5%6%7%8%%"));
    assert!(tsql_like("06.12.34.56.78", "%6%1%2%3%4%5%6%7%8%"));
    assert!(!tsql_like("06 12 34 56 79", "%6%1%2%3%4%5%6%7%8%"));
    assert!(tsql_like("ABC", "a_c"));
    assert!(tsql_like("a5", "a[0-9]"));
    assert!(!tsql_like("a5", "a[^0-9]"));
    assert!(tsql_like("50%", "50[%]"));
    assert!(!tsql_like("500", "50[%]"));
    assert!(tsql_like("x[y", "x[y"));
}
