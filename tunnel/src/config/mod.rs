//! The wg-quick configuration format (`/etc/wireguard/wg0.conf`).
//!
//! - [`model`]: the parsed configuration;
//! - `parse`: text → model with `file:line` errors;
//! - `write`: model → text (SaveConfig, `peer add`), atomically with mode 0600.

pub mod model;

pub use model::{Config, InterfaceConfig, PeerConfig, Endpoint};
