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
//! - The REST API query resource (REST API Developer Guide,
//!   `resources_query.htm` and `dome_query.htm`): `GET
//!   /services/data/vXX.X/query/?q=<SOQL>` answering `{"totalSize":N,
//!   "done":true,"records":[{"attributes":{"type":"Contact","url":...},
//!   "Id":...,"Name":...,"Phone":...}]}` (a field without a value is
//!   `null`). REST errors are a list `[{"message":...,"errorCode":...}]`; a
//!   token the org no longer knows answers HTTP 401 `INVALID_SESSION_ID`, a
//!   query SOQL cannot parse HTTP 400 `MALFORMED_QUERY`, a field Contact does
//!   not have HTTP 400 `INVALID_FIELD` ("No such column ... on entity
//!   'Contact'").
//! - SOQL (SOQL and SOSL Reference): `SELECT fields FROM Contact WHERE ...
//!   LIMIT n`, keywords and field names without regard to case;
//!   `sforce_api_calls_soql_select_logicaloperators.htm`: AND, OR, NOT,
//!   "parentheses are required whenever you mix the operators";
//!   `sforce_api_calls_soql_select_comparisonoperators.htm`: `=` and `LIKE`
//!   compare strings without regard to case, `LIKE` takes `%` (any run of
//!   characters) and `_` (one character);
//!   `sforce_api_calls_soql_select_quotedstringescapes.htm`: a string
//!   literal is in single quotes, `\'` `\"` `\\` `\n` `\r` `\t` `\b` `\f`
//!   `\uXXXX` are its escapes, `\%` and `\_` (a literal `%`, `_`) in a
//!   `LIKE` value only, and "if you use a backslash character in any other
//!   context, an error occurs". A lone quote ends the literal, so an
//!   unescaped one is a `MALFORMED_QUERY`.
//! - A dateTime field (`SystemModstamp`: when the record was last changed,
//!   by a user or by the system; indexed) compares with `>`, `>=`, `<`,
//!   `<=`, `=` to a dateTime literal written without quotes,
//!   `YYYY-MM-DDThh:mm:ss(.sss)?(Z|+hh:mm|-hh:mm)`
//!   (`sforce_api_calls_soql_select_dateformats.htm`); a quoted value is
//!   refused: INVALID_FIELD "value of filter criterion for field
//!   'SystemModstamp' must be of type dateTime and should not be enclosed
//!   in quotes". `ORDER BY field [ASC|DESC]`.
//! - Paging (REST API Developer Guide, `dome_query.htm` "Execute a SOQL
//!   query" and `headers_queryoptions.htm`): a query answers at most a batch
//!   (2000 records by default; the `Sforce-Query-Options: batchSize=n`
//!   header asks for n, 200 to 2000, "not guaranteed": out of range is
//!   clamped here); when more records match, the reply has `"done":false`
//!   and `nextRecordsUrl` (`/services/data/vXX.X/query/<locator>-<n>`), and
//!   a GET of that url answers the next batch. `OFFSET` is not modelled
//!   (SOQL refuses an OFFSET over 2000, so it cannot page a large org).
//!   An unknown locator answers HTTP 400 `INVALID_QUERY_LOCATOR`.
//! - Phone fields (`Phone`, `MobilePhone`, `HomePhone`, `OtherPhone` on
//!   Contact) keep numbers as typed (Help article 000385963): a `LIKE`
//!   compares that text, punctuation and all.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{fields, query_of};
use crate::crm::{Answer, Crm, Seen};

/// The API version the recipe asks for.
pub const QUERY_PATH: &str = "/services/data/v62.0/query/";

/// A contact: its phone fields as typed (empty: null), Id, Name.
#[derive(Debug, Clone)]
pub struct Contact {
    pub phone: &'static str,
    pub mobile_phone: &'static str,
    pub home_phone: &'static str,
    pub other_phone: &'static str,
    pub id: String,
    pub name: String,
    /// `SystemModstamp`.
    pub modstamp: time::OffsetDateTime,
}

