//! Salesforce, as its documentation describes the pieces a caller look-up
//! uses:
//!
//! - The OAuth 2.0 client credentials flow (Salesforce Help, "OAuth 2.0
//!   Client Credentials Flow for Server-to-Server Integration",
//!   `remoteaccess_oauth_client_credentials_flow`): `POST
//!   https://MyDomainName.my.salesforce.com/services/oauth2/token` with the
//!   form `grant_type=client_credentials`, `client_id`, `client_secret`, on
//!   the org's My Domain only. The reply has `access_token`, `signature`,
//!   `scope`, `instance_url`, `id`, `token_type` (`Bearer`) and `issued_at`,
//!   and no `expires_in`: the token lives as long as the org's session
//!   timeout. Errors are HTTP 400 `{"error":"invalid_client",
//!   "error_description":"invalid client credentials"}` (and
//!   `invalid_client_id`, `unsupported_grant_type`).
//! - The REST API search resource (REST API Developer Guide,
//!   `resources_search.htm` and `dome_search.htm`): `GET
//!   /services/data/vXX.X/search/?q=<SOSL>` answering `{"searchRecords":
//!   [{"attributes":{"type":"Contact","url":...},"Id":...,"Name":...}]}`.
//!   REST errors are a list `[{"message":...,"errorCode":...}]`; a token the
//!   org no longer knows answers HTTP 401 `INVALID_SESSION_ID`, a query SOSL
//!   cannot parse HTTP 400 `MALFORMED_SEARCH`.
//! - SOSL `FIND {SearchQuery}` (SOQL and SOSL Reference,
//!   `sforce_api_calls_sosl_find.htm`): terms joined by `OR`; the characters
//!   `? & | ! { } [ ] ( ) ^ ~ * : \ " ' + -` are reserved and "an error occurs
//!   if you do not precede reserved characters with a backslash". Here an
//!   unescaped reserved character is always refused: the wildcards, phrases
//!   and grouping it could also mean are how a caller would widen the search,
//!   so this CRM treats them as the injection they would be.
//! - `IN PHONE FIELDS` compares the digits of a phone number: a stored
//!   `+33 6 12 34 56 78` is found by `\+33612345678`, a stored
//!   `06 12 34 56 78` by `0612345678`. Salesforce keeps phone numbers as
//!   typed (Help article 000385963) and its own sample phone search (SOAP
//!   API Developer Guide, `sample_search_call.htm`) passes bare digits
//!   (`4155551212`) to `FIND {...} IN Phone FIELDS`: its phone search
//!   ignores their punctuation. How it tokenizes a number beyond that is
//!   not documented; this CRM compares all the digits.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{fields, query_of};
use crate::crm::{Answer, Crm, Seen};

/// The SOSL characters that must be escaped with `\`.
const RESERVED: &str = "?&|!{}[]()^~*:\\\"'+-";

/// The API version the recipe asks for.
pub const SEARCH_PATH: &str = "/services/data/v62.0/search/";

