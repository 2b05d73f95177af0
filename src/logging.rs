//! Log setup: `log.level` and `log.format` from the config; `RUST_LOG`, when
//! set, overrides the level for a debugging session without editing config.
//!
//! Text lines are written by [`TextLine`], not tracing-subscriber's default
//! formatter: one line per request is the largest cost the gateway adds to a
//! preflight (bench/run --profile), and the default formatter spends most of
//! it on styling the line even when colours are off.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::UNIX_EPOCH;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false);
    let result = match settings.format {
        LogFormat::Text => builder.event_format(TextLine).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(err) = result {
        eprintln!("logging already initialised: {err}");
    }
}

/// `2026-11-25T16:57:58.990295Z  INFO request id=… route=bench detail="-"`:
/// time, level, message, then `name=value` fields (strings quoted, `%`
/// fields as written), the shape tracing-subscriber's default prints.
pub struct TextLine;

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
        write_time(&mut writer)?;
        writer.write_str(match *event.metadata().level() {
            Level::ERROR => " ERROR ",
            Level::WARN => "  WARN ",
            Level::INFO => "  INFO ",
            Level::DEBUG => " DEBUG ",
            Level::TRACE => " TRACE ",
        })?;
        let mut fields = Fields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The date and time down to the second, formatted once per second per
/// thread: formatting a full timestamp per line was a fifth of a line's cost.
struct SecondCache {
    second: u64,
    /// `2026-11-25T16:57:58`
    prefix: String,
}

thread_local! {
    static SECOND: RefCell<SecondCache> = const {
        RefCell::new(SecondCache { second: u64::MAX, prefix: String::new() })
    };
}

/// `2026-11-25T16:57:58.990295Z`, as tracing-subscriber's `SystemTime` writes it.
fn write_time(writer: &mut Writer<'_>) -> fmt::Result {
    let Ok(now) = std::time::SystemTime::now().duration_since(UNIX_EPOCH) else {
        return SystemTime.format_time(writer);
    };
    SECOND.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.second != now.as_secs() {
            let Ok(t) = time::OffsetDateTime::from_unix_timestamp(now.as_secs() as i64) else {
                return SystemTime.format_time(writer);
            };
            cache.prefix.clear();
            write!(
                cache.prefix,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )?;
            cache.second = now.as_secs();
        }
        write!(writer, "{}.{:06}Z", cache.prefix, now.subsec_micros())
    })
}

/// Writes an event's fields; the first error stops the line.
struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn separator(&mut self) -> fmt::Result {
        if std::mem::take(&mut self.first) {
            Ok(())
        } else {
            self.writer.write_char(' ')
        }
    }

    fn write(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if self.result.is_err() {
            return;
        }
        self.result = self.separator().and_then(|()| match field.name() {
            "message" => self.writer.write_fmt(value),
            name => {
                self.writer
                    .write_str(name.strip_prefix("r#").unwrap_or(name))?;
                self.writer.write_char('=')?;
                self.writer.write_fmt(value)
            }
        });
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.write(field, format_args!("{value}"));
        } else {
            self.write(field, format_args!("{value:?}"));
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

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, format_args!("{value:?}"));
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
            write_time(&mut Writer::new(&mut ours)).unwrap();
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
            .event_format(TextLine)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let id = "ab-1";
            tracing::info!(%id, route = %"bench", detail = "a \"b\"", status = 404u16, ok = true, "request");
            tracing::warn!(r#type = 3, "it {} {}", "is", 2);
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert_eq!(
            rest,
            r#" INFO request id=ab-1 route=bench detail="a \"b\"" status=404 ok=true"#
        );
        assert!(lines[1].ends_with("  WARN it is 2 type=3"), "{}", lines[1]);
    }
}
