//! vtiger's VTQL, read as `webservice.php?operation=query` reads it
//! (vtiger-crm/vtigercrm, unchanged from 5.4 to 7.x forks such as
//! F-RevoCRM): `include/Webservices/Query.php` (`vtws_query`),
//! `VtigerWebserviceObject::fromQuery`, `VTQL_Lexer.php`, `VTQL_Parser.php`
//! (its grammar and `buildSelectStmt`), `WebServiceErrorCode.php`.
//!
//! - The module comes first from the regex `FROM\s+([^\s;]+)` over the
//!   whole text; an unknown name (`Contacts,Leads`) is `ACCESS_DENIED`.
//! - The grammar: `SELECT cols|*|count(*) FROM <one table> [WHERE c op v
//!   {AND|OR c op v}] [ORDER BY cols [ASC|DESC]] [LIMIT n[,m]] ;`, where op
//!   is `= < > <= >= != IN LIKE` and v a token or `(v, ...)`. Anything else
//!   (a second table, a join, no `;`) is `QUERY_SYNTAX_ERROR`.
//! - A field the module does not have is `ACCESS_DENIED`, with vtiger's own
//!   messages (the select list's has its literal `'.$field.'`).
//! - Tokens: `\w+`, `'(?:[^']|'')+'` (a quote doubled stays inside; a
//!   backslash is an ordinary character to VTQL), `( ) , * = < > <= >= !=
//!   ;`, signed numbers; any other character outside a string throws, which
//!   webservice.php answers `INTERNAL_SERVER_ERROR`.
//! - A string token goes into the SQL as written, and MySQL reads it with
//!   backslash escapes: if MySQL's string does not end where VTQL's token
//!   does, the SQL breaks (`DATABASE_QUERY_ERROR`) and `injected` tells.
//! - Comparison as MySQL's default collation: case-insensitive, trailing
//!   spaces ignored by `=` and `IN`; `LIKE` with `%`, `_` and `\` escapes;
//!   an unquoted number compares numerically; AND binds before OR. `LIKE`
//!   goes into the SQL as written (`column LIKE 'value'`, buildSelectStmt),
//!   so its pattern is MySQL's.
//! - `LIMIT n` and `LIMIT offset,n`: n at most 100 (buildSelectStmt caps
//!   it), 100 without a LIMIT.
//! - `ORDER BY id` is `ORDER BY vtiger_crmentity.crmid`, a number
//!   (`VtigerCRMObjectMeta` maps the field `id` to the module's id column).
//! - `modifiedtime` (every module has it: `vtiger_crmentity.modifiedtime`, a
//!   MySQL DATETIME) is compared as MySQL compares a DATETIME with a string
//!   literal: the value goes into the SQL untouched (no time zone
//!   conversion in `buildSelectStmt`, none on output in `DataTransform`,
//!   which converts `date` fields only), so it is read in the time zone the
//!   column was written in. This CRM reads `YYYY-MM-DD HH:MM:SS` or
//!   `YYYY-MM-DD` and refuses anything else with `DATABASE_QUERY_ERROR`:
//!   stricter than MySQL, which reads some other shapes with a warning and
//!   compares what it could, so a wrong `since_format` fails loudly here.

use serde_json::{json, Map, Value};

/// A module: its name, webservice id prefix (`12x` for Contacts) and fields.
#[derive(Debug)]
pub struct Module {
    pub name: &'static str,
    pub prefix: &'static str,
    pub fields: &'static [&'static str],
}

/// The modules this vTiger has, with their ids in a default install.
pub const MODULES: [Module; 3] = [
    Module {
        name: "Contacts",
        prefix: "12",
        fields: &[
            "firstname",
            "lastname",
            "phone",
            "mobile",
            "homephone",
            "otherphone",
            "fax",
            "email",
            "account_id",
            "modifiedtime",
        ],
    },
    Module {
        name: "Leads",
        prefix: "10",
        fields: &[
            "firstname",
            "lastname",
            "company",
            "phone",
            "mobile",
            "fax",
            "email",
            "modifiedtime",
        ],
    },
    Module {
        name: "Accounts",
        prefix: "11",
        fields: &[
            "accountname",
            "phone",
            "otherphone",
            "fax",
            "email1",
            "website",
            "modifiedtime",
        ],
    },
];

