//! The raw parts of the UDP socket: reusable `mmsghdr`/`iovec`/address/control-message
//! arrays, socket-address and cmsg encoding, integer socket options. Every unsafe block
//! here is a plain libc call or a read of kernel-filled C structs.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::Socket;

use super::super::canonical_addr;

/// A socket address as the kernel takes it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) union RawAddr {
    pub(super) v4: libc::sockaddr_in,
    pub(super) v6: libc::sockaddr_in6,
}

/// Reusable syscall arrays. They hold raw pointers only between being filled and the
/// syscall that uses them, under the owning mutex.
pub(super) struct MsgBufs {
    pub(super) hdrs: Vec<libc::mmsghdr>,
    pub(super) iovs: Vec<libc::iovec>,
    pub(super) names: Vec<RawAddr>,
    pub(super) cmsgs: Vec<[u64; 8]>,
    /// For sends: the first batch entry of each message.
    pub(super) first_entry: Vec<usize>,
}

// SAFETY: the raw pointers inside are rewritten before every syscall and never
// dereferenced outside a call that holds the `Mutex` around this struct.
unsafe impl Send for MsgBufs {}

impl MsgBufs {
    pub(super) fn new() -> Self {
        Self {
            hdrs: Vec::new(),
            iovs: Vec::new(),
            names: Vec::new(),
            cmsgs: Vec::new(),
            first_entry: Vec::new(),
        }
    }

    /// Grows every array to at least `msgs` messages and `iovs` iovecs (only allocates
    /// when a batch is larger than any before).
    pub(super) fn reserve(&mut self, msgs: usize, iovs: usize) {
        // SAFETY: all-zero is a valid value for these plain C structs (null pointers, 0s).
        let zero_hdr: libc::mmsghdr = unsafe { mem::zeroed() };
        let zero_addr: RawAddr = unsafe { mem::zeroed() };
        if self.hdrs.len() < msgs {
            self.hdrs.resize(msgs, zero_hdr);
            self.names.resize(msgs, zero_addr);
            self.cmsgs.resize(msgs, [0; 8]);
            self.first_entry.resize(msgs, 0);
        }
        if self.iovs.len() < iovs {
            self.iovs.resize(
                iovs,
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
            );
        }
    }
}

pub(super) fn setsockopt_int(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn getsockopt_int(
    sock: &Socket,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

pub(super) fn cmsg_space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE is pure arithmetic.
    unsafe { libc::CMSG_SPACE(len as libc::c_uint) as usize }
}

/// Writes one control message carrying a u16 at the start of `buf`.
pub(super) fn write_cmsg_u16(
    buf: &mut [u64; 8],
    level: libc::c_int,
    kind: libc::c_int,
    value: u16,
) {
    // SAFETY: `buf` is 64 bytes, 8-aligned; a cmsghdr (16 bytes) plus 2 bytes of data
    // (CMSG_SPACE(2) = 24) fits. CMSG_DATA points right after the header inside `buf`.
    unsafe {
        let hdr = buf.as_mut_ptr().cast::<libc::cmsghdr>();
        (*hdr).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as libc::c_uint) as usize;
        (*hdr).cmsg_level = level;
        (*hdr).cmsg_type = kind;
        std::ptr::write_unaligned(libc::CMSG_DATA(hdr).cast::<u16>(), value);
    }
}

/// The UDP_GRO segment size in a received control buffer, if any.
pub(super) fn read_gro_size(msg: &libc::msghdr) -> Option<usize> {
    if msg.msg_control.is_null() || msg.msg_controllen < mem::size_of::<libc::cmsghdr>() {
        return None;
    }
    // SAFETY: msg_control/msg_controllen describe our own cmsg buffer as the kernel filled
    // it; CMSG_FIRSTHDR/NXTHDR stay within msg_controllen and return null at the end.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).ok().filter(|v| *v > 0);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

pub(super) fn decode_addr(raw: &RawAddr) -> Option<SocketAddr> {
    // SAFETY: both variants start with the family field; it is read to pick the variant,
    // which the kernel filled in full for that family.
    unsafe {
        match i32::from(raw.v4.sin_family) {
            libc::AF_INET => {
                let a = raw.v4;
                let ip = Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 => {
                let a = raw.v6;
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                let sa = SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                );
                Some(canonical_addr(SocketAddr::V6(sa)))
            }
            _ => None,
        }
    }
}

pub(super) fn encode_addr(
    addr: SocketAddr,
    dual_stack: bool,
) -> Option<(RawAddr, libc::socklen_t)> {
    let v6 = |ip: Ipv6Addr, port: u16, flow: u32, scope: u32| libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: port.to_be(),
        sin6_flowinfo: flow,
        sin6_addr: libc::in6_addr {
            s6_addr: ip.octets(),
        },
        sin6_scope_id: scope,
    };
    let addr = canonical_addr(addr);
    match (addr, dual_stack) {
        (SocketAddr::V4(a), true) => Some((
            RawAddr {
                v6: v6(a.ip().to_ipv6_mapped(), a.port(), 0, 0),
            },
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )),
        (SocketAddr::V6(a), true) => Some((
            RawAddr {
                v6: v6(*a.ip(), a.port(), a.flowinfo(), a.scope_id()),
            },
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )),
        (SocketAddr::V4(a), false) => Some((
            RawAddr {
                v4: libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                },
            },
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )),
        (SocketAddr::V6(_), false) => None,
    }
}
