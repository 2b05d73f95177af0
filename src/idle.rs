//! Idle and header-read timeouts for a connection, with no timer per
//! request: the stream is wrapped to note when the bytes of a new request
//! head began, the service notes requests in flight, and one sleep per
//! connection checks them.
//!
//! What counts as activity depends on the protocol. On an HTTP/1.1
//! connection any byte moving does: bytes are requests or replies. On a
//! connection that may be HTTP/2 (ALPN `h2`, plain HTTP), bytes prove
//! nothing: a client that only sends PINGs, or that never opens its
//! flow-control window so a reply cannot be written, moves bytes forever
//! without a request making progress. There only requests count: one
//! beginning or ending, or one in flight. A head is late when its first
//! bytes (or, for the first request, the connection) came a header-read
//! timeout ago and no request began since; on HTTP/2 the frames are followed
//! just enough to time a header block (HEADERS until END_HEADERS), which
//! holds the whole connection while it is open (RFC 9113, 6.10).
//!
//! The first byte of an HTTP/1 request head is also when the request
//! arrived: its deadline counts from there, not from when a busy worker got
//! to it. hyper has no idle timeout for HTTP/1, and its header-read timer
//! costs a boxed timer entry per request.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// A time field that holds no time.
const NEVER: u64 = u64::MAX;

/// What counts as a connection's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Every byte moved (HTTP/1.1).
    Bytes,
    /// Only requests beginning, ending or in flight (maybe HTTP/2).
    Requests,
}

/// What a connection is doing, shared by its stream and its service.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    counting: Counting,
    /// Milliseconds since `start` of the last activity.
    last_active_ms: AtomicU64,
    /// Milliseconds since `start` when the head now awaited began, or
    /// [`NEVER`]. HTTP/1: the connection's start for the first request,
    /// the first bytes read with no request in flight for the next ones.
    /// HTTP/2: the HEADERS frame of a header block still open.
    head_since_ms: AtomicU64,
    /// HTTP/1: milliseconds since `start` of the first byte read with no
    /// request in flight, that is of the next request's head; or [`NEVER`].
    arrival_ms: AtomicU64,
    in_flight: AtomicUsize,
    /// An HTTP/2 request was served here: a GOAWAY reaches a client that
    /// speaks HTTP/2 (sent earlier, it would end a connection whose
    /// protocol hyper has not read yet, and any request racing it).
    http2: AtomicBool,
    /// Wakes the connection's task when a stop wants its GOAWAY sent.
    goaway: Notify,
}

/// Why a connection should end.
#[derive(Debug, PartialEq, Eq)]
pub enum Quiet {
    /// No activity for the idle timeout.
    Idle,
    /// A request head was not complete within the header-read timeout.
    SlowHead,
    /// No activity for the park delay, between requests: an HTTP/1
    /// connection can give up its buffers until its next request (`park`).
    Park,
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
    /// A new connection, active now. Counting bytes it waits for its first
    /// request head at once; counting requests, only once a header block
    /// opens (a client may open an HTTP/2 connection ahead of its calls).
    pub fn new(counting: Counting) -> Arc<Self> {
        let head_since = match counting {
            Counting::Bytes => 0,
            Counting::Requests => NEVER,
        };
        Arc::new(Self {
            start: Instant::now(),
            counting,
            last_active_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(head_since),
            arrival_ms: AtomicU64::new(NEVER),
            in_flight: AtomicUsize::new(0),
            http2: AtomicBool::new(false),
            goaway: Notify::new(),
        })
    }

