//! HubSpot's CRM search API for contacts, as HubSpot's developer
//! documentation describes it (developers.hubspot.com/docs/api-reference/
//! search/guide, formerly docs/api/crm/search; developers.hubspot.com/
//! changelog/breaking-change-expanded-filtering-capabilities-and-error-
//! messaging-in-hubspots-search-api; developers.hubspot.com/docs/guides/
//! apps/api-usage/usage-details for the rate limit):
//!
//! - `POST /crm/v3/objects/contacts/search` with a private app's access
//!   token as `Authorization: Bearer`; a token HubSpot does not know answers
//!   HTTP 401 `{"status":"error","message":"Authentication credentials not
//!   found...","correlationId":...,"category":"INVALID_AUTHENTICATION"}`.
//! - The JSON body: `filterGroups` (groups are ORed, the filters of a group
//!   ANDed), each filter `{"propertyName","operator","value"}`;
//!   `properties`; `limit` (at most 200). The search guide allows 5 groups,
//!   6 filters a group and 18 in all; the August 2024 changelog announced 10
//!   a group and 25 in all: the stricter limits are kept here, so a recipe
//!   that passes works on every account. A body HubSpot cannot read answers
//!   HTTP 400 with `"category":"VALIDATION_ERROR"`.
//! - `EQ` on a text property matches the stored value as a whole, without
//!   regard to case. `CONTAINS_TOKEN` matches a token of the value, `*` in
//!   the filter's value standing for any run of characters (the guide's
//!   example: `*@hubspot.com`); here a value's tokens are its
//!   whitespace-separated words.
//! - `phone` and `mobilephone` keep what was typed unless the property's
//!   validation rule is on (knowledge.hubspot.com/properties/phone-number-
//!   property-validation: validated numbers are saved in E.164,
//!   `+1 (888) 482-7768` as `+18884827768`). From each, HubSpot calculates
//!   `hs_searchable_calculated_phone_number` and
//!   `hs_searchable_calculated_mobile_number`: the number's digits without
//!   its country code, to search on. HubSpot does not document how it reads
//!   the typed text; the values seen in the wild (integrations read them
//!   back: `00004` gives `4`; `+33 6 12 34 56 78` gives `612345678`) are
//!   libphonenumber's national number, so this CRM computes them with
//!   libphonenumber in the account's default country (`State::region`): no
//!   country code, no leading zero, no extension (`x12`, `;ext=12`), and
//!   nothing when libphonenumber cannot read the text (two numbers in one
//!   field: too long). A word after the number is read as libphonenumber
//!   reads letters, as a vanity number (`06 12 34 56 88 (mobile)` gives
//!   `612345688662453`).
//! - The reply: `{"total":N,"results":[{"id":...,"properties":{...},
//!   "createdAt":...,"updatedAt":...,"archived":false}]}`.
//! - Search requests are rate limited per account (a few a second); over
//!   the limit HubSpot answers HTTP 429 `{"status":"error","message":"You
//!   have reached your secondly limit.","errorType":"RATE_LIMIT",
//!   "correlationId":...,"policyName":"SECONDLY"}`.

use std::sync::{Arc, Mutex};

use phonenumber::country::Id;
use serde_json::{json, Value};

use crate::crm::{Answer, Crm, Seen};

pub const SEARCH_PATH: &str = "/crm/v3/objects/contacts/search";

/// A contact: id, phone and mobile phone as stored, names.
#[derive(Debug, Clone)]
pub struct Contact {
    pub id: String,
    pub phone: &'static str,
    pub mobilephone: &'static str,
    pub firstname: String,
    pub lastname: String,
}

impl Contact {
    /// A contact with no phone yet.
    pub fn new(id: &str, firstname: &str, lastname: &str) -> Self {
        Self {
            id: id.into(),
            phone: "",
            mobilephone: "",
            firstname: firstname.into(),
            lastname: lastname.into(),
        }
    }
}

/// Jeanne's phone in E.164, as HubSpot's phone number validation saves it.
pub fn jeanne() -> Contact {
    Contact {
        phone: "+33612345678",
        ..Contact::new("51", "Jeanne", "O'Neil")
    }
}

/// Paul's mobile in E.164.
pub fn paul() -> Contact {
    Contact {
        mobilephone: "+33611223344",
        ..Contact::new("52", "Paul", "Martin")
    }
}

const PROPERTIES: [&str; 8] = [
    "phone",
    "mobilephone",
    "hs_searchable_calculated_phone_number",
    "hs_searchable_calculated_mobile_number",
    "firstname",
    "lastname",
    "email",
    "hs_object_id",
];
const OPERATORS: [&str; 13] = [
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
];

