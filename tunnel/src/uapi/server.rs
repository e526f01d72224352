//! The UAPI unix socket, `DIR/IFACE.sock`, where `wg` and `wg-quick` find a userspace
//! interface (`ipc/uapi_unix.go` and `ipc/uapi_linux.go` in wireguard-go).
//!
//! Threads: one accept thread per server, plus one thread per connection, at most
//! [`Limits::max_connections`] at a time; further clients wait in the listen backlog until a
//! slot frees. A connection that sends nothing for [`Limits::io_timeout`], or takes longer
//! than [`Limits::request_deadline`] to send one request after its last answer, is closed.
//!
//! Binding: a socket path that exists but refuses connections is a leftover of a dead
//! process and is removed; one that answers belongs to a live server and binding fails.
//! The socket is created with mode 0600 without touching the process-wide umask (other
//! threads may be creating files): it is bound inside a fresh 0700 directory, chmod'ed, then
//! hard-linked into place, which also fails instead of replacing a socket that another
//! process created in the meantime.
//!
//! Like wireguard-go, the owner of the interface should stop when the socket file is gone
//! (`wg-quick down` removes it). As in wireguard-go (`ipc/uapi_linux.go`), an inotify watch
//! on the socket file says when to look: [`UapiServer::removal_fd`] polls readable when the
//! file's link count changes or it is deleted or moved; [`UapiServer::socket_present`] then
//! says whether it is still ours.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use parking_lot::{Condvar, Mutex};

use crate::io::{poll_readable, Waker};
use crate::uapi::model::UapiDevice;
use crate::uapi::protocol;

/// Where `wg` looks for userspace interfaces.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/wireguard";

