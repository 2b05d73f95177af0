//! A Dolibarr REST API (`/api/index.php/...`, Restler), as Dolibarr 19+
//! answers it:
//! - The user's API key comes in the `DOLAPIKEY` header; a missing or
//!   unknown key is HTTP 401 (Dolibarr/dolibarr
//!   `htdocs/api/class/api_access.class.php`).
//! - `GET thirdparties` and `GET contacts` take `sqlfilters`, checked and
//!   turned into SQL by `forgeSQLFromUniversalSearchCriteria`
//!   (`htdocs/core/lib/functions.lib.php`): parentheses must balance, every
//!   criterion is `(field:operator:value)` with a field of `[a-zA-Z0-9_.]`,
//!   and only `and`/`or`/spaces may join them, else HTTP 400 `Error when
//!   validating parameter sqlfilters -> ...` (before 19: 503). The value is
//!   the third `:`-separated part; for `like`, surrounding quotes are
//!   dropped only if it holds no other quote, then Dolibarr escapes it for
//!   MySQL itself (`$db->escape`) and leaves `%` and `_` as wildcards, so a
//!   quote in a value is searched for, never ends the string. A column the
//!   table lacks is an SQL error: HTTP 503 `Error when retrieve ...`.
//! - No row is HTTP 404 `Thirdparties not found` / `Contacts not found`
//!   (`htdocs/societe/class/api_thirdparties.class.php`,
//!   `htdocs/contact/class/api_contacts.class.php`).
//! - Errors are Restler's `{"error":{"code":N,"message":"<reason>: <text>"}}`
//!   plus `debug` outside production mode (Luracast Restler `Compose.php`).
//!
//! - `limit` bounds the rows (100 without it; `plimit($limit + 1)` and the
//!   first `limit` rows answered); `page` (from 0) skips `limit * page`
//!   rows; `sortfield`/`sortorder` order them (`$db->order`); a sort column
//!   the table lacks is an SQL error (503). A page past the last row is
//!   HTTP 404 like any empty list.
//! - `t.tms`, the row's last change (a MySQL TIMESTAMP set on every update),
//!   compared with `<`, `>`, `<=`, `>=`, `=`. `dolForgeCriteriaCallback`
//!   splits a criterion at every `:` and keeps only the third part, so a
//!   `'2026-12-07 14:00:00'` value is cut at its first colon; a value
//!   without colons in quotes (`'20261207140000'`, MySQL's YYYYMMDDhhmmss,
//!   or `'2026-12-07'`) reaches the SQL as a string, which MySQL reads as a
//!   date-time in the connection's time zone. This CRM keeps `tms` in UTC
//!   and refuses any other shape with 503: stricter than MySQL, which would
//!   compare what it could read, so a wrong `since_format` fails loudly.
//!
//! Phones are stored as typed ("06 12 34 56 78"), and `LIKE` is MySQL's:
//! `%` any run, `_` one character, `\` escapes, case-insensitive. A contact
//! (`llx_socpeople`) has `phone` (answered as `phone_pro`), `phone_perso`,
//! `phone_mobile` and `fax`; a third party (`llx_societe`) `phone` and `fax`
//! (`htdocs/contact/class/contact.class.php`,
//! `htdocs/societe/class/societe.class.php`).

use std::sync::{Arc, Mutex};

use serde_json::json;

use super::query_of;
use super::vtql::like;
use crate::crm::{Answer, Crm, Seen};

/// A contact (`llx_socpeople`): rowid, first name, last name, and its
/// `phone`, `phone_mobile`, `phone_perso`, `fax` columns.
#[derive(Clone, Default)]
pub struct Contact {
    pub id: u32,
    pub first: String,
    pub last: String,
    pub phone: String,
    pub phone_mobile: String,
    pub phone_perso: String,
    pub fax: String,
    /// `tms`, UTC `YYYY-MM-DD HH:MM:SS`; empty: before this CRM started.
    pub tms: String,
}

/// A third party (`llx_societe`): rowid, name, `phone`, `fax`.
#[derive(Clone, Default)]
pub struct Thirdparty {
    pub id: u32,
    pub name: String,
    pub phone: String,
    pub fax: String,
    /// `tms`, UTC `YYYY-MM-DD HH:MM:SS`; empty: before this CRM started.
    pub tms: String,
}

/// One criterion as Dolibarr reads it: field, operator (upper case), and
/// the value the SQL compares with (a `LIKE` pattern).
pub type Criterion = (String, String, String);

