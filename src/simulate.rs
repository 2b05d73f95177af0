//! `thirdparty-gateway simulate`: runs one payload through a config as the
//! server would and shows every step (which route matched and why, the exact
//! backend request with secrets redacted, the raw reply, the normalized
//! reply), so an integrator can debug a config without a phone, and
//! before the CRM is reachable (a saved reply, `saved`). `print` writes
//! the steps as `answer` takes them.

mod print;
mod saved;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use tokio::time::Instant;

use crate::answer::{answer, Call};
use crate::backend::request::redacted;
use crate::config::{self, Config};
use crate::contract::{Payload, Reply, Secret};
use crate::request_id::RequestId;
use crate::route::Route;
use crate::wrap::WrapSecret;
use crate::wrap::Wrapper;
use print::{show_request, Printer};
use saved::SavedReply;

/// What `simulate` found: the report to print, the config's warnings (as
/// `check` prints them), and the reply's kind, for the exit status.
#[derive(Debug)]
pub struct Simulation {
    /// Every step, for a person.
    pub report: String,
    /// What `check` would warn about in the config.
    pub warnings: Vec<String>,
    /// `Some(true)` for an `open` reply, `Some(false)` for `none`; `None`
    /// for a dry run, which decides nothing.
    pub opened: Option<bool>,
}

/// How to simulate, besides the config and the payload.
#[derive(Debug, Clone)]
pub struct Options {
    /// The request path the payload is POSTed to.
    pub path: String,
    /// Build the backend requests, send nothing.
    pub dry_run: bool,
    /// `BACKEND=FILE`: that backend's reply read from FILE instead of
    /// asked (`--crm-reply`).
    pub crm_replies: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            path: "/".into(),
            dry_run: false,
            crm_replies: Vec::new(),
        }
    }
}

/// Runs a payload file through a config.
pub async fn simulate(
    config_file: &Path,
    payload_file: &Path,
    options: &Options,
) -> anyhow::Result<Simulation> {
    let config = config::load(config_file)?;
    let warnings = config.warnings.iter().map(|w| w.render()).collect();
    let saved = saved::load(&config, &options.crm_replies)?;
    let (report, opened) = run(&config, payload_file, options, saved).await?;
    Ok(Simulation {
        report,
        warnings,
        opened,
    })
}

async fn run(
    config: &Config,
    payload_file: &Path,
    options: &Options,
    saved: BTreeMap<Box<str>, SavedReply>,
) -> anyhow::Result<(String, Option<bool>)> {
    let path = options.path.as_str();
    let text = crate::files::read(payload_file, config.server.max_body_bytes as u64)
        .with_context(|| format!("{}: cannot read payload", payload_file.display()))?;
    let payload = crate::contract::parse_payload(&text)
        .map_err(|e| anyhow::anyhow!("{}: not an XucMgt payload: {e}", payload_file.display()))?;
    let mut out = String::new();
    let Some(routes) = config.router.routes_on(path) else {
        let _ = writeln!(out, "no route on path {path}: the gateway answers 404");
        return Ok((out, Some(false)));
    };
    let ctx = payload.context();
    let Some(route) = explain_routes(config, routes, &ctx, &mut out) else {
        let _ = writeln!(out, "\nreply: {}", json(&Reply::None));
        let _ = writeln!(out, "reason: no_route");
        return Ok((out, Some(false)));
    };
    if options.dry_run {
        dry(config, route, &payload, &ctx, &mut out);
        return Ok((out, None));
    }
    let deadline = Instant::now() + config.server.work_budget();
    let mut printer = Printer {
        out: String::new(),
        started: Instant::now(),
        redact: secrets_of(config, route, payload.token()),
        caller: ctx
            .get_attr("caller")
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        saved,
        read: BTreeSet::new(),
    };
    let metrics = crate::metrics::Metrics::new();
    let call = Call {
        payload: &payload,
        ctx: &ctx,
        deadline,
        id: RequestId::next(),
    };
    let work = answer(
        config.router.templates(),
        route,
        call,
        &metrics,
        &mut printer,
    );
    let result = tokio::time::timeout_at(deadline, work).await;
    out.push_str(&printer.out);
    for (name, reply) in &printer.saved {
        if !printer.read.contains(name) {
            let why = if route.backends.iter().any(|b| b.name == *name) {
                "the route answered before reaching it"
            } else {
                "it is not one of this route's backends"
            };
            let _ = writeln!(
                out,
                "\nnote: the saved reply {} of backend {name:?} was not read: {why} (route {:?})",
                reply.file.display(),
                route.name
            );
        }
    }
    let opened = match &result {
        Ok(a) => matches!(a.reply, Reply::Open(_)),
        Err(_) => false,
    };
    match result {
        Ok(a) => {
            let _ = writeln!(out, "\nreply: {}", json(&a.reply));
            if let (true, Reply::Open(open)) = (route.wrap, &a.reply) {
                let _ = writeln!(out, "{}", wrap_note(config, open));
            }
            if let Some(f) = &a.failure {
                let label = match a.reply {
                    Reply::Open(_) => "fallback after",
                    Reply::None => "reason",
                };
                let _ = writeln!(
                    out,
                    "{label}: {} ({}){}",
                    f.reason,
                    f.detail,
                    a.backend
                        .as_deref()
                        .map(|b| format!(" from backend {b:?}"))
                        .unwrap_or_default()
                );
            }
        }
        Err(_) => {
            let _ = writeln!(out, "\nreply: {}", json(&Reply::None));
            let _ = writeln!(out, "reason: deadline (deadline_ms ran out)");
        }
    }
    Ok((out, Some(opened)))
}

