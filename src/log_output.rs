//! Where log lines go: standard output (the journal, under systemd). While
//! the gateway serves, lines are gathered and written a batch at a time:
//! when an event-loop thread runs out of ready work (it is about to wait in
//! epoll), when a batch reaches [`FULL`], and at the latest [`LATEST`] after
//! a batch's first line. A write(2) per line was a large share of a
//! preflight's CPU time (nginx pays the same for its unbuffered
//! `access_log`; docs/performance.md); under load one write carries the
//! lines of one turn of the event loop, and an idle gateway still shows a
//! line as soon as its request is answered. Each batch is whole lines written by one
//! `write_all`, in the order they were logged, so the journal and `tail -f`
//! see what they saw before. All workers share one buffer rather than one
//! each, to keep that order across workers; its lock is held for the copy
//! of one line, never for a write (before, each line's write(2) was made
//! under the lock of standard output).
//!
//! What a batch costs: a process killed by SIGKILL loses the lines of the
//! turn it was in (nginx's `access_log … buffer=` loses more). Lines logged
//! outside [`Output::batching`] (`check`, `simulate`, start-up errors) are
//! written at once.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tracing_subscriber::fmt::MakeWriter;

/// A batch this large is written by the thread that filled it, so a thread
/// that never idles cannot grow it without bound.
pub const FULL: usize = 16 * 1024;

/// The longest a line waits, for a gateway too busy to idle.
pub const LATEST: Duration = Duration::from_millis(100);

/// The process's log output, on standard output.
pub static STDOUT: Output<Stdout> = Output::new(Stdout);

/// Standard output, locked for each batch so the lines of two threads never
/// interleave.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stdout().lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        io::stdout().lock().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}

/// Log lines on their way to a sink.
pub struct Output<W> {
    batching: AtomicBool,
    /// Lines logged since the last write.
    pending: Mutex<Vec<u8>>,
    /// Held while a batch is written, so batches leave in order; its buffer
    /// is swapped with `pending`, so loggers never wait for the write.
    sink: Mutex<Sink<W>>,
    /// Wakes [`Output::latest`] when a batch starts.
    started: Notify,
}

struct Sink<W> {
    spare: Vec<u8>,
    out: W,
}

impl<W: Write> Output<W> {
    /// Writes every line at once until [`Output::batching`].
    pub const fn new(out: W) -> Self {
        Self {
            batching: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            sink: Mutex::new(Sink {
                spare: Vec::new(),
                out,
            }),
            started: Notify::const_new(),
        }
    }

    /// Gathers lines into batches until the guard is dropped, which writes
    /// what is left. The event loop that serves must call [`Output::flush`]
    /// before it waits for work (tokio's `on_thread_park`) and run
    /// [`Output::latest`].
    pub fn batching(&self) -> Batching<'_, W> {
        self.batching.store(true, Ordering::Release);
        Batching(self)
    }

    /// Takes one line (tracing-subscriber writes each line with one
    /// `write_all`).
    fn line(&self, line: &[u8]) -> io::Result<()> {
        let mut pending = lock(&self.pending);
        let started = pending.is_empty();
        pending.extend_from_slice(line);
        let full = pending.len() >= FULL;
        drop(pending);
        if full || !self.batching.load(Ordering::Acquire) {
            return self.write_pending();
        }
        if started {
            self.started.notify_one();
        }
        Ok(())
    }

    /// Writes the lines gathered so far. A failed write loses them, as a
    /// failed write of one line lost it: logging never stops the gateway.
    pub fn flush(&self) {
        let _ = self.write_pending();
    }

    fn write_pending(&self) -> io::Result<()> {
        let mut sink = lock(&self.sink);
        let Sink { spare, out } = &mut *sink;
        std::mem::swap(&mut *lock(&self.pending), spare);
        if spare.is_empty() {
            return Ok(());
        }
        let written = out.write_all(spare);
        spare.clear();
        // A burst's buffer is not kept for the quiet that follows.
        if spare.capacity() > 4 * FULL {
            spare.shrink_to(FULL);
        }
        written
    }

    /// Writes each batch [`LATEST`] after its first line at the latest, for
    /// an event loop that stays busy (a burst of handshakes, a flood of
    /// connections) without logging or waiting. Runs until its task is
    /// dropped; sleeps while nothing is gathered.
    pub async fn latest(&self) {
        loop {
            self.started.notified().await;
            tokio::time::sleep(LATEST).await;
            self.flush();
        }
    }
}

