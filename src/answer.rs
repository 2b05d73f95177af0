//! What a matched route answers: its backends in order until one opens, then
//! its screen-pop if it has one, else `none` with the last failure. Every
//! backend attempt is bounded by its own timeout and by what is left of the
//! request's deadline, so the agent always gets an answer in time.

use std::sync::Arc;
use std::time::Duration;

use minijinja::Value;
use tokio::time::Instant;

use crate::backend::login::{LoginContext, Session, Source};
use crate::backend::reply::Candidate;
use crate::backend::{Backend, BackendRequest, Failure, RawReply};
use crate::contract::{Open, Payload, Reply};
use crate::directory::Lookup;
use crate::metrics::Metrics;
use crate::outcome::NoneReason;
use crate::phone::Number;
use crate::request_id::RequestId;
use crate::route::Route;
use crate::short_text::Short;
use crate::template::Templates;

/// The outcome of one request, for the reply and the log line.
#[derive(Debug)]
pub struct Answer {
    /// What the agent gets.
    pub reply: Reply,
    /// The backend that opened, or the last one that failed.
    pub backend: Option<Box<str>>,
    /// Why the reply is `none`, or why a backend failed before a fallback opened.
    pub failure: Option<Failure>,
}

/// Sees each backend exchange; `simulate` prints them, the server ignores them.
pub trait Observer: Send {
    /// The request about to be sent, built by `at` (the time its
    /// budget is counted from: no clock read of its own).
    fn request(&mut self, _backend: &Backend, _request: &BackendRequest, _at: Instant) {}
    /// What came back, before normalization.
    fn response(&mut self, _backend: &Backend, _reply: &RawReply) {}
    /// The session a look-up uses: cached, or from a login it waited for.
    fn login(&mut self, _backend: &Backend, _session: &Session, _source: Source) {}
    /// Whether to collect the candidates a reply offered (costs a read of
    /// every stored number; the server does not).
    fn wants_candidates(&self) -> bool {
        false
    }
    /// The records a reply offered and which one was kept.
    fn candidates(&mut self, _backend: &Backend, _seen: &[Candidate]) {}
    /// What the backend's caller directory said.
    fn directory(&mut self, _backend: &Backend, _said: &str) {}
    /// Why a backend gave no screen-pop (each one, not only the last,
    /// which the answer carries).
    fn failed(&mut self, _backend: &Backend, _failure: &Failure) {}
    /// A saved reply to read instead of asking the backend (`simulate
    /// --crm-reply`): no login, no request, no directory.
    fn saved_reply(&mut self, _backend: &Backend) -> Option<RawReply> {
        None
    }
    /// A backend's attempt ended at `ended`: it opened (no failure) or why
    /// not, and how long it took; the ops console keeps it.
    fn attempt(
        &mut self,
        _backend: &Backend,
        _failure: Option<&Failure>,
        _took: Duration,
        _ended: Instant,
    ) {
    }
}

/// The server's observer: logs say enough.
pub struct Quiet;

impl Observer for Quiet {}

/// One call being answered: what it carries and what bounds it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The payload as parsed.
    pub payload: &'a Payload,
    /// The payload as templates see it (no token).
    pub ctx: &'a Value,
    /// When the reply must be on its way.
    pub deadline: Instant,
    /// The request id every log line of this call carries.
    pub id: RequestId,
}

