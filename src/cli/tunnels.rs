//! One WireGuard interface in a namespace for `edgewire bench` and `edgewire demo`:
//! `edgewire up IFACE.conf` (this very binary), or any implementation that speaks the UAPI
//! (`wireguard-go -f {iface}`…) configured the way wg-quick configures a userspace
//! interface: `wg setconf`, `ip address add`, `ip link set mtu … up`.
//!
//! Also the guide's configurations: a hub (ListenPort 51820) and a gateway that has the
//! hub's Endpoint and PersistentKeepalive 21, generated as the fleet tools would.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use edgewire_tunnel::config::{Config, Endpoint, InterfaceConfig, PeerConfig};
use edgewire_tunnel::key::PrivateKey;
use edgewire_tunnel::route::IpNet;

use super::netns::{Ns, Proc, Session, Spawn};

/// Where every UAPI implementation puts its socket.
pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// The hub's UDP port (the guide's).
pub const HUB_PORT: u16 = 51820;
/// How long an implementation gets to create its socket and configure its interface.
const START_TIMEOUT: Duration = Duration::from_secs(15);

pub fn socket_path(iface: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{iface}.sock"))
}

/// Tunnel addressing of a hub/gateway pair: both in `prefix`, hub first.
#[derive(Clone, Copy, Debug)]
pub struct Addressing {
    pub hub: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
}

impl Addressing {
    /// The guide's 10.8.0.1/24 and 10.8.0.2/24.
    pub const GUIDE: Addressing = Addressing {
        hub: Ipv4Addr::new(10, 8, 0, 1),
        gateway: Ipv4Addr::new(10, 8, 0, 2),
        prefix: 24,
    };

    fn net(&self, ip: Ipv4Addr) -> anyhow::Result<IpNet> {
        IpNet::new(IpAddr::V4(ip), self.prefix).context("tunnel prefix")
    }
}

/// Hub and gateway configurations, fresh keys: the hub listens on 51820 and knows the
/// gateway as its /32; the gateway has Endpoint = hub underlay:51820, the whole tunnel
/// network as AllowedIPs and PersistentKeepalive 21. `mtu` is written when given.
pub fn guide_configs(
    addr: Addressing,
    hub_underlay: Ipv4Addr,
    mtu: Option<u32>,
) -> anyhow::Result<(Config, Config)> {
    let (hub_key, gw_key) = (PrivateKey::generate(), PrivateKey::generate());
    let mut to_gateway = PeerConfig::new(gw_key.public_key());
    to_gateway.allowed_ips = vec![IpNet::host(IpAddr::V4(addr.gateway))];
    let hub = Config {
        interface: InterfaceConfig {
            private_key: Some(hub_key),
            addresses: vec![addr.net(addr.hub)?],
            listen_port: Some(HUB_PORT),
            mtu,
            ..InterfaceConfig::default()
        },
        peers: vec![to_gateway],
    };
    let mut to_hub = PeerConfig::new(hub_key.public_key());
    to_hub.endpoint = Some(Endpoint::Addr(SocketAddr::new(
        IpAddr::V4(hub_underlay),
        HUB_PORT,
    )));
    to_hub.allowed_ips = vec![addr.net(addr.hub)?.network()];
    to_hub.persistent_keepalive = Some(21);
    let gateway = Config {
        interface: InterfaceConfig {
            private_key: Some(gw_key),
            addresses: vec![addr.net(addr.gateway)?],
            mtu,
            ..InterfaceConfig::default()
        },
        peers: vec![to_hub],
    };
    Ok((hub, gateway))
}

/// How an interface is run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Implementation {
    /// `edgewire up DIR/IFACE.conf`; `offload_off` sets `EDGEWIRE_OFFLOAD=off`.
    Edgewire { offload_off: bool },
    /// A command line with `{iface}` (appended when absent), run through `sh -c 'exec …'`.
    Command(String),
}

impl Implementation {
    /// A short label: "edgewire", "edgewire (offload off)", or the command's program name.
    pub fn label(&self) -> String {
        match self {
            Implementation::Edgewire { offload_off: false } => "edgewire".to_owned(),
            Implementation::Edgewire { offload_off: true } => "edgewire (offload off)".to_owned(),
            Implementation::Command(c) => c
                .split_whitespace()
                .find(|w| !w.contains('='))
                .map(|w| w.rsplit('/').next().unwrap_or(w).to_owned())
                .unwrap_or_else(|| c.clone()),
        }
    }

