//! Logins: the requests some CRMs need before a look-up can be sent (vTiger's
//! challenge then login, Sugar's `login`, an OAuth2 token), and the session
//! they yield, cached per login (a backend's own, or one several share).
//!
//! At most one login runs at a time per cache. It runs in its own task,
//! bounded by its own timeout, so a slow login that misses the deadline of
//! the call that started it still serves the calls after it; calls that
//! arrive meanwhile wait for it within their own deadline. A failed login is
//! not retried before a backoff (1 s, doubling to 60 s); calls in between get
//! `none` with reason `login` at once, so a broken CRM is not hammered.
//!
//! Backends that query several modules of one CRM can share one login
//! (`login = "OTHER"`): one session, one login at a time for all of them,
//! and a session refused to any of them is dropped for all.
//!
//! The cache is per gateway process: a reload hands the session and backoff
//! of an unchanged login to the new generation ([`Login::adopt`]), a restart
//! logs in afresh, and several gateway instances each hold their own
//! session. Nothing depends on it but speed; it is not shared state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use minijinja::value::{Enumerator, Object, Value};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::{Client, RawReply};
use super::reply::ReplyFormat;
use super::request::RequestSpec;
use super::Failure;
use crate::constants::{
    LOGIN_BACKOFF, LOGIN_RENEW_MARGIN, LOGIN_WAIT_MARGIN, MAX_LOGIN_BACKOFF, MIN_SESSION_LIFE,
};
use crate::extract::{xml_values, JsonPath, XmlPath};
use crate::outcome::NoneReason;
use crate::template::{ConditionId, Templates};

/// One request of a login, built and sent like a look-up.
#[derive(Debug)]
pub struct Step {
    /// How to build it; its templates see `login` (earlier steps' values).
    pub request: RequestSpec,
    /// The reply's shape (json, xml or text).
    pub format: ReplyFormat,
    /// Named values to keep from the reply.
    pub extract: StepExtract,
    /// Statuses that count as success; `None` means any 2xx.
    pub accept_status: Option<Vec<u16>>,
    /// The step succeeded only when this holds (default: every extracted
    /// value was found).
    pub ok_when: Option<ConditionId>,
}

/// What a step keeps from its reply.
#[derive(Debug)]
pub enum StepExtract {
    /// JSON paths by name.
    Json(Vec<(Box<str>, JsonPath)>),
    /// XML element paths by name.
    Xml(Vec<(Box<str>, XmlPath)>),
    /// The trimmed body as `body` (text replies).
    Body,
}

/// How a backend logs in, and its cached session. A clone is the same
/// login: backends that share one (`login = "OTHER"`) hold clones, so they
/// share the session, the single flight, the backoff and the re-login.
#[derive(Debug, Clone)]
pub struct Login {
    inner: Arc<Inner>,
    /// When a look-up's reply means the session is gone; `None`: HTTP 401.
    pub relogin_when: Option<ConditionId>,
}

#[derive(Debug)]
struct Inner {
    backend: Box<str>,
    steps: Vec<Step>,
    /// The steps' own templates, so the login task owns what it renders.
    templates: Arc<Templates>,
    client: Client,
    /// Lifetime when the reply gives no `expires_in`; `None`: until refused.
    ttl: Option<Duration>,
    /// Sessions the CRM drops after this long unused.
    idle_ttl: Option<Duration>,
    timeout: Duration,
    /// A hash of everything that makes its sessions: steps, templates,
    /// secrets, lifetimes. A reload keeps the session of a login whose
    /// definition did not change ([`Login::adopt`]).
    definition: u64,
    state: Mutex<State>,
}

/// Settings of a [`Login`] besides its steps.
#[derive(Debug)]
pub struct LoginSettings {
    /// Lifetime when the reply gives no `expires_in`.
    pub ttl: Option<Duration>,
    /// Idle lifetime.
    pub idle_ttl: Option<Duration>,
    /// Time one login may take, all steps included.
    pub timeout: Duration,
}

/// Where waiting calls get a running login's result.
type Outcome = watch::Receiver<Option<Result<Arc<Session>, Failure>>>;

#[derive(Debug, Default)]
struct State {
    session: Option<Arc<Session>>,
    running: Option<Outcome>,
    failed_until: Option<Instant>,
    backoff: Option<Duration>,
    /// Why the last login failed, for the calls its backoff turns away: a
    /// backend sharing the login names the cause, not only the wait.
    last_failure: Option<Arc<str>>,
    generation: u64,
    /// What the ops console shows: the last failure and the counts.
    history: History,
}