impl Contact {
    /// A contact with no phone yet.
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            phone: "",
            mobile_phone: "",
            home_phone: "",
            other_phone: "",
            id: id.into(),
            name: name.into(),
            modstamp: time::OffsetDateTime::from_unix_timestamp(1_763_480_403).unwrap(),
        }
    }

    /// A field's value by its API name (any case); `Ok(None)` for a field
    /// without a value, `Err` for a field Contact does not have.
    fn field(&self, name: &str) -> Result<Option<&str>, ()> {
        let value = match name.to_ascii_lowercase().as_str() {
            "id" => &self.id,
            "name" => &self.name,
            "phone" => self.phone,
            "mobilephone" => self.mobile_phone,
            "homephone" => self.home_phone,
            "otherphone" => self.other_phone,
            "fax" | "assistantphone" | "email" => "",
            // Its text is not asked: only compared (`Condition::After`).
            "systemmodstamp" => "",
            _ => return Err(()),
        };
        Ok((!value.is_empty()).then_some(value))
    }
}

/// Contact's fields by API name, as a reply spells them.
const FIELDS: [&str; 10] = [
    "SystemModstamp",
    "Id",
    "Name",
    "Phone",
    "MobilePhone",
    "HomePhone",
    "OtherPhone",
    "Fax",
    "AssistantPhone",
    "Email",
];

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
    /// Queries answered.
    pub queries: usize,
    /// Queries refused with 401 (unknown or expired token).
    pub refused: usize,
    /// Queries refused with 400 (`MALFORMED_QUERY`, `INVALID_FIELD`).
    pub malformed: usize,
    /// Every SOQL query received, decoded.
    pub soql: Vec<String>,
    pub contacts: Vec<Contact>,
    /// Query locators: the records still to read.
    locators: std::collections::HashMap<String, Vec<serde_json::Value>>,
    /// Pages read by a `nextRecordsUrl`.
    pub more_pages: usize,
}

impl State {
    /// Saves a contact as an edit does: replaced (or added),
    /// `SystemModstamp` now.
    pub fn save(&mut self, mut contact: Contact) {
        contact.modstamp = time::OffsetDateTime::now_utc();
        self.contacts.retain(|c| c.id != contact.id);
        self.contacts.push(contact);
    }

