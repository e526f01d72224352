//! The wg-quick configuration format (`/etc/wireguard/wg0.conf`).
//!
//! - [`model`]: the parsed configuration;
//! - [`parse`]: text → model, stopping at the first error with its `file:line`;
//! - [`value`]: single values (ports, MTU, endpoints, host names, tables, marks);
//! - [`write`]: model → text (SaveConfig, `peer add`), atomically with mode 0600;
//! - [`error`]: [`ConfigError`], which never contains key material.
//!
//! wg-quick's own keys are kept in the model as wg-quick reads them (DNS servers and search
//! domains, Table, hooks, SaveConfig); whether and how they are applied is decided at
//! bring-up, not here.

pub mod error;
pub mod model;
pub mod parse;
pub mod value;
pub mod write;

pub use error::{ConfigError, ConfigErrorKind, Section};
pub use model::{Config, Endpoint, InterfaceConfig, PeerConfig, ResolveError, Table};
pub use parse::{load, parse, MAX_FILE_SIZE};
pub use write::{write_atomic, CONFIG_MODE};
