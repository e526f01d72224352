//! The workers: a lead that runs both stages, and a helper that joins under two-way load.
//!
//! The lead loops: run the tx stage (non-blocking, one batch), run the rx stage; with
//! nothing to do in either, `poll` the TUN and the socket (those whose stage nobody holds)
//! and the device's waker, with only a 2 s safety timeout (idle, the lead stays asleep).
//! One thread carries a packet in and the kernel's answer (a ping reply, a TCP ACK) out
//! without waking anyone: a wake-up is most of a tunnel's idle round-trip time on a virtual
//! machine, and every wake-up costs a context switch under load. After a long sleep (sparse
//! traffic) the lead stays awake for a moment after the burst (for a window that `spin.rs`
//! adapts to the traffic) so that the answer to what it just sent is caught
//! without a wake-up.
//!
//! The helper sleeps on a condition variable until the lead sees both stages with full
//! batches several rounds in a row (bulk traffic both ways: a hub relaying, uploads and
//! downloads at once). It then takes the rx stage while the lead keeps tx, so encryption
//! and decryption run on two cores, and goes back to sleep as soon as it finds nothing to
//! take. One-way bulk traffic (a TCP stream is data one way and ACKs the other) never wakes
//! it.
//!
//! Measured (docs/PERFORMANCE.md, interleaved rounds on 2 vCPUs, both tunnel ends and
//! iperf3 on the same machine): against two always-on workers, one stream +4 % and reverse
//! +17 % (medians of 3), idle ping 0.25 instead of 0.30 ms; the earlier one-thread-per-
//! direction design had 0.29-0.45 ms.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::spin::{stay_awake, SpinPolicy};
use super::{Device, DeviceExit};
use crate::io::poll_readable;

/// A safety net only: how often an idle lead checks that its TUN still exists, should a
/// kernel not report a deleted TUN to `poll`.
const IDLE_CHECK: Duration = Duration::from_secs(2);
/// How often fakes without a pollable descriptor are checked.
const FAKE_POLL: Duration = Duration::from_millis(1);

/// Both stages at least this full ...
const HEAVY_BATCH: usize = 32;
/// ... this many rounds in a row wake the helper.
const HEAVY_ROUNDS: u32 = 4;

/// The lead worker: both stages to completion, then `poll`; wakes the helper under two-way
/// bulk load.
pub(super) fn lead(device: Arc<Device>) {
    let mut spin_policy = SpinPolicy::default();
    let mut heavy_rounds = 0;
    while !device.stopping() {
        let tx = run_tx(&device);
        let rx = run_rx(&device);
        spin_policy.handled(tx + rx);
        if tx >= HEAVY_BATCH && rx >= HEAVY_BATCH {
            heavy_rounds += 1;
            if heavy_rounds >= HEAVY_ROUNDS {
                heavy_rounds = 0;
                wake_helper(&device);
            }
        } else {
            heavy_rounds = 0;
        }
        if tx + rx > 0 {
            continue;
        }
        if let Some(window) = spin_policy.take() {
            // A request that just went out (a ping, a TCP SYN, a k3s API call) usually has
            // its answer back within the window; catching it awake saves a wake-up.
            let Ok(caught) = stay_awake(window, || {
                Ok::<_, Infallible>(run_tx(&device) + run_rx(&device))
            });
            spin_policy.spun(caught);
            if caught.is_some() {
                continue;
            }
        }
        let slept = Instant::now();
        wait_for_work(&device);
        spin_policy.slept(slept.elapsed());
    }
}

/// The helper: parked until the lead asks; then the rx stage first, tx when rx is idle,
/// until neither has anything it can take.
pub(super) fn help(device: Arc<Device>) {
    while !device.stopping() {
        {
            let mut wanted = device.help.lock();
            while !*wanted && !device.stopping() {
                device.help_wanted.wait(&mut wanted);
            }
            *wanted = false;
        }
        while !device.stopping() && run_rx(&device) + run_tx(&device) > 0 {}
        // The lead may be asleep on the TUN alone while this thread held the rx stage.
        device.waker.wake();
    }
}

fn wake_helper(device: &Device) {
    let mut wanted = device.help.lock();
    if !*wanted {
        *wanted = true;
        device.helper_calls.fetch_add(1, Ordering::Relaxed);
        device.help_wanted.notify_one();
    }
}

/// Runs the tx stage once without waiting: how many packets it handled (0 if it had none or
/// the other worker holds it). Likewise [`run_rx`].
fn run_tx(device: &Device) -> usize {
    device
        .tx_stage
        .try_lock()
        .map_or(0, |mut tx| tx.run(device))
}

fn run_rx(device: &Device) -> usize {
    device
        .rx_stage
        .try_lock()
        .map_or(0, |mut rx| rx.run(device))
}

/// Sleeps on the descriptors whose stage nobody is running (the other worker drains the
/// rest) and on the device's waker. Nothing else wakes it: stop, a new socket and the
/// helper's return all go through the waker, and a deleted TUN polls as an error.
fn wait_for_work(device: &Device) {
    let tun_fd = if device.tx_stage.is_locked() {
        None
    } else {
        Some(device.tun.poll_fd())
    };
    let udp_fd = device
        .rx_stage
        .try_lock()
        .map(|mut rx| rx.socket(device).poll_fd());
    if tun_fd == Some(None) || udp_fd == Some(None) {
        // A fake: no descriptor to sleep on.
        std::thread::sleep(FAKE_POLL);
        if !device.tun.is_alive() {
            device.finish(DeviceExit::TunGone);
        }
        return;
    }
    if tun_fd.is_none() && udp_fd.is_none() {
        // Both stages are busy on the other worker (a stage just changed hands).
        std::thread::yield_now();
        return;
    }
    let fds = [
        tun_fd.flatten(),
        udp_fd.flatten(),
        Some(device.waker.poll_fd()),
    ];
    let readable = poll_readable(fds, Some(IDLE_CHECK));
    if readable[2] {
        device.waker.drain();
    }
    if readable == [false; 3] && !device.tun.is_alive() {
        device.finish(DeviceExit::TunGone);
    }
}
