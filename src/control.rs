//! `thirdparty-gateway reload --pid PID`: asks a running gateway to reload
//! and waits for the outcome, so that `systemctl reload` fails when the new
//! config is refused, with no outside program (`/bin/kill`) and without
//! reading anything itself. Only the running gateway reads the config,
//! certificates and keys, with its own rights: under systemd that is the
//! only process that can read `$CREDENTIALS_DIRECTORY` (`ExecReload=` runs
//! without the credentials), so a reload works wherever a start does.
//!
//! The gateway listens on an abstract unix socket named after its process
//! id (no file to create, gone with the process). Each connection is one
//! request, `reload\n`, answered with one line: `reloaded generation N` or
//! `refused: WHY`. The gateway answers only its own user and root; the
//! asking side checks that the socket belongs to PID, so that no other
//! process can pass for it.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::gateway::Live;
use crate::reload;

/// How long `reload` waits for the gateway's answer: loading a config
/// compiles every template, well under this even on a busy machine, and
/// systemd's own limit for `ExecReload=` (`TimeoutStartSec=`, 90 s) is longer.
pub const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// Longest request line read from a client.
const MAX_REQUEST: u64 = 64;

/// The request.
const RELOAD: &str = "reload";

/// Why `reload` could not tell the outcome, or the reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No gateway answers for this process id.
    #[error("process {pid} does not answer reload requests (is it `thirdparty-gateway run`?)")]
    NotListening {
        /// The process asked.
        pid: u32,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// The socket is held by another process than the one named.
    #[error("the reload socket of process {pid} is held by another process ({holder})")]
    Impostor {
        /// The process asked.
        pid: u32,
        /// Who holds the socket.
        holder: String,
    },
    /// The gateway did not answer in time.
    #[error("no answer from process {pid} within {} s", RELOAD_WAIT.as_secs())]
    Timeout {
        /// The process asked.
        pid: u32,
    },
    /// Talking to the gateway failed.
    #[error("talking to process {pid}")]
    Io {
        /// The process asked.
        pid: u32,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The gateway refused the new config and still serves the previous one.
    #[error("reload refused, still serving the previous config: {0}")]
    Refused(String),
    /// The gateway answered something else.
    #[error("unexpected answer from process {pid}: {answer:?}")]
    Garbled {
        /// The process asked.
        pid: u32,
        /// What it said.
        answer: String,
    },
}

/// The socket address of the gateway running as `pid`.
fn address(pid: u32) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("thirdparty-gateway/{pid}/control"))
}

/// Binds this process's control socket.
pub fn listen() -> io::Result<UnixListener> {
    let listener = std::os::unix::net::UnixListener::bind_addr(&address(std::process::id())?)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// Answers reload requests until the task is dropped.
pub async fn serve(listener: UnixListener, live: Arc<Live>) {
    let own_uid = own_uid();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "control socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let allowed = match stream.peer_cred() {
            Ok(cred) => cred.uid() == 0 || Some(cred.uid()) == own_uid,
            Err(_) => false,
        };
        if !allowed {
            tracing::warn!("control socket: refused a request from another user");
            continue;
        }
        // One at a time: a reload is serialized anyway.
        if let Err(err) = answer(stream, &live).await {
            tracing::warn!(error = %err, "control socket: request failed");
        }
    }
}

/// The user this process runs as (the owner of `/proc/self`).
fn own_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

async fn answer(stream: UnixStream, live: &Arc<Live>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let request = tokio::time::timeout(
        Duration::from_secs(5),
        BufReader::new(read).take(MAX_REQUEST).read_line(&mut line),
    )
    .await;
    if !matches!(request, Ok(Ok(_))) || line.trim_end() != RELOAD {
        write.write_all(b"unknown request\n").await?;
        return Ok(());
    }
    let live = Arc::clone(live);
    // Loading checks every template: off the workers serving calls.
    let outcome = tokio::task::spawn_blocking(move || reload::reload(&live, "reload command"))
        .await
        .unwrap_or_else(|_| Err("the reload task ended".to_owned()));
    let reply = match outcome {
        Ok(generation) => format!("reloaded generation {generation}\n"),
        Err(why) => format!("refused: {}\n", why.replace('\n', " ")),
    };
    write.write_all(reply.as_bytes()).await?;
    write.shutdown().await
}

/// Asks the gateway running as `pid` to reload and waits for the outcome:
/// the generation now served, or why not.
pub async fn request_reload(pid: u32) -> Result<u64, ControlError> {
    let io = |source| ControlError::Io { pid, source };
    let stream = std::os::unix::net::UnixStream::connect_addr(&address(pid).map_err(io)?)
        .map_err(|source| ControlError::NotListening { pid, source })?;
    stream.set_nonblocking(true).map_err(io)?;
    let mut stream = UnixStream::from_std(stream).map_err(io)?;
    let holder = stream.peer_cred().map_err(io)?.pid();
    if holder != i32::try_from(pid).ok() {
        return Err(ControlError::Impostor {
            pid,
            holder: holder.map_or_else(|| "unknown".to_owned(), |p| format!("process {p}")),
        });
    }
    let exchange = async {
        stream.write_all(format!("{RELOAD}\n").as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(&mut stream).read_line(&mut line).await?;
        Ok::<_, io::Error>(line)
    };
    let line = tokio::time::timeout(RELOAD_WAIT, exchange)
        .await
        .map_err(|_| ControlError::Timeout { pid })?
        .map_err(io)?;
    let line = line.trim_end();
    if let Some(why) = line.strip_prefix("refused: ") {
        return Err(ControlError::Refused(why.to_owned()));
    }
    line.strip_prefix("reloaded generation ")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ControlError::Garbled {
            pid,
            answer: line.to_owned(),
        })
}