    /// Queries that looked a caller up (not the directory's pages).
    pub fn lookups(&self) -> usize {
        self.soql.iter().filter(|q| q.contains(" LIKE ")).count()
    }

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

/// Jeanne's phone typed in E.164 with spaces.
pub fn jeanne() -> Contact {
    Contact {
        phone: "+33 6 12 34 56 78",
        ..Contact::new("003Qy00000JeanIAAA", "Jeanne O'Neil")
    }
}

/// Paul's mobile typed in French national form.
pub fn paul() -> Contact {
    Contact {
        mobile_phone: "06 11 22 33 44",
        ..Contact::new("003Qy00000PaulIAAA", "Paul Martin")
    }
}

impl Salesforce {
    pub async fn start(client_id: &str, client_secret: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            tokens: HashSet::new(),
            counter: 0,
            mints: 0,
            refused_logins: 0,
            queries: 0,
            refused: 0,
            malformed: 0,
            soql: Vec::new(),
            contacts: vec![jeanne(), paul()],
            locators: std::collections::HashMap::new(),
            more_pages: 0,
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
        ("GET", p) if p == QUERY_PATH || p == QUERY_PATH.trim_end_matches('/') => {
            query(state, seen)
        }
        ("GET", p) if p.starts_with(QUERY_PATH) => {
            let locator = p[QUERY_PATH.len()..].to_owned();
            more(state, seen, &locator)
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

fn query(state: &mut State, seen: &Seen) -> Answer {
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
        return rest_error(400, "MALFORMED_QUERY", "unexpected token: <EOF>");
    };
    state.soql.push(q.clone());
    let query = match Query::parse(&q) {
        Ok(query) => query,
        Err((code, message)) => {
            state.malformed += 1;
            return rest_error(400, code, &message);
        }
    };
    // Every field named must be one of Contact's.
    let probe = Contact::new("", "");
    let unknown = query
        .fields
        .iter()
        .chain(query.filter.iter().flat_map(Condition::fields))
        .find(|f| probe.field(f).is_err());
    if let Some(field) = unknown {
        state.malformed += 1;
        return rest_error(
            400,
            "INVALID_FIELD",
            &format!("\n{q}\n^\nERROR at Row:1:Column:1\nNo such column '{field}' on entity 'Contact'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."),
        );
    }
    state.queries += 1;
    let mut matching: Vec<&Contact> = state
        .contacts
        .iter()
        .filter(|c| query.filter.as_ref().is_none_or(|f| f.holds(c)))
        .collect();
    if let Some((field, ascending)) = &query.order {
        let key = |c: &Contact| match field.to_ascii_lowercase().as_str() {
            "systemmodstamp" => c.modstamp.unix_timestamp_nanos().to_string(),
            f => c.field(f).ok().flatten().unwrap_or("").to_lowercase(),
        };
        matching.sort_by_key(|c| key(c));
        if !ascending {
            matching.reverse();
        }
    }
    let records: Vec<_> = matching
        .into_iter()
        .take(query.limit.unwrap_or(usize::MAX))
        .map(|c| {
            let mut record = serde_json::Map::new();
            record.insert(
                "attributes".into(),
                json!({"type": "Contact", "url": format!("/services/data/v62.0/sobjects/Contact/{}", c.id)}),
            );
            for f in &query.fields {
                let name = FIELDS
                    .iter()
                    .find(|n| n.eq_ignore_ascii_case(f))
                    .map_or(f.as_str(), |n| *n);
                record.insert(name.into(), json!(c.field(f).ok().flatten()));
            }
            serde_json::Value::Object(record)
        })
        .collect();
    state.counter += 1;
    let locator = format!("01gQy00000Loc{:05}", state.counter);
    page(state, seen, records, &locator, 0)
}

/// The batch size a query asked for (`Sforce-Query-Options`), clamped to
/// 200..=2000; 2000 by default.
fn batch_size(seen: &Seen) -> usize {
    seen.header("sforce-query-options")
        .and_then(|h| {
            h.split(',')
                .find_map(|o| o.trim().strip_prefix("batchSize="))
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .map_or(2000, |n| n.clamp(200, 2000))
}

/// One batch of `records` from `at`; the rest is kept under `locator`.
fn page(
    state: &mut State,
    seen: &Seen,
    records: Vec<serde_json::Value>,
    locator: &str,
    at: usize,
) -> Answer {
    let total = at + records.len();
    let size = batch_size(seen);
    let mut batch = records;
    let rest = batch.split_off(size.min(batch.len()));
    let mut reply = json!({"totalSize": total, "done": rest.is_empty(), "records": batch});
    if !rest.is_empty() {
        let next = at + size;
        reply["nextRecordsUrl"] = json!(format!("{QUERY_PATH}{locator}-{next}"));
        state.locators.insert(format!("{locator}-{next}"), rest);
    }
    json_reply(200, reply)
}

/// `GET nextRecordsUrl`: the next batch of a query.
fn more(state: &mut State, seen: &Seen, locator: &str) -> Answer {
    let token = seen
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if !state.tokens.contains(token) {
        state.refused += 1;
        return rest_error(401, "INVALID_SESSION_ID", "Session expired or invalid");
    }
    let Some(records) = state.locators.remove(locator) else {
        state.malformed += 1;
        return rest_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
    };
    let (id, at) = locator.rsplit_once('-').unwrap_or((locator, "0"));
    let at = at.parse().unwrap_or(0);
    state.more_pages += 1;
    let id = id.to_owned();
    page(state, seen, records, &id, at)
}

/// `SELECT fields FROM Contact [WHERE condition] [ORDER BY field [ASC|DESC]]
/// [LIMIT n]`.
struct Query {
    fields: Vec<String>,
    filter: Option<Condition>,
    order: Option<(String, bool)>,
    limit: Option<usize>,
}

/// A WHERE condition: `=` and `LIKE` on a field, AND, OR, NOT and
/// parentheses.
enum Condition {
    Eq(String, String),
    Like(String, Vec<Like>),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    /// A dateTime field compared to a dateTime literal: the field, the
    /// operator, the literal.
    Time(String, Tok, time::OffsetDateTime),
}

/// One element of a `LIKE` pattern.
#[derive(Debug, Clone, PartialEq)]
enum Like {
    Any,
    One,
    Char(char),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    /// A string literal: its characters, each with whether it was escaped.
    Text(Vec<(char, bool)>),
    Number(String),
    Comma,
    Open,
    Close,
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
    /// A dateTime literal.
    DateTime(time::OffsetDateTime),
}

/// An error code and its message.
type SoqlError = (&'static str, String);

fn malformed(message: String) -> SoqlError {
    ("MALFORMED_QUERY", message)
}

impl Query {
    fn parse(soql: &str) -> Result<Query, SoqlError> {
        let toks = soql_tokens(soql)?;
        let mut p = Parser { toks, at: 0 };
        p.keyword("SELECT")?;
        let mut fields = vec![p.word()?];
        while p.peek() == Some(&Tok::Comma) {
            p.at += 1;
            fields.push(p.word()?);
        }
        p.keyword("FROM")?;
        let object = p.word()?;
        if !object.eq_ignore_ascii_case("Contact") {
            return Err((
                "INVALID_TYPE",
                format!("sObject type '{object}' is not supported."),
            ));
        }
        let filter = if p.is_keyword("WHERE") {
            p.at += 1;
            Some(p.condition()?)
        } else {
            None
        };
        let order = if p.is_keyword("ORDER") {
            p.at += 1;
            p.keyword("BY")?;
            let field = p.word()?;
            let ascending = if p.is_keyword("DESC") {
                p.at += 1;
                false
            } else {
                if p.is_keyword("ASC") {
                    p.at += 1;
                }
                true
            };
            Some((field, ascending))
        } else {
            None
        };
        let limit = if p.is_keyword("LIMIT") {
            p.at += 1;
            match p.next() {
                Some(Tok::Number(n)) => Some(n.parse().map_err(|_| malformed(n))?),
                other => return Err(malformed(format!("unexpected token: {other:?}"))),
            }
        } else {
            None
        };
        if let Some(tok) = p.peek() {
            return Err(malformed(format!("unexpected token: {tok:?}")));
        }
        Ok(Query {
            fields,
            filter,
            order,
            limit,
        })
    }
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let tok = self.toks.get(self.at).cloned();
        self.at += 1;
        tok
    }

    fn is_keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn keyword(&mut self, k: &str) -> Result<(), SoqlError> {
        if self.is_keyword(k) {
            self.at += 1;
            Ok(())
        } else {
            Err(malformed(format!(
                "unexpected token: {:?}, expecting {k}",
                self.peek()
            )))
        }
    }

    fn word(&mut self) -> Result<String, SoqlError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            other => Err(malformed(format!("unexpected token: {other:?}"))),
        }
    }

    /// Expressions joined by one kind of operator: mixing AND and OR
    /// without parentheses is refused, as SOQL does.
    fn condition(&mut self) -> Result<Condition, SoqlError> {
        let mut all = vec![self.unary()?];
        let mut op: Option<String> = None;
        while self.is_keyword("AND") || self.is_keyword("OR") {
            let w = self.word()?.to_ascii_uppercase();
            if op.as_ref().is_some_and(|o| *o != w) {
                return Err(malformed(format!("unexpected token: '{w}'")));
            }
            op = Some(w);
            all.push(self.unary()?);
        }
        Ok(match op.as_deref() {
            None => all.remove(0),
            Some("AND") => Condition::And(all),
            _ => Condition::Or(all),
        })
    }

    fn unary(&mut self) -> Result<Condition, SoqlError> {
        if self.is_keyword("NOT") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.at += 1;
            let inner = self.condition()?;
            return match self.next() {
                Some(Tok::Close) => Ok(inner),
                other => Err(malformed(format!("unexpected token: {other:?}"))),
            };
        }
        let field = self.word()?;
        if field.eq_ignore_ascii_case("SystemModstamp") {
            let op = match self.next() {
                Some(op @ (Tok::Eq | Tok::Gt | Tok::Ge | Tok::Lt | Tok::Le)) => op,
                other => return Err(malformed(format!("unexpected token: {other:?}"))),
            };
            return match self.next() {
                Some(Tok::DateTime(t)) => Ok(Condition::Time(field, op, t)),
                Some(Tok::Text(_)) => Err((
                    "INVALID_FIELD",
                    format!("value of filter criterion for field '{field}' must be of type dateTime and should not be enclosed in quotes"),
                )),
                other => Err(malformed(format!("unexpected token: {other:?}"))),
            };
        }
        let like = match self.next() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("LIKE") => true,
            Some(Tok::Eq) => false,
            other => return Err(malformed(format!("unexpected token: {other:?}"))),
        };
        let text = match self.next() {
            Some(Tok::Text(text)) => text,
            other => return Err(malformed(format!("unexpected token: {other:?}"))),
        };
        if like {
            let pattern = text
                .iter()
                .map(|&(c, escaped)| match (c, escaped) {
                    ('%', false) => Like::Any,
                    ('_', false) => Like::One,
                    (c, _) => Like::Char(c),
                })
                .collect();
            return Ok(Condition::Like(field, pattern));
        }
        if let Some((c, _)) = text.iter().find(|&&(c, e)| e && (c == '%' || c == '_')) {
            return Err(malformed(format!(
                "Invalid string literal. Illegal character sequence '\\{c}' in string literal."
            )));
        }
        Ok(Condition::Eq(field, text.iter().map(|(c, _)| c).collect()))
    }
}

impl Condition {
    fn fields(&self) -> Vec<&String> {
        match self {
            Condition::Eq(f, _) | Condition::Like(f, _) | Condition::Time(f, _, _) => vec![f],
            Condition::And(all) | Condition::Or(all) => all.iter().flat_map(Self::fields).collect(),
            Condition::Not(c) => c.fields(),
        }
    }