/// A login's past, for the ops console (no session value in it; why the
/// last one failed is `State::last_failure`).
#[derive(Debug, Default, Clone)]
struct History {
    failed_at: Option<Instant>,
    logins: u64,
    failures: u64,
    refused: u64,
}

/// Where a login stands, for the ops console: times and counts, never a
/// session value.
#[derive(Debug, Clone, Default)]
pub struct LoginStatus {
    /// How old the cached session is; `None` without one.
    pub session_age: Option<Duration>,
    /// When the cached session will be renewed (its expiry or idle limit
    /// less the renewal margin); `None`: kept until the CRM refuses it.
    pub renews_in: Option<Duration>,
    /// Whether a login is running now.
    pub running: bool,
    /// Time left before the next attempt after a failure.
    pub backoff_left: Option<Duration>,
    /// How long ago the last login failed, and why.
    pub last_failure: Option<(Duration, String)>,
    /// Logins that worked since the process started.
    pub logins: u64,
    /// Logins that failed.
    pub failures: u64,
    /// Sessions the CRM refused, so the gateway logged in again.
    pub relogins: u64,
}

impl State {
    /// Spaces the next login after a failure (`why`): 1 s, doubling to 60 s.
    fn next_backoff(&mut self, why: &str) -> Duration {
        self.last_failure = Some(why.into());
        self.history.failures += 1;
        self.history.failed_at = Some(Instant::now());
        let backoff = self
            .backoff
            .map_or(LOGIN_BACKOFF, |b| (b * 2).min(MAX_LOGIN_BACKOFF));
        self.backoff = Some(backoff);
        self.failed_until = Some(Instant::now() + backoff);
        backoff
    }
}

/// A login's result: the values its steps extracted.
#[derive(Debug)]
pub struct Session {
    /// `login` in templates: every extracted value by name.
    pub values: Value,
    /// What each step sent and got, for `simulate` (no secrets, no bodies).
    pub trace: Vec<String>,
    /// Counts logins of this backend, so a stale session is dropped once.
    generation: u64,
    obtained: Instant,
    expires: Option<Instant>,
    last_used: Mutex<Instant>,
    /// Whether a look-up was accepted with it: a session refused before
    /// that was never good, and counts as a failed login.
    served: std::sync::atomic::AtomicBool,
}

/// How a call got its session, for `simulate` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A cached session was still good.
    Cached,
    /// This call waited for a login (its own or one already running).
    Fresh,
}

/// The counters a login updates (cloned into the login task).
#[derive(Debug, Clone)]
pub struct LoginCounters {
    /// Logins that worked.
    pub ok: Counter,
    /// Logins that failed or timed out.
    pub failed: Counter,
}

impl Session {
    /// The session's string values by name (numbers printed).
    pub fn string_values(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.values
            .try_iter()
            .into_iter()
            .flatten()
            .filter_map(move |key| {
                let value = self.values.get_item(&key).ok()?;
                let text = match value.as_str() {
                    Some(s) => s.to_owned(),
                    None => value.to_string(),
                };
                Some((key.to_string(), text))
            })
    }

    /// How old the session is.
    pub fn age(&self) -> Duration {
        self.obtained.elapsed()
    }

