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
//! - `get_entry_list`'s `max_results` > 0 replaces
//!   `list_max_entries_per_page` (20 by default): at most that many entries.
//!   Values go out as the database holds them (`get_name_value_list_for_fields`
//!   decodes nothing).
//!
//! The where fragment is parsed as MySQL reads it (strings in single quotes,
//! `''` and `\` escapes) and evaluated against the contacts as MySQL
//! compares a `varchar` phone field: `=` and `IN (...)` the stored text
//! exactly, `LIKE` with `%` (any run of characters), `_` (one character),
//! `\` before a character that stands for itself, letters in either case
//! (`utf8_general_ci`); over the contact columns (the five phone fields of
//! Sugar's Person template: `phone_home`, `phone_mobile`, `phone_work`,
//! `phone_other`, `phone_fax`), with `AND`, `OR` and parentheses
//! (`SugarSQLValidate` lets all of these through). Any other fragment gets
//! number 40, as a real Sugar refuses what its validator rejects; a real
//! Sugar would run more SQL than this one understands, never less.
//!
//! The caller directory pages Contacts with the same call (SuiteCRM 7.14
//! `service/v4/SugarWebServiceImplv4.php` `get_entry_list` →
//! `SoapHelperWebService::get_data_list` → `SugarBean::get_list`): an
//! empty `query` is every contact, `offset` skips that many rows of the
//! ordered list, `max_results` caps the page, and `order_by` is validated
//! with the query (`checkQuery` → `SugarSQLValidate::validateQueryClauses`):
//! here a comma list of Contacts columns, each with an optional `ASC` or
//! `DESC`, anything else number 40 (an empty `order_by` leaves the order to
//! MySQL: insertion order here). `date_modified` is a `datetime` column in
//! UTC (`TimeDate::nowDb()`, format `Y-m-d H:i:s`), set by every save
//! (`SugarBean::save`); `date_modified > 'Y-m-d H:i:s'` compares it as
//! MySQL compares a datetime with a literal. A literal that is not such a
//! date (MySQL would compare it as a string, silently wrong) is refused
//! here, so a recipe writing `since` the wrong way fails its test.
//!
//! Text is stored as SuiteCRM 7.14 saves it (`SugarBean::cleanBean` →
//! `purify_html`, `include/utils.php`: `htmlentities` of HTMLPurifier's
//! output, which already wrote `&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;`):
//! see [`saved_text`]. Phone numbers typed with digits and `+ ( ) . - / ;`
//! come back as typed; a name with `'`, `"`, `&`, `<` or an accent does not.

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
    "date_modified",
    "first_name",
    "last_name",
    "phone_home",
    "phone_mobile",
    "phone_work",
    "phone_other",
    "phone_fax",
];

/// The phone fields of a Contact (Sugar's Person template).
pub const PHONES: &[&str] = &[
    "phone_home",
    "phone_mobile",
    "phone_work",
    "phone_other",
    "phone_fax",
];

/// A contact row: its columns as the database holds them.
#[derive(Clone)]
pub struct Contact {
    pub id: String,
    columns: Vec<(&'static str, String)>,
    /// `date_modified`: when it was last saved, UTC, `Y-m-d H:i:s`.
    pub date_modified: String,
}

impl Contact {
    /// A contact saved through Sugar (UI, API or import): every text as
    /// [`saved_text`] stores it; phones named by their field.
    pub fn saved(id: &str, first: &str, last: &str, phones: &[(&str, &str)]) -> Self {
        let columns = COLUMNS
            .iter()
            .filter(|c| **c != "id" && **c != "date_modified")
            .map(|c| {
                let typed = match *c {
                    "first_name" => first,
                    "last_name" => last,
                    field => phones
                        .iter()
                        .find(|(f, _)| *f == field)
                        .map_or("", |(_, v)| *v),
                };
                (*c, saved_text(typed))
            })
            .collect();
        Self {
            id: id.into(),
            columns,
            date_modified: super::sql_now(),
        }
    }

    /// The contact saved again with `field` (a phone field) set to `typed`.
    pub fn edit(&mut self, field: &str, typed: &str) {
        if let Some((_, v)) = self.columns.iter_mut().find(|(c, _)| *c == field) {
            *v = saved_text(typed);
        }
        self.date_modified = super::sql_now();
    }

