//! SIGINT/SIGTERM without async-signal-safety worries: block them in every thread, and let
//! one thread `sigwait` for them and set a flag.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};

#[derive(Clone)]
pub struct StopFlag(Arc<AtomicI32>);

impl StopFlag {
    /// The signal that arrived, if any.
    pub fn received(&self) -> Option<Signal> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            n => Signal::try_from(n).ok(),
        }
    }
}

/// Must run before any other thread starts, so every thread inherits the blocked mask.
pub fn block_termination() -> anyhow::Result<StopFlag> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.thread_block()?;
    let flag = StopFlag(Arc::new(AtomicI32::new(0)));
    let f = flag.clone();
    std::thread::Builder::new()
        .name("ew-signals".into())
        .spawn(move || loop {
            if let Ok(sig) = set.wait() {
                f.0.store(sig as i32, Ordering::SeqCst);
            }
        })?;
    Ok(flag)
}
