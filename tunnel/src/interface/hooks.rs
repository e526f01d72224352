//! wg-quick's PreUp/PostUp/PreDown/PostDown hooks and `DNS =` (through resolvconf).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::config::InterfaceConfig;

/// Runs each hook with `bash -c`, `%i` replaced by the interface name, as wg-quick does.
/// Stops at the first failing hook.
pub fn run(stage: &str, hooks: &[String], iface: &str) -> Result<(), String> {
    for hook in hooks {
        let cmd = hook.replace("%i", iface);
        tracing::info!("[#] {cmd}");
        let status = Command::new("bash")
            .arg("-c")
            .arg(&cmd)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("{stage} hook could not start bash: {e}"))?;
        if !status.success() {
            return Err(format!("{stage} hook `{cmd}` failed with {status}"));
        }
    }
    Ok(())
}

/// The resolvconf binary, if DNS servers must be set and one is installed.
pub fn check_dns(cfg: &InterfaceConfig) -> Result<(), String> {
    if cfg.dns.is_empty() && cfg.dns_search.is_empty() {
        return Ok(());
    }
    if find_in_path("resolvconf").is_none() {
        return Err(
            "DNS = is set but resolvconf is not installed (wg-quick needs it too); \
                    install openresolv or remove DNS from the config"
                .into(),
        );
    }
    Ok(())
}

/// `resolvconf -a tun.IFACE -m 0 -x` with the servers and search domains.
pub fn set_dns(cfg: &InterfaceConfig, iface: &str) -> Result<(), String> {
    if cfg.dns.is_empty() && cfg.dns_search.is_empty() {
        return Ok(());
    }
    let mut input = String::new();
    for ip in &cfg.dns {
        input.push_str(&format!("nameserver {ip}\n"));
    }
    if !cfg.dns_search.is_empty() {
        input.push_str(&format!("search {}\n", cfg.dns_search.join(" ")));
    }
    let mut child = Command::new("resolvconf")
        .args(["-a", &format!("tun.{iface}"), "-m", "0", "-x"])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("resolvconf: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| format!("resolvconf: {e}"))?;
    }
    let status = child.wait().map_err(|e| format!("resolvconf: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("resolvconf -a tun.{iface} failed with {status}"))
    }
}

pub fn unset_dns(cfg: &InterfaceConfig, iface: &str) {
    if cfg.dns.is_empty() && cfg.dns_search.is_empty() {
        return;
    }
    let _ = Command::new("resolvconf")
        .args(["-d", &format!("tun.{iface}"), "-f"])
        .status();
}

fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| Path::new(p).is_file())
}
