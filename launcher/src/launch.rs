//! `edgewire server` / `edgewire agent` from start to exit.
//!
//! [`prepare`] does every check that can fail without touching the host: labels, locating
//! k3s, the wg-quick file, the agent's hub and token file, k3s's config.yaml conflicts, the
//! command line. Only then does [`run`] act: stop a k3s left over from a crashed edgewire,
//! bring the tunnel up, supervise k3s, and take the tunnel down after k3s has exited.

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use edgewire_tunnel::config::{Config, ConfigError};
use edgewire_tunnel::interface::{Interface, UpError, UpOptions};

use crate::argv::{self, ArgvError, ArgvInput, Role};
use crate::k3s_config::{self, K3sConfigError};
use crate::labels::{self, LabelError};
use crate::locate::{self, LocateError};
use crate::notify::SystemdNotifier;
use crate::pidfile::{self, PidFileError};
use crate::probe::{ServerUrl, ServerUrlError};
use crate::supervise::{
    self, HubCheck, Options, Outcome, Plan, StopHandle, StopSource, SuperviseError,
};
use crate::tunnel::Tunnel;

/// The default run directory (k3s's PID file and notify socket).
pub const DEFAULT_RUN_DIR: &str = "/run/edgewire";

#[derive(Debug, Clone)]
pub enum RoleSpec {
    Server,
    Agent { server: String, token_file: PathBuf },
}

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub role: RoleSpec,
    /// The wg-quick file; the interface is named after its stem.
    pub wg_config: PathBuf,
    pub k3s: Option<PathBuf>,
    pub node_labels: Vec<String>,
    pub extra: Vec<OsString>,
    /// `K3S_CONFIG_FILE` as k3s will see it (k3s inherits edgewire's environment).
    pub k3s_config_file: Option<PathBuf>,
    pub run_dir: PathBuf,
    pub options: Options,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Label(#[from] LabelError),
    #[error(transparent)]
    Locate(#[from] LocateError),
    #[error(transparent)]
    WgConfig(#[from] ConfigError),
    #[error("{path}: the interface name must be the file's stem (like wg-quick: wg0.conf → wg0)")]
    IfaceName { path: PathBuf },
    #[error("{path}: [Interface] has no Address; k3s is bound to the tunnel address")]
    NoAddress { path: PathBuf },
    #[error(transparent)]
    Server(#[from] ServerUrlError),
    #[error(
        "--server {server}: {ip} is not routed through {iface}: no [Peer] in {path} has it in \
         AllowedIPs (the agent reaches the hub through the tunnel)"
    )]
    NotRouted {
        server: String,
        ip: IpAddr,
        iface: String,
        path: PathBuf,
    },
    #[error(
        "--token-file {path}: {problem} (copy /var/lib/rancher/k3s/server/node-token from the hub)"
    )]
    TokenFile { path: PathBuf, problem: String },
    #[error(transparent)]
    K3sConfig(#[from] K3sConfigError),
    #[error(transparent)]
    Argv(#[from] ArgvError),
    #[error("creating run directory {path}: {source}")]
    RunDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Leftover(#[from] PidFileError),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("bringing up tunnel {iface}: {source}")]
    TunnelUp { iface: String, source: UpError },
    #[error("taking down tunnel {iface}: {source}")]
    TunnelDown { iface: String, source: UpError },
    #[error(transparent)]
    Supervise(#[from] SuperviseError),
}

/// Checked and ready to run; nothing has been started.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub iface: String,
    pub config: Config,
    pub node_ip: IpAddr,
    pub plan: Plan,
}

/// The interface name for a wg-quick file path (`/etc/wireguard/wg0.conf` → `wg0`).
pub fn iface_name(path: &Path) -> Result<String, LaunchError> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty() && s.len() <= 15)
        .map(String::from)
        .ok_or_else(|| LaunchError::IfaceName { path: path.into() })
}

/// The address k3s is bound to: the first IPv4 `Address`, else the first IPv6 one.
pub fn tunnel_address(config: &Config) -> Option<IpAddr> {
    let addrs = &config.interface.addresses;
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .map(|a| a.addr())
}

/// Every check, in the order cheapest first; reads files but changes nothing.
pub fn prepare(spec: &LaunchSpec) -> Result<Prepared, LaunchError> {
    for l in &spec.node_labels {
        labels::validate(l, "--node-label")?;
    }
    let program = locate::find_k3s(spec.k3s.as_deref(), std::env::var_os("PATH").as_deref())?;
    let iface = iface_name(&spec.wg_config)?;
    let config = edgewire_tunnel::config::load(&spec.wg_config)?;
    prepare_with(spec, &iface, config, program)
}