/// Answers a call with the route that matched it.
pub async fn answer(
    templates: &Templates,
    route: &Route,
    call: Call<'_>,
    metrics: &Metrics,
    observer: &mut dyn Observer,
) -> Answer {
    let Call {
        payload,
        ctx,
        deadline,
        id,
    } = call;
    let mut last: Option<(Box<str>, Failure)> = None;
    if !route.backends.is_empty() {
        let request_ctx = if route.forward_token {
            payload.context_with_token()
        } else {
            ctx.clone()
        };
        for backend in &route.backends {
            let started = Instant::now();
            let contexts = (&request_ctx, ctx, route.forward_token);
            let result = ask(templates, backend, contexts, deadline, metrics, observer).await;
            let ended = Instant::now();
            let took = ended.saturating_duration_since(started);
            metrics.backend(
                &backend.name,
                &backend.metrics,
                result.as_ref().err().map(|f| f.reason),
                took.as_secs_f64(),
            );
            observer.attempt(backend, result.as_ref().err(), took, ended);
            match result {
                Ok(open) => {
                    tracing::debug!(%id, route = %route.name, backend = %backend.name, latency_ms = %Short::millis(took), "backend opened");
                    return Answer {
                        reply: Reply::Open(open),
                        backend: Some(backend.name.clone()),
                        failure: None,
                    };
                }
                Err(failure) => {
                    observer.failed(backend, &failure);
                    tracing::warn!(
                        %id, route = %route.name, backend = %backend.name,
                        reason = %failure.reason, detail = failure.detail,
                        latency_ms = %Short::millis(took), "backend gave no screen-pop"
                    );
                    let out_of_time = failure.reason == NoneReason::Deadline;
                    last = Some((backend.name.clone(), failure));
                    if out_of_time {
                        break;
                    }
                }
            }
        }
    }
    let (backend, failure) = match last {
        Some((name, failure)) => (Some(name), Some(failure)),
        None => (None, None),
    };
    match &route.open {
        Some(pop) => match pop.reply(templates, ctx, &route.name, id) {
            Ok(open) => Answer {
                reply: Reply::Open(open),
                backend,
                failure,
            },
            Err(f) => Answer {
                reply: Reply::None,
                backend,
                failure: Some(f),
            },
        },
        None => Answer {
            reply: Reply::None,
            backend,
            failure,
        },
    }
}

/// One backend attempt: concurrency slot, session, request, send within
/// the time left, re-login and one retry if the CRM refused the session,
/// normalization. The request is built from `request_ctx` (which holds the
/// token when `with_token`), the reply read with `reply_ctx`.
async fn ask(
    templates: &Templates,
    backend: &Backend,
    (request_ctx, reply_ctx, with_token): (&Value, &Value, bool),
    deadline: Instant,
    metrics: &Metrics,
    observer: &mut dyn Observer,
) -> Result<Open, Failure> {
    if let Some(raw) = observer.saved_reply(backend) {
        // No session: `login.*` is empty, as in a dry run.
        let reply_ctx = match &backend.login {
            Some(_) => LoginContext::without_session(reply_ctx.clone()),
            None => reply_ctx.clone(),
        };
        return normalize(templates, backend, &reply_ctx, &raw, None, observer);
    }
    // A directory reads the caller; a miss hands the number read to the
    // live look-up's comparison, which would otherwise read it again.
    let caller = match from_directory(templates, backend, reply_ctx, metrics, observer) {
        Directory::Answered(answered) => return answered,
        Directory::Ask(caller) => caller,
    };
    let caller = caller.as_deref();
    let _permit = match &backend.limit {
        Some(limit) => Some(Arc::clone(limit).try_acquire_owned().map_err(|_| {
            Failure::new(NoneReason::Busy, "max_concurrency calls already in flight")
        })?),
        None => None,
    };
    let Some(login) = &backend.login else {
        let raw = exchange(
            templates,
            backend,
            (request_ctx, with_token),
            deadline,
            observer,
        )
        .await?;
        return normalize(templates, backend, reply_ctx, &raw, caller, observer);
    };
    // Logins are counted by the backend whose login it is (shared or not);
    // how each look-up got its session, by the backend that looks up.
    let counters = metrics.login_counters(login.owner());
    let (mut session, source) = login.session(deadline, &counters).await?;
    metrics.login_session(
        &backend.name,
        match source {
            Source::Cached => "hit",
            Source::Fresh => "fresh",
        },
    );
    observer.login(backend, &session, source);
    let mut raw = exchange(
        templates,
        backend,
        (&with_login(&session, request_ctx), with_token),
        deadline,
        observer,
    )
    .await?;
    if login.refused(templates, &raw) {
        tracing::info!(backend = %backend.name, status = raw.status.as_u16(), "session refused: logging in again");
        metrics.login_session(&backend.name, "relogin");
        login.invalidate(&session, &counters);
        let (fresh, source) = login.session(deadline, &counters).await?;
        observer.login(backend, &fresh, source);
        session = fresh;
        raw = exchange(
            templates,
            backend,
            (&with_login(&session, request_ctx), with_token),
            deadline,
            observer,
        )
        .await?;
        if login.refused(templates, &raw) {
            login.invalidate(&session, &counters);
            return Err(Failure::new(
                NoneReason::Login,
                format!(
                    "the CRM refused a fresh session too (HTTP {})",
                    raw.status.as_u16()
                ),
            ));
        }
    }
    login.accepted(&session);
    let reply_ctx = with_login(&session, reply_ctx);
    normalize(templates, backend, &reply_ctx, &raw, caller, observer)
}