    /// When it stops being [`fresh`](Self::fresh), if ever.
    fn renews_at(&self, idle_ttl: Option<Duration>) -> Option<Instant> {
        let by_life = self.expires.map(|expires| {
            let life = expires.saturating_duration_since(self.obtained);
            let margin = LOGIN_RENEW_MARGIN.min(life / 10);
            expires.checked_sub(margin).unwrap_or(expires)
        });
        let by_idle = idle_ttl.map(|idle| {
            let last = *self.last_used.lock().unwrap_or_else(|e| e.into_inner());
            let until = last.checked_add(idle).unwrap_or(last);
            let margin = LOGIN_RENEW_MARGIN.min(idle / 10);
            until.checked_sub(margin).unwrap_or(until)
        });
        match (by_life, by_idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether it can still be used at `now`, renewal margin included.
    fn fresh(&self, now: Instant, idle_ttl: Option<Duration>) -> bool {
        if let Some(expires) = self.expires {
            let life = expires.saturating_duration_since(self.obtained);
            let margin = LOGIN_RENEW_MARGIN.min(life / 10);
            if now + margin >= expires {
                return false;
            }
        }
        if let Some(idle) = idle_ttl {
            let last = *self.last_used.lock().unwrap_or_else(|e| e.into_inner());
            let margin = LOGIN_RENEW_MARGIN.min(idle / 10);
            if now + margin >= last + idle {
                return false;
            }
        }
        true
    }
}

impl Login {
    /// A login for `backend` with its steps compiled in `templates`.
    pub fn new(
        backend: &str,
        mut steps: Vec<Step>,
        templates: Templates,
        client: Client,
        settings: LoginSettings,
        relogin_when: Option<ConditionId>,
    ) -> Self {
        // A login sends credentials in its body (a password, a client
        // secret, a refresh token): it never follows a redirect, as the
        // `oauth2` crate advises for token requests.
        for step in &mut steps {
            step.request.follows_redirects = false;
        }
        let definition = {
            use std::hash::{Hash, Hasher};
            let mut h = std::hash::DefaultHasher::new();
            backend.hash(&mut h);
            // Method, urls, body fields, header names, formats, paths.
            format!("{steps:?}").hash(&mut h);
            // Credential headers print as `Sensitive`: their bytes too.
            for step in &steps {
                if let Some((name, value)) = &step.request.auth {
                    name.as_str().hash(&mut h);
                    value.as_bytes().hash(&mut h);
                }
            }
            templates.hash_into(&mut h);
            (settings.ttl, settings.idle_ttl, settings.timeout).hash(&mut h);
            h.finish()
        };
        Self {
            relogin_when,
            inner: Arc::new(Inner {
                backend: backend.into(),
                steps,
                templates: Arc::new(templates),
                client,
                ttl: settings.ttl,
                idle_ttl: settings.idle_ttl,
                timeout: settings.timeout,
                definition,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Takes over `old`'s session and backoff when both are the same login
    /// (same backend, steps, templates, secrets and lifetimes): a reload of
    /// an unchanged config, `run --watch` or a certificate renewal must not
    /// log in again or forget that the CRM is failing, as long-lived
    /// proxies keep their upstream state. Returns whether it did.
    pub fn adopt(&self, old: &Login) -> bool {
        if Arc::ptr_eq(&self.inner, &old.inner) || self.inner.definition != old.inner.definition {
            return false;
        }
        let from = old.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut to = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        to.session = from.session.clone();
        to.failed_until = from.failed_until;
        to.backoff = from.backoff;
        to.last_failure = from.last_failure.clone();
        to.generation = from.generation;
        to.history = from.history.clone();
        true
    }

    /// Where the login stands now, for the ops console.
    pub fn status(&self) -> LoginStatus {
        let now = Instant::now();
        let state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let session = state.session.as_ref();
        LoginStatus {
            session_age: session.map(|s| now.saturating_duration_since(s.obtained)),
            renews_in: session
                .and_then(|s| s.renews_at(self.inner.idle_ttl))
                .map(|at| at.saturating_duration_since(now)),
            running: state.running.is_some(),
            backoff_left: state
                .failed_until
                .filter(|until| *until > now)
                .map(|until| until - now),
            last_failure: state
                .history
                .failed_at
                .zip(state.last_failure.as_deref())
                .map(|(at, why)| (now.saturating_duration_since(at), why.to_owned())),
            logins: state.history.logins,
            failures: state.history.failures,
            relogins: state.history.refused,
        }
    }

    /// The backend whose login this is: the one that configured it, also
    /// when other backends share it (login metrics and log lines name it).
    pub fn owner(&self) -> &str {
        &self.inner.backend
    }

    /// Its steps, for `simulate`'s dry run.
    pub fn steps(&self) -> &[Step] {
        &self.inner.steps
    }

    /// What each step would send, built with empty login values and not
    /// sent (`simulate --dry-run`): method and url, with what its
    /// secret-reading fields rendered redacted.
    pub fn dry_run(&self) -> Vec<String> {
        let ctx = LoginContext::without_session(Value::UNDEFINED);
        let inner = &self.inner;
        inner
            .steps
            .iter()
            .enumerate()
            .map(
                |(i, step)| match step.request.build(&inner.templates, &ctx) {
                    Ok(r) => {
                        let hidden: Vec<String> =
                            r.hidden.iter().filter(|v| v.len() >= 4).cloned().collect();
                        let line = format!("step {}: {} {}", i + 1, r.method, r.shown_url());
                        super::request::redacted(&line, &hidden)
                    }
                    Err(f) => format!("step {}: not built: {f}", i + 1),
                },
            )
            .collect()
    }

    /// The templates its steps are rendered with.
    pub fn templates(&self) -> &Templates {
        &self.inner.templates
    }

    /// A good session: the cached one, or the result of a login (started
    /// here or already running), waited for until shortly before `deadline`
    /// ([`LOGIN_WAIT_MARGIN`]).
    pub async fn session(
        &self,
        deadline: Instant,
        counters: &LoginCounters,
    ) -> Result<(Arc<Session>, Source), Failure> {
        let now = Instant::now();
        let mut rx = {
            let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(session) = &state.session {
                if session.fresh(now, self.inner.idle_ttl) {
                    *session.last_used.lock().unwrap_or_else(|e| e.into_inner()) = now;
                    return Ok((Arc::clone(session), Source::Cached));
                }
                state.session = None;
            }
            match &state.running {
                Some(rx) => rx.clone(),
                None => {
                    if let Some(until) = state.failed_until.filter(|u| *u > now) {
                        return Err(Failure::new(
                            NoneReason::Login,
                            format!(
                                "the last login failed ({}); next attempt in {} ms",
                                state.last_failure.as_deref().unwrap_or("no detail"),
                                until.saturating_duration_since(now).as_millis()
                            ),
                        ));
                    }
                    let (tx, rx) = watch::channel(None);
                    state.running = Some(rx.clone());
                    state.generation += 1;
                    let generation = state.generation;
                    let inner = Arc::clone(&self.inner);
                    let counters = counters.clone();
                    tokio::spawn(async move {
                        let result = inner.run(generation).await;
                        inner.finish(&result, &counters);
                        // Nobody waiting is fine: the session is cached.
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
            }
        };
        let margin = LOGIN_WAIT_MARGIN.min(deadline.saturating_duration_since(now) / 10);
        let until = deadline.checked_sub(margin).unwrap_or(deadline);
        let waited = tokio::time::timeout_at(until, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(result)) => match result.as_ref() {
                Some(Ok(session)) => Ok((Arc::clone(session), Source::Fresh)),
                Some(Err(f)) => Err(f.clone()),
                None => Err(Failure::new(
                    NoneReason::Login,
                    "login ended without result",
                )),
            },
            Ok(Err(_)) => Err(Failure::new(NoneReason::Login, "login task ended")),
            Err(_) => Err(Failure::new(
                NoneReason::Login,
                "login still running at the deadline (it goes on for the next calls)",
            )),
        }
    }

    /// Whether a look-up's reply says the session is gone: `relogin_when`
    /// over `status` and the reply's JSON fields, or HTTP 401.
    pub fn refused(&self, templates: &Templates, raw: &RawReply) -> bool {
        let Some(cond) = &self.relogin_when else {
            return raw.status == http::StatusCode::UNAUTHORIZED;
        };
        let mut fields = match serde_json::from_slice::<serde_json::Value>(&raw.body) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        fields.insert("status".into(), raw.status.as_u16().into());
        let ctx = Value::from(minijinja::value::Serde(&fields));
        templates.test(cond, &ctx).unwrap_or(false)
    }

    /// Drops `session` from the cache (the CRM refused it), unless a newer
    /// login already replaced it. A session refused before any look-up was
    /// accepted with it was never good (the user lost access to the module,
    /// an API that refuses every token): that counts as a failed login, so
    /// the backoff bounds how often the CRM sees a login, whatever the call
    /// rate.
    pub fn invalidate(&self, session: &Session, counters: &LoginCounters) {
        let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .session
            .as_ref()
            .is_some_and(|s| s.generation == session.generation)
        {
            state.session = None;
            state.history.refused += 1;
            if !session.served.load(std::sync::atomic::Ordering::Relaxed) {
                counters.failed.inc();
                let backoff = state.next_backoff(
                    "the CRM refused its session before any look-up was accepted with it",
                );
                tracing::warn!(
                    backend = %self.inner.backend,
                    retry_in_ms = backoff.as_millis() as u64,
                    "the CRM refused a session before any look-up was accepted with it: counted as a failed login"
                );
            }
        }
    }

    /// A look-up was accepted with `session`: the login works, and the
    /// backoff starts again from its first step.
    pub fn accepted(&self, session: &Session) {
        if !session
            .served
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            state.backoff = None;
        }
    }
}

impl Inner {
    /// Runs every step within the login timeout.
    async fn run(&self, generation: u64) -> Result<Arc<Session>, Failure> {
        match tokio::time::timeout(self.timeout, self.steps(generation)).await {
            Ok(result) => result.map(Arc::new),
            Err(_) => Err(Failure::new(
                NoneReason::Login,
                format!("login took over {} ms", self.timeout.as_millis()),
            )),
        }
    }

    async fn steps(&self, generation: u64) -> Result<Session, Failure> {
        let mut values: Vec<(Box<str>, Value)> = Vec::new();
        let mut trace = Vec::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            let fail = |detail: String| {
                Failure::new(NoneReason::Login, format!("login step {}: {detail}", i + 1))
            };
            let ctx = Value::from_object(LoginContext {
                login: values_map(&values),
                payload: Value::UNDEFINED,
            });
            let request = step
                .request
                .build(&self.templates, &ctx)
                .map_err(|f| fail(f.to_string()))?;
            // A path may hold a secret or an earlier step's session too.
            let earlier = values
                .iter()
                .filter_map(|(_, v)| v.as_str().map(str::to_owned));
            let hidden: Vec<String> = request
                .hidden
                .iter()
                .cloned()
                .chain(earlier)
                .filter(|v| v.len() >= 4 && !v.starts_with("http"))
                .collect();
            let line = super::request::redacted(
                &format!("{} {}", request.method, request.shown_url()),
                &hidden,
            );
            // A failure names the step's request: which of the CRM's URLs
            // refused, or did not answer. It goes to log lines, so without
            // its query string, whose fields may be literal values of the
            // config (`simulate` shows the step whole, redacted).
            let named = {
                let mut url = request.url.clone();
                url.set_query(None);
                let url = if request.url_hidden {
                    request.shown_url()
                } else {
                    url.to_string()
                };
                super::request::redacted(&format!("{} {url}", request.method), &hidden)
            };
            let raw = self
                .client
                .send(request)
                .await
                .map_err(|f| fail(format!("{named}: {f}")))?;
            trace.push(format!("{line} -> HTTP {}", raw.status.as_u16()));
            let accepted = match &step.accept_status {
                Some(list) => list.contains(&raw.status.as_u16()),
                None => raw.status.is_success(),
            };
            if !accepted {
                if raw.status.is_redirection() {
                    let to = raw
                        .headers
                        .get(http::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("?");
                    return Err(fail(format!(
                        "{named}: HTTP {} to {to:?}: a login never follows redirects (its body carries credentials); set the step's url to where it points",
                        raw.status
                    )));
                }
                return Err(fail(format!("{named}: HTTP {}", raw.status)));
            }
            let found = step.read(&raw.body).map_err(fail)?;
            let reply_ctx = values_map(&found);
            values.extend(found);
            match &step.ok_when {
                Some(cond) => {
                    let ok = self
                        .templates
                        .test(cond, &reply_ctx)
                        .map_err(|e| fail(e.to_string()))?;
                    if !ok {
                        return Err(fail("ok_when is false".into()));
                    }
                }
                None => step.all_found(&values).map_err(fail)?,
            }
        }
        let now = Instant::now();
        let expires_in = values
            .iter()
            .rev()
            .find(|(n, _)| n.as_ref() == "expires_in")
            .and_then(|(_, v)| seconds(v));
        // `ttl_s` is range-checked at load; a reply's `expires_in` is the
        // CRM's word, and gets a floor.
        let expires_in = expires_in.map(|life| {
            if life < MIN_SESSION_LIFE {
                tracing::warn!(
                    backend = %self.backend, expires_in_ms = life.as_millis() as u64,
                    floor_ms = MIN_SESSION_LIFE.as_millis() as u64,
                    "the CRM's expires_in is under the floor: the session is kept that long (a CRM that ends it sooner answers 401 and the gateway logs in again, within the backoff)"
                );
            }
            life.max(MIN_SESSION_LIFE)
        });
        let life = expires_in.or(self.ttl);
        Ok(Session {
            values: values_map(&values),
            trace,
            generation,
            obtained: now,
            expires: life.map(|d| now + d),
            last_used: Mutex::new(now),
            served: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Caches a good session, or spaces the next attempt after a failure.
    fn finish(&self, result: &Result<Arc<Session>, Failure>, counters: &LoginCounters) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.running = None;
        match result {
            Ok(session) => {
                counters.ok.inc();
                state.history.logins += 1;
                state.session = Some(Arc::clone(session));
                state.failed_until = None;
                // The backoff is reset when a look-up is accepted with the
                // session ([`Login::accepted`]), not here: a CRM that issues
                // sessions and refuses them must still be spaced out.
                tracing::info!(backend = %self.backend, "logged in");
            }
            Err(failure) => {
                counters.failed.inc();
                let backoff = state.next_backoff(&failure.detail);
                tracing::warn!(
                    backend = %self.backend, detail = failure.detail,
                    retry_in_ms = backoff.as_millis() as u64, "login failed"
                );
            }
        }
    }
}

impl Step {
    /// The values this step extracts from a reply body.
    fn read(&self, body: &[u8]) -> Result<Vec<(Box<str>, Value)>, String> {
        let mut out = Vec::new();
        match (&self.extract, self.format) {
            (StepExtract::Json(paths), _) => {
                let doc: serde_json::Value =
                    serde_json::from_slice(body).map_err(|e| format!("reply is not JSON: {e}"))?;
                for (name, path) in paths {
                    if let Some(v) = path.lookup(&doc) {
                        out.push((name.clone(), Value::from(minijinja::value::Serde(v))));
                    }
                }
            }
            (StepExtract::Xml(paths), _) => {
                let list: Vec<XmlPath> = paths.iter().map(|(_, p)| p.clone()).collect();
                let found = xml_values(body, &list).map_err(|e| e.to_string())?;
                for ((name, _), v) in paths.iter().zip(found) {
                    if let Some(v) = v {
                        out.push((name.clone(), Value::from(v)));
                    }
                }
            }
            (StepExtract::Body, _) => {
                let text = std::str::from_utf8(body).map_err(|_| "reply is not UTF-8 text")?;
                out.push(("body".into(), Value::from(text.trim())));
            }
        }
        Ok(out)
    }

    /// Without `ok_when`, a step worked when every value it extracts is there
    /// (vTiger and Sugar answer a refused login with HTTP 200).
    fn all_found(&self, values: &[(Box<str>, Value)]) -> Result<(), String> {
        let names: Vec<&str> = match &self.extract {
            StepExtract::Json(p) => p.iter().map(|(n, _)| n.as_ref()).collect(),
            StepExtract::Xml(p) => p.iter().map(|(n, _)| n.as_ref()).collect(),
            StepExtract::Body => Vec::new(),
        };
        for name in names {
            let present = values
                .iter()
                .any(|(n, v)| n.as_ref() == name && !v.is_none() && !v.is_undefined());
            if !present && name != "expires_in" {
                return Err(format!("no {name} in the reply"));
            }
        }
        Ok(())
    }
}

/// A login's values as a map; the last of a name wins.
fn values_map(values: &[(Box<str>, Value)]) -> Value {
    let map: std::collections::BTreeMap<Value, Value> = values
        .iter()
        .map(|(n, v)| (Value::from(n.as_ref()), v.clone()))
        .collect();
    Value::from_object(map)
}

/// `expires_in` as seconds, a number or a numeric string.
fn seconds(value: &Value) -> Option<Duration> {
    let n = match value.as_str() {
        Some(s) => s.trim().parse::<f64>().ok()?,
        None => f64::try_from(value.clone()).ok()?,
    };
    (n.is_finite() && n > 0.0).then(|| Duration::from_secs_f64(n.min(365.0 * 86400.0)))
}

/// What a look-up's templates see when its backend logs in: `login` (the
/// session's values), then the payload as before.
#[derive(Debug)]
pub struct LoginContext {
    /// The session's values.
    pub login: Value,
    /// The payload (or reply) context.
    pub payload: Value,
}

impl LoginContext {
    /// `payload` with an empty `login`: what templates see when no login
    /// ran (a dry run, a saved reply).
    pub fn without_session(payload: Value) -> Value {
        Value::from_object(LoginContext {
            login: values_map(&[]),
            payload,
        })
    }
}

impl Object for LoginContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        if key.as_str() == Some("login") {
            return Some(self.login.clone());
        }
        self.payload
            .get_item(key)
            .ok()
            .filter(|v| !v.is_undefined())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys = vec![Value::from("login")];
        keys.extend(self.payload.try_iter().into_iter().flatten());
        Enumerator::Values(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::request::{BodySpec, UrlSpec};
    use crate::template::Escape;

    /// A client that is never used: these logins send nothing.
    fn idle_client() -> Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Client::new(tls, Duration::from_secs(1), 0, 1024)
    }

    /// A login that works at once (no steps) or fails at once (a step
    /// whose url is not a URL), without any I/O, so paused time only moves
    /// when the test says.
    fn login(works: bool, ttl: Option<u64>, idle_ttl: Option<u64>) -> Login {
        let mut templates = Templates::new();
        let steps = if works {
            Vec::new()
        } else {
            let url = templates.add("t#url", "not a url", Escape::Url).unwrap();
            vec![Step {
                request: RequestSpec {
                    method: http::Method::GET,
                    url: UrlSpec::Template(url),
                    body: BodySpec::Query(Vec::new()),
                    headers: Vec::new(),
                    auth: None,
                    accept: http::HeaderValue::from_static("application/json"),
                    confidential: false,
                    follows_redirects: false,
                    shown_headers: Default::default(),
                },
                format: ReplyFormat::Json,
                extract: StepExtract::Json(Vec::new()),
                accept_status: None,
                ok_when: None,
            }]
        };
        let settings = LoginSettings {
            ttl: ttl.map(Duration::from_secs),
            idle_ttl: idle_ttl.map(Duration::from_secs),
            timeout: Duration::from_secs(10),
        };
        Login::new("crm", steps, templates, idle_client(), settings, None)
    }

    fn counters() -> LoginCounters {
        LoginCounters {
            ok: Counter::default(),
            failed: Counter::default(),
        }
    }

    /// Asks for a session at `t0 + secs` (a call with 1.5 s of deadline).
    async fn call_at(
        login: &Login,
        counters: &LoginCounters,
        t0: Instant,
        secs: f64,
    ) -> Result<Source, Failure> {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(secs)).await;
        let deadline = Instant::now() + Duration::from_millis(1500);
        login.session(deadline, counters).await.map(|(_, s)| s)
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_are_spaced_one_second_doubling_to_sixty() {
        let login = login(false, None, None);
        let counters = counters();
        let t0 = Instant::now();
        let mut attempts_at = Vec::new();
        // A call every half second for 200 s: only the attempts reach the CRM.
        for half in 0..=400u32 {
            let secs = f64::from(half) / 2.0;
            let before = counters.failed.get();
            let failure = call_at(&login, &counters, t0, secs).await.unwrap_err();
            assert_eq!(failure.reason, NoneReason::Login);
            if counters.failed.get() > before {
                attempts_at.push(secs);
            } else {
                assert!(
                    failure.detail.contains("next attempt in"),
                    "{}",
                    failure.detail
                );
            }
        }
        // Waits of 1, 2, 4, 8, 16, 32 s, then 60 s at most.
        assert_eq!(
            attempts_at,
            [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0, 183.0]
        );
        assert_eq!(counters.ok.get(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_renewed_a_margin_before_its_ttl_and_reused_until_then() {
        let login = login(true, Some(10), None);
        let counters = counters();
        let t0 = Instant::now();
        let mut fresh_at = Vec::new();
        // Margin: a tenth of 10 s, so each session serves 9 s.
        for tenth in 0..=250u32 {
            let secs = f64::from(tenth) / 10.0;
            if call_at(&login, &counters, t0, secs).await.unwrap() == Source::Fresh {
                fresh_at.push(secs);
            }
        }
        assert_eq!(fresh_at, [0.0, 9.0, 18.0]);
        assert_eq!(counters.ok.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_is_dropped_and_a_session_in_use_is_kept() {
        let login = login(true, None, Some(10));
        let counters = counters();
        let t0 = Instant::now();
        // Used every 5 s for two minutes: never idle for 10 s, one login.
        for i in 0..=24u32 {
            call_at(&login, &counters, t0, f64::from(i * 5))
                .await
                .unwrap();
        }
        assert_eq!(counters.ok.get(), 1);
        // Unused for 8.9 s (plus the 1 s margin: under 10 s): still good.
        let source = call_at(&login, &counters, t0, 128.9).await.unwrap();
        assert_eq!(source, Source::Cached);
        // Unused for 9 s: the CRM may drop it before the look-up arrives.
        let source = call_at(&login, &counters, t0, 137.9).await.unwrap();
        assert_eq!(source, Source::Fresh);
        assert_eq!(counters.ok.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_session_and_a_refusal_through_any_drops_it_for_all() {
        let contacts = login(true, None, None);
        let leads = contacts.clone();
        let counters = counters();
        let deadline = Instant::now() + Duration::from_secs(5);
        let (first, source) = contacts.session(deadline, &counters).await.unwrap();
        assert_eq!(source, Source::Fresh);
        let (same, source) = leads.session(deadline, &counters).await.unwrap();
        assert_eq!(source, Source::Cached);
        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(leads.owner(), "crm");
        // A look-up was accepted with it, then the CRM refused the session
        // to a look-up of the second backend: the next calls of both log in
        // once, together.
        contacts.accepted(&first);
        leads.invalidate(&same, &counters);
        let calls: Vec<_> = (0..100)
            .map(|i| {
                let login = if i % 2 == 0 {
                    contacts.clone()
                } else {
                    leads.clone()
                };
                let counters = counters.clone();
                tokio::spawn(async move { login.session(deadline, &counters).await })
            })
            .collect();
        let mut sessions = Vec::new();
        for call in calls {
            sessions.push(call.await.unwrap().unwrap().0);
        }
        assert_eq!(
            counters.ok.get(),
            2,
            "one login at start, one after the refusal"
        );
        assert!(sessions.iter().all(|s| Arc::ptr_eq(s, &sessions[0])));
        assert!(!Arc::ptr_eq(&sessions[0], &first));
        // A late refusal of the old session does not drop the new one.
        contacts.invalidate(&first, &counters);
        let (_, source) = leads.session(deadline, &counters).await.unwrap();
        assert_eq!(source, Source::Cached);
        assert_eq!(counters.ok.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_refused_before_it_served_is_a_failed_login_and_the_backoff_grows() {
        let login = login(true, None, None);
        let counters = counters();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(5);
        let (session, _) = login.session(deadline, &counters).await.unwrap();
        login.invalidate(&session, &counters);
        assert_eq!((counters.ok.get(), counters.failed.get()), (1, 1));
        // In the backoff: no login.
        let failure = login.session(deadline, &counters).await.unwrap_err();
        assert_eq!(failure.reason, NoneReason::Login);
        // After 1 s a login; refused again unserved: the next wait is 2 s.
        tokio::time::advance(Duration::from_millis(1001)).await;
        let (session, _) = login
            .session(t0 + Duration::from_secs(10), &counters)
            .await
            .unwrap();
        login.invalidate(&session, &counters);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(login
            .session(t0 + Duration::from_secs(10), &counters)
            .await
            .is_err());
        tokio::time::advance(Duration::from_millis(600)).await;
        let (session, _) = login
            .session(t0 + Duration::from_secs(10), &counters)
            .await
            .unwrap();
        // A look-up accepted: the backoff starts again from 1 s.
        login.accepted(&session);
        login.invalidate(&session, &counters);
        assert_eq!(
            counters.failed.get(),
            2,
            "a session that served is not a failed login"
        );
        assert_eq!(login.inner.state.lock().unwrap().backoff, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_stops_waiting_for_a_running_login_before_its_deadline() {
        let login = login(true, None, None);
        // A login that is still running (its result never comes).
        let (_running, rx) = watch::channel(None);
        login.inner.state.lock().unwrap().running = Some(rx);
        let deadline = Instant::now() + Duration::from_millis(1500);
        let failure = login.session(deadline, &counters()).await.unwrap_err();
        assert_eq!(failure.reason, NoneReason::Login);
        assert!(
            failure.detail.contains("still running"),
            "{}",
            failure.detail
        );
        // Before the request's own deadline fires, so the reason is not
        // lost in a race with it.
        assert_eq!(Instant::now(), deadline - LOGIN_WAIT_MARGIN);
    }

    #[tokio::test(start_paused = true)]
    async fn expires_in_ends_a_session_a_minute_or_a_tenth_of_its_life_early() {
        let now = Instant::now();
        let session = |life: u64| Session {
            values: Value::UNDEFINED,
            trace: Vec::new(),
            generation: 1,
            obtained: now,
            expires: Some(now + Duration::from_secs(life)),
            last_used: Mutex::new(now),
            served: std::sync::atomic::AtomicBool::new(false),
        };
        let hour = session(3600);
        assert!(hour.fresh(now + Duration::from_secs(3539), None));
        assert!(!hour.fresh(now + Duration::from_secs(3540), None));
        let short = session(30);
        assert!(short.fresh(now + Duration::from_secs(26), None));
        assert!(!short.fresh(now + Duration::from_secs(27), None));
    }

    #[test]
    fn values_are_a_map_and_the_last_of_a_name_wins() {
        let v = values_map(&[
            ("token".into(), Value::from("a")),
            ("token".into(), Value::from("b")),
        ]);
        assert_eq!(v.get_attr("token").unwrap(), Value::from("b"));
    }

    #[test]
    fn expires_in_reads_numbers_and_numeric_strings() {
        assert_eq!(seconds(&Value::from(3600)), Some(Duration::from_secs(3600)));
        assert_eq!(seconds(&Value::from("60")), Some(Duration::from_secs(60)));
        assert_eq!(seconds(&Value::from("soon")), None);
        assert_eq!(seconds(&Value::from(-1)), None);
    }

    #[test]
    fn login_values_come_first_and_the_payload_after() {
        let ctx = Value::from_object(LoginContext {
            login: Value::from(minijinja::value::Serde(
                serde_json::json!({"sessionName": "s1"}),
            )),
            payload: Value::from(minijinja::value::Serde(
                serde_json::json!({"caller": "0612"}),
            )),
        });
        assert_eq!(
            ctx.get_attr("login")
                .unwrap()
                .get_attr("sessionName")
                .unwrap(),
            Value::from("s1")
        );
        assert_eq!(ctx.get_attr("caller").unwrap(), Value::from("0612"));
        assert!(ctx.get_attr("other").unwrap().is_undefined());
    }
}
