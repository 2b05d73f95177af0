//! Config diagnostics that name the file, the line and column, and the key
//! path, like a compiler: `config.toml:12:8: routes[1].when: ...`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;
use toml::Spanned;

/// One error or warning about the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file.
    pub file: PathBuf,
    /// 1-based line and column, when the key could be found in the file.
    pub position: Option<(usize, usize)>,
    /// The key path, e.g. `routes[1].open.url`; empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
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
        let d = self.make(key, message.to_string());
        self.errors.push(d);
    }

    /// Records a warning at `key`.
    pub(super) fn warn(&mut self, key: &str, message: impl fmt::Display) {
        let d = self.make(key, message.to_string());
        self.warnings.push(d);
    }

    /// A diagnostic at a byte span (from the TOML parser) rather than a key.
    pub(super) fn at_span(
        &self,
        key: &str,
        span: Option<Range<usize>>,
        message: String,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.to_owned(),
            position: span.map(|s| line_col(self.source, s.start)),
            key: key.to_owned(),
            message,
        }
    }

    fn make(&self, key: &str, message: String) -> Diagnostic {
        let span = self.root.as_ref().and_then(|root| locate(root, key));
        self.at_span(key, span, message)
    }
}

/// Finds the span of the deepest part of `key` that exists in the document,
/// so even a missing key points at the table it belongs in.
fn locate(root: &Spanned<DeTable<'_>>, key: &str) -> Option<Range<usize>> {
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
        found = Some(k.span());
        if let Some(item) = index.and_then(|i| value.get_ref().as_array()?.get(i)) {
            found = Some(item.span());
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
}
