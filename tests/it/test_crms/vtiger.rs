//! A vTiger CRM webservice (`webservice.php`), as vtiger's
//! `include/Webservices` answers: `getchallenge` gives a token valid for 5
//! minutes and good for one login; `login` wants `accessKey = md5(token +
//! userAccessKey)` and gives a `sessionName`; `query` takes one VTQL
//! `SELECT ... FROM <one module> WHERE ...;`, read strictly as vtiger reads
//! it ([`super::vtql`]), and answers `result` as a list. Every error is
//! HTTP 200 with `{"success":false,"error":{"code":...}}`. Sources:
//! vtiger-crm/vtigercrm `webservice.php`, `include/Webservices/`
//! (`Login.php`, `AuthToken.php`, `SessionManager.php`, `Query.php`,
//! `WebServiceErrorCode.php`).
//!
//! Sessions end as they do on vtiger 8.2: `SessionManager`'s constructor
//! sets its idle (1800 s) and life-span (86400 s) markers in `$_SESSION`
//! before the session is started, so they are never saved and
//! `SESSION_LEFT_IDLE`/`SESSION_EXPIRED` never come. The session is a PHP
//! session: PHP's garbage collection removes it once unused for
//! `session.gc_maxlifetime` (1440 s by default), and the next call with it
//! gets `INVALID_SESSIONID` (`startSession` finds no `__SessionExists`). The
//! clock is tokio's, so a test pauses and advances it; `gc_maxlifetime` is
//! the php.ini setting.
//!
//! It holds Contacts (phone, mobile, homephone, otherphone, fax), Leads
//! (phone, mobile, fax) and Accounts (phone, otherphone, fax), ids `12x`,
//! `10x`, `11x`; the numbers are stored as people type them and compared as
//! MySQL compares strings (`=`, `IN`, `LIKE` with its wildcards).
//!
//! Text is stored as vtiger 8.2's UI saves it ([`State::add`]): the Save
//! action reads each field with `Vtiger_Request::get`
//! (`includes/http/Request.php`), which runs `vtlib_purify`
//! (`include/utils/VtlibUtils.php`): HTMLPurifier 4.17 writes text with
//! `htmlspecialchars(ENT_NOQUOTES)` (`HTMLPurifier/Generator.php`: `&`,
//! `<`, `>` as `&amp;`, `&lt;`, `&gt;`; quotes and accents as typed), then
//! `str_replace('&amp;', '&')` puts `&` back; `CRMEntity::
//! insertIntoEntityTable` stores that (`from_html` changes only text holding
//! a script tag). So `<` is stored `&lt;` and `>` `&gt;`, once; see
//! [`ui_saved`]. A record created through the webservice is stored as sent
//! ([`State::add_via_webservice`]: `VtigerCRMObject::create` copies the
//! element into `column_fields` and saves, purifying nothing). `query`
//! hands values back as stored: `VtigerModuleOperation::query` reads rows
//! with `PearDatabase::fetchByAssoc`, whose `to_html` is `htmlentities(..,
//! ENT_QUOTES)`, and `DataTransform::sanitizeFields` undoes it with
//! `html_entity_decode(.., ENT_QUOTES)`.
//!
//! Every record has `modifiedtime`, written on each save as `CRMEntity`
//! writes it (`data/CRMEntity.php`: `$date_var = date("Y-m-d H:i:s")`,
//! PHP's default time zone, which config.inc.php sets from
//! `$default_timezone`, `'UTC'` in `config.template.php`); [`State::edit`]
//! changes a field and it. A query compares it and pages through a module
//! as [`super::vtql`] says (`WHERE modifiedtime > '...'`, `ORDER BY id`,
//! `LIMIT offset,n` with n at most 100), which is what the caller
//! directory's syncs ask.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::Instant as Clock;

use serde_json::json;

use super::vtql::{self, Record};
use super::{fields, md5_hex, query_of};
use crate::crm::{Answer, Crm, Seen};

/// How long a challenge token is good for (vtiger: 5 minutes).
const TOKEN_LIFE: Duration = Duration::from_secs(300);

/// PHP's `session.gc_maxlifetime` by default: a session unused this long
/// is garbage.
pub const GC_MAXLIFETIME: Duration = Duration::from_secs(1440);

