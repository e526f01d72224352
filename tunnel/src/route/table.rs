//! Longest-prefix match from IP address to a value (a peer id), IPv4 and IPv6.
//!
//! A path-compressed binary trie per family: a node exists only where a prefix is stored or
//! where two stored prefixes part ways, so a lookup visits one node per stored prefix or
//! branch on its path (one node for a peer's /32), not one per bit. Removing a prefix frees its node and any branch node left
//! with a single child; freed slots are reused, so a table that churns does not grow.
//! Beside the tries, each value's list of prefixes, so listing or removing one peer's
//! prefixes costs that peer's prefixes, not a walk of the whole table (a hub with 1,000
//! peers answers `wg show` and `wg syncconf` without quadratic work).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use super::IpNet;

/// No child.
const NONE: u32 = u32::MAX;

/// A trie key: an address as an unsigned integer, most significant bit first. IPv4 keys
/// stay `u32`, which keeps an IPv4 node at 24 bytes (a lookup is mostly cache misses).
trait Key: Copy + Eq {
    const WIDTH: u8;
    /// Bit `i`, counted from the top (`i` < `WIDTH`).
    fn bit(self, i: u8) -> usize;
    /// Only the top `bits` bits kept.
    fn masked(self, bits: u8) -> Self;
    /// How many top bits `self` and `other` share.
    fn common(self, other: Self) -> u8;
    /// Whether the top `bits` bits (1 ≤ `bits` ≤ `WIDTH`) of `self` and `other` are equal.
    fn same_top(self, other: Self, bits: u8) -> bool;
}

macro_rules! key {
    ($t:ty) => {
        impl Key for $t {
            const WIDTH: u8 = <$t>::BITS as u8;

            #[inline]
            fn bit(self, i: u8) -> usize {
                ((self >> (<$t>::BITS - 1 - u32::from(i))) & 1) as usize
            }

            #[inline]
            fn masked(self, bits: u8) -> Self {
                match u32::from(bits) {
                    0 => 0,
                    b => self & (<$t>::MAX << (<$t>::BITS - b.min(<$t>::BITS))),
                }
            }

            #[inline]
            fn common(self, other: Self) -> u8 {
                (self ^ other).leading_zeros() as u8
            }

            #[inline]
            fn same_top(self, other: Self, bits: u8) -> bool {
                (self ^ other) >> (<$t>::BITS - u32::from(bits)) == 0
            }
        }
    };
}
key!(u32);
key!(u128);

/// A stored prefix (`value` set) or a branch where two stored prefixes part ways; host
/// bits of `key` are zero.
#[derive(Debug, Clone)]
struct Node<K, T> {
    key: K,
    bits: u8,
    children: [u32; 2],
    value: Option<T>,
}

#[derive(Debug, Clone)]
struct Trie<K, T> {
    /// `nodes[0]` is the root, the /0 prefix; it is never freed.
    nodes: Vec<Node<K, T>>,
    /// Slots of freed nodes, reused before `nodes` grows.
    free: Vec<u32>,
}

impl<K: Key, T: Clone + PartialEq> Trie<K, T> {
    fn new(zero: K) -> Self {
        Self {
            nodes: vec![Node {
                key: zero,
                bits: 0,
                children: [NONE; 2],
                value: None,
            }],
            free: Vec::new(),
        }
    }

    fn alloc(&mut self, key: K, bits: u8, value: Option<T>) -> u32 {
        let node = Node {
            key,
            bits,
            children: [NONE; 2],
            value,
        };
        match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, slot: u32) {
        let node = &mut self.nodes[slot as usize];
        node.value = None;
        node.children = [NONE; 2];
        self.free.push(slot);
    }

