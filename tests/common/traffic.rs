//! Traffic through a tunnel: ping, and a TCP transfer whose content is checked end to end.
//!
//! The transfer's bytes are a deterministic xorshift64* stream. The receiver regenerates the
//! stream and compares every byte (reporting the first differing offset), hashes what it
//! received and sends the hash back; the sender compares it with the hash of what it sent.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::wait;

const BLOCK: usize = 64 * 1024;
/// A transfer fails when no byte moves for this long.
const STALL: Duration = Duration::from_secs(20);

/// The deterministic stream: little-endian xorshift64* words.
struct Pattern(u64);

impl Pattern {
    fn new(seed: u64) -> Pattern {
        Pattern(seed | 1)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            let w = x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
    }
}

/// FNV-1a over 8-byte words (bytes buffered across calls, so any split hashes the same).
struct Hasher {
    h: u64,
    pending: [u8; 8],
    n: usize,
}

impl Hasher {
    fn new() -> Hasher {
        Hasher {
            h: 0xcbf2_9ce4_8422_2325,
            pending: [0; 8],
            n: 0,
        }
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn update(&mut self, mut data: &[u8]) {
        while self.n > 0 && !data.is_empty() {
            self.pending[self.n] = data[0];
            self.n += 1;
            data = &data[1..];
            if self.n == 8 {
                self.word(u64::from_le_bytes(self.pending));
                self.n = 0;
            }
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.word(u64::from_le_bytes(b));
        }
        for &b in words.remainder() {
            self.pending[self.n] = b;
            self.n += 1;
        }
    }

    fn finish(mut self) -> u64 {
        for i in 0..self.n {
            self.word(u64::from(self.pending[i]) | 0x100);
        }
        self.h
    }
}

#[derive(Clone, Debug)]
pub struct TransferReport {
    pub bytes: u64,
    pub elapsed: Duration,
    pub hash: u64,
}

impl TransferReport {
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// Sends `bytes` from a socket in `from` to a listener on `to_ip` in `to` and checks them.
/// Panics on any difference, a stall longer than 20 s, or when `timeout` is exceeded.
pub fn transfer(
    from: &Netns,
    to: &Netns,
    to_ip: Ipv4Addr,
    bytes: u64,
    timeout: Duration,
) -> TransferReport {
    let seed = 0x5eed_0000_0000_0000 ^ u64::from(std::process::id()) ^ bytes;
    let listener = to
        .enter(|| TcpListener::bind((to_ip, 0)))
        .unwrap_or_else(|e| panic!("binding {to_ip}:0 in {}: {e}", to.name()));
    let addr: SocketAddr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    let deadline = Instant::now() + timeout;
    let start = Instant::now();
    std::thread::scope(|s| {
        let rx = s.spawn(move || receive(listener, bytes, seed, deadline));
        let sent = send(from, addr, bytes, seed, deadline);
        let received = match rx.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        };
        let (sent_hash, echoed) = match sent {
            Ok(v) => v,
            Err(e) => panic!(
                "transfer {} → {addr}: sender: {e}; receiver: {received:?}",
                from.name()
            ),
        };
        let recv_hash = match received {
            Ok(h) => h,
            Err(e) => panic!("transfer {} → {addr}: receiver: {e}", from.name()),
        };
        assert_eq!(
            recv_hash, sent_hash,
            "hash of received bytes differs from hash of sent bytes"
        );
        assert_eq!(echoed, sent_hash, "hash echoed by the receiver differs");
        TransferReport {
            bytes,
            elapsed: start.elapsed(),
            hash: sent_hash,
        }
    })
}

fn send(
    from: &Netns,
    addr: SocketAddr,
    bytes: u64,
    seed: u64,
    deadline: Instant,
) -> Result<(u64, u64), String> {
    let mut stream = from
        .enter(|| TcpStream::connect_timeout(&addr, Duration::from_secs(10)))
        .map_err(|e| format!("connect to {addr} from {}: {e}", from.name()))?;
    stream
        .set_write_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    let mut pat = Pattern::new(seed);
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; BLOCK];
    let mut left = bytes;
    while left > 0 {
        if Instant::now() > deadline {
            return Err(format!(
                "deadline passed with {left} of {bytes} bytes unsent"
            ));
        }
        let n = BLOCK.min(left as usize);
        pat.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        stream
            .write_all(&buf[..n])
            .map_err(|e| format!("write at offset {}: {e}", bytes - left))?;
        left -= n as u64;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut echo = [0u8; 8];
    stream
        .read_exact(&mut echo)
        .map_err(|e| format!("reading the receiver's hash: {e}"))?;
    Ok((hasher.finish(), u64::from_le_bytes(echo)))
}

fn receive(listener: TcpListener, bytes: u64, seed: u64, deadline: Instant) -> Result<u64, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let accept_by = Instant::now() + Duration::from_secs(15);
    let mut stream = wait::poll(accept_by.saturating_duration_since(Instant::now()), || {
        listener.accept().ok().map(|(s, _)| s)
    })
    .ok_or("no connection within 15 s")?;
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(STALL))
        .map_err(|e| e.to_string())?;
    let mut pat = Pattern::new(seed);
    let mut hasher = Hasher::new();
    let mut expected = vec![0u8; BLOCK];
    let mut exp_len = 0usize; // valid bytes in `expected`
    let mut exp_pos = 0usize; // next unchecked byte in `expected`
    let mut buf = vec![0u8; BLOCK];
    let mut got = 0u64;
    while got < bytes {
        if Instant::now() > deadline {
            return Err(format!("deadline passed after {got} of {bytes} bytes"));
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(format!("EOF after {got} of {bytes} bytes")),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read after {got} of {bytes} bytes: {e}")),
        };
        if got + n as u64 > bytes {
            return Err(format!("more than {bytes} bytes received"));
        }
        hasher.update(&buf[..n]);
        let mut data = &buf[..n];
        while !data.is_empty() {
            if exp_pos == exp_len {
                // Whole blocks (multiples of 8) keep the stream aligned with the sender's.
                pat.fill(&mut expected);
                exp_len = BLOCK;
                exp_pos = 0;
            }
            let k = data.len().min(exp_len - exp_pos);
            if data[..k] != expected[exp_pos..exp_pos + k] {
                let i = (0..k)
                    .find(|&i| data[i] != expected[exp_pos + i])
                    .unwrap_or(0);
                return Err(format!("content differs at byte offset {}", got + i as u64));
            }
            exp_pos += k;
            got += k as u64;
            data = &data[k..];
        }
    }
    let hash = hasher.finish();
    stream
        .write_all(&hash.to_le_bytes())
        .map_err(|e| format!("echoing hash: {e}"))?;
    let _ = stream.shutdown(Shutdown::Write);
    // Let the sender read the hash before the socket closes.
    let _ = stream.read(&mut buf);
    Ok(hash)
}

