//! The one reload path, for SIGHUP and `run --watch` alike: load and check
//! the config and certificates, build a new generation, swap it in. Any
//! failure, a panic included, leaves the current generation serving, is
//! counted (`thirdparty_gateway_reloads_total{result="failed"}`) and logged
//! with its cause; the caller (the signal task, the file watcher) lives on.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use sd_notify::NotifyState;

use crate::daemon::notify;
use crate::gateway::Live;

/// One reload at a time: SIGHUP and the watcher may fire together, and two
/// reloads building the same generation number would confuse everyone.
static RELOADING: Mutex<()> = Mutex::new(());

/// Reloads `live`, saying why (`SIGHUP`, `config.toml changed`) in the log.
/// Returns the generation now served, or why the reload was refused (the
/// error chain, as logged), for `thirdparty-gateway reload` to print.
pub fn reload(live: &Live, cause: &str) -> Result<u64, String> {
    let _one = RELOADING.lock().unwrap_or_else(|e| e.into_inner());
    let mut reloading = vec![NotifyState::Reloading];
    // systemd's Type=notify-reload wants the time the reload started.
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        reloading.push(now);
    }
    notify(&reloading);
    match guarded(|| live.reload()) {
        Ok(generation) => {
            tracing::info!(generation, cause, "reloaded config and certificates");
            notify(&[
                NotifyState::Ready,
                NotifyState::Status(&live.status(&format!("generation {generation}"))),
            ]);
            Ok(generation)
        }
        Err(Failure::Refused(err)) => {
            let error = format!("{err:#}");
            // One line per fault: a log line with a literal `\n` in it
            // reads as one long fault.
            let mut faults: Vec<&str> = error.lines().filter(|l| !l.trim().is_empty()).collect();
            if faults.is_empty() {
                faults.push(&error);
            }
            let total = faults.len();
            for (i, fault) in faults.into_iter().enumerate() {
                if total == 1 {
                    tracing::error!(
                        cause,
                        error = fault,
                        "reload failed: still serving the previous config"
                    );
                } else {
                    tracing::error!(
                        cause,
                        error = fault,
                        "reload failed ({} of {total}): still serving the previous config",
                        i + 1
                    );
                }
            }
            failed(live);
            Err(error)
        }
        Err(Failure::Panicked(why)) => {
            // `Live::reload` counts the reloads it finishes; this one did not.
            live.metrics.reload(Err(()));
            tracing::error!(
                cause,
                error = why,
                "reload failed (a bug: please report it): still serving the previous config"
            );
            failed(live);
            Err(format!("{why} (a bug: please report it)"))
        }
    }
}

fn failed(live: &Live) {
    let generation = live.current().generation;
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&live.status(&format!("generation {generation}: last reload failed"))),
    ]);
}

/// Why a reload did not apply.
#[derive(Debug)]
enum Failure {
    /// The config or a certificate was refused, with the reasons.
    Refused(anyhow::Error),
    /// Loading panicked: a bug, but not one that may stop the service.
    Panicked(String),
}

/// Runs a reload step, turning a panic into a [`Failure`].
fn guarded(step: impl FnOnce() -> anyhow::Result<u64>) -> Result<u64, Failure> {
    match catch_unwind(AssertUnwindSafe(step)) {
        Ok(result) => result.map_err(Failure::Refused),
        Err(payload) => Err(Failure::Panicked(panic_message(payload.as_ref()))),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_reload_is_a_failure_with_its_message() {
        let result = guarded(|| panic!("semaphore too large"));
        match result {
            Err(Failure::Panicked(why)) => assert_eq!(why, "panic: semaphore too large"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            guarded(|| Err(anyhow::anyhow!("bad"))),
            Err(Failure::Refused(_))
        ));
        assert_eq!(guarded(|| Ok(3)).unwrap(), 3);
    }
}
