fn main() -> anyhow::Result<()> {
    anyhow::bail!("no xtask yet")
}
