//! `edgewire up` / `edgewire down`: wg-quick's job, in the foreground, in one process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use edgewire_tunnel::interface::{name_from_path, ExitReason, Interface, UpOptions};
const DEFAULT_SOCKET_DIR: &str = "/var/run/wireguard";

use super::signals;

#[derive(clap::Args)]
pub struct UpArgs {
    /// Interface name (reads /etc/wireguard/NAME.conf) or a path to NAME.conf.
    pub target: String,
}

#[derive(clap::Args)]
pub struct DownArgs {
    /// Interface name or a path to NAME.conf.
    pub target: String,
    /// How long to wait for the interface to go away.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

/// wg-quick's rule: a bare name means /etc/wireguard/NAME.conf; a path names the interface
/// after its file.
pub fn resolve_target(target: &str) -> anyhow::Result<(String, PathBuf)> {
    if target.contains('/') || target.ends_with(".conf") {
        let path = PathBuf::from(target);
        let name = name_from_path(&path)
            .with_context(|| format!("{target}: the config file must be named IFACE.conf"))?;
        Ok((name, path))
    } else {
        Ok((
            target.to_owned(),
            Path::new("/etc/wireguard").join(format!("{target}.conf")),
        ))
    }
}

pub fn up(args: UpArgs) -> anyhow::Result<()> {
    let (name, path) = resolve_target(&args.target)?;
    let config = edgewire_tunnel::config::load(&path)?;
    let stop = signals::block_termination()?;
    let iface = Interface::up(
        &name,
        &config,
        UpOptions {
            config_path: Some(path.clone()),
            ..Default::default()
        },
    )?;
    tracing::info!(
        "{name} is up (config {}, UDP port {})",
        path.display(),
        iface.device().listen_port()
    );
    super::notify_ready(&format!("{name} up"));
    let reason = run_until_stopped(&iface, &stop);
    tracing::info!("{name}: stopping ({reason:?})");
    iface.down()?;
    Ok(())
}

/// Waits for a signal, the socket's removal or the TUN's deletion, asleep until one happens.
pub fn run_until_stopped(iface: &Interface, stop: &signals::StopFlag) -> ExitReason {
    let stopper = iface.stopper();
    stop.on_signal(move |sig| {
        tracing::info!("received {sig}");
        stopper.stop();
    });
    loop {
        if let Some(reason) = iface.wait(None) {
            return reason;
        }
    }
}

/// Stops an interface run by `edgewire up`/`tun` the way wireguard-go is stopped: remove
/// its UAPI socket; the daemon notices, tears down and exits. Waits for the link to go.
pub fn down(args: DownArgs) -> anyhow::Result<()> {
    let (name, _) = resolve_target(&args.target)?;
    let socket = Path::new(DEFAULT_SOCKET_DIR).join(format!("{name}.sock"));
    if !socket.exists() {
        bail!("{name} is not running here (no {})", socket.display());
    }
    std::fs::remove_file(&socket).with_context(|| format!("removing {}", socket.display()))?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    while Path::new("/sys/class/net").join(&name).exists() {
        if Instant::now() > deadline {
            bail!("{name} still exists after {} s", args.timeout_secs);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
