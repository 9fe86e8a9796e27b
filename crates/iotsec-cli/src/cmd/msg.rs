//! `iotsec msg` (placeholder until its issue lands; replaced, never shipped as is).

use crate::Outcome;

/// Arguments of `iotsec msg`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `iotsec msg`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`iotsec msg` is not built yet")
}
