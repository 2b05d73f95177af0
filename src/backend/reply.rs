//! Turning whatever a backend answered into the contract: check the status,
//! parse the body in its format, extract named values, decide `open` or
//! `none`, fill the reply from templates, resolve relative URLs against the
//! backend's public base, and validate the result strictly.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object};
use minijinja::Value;
use serde::Deserialize;
use url::Url;

use super::client::RawReply;
use super::Failure;
use crate::contract::{Event, Open};
use crate::extract::{json_values, xml_values, JsonPath, XmlPath};
use crate::outcome::NoneReason;
use crate::payload::template_value;
use crate::phone::Number;
use crate::template::{ConditionId, Region, TemplateId, Templates};

/// The shape of a backend's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyFormat {
    /// JSON; values extracted by JSON pointer or dotted path.
    Json,
    /// XML or SOAP; values extracted by element path.
    Xml,
    /// Plain text: the trimmed body is `body` (often a bare URL or id).
    Text,
    /// The backend already answers the XucMgt contract.
    Contract,
}

/// How to read one backend's replies.
#[derive(Debug)]
pub struct ReplySpec {
    /// The reply's shape.
    pub format: ReplyFormat,
    /// Whether a template reads `body` (converting the whole reply costs).
    pub body_in_templates: bool,
    /// Statuses read as a reply; `None` means any 2xx.
    pub accept_status: Option<Vec<u16>>,
    /// Named values to pull out of the body.
    pub extract: Extract,
    /// `open` only when this holds (default: when there is a url).
    pub open_when: Option<ConditionId>,
    /// The event of the `open` reply, fixed or a template.
    pub event: Choice<Event, TemplateId>,
    /// The url template; `None` takes the extracted `url` (or a text body) as is.
    pub url: Option<TemplateId>,
    /// The title template; `None` takes the extracted `title`, if any.
    pub title: Option<TemplateId>,
    /// Whether the agent is paused, fixed or a condition.
    pub autopause: Choice<bool, ConditionId>,
    /// Where relative urls in replies are resolved, as the agent's browser sees it.
    pub public_base: Option<Url>,
    /// The reply is a list of candidate records, the caller's picked by
    /// phone number; `extract` then reads the picked record.
    pub candidates: Option<Candidates>,
}

/// Records a CRM offered for a broad search, and where each keeps its
/// phone numbers: the gateway, not the CRM's string comparison, decides
/// which record is the caller's.
#[derive(Debug)]
pub struct Candidates {
    /// Where the list of records is (`result`, or the whole reply).
    pub records: JsonPath,
    /// Each record's phone fields, as written in the config and parsed.
    pub phones: Vec<(Box<str>, JsonPath)>,
    /// The region stored numbers without a country code are read in.
    pub region: Option<Region>,
    /// The region the caller is read in (`[phone] default_region`).
    pub caller_region: Option<Region>,
}

/// Records compared at most per reply; a CRM's search is bounded by its
/// own limit (`LIMIT`, `limit=`), this only bounds the work of one reply.
const MAX_CANDIDATES: usize = 1000;

/// Numbers read at most per phone field of a record (a list of numbers).
const MAX_NUMBERS_PER_FIELD: usize = 16;

/// One record of a reply as `simulate` shows it: its stored numbers, how
/// each reads, and whether it was kept.
#[derive(Debug)]
pub struct Candidate {
    /// Its position in the reply's list.
    pub index: usize,
    /// Each stored number: the field's path, the text, and the number it
    /// reads as (E.164), if any.
    pub phones: Vec<(Box<str>, String, Option<String>)>,
    /// Whether it holds the caller's number (and was picked).
    pub kept: bool,
}

