//! Where log lines go: standard output (the journal, under systemd). While
//! the gateway serves, lines are gathered and handed a batch at a time to
//! one writer thread: when an event-loop thread runs out of ready work (it
//! is about to wait in epoll), when a batch reaches [`FULL`], and at the
//! latest [`LATEST`] after a batch's first line. A write(2) per line was a
//! large share of a preflight's CPU time (nginx pays the same for its
//! unbuffered `access_log`; docs/performance.md); under load one write
//! carries the lines of one turn of the event loop, and an idle gateway still shows a line as
//! soon as its request is answered. Each batch is whole lines written by
//! one `write_all`, in the order they were logged, so the journal and
//! `tail -f` see what they saw before. All workers share one buffer rather
//! than one each, to keep that order across workers; its lock is held for
//! the copy of one line, never for a write.
//!
//! The write(2) itself is made by the writer thread, never by a worker: a
//! log reader that stops reading (a stalled journald, a full pipe) would
//! otherwise stop every worker at its next line, `/healthz` and the
//! watchdog with them. Batches wait in a queue bounded in batches
//! ([`QUEUE_BATCHES`]) and bytes ([`QUEUE_BYTES`]); when it is full, the
//! batch is dropped and its lines counted (the `log_lines_dropped` metric),
//! and once a write goes through again one warning line says how many were
//! lost.
//!
//! What a batch costs: a process killed by SIGKILL loses the lines of the
//! turn it was in and those queued (nginx's `access_log … buffer=` loses
//! more). A stop writes what is queued, waiting at most [`STOP_WAIT`] for
//! the reader. Lines logged outside [`Output::batching`] (`check`,
//! `simulate`, start-up errors) are written at once.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use tracing_subscriber::fmt::MakeWriter;

/// A batch this large is handed over by the thread that filled it, so a
/// thread that never idles cannot grow it without bound.
pub const FULL: usize = 16 * 1024;

/// The longest a line waits, for a gateway too busy to idle.
pub const LATEST: Duration = Duration::from_millis(100);

/// Batches waiting for the writer thread, at most: an idle gateway hands
/// over a batch per request, so this is also about as many lines.
pub const QUEUE_BATCHES: usize = 1024;

/// Bytes waiting for the writer thread, at most (a few thousand request
/// lines: a reader's pause of a second or two at a busy site).
pub const QUEUE_BYTES: usize = 1024 * 1024;

/// How long a stop waits for the reader to take what is queued.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// Written batches kept for reuse, so that a batch's buffer is not
/// allocated and grown anew each time.
const SPARE_BATCHES: usize = 4;

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
    /// Lines logged since the last hand-over.
    pending: Mutex<Vec<u8>>,
    /// The writer thread's queue. Held while a batch is handed over, so
    /// batches leave in order.
    handoff: Mutex<Handoff>,
    out: Mutex<W>,
    /// Lines dropped since the last warning.
    unreported: AtomicU64,
    /// Lines dropped since the start, for the metric.
    dropped: OnceLock<Counter>,
    /// A stop gave up on the reader: the writer thread may hold `out`
    /// forever, so later lines are dropped rather than waited on.
    stalled: AtomicBool,
    /// Wakes [`Output::latest`] when a batch starts.
    started: Notify,
}

/// Batches on their way to the writer thread.
struct Handoff {
    /// The writer thread takes batches; closed, lines are written at once.
    open: bool,
    batches: VecDeque<Vec<u8>>,
    /// Bytes in `batches` and in the batch being written.
    bytes: usize,
    /// Written batches, emptied, for the next hand-overs.
    spare: Vec<Vec<u8>>,
    /// The writer thread, once it runs.
    writer: Option<Thread>,
    /// The writer thread is parked (or about to be) on an empty queue.
    writer_waits: bool,
}

