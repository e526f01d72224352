//! A whole running interface, as `edgewire up`, `edgewire tun` and the launcher use it: the
//! TUN with its addresses, MTU and routes, the device threads, and the UAPI socket.
//!
//! Bring-up order (wg-quick's): validate everything (config, routes, DNS tooling, name) →
//! PreUp → create the TUN → start the device and load the config → addresses, MTU, link up
//! → DNS → routes → UAPI socket → PostUp. Anything failing part way undoes what was done.
//! Teardown: PreDown → SaveConfig → UAPI socket, routes, DNS, TUN → PostDown.

mod hooks;
pub mod routes;
mod save;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::device::{Device, DeviceExit};
use crate::io::{LinuxTun, LinuxUdpBinder, Offload, TunIo, UdpBinder};
use crate::key::PublicKey;
use crate::netlink;
use crate::uapi::server::{UapiServer, DEFAULT_SOCKET_DIR};
use crate::uapi::UapiDevice;

#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Directory for the UAPI socket; default `/var/run/wireguard`.
    pub socket_dir: Option<PathBuf>,
    /// Skip the interface hooks (PreUp/PostUp/PreDown/PostDown).
    pub no_hooks: bool,
    /// The file the configuration came from; needed for `SaveConfig = true`.
    pub config_path: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("{0}")]
    Invalid(String),
    /// A host operation failed (TUN, netlink, sockets); what was done has been undone.
    #[error("{0}")]
    System(String),
}

fn sys_err<E: std::fmt::Display>(what: impl Into<String>) -> impl FnOnce(E) -> UpError {
    let what = what.into();
    move |e| UpError::System(format!("{what}: {e}"))
}

/// Why [`Interface::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// [`Interface::request_stop`] was called (signal, `edgewire down`).
    Stopped,
    /// The UAPI socket file was removed (wireguard-go's convention for "go away").
    SocketRemoved,
    /// The TUN device disappeared (`ip link del`).
    TunDeleted,
}

/// What bring-up changed on the host, so teardown undoes exactly that.
#[derive(Default)]
struct Applied {
    tun_created: bool,
    dns_set: bool,
    routes: Vec<routes::PlannedRoute>,
}

pub struct Interface {
    name: String,
    config: Config,
    options: UpOptions,
    device: Arc<Device>,
    uapi: Option<UapiServer>,
    applied: Applied,
    stop: AtomicBool,
    /// Configured by wg-quick (bare `tun` mode): we did not set addresses or routes.
    bare: bool,
}

