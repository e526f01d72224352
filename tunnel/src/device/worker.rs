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
//! After a long sleep (sparse traffic), one worker stays awake for a moment after the burst
//! ([`spin`]) so that the answer to what it just sent is caught without a wake-up.
//!
//! Measured (docs/PERFORMANCE.md, same run against the earlier one-thread-per-direction
//! design): idle ping RTT 0.16-0.19 ms instead of 0.29-0.45 ms, 64-byte UDP +40 % packets per
//! second, one TCP stream about 6 % lower (a sleeping worker pays `poll` + `recvmmsg` where a
//! dedicated blocking reader paid one `recvmmsg`). The spin took a further 15-30 % off the
//! idle RTT (interleaved A/B, 200 pings per run).

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Device, DeviceExit};
use crate::io::{poll_readable, POLL_INTERVAL};

/// How often fakes without a pollable descriptor are checked.
const FAKE_POLL: Duration = Duration::from_millis(1);
/// A sleep at least this long means sparse traffic: the next wake-up is followed by a spin.
const SPARSE: Duration = Duration::from_millis(2);
/// How long a worker stays awake after handling sparse traffic (see [`spin`]).
const SPIN: Duration = Duration::from_micros(300);

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
    // Set after a sleep of at least `SPARSE`: traffic is sparse, so stay awake for the answer.
    let mut spinning = false;
    while !device.stopping() {
        if own(&device) || other(&device) {
            continue;
        }
        if spinning && spin(&device, own, other) {
            continue;
        }
        let slept = Instant::now();
        wait_for_work(&device);
        spinning = slept.elapsed() >= SPARSE;
    }
}

/// Stays awake for up to `SPIN` after sparse traffic, running both stages until one has
/// work; `true` if one had. A request that just went out (a ping, a TCP SYN, a k3s API call)
/// usually has its answer back within this window, and catching it awake saves a wake-up:
/// on a virtual machine that is about 50 µs, a third of an idle tunnel's round trip.
/// `sched_yield` between rounds lets anything runnable on this core (the application waiting
/// for that answer) go first. Bounded: one window per sleep of at least `SPARSE`, so at most
/// `SPIN / SPARSE` of a core, and never under sustained load (no sleep is that long).
fn spin(device: &Device, own: Stage, other: Stage) -> bool {
    // One spinner per device: a second would only take turns with the first.
    if device
        .spinner
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    let until = Instant::now() + SPIN;
    let mut found = false;
    while !found && Instant::now() < until && !device.stopping() {
        std::thread::yield_now();
        found = own(device) || other(device);
    }
    device.spinner.store(false, Ordering::Release);
    found
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