impl<W: Write + Send + 'static> Output<W> {
    /// Writes every line at once until [`Output::batching`].
    pub const fn new(out: W) -> Self {
        Self {
            batching: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            handoff: Mutex::new(Handoff {
                open: false,
                batches: VecDeque::new(),
                bytes: 0,
                spare: Vec::new(),
                writer: None,
                writer_waits: false,
            }),
            out: Mutex::new(out),
            unreported: AtomicU64::new(0),
            dropped: OnceLock::new(),
            stalled: AtomicBool::new(false),
            started: Notify::const_new(),
        }
    }

    /// Gathers lines into batches, written by a thread of their own, until
    /// the guard is dropped, which writes what is left (within
    /// [`STOP_WAIT`]). The event loop that serves must call
    /// [`Output::flush`] before it waits for work (tokio's
    /// `on_thread_park`) and run [`Output::latest`]. If the thread cannot
    /// be started, lines are written at once, as before batching.
    pub fn batching(&'static self) -> Batching<W> {
        let (done, finished) = mpsc::channel();
        // Open before the thread starts, which ends at once on a closed queue.
        lock(&self.handoff).open = true;
        let writer = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                self.write_batches();
                let _ = done.send(());
            });
        if writer.is_err() {
            lock(&self.handoff).open = false;
            return Batching {
                output: self,
                finished: None,
            };
        }
        self.batching.store(true, Ordering::Release);
        Batching {
            output: self,
            finished: Some(finished),
        }
    }

    /// The count of lines dropped because the reader was too slow, shared
    /// with the metrics registry.
    pub fn dropped_lines(&self) -> Counter {
        self.dropped.get_or_init(Counter::default).clone()
    }

    /// Takes one line (tracing-subscriber writes each line with one
    /// `write_all`).
    fn line(&self, line: &[u8]) {
        let mut pending = lock(&self.pending);
        let started = pending.is_empty();
        pending.extend_from_slice(line);
        let full = pending.len() >= FULL;
        drop(pending);
        if full || !self.batching.load(Ordering::Acquire) {
            self.flush();
        } else if started {
            self.started.notify_one();
        }
    }

    /// Hands the lines gathered so far to the writer thread, or writes them
    /// when not batching; never waits for the reader while batching. A
    /// failed write loses them, as a failed write of one line lost it:
    /// logging never stops the gateway. The writer thread is woken only
    /// when it waits for work.
    pub fn flush(&self) {
        // Called each time an event loop is about to wait: most often there
        // is nothing to hand over.
        if lock(&self.pending).is_empty() {
            return;
        }
        let mut handoff = lock(&self.handoff);
        let mut pending = lock(&self.pending);
        if pending.is_empty() {
            return;
        }
        if !handoff.open {
            let batch = std::mem::take(&mut *pending);
            drop(pending);
            if self.stalled.load(Ordering::Acquire) || lock(&self.out).write_all(&batch).is_err() {
                self.lost(&batch);
            }
            return;
        }
        let len = pending.len();
        if handoff.batches.len() >= QUEUE_BATCHES || handoff.bytes + len > QUEUE_BYTES {
            self.lost(&pending);
            pending.clear();
            return;
        }
        let spare = handoff.spare.pop().unwrap_or_default();
        handoff
            .batches
            .push_back(std::mem::replace(&mut *pending, spare));
        drop(pending);
        handoff.bytes += len;
        let wake = match std::mem::take(&mut handoff.writer_waits) {
            true => handoff.writer.clone(),
            false => None,
        };
        drop(handoff);
        if let Some(writer) = wake {
            writer.unpark();
        }
    }

    /// Counts the lines of a batch that will never be written.
    fn lost(&self, batch: &[u8]) {
        let lines = memchr::memchr_iter(b'\n', batch).count().max(1) as u64;
        self.dropped_lines().inc_by(lines);
        self.unreported.fetch_add(lines, Ordering::AcqRel);
    }

    /// The writer thread: writes batches in order until the queue closes;
    /// after a write that went through, says how many lines were dropped
    /// since the last time it said so. It parks while the queue is empty.
    fn write_batches(&self) {
        lock(&self.handoff).writer = Some(std::thread::current());
        let mut written: Option<Vec<u8>> = None;
        loop {
            let batch = {
                let mut handoff = lock(&self.handoff);
                if let Some(mut done) = written.take() {
                    handoff.bytes -= done.len();
                    if handoff.spare.len() < SPARE_BATCHES {
                        done.clear();
                        handoff.spare.push(done);
                    }
                }
                match handoff.batches.pop_front() {
                    Some(batch) => batch,
                    None if !handoff.open => return,
                    None => {
                        handoff.writer_waits = true;
                        drop(handoff);
                        // Woken by `flush` or the stop; a spurious wake
                        // finds the queue as it is and parks again.
                        std::thread::park();
                        continue;
                    }
                }
            };
            let result = lock(&self.out).write_all(&batch);
            if result.is_err() {
                self.lost(&batch);
            } else {
                let dropped = self.unreported.swap(0, Ordering::AcqRel);
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        "log output was blocked: {dropped} lines dropped (log_lines_dropped_total)"
                    );
                    self.flush();
                }
            }
            written = Some(batch);
        }
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

/// Batching on; dropping it writes what is left (waiting at most
/// [`STOP_WAIT`]) and writes every later line at once.
pub struct Batching<W: Write + Send + 'static> {
    output: &'static Output<W>,
    /// Says when the writer thread has written everything and ended.
    finished: Option<Receiver<()>>,
}

