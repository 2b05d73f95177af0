//! `[backends.NAME.login]` and `auth.type = "oauth2"` from raw TOML to a
//! ready [`Login`]: each step compiled like a look-up request (in the login's
//! own templates, which the login task owns), its extraction parsed, its
//! limits checked; `login = "OTHER"` checked and resolved to OTHER's.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::backends::{request_spec, Parts};
use super::diag::{suggest, Diagnostics};
use super::numbers::{millis, seconds, MAX_DURATION_MS};
use super::probe::{self, Sees};
use super::raw::{LoginField, RawBackend, RawLogin, RawStep};
use crate::backend::login::{Login, LoginSettings, Step, StepExtract};
use crate::backend::reply::ReplyFormat;
use crate::backend::{Backend, Client};
use crate::constants::DEFAULT_LOGIN_TIMEOUT;
use crate::extract::{JsonPath, XmlPath};
use crate::template::{ConditionId, Templates};

/// Validates a backend's login; `templates` are the config's (for
/// `relogin_when`, which reads look-up replies).
pub(super) fn login(
    raw: &RawLogin,
    backend: &str,
    key: &str,
    base: &Path,
    client: Client,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<Login> {
    let key = format!("{key}.login");
    if raw.steps.is_empty() {
        diags.error(
            &format!("{key}.steps"),
            "a login needs at least one [[...login.steps]] request",
        );
        return None;
    }
    let mut own = templates.sibling();
    let mut steps = Vec::with_capacity(raw.steps.len());
    // What `login.*` holds when each step runs: what the steps before it extract.
    let mut earlier: Vec<&str> = Vec::new();
    for (i, s) in raw.steps.iter().enumerate() {
        let at = &format!("{key}.steps[{i}]");
        if let Some(step) = step(s, at, &earlier, base, &mut own, diags) {
            steps.push(step);
        }
        match s.reply.format {
            ReplyFormat::Text => earlier.push("body"),
            _ => earlier.extend(s.reply.extract.keys().map(String::as_str)),
        }
    }
    let ttl = session_seconds(raw.ttl_s, &format!("{key}.ttl_s"), diags);
    let idle_ttl = session_seconds(raw.idle_ttl_s, &format!("{key}.idle_ttl_s"), diags);
    let timeout = millis(
        raw.timeout_ms,
        DEFAULT_LOGIN_TIMEOUT,
        &format!("{key}.timeout_ms"),
        diags,
    );
    let relogin_when = relogin_when(raw.relogin_when.as_deref(), &key, templates, diags);
    if steps.len() != raw.steps.len() {
        return None;
    }
    Some(Login::new(
        backend,
        steps,
        own,
        client,
        LoginSettings {
            ttl,
            idle_ttl,
            timeout,
        },
        relogin_when?,
    ))
}

/// `login = "OTHER"`: a clone of OTHER's login (`built`), which must be its
/// own (a login table or OAuth2), not itself shared: one level, so the
/// backend whose login it is stays plain to see.
pub(super) fn shared(
    name: &str,
    owner: &str,
    key: &str,
    raw: &BTreeMap<String, RawBackend>,
    built: &BTreeMap<Box<str>, Arc<Backend>>,
    diags: &mut Diagnostics<'_>,
) -> Option<Login> {
    let key = format!("{key}.login");
    let has_own =
        |b: &RawBackend| matches!(b.login, Some(LoginField::Own(_))) || b.oauth2().is_some();
    if owner == name {
        diags.error(&key, "a backend cannot share its own login: give it a [backends.NAME.login] table, or name another backend");
        return None;
    }
    let Some(raw_owner) = raw.get(owner) else {
        let owners = raw
            .iter()
            .filter(|(n, b)| n.as_str() != name && has_own(b))
            .map(|(n, _)| n.as_str());
        diags.error(
            &key,
            format!(
                "no [backends.{owner}] to share the login of{}",
                suggest(owner, owners)
            ),
        );
        return None;
    };
    if let Some(LoginField::Shared(further)) = &raw_owner.login {
        diags.error(
            &key,
            format!("backends.{owner} shares the login of {further:?} itself: name {further:?} here (a shared login is named by the backend that has it)"),
        );
        return None;
    }
    if !has_own(raw_owner) {
        diags.error(
            &key,
            format!("backends.{owner} has no login to share: it needs [backends.{owner}.login] or auth.type = \"oauth2\""),
        );
        return None;
    }
    // Not built: its own errors are reported already.
    built.get(owner).and_then(|b| b.login.clone())
}

/// A session lifetime (`ttl_s`, `idle_ttl_s`): unset is no limit, set is
/// 1 s to [`MAX_DURATION_MS`] like every other duration.
pub(super) fn session_seconds(
    value: Option<u64>,
    key: &str,
    diags: &mut Diagnostics<'_>,
) -> Option<Duration> {
    let max = MAX_DURATION_MS / 1000;
    value.map(|s| seconds(Some(s), 1..=max, Duration::from_secs(max), key, diags))
}

/// `relogin_when`: `Some(None)` is the default (HTTP 401), `None` an error.
pub(super) fn relogin_when(
    expr: Option<&str>,
    key: &str,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<Option<ConditionId>> {
    let Some(expr) = expr else {
        return Some(None);
    };
    let at = probe::At {
        key: &format!("{key}.relogin_when"),
        extra: &[],
        sees: Sees::Call { login: true },
        diags,
    };
    probe::reply_condition(templates, at, expr).map(Some)
}

/// One step; `earlier` names the values the steps before it extract.
fn step(
    s: &RawStep,
    key: &str,
    earlier: &[&str],
    base: &Path,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<Step> {
    let parts = Parts {
        url: &s.url,
        method: &s.method,
        encoding: s.encoding,
        body: &s.body,
        headers: &s.headers,
        auth: s.auth.as_ref(),
        format: s.reply.format,
        sees: Sees::LoginStep(earlier),
    };
    let request = request_spec(&parts, key, base, templates, diags);
    let rkey = format!("{key}.reply");
    let r = &s.reply;
    let extract = match r.format {
        ReplyFormat::Json | ReplyFormat::Xml => {
            let (mut json, mut xml) = (Vec::new(), Vec::new());
            for (name, path) in &r.extract {
                let k = format!("{rkey}.extract.{name}");
                let Some(path) = path.as_str() else {
                    diags.error(&k, "must be a path string");
                    continue;
                };
                let parsed = if r.format == ReplyFormat::Json {
                    JsonPath::parse(path).map(|p| json.push((name.as_str().into(), p)))
                } else {
                    XmlPath::parse(path).map(|p| xml.push((name.as_str().into(), p)))
                };
                if let Err(msg) = parsed {
                    diags.error(&k, msg);
                }
            }
            if r.extract.is_empty() {
                diags.error(
                    &format!("{rkey}.extract"),
                    "a login step keeps something: extract = { name = \"path\" }",
                );
            }
            if r.format == ReplyFormat::Json {
                StepExtract::Json(json)
            } else {
                StepExtract::Xml(xml)
            }
        }
        ReplyFormat::Text if r.extract.is_empty() => StepExtract::Body,
        ReplyFormat::Text => {
            diags.error(
                &format!("{rkey}.extract"),
                "a text reply is kept whole as login.body",
            );
            StepExtract::Body
        }
        ReplyFormat::Contract => {
            diags.error(
                &format!("{rkey}.format"),
                "a login step's reply is json, xml or text",
            );
            return None;
        }
    };
    let ok_when = match r.ok_when.as_deref() {
        None => None,
        Some(expr) => {
            // It reads what this step extracts (a text reply: `body`),
            // nothing else.
            let names: Vec<&str> = match r.format {
                ReplyFormat::Text => vec!["body"],
                _ => r.extract.keys().map(String::as_str).collect(),
            };
            let at = probe::At {
                key: &format!("{rkey}.ok_when"),
                extra: &names,
                sees: Sees::StepReply,
                diags,
            };
            Some(probe::condition(templates, at, expr)?)
        }
    };
    let accept_status = super::backends::accept_status(r.accept_status.as_ref(), &rkey, diags);
    Some(Step {
        request: request?,
        format: r.format,
        extract,
        accept_status,
        ok_when,
    })
}