/// One record of a module.
#[derive(Debug, Clone)]
pub struct Record {
    pub module: &'static str,
    /// `12x345`.
    pub id: String,
    pub fields: Vec<(&'static str, String)>,
}

impl Record {
    fn get(&self, field: &str) -> &str {
        if field == "id" {
            return &self.id;
        }
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map_or("", |(_, v)| v)
    }
}

/// An error as vtiger answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct VtError {
    pub code: &'static str,
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> VtError {
    VtError {
        code,
        message: message.into(),
    }
}

fn syntax(found: &str) -> VtError {
    err(
        "QUERY_SYNTAX_ERROR",
        format!("Syntax Error on line 1: token '{found}' Unexpected {found}"),
    )
}

/// A parsed query.
#[derive(Debug)]
pub struct Query {
    pub module: &'static Module,
    /// Selected fields (`id` added), or `*`, or `count(*)`.
    pub columns: Vec<String>,
    /// OR of AND groups.
    pub filter: Vec<Vec<Cond>>,
    pub order: Vec<String>,
    pub descending: bool,
    pub offset: usize,
    pub limit: usize,
}

/// `field op value(s)`, values as MySQL reads them.
#[derive(Debug)]
pub struct Cond {
    pub field: String,
    pub op: Op,
    pub values: Vec<Val>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Like,
}

/// A value: a string (read as MySQL reads it) or a bare number.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Num(f64),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    /// As written, quotes included.
    Str(String),
    Num(String),
    Sym(&'static str),
}

impl Tok {
    fn text(&self) -> &str {
        match self {
            Tok::Word(s) | Tok::Str(s) | Tok::Num(s) => s,
            Tok::Sym(s) => s,
        }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self, Tok::Word(s) if s.eq_ignore_ascii_case(w))
    }
}

/// The lexer's regex, token by token.
struct Lexer<'a> {
    rest: &'a str,
}

impl Lexer<'_> {
    fn next(&mut self) -> Result<Option<Tok>, VtError> {
        self.rest = self.rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let s = self.rest;
        let Some(c) = s.chars().next() else {
            return Ok(None);
        };
        let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
        let (tok, len) = if word(c) {
            let n = s.find(|c: char| !word(c)).unwrap_or(s.len());
            (Tok::Word(s[..n].to_owned()), n)
        } else if c == '\'' {
            match quoted(s) {
                Some(n) => (Tok::Str(s[..n].to_owned()), n),
                None => return Err(unexpected_input()),
            }
        } else if (c == '+' || c == '-') && s[1..].starts_with(|c: char| c.is_ascii_digit()) {
            let n = 1 + s[1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(s.len() - 1);
            (Tok::Num(s[..n].to_owned()), n)
        } else {
            let sym = ["<=", ">=", "!=", "(", ")", ",", "*", "=", "<", ">", ";"]
                .into_iter()
                .find(|p| s.starts_with(p))
                .ok_or_else(unexpected_input)?;
            (Tok::Sym(sym), sym.len())
        };
        self.rest = &s[len..];
        Ok(Some(tok))
    }
}

/// What webservice.php answers for the lexer's plain `Exception`.
fn unexpected_input() -> VtError {
    err(
        "INTERNAL_SERVER_ERROR",
        "Unknown Error while processing request",
    )
}

/// The length of `'(?:[^']|'')+'` at the start of `s`, as PCRE matches it
/// (greedy, then backtracking over the last `''` taken as a pair).
fn quoted(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    let mut items = 0;
    let mut last_pair: Option<(usize, usize)> = None;
    while i < b.len() {
        if b[i] == b'\'' {
            if b.get(i + 1) == Some(&b'\'') {
                last_pair = Some((i, items));
                items += 1;
                i += 2;
                continue;
            }
            return (items > 0).then_some(i + 1);
        }
        items += 1;
        i += 1;
    }
    // No lone closing quote: the last pair's first quote closes instead.
    last_pair
        .filter(|(_, before)| *before > 0)
        .map(|(at, _)| at + 1)
}