pub struct State {
    pub token: String,
    /// The account's default country, in which a number typed without its
    /// country code is read.
    pub region: Id,
    /// Searches answered.
    pub searches: usize,
    /// Searches refused with 401.
    pub refused: usize,
    /// Searches refused with 400.
    pub invalid: usize,
    /// Searches refused with 429.
    pub throttled: usize,
    /// The next this many searches are over the account's rate limit.
    pub throttle_next: usize,
    /// Every search body received, parsed.
    pub bodies: Vec<Value>,
    pub contacts: Vec<Contact>,
}

pub struct HubSpot {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

impl HubSpot {
    pub async fn start(token: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            token: token.into(),
            region: Id::FR,
            searches: 0,
            refused: 0,
            invalid: 0,
            throttled: 0,
            throttle_next: 0,
            bodies: Vec::new(),
            contacts: vec![jeanne(), paul()],
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }
}

const CORRELATION: &str = "8f0d5a3c-1b2e-4c6d-9a7f-3e5b1c2d4a6f";

fn error(status: u16, category: &str, message: &str) -> Answer {
    Answer::Reply(
        status,
        "application/json;charset=utf-8",
        json!({"status": "error", "message": message, "correlationId": CORRELATION, "category": category})
            .to_string(),
    )
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    if seen.method != "POST" || seen.target != SEARCH_PATH {
        return error(404, "OBJECT_NOT_FOUND", "resource not found");
    }
    let token = seen
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if token != state.token {
        state.refused += 1;
        return error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview");
    }
    if state.throttle_next > 0 {
        state.throttle_next -= 1;
        state.throttled += 1;
        return Answer::Reply(
            429,
            "application/json;charset=utf-8",
            json!({"status": "error", "message": "You have reached your secondly limit.",
                   "errorType": "RATE_LIMIT", "correlationId": CORRELATION, "policyName": "SECONDLY"})
            .to_string(),
        );
    }
    let body: Value = match serde_json::from_slice(&seen.body) {
        Ok(v) if seen.header("content-type") == Some("application/json") => v,
        _ => {
            state.invalid += 1;
            return error(
                400,
                "VALIDATION_ERROR",
                "Invalid input JSON on line 1, column 1",
            );
        }
    };
    state.bodies.push(body.clone());
    let groups = match groups(&body) {
        Ok(g) => g,
        Err(message) => {
            state.invalid += 1;
            return error(400, "VALIDATION_ERROR", &message);
        }
    };
    let limit = match body.get("limit") {
        None => 10,
        Some(l) => match l.as_u64().filter(|l| (1..=200).contains(l)) {
            Some(l) => l as usize,
            None => {
                state.invalid += 1;
                return error(400, "VALIDATION_ERROR", "limit must be between 1 and 200");
            }
        },
    };
    state.searches += 1;
    let region = state.region;
    let matching: Vec<&Contact> = state
        .contacts
        .iter()
        .filter(|c| {
            groups.is_empty()
                || groups
                    .iter()
                    .any(|g| g.iter().all(|f| f.holds(&property(c, &f.name, region))))
        })
        .collect();
    let wanted: Vec<&str> = body
        .get("properties")
        .and_then(Value::as_array)
        .map_or(vec!["firstname", "lastname", "email"], |p| {
            p.iter().filter_map(Value::as_str).collect()
        });
    let results: Vec<Value> = matching
        .iter()
        .take(limit)
        .map(|c| {
            let mut properties = serde_json::Map::new();
            properties.insert("createdate".into(), json!("2026-10-02T09:12:44.116Z"));
            properties.insert("hs_object_id".into(), json!(c.id));
            properties.insert("lastmodifieddate".into(), json!("2026-11-18T15:40:03.520Z"));
            for name in &wanted {
                if PROPERTIES.contains(name) {
                    let value = property(c, name, region);
                    properties.insert((*name).into(), json!((!value.is_empty()).then_some(value)));
                }
            }
            json!({"id": c.id, "properties": properties, "createdAt": "2026-10-02T09:12:44.116Z",
                   "updatedAt": "2026-11-18T15:40:03.520Z", "archived": false})
        })
        .collect();
    Answer::Reply(
        200,
        "application/json;charset=utf-8",
        json!({"total": matching.len(), "results": results}).to_string(),
    )
}

/// A property's value ("" when it has none), calculated ones included.
fn property(c: &Contact, name: &str, region: Id) -> String {
    match name {
        "hs_object_id" => c.id.clone(),
        "phone" => c.phone.into(),
        "mobilephone" => c.mobilephone.into(),
        "hs_searchable_calculated_phone_number" => searchable(c.phone, region),
        "hs_searchable_calculated_mobile_number" => searchable(c.mobilephone, region),
        "firstname" => c.firstname.clone(),
        "lastname" => c.lastname.clone(),
        _ => String::new(),
    }
}

/// The searchable number HubSpot calculates from a phone property:
/// libphonenumber's national number (no country code, no leading zero, no
/// extension), "" when libphonenumber cannot read the text. Java's
/// libphonenumber takes an RFC 3966 `;ext=` as the extension; the Rust port
/// refuses it, so it is cut off first.
pub fn searchable(typed: &str, region: Id) -> String {
    let number = typed.split(";ext=").next().unwrap_or(typed);
    if number.trim().is_empty() {
        return String::new();
    }
    phonenumber::parse(Some(region), number)
        .map(|n| n.national().value().to_string())
        .unwrap_or_default()
}

/// One filter of a group, checked as HubSpot checks it.
struct Filter {
    name: String,
    operator: String,
    value: String,
}

impl Filter {
    /// Whether a property's value (its text; "" for none) meets the filter,
    /// without regard to case.
    fn holds(&self, value: &str) -> bool {
        let value = value.to_lowercase();
        let wanted = self.value.to_lowercase();
        match self.operator.as_str() {
            "EQ" => !value.is_empty() && value == wanted,
            _ => value.split_whitespace().any(|token| glob(token, &wanted)),
        }
    }
}

/// `token` matches `pattern`, `*` standing for any run of characters.
fn glob(token: &str, pattern: &str) -> bool {
    match pattern.split_once('*') {
        None => token == pattern,
        Some((head, rest)) => {
            let Some(tail) = token.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob(&tail[i..], rest))
        }
    }
}