    /// Notes a request in flight for as long as the guard lives, with when
    /// its first byte was read, if the stream knows (HTTP/1).
    pub fn begin(self: &Arc<Self>) -> (InFlight, Option<Instant>) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.counting == Counting::Bytes {
            self.head_since_ms.store(NEVER, Ordering::Relaxed);
        }
        self.touch();
        let arrival = match self.arrival_ms.swap(NEVER, Ordering::Relaxed) {
            NEVER => None,
            ms => Some(self.at(ms)),
        };
        (InFlight(Arc::clone(self)), arrival)
    }

    /// Notes that an HTTP/2 request came; `goaway` when a stop has begun
    /// and this connection's client should be told to leave.
    pub fn http2_request(&self, goaway: bool) {
        self.http2.store(true, Ordering::Relaxed);
        if goaway {
            self.goaway.notify_one();
        }
    }

    /// Whether an HTTP/2 request was served here.
    pub fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// Completes once a request asked for this connection's GOAWAY.
    pub async fn goaway_wanted(&self) {
        self.goaway.notified().await;
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_active_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Bytes were read: with no request in flight they are (HTTP/1) the
    /// next request's head, whose arrival and head timeout start now.
    fn read(&self) {
        if self.in_flight.load(Ordering::Relaxed) != 0 {
            if self.counting == Counting::Bytes {
                self.touch();
            }
            return;
        }
        let ms = self.now_ms();
        if self.arrival_ms.load(Ordering::Relaxed) == NEVER {
            self.arrival_ms.store(ms, Ordering::Relaxed);
        }
        if self.counting == Counting::Bytes {
            self.last_active_ms.store(ms, Ordering::Relaxed);
            if self.head_since_ms.load(Ordering::Relaxed) == NEVER {
                self.head_since_ms.store(ms, Ordering::Relaxed);
            }
        }
    }

    /// Bytes were written.
    fn wrote(&self) {
        if self.counting == Counting::Bytes {
            self.touch();
        }
    }

    /// An HTTP/2 header block opened (`true`) or ended (`false`).
    fn header_block(&self, open: bool) {
        let since = if open { self.now_ms() } else { NEVER };
        self.head_since_ms.store(since, Ordering::Relaxed);
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Completes when the connection has been idle for `idle` (or for
    /// `park`, when given and shorter), or when a request head is `head`
    /// late. Between checks it sleeps until the earliest time any could be
    /// due.
    pub async fn quiet(&self, idle: Duration, head: Duration, park: Option<Duration>) -> Quiet {
        let rest = park.map_or(idle, |park| park.min(idle));
        loop {
            let last = self.last_active_ms.load(Ordering::Relaxed);
            // No head awaited: look again a header timeout from now, so
            // one that starts meanwhile is caught on time.
            let head_due = match self.head_since_ms.load(Ordering::Relaxed) {
                NEVER => Instant::now() + head,
                since => self.at(since) + head,
            };
            tokio::time::sleep_until(head_due.min(self.at(last) + rest)).await;
            let now = Instant::now();
            let waiting = self.in_flight.load(Ordering::Relaxed) == 0;
            // An open HTTP/2 header block holds the whole connection, so it
            // is late even while other streams run.
            if waiting || self.counting == Counting::Requests {
                let since = self.head_since_ms.load(Ordering::Relaxed);
                if since != NEVER && now >= self.at(since) + head {
                    return Quiet::SlowHead;
                }
            }
            let quiet = self.last_active_ms.load(Ordering::Relaxed) == last;
            if quiet && waiting && now >= self.at(last) + idle {
                return Quiet::Idle;
            }
            // Not while a head is coming: hyper cannot hand back a
            // connection in the middle of one (it would answer it and close).
            let no_head = self.head_since_ms.load(Ordering::Relaxed) == NEVER;
            if quiet && waiting && no_head && now >= self.at(last) + rest {
                return Quiet::Park;
            }
            if quiet && !waiting {
                // A request is still running: look again a timeout from now.
                self.touch();
            }
        }
    }
}

/// The HTTP/2 connection preface a client sends first.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEAD_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// Where a reader is in the client's HTTP/2 frames: only frame boundaries
/// and header blocks are followed, payloads are skipped unread.
#[derive(Debug)]
enum Frames {
    /// Not HTTP/2, or not watched.
    Off,
    /// This many bytes of the preface matched so far.
    Preface(usize),
    /// Inside a frame header, this much of it read.
    Head([u8; FRAME_HEAD_LEN], usize),
    /// Inside a frame's payload, this much left.
    Payload(usize),
}

impl Frames {
    /// Follows `data`, telling `activity` when a header block opens and ends.
    fn scan(&mut self, mut data: &[u8], activity: &Activity) {
        while !data.is_empty() {
            match self {
                Self::Off => return,
                Self::Preface(matched) => {
                    let n = (PREFACE.len() - *matched).min(data.len());
                    if data[..n] != PREFACE[*matched..*matched + n] {
                        *self = Self::Off;
                        return;
                    }
                    *matched += n;
                    data = &data[n..];
                    if *matched == PREFACE.len() {
                        *self = Self::Head([0; FRAME_HEAD_LEN], 0);
                    }
                }
                Self::Head(head, have) => {
                    let n = (FRAME_HEAD_LEN - *have).min(data.len());
                    head[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    data = &data[n..];
                    if *have == FRAME_HEAD_LEN {
                        let len = usize::from(head[0]) << 16
                            | usize::from(head[1]) << 8
                            | usize::from(head[2]);
                        let (kind, flags) = (head[3], head[4]);
                        if kind == HEADERS || kind == CONTINUATION {
                            let open = flags & END_HEADERS == 0;
                            if kind == HEADERS || !open {
                                activity.header_block(open);
                            }
                        }
                        *self = Self::Payload(len);
                    }
                }
                Self::Payload(left) => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    data = &data[n..];
                    if *left == 0 {
                        *self = Self::Head([0; FRAME_HEAD_LEN], 0);
                    }
                }
            }
        }
    }
}

/// A stream that reports its reads and writes to its [`Activity`].
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    frames: Frames,
}

impl<S> Tracked<S> {
    /// Wraps a stream; counting requests, it follows HTTP/2 frames.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        let frames = match activity.counting {
            Counting::Bytes => Frames::Off,
            Counting::Requests => Frames::Preface(0),
        };
        Self {
            inner,
            activity,
            frames,
        }
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
            let this = &mut *self;
            this.activity.read();
            this.frames.scan(&buf.filled()[before..], &this.activity);
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
            self.activity.wrote();
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
            self.activity.wrote();
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
    async fn quiet_within(activity: &Activity, head: Duration, within: Duration) -> Option<Quiet> {
        tokio::time::timeout(within, activity.quiet(IDLE, head, None))
            .await
            .ok()
    }

    /// Asserts that `quiet` answers `expected` exactly `after` from now.
    async fn assert_quiet_after(activity: &Activity, expected: Quiet, after: Duration) {
        let started = Instant::now();
        let got = quiet_within(activity, HEAD, 2 * IDLE).await;
        assert_eq!(
            (got, started.elapsed().as_secs()),
            (Some(expected), after.as_secs())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_requests_in_flight() {
        let activity = Activity::new(Counting::Bytes);
        let (guard, _) = activity.begin();
        let idle = activity.quiet(Duration::from_secs(10), IDLE, None);
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
    async fn a_quiet_connection_parks_after_the_park_delay_never_with_a_request_in_flight() {
        let park = Duration::from_millis(100);
        let activity = Activity::new(Counting::Bytes);
        let (guard, _) = activity.begin();
        let watch = activity.quiet(IDLE, HEAD, Some(park));
        tokio::pin!(watch);
        assert!(tokio::time::timeout(Duration::from_secs(5), &mut watch)
            .await
            .is_err());
        drop(guard);
        let started = Instant::now();
        assert_eq!(watch.await, Quiet::Park);
        assert_eq!(started.elapsed(), park);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_head_is_due_a_header_timeout_after_the_connection() {
        assert_quiet_after(&Activity::new(Counting::Bytes), Quiet::SlowHead, HEAD).await;
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_only_the_idle_timeout_runs() {
        let activity = Activity::new(Counting::Bytes);
        drop(activity.begin().0);
        assert_quiet_after(&activity, Quiet::Idle, IDLE).await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_heads_first_bytes_start_its_header_timeout() {
        let activity = Activity::new(Counting::Bytes);
        drop(activity.begin().0);
        let watch = activity.quiet(IDLE, HEAD, None);
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
        let activity = Activity::new(Counting::Bytes);
        activity.read();
        let (guard, _) = activity.begin();
        assert_eq!(quiet_within(&activity, HEAD, 3 * HEAD).await, None);
        drop(guard);
    }

    /// The preface, then frames: (type, flags, payload length).
    fn h2_bytes(frames: &[(u8, u8, usize)]) -> Vec<u8> {
        let mut bytes = PREFACE.to_vec();
        for &(kind, flags, len) in frames {
            bytes.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
            bytes.extend_from_slice(&[kind, flags, 0, 0, 0, 1]);
            bytes.extend(std::iter::repeat_n(0u8, len));
        }
        bytes
    }

    const PING: u8 = 0x6;

    #[tokio::test(start_paused = true)]
    async fn pings_alone_leave_an_http2_connection_idle() {
        let activity = Activity::new(Counting::Requests);
        let mut frames = Frames::Preface(0);
        let watch = activity.quiet(IDLE, HEAD, None);
        tokio::pin!(watch);
        let bytes = h2_bytes(&[(PING, 0, 8)]);
        frames.scan(&bytes, &activity);
        activity.read();
        for _ in 0..(IDLE.as_secs() - 1) {
            assert!(tokio::time::timeout(Duration::from_secs(1), &mut watch)
                .await
                .is_err());
            frames.scan(&h2_bytes(&[(PING, 0, 8)])[PREFACE.len()..], &activity);
            activity.read();
        }
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(2), &mut watch).await,
            Ok(Quiet::Idle)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_http2_header_block_is_a_late_head_even_beside_a_request() {
        let activity = Activity::new(Counting::Requests);
        let (guard, _) = activity.begin();
        // HEADERS without END_HEADERS, fed a byte at a time.
        let mut frames = Frames::Preface(0);
        for byte in h2_bytes(&[(HEADERS, 0, 5)]) {
            frames.scan(&[byte], &activity);
        }
        assert_quiet_after(&activity, Quiet::SlowHead, HEAD).await;
        drop(guard);
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_block_ended_by_continuation_is_not_late() {
        let activity = Activity::new(Counting::Requests);
        let mut frames = Frames::Preface(0);
        let bytes = h2_bytes(&[(HEADERS, 0, 5), (CONTINUATION, END_HEADERS, 3)]);
        frames.scan(&bytes, &activity);
        assert_quiet_after(&activity, Quiet::Idle, IDLE).await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_without_requests_has_no_head_due() {
        assert_quiet_after(&Activity::new(Counting::Requests), Quiet::Idle, IDLE).await;
    }

    #[tokio::test(start_paused = true)]
    async fn http1_bytes_are_not_http2_frames() {
        let activity = Activity::new(Counting::Requests);
        let mut frames = Frames::Preface(0);
        frames.scan(b"POST / HTTP/1.1\r\n", &activity);
        assert!(matches!(frames, Frames::Off));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_arrives_with_its_first_byte() {
        let activity = Activity::new(Counting::Bytes);
        tokio::time::sleep(Duration::from_secs(3)).await;
        activity.read();
        let first = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        activity.read();
        let (guard, arrived) = activity.begin();
        assert_eq!(arrived, Some(first));
        // Body bytes are not the next request.
        activity.read();
        drop(guard);
        assert_eq!(activity.begin().1, None);
    }
}
