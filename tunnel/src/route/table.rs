//! Longest-prefix match from IP address to a value (a peer id), IPv4 and IPv6.
//!
//! A binary trie per family, one node per prefix bit on the path: lookups walk at most 32 or
//! 128 nodes without allocating. Beside it, each value's list of prefixes, so listing or
//! removing one peer's prefixes costs that peer's prefixes, not a walk of the whole table
//! (a hub with 1,000 peers answers `wg show` and `wg syncconf` without quadratic work).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use super::IpNet;

#[derive(Debug, Clone)]
struct Node<T> {
    children: [Option<u32>; 2],
    value: Option<T>,
}

#[derive(Debug, Clone)]
struct Trie<T> {
    nodes: Vec<Node<T>>,
}

impl<T: Clone + PartialEq> Trie<T> {
    fn new() -> Self {
        Self {
            nodes: vec![Node {
                children: [None, None],
                value: None,
            }],
        }
    }

    fn insert(&mut self, key: u128, bits: u8, width: u8, value: T) -> Option<T> {
        let mut at = 0usize;
        for i in 0..bits {
            let bit = ((key >> (width - 1 - i)) & 1) as usize;
            at = match self.nodes[at].children[bit] {
                Some(next) => next as usize,
                None => {
                    let next = self.nodes.len();
                    self.nodes.push(Node {
                        children: [None, None],
                        value: None,
                    });
                    self.nodes[at].children[bit] = Some(next as u32);
                    next
                }
            };
        }
        self.nodes[at].value.replace(value)
    }

    fn remove(&mut self, key: u128, bits: u8, width: u8) -> Option<T> {
        let mut at = 0usize;
        for i in 0..bits {
            let bit = ((key >> (width - 1 - i)) & 1) as usize;
            at = self.nodes[at].children[bit]? as usize;
        }
        self.nodes[at].value.take()
    }

    fn exact(&self, key: u128, bits: u8, width: u8) -> Option<&T> {
        let mut at = 0usize;
        for i in 0..bits {
            let bit = ((key >> (width - 1 - i)) & 1) as usize;
            at = self.nodes[at].children[bit]? as usize;
        }
        self.nodes[at].value.as_ref()
    }

    fn lookup(&self, key: u128, width: u8) -> Option<&T> {
        let mut at = 0usize;
        let mut best = self.nodes[0].value.as_ref();
        for i in 0..width {
            let bit = ((key >> (width - 1 - i)) & 1) as usize;
            match self.nodes[at].children[bit] {
                Some(next) => at = next as usize,
                None => break,
            }
            if let Some(v) = self.nodes[at].value.as_ref() {
                best = Some(v);
            }
        }
        best
    }
}

/// Allowed-IPs table: each prefix belongs to exactly one value; inserting a prefix that
/// another value holds moves it (as WireGuard does).
#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    v4: Trie<T>,
    v6: Trie<T>,
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
            v4: Trie::new(),
            v6: Trie::new(),
            owned: HashMap::new(),
        }
    }

    /// Maps `net` (host bits ignored) to `value`; returns the previous owner.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        let net = net.network();
        let previous = match net.addr() {
            IpAddr::V4(a) => {
                self.v4
                    .insert(u128::from(u32::from(a)), net.prefix(), 32, value.clone())
            }
            IpAddr::V6(a) => self
                .v6
                .insert(u128::from(a), net.prefix(), 128, value.clone()),
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
            IpAddr::V4(a) => self.v4.remove(u128::from(u32::from(a)), net.prefix(), 32),
            IpAddr::V6(a) => self.v6.remove(u128::from(a), net.prefix(), 128),
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
            IpAddr::V4(a) => self.v4.lookup(u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a), 128),
        }
    }

    /// The value stored for exactly this prefix (not a covering one).
    pub fn lookup_exact(&self, net: IpNet) -> Option<&T> {
        let net = net.network();
        match net.addr() {
            IpAddr::V4(a) => self.v4.exact(u128::from(u32::from(a)), net.prefix(), 32),
            IpAddr::V6(a) => self.v6.exact(u128::from(a), net.prefix(), 128),
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
}
