//! `secret("NAME")` in a template: a credential used inside a request
//! (vTiger's `md5(login.token ~ secret("VTIGER_ACCESS_KEY"))`, EspoCRM's HMAC
//! key) without writing it in `config.toml`.
//!
//! Names must be quoted literals, so every secret a config uses is known and
//! read when the config loads: a missing one is a `check` error, not a
//! failed call, and the hot path reads no file. A secret is the file
//! `$CREDENTIALS_DIRECTORY/NAME` when systemd's `LoadCredential=` provides
//! it, else the environment variable `NAME`. Its value is never logged; a
//! template that reads one is marked sensitive, and `simulate` shows what it
//! rendered as `[redacted]`.

use std::path::PathBuf;

/// The longest secret name accepted (an environment variable or file name).
const MAX_NAME: usize = 128;

/// The names in every `secret("NAME")` / `secret('NAME')` of a template's
/// source; `Err` when one is not a quoted literal or not a plain name.
pub(super) fn names(source: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("secret") {
        let before = source.len() - rest.len() + at;
        let after = &rest[at + "secret".len()..];
        rest = after;
        let ident_before = source[..before]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let call = after.trim_start();
        if ident_before || !call.starts_with('(') {
            continue;
        }
        let arg = call[1..].trim_start();
        let quote = match arg.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => return Err("secret() takes a quoted name, e.g. secret(\"CRM_KEY\")".into()),
        };
        let Some(end) = arg[1..].find(quote) else {
            return Err("secret(): unterminated name".into());
        };
        let name = &arg[1..1 + end];
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            || name.starts_with('.')
        {
            return Err(format!(
                "secret({name:?}): a name is letters, digits, '_', '-' or '.'"
            ));
        }
        out.push(name.to_owned());
    }
    Ok(out)
}

/// Reads one secret: the credentials directory first, then the environment.
pub(super) fn read(name: &str) -> Result<String, String> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = PathBuf::from(dir).join(name);
        if let Ok(text) = crate::files::read_to_string(&path, crate::files::MAX_SECRET_BYTES) {
            let value = text.trim_end_matches(['\r', '\n']);
            if !value.is_empty() {
                return Ok(value.to_owned());
            }
        }
    }
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!(
            "secret({name:?}) has no value: no file {name} in $CREDENTIALS_DIRECTORY and no environment variable {name}; give it one with `export {name}=...` before `check` or `run`, or in the service with `LoadCredential={name}:/path/to/file` (systemctl edit thirdparty-gateway)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_in_any_quoting_and_only_as_calls() {
        assert_eq!(
            names(r#"{{ md5(login.token ~ secret("A_1")) }}{{ secret ( 'b.c' ) }}"#).unwrap(),
            ["A_1", "b.c"]
        );
        assert!(names("{{ mysecret(x) }}{{ user.secret }}{{ secret }}")
            .unwrap()
            .is_empty());
        assert!(names("{{ secret(name) }}").is_err());
        assert!(names(r#"{{ secret("../etc/passwd") }}"#).is_err());
        assert!(names(r#"{{ secret("x "#).is_err());
    }
}
