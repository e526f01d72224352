//! `edgewire kubeconfig`: k3s's kubeconfig with `server:` pointing at the hub's tunnel
//! address instead of `127.0.0.1` (the guide's hand edit after copying k3s.yaml).
//!
//! The file is rewritten line by line, so everything else (certificates, comments, order)
//! stays byte for byte as k3s wrote it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where k3s writes its kubeconfig: `K3S_KUBECONFIG_OUTPUT` (passed in), else the default.
pub fn default_path(env_value: Option<&str>) -> PathBuf {
    PathBuf::from(
        env_value
            .filter(|v| !v.is_empty())
            .unwrap_or("/etc/rancher/k3s/k3s.yaml"),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("reading kubeconfig {path}: {source} (is the k3s server running on this machine? it writes the file on start)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kubeconfig {path}: no `server: https://…` line to rewrite")]
    NoServer { path: PathBuf },
}

/// Reads `path` and returns it with every cluster's `server:` host set to `host`, port kept.
pub fn rewrite_file(path: &Path, host: IpAddr) -> Result<String, KubeconfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeconfigError::Read {
        path: path.into(),
        source,
    })?;
    rewrite(&text, host).ok_or_else(|| KubeconfigError::NoServer { path: path.into() })
}

/// The rewritten text, or `None` when there is no `server: https://…` line.
pub fn rewrite(text: &str, host: IpAddr) -> Option<String> {
    let host = match host {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split_inclusive('\n') {
        match rewrite_line(line, &host) {
            Some(new) => {
                found = true;
                out.push_str(&new);
            }
            None => out.push_str(line),
        }
    }
    found.then_some(out)
}

fn rewrite_line(line: &str, host: &str) -> Option<String> {
    let indent_len = line.len() - line.trim_start().len();
    let (indent, rest) = line.split_at(indent_len);
    let rest = rest
        .strip_prefix("- ")
        .map(|r| (true, r))
        .unwrap_or((false, rest));
    let (dash, rest) = rest;
    let value = rest.strip_prefix("server:")?;
    let ending = &value[value.trim_end().len()..];
    let url = value.trim().trim_matches(|c| c == '"' || c == '\'');
    let after_scheme = url.strip_prefix("https://")?;
    let host_end = if after_scheme.starts_with('[') {
        after_scheme.find(']').map(|i| i + 1)?
    } else {
        after_scheme.find([':', '/']).unwrap_or(after_scheme.len())
    };
    let tail = &after_scheme[host_end..];
    Some(format!(
        "{indent}{}server: https://{host}{tail}{ending}",
        if dash { "- " } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S_YAML: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: LS0tLS1CRUdJTg==\n    \
                            server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n    \
                            user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {}\n";

    #[test]
    fn server_points_at_the_hub_and_nothing_else_changes() {
        let out = rewrite(
            K3S_YAML,
            "10.8.0.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
        )
        .unwrap_or_default();
        assert_eq!(
            out,
            K3S_YAML.replace("https://127.0.0.1:6443", "https://10.8.0.1:6443")
        );
    }

    #[test]
    fn ipv6_quotes_paths_and_crlf() {
        let v6: IpAddr = "fd00::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert_eq!(
            rewrite("  server: \"https://[::1]:6443/x\"\r\n", v6).as_deref(),
            Some("  server: https://[fd00::1]:6443/x\r\n")
        );
        assert_eq!(
            rewrite("- server: https://localhost\n", v6).as_deref(),
            Some("- server: https://[fd00::1]\n")
        );
        assert_eq!(rewrite("kind: Config\n", v6), None);
        assert_eq!(rewrite("    server: http://1.2.3.4\n", v6), None);
    }

    #[test]
    fn missing_file_error_names_it() {
        let e = rewrite_file(
            Path::new("/nonexistent/k3s.yaml"),
            IpAddr::from([10, 8, 0, 1]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("reading kubeconfig /nonexistent/k3s.yaml"),
            "{e}"
        );
    }
}
