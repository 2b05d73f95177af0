//! A SugarCRM CE 6.5 / SuiteCRM 7 v4_1 REST API (`service/v4_1/rest.php`),
//! as SuiteCRM 7.14's source answers (salesagility/SuiteCRM):
//!
//! - `service/core/REST/SugarRestJSON.php`: a form POST whose `method` names
//!   the call and whose `rest_data` is JSON, decoded to a PHP array and
//!   passed with `call_user_func_array`: PHP 7 reads its values by position,
//!   PHP 8 its keys as parameter names (an unknown name is a fatal error,
//!   HTTP 500). This CRM wants what both read alike: keys named as the
//!   parameters, in their order. Errors are the `SoapError` object
//!   JSON-encoded with HTTP 200 (`soap/SoapError.php`,
//!   `soap/SoapErrorDefinitions.php`): 10 `Invalid Login`, 11 `Invalid
//!   Session ID`, 20 `Module Does Not Exist`, 40 `Access Denied`.
//! - `service/v4/SugarWebServiceImplv4.php` `login($user_auth, $application,
//!   $name_value_list)`: `user_auth.password` is md5(password) unless
//!   `encryption` is `PLAIN`; the reply is `{"id": <session id>,
//!   "module_name": "Users", "name_value_list": {...}}`.
//! - `get_entry_list($session, $module_name, $query, $order_by, $offset,
//!   $select_fields, $link_name_to_fields_array, $max_results, $deleted,
//!   $favorites)`: the session is checked first (`SoapHelperWebService::
//!   validate_authenticated`), then the where fragment by `SugarSQLValidate`
//!   (refused: number 40). Each entry is `{"id", "module_name",
//!   "name_value_list": {"<field>": {"name", "value"}}}` with the selected
//!   fields (`get_name_value_list_for_fields`).
//!
//! The where fragment is parsed as MySQL reads it (strings in single quotes,
//! `''` and `\` escapes) and evaluated against the contacts by exact
//! comparison of the stored text, as the database compares a `varchar`
//! phone field: `=` and `IN (...)` over the contact columns, `AND`, `OR`
//! and parentheses. Any other fragment gets number 40, as a real Sugar
//! refuses what its validator rejects; a real Sugar would run more SQL than
//! this one understands, never less.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{fields, md5_hex};
use crate::crm::{Answer, Crm, Seen};

/// `login`'s parameters, in order.
const LOGIN_PARAMS: &[&str] = &["user_auth", "application", "name_value_list"];

/// `get_entry_list`'s parameters, in order.
const ENTRY_LIST_PARAMS: &[&str] = &[
    "session",
    "module_name",
    "query",
    "order_by",
    "offset",
    "select_fields",
    "link_name_to_fields_array",
    "max_results",
    "deleted",
    "favorites",
];

/// The Contacts columns a where fragment may name.
const COLUMNS: &[&str] = &[
    "id",
    "first_name",
    "last_name",
    "phone_work",
    "phone_mobile",
];

/// A contact row.
#[derive(Clone)]
pub struct Contact {
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub phone_work: String,
    pub phone_mobile: String,
}

impl Contact {
    fn column(&self, name: &str) -> &str {
        match name {
            "id" => &self.id,
            "first_name" => &self.first_name,
            "last_name" => &self.last_name,
            "phone_work" => &self.phone_work,
            _ => &self.phone_mobile,
        }
    }
}

/// What the CRM knows and counts.
#[derive(Default)]
pub struct State {
    pub user: String,
    pub password: String,
    sessions: HashSet<String>,
    counter: u64,
    /// Successful logins, and refused ones.
    pub logins: usize,
    pub failed_logins: usize,
    /// `get_entry_list` calls answered, and refused for a bad session.
    pub lookups: usize,
    pub refused_sessions: usize,
    /// Where fragments as received, and those refused.
    pub queries: Vec<String>,
    pub refused_queries: usize,
    /// The values each received fragment compared the phone columns with.
    pub compared: Vec<Vec<String>>,
    pub contacts: Vec<Contact>,
}

