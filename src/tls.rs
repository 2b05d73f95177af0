//! TLS termination with rustls: TLS 1.2 and 1.3 (or 1.3 only), ALPN `h2` then
//! `http/1.1`, certificate chain and key from PEM files. For the demo config
//! only, a self-signed pair for `localhost` is generated when both files are
//! missing, so the first run works out of the box; it lives 90 days and is
//! replaced at start when it nears its end.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use time::OffsetDateTime;

use crate::constants::{DEMO_CERT_DAYS, DEMO_CERT_RENEW_DAYS};

/// `[tls]`, with paths resolved against the config's folder.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Demo only: make a self-signed pair when both files are missing, and
    /// replace a generated one near its end.
    pub self_signed_if_missing: bool,
    /// The oldest TLS version clients may use.
    pub min_version: MinVersion,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        what: String,
    },
    /// Only one of the two files exists, so generating a pair would clobber it.
    #[error("{} exists but {} does not: supply both, or remove both to generate a demo pair", present.display(), missing.display())]
    HalfPair {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// Writing a generated certificate failed.
    #[error("{}: cannot write generated certificate", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("cannot generate a self-signed certificate")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the pair (e.g. key does not match certificate).
    #[error("certificate and key rejected")]
    Rustls(#[from] rustls::Error),
}

/// The oldest TLS version the listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3: what every XucMgt browser speaks.
    #[default]
    Tls12,
    /// TLS 1.3 only, for sites that follow the "modern" profile.
    Tls13,
}

impl MinVersion {
    fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            MinVersion::Tls12 => &BOTH,
            MinVersion::Tls13 => &ONLY_13,
        }
    }
}

/// A certificate the gateway generated, for the startup log.
#[derive(Debug)]
pub struct Generated {
    /// Where the certificate was written.
    pub cert: PathBuf,
    /// SHA-256 fingerprint of the certificate, colon-separated hex.
    pub fingerprint: String,
}

/// The common name of a generated demo certificate, which tells it from
/// the operator's own (never replaced).
const DEMO_NAME: &str = "thirdparty-gateway demo certificate";

/// The common name of the demo certificates earlier versions generated
/// (rcgen's default, valid 1975–4096): replaced at start too.
const OLD_DEMO_NAME: &str = "rcgen self signed cert";

/// Generates the demo pair when allowed and both files are missing, or
/// replaces a generated one that has expired, expires within
/// [`DEMO_CERT_RENEW_DAYS`], or was made to last longer than
/// [`DEMO_CERT_DAYS`] (by an earlier version).
pub fn ensure_demo_pair(settings: &TlsSettings) -> Result<Option<Generated>, TlsError> {
    ensure_demo_pair_at(settings, OffsetDateTime::now_utc())
}

