//! Allowed-IPs table: any sequence of inserts, removals (one prefix or all of a peer's) and
//! lookups answers exactly as a plain list searched end to end would, and never panics.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edgewire_tunnel::route::{AllowedIps, IpNet};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzz input as a stream of operations, each a few bytes.
struct Ops<'a>(&'a [u8]);

impl Ops<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    /// An address: IPv4 from 4 bytes, or IPv6 from 4 bytes spread over a short prefix of
    /// fd00::/8 so that prefixes of both families nest and collide often.
    fn addr(&mut self, v6: bool) -> Option<IpAddr> {
        let b = self.take::<4>()?;
        Some(if v6 {
            let mut o = [0u8; 16];
            o[0] = 0xfd;
            o[1..5].copy_from_slice(&b);
            o[15] = b[3];
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            IpAddr::V4(Ipv4Addr::from(b))
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let mut ops = Ops(data);
    let mut table = AllowedIps::new();
    let mut model: Vec<(IpNet, u8)> = Vec::new();
    while let Some([op, arg]) = ops.take::<2>() {
        let v6 = op & 0x80 != 0;
        let Some(addr) = ops.addr(v6) else { break };
        let max = if v6 { 128 } else { 32 };
        let prefix = arg % (max + 1);
        let value = op & 0x07;
        match (op >> 3) & 0x03 {
            0 | 1 => {
                let Ok(net) = IpNet::new(addr, prefix) else { continue };
                let net = net.network();
                let old = model.iter().position(|(n, _)| *n == net).map(|i| model.remove(i).1);
                model.push((net, value));
                assert_eq!(table.insert(net, value), old, "insert {net}");
            }
            2 => {
                let Ok(net) = IpNet::new(addr, prefix) else { continue };
                let net = net.network();
                let old = model.iter().position(|(n, _)| *n == net).map(|i| model.remove(i).1);
                assert_eq!(table.remove(net), old, "remove {net}");
            }
            _ if op & 0x40 != 0 => {
                model.retain(|(_, v)| *v != value);
                table.remove_value(&value);
            }
            _ => {}
        }
        let expect = model
            .iter()
            .filter(|(n, _)| n.contains(addr))
            .max_by_key(|(n, _)| n.prefix())
            .map(|(_, v)| v);
        assert_eq!(table.lookup(addr), expect, "lookup {addr}");
        if let Ok(net) = IpNet::new(addr, prefix) {
            let net = net.network();
            let exact = model.iter().find(|(n, _)| *n == net).map(|(_, v)| v);
            assert_eq!(table.lookup_exact(net), exact, "exact {net}");
        }
    }
    for v in 0..8 {
        let mut want: Vec<IpNet> = model.iter().filter(|(_, m)| *m == v).map(|(n, _)| *n).collect();
        let mut got = table.prefixes_of(&v);
        want.sort_by_key(|n| (n.addr(), n.prefix()));
        got.sort_by_key(|n| (n.addr(), n.prefix()));
        assert_eq!(got, want, "prefixes of {v}");
    }
});
