//! Finds the names a template uses (filters, tests, methods, variable
//! paths) with their byte ranges, so `check` can judge each one and put a
//! caret under it. It runs only on templates minijinja has compiled, so it
//! can be a plain token scan: strings and comments are skipped, and what is
//! left is identifiers and punctuation. (minijinja's own syntax tree is only
//! public behind its `unstable_machinery` feature, which has no semver
//! promise; a scan this small is cheaper to keep working.)

use std::ops::Range;

/// One name a template uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Use<'s> {
    /// `x | name`, or `{% filter name %}`.
    Filter(&'s str, Range<usize>),
    /// `x is name`, `x is not name`.
    Test(&'s str, Range<usize>),
    /// `x.name(...)`.
    Method(&'s str, Range<usize>),
    /// `a.b["c"]`: a variable and the attributes read from it.
    Path(Vec<(&'s str, Range<usize>)>),
    /// `name=` inside the call of `callee` (a filter, test, method or
    /// function): `md5(x, binary=true)` is `("md5", "binary")`.
    Keyword(&'s str, &'s str, Range<usize>),
}

/// Words of the template language, never variables.
const KEYWORDS: [&str; 36] = [
    "if",
    "elif",
    "else",
    "endif",
    "for",
    "endfor",
    "in",
    "not",
    "and",
    "or",
    "is",
    "set",
    "endset",
    "with",
    "endwith",
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "filter",
    "endfilter",
    "macro",
    "endmacro",
    "call",
    "endcall",
    "block",
    "endblock",
    "include",
    "import",
    "from",
    "as",
    "recursive",
    "do",
    "autoescape",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ident,
    Str,
    Number,
    Punct(u8),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    range: Range<usize>,
}

/// Every use in `source`: a whole template, or (`expression`) one bare
/// expression such as a `when` condition.
pub(super) fn scan(source: &str, expression: bool) -> Vec<Use<'_>> {
    let mut uses = Vec::new();
    if expression {
        uses_in(source, &tokens(source, 0..source.len()), &mut uses);
        return uses;
    }
    let mut at = 0;
    while let Some(i) = source[at..].find('{').map(|i| at + i) {
        let close = match source.as_bytes().get(i + 1) {
            Some(b'{') => "}}",
            Some(b'%') => "%}",
            Some(b'#') => {
                at = source[i..].find("#}").map_or(source.len(), |j| i + j + 2);
                continue;
            }
            _ => {
                at = i + 1;
                continue;
            }
        };
        let body = tokens_until(source, i + 2, close);
        let end = body.1;
        let toks = body.0;
        let is_tag = close == "%}";
        if is_tag && first_ident(source, &toks) == Some("raw") {
            at = source[end..]
                .find("endraw")
                .and_then(|j| source[end + j..].find("%}").map(|k| end + j + k + 2))
                .unwrap_or(source.len());
            continue;
        }
        let mut rest = &toks[..];
        if is_tag && first_ident(source, &toks) == Some("filter") {
            if let Some(t) = toks.get(1).filter(|t| t.kind == Kind::Ident) {
                uses.push(Use::Filter(&source[t.range.clone()], t.range.clone()));
                rest = &toks[2..];
            }
        }
        uses_in(source, rest, &mut uses);
        at = end;
    }
    uses
}

fn first_ident<'s>(source: &'s str, toks: &[Token]) -> Option<&'s str> {
    toks.first()
        .filter(|t| t.kind == Kind::Ident)
        .map(|t| &source[t.range.clone()])
}

/// Tokens from `from` up to the closing delimiter (outside strings), and
/// where scanning should resume.
fn tokens_until(source: &str, from: usize, close: &str) -> (Vec<Token>, usize) {
    let mut toks = tokens(source, from..source.len());
    // The first punctuation pair that forms the delimiter ends the block.
    let bytes = source.as_bytes();
    let close = close.as_bytes();
    let end = toks
        .iter()
        .position(|t| {
            t.kind == Kind::Punct(close[0]) && bytes.get(t.range.start + 1) == Some(&close[1])
        })
        .unwrap_or(toks.len());
    let resume = toks.get(end).map_or(source.len(), |t| t.range.start + 2);
    toks.truncate(end);
    // Whitespace control (`{{-`, `-}}`, `{%+`) is not an operator.
    if toks
        .first()
        .is_some_and(|t| matches!(t.kind, Kind::Punct(b'-' | b'+')) && t.range.start == from)
    {
        toks.remove(0);
    }
    (toks, resume)
}

fn tokens(source: &str, range: Range<usize>) -> Vec<Token> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = range.start;
    while i < range.end {
        let b = bytes[i];
        let start = i;
        let kind = if b.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if b.is_ascii_alphabetic() || b == b'_' {
            while i < range.end && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            Kind::Ident
        } else if b.is_ascii_digit() {
            while i < range.end
                && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.'))
            {
                i += 1;
            }
            Kind::Number
        } else if b == b'"' || b == b'\'' {
            i += 1;
            while i < range.end && bytes[i] != b {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(range.end);
            Kind::Str
        } else {
            // Whole characters, so a range never splits one.
            i += source[i..].chars().next().map_or(1, char::len_utf8);
            Kind::Punct(b)
        };
        out.push(Token {
            kind,
            range: start..i,
        });
    }
    out
}

fn uses_in<'s>(source: &'s str, toks: &[Token], uses: &mut Vec<Use<'s>>) {
    let text = |t: &Token| &source[t.range.clone()];
    let punct = |i: usize, c: u8| toks.get(i).is_some_and(|t| t.kind == Kind::Punct(c));
    let ident = |i: usize| toks.get(i).filter(|t| t.kind == Kind::Ident);
    // The callee of each open parenthesis (none for a grouping one).
    let mut calls: Vec<Option<&'s str>> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if t.kind != Kind::Ident {
            match t.kind {
                Kind::Punct(b'(') => {
                    calls.push(i.checked_sub(1).and_then(&ident).map(text));
                }
                Kind::Punct(b')') => {
                    calls.pop();
                }
                _ => {}
            }
            i += 1;
            continue;
        }
        let name = text(t);
        let after_dot = i > 0 && punct(i - 1, b'.');
        let after_pipe = i > 0 && punct(i - 1, b'|');
        if after_pipe {
            uses.push(Use::Filter(name, t.range.clone()));
            i += 1;
            continue;
        }
        if name == "is" {
            let at = if ident(i + 1).is_some_and(|n| text(n) == "not") {
                i + 2
            } else {
                i + 1
            };
            if let Some(test) = ident(at) {
                uses.push(Use::Test(text(test), test.range.clone()));
            }
            i = at + 1;
            continue;
        }
        if KEYWORDS.contains(&name) && !after_dot {
            i += 1;
            continue;
        }
        if after_dot {
            // A method on something that is not a plain path (`"a".upper()`).
            if punct(i + 1, b'(') {
                uses.push(Use::Method(name, t.range.clone()));
            }
            i += 1;
            continue;
        }
        // A variable, then `.name` / `["name"]` steps; a call ends the path.
        let mut path = vec![(name, t.range.clone())];
        let mut j = i + 1;
        loop {
            if punct(j, b'.') {
                if let Some(seg) = ident(j + 1) {
                    if punct(j + 2, b'(') {
                        uses.push(Use::Method(text(seg), seg.range.clone()));
                        j += 2;
                        break;
                    }
                    path.push((text(seg), seg.range.clone()));
                    j += 2;
                    continue;
                }
            }
            if punct(j, b'[') && punct(j + 2, b']') {
                if let Some(s) = toks
                    .get(j + 1)
                    .filter(|t| t.kind == Kind::Str && t.range.len() >= 2)
                {
                    let inner = s.range.start + 1..s.range.end - 1;
                    path.push((&source[inner.clone()], inner));
                    j += 3;
                    continue;
                }
            }
            break;
        }
        let called = path.len() == 1 && punct(i + 1, b'(');
        let keyword_arg = path.len() == 1 && punct(i + 1, b'=') && !punct(i + 2, b'=');
        if keyword_arg {
            if let Some(Some(callee)) = calls.last() {
                uses.push(Use::Keyword(callee, name, t.range.clone()));
            }
        } else if !called {
            uses.push(Use::Path(path));
        }
        i = j.max(i + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(uses: &[Use<'_>]) -> Vec<String> {
        uses.iter()
            .map(|u| match u {
                Use::Filter(n, _) => format!("|{n}"),
                Use::Test(n, _) => format!("is {n}"),
                Use::Method(n, _) => format!(".{n}()"),
                Use::Path(p) => p.iter().map(|(s, _)| *s).collect::<Vec<_>>().join("."),
                Use::Keyword(c, n, _) => format!("{c}({n}=)"),
            })
            .collect()
    }

    #[test]
    fn finds_filters_tests_methods_and_paths_with_their_ranges() {
        let src = r#"x{{ caller | digitz }}{% if queue.nam is not defind and "a|b.c()".upper() %}{{- user["fullName"].startwith("0") -}}{% endif %}{# queue.x #}"#;
        let uses = scan(src, false);
        assert_eq!(
            names(&uses),
            [
                "caller",
                "|digitz",
                "queue.nam",
                "is defind",
                ".upper()",
                ".startwith()",
                "user.fullName"
            ]
        );
        let Use::Filter(_, r) = &uses[1] else {
            panic!()
        };
        assert_eq!(&src[r.clone()], "digitz");
        let Use::Path(p) = &uses[6] else { panic!() };
        assert_eq!(&src[p[1].1.clone()], "fullName");
    }

    #[test]
    fn expressions_calls_keyword_arguments_and_raw_blocks() {
        assert_eq!(
            names(&scan(r#"caller.startwith("0") or range(n=3)"#, true)),
            [".startwith()", "caller", "range(n=)"]
        );
        assert_eq!(
            names(&scan(
                "{{ md5(a ~ (b | hmac_sha256(k, binary=true)), bianry=x == 1) | join(d=',') }}",
                false
            )),
            [
                "a",
                "b",
                "|hmac_sha256",
                "k",
                "hmac_sha256(binary=)",
                "md5(bianry=)",
                "x",
                "|join",
                "join(d=)"
            ]
        );
        assert_eq!(
            names(&scan(
                "{% raw %}{{ x | nope }}{% endraw %}{% filter upper %}a{% endfilter %}",
                false
            )),
            ["|upper"]
        );
    }
}
