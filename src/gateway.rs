//! The gateway's runtime state. A [`Gateway`] is one generation: a validated
//! config plus what is built from it (TLS acceptor, HTTP settings). [`Live`]
//! holds the current generation behind an atomic pointer: a reload builds a
//! whole new generation and swaps it in, and every request keeps the
//! generation it started with until it ends. Nothing else is shared.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_rustls::TlsAcceptor;

use crate::config::{self, Config};
use crate::console::Console;
use crate::metrics::Metrics;
use crate::tls::{self, TlsError};
use crate::wrap::WrapSecret;
use crate::wrap::Wrapper;

/// One generation of everything a request needs, built once.
pub struct Gateway {
    /// The validated config.
    pub config: Config,
    /// `None` when the config asks for plain HTTP.
    pub tls: Option<TlsAcceptor>,
    /// HTTP/1.1 and HTTP/2 connection settings (timeouts, stream limits).
    pub http: Http,
    /// 1 at start, +1 per successful reload.
    pub generation: u64,
    /// Process-wide metrics (the same across generations).
    pub metrics: Arc<Metrics>,
    /// The completion wrapper, when `[wrap]` is configured.
    pub wrapper: Option<Wrapper>,
    /// Where the process is in a stop (the same across generations).
    pub stop: Arc<Stop>,
    /// The ops console's recorder of calls, when it or the OTLP export is
    /// on (the same across generations).
    pub console: Option<Arc<Console>>,
    /// When (seconds since the epoch) a call to a path without routes was
    /// last logged: said at most once a minute per generation.
    pub unknown_path_logged: std::sync::atomic::AtomicU64,
}

impl Gateway {
    /// Starts the sync task of each backend's caller directory (once; not
    /// without a runtime); each ends with this generation (or hands its
    /// index to the next one).
    pub fn start_directories(&self) {
        for backend in self.config.backends.values() {
            crate::directory::spawn(
                backend,
                self.config.router.shared_templates(),
                Arc::clone(&self.metrics),
            );
        }
    }
}

/// How far a stop has gone, for the health check and for the log lines of
/// requests a stop leaves unanswered.
#[derive(Debug, Default)]
pub struct Stop {
    draining: AtomicBool,
    gave_up: AtomicBool,
}

impl Stop {
    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether `server.shutdown_grace` ran out with requests still in
    /// flight: they are dropped unanswered.
    pub fn gave_up(&self) -> bool {
        self.gave_up.load(Ordering::Relaxed)
    }
}

impl Gateway {
    /// Builds a generation, generating the demo certificate if the config
    /// allows it and loading the certificate pair.
    pub fn new(
        config: Config,
        generation: u64,
        (metrics, console): (Arc<Metrics>, Option<Arc<Console>>),
        stop: Arc<Stop>,
    ) -> Result<Self, TlsError> {
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
        let http = http_builder(&config);
        let wrapper = match &config.wrap {
            None => None,
            Some(settings) => {
                let secret = match &settings.secret {
                    WrapSecret::Value(bytes) => bytes.clone(),
                    WrapSecret::Generate(path) => generated_secret(path)?,
                };
                Some(Wrapper::from_settings(settings, &secret, &config.cors))
            }
        };
        Ok(Self {
            config,
            tls,
            http,
            generation,
            metrics,
            wrapper,
            stop,
            console,
            unknown_path_logged: std::sync::atomic::AtomicU64::new(0),
        })
    }
}

/// Demo only: the wrapper secret file, generated (random, mode 0600) when
/// it does not exist yet.
fn generated_secret(path: &Path) -> Result<Vec<u8>, TlsError> {
    if !path.exists() {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(
            |_| TlsError::Pem {
                path: path.to_owned(),
                what: "no randomness available to generate the wrapper secret".into(),
            },
        )?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        tls::write_file(path, hex.as_bytes(), 0o600)?;
        tracing::warn!(file = %path.display(), "generated a wrapper secret (demo); set wrap.secret_env or secret_file in production");
    }
    crate::files::read(path, crate::files::MAX_SECRET_BYTES)
        .map(|b| b.trim_ascii_end().to_vec())
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            what: format!("cannot read the wrapper secret: {e}"),
        })
}

/// The HTTP settings, by what is known of a connection before its first
/// bytes.
pub struct Http {
    /// For TLS connections whose ALPN chose HTTP/1.1 (or nothing). No
    /// header-read timer, because hyper's arms one per request (a boxed
    /// timer entry): the connection's watcher enforces
    /// `server.header_read_timeout` instead (`idle::Activity`). Such a
    /// connection is built only once its first bytes came, and again after
    /// each time it was parked (`park`).
    pub http1: http1::Builder,
    /// For connections that may be HTTP/2 (ALPN `h2`, plain HTTP): the
    /// protocol is sniffed from the first bytes, into a few bytes of
    /// buffer rather than hyper's 8 KiB HTTP/1 read buffer, so a connection
    /// that has sent nothing yet holds little memory (idle connections are
    /// what a flood is made of). A connection without a request is not a
    /// late head here: hyper's own header-read timer applies if it turns
    /// out to be HTTP/1.
    pub sniffed: auto::Builder<TokioExecutor>,
}

