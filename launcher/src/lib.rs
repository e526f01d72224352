//! Supervises k3s bound to the edgewire tunnel: `edgewire server` / `edgewire agent`.
//!
//! - [`launch`]: the whole run — checks first ([`launch::prepare`]), then tunnel up,
//!   supervision, tunnel down;
//! - [`argv`]: the k3s command line and environment; [`k3s_config`]: k3s's config.yaml(.d),
//!   read to detect conflicts; [`labels`]: Kubernetes label rules; [`locate`]: finding k3s;
//! - [`supervise`]: the loop that starts, watches, restarts ([`backoff`]) and stops k3s;
//!   [`notify`]: systemd notifications both ways; [`probe`]: the hub's `/ping`;
//!   [`pidfile`]: a k3s left over from a crashed run; [`tunnel`]: what it needs from the tunnel;
//! - [`kubeconfig`]: `edgewire kubeconfig`.
//!
//! docs/LAUNCHER.md explains the design decisions.
#![deny(unsafe_code)]

pub mod argv;
pub mod backoff;
pub mod k3s_config;
pub mod kubeconfig;
pub mod labels;
pub mod launch;
pub mod locate;
pub mod notify;
pub mod pidfile;
pub mod probe;
pub mod supervise;
pub mod tunnel;
