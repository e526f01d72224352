//! The sans-IO protocol core: peers, their sessions and timers, and every per-packet decision.
//!
//! Nothing here opens a socket or reads the clock: each call takes `now` and writes its
//! output into caller-provided [`Batch`](crate::io::Batch)es. The cryptographic engine is
//! boringtun's `noise` module (see docs/PERFORMANCE.md for why boringtun over gotatun); its
//! own session timers run on boringtun's clock, which tests replace with `mock_instant`
//! through the `virtual-time` feature.

mod core;
mod counters;
mod peer;

pub use self::core::{Core, RxOutcome, TxOutcome};
pub use counters::{Counters, CountersSnapshot};
pub use peer::PeerId;

/// How often [`Core::tick`] wants to run (boringtun's timer granularity is 250 ms).
pub const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