/// What the CRM knows and counts.
#[derive(Default)]
pub struct State {
    pub user: String,
    pub access_key: String,
    tokens: Vec<(String, Instant)>,
    /// Live sessions, and when each was last used (PHP touches the session
    /// file on every request).
    sessions: HashMap<String, Clock>,
    /// php.ini's `session.gc_maxlifetime`.
    pub gc_maxlifetime: Duration,
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
    /// Drops every session, as PHP's garbage collection (or a cleared
    /// session directory) does.
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }

    /// PHP's garbage collection: sessions unused for `gc_maxlifetime` are
    /// gone (PHP runs it now and then; here before every request, the worst
    /// case for a client).
    fn collect_garbage(&mut self) {
        let now = Clock::now();
        let life = self.gc_maxlifetime;
        self.sessions
            .retain(|_, used| now.duration_since(*used) <= life);
    }

    /// Adds a record as a user typed it in vtiger's edit view: each value
    /// stored as the UI saves it ([`ui_saved`]). `module` one of Contacts,
    /// Leads, Accounts; `id` the record number (the webservice id is the
    /// module's prefix, `x`, it).
    pub fn add(&mut self, module: &'static str, id: u32, fields: &[(&'static str, &str)]) {
        let saved: Vec<(&'static str, String)> =
            fields.iter().map(|(f, v)| (*f, ui_saved(v))).collect();
        let saved: Vec<(&'static str, &str)> =
            saved.iter().map(|(f, v)| (*f, v.as_str())).collect();
        self.add_via_webservice(module, id, &saved);
    }

    /// Adds a record as a webservice `create` stores it: every value as sent.
    pub fn add_via_webservice(
        &mut self,
        module: &'static str,
        id: u32,
        fields: &[(&'static str, &str)],
    ) {
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
        let mut fields: Vec<(&'static str, String)> =
            fields.iter().map(|(f, v)| (*f, (*v).to_owned())).collect();
        if !fields.iter().any(|(f, _)| *f == "modifiedtime") {
            // `date("Y-m-d H:i:s")` in config.inc.php's `$default_timezone`,
            // `UTC` as installed.
            fields.push(("modifiedtime", super::sql_now()));
        }
        self.records.push(Record {
            module,
            id: format!("{prefix}x{id}"),
            fields,
        });
    }

    /// Changes one field of record `id` (`12x345`) as the edit view saves
    /// it ([`ui_saved`]); `modifiedtime` becomes now, as `CRMEntity::
    /// insertIntoCrmEntity` sets it on every save.
    pub fn edit(&mut self, id: &str, field: &'static str, typed: &str) {
        let record = self
            .records
            .iter_mut()
            .find(|r| r.id == id)
            .expect("a known record");
        record
            .fields
            .retain(|(f, _)| *f != field && *f != "modifiedtime");
        record.fields.push((field, ui_saved(typed)));
        record.fields.push(("modifiedtime", super::sql_now()));
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

/// What vtiger 8.2's UI stores for `typed`, a plain-text field value:
/// `vtlib_purify` (HTMLPurifier, then `&amp;` back to `&`) and the Save
/// action's `trim`. `<` becomes `&lt;` and `>` `&gt;`; `&`, quotes, accents
/// stay as typed. Text HTMLPurifier would read as a tag (`<` before a
/// letter, `!` or `/`: `Core.AggressivelyFixLt` armors any other `<`) is
/// removed by a real vtiger; this CRM refuses it rather than guess.
pub fn ui_saved(typed: &str) -> String {
    let chars: Vec<char> = typed.chars().collect();
    for pair in chars.windows(2) {
        assert!(
            !(pair[0] == '<' && (pair[1].is_ascii_alphabetic() || matches!(pair[1], '!' | '/'))),
            "{typed:?}: HTMLPurifier would remove the tag-like text"
        );
    }
    typed.trim().replace('<', "&lt;").replace('>', "&gt;")
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
            gc_maxlifetime: GC_MAXLIFETIME,
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
    state.collect_garbage();
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
            state.sessions.insert(session.clone(), Clock::now());
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
            let Some(used) = state.sessions.get_mut(session) else {
                state.refused_sessions += 1;
                return error(
                    "INVALID_SESSIONID",
                    "Session Identifier provided is Invalid",
                );
            };
            *used = Clock::now();
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