fn http_builder(config: &Config) -> Http {
    let s = &config.server;
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let mut sniffed = auto::Builder::new(TokioExecutor::new());
    sniffed
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(s.header_read_timeout))
        .keep_alive(true);
    sniffed
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams);
    Http { http1, sniffed }
}

/// The generation being served, swappable at runtime.
pub struct Live {
    current: ArcSwap<Gateway>,
    file: PathBuf,
    listen_override: Option<SocketAddr>,
    generation: AtomicU64,
    stop: Arc<Stop>,
    /// The public listener's address, once bound: systemd's status text
    /// names it at start and after every reload.
    serving_on: OnceLock<SocketAddr>,
    /// Process-wide metrics.
    pub metrics: Arc<Metrics>,
    /// The ops console, process-wide like the metrics: `[ops]` changes
    /// take effect at a restart.
    pub console: Option<Arc<Console>>,
}

impl Live {
    /// Serves `config` (read from `file`) as generation 1.
    pub fn new(
        mut config: Config,
        file: &Path,
        listen_override: Option<SocketAddr>,
    ) -> Result<Arc<Self>, TlsError> {
        if let Some(addr) = listen_override {
            config.server.listen = addr;
        }
        let metrics = Metrics::shared();
        let settings = &config.ops.console;
        let console =
            (settings.page || settings.otlp.is_some()).then(|| Console::new(settings.clone()));
        let stop = Arc::new(Stop::default());
        let gateway = Arc::new(Gateway::new(
            config,
            1,
            (Arc::clone(&metrics), console.clone()),
            Arc::clone(&stop),
        )?);
        metrics.set_generation(1);
        gateway.start_directories();
        Ok(Arc::new(Self {
            current: ArcSwap::new(gateway),
            file: file.to_owned(),
            listen_override,
            generation: AtomicU64::new(1),
            stop,
            serving_on: OnceLock::new(),
            metrics,
            console,
        }))
    }

    /// Records where the public listener is bound, for [`Live::status`].
    pub fn serving_on(&self, addr: SocketAddr) {
        let _ = self.serving_on.set(addr);
    }

    /// systemd's status text: `serving on 127.0.0.1:8443, {state}`.
    pub fn status(&self, state: &str) -> String {
        match self.serving_on.get() {
            Some(addr) => format!("serving on {addr}, {state}"),
            None => format!("serving, {state}"),
        }
    }

    /// The generation to serve a new request or connection with.
    pub fn current(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Re-reads the config file and certificates and swaps them in. On any
    /// error the current generation keeps serving. Returns the new generation.
    pub fn reload(&self) -> anyhow::Result<u64> {
        let result = self.build_next();
        self.metrics
            .reload(result.as_ref().map(|g| *g).map_err(|_| ()));
        result
    }

    fn build_next(&self) -> anyhow::Result<u64> {
        let mut config = config::load(&self.file)?;
        if let Some(addr) = self.listen_override {
            config.server.listen = addr;
        }
        let old = self.current();
        for (what, changed) in [
            (
                "server.listen",
                config.server.listen != old.config.server.listen,
            ),
            (
                "server.max_connections",
                config.server.max_connections != old.config.server.max_connections,
            ),
            (
                "server.workers",
                config.server.workers != old.config.server.workers,
            ),
            ("ops", config.ops != old.config.ops),
        ] {
            if changed {
                tracing::warn!(
                    "{what} changed: it takes effect at the next restart, not on reload"
                );
            }
        }
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        // Logins that did not change keep their session and backoff.
        for (name, backend) in &config.backends {
            let (Some(login), Some(before)) = (
                backend.login.as_ref().filter(|l| l.owner() == &**name),
                old.config.backends.get(name).and_then(|b| b.login.as_ref()),
            ) else {
                continue;
            };
            if login.adopt(before) {
                tracing::debug!(backend = %name, "login unchanged: its session carries over");
            }
        }

        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let gateway = Gateway::new(
            config,
            generation,
            (Arc::clone(&self.metrics), self.console.clone()),
            Arc::clone(&self.stop),
        )?;
        // So do directories, once nothing can fail the reload: a built
        // index is kept, and synced on.
        for (name, backend) in &gateway.config.backends {
            let (Some(directory), Some(before)) = (
                backend.directory.as_ref(),
                old.config
                    .backends
                    .get(name)
                    .and_then(|b| b.directory.as_ref()),
            ) else {
                continue;
            };
            if directory.adopt(before) {
                tracing::info!(backend = %name, "directory unchanged: its index carries over");
            } else if directory.definition != before.definition {
                tracing::info!(backend = %name, "directory changed (what it reads or keeps): a full sync builds a new index");
            }
        }
        let gateway = Arc::new(gateway);
        self.current.store(Arc::clone(&gateway));
        gateway.start_directories();
        self.generation.store(generation, Ordering::Relaxed);
        Ok(generation)
    }

    /// Marks the gateway as shutting down (health checks turn 503).
    pub fn start_draining(&self) {
        self.stop.draining.store(true, Ordering::Relaxed);
    }

    /// Marks the requests still in flight when `server.shutdown_grace` ran
    /// out as dropped by the stop, not by their clients.
    pub fn give_up(&self) {
        self.stop.gave_up.store(true, Ordering::Relaxed);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.stop.is_draining()
    }
}