    fn column(&self, name: &str) -> &str {
        match name {
            "id" => return &self.id,
            "date_modified" => return &self.date_modified,
            _ => {}
        }
        self.columns
            .iter()
            .find(|(c, _)| *c == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// What SuiteCRM 7.10+ stores for `typed` (plain text, no tag-like `<x`,
/// which HTMLPurifier would remove): `htmlentities($purified, ENT_QUOTES |
/// ENT_HTML401)` where HTMLPurifier's text already has `&amp;`, `&lt;`,
/// `&gt;`. So `'` is `&#039;`, `"` `&quot;`, `&` `&amp;amp;`, `<` `&amp;lt;`,
/// `>` `&amp;gt;`, and a Latin-1 letter its HTML 4.01 name (`ë` `&euml;`; also
/// `Œ œ Š š Ÿ €`). Checked against PHP 8.2's `htmlentities` and HTMLPurifier.
/// Digits, spaces and `+ ( ) . - / ;` stay as typed.
pub fn saved_text(typed: &str) -> String {
    let mut out = String::with_capacity(typed.len());
    for c in typed.chars() {
        match c {
            '&' => out.push_str("&amp;amp;"),
            '<' => out.push_str("&amp;lt;"),
            '>' => out.push_str("&amp;gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            c => match entity_name(c) {
                Some(name) => {
                    out.push('&');
                    out.push_str(name);
                    out.push(';');
                }
                None => out.push(c),
            },
        }
    }
    out
}

/// PHP's HTML 4.01 entity name for `c` (`get_html_translation_table`),
/// for U+00A0..U+00FF and the few Latin letters and signs beyond it.
fn entity_name(c: char) -> Option<&'static str> {
    const LATIN1: [&str; 96] = [
        "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
        "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
        "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
        "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave",
        "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve",
        "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc",
        "Uuml", "Yacute", "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring",
        "aelig", "ccedil", "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc",
        "iuml", "eth", "ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash",
        "ugrave", "uacute", "ucirc", "uuml", "yacute", "thorn", "yuml",
    ];
    match c {
        '\u{a0}'..='\u{ff}' => LATIN1.get(c as usize - 0xa0).copied(),
        'Œ' => Some("OElig"),
        'œ' => Some("oelig"),
        'Š' => Some("Scaron"),
        'š' => Some("scaron"),
        'Ÿ' => Some("Yuml"),
        '€' => Some("euro"),
        _ => None,
    }
}

/// `text LIKE pattern` as MySQL matches it: `%` any run of characters
/// (none too), `_` exactly one, `\` before a character makes it literal,
/// letters compared without case.
pub fn mysql_like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let pattern: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
    like_at(&text, &pattern)
}

fn like_at(text: &[char], pattern: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('%', rest)) => (0..=text.len()).any(|skip| like_at(&text[skip..], rest)),
        Some(('_', rest)) => !text.is_empty() && like_at(&text[1..], rest),
        Some(('\\', rest)) if !rest.is_empty() => {
            text.first() == rest.first() && like_at(&text[1..], &rest[1..])
        }
        Some((c, rest)) => text.first() == Some(c) && like_at(&text[1..], rest),
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
    /// `get_entry_list` calls answered that compared a phone field (a
    /// call's look-up), and refused for a bad session.
    pub lookups: usize,
    /// `get_entry_list` calls answered that compared no phone field (the
    /// directory's pages), and those that asked `date_modified > ...`.
    pub pages: usize,
    pub since_pages: usize,
    pub refused_sessions: usize,
    /// Where fragments as received, and those refused.
    pub queries: Vec<String>,
    pub refused_queries: usize,
    /// The values each received fragment compared the phone columns with.
    pub compared: Vec<Vec<String>>,
    /// Each `get_entry_list` reply body sent.
    pub sent: Vec<String>,
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
        Self::with_contacts(
            user,
            password,
            vec![
                Contact::saved(
                    "1b7c3a52-4d1e-9f0a-6c2b-5e8d7f9a0b1c",
                    "Jeanne",
                    "O'Neil",
                    &[("phone_work", "+33 6 12 34 56 78")],
                ),
                Contact::saved(
                    "2c8d4b63-5e2f-a01b-7d3c-6f9e8a0b1c2d",
                    "Paul",
                    "Durand",
                    &[
                        ("phone_work", "01 44 55 66 77"),
                        ("phone_mobile", "0698765432"),
                    ],
                ),
            ],
        )
        .await
    }

