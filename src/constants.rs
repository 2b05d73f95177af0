//! Every default limit and timeout in one place, so the config reference, the
//! example config and the code cannot drift apart.

use std::time::Duration;

/// Where `run` listens when neither the config nor `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";

/// Where `/healthz` and `/metrics` are served: loopback only by default.
pub const DEFAULT_OPS_LISTEN: &str = "127.0.0.1:9090";

/// Largest request body accepted (64 KiB); an XucMgt payload is under 2 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Time a client has to send the request head; bounds slowloris clients.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a connection may sit with no request in flight and no bytes moving.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Time a client has to finish the TLS handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; further clients wait in the kernel's backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Streams one HTTP/2 connection may have open at once.
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Budget for a whole request, body read to reply: well under a phone's ring
/// time, so a slow CRM never costs the agent the screen-pop of the next call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(1500);

/// Most of the deadline kept back for writing the reply (a tenth of it when
/// the deadline is short).
pub const REPLY_MARGIN: Duration = Duration::from_millis(50);

/// How long shutdown waits for in-flight requests before giving up on them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a stop keeps serving and accepting while `/healthz` answers 503,
/// so that a load balancer moves new connections away and keep-alive clients
/// leave after a reply (`Connection: close`, HTTP/2 GOAWAY) rather than
/// have their connection closed under them. Longer than a balancer's
/// health-check interval times its fall count.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// How long a connection closed for idling may take to go (HTTP/2: GOAWAY,
/// then the PING that confirms it) before it is dropped: a client that never
/// answers, or never opens its flow-control window, must not keep its slot.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long an HTTP/1 connection stays quiet, no request in flight, before
/// it is parked: its HTTP state and buffers are dropped until the next
/// request's first bytes (`park`). An agent's browser is quiet for tens of
/// seconds between calls; a connection under load is never quiet this long,
/// so it keeps its buffers. Short, because buffers freed late are memory the
/// allocator keeps: with a second, 2,000 connections opened in 3 s held
/// 17 KB each instead of 9 KB (docs/performance.md).
pub const PARK_AFTER: Duration = Duration::from_millis(100);

/// The most a parked connection reads of its next request before handing
/// it to the HTTP layer, which reads the rest: room in every parked
/// connection's task, so small.
pub const PARKED_READ: usize = 32;

/// `Access-Control-Max-Age` on preflight replies, in seconds.
pub const DEFAULT_CORS_MAX_AGE: u32 = 600;

/// Request headers a preflight always allows: the ones XucMgt's documentation names.
pub const BASE_ALLOWED_HEADERS: [&str; 4] =
    ["Origin", "X-Requested-With", "Content-Type", "Accept"];

/// Longest `url` we hand to the agent's browser.
pub const MAX_URL_LEN: usize = 4096;

/// Longest tab title, in characters, after control characters are removed.
pub const MAX_TITLE_CHARS: usize = 120;

/// Largest backend reply read (1 MiB); a CRM lookup reply is a few KiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Most redirects a backend may be configured to follow.
pub const MAX_FOLLOW_REDIRECTS: u8 = 10;

/// How long a wrapper link stays valid: a working day.
pub const DEFAULT_WRAP_TTL: Duration = Duration::from_secs(12 * 3600);

/// Time allowed to ask a CRM page whether it may be framed.
pub const DEFAULT_FRAME_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

/// The token-check endpoint of XiVO's xuc REST API 2.0 (`Authorization: Bearer`).
pub const DEFAULT_XUC_CHECK_PATH: &str = "/xuc/api/2.0/auth/check";

/// Time allowed for the xuc token check (within the request deadline).
pub const DEFAULT_XUC_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a token the xuc server accepted is trusted without asking again.
pub const DEFAULT_XUC_CACHE_TTL: Duration = Duration::from_secs(60);

/// Where the demo agent page and CRM are served (a second origin).
pub const DEFAULT_DEMO_LISTEN: &str = "127.0.0.1:8444";

/// Time one login (all its steps) may take. A login outlives the call that
/// started it, so it may take longer than one call's deadline.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A cached login is renewed this long before it expires (or a tenth of its
/// lifetime when that is shorter), so no call meets an expired session.
pub const LOGIN_RENEW_MARGIN: Duration = Duration::from_secs(60);

/// Wait after a failed login before the next attempt; doubled after each
/// further failure up to [`MAX_LOGIN_BACKOFF`].
pub const LOGIN_BACKOFF: Duration = Duration::from_secs(1);

/// The longest wait between two login attempts to a broken CRM.
pub const MAX_LOGIN_BACKOFF: Duration = Duration::from_secs(60);

/// The shortest a session or token is kept, whatever its `expires_in` says
/// (`0.001` would fetch a token per call): at most one login a second per
/// login cache. A CRM that really ends it sooner answers 401, and the
/// gateway logs in again, within the backoff. (The same floor as `ttl_s`.)
pub const MIN_SESSION_LIFE: Duration = Duration::from_secs(1);

/// A call stops waiting for a running login this long before its deadline
/// (or a tenth of the time it has left, if less): a session that arrives
/// later leaves no time for the look-up, and the call's `none` then says
/// `login`, not a race with the request's own deadline.
pub const LOGIN_WAIT_MARGIN: Duration = Duration::from_millis(10);

