//! Shared by the stand-in `k3s` binary and the tests that drive it.
//!
//! - [`record`]: the line format in which the stand-in writes down what happened to it
//!   (argv, environment, readiness, signals) and the reader the tests use;
//! - [`binary`]: the path of the built stand-in, building it first if needed.
//!
//! Control environment variables understood by the stand-in (all optional):
//! - `K3S_STANDIN_RECORD=FILE`: append records to FILE;
//! - `K3S_STANDIN_CRASH_AFTER=SECS`: exit with status 1 after SECS (fractions allowed);
//! - `K3S_STANDIN_PASSWORD_REJECTED=1`: agent prints k3s's "Node password rejected" error on
//!   every join attempt (and keeps retrying, as k3s does);
//! - `K3S_STANDIN_IGNORE_SIGTERM=1`: record SIGTERM but keep running (tests SIGKILL escalation);
//! - `K3S_STANDIN_SHIM=1`: start a long-lived child in k3s's process group, like a
//!   containerd shim, and record its PID.
//!
//! k3s's own variables it honours: `K3S_URL`, `K3S_TOKEN`, `K3S_TOKEN_FILE`, `K3S_DATA_DIR`,
//! `K3S_KUBECONFIG_OUTPUT`, `NOTIFY_SOCKET`.

pub mod record;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path of the stand-in `k3s` executable for tests: `K3S_STANDIN_BIN` if set, else the
/// workspace build of `k3s-standin` in the same target directory and profile as the running
/// test, built on first use (`cargo build` is a no-op when it is fresh).
///
/// # Panics
/// When the build fails: a test cannot run without the stand-in.
pub fn binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(p) = std::env::var_os("K3S_STANDIN_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
        // target/<profile>/deps/<test> → target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .unwrap_or_else(|| panic!("unexpected test path {}", exe.display()))
            .to_path_buf();
        let target_dir = profile_dir.parent().map(PathBuf::from).unwrap_or_default();
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let cargo = option_env!("CARGO").unwrap_or("cargo");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "--bin",
            "k3s",
            "--manifest-path",
            manifest,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("running {cargo} build: {e}"));
        let bin = profile_dir.join("k3s");
        assert!(
            status.success() && bin.exists(),
            "building the k3s stand-in failed: {status}"
        );
        bin
    })
    .clone()
}