/// A contact: phone as typed, id, name.
pub type Contact = (&'static str, &'static str, &'static str);

/// What the org knows and counts.
pub struct State {
    pub client_id: String,
    pub client_secret: String,
    tokens: HashSet<String>,
    counter: u64,
    /// Tokens issued.
    pub mints: usize,
    /// Token requests refused.
    pub refused_logins: usize,
    /// Searches answered.
    pub searches: usize,
    /// Searches refused with 401 (unknown or expired token).
    pub refused: usize,
    /// Searches refused with 400 `MALFORMED_SEARCH`.
    pub malformed: usize,
    /// Every SOSL query received, decoded.
    pub sosl: Vec<String>,
    /// The terms of each well-formed query, unescaped.
    pub terms: Vec<Vec<String>>,
    pub contacts: Vec<Contact>,
}

impl State {
    /// Ends every session, as the org's session timeout does.
    pub fn expire_sessions(&mut self) {
        self.tokens.clear();
    }
}

/// A running Salesforce org (token endpoint and REST API on one origin).
pub struct Salesforce {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

/// Jeanne's number typed in E.164 with spaces, Paul's in French national form.
pub const JEANNE: Contact = ("+33 6 12 34 56 78", "003Qy00000JeanIAAA", "Jeanne O'Neil");
pub const PAUL: Contact = ("06 11 22 33 44", "003Qy00000PaulIAAA", "Paul Martin");

impl Salesforce {
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            tokens: HashSet::new(),
            counter: 0,
            mints: 0,
            refused_logins: 0,
            searches: 0,
            refused: 0,
            malformed: 0,
            sosl: Vec::new(),
            terms: Vec::new(),
            contacts: vec![JEANNE, PAUL],
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }
}

fn json_reply(status: u16, body: serde_json::Value) -> Answer {
    Answer::Reply(status, "application/json;charset=UTF-8", body.to_string())
}

fn rest_error(status: u16, code: &str, message: &str) -> Answer {
    json_reply(status, json!([{"message": message, "errorCode": code}]))
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    let path = seen.target.split('?').next().unwrap_or("");
    match (seen.method.as_str(), path) {
        ("POST", "/services/oauth2/token") => token(state, seen),
        ("GET", p) if p == SEARCH_PATH || p == SEARCH_PATH.trim_end_matches('/') => {
            search(state, seen)
        }
        _ => rest_error(404, "NOT_FOUND", "The requested resource does not exist"),
    }
}

fn token(state: &mut State, seen: &Seen) -> Answer {
    let form = fields(&seen.text());
    let get = |k: &str| form.get(k).map(String::as_str);
    let refuse = |state: &mut State, error: &str, description: &str| {
        state.refused_logins += 1;
        json_reply(
            400,
            json!({"error": error, "error_description": description}),
        )
    };
    if get("grant_type") != Some("client_credentials") {
        return refuse(state, "unsupported_grant_type", "grant type not supported");
    }
    if get("client_id") != Some(state.client_id.as_str()) {
        return refuse(state, "invalid_client_id", "client identifier invalid");
    }
    if get("client_secret") != Some(state.client_secret.as_str()) {
        return refuse(state, "invalid_client", "invalid client credentials");
    }
    state.mints += 1;
    state.counter += 1;
    let token = format!("00DQy000000Org!AQ0AQ.session{}", state.counter);
    state.tokens.insert(token.clone());
    let instance = format!("http://{}", seen.header("host").unwrap_or("127.0.0.1"));
    json_reply(
        200,
        json!({
            "access_token": token,
            "signature": "w6Yh0k6m0Ez6jRQ0nTq3Jw8cJp4hZt0pKkq5m5vZ1aA=",
            "scope": "api",
            "instance_url": instance,
            "id": "https://login.salesforce.com/id/00DQy000000OrgAAA/005Qy000000RunAsAAA",
            "token_type": "Bearer",
            "issued_at": "1764489600000",
        }),
    )
}

fn search(state: &mut State, seen: &Seen) -> Answer {
    let token = seen
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if !state.tokens.contains(token) {
        state.refused += 1;
        return rest_error(401, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    let Some(q) = query_of(&seen.target).remove("q") else {
        state.malformed += 1;
        return rest_error(
            400,
            "MALFORMED_SEARCH",
            "No search term found. The search term must be enclosed in braces.",
        );
    };
    state.sosl.push(q.clone());
    let terms = match parse(&q) {
        Ok(terms) => terms,
        Err(message) => {
            state.malformed += 1;
            return rest_error(400, "MALFORMED_SEARCH", &message);
        }
    };
    state.searches += 1;
    let wanted: Vec<String> = terms.iter().map(|t| digits(t)).collect();
    state.terms.push(terms);
    let records: Vec<_> = state
        .contacts
        .iter()
        .filter(|(phone, _, _)| wanted.iter().any(|w| *w == digits(phone)))
        .map(|(_, id, name)| {
            json!({
                "attributes": {"type": "Contact", "url": format!("/services/data/v62.0/sobjects/Contact/{id}")},
                "Id": id,
                "Name": name,
            })
        })
        .collect();
    json_reply(200, json!({ "searchRecords": records }))
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// The terms of `FIND {a OR b} IN PHONE FIELDS RETURNING Contact(Id,Name)`,
/// unescaped; an unescaped reserved character, a missing operand or another
/// query shape is a `MALFORMED_SEARCH` message.
fn parse(sosl: &str) -> Result<Vec<String>, String> {
    let rest = sosl
        .strip_prefix("FIND {")
        .ok_or("No search term found. The search term must be enclosed in braces.")?;
    let mut words: Vec<(String, bool)> = Vec::new();
    let mut word = String::new();
    let mut escaped_any = false;
    let mut chars = rest.char_indices();
    let tail = loop {
        let Some((at, c)) = chars.next() else {
            return Err("line 1:6 mismatched character '<EOF>' expecting '}'".into());
        };
        match c {
            '\\' => {
                let (_, next) = chars
                    .next()
                    .ok_or("line 1:6 mismatched character '<EOF>' expecting '}'")?;
                word.push(next);
                escaped_any = true;
            }
            '}' => {
                words.push((std::mem::take(&mut word), escaped_any));
                break &rest[at + 1..];
            }
            c if c.is_whitespace() => {
                words.push((std::mem::take(&mut word), escaped_any));
                escaped_any = false;
            }
            c if RESERVED.contains(c) => {
                return Err(format!(
                    "line 1:{} mismatched character '{c}' expecting '}}'",
                    at + 6
                ))
            }
            c => word.push(c),
        }
    };
    if !tail.eq_ignore_ascii_case(" IN PHONE FIELDS RETURNING Contact(Id,Name)") {
        return Err(format!("unexpected token: {tail:?}"));
    }
    let words: Vec<(String, bool)> = words.into_iter().filter(|(w, _)| !w.is_empty()).collect();
    let mut terms = Vec::new();
    for (i, (w, escaped)) in words.iter().enumerate() {
        let operator = w == "OR" && !escaped;
        if operator != (i % 2 == 1) {
            return Err(format!("unexpected token: '{w}'"));
        }
        if !operator {
            if w.chars().count() < 2 {
                return Err("search term must be longer than one character".into());
            }
            terms.push(w.clone());
        }
    }
    if terms.is_empty() || words.len().is_multiple_of(2) {
        return Err("search term must be longer than one character".into());
    }
    Ok(terms)
}
