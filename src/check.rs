//! `thirdparty-gateway check`: everything `run` would load, loaded, without
//! binding a socket, like `nginx -t`. Run it before every reload.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::{self, Config, Diagnostic};
use crate::unreadable;

/// What `check` found in a config that loads.
#[derive(Debug)]
pub struct Report {
    /// One line that says what the gateway would serve.
    pub summary: String,
    /// Warnings: the config works but probably not as meant.
    pub warnings: Vec<Diagnostic>,
    /// Files this check read as root that the packaged service, running as
    /// a user systemd makes up, cannot read, each with the way out.
    pub root_only: Vec<String>,
}

/// Loads and validates a config file and its certificate files. The error
/// lists every problem found, one per line, each naming file, line and key.
pub fn check(file: &Path) -> anyhow::Result<Report> {
    let config = config::load(file)?;
    let tls = describe_tls(&config);
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
    let root_only = if running_as_root() {
        root_only(&config)
    } else {
        Vec::new()
    };
    Ok(Report {
        summary,
        warnings: config.warnings,
        root_only,
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The files the config names that root owns and only root (or its group)
/// may read: `sudo check` reads them, the service cannot. A file the
/// service's own user owns (the demo pair in its state directory) is not
/// one of them, whatever the folders above it.
fn root_only(config: &Config) -> Vec<String> {
    let credential = |path: &Path| match &config.tls {
        Some(tls) if tls.key == path => ("tls-key".to_owned(), "tls.key".to_owned()),
        Some(tls) if tls.cert == path => ("tls-cert".to_owned(), "tls.cert".to_owned()),
        _ => (
            path.file_name()
                .map_or_else(|| "secret".to_owned(), |n| n.to_string_lossy().into_owned()),
            "its key".to_owned(),
        ),
    };
    config
        .files
        .iter()
        .filter(|path| {
            std::fs::metadata(path).is_ok_and(|m| m.uid() == 0) && !readable_by_others(path)
        })
        .map(|path| {
            let (name, key) = credential(path);
            let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
            format!(
                "{}: {}",
                path.display(),
                unreadable::explain(&denied, path, &name, &key)
            )
        })
        .collect()
}

/// Whether a user that is neither owner nor in the group may read `path`:
/// the file readable by others, every folder above it searchable.
fn readable_by_others(path: &Path) -> bool {
    let mode = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.mode());
    mode(path) & 0o004 != 0
        && path
            .ancestors()
            .skip(1)
            .filter(|dir| !dir.as_os_str().is_empty())
            .all(|dir| mode(dir) & 0o001 != 0)
}

fn describe_tls(config: &Config) -> String {
    let Some(settings) = &config.tls else {
        return "plain HTTP".into();
    };
    if settings.self_signed_if_missing && !settings.cert.exists() && !settings.key.exists() {
        return format!(
            "TLS: a self-signed demo certificate will be generated at {}",
            settings.cert.display()
        );
    }
    // The pair was read and paired while loading (`config::load`).
    format!("TLS: {}", settings.cert.display())
}