/// Normalizes a reply, showing the observer the candidates it compared.
fn normalize(
    templates: &Templates,
    backend: &Backend,
    reply_ctx: &Value,
    raw: &RawReply,
    caller: Option<&Number>,
    observer: &mut dyn Observer,
) -> Result<Open, Failure> {
    if backend.reply.candidates.is_none() || !observer.wants_candidates() {
        return backend
            .reply
            .normalize(templates, reply_ctx, raw, caller, None);
    }
    let mut seen = Vec::new();
    let result = backend
        .reply
        .normalize(templates, reply_ctx, raw, caller, Some(&mut seen));
    observer.candidates(backend, &seen);
    result
}

/// What a backend's caller directory said of a call.
enum Directory {
    /// The answer, from the caller's record: no CRM request.
    Answered(Result<Open, Failure>),
    /// Ask the CRM (no directory, not built, too old, no such number), with
    /// the caller's number when the directory read it. Boxed: it is held
    /// across the look-up's awaits, and most calls have none.
    Ask(Option<Box<Number>>),
}

/// The answer from the backend's caller directory, when it has one for
/// this caller.
fn from_directory(
    templates: &Templates,
    backend: &Backend,
    reply_ctx: &Value,
    metrics: &Metrics,
    observer: &mut dyn Observer,
) -> Directory {
    let Some(directory) = backend.directory.as_ref() else {
        return Directory::Ask(None);
    };
    let number = reply_ctx
        .get_attr("caller")
        .ok()
        .and_then(|caller| Number::read_caller(caller.as_str()?, templates.region()));
    let Some(number) = number else {
        return Directory::Ask(None);
    };
    match directory.lookup(&number) {
        Lookup::Hit(entry, age) => {
            metrics.directory_lookup(&backend.name, "hit");
            observer.directory(
                backend,
                &format!("the caller's record, synced {} s ago", age.as_secs()),
            );
            tracing::debug!(backend = %backend.name, age_s = age.as_secs(), "answered from the directory");
            Directory::Answered(backend.reply.open_with(
                templates,
                reply_ctx,
                entry.values(&directory.extract),
            ))
        }
        Lookup::Miss(age) => {
            metrics.directory_lookup(&backend.name, "miss");
            observer.directory(
                backend,
                &format!(
                    "no such number (synced {} s ago): asking the CRM",
                    age.as_secs()
                ),
            );
            Directory::Ask(Some(Box::new(number)))
        }
        Lookup::NotReady(why) => {
            metrics.directory_lookup(&backend.name, "stale");
            observer.directory(backend, &format!("{why}: asking the CRM"));
            Directory::Ask(Some(Box::new(number)))
        }
    }
}

/// A context with the session's values as `login`.
fn with_login(session: &Session, ctx: &Value) -> Value {
    Value::from_object(LoginContext {
        login: session.values.clone(),
        payload: ctx.clone(),
    })
}

/// Builds and sends one request within the backend's timeout and the time
/// left before the deadline.
async fn exchange(
    templates: &Templates,
    backend: &Backend,
    (request_ctx, with_token): (&Value, bool),
    deadline: Instant,
    observer: &mut dyn Observer,
) -> Result<RawReply, Failure> {
    let mut request = backend.request.build(templates, request_ctx)?;
    request.carries_token = with_token;
    let now = Instant::now();
    observer.request(backend, &request, now);
    let remaining = deadline.saturating_duration_since(now);
    let (budget, reason) = if backend.timeout < remaining {
        (backend.timeout, NoneReason::Timeout)
    } else {
        (remaining, NoneReason::Deadline)
    };
    let raw = tokio::time::timeout(budget, backend.client.send(request))
        .await
        .map_err(|_| {
            Failure::new(reason, format!("no reply within {} ms", budget.as_millis()))
        })??;
    observer.response(backend, &raw);
    Ok(raw)
}
