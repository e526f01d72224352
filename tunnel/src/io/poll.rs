//! Waiting for either of two descriptors (the TUN and the socket) to become readable.
#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::time::Duration;

/// `true` if any of `fds` became readable (or reported an error or hang-up) before
/// `timeout`. The caller keeps the descriptors open for the duration of the call.
pub fn poll_readable(fds: &[RawFd], timeout: Duration) -> bool {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: libc::POLLIN,
        revents: 0,
    }; 2];
    let n = fds.len().min(pfds.len());
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
    }
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfds[..n]` are initialised pollfd structs on our stack; the kernel writes only
    // their `revents`.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, ms) };
    rc > 0
}
