//! Every url template an `open` reply is built from (a route's screen-pop
//! `open.url`, a backend's `reply.url`), rendered against the sample
//! payloads and handed to the runtime's own validation
//! ([`ScreenPop::open`], [`ReplySpec::url_check`], both ending in
//! `Open::new`): a url every call would refuse (a relative url with no
//! `public_base`, a `javascript:` url) is an error at load, not a `none`
//! on every call.
//!
//! A url may read values the samples cannot know: a reply's (what
//! `extract` takes, `login.*`) or a dialplan variable in `userData`. Each
//! is tried as a bare value (`42`), a path (`/42`) and an absolute URL, and
//! the url is refused only when it is refused with each, so a url made wholly of
//! such a value is left to the call.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object};
use minijinja::Value;

use super::diag::{Diagnostics, Level};
use super::probe::SAMPLES;
use crate::backend::login::LoginContext;
use crate::backend::reply::ReplySpec;
use crate::backend::Failure;
use crate::outcome::NoneReason;
use crate::route::ScreenPop;
use crate::template::Templates;

/// What a value the samples cannot know stands for: a bare value, a path,
/// and a URL.
const STAND_INS: [&str; 3] = ["42", "/42", "https://crm.example.org/42"];

/// Checks a screen-pop's url against each sample payload, a `userData`
/// key the sample lacks standing in as each of [`STAND_INS`] (XucMgt sends
/// whatever variables the dialplan sets): a sample is refused when it is
/// refused with each. An error when every sample is refused, a warning
/// naming the sample when some are.
pub(super) fn screen_pop(
    templates: &Templates,
    pop: &ScreenPop,
    key: &str,
    source: &str,
    diags: &mut Diagnostics<'_>,
) {
    let mut refused = Vec::new();
    for (what, sample) in SAMPLES.iter() {
        let mut first = None;
        let mut accepted = false;
        for stand_in in STAND_INS {
            let ctx = Value::from_object(StandIns {
                payload: sample.clone(),
                stand_in,
                user_data: false,
            });
            match pop.open(templates, &ctx) {
                Err(failure) if failure.reason == NoneReason::InvalidReply => {
                    let rendered = templates.render(&pop.url, &ctx).unwrap_or_default();
                    first.get_or_insert((*what, rendered, failure));
                }
                _ => accepted = true,
            }
        }
        if let (false, Some(refusal)) = (accepted, first) {
            refused.push(refusal);
        }
    }
    let Some((what, rendered, failure)) = refused.first() else {
        return;
    };
    let hint = relative_hint(
        rendered,
        "write the whole address, e.g. https://crm.example.org/",
    );
    if refused.len() == SAMPLES.len() {
        let message = format!(
            "renders to {rendered:?} on the sample payload of {what}, which every call would refuse \
             (the agent gets no tab): {}{hint}",
            failure.detail
        );
        diags.in_value(Level::Error, key, 0..source.len(), message);
    } else {
        let message = format!(
            "renders to {rendered:?} on the sample payload of {what}, which a call would refuse: {}{hint}",
            failure.detail
        );
        diags.in_value(Level::Warning, key, 0..source.len(), message);
    }
}

/// Checks a backend's reply url against each sample payload, the reply's
/// values (`extract`) and `login.*` standing in as [`STAND_INS`]: an error
/// when every try is refused.
pub(super) fn reply(
    templates: &Templates,
    spec: &ReplySpec,
    extracted: &[&str],
    key: &str,
    source: &str,
    diags: &mut Diagnostics<'_>,
) {
    let mut first: Option<(&str, String, Failure)> = None;
    for (what, payload) in SAMPLES.iter() {
        for stand_in in STAND_INS {
            let payload = Value::from_object(LoginContext {
                login: Value::from_object(AnyValue(stand_in)),
                payload: payload.clone(),
            });
            let values = extracted
                .iter()
                .map(|name| (Value::from(*name), Value::from(stand_in)))
                .collect();
            match spec.url_check(templates, &payload, values) {
                None => return,
                Some((rendered, Err(failure))) if failure.reason == NoneReason::InvalidReply => {
                    first.get_or_insert((what, rendered, failure));
                }
                // Accepted, or not the url's fault.
                Some(_) => return,
            }
        }
    }
    let Some((what, rendered, failure)) = first else {
        return;
    };
    let hint = relative_hint(
        &rendered,
        "set public_base = \"https://crm.example.org/\" (the CRM as the agent's browser reaches it) or write the whole address",
    );
    let message = format!(
        "renders to {rendered:?} (each value of the reply as {}) on the sample payload of {what}, \
         which every call would refuse (the agent gets no tab): {}{hint}",
        STAND_INS[0], failure.detail
    );
    diags.in_value(Level::Error, key, 0..source.len(), message);
}

/// "; what to do" when `url` is relative (no scheme).
fn relative_hint(url: &str, what_to_do: &str) -> String {
    if url::Url::parse(url.trim()).is_err() {
        format!("; {what_to_do}")
    } else {
        String::new()
    }
}

/// A sample payload whose `userData` answers every key it lacks with a
/// stand-in (`user_data`: this is that `userData`).
#[derive(Debug)]
struct StandIns {
    payload: Value,
    stand_in: &'static str,
    user_data: bool,
}

impl Object for StandIns {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let value = self.payload.get_item(key).ok()?;
        if self.user_data && value.is_undefined() {
            return Some(Value::from(self.stand_in));
        }
        if !self.user_data && key.as_str() == Some("userData") {
            return Some(Value::from_object(StandIns {
                payload: value,
                stand_in: self.stand_in,
                user_data: true,
            }));
        }
        (!value.is_undefined()).then_some(value)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.payload.try_iter().into_iter().flatten().collect())
    }
}

/// `login.*` as a check sees it: whatever value is asked for, this one.
#[derive(Debug)]
struct AnyValue(&'static str);

impl Object for AnyValue {
    fn get_value(self: &Arc<Self>, _key: &Value) -> Option<Value> {
        Some(Value::from(self.0))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }
}