impl<W: Write + Send + 'static> Drop for Batching<W> {
    fn drop(&mut self) {
        let output = self.output;
        output.batching.store(false, Ordering::Release);
        output.flush();
        // Closing the queue ends the writer thread once it is empty.
        let writer = {
            let mut handoff = lock(&output.handoff);
            handoff.open = false;
            handoff.writer_waits = false;
            handoff.writer.take()
        };
        if let Some(writer) = writer {
            writer.unpark();
        }
        if let Some(finished) = &self.finished {
            if finished.recv_timeout(STOP_WAIT).is_err() {
                output.stalled.store(true, Ordering::Release);
            }
        }
        output.flush();
    }
}

/// One log line's writer, as tracing-subscriber asks for.
pub struct LineWriter<'a, W>(&'a Output<W>);

impl<W: Write + Send + 'static> Write for LineWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + Send + 'static> MakeWriter<'a> for &'static Output<W> {
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
    use std::sync::{Arc, Condvar};
    use std::time::Instant;

    use super::*;

    /// A reader that can stop reading: writes wait while the gate is shut.
    #[derive(Clone, Default)]
    struct Sink(Arc<(Mutex<SinkState>, Condvar)>);

    #[derive(Default)]
    struct SinkState {
        shut: bool,
        writes: Vec<Vec<u8>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (state, opened) = &*self.0;
            let mut state = lock(state);
            while state.shut {
                state = opened.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.writes.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn writes(&self) -> Vec<String> {
            lock(&self.0 .0)
                .writes
                .iter()
                .map(|w| String::from_utf8_lossy(w).into_owned())
                .collect()
        }

        fn shut(&self, shut: bool) {
            lock(&self.0 .0).shut = shut;
            self.0 .1.notify_all();
        }

        /// The writes once there are `n` of them (the writer thread is
        /// another thread); a bounded wait.
        fn wait_writes(&self, n: usize) -> Vec<String> {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.writes().len() < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            self.writes()
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
        std::thread::sleep(Duration::from_millis(20));
        assert!(sink.writes().is_empty(), "nothing before the flush");
        output.flush();
        output.flush();
        assert_eq!(sink.wait_writes(1), ["one\ntwo\nthree\n"]);
        output.make_writer().write_all(b"four\n").unwrap();
        drop(batching);
        output.make_writer().write_all(b"five\n").unwrap();
        assert_eq!(sink.writes(), ["one\ntwo\nthree\n", "four\n", "five\n"]);
    }

    #[test]
    fn a_full_batch_is_handed_over_by_the_thread_that_filled_it() {
        let (output, sink) = output();
        let _batching = output.batching();
        let line = [b'x'; 1000];
        for _ in 0..FULL / line.len() {
            output.make_writer().write_all(&line).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(sink.writes().is_empty());
        output.make_writer().write_all(&line).unwrap();
        let writes = sink.wait_writes(1);
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
        std::thread::sleep(Duration::from_millis(20));
        assert!(sink.writes().is_empty());
        tokio::time::sleep(LATEST / 2 + Duration::from_millis(1)).await;
        assert_eq!(sink.wait_writes(1), ["one\n"]);
        // Quiet: nothing to write, the task waits for the next batch.
        tokio::time::sleep(LATEST * 5).await;
        output.make_writer().write_all(b"two\n").unwrap();
        tokio::time::sleep(LATEST + Duration::from_millis(1)).await;
        assert_eq!(sink.wait_writes(2), ["one\n", "two\n"]);
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
        assert_eq!(output.dropped_lines().get(), 0);
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

    /// A reader that stops reading never stops a logger: once the queue is
    /// full, lines are dropped and counted; when it reads again, what was
    /// queued arrives in order.
    #[test]
    fn a_stuck_reader_drops_lines_instead_of_blocking() {
        let (output, sink) = output();
        let batching = output.batching();
        sink.shut(true);
        let total = QUEUE_BATCHES + 100;
        for i in 0..total {
            output
                .make_writer()
                .write_all(format!("line {i}\n").as_bytes())
                .unwrap();
            output.flush();
        }
        let dropped = output.dropped_lines().get();
        assert!(dropped >= 99, "{dropped} lines dropped");
        assert_eq!(output.unreported.load(Ordering::Acquire), dropped);
        sink.shut(false);
        drop(batching);
        let written: Vec<usize> = sink
            .writes()
            .concat()
            .lines()
            .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
            .collect();
        assert_eq!(written.len() as u64 + dropped, total as u64);
        assert!(written.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(written[0], 0);
    }

    /// A stop waits for a stuck reader at most [`STOP_WAIT`], and later
    /// lines are dropped rather than waited on.
    #[test]
    fn a_stop_gives_up_on_a_stuck_reader() {
        let (output, sink) = output();
        let batching = output.batching();
        sink.shut(true);
        output.make_writer().write_all(b"stuck\n").unwrap();
        output.flush();
        drop(batching);
        output.make_writer().write_all(b"after\n").unwrap();
        assert!(output.dropped_lines().get() >= 1);
        sink.shut(false);
        assert_eq!(sink.wait_writes(1), ["stuck\n"]);
    }
}
