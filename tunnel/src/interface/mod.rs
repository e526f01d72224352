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
use crate::io::{poll_readable, LinuxTun, LinuxUdpBinder, Offload, TunIo, UdpBinder, Waker};
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

/// How often [`Interface::wait`] looks at the UAPI socket file when inotify is unavailable.
const SOCKET_CHECK: Duration = Duration::from_millis(200);

/// Asks an [`Interface`] to stop from another thread (a signal handler's thread, say).
#[derive(Clone)]
pub struct Stopper(Arc<StopState>);

struct StopState {
    requested: AtomicBool,
    /// Readable once a stop was requested; never drained.
    signal: Waker,
}

impl Stopper {
    /// Makes [`Interface::wait`] return [`ExitReason::Stopped`]; returns at once.
    pub fn stop(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        self.0.signal.wake();
    }
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
    stop: Stopper,
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
        let stop = Waker::new().map_err(sys_err(format!("{name}: creating an eventfd")))?;
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
            stop: Stopper(Arc::new(StopState {
                requested: AtomicBool::new(false),
                signal: stop,
            })),
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
    ///
    /// Sleeps in one `poll` on the device's exit, a stop request and an inotify watch on the
    /// UAPI socket file, so an idle interface's main thread does not wake up at all and a
    /// signal or `wg-quick down` is acted on at once.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitReason> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(reason) = self.exit_reason() {
                return Some(reason);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return None;
            }
            let removal = self.uapi.as_ref().map(UapiServer::removal_fd);
            let step = match removal {
                Some(None) => Some(left.map_or(SOCKET_CHECK, |l| l.min(SOCKET_CHECK))),
                _ => left,
            };
            let fds = [
                removal.flatten(),
                Some(self.device.exit_fd()),
                Some(self.stop.0.signal.poll_fd()),
            ];
            if poll_readable(fds, step)[0] {
                if let Some(server) = &self.uapi {
                    server.clear_removal_events();
                }
            }
        }
    }

    /// Why the interface should stop now, if it should; never blocks.
    fn exit_reason(&self) -> Option<ExitReason> {
        if self.stop.0.requested.load(Ordering::SeqCst) {
            return Some(ExitReason::Stopped);
        }
        if self.uapi.as_ref().is_some_and(|s| !s.socket_present()) {
            return Some(ExitReason::SocketRemoved);
        }
        self.device.exited().map(|exit| match exit {
            DeviceExit::TunGone => ExitReason::TunDeleted,
            DeviceExit::Stopped => ExitReason::Stopped,
        })
    }

    /// Asks [`Interface::wait`] to return [`ExitReason::Stopped`]; callable from any thread.
    pub fn request_stop(&self) {
        self.stop.stop();
    }

    /// A handle that does what [`Interface::request_stop`] does, for another thread.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::testns::{in_netns, run};
    use crate::testdir::TempDir;

    /// How many times the calling thread has been scheduled (`schedstat`'s third field).
    fn runs_of_this_thread() -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
            .expect("/proc/thread-self/schedstat")
    }

    fn bare(name: &str, dir: &TempDir) -> Interface {
        let options = UpOptions {
            socket_dir: Some(dir.0.clone()),
            no_hooks: true,
            config_path: None,
        };
        Interface::bare(name, options).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Runs `f` on another thread (in this namespace) after 50 ms, while the caller waits.
    fn soon(f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            f();
        })
    }

    fn wait_for(iface: &Interface) -> Option<ExitReason> {
        let before = runs_of_this_thread();
        let reason = iface.wait(Some(Duration::from_secs(20)));
        let woke = runs_of_this_thread() - before;
        assert!(
            woke <= 3,
            "{}: the waiting thread ran {woke} times",
            iface.name()
        );
        reason
    }

    #[test]
    fn wait_sleeps_until_a_stop_the_socket_s_removal_or_the_tun_s_deletion() {
        in_netns("interface-wait", |tag| {
            let dir = TempDir::new("interface-wait");

            // Idle: one sleep for the whole timeout (it was a wake-up every 200 ms).
            let a = bare(&format!("ewiwa{tag}"), &dir);
            let before = runs_of_this_thread();
            assert_eq!(a.wait(Some(Duration::from_secs(1))), None);
            let woke = runs_of_this_thread() - before;
            assert!(
                woke <= 2,
                "idle: the waiting thread ran {woke} times in 1 s"
            );
            assert_eq!(a.wait(Some(Duration::ZERO)), None);

            let stopper = a.stopper();
            let t = soon(move || stopper.stop());
            assert_eq!(wait_for(&a), Some(ExitReason::Stopped));
            t.join().unwrap();
            drop(a);

            // `wg-quick down` and `edgewire down`: the socket file is unlinked.
            let b = bare(&format!("ewiwb{tag}"), &dir);
            let sock = b.uapi.as_ref().map(|s| s.path().to_owned()).unwrap();
            let t = soon(move || std::fs::remove_file(sock).unwrap());
            assert_eq!(wait_for(&b), Some(ExitReason::SocketRemoved));
            t.join().unwrap();
            drop(b);

            // Another file renamed over the socket: not ours any more.
            let c = bare(&format!("ewiwc{tag}"), &dir);
            let sock = c.uapi.as_ref().map(|s| s.path().to_owned()).unwrap();
            let other = dir.0.join("other");
            std::fs::write(&other, b"").unwrap();
            let t = soon(move || std::fs::rename(other, sock).unwrap());
            assert_eq!(wait_for(&c), Some(ExitReason::SocketRemoved));
            t.join().unwrap();
            drop(c);

            // `ip link del`.
            let name = format!("ewiwd{tag}");
            let d = bare(&name, &dir);
            let t = soon(move || {
                run(&format!("ip link del {name}"));
            });
            assert_eq!(wait_for(&d), Some(ExitReason::TunDeleted));
            t.join().unwrap();
        });
    }
}