/// A string token read as MySQL reads a string literal; `None` when
/// MySQL's string does not end exactly where the token does.
fn mysql_string(token: &str) -> Option<String> {
    let chars: Vec<char> = token.chars().collect();
    let mut out = String::new();
    let mut i = 1;
    while i < chars.len() {
        match chars[i] {
            '\\' => {
                let c = *chars.get(i + 1)?;
                match c {
                    '0' => out.push('\0'),
                    'b' => out.push('\u{8}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'Z' => out.push('\u{1a}'),
                    // Kept escaped, for LIKE.
                    '%' | '_' => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
                i += 2;
            }
            '\'' if chars.get(i + 1) == Some(&'\'') => {
                out.push('\'');
                i += 2;
            }
            '\'' => return (i == chars.len() - 1).then_some(out),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    None
}

/// `VtigerWebserviceObject::fromQuery`: the module named after FROM.
fn from_query(vtql: &str) -> Result<&'static Module, VtError> {
    let lower = vtql.to_ascii_lowercase();
    for (at, _) in lower.match_indices("from") {
        let after = &vtql[at + 4..];
        let name_at = after.trim_start_matches(|c: char| c.is_ascii_whitespace());
        if name_at.len() == after.len() {
            continue;
        }
        let n = name_at
            .find(|c: char| c.is_ascii_whitespace() || c == ';')
            .unwrap_or(name_at.len());
        if n == 0 {
            continue;
        }
        return module(&name_at[..n]);
    }
    Err(err(
        "ACCESS_DENIED",
        "Permission to perform the operation is denied for query",
    ))
}

/// `VtigerWebserviceObject::fromName` (MySQL compares the name
/// case-insensitively).
fn module(name: &str) -> Result<&'static Module, VtError> {
    MODULES
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            err(
                "ACCESS_DENIED",
                "Permission to perform the operation is denied for name",
            )
        })
}

struct Parser<'a> {
    lex: Lexer<'a>,
    peeked: Option<Option<Tok>>,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<Option<&Tok>, VtError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex.next()?);
        }
        Ok(self.peeked.as_ref().and_then(Option::as_ref))
    }

    fn next(&mut self) -> Result<Tok, VtError> {
        self.peek()?;
        self.peeked
            .take()
            .flatten()
            .ok_or_else(|| syntax("End of Input"))
    }

    fn expect(&mut self, want: impl Fn(&Tok) -> bool) -> Result<Tok, VtError> {
        let tok = self.next()?;
        if want(&tok) {
            Ok(tok)
        } else {
            Err(syntax(tok.text()))
        }
    }

    fn next_is(&mut self, want: impl Fn(&Tok) -> bool) -> Result<bool, VtError> {
        Ok(self.peek()?.is_some_and(want))
    }
}

