//! `iotsec up` (placeholder until its issue lands; replaced, never shipped as is).

use crate::Outcome;

/// Arguments of `iotsec up`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `iotsec up`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`iotsec up` is not built yet")
}
