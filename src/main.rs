//! The `pgroar` binary.

fn main() -> anyhow::Result<()> {
    Ok(())
}