impl State {
    /// Forgets every session, as PHP does after `session.gc_maxlifetime`.
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }
}

/// A running Sugar.
pub struct Sugar {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

impl Sugar {
    /// A Sugar with the user `user`/`password` and two contacts: Jeanne
    /// O'Neil, work phone typed `+33 6 12 34 56 78`, and Paul Durand, mobile
    /// typed `0698765432`.
    pub async fn start(user: &str, password: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            user: user.into(),
            password: password.into(),
            contacts: vec![
                Contact {
                    id: "1b7c3a52-4d1e-9f0a-6c2b-5e8d7f9a0b1c".into(),
                    first_name: "Jeanne".into(),
                    last_name: "O'Neil".into(),
                    phone_work: "+33 6 12 34 56 78".into(),
                    phone_mobile: String::new(),
                },
                Contact {
                    id: "2c8d4b63-5e2f-a01b-7d3c-6f9e8a0b1c2d".into(),
                    first_name: "Paul".into(),
                    last_name: "Durand".into(),
                    phone_work: "01 44 55 66 77".into(),
                    phone_mobile: "0698765432".into(),
                },
            ],
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }

    /// The REST entry point.
    pub fn url(&self) -> String {
        format!("{}/service/v4_1/rest.php", self.crm.url())
    }
}

fn json_reply(value: Value) -> Answer {
    Answer::Reply(200, "application/json; charset=UTF-8", value.to_string())
}

/// A `SoapError` as `SugarRestJSON::generateFaultResponse` writes it.
fn soap_error(number: i64, name: &str, description: &str) -> Answer {
    json_reply(json!({"name": name, "number": number, "description": description}))
}

/// What PHP answers to a fatal error with `display_errors` off.
fn php_fatal() -> Answer {
    Answer::Reply(500, "text/html; charset=UTF-8", String::new())
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    if seen.target.split('?').next() != Some("/service/v4_1/rest.php") {
        return Answer::Reply(404, "text/html", "<h1>Not Found</h1>".into());
    }
    // $_REQUEST: the query string and the form body.
    let mut params = super::query_of(&seen.target);
    if seen.method == "POST"
        && seen
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        params.extend(fields(&seen.text()));
    }
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or("");
    if !get("input_type").eq_ignore_ascii_case("json")
        || !get("response_type").eq_ignore_ascii_case("json")
    {
        // The plain SugarRest classes: not what a client of this API wants.
        return Answer::Reply(200, "text/html", "<pre>print_r output</pre>".into());
    }
    let args = match ordered_object(get("rest_data")) {
        Ok(args) => args,
        Err(()) => return php_fatal(),
    };
    match get("method") {
        "login" => match named_args(&args, LOGIN_PARAMS) {
            Some(args) => login(state, &args),
            None => php_fatal(),
        },
        "get_entry_list" => match named_args(&args, ENTRY_LIST_PARAMS) {
            Some(args) => get_entry_list(state, &args),
            None => php_fatal(),
        },
        // SoapError::set_error('invalid_call'), which has no definition.
        _ => json_reply(json!({
            "name": "An Undefined Error - invalid_call occurred",
            "number": "-1",
            "description": "There is no error definition for invalid_call",
        })),
    }
}

/// The arguments by parameter name when the keys are a prefix of `params`
/// in order (what PHP 7 by position and PHP 8 by name both read alike).
fn named_args<'a>(
    args: &'a [(String, Value)],
    params: &[&str],
) -> Option<Vec<(&'a str, &'a Value)>> {
    if args.len() > params.len() || args.iter().zip(params).any(|((k, _), p)| k != p) {
        return None;
    }
    Some(args.iter().map(|(k, v)| (k.as_str(), v)).collect())
}

fn arg<'a>(args: &[(&str, &'a Value)], name: &str) -> Option<&'a Value> {
    args.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
}

