//! The package as a sysadmin installs it, under a real systemd: Debian 12
//! (debootstrap's minbase, systemd 252 as PID 1) booted by `systemd-nspawn`
//! with a network of its own, the built `.deb` installed by apt from what the
//! rootfs cache holds (nothing downloaded then: what the package needs, it
//! must declare), then: active after install, a call answered, `systemctl
//! reload` after an edit (applied) and a broken edit (refused, still
//! serving), a config error that is not retried, the root-only key's message,
//! reload with the key from `LoadCredential=`, one time per journal line, a
//! quick stop when idle, and a purge that leaves nothing.
//!
//! The minbase rootfs is made once and kept in `$TG_BOOT_DIR` (default
//! `/var/tmp/thirdparty-gateway-boot`, outside the checkout so that CI's
//! fresh clones reuse it); each run boots a copy. Needs root, debootstrap,
//! systemd-nspawn (systemd-container), nsenter and curl. Outside CI a machine
//! that cannot boot a container skips the test, loudly.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::package::built_deb;
use crate::support::*;

/// The oldest Debian the package supports, and its systemd (252).
const SUITE: &str = "bookworm";

/// Time for one command in the container (an install, a reload, a boot).
const STEP: Duration = Duration::from_secs(90);

/// systemd waits `RestartSec=2s` before a restart: looking after 3 s shows
/// whether one happened.
const PAST_RESTART_SEC: Duration = Duration::from_secs(3);

/// A stop with nothing open: the gateway's half second of quiet plus
/// systemd's work, well under the 5 s drain it used to wait out.
const IDLE_STOP: Duration = Duration::from_millis(1500);

const CONFIG: &str = "/etc/thirdparty-gateway/config.toml";
/// The last good config, kept in the container outside what purge must clear.
const SAVED: &str = "/var/tmp/good.toml.saved";
const DROP_IN: &str = "/etc/systemd/system/thirdparty-gateway.service.d";