    /// The command line for `iface`.
    pub fn command_line(&self, iface: &str) -> String {
        match self {
            Implementation::Edgewire { .. } => format!("edgewire up {iface}.conf"),
            Implementation::Command(t) if t.contains("{iface}") => t.replace("{iface}", iface),
            Implementation::Command(t) => format!("{t} {iface}"),
        }
    }
}

/// A running interface.
pub struct Tunnel {
    pub ns: Ns,
    pub iface: String,
    pub process: Proc,
    pub config_path: PathBuf,
}

/// Starts `imp` as `iface` in `ns` with `config`; returns once the UAPI socket exists and
/// the interface is up with its address. Files go to `dir` (0600, atomically).
pub fn start(
    session: &Session,
    imp: &Implementation,
    ns: &Ns,
    iface: &str,
    config: &Config,
    dir: &Path,
) -> anyhow::Result<Tunnel> {
    let socket = socket_path(iface);
    let addr = config
        .interface
        .addresses
        .first()
        .map(|a| a.addr().to_string());
    match imp {
        Implementation::Edgewire { offload_off } => {
            let config_path = dir.join(format!("{iface}.conf"));
            config
                .save(&config_path)
                .with_context(|| format!("writing {}", config_path.display()))?;
            let exe = super::netns::self_exe();
            let argv = [
                exe.into_os_string(),
                "up".into(),
                config_path.clone().into_os_string(),
            ];
            let mut spec = Spawn::new(Some(ns), &argv).label(format!("edgewire up {iface}"));
            // The label must not lie: `on` means whatever the kernel offers, even when the
            // caller's environment says otherwise.
            spec = if *offload_off {
                spec.env("EDGEWIRE_OFFLOAD", "off")
            } else {
                spec.env_remove("EDGEWIRE_OFFLOAD")
            };
            session.remove_at_cleanup(&socket);
            let process = session.spawn(spec)?;
            let t = Tunnel {
                ns: ns.clone(),
                iface: iface.to_owned(),
                process,
                config_path,
            };
            wait_ready(session, &t, addr.as_deref())?;
            Ok(t)
        }
        Implementation::Command(_) => {
            let line = imp.command_line(iface);
            let spec = Spawn::new(
                Some(ns),
                &["sh".to_owned(), "-c".into(), format!("exec {line}")],
            )
            .label(imp.label());
            session.remove_at_cleanup(&socket);
            let process = session.spawn(spec)?;
            // wg(8)'s format: the same file without wg-quick's keys.
            let mut bare = config.clone();
            bare.interface.addresses.clear();
            bare.interface.mtu = None;
            let config_path = dir.join(format!("{iface}.wg"));
            bare.save(&config_path)
                .with_context(|| format!("writing {}", config_path.display()))?;
            let t = Tunnel {
                ns: ns.clone(),
                iface: iface.to_owned(),
                process,
                config_path,
            };
            wait_ready(session, &t, None)
                .with_context(|| format!("starting `{line}` in {}", ns.name))?;
            configure_with_wg(session, &t, config)?;
            Ok(t)
        }
    }
}

/// wg-quick's userspace steps: `wg setconf`, addresses, MTU (1420 unless set), link up.
fn configure_with_wg(session: &Session, t: &Tunnel, config: &Config) -> anyhow::Result<()> {
    let path = t.config_path.to_string_lossy().into_owned();
    let out = session.run(
        Some(&t.ns),
        &["wg", "setconf", &t.iface, &path],
        Duration::from_secs(10),
    )?;
    if !out.success() {
        bail!(
            "`wg setconf {} {path}` in {}: {}",
            t.iface,
            t.ns.name,
            out.message()
        );
    }
    for a in &config.interface.addresses {
        session.ip(&[
            "-n",
            &t.ns.name,
            "address",
            "add",
            &a.to_string(),
            "dev",
            &t.iface,
        ])?;
    }
    let mtu = config.interface.mtu.unwrap_or(1420).to_string();
    session.ip(&[
        "-n", &t.ns.name, "link", "set", "dev", &t.iface, "mtu", &mtu, "up",
    ])?;
    Ok(())
}

