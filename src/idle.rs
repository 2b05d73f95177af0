//! Idle and header-read timeouts for a connection, with no timer per
//! request: the stream is wrapped to note when bytes last moved and when the
//! bytes of a new request head began, the service notes requests in flight,
//! and one sleep per connection checks them. A connection is idle when no
//! byte moved and no request ran for the idle timeout; a head is late when
//! its first bytes (or, for the first request, the connection) came a
//! header-read timeout ago and no request began since. hyper has no idle
//! timeout for HTTP/1, and its header-read timer costs a boxed timer entry
//! per request.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// `head_since_ms` when no request head is being waited for.
const NO_HEAD: u64 = u64::MAX;

/// What a connection is doing, shared by its stream and its service.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds since `start` when bytes last moved.
    last_io_ms: AtomicU64,
    /// Milliseconds since `start` when the head now awaited began: the
    /// connection's start for the first request, the first bytes read with
    /// no request in flight for the next ones; [`NO_HEAD`] otherwise.
    head_since_ms: AtomicU64,
    in_flight: AtomicUsize,
}

/// Why a connection should end.
#[derive(Debug, PartialEq, Eq)]
pub enum Quiet {
    /// Nothing moved and nothing ran for the idle timeout.
    Idle,
    /// A request head was not complete within the header-read timeout.
    SlowHead,
}

/// Marks a request in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Activity {
    /// A new connection, active now, waiting for its first request head.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Notes a request in flight for as long as the guard lives.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since_ms.store(NO_HEAD, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    fn touch(&self) -> u64 {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_io_ms.store(ms, Ordering::Relaxed);
        ms
    }

    /// Bytes were read: with no request in flight they start the next head.
    fn read(&self) {
        let ms = self.touch();
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_since_ms.load(Ordering::Relaxed) == NO_HEAD
        {
            self.head_since_ms.store(ms, Ordering::Relaxed);
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Completes when the connection has been idle for `idle`, or, if
    /// `head` is given, when a request head is that late. Between checks it
    /// sleeps until the earliest time either could be due.
    pub async fn quiet(&self, idle: Duration, head: Option<Duration>) -> Quiet {
        loop {
            let last = self.last_io_ms.load(Ordering::Relaxed);
            let mut wake = self.at(last) + idle;
            if let Some(head) = head {
                // No head awaited: look again a header timeout from now, so
                // one that starts meanwhile is caught on time.
                let head_due = match self.head_since_ms.load(Ordering::Relaxed) {
                    NO_HEAD => Instant::now() + head,
                    since => self.at(since) + head,
                };
                wake = wake.min(head_due);
            }
            tokio::time::sleep_until(wake).await;
            let now = Instant::now();
            let waiting = self.in_flight.load(Ordering::Relaxed) == 0;
            if let (true, Some(head)) = (waiting, head) {
                let since = self.head_since_ms.load(Ordering::Relaxed);
                if since != NO_HEAD && now >= self.at(since) + head {
                    return Quiet::SlowHead;
                }
            }
            let quiet = self.last_io_ms.load(Ordering::Relaxed) == last;
            if quiet && waiting && now >= self.at(last) + idle {
                return Quiet::Idle;
            }
            if quiet && !waiting {
                // A request is still running: look again a timeout from now.
                self.touch();
            }
        }
    }
}

/// A stream that reports every read and write to its [`Activity`].
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    /// Wraps a stream.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);
    const HEAD: Duration = Duration::from_secs(10);

    /// What `quiet` answers within `within`, if anything.
    async fn quiet_within(
        activity: &Activity,
        head: Option<Duration>,
        within: Duration,
    ) -> Option<Quiet> {
        tokio::time::timeout(within, activity.quiet(IDLE, head))
            .await
            .ok()
    }

    /// Asserts that `quiet` answers `expected` exactly `after` from now.
    async fn assert_quiet_after(activity: &Activity, expected: Quiet, after: Duration) {
        let started = Instant::now();
        let got = quiet_within(activity, Some(HEAD), 2 * IDLE).await;
        assert_eq!(
            (got, started.elapsed().as_secs()),
            (Some(expected), after.as_secs())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_requests_in_flight() {
        let activity = Activity::new();
        let guard = activity.begin();
        let idle = activity.quiet(Duration::from_secs(10), None);
        tokio::pin!(idle);
        assert!(tokio::time::timeout(Duration::from_secs(25), &mut idle)
            .await
            .is_err());
        drop(guard);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(11), &mut idle).await,
            Ok(Quiet::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_head_is_due_a_header_timeout_after_the_connection() {
        assert_quiet_after(&Activity::new(), Quiet::SlowHead, HEAD).await;
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_only_the_idle_timeout_runs() {
        let activity = Activity::new();
        drop(activity.begin());
        assert_quiet_after(&activity, Quiet::Idle, IDLE).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_heads_first_bytes_start_its_header_timeout() {
        let activity = Activity::new();
        drop(activity.begin());
        let watch = activity.quiet(IDLE, Some(HEAD));
        tokio::pin!(watch);
        // A keep-alive pause longer than the header timeout is fine...
        assert!(tokio::time::timeout(Duration::from_secs(33), &mut watch)
            .await
            .is_err());
        // ...then a head starts and never ends: due 10 s after its first bytes.
        activity.read();
        let started = Instant::now();
        assert_eq!(
            tokio::time::timeout(IDLE, &mut watch).await,
            Ok(Quiet::SlowHead)
        );
        assert_eq!(started.elapsed().as_secs(), HEAD.as_secs());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_begins_stops_its_header_timeout() {
        let activity = Activity::new();
        activity.read();
        let guard = activity.begin();
        assert_eq!(quiet_within(&activity, Some(HEAD), 3 * HEAD).await, None);
        drop(guard);
    }
}