    /// Stores `value` for the prefix `key`/`bits` (`bits` ≤ `K::WIDTH`); returns the value
    /// it replaced.
    fn insert(&mut self, key: K, bits: u8, value: T) -> Option<T> {
        let key = key.masked(bits);
        let mut at = 0u32;
        loop {
            // Invariant: `at` covers `key` and is shorter than or as long as `bits`.
            let node = &self.nodes[at as usize];
            if node.bits == bits {
                return self.nodes[at as usize].value.replace(value);
            }
            let side = key.bit(node.bits);
            let child = node.children[side];
            if child == NONE {
                let leaf = self.alloc(key, bits, Some(value));
                self.nodes[at as usize].children[side] = leaf;
                return None;
            }
            let c = &self.nodes[child as usize];
            let common = key.common(c.key).min(bits).min(c.bits);
            if common == c.bits {
                at = child;
                continue;
            }
            let c_key = c.key;
            let joint = if common == bits {
                // The new prefix sits between `at` and `child`.
                self.alloc(key, bits, Some(value))
            } else {
                // They part ways below `at`: a branch node where they do.
                let branch = self.alloc(key.masked(common), common, None);
                let leaf = self.alloc(key, bits, Some(value));
                self.nodes[branch as usize].children[key.bit(common)] = leaf;
                branch
            };
            self.nodes[joint as usize].children[c_key.bit(common)] = child;
            self.nodes[at as usize].children[side] = joint;
            return None;
        }
    }

    /// The node stored for exactly `key`/`bits`, with its parent and grandparent (`NONE`
    /// above the root).
    fn find(&self, key: K, bits: u8) -> Option<[u32; 3]> {
        let key = key.masked(bits);
        let mut path = [0, NONE, NONE];
        loop {
            let node = &self.nodes[path[0] as usize];
            if node.bits == bits {
                return (node.key == key).then_some(path);
            }
            let child = node.children[key.bit(node.bits)];
            let c = self.nodes.get(child as usize)?;
            if c.bits > bits || !key.same_top(c.key, c.bits) {
                return None;
            }
            path = [child, path[0], path[1]];
        }
    }

    /// Takes the value stored for exactly `key`/`bits`. Its node goes if it no longer
    /// separates anything (no child, or one child that takes its place), and so does a
    /// branch above it left with a single child: every node other than the root either
    /// holds a value or has two children.
    fn remove(&mut self, key: K, bits: u8) -> Option<T> {
        let [at, parent, grand] = self.find(key, bits)?;
        let value = self.nodes[at as usize].value.take()?;
        if parent == NONE {
            return Some(value);
        }
        let [a, b] = self.nodes[at as usize].children;
        if a != NONE && b != NONE {
            return Some(value);
        }
        let only = if a != NONE { a } else { b };
        self.replace_child(parent, at, only);
        self.release(at);
        let p = &self.nodes[parent as usize];
        if only == NONE && grand != NONE && p.value.is_none() {
            let [a, b] = p.children;
            let remaining = if a != NONE { a } else { b };
            self.replace_child(grand, parent, remaining);
            self.release(parent);
        }
        Some(value)
    }

    fn replace_child(&mut self, parent: u32, old: u32, new: u32) {
        let children = &mut self.nodes[parent as usize].children;
        let side = usize::from(children[1] == old);
        children[side] = new;
    }

    fn exact(&self, key: K, bits: u8) -> Option<&T> {
        let [at, ..] = self.find(key, bits)?;
        self.nodes[at as usize].value.as_ref()
    }

    fn lookup(&self, key: K) -> Option<&T> {
        let mut node = &self.nodes[0];
        let mut best = node.value.as_ref();
        while node.bits < K::WIDTH {
            let Some(c) = self.nodes.get(node.children[key.bit(node.bits)] as usize) else {
                break;
            };
            // Every node below the root has 1 ≤ bits ≤ WIDTH.
            if !key.same_top(c.key, c.bits) {
                break;
            }
            if c.value.is_some() {
                best = c.value.as_ref();
            }
            node = c;
        }
        best
    }

    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

/// Allowed-IPs table: each prefix belongs to exactly one value; inserting a prefix that
/// another value holds moves it (as WireGuard does).
#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    v4: Trie<u32, T>,
    v6: Trie<u128, T>,
    /// Each value's prefixes in insertion order (the trie is the authority on ownership).
    owned: HashMap<T, Vec<IpNet>>,
}

impl<T: Clone + Eq + Hash> Default for AllowedIps<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + Eq + Hash> AllowedIps<T> {
    pub fn new() -> Self {
        Self {
            v4: Trie::new(0),
            v6: Trie::new(0),
            owned: HashMap::new(),
        }
    }