/// Parses a query as vtiger does, in its order: module, syntax, fields.
pub fn parse(vtql: &str) -> Result<Query, VtError> {
    let from_module = from_query(vtql)?;
    let mut p = Parser {
        lex: Lexer { rest: vtql },
        peeked: None,
    };
    p.expect(|t| t.is_word("select"))?;
    let mut columns = Vec::new();
    if p.next_is(|t| *t == Tok::Sym("*"))? {
        p.next()?;
        columns.push("*".to_owned());
    } else if p.next_is(|t| t.is_word("count"))? {
        p.next()?;
        p.expect(|t| *t == Tok::Sym("("))?;
        p.expect(|t| *t == Tok::Sym("*"))?;
        p.expect(|t| *t == Tok::Sym(")"))?;
        columns.push("count(*)".to_owned());
    } else {
        loop {
            let tok = p.expect(|t| matches!(t, Tok::Word(w) if !w.eq_ignore_ascii_case("from")))?;
            columns.push(tok.text().to_owned());
            if !p.next_is(|t| *t == Tok::Sym(","))? {
                break;
            }
            p.next()?;
        }
    }
    p.expect(|t| t.is_word("from"))?;
    let table = p.expect(|t| matches!(t, Tok::Word(_)))?;
    let module = module(table.text())?;
    if !std::ptr::eq(module, from_module) {
        return Err(syntax(table.text()));
    }
    let mut filter: Vec<Vec<Cond>> = Vec::new();
    if p.next_is(|t| t.is_word("where"))? {
        p.next()?;
        filter.push(Vec::new());
        loop {
            let cond = condition(&mut p)?;
            filter.last_mut().expect("a group").push(cond);
            if p.next_is(|t| t.is_word("and"))? {
                p.next()?;
            } else if p.next_is(|t| t.is_word("or"))? {
                p.next()?;
                filter.push(Vec::new());
            } else {
                break;
            }
        }
    }
    let (mut order, mut descending) = (Vec::new(), false);
    if p.next_is(|t| t.is_word("order"))? {
        p.next()?;
        p.expect(|t| t.is_word("by"))?;
        loop {
            order.push(p.expect(|t| matches!(t, Tok::Word(_)))?.text().to_owned());
            if !p.next_is(|t| *t == Tok::Sym(","))? {
                break;
            }
            p.next()?;
        }
        if p.next_is(|t| t.is_word("asc") || t.is_word("desc"))? {
            descending = p.next()?.is_word("desc");
        }
    }
    let (mut offset, mut limit) = (0, 100);
    if p.next_is(|t| t.is_word("limit"))? {
        p.next()?;
        let number = |t: &Tok| matches!(t, Tok::Word(w) if w.bytes().all(|b| b.is_ascii_digit()));
        let first: usize = p.expect(number)?.text().parse().unwrap_or(0);
        if p.next_is(|t| *t == Tok::Sym(","))? {
            p.next()?;
            offset = first;
            limit = p.expect(number)?.text().parse().unwrap_or(0);
            limit = limit.min(100);
        } else {
            limit = first.min(100);
        }
    }
    p.expect(|t| *t == Tok::Sym(";"))?;
    if let Some(extra) = p.peek()? {
        return Err(syntax(extra.text()));
    }
    // buildSelectStmt: every field must be the module's.
    let known = |f: &str| f == "id" || module.fields.contains(&f);
    let plain = !matches!(columns.first().map(String::as_str), Some("*" | "count(*)"));
    if plain {
        if !columns.iter().any(|c| c == "id") {
            columns.push("id".to_owned());
        }
        if columns.iter().any(|c| !known(c)) {
            return Err(err(
                "ACCESS_DENIED",
                "Permission to access '.$field.' attribute denied.",
            ));
        }
    }
    for cond in filter.iter().flatten() {
        if !known(&cond.field) {
            return Err(err(
                "ACCESS_DENIED",
                format!("Permission to access {} attribute denied.", cond.field),
            ));
        }
    }
    for cond in filter.iter_mut().flatten() {
        if cond.field == "modifiedtime" {
            for v in &mut cond.values {
                let read = match v {
                    Val::Str(s) => mysql_datetime(s),
                    Val::Num(_) => None,
                };
                let Some(read) = read else {
                    return Err(err(
                        "DATABASE_QUERY_ERROR",
                        "Database error while performing requested operation",
                    ));
                };
                *v = Val::Str(read);
            }
        }
    }
    if let Some(bad) = order.iter().find(|c| !known(c)) {
        return Err(err(
            "ACCESS_DENIED",
            format!("Permission to access {bad} attribute denied."),
        ));
    }
    Ok(Query {
        module,
        columns,
        filter,
        order,
        descending,
        offset,
        limit,
    })
}

fn condition(p: &mut Parser<'_>) -> Result<Cond, VtError> {
    let field = p.expect(|t| matches!(t, Tok::Word(_)))?.text().to_owned();
    let op = match p.next()? {
        Tok::Sym("=") => Op::Eq,
        Tok::Sym("!=") => Op::Ne,
        Tok::Sym("<") => Op::Lt,
        Tok::Sym(">") => Op::Gt,
        Tok::Sym("<=") => Op::Le,
        Tok::Sym(">=") => Op::Ge,
        t if t.is_word("in") => Op::In,
        t if t.is_word("like") => Op::Like,
        t => return Err(syntax(t.text())),
    };
    let mut values = Vec::new();
    if p.next_is(|t| *t == Tok::Sym("("))? {
        p.next()?;
        loop {
            values.push(value(p.next()?)?);
            match p.next()? {
                Tok::Sym(",") => continue,
                Tok::Sym(")") => break,
                t => return Err(syntax(t.text())),
            }
        }
    } else {
        values.push(value(p.next()?)?);
    }
    Ok(Cond { field, op, values })
}