fn ensure_demo_pair_at(
    settings: &TlsSettings,
    now: OffsetDateTime,
) -> Result<Option<Generated>, TlsError> {
    let (cert_exists, key_exists) = (settings.cert.exists(), settings.key.exists());
    match (cert_exists, key_exists) {
        (true, true) => {
            if !settings.self_signed_if_missing || !demo_pair_is_stale(&settings.cert, now) {
                return Ok(None);
            }
            for path in [&settings.cert, &settings.key] {
                fs::remove_file(path).map_err(|source| TlsError::Write {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        (true, false) => return Err(half(&settings.cert, &settings.key)),
        (false, true) => return Err(half(&settings.key, &settings.cert)),
        (false, false) if !settings.self_signed_if_missing => {
            return Err(TlsError::Pem {
                path: settings.cert.clone(),
                what: "no such file (tls.self_signed_if_missing is false)".into(),
            })
        }
        (false, false) => {}
    }
    let certified = demo_pair(now)?;
    for path in [&settings.cert, &settings.key] {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|source| TlsError::Write {
                path: dir.to_owned(),
                source,
            })?;
        }
    }
    write_file(
        &settings.key,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(&settings.cert, certified.cert.pem().as_bytes(), 0o644)?;
    Ok(Some(Generated {
        cert: settings.cert.clone(),
        fingerprint: fingerprint(certified.cert.der()),
    }))
}

/// A self-signed pair for `localhost` and `127.0.0.1`, valid from a few
/// minutes ago (clocks differ) for [`DEMO_CERT_DAYS`].
fn demo_pair(now: OffsetDateTime) -> Result<rcgen::CertifiedKey<KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, DEMO_NAME);
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(DEMO_CERT_DAYS);
    let signing_key = KeyPair::generate()?;
    let cert = params.self_signed(&signing_key)?;
    Ok(rcgen::CertifiedKey { cert, signing_key })
}

/// Whether the certificate at `path` is a demo one the gateway generated
/// (self-signed, with its common name) that is due for replacement. Any
/// other certificate, or one that does not parse, is left alone.
fn demo_pair_is_stale(path: &Path, now: OffsetDateTime) -> bool {
    let Ok(bytes) = crate::files::read(path, crate::files::MAX_PEM_BYTES) else {
        return false;
    };
    let Some(Ok(der)) = CertificateDer::pem_slice_iter(&bytes).next() else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let generated = cert.subject() == cert.issuer()
        && cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .any(|cn| cn == DEMO_NAME || cn == OLD_DEMO_NAME);
    let not_after = cert.validity().not_after.to_datetime();
    generated
        && (not_after < now + time::Duration::days(DEMO_CERT_RENEW_DAYS)
            || not_after > now + time::Duration::days(DEMO_CERT_DAYS + 1))
}

fn half(present: &Path, missing: &Path) -> TlsError {
    TlsError::HalfPair {
        present: present.to_owned(),
        missing: missing.to_owned(),
    }
}

/// Writes a new file with `mode` from the start, so a key is never readable by others.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        f.write_all(contents)?;
        f.sync_all()
    };
    write().map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

/// A PEM file's bytes: a regular file within [`crate::files::MAX_PEM_BYTES`].
fn pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::files::read(path, crate::files::MAX_PEM_BYTES).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: e.to_string(),
    })
}