/// The filters of each group, checked as HubSpot checks them.
fn groups(body: &Value) -> Result<Vec<Vec<Filter>>, String> {
    let Some(groups) = body.get("filterGroups") else {
        return Ok(Vec::new());
    };
    let groups = groups.as_array().ok_or("filterGroups must be a list")?;
    if groups.len() > 5 {
        return Err(format!(
            "Too many filter groups ({}); the limit is 5",
            groups.len()
        ));
    }
    let mut total = 0;
    let mut out = Vec::new();
    for group in groups {
        let filters = group
            .get("filters")
            .and_then(Value::as_array)
            .ok_or("a filter group needs filters")?;
        if filters.len() > 6 {
            return Err("Too many filters in a group; the limit is 6".into());
        }
        total += filters.len();
        let mut conditions = Vec::new();
        for filter in filters {
            let name = filter
                .get("propertyName")
                .and_then(Value::as_str)
                .ok_or("a filter needs a propertyName")?;
            let operator = filter
                .get("operator")
                .and_then(Value::as_str)
                .ok_or("a filter needs an operator")?;
            if !OPERATORS.contains(&operator) {
                return Err(format!("Unknown operator {operator}"));
            }
            if !PROPERTIES.contains(&name) {
                return Err(format!(
                    "There was a problem with the request. Property {name} does not exist"
                ));
            }
            if operator != "EQ" && operator != "CONTAINS_TOKEN" {
                return Err(format!(
                    "the test CRM models EQ and CONTAINS_TOKEN only, not {operator}"
                ));
            }
            let value = filter
                .get("value")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{operator} needs a value"))?;
            conditions.push(Filter {
                name: name.to_owned(),
                operator: operator.to_owned(),
                value: value.to_owned(),
            });
        }
        out.push(conditions);
    }
    if total > 18 {
        return Err("Too many filters; the limit is 18".into());
    }
    Ok(out)
}

#[test]
fn searchable_numbers_and_tokens_are_read_as_hubspot_reads_them() {
    for (typed, want) in [
        ("+33 6 12 34 56 78", "612345678"),
        ("06.12.34.56.78", "612345678"),
        ("0033 6 12 34 56 78", "612345678"),
        ("00004", "4"),
        ("01 23 45 67 89 x12", "123456789"),
        ("01 23 45 67 89;ext=12", "123456789"),
        ("+39 06 1234 5678", "612345678"),
        ("06 12 34 56 88 (mobile)", "612345688662453"),
        ("+33 1 23 45 67 91 / 06 12 34 56 92", ""),
        ("", ""),
    ] {
        assert_eq!(searchable(typed, Id::FR), want, "{typed}");
    }
    assert!(glob("33612345678", "*12345678"));
    assert!(glob("612345678", "*612345678"));
    assert!(!glob("612345679", "*12345678"));
    assert!(glob("612345688662453", "*12345688*"));
    assert!(glob("jeanne@hubspot.com", "*@hubspot.com"));
}