fn value(tok: Tok) -> Result<Val, VtError> {
    match tok {
        Tok::Str(raw) => mysql_string(&raw).map(Val::Str).ok_or_else(|| {
            err(
                "DATABASE_QUERY_ERROR",
                "Database error while performing requested operation",
            )
        }),
        Tok::Num(n) => Ok(Val::Num(n.parse().unwrap_or(0.0))),
        Tok::Word(w) if w.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(Val::Num(w.parse().unwrap_or(0.0)))
        }
        // A bare word is a column to MySQL: none of ours compares.
        Tok::Word(w) => Err(err(
            "DATABASE_QUERY_ERROR",
            format!("Database error while performing requested operation ({w})"),
        )),
        t => Err(syntax(t.text())),
    }
}

/// The record number of a webservice id (`12x345` → 345).
fn crmid(id: &str) -> u64 {
    id.rsplit('x')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A DATETIME literal as MySQL reads `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`
/// (midnight), written back as `YYYY-MM-DD HH:MM:SS` so that comparing
/// two as text compares them as times; `None` for any other shape.
pub fn mysql_datetime(text: &str) -> Option<String> {
    let full = if text.len() == 10 {
        format!("{text} 00:00:00")
    } else {
        text.to_owned()
    };
    let shape = "dddd-dd-dd dd:dd:dd";
    let fits = full.len() == shape.len()
        && full.bytes().zip(shape.bytes()).all(|(c, want)| {
            if want == b'd' {
                c.is_ascii_digit()
            } else {
                c == want
            }
        });
    fits.then_some(full)
}

/// MySQL's string comparison under a `_ci` collation with PAD SPACE.
fn fold(s: &str) -> String {
    s.trim_end_matches(' ').to_lowercase()
}

/// MySQL's reading of a string as a number: its numeric prefix, else 0.
fn numeric(s: &str) -> f64 {
    let t = s.trim_start();
    let end = t
        .char_indices()
        .take_while(|(i, c)| {
            c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '-' || *c == '+'))
        })
        .count();
    t[..end].parse().unwrap_or(0.0)
}

/// MySQL's `LIKE` with its default escape `\`: `%` any run, `_` one
/// character, case-insensitive (the `_ci` collations); one pass over the
/// text, however many `%` (the MySQL-backed test CRMs share it).
pub fn like(text: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Any,
        One,
        Char(char),
    }
    let mut pat = Vec::new();
    let mut chars = pattern.chars().flat_map(char::to_lowercase);
    while let Some(c) = chars.next() {
        pat.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Char(chars.next().unwrap_or('\\')),
            c => P::Char(c),
        });
    }
    // prev[j]: the text read so far matches the first j pattern items.
    let mut prev = vec![false; pat.len() + 1];
    prev[0] = true;
    for j in 1..=pat.len() {
        prev[j] = prev[j - 1] && pat[j - 1] == P::Any;
    }
    for t in text.chars().flat_map(char::to_lowercase) {
        let mut cur = vec![false; pat.len() + 1];
        for j in 1..=pat.len() {
            cur[j] = match pat[j - 1] {
                P::Any => cur[j - 1] || prev[j],
                P::One => prev[j - 1],
                P::Char(c) => prev[j - 1] && c == t,
            };
        }
        prev = cur;
    }
    prev[pat.len()]
}