/// Loads the pair and builds the rustls server config.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_err = |path: &Path, what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let chain =
        CertificateDer::pem_slice_iter(&server_pem(&settings.cert, "tls-cert", "tls.cert")?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(&settings.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(&settings.cert, "no CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&server_pem(&settings.key, "tls-key", "tls.key")?)
        .map_err(|e| pem_err(&settings.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(settings.min_version.versions())?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A PEM file that could not be read; a permission error says how to hand
/// the file to the service (`credential`, named in config key `key`).
/// The server's certificate or key file: read as [`pem_file`] does, and a
/// file the service cannot read explained (its dynamic user, and how to hand
/// the file over as the `credential` of `key`).
fn server_pem(path: &Path, credential: &str, key: &str) -> Result<Vec<u8>, TlsError> {
    crate::files::read(path, crate::files::MAX_PEM_BYTES).map_err(|io| TlsError::Pem {
        path: path.to_owned(),
        what: format!(
            "cannot read: {}",
            crate::unreadable::explain(&io, path, credential, key)
        ),
    })
}

/// SHA-256 of a DER certificate as `AB:CD:...`, as browsers show it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Builds the TLS config a backend client uses: verification always on,
/// against `ca_file` alone when given (an internal CRM's CA), else the
/// system's CA store; optionally a client certificate for mutual TLS.
pub fn client_config(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let pem_err = |path: &Path, what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let roots = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem_file(path)?) {
                let cert = cert.map_err(|e| pem_err(path, e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| pem_err(path, format!("not a usable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(pem_err(path, "no CERTIFICATE block found".into()));
            }
            Arc::new(roots)
        }
        None => Arc::clone(system_roots()),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(&pem_file(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err(cert, e.to_string()))?;
            if chain.is_empty() {
                return Err(pem_err(cert, "no CERTIFICATE block found".into()));
            }
            let key = PrivateKeyDer::from_pem_slice(&pem_file(key)?)
                .map_err(|e| pem_err(key, e.to_string()))?;
            builder.with_client_auth_cert(chain, key)?
        }
    })
}

/// The system's CA certificates, read once per process.
fn system_roots() -> &'static Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(errors = ?found.errors, "no system CA certificates found (install ca-certificates): https backends without ca_file will fail");
        }
        Arc::new(roots)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path) -> TlsSettings {
        TlsSettings {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            self_signed_if_missing: true,
            min_version: MinVersion::default(),
        }
    }

    fn validity(path: &Path) -> (OffsetDateTime, OffsetDateTime) {
        let der = CertificateDer::from_pem_file(path).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        (
            cert.validity().not_before.to_datetime(),
            cert.validity().not_after.to_datetime(),
        )
    }

    /// Writes a self-signed pair named `name`, valid until `not_after`.
    fn write_pair(s: &TlsSettings, name: &str, not_after: OffsetDateTime) {
        let mut params = CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_before = not_after - time::Duration::days(365);
        params.not_after = not_after;
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        fs::write(&s.cert, cert.pem()).unwrap();
        fs::write(&s.key, key.serialize_pem()).unwrap();
    }

    #[test]
    fn a_generated_demo_certificate_lives_ninety_days() {
        let dir = tempfile::TempDir::new().unwrap();
        let s = settings(dir.path());
        let now = OffsetDateTime::now_utc();
        assert!(ensure_demo_pair_at(&s, now).unwrap().is_some());
        let (from, to) = validity(&s.cert);
        assert!(
            from <= now && from > now - time::Duration::hours(1),
            "{from}"
        );
        let days = (to - now).whole_days();
        assert!(
            (DEMO_CERT_DAYS - 1..=DEMO_CERT_DAYS).contains(&days),
            "{to}"
        );
        assert!(server_config(&s).is_ok());
        // Fresh: kept as it is.
        assert!(ensure_demo_pair_at(&s, now).unwrap().is_none());
        assert!(ensure_demo_pair_at(&s, now + time::Duration::days(80))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_demo_certificate_near_its_end_or_from_an_earlier_version_is_replaced() {
        let now = OffsetDateTime::now_utc();
        for not_after in [
            now - time::Duration::days(1),
            now + time::Duration::days(DEMO_CERT_RENEW_DAYS - 1),
        ] {
            let dir = tempfile::TempDir::new().unwrap();
            let s = settings(dir.path());
            write_pair(&s, DEMO_NAME, not_after);
            assert!(
                ensure_demo_pair_at(&s, now).unwrap().is_some(),
                "{not_after}"
            );
            assert!(validity(&s.cert).1 > now + time::Duration::days(DEMO_CERT_DAYS - 1));
            assert!(
                server_config(&s).is_ok(),
                "the new key matches the new certificate"
            );
        }
        // What earlier versions generated: valid until 4096.
        let dir = tempfile::TempDir::new().unwrap();
        let s = settings(dir.path());
        let old = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        fs::write(&s.cert, old.cert.pem()).unwrap();
        fs::write(&s.key, old.signing_key.serialize_pem()).unwrap();
        assert!(validity(&s.cert).1.year() > 4000);
        assert!(ensure_demo_pair_at(&s, now).unwrap().is_some());
        assert!(validity(&s.cert).1 < now + time::Duration::days(DEMO_CERT_DAYS + 1));
    }

    #[test]
    fn an_operators_certificate_is_never_replaced() {
        let now = OffsetDateTime::now_utc();
        let dir = tempfile::TempDir::new().unwrap();
        let s = settings(dir.path());
        write_pair(&s, "crm-gateway.example.org", now - time::Duration::days(1));
        let before = fs::read(&s.cert).unwrap();
        assert!(ensure_demo_pair_at(&s, now).unwrap().is_none());
        assert_eq!(fs::read(&s.cert).unwrap(), before);
        // Nor a demo one when generating is not allowed.
        write_pair(&s, DEMO_NAME, now - time::Duration::days(1));
        let before = fs::read(&s.cert).unwrap();
        let strict = TlsSettings {
            self_signed_if_missing: false,
            ..settings(dir.path())
        };
        assert!(ensure_demo_pair_at(&strict, now).unwrap().is_none());
        assert_eq!(fs::read(&s.cert).unwrap(), before);
    }
}
