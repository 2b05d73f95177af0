//! Config diagnostics that name the file, the line and column, and the key
//! path, like a compiler: `config.toml:12:8: routes[1].when: ...`, then the
//! line itself with a caret under the fault. A fault inside a template or
//! expression is placed at its column inside the TOML string (escapes and
//! multi-line strings accounted for), not at the key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;
use toml::Spanned;

/// Whether a diagnostic stops the config from loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The config cannot be used.
    Error,
    /// The config works, but probably not as meant.
    Warning,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Error => "error",
            Level::Warning => "warning",
        })
    }
}

/// The line of the config a diagnostic points at, for showing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The whole line, as written.
    pub text: String,
    /// 1-based column (in characters) where the fault starts.
    pub column: usize,
    /// How many characters to underline (at least 1).
    pub width: usize,
}

/// One error or warning about the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub level: Level,
    /// The config file.
    pub file: PathBuf,
    /// 1-based line and column, when the key could be found in the file.
    pub position: Option<(usize, usize)>,
    /// The key path, e.g. `routes[1].open.url`; empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// The line it is on, when known.
    pub snippet: Option<Snippet>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl Diagnostic {
    /// The diagnostic as `check` prints it: the level and the one-line form,
    /// then the line with a caret under the fault, as rustc does.
    pub fn render(&self) -> String {
        let mut out = format!("{}: {self}", self.level);
        if let (Some((line, _)), Some(s)) = (self.position, &self.snippet) {
            let gutter = " ".repeat(line.to_string().len());
            let pad: String = s
                .text
                .chars()
                .take(s.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!(
                "\n{gutter} |\n{line} | {}\n{gutter} | {pad}{}",
                s.text,
                "^".repeat(s.width.max(1))
            ));
        }
        out
    }
}

/// Collects diagnostics while a config is validated, placing each at its key.
pub(super) struct Diagnostics<'a> {
    file: &'a Path,
    source: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
    /// Errors found so far: any one makes the config unusable.
    pub(super) errors: Vec<Diagnostic>,
    /// Warnings found so far: the config works, but probably not as meant.
    pub(super) warnings: Vec<Diagnostic>,
}

