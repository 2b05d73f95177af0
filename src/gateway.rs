//! The gateway's runtime state: a validated config plus what is built from it
//! at start (the TLS acceptor). One `Arc<Gateway>` is shared by all
//! connections; nothing in it is mutated while serving.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::tls::{self, TlsError};

/// Everything a request needs, built once.
pub struct Gateway {
    /// The validated config.
    pub config: Config,
    /// `None` when the config asks for plain HTTP.
    pub tls: Option<TlsAcceptor>,
}

impl Gateway {
    /// Builds the runtime state, generating the demo certificate if the config
    /// allows it and loading the certificate pair.
    pub fn new(config: Config) -> Result<Arc<Self>, TlsError> {
        let tls = match &config.tls {
            None => {
                tracing::warn!("serving plain HTTP (server.plain_http = true): browsers on an HTTPS XucMgt will block it as mixed content");
                None
            }
            Some(settings) => {
                if let Some(generated) = tls::ensure_demo_pair(settings)? {
                    tracing::warn!(
                        cert = %generated.cert.display(),
                        sha256 = %generated.fingerprint,
                        "generated a self-signed demo certificate for localhost; do not use it in production"
                    );
                }
                Some(TlsAcceptor::from(tls::server_config(settings)?))
            }
        };
        Ok(Arc::new(Self { config, tls }))
    }
}