fn holds(record: &Record, cond: &Cond) -> bool {
    let stored = record.get(&cond.field);
    let cmp = |v: &Val| -> std::cmp::Ordering {
        match v {
            Val::Str(s) => fold(stored).cmp(&fold(s)),
            Val::Num(n) => numeric(stored)
                .partial_cmp(n)
                .unwrap_or(std::cmp::Ordering::Less),
        }
    };
    use std::cmp::Ordering::*;
    match cond.op {
        Op::Eq | Op::In => cond.values.iter().any(|v| cmp(v) == Equal),
        Op::Ne => cond.values.iter().all(|v| cmp(v) != Equal),
        Op::Lt => cond.values.iter().any(|v| cmp(v) == Less),
        Op::Gt => cond.values.iter().any(|v| cmp(v) == Greater),
        Op::Le => cond.values.iter().any(|v| cmp(v) != Greater),
        Op::Ge => cond.values.iter().any(|v| cmp(v) != Less),
        Op::Like => cond.values.iter().any(|v| match v {
            Val::Str(s) => like(stored, s),
            Val::Num(n) => like(stored, &n.to_string()),
        }),
    }
}

/// The rows a query selects from `records`, as vtiger's `result`.
pub fn run(q: &Query, records: &[Record]) -> Value {
    let mut rows: Vec<&Record> = records
        .iter()
        .filter(|r| r.module == q.module.name)
        .filter(|r| q.filter.is_empty() || q.filter.iter().any(|g| g.iter().all(|c| holds(r, c))))
        .collect();
    if !q.order.is_empty() {
        rows.sort_by_key(|r| {
            q.order
                .iter()
                .map(|f| match f.as_str() {
                    // crmid, a number.
                    "id" => format!("{:020}", crmid(&r.id)),
                    f => fold(r.get(f)),
                })
                .collect::<Vec<_>>()
        });
        if q.descending {
            rows.reverse();
        }
    }
    if q.columns.first().map(String::as_str) == Some("count(*)") {
        return json!([{"count": rows.len().to_string()}]);
    }
    let all = q.columns.first().map(String::as_str) == Some("*");
    let rows = rows.into_iter().skip(q.offset).take(q.limit).map(|r| {
        let mut row = Map::new();
        let fields: Vec<&str> = if all {
            q.module.fields.iter().copied().chain(["id"]).collect()
        } else {
            q.columns.iter().map(String::as_str).collect()
        };
        for f in fields {
            row.insert(f.to_owned(), Value::from(r.get(f)));
        }
        Value::Object(row)
    });
    Value::Array(rows.collect())
}

#[test]
fn vtql_reads_strings_as_vtiger_then_mysql_do() {
    assert_eq!(quoted("'O''Neil' x"), Some(9));
    assert_eq!(quoted("'a\\b'"), Some(5));
    // An unclosed pair backtracks to close at its first quote.
    assert_eq!(quoted("'ab'' x"), Some(4));
    assert_eq!(quoted("'' x"), None);
    assert_eq!(mysql_string("'O''Neil'").as_deref(), Some("O'Neil"));
    assert_eq!(mysql_string("'a\\\\b'").as_deref(), Some("a\\b"));
    assert_eq!(mysql_string("'50\\%'").as_deref(), Some("50\\%"));
    // VTQL's token ends where MySQL's string does not: an injection.
    assert_eq!(quoted("'x\\' OR"), Some(4));
    assert_eq!(mysql_string("'x\\'"), None);
}

#[test]
fn one_module_per_query_and_only_its_fields() {
    let q = parse(
        "SELECT id,firstname FROM Contacts WHERE phone IN ('1','2') OR mobile = '3' LIMIT 1;",
    )
    .unwrap();
    assert_eq!((q.module.name, q.limit, q.filter.len()), ("Contacts", 1, 2));
    let limit = |s: &str| parse(s).map(|q| (q.offset, q.limit)).unwrap();
    assert_eq!(limit("SELECT id FROM Leads;"), (0, 100));
    assert_eq!(limit("SELECT id FROM Leads LIMIT 500;"), (0, 100));
    assert_eq!(limit("SELECT id FROM Leads LIMIT 200,500;"), (200, 100));
    let code = |s: &str| parse(s).unwrap_err().code;
    assert_eq!(code("SELECT id FROM Contacts,Leads;"), "ACCESS_DENIED");
    assert_eq!(
        code("SELECT id FROM Contacts , Leads;"),
        "QUERY_SYNTAX_ERROR"
    );
    assert_eq!(
        code("SELECT id FROM Contacts JOIN Leads ON x = y;"),
        "QUERY_SYNTAX_ERROR"
    );
    assert_eq!(code("SELECT id FROM Contacts"), "QUERY_SYNTAX_ERROR");
    assert_eq!(code("SELECT id FROM Potato;"), "ACCESS_DENIED");
    assert_eq!(code("SELECT homephone FROM Leads;"), "ACCESS_DENIED");
    assert_eq!(
        code("SELECT id FROM Accounts WHERE mobile = '1';"),
        "ACCESS_DENIED"
    );
    assert_eq!(
        code("SELECT id FROM Contacts WHERE phone = \"1\";"),
        "INTERNAL_SERVER_ERROR"
    );
    // VTQL's token is 'x\' (a backslash is nothing to it), MySQL's string
    // goes on past it: the SQL would break, or worse.
    assert_eq!(
        code("SELECT id FROM Contacts WHERE phone = 'x\\' OR phone = 'b';"),
        "DATABASE_QUERY_ERROR"
    );
}