/// [`prepare`] after the wg-quick file is loaded and k3s located.
pub fn prepare_with(
    spec: &LaunchSpec,
    iface: &str,
    config: Config,
    program: PathBuf,
) -> Result<Prepared, LaunchError> {
    let node_ip = tunnel_address(&config).ok_or_else(|| LaunchError::NoAddress {
        path: spec.wg_config.clone(),
    })?;
    let (role, hub) = match &spec.role {
        RoleSpec::Server => (Role::Server, None),
        RoleSpec::Agent { server, token_file } => {
            let url = ServerUrl::parse(server)?;
            let addr = url.resolve()?;
            let peer = hub_peer(&config, addr.ip()).ok_or_else(|| LaunchError::NotRouted {
                server: server.clone(),
                ip: addr.ip(),
                iface: iface.to_string(),
                path: spec.wg_config.clone(),
            })?;
            check_token_file(token_file)?;
            let role = Role::Agent {
                url: url.url.clone(),
                token_file: token_file.clone(),
            };
            (
                role,
                Some(HubCheck {
                    peer,
                    server: url,
                    addr,
                }),
            )
        }
    };
    let extra_config = argv::scan_extra(&spec.extra)
        .into_iter()
        .rev()
        .find(|f| f.name == "config")
        .map(|f| f.value);
    let env_config = spec
        .k3s_config_file
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    let k3s_config_path = k3s_config::config_path(env_config.as_deref(), extra_config.as_deref());
    let file_config = k3s_config::load(&k3s_config_path)?;
    let command = argv::build(&ArgvInput {
        role: &role,
        iface,
        node_ip,
        labels: &spec.node_labels,
        extra: &spec.extra,
        file_config: &file_config,
    })?;
    let plan = Plan {
        program,
        command,
        role: role.subcommand(),
        hub,
        pidfile: pidfile::path_for(&spec.run_dir, iface),
        notify_socket: spec.run_dir.join(format!("k3s-{iface}.notify")),
    };
    Ok(Prepared {
        iface: iface.to_string(),
        config,
        node_ip,
        plan,
    })
}

