//! `thirdparty-gateway check`: everything `run` would load, loaded, without
//! binding a socket, like `nginx -t`. Run it before every reload.

use std::path::Path;

use crate::config::{self, Config, Diagnostic};
use crate::tls;

/// What `check` found in a config that loads.
#[derive(Debug)]
pub struct Report {
    /// One line that says what the gateway would serve.
    pub summary: String,
    /// Warnings: the config works but probably not as meant.
    pub warnings: Vec<Diagnostic>,
}

/// Loads and validates a config file and its certificate files. The error
/// lists every problem found, one per line, each naming file, line and key.
pub fn check(file: &Path) -> anyhow::Result<Report> {
    let config = config::load(file)?;
    let tls = describe_tls(&config)?;
    let paths = {
        let mut p: Vec<_> = config.router.paths().collect();
        p.sort_unstable();
        p.join(", ")
    };
    let mut summary = format!(
        "{}: ok: {} route(s) on {}, {} backend(s), listening on {} ({tls})",
        file.display(),
        config.router.len(),
        if paths.is_empty() { "no path" } else { &paths },
        config.backends.len(),
        config.server.listen,
    );
    let mut extras = Vec::new();
    if config.wrap.is_some() {
        extras.push("completion wrapper".to_owned());
    }
    if config.xuc.is_some() {
        extras.push("xuc token check".to_owned());
    }
    if let Some(demo) = &config.demo {
        extras.push(format!("demo on http://{}/demo/agent", demo.listen));
    }
    if let Some(ops) = config.ops.listen {
        extras.push(format!("ops on http://{ops}/"));
    }
    for extra in extras {
        summary.push_str(", ");
        summary.push_str(&extra);
    }
    Ok(Report {
        summary,
        warnings: config.warnings,
    })
}

fn describe_tls(config: &Config) -> anyhow::Result<String> {
    let Some(settings) = &config.tls else {
        return Ok("plain HTTP".into());
    };
    if settings.self_signed_if_missing && !settings.cert.exists() && !settings.key.exists() {
        return Ok(format!(
            "TLS: a self-signed demo certificate will be generated at {}",
            settings.cert.display()
        ));
    }
    tls::server_config(settings)?;
    Ok(format!("TLS: {}", settings.cert.display()))
}
