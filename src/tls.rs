//! TLS termination with rustls: TLS 1.2 and 1.3 (or 1.3 only), ALPN `h2` then
//! `http/1.1`, certificate chain and key from PEM files. For the demo config
//! only, a self-signed pair for `localhost` is generated when both files are
//! missing, so the first run works out of the box.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// `[tls]`, with paths resolved against the config's folder.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Demo only: make a self-signed pair when both files are missing.
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

/// Generates the demo pair when allowed and both files are missing.
pub fn ensure_demo_pair(settings: &TlsSettings) -> Result<Option<Generated>, TlsError> {
    let (cert_exists, key_exists) = (settings.cert.exists(), settings.key.exists());
    match (cert_exists, key_exists) {
        (true, true) => return Ok(None),
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
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
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

/// Loads the pair and builds the rustls server config.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_err = |path: &Path, what: String| TlsError::Pem {
        path: path.to_owned(),
        what,
    };
    let chain = CertificateDer::pem_file_iter(&settings.cert)
        .map_err(|e| pem_err(&settings.cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(&settings.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(&settings.cert, "no CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| pem_err(&settings.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(settings.min_version.versions())?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
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
            for cert in
                CertificateDer::pem_file_iter(path).map_err(|e| pem_err(path, e.to_string()))?
            {
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
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| pem_err(cert, e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err(cert, e.to_string()))?;
            if chain.is_empty() {
                return Err(pem_err(cert, "no CERTIFICATE block found".into()));
            }
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e.to_string()))?;
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
