//! `iotsec scan` (placeholder until its issue lands; replaced, never shipped as is).

use crate::Outcome;

/// Arguments of `iotsec scan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `iotsec scan`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`iotsec scan` is not built yet")
}
