//! `iotsec broker` (placeholder until its issue lands; replaced, never shipped as is).

use crate::Outcome;

/// Arguments of `iotsec broker`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `iotsec broker`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`iotsec broker` is not built yet")
}
