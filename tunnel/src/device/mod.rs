//! A running WireGuard device: the protocol [`Core`] driven by a lead worker (a helper under
//! two-way bulk load) and a timer.
//!
//! Stages (each behind its own lock; see `tx.rs`, `rx.rs`):
//! 1. tx: TUN → read (TSO super-packets split in place in the read buffer) → per packet:
//!    route lookup, encrypt into the UDP batch → send the batch (GSO where the socket
//!    supports it).
//! 2. rx: UDP → read a batch (GRO where supported) → per datagram: find the peer, decrypt into
//!    the TUN batch, protocol replies into a UDP batch → write both batches (TCP/UDP
//!    coalesced on the TUN where the kernel allows); after a large TUN write, yield to the
//!    packets' reader.
//! 3. timers: every `TICK_INTERVAL`, session timers and keepalives → UDP batch → send.
//!
//! Threads (`worker.rs`): a lead worker runs both stages to completion and sleeps in one
//! `poll` on the TUN, the socket and a waker (idle, it wakes once every 2 s); a helper
//! joins only while both directions are saturated, taking the rx stage so that encryption
//! and decryption use two cores. The timer thread is separate.
//!
//! Locks: the core sits in one `RwLock`. A stage holds it for reading for one batch; a UAPI
//! `set` takes it for writing between batches. Per-peer session state has its own mutex
//! inside the core, so the two stages encrypt and decrypt at the same time. Per-peer packet
//! order is kept because a stage runs on one thread at a time, batch after batch.

mod rx;
mod spin;
mod timers;
mod tx;
mod worker;

pub use spin::{stay_awake, SpinPolicy, SPARSE, SPIN, SPIN_MAX, SPIN_MIN};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::io::{TunIo, UdpBinder, UdpIo, Waker};
use crate::key::PublicKey;
use crate::proto::{Core, Counters, CountersSnapshot};
use crate::uapi::model::SetError;
use crate::uapi::{DeviceSnapshot, DeviceUpdate, UapiDevice};

/// Packets per batch and arena bytes per batch (room for TSO/GRO super-packets split up).
pub(crate) const BATCH_PACKETS: usize = 128;
pub(crate) const BATCH_BYTES: usize = 256 * 1024;

/// Why a device stopped on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceExit {
    /// The TUN went away (`ip link del`) or failed.
    TunGone,
    /// [`Device::stop`] was called.
    Stopped,
}

pub struct Device {
    core: RwLock<Core>,
    counters: Arc<Counters>,
    tun: Arc<dyn TunIo>,
    binder: Arc<dyn UdpBinder>,
    // The current socket; replaced on a port change, `udp_generation` tells the rx thread.
    udp: RwLock<Arc<dyn UdpIo>>,
    udp_generation: AtomicU64,
    // The two pipeline stages; a worker runs a stage while holding its lock.
    tx_stage: Mutex<tx::TxStage>,
    rx_stage: Mutex<rx::RxStage>,
    // Lifecycle, guarded by `exit`.
    stop: AtomicBool,
    // Wakes the lead worker from its `poll` (stop, new socket, helper done: `worker.rs`).
    waker: Waker,
    // The helper worker parks here until the lead asks for help (`worker.rs`).
    help: Mutex<bool>,
    help_wanted: Condvar,
    helper_calls: AtomicU64,
    exit: Mutex<Option<DeviceExit>>,
    exited: Condvar,
    // Readable from the moment `exit` is set, and never drained: for callers that wait in
    // `poll` together with other descriptors (`Interface::wait`).
    exit_signal: Waker,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Device {
    /// Binds a UDP socket (random port until configured) and starts the threads.
    pub fn start(tun: Arc<dyn TunIo>, binder: Arc<dyn UdpBinder>) -> std::io::Result<Arc<Device>> {
        let udp = binder.bind(0, 0)?;
        let mut core = Core::new();
        core.apply(DeviceUpdate {
            listen_port: Some(udp.local_port()),
            ..Default::default()
        })
        .map_err(|e| std::io::Error::other(e.message))?;
        let device = Arc::new(Device {
            counters: core.counters().clone(),
            core: RwLock::new(core),
            tun,
            binder,
            tx_stage: Mutex::new(tx::TxStage::new()),
            rx_stage: Mutex::new(rx::RxStage::new(udp.clone())),
            udp: RwLock::new(udp),
            udp_generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            waker: Waker::new()?,
            help: Mutex::new(false),
            help_wanted: Condvar::new(),
            helper_calls: AtomicU64::new(0),
            exit: Mutex::new(None),
            exited: Condvar::new(),
            exit_signal: Waker::new()?,
            threads: Mutex::new(Vec::new()),
        });
        let spawn = |name: &str, f: fn(Arc<Device>)| {
            let d = device.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(d))
        };
        let handles = vec![
            spawn("ew-worker-0", worker::lead)?,
            spawn("ew-worker-1", worker::help)?,
            spawn("ew-timers", timers::run)?,
        ];
        *device.threads.lock() = handles;
        Ok(device)
    }

