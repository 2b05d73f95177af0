//! Zoho CRM as its documentation and its users' logs describe it, on two
//! servers as in production: the accounts server (`accounts.zoho.eu`, ...)
//! mints access tokens, and the API server it names in `api_domain`
//! (`www.zohoapis.eu`, ...) answers the searches.
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
//!   live access tokens per refresh token, the 16th drops the oldest.
//! - Search: `GET /crm/v8/Contacts/search?criteria=(...)` with
//!   `Authorization: Zoho-oauthtoken <token>` (v8/search-records.html):
//!   criteria `(Field:equals:value)` joined by `and`/`or` in parentheses;
//!   `(`, `)` and `,` in a value must be escaped with `\` (Zoho's "Kaizen #30
//!   Parameters in Zoho CRM APIs"); an unescaped one is a malformed query,
//!   HTTP 400. A match answers 200 `{"data": [...], "info": {...}}`, no match
//!   HTTP 204 with no body (v8/status-codes.html). An unknown or expired
//!   token answers 401 `{"code":"INVALID_TOKEN","details":{},"message":
//!   "invalid oauth token","status":"error"}` (solspace/craft-freeform issue
//!   1372 quotes it); no token at all, 401 `AUTHENTICATION_FAILURE`.
//!
//! `equals` here compares the stored value exactly. Zoho documents v8's
//! `equals` as looser ("behaves like contains"), so a recipe that matches
//! here matches there too. The accounts server's `Access Denied` is HTTP 200
//! as Zoho says; some clients report a 400: the gateway fails the token
//! request either way, since the reply has no `access_token`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{fields, query_of};
use crate::crm::{Answer, Crm, Seen};

/// Tokens a refresh token may mint in [`MINT_WINDOW`].
const MINT_LIMIT: usize = 10;
const MINT_WINDOW: Duration = Duration::from_secs(600);
/// Live access tokens per refresh token; a new one drops the oldest.
const LIVE_TOKENS: usize = 15;

/// A contact: id, full name, phone, mobile (as stored).
pub struct Contact {
    pub id: &'static str,
    pub name: &'static str,
    pub phone: &'static str,
    pub mobile: &'static str,
}

pub struct State {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
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
    /// Searches refused with 401, and answered (200 or 204).
    pub refused: usize,
    pub searches: usize,
    /// Every `criteria` received, decoded.
    pub criteria: Vec<String>,
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
            expires_in: Duration::from_secs(3600),
            api_domain: String::new(),
            tokens: VecDeque::new(),
            minted_at: VecDeque::new(),
            counter: 0,
            mints: 0,
            denied: 0,
            refused: 0,
            searches: 0,
            criteria: Vec::new(),
            contacts: vec![
                Contact {
                    id: "554023000000238121",
                    name: "Jeanne O'Neil",
                    phone: "+33612345678",
                    mobile: "",
                },
                Contact {
                    id: "554023000000238177",
                    name: "Paul Martin",
                    phone: "+33 2 98 00 00 00",
                    mobile: "+33698765432",
                },
            ],
        }));
        let shared = Arc::clone(&state);
        let api = Crm::start(move |seen| search(&mut shared.lock().unwrap(), seen)).await;
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

fn reply(status: u16, body: serde_json::Value) -> Answer {
    Answer::Reply(status, "application/json;charset=UTF-8", body.to_string())
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
        json!({"access_token": access, "scope": "ZohoCRM.modules.contacts.READ",
               "api_domain": state.api_domain, "token_type": "Bearer",
               "expires_in": state.expires_in.as_secs()}),
    )
}

fn search(state: &mut State, seen: &Seen) -> Answer {
    if seen.method != "GET" || seen.target.split('?').next() != Some("/crm/v8/Contacts/search") {
        return reply(
            404,
            json!({"code": "INVALID_URL_PATTERN", "details": {}, "message": "Please check if the URL trying to access is a correct one", "status": "error"}),
        );
    }
    let Some(token) = seen
        .header("authorization")
        .and_then(|h| h.strip_prefix("Zoho-oauthtoken "))
    else {
        state.refused += 1;
        return reply(
            401,
            json!({"code": "AUTHENTICATION_FAILURE", "details": {}, "message": "Authentication failed", "status": "error"}),
        );
    };
    let now = Instant::now();
    if !state
        .tokens
        .iter()
        .any(|(t, until)| t == token && now < *until)
    {
        state.refused += 1;
        return reply(
            401,
            json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"}),
        );
    }
    let criteria = query_of(&seen.target)
        .get("criteria")
        .cloned()
        .unwrap_or_default();
    state.criteria.push(criteria.clone());
    let conditions = match parse(&criteria) {
        Ok(c) => c,
        Err(why) => {
            return reply(
                400,
                json!({"code": "INVALID_QUERY", "details": {"reason": why}, "message": "invalid query formed", "status": "error"}),
            )
        }
    };
    state.searches += 1;
    let found: Vec<_> = state
        .contacts
        .iter()
        .filter(|c| conditions.matches(c))
        .map(|c| {
            let (first, last) = c.name.split_once(' ').unwrap_or(("", c.name));
            json!({"id": c.id, "Full_Name": c.name, "First_Name": first, "Last_Name": last,
                   "Phone": c.phone, "Mobile": c.mobile})
        })
        .collect();
    if found.is_empty() {
        return Answer::Reply(204, "application/json;charset=UTF-8", String::new());
    }
    let count = found.len();
    reply(
        200,
        json!({"data": found, "info": {"per_page": 200, "count": count, "page": 1, "more_records": false}}),
    )
}