#[test]
#[test_tools::needs("systemd-nspawn", "debootstrap", "cargo-deb", "curl")]
fn the_package_under_systemd_on_a_minimal_debian() {
    for (tool, install) in [
        ("systemd-nspawn", "apt-get install systemd-container"),
        ("debootstrap", "apt-get install debootstrap"),
        ("nsenter", "apt-get install util-linux"),
        ("curl", "apt-get install curl"),
        ("cargo-deb", "cargo install cargo-deb --locked"),
    ] {
        if require_tool(tool, install).is_none() {
            return;
        }
    }
    if !std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    }) {
        return cannot_boot("booting a container needs root");
    }
    let deb = built_deb();
    let base = std::env::var_os("TG_BOOT_DIR").map_or_else(
        || PathBuf::from("/var/tmp/thirdparty-gateway-boot"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&base).unwrap();
    let rootfs = cached_rootfs(&base, &deb);
    let work = TempDir::new_in(&base).unwrap();
    let root = work.path().join("root");
    let copied = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&rootfs)
        .arg(&root)
        .status()
        .unwrap();
    assert!(copied.success(), "cannot copy {}", rootfs.display());
    // Dropped before `work`: the container is gone before its files.
    let Some(c) = Container::boot(&root, &deb, work.path()) else {
        return;
    };
    let deb_name = deb.file_name().unwrap().to_string_lossy().into_owned();

    // A minimal Debian: no procps (no /bin/kill), no CA store until the
    // package brings it.
    c.must("test ! -e /bin/kill && test ! -e /usr/bin/kill");
    // No network in the container: only what the cache holds can install.
    // (Not --no-download: apt 2.6 then refuses the local .deb itself.)
    c.must(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q /pkg/{deb_name}"
    ));
    c.must("dpkg-query -W -f '${Status}' ca-certificates | grep -q 'install ok installed'");
    c.wait_active();
    assert!(c.call().contains("https://crm.example.org/callers/"));

    // The exposure score the docs give is the one systemd gives the
    // running unit (offline analysis of the file rates it differently).
    let security = c.must("systemd-analyze security --no-pager thirdparty-gateway");
    let score = security
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for thirdparty-gateway.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    let operations = include_str!("../../docs/operations.md");
    assert!(
        operations.contains(&format!("rates it {score} ")),
        "docs/operations.md should say the running unit rates {score}"
    );

    // The packaged config checks clean as root: the demo key belongs to the
    // service's own user.
    let checked = c.must(&format!("thirdparty-gateway check --config {CONFIG} 2>&1"));
    assert!(!checked.contains("warning"), "{checked}");

    // A good edit, reloaded: applied, the status text keeps the address.
    c.must(&format!(
        "sed -i 's#crm.example.org/callers#crm.example.org/edited#' {CONFIG}"
    ));
    c.must("systemctl reload thirdparty-gateway");
    assert!(c.call().contains("https://crm.example.org/edited/"));
    let status = c.must("systemctl show -p StatusText --value thirdparty-gateway");
    assert_eq!(status.trim(), "serving on 127.0.0.1:8443, generation 2");

    // A broken edit: reload fails, the previous config keeps serving.
    c.must(&format!("cp {CONFIG} {SAVED}"));
    c.must(&format!("printf '[server\\n' >> {CONFIG}"));
    let (ok, said) = c.sh("systemctl reload thirdparty-gateway");
    assert!(!ok, "a broken config was reloaded: {said}");
    c.must("systemctl is-active thirdparty-gateway");
    assert!(c.call().contains("https://crm.example.org/edited/"));

    // A config error at start: exit status 78, and no restart.
    c.sh("systemctl restart thirdparty-gateway");
    std::thread::sleep(PAST_RESTART_SEC);
    c.assert_failed_without_restart();

    // The root-only key: the same, with a message that says what to do.
    c.must(&format!(
        "mkdir -p /etc/thirdparty-gateway/tls && \
         install -m 0644 /var/lib/thirdparty-gateway/demo-cert.pem /etc/thirdparty-gateway/tls/cert.pem && \
         install -m 0600 /var/lib/thirdparty-gateway/demo-key.pem /etc/thirdparty-gateway/tls/key.pem && \
         sed -e 's#^cert = .*#cert = \"/etc/thirdparty-gateway/tls/cert.pem\"#' \
             -e 's#^key = .*#key = \"/etc/thirdparty-gateway/tls/key.pem\"#' \
             -e 's#^self_signed_if_missing = .*#self_signed_if_missing = false#' \
             {SAVED} > {CONFIG}"
    ));
    // `sudo check` reads the key, and warns that the service cannot.
    let checked = c.must(&format!("thirdparty-gateway check --config {CONFIG} 2>&1"));
    assert!(
        checked.contains("only root may read /etc/thirdparty-gateway/tls/key.pem"),
        "{checked}"
    );
    c.must("systemctl reset-failed thirdparty-gateway");
    c.sh("systemctl start thirdparty-gateway");
    c.assert_failed_without_restart();
    let journal = c.must("journalctl -u thirdparty-gateway -o cat --no-pager");
    assert!(
        journal.contains("DynamicUser=")
            && journal.contains("LoadCredential=tls-key:/etc/thirdparty-gateway/tls/key.pem"),
        "{journal}"
    );

    // The key handed over by systemd: start, and reload after an edit.
    c.must(&format!(
        "mkdir -p {DROP_IN} && \
         printf '[Service]\\nLoadCredential=tls-key:/etc/thirdparty-gateway/tls/key.pem\\n' > {DROP_IN}/key.conf && \
         sed -i 's#^key = .*#key = \"$CREDENTIALS_DIRECTORY/tls-key\"#' {CONFIG} && \
         systemctl daemon-reload && systemctl reset-failed thirdparty-gateway && \
         systemctl start thirdparty-gateway"
    ));
    c.wait_active();
    assert!(c.call().contains("https://crm.example.org/edited/"));
    c.must(&format!(
        "sed -i 's#crm.example.org/edited#crm.example.org/credential#' {CONFIG}"
    ));
    c.must("systemctl reload thirdparty-gateway");
    assert!(c.call().contains("https://crm.example.org/credential/"));

    // One time per journal line: journald's.
    let lines = c.must("journalctl -u thirdparty-gateway -o cat --no-pager");
    assert!(
        lines
            .lines()
            .any(|l| l.starts_with("INFO listening on https://")),
        "{lines}"
    );
    let stamped: Vec<&str> = lines.lines().filter(|l| starts_with_a_time(l)).collect();
    assert!(
        stamped.is_empty(),
        "lines with a time of their own: {stamped:#?}"
    );
    // Each with its level as the journal's priority: warnings alone.
    let warnings = c.must("journalctl -u thirdparty-gateway -o cat --no-pager -p warning");
    assert!(
        warnings.contains("WARN generated a self-signed demo certificate")
            && !warnings.contains("INFO "),
        "{warnings}"
    );

    // A stop with nothing open is quick.
    let asked = Instant::now();
    c.must("systemctl stop thirdparty-gateway");
    let took = asked.elapsed();
    assert!(took < IDLE_STOP, "an idle stop took {took:?}");

    // Purge: the admin's own files first, as a sysadmin would, then nothing
    // of the package is left.
    c.must(&format!(
        "rm -rf {DROP_IN} /etc/thirdparty-gateway/tls && systemctl daemon-reload && \
         DEBIAN_FRONTEND=noninteractive apt-get purge -y -q thirdparty-gateway"
    ));
    for path in [
        "/var/lib/thirdparty-gateway",
        "/var/lib/private/thirdparty-gateway",
        "/etc/thirdparty-gateway",
        "/etc/systemd/system/multi-user.target.wants/thirdparty-gateway.service",
        "/usr/bin/thirdparty-gateway",
    ] {
        c.must(&format!("test ! -e {path} && test ! -L {path}"));
    }
}