/// The peer whose AllowedIPs route `ip` (longest prefix wins, as in the tunnel).
fn hub_peer(config: &Config, ip: IpAddr) -> Option<edgewire_tunnel::key::PublicKey> {
    config
        .peers
        .iter()
        .filter_map(|p| {
            p.allowed_ips
                .iter()
                .filter(|n| n.contains(ip))
                .map(|n| n.prefix())
                .max()
                .map(|len| (len, p))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p.public_key)
}

fn check_token_file(path: &Path) -> Result<(), LaunchError> {
    let err = |problem: String| LaunchError::TokenFile {
        path: path.into(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if text.trim().is_empty() {
        return Err(err("the file is empty".into()));
    }
    Ok(())
}

/// Runs with the real tunnel: SIGTERM/SIGINT stop it, systemd is told through
/// `NOTIFY_SOCKET`.
pub fn run(prepared: &Prepared, spec: &LaunchSpec) -> Result<Outcome, LaunchError> {
    let systemd = SystemdNotifier::from_env();
    let name = prepared.iface.clone();
    let config = prepared.config.clone();
    // The config path lets `SaveConfig = true` write the file back on the way down.
    let opts = UpOptions {
        config_path: Some(spec.wg_config.clone()),
        ..UpOptions::default()
    };
    let up = || {
        Interface::up(&name, &config, opts).map_err(|source| LaunchError::TunnelUp {
            iface: name.clone(),
            source,
        })
    };
    let down = |iface: Interface| {
        let n = iface.name().to_string();
        iface
            .down()
            .map_err(|source| LaunchError::TunnelDown { iface: n, source })
    };
    run_with(
        prepared,
        spec,
        &systemd,
        Some(StopHandle::default()),
        up,
        down,
    )
}

/// The run sequence with any tunnel: leftover k3s, tunnel up, supervise, tunnel down.
/// `signals`: `Some` listens to SIGTERM/SIGINT as well as the handle; tests pass the handle
/// through [`run_with_handle`] instead.
pub fn run_with<T: Tunnel>(
    prepared: &Prepared,
    spec: &LaunchSpec,
    systemd: &SystemdNotifier,
    signals: Option<StopHandle>,
    up: impl FnOnce() -> Result<T, LaunchError>,
    down: impl FnOnce(T) -> Result<(), LaunchError>,
) -> Result<Outcome, LaunchError> {
    run_inner(
        prepared,
        spec,
        systemd,
        signals.map(|h| (h, true)),
        up,
        down,
    )
}

/// Like [`run_with`], stopped only through `handle` (no signal handlers are installed).
pub fn run_with_handle<T: Tunnel>(
    prepared: &Prepared,
    spec: &LaunchSpec,
    systemd: &SystemdNotifier,
    handle: StopHandle,
    up: impl FnOnce() -> Result<T, LaunchError>,
    down: impl FnOnce(T) -> Result<(), LaunchError>,
) -> Result<Outcome, LaunchError> {
    run_inner(prepared, spec, systemd, Some((handle, false)), up, down)
}

fn run_inner<T: Tunnel>(
    prepared: &Prepared,
    spec: &LaunchSpec,
    systemd: &SystemdNotifier,
    stop: Option<(StopHandle, bool)>,
    up: impl FnOnce() -> Result<T, LaunchError>,
    down: impl FnOnce(T) -> Result<(), LaunchError>,
) -> Result<Outcome, LaunchError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&spec.run_dir)
        .map_err(|source| LaunchError::RunDir {
            path: spec.run_dir.clone(),
            source,
        })?;
    if let Some(l) = pidfile::find_leftover(&prepared.plan.pidfile) {
        tracing::warn!(
            pid = l.pid,
            "k3s ({}) from an earlier edgewire run is still running on a tunnel that no longer exists; \
             stopping it before starting a fresh one",
            l.cmdline
        );
        pidfile::stop_leftover(&l, spec.options.stop_timeout)?;
        pidfile::remove(&prepared.plan.pidfile);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LaunchError::Runtime)?;
    rt.block_on(async {
        let (handle, signals) = stop.unwrap_or_default();
        let source = if signals {
            StopSource::with_signals(handle).map_err(LaunchError::Runtime)?
        } else {
            StopSource::from_handle(handle)
        };
        systemd.status(&format!("bringing up tunnel {}", prepared.iface));
        let tunnel = up()?;
        systemd.status(&format!(
            "tunnel {} up ({})",
            prepared.iface, prepared.node_ip
        ));
        let result =
            supervise::supervise(&prepared.plan, &tunnel, systemd, &spec.options, source).await;
        // k3s has exited (or never started): only now does the tunnel go.
        let downed = down(tunnel);
        let outcome = result?;
        downed?;
        Ok(outcome)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        edgewire_tunnel::config::parse(text, Path::new("test.conf"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const HUB: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
    const OTHER: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn gateway_conf() -> String {
        format!(
            "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = 10.8.0.2/24\n\n\
             [Peer]\nPublicKey = {OTHER}\nAllowedIPs = 10.0.0.0/8\n\n\
             [Peer]\nPublicKey = {HUB}\nEndpoint = 198.18.0.1:51820\nAllowedIPs = 10.8.0.0/24\nPersistentKeepalive = 21\n"
        )
    }

    #[test]
    fn names_and_addresses() {
        assert_eq!(
            iface_name(Path::new("/etc/wireguard/wg0.conf"))
                .ok()
                .as_deref(),
            Some("wg0")
        );
        assert!(iface_name(Path::new("/x/a-very-long-interface-name.conf")).is_err());
        let c = config("[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nAddress = fd00::2/64, 10.8.0.2/24\n");
        assert_eq!(tunnel_address(&c), Some(IpAddr::from([10, 8, 0, 2])));
    }

    #[test]
    fn hub_is_the_longest_prefix_peer() {
        let c = config(&gateway_conf());
        assert_eq!(
            hub_peer(&c, IpAddr::from([10, 8, 0, 1]))
                .map(|k| k.to_base64())
                .as_deref(),
            Some(HUB)
        );
        assert_eq!(
            hub_peer(&c, IpAddr::from([10, 9, 0, 1]))
                .map(|k| k.to_base64())
                .as_deref(),
            Some(OTHER)
        );
        assert_eq!(hub_peer(&c, IpAddr::from([192, 168, 0, 1])), None);
    }

    #[test]
    fn agent_checks_routing_and_token_before_anything_starts() {
        let dir = std::env::temp_dir().join(format!("ew-launch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let token = dir.join("token");
        let mut spec = LaunchSpec {
            role: RoleSpec::Agent {
                server: "192.168.0.1".into(),
                token_file: token.clone(),
            },
            wg_config: dir.join("wg0.conf"),
            k3s: None,
            node_labels: vec![],
            extra: vec![],
            k3s_config_file: Some(dir.join("absent.yaml")),
            run_dir: dir.clone(),
            options: Options::default(),
        };
        let c = config(&gateway_conf());
        let e = prepare_with(&spec, "wg0", c.clone(), "/bin/true".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("192.168.0.1 is not routed through wg0"), "{e}");
        spec.role = RoleSpec::Agent {
            server: "10.8.0.1".into(),
            token_file: token.clone(),
        };
        let e = prepare_with(&spec, "wg0", c.clone(), "/bin/true".into())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("--token-file {}", token.display())),
            "{e}"
        );
        std::fs::write(&token, "K10abc::server:s3cret\n").unwrap_or_else(|e| panic!("{e}"));
        let p = prepare_with(&spec, "wg0", c, "/bin/true".into()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.plan.hub.as_ref().map(|h| h.server.url.as_str()),
            Some("https://10.8.0.1:6443")
        );
        assert_eq!(
            p.plan.hub.as_ref().map(|h| h.peer.to_base64()).as_deref(),
            Some(HUB)
        );
        assert!(!format!("{:?}", p.plan.command).contains("s3cret"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