/// How long a generated demo certificate is valid: browsers and tools warn
/// about (or refuse) longer lives, and a demo should not outlive its use.
pub const DEMO_CERT_DAYS: i64 = 90;

/// A generated demo certificate this close to its end, or past it, is
/// replaced at start.
pub const DEMO_CERT_RENEW_DAYS: i64 = 7;

/// A caller directory folds the records incremental syncs changed into its
/// compact arrays (a sort of the whole index, off the async workers) once
/// they are more than this many...
pub const DIRECTORY_MERGE_MIN: usize = 1000;

/// ... and more than the index's records divided by this: the changes,
/// kept in maps at about 200 bytes a record, then cost at most a few tens
/// of bytes per record of the index (and a merge runs at most once per
/// eighth of it changed).
pub const DIRECTORY_MERGE_SHARE: usize = 8;

/// Time between two full syncs of a caller directory (`full_every_s`): an
/// hour, so a record deleted in the CRM leaves the index within the hour.
pub const DEFAULT_DIRECTORY_FULL_EVERY: Duration = Duration::from_secs(3600);

/// A directory's index answers while its last good sync is this many times
/// `full_every_s` old (`max_age_s`): one failed full sync does not stop it.
pub const DEFAULT_DIRECTORY_MAX_AGE_FULLS: u32 = 2;

/// Records a directory sync asks per page (`page_size`).
pub const DEFAULT_DIRECTORY_PAGE_SIZE: u32 = 100;

/// Pages a second a directory sync asks at most (`pages_per_second`): a
/// light load on a PHP CRM, and 100 k records in under four minutes.
pub const DEFAULT_DIRECTORY_PAGES_PER_SECOND: u32 = 5;

/// Pages one directory sync may read (`max_pages`): a million records at
/// the default page size; a CRM that pages for ever fails the sync.
pub const DEFAULT_DIRECTORY_MAX_PAGES: u32 = 10_000;

/// Time one directory page may take, login included (`timeout_ms`): a
/// sync is never on a call's path, so a slow CRM page may take its time.
pub const DEFAULT_DIRECTORY_PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How `{{ since }}` is written (`since_format`): ISO 8601 in UTC, as
/// most APIs read dates.
pub const DEFAULT_DIRECTORY_SINCE_FORMAT: &str = "[year]-[month]-[day]T[hour]:[minute]:[second]Z";

/// How far before the last sync's start `since` reaches
/// (`since_overlap_s`): clocks that differ, records saved while it ran.
pub const DEFAULT_DIRECTORY_SINCE_OVERLAP: Duration = Duration::from_secs(120);

/// The least time between two snapshots of a directory's incremental
/// changes (`snapshot_every_s`): a restart replays at most this much of
/// the CRM's changes, and a busy CRM costs one write of the index (about
/// 55 MB for a million numbers) per five minutes at most.
pub const DEFAULT_DIRECTORY_SNAPSHOT_EVERY: Duration = Duration::from_secs(300);

/// A directory that has never synced tries again after this (or after
/// `full_every_s` when shorter), doubled after each failure up to 32 times.
pub const DIRECTORY_RETRY: Duration = Duration::from_secs(30);

/// How long a stop waits for the directories' snapshots: a write that
/// takes longer (a hung disk) is abandoned, and the previous snapshot
/// stays (writes are atomic); the next start syncs what it lacks.
pub const DIRECTORY_STOP_SAVE: Duration = Duration::from_secs(10);

/// Recent calls the ops console keeps, with their traces
/// (`[ops] console_calls`).
pub const DEFAULT_CONSOLE_CALLS: usize = 1000;

/// The most recent calls the console may be set to keep: with
/// [`CONSOLE_CALL_MAX_BYTES`] each at worst, 80 MiB.
pub const MAX_CONSOLE_CALLS: usize = 10_000;

/// The most memory one recorded call holds, trace included: longer texts
/// are cut, later steps of a very long trace are left out.
pub const CONSOLE_CALL_MAX_BYTES: usize = 8 * 1024;

/// The most text one recorded call's trace holds.
pub const CONSOLE_TRACE_BYTES: usize = 4 * 1024;

/// A request body is shown in a recorded trace up to this many bytes.
pub const CONSOLE_BODY_BYTES: usize = 1024;

/// A recorded call's failure detail, tab title and url are cut to this
/// many bytes each.
pub const CONSOLE_TEXT_BYTES: usize = 512;

/// A recorded call's caller, route and backend names are cut to this many
/// bytes each.
pub const CONSOLE_NAME_BYTES: usize = 128;

/// Console pages waiting at once for the next call (long polls); more get
/// their answer at once and ask again later.
pub const CONSOLE_MAX_WAITERS: usize = 16;

/// The longest a console page's request waits for the next call, well
/// within the ops listener's connection life.
pub const CONSOLE_MAX_WAIT: Duration = Duration::from_secs(25);

/// The user name of the console's basic authentication.
pub const DEFAULT_CONSOLE_USER: &str = "ops";

/// Calls waiting to be exported to an OTLP collector at most; when the
/// collector is slower, further calls are not exported (and counted).
pub const OTLP_QUEUE: usize = 2048;

/// Calls sent to the collector in one request at most.
pub const OTLP_BATCH: usize = 256;

/// Time one export to the collector may take, connection included.
pub const OTLP_TIMEOUT: Duration = Duration::from_secs(5);
