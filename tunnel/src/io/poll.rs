//! Waiting for any of a few descriptors (the TUN, the socket, a waker) to become readable.
#![allow(unsafe_code)]

use std::os::fd::RawFd;
use std::time::Duration;

/// Which of `fds` became readable (or reported an error or hang-up) before `timeout`
/// (`None`: no timeout), by position; all `false` on timeout. `None` entries are skipped.
/// The caller keeps the descriptors open for the duration of the call.
pub fn poll_readable<const N: usize>(
    fds: [Option<RawFd>; N],
    timeout: Option<Duration>,
) -> [bool; N] {
    // poll ignores negative descriptors and leaves their `revents` at 0.
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd: fd.unwrap_or(-1),
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = timeout.map_or(-1, |t| {
        libc::c_int::try_from(t.as_millis()).unwrap_or(libc::c_int::MAX)
    });
    // SAFETY: `pfds` is an array of N initialised pollfd structs on our stack; the kernel
    // writes only their `revents`.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, ms) };
    if rc <= 0 {
        return [false; N];
    }
    pfds.map(|p| p.revents != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn reports_which_descriptor_is_readable() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let fds = [Some(a.as_raw_fd()), None, Some(b.as_raw_fd())];
        let short = Some(Duration::from_millis(1));
        assert_eq!(poll_readable(fds, short), [false; 3]);
        a.send_to(b"x", b.local_addr().unwrap()).unwrap();
        assert_eq!(poll_readable(fds, None), [false, false, true]);
        assert_eq!(poll_readable([fds[2]], short), [true]);
    }
}
