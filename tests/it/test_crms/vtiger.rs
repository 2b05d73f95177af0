//! A vTiger CRM webservice (`webservice.php`), as vtiger's
//! `include/Webservices` answers: `getchallenge` gives a token valid for 5
//! minutes and good for one login; `login` wants `accessKey = md5(token +
//! userAccessKey)` and gives a `sessionName`; `query` takes one VTQL
//! `SELECT ... FROM <one module> WHERE ...;` and answers `result` as a list.
//! Every error is HTTP 200 with `{"success":false,"error":{"code":...}}`;
//! a session the CRM dropped answers `INVALID_SESSIONID`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{fields, md5_hex, query_of};
use crate::crm::{Answer, Crm, Seen};

/// How long a challenge token is good for (vtiger: 5 minutes).
const TOKEN_LIFE: Duration = Duration::from_secs(300);

/// What the CRM knows and counts.
#[derive(Default)]
pub struct State {
    pub user: String,
    pub access_key: String,
    tokens: Vec<(String, Instant)>,
    sessions: HashSet<String>,
    counter: u64,
    /// Successful logins.
    pub logins: usize,
    /// Challenges asked for.
    pub challenges: usize,
    /// Queries answered, and refused for a bad session.
    pub queries: usize,
    pub refused_sessions: usize,
    /// Queries as received (VTQL).
    pub vtql: Vec<String>,
    /// Contacts: phone, id, first name, last name.
    pub contacts: Vec<(String, String, String, String)>,
    /// When set, `getchallenge` answers HTTP 500 (a broken CRM).
    pub broken: bool,
}

impl State {
    /// Drops every session, as vtiger does after 30 minutes idle.
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }
}

/// A running vTiger.
pub struct Vtiger {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

fn error(code: &str, message: &str) -> Answer {
    Answer::Reply(
        200,
        "application/json",
        json!({"success": false, "error": {"code": code, "message": message}}).to_string(),
    )
}

fn ok(result: serde_json::Value) -> Answer {
    Answer::Reply(
        200,
        "application/json",
        json!({"success": true, "result": result}).to_string(),
    )
}

impl Vtiger {
    pub async fn start(user: &str, access_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            user: user.into(),
            access_key: access_key.into(),
            contacts: vec![(
                "0612345678".into(),
                "12x345".into(),
                "Jeanne".into(),
                "O'Neil".into(),
            )],
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }

    pub fn url(&self) -> String {
        format!("{}/webservice.php", self.crm.url())
    }
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    if !seen.target.starts_with("/webservice.php") {
        return Answer::Reply(404, "text/plain", "not found".into());
    }
    let params = if seen.method == "POST" {
        fields(&seen.text())
    } else {
        query_of(&seen.target)
    };
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    match (seen.method.as_str(), get("operation")) {
        ("GET", "getchallenge") => {
            if state.broken {
                return Answer::Reply(500, "text/html", "<h1>Internal Server Error</h1>".into());
            }
            if get("username") != state.user {
                return error("INVALID_USER_CREDENTIALS", "Invalid username or password");
            }
            state.challenges += 1;
            state.counter += 1;
            let token = format!("{:x}{}", 0x5f3e_u32, state.counter);
            state.tokens.push((token.clone(), Instant::now()));
            ok(json!({"token": token, "serverTime": 1, "expireTime": 301}))
        }
        ("POST", "login") => {
            if get("username") != state.user {
                return error("INVALID_USER_CREDENTIALS", "Invalid username or password");
            }
            let key = get("accessKey");
            let found = state.tokens.iter().position(|(t, at)| {
                at.elapsed() < TOKEN_LIFE && md5_hex(&format!("{t}{}", state.access_key)) == key
            });
            let Some(i) = found else {
                return error(
                    "INVALID_AUTH_TOKEN",
                    "Specified token is invalid or expired",
                );
            };
            state.tokens.remove(i);
            state.logins += 1;
            state.counter += 1;
            let session = format!("{:x}{}", 0x7a11_u32, state.counter);
            state.sessions.insert(session.clone());
            ok(
                json!({"sessionName": session, "userId": "19x1", "version": "0.22", "vtigerVersion": "7.5.0"}),
            )
        }
        ("GET", "query") => {
            if !state.sessions.contains(get("sessionName")) {
                state.refused_sessions += 1;
                return error(
                    "INVALID_SESSIONID",
                    "Session Identifier provided is Invalid",
                );
            }
            state.queries += 1;
            let vtql = get("query").to_owned();
            state.vtql.push(vtql.clone());
            match phone_of(&vtql) {
                Ok(phone) => {
                    let rows: Vec<_> = state
                        .contacts
                        .iter()
                        .filter(|c| c.0 == phone)
                        .map(|c| json!({"id": c.1, "firstname": c.2, "lastname": c.3}))
                        .collect();
                    ok(json!(rows))
                }
                Err(msg) => error("QUERY_SYNTAX_ERROR", &msg),
            }
        }
        _ => error("UNKNOWN_OPERATION", "Unsupported operation"),
    }
}

/// The phone a `SELECT id,firstname,lastname FROM Contacts WHERE
/// phone='...';` asks for; the quoted string read as MySQL reads it.
fn phone_of(vtql: &str) -> Result<String, String> {
    let rest = vtql
        .strip_prefix("SELECT id,firstname,lastname FROM Contacts WHERE phone='")
        .ok_or("unexpected query shape")?;
    let mut value = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next() {
            None => return Err("unterminated string".into()),
            Some('\\') => value.push(chars.next().ok_or("dangling backslash")?),
            Some('\'') => {
                let mut peek = chars.clone();
                if peek.next() == Some('\'') {
                    value.push('\'');
                    chars = peek;
                } else {
                    break;
                }
            }
            Some(c) => value.push(c),
        }
    }
    if chars.as_str() != ";" {
        return Err(format!("syntax error near {:?}", chars.as_str()));
    }
    Ok(value)
}
