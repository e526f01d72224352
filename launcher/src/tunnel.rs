//! What the supervisor needs from the tunnel, as a trait so that supervision is tested
//! against the stand-in k3s without root and without a TUN.

use std::time::{Duration, SystemTime};

use edgewire_tunnel::interface::{ExitReason, Interface};
use edgewire_tunnel::key::PublicKey;

pub trait Tunnel {
    /// The interface name (flannel's interface).
    fn name(&self) -> &str;
    /// Wall-clock time of the peer's last completed handshake.
    fn last_handshake(&self, peer: &PublicKey) -> Option<SystemTime>;
    /// Never blocks: `Some` once the tunnel has stopped or been asked to stop.
    fn poll_exit(&self) -> Option<ExitReason>;
}

impl Tunnel for Interface {
    fn name(&self) -> &str {
        Interface::name(self)
    }

    fn last_handshake(&self, peer: &PublicKey) -> Option<SystemTime> {
        Interface::last_handshake(self, peer)
    }

    fn poll_exit(&self) -> Option<ExitReason> {
        self.wait(Some(Duration::ZERO))
    }
}