/// `2026-12-07T13:21:42…`: a line that starts with a date and time.
fn starts_with_a_time(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 19
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
}

/// Outside CI, says loudly why the test does not run; in CI, fails.
fn cannot_boot(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but this machine cannot boot a container: {why}");
    }
    eprintln!("\n!!!!! SKIPPED: cannot boot a container here: {why} !!!!!\n");
}

/// The minbase rootfs, made once (under a lock: tests and runs may race),
/// with the `.deb`'s dependencies downloaded into its apt cache.
fn cached_rootfs(base: &Path, deb: &Path) -> PathBuf {
    let rootfs = base.join(format!("rootfs-{SUITE}"));
    let deb_dir = deb.parent().unwrap();
    let deb_name = deb.file_name().unwrap().to_string_lossy();
    // The same steps as a shell script: debootstrap and apt are shell tools.
    let script = format!(
        r#"set -e
R={rootfs}
if [ ! -e "$R/.complete" ]; then
    rm -rf "$R.new" "$R"
    debootstrap --variant=minbase --include=systemd,systemd-sysv {SUITE} "$R.new" >&2
    mv "$R.new" "$R"
    touch "$R/.complete"
fi
get() {{
    systemd-nspawn -q -D "$R" --pipe --register=no --keep-unit --bind-ro={deb_dir}:/pkg \
        env DEBIAN_FRONTEND=noninteractive apt-get "$@" >&2
}}
get install -y -q --download-only /pkg/{deb_name} || {{ get update -q && get install -y -q --download-only /pkg/{deb_name}; }}
"#,
        rootfs = rootfs.display(),
        deb_dir = deb_dir.display(),
    );
    let lock = base.join("lock");
    let mut child = Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // debootstrap downloads some 250 MB at most once; later runs take seconds.
    let out = wait_bounded(&mut child, Duration::from_secs(600));
    assert!(
        out.status.success(),
        "cannot prepare {}:\n{}",
        rootfs.display(),
        printed(&out)
    );
    rootfs
}

/// Waits for `child` (leader of its own process group) for at most
/// `limit`, then kills the group; returns what it printed.
fn wait_bounded(child: &mut Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    // Read both pipes on threads of their own: a full pipe would stall it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            kill_group(child.id(), "KILL");
            let _ = child.wait();
            panic!("{:?} did not finish within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn kill_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pid}")])
        .status();
}

/// A booted container; dropping it powers it off (SIGTERM to nspawn, which
/// halts the container), and kills what is left after 10 s.
struct Container {
    nspawn: Child,
    /// The container's PID 1, as seen from here.
    init: u32,
    /// The seed payload, on this side.
    seed: PathBuf,
}