/// A parsed criteria: one condition, or conditions joined by one operator.
#[derive(Debug, PartialEq)]
pub enum Criteria {
    Equals(String, String),
    Any(Vec<Criteria>),
    All(Vec<Criteria>),
}

impl Criteria {
    fn matches(&self, c: &Contact) -> bool {
        match self {
            Criteria::Equals(field, value) => match field.as_str() {
                "Phone" => c.phone == value,
                "Mobile" => c.mobile == value,
                "Full_Name" => c.name == value,
                _ => false,
            },
            Criteria::Any(list) => list.iter().any(|x| x.matches(c)),
            Criteria::All(list) => list.iter().all(|x| x.matches(c)),
        }
    }
}

/// Reads a criteria as Zoho does: `(Field:equals:value)`, or such groups
/// joined by `and`/`or` inside parentheses; `\` escapes the next character
/// of a value, and an unescaped `(` or `,` in a value is an error.
pub fn parse(text: &str) -> Result<Criteria, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut at = 0;
    let c = group(&chars, &mut at, 0)?;
    if at != chars.len() {
        return Err(format!("unexpected text at {at}"));
    }
    Ok(c)
}

fn group(s: &[char], at: &mut usize, depth: usize) -> Result<Criteria, String> {
    if depth > 8 || s.get(*at) != Some(&'(') {
        return Err(format!("expected ( at {}", *at));
    }
    *at += 1;
    if s.get(*at) == Some(&'(') {
        let mut parts = vec![group(s, at, depth + 1)?];
        let mut op: Option<&str> = None;
        loop {
            if s.get(*at) == Some(&')') {
                *at += 1;
                return Ok(match op {
                    Some("and") => Criteria::All(parts),
                    _ => Criteria::Any(parts),
                });
            }
            let word: String = s[*at..]
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            let this = match word.as_str() {
                "and" => "and",
                "or" => "or",
                _ => return Err(format!("expected and/or at {}", *at)),
            };
            if op.is_some_and(|o| o != this) {
                return Err("mixed and/or without parentheses".into());
            }
            op = Some(this);
            *at += word.len();
            parts.push(group(s, at, depth + 1)?);
        }
    }
    let field: String = s[*at..].iter().take_while(|c| **c != ':').collect();
    *at += field.len() + 1;
    let operator: String = s[(*at).min(s.len())..]
        .iter()
        .take_while(|c| **c != ':')
        .collect();
    *at += operator.len() + 1;
    if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad field {field:?}"));
    }
    if operator != "equals" {
        return Err(format!("unsupported operator {operator:?}"));
    }
    let mut value = String::new();
    loop {
        match s.get(*at) {
            None => return Err("unterminated condition".into()),
            Some('\\') => {
                value.push(*s.get(*at + 1).ok_or("dangling backslash")?);
                *at += 2;
            }
            Some(')') => {
                *at += 1;
                return Ok(Criteria::Equals(field, value));
            }
            Some(c @ ('(' | ',')) => return Err(format!("unescaped {c:?} in a value")),
            Some(c) => {
                value.push(*c);
                *at += 1;
            }
        }
    }
}

#[test]
fn criteria_are_read_as_zoho_reads_them() {
    let eq = |f: &str, v: &str| Criteria::Equals(f.into(), v.into());
    assert_eq!(parse("(Phone:equals:+336)"), Ok(eq("Phone", "+336")));
    assert_eq!(
        parse("((Phone:equals:1)or(Mobile:equals:2))"),
        Ok(Criteria::Any(vec![eq("Phone", "1"), eq("Mobile", "2")]))
    );
    assert_eq!(
        parse(r"(Phone:equals:a\(b\)\,c\\)"),
        Ok(eq("Phone", r"a(b),c\"))
    );
    assert!(parse("(Phone:equals:1)or(Phone:equals:2)").is_err());
    assert!(parse("(Phone:equals:a,b)").is_err());
    assert!(parse("(Phone:equals:1)or(Phone:starts_with:)").is_err());
    assert!(parse("((Phone:equals:1)or(Mobile:equals:2)and(Phone:equals:3))").is_err());
}