impl Interface {
    /// Brings the interface up from a wg-quick configuration, as `wg-quick up` would.
    pub fn up(name: &str, config: &Config, options: UpOptions) -> Result<Interface, UpError> {
        validate_name(name)?;
        if config.interface.private_key.is_none() {
            return Err(UpError::Invalid(format!(
                "{name}: the configuration has no PrivateKey"
            )));
        }
        let planned = routes::plan(config).map_err(|e| UpError::Invalid(format!("{name}: {e}")))?;
        hooks::check_dns(&config.interface)
            .map_err(|e| UpError::Invalid(format!("{name}: {e}")))?;
        if netlink::link_exists(name).unwrap_or(false) {
            return Err(UpError::Invalid(format!("{name} already exists")));
        }
        // Resolve host names before touching the host: a typo must not leave half an interface.
        let mut resolved = Vec::new();
        for p in &config.peers {
            if let Some(ep) = &p.endpoint {
                let addr = ep
                    .resolve()
                    .map_err(|e| UpError::Invalid(format!("{name}: {e}")))?;
                resolved.push((ep.clone(), addr));
            }
        }
        let update =
            config.to_update(&|ep| resolved.iter().find(|(e, _)| e == ep).map(|(_, a)| *a));

        if !options.no_hooks {
            hooks::run("PreUp", &config.interface.pre_up, name).map_err(UpError::Invalid)?;
        }
        let mut iface = Self::create(name, config.clone(), options, false)?;
        let result = (|| {
            iface
                .device
                .set(update)
                .map_err(|e| UpError::Invalid(format!("{name}: {e}")))?;
            for addr in &config.interface.addresses {
                netlink::add_address(name, *addr)
                    .map_err(sys_err(format!("{name}: adding address {addr}")))?;
            }
            let mtu = config
                .interface
                .mtu
                .unwrap_or_else(|| netlink::wg_quick_mtu(&routes::endpoint_ips(config)));
            netlink::set_mtu(name, mtu).map_err(sys_err(format!("{name}: setting MTU {mtu}")))?;
            netlink::set_up(name).map_err(sys_err(format!("{name}: setting link up")))?;
            hooks::set_dns(&config.interface, name).map_err(UpError::Invalid)?;
            iface.applied.dns_set = true;
            for r in &planned {
                match netlink::add_route(name, r.net, r.table) {
                    Ok(()) => iface.applied.routes.push(*r),
                    // Already routed (wg-quick checks first and skips): not ours to remove.
                    Err(e) if e.errno() == Some(libc::EEXIST) => {
                        tracing::info!("{name}: route {} exists", r.net)
                    }
                    Err(e) => return Err(sys_err(format!("{name}: adding route {}", r.net))(e)),
                }
            }
            if !iface.options.no_hooks {
                hooks::run("PostUp", &config.interface.post_up, name).map_err(UpError::Invalid)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(iface),
            Err(e) => {
                iface.teardown(false);
                Err(e)
            }
        }
    }

    /// wireguard-go's bare mode: a TUN and a UAPI socket, nothing configured; `wg` and
    /// `wg-quick` do the rest.
    pub fn bare(name: &str, options: UpOptions) -> Result<Interface, UpError> {
        validate_name(name)?;
        Self::create(name, Config::default(), options, true)
    }

    fn create(
        name: &str,
        config: Config,
        options: UpOptions,
        bare: bool,
    ) -> Result<Interface, UpError> {
        let offload = Offload::from_env();
        let tun = LinuxTun::create_with(name, offload)
            .map_err(sys_err(format!("{name}: creating TUN device")))?;
        tracing::info!("{name}: TUN offloads: {}", tun.offload_status());
        let tun: Arc<dyn TunIo> = Arc::new(tun);
        let binder: Arc<dyn UdpBinder> = Arc::new(LinuxUdpBinder::new(offload));
        let device =
            Device::start(tun, binder).map_err(sys_err(format!("{name}: starting device")))?;
        let mut iface = Interface {
            name: name.to_owned(),
            config,
            options,
            device,
            uapi: None,
            applied: Applied {
                tun_created: true,
                ..Default::default()
            },
            stop: AtomicBool::new(false),
            bare,
        };
        let dir = iface
            .options
            .socket_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_DIR));
        let dev: Arc<dyn UapiDevice> = iface.device.clone();
        match UapiServer::bind(&dir, name, dev) {
            Ok(server) => iface.uapi = Some(server),
            Err(e) => {
                iface.teardown(false);
                return Err(UpError::Invalid(format!("{name}: UAPI socket: {e}")));
            }
        }
        Ok(iface)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// Wall-clock time of the peer's last completed handshake, if any.
    pub fn last_handshake(&self, peer: &PublicKey) -> Option<SystemTime> {
        self.device.last_handshake(peer)
    }

    /// Blocks until the interface should stop, or `timeout` passes (`None` = forever).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitReason> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Some(ExitReason::Stopped);
            }
            if let Some(server) = &self.uapi {
                if !server.socket_present() {
                    return Some(ExitReason::SocketRemoved);
                }
            }
            let step = Duration::from_millis(200);
            let step = deadline.map_or(step, |d| {
                d.saturating_duration_since(Instant::now()).min(step)
            });
            match self.device.wait(Some(step)) {
                Some(DeviceExit::TunGone) => return Some(ExitReason::TunDeleted),
                Some(DeviceExit::Stopped) => return Some(ExitReason::Stopped),
                None => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
        }
    }

    /// Asks [`Interface::wait`] to return [`ExitReason::Stopped`]; callable from any thread.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Runs PreDown, saves the config if asked, removes routes, DNS, the socket and the
    /// TUN, then runs PostDown.
    pub fn down(mut self) -> Result<(), UpError> {
        self.teardown(true);
        Ok(())
    }

    fn teardown(&mut self, run_hooks: bool) {
        let name = self.name.clone();
        let hooks_on = run_hooks && !self.options.no_hooks && !self.bare;
        if hooks_on {
            if let Err(e) = hooks::run("PreDown", &self.config.interface.pre_down, &name) {
                tracing::warn!("{e}");
            }
        }
        if run_hooks && self.config.interface.save_config && !self.bare {
            if let Some(path) = &self.options.config_path {
                match save::save(path, &self.config, &self.device.get()) {
                    Ok(()) => {
                        tracing::info!("saved the running configuration to {}", path.display())
                    }
                    Err(e) => tracing::warn!("SaveConfig: cannot write {}: {e}", path.display()),
                }
            }
        }
        if let Some(server) = self.uapi.take() {
            server.shutdown();
        }
        for r in self.applied.routes.drain(..).rev() {
            let _ = netlink::del_route(&name, r.net, r.table);
        }
        if self.applied.dns_set {
            hooks::unset_dns(&self.config.interface, &name);
            self.applied.dns_set = false;
        }
        self.device.shutdown();
        tracing::info!("{name}: dropped packets: {}", self.device.counters());
        if self.applied.tun_created {
            // Closing the TUN removes it; delete explicitly in case it was made persistent.
            let _ = netlink::delete_link(&name);
            self.applied.tun_created = false;
        }
        if hooks_on {
            if let Err(e) = hooks::run("PostDown", &self.config.interface.post_down, &name) {
                tracing::warn!("{e}");
            }
        }
    }
}

impl Drop for Interface {
    fn drop(&mut self) {
        if self.applied.tun_created {
            self.teardown(false);
        }
    }
}

/// Linux interface names: 1–15 bytes, no '/', whitespace or ':' (IFNAMSIZ, dev_valid_name).
pub fn validate_name(name: &str) -> Result<(), UpError> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(UpError::Invalid(format!(
            "`{name}` is not a valid interface name (1-15 characters, no '/', ':' or spaces)"
        )))
    }
}

/// The interface name wg-quick derives from a config path (`/etc/wireguard/wg0.conf` → `wg0`).
pub fn name_from_path(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    (path.extension()? == "conf").then(|| stem.to_owned())
}