    /// Drop counters (packets refused and why).
    pub fn counters(&self) -> CountersSnapshot {
        self.counters.snapshot()
    }

    pub fn listen_port(&self) -> u16 {
        self.udp.read().local_port()
    }

    pub fn last_handshake(&self, peer: &PublicKey) -> Option<SystemTime> {
        self.get()
            .peers
            .into_iter()
            .find(|p| &p.public_key == peer)?
            .last_handshake
    }

    /// Asks the threads to stop; returns at once.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.finish(DeviceExit::Stopped);
    }

    /// Stops and joins the threads.
    pub fn shutdown(&self) {
        self.stop();
        let handles = std::mem::take(&mut *self.threads.lock());
        for h in handles {
            let _ = h.join();
        }
    }

    /// Waits until the device stops on its own or is stopped; `None` on timeout.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<DeviceExit> {
        let mut exit = self.exit.lock();
        let deadline = timeout.map(|t| Instant::now() + t);
        while exit.is_none() {
            match deadline {
                Some(d) => {
                    if self.exited.wait_until(&mut exit, d).timed_out() {
                        break;
                    }
                }
                None => self.exited.wait(&mut exit),
            }
        }
        *exit
    }

    /// Why the device stopped, if it has; never blocks.
    pub fn exited(&self) -> Option<DeviceExit> {
        *self.exit.lock()
    }

    /// A descriptor that polls readable once the device has stopped (and stays so), for
    /// waiting on it together with other descriptors.
    pub fn exit_fd(&self) -> std::os::fd::RawFd {
        self.exit_signal.poll_fd()
    }

    /// How many times the lead worker called the helper in (two-way bulk load; `worker.rs`).
    pub fn helper_calls(&self) -> u64 {
        self.helper_calls.load(Ordering::Relaxed)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn finish(&self, why: DeviceExit) {
        self.stop.store(true, Ordering::SeqCst);
        let mut exit = self.exit.lock();
        if exit.is_none() {
            *exit = Some(why);
        }
        self.exited.notify_all();
        drop(exit);
        self.exit_signal.wake();
        self.waker.wake();
        let _help = self.help.lock();
        self.help_wanted.notify_all();
    }

    pub(crate) fn socket(&self) -> Arc<dyn UdpIo> {
        self.udp.read().clone()
    }
}

impl UapiDevice for Device {
    fn get(&self) -> DeviceSnapshot {
        let mut snap = self.core.read().snapshot(SystemTime::now());
        snap.listen_port = self.listen_port();
        snap
    }

    fn set(&self, mut update: DeviceUpdate) -> Result<(), SetError> {
        let mut core = self.core.write();
        core.validate(&update)?;
        // Bind a new socket before changing anything, so a busy port refuses the whole set.
        let current = self.udp.read().clone();
        let new_socket = match update.listen_port {
            Some(port) if port != 0 && port != current.local_port() => Some(
                self.binder
                    .bind(port, update.fwmark.unwrap_or(core.fwmark()))
                    .map_err(|e| {
                        SetError::port_in_use(format!("cannot listen on UDP port {port}: {e}"))
                    })?,
            ),
            _ => None,
        };
        if let Some(mark) = update.fwmark {
            if new_socket.is_none() && mark != core.fwmark() {
                current
                    .set_fwmark(mark)
                    .map_err(|e| SetError::io(format!("cannot set fwmark {mark:#x}: {e}")))?;
            }
        }
        if let Some(sock) = &new_socket {
            update.listen_port = Some(sock.local_port());
        } else if update.listen_port.is_some() {
            update.listen_port = Some(current.local_port());
        }
        core.apply(update)?;
        if let Some(sock) = new_socket {
            *self.udp.write() = sock;
            self.udp_generation.fetch_add(1, Ordering::SeqCst);
            self.waker.wake();
        }
        Ok(())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
