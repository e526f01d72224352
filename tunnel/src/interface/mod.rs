//! A whole running interface, as `edgewire up` and the launcher use it: the TUN with its
//! addresses, MTU and routes, the device threads, and the UAPI socket.
//!
//! Bring-up order: validate everything → run PreUp → create TUN → start the device →
//! addresses, MTU, link up, routes → UAPI socket → PostUp. Teardown is the reverse and also
//! runs when bring-up fails half way.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::device::Device;
use crate::key::PublicKey;

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
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
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

pub struct Interface {
    name: String,
    device: Arc<Device>,
}

impl Interface {
    /// Brings the interface up from a validated wg-quick configuration.
    pub fn up(name: &str, config: &Config, opts: UpOptions) -> Result<Interface, UpError> {
        let _ = (name, config, opts);
        Err(UpError::Invalid("not implemented yet".into()))
    }

    pub fn bare(name: &str, opts: UpOptions) -> Result<Interface, UpError> {
        let _ = (name, opts);
        Err(UpError::Invalid("not implemented yet".into()))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// Wall-clock time of the peer's last completed handshake, if any.
    pub fn last_handshake(&self, peer: &PublicKey) -> Option<SystemTime> {
        let _ = peer;
        None
    }

    /// Blocks until the interface should stop, or `timeout` passes (`None` = forever).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitReason> {
        let _ = timeout;
        None
    }

    /// Asks [`Interface::wait`] to return [`ExitReason::Stopped`]; callable from any thread.
    pub fn request_stop(&self) {}

    /// Removes routes, addresses, the TUN and the socket; runs PreDown/PostDown.
    pub fn down(self) -> Result<(), UpError> {
        Ok(())
    }
}

/// The interface name wg-quick derives from a config path (`/etc/wireguard/wg0.conf` → `wg0`).
pub fn name_from_path(path: &std::path::Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    (path.extension()? == "conf").then(|| stem.to_owned())
}
