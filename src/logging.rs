//! Log setup: `log.level` and `log.format` from the config; `RUST_LOG`, when
//! set, overrides the level for a debugging session without editing config.
//!
//! Text lines are written by [`TextLine`], not tracing-subscriber's default
//! formatter: one line per request is the largest cost the gateway adds to a
//! preflight (docs/performance.md), and the default formatter spends most of
//! it on styling the line even when colours are off. For the same reason the
//! request line passes its values as `&str` (written as they are, no
//! `fmt` machinery), with the id and latency already written by [`Short`].

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::time::UNIX_EPOCH;

use serde::Deserialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::short_text::Short;

/// `[log]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A tracing filter, e.g. `info` or `thirdparty_gateway=debug`.
    pub level: String,
    /// Text or JSON lines.
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (journald adds the timestamp).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. Call once, before anything logs. Text
/// lines carry no time of their own when they go to the journal, which
/// stamps each line itself ([`to_journal`]).
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_writer(&crate::log_output::STDOUT);
    let result = match settings.format {
        LogFormat::Text => builder
            .event_format(TextLine {
                time: !to_journal(),
            })
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(err) = result {
        eprintln!("logging already initialised: {err}");
    }
}

/// Log lines to standard error, filtered by `RUST_LOG` alone: for a
/// command (`simulate`) whose standard output is its report.
pub fn init_stderr() {
    let result = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::from_default_env())
        .with_ansi(false)
        .event_format(TextLine { time: true })
        .with_writer(std::io::stderr)
        .try_init();
    if let Err(err) = result {
        eprintln!("logging already initialised: {err}");
    }
}

/// Whether standard output is the journal: systemd sets `JOURNAL_STREAM` to
/// the `device:inode` of the stream it connected, and a child that inherited
/// the variable but writes elsewhere (a pipe, a file) does not match it.
pub fn to_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stdout) = std::io::stdout().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(stdout).metadata() {
        Ok(meta) => is_stream(&stream.to_string_lossy(), meta.dev(), meta.ino()),
        Err(_) => false,
    }
}

/// Whether `JOURNAL_STREAM`'s `device:inode` names this device and inode.
fn is_stream(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// `2026-11-25T16:57:58.990295Z  INFO request id=… route=bench detail="no route"`:
/// time, level, message, then `name=value` fields, the shape
/// tracing-subscriber's default prints, except that a string is quoted only
/// when it must be (empty, or with a blank, `"`, `\\`, `=` or a control
/// character), as logfmt does: a value from a client (an Origin) cannot
/// pass for another field. For the journal, which has its own time, the
/// line starts with the level as a syslog priority: `<6>INFO request id=…`.
pub struct TextLine {
    /// Whether a line starts with the time.
    pub time: bool,
}

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                text_line(&mut line, self.time, event)?;
                writer.write_str(&line)
            }
            // A field's Debug that logs: a line of its own.
            Err(_) => {
                let mut line = String::new();
                text_line(&mut line, self.time, event)?;
                writer.write_str(&line)
            }
        })
    }
}

thread_local! {
    /// The line being written: built in a `String` of ours, so each piece is
    /// a plain append rather than a call through tracing's `dyn` writer,
    /// then handed over whole.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

fn text_line(line: &mut String, time: bool, event: &Event<'_>) -> fmt::Result {
    // With the time, the level padded as tracing pads it; for the journal,
    // first the level as a syslog priority (`<3>`), which journald takes
    // off the line and keeps, so `journalctl -p warning` finds warnings.
    let (level, priority) = match *event.metadata().level() {
        Level::ERROR => (" ERROR ", "<3>"),
        Level::WARN => ("  WARN ", "<4>"),
        Level::INFO => ("  INFO ", "<6>"),
        Level::DEBUG => (" DEBUG ", "<7>"),
        Level::TRACE => (" TRACE ", "<7>"),
    };
    if time {
        write_time(line)?;
        line.push_str(level);
    } else {
        line.push_str(priority);
        line.push_str(level.trim_start());
    }
    let mut fields = Fields {
        line,
        first: true,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    line.push('\n');
    Ok(())
}

/// The date and time down to the second, formatted once per second per
/// thread: formatting a full timestamp was a large part of every line.
struct SecondCache {
    second: u64,
    /// `2026-11-25T16:57:58.`
    prefix: String,
}

thread_local! {
    static SECOND: RefCell<SecondCache> = const {
        RefCell::new(SecondCache { second: u64::MAX, prefix: String::new() })
    };
}

/// `2026-11-25T16:57:58.990295Z`, as tracing-subscriber's `SystemTime` writes it.
fn write_time(line: &mut String) -> fmt::Result {
    let Ok(now) = std::time::SystemTime::now().duration_since(UNIX_EPOCH) else {
        return SystemTime.format_time(&mut Writer::new(line));
    };
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.second != now.as_secs() {
            let Ok(t) = time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64) else {
                return SystemTime.format_time(&mut Writer::new(line));
            };
            cache.prefix.clear();
            write!(
                cache.prefix,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )?;
            cache.second = now.as_secs();
        }
        let mut micros = Short::empty();
        micros.decimal(u64::from(now.subsec_micros()), 6);
        line.push_str(&cache.prefix);
        line.push_str(micros.ascii(b'Z').as_str());
        Ok(())
    })
}

