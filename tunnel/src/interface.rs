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
