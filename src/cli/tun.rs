//! `edgewire tun [-f] IFACE`: wireguard-go's interface — a TUN plus a UAPI socket, configured
//! by `wg`/`wg-quick`. Without `-f` it daemonises like wireguard-go: the parent returns once
//! the socket is ready, which is what wg-quick's `WG_QUICK_USERSPACE_IMPLEMENTATION` expects.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use edgewire_tunnel::interface::{Interface, UpOptions};
const DEFAULT_SOCKET_DIR: &str = "/var/run/wireguard";

use super::signals;

#[derive(clap::Args)]
pub struct TunArgs {
    /// Stay in the foreground (otherwise daemonise like wireguard-go).
    #[arg(short, long)]
    pub foreground: bool,
    /// Interface name.
    pub iface: String,
}

pub fn tun(args: TunArgs) -> anyhow::Result<()> {
    if !args.foreground {
        return daemonise(&args.iface);
    }
    let stop = signals::block_termination()?;
    let iface = Interface::bare(&args.iface, UpOptions::default())?;
    tracing::info!("{}: TUN and UAPI socket ready", args.iface);
    super::notify_ready(&format!("{} ready", args.iface));
    let reason = super::up::run_until_stopped(&iface, &stop);
    tracing::info!("{}: stopping ({reason:?})", args.iface);
    iface.down()?;
    Ok(())
}

/// Starts `edgewire tun -f IFACE` in a new session and waits for its socket.
fn daemonise(iface: &str) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the edgewire executable")?;
    let socket = Path::new(DEFAULT_SOCKET_DIR).join(format!("{iface}.sock"));
    let log = std::env::var_os("EDGEWIRE_LOG_FILE");
    let stderr = match &log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
        None => Stdio::null(),
    };
    let mut cmd = Command::new(exe);
    cmd.args(["tun", "--foreground", iface])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().context("starting the interface daemon")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the interface daemon for {iface} exited early ({status}); set EDGEWIRE_LOG_FILE to see why");
        }
        if socket.exists() && Path::new("/sys/class/net").join(iface).exists() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the interface daemon for {iface} did not create {} within 10 s",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