impl Candidates {
    /// The first record that holds the caller's number (`caller`, when
    /// already read; otherwise read from the payload).
    fn pick<'d>(
        &self,
        doc: &'d serde_json::Value,
        payload: &Value,
        caller: Option<&Number>,
        mut trace: Option<&mut Vec<Candidate>>,
    ) -> Result<&'d serde_json::Value, Failure> {
        let read;
        let caller = match caller {
            Some(caller) => caller,
            None => {
                read = payload
                    .get_attr("caller")
                    .ok()
                    .and_then(|v| Number::read_caller(v.as_str()?, self.caller_region))
                    .ok_or_else(|| {
                        Failure::new(
                            NoneReason::NoMatch,
                            "the caller is not a phone number the gateway can compare",
                        )
                    })?;
                &read
            }
        };
        let tail = crate::phone::tail(caller);
        let records: &[serde_json::Value] = match self.records.lookup(doc) {
            None | Some(serde_json::Value::Null) => &[],
            Some(serde_json::Value::Array(items)) => items,
            Some(one @ serde_json::Value::Object(_)) => std::slice::from_ref(one),
            Some(_) => {
                return Err(Failure::new(
                    NoneReason::BadReply,
                    "records is neither a list of records nor one record",
                ))
            }
        };
        let mut numbers = 0usize;
        let mut values = Vec::new();
        for (index, record) in records.iter().take(MAX_CANDIDATES).enumerate() {
            let mut seen = Vec::new();
            let mut kept = false;
            for (name, path) in &self.phones {
                values.clear();
                path.lookup_all(record, MAX_NUMBERS_PER_FIELD, &mut values);
                for value in &values {
                    let stored = match value {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        _ => continue,
                    };
                    numbers += 1;
                    let read = if trace.is_some() || crate::phone::may_hold(&stored, &tail) {
                        Number::read(&stored, self.region)
                    } else {
                        None
                    };
                    kept |= read.as_ref() == Some(caller);
                    if trace.is_some() {
                        seen.push((name.clone(), stored, read.map(|n| n.e164())));
                    }
                }
            }
            if let Some(trace) = trace.as_deref_mut() {
                trace.push(Candidate {
                    index,
                    phones: seen,
                    kept,
                });
            }
            if kept {
                return Ok(record);
            }
        }
        let cut = if records.len() > MAX_CANDIDATES {
            format!(
                " (only the first {MAX_CANDIDATES} of {} compared: narrow the search)",
                records.len()
            )
        } else {
            String::new()
        };
        Err(Failure::new(
            NoneReason::NoMatch,
            format!(
                "{} record(s) with {numbers} stored number(s), none is the caller's number{cut}",
                records.len().min(MAX_CANDIDATES)
            ),
        ))
    }
}

/// A reply field given either once in the config or per reply.
#[derive(Debug)]
pub enum Choice<T, D> {
    /// The same for every reply.
    Fixed(T),
    /// Rendered or tested per reply.
    Dynamic(D),
}

/// Paths of the values to extract, by name. Names are template values
/// already, so a reply's context takes them without allocating.
#[derive(Debug, Default)]
pub enum Extract {
    /// Nothing to extract (text, contract).
    #[default]
    Nothing,
    /// JSON paths.
    Json(Vec<(Value, JsonPath)>),
    /// XML element paths.
    Xml(Vec<Value>, Vec<XmlPath>),
}

/// What a reply's templates see: the values taken from the reply (the last
/// of a name wins), then the payload's fields. A look-up in a short list:
/// building a map and merging it with the payload for every reply was a
/// measurable share of a call (docs/performance.md).
#[derive(Debug)]
struct ReplyContext {
    values: Vec<(Value, Value)>,
    payload: Value,
}

impl ReplyContext {
    fn get(&self, name: &str) -> Option<&Value> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n.as_str() == Some(name))
            .map(|(_, v)| v)
    }
}

