//! edgewire's userspace WireGuard interface.
//!
//! Layers, bottom up (see the README's architecture section):
//! - [`wire`]: checked, zero-copy views of untrusted bytes (WireGuard messages, IP headers).
//! - [`route`]: the allowed-IPs longest-prefix table.
//! - [`proto`]: the sans-IO core. Peers, timers and packet decisions; time is passed in,
//!   sockets are never touched, so it is testable without root and in virtual time.
//! - [`io`]: batch-shaped I/O traits, the Linux TUN and UDP implementations, in-memory fakes.
//! - [`device`]: the threads that move batches between [`io`] and [`proto`].
//! - [`uapi`]: the cross-platform WireGuard control protocol and its unix-socket server.
//! - [`config`]: the wg-quick file format.
//! - [`netlink`]: addresses, routes, MTU and link state of the interface.
#![deny(unsafe_code)]

pub mod config;
pub mod device;
pub mod interface;
pub mod io;
pub mod key;
pub mod netlink;
pub mod proto;
pub mod route;
pub mod uapi;
pub mod wire;

#[cfg(test)]
mod testdir;
