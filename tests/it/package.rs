//! The Debian package and its systemd unit: the `.deb` builds with the right
//! files and conffile, the unit passes `systemd-analyze verify`, and its
//! exposure rating is at most 2.0.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::*;

const UNIT: &str = include_str!("../../debian/thirdparty-gateway.service");
const MAX_EXPOSURE: f64 = 2.0;

/// Writes `unit` with its ExecStart binary pointed at `binary` (verify
/// checks the executable exists) and runs both systemd checks on it.
fn check_unit(unit: &str, binary: &Path) {
    let Some(analyze) = require_tool("systemd-analyze", "apt-get install systemd") else {
        return;
    };
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("thirdparty-gateway.service");
    let unit = unit.replace("/usr/bin/thirdparty-gateway", binary.to_str().unwrap());
    std::fs::write(&path, unit).unwrap();

    let verify = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = printed(&verify);
    assert!(
        verify.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert!(
        !said.contains("thirdparty-gateway.service:"),
        "verify warned about the unit:\n{said}"
    );

    let security = Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let level = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}{}",
                String::from_utf8_lossy(&security.stderr)
            )
        });
    assert!(
        level <= MAX_EXPOSURE,
        "exposure {level} > {MAX_EXPOSURE}:\n{text}"
    );
}

#[test]
#[test_tools::needs("systemd-analyze")]
fn unit_passes_verify_and_the_exposure_check() {
    check_unit(UNIT, &binary());
}

#[test]
#[test_tools::needs("cargo-deb", "dpkg-deb", "systemd-analyze")]
fn deb_builds_with_binary_conffile_unit_and_docs() {
    let Some(_) = require_tool("cargo-deb", "cargo install cargo-deb --locked") else {
        return;
    };
    let Some(_) = require_tool("dpkg-deb", "apt-get install dpkg") else {
        return;
    };
    let deb = built_deb();

    let listing = dpkg_deb(&["-c"], &deb, None);
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/thirdparty-gateway"),
        ("-rw-r--r--", "./etc/thirdparty-gateway/config.toml"),
        (
            "-rw-r--r--",
            "./usr/lib/systemd/system/thirdparty-gateway.service",
        ),
        ("-rw-r--r--", "./usr/share/doc/thirdparty-gateway/README.md"),
        (
            "-rw-r--r--",
            "./usr/share/doc/thirdparty-gateway/docs/configuration.md",
        ),
        // The packaged README shows it.
        (
            "-rw-r--r--",
            "./usr/share/doc/thirdparty-gateway/docs/demo-agent.png",
        ),
        (
            "-rw-r--r--",
            "./usr/share/doc/thirdparty-gateway/examples/soap-crm.toml",
        ),
        (
            "-rw-r--r--",
            "./usr/share/doc/thirdparty-gateway/examples/thirdparty-gateway.socket",
        ),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(&format!(" {path}"))),
            "{mode} {path} missing from:\n{listing}"
        );
    }
    let control = dpkg_deb(&["-I"], &deb, None);
    assert!(control.contains("Package: thirdparty-gateway"), "{control}");
    // The system CA store for https backends; nothing the unit runs needs
    // more than libc (no /bin/kill: reload is the binary's own).
    let depends = control
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends in {control}"));
    assert!(depends.contains("ca-certificates"), "{depends}");
    assert!(!depends.contains("procps"), "{depends}");
    let conffiles = dpkg_deb(&["-I"], &deb, Some("conffiles"));
    assert_eq!(conffiles.trim(), "/etc/thirdparty-gateway/config.toml");
    let postinst = dpkg_deb(&["-I"], &deb, Some("postinst"));
    assert!(
        postinst.contains("deb-systemd-helper enable thirdparty-gateway.service"),
        "{postinst}"
    );
    // Purge forgets the unit (cargo-deb's part) and removes its state (ours).
    let postrm = dpkg_deb(&["-I"], &deb, Some("postrm"));
    assert!(
        postrm.contains("deb-systemd-helper purge thirdparty-gateway.service")
            && postrm.contains("rm -rf /var/lib/private/thirdparty-gateway"),
        "{postrm}"
    );
    assert!(!postrm.contains("#DEBHELPER#"), "{postrm}");

    // The packaged files work: the unit as shipped, the config as shipped.
    let tree = tempfile::TempDir::new().unwrap();
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(tree.path())
        .status()
        .unwrap();
    assert!(status.success());
    let unit = std::fs::read_to_string(
        tree.path()
            .join("usr/lib/systemd/system/thirdparty-gateway.service"),
    )
    .unwrap();
    assert_eq!(unit, UNIT);
    let packaged_binary = tree.path().join("usr/bin/thirdparty-gateway");
    check_unit(&unit, &packaged_binary);
    let check = Command::new(&packaged_binary)
        .arg("check")
        .arg("--config")
        .arg(tree.path().join("etc/thirdparty-gateway/config.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The package, built once per test run with `cargo deb` (a release build)
/// into `target/deb/`: this module's tests and the one that installs it
/// under systemd (`boot.rs`) share it. `TPGW_TEST_DEB=FILE` tests a
/// package built otherwise instead (the profile-guided one `bench/pgo
/// --deb` makes, before it is shipped).
pub(crate) fn built_deb() -> PathBuf {
    static DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DEB.get_or_init(|| {
        if let Some(given) = std::env::var_os("TPGW_TEST_DEB") {
            let given = PathBuf::from(given);
            return match given.is_file() {
                true => Ok(given),
                false => Err(format!("TPGW_TEST_DEB: no file {}", given.display())),
            };
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = root.join("target/deb/package");
        let _ = std::fs::remove_dir_all(&out);
        // A target dir of its own: the test build holds the main one's lock.
        let built = Command::new(env!("CARGO"))
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", root.join("target/deb"))
            .arg("deb")
            .arg("--output")
            .arg(&out)
            .output()
            .map_err(|e| format!("cannot run cargo deb: {e}"))?;
        if !built.status.success() {
            return Err(format!(
                "cargo deb failed:\n{}",
                String::from_utf8_lossy(&built.stderr)
            ));
        }
        std::fs::read_dir(&out)
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| format!("no .deb in {}", out.display()))
    });
    match built {
        Ok(deb) => deb.clone(),
        Err(why) => panic!("{why}"),
    }
}

/// Runs `dpkg-deb ARGS DEB [MEMBER]` and returns what it printed.
fn dpkg_deb(args: &[&str], deb: &Path, member: Option<&str>) -> String {
    let out = Command::new("dpkg-deb")
        .args(args)
        .arg(deb)
        .args(member)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The gateway's own build reads nothing from the machine: no build
/// script (one watching `PATH` would rebuild `cargo run -- check` after
/// every `apt install`), and the tests' tool check (`tests/tools`, whose
/// build script does watch `PATH`) is a dev-dependency, which `cargo build`
/// and `cargo install` never compile.
#[test]
fn the_gateway_build_has_no_build_script_and_the_tool_check_is_for_tests_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!root.join("build.rs").exists(), "build.rs is back");
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(manifest["package"].get("build").is_none());
    assert!(manifest["dev-dependencies"].get("test-tools").is_some());
    for table in ["dependencies", "build-dependencies"] {
        assert!(
            manifest
                .get(table)
                .and_then(|t| t.get("test-tools"))
                .is_none(),
            "test-tools under [{table}]"
        );
    }
}