impl Object for ReplyContext {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.get(key.as_str()?) {
            Some(v) => Some(v.clone()),
            None => self
                .payload
                .get_item(key)
                .ok()
                .filter(|v| !v.is_undefined()),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let mut keys: Vec<Value> = Vec::new();
        let payload_keys = self.payload.try_iter().into_iter().flatten();
        for key in self
            .values
            .iter()
            .map(|(n, _)| n.clone())
            .chain(payload_keys)
        {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Enumerator::Values(keys)
    }
}

/// The contract as a backend that speaks it must send it: nothing more.
#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
enum ContractReply {
    None,
    Open {
        event: String,
        url: String,
        #[serde(default)]
        autopause: bool,
        #[serde(default)]
        title: String,
    },
}

impl ReplySpec {
    /// Normalizes a backend's reply; `Err` says why the agent gets `none`.
    ///
    /// With candidates, `trace` (when given) gets each record compared;
    /// `caller` is the caller's number when a directory already read it.
    pub fn normalize(
        &self,
        templates: &Templates,
        payload: &Value,
        raw: &RawReply,
        caller: Option<&Number>,
        trace: Option<&mut Vec<Candidate>>,
    ) -> Result<Open, Failure> {
        self.check_status(raw)?;
        let mut values: Vec<(Value, Value)> = Vec::with_capacity(8);
        values.push((Value::from("http_status"), Value::from(raw.status.as_u16())));
        // A 204 has no content by definition (RFC 9110 15.3.5), which is how
        // Zoho answers a search without a match: nothing to parse or
        // extract, and `open_when` decides, as for an empty list.
        let no_content = raw.status == http::StatusCode::NO_CONTENT && raw.body.is_empty();
        match self.format {
            ReplyFormat::Contract => return self.contract(&raw.body),
            ReplyFormat::Json if !no_content && self.reads_in_place() => {
                let paths = match &self.extract {
                    Extract::Json(paths) => &paths[..],
                    _ => &[],
                };
                let text = std::str::from_utf8(&raw.body).map_err(not_json)?;
                let found = json_values(text, paths).map_err(not_json)?;
                for ((name, _), v) in paths.iter().zip(found) {
                    if let Some(v) = v.and_then(template_value) {
                        values.push((name.clone(), v));
                    }
                }
            }
            ReplyFormat::Json => {
                let doc: serde_json::Value = if no_content {
                    serde_json::Value::Null
                } else {
                    serde_json::from_slice(&raw.body).map_err(not_json)?
                };
                let record = match &self.candidates {
                    Some(c) => c.pick(&doc, payload, caller, trace)?,
                    None => &doc,
                };
                if let Extract::Json(paths) = &self.extract {
                    for (name, path) in paths {
                        if let Some(v) = path.lookup(record) {
                            values.push((name.clone(), Value::from(minijinja::value::Serde(v))));
                        }
                    }
                }
                if self.body_in_templates {
                    values.push((
                        Value::from("body"),
                        Value::from(minijinja::value::Serde(&doc)),
                    ));
                }
            }
            ReplyFormat::Xml => {
                if let (false, Extract::Xml(names, paths)) = (no_content, &self.extract) {
                    let found = xml_values(&raw.body, paths)
                        .map_err(|e| Failure::new(NoneReason::BadReply, e))?;
                    for (name, v) in names.iter().zip(found) {
                        if let Some(v) = v {
                            values.push((name.clone(), Value::from(v)));
                        }
                    }
                }
                if self.body_in_templates {
                    let body = String::from_utf8_lossy(&raw.body);
                    values.push((Value::from("body"), Value::from(body)));
                }
            }
            ReplyFormat::Text => {
                let text = std::str::from_utf8(&raw.body)
                    .map_err(|_| Failure::new(NoneReason::BadReply, "reply is not UTF-8 text"))?;
                values.push((Value::from("body"), Value::from(text.trim())));
            }
        }
        self.open_with(templates, payload, values)
    }

    /// Whether a JSON reply's values are read where they are in its text:
    /// when nothing needs the whole document (candidates to compare, a
    /// template reading `body`). Building the document cost more than the
    /// rest of the reply's reading (docs/performance.md).
    fn reads_in_place(&self) -> bool {
        self.candidates.is_none() && !self.body_in_templates
    }

    /// The `open` reply from values already taken from a reply (or kept in
    /// a caller directory): `open_when`, url, title, event, autopause, then
    /// strict validation.
    pub fn open_with(
        &self,
        templates: &Templates,
        payload: &Value,
        values: Vec<(Value, Value)>,
    ) -> Result<Open, Failure> {
        // A value the config extracted hides a payload field of the same
        // name (and is found without looking at the payload).
        let reply = ReplyContext {
            values,
            payload: payload.clone(),
        };
        let implicit_url = match self.format {
            ReplyFormat::Text => reply.get("body"),
            _ => reply.get("url"),
        }
        .and_then(|v| v.as_str().map(str::to_owned));
        let implicit_title = reply
            .get("title")
            .and_then(|v| v.as_str().map(str::to_owned));
        let ctx = Value::from_object(reply);
        let failed = |e: minijinja::Error| Failure::new(NoneReason::Template, e);
        if let Some(cond) = &self.open_when {
            if !templates.test(cond, &ctx).map_err(failed)? {
                return Err(Failure::new(NoneReason::Declined, "open_when is false"));
            }
        }
        let url = match &self.url {
            Some(id) => url_from(templates, id, &ctx)?,
            None => implicit_url.unwrap_or_default(),
        };
        if url.trim().is_empty() {
            return Err(Failure::new(NoneReason::Declined, "no url in the reply"));
        }
        let title = match &self.title {
            Some(id) => templates.render(id, &ctx).map_err(failed)?,
            None => implicit_title.unwrap_or_default(),
        };
        let event = match &self.event {
            Choice::Fixed(e) => *e,
            Choice::Dynamic(id) => {
                let text = templates.render(id, &ctx).map_err(failed)?;
                Event::parse(text.trim()).ok_or_else(|| {
                    Failure::new(
                        NoneReason::InvalidReply,
                        format!(
                            "event {text:?} is not EventRinging, EventEstablished or EventReleased"
                        ),
                    )
                })?
            }
        };
        let autopause = match &self.autopause {
            Choice::Fixed(b) => *b,
            Choice::Dynamic(cond) => templates.test(cond, &ctx).map_err(failed)?,
        };
        self.open(event, &url, autopause, &title)
    }