/// Waits for the socket (and, when `addr` is given, the address on an up link), failing
/// early with the log when the process exits.
fn wait_ready(session: &Session, t: &Tunnel, addr: Option<&str>) -> anyhow::Result<()> {
    let socket = socket_path(&t.iface);
    let deadline = Instant::now() + START_TIMEOUT;
    let mut exited_ok = false;
    loop {
        if !exited_ok {
            match session.try_wait(&t.process)? {
                // A daemonising implementation returns once its socket exists.
                Some(s) if s.success() && socket.exists() => exited_ok = true,
                Some(s) => bail!(
                    "`{}` in {} exited ({s}) before its interface was ready:\n{}",
                    t.process.label,
                    t.ns.name,
                    Session::log_tail(&t.process, 1500)
                ),
                None => {}
            }
        }
        let ready = socket.exists()
            && match addr {
                None => true,
                Some(a) => {
                    let out = session
                        .ip(&["-n", &t.ns.name, "-o", "addr", "show", "dev", &t.iface])
                        .unwrap_or_default();
                    out.contains(&format!(" {a}/")) && link_up(session, &t.ns, &t.iface)
                }
            };
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "`{}` in {}: {} not ready within {} s (socket {}):\n{}",
                t.process.label,
                t.ns.name,
                t.iface,
                START_TIMEOUT.as_secs(),
                socket.display(),
                Session::log_tail(&t.process, 1500)
            );
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

fn link_up(session: &Session, ns: &Ns, iface: &str) -> bool {
    session
        .ip(&["-n", &ns.name, "link", "show", "dev", iface])
        .map(|o| o.contains("<UP") || o.contains(",UP"))
        .unwrap_or(false)
}

/// Stops the interface's process (SIGTERM) and makes sure the link and socket are gone.
pub fn stop(session: &Session, t: &Tunnel) {
    session.stop(&t.process);
    let deadline = Instant::now() + Duration::from_secs(3);
    while session
        .ip(&["-n", &t.ns.name, "link", "show", "dev", &t.iface])
        .is_ok()
    {
        if Instant::now() > deadline {
            let _ = session.ip(&["-n", &t.ns.name, "link", "del", "dev", &t.iface]);
            break;
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    let _ = std::fs::remove_file(socket_path(&t.iface));
}

/// Pings `target` from `ns` once a quarter second until a reply or `timeout`.
pub fn wait_traffic(
    session: &Session,
    ns: &Ns,
    target: Ipv4Addr,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let t = target.to_string();
    loop {
        let out = session.run(
            Some(ns),
            &["ping", "-n", "-q", "-c", "1", "-W", "1", &t],
            Duration::from_secs(5),
        )?;
        if out.success() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!(
                "no reply from {target} through the tunnel within {} s (from {})",
                timeout.as_secs(),
                ns.name
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guide_configs_have_the_guide_shape() {
        let (hub, gw) =
            guide_configs(Addressing::GUIDE, Ipv4Addr::new(198, 18, 0, 1), None).expect("configs");
        let hub_text = hub.to_conf_string();
        let gw_text = gw.to_conf_string();
        assert!(hub_text.contains("ListenPort = 51820"), "{hub_text}");
        assert!(hub_text.contains("Address = 10.8.0.1/24"), "{hub_text}");
        assert!(hub_text.contains("AllowedIPs = 10.8.0.2/32"), "{hub_text}");
        assert!(gw_text.contains("Address = 10.8.0.2/24"), "{gw_text}");
        assert!(gw_text.contains("Endpoint = 198.18.0.1:51820"), "{gw_text}");
        assert!(gw_text.contains("AllowedIPs = 10.8.0.0/24"), "{gw_text}");
        assert!(gw_text.contains("PersistentKeepalive = 21"), "{gw_text}");
        assert!(!gw_text.contains("ListenPort"), "{gw_text}");
        let hub_pub = hub.interface.private_key.map(|k| k.public_key());
        assert_eq!(Some(gw.peers[0].public_key), hub_pub);
        let back = edgewire_tunnel::config::parse(&gw_text, Path::new("gw.conf"));
        assert!(back.is_ok(), "the generated file reads back");
    }

    #[test]
    fn command_lines_and_labels() {
        let wg = Implementation::Command("wireguard-go -f {iface}".into());
        assert_eq!(wg.command_line("ewb1"), "wireguard-go -f ewb1");
        assert_eq!(wg.label(), "wireguard-go");
        let env = Implementation::Command("LOG_LEVEL=verbose /usr/bin/boringtun-cli -f".into());
        assert_eq!(
            env.command_line("x0"),
            "LOG_LEVEL=verbose /usr/bin/boringtun-cli -f x0"
        );
        assert_eq!(env.label(), "boringtun-cli");
        assert_eq!(
            Implementation::Edgewire { offload_off: true }.label(),
            "edgewire (offload off)"
        );
    }
}