/// Bounds on what clients can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at the same time (default 8).
    pub max_connections: usize,
    /// Longest wait for a single read or write on a connection (default 10 s).
    pub io_timeout: Duration,
    /// Longest time from the connection's start or its last answer until the next request
    /// has been read completely (default 30 s).
    pub request_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 8,
            io_timeout: Duration::from_secs(10),
            request_deadline: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UapiError {
    #[error("invalid interface name {name:?} for a UAPI socket: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("interface {iface} is already served by another process (socket {path} answers)")]
    InUse { iface: String, path: PathBuf },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("UAPI socket {path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
}

impl UapiError {
    fn io(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_owned();
        move |source| Self::Io {
            path,
            action,
            source,
        }
    }
}

/// A running UAPI socket for one interface. Dropping it is the same as [`Self::shutdown`].
pub struct UapiServer {
    path: PathBuf,
    /// (device, inode) of the socket file we created.
    identity: (u64, u64),
    shared: Arc<Shared>,
    /// Wakes the accept thread (to stop).
    wake: Arc<Waker>,
    accept: Option<JoinHandle<()>>,
    /// Watches the socket file; `None` if inotify is unavailable (the owner then looks at
    /// the file periodically).
    removal: Option<Inotify>,
}

struct Shared {
    limits: Limits,
    stopping: AtomicBool,
    conns: Mutex<Connections>,
    slot_freed: Condvar,
}

#[derive(Default)]
struct Connections {
    next_id: u64,
    /// A clone of each live stream (to cut it on shutdown) and its thread.
    live: HashMap<u64, (UnixStream, Option<JoinHandle<()>>)>,
}

impl std::fmt::Debug for UapiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UapiServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl UapiServer {
    /// Serve `device` at `dir/IFACE.sock` with the default [`Limits`], creating `dir`
    /// (mode 0755) if needed.
    pub fn bind(dir: &Path, iface: &str, device: Arc<dyn UapiDevice>) -> Result<Self, UapiError> {
        Self::bind_with_limits(dir, iface, device, Limits::default())
    }

    pub fn bind_with_limits(
        dir: &Path,
        iface: &str,
        device: Arc<dyn UapiDevice>,
        limits: Limits,
    ) -> Result<Self, UapiError> {
        check_iface_name(iface)?;
        create_dir(dir)?;
        let path = dir.join(format!("{iface}.sock"));
        remove_stale(&path, iface)?;
        let (listener, identity) = bind_private(dir, &path, iface)?;
        // From here on, failing must not leave our socket file behind.
        let cleanup = RemoveOnDrop {
            path: &path,
            identity,
        };
        listener
            .set_nonblocking(true)
            .map_err(UapiError::io(&path, "making the listener non-blocking"))?;
        let wake =
            Arc::new(Waker::new().map_err(UapiError::io(&path, "creating the wake-up eventfd"))?);
        let accept_wake = Arc::clone(&wake);
        let shared = Arc::new(Shared {
            limits,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Connections::default()),
            slot_freed: Condvar::new(),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name(format!("uapi-{iface}"))
            .spawn(move || accept_loop(&listener, &accept_wake, &accept_shared, &device))
            .map_err(UapiError::io(&path, "starting the accept thread"))?;
        std::mem::forget(cleanup);
        let removal = watch_removal(&path);
        tracing::info!("UAPI listening on {}", path.display());
        Ok(Self {
            path,
            identity,
            shared,
            wake,
            accept: Some(accept),
            removal,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file at the socket path is still the socket this server created.
    /// False once someone removed (or replaced) it: time for the interface to go away.
    pub fn socket_present(&self) -> bool {
        same_file(&self.path, self.identity)
    }

    /// A descriptor that polls readable when the socket file may have been removed or
    /// replaced (its link count changed, it was deleted or moved); `None` without inotify.
    /// After it does, call [`Self::clear_removal_events`] and [`Self::socket_present`].
    pub fn removal_fd(&self) -> Option<RawFd> {
        self.removal.as_ref().map(|i| i.as_fd().as_raw_fd())
    }

    /// Consumes what made [`Self::removal_fd`] readable.
    pub fn clear_removal_events(&self) {
        if let Some(watch) = &self.removal {
            // EAGAIN: nothing pending. Events are only hints; `socket_present` decides.
            while watch.read_events().is_ok_and(|events| !events.is_empty()) {}
        }
    }

    #[cfg(test)]
    fn live_connections(&self) -> usize {
        self.shared.conns.lock().live.len()
    }

    /// Stop accepting, close open connections, wait for their threads, and remove the
    /// socket file if it is still ours.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.slot_freed.notify_all();
        self.wake.wake();
        if accept.join().is_err() {
            tracing::error!("UAPI accept thread for {} panicked", self.path.display());
        }
        let live: Vec<_> = self
            .shared
            .conns
            .lock()
            .live
            .drain()
            .map(|(_, v)| v)
            .collect();
        for (stream, thread) in live {
            // Unblocks a thread waiting in read or write; it then returns.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
        remove_if_ours(&self.path, self.identity);
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: &UnixListener,
    wake: &Waker,
    shared: &Arc<Shared>,
    device: &Arc<dyn UapiDevice>,
) {
    let stopping = || shared.stopping.load(Ordering::SeqCst);
    while !stopping() {
        {
            let mut conns = shared.conns.lock();
            while conns.live.len() >= shared.limits.max_connections.max(1) && !stopping() {
                shared
                    .slot_freed
                    .wait_for(&mut conns, Duration::from_secs(1));
            }
        }
        if stopping() {
            break;
        }
        // A failed or interrupted poll reports nothing: `accept` below then finds nothing too.
        let [_, woken] = poll_readable([Some(listener.as_raw_fd()), Some(wake.poll_fd())], None);
        if woken {
            break;
        }
        match listener.accept() {
            Ok((stream, _)) => start_connection(stream, shared, device),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!("UAPI: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn start_connection(stream: UnixStream, shared: &Arc<Shared>, device: &Arc<dyn UapiDevice>) {
    let Ok(handle) = stream.try_clone() else {
        tracing::warn!("UAPI: could not clone a connection handle; dropping the connection");
        return;
    };
    let mut conns = shared.conns.lock();
    let id = conns.next_id;
    conns.next_id += 1;
    let (thread_shared, device) = (Arc::clone(shared), Arc::clone(device));
    // The lock is held until the handle is stored, so the thread's own removal comes after.
    let spawned = std::thread::Builder::new()
        .name("uapi-conn".into())
        .spawn(move || {
            serve_stream(&stream, &*device, thread_shared.limits);
            thread_shared.conns.lock().live.remove(&id);
            thread_shared.slot_freed.notify_all();
        });
    match spawned {
        Ok(thread) => {
            conns.live.insert(id, (handle, Some(thread)));
        }
        Err(e) => tracing::warn!("UAPI: could not start a connection thread: {e}"),
    }
}

fn serve_stream(stream: &UnixStream, device: &dyn UapiDevice, limits: Limits) {
    if let Err(e) = stream.set_nonblocking(false).and_then(|()| {
        stream.set_write_timeout(Some(limits.io_timeout.max(Duration::from_millis(1))))
    }) {
        tracing::debug!("UAPI: configuring a connection: {e}");
        return;
    }
    let deadline = std::rc::Rc::new(std::cell::Cell::new(
        Instant::now() + limits.request_deadline,
    ));
    let reader = BufReader::with_capacity(
        8192,
        TimedReader {
            stream,
            limits,
            deadline: deadline.clone(),
        },
    );
    let writer = TimedWriter {
        stream,
        limits,
        deadline,
    };
    match protocol::serve_connection(reader, writer, device) {
        Ok(()) => tracing::trace!("UAPI connection closed"),
        Err(e) => tracing::debug!("UAPI connection ended: {e}"),
    }
}

/// Reads with a per-read timeout and a deadline that each flushed answer pushes back.
struct TimedReader<'a> {
    stream: &'a UnixStream,
    limits: Limits,
    deadline: std::rc::Rc<std::cell::Cell<Instant>>,
}

impl Read for TimedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .deadline
            .get()
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "UAPI client took too long to send its request",
            ));
        }
        let wait = left
            .min(self.limits.io_timeout)
            .max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(wait))?;
        self.stream.read(buf)
    }
}

struct TimedWriter<'a> {
    stream: &'a UnixStream,
    limits: Limits,
    deadline: std::rc::Rc<std::cell::Cell<Instant>>,
}

impl Write for TimedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    /// Called after each complete answer: the client gets a fresh deadline.
    fn flush(&mut self) -> io::Result<()> {
        self.deadline
            .set(Instant::now() + self.limits.request_deadline);
        self.stream.flush()
    }
}