/// What XucMgt gets on a `wrap = true` route: the wrapper link, signed as
/// the server would sign it (unless the demo secret is not generated yet).
fn wrap_note(config: &Config, open: &crate::contract::Open) -> String {
    let Some(settings) = &config.wrap else {
        return "wrap: no [wrap] section".into();
    };
    let WrapSecret::Value(secret) = &settings.secret else {
        return "wrapped for XucMgt: (the demo wrapper secret is generated at the first `run`)"
            .into();
    };
    let wrapper = Wrapper::from_settings(settings, secret, &config.cors);
    let origin = format!("https://{}", config.server.listen);
    match wrapper.wrap(open, Some(&origin)) {
        Ok(link) => format!("wrapped for XucMgt: {}", json(&Reply::Open(link))),
        Err(err) => format!("not wrapped ({err}): XucMgt gets the url itself, without Done"),
    }
}

/// Tells, route by route, why each was skipped, up to the one chosen.
fn explain_routes<'a>(
    config: &Config,
    routes: &'a [Route],
    ctx: &minijinja::Value,
    out: &mut String,
) -> Option<&'a Route> {
    let templates = config.router.templates();
    for route in routes {
        let verdict = match (&route.when, &route.when_source) {
            (Some(cond), Some(src)) => match templates.test(cond, ctx) {
                Ok(true) => Ok(format!("when `{src}` holds")),
                Ok(false) => Err(format!("when `{src}` is false")),
                Err(e) => Err(format!("when `{src}` failed: {e}")),
            },
            _ => Ok("no when: matches every call".to_owned()),
        };
        match verdict {
            Ok(why) => {
                let _ = writeln!(out, "route {:?}: {why}: chosen", route.name);
                return Some(route);
            }
            Err(why) => {
                let _ = writeln!(out, "route {:?}: {why}: skipped", route.name);
            }
        }
    }
    let _ = writeln!(out, "no route matched");
    None
}

fn dry(
    config: &Config,
    route: &Route,
    payload: &Payload,
    ctx: &minijinja::Value,
    out: &mut String,
) {
    let templates = config.router.templates();
    let request_ctx = if route.forward_token {
        payload.context_with_token()
    } else {
        ctx.clone()
    };
    for backend in &route.backends {
        match &backend.login {
            Some(login) if login.owner() != &*backend.name => {
                let _ = writeln!(
                    out,
                    "\nbackend {:?} login: shares the login of {:?} (dry run: not run; login.* is empty below)",
                    backend.name,
                    login.owner()
                );
            }
            Some(login) => {
                let _ = writeln!(
                    out,
                    "\nbackend {:?} login: {} step(s) before the look-up (dry run: not run; login.* is empty below)",
                    backend.name,
                    login.steps().len()
                );
                for line in login.dry_run() {
                    let _ = writeln!(out, "  {line} (not sent)");
                }
            }
            None => {}
        }
        match backend.request.build(templates, &request_ctx) {
            Ok(req) => {
                let mut shown = String::new();
                show_request(&mut shown, backend, &req);
                let mut secrets = secrets_of(config, route, payload.token());
                secrets.extend(req.hidden.iter().filter(|v| v.len() >= 4).cloned());
                out.push_str(&redacted(&shown, &secrets));
            }
            Err(f) => {
                let _ = writeln!(out, "\nbackend {:?}: request not built: {f}", backend.name);
                if backend.login.is_some() {
                    // A url from the token reply (Zoho's api_domain) is empty
                    // here, which is the dry run's doing, not the config's.
                    let _ = writeln!(
                        out,
                        "(login.* is empty in a dry run: simulate without --dry-run logs in and builds it)"
                    );
                }
            }
        }
        let _ = writeln!(out, "(dry run: not sent)");
    }
    if let Some(pop) = &route.open {
        let verb = if route.backends.is_empty() {
            "reply"
        } else {
            "screen-pop if no backend opens"
        };
        match pop.reply(templates, ctx, &route.name, RequestId::next()) {
            Ok(open) => {
                let _ = writeln!(out, "\n{verb}: {}", json(&Reply::Open(open)));
            }
            Err(f) => {
                let _ = writeln!(out, "\n{verb}: {} ({f})", json(&Reply::None));
            }
        }
    }
}

/// Every secret a route's backends may render, and the agent's token, for
/// the printout to hide.
fn secrets_of(config: &Config, route: &Route, token: Option<&Secret>) -> Vec<String> {
    let mut out: Vec<String> = config
        .router
        .templates()
        .secret_values()
        .map(str::to_owned)
        .collect();
    for backend in &route.backends {
        if let Some(login) = &backend.login {
            out.extend(login.templates().secret_values().map(str::to_owned));
        }
    }
    out.extend(token.map(|t| t.expose().to_owned()));
    out
}

fn json(reply: &Reply) -> String {
    serde_json::to_string(reply).unwrap_or_else(|e| format!("(unprintable: {e})"))
}