/// Writes an event's fields; the first error stops the line.
struct Fields<'a> {
    line: &'a mut String,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_> {
    fn name(&mut self, field: &Field) {
        if !std::mem::take(&mut self.first) {
            self.line.push(' ');
        }
        match field.name() {
            "message" => {}
            name => {
                self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
                self.line.push('=');
            }
        }
    }

    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_ok() {
            self.name(field);
            self.result = self.line.write_fmt(value);
        }
    }
}

/// Whether a field's text must be quoted to stay one field. Plain ASCII,
/// what nearly every value is, is settled in one pass over the bytes.
fn needs_quotes(value: &str) -> bool {
    let plain = |b: u8| b > b' ' && b < 0x7f && !matches!(b, b'"' | b'\\' | b'=');
    if !value.is_empty() && value.bytes().all(plain) {
        return false;
    }
    value.is_empty()
        || value
            .bytes()
            .any(|b| b <= b' ' || matches!(b, b'"' | b'\\' | b'=' | 0x7f))
        || value.chars().any(char::is_control)
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != "message" && needs_quotes(value) {
            self.write(field, format_args!("{value:?}"));
        } else {
            self.name(field);
            self.line.push_str(value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.write(field, format_args!("{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.write(field, format_args!("{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.write(field, format_args!("{value}"));
    }

    /// `%value` and `?value` fields: quoted by the same rule as strings,
    /// once written, since their text may hold a client's (a serde error
    /// quotes the payload value it refused).
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.name(field);
        let start = self.line.len();
        self.result = write!(self.line, "{value:?}");
        if field.name() != "message" && self.line.get(start..).is_some_and(needs_quotes) {
            let text = self.line.split_off(start);
            self.result = write!(self.line, "{text:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn time_is_written_as_tracing_writes_it() {
        let pair = || {
            let (mut ours, mut theirs) = (String::new(), String::new());
            write_time(&mut ours).unwrap();
            SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            (ours, theirs)
        };
        // Twice, in case the first pair straddles a second.
        let (ours, theirs) = pair();
        let (ours, theirs) = if ours[..19] == theirs[..19] {
            (ours, theirs)
        } else {
            pair()
        };
        assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
        assert_eq!(ours[..19], theirs[..19]);
        assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
    }

    #[test]
    fn text_line_has_the_default_shape() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .event_format(TextLine { time: true })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let id = "ab-1";
            let err = "invalid type: string \"x outcome=open\"";
            tracing::info!(%id, route = %"bench", detail = "a \"b\"", reason = "-", origin = "https://x route=y", empty = "", c1 = "a\u{85}", name = "é", status = 404u16, ok = true, error = %err, "request");
            tracing::warn!(r#type = 3, "it {} {}", "is", 2);
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert_eq!(
            rest,
            r#" INFO request id=ab-1 route=bench detail="a \"b\"" reason=- origin="https://x route=y" empty="" c1="a\u{85}" name=é status=404 ok=true error="invalid type: string \"x outcome=open\"""#
        );
        assert!(lines[1].ends_with("  WARN it is 2 type=3"), "{}", lines[1]);
    }

    #[test]
    fn for_the_journal_a_line_starts_with_its_level() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .event_format(TextLine { time: false })
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(route = "a", "request");
            tracing::error!("broken");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "<6>INFO request route=a\n<3>ERROR broken\n");
    }

    #[test]
    fn the_journal_is_the_stream_journal_stream_names() {
        assert!(is_stream("8:12345", 8, 12345));
        assert!(!is_stream("8:12345", 8, 12346));
        assert!(!is_stream("8:12345", 9, 12345));
        for garbled in ["", "8", "8:", ":1", "a:b", "8:1:2"] {
            assert!(!is_stream(garbled, 8, 1), "{garbled}");
        }
    }
}
