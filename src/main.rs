//! The `thirdparty-gateway` command: parses the command line and hands over
//! to the library (`server::run`, `check::check`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use thirdparty_gateway::{check, config, control, daemon, logging, simulate};

/// HTTPS gateway between XiVO XucMgt's third-party tab and legacy CRMs.
#[derive(Parser)]
#[command(
    version,
    about,
    after_help = "Examples:\n  \
    thirdparty-gateway                                  run with ./config.toml\n  \
    thirdparty-gateway run --config /etc/thirdparty-gateway/config.toml\n  \
    thirdparty-gateway run --listen 0.0.0.0:8443        override server.listen\n  \
    thirdparty-gateway run --watch                      reload when config.toml or a certificate changes\n  \
    thirdparty-gateway check --config /etc/thirdparty-gateway/config.toml\n  \
    thirdparty-gateway reload --pid 1234                reload a running gateway, wait for the outcome\n  \
    thirdparty-gateway simulate --config config.toml call.json --dry-run\n  \
    thirdparty-gateway simulate --config config.toml call.json --crm-reply crm=reply.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default when no command is given).
    Run {
        /// Config file.
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        /// Listen on this address instead of server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Reload when the config file, or a certificate, key, CA or secret
        /// file it names, changes (checked every second; a config that fails
        /// the check is logged and the previous one keeps serving, as on SIGHUP).
        #[arg(long)]
        watch: bool,
    },
    /// Ask a running gateway to reload its config and certificates, and wait
    /// for the outcome (0 = applied, 1 = refused: the previous config keeps
    /// serving). The gateway itself reads the files, with its own rights, as
    /// on SIGHUP: this is the unit's `ExecReload=`.
    Reload {
        /// Process id of the running gateway (`$MAINPID` in a unit).
        #[arg(long)]
        pid: u32,
    },
    /// Validate the config and certificates as `run` would, then exit (0 = ok).
    Check {
        /// Config file.
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Run one XucMgt payload through the config and show every step: route
    /// chosen and why, backend request (secrets redacted), raw and normalized reply.
    /// Exits 0 when the reply is `open` (or on a dry run), 1 on `none`, 2 when
    /// it cannot simulate (a config or payload error). With `RUST_LOG` set
    /// (e.g. `RUST_LOG=debug`), the gateway's log lines go to standard error.
    Simulate {
        /// Config file.
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        /// A JSON payload as XucMgt POSTs it.
        payload: PathBuf,
        /// The request path the payload is POSTed to.
        #[arg(long, default_value = "/")]
        path: String,
        /// Build the backend requests but do not send them.
        #[arg(long)]
        dry_run: bool,
        /// Read BACKEND's reply from FILE (the body as the CRM sends it,
        /// taken as HTTP 200) instead of asking the CRM: no login, no
        /// request. Repeat it for several backends.
        #[arg(
            long = "crm-reply",
            value_name = "BACKEND=FILE",
            conflicts_with = "dry_run"
        )]
        crm_reply: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let simulating = matches!(cli.command, Some(Command::Simulate { .. }));
    let result = match cli.command.unwrap_or(Command::Run {
        config: PathBuf::from("config.toml"),
        listen: None,
        watch: false,
    }) {
        Command::Run {
            config,
            listen,
            watch,
        } => {
            return match daemon::run(&config, listen, watch) {
                Ok(()) => ExitCode::SUCCESS,
                Err(daemon::RunError::Config(err)) => {
                    report(&err);
                    ExitCode::from(daemon::EXIT_CONFIG)
                }
                Err(daemon::RunError::Other(err)) => {
                    report(&err);
                    ExitCode::FAILURE
                }
            }
        }
        Command::Reload { pid } => run_reload(pid).map(|()| ExitCode::SUCCESS),
        Command::Check { config } => run_check(config).map(|()| ExitCode::SUCCESS),
        Command::Simulate {
            config,
            payload,
            path,
            dry_run,
            crm_reply,
        } => {
            let options = simulate::Options {
                path,
                dry_run,
                crm_replies: crm_reply,
            };
            run_simulate(&config, &payload, &options)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            // simulate: 0 open, 1 none, 2 could not simulate.
            ExitCode::from(if simulating { 2 } else { 1 })
        }
    }
}

/// Prints an error for a person: a config error placed in its file, else
/// the chain of causes.
fn report(err: &anyhow::Error) {
    match err.downcast_ref::<config::ConfigError>() {
        Some(config_error) => eprintln!("{}", config_error.render()),
        None => eprintln!("error: {err:#}"),
    }
}

fn run_reload(pid: u32) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let generation = runtime.block_on(control::request_reload(pid))?;
    println!("reloaded: serving generation {generation}");
    Ok(())
}

fn run_check(file: PathBuf) -> anyhow::Result<()> {
    let report = check::check(&file)?;
    for warning in &report.warnings {
        eprintln!("{}\n", warning.render());
    }
    for file in &report.root_only {
        eprintln!("warning: only root may read {file}\n");
    }
    println!("{}", report.summary);
    Ok(())
}

fn run_simulate(
    config: &std::path::Path,
    payload: &std::path::Path,
    options: &simulate::Options,
) -> anyhow::Result<ExitCode> {
    if std::env::var_os("RUST_LOG").is_some() {
        logging::init_stderr();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let simulation = runtime.block_on(simulate::simulate(config, payload, options))?;
    for warning in &simulation.warnings {
        eprintln!("{warning}\n");
    }
    print!("{}", simulation.report);
    Ok(match simulation.opened {
        Some(false) => ExitCode::from(1),
        Some(true) | None => ExitCode::SUCCESS,
    })
}

/// A request allocates a few hundred small blocks (headers, JSON, template
/// values) that die with it; mimalloc serves those faster than glibc's
/// malloc. Built without transparent huge pages, whose eagerly committed
/// arena would cost idle memory (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
