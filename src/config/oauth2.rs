//! `auth.type = "oauth2"`: the token request of RFC 6749 (client
//! credentials, refresh token or password grant) as a one-step login, so it
//! gets the login's cache, single flight, early renewal, backoff and
//! 401 → renew-and-retry-once; the look-up sends `Authorization: Bearer
//! {{ login.access_token }}` unless it sets its own `Authorization` header
//! (Zoho's `Zoho-oauthtoken ...`). Every field of the token reply the CRM
//! documents (`api_domain`, `instance_url`) is `login.*` for templates.
//!
//! The `oauth2` crate is not used: it brings its own HTTP client traits
//! (reqwest, ureq or a callback), while a token request here must go through
//! the backend's own pooled client (its TLS roots, client certificate,
//! timeouts, size limit), be rendered and shown by `simulate` like any
//! other step, and be cached by the login machinery. The request itself is
//! one form POST; the crate's value would be its types, not the exchange.

use std::path::Path;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::HeaderValue;

use super::backends::{request_spec, Parts};
use super::diag::Diagnostics;
use super::login::{relogin_when, session_seconds};
use super::numbers::millis;
use super::raw::{ClientAuth, Encoding, Grant, RawAuth};
use super::secrets::secret;
use crate::backend::login::{Login, LoginSettings, Step, StepExtract};
use crate::backend::reply::ReplyFormat;
use crate::backend::Client;
use crate::constants::DEFAULT_LOGIN_TIMEOUT;
use crate::extract::JsonPath;
use crate::template::Templates;

/// Token-reply fields kept for templates (RFC 6749 5.1, plus the base URLs
/// Zoho and Salesforce return).
const TOKEN_FIELDS: [&str; 6] = [
    "access_token",
    "token_type",
    "expires_in",
    "scope",
    "api_domain",
    "instance_url",
];

/// Builds the token request of `auth` as a login.
pub(super) fn oauth2(
    a: &RawAuth,
    backend: &str,
    key: &str,
    base: &Path,
    client: Client,
    templates: &mut Templates,
    diags: &mut Diagnostics<'_>,
) -> Option<Login> {
    let Some(grant) = a.grant else {
        diags.error(
            key,
            "type = \"oauth2\" needs grant = \"client_credentials\", \"refresh_token\" or \"password\"",
        );
        return None;
    };
    let Some(token_url) = &a.token_url else {
        diags.error(key, "type = \"oauth2\" needs token_url");
        return None;
    };
    let Some(client_id) = &a.client_id else {
        diags.error(key, "type = \"oauth2\" needs client_id");
        return None;
    };
    let mut own = templates.sibling();
    let mut form = toml::Table::new();
    let grant_type = match grant {
        Grant::ClientCredentials => "client_credentials",
        Grant::RefreshToken => "refresh_token",
        Grant::Password => "password",
    };
    form.insert("grant_type".into(), grant_type.into());
    let client_secret = match (&a.client_secret_env, &a.client_secret_file) {
        (None, None) if grant != Grant::ClientCredentials => None,
        (env, file) => Some(secret(
            env.as_ref(),
            file.as_ref(),
            key,
            "client_secret",
            base,
            diags,
        )?),
    };
    match grant {
        Grant::ClientCredentials => {}
        Grant::RefreshToken => {
            let token = secret(
                a.refresh_token_env.as_ref(),
                a.refresh_token_file.as_ref(),
                key,
                "refresh_token",
                base,
                diags,
            )?;
            own.add_secret("oauth2.refresh_token", token);
            form.insert(
                "refresh_token".into(),
                "{{ secret('oauth2.refresh_token') }}".into(),
            );
        }
        Grant::Password => {
            let Some(user) = &a.username else {
                diags.error(key, "grant = \"password\" needs username");
                return None;
            };
            let password = secret(
                a.password_env.as_ref(),
                a.password_file.as_ref(),
                key,
                "password",
                base,
                diags,
            )?;
            own.add_secret("oauth2.password", password);
            form.insert("username".into(), literal(user).into());
            form.insert("password".into(), "{{ secret('oauth2.password') }}".into());
        }
    }
    if let Some(scope) = &a.scope {
        form.insert("scope".into(), literal(scope).into());
    }
    for (name, value) in &a.params {
        match value.as_str() {
            Some(v) => {
                form.insert(name.clone(), literal(v).into());
            }
            None => diags.error(&format!("{key}.params.{name}"), "must be a string"),
        }
    }
    let client_auth = a.client_auth.unwrap_or(ClientAuth::Basic);
    let mut basic = None;
    match (client_auth, client_secret) {
        (ClientAuth::Body, secret) => {
            form.insert("client_id".into(), literal(client_id).into());
            if let Some(secret) = secret {
                own.add_secret("oauth2.client_secret", secret);
                form.insert(
                    "client_secret".into(),
                    "{{ secret('oauth2.client_secret') }}".into(),
                );
            }
        }
        (ClientAuth::Basic, Some(secret)) => {
            // RFC 6749 2.3.1: both parts form-urlencoded, then Basic.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!("{}:{}", enc(client_id), enc(&secret));
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            );
            match HeaderValue::from_str(&value) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    basic = Some((AUTHORIZATION, v));
                }
                Err(_) => diags.error(
                    key,
                    "the client secret holds characters a header cannot carry",
                ),
            }
        }
        (ClientAuth::Basic, None) => {
            // A public client (no secret) identifies itself in the body.
            form.insert("client_id".into(), literal(client_id).into());
        }
    }
    let body = Some(toml::Value::Table(form));
    let headers = toml::Table::new();
    let parts = Parts {
        url: token_url,
        method: &Some("POST".to_owned()),
        encoding: Encoding::Form,
        body: &body,
        headers: &headers,
        auth: None,
        format: ReplyFormat::Json,
        sees: super::probe::Sees::LoginStep(&[]),
    };
    let mut request = request_spec(&parts, key, base, &mut own, diags)?;
    request.auth = basic;
    let extract = TOKEN_FIELDS
        .iter()
        .filter_map(|f| JsonPath::parse(f).ok().map(|p| (Box::from(*f), p)))
        .collect();
    let ok_when = own
        .add_condition(&format!("{key}#token"), "access_token")
        .ok();
    let relogin = relogin_when(a.relogin_when.as_deref(), key, templates, diags)?;
    let step = Step {
        request,
        format: ReplyFormat::Json,
        extract: StepExtract::Json(extract),
        accept_status: None,
        ok_when,
    };
    let timeout = millis(
        a.timeout_ms,
        DEFAULT_LOGIN_TIMEOUT,
        &format!("{key}.timeout_ms"),
        diags,
    );
    let ttl = session_seconds(a.ttl_s, &format!("{key}.ttl_s"), diags);
    Some(Login::new(
        backend,
        vec![step],
        own,
        client,
        LoginSettings {
            ttl,
            idle_ttl: None,
            timeout,
        },
        relogin,
    ))
}

/// A config string as a template that renders to itself.
fn literal(text: &str) -> String {
    if text.contains("{{") || text.contains("{%") || text.contains("{#") {
        format!("{{% raw %}}{text}{{% endraw %}}")
    } else {
        text.to_owned()
    }
}
