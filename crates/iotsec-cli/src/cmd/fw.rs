//! `iotsec fw` (placeholder until its issue lands; replaced, never shipped as is).

use crate::Outcome;

/// Arguments of `iotsec fw`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `iotsec fw`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`iotsec fw` is not built yet")
}