#[derive(Clone, Debug)]
pub struct PingReport {
    pub transmitted: u32,
    pub received: u32,
    pub output: String,
}

/// `ping -c COUNT -i 0.2 -W 2 -q IP` inside `ns` (never panics on loss; see the report).
pub fn ping(ns: &Netns, ip: Ipv4Addr, count: u32) -> PingReport {
    let ip_s = ip.to_string();
    let count_s = count.to_string();
    let out = ns
        .cmd(&[
            "ping", "-n", "-q", "-c", &count_s, "-i", "0.2", "-W", "2", &ip_s,
        ])
        .timeout(Duration::from_secs(u64::from(count) + 10))
        .run();
    let text = format!("{}{}", out.stdout, out.stderr);
    let mut rep = PingReport {
        transmitted: 0,
        received: 0,
        output: text.clone(),
    };
    for line in text.lines().filter(|l| l.contains("transmitted")) {
        let nums: Vec<u32> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|t| t.parse().ok())
            .collect();
        if nums.len() >= 2 {
            rep.transmitted = nums[0];
            rep.received = nums[1];
        }
    }
    rep
}

/// Pings until one reply arrives (the first packets may wait for a handshake).
pub fn wait_ping(ns: &Netns, ip: Ipv4Addr, timeout: Duration) {
    let ip_s = ip.to_string();
    let mut last = String::new();
    let ok = wait::poll(timeout, || {
        let out = ns.cmd(&["ping", "-n", "-c", "1", "-W", "1", &ip_s]).run();
        last = format!("{}{}", out.stdout, out.stderr);
        out.success().then_some(())
    });
    if ok.is_none() {
        panic!(
            "no ping reply from {ip} in {} within {timeout:?}; last:\n{last}",
            ns.name()
        );
    }
}

/// `count` pings, every one answered.
pub fn ping_all(ns: &Netns, ip: Ipv4Addr, count: u32) {
    let r = ping(ns, ip, count);
    assert_eq!(
        (r.transmitted, r.received),
        (count, count),
        "ping {ip} from {}: lost replies\n{}",
        ns.name(),
        r.output
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hasher_is_split_independent() {
        let mut data = vec![0u8; 1000];
        Pattern::new(7).fill(&mut data);
        let mut a = Hasher::new();
        a.update(&data);
        let mut b = Hasher::new();
        for c in data.chunks(3) {
            b.update(c);
        }
        assert_eq!(a.finish(), b.finish());
    }
}
