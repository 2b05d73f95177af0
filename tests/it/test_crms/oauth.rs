//! An OAuth2 CRM: a token endpoint as RFC 6749 describes it (section 4.4
//! client credentials with HTTP Basic client authentication, section 6
//! refresh token, section 4.3 resource owner password; errors as section
//! 5.2: HTTP 400 with `{"error": ...}`; HTTP 401 `invalid_client` for bad
//! client credentials), tokens that expire, and an API that answers HTTP
//! 401 to an unknown or expired token. Like Entra ID v1 (`resource`) or
//! Auth0 (`audience`), it can require extra token parameters and refuse a
//! request without them.
//!
//! It enforces a mint limit like Zoho's (10 tokens per 10 minutes per
//! refresh token), stricter: a token minted while the previous one was
//! still good (more than a tenth of its life left) is counted as a
//! violation, which the tests assert is zero.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use super::{fields, query_of};
use crate::crm::{Answer, Crm, Seen};

pub struct State {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// The resource owner of the password grant.
    pub username: String,
    pub password: String,
    /// Token parameters the endpoint requires, with their values.
    pub required: Vec<(String, String)>,
    /// How long the token endpoint takes to answer.
    pub token_delay: Option<Duration>,
    /// Requests to the token endpoint, answered or refused.
    pub token_requests: usize,
    /// Lifetime of the tokens minted from now on.
    pub expires_in: Duration,
    tokens: HashMap<String, Instant>,
    last: Option<(Instant, Duration)>,
    counter: u64,
    /// Tokens minted.
    pub mints: usize,
    /// Tokens minted while the previous one was still good.
    pub early_mints: usize,
    /// API calls refused with 401.
    pub refused: usize,
    /// API calls answered.
    pub lookups: usize,
    /// Refuse every API call with 401, good token or not (the client lost
    /// access to the module, an API refusing every token).
    pub refuse_lookups: bool,
    /// The `expires_in` the token reply says, when it is not the tokens'
    /// real life (`0.001`).
    pub says_expires_in: Option<f64>,
}

impl State {
    /// Forgets every token (as a revocation or a CRM restart would).
    pub fn revoke_all(&mut self) {
        self.tokens.clear();
        self.last = None;
    }
}

pub struct OAuthCrm {
    pub crm: Crm,
    pub state: Arc<Mutex<State>>,
}

impl OAuthCrm {
    pub async fn start(expires_in: Duration) -> Self {
        let state = Arc::new(Mutex::new(State {
            client_id: "gw-client".into(),
            client_secret: "s3cr:et/+".into(),
            refresh_token: "1000.refresh.abc".into(),
            username: "gw@example.org".into(),
            password: "pa ss&w=rd%".into(),
            required: Vec::new(),
            token_delay: None,
            token_requests: 0,
            expires_in,
            tokens: HashMap::new(),
            last: None,
            counter: 0,
            mints: 0,
            early_mints: 0,
            refused: 0,
            lookups: 0,
            refuse_lookups: false,
            says_expires_in: None,
        }));
        let shared = Arc::clone(&state);
        let crm = Crm::start(move |seen| handle(&mut shared.lock().unwrap(), seen)).await;
        Self { crm, state }
    }
}

fn oauth_error(status: u16, error: &str) -> Answer {
    oauth_error_says(status, error, "")
}

fn oauth_error_says(status: u16, error: &str, description: &str) -> Answer {
    Answer::Reply(
        status,
        "application/json",
        json!({"error": error, "error_description": description}).to_string(),
    )
}

fn handle(state: &mut State, seen: &Seen) -> Answer {
    let path = seen.target.split('?').next().unwrap_or("");
    match (seen.method.as_str(), path) {
        ("POST", "/oauth/token") => token(state, seen),
        ("GET", "/api/contacts") => {
            let token = seen
                .header("authorization")
                .and_then(|h| h.strip_prefix("Bearer "))
                .unwrap_or("");
            let good = state
                .tokens
                .get(token)
                .is_some_and(|until| Instant::now() < *until);
            if !good || state.refuse_lookups {
                state.refused += 1;
                return Answer::Reply(
                    401,
                    "application/json",
                    json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]).to_string(),
                );
            }
            state.lookups += 1;
            let phone = query_of(&seen.target)
                .get("phone")
                .cloned()
                .unwrap_or_default();
            let records = if phone == "+33612345678" {
                json!([{"id": "003xx0001", "name": "Jeanne O'Neil"}])
            } else {
                json!([])
            };
            Answer::Reply(
                200,
                "application/json",
                json!({"records": records}).to_string(),
            )
        }
        _ => Answer::Reply(404, "application/json", "{}".into()),
    }
}

fn token(state: &mut State, seen: &Seen) -> Answer {
    state.token_requests += 1;
    match (minted(state, seen), state.token_delay) {
        (Answer::Reply(status, kind, body), Some(delay)) => Answer::Slow(delay, status, kind, body),
        (answer, _) => answer,
    }
}

fn minted(state: &mut State, seen: &Seen) -> Answer {
    if seen.header("content-type") != Some("application/x-www-form-urlencoded") {
        return oauth_error(400, "invalid_request");
    }
    let form = fields(&seen.text());
    // Client authentication: Basic (RFC 6749 2.3.1, parts form-urlencoded)
    // or client_id/client_secret in the body; not both.
    let basic = seen
        .header("authorization")
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let dec = |s: &str| fields(&format!("x={s}")).remove("x").unwrap_or_default();
            Some((dec(id), dec(secret)))
        });
    let in_body = form.get("client_id").map(|id| {
        (
            id.clone(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    });
    let (id, secret) = match (basic, in_body) {
        (Some(b), None) => b,
        (None, Some(b)) => b,
        _ => return oauth_error(401, "invalid_client"),
    };
    if id != state.client_id || secret != state.client_secret {
        return oauth_error(401, "invalid_client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some("refresh_token") => {
            if form.get("refresh_token") != Some(&state.refresh_token) {
                return oauth_error(400, "invalid_grant");
            }
        }
        Some("password") => {
            if form.get("username") != Some(&state.username)
                || form.get("password") != Some(&state.password)
            {
                return oauth_error(400, "invalid_grant");
            }
        }
        Some(_) => return oauth_error(400, "unsupported_grant_type"),
        None => return oauth_error(400, "invalid_request"),
    }
    for (name, value) in &state.required {
        if form.get(name) != Some(value) {
            // Entra ID v1: AADSTS900144; Auth0: no audience, no token.
            let says = format!("The request body must contain the parameter '{name}'");
            return oauth_error_says(400, "invalid_request", &says);
        }
    }
    let now = Instant::now();
    if let Some((at, life)) = state.last {
        if now < at + life - life / 10 {
            state.early_mints += 1;
        }
    }
    state.mints += 1;
    state.counter += 1;
    let token = format!("1000.access.{}", state.counter);
    state.tokens.insert(token.clone(), now + state.expires_in);
    state.last = Some((now, state.expires_in));
    Answer::Reply(
        200,
        "application/json",
        json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": state.says_expires_in.map_or(json!(state.expires_in.as_secs()), |s| json!(s)),
            "api_domain": format!("http://{}", seen.header("host").unwrap_or("127.0.0.1")),
        })
        .to_string(),
    )
}
