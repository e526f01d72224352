//! The raw parts of the TUN device: `/dev/net/tun` and its ioctls, and SIOCGIFMTU. Every
//! unsafe block is one ioctl on a `struct ifreq`-sized buffer of ours.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use super::TunError;

/// `struct ifreq` as the TUN ioctls use it: the name and a 16-bit flags field.
#[repr(C)]
pub(super) struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl IfReq {
    pub(super) fn new(name: &str) -> Self {
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        let n = name.len().min(libc::IFNAMSIZ - 1);
        r.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        r
    }
}

pub(super) fn open_tun() -> io::Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    Ok(f.into())
}

pub(super) fn get_features(fd: &OwnedFd) -> io::Result<u32> {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one unsigned int to the pointer.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNGETFEATURES,
            &mut features as *mut libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(features)
}

pub(super) fn set_iff(fd: &OwnedFd, name: &str, vnet: bool) -> io::Result<()> {
    let mut req = IfReq::new(name);
    let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
    if vnet {
        flags |= libc::IFF_VNET_HDR;
    }
    req.flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes); `req` is that size.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn set_offload(fd: &OwnedFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its flags by value.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn iff_error(name: &str, source: io::Error) -> TunError {
    let what = match source.raw_os_error() {
        Some(libc::EPERM) => "creating the TUN (needs CAP_NET_ADMIN)",
        Some(libc::EBUSY) => "creating the TUN (the interface is already open by another process)",
        Some(libc::EINVAL) => {
            "creating the TUN (an interface of that name exists and is not a TUN)"
        }
        _ => "creating the TUN (TUNSETIFF)",
    };
    TunError::Io {
        what: what.into(),
        name: name.to_owned(),
        source,
    }
}

/// SIOCGIFMTU through a throwaway datagram socket in the caller's network namespace.
pub(super) fn query_mtu(name: &str) -> io::Result<usize> {
    #[repr(C)]
    struct IfReqMtu {
        name: [u8; libc::IFNAMSIZ],
        mtu: libc::c_int,
        _pad: [u8; 20],
    }
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    let base = IfReq::new(name);
    let mut req = IfReqMtu {
        name: base.name,
        mtu: 0,
        _pad: [0; 20],
    };
    // SAFETY: SIOCGIFMTU reads the name and writes an int at offset 16 of a 40-byte ifreq.
    let rc = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFMTU,
            &mut req as *mut IfReqMtu,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    usize::try_from(req.mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative MTU"))
}

/// TUNGETIFF: fails with EBADFD once the interface was deleted under the fd.
pub(super) fn get_iff(fd: &OwnedFd) -> io::Result<()> {
    let mut req = IfReq::new("");
    // SAFETY: TUNGETIFF writes a `struct ifreq` (40 bytes) into `req`, which is that size.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn set_persist(fd: &OwnedFd, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes an integer argument by value.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(on)) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
