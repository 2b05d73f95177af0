//! Prometheus metrics (prometheus-client, OpenMetrics text). One `Metrics`
//! lives for the whole process and survives reloads, so counters never reset
//! under an operator's feet. Label values come from the config (route and
//! backend names) or from fixed enums, so cardinality is bounded.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::outcome::NoneReason;

/// Latency buckets in seconds: the interesting range is 1 ms to the deadline.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.5,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendName {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByLabel {
    by: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// `open`, then each `none` reason.
const OUTCOMES: usize = 1 + NoneReason::ALL.len();

/// One route's or backend's series, found in their families on first use
/// and kept with the route or backend (a generation's config): after that a
/// request counts with one atomic add, no label allocated or hashed and no
/// family lock taken. The series themselves live in the process-wide
/// families, so counts carry on across reloads.
pub struct Handles {
    outcomes: [OnceLock<Counter>; OUTCOMES],
    latency: OnceLock<Histogram>,
}

impl Default for Handles {
    fn default() -> Self {
        Self {
            outcomes: [const { OnceLock::new() }; OUTCOMES],
            latency: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handles").finish_non_exhaustive()
    }
}

impl Handles {
    /// Counts one outcome in its kept series (`create` finds it the first
    /// time). A reason missing from [`NoneReason::ALL`] is still counted in
    /// its own series, only without the cache.
    fn count(&self, none: Option<NoneReason>, create: impl FnOnce() -> Counter) {
        let slot = none.map_or(0, |r| 1 + r.index());
        match self.outcomes.get(slot) {
            Some(cell) => cell.get_or_init(create).inc(),
            None => create().inc(),
        };
    }
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// The series of requests no route took.
    no_route: Handles,
    requests: Family<RequestLabels, Counter>,
    request_latency: Histogram,
    errors: Family<StatusLabel, Counter>,
    cancelled: Family<ByLabel, Counter>,
    preflights: Counter,
    wrap_pages: Family<ResultLabel, Counter>,
    backend_requests: Family<BackendLabels, Counter>,
    backend_latency: Family<BackendName, Histogram>,
    connections: Gauge,
    tls_failures: Counter,
    parked: Counter,
    reloads: Family<ResultLabel, Counter>,
    generation: Gauge,
    logins: Family<BackendLabels, Counter>,
    login_cache: Family<BackendLabels, Counter>,
    directory_entries: Family<BackendName, Gauge>,
    directory_syncs: Family<BackendLabels, Counter>,
    directory_pages: Family<BackendName, Counter>,
    directory_lookups: Family<BackendLabels, Counter>,
    directory_snapshot_writes: Family<BackendLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("thirdparty_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Contract replies by route, outcome (open, none) and none reason",
            requests.clone(),
        );
        let request_latency = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "request_duration_seconds",
            "Time from request head to contract reply",
            request_latency.clone(),
        );
        let errors = Family::<StatusLabel, Counter>::default();
        registry.register(
            "errors",
            "Requests refused with a 4xx status (bad payload, origin, method, size...)",
            errors.clone(),
        );
        let cancelled = Family::<ByLabel, Counter>::default();
        registry.register(
            "cancelled",
            "Requests dropped before their reply, by whom: the client (it closed the connection or reset the HTTP/2 stream; logged as status 499) or the shutdown (shutdown_grace ran out)",
            cancelled.clone(),
        );
        let preflights = Counter::default();
        registry.register("preflights", "CORS preflights answered", preflights.clone());
        let wrap_pages = Family::<ResultLabel, Counter>::default();
        registry.register(
            "wrap_pages",
            "Completion wrapper pages served, by what they showed: framed, framing_refused or check_timeout (the new-window link), invalid_link or expired_link (a 400)",
            wrap_pages.clone(),
        );
        let backend_requests = Family::<BackendLabels, Counter>::default();
        registry.register(
            "backend_requests",
            "Backend calls by backend and result (open, or the none reason)",
            backend_requests.clone(),
        );
        let backend_latency = Family::<BackendName, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "backend_duration_seconds",
            "Backend call latency, request built to reply normalized",
            backend_latency.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "active_connections",
            "Client connections open now",
            connections.clone(),
        );
        let tls_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_failures.clone(),
        );
        let parked = Counter::default();
        registry.register(
            "connections_parked",
            "Times an idle HTTP/1.1 connection gave up its HTTP state and buffers until its next request",
            parked.clone(),
        );
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "reloads",
            "Config reloads (SIGHUP) by result (ok, failed)",
            reloads.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because standard output (the journal, a pipe) was not read fast enough",
            crate::log_output::STDOUT.dropped_lines(),
        );
        let generation = Gauge::default();
        registry.register(
            "config_generation",
            "Generation of the config being served (1 at start, +1 per successful reload)",
            generation.clone(),
        );
        let logins = Family::<BackendLabels, Counter>::default();
        registry.register(
            "logins",
            "Backend logins and OAuth2 token requests by backend and result (ok, failed)",
            logins.clone(),
        );
        let login_cache = Family::<BackendLabels, Counter>::default();
        registry.register(
            "login_sessions",
            "Look-ups by backend and how they got their session: hit (cached), fresh (waited for a login), relogin (the CRM refused the session: logged in again and retried)",
            login_cache.clone(),
        );
        let directory_entries = Family::<BackendName, Gauge>::default();
        registry.register(
            "directory_entries",
            "Phone numbers in a backend's caller directory",
            directory_entries.clone(),
        );
        let directory_syncs = Family::<BackendLabels, Counter>::default();
        registry.register(
            "directory_syncs",
            "Directory syncs by backend and result (full_ok, full_failed, incremental_ok, incremental_failed)",
            directory_syncs.clone(),
        );
        let directory_pages = Family::<BackendName, Counter>::default();
        registry.register(
            "directory_pages",
            "Pages directory syncs read from the CRM",
            directory_pages.clone(),
        );
        let directory_lookups = Family::<BackendLabels, Counter>::default();
        registry.register(
            "directory_lookups",
            "Calls that asked a backend's directory, by result: hit (answered, no CRM request), miss (no such number: the live look-up), stale (not built or older than max_age_s: the live look-up)",
            directory_lookups.clone(),
        );
        let directory_snapshot_writes = Family::<BackendLabels, Counter>::default();
        registry.register(
            "directory_snapshot_writes",
            "Snapshots of a backend's directory written to state_dir, by result (ok, failed): after a full sync, then at most every snapshot_every_s while the index changed, and at a clean stop",
            directory_snapshot_writes.clone(),
        );
        registry.register(
            "build",
            "Build information",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Self {
            registry,
            no_route: Handles::default(),
            requests,
            request_latency,
            errors,
            cancelled,
            preflights,
            wrap_pages,
            backend_requests,
            backend_latency,
            connections,
            tls_failures,
            parked,
            reloads,
            generation,
            logins,
            login_cache,
            directory_entries,
            directory_syncs,
            directory_pages,
            directory_lookups,
            directory_snapshot_writes,
        }
    }

    /// A directory sync ended: `full_ok`, `incremental_failed`...; the
    /// index now holds `entries` numbers.
    pub fn directory_sync(&self, backend: &str, result: &'static str, pages: u32, entries: usize) {
        let name = BackendName {
            backend: backend.to_owned(),
        };
        self.directory_syncs
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
                result,
            })
            .inc();
        self.directory_pages
            .get_or_create(&name)
            .inc_by(u64::from(pages));
        self.directory_entries
            .get_or_create(&name)
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// A call asked a backend's directory: `hit`, `miss` or `stale`.
    pub fn directory_lookup(&self, backend: &str, result: &'static str) {
        self.directory_lookups
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
                result,
            })
            .inc();
    }

    /// A directory's snapshot was written (`ok`) or not (`failed`).
    pub fn directory_snapshot_write(&self, backend: &str, result: &'static str) {
        self.directory_snapshot_writes
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
                result,
            })
            .inc();
    }

    /// The counters a backend's login task updates.
    pub fn login_counters(&self, backend: &str) -> crate::backend::login::LoginCounters {
        let get = |result| {
            self.logins
                .get_or_create(&BackendLabels {
                    backend: backend.to_owned(),
                    result,
                })
                .clone()
        };
        crate::backend::login::LoginCounters {
            ok: get("ok"),
            failed: get("failed"),
        }
    }

    /// Counts how a look-up got its session: `hit`, `fresh` or `relogin`.
    pub fn login_session(&self, backend: &str, how: &'static str) {
        self.login_cache
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
                result: how,
            })
            .inc();
    }

    /// A shared instance.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }

    /// Counts a contract reply: `open` (`none` is `None`) or `none` and why,
    /// for the route (name and handles) that answered, if any.
    pub fn request(&self, route: Option<(&str, &Handles)>, none: Option<NoneReason>, seconds: f64) {
        let (name, handles) = route.unwrap_or(("-", &self.no_route));
        handles.count(none, || {
            self.requests
                .get_or_create(&RequestLabels {
                    route: name.to_owned(),
                    outcome: if none.is_some() { "none" } else { "open" },
                    reason: none.map_or("-", NoneReason::as_str),
                })
                .clone()
        });
        self.request_latency.observe(seconds);
    }

    /// Counts a refused request.
    pub fn error(&self, status: u16) {
        self.errors.get_or_create(&StatusLabel { status }).inc();
    }

    /// Counts a request dropped before its reply: `by` is `client` or
    /// `shutdown`.
    pub fn cancelled(&self, by: &'static str) {
        self.cancelled.get_or_create(&ByLabel { by }).inc();
    }

    /// Counts a preflight.
    pub fn preflight(&self) {
        self.preflights.inc();
    }

    /// Counts a wrapper page by what it showed.
    pub fn wrap_page(&self, result: &'static str) {
        self.wrap_pages.get_or_create(&ResultLabel { result }).inc();
    }

    /// Counts a backend call (`open`, or the `none` reason) and its latency.
    pub fn backend(
        &self,
        backend: &str,
        handles: &Handles,
        none: Option<NoneReason>,
        seconds: f64,
    ) {
        handles.count(none, || {
            self.backend_requests
                .get_or_create(&BackendLabels {
                    backend: backend.to_owned(),
                    result: none.map_or("open", NoneReason::as_str),
                })
                .clone()
        });
        handles
            .latency
            .get_or_init(|| {
                self.backend_latency
                    .get_or_create(&BackendName {
                        backend: backend.to_owned(),
                    })
                    .clone()
            })
            .observe(seconds);
    }

    /// A connection opened; the guard counts it closed when dropped.
    pub fn connection(&self) -> ConnectionGuard {
        self.connections.inc();
        ConnectionGuard(self.connections.clone())
    }

    /// Counts a failed TLS handshake.
    pub fn tls_failure(&self) {
        self.tls_failures.inc();
    }

    /// Counts an idle HTTP/1.1 connection parked.
    pub fn parked(&self) {
        self.parked.inc();
    }

    /// Counts a reload and, when it worked, the new generation.
    pub fn reload(&self, result: Result<u64, ()>) {
        let label = match result {
            Ok(generation) => {
                self.set_generation(generation);
                "ok"
            }
            Err(()) => "failed",
        };
        self.reloads
            .get_or_create(&ResultLabel { result: label })
            .inc();
    }

    /// Records the generation being served.
    pub fn set_generation(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        out
    }
}

