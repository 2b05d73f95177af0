//! `thirdparty-gateway run` as a service: listeners (bound, or handed over by
//! systemd socket activation), systemd notifications (`READY=1`, reload,
//! `STOPPING=1`, watchdog), and signals: SIGHUP reloads, SIGTERM and SIGINT
//! drain and stop (a second one stops at once); with `--watch`, file changes
//! reload too.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::config::{self, DemoSettings};
use crate::gateway::Live;
use crate::{demo, log_output, logging, ops, reload, server};

/// Why `run` could not serve.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config, or a file it names (certificate, key, secret), was
    /// refused: starting again will not help until someone edits it, so
    /// `main` exits with [`EXIT_CONFIG`] and the unit does not restart.
    #[error(transparent)]
    Config(anyhow::Error),
    /// Anything else (a port in use, no runtime): maybe passing.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// `run`'s exit status when the config is refused: sysexits' `EX_CONFIG`,
/// shown by systemd as `status=78/CONFIG`; the unit's
/// `RestartPreventExitStatus=78` stops the restarts there.
pub const EXIT_CONFIG: u8 = 78;

/// Loads the config and serves until SIGTERM or SIGINT. Errors at start
/// (config, certificates, ports) are returned for `main` to print.
pub fn run(file: &Path, listen: Option<SocketAddr>, watch: bool) -> Result<(), RunError> {
    let config = config::load(file).map_err(|e| RunError::Config(e.into()))?;
    logging::init(&config.log);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // Dropped after the runtime, so the last lines of a stop are written.
    let _batching = log_output::STDOUT.batching();
    let (workers, ops, demo) = (
        config.server.workers,
        config.ops.listen,
        config.demo.clone(),
    );
    let live = Live::new(config, file, listen).map_err(|e| RunError::Config(e.into()))?;
    let console = live.console.clone();
    let runtime = runtime(workers).context("cannot start the async runtime")?;
    runtime.spawn(log_output::STDOUT.latest());
    // A second SIGTERM or SIGINT during the drain stops at once, as
    // nginx's fast shutdown does: whatever is still in flight is cut.
    let now = CancellationToken::new();
    let served = runtime.block_on(async {
        tokio::select! {
            served = serve(live, ops, demo, watch, now.clone()) => served,
            () = now.cancelled() => {
                tracing::warn!("second stop signal: stopping at once, without waiting for the drain");
                Ok(())
            }
        }
    });
    // A reload stuck on a file (a hung network mount) must not keep a
    // stopping process alive: blocking tasks get a second, not forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // The last calls' traces go to the collector, within a bound: after
    // the runtime, whose shutdown drops the calls a stop's grace cut (each
    // recorded as it is dropped). The export has a thread of its own.
    if let Some(console) = console {
        console.flush(OTLP_FLUSH_AT_STOP);
    }
    Ok(served?)
}

/// One worker is a single-threaded event loop, as an nginx worker is: no
/// work-stealing queues or cross-thread wake-ups on the request path, which
/// serves more calls per core (docs/performance.md). More workers
/// share one work-stealing pool; the default is one per core. A worker
/// about to wait for work writes the log lines gathered meanwhile.
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .on_thread_park(|| log_output::STDOUT.flush())
        .build()
}

