//! HubSpot's CRM search API for contacts, as HubSpot's developer
//! documentation describes it (developers.hubspot.com/docs/api-reference/
//! crm/search-the-crm; developers.hubspot.com/changelog/breaking-change-
//! expanded-filtering-capabilities-and-error-messaging-in-hubspots-search-api
//! for the filter limits since August 2024; developers.hubspot.com/docs/
//! guides/apps/api-usage/usage-details for the rate limit):
//!
//! - `POST /crm/v3/objects/contacts/search` with a private app's access
//!   token as `Authorization: Bearer`; a token HubSpot does not know answers
//!   HTTP 401 `{"status":"error","message":"Authentication credentials not
//!   found...","correlationId":...,"category":"INVALID_AUTHENTICATION"}`.
//! - The JSON body: `filterGroups` (groups are ORed, the filters of a group
//!   ANDed; at most 5 groups, 10 filters a group, 25 in all), each filter
//!   `{"propertyName","operator","value"}`; `properties`; `limit` (at most
//!   200). A body HubSpot cannot read answers HTTP 400 with `"category":
//!   "VALIDATION_ERROR"`.
//! - `EQ` on a text property (`phone`, `mobilephone`) matches the stored
//!   value as a whole, without regard to case: a number stored as
//!   `+33612345678` is not found by `0612345678`. With phone number
//!   validation on, HubSpot saves numbers in E.164 without formatting
//!   (knowledge.hubspot.com/properties/phone-number-property-validation:
//!   `+1 (888) 482-7768` is saved as `+18884827768`).
//! - The reply: `{"total":N,"results":[{"id":...,"properties":{...},
//!   "createdAt":...,"updatedAt":...,"archived":false}]}`.
//! - Search requests are rate limited per account (a few a second); over
//!   the limit HubSpot answers HTTP 429 `{"status":"error","message":"You
//!   have reached your secondly limit.","errorType":"RATE_LIMIT",
//!   "correlationId":...,"policyName":"SECONDLY"}`.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::crm::{Answer, Crm, Seen};

pub const SEARCH_PATH: &str = "/crm/v3/objects/contacts/search";

/// A contact: id, phone, mobile phone, first name, last name.
pub type Contact = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Jeanne's phone and Paul's mobile, both in E.164 as HubSpot's phone
/// number validation saves them.
pub const JEANNE: Contact = ("51", "+33612345678", "", "Jeanne", "O'Neil");
pub const PAUL: Contact = ("52", "", "+33611223344", "Paul", "Martin");

const PROPERTIES: [&str; 6] = [
    "phone",
    "mobilephone",
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
            searches: 0,
            refused: 0,
            invalid: 0,
            throttled: 0,
            throttle_next: 0,
            bodies: Vec::new(),
            contacts: vec![JEANNE, PAUL],
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
    let matching: Vec<&Contact> = state
        .contacts
        .iter()
        .filter(|c| {
            groups.is_empty()
                || groups.iter().any(|g| {
                    g.iter().all(|(name, value)| {
                        property(c, name).to_lowercase() == value.to_lowercase()
                    })
                })
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
            properties.insert("hs_object_id".into(), json!(c.0));
            properties.insert("lastmodifieddate".into(), json!("2026-11-18T15:40:03.520Z"));
            for name in &wanted {
                if PROPERTIES.contains(name) {
                    properties.insert((*name).into(), json!(property(c, name)));
                }
            }
            json!({"id": c.0, "properties": properties, "createdAt": "2026-10-02T09:12:44.116Z",
                   "updatedAt": "2026-11-18T15:40:03.520Z", "archived": false})
        })
        .collect();
    Answer::Reply(
        200,
        "application/json;charset=utf-8",
        json!({"total": matching.len(), "results": results}).to_string(),
    )
}

fn property<'a>(c: &'a Contact, name: &str) -> &'a str {
    match name {
        "hs_object_id" => c.0,
        "phone" => c.1,
        "mobilephone" => c.2,
        "firstname" => c.3,
        "lastname" => c.4,
        _ => "",
    }
}

/// The `EQ` filters of each group, checked as HubSpot checks them.
fn groups(body: &Value) -> Result<Vec<Vec<(String, String)>>, String> {
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
        if filters.len() > 10 {
            return Err("Too many filters in a group; the limit is 10".into());
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
            if operator != "EQ" {
                return Err(format!("the test CRM models EQ only, not {operator}"));
            }
            let value = filter
                .get("value")
                .and_then(Value::as_str)
                .ok_or("EQ needs a value")?;
            conditions.push((name.to_owned(), value.to_owned()));
        }
        out.push(conditions);
    }
    if total > 25 {
        return Err("Too many filters; the limit is 25".into());
    }
    Ok(out)
}