    /// Maps `net` (host bits ignored) to `value`; returns the previous owner.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        let net = net.network();
        let previous = match net.addr() {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), net.prefix(), value.clone()),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), net.prefix(), value.clone()),
        };
        if previous.as_ref() != Some(&value) {
            if let Some(old) = &previous {
                self.forget(old, net);
            }
            self.owned.entry(value).or_default().push(net);
        }
        previous
    }

    pub fn remove(&mut self, net: IpNet) -> Option<T> {
        let net = net.network();
        let previous = self.remove_from_trie(net);
        if let Some(old) = &previous {
            self.forget(old, net);
        }
        previous
    }

    fn remove_from_trie(&mut self, net: IpNet) -> Option<T> {
        match net.addr() {
            IpAddr::V4(a) => self.v4.remove(u32::from(a), net.prefix()),
            IpAddr::V6(a) => self.v6.remove(u128::from(a), net.prefix()),
        }
    }

    fn forget(&mut self, value: &T, net: IpNet) {
        if let Some(list) = self.owned.get_mut(value) {
            list.retain(|n| *n != net);
            if list.is_empty() {
                self.owned.remove(value);
            }
        }
    }

    /// Removes every prefix that maps to `value`.
    pub fn remove_value(&mut self, value: &T) {
        for net in self.owned.remove(value).unwrap_or_default() {
            self.remove_from_trie(net);
        }
    }

    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// The value stored for exactly this prefix (not a covering one).
    pub fn lookup_exact(&self, net: IpNet) -> Option<&T> {
        let net = net.network();
        match net.addr() {
            IpAddr::V4(a) => self.v4.exact(u32::from(a), net.prefix()),
            IpAddr::V6(a) => self.v6.exact(u128::from(a), net.prefix()),
        }
    }

    /// Every prefix held by `value`, IPv4 first, each family in the order it was added.
    pub fn prefixes_of(&self, value: &T) -> Vec<IpNet> {
        let mut out = self.owned.get(value).cloned().unwrap_or_default();
        out.sort_by_key(|n| !n.is_ipv4());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = AllowedIps::new();
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.8.0.0/24"), 2);
        t.insert(net("10.8.0.7/32"), 3);
        t.insert(net("fd00::/8"), 4);
        t.insert(net("fd00:1::/32"), 5);
        assert_eq!(t.lookup("10.1.1.1".parse().unwrap()), Some(&1));
        assert_eq!(t.lookup("10.8.0.1".parse().unwrap()), Some(&2));
        assert_eq!(t.lookup("10.8.0.7".parse().unwrap()), Some(&3));
        assert_eq!(t.lookup("11.0.0.1".parse().unwrap()), None);
        assert_eq!(t.lookup("fd00:1::9".parse().unwrap()), Some(&5));
        assert_eq!(t.lookup("fd00:2::9".parse().unwrap()), Some(&4));
        assert_eq!(t.lookup("::1".parse().unwrap()), None);
    }

    #[test]
    fn default_route_and_moves() {
        let mut t = AllowedIps::new();
        t.insert(net("0.0.0.0/0"), 1);
        assert_eq!(t.lookup("8.8.8.8".parse().unwrap()), Some(&1));
        assert_eq!(t.insert(net("10.8.0.0/24"), 1), None);
        assert_eq!(t.insert(net("10.8.0.0/24"), 2), Some(1));
        assert_eq!(t.prefixes_of(&1), vec![net("0.0.0.0/0")]);
        assert_eq!(t.prefixes_of(&2), vec![net("10.8.0.0/24")]);
        t.remove_value(&2);
        assert_eq!(t.lookup("10.8.0.1".parse().unwrap()), Some(&1));
        assert_eq!(t.remove(net("0.0.0.0/0")), Some(1));
        assert_eq!(t.lookup("10.8.0.1".parse().unwrap()), None);
    }

    /// A small deterministic generator (xorshift64*), so failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// Addresses from a few clustered ranges, so prefixes nest and share paths.
        fn addr(&mut self, v6: bool) -> IpAddr {
            let base =
                [0x0a00_0000u32, 0x0a08_0000, 0xc0a8_0000, 0xc612_0000][self.below(4) as usize];
            let low = (self.next() as u32) & [0xff, 0xffff, 0xff_ffff][self.below(3) as usize];
            if v6 {
                // fd00::/16, then the cluster, then random bits below a random depth.
                let top = (0xfd00_u128 << 112) | (u128::from(base) << 80);
                let depth = self.below(80) as u32;
                let random =
                    (u128::from(self.next()) << 64 | u128::from(self.next())) >> (48 + depth);
                IpAddr::V6(std::net::Ipv6Addr::from(top | random | u128::from(low)))
            } else {
                IpAddr::V4(std::net::Ipv4Addr::from(base ^ low))
            }
        }

        fn net(&mut self) -> IpNet {
            let v6 = self.below(3) == 0;
            let max = if v6 { 128 } else { 32 };
            let prefix = match self.below(4) {
                0 => max,
                1 => self.below(9) as u8,
                _ => self.below(u64::from(max) + 1) as u8,
            };
            IpNet::new(self.addr(v6), prefix).unwrap().network()
        }
    }

    /// The table against a plain list searched end to end, through random inserts, moves,
    /// removals (single and by value) and lookups; then everything removed leaves only the
    /// two roots, however much the table churned.
    #[test]
    fn matches_a_linear_search_and_frees_what_it_removes() {
        for seed in 1..=20u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut t = AllowedIps::new();
            let mut model: Vec<(IpNet, u32)> = Vec::new();
            for step in 0..3_000 {
                match rng.below(10) {
                    0..=4 => {
                        let (n, v) = (rng.net(), rng.below(12) as u32);
                        let before = model.iter().position(|(m, _)| *m == n);
                        let expect = before.map(|i| model.remove(i).1);
                        model.push((n, v));
                        assert_eq!(
                            t.insert(n, v),
                            expect,
                            "seed {seed} step {step}: insert {n}"
                        );
                    }
                    5 | 6 if !model.is_empty() => {
                        let i = rng.below(model.len() as u64) as usize;
                        let (n, v) = model.remove(i);
                        assert_eq!(t.remove(n), Some(v), "seed {seed} step {step}: remove {n}");
                        assert_eq!(t.remove(n), None, "seed {seed} step {step}: twice {n}");
                    }
                    7 => {
                        let v = rng.below(12) as u32;
                        model.retain(|(_, m)| *m != v);
                        t.remove_value(&v);
                    }
                    _ => {
                        let n = rng.net();
                        let expect = model.iter().find(|(m, _)| *m == n).map(|(_, v)| v);
                        assert_eq!(
                            t.lookup_exact(n),
                            expect,
                            "seed {seed} step {step}: exact {n}"
                        );
                    }
                }
                for _ in 0..4 {
                    let v6 = rng.below(3) == 0;
                    let ip = rng.addr(v6);
                    let expect = model
                        .iter()
                        .filter(|(n, _)| n.contains(ip))
                        .max_by_key(|(n, _)| n.prefix())
                        .map(|(_, v)| v);
                    assert_eq!(t.lookup(ip), expect, "seed {seed} step {step}: lookup {ip}");
                }
            }
            for v in 0..12 {
                let mut want: Vec<IpNet> = model
                    .iter()
                    .filter(|(_, m)| *m == v)
                    .map(|(n, _)| *n)
                    .collect();
                let mut got = t.prefixes_of(&v);
                want.sort_by_key(|n| (n.addr(), n.prefix()));
                got.sort_by_key(|n| (n.addr(), n.prefix()));
                assert_eq!(got, want, "seed {seed}: prefixes of {v}");
            }
            for (n, _) in model.drain(..) {
                assert!(t.remove(n).is_some(), "seed {seed}: final remove {n}");
            }
            assert_eq!(
                (t.v4.live_nodes(), t.v6.live_nodes()),
                (1, 1),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn an_ipv4_node_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Node<u32, crate::proto::PeerId>>(), 24);
    }

    #[test]
    fn a_host_route_is_one_node_below_the_root() {
        let mut t = AllowedIps::new();
        t.insert(net("10.99.0.2/32"), 7);
        assert_eq!(t.v4.live_nodes(), 2);
        t.insert(net("10.99.0.3/32"), 8);
        // One branch where .2 and .3 part ways, and the two hosts.
        assert_eq!(t.v4.live_nodes(), 4);
        assert_eq!(t.lookup("10.99.0.3".parse().unwrap()), Some(&8));
        assert_eq!(t.lookup("10.99.0.4".parse().unwrap()), None);
        t.remove(net("10.99.0.2/32"));
        assert_eq!(t.v4.live_nodes(), 2);
        assert_eq!(t.lookup("10.99.0.3".parse().unwrap()), Some(&8));
        // Churn reuses the freed slots.
        for i in 0..1_000u32 {
            let n = IpNet::new(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), 32).unwrap();
            t.insert(n, 9);
            t.remove(n);
        }
        assert!(t.v4.nodes.len() <= 4, "{}", t.v4.nodes.len());
    }
}
