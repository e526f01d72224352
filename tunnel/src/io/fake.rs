//! In-memory TUN and UDP for root-free tests: channels instead of the kernel.
//!
//! [`FakeNet`] is a switch: every [`FakeUdp`] bound on it gets an address on 127.0.0.1 (no
//! real socket) and datagrams go to whoever holds the destination port. [`FakeTun`] is the
//! kernel side of a TUN: tests `inject` packets as if an application sent them and `recv`
//! what the device delivered.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{Batch, TunIo, UdpBinder, UdpIo, POLL_INTERVAL};

type Datagram = (Vec<u8>, SocketAddr);

/// A virtual network of UDP ports on 127.0.0.1.
#[derive(Clone, Default)]
pub struct FakeNet {
    ports: Arc<Mutex<HashMap<u16, Sender<Datagram>>>>,
    next_port: Arc<AtomicU16>,
}

impl FakeNet {
    pub fn new() -> Self {
        Self {
            ports: Arc::default(),
            next_port: Arc::new(AtomicU16::new(40000)),
        }
    }

    /// Delivers one datagram as if sent from `from` (for fuzz-style tests).
    pub fn inject(&self, from: SocketAddr, to_port: u16, data: &[u8]) {
        if let Some(tx) = self.ports.lock().get(&to_port) {
            let _ = tx.send((data.to_vec(), from));
        }
    }
}

impl UdpBinder for FakeNet {
    fn bind(&self, port: u16, _fwmark: u32) -> io::Result<Arc<dyn UdpIo>> {
        let mut ports = self.ports.lock();
        let port = if port == 0 {
            loop {
                let p = self.next_port.fetch_add(1, Ordering::Relaxed);
                if !ports.contains_key(&p) {
                    break p;
                }
            }
        } else {
            port
        };
        if ports.contains_key(&port) {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        let (tx, rx) = channel();
        ports.insert(port, tx);
        Ok(Arc::new(FakeUdp {
            net: self.clone(),
            port,
            rx: Mutex::new(rx),
        }))
    }
}

pub struct FakeUdp {
    net: FakeNet,
    port: u16,
    rx: Mutex<Receiver<Datagram>>,
}

impl Drop for FakeUdp {
    fn drop(&mut self) {
        self.net.ports.lock().remove(&self.port);
    }
}

/// The first item, waiting up to [`POLL_INTERVAL`] if `wait`.
fn first<T>(rx: &Receiver<T>, wait: bool) -> io::Result<Option<T>> {
    let got = if wait {
        rx.recv_timeout(POLL_INTERVAL)
    } else {
        rx.try_recv().map_err(|e| match e {
            TryRecvError::Empty => RecvTimeoutError::Timeout,
            TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
        })
    };
    match got {
        Ok(d) => Ok(Some(d)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(io::ErrorKind::BrokenPipe.into()),
    }
}

fn recv_into(rx: &Receiver<Datagram>, batch: &mut Batch, wait: bool) -> io::Result<usize> {
    let Some(first) = first(rx, wait)? else {
        return Ok(0);
    };
    let mut n = usize::from(batch.push(&first.0, first.1));
    while !batch.is_full(2048) {
        match rx.try_recv() {
            Ok((data, addr)) => n += usize::from(batch.push(&data, addr)),
            Err(_) => break,
        }
    }
    Ok(n)
}

impl UdpIo for FakeUdp {
    fn recv(&self, batch: &mut Batch) -> io::Result<usize> {
        recv_into(&self.rx.lock(), batch, true)
    }

    fn try_recv(&self, batch: &mut Batch) -> io::Result<usize> {
        recv_into(&self.rx.lock(), batch, false)
    }

    fn send(&self, batch: &Batch) -> io::Result<()> {
        let from = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.port);
        let ports = self.net.ports.lock();
        for (data, to) in batch.iter() {
            if let Some(tx) = ports.get(&to.port()) {
                let _ = tx.send((data.to_vec(), from));
            }
        }
        Ok(())
    }

    fn local_port(&self) -> u16 {
        self.port
    }
}

/// The device's end of an in-memory TUN; [`FakeTunHandle`] is the "kernel" end.
pub struct FakeTun {
    from_kernel: Mutex<Receiver<Vec<u8>>>,
    to_kernel: Sender<Vec<u8>>,
    mtu: usize,
    alive: Arc<AtomicBool>,
}

pub struct FakeTunHandle {
    to_device: Sender<Vec<u8>>,
    from_device: Receiver<Vec<u8>>,
    alive: Arc<AtomicBool>,
}

impl FakeTun {
    pub fn new(mtu: usize) -> (FakeTun, FakeTunHandle) {
        let (to_device, from_kernel) = channel();
        let (to_kernel, from_device) = channel();
        let alive = Arc::new(AtomicBool::new(true));
        (
            FakeTun {
                from_kernel: Mutex::new(from_kernel),
                to_kernel,
                mtu,
                alive: alive.clone(),
            },
            FakeTunHandle {
                to_device,
                from_device,
                alive,
            },
        )
    }
}

impl FakeTunHandle {
    /// An application on this host sends `packet` into the tunnel.
    pub fn inject(&self, packet: &[u8]) {
        let _ = self.to_device.send(packet.to_vec());
    }

    /// The next packet the device delivered to this host, if one arrives within `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.from_device.recv_timeout(timeout).ok()
    }

    /// Simulates `ip link del`: the device should notice and stop.
    pub fn delete(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

impl FakeTun {
    fn read(&self, batch: &mut Batch, wait: bool) -> io::Result<usize> {
        let rx = self.from_kernel.lock();
        let Some(first) = first(&rx, wait)? else {
            return Ok(0);
        };
        let mut n = usize::from(batch.push(&first, super::batch::NO_ADDR));
        while !batch.is_full(2048) {
            match rx.try_recv() {
                Ok(p) => n += usize::from(batch.push(&p, super::batch::NO_ADDR)),
                Err(_) => break,
            }
        }
        Ok(n)
    }
}

impl TunIo for FakeTun {
    fn recv(&self, batch: &mut Batch) -> io::Result<usize> {
        self.read(batch, true)
    }

    fn try_recv(&self, batch: &mut Batch) -> io::Result<usize> {
        self.read(batch, false)
    }

    fn send(&self, batch: &Batch) -> io::Result<()> {
        for (p, _) in batch.iter() {
            let _ = self.to_kernel.send(p.to_vec());
        }
        Ok(())
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}
