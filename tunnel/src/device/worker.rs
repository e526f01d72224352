//! The workers: two threads, each owning one stage and helping with the other.
//!
//! Each loop: run the own stage (non-blocking, one batch); if it had nothing, run the other
//! stage if nobody holds it; with nothing to do either, `poll` the TUN and the socket (only
//! those whose stage nobody holds) for up to `POLL_INTERVAL`. Under load the two workers
//! keep to their stages, so encryption and decryption run on both cores. When idle, the
//! worker that just wrote a packet to the TUN finds the kernel's answer (a ping reply, a TCP
//! ACK) ready and sends it at once instead of waking the other: a wake-up is most of a
//! tunnel's idle round-trip time on a virtual machine.
//!
//! Measured (docs/PERFORMANCE.md, same run against the earlier one-thread-per-direction
//! design): idle ping RTT 0.16-0.19 ms instead of 0.29-0.45 ms, 64-byte UDP +40 % packets per
//! second, one TCP stream about 6 % lower (a sleeping worker pays `poll` + `recvmmsg` where a
//! dedicated blocking reader paid one `recvmmsg`).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use super::{Device, DeviceExit};
use crate::io::{poll_readable, POLL_INTERVAL};

/// How often fakes without a pollable descriptor are checked.
const FAKE_POLL: Duration = Duration::from_millis(1);

/// Runs one stage once without waiting; `true` if it had work.
type Stage = fn(&Device) -> bool;

/// Worker `index` owns one stage (0: tx, 1: rx) and runs the other only when its own had
/// nothing to do: under load each worker keeps to its stage and the two run on both cores;
/// when idle, the worker that is awake carries a packet in and its answer out without
/// waking the other.
pub(super) fn run(device: Arc<Device>, index: usize) {
    let (own, other): (Stage, Stage) = if index == 0 {
        (run_tx, run_rx)
    } else {
        (run_rx, run_tx)
    };
    while !device.stopping() {
        if !own(&device) && !other(&device) {
            wait_for_work(&device);
        }
    }
}

fn run_tx(device: &Device) -> bool {
    device
        .tx_stage
        .try_lock()
        .is_some_and(|mut tx| tx.run(device))
}

fn run_rx(device: &Device) -> bool {
    device
        .rx_stage
        .try_lock()
        .is_some_and(|mut rx| rx.run(device))
}

/// Sleeps on the descriptors whose stage nobody is running: the other worker drains the rest.
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
    let mut fds = [0 as RawFd; 2];
    let mut n = 0;
    for fd in [tun_fd, udp_fd].into_iter().flatten() {
        let Some(fd) = fd else {
            // A fake: no descriptor to sleep on.
            std::thread::sleep(FAKE_POLL);
            if !device.tun.is_alive() {
                device.finish(DeviceExit::TunGone);
            }
            return;
        };
        fds[n] = fd;
        n += 1;
    }
    if n == 0 {
        // Both stages are busy on the other worker (a stage just changed hands).
        std::thread::yield_now();
        return;
    }
    // A socket replaced meanwhile (listen_port change) may be closed under us: poll then
    // reports it invalid and returns at once, and the next round picks up the new one.
    if !poll_readable(&fds[..n], POLL_INTERVAL) && !device.tun.is_alive() {
        device.finish(DeviceExit::TunGone);
    }
}
