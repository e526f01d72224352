//! Where stop requests come from: SIGTERM/SIGINT (the binary) and a [`StopHandle`] (tests,
//! embedding).

use std::sync::Arc;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Notify;

/// Asks a running supervisor to stop, from any thread.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<Notify>);

impl StopHandle {
    pub fn request(&self) {
        // notify_one stores a permit when nobody waits yet, so no request is lost.
        self.0.notify_one();
    }
}

#[derive(Debug)]
pub struct StopSource {
    term: Option<Signal>,
    int: Option<Signal>,
    handle: StopHandle,
}

impl StopSource {
    /// SIGTERM and SIGINT stop the supervisor (registered now, on the current runtime, so a
    /// signal that arrives while the tunnel is coming up is not lost), plus the handle.
    pub fn with_signals(handle: StopHandle) -> std::io::Result<StopSource> {
        Ok(StopSource {
            term: Some(signal(SignalKind::terminate())?),
            int: Some(signal(SignalKind::interrupt())?),
            handle,
        })
    }

    /// Only the handle stops the supervisor.
    pub fn from_handle(handle: StopHandle) -> StopSource {
        StopSource {
            term: None,
            int: None,
            handle,
        }
    }

    /// Resolves with the name of the next stop request.
    pub async fn requested(&mut self) -> &'static str {
        async fn sig(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = sig(&mut self.term) => "SIGTERM",
            () = sig(&mut self.int) => "SIGINT",
            () = self.handle.0.notified() => "stop requested",
        }
    }
}
