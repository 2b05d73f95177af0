//! Credentials sent over plain `http://` to another host: an auth header
//! (`DOLAPIKEY`, basic, bearer), a password or secret a template reads
//! (`secret("...")`), or a session a login step got (`login.*`) can be read
//! by anyone on the way to the CRM. A warning, since a CRM on a trusted
//! segment may only speak http; a CRM on this host (loopback) is fine.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::diag::Diagnostics;
use super::raw::{AuthKind, LoginField, RawAuth, RawBackend};

/// Warns, at the key that sends it, about each credential a backend or one
/// of its login steps sends over plain http to another host.
pub(super) fn warn(backends: &BTreeMap<String, RawBackend>, diags: &mut Diagnostics<'_>) {
    for (name, b) in backends {
        let key = format!("backends.{name}");
        if let Some(host) = remote_http(&b.url) {
            let mut sent = Vec::new();
            if let Some(auth) = &b.auth {
                sent.push(auth_words(auth));
            }
            sent.extend(template_credentials(&b.url, &b.headers, b.body.as_ref()));
            say(diags, &format!("{key}.url"), &host, &sent);
        }
        if let Some(auth) = b.oauth2() {
            if let Some(host) = auth.token_url.as_deref().and_then(remote_http) {
                let sent = vec!["the OAuth2 client secret or refresh token".to_owned()];
                say(diags, &format!("{key}.auth.token_url"), &host, &sent);
            }
        }
        let steps = b
            .login
            .iter()
            .filter_map(LoginField::own)
            .flat_map(|l| &l.steps);
        for (i, step) in steps.enumerate() {
            let Some(host) = remote_http(&step.url) else {
                continue;
            };
            let mut sent: Vec<String> = step.auth.iter().map(auth_words).collect();
            sent.extend(template_credentials(
                &step.url,
                &step.headers,
                step.body.as_ref(),
            ));
            say(diags, &format!("{key}.login.steps[{i}].url"), &host, &sent);
        }
    }
}

fn say(diags: &mut Diagnostics<'_>, key: &str, host: &str, sent: &[String]) {
    if sent.is_empty() {
        return;
    }
    diags.warn(
        key,
        format!(
            "{} goes to {host} over plain http: anyone on the network on the way can read it; \
             use https:// (with ca_file for a CRM whose certificate an internal CA signs), \
             or run the CRM on this host (127.0.0.1)",
            sent.join(" and ")
        ),
    );
}

/// The host of a plain `http://` url that is not this machine.
fn remote_http(template: &str) -> Option<String> {
    let url = url::Url::parse(template.trim()).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = url.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| host.to_owned())
}

/// What an `auth` table sends, in words.
fn auth_words(auth: &RawAuth) -> String {
    match auth.kind {
        AuthKind::Basic => "the password of auth.type = \"basic\"".to_owned(),
        AuthKind::Bearer => "the token of auth.type = \"bearer\"".to_owned(),
        AuthKind::Header => format!(
            "the {} header of auth.type = \"header\"",
            auth.header.as_deref().unwrap_or("auth")
        ),
        AuthKind::OAuth2 => "the OAuth2 access token".to_owned(),
    }
}

/// The credentials a request's templates put in it: a `secret(...)` or the
/// session's `login.*` values.
fn template_credentials(
    url: &str,
    headers: &toml::Table,
    body: Option<&toml::Value>,
) -> Vec<String> {
    let mut text = url.to_owned();
    for (name, value) in headers {
        text.push_str(name);
        text.push_str(&value.to_string());
    }
    if let Some(body) = body {
        text.push_str(&body.to_string());
    }
    let mut sent = Vec::new();
    if text.contains("secret(") {
        sent.push("a secret(...) value".to_owned());
    }
    if text.contains("login.") || text.contains("login[") {
        sent.push("the session (login.*)".to_owned());
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_to_another_host_counts() {
        assert_eq!(
            remote_http("http://crm.lan/api?n={{ caller }}").as_deref(),
            Some("crm.lan")
        );
        assert_eq!(remote_http("https://crm.lan/api"), None);
        for local in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://[::1]/x",
        ] {
            assert_eq!(remote_http(local), None, "{local}");
        }
    }
}
