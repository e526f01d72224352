//! `edgewire up` / `edgewire down`.

#[derive(clap::Args)]
pub struct UpArgs {
    /// Interface name (reads /etc/wireguard/NAME.conf) or a path to NAME.conf.
    pub target: String,
}

#[derive(clap::Args)]
pub struct DownArgs {
    /// Interface name or a path to NAME.conf.
    pub target: String,
}

pub fn up(_args: UpArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn down(_args: DownArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
