//! `edgewire server`, `edgewire agent`, `edgewire kubeconfig`: the k3s launcher.

#[derive(clap::Args)]
pub struct ServerArgs {}

#[derive(clap::Args)]
pub struct AgentArgs {}

#[derive(clap::Args)]
pub struct KubeconfigArgs {}

pub fn server(_args: ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn agent(_args: AgentArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn kubeconfig(_args: KubeconfigArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