/// Batching on; dropping it writes what is left and writes every later
/// line at once.
pub struct Batching<'a, W: Write>(&'a Output<W>);

impl<W: Write> Drop for Batching<'_, W> {
    fn drop(&mut self) {
        self.0.batching.store(false, Ordering::Release);
        self.0.flush();
    }
}

/// One log line's writer, as tracing-subscriber asks for.
pub struct LineWriter<'a, W>(&'a Output<W>);

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.line(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for &'static Output<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(*self)
    }
}

/// A poisoned lock only means a thread panicked while it held it; the bytes
/// are still whole lines.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn writes(&self) -> Vec<String> {
            lock(&self.0)
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect()
        }
    }

    fn output() -> (&'static Output<Sink>, Sink) {
        let sink = Sink::default();
        (Box::leak(Box::new(Output::new(sink.clone()))), sink)
    }

    #[test]
    fn lines_are_written_at_once_unless_batching() {
        let (output, sink) = output();
        output.make_writer().write_all(b"one\n").unwrap();
        output.make_writer().write_all(b"two\n").unwrap();
        assert_eq!(sink.writes(), ["one\n", "two\n"]);
    }

    #[test]
    fn a_batch_is_written_in_order_with_one_write() {
        let (output, sink) = output();
        let batching = output.batching();
        for line in ["one\n", "two\n", "three\n"] {
            output.make_writer().write_all(line.as_bytes()).unwrap();
        }
        assert!(sink.writes().is_empty(), "nothing before the flush");
        output.flush();
        output.flush();
        assert_eq!(sink.writes(), ["one\ntwo\nthree\n"]);
        output.make_writer().write_all(b"four\n").unwrap();
        drop(batching);
        output.make_writer().write_all(b"five\n").unwrap();
        assert_eq!(sink.writes(), ["one\ntwo\nthree\n", "four\n", "five\n"]);
    }

    #[test]
    fn a_full_batch_is_written_by_the_thread_that_filled_it() {
        let (output, sink) = output();
        let _batching = output.batching();
        let line = [b'x'; 1000];
        for _ in 0..FULL / line.len() {
            output.make_writer().write_all(&line).unwrap();
        }
        assert!(sink.writes().is_empty());
        output.make_writer().write_all(&line).unwrap();
        let writes = sink.writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].len(), (FULL / line.len() + 1) * line.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_loop_still_writes_within_latest() {
        let (output, sink) = output();
        let _batching = output.batching();
        let latest = tokio::spawn(output.latest());
        tokio::task::yield_now().await;
        output.make_writer().write_all(b"one\n").unwrap();
        tokio::time::sleep(LATEST / 2).await;
        assert!(sink.writes().is_empty());
        tokio::time::sleep(LATEST / 2 + Duration::from_millis(1)).await;
        assert_eq!(sink.writes(), ["one\n"]);
        // Quiet: nothing to write, the task waits for the next batch.
        tokio::time::sleep(LATEST * 5).await;
        output.make_writer().write_all(b"two\n").unwrap();
        tokio::time::sleep(LATEST + Duration::from_millis(1)).await;
        assert_eq!(sink.writes(), ["one\n", "two\n"]);
        latest.abort();
    }

    #[test]
    fn lines_from_many_threads_stay_whole() {
        let (output, sink) = output();
        let batching = output.batching();
        std::thread::scope(|scope| {
            for t in 0..4 {
                scope.spawn(move || {
                    for i in 0..2000 {
                        let line = format!("thread {t} line {i} {}\n", "y".repeat(i % 50));
                        output.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..200 {
                    output.flush();
                    std::thread::yield_now();
                }
            });
        });
        drop(batching);
        let all = sink.writes().concat();
        let lines: Vec<&str> = all.lines().collect();
        assert_eq!(lines.len(), 8000);
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|rest| rest.split(' ').next().unwrap().parse().unwrap())
                .collect();
            assert_eq!(mine, (0..2000).collect::<Vec<_>>(), "thread {t} in order");
        }
        assert!(sink.writes().iter().all(|w| w.ends_with('\n')));
    }
}
