//! `genkey`, `genpsk`, `pubkey`: the same text formats as `wg`.

pub fn genkey() -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn genpsk() -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub fn pubkey() -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