/// `mkdir -p` with mode 0755 for what it creates (regardless of the umask).
fn create_dir(dir: &Path) -> Result<(), UapiError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(UapiError::io(dir, "creating the socket directory"))?;
    fs::set_permissions(dir, Permissions::from_mode(0o755))
        .map_err(UapiError::io(dir, "setting mode 0755"))
}

/// Interface names as the kernel accepts them (at most 15 bytes, no '/', no whitespace),
/// which also keeps the socket path inside `dir`.
fn check_iface_name(name: &str) -> Result<(), UapiError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 15 {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "not a name"
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || !b.is_ascii_graphic())
    {
        "contains '/', ':', whitespace or a non-ASCII byte"
    } else {
        return Ok(());
    };
    Err(UapiError::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// Remove a socket left by a dead process; refuse if a live server answers on it.
fn remove_stale(path: &Path, iface: &str) -> Result<(), UapiError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(UapiError::io(path, "inspecting the existing path")(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(UapiError::NotASocket {
            path: path.to_owned(),
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(UapiError::InUse {
            iface: iface.to_owned(),
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!("UAPI: removing stale socket {}", path.display());
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                Err(e) => Err(UapiError::io(path, "removing the stale socket")(e)),
            }
        }
        Err(e) => Err(UapiError::io(path, "probing the existing socket")(e)),
    }
}

/// Bind in a private 0700 directory, set mode 0600, then link the socket to `path`.
fn bind_private(
    dir: &Path,
    path: &Path,
    iface: &str,
) -> Result<(UnixListener, (u64, u64)), UapiError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let private = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let candidate = dir.join(format!(".{iface}.uapi.{}.{n}", std::process::id()));
        match DirBuilder::new().mode(0o700).create(&candidate) {
            Ok(()) => break candidate,
            Err(e) if e.kind() == ErrorKind::AlreadyExists && n < 1_000_000 => continue,
            Err(e) => {
                return Err(UapiError::io(
                    &candidate,
                    "creating a private directory for binding",
                )(e))
            }
        }
    };
    let staged = private.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&staged).map_err(UapiError::io(&staged, "binding"))?;
        fs::set_permissions(&staged, Permissions::from_mode(0o600))
            .map_err(UapiError::io(&staged, "setting mode 0600"))?;
        let meta = fs::symlink_metadata(&staged)
            .map_err(UapiError::io(&staged, "inspecting the new socket"))?;
        match fs::hard_link(&staged, path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(UapiError::InUse {
                    iface: iface.to_owned(),
                    path: path.to_owned(),
                });
            }
            // A filesystem without hard links: rename instead (may replace a racing socket).
            Err(_) => fs::rename(&staged, path)
                .map_err(UapiError::io(path, "moving the socket into place"))?,
        }
        Ok((listener, (meta.dev(), meta.ino())))
    })();
    let _ = fs::remove_file(&staged);
    if let Err(e) = fs::remove_dir(&private) {
        tracing::warn!("UAPI: could not remove {}: {e}", private.display());
    }
    result
}