    /// Whether `c` meets the condition, without regard to case; a field
    /// without a value (null) equals and is like nothing.
    fn holds(&self, c: &Contact) -> bool {
        let value = |f: &str| c.field(f).ok().flatten().map(str::to_lowercase);
        match self {
            Condition::Eq(f, v) => value(f).is_some_and(|x| x == v.to_lowercase()),
            Condition::Like(f, p) => value(f).is_some_and(|x| {
                let chars: Vec<char> = x.chars().collect();
                like(&chars, p)
            }),
            Condition::And(all) => all.iter().all(|x| x.holds(c)),
            Condition::Or(all) => all.iter().any(|x| x.holds(c)),
            Condition::Not(x) => !x.holds(c),
            Condition::Time(_, op, t) => match op {
                Tok::Gt => c.modstamp > *t,
                Tok::Ge => c.modstamp >= *t,
                Tok::Lt => c.modstamp < *t,
                Tok::Le => c.modstamp <= *t,
                _ => c.modstamp == *t,
            },
        }
    }
}

/// `value LIKE pattern`, `value` already lowercase.
fn like(value: &[char], pattern: &[Like]) -> bool {
    match pattern.first() {
        None => value.is_empty(),
        Some(Like::Any) => (0..=value.len()).any(|skip| like(&value[skip..], &pattern[1..])),
        Some(Like::One) => !value.is_empty() && like(&value[1..], &pattern[1..]),
        Some(Like::Char(p)) => {
            value
                .first()
                .is_some_and(|v| p.to_lowercase().eq(std::iter::once(*v)))
                && like(&value[1..], &pattern[1..])
        }
    }
}

/// The escape after a backslash in a string literal, as the reference
/// lists them; `None` for any other.
fn escape(c: char) -> Option<char> {
    Some(match c {
        'n' | 'N' => '\n',
        'r' | 'R' => '\r',
        't' | 'T' => '\t',
        'b' | 'B' => '\u{8}',
        'f' | 'F' => '\u{c}',
        '"' | '\'' | '\\' | '%' | '_' => c,
        _ => return None,
    })
}

/// SOQL's tokens; a string literal's escapes read as the reference lists
/// them, any other backslash and an unterminated literal refused.
fn soql_tokens(soql: &str) -> Result<Vec<Tok>, SoqlError> {
    let chars: Vec<char> = soql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let single = match c {
            ',' => Some(Tok::Comma),
            '(' => Some(Tok::Open),
            ')' => Some(Tok::Close),
            '=' => Some(Tok::Eq),
            _ => None,
        };
        if let Some(tok) = single {
            out.push(tok);
            i += 1;
        } else if c == '>' || c == '<' {
            let eq = chars.get(i + 1) == Some(&'=');
            out.push(match (c, eq) {
                ('>', false) => Tok::Gt,
                ('>', true) => Tok::Ge,
                ('<', false) => Tok::Lt,
                _ => Tok::Le,
            });
            i += if eq { 2 } else { 1 };
        } else if c.is_ascii_digit() && chars.get(i + 4) == Some(&'-') {
            // A dateTime literal: up to the next blank or parenthesis.
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| !c.is_whitespace() && *c != ')' && *c != '(')
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let t =
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .filter(|_| text.len() >= 20 && text.as_bytes()[10] == b'T')
                    .ok_or_else(|| {
                        malformed(format!("line 1:{start} no viable alternative at '{text}'"))
                    })?;
            out.push(Tok::DateTime(t));
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            i += 1;
            let mut text = Vec::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(malformed(format!(
                            "line 1:{i} mismatched character '<EOF>' expecting '''"
                        )))
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if chars.get(i + 1) == Some(&'u') => {
                        let hex: String = chars.iter().skip(i + 2).take(4).collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == 4)
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                malformed(format!("Invalid unicode escape '\\u{hex}'"))
                            })?;
                        text.push((code, true));
                        i += 6;
                    }
                    Some('\\') => {
                        let next = chars.get(i + 1).copied();
                        let Some(escaped) = next.and_then(escape) else {
                            return Err(malformed(format!(
                                "Invalid string literal. Illegal character sequence '\\{}' in string literal.",
                                next.map_or(String::new(), String::from)
                            )));
                        };
                        text.push((escaped, true));
                        i += 2;
                    }
                    Some(c) => {
                        text.push((*c, false));
                        i += 1;
                    }
                }
            }
            out.push(Tok::Text(text));
        } else if c.is_ascii_digit() {
            let start = i;
            while chars.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            out.push(Tok::Number(chars[start..i].iter().collect()));
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else {
            return Err(malformed(format!(
                "line 1:{i} no viable alternative at character '{c}'"
            )));
        }
    }
    Ok(out)
}