/// What the CRM knows and counts.
#[derive(Default)]
pub struct State {
    pub api_key: String,
    pub contacts: Vec<Contact>,
    pub thirdparties: Vec<Thirdparty>,
    /// Look-ups run (SQL sent), by resource.
    pub contact_lookups: usize,
    pub thirdparty_lookups: usize,
    /// Requests refused: 401 (key), 400 (sqlfilters), 503 (SQL error).
    pub refused: usize,
    pub bad_filters: usize,
    pub sql_errors: usize,
    /// Each `sqlfilters` received, decoded, with its criteria as parsed.
    pub filters: Vec<(String, Vec<Criterion>)>,
    /// Paged requests (`page` given: the directory's), their query fields
    /// and `("resource", "contacts" or "thirdparties")`.
    pub pages: Vec<Vec<(String, String)>>,
}

impl State {
    /// Changes contact `id` as a save does: `tms` becomes now.
    pub fn edit_contact(&mut self, id: u32, edit: impl FnOnce(&mut Contact)) {
        let c = self
            .contacts
            .iter_mut()
            .find(|c| c.id == id)
            .expect("a known contact");
        edit(c);
        c.tms = super::sql_now();
    }
}

/// A date-time literal as MySQL reads `YYYYMMDDhhmmss`, `YYYYMMDD` or
/// `YYYY-MM-DD`, written `YYYY-MM-DD HH:MM:SS`; `None` for another shape.
fn mysql_datetime(text: &str) -> Option<String> {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (date, time) = match text.len() {
        14 if digits(text) => (
            format!("{}-{}-{}", &text[..4], &text[4..6], &text[6..8]),
            format!("{}:{}:{}", &text[8..10], &text[10..12], &text[12..]),
        ),
        8 if digits(text) => (
            format!("{}-{}-{}", &text[..4], &text[4..6], &text[6..]),
            "00:00:00".to_owned(),
        ),
        10 if digits(&text.replace('-', "")) && &text[4..5] == "-" && &text[7..8] == "-" => {
            (text.to_owned(), "00:00:00".to_owned())
        }
        _ => return None,
    };
    Some(format!("{date} {time}"))
}

