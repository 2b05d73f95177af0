//! What to say when the gateway cannot read a file it needs because of its
//! rights: the packaged unit runs it as a user systemd makes up
//! (`DynamicUser=`), so a file only root may read (a certbot key, a secret
//! in mode 0600) is out of its reach, while `sudo thirdparty-gateway check`
//! reads it fine. systemd's `LoadCredential=` hands such a file over.

use std::io;
use std::path::Path;

/// `error`'s text, with the way out when it is a permission error: hand the
/// file over as credential `credential` and name it in `key`.
pub fn explain(error: &io::Error, path: &Path, credential: &str, key: &str) -> String {
    if error.kind() != io::ErrorKind::PermissionDenied {
        return error.to_string();
    }
    format!(
        "{error}: the service runs as a user systemd makes up (DynamicUser=), which cannot read \
         a file only root may read; hand it over with `LoadCredential={credential}:{}` in a \
         drop-in (systemctl edit thirdparty-gateway) and set {key} = \
         \"$CREDENTIALS_DIRECTORY/{credential}\"",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permission_error_points_to_load_credential() {
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let text = explain(&denied, Path::new("/etc/k.pem"), "tls-key", "tls.key");
        assert!(text.contains("DynamicUser="), "{text}");
        assert!(
            text.contains("`LoadCredential=tls-key:/etc/k.pem`")
                && text.ends_with("set tls.key = \"$CREDENTIALS_DIRECTORY/tls-key\""),
            "{text}"
        );
        let missing = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(
            explain(&missing, Path::new("/etc/k.pem"), "tls-key", "tls.key"),
            missing.to_string()
        );
    }
}
