//! An EspoCRM REST API (`/api/v1/...`) for an API user whose authentication
//! method is HMAC, checked as EspoCRM checks it:
//! - `X-Hmac-Authorization` is base64 of `apiKey:hash`, split at the first
//!   `:`; the api key finds the user, and `hash` must equal
//!   `hash_hmac('sha256', METHOD . ' ' . resourcePath, secretKey)` in hex
//!   (EspoCRM 8.4.1 and later) or, the legacy form every version accepts,
//!   the raw 32-byte digest. `resourcePath` is the URI path after the base
//!   path `/api/v1`, without the query string (espocrm/espocrm
//!   `application/Espo/Core/Authentication/Logins/Hmac.php`,
//!   `application/Espo/Core/Utils/ApiKey.php` `hash`/`hashLegacy`,
//!   `application/Espo/Core/Api/RequestWrapper.php` `getResourcePath`). The
//!   official client signs `METHOD /path` without the query, in hex since
//!   its 1.0.0 (espocrm/php-espo-api-client `src/Client.php`).
//! - A request whose credentials fail or are missing gets HTTP 401 with an
//!   empty body (`application/Espo/Core/Api/Auth.php`; the real one adds
//!   `WWW-Authenticate: Basic realm=""` when there are none). An HMAC user
//!   cannot use `X-Api-Key`.
//! - `GET /Contact?where[0][type]=equals&where[0][attribute]=phoneNumber&
//!   where[0][value]=...` compares the value exactly with each of the
//!   record's stored numbers (`phoneNumbersMultiple.name = value`,
//!   `application/Espo/Core/Utils/Database/Orm/FieldConverters/Phone.php`);
//!   numbers are stored in E.164 when international format is on. The query
//!   string is decoded as PHP does (`+` is a space). `maxSize` over 200 is
//!   refused (403; `application/Espo/Core/Record/SearchParamsFetcher.php`). The reply is `{"total":N,"list":[{"id":..,"name":..}]}`,
//!   `total` 0 and an empty list when nothing matches
//!   (docs.espocrm.com/development/api-search-params).

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::json;

use super::query_of;
use crate::crm::{Answer, Crm, Seen};

/// Where EspoCRM's API lives; the signed resource path is what follows.
const BASE_PATH: &str = "/api/v1";

/// The most records a list request may ask for, and what it gets without
/// `maxSize` (`recordListMaxSizeLimit`).
const MAX_SIZE: usize = 200;

/// What the CRM knows and counts.
#[derive(Default)]
pub struct State {
    pub api_key: String,
    pub secret_key: String,
    /// Before 8.4.1, only the raw digest was accepted.
    pub legacy_only: bool,
    /// Contacts: stored phone (E.164), id, name.
    pub contacts: Vec<(String, String, String)>,
    /// Look-ups answered, and requests refused with 401.
    pub lookups: usize,
    pub refused: usize,
    /// The `where[0][value]` of each look-up, decoded.
    pub values: Vec<String>,
    /// The query fields of each look-up, names sorted.
    pub queries: Vec<Vec<(String, String)>>,
}

/// A running EspoCRM.
pub struct EspoCrm {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

impl EspoCrm {
    pub async fn start(api_key: &str, secret_key: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.into(),
            secret_key: secret_key.into(),
            contacts: vec![(
                "+33612345678".into(),
                "6571f0a2c3b9d4e18".into(),
                "Jeanne O'Neil".into(),
            )],
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }

    /// The API's base URL, as a recipe writes `https://crm.example.org/api/v1`.
    pub fn api_url(&self) -> String {
        format!("{}{BASE_PATH}", self.crm.url())
    }
}

/// The header EspoCRM 8.4.1+ expects for `method` on `resource_path`.
pub fn hmac_header(api_key: &str, secret_key: &str, method: &str, resource_path: &str) -> String {
    let digest = hmac(secret_key, &format!("{method} {resource_path}"));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    base64::engine::general_purpose::STANDARD.encode(format!("{api_key}:{hex}"))
}

fn hmac(secret_key: &str, text: &str) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret_key.as_bytes());
    ring::hmac::sign(&key, text.as_bytes()).as_ref().to_vec()
}

fn unauthorized(state: &mut State) -> Answer {
    state.refused += 1;
    Answer::Reply(401, "text/html", String::new())
}

/// Whether the request carries this user's valid signature.
fn signed(state: &State, seen: &Seen, resource_path: &str) -> bool {
    let Some(header) = seen.header("x-hmac-authorization") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(header) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|b| *b == b':') else {
        return false;
    };
    let (api_key, hash) = (&decoded[..colon], &decoded[colon + 1..]);
    if api_key.is_empty() || api_key != state.api_key.as_bytes() {
        return false;
    }
    let digest = hmac(
        &state.secret_key,
        &format!("{} {resource_path}", seen.method),
    );
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (!state.legacy_only && hash == hex.as_bytes()) || hash == digest.as_slice()
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    let path = seen.target.split('?').next().unwrap_or("");
    let Some(resource_path) = path.strip_prefix(BASE_PATH) else {
        return Answer::Reply(404, "text/html", "Not Found".into());
    };
    if !signed(state, seen, resource_path) {
        return unauthorized(state);
    }
    if (seen.method.as_str(), resource_path) != ("GET", "/Contact") {
        return Answer::Reply(404, "text/html", String::new());
    }
    let query = query_of(&seen.target);
    let get = |k: &str| query.get(k).map(String::as_str);
    let max_size = match get("maxSize").map(str::parse::<usize>) {
        None => MAX_SIZE,
        Some(Ok(n)) if n <= MAX_SIZE => n,
        _ => return Answer::Reply(403, "text/html", String::new()),
    };
    if get("where[0][type]") != Some("equals") || get("where[0][attribute]") != Some("phoneNumber")
    {
        return Answer::Reply(400, "text/html", String::new());
    }
    let Some(value) = get("where[0][value]") else {
        return Answer::Reply(400, "text/html", String::new());
    };
    state.lookups += 1;
    state.values.push(value.to_owned());
    let mut fields: Vec<(String, String)> = query.clone().into_iter().collect();
    fields.sort();
    state.queries.push(fields);
    let found: Vec<_> = state
        .contacts
        .iter()
        .filter(|c| c.0 == value)
        .map(|c| json!({"id": c.1, "name": c.2}))
        .collect();
    let list: Vec<_> = found.iter().take(max_size).cloned().collect();
    Answer::Reply(
        200,
        "application/json",
        json!({"total": found.len(), "list": list}).to_string(),
    )
}