/// A running Dolibarr.
pub struct Dolibarr {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

impl Dolibarr {
    pub async fn start(api_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.into(),
            contacts: vec![Contact {
                id: 7,
                first: "Jeanne".into(),
                last: "O'Neil".into(),
                phone_mobile: "06 12 34 56 78".into(),
                ..Contact::default()
            }],
            thirdparties: vec![Thirdparty {
                id: 3,
                name: "ACME SARL".into(),
                phone: "+33 (0)2.98.76.54.32".into(),
                ..Thirdparty::default()
            }],
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }
}

/// Restler's error reply.
fn error(status: u16, message: &str) -> Answer {
    let reason = match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let body = json!({
        "error": {"code": status, "message": format!("{reason}: {message}")},
        "debug": {"source": "api.class.php:0 at call stage",
                  "stages": {"success": ["get", "route", "negotiate", "authenticate", "validate"],
                             "failure": ["call", "message"]}},
    });
    Answer::Reply(status, "application/json; charset=utf-8", body.to_string())
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    let path = seen.target.split('?').next().unwrap_or("");
    let resource = match path {
        "/api/index.php/contacts" => Resource::Contacts,
        "/api/index.php/thirdparties" => Resource::Thirdparties,
        _ => return error(404, "Not Found"),
    };
    match seen.header("dolapikey") {
        None => {
            state.refused += 1;
            return error(401, "Failed to login to API. Neither parameter 'HTTP_DOLAPIKEY' nor 'Authentication: Bearer' found on HTTP header (and no parameter DOLAPIKEY in URL).");
        }
        Some(key) if key != state.api_key => {
            state.refused += 1;
            return error(401, "Error user not valid (not found with api key or bad status or bad validity dates) (conf->entity=1)");
        }
        Some(_) => {}
    }
    if seen.method != "GET" {
        return error(405, "Method not allowed");
    }
    let query = query_of(&seen.target);
    let limit: usize = match query.get("limit").map(|l| l.parse()) {
        None => 100,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(400, "Invalid value specified for `limit`"),
    };
    let page: usize = match query.get("page").map(|l| l.parse()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(400, "Invalid value specified for `page`"),
    };
    let paged = query.contains_key("page");
    if paged {
        let mut fields: Vec<(String, String)> = query.clone().into_iter().collect();
        let name = match resource {
            Resource::Contacts => "contacts",
            Resource::Thirdparties => "thirdparties",
        };
        fields.push(("resource".into(), name.into()));
        fields.sort();
        state.pages.push(fields);
    }
    let descending = match query.get("sortorder").map(|o| o.to_uppercase()) {
        None => false,
        Some(o) if o == "ASC" => false,
        Some(o) if o == "DESC" => true,
        Some(_) => return error(400, "Invalid value specified for `sortorder`"),
    };
    let filter = query.get("sqlfilters").cloned().unwrap_or_default();
    let expr = if filter.is_empty() {
        None
    } else {
        match parse(&filter) {
            Ok(expr) => {
                let mut criteria = Vec::new();
                expr.criteria(&mut criteria);
                state.filters.push((filter.clone(), criteria));
                Some(expr)
            }
            Err(message) => {
                state.bad_filters += 1;
                return error(
                    400,
                    &format!("Error when validating parameter sqlfilters -> {message}"),
                );
            }
        }
    };
    let (what, columns): (&str, &[&str]) = match resource {
        Resource::Contacts => (
            "contacts",
            &[
                "t.phone",
                "t.phone_mobile",
                "t.phone_perso",
                "t.fax",
                "t.tms",
            ],
        ),
        Resource::Thirdparties => ("thirdparties", &["t.phone", "t.fax", "t.tms"]),
    };
    if let Some(unknown) = expr.as_ref().and_then(|e| e.unknown_column(columns)) {
        state.sql_errors += 1;
        return error(
            503,
            &format!("Error when retrieve {what} : Unknown column '{unknown}' in 'where clause'"),
        );
    }
    if expr.as_ref().is_some_and(Expr::unreadable_time) {
        state.sql_errors += 1;
        return error(
            503,
            &format!("Error when retrieve {what} : Incorrect DATETIME value in 'where clause'"),
        );
    }
    let sort = query.get("sortfield").cloned();
    if let Some(col) = sort
        .as_deref()
        .filter(|c| *c != "t.rowid" && !columns.contains(c))
    {
        state.sql_errors += 1;
        return error(
            503,
            &format!("Error when retrieve {what} : Unknown column '{col}' in 'order clause'"),
        );
    }
    let matches = |row: &dyn Fn(&str) -> String| expr.as_ref().is_none_or(|e| e.holds(row));
    // ORDER BY then LIMIT: rows sorted (by rowid unless sorted otherwise),
    // `limit * page` skipped.
    let order = |id: u32, tms: &str| match sort.as_deref() {
        Some("t.tms") => (tms.to_owned(), id),
        _ => (String::new(), id),
    };
    let rows: Vec<serde_json::Value> = match resource {
        Resource::Contacts => {
            if !paged {
                state.contact_lookups += 1;
            }
            let mut found: Vec<&Contact> = state
                .contacts
                .iter()
                .filter(|c| {
                    matches(&|col| match col {
                        "t.phone" => c.phone.clone(),
                        "t.phone_mobile" => c.phone_mobile.clone(),
                        "t.phone_perso" => c.phone_perso.clone(),
                        "t.tms" => c.tms.clone(),
                        _ => c.fax.clone(),
                    })
                })
                .collect();
            found.sort_by_key(|c| order(c.id, &c.tms));
            if descending {
                found.reverse();
            }
            found
                .into_iter()
                .skip(limit * page)
                .take(limit)
                .map(|c| {
                    json!({"id": c.id.to_string(), "firstname": c.first, "lastname": c.last,
                           "phone_pro": c.phone, "phone_mobile": c.phone_mobile,
                           "phone_perso": c.phone_perso, "fax": c.fax,
                           "socid": "3", "entity": "1"})
                })
                .collect()
        }
        Resource::Thirdparties => {
            if !paged {
                state.thirdparty_lookups += 1;
            }
            let mut found: Vec<&Thirdparty> = state
                .thirdparties
                .iter()
                .filter(|t| {
                    matches(&|col| match col {
                        "t.phone" => t.phone.clone(),
                        "t.tms" => t.tms.clone(),
                        _ => t.fax.clone(),
                    })
                })
                .collect();
            found.sort_by_key(|t| order(t.id, &t.tms));
            if descending {
                found.reverse();
            }
            found
                .into_iter()
                .skip(limit * page)
                .take(limit)
                .map(|t| {
                    json!({"id": t.id.to_string(), "name": t.name, "phone": t.phone,
                           "fax": t.fax, "client": "1", "entity": "1"})
                })
                .collect()
        }
    };
    if rows.is_empty() {
        let message = match resource {
            Resource::Contacts => "Contacts not found",
            Resource::Thirdparties => "Thirdparties not found",
        };
        return error(404, message);
    }
    Answer::Reply(
        200,
        "application/json; charset=utf-8",
        serde_json::Value::from(rows).to_string(),
    )
}

#[derive(Clone, Copy)]
enum Resource {
    Contacts,
    Thirdparties,
}

/// A parsed `sqlfilters` expression.
#[derive(Debug)]
enum Expr {
    /// Field, operator (upper case), the value as the SQL will see it.
    Criterion(String, String, String),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
}

impl Expr {
    fn criteria(&self, out: &mut Vec<Criterion>) {
        match self {
            Expr::Criterion(f, o, v) => out.push((f.clone(), o.clone(), v.clone())),
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.criteria(out);
                b.criteria(out);
            }
        }
    }

