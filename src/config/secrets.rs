//! Secrets in the config: read from an environment variable or a file
//! (systemd's `$CREDENTIALS_DIRECTORY` understood), never written in
//! `config.toml` itself, so the file can be shared and committed safely.

use std::path::{Path, PathBuf};

use super::diag::Diagnostics;

/// Reads a secret from exactly one of an environment variable or a file.
pub(super) fn secret(
    env: Option<&String>,
    file: Option<&String>,
    key: &str,
    what: &str,
    base: &Path,
    diags: &mut Diagnostics<'_>,
) -> Option<String> {
    match (env, file) {
        (Some(_), Some(_)) => {
            diags.error(
                &format!("{key}.{what}_env"),
                format!("set {what}_env or {what}_file, not both"),
            );
            None
        }
        (None, None) => {
            diags.error(key, format!("missing {what}_env or {what}_file"));
            None
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                diags.error(
                    &format!("{key}.{what}_env"),
                    format!("environment variable {var} is not set (or empty)"),
                );
                None
            }
        },
        (None, Some(path)) => {
            let k = format!("{key}.{what}_file");
            let path = match credential_path(path) {
                Ok(p) => base.join(p),
                Err(msg) => {
                    diags.error(&k, msg);
                    return None;
                }
            };
            match crate::files::read_to_string(&path, crate::files::MAX_SECRET_BYTES) {
                Ok(text) if !text.trim_end_matches(['\r', '\n']).is_empty() => {
                    Some(text.trim_end_matches(['\r', '\n']).to_owned())
                }
                Ok(_) => {
                    diags.error(&k, format!("{} is empty", path.display()));
                    None
                }
                Err(e) => {
                    let name = path
                        .file_name()
                        .map_or_else(|| "secret".to_owned(), |n| n.to_string_lossy().into_owned());
                    let why = crate::unreadable::explain(&e, &path, &name, &k);
                    diags.error(&k, format!("cannot read {}: {why}", path.display()));
                    None
                }
            }
        }
    }
}

/// Expands a leading `$CREDENTIALS_DIRECTORY` (or `${...}`), where systemd's
/// `LoadCredential=` puts secrets.
pub(super) fn credential_path(raw: &str) -> Result<PathBuf, String> {
    let rest = raw
        .strip_prefix("${CREDENTIALS_DIRECTORY}")
        .or_else(|| raw.strip_prefix("$CREDENTIALS_DIRECTORY"));
    match rest {
        None => Ok(PathBuf::from(raw)),
        Some(rest) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or(
                "CREDENTIALS_DIRECTORY is not set (it is, under systemd with LoadCredential=)",
            )?;
            Ok(PathBuf::from(dir).join(rest.trim_start_matches('/')))
        }
    }
}
