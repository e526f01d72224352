//! SIGINT/SIGTERM without async-signal-safety worries: block them in every thread, and let
//! one thread `sigwait` for them, set a flag and call the hooks registered with
//! [`StopFlag::on_signal`] (which wake whatever waits, say an interface's `wait`).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::sys::signal::{SigSet, Signal};

type Hook = Box<dyn Fn(Signal) + Send>;

#[derive(Clone)]
pub struct StopFlag(Arc<Inner>);

struct Inner {
    signal: AtomicI32,
    /// Called, in order, from the signal thread when the first signal arrives.
    hooks: Mutex<Vec<Hook>>,
}

impl StopFlag {
    /// The signal that arrived, if any.
    pub fn received(&self) -> Option<Signal> {
        match self.0.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Signal::try_from(n).ok(),
        }
    }

    /// Calls `hook` with the first signal: right away if one has arrived already, otherwise
    /// from the signal thread when it does.
    pub fn on_signal(&self, hook: impl Fn(Signal) + Send + 'static) {
        let mut hooks = self.0.hooks.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock the signal thread stores under: no signal slips between.
        match self.received() {
            Some(sig) => {
                drop(hooks);
                hook(sig);
            }
            None => hooks.push(Box::new(hook)),
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
    let flag = StopFlag(Arc::new(Inner {
        signal: AtomicI32::new(0),
        hooks: Mutex::new(Vec::new()),
    }));
    let inner = Arc::clone(&flag.0);
    std::thread::Builder::new()
        .name("ew-signals".into())
        .spawn(move || loop {
            if let Ok(sig) = set.wait() {
                let hooks = inner.hooks.lock().unwrap_or_else(PoisonError::into_inner);
                let first = inner.signal.swap(sig as i32, Ordering::SeqCst) == 0;
                if first {
                    for hook in hooks.iter() {
                        hook(sig);
                    }
                }
            }
        })?;
    Ok(flag)
}