#[test]
fn soql_reads_like_escapes_and_refuses_what_salesforce_refuses() {
    let q = Query::parse(
        r"select Id, name FROM contact WHERE Phone LIKE '%6%1\_%' OR MobilePhone = 'O\'Neil' LIMIT 5",
    )
    .unwrap();
    assert_eq!(q.limit, Some(5));
    let holds = |phone: &'static str, mobile: &'static str| {
        let c = Contact {
            phone,
            mobile_phone: mobile,
            ..Contact::new("x", "y")
        };
        q.filter.as_ref().unwrap().holds(&c)
    };
    assert!(holds("+33 6 1_2", ""));
    assert!(!holds("+33 6 112", ""));
    assert!(holds("", "o'neil"));
    for bad in [
        "SELECT Id FROM Contact WHERE Phone LIKE '06'12'",
        r"SELECT Id FROM Contact WHERE Phone LIKE '06\x'",
        r"SELECT Id FROM Contact WHERE Phone = '06\%'",
        "SELECT Id FROM Contact WHERE Phone LIKE '06",
        "SELECT Id FROM Contact WHERE Phone = '1' AND Phone = '2' OR Phone = '3'",
        "SELECT Id FROM Contact LIMIT",
    ] {
        assert!(Query::parse(bad).is_err(), "{bad}");
    }
    assert!(Query::parse(
        "SELECT Id FROM Contact WHERE Phone = '1' AND (Phone = '2' OR Phone = '3')"
    )
    .is_ok());
}