#[test]
fn comparisons_are_mysql_s() {
    let records = [Record {
        module: "Contacts",
        id: "12x1".into(),
        fields: vec![
            ("phone", "0612345678".into()),
            ("lastname", "O'Neil".into()),
        ],
    }];
    let hits = |where_: &str| {
        let q = parse(&format!("SELECT id FROM Contacts WHERE {where_};")).unwrap();
        run(&q, &records).as_array().unwrap().len()
    };
    assert_eq!(hits("phone = '0612345678 '"), 1, "PAD SPACE");
    assert_eq!(hits("lastname = 'o''neil'"), 1, "case-insensitive");
    assert_eq!(hits("phone = '06%'"), 0, "= has no wildcard");
    assert_eq!(hits("phone LIKE '06%'"), 1);
    assert_eq!(hits("phone LIKE '06\\%'"), 0, "an escaped % is a %");
    assert_eq!(hits("phone LIKE '061234567_'"), 1);
    assert_eq!(hits("phone LIKE '%6%1%2%3%4%5%6%7%8%'"), 1);
    assert_eq!(hits("phone LIKE '%6%1%2%3%4%5%6%7%9%'"), 0);
    // Unquoted, a number is compared as a number: 0612... is 612...
    assert_eq!(hits("phone = 612345678"), 1);
    assert_eq!(hits("phone = '612345678'"), 0);
    // AND binds before OR.
    assert_eq!(
        hits("phone = 'x' AND lastname = 'x' OR phone = '0612345678'"),
        1
    );
    assert_eq!(hits("phone = 'x' AND lastname = 'x' OR phone = 'y'"), 0);
}

#[test]
fn modifiedtime_compares_as_a_datetime_and_id_orders_by_number() {
    let record = |id: &str, modified: &str| Record {
        module: "Leads",
        id: id.into(),
        fields: vec![("modifiedtime", modified.into())],
    };
    let records = [
        record("10x10", "2026-12-07 14:00:05"),
        record("10x9", "2026-12-07 13:59:59"),
        record("10x100", "2026-12-08 09:00:00"),
    ];
    let ids = |vtql: &str| -> Vec<String> {
        let q = parse(vtql).unwrap();
        run(&q, &records)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids("SELECT id FROM Leads ORDER BY id LIMIT 0,2;"),
        ["10x9", "10x10"]
    );
    assert_eq!(
        ids("SELECT id FROM Leads ORDER BY id LIMIT 2,2;"),
        ["10x100"]
    );
    assert_eq!(
        ids("SELECT id FROM Leads WHERE modifiedtime > '2026-12-07 14:00:00' ORDER BY id LIMIT 0,100;"),
        ["10x10", "10x100"]
    );
    assert_eq!(
        ids("SELECT id FROM Leads WHERE modifiedtime > '2026-12-08' ORDER BY id;"),
        ["10x100"]
    );
    let code = |s: &str| parse(s).unwrap_err().code;
    for bad in ["'2026-12-07T14:00:00Z'", "'20261207140000'", "1765116000"] {
        assert_eq!(
            code(&format!("SELECT id FROM Leads WHERE modifiedtime > {bad};")),
            "DATABASE_QUERY_ERROR",
            "{bad}"
        );
    }
}