/// Decrements the open-connections gauge when the connection ends.
pub struct ConnectionGuard(Gauge);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    /// Handles belong to one generation; the series to the process: a
    /// reload's fresh handles keep counting the same series.
    #[test]
    fn handles_of_two_generations_count_into_the_same_series() {
        let metrics = Metrics::new();
        let (first, second) = (Handles::default(), Handles::default());
        metrics.request(Some(("lookup", &first)), None, 0.01);
        metrics.request(Some(("lookup", &second)), None, 0.01);
        metrics.request(Some(("lookup", &second)), Some(NoneReason::Timeout), 0.01);
        metrics.request(None, Some(NoneReason::NoRoute), 0.01);
        metrics.backend("crm", &first, Some(NoneReason::Io), 0.02);
        metrics.backend("crm", &second, Some(NoneReason::Io), 0.02);
        let text = metrics.encode();
        let open = r#"thirdparty_gateway_requests_total{route="lookup",outcome="open",reason="-"}"#;
        assert_eq!(line(&text, open), Some(&*format!("{open} 2")), "{text}");
        let timeout =
            r#"thirdparty_gateway_requests_total{route="lookup",outcome="none",reason="timeout"}"#;
        assert_eq!(
            line(&text, timeout),
            Some(&*format!("{timeout} 1")),
            "{text}"
        );
        let no_route =
            r#"thirdparty_gateway_requests_total{route="-",outcome="none",reason="no_route"}"#;
        assert_eq!(
            line(&text, no_route),
            Some(&*format!("{no_route} 1")),
            "{text}"
        );
        let io = r#"thirdparty_gateway_backend_requests_total{backend="crm",result="io"}"#;
        assert_eq!(line(&text, io), Some(&*format!("{io} 2")), "{text}");
        let count = r#"thirdparty_gateway_backend_duration_seconds_count{backend="crm"}"#;
        assert_eq!(line(&text, count), Some(&*format!("{count} 2")), "{text}");
    }

    #[test]
    fn logins_and_sessions_are_counted_by_backend_and_result() {
        let metrics = Metrics::new();
        let counters = metrics.login_counters("vtiger");
        counters.ok.inc();
        metrics.login_counters("vtiger").failed.inc();
        metrics.login_session("vtiger", "hit");
        metrics.login_session("vtiger", "hit");
        metrics.login_session("vtiger", "relogin");
        let text = metrics.encode();
        for (series, n) in [
            (
                r#"thirdparty_gateway_logins_total{backend="vtiger",result="ok"}"#,
                1,
            ),
            (
                r#"thirdparty_gateway_logins_total{backend="vtiger",result="failed"}"#,
                1,
            ),
            (
                r#"thirdparty_gateway_login_sessions_total{backend="vtiger",result="hit"}"#,
                2,
            ),
            (
                r#"thirdparty_gateway_login_sessions_total{backend="vtiger",result="relogin"}"#,
                1,
            ),
        ] {
            assert_eq!(
                line(&text, series),
                Some(&*format!("{series} {n}")),
                "{text}"
            );
        }
    }
}