/// An inotify watch on the socket file (as wireguard-go's `UAPIListen`). A file that
/// is unlinked while our listener still holds it reports `IN_ATTRIB` (link count), not
/// `IN_DELETE_SELF`; a rename over it also drops its link count.
fn watch_removal(path: &Path) -> Option<Inotify> {
    let watch = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).and_then(|watch| {
        let events =
            AddWatchFlags::IN_ATTRIB | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF;
        watch.add_watch(path, events).map(|_| watch)
    });
    match watch {
        Ok(watch) => Some(watch),
        Err(e) => {
            tracing::info!(
                "UAPI: cannot watch {} with inotify ({e}); checking it periodically",
                path.display()
            );
            None
        }
    }
}

fn same_file(path: &Path, identity: (u64, u64)) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == identity)
}

fn remove_if_ours(path: &Path, identity: (u64, u64)) {
    if same_file(path, identity) {
        if let Err(e) = fs::remove_file(path) {
            tracing::warn!("UAPI: could not remove {}: {e}", path.display());
        }
    }
}

struct RemoveOnDrop<'a> {
    path: &'a Path,
    identity: (u64, u64),
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        remove_if_ours(self.path, self.identity);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, Read, Write};

    use super::*;
    use crate::testdir::TempDir;
    use crate::uapi::memory::MemoryDevice;

    fn request(path: &Path, input: &str) -> String {
        let mut stream =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream.write_all(input.as_bytes()).expect("send");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut out = String::new();
        stream.read_to_string(&mut out).expect("answer");
        out
    }

    fn serve(dir: &Path, iface: &str) -> (Arc<MemoryDevice>, UapiServer) {
        let device = Arc::new(MemoryDevice::default());
        let server =
            UapiServer::bind(dir, iface, device.clone()).unwrap_or_else(|e| panic!("bind: {e}"));
        (device, server)
    }

    #[test]
    fn get_and_set_over_the_socket_with_mode_0600() {
        let tmp = TempDir::new("uapi-rw");
        let dir = tmp.0.join("run/wireguard");
        let (device, server) = serve(&dir, "ewt0");
        let path = dir.join("ewt0.sock");
        assert_eq!(server.path(), path);

        let meta = fs::symlink_metadata(&path).expect("socket exists");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(
            fs::metadata(&dir).expect("dir").permissions().mode() & 0o7777,
            0o755
        );
        // Nothing left over from binding in a private directory.
        let names: Vec<_> = fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ewt0.sock")]);

        let key = "22".repeat(32);
        let answer = request(
            &path,
            &format!(
                "set=1\nlisten_port=51820\npublic_key={key}\nallowed_ip=10.8.0.0/24\n\nget=1\n\n"
            ),
        );
        assert_eq!(
            answer,
            format!(
                "errno=0\n\nlisten_port=51820\npublic_key={key}\npreshared_key={}\nprotocol_version=1\n\
                 last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n\
                 persistent_keepalive_interval=0\nallowed_ip=10.8.0.0/24\nerrno=0\n\n",
                "00".repeat(32)
            )
        );
        assert_eq!(device.updates().len(), 1);

        // Garbage on one connection; the next connection is still served.
        assert_eq!(request(&path, "set=1\nlisten_port=x\n\n"), "errno=-22\n\n");
        assert_eq!(request(&path, "\u{0}\u{1}garbage"), "errno=-71\n\n");
        assert_eq!(request(&path, "get=1\n\n"), format!("listen_port=51820\npublic_key={key}\npreshared_key={}\nprotocol_version=1\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\nallowed_ip=10.8.0.0/24\nerrno=0\n\n", "00".repeat(32)));

        assert!(server.socket_present());
        server.shutdown();
        assert!(!path.exists(), "shutdown removes our socket");
    }

    #[test]
    fn stale_socket_is_replaced_and_live_one_refused() {
        let tmp = TempDir::new("uapi-stale");
        let path = tmp.0.join("ewt1.sock");
        fs::create_dir_all(&tmp.0).expect("dir");
        // A socket file whose process is gone: connecting to it is refused.
        drop(UnixListener::bind(&path).expect("stale bind"));
        assert!(path.exists());
        let (_device, first) = serve(&tmp.0, "ewt1");
        assert_eq!(request(&path, "get=1\n\n"), "errno=0\n\n");

        let err = UapiServer::bind(&tmp.0, "ewt1", Arc::new(MemoryDevice::default()))
            .expect_err("in use");
        assert!(matches!(err, UapiError::InUse { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("interface ewt1 is already served by another process"),
            "{err}"
        );
        // The refused attempt did not disturb the first server.
        assert!(first.socket_present());
        assert_eq!(request(&path, "get=1\n\n"), "errno=0\n\n");

        // A path that is not a socket is never removed.
        fs::write(tmp.0.join("ewt2.sock"), b"keep me").expect("file");
        let err = UapiServer::bind(&tmp.0, "ewt2", Arc::new(MemoryDevice::default()))
            .expect_err("not a socket");
        assert!(matches!(err, UapiError::NotASocket { .. }), "{err:?}");
        assert_eq!(fs::read(tmp.0.join("ewt2.sock")).expect("kept"), b"keep me");
    }

    #[test]
    fn socket_present_follows_the_file_and_shutdown_leaves_others_alone() {
        let tmp = TempDir::new("uapi-gone");
        let (_device, server) = serve(&tmp.0, "ewt3");
        let path = tmp.0.join("ewt3.sock");
        assert!(server.socket_present());
        fs::remove_file(&path).expect("unlink");
        assert!(!server.socket_present());
        // Someone else's file now at the path: not ours, so shutdown keeps it.
        fs::write(&path, b"other").expect("replace");
        assert!(!server.socket_present());
        server.shutdown();
        assert_eq!(fs::read(&path).expect("kept"), b"other");
    }

    #[test]
    fn interface_names_are_checked() {
        let tmp = TempDir::new("uapi-names");
        for name in [
            "",
            "a/b",
            "..",
            ".",
            "sixteen-chars-xx",
            "wg 0",
            "wg:0",
            "wg\u{e9}",
        ] {
            let err =
                UapiServer::bind(&tmp.0, name, Arc::new(MemoryDevice::default())).expect_err(name);
            assert!(
                matches!(err, UapiError::InvalidName { .. }),
                "{name:?}: {err:?}"
            );
        }
    }

    #[test]
    fn connection_limit_queues_and_timeouts_free_slots() {
        let tmp = TempDir::new("uapi-limit");
        let limits = Limits {
            max_connections: 2,
            io_timeout: Duration::from_millis(300),
            request_deadline: Duration::from_secs(5),
        };
        let device: Arc<dyn UapiDevice> = Arc::new(MemoryDevice::default());
        let server = UapiServer::bind_with_limits(&tmp.0, "ewt4", device, limits).expect("bind");
        let path = server.path().to_owned();

        // Two silent clients take both slots; a third waits, then is served once the
        // silent ones time out. Nothing hangs.
        let idle: Vec<_> = (0..2)
            .map(|_| UnixStream::connect(&path).expect("idle"))
            .collect();
        while server.live_connections() < 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = Instant::now();
        assert_eq!(request(&path, "get=1\n\n"), "errno=0\n\n");
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "the third client waited for a slot"
        );
        for mut s in idle {
            let mut buf = Vec::new();
            assert_eq!(
                s.read_to_end(&mut buf).expect("closed by server"),
                0,
                "idle client was cut off"
            );
        }

        // A client trickling bytes is cut at the request deadline.
        let limits = Limits {
            max_connections: 2,
            io_timeout: Duration::from_millis(200),
            request_deadline: Duration::from_millis(500),
        };
        let device: Arc<dyn UapiDevice> = Arc::new(MemoryDevice::default());
        let slow_server =
            UapiServer::bind_with_limits(&tmp.0, "ewt5", device, limits).expect("bind");
        let mut slow = UnixStream::connect(slow_server.path()).expect("slow");
        let started = Instant::now();
        let mut cut = false;
        for _ in 0..40 {
            if slow.write_all(b"s").is_err() {
                cut = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut rest = Vec::new();
        let closed = cut || slow.read_to_end(&mut rest).is_ok();
        assert!(
            closed && started.elapsed() < Duration::from_secs(4),
            "slow client was cut off"
        );
        drop((server, slow_server));
    }

    #[test]
    fn shutdown_closes_open_connections_promptly() {
        let tmp = TempDir::new("uapi-stop");
        let (_device, server) = serve(&tmp.0, "ewt6");
        let mut client = UnixStream::connect(server.path()).expect("connect");
        client.write_all(b"get=1\n\n").expect("send");
        let mut reader = std::io::BufReader::new(client.try_clone().expect("clone"));
        let mut line = String::new();
        reader.read_line(&mut line).expect("answer");
        assert_eq!(line, "errno=0\n");
        let started = Instant::now();
        server.shutdown();
        assert!(started.elapsed() < Duration::from_secs(2));
        let mut rest = String::new();
        reader.read_to_string(&mut rest).expect("closed");
        assert_eq!(rest, "\n");
    }
}