fn login(state: &mut State, args: &[(&str, &Value)]) -> Answer {
    let auth = arg(args, "user_auth").cloned().unwrap_or(Value::Null);
    let user = auth["user_name"].as_str().unwrap_or("");
    let password = auth["password"].as_str().unwrap_or("");
    let given = if auth["encryption"] == "PLAIN" {
        md5_hex(password)
    } else {
        password.to_owned()
    };
    if user != state.user || given != md5_hex(&state.password) {
        state.failed_logins += 1;
        return soap_error(
            10,
            "Invalid Login",
            "Login attempt failed please check the username and password",
        );
    }
    state.logins += 1;
    state.counter += 1;
    // A PHP session id: 26 characters of [0-9a-v].
    let session = format!("{:0>26}", format!("q7u{}", state.counter));
    state.sessions.insert(session.clone());
    let nv = |n: &str, v: Value| (n.to_owned(), json!({"name": n, "value": v}));
    let list: serde_json::Map<String, Value> = [
        nv("user_id", json!("seed_gateway_id")),
        nv("user_name", json!(state.user)),
        nv("user_language", json!("en_us")),
        nv("user_is_admin", json!(false)),
    ]
    .into_iter()
    .collect();
    json_reply(json!({"id": session, "module_name": "Users", "name_value_list": list}))
}