impl Container {
    /// Boots `root` with the package's folder at `/pkg`; `None` when this
    /// machine cannot (outside CI, after saying so).
    fn boot(root: &Path, deb: &Path, work: &Path) -> Option<Self> {
        let seed = work.join("seed.json");
        std::fs::write(&seed, SEED).unwrap();
        let console = std::fs::File::create(work.join("console.log")).unwrap();
        let nspawn = Command::new("systemd-nspawn")
            .arg("-q")
            .arg("-D")
            .arg(root)
            .args([
                "-b",
                "--private-network",
                "--register=no",
                "--keep-unit",
                "--console=passive",
                "-M",
                "tgw-boot",
            ])
            .arg(format!(
                "--bind-ro={}:/pkg",
                deb.parent().unwrap().display()
            ))
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut container = Self {
            nspawn,
            init: 0,
            seed,
        };
        let deadline = Instant::now() + STEP;
        while container.init == 0 {
            if let Ok(Some(status)) = container.nspawn.try_wait() {
                let log = std::fs::read_to_string(work.join("console.log")).unwrap_or_default();
                cannot_boot(&format!("systemd-nspawn exited ({status}):\n{log}"));
                return None;
            }
            assert!(Instant::now() < deadline, "the container never started");
            container.init = init_of(container.nspawn.id()).unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
        // Until its systemd answers, and then until the boot is done.
        loop {
            let (_, state) = container.sh("systemctl is-system-running --wait");
            if ["running", "degraded"].contains(&state.trim()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not boot: {state}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(container)
    }

    /// Runs `script` in the container as root: (succeeded, what it printed).
    fn sh(&self, script: &str) -> (bool, String) {
        let mut child = Command::new("nsenter")
            .args([
                "-t",
                &self.init.to_string(),
                "-a",
                "--",
                "/bin/sh",
                "-c",
                script,
            ])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let out = wait_bounded(&mut child, STEP);
        (out.status.success(), printed(&out))
    }

    /// Runs `script`, which must succeed; returns what it printed.
    fn must(&self, script: &str) -> String {
        let (ok, said) = self.sh(script);
        if !ok {
            let (_, journal) =
                self.sh("journalctl -u thirdparty-gateway -n 40 --no-pager -o short-monotonic");
            panic!("failed in the container: {script}\n{said}\n--- journal ---\n{journal}");
        }
        said
    }

    /// Waits until the unit is active (a Type=notify start is, once READY=1).
    fn wait_active(&self) {
        let deadline = Instant::now() + STEP;
        while !self.sh("systemctl is-active -q thirdparty-gateway").0 {
            if Instant::now() > deadline {
                self.must("systemctl status thirdparty-gateway --no-pager");
                panic!("thirdparty-gateway never became active");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The unit failed with the config's exit status and was not restarted.
    fn assert_failed_without_restart(&self) {
        let show = self.must(
            "systemctl show -p ActiveState -p ExecMainStatus -p NRestarts thirdparty-gateway",
        );
        for expected in ["ActiveState=failed", "ExecMainStatus=78", "NRestarts=0"] {
            assert!(show.lines().any(|l| l == expected), "{expected}:\n{show}");
        }
    }

    /// POSTs the seed call to the gateway on the container's loopback, with
    /// this side's curl in the container's network; returns the reply.
    fn call(&self) -> String {
        let mut child = Command::new("nsenter")
            .args([
                "-t",
                &self.init.to_string(),
                "-n",
                "--",
                "curl",
                "-sS",
                "-k",
            ])
            .args(["--max-time", "10", "-H", "Content-Type: application/json"])
            .arg("--data-binary")
            .arg(format!("@{}", self.seed.display()))
            .arg("https://127.0.0.1:8443/")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let out = wait_bounded(&mut child, STEP);
        let text = printed(&out);
        assert!(out.status.success(), "the call failed: {text}");
        assert!(text.contains(r#""action":"open""#), "{text}");
        text
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGTERM: nspawn asks the container's systemd to halt.
        let _ = Command::new("kill")
            .args(["-s", "TERM", &self.nspawn.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_group(self.nspawn.id(), "KILL");
        if self.init != 0 {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &self.init.to_string()])
                .status();
        }
        let _ = self.nspawn.wait();
    }
}

/// The container's init: the child of `parent` (nspawn) that is PID 1 in a
/// PID namespace of its own (nspawn's short-lived helpers are not).
fn init_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let ppid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        let pid_one = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .is_some_and(|ids| ids.split_whitespace().skip(1).eq(["1"]));
        (ppid == parent && pid_one).then_some(pid)
    })
}