    fn unknown_column(&self, columns: &[&str]) -> Option<String> {
        match self {
            Expr::Criterion(f, ..) => (!columns.contains(&f.as_str())).then(|| f.clone()),
            Expr::And(a, b) | Expr::Or(a, b) => a
                .unknown_column(columns)
                .or_else(|| b.unknown_column(columns)),
        }
    }

    /// Whether a `t.tms` criterion compares with what MySQL cannot read as
    /// a date-time.
    fn unreadable_time(&self) -> bool {
        match self {
            Expr::Criterion(f, _, v) => f == "t.tms" && mysql_datetime(v).is_none(),
            Expr::And(a, b) | Expr::Or(a, b) => a.unreadable_time() || b.unreadable_time(),
        }
    }

    fn holds(&self, row: &dyn Fn(&str) -> String) -> bool {
        match self {
            Expr::Criterion(field, op, value) if field == "t.tms" => {
                let stored = row(field);
                let Some(value) = mysql_datetime(value) else {
                    return false;
                };
                // Both YYYY-MM-DD HH:MM:SS: as text, as in time.
                match op.as_str() {
                    ">" => stored > value,
                    "<" => stored < value,
                    ">=" => stored >= value,
                    "<=" => stored <= value,
                    "=" => stored == value,
                    _ => false,
                }
            }
            Expr::Criterion(field, op, value) => {
                let stored = row(field);
                match op.as_str() {
                    "LIKE" => like(&stored, value),
                    "NOT LIKE" => !like(&stored, value),
                    "=" => stored.eq_ignore_ascii_case(value),
                    _ => false,
                }
            }
            Expr::And(a, b) => a.holds(row) && b.holds(row),
            Expr::Or(a, b) => a.holds(row) || b.holds(row),
        }
    }
}

/// `forgeSQLFromUniversalSearchCriteria`'s checks, then the expression.
fn parse(filter: &str) -> Result<Expr, String> {
    let filter = if filter.starts_with('(') && filter.ends_with(')') {
        filter.to_owned()
    } else {
        format!("({filter})")
    };
    // dolCheckFilters: the balance of every parenthesis, quoted or not.
    let mut depth = 0i32;
    for c in filter.chars() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth < 0 {
            return Err(format!(
                "Wrong balance of parenthesis in sqlfilters={filter}"
            ));
        }
    }
    if depth != 0 {
        return Err(format!(
            "Wrong balance of parenthesis in sqlfilters={filter}"
        ));
    }
    let tokens = tokens(&filter);
    // Only criteria, parentheses, and/or and spaces may be left.
    if tokens.iter().any(|t| matches!(t, Token::Other)) {
        return Err(format!("Bad syntax of the search string: {filter}"));
    }
    let mut at = 0;
    let expr =
        or_expr(&tokens, &mut at).ok_or_else(|| format!("SQL syntax error near {filter}"))?;
    if at != tokens.len() {
        return Err(format!("SQL syntax error near {filter}"));
    }
    Ok(expr)
}

#[derive(Debug)]
enum Token {
    Criterion(String, String, String),
    Open,
    Close,
    And,
    Or,
    Other,
}

/// Dolibarr's criterion regex `\(([a-zA-Z0-9_.]+:[<>!=insotlke]+:[^()]+)\)`
/// (case-insensitive) at `s`, if it matches: the inside and its length.
fn criterion_at(s: &str) -> Option<(&str, usize)> {
    let inner = s.strip_prefix('(')?;
    let end = inner.find([')', '('])?;
    if !inner[end..].starts_with(')') {
        return None;
    }
    let body = &inner[..end];
    let mut parts = body.splitn(3, ':');
    let field = parts.next()?;
    let op = parts.next()?;
    let value = parts.next()?;
    let field_ok = !field.is_empty()
        && field
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'));
    let op_ok = !op.is_empty() && op.chars().all(|c| "<>!=insotlkeINSOTLKE".contains(c));
    (field_ok && op_ok && !value.is_empty()).then_some((body, end + 2))
}

