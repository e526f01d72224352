//! A batch of packets in one reusable arena: no allocation once it has grown to size.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Where one packet lives in the arena, and its peer address (UDP) or unspecified (TUN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub offset: usize,
    pub len: usize,
    pub addr: SocketAddr,
}

pub const NO_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));

/// Packets appended back to back in `arena`: a sender may hand consecutive same-size
/// entries to the kernel as one GSO super-datagram.
///
/// Optional per-packet room ([`Batch::with_room`]): `headroom` free bytes are left before
/// and `tailroom` after every packet written through [`Batch::spare`]/[`Batch::commit`]
/// (the TUN reader uses this), so the device can encrypt in place, prepending the WireGuard
/// header and appending the tag without a copy. With no room the packets are contiguous.
#[derive(Debug)]
pub struct Batch {
    arena: Vec<u8>,
    used: usize,
    entries: Vec<Entry>,
    max_entries: usize,
    headroom: usize,
    tailroom: usize,
}

impl Batch {
    /// Room for `max_entries` packets and `arena_bytes` of payload in total.
    pub fn new(max_entries: usize, arena_bytes: usize) -> Self {
        Self::with_room(max_entries, arena_bytes, 0, 0)
    }

    /// Like [`Batch::new`], leaving `headroom` bytes before and `tailroom` bytes after every
    /// packet appended with [`Batch::spare`]/[`Batch::commit`]/[`Batch::push`].
    pub fn with_room(
        max_entries: usize,
        arena_bytes: usize,
        headroom: usize,
        tailroom: usize,
    ) -> Self {
        Self {
            arena: vec![0; arena_bytes],
            used: 0,
            entries: Vec::with_capacity(max_entries),
            max_entries,
            headroom,
            tailroom,
        }
    }

    pub fn headroom(&self) -> usize {
        self.headroom
    }

    pub fn tailroom(&self) -> usize {
        self.tailroom
    }

    /// Entry `i` widened by the room around it (clamped to the arena): for in-place
    /// encryption. Returns the slice and where the packet starts inside it.
    pub fn packet_room_mut(&mut self, i: usize) -> Option<(&mut [u8], usize)> {
        let e = *self.entries.get(i)?;
        let start = e.offset.saturating_sub(self.headroom);
        let end = (e.offset + e.len + self.tailroom).min(self.arena.len());
        let slice = self.arena.get_mut(start..end)?;
        Some((slice, e.offset - start))
    }

    pub fn clear(&mut self) {
        self.used = 0;
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// No room for another packet of `len` bytes.
    pub fn is_full(&self, len: usize) -> bool {
        self.entries.len() >= self.max_entries
            || self.arena.len() - self.used < self.headroom + len + self.tailroom
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The bytes of entry `i`; empty if `i` is out of range.
    pub fn packet(&self, i: usize) -> &[u8] {
        self.entries
            .get(i)
            .and_then(|e| self.arena.get(e.offset..e.offset + e.len))
            .unwrap_or(&[])
    }

    pub fn packet_mut(&mut self, i: usize) -> &mut [u8] {
        match self.entries.get(i) {
            Some(e) => self
                .arena
                .get_mut(e.offset..e.offset + e.len)
                .unwrap_or(&mut []),
            None => &mut [],
        }
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.entries.get(i).map_or(NO_ADDR, |e| e.addr)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        (0..self.entries.len()).map(move |i| (self.packet(i), self.addr(i)))
    }

    /// The free tail of the arena, to write the next packet into before [`Batch::commit`].
    /// `None` when the batch is full.
    pub fn spare(&mut self) -> Option<&mut [u8]> {
        let start = self.used + self.headroom;
        let end = self.arena.len().saturating_sub(self.tailroom);
        if self.entries.len() >= self.max_entries || start >= end {
            return None;
        }
        Some(&mut self.arena[start..end])
    }

    /// Records the first `len` bytes of [`Batch::spare`] as the next packet.
    pub fn commit(&mut self, len: usize, addr: SocketAddr) {
        let start = self.used + self.headroom;
        let end = self.arena.len().saturating_sub(self.tailroom);
        let len = len.min(end.saturating_sub(start));
        self.entries.push(Entry {
            offset: start,
            len,
            addr,
        });
        self.used = (start + len + self.tailroom).min(self.arena.len());
    }

    /// Copies `packet` in as the next entry; `false` if it does not fit.
    pub fn push(&mut self, packet: &[u8], addr: SocketAddr) -> bool {
        match self.spare() {
            Some(room) if room.len() >= packet.len() => {
                room[..packet.len()].copy_from_slice(packet);
                self.commit(packet.len(), addr);
                true
            }
            _ => false,
        }
    }

    /// Raw access for receivers that fill the arena themselves (recvmmsg, GRO splitting).
    /// They must only record entries inside the arena; readers never panic either way.
    /// `used` is the end of the last packet's tailroom: the next packet starts at
    /// `used + headroom()`.
    pub fn raw_parts(&mut self) -> (&mut [u8], &mut usize, &mut Vec<Entry>) {
        (&mut self.arena, &mut self.used, &mut self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_commit_and_bounds() {
        let mut b = Batch::new(2, 10);
        assert!(b.push(b"abcd", NO_ADDR));
        let room = b.spare().unwrap();
        room[..3].copy_from_slice(b"xyz");
        b.commit(3, NO_ADDR);
        assert!(b.spare().is_none(), "entry limit reached");
        assert_eq!(b.packet(0), b"abcd");
        assert_eq!(b.packet(1), b"xyz");
        assert_eq!(b.packet(7), b"");
        b.clear();
        assert!(!b.push(&[0; 11], NO_ADDR));
        assert!(b.is_empty());
    }

    #[test]
    fn room_is_left_around_packets() {
        let mut b = Batch::with_room(4, 32, 4, 2);
        assert!(b.push(b"abc", NO_ADDR));
        assert!(b.push(b"defg", NO_ADDR));
        assert_eq!(b.entries()[0].offset, 4);
        assert_eq!(b.entries()[1].offset, 4 + 3 + 2 + 4);
        assert_eq!(b.packet(1), b"defg");
        let (room, at) = b.packet_room_mut(1).unwrap();
        assert_eq!((room.len(), at), (4 + 4 + 2, 4));
        // 32 - 19 = 13 left: 4 head + 7 payload + 2 tail.
        assert_eq!(b.spare().map(|s| s.len()), Some(7));
        assert!(b.is_full(8));
        assert!(!b.push(&[0; 8], NO_ADDR));
        assert!(b.push(&[0; 7], NO_ADDR));
        assert!(b.spare().is_none());
    }
}
