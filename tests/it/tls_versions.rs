//! `tls.min_version`: TLS 1.2 and 1.3 by default, 1.3 only for sites that
//! follow the "modern" profile; any other value is a located config error.
//! Real handshakes with rustls clients limited to one version.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::SupportedProtocolVersion;
use tokio::net::TcpStream;

use crate::support::*;

const ROUTE: &str = "[cors]\nallow_origins = [\"*\"]\n[[routes]]\n[routes.open]\n\
    event = \"EventRinging\"\nurl = \"https://crm.example.org/?n={{ caller }}\"\n";

/// Handshakes with a client that speaks only `version`; the version agreed.
async fn handshake(
    gw: &TestGateway,
    version: &'static SupportedProtocolVersion,
) -> Result<rustls::ProtocolVersion, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gw.ca.ca_der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(tls.get_ref().1.protocol_version().unwrap())
}

#[tokio::test]
async fn min_version_1_3_refuses_a_tls_1_2_client_and_serves_a_1_3_one() {
    let gw = start_gateway(&format!("{TLS_HEAD}min_version = \"1.3\"\n{ROUTE}")).await;
    let refused = handshake(&gw, &rustls::version::TLS12).await;
    assert!(refused.is_err(), "TLS 1.2 accepted: {refused:?}");
    assert_eq!(
        handshake(&gw, &rustls::version::TLS13).await,
        Ok(rustls::ProtocolVersion::TLSv1_3)
    );
    let reply = gw.client().post(gw.addr, None, SEED).await;
    assert_eq!(reply.json()["url"], "https://crm.example.org/?n=1001");
}

#[tokio::test]
async fn by_default_tls_1_2_and_1_3_are_both_served() {
    for config in [
        format!("{TLS_HEAD}{ROUTE}"),
        format!("{TLS_HEAD}min_version = \"1.2\"\n{ROUTE}"),
    ] {
        let gw = start_gateway(&config).await;
        assert_eq!(
            handshake(&gw, &rustls::version::TLS12).await,
            Ok(rustls::ProtocolVersion::TLSv1_2)
        );
        assert_eq!(
            handshake(&gw, &rustls::version::TLS13).await,
            Ok(rustls::ProtocolVersion::TLSv1_3)
        );
    }
}

#[test]
fn another_min_version_is_a_located_config_error() {
    let dir = tempfile::TempDir::new().unwrap();
    TestCa::new().write(dir.path());
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("{TLS_HEAD}min_version = \"1.1\"\n{ROUTE}")).unwrap();
    let err = thirdparty_gateway::config::load(&path)
        .expect_err("min_version 1.1 must be refused")
        .to_string();
    assert!(err.contains("config.toml:4"), "{err}");
    assert!(err.contains("tls.min_version"), "{err}");
    assert!(err.contains("\"1.1\""), "{err}");
}
