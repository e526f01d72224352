//! `edgewire tun [-f] IFACE`: wireguard-go-compatible bare mode.

#[derive(clap::Args)]
pub struct TunArgs {
    /// Stay in the foreground (otherwise daemonise like wireguard-go).
    #[arg(short, long)]
    pub foreground: bool,
    /// Interface name.
    pub iface: String,
}

pub fn tun(_args: TunArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
