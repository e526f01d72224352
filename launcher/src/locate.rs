//! Finding the k3s executable: `--k3s PATH`, else `k3s` in `PATH`.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// How to get k3s onto a machine where edgewire runs it (k3s's own service stays off).
pub const INSTALL_HINT: &str = "install k3s without its own service, since edgewire runs it: \
    `curl -sfL https://get.k3s.io | INSTALL_K3S_SKIP_ENABLE=true INSTALL_K3S_SKIP_START=true sh -`, \
    or put the k3s binary from https://github.com/k3s-io/k3s/releases in /usr/local/bin; \
    or pass --k3s PATH";

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("k3s not found in PATH ({path}); {INSTALL_HINT}")]
    NotInPath { path: String },
    #[error("--k3s {path}: {problem}; {INSTALL_HINT}")]
    Explicit { path: PathBuf, problem: String },
}

pub fn find_k3s(explicit: Option<&Path>, path_env: Option<&OsStr>) -> Result<PathBuf, LocateError> {
    if let Some(p) = explicit {
        return match std::fs::metadata(p) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(p.to_path_buf()),
            Ok(_) => Err(LocateError::Explicit {
                path: p.into(),
                problem: "not an executable file".into(),
            }),
            Err(e) => Err(LocateError::Explicit {
                path: p.into(),
                problem: e.to_string(),
            }),
        };
    }
    let path_env = path_env.unwrap_or_default();
    for dir in std::env::split_paths(path_env) {
        let candidate = dir.join("k3s");
        if let Ok(m) = std::fs::metadata(&candidate) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(LocateError::NotInPath {
        path: path_env.to_string_lossy().into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_k3s_says_how_to_install() {
        let e = find_k3s(None, Some(OsStr::new("/nonexistent-a:/nonexistent-b")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("k3s not found in PATH (/nonexistent-a:/nonexistent-b)"),
            "{e}"
        );
        assert!(
            e.contains("get.k3s.io")
                && e.contains("INSTALL_K3S_SKIP_ENABLE=true")
                && e.contains("--k3s"),
            "{e}"
        );
        let e = find_k3s(Some(Path::new("/nonexistent/k3s")), None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--k3s /nonexistent/k3s: "), "{e}");
    }

    #[test]
    fn finds_executable_in_path_and_skips_plain_files() {
        let d = std::env::temp_dir().join(format!("ew-locate-{}", std::process::id()));
        let (a, b) = (d.join("a"), d.join("b"));
        for dir in [&a, &b] {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(a.join("k3s"), "not executable").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(b.join("k3s"), "#!/bin/sh\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(b.join("k3s"), std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let path = std::env::join_paths([&a, &b]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(find_k3s(None, Some(&path)).ok(), Some(b.join("k3s")));
        assert!(find_k3s(Some(&a.join("k3s")), None).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}