    /// A Sugar with the user `user`/`password` and these contacts.
    pub async fn with_contacts(user: &str, password: &str, contacts: Vec<Contact>) -> Self {
        let state = Arc::new(Mutex::new(State {
            user: user.into(),
            password: password.into(),
            contacts,
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
    let parsed = Where::parse(query).and_then(|w| Ok((w, order(order_by)?)));
    let Ok((condition, order)) = parsed else {
        state.refused_queries += 1;
        return soap_error(40, "Access Denied", "You do not have access");
    };
    let phones = condition.phone_values();
    if phones.is_empty() {
        state.pages += 1;
        if condition.reads_date() {
            state.since_pages += 1;
        }
    } else {
        state.lookups += 1;
        state.compared.push(phones);
    }
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
    let mut matching: Vec<&Contact> = state
        .contacts
        .iter()
        .filter(|c| condition.holds(c))
        .collect();
    for (column, descending) in order.iter().rev() {
        // A stable sort, last key first: the keys in order.
        matching.sort_by(|a, b| {
            let o = a.column(column).cmp(b.column(column));
            if *descending {
                o.reverse()
            } else {
                o
            }
        });
    }
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
    let body = json!({
        "result_count": entries.len(),
        "total_count": matching.len(),
        "next_offset": offset + entries.len(),
        "entry_list": entries,
        "relationship_list": [],
    });
    state.sent.push(body.to_string());
    json_reply(body)
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

/// An `order_by` as `SugarSQLValidate` lets it through: Contacts columns,
/// each with an optional `ASC`/`DESC`, separated by commas (empty: none).
fn order(text: &str) -> Result<Vec<(String, bool)>, ()> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|term| {
            let words: Vec<&str> = term.split_whitespace().collect();
            let (column, descending) = match words.as_slice() {
                [c] => (*c, false),
                [c, d] if d.eq_ignore_ascii_case("asc") => (*c, false),
                [c, d] if d.eq_ignore_ascii_case("desc") => (*c, true),
                _ => return Err(()),
            };
            let column = column.to_ascii_lowercase();
            let column = column.strip_prefix("contacts.").unwrap_or(&column);
            if !COLUMNS.contains(&column) {
                return Err(());
            }
            Ok((column.to_owned(), descending))
        })
        .collect()
}

/// A where fragment: `OR` of `AND` of comparisons.
enum Where {
    /// No condition: every contact.
    All,
    /// `date_modified` compared with a datetime literal: `>`, `>=`, `<`,
    /// `<=`.
    Date(&'static str, String),
    Or(Vec<Where>),
    And(Vec<Where>),
    /// A column equal to one of the strings (`=` is a one-string `IN`).
    In(String, Vec<String>),
    /// A column `LIKE` a pattern.
    Like(String, String),
}

impl Where {
    fn parse(text: &str) -> Result<Self, ()> {
        let tokens = tokens(text)?;
        if tokens.is_empty() {
            return Ok(Self::All);
        }
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
                if column == "date_modified" {
                    let op = match (next(at)?, t.get(*at)) {
                        (Token::Punct('>'), Some(Token::Punct('='))) => ">=",
                        (Token::Punct('<'), Some(Token::Punct('='))) => "<=",
                        (Token::Punct('>'), _) => ">",
                        (Token::Punct('<'), _) => "<",
                        _ => return Err(()),
                    };
                    if op.len() == 2 {
                        *at += 1;
                    }
                    return match next(at)? {
                        Token::Str(s) if super::is_sql_datetime(s) => Ok(Self::Date(op, s.clone())),
                        _ => Err(()),
                    };
                }
                match next(at)? {
                    Token::Punct('=') => match next(at)? {
                        Token::Str(s) => Ok(Self::In(column.to_owned(), vec![s.clone()])),
                        _ => Err(()),
                    },
                    w if w.is_word("like") => match next(at)? {
                        Token::Str(s) => Ok(Self::Like(column.to_owned(), s.clone())),
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
            Self::Like(column, pattern) => mysql_like(c.column(column), pattern),
            Self::All => true,
            // Both `Y-m-d H:i:s`: their text orders as their time.
            Self::Date(op, when) => {
                let at = c.date_modified.as_str();
                match *op {
                    ">" => at > when.as_str(),
                    ">=" => at >= when.as_str(),
                    "<" => at < when.as_str(),
                    _ => at <= when.as_str(),
                }
            }
        }
    }

    /// Whether it compares `date_modified`.
    fn reads_date(&self) -> bool {
        match self {
            Self::Or(terms) | Self::And(terms) => terms.iter().any(Self::reads_date),
            Self::Date(..) => true,
            _ => false,
        }
    }

    /// Every string compared with a phone column, in order.
    fn phone_values(&self) -> Vec<String> {
        match self {
            Self::Or(terms) | Self::And(terms) => {
                terms.iter().flat_map(Self::phone_values).collect()
            }
            Self::In(column, values) if column.starts_with("phone_") => values.clone(),
            Self::Like(column, pattern) if column.starts_with("phone_") => vec![pattern.clone()],
            Self::In(..) | Self::Like(..) | Self::All | Self::Date(..) => Vec::new(),
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
/// single quotes (`''` and `\x` escapes), `( ) , = < >`. Anything else (a
/// comment, a double-quoted string, `;`) is refused.
fn tokens(text: &str) -> Result<Vec<Token>, ()> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' | '=' | '<' | '>' => {
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