impl<'a> Diagnostics<'a> {
    /// A collector for one file's text.
    pub(super) fn new(file: &'a Path, source: &'a str) -> Self {
        Self {
            file,
            source,
            root: DeTable::parse(source).ok(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records an error at `key`.
    pub(super) fn error(&mut self, key: &str, message: impl fmt::Display) {
        let span = self.key_span(key);
        self.push(Level::Error, key, span, message.to_string());
    }

    /// Records a warning at `key`.
    pub(super) fn warn(&mut self, key: &str, message: impl fmt::Display) {
        let span = self.key_span(key);
        self.push(Level::Warning, key, span, message.to_string());
    }

    /// Records an error at the value of `key` (a number out of range).
    pub(super) fn value_error(&mut self, key: &str, message: impl fmt::Display) {
        let span = self
            .root
            .as_ref()
            .and_then(|root| locate(root, key))
            .map(|(_, v)| v);
        self.push(Level::Error, key, span, message.to_string());
    }

    /// Records a diagnostic at bytes `range` of the string value at `key`
    /// (its text after TOML unescaping), e.g. a filter name in a template.
    pub(super) fn in_value(
        &mut self,
        level: Level,
        key: &str,
        range: Range<usize>,
        message: impl fmt::Display,
    ) {
        let value = self
            .root
            .as_ref()
            .and_then(|root| locate(root, key))
            .map(|(_, v)| v);
        let raw = value.and_then(|v| Some((v.start, self.source.get(v)?)));
        let span = match raw {
            Some((start, raw)) if raw.starts_with(['"', '\'']) => {
                let from = start + raw_offset(raw, range.start);
                let to = start + raw_offset(raw, range.end.max(range.start));
                Some(from..to)
            }
            _ => self.key_span(key),
        };
        self.push(level, key, span, message.to_string());
    }

    /// A diagnostic at a byte span (from the TOML parser) rather than a key.
    pub(super) fn at_span(
        &self,
        key: &str,
        span: Option<Range<usize>>,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            level: Level::Error,
            file: self.file.to_owned(),
            position: span.as_ref().map(|s| line_col(self.source, s.start)),
            key: key.to_owned(),
            message,
            snippet: span.map(|s| snippet(self.source, s)),
        }
    }

    fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.root
            .as_ref()
            .and_then(|root| locate(root, key))
            .map(|(k, _)| k)
    }

    fn push(&mut self, level: Level, key: &str, span: Option<Range<usize>>, message: String) {
        let mut d = self.at_span(key, span, message);
        d.level = level;
        match level {
            Level::Error => self.errors.push(d),
            Level::Warning => self.warnings.push(d),
        }
    }
}

/// " (did you mean ...?)" for a misspelt name, when a candidate is close:
/// a letter or two off, or the name with a prefix (`Ringing`,
/// `EventRinging`).
pub fn suggest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    let close = |c: &str| (c.chars().count().max(name.chars().count()) / 3).clamp(1, 2);
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .filter_map(|c| {
            let d = strsim::damerau_levenshtein(c, name);
            if d <= close(c) {
                Some((0, d, c))
            } else if name.len() >= 4 && c.to_lowercase().contains(&lower) {
                Some((1, d, c))
            } else {
                None
            }
        })
        .min()
        .map(|(_, _, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

/// The line holding `span.start`, with the span's width on that line.
fn snippet(source: &str, span: Range<usize>) -> Snippet {
    let boundary = |mut i: usize| {
        i = i.min(source.len());
        while !source.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = boundary(span.start);
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[start..]
        .find('\n')
        .map_or(source.len(), |i| start + i);
    let text = source[line_start..line_end].trim_end_matches('\r');
    let end = boundary(span.end.clamp(start, line_start + text.len()));
    Snippet {
        text: text.to_owned(),
        column: source[line_start..start].chars().count() + 1,
        width: source
            .get(start..end)
            .map_or(1, |s| s.chars().count().max(1)),
    }
}

/// Where byte `at` of a TOML string's value lies in its raw text (quotes
/// included): literal strings are copied as written; basic strings have
/// escapes; both multi-line kinds drop a newline right after the quotes.
fn raw_offset(raw: &str, at: usize) -> usize {
    let (delim, basic) = if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with("'''") {
        (3, false)
    } else {
        (1, raw.starts_with('"'))
    };
    let mut i = delim;
    if delim == 3 {
        if raw[i..].starts_with("\r\n") {
            i += 2;
        } else if raw[i..].starts_with('\n') {
            i += 1;
        }
    }
    if !basic {
        return (i + at).min(raw.len());
    }
    let bytes = raw.as_bytes();
    let mut decoded = 0;
    while decoded < at && i < raw.len() {
        if bytes[i] != b'\\' {
            let len = raw[i..].chars().next().map_or(1, char::len_utf8);
            i += len;
            decoded += len;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'u' | b'U') => {
                let digits = if bytes[i + 1] == b'u' { 4 } else { 8 };
                let c = raw
                    .get(i + 2..i + 2 + digits)
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32);
                i += 2 + digits;
                decoded += c.map_or(1, char::len_utf8);
            }
            // A line-ending backslash: the newline and blanks after it vanish.
            Some(b' ' | b'\t' | b'\r' | b'\n') => {
                i += 1;
                while i < raw.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
            }
            _ => {
                i += 2;
                decoded += 1;
            }
        }
    }
    i.min(raw.len())
}

/// Finds the spans (key, value) of the deepest part of `key` that exists in
/// the document, so even a missing key points at the table it belongs in.
fn locate(root: &Spanned<DeTable<'_>>, key: &str) -> Option<(Range<usize>, Range<usize>)> {
    let mut table = root.get_ref();
    let mut found = None;
    for segment in key.split('.').filter(|s| !s.is_empty()) {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let Some((k, mut value)) = table.get_key_value(name) else {
            break;
        };
        found = Some((k.span(), value.span()));
        if let Some(item) = index.and_then(|i| value.get_ref().as_array()?.get(i)) {
            found = Some((item.span(), item.span()));
            value = item;
        }
        match value.get_ref().as_table() {
            Some(t) => table = t,
            None => break,
        }
    }
    found
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_located_by_path_including_array_items() {
        let src =
            "[server]\nlisten = \"x\"\n\n[[routes]]\npath = \"/\"\n\n[[routes]]\nwhen = \"a ==\"\n";
        let mut d = Diagnostics::new(Path::new("c.toml"), src);
        d.error("routes[1].when", "bad");
        d.error("server.listen", "bad");
        d.error("routes[1].open", "missing");
        assert_eq!(d.errors[0].position, Some((8, 1)));
        assert_eq!(d.errors[1].position, Some((2, 1)));
        assert_eq!(
            d.errors[2].to_string(),
            "c.toml:7:1: routes[1].open: missing"
        );
    }

    #[test]
    fn faults_inside_strings_are_placed_through_escapes_and_quotes() {
        let src =
            "a = 'x.startwith(1)'\nb = \"\\\"\\u00e9\\\" | digitz\"\nc = \"\"\"\n  {{ q }}\"\"\"\n";
        let mut d = Diagnostics::new(Path::new("c.toml"), src);
        d.in_value(Level::Error, "a", 2..11, "m");
        // b's value is `"é" | digitz`: digitz starts at byte 7 (é is 2 bytes).
        d.in_value(Level::Error, "b", 7..13, "m");
        // c's value is `  {{ q }}` after the dropped newline.
        d.in_value(Level::Warning, "c", 5..6, "m");
        assert_eq!(d.errors[0].position, Some((1, 8)));
        assert_eq!(
            d.errors[0].render(),
            "error: c.toml:1:8: a: m\n  |\n1 | a = 'x.startwith(1)'\n  |        ^^^^^^^^^"
        );
        assert_eq!(d.errors[1].position, Some((2, 19)));
        assert_eq!(d.errors[1].snippet.as_ref().unwrap().width, 6);
        assert_eq!(d.warnings[0].position, Some((4, 6)));
    }

    #[test]
    fn suggestions_are_close_names_only() {
        assert_eq!(
            suggest("startwith", ["startswith", "endswith"]),
            " (did you mean \"startswith\"?)"
        );
        assert_eq!(
            suggest("nam", ["name", "number"]),
            " (did you mean \"name\"?)"
        );
        assert_eq!(suggest("xyz", ["name", "number"]), "");
        assert_eq!(
            suggest("Ringing", ["EventRinging", "EventReleased"]),
            " (did you mean \"EventRinging\"?)"
        );
    }
}