    /// The url template rendered from a payload and values and validated as
    /// a call's url is (resolved against `public_base`, then [`Open::new`]),
    /// without `open_when`, title or event: what `check` asks with the
    /// sample payloads: the url as rendered, and the verdict. `None` when
    /// the url is a value taken as is.
    pub fn url_check(
        &self,
        templates: &Templates,
        payload: &Value,
        values: Vec<(Value, Value)>,
    ) -> Option<(String, Result<Open, Failure>)> {
        let id = self.url.as_ref()?;
        let ctx = Value::from_object(ReplyContext {
            values,
            payload: payload.clone(),
        });
        let rendered = templates.render(id, &ctx).unwrap_or_default();
        let verdict = url_from(templates, id, &ctx)
            .and_then(|url| self.open(Event::EventRinging, &url, false, ""));
        Some((rendered, verdict))
    }

    fn check_status(&self, raw: &RawReply) -> Result<(), Failure> {
        let status = raw.status;
        let accepted = match &self.accept_status {
            Some(list) => list.contains(&status.as_u16()),
            None => status.is_success(),
        };
        if accepted {
            Ok(())
        } else if status.is_redirection() {
            let to = raw
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            Err(Failure::new(
                NoneReason::Redirect,
                format!("HTTP {status} to {to:?} not followed (follow_redirects)"),
            ))
        } else {
            Err(Failure::new(NoneReason::Status, format!("HTTP {status}")))
        }
    }

    fn contract(&self, body: &[u8]) -> Result<Open, Failure> {
        let reply: ContractReply = serde_json::from_slice(body).map_err(|e| {
            Failure::new(
                NoneReason::BadReply,
                format!("reply is not a contract reply: {e}"),
            )
        })?;
        match reply {
            ContractReply::None => Err(Failure::new(
                NoneReason::Declined,
                "backend answered {\"action\":\"none\"}",
            )),
            ContractReply::Open {
                event,
                url,
                autopause,
                title,
            } => {
                let event = Event::parse(&event).ok_or_else(|| {
                    Failure::new(
                        NoneReason::InvalidReply,
                        format!("event {event:?} is not a contract event"),
                    )
                })?;
                self.open(event, &url, autopause, &title)
            }
        }
    }

    /// Resolves the url against `public_base` and validates the reply. A
    /// reference without a scheme stays on `public_base`'s origin: `//host/x`,
    /// and `/\host/x` or `\\host/x` (backslashes are slashes in http URLs),
    /// would otherwise take the agent's browser to another host.
    fn open(&self, event: Event, url: &str, autopause: bool, title: &str) -> Result<Open, Failure> {
        let url = url.trim();
        let resolved = match &self.public_base {
            Some(base) => {
                let resolved = base.join(url).map_err(|e| {
                    Failure::new(
                        NoneReason::InvalidReply,
                        format!("url {url:?} cannot be resolved against public_base: {e}"),
                    )
                })?;
                let relative = Url::parse(url).is_err();
                if relative && resolved.origin() != base.origin() {
                    return Err(Failure::new(
                        NoneReason::InvalidReply,
                        format!("relative url {url:?} leaves public_base's host"),
                    ));
                }
                resolved.to_string()
            }
            None => url.to_owned(),
        };
        Open::new(event, &resolved, autopause, title)
            .map_err(|e| Failure::new(NoneReason::InvalidReply, e))
    }
}

/// Why a reply that should be JSON is refused.
fn not_json(e: impl std::fmt::Display) -> Failure {
    Failure::new(NoneReason::BadReply, format!("reply is not JSON: {e}"))
}

/// A url template rendered, refused when its path has a dot segment.
fn url_from(templates: &Templates, id: &TemplateId, ctx: &Value) -> Result<String, Failure> {
    let url = templates
        .render(id, ctx)
        .map_err(|e| Failure::new(NoneReason::Template, e))?;
    if let Some(segment) = crate::template::dot_segment(&url) {
        return Err(Failure::new(
            NoneReason::Template,
            format!("url path has a dot segment {segment:?}: refused, it would move the page"),
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_values_hide_payload_fields_and_the_last_of_a_name_wins() {
        let payload = Value::from(minijinja::value::Serde(
            serde_json::json!({"caller": "1001", "name": "payload"}),
        ));
        let ctx = Value::from_object(ReplyContext {
            values: vec![
                (Value::from("name"), Value::from("first")),
                (Value::from("url"), Value::from("https://crm/1")),
                (Value::from("name"), Value::from("ACME")),
            ],
            payload,
        });
        let attr = |k: &str| ctx.get_attr(k).unwrap().to_string();
        assert_eq!(attr("name"), "ACME");
        assert_eq!(attr("caller"), "1001");
        assert_eq!(attr("url"), "https://crm/1");
        assert!(ctx.get_attr("missing").unwrap().is_undefined());
        let keys: Vec<String> = ctx.try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["name", "url", "caller"]);
    }
}