fn tokens(filter: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = filter;
    while let Some(c) = rest.chars().next() {
        if let Some((body, len)) = criterion_at(rest) {
            out.push(criterion(body));
            rest = &rest[len..];
            continue;
        }
        let (token, len) = match c {
            '(' => (Some(Token::Open), 1),
            ')' => (Some(Token::Close), 1),
            ' ' => (None, 1),
            _ if rest.starts_with("and") || rest.starts_with("AND") => (Some(Token::And), 3),
            _ if rest.starts_with("or") || rest.starts_with("OR") => (Some(Token::Or), 2),
            _ => (Some(Token::Other), c.len_utf8()),
        };
        out.extend(token);
        rest = &rest[len..];
    }
    out
}

/// dolForgeCriteriaCallback: the operator, and the value the SQL compares
/// with once Dolibarr has escaped it (the text itself).
fn criterion(body: &str) -> Token {
    let parts: Vec<&str> = body.split(':').collect();
    let field = parts[0].trim().to_owned();
    let op: String = parts[1]
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphabetic() || "<>!=".contains(*c))
        .collect::<String>()
        .to_uppercase();
    let op = match op.as_str() {
        "NOTLIKE" => "NOT LIKE".to_owned(),
        "!=" => "<>".to_owned(),
        _ => op,
    };
    // Only the third part: a ':' in the value cuts it there.
    let raw = parts[2];
    let value = match op.as_str() {
        "LIKE" | "NOT LIKE" => raw
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .filter(|v| !v.contains('\''))
            .unwrap_or(raw),
        _ => raw
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(raw),
    };
    Token::Criterion(field, op, value.to_owned())
}

fn or_expr(tokens: &[Token], at: &mut usize) -> Option<Expr> {
    let mut left = and_expr(tokens, at)?;
    while matches!(tokens.get(*at), Some(Token::Or)) {
        *at += 1;
        left = Expr::Or(Box::new(left), Box::new(and_expr(tokens, at)?));
    }
    Some(left)
}

fn and_expr(tokens: &[Token], at: &mut usize) -> Option<Expr> {
    let mut left = primary(tokens, at)?;
    while matches!(tokens.get(*at), Some(Token::And)) {
        *at += 1;
        left = Expr::And(Box::new(left), Box::new(primary(tokens, at)?));
    }
    Some(left)
}

fn primary(tokens: &[Token], at: &mut usize) -> Option<Expr> {
    match tokens.get(*at)? {
        Token::Criterion(f, o, v) => {
            *at += 1;
            Some(Expr::Criterion(f.clone(), o.clone(), v.clone()))
        }
        Token::Open => {
            *at += 1;
            let inner = or_expr(tokens, at)?;
            matches!(tokens.get(*at), Some(Token::Close)).then(|| *at += 1)?;
            Some(inner)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_is_mysqls() {
        assert!(like("06 12 34 56 78", "%6%1%2%3%4%5%6%7%8"));
        assert!(like("+33 (0)2.98.76.54.32", "%2%9%8%7%6%5%4%3%2"));
        assert!(!like("06 12 34 56 78 9", "%6%1%2%3%4%5%6%7%8"));
        assert!(like("O'Neil", "o'n%"));
        assert!(like("a_b", "a\\_b") && !like("axb", "a\\_b") && like("axb", "a_b"));
        assert!(like("50%", "50\\%") && !like("500", "50\\%"));
    }

    #[test]
    fn filters_are_checked_as_dolibarr_checks_them() {
        assert!(parse("(t.phone:like:'%1')").is_ok());
        assert!(parse("((t.phone:like:'%1') or (t.phone_mobile:like:'%1'))").is_ok());
        assert!(parse("t.phone:like:'%1'").is_ok());
        assert!(parse("(t.phone:like:'%1'))")
            .unwrap_err()
            .starts_with("Wrong balance"));
        assert!(parse("(t.phone:like:'%1') xor (t.phone:=:'1')")
            .unwrap_err()
            .starts_with("Bad syntax"));
        assert!(parse("(t.phone:like:'1' OR 1=1 --)").is_ok()); // a value, not SQL
                                                                // A quote inside keeps the outer quotes as part of the pattern.
        let Ok(Expr::Criterion(_, _, v)) = parse("(t.phone:like:'%O'Neil%')") else {
            panic!()
        };
        assert_eq!(v, "'%O'Neil%'");
    }
}