fn get_entry_list(state: &mut State, args: &[(&str, &Value)]) -> Answer {
    let session = arg(args, "session").and_then(Value::as_str).unwrap_or("");
    if !state.sessions.contains(session) {
        state.refused_sessions += 1;
        return soap_error(11, "Invalid Session ID", "The session ID is invalid");
    }
    if arg(args, "module_name").and_then(Value::as_str) != Some("Contacts") {
        return soap_error(
            20,
            "Module Does Not Exist",
            "This module is not available on this server",
        );
    }
    let query = arg(args, "query").and_then(Value::as_str).unwrap_or("");
    let order_by = arg(args, "order_by").and_then(Value::as_str).unwrap_or("");
    state.queries.push(query.to_owned());
    let parsed = if order_by.is_empty() {
        Where::parse(query)
    } else {
        Err(())
    };
    let Ok(condition) = parsed else {
        state.refused_queries += 1;
        return soap_error(40, "Access Denied", "You do not have access");
    };
    state.lookups += 1;
    state.compared.push(condition.phone_values());
    let offset = arg(args, "offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = arg(args, "max_results")
        .and_then(Value::as_u64)
        .filter(|m| *m > 0)
        .unwrap_or(20) as usize;
    let selected: Vec<String> = arg(args, "select_fields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let matching: Vec<&Contact> = state
        .contacts
        .iter()
        .filter(|c| condition.holds(c))
        .collect();
    let entries: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(max)
        .map(|c| {
            let list: serde_json::Map<String, Value> = COLUMNS
                .iter()
                .filter(|f| selected.is_empty() || selected.iter().any(|s| s == *f))
                .map(|f| ((*f).to_owned(), json!({"name": f, "value": c.column(f)})))
                .collect();
            json!({"id": c.id, "module_name": "Contacts", "name_value_list": list})
        })
        .collect();
    json_reply(json!({
        "result_count": entries.len(),
        "total_count": matching.len(),
        "next_offset": offset + entries.len(),
        "entry_list": entries,
        "relationship_list": [],
    }))
}

/// A JSON object with its keys in the order they were written, as PHP's
/// arrays keep them.
fn ordered_object(text: &str) -> Result<Vec<(String, Value)>, ()> {
    struct Ordered(Vec<(String, Value)>);
    impl<'de> serde::Deserialize<'de> for Ordered {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Ordered;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Ordered, A::Error> {
                    let mut out = Vec::new();
                    while let Some(entry) = map.next_entry::<String, Value>()? {
                        out.push(entry);
                    }
                    Ok(Ordered(out))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_str::<Ordered>(text)
        .map(|o| o.0)
        .map_err(|_| ())
}

/// A where fragment: `OR` of `AND` of comparisons.
enum Where {
    Or(Vec<Where>),
    And(Vec<Where>),
    /// A column equal to one of the strings (`=` is a one-string `IN`).
    In(String, Vec<String>),
}

impl Where {
    fn parse(text: &str) -> Result<Self, ()> {
        let tokens = tokens(text)?;
        let mut at = 0;
        let parsed = Self::or(&tokens, &mut at)?;
        if at != tokens.len() {
            return Err(());
        }
        Ok(parsed)
    }

    fn or(t: &[Token], at: &mut usize) -> Result<Self, ()> {
        let mut terms = vec![Self::and(t, at)?];
        while t.get(*at).is_some_and(|k| k.is_word("or")) {
            *at += 1;
            terms.push(Self::and(t, at)?);
        }
        Ok(Self::Or(terms))
    }

    fn and(t: &[Token], at: &mut usize) -> Result<Self, ()> {
        let mut terms = vec![Self::atom(t, at)?];
        while t.get(*at).is_some_and(|k| k.is_word("and")) {
            *at += 1;
            terms.push(Self::atom(t, at)?);
        }
        Ok(Self::And(terms))
    }

    fn atom(t: &[Token], at: &mut usize) -> Result<Self, ()> {
        let next = |at: &mut usize| {
            let token = t.get(*at).ok_or(())?;
            *at += 1;
            Ok::<_, ()>(token)
        };
        match next(at)? {
            Token::Punct('(') => {
                let inner = Self::or(t, at)?;
                (next(at)? == &Token::Punct(')')).then_some(inner).ok_or(())
            }
            Token::Word(word) => {
                let column = word.to_ascii_lowercase();
                let column = column.strip_prefix("contacts.").unwrap_or(&column);
                if !COLUMNS.contains(&column) {
                    return Err(());
                }
                match next(at)? {
                    Token::Punct('=') => match next(at)? {
                        Token::Str(s) => Ok(Self::In(column.to_owned(), vec![s.clone()])),
                        _ => Err(()),
                    },
                    w if w.is_word("in") => {
                        if next(at)? != &Token::Punct('(') {
                            return Err(());
                        }
                        let mut values = Vec::new();
                        loop {
                            match next(at)? {
                                Token::Str(s) => values.push(s.clone()),
                                _ => return Err(()),
                            }
                            match next(at)? {
                                Token::Punct(',') => {}
                                Token::Punct(')') => break,
                                _ => return Err(()),
                            }
                        }
                        Ok(Self::In(column.to_owned(), values))
                    }
                    _ => Err(()),
                }
            }
            _ => Err(()),
        }
    }

    fn holds(&self, c: &Contact) -> bool {
        match self {
            Self::Or(terms) => terms.iter().any(|w| w.holds(c)),
            Self::And(terms) => terms.iter().all(|w| w.holds(c)),
            Self::In(column, values) => values.iter().any(|v| v == c.column(column)),
        }
    }

    /// Every string compared with a phone column, in order.
    fn phone_values(&self) -> Vec<String> {
        match self {
            Self::Or(terms) | Self::And(terms) => {
                terms.iter().flat_map(Self::phone_values).collect()
            }
            Self::In(column, values) if column.starts_with("phone_") => values.clone(),
            Self::In(..) => Vec::new(),
        }
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Punct(char),
}

impl Token {
    fn is_word(&self, word: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(word))
    }
}

/// MySQL's tokens in a where fragment: words (names, keywords), strings in
/// single quotes (`''` and `\x` escapes), `( ) , =`. Anything else (a
/// comment, a double-quoted string, `;`) is refused.
fn tokens(text: &str) -> Result<Vec<Token>, ()> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' | '=' => {
                chars.next();
                out.push(Token::Punct(c));
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next().ok_or(())? {
                        '\\' => match chars.next().ok_or(())? {
                            'n' => value.push('\n'),
                            'r' => value.push('\r'),
                            't' => value.push('\t'),
                            '0' => value.push('\0'),
                            // Kept with their backslash, for LIKE.
                            c @ ('%' | '_') => {
                                value.push('\\');
                                value.push(c);
                            }
                            other => value.push(other),
                        },
                        '\'' if chars.peek() == Some(&'\'') => {
                            chars.next();
                            value.push('\'');
                        }
                        '\'' => break,
                        other => value.push(other),
                    }
                }
                out.push(Token::Str(value));
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
            _ => return Err(()),
        }
    }
    Ok(out)
}
