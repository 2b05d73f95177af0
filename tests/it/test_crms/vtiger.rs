//! A vTiger CRM webservice (`webservice.php`), as vtiger's
//! `include/Webservices` answers: `getchallenge` gives a token valid for 5
//! minutes and good for one login; `login` wants `accessKey = md5(token +
//! userAccessKey)` and gives a `sessionName`; `query` takes one VTQL
//! `SELECT ... FROM <one module> WHERE ...;`, read strictly as vtiger reads
//! it ([`super::vtql`]), and answers `result` as a list. Every error is
//! HTTP 200 with `{"success":false,"error":{"code":...}}`; a session the
//! CRM dropped answers `INVALID_SESSIONID`, one left idle
//! `SESSION_LEFT_IDLE`, one past its life span `SESSION_EXPIRED`. Sources: vtiger-crm/vtigercrm
//! `webservice.php`, `include/Webservices/` (`Login.php`, `AuthToken.php`,
//! `SessionManager.php`, `Query.php`, `WebServiceErrorCode.php`).
//!
//! It holds Contacts (phone, mobile, homephone, otherphone), Leads (phone,
//! mobile) and Accounts (phone, otherphone), ids `12x`, `10x`, `11x`; the
//! numbers are stored as people type them and compared as MySQL compares
//! strings, so only a query that asks for the stored shape finds them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::vtql::{self, Record};
use super::{fields, md5_hex, query_of};
use crate::crm::{Answer, Crm, Seen};

/// How long a challenge token is good for (vtiger: 5 minutes).
const TOKEN_LIFE: Duration = Duration::from_secs(300);

/// Where a session is in its life (`SessionManager.php`: 30 min idle, 24 h
/// in all).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Life {
    Live,
    Idle,
    Over,
}

/// What the CRM knows and counts.
#[derive(Default)]
pub struct State {
    pub user: String,
    pub access_key: String,
    tokens: Vec<(String, Instant)>,
    /// Live sessions, and how the next use of each ends if not `Live`.
    sessions: HashMap<String, Life>,
    counter: u64,
    /// Successful logins.
    pub logins: usize,
    /// Challenges asked for.
    pub challenges: usize,
    /// Queries answered, and refused for a bad session.
    pub queries: usize,
    pub refused_sessions: usize,
    /// Queries as received (VTQL), and the session each came with.
    pub vtql: Vec<String>,
    pub query_sessions: Vec<String>,
    /// The strings each query compared, as MySQL read them.
    pub values: Vec<Vec<String>>,
    /// The error code of each query refused (syntax, field, module...).
    pub query_errors: Vec<&'static str>,
    /// The records of every module.
    pub records: Vec<Record>,
    /// Drops every session when a query on this module arrives (once).
    pub expire_before: Option<&'static str>,
    /// When set, `getchallenge` answers HTTP 500 (a broken CRM).
    pub broken: bool,
}

impl State {
    /// Drops every session, as vtiger does after 30 minutes idle.
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }

    /// Leaves every session unused past vtiger's idle limit: its next use
    /// answers `SESSION_LEFT_IDLE`.
    pub fn idle_sessions(&mut self) {
        self.sessions.values_mut().for_each(|l| *l = Life::Idle);
    }

    /// Ages every session past its life span: `SESSION_EXPIRED`.
    pub fn age_sessions(&mut self) {
        self.sessions.values_mut().for_each(|l| *l = Life::Over);
    }

    /// Adds a record: `module` one of Contacts, Leads, Accounts; `id` the
    /// record number (the webservice id is the module's prefix, `x`, it).
    pub fn add(&mut self, module: &'static str, id: u32, fields: &[(&'static str, &str)]) {
        let prefix = vtql::MODULES
            .iter()
            .find(|m| m.name == module)
            .map(|m| m.prefix)
            .expect("a known module");
        for (f, _) in fields {
            assert!(
                vtql::MODULES
                    .iter()
                    .any(|m| m.name == module && m.fields.contains(f)),
                "{module} has no field {f}"
            );
        }
        self.records.push(Record {
            module,
            id: format!("{prefix}x{id}"),
            fields: fields.iter().map(|(f, v)| (*f, (*v).to_owned())).collect(),
        });
    }

    /// The modules the queries asked, in order (FROM's word).
    pub fn modules_asked(&self) -> Vec<String> {
        self.vtql
            .iter()
            .map(|q| {
                let at = q.find(" FROM ").map_or(0, |i| i + 6);
                q[at..].split([' ', ';']).next().unwrap_or("").to_owned()
            })
            .collect()
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
        let mut state = State {
            user: user.into(),
            access_key: access_key.into(),
            ..State::default()
        };
        state.add(
            "Contacts",
            345,
            &[
                ("firstname", "Jeanne"),
                ("lastname", "O'Neil"),
                ("phone", "0612345678"),
            ],
        );
        let state = Arc::new(Mutex::new(state));
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
            state.sessions.insert(session.clone(), Life::Live);
            ok(
                json!({"sessionName": session, "userId": "19x1", "version": "0.22", "vtigerVersion": "7.5.0"}),
            )
        }
        ("GET", "query") => {
            let vtql = get("query").to_owned();
            if let Some(module) = state.expire_before {
                if vtql.contains(&format!(" FROM {module} ")) {
                    state.expire_before = None;
                    state.sessions.clear();
                }
            }
            let session = get("sessionName");
            if session.is_empty() {
                return error("AUTHENTICATION_REQUIRED", "Authencation required");
            }
            let refused = match state.sessions.get(session).copied() {
                Some(Life::Live) => None,
                Some(Life::Idle) => Some((
                    "SESSION_LEFT_IDLE",
                    "Session has been invalidated to due lack activity",
                )),
                Some(Life::Over) => Some((
                    "SESSION_EXPIRED",
                    "Session has life span over please login again",
                )),
                None => Some((
                    "INVALID_SESSIONID",
                    "Session Identifier provided is Invalid",
                )),
            };
            if let Some((code, message)) = refused {
                state.sessions.remove(session);
                state.refused_sessions += 1;
                return error(code, message);
            }
            state.queries += 1;
            state.vtql.push(vtql.clone());
            state.query_sessions.push(get("sessionName").to_owned());
            match vtql::parse(&vtql) {
                Ok(query) => {
                    let strings = query.filter.iter().flatten().flat_map(|c| &c.values);
                    let strings = strings.filter_map(|v| match v {
                        vtql::Val::Str(s) => Some(s.clone()),
                        vtql::Val::Num(_) => None,
                    });
                    state.values.push(strings.collect());
                    ok(vtql::run(&query, &state.records))
                }
                Err(e) => {
                    state.query_errors.push(e.code);
                    error(e.code, &e.message)
                }
            }
        }
        _ => error("UNKNOWN_OPERATION", "Unsupported operation"),
    }
}