async fn serve(
    live: Arc<Live>,
    ops_addr: Option<SocketAddr>,
    demo: Option<DemoSettings>,
    watch: bool,
    now: CancellationToken,
) -> anyhow::Result<()> {
    let gateway = live.current();
    // The generation was built before the runtime: its directories start
    // syncing now.
    gateway.start_directories();
    let listener = public_listener(gateway.config.server.listen).await?;
    let addr = listener.local_addr()?;
    live.serving_on(addr);
    let scheme = if gateway.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let routes = gateway.config.router.len();
    drop(gateway);
    let stop = CancellationToken::new();
    // Health stays up (answering 503) while connections drain, so a load
    // balancer sees the drain; it stops last.
    let ops_stop = CancellationToken::new();
    let ops_task = match ops_addr {
        Some(ops_addr) => {
            let ops_listener = TcpListener::bind(ops_addr)
                .await
                .with_context(|| format!("cannot listen on {ops_addr} (ops.listen)"))?;
            tracing::info!(
                "ops listening on http://{}/ (/healthz, /metrics{})",
                ops_listener.local_addr()?,
                if live.console.as_ref().is_some_and(|c| c.settings().page) {
                    ", the console at /"
                } else {
                    ""
                }
            );
            Some(tokio::spawn(ops::run(
                ops_listener,
                Arc::clone(&live),
                ops_stop.clone().cancelled_owned(),
            )))
        }
        None => None,
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        routes,
        "listening on {scheme}://{addr}/"
    );
    let demo_task = match demo {
        Some(demo) => {
            let demo_listener = TcpListener::bind(demo.listen)
                .await
                .with_context(|| format!("cannot listen on {} (demo.listen)", demo.listen))?;
            let demo_addr = demo_listener.local_addr()?;
            let mut public = addr;
            if public.ip().is_unspecified() {
                public.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let gateway_url = url::Url::parse(&format!("{scheme}://{public}/"))?;
            tracing::info!(
                "demo: open http://{demo_addr}/demo/agent in a browser (first open {gateway_url}demo/trust once to accept the demo certificate)"
            );
            Some(tokio::spawn(demo::run(
                demo_listener,
                gateway_url,
                ops_stop.clone().cancelled_owned(),
            )))
        }
        None => None,
    };
    // Bound before READY=1, so that a reload asked as soon as systemd
    // says the service is up finds it. Taken (another gateway with the
    // same pid in another PID namespace, on the same network): SIGHUP
    // still reloads.
    match crate::control::listen() {
        Ok(control) => {
            tokio::spawn(crate::control::serve(control, Arc::clone(&live)));
        }
        Err(err) => tracing::warn!(
            error = %err,
            "cannot listen for reload requests: `thirdparty-gateway reload` will not reach this process; SIGHUP still reloads"
        ),
    }
    // Handlers installed before READY=1 too: a SIGHUP or SIGTERM sent as
    // soon as the service is up must not meet the default action (which
    // ends the process), as it would if the task below had not run yet.
    let handlers = Handlers::install();
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&live.status("generation 1")),
    ]);
    if let Some(period) = sd_notify::watchdog_enabled() {
        tokio::spawn(watchdog(period / 2));
    }
    if let Some(handlers) = handlers {
        tokio::spawn(signals(handlers, Arc::clone(&live), stop.clone(), now));
    }
    if watch {
        tokio::spawn(crate::watch::run(Arc::clone(&live)));
    }
    server::run(listener, Arc::clone(&live), stop.clone().cancelled_owned()).await;
    // The caller directories' last changes, so the next start has them
    // (bounded: a hung disk does not hold the stop).
    let gateway = live.current();
    crate::directory::save_at_stop(gateway.config.backends.values(), &gateway.metrics).await;
    drop(gateway);
    ops_stop.cancel();
    for task in [ops_task, demo_task].into_iter().flatten() {
        let _ = task.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The listener systemd passed (socket activation), else a new one.
async fn public_listener(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let mut fds = listenfd::ListenFd::from_env();
    if let Some(std_listener) = fds
        .take_tcp_listener(0)
        .context("LISTEN_FDS is set but fd 3 is not a TCP listener")?
    {
        std_listener.set_nonblocking(true)?;
        tracing::info!(
            "using the socket passed by systemd (socket activation); server.listen is ignored"
        );
        return Ok(TcpListener::from_std(std_listener)?);
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (server.listen)"))
}

/// How long a stop waits for the last calls' export to an OTLP collector.
const OTLP_FLUSH_AT_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a reload may run before the log says it is stuck.
const RELOAD_WARN: std::time::Duration = std::time::Duration::from_secs(30);

/// Far enough away to mean never, for the stuck-reload timer.
const RELOAD_QUIET: std::time::Duration = std::time::Duration::from_secs(365 * 86400);

/// The signals the gateway handles, registered with the runtime.
struct Handlers {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Handlers {
    /// Registers the handlers at once; `None` (logged) when it cannot.
    fn install() -> Option<Self> {
        match (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(hup), Ok(term), Ok(int)) => Some(Self { hup, term, int }),
            _ => {
                tracing::error!(
                    "cannot install signal handlers: reload and graceful stop are unavailable"
                );
                None
            }
        }
    }
}

/// SIGHUP reloads; SIGTERM or SIGINT starts the drain (`stop`), and a
/// second one ends it at once (`now`).
async fn signals(
    handlers: Handlers,
    live: Arc<Live>,
    stop: CancellationToken,
    now: CancellationToken,
) {
    let Handlers {
        mut hup,
        mut term,
        mut int,
    } = handlers;
    // A reload runs beside this loop, never in it: one blocked on a file
    // (a FIFO, a hung network mount) must not hold SIGTERM back. SIGHUPs
    // that arrive meanwhile make one more reload once it ends.
    let mut running: Option<tokio::task::JoinHandle<Result<u64, String>>> = None;
    let mut again = false;
    let mut slow = std::pin::pin!(tokio::time::sleep(RELOAD_QUIET));
    let start = |live: &Arc<Live>| {
        // Loading checks every template: off the workers serving calls.
        let live = Arc::clone(live);
        tokio::task::spawn_blocking(move || reload::reload(&live, "SIGHUP"))
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if running.is_some() {
                    again = true;
                } else {
                    running = Some(start(&live));
                    slow.as_mut().reset(tokio::time::Instant::now() + RELOAD_WARN);
                }
            }
            _ = async {
                match running.as_mut() {
                    Some(reload) => reload.await.ok(),
                    None => std::future::pending().await,
                }
            }, if running.is_some() => {
                running = None;
                if std::mem::take(&mut again) {
                    running = Some(start(&live));
                    slow.as_mut().reset(tokio::time::Instant::now() + RELOAD_WARN);
                }
            }
            _ = &mut slow, if running.is_some() => {
                tracing::error!(
                    after_s = RELOAD_WARN.as_secs(),
                    "a reload is still running (a config or certificate file on a hung mount?): the previous config keeps serving, and SIGTERM still stops the gateway"
                );
                // Said once per reload.
                slow.as_mut().reset(tokio::time::Instant::now() + RELOAD_QUIET);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("stop requested: draining in-flight requests");
    // Draining first: whoever hears STOPPING=1 and asks /healthz sees it.
    live.start_draining();
    notify(&[NotifyState::Stopping]);
    stop.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    now.cancel();
}

async fn watchdog(every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}

/// Tells systemd, when run under it (`NOTIFY_SOCKET` set); a no-op otherwise.
pub(crate) fn notify(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(error = %err, "cannot notify systemd");
    }
}
