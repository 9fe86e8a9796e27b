//! `iotsec pki` (placeholder until its issue lands; replaced, never shipped as is).

use crate::Outcome;

/// Arguments of `iotsec pki`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `iotsec pki`.
pub fn run(_args: Args) -> anyhow::Result<Outcome> {
    anyhow::bail!("`iotsec pki` is not built yet")
}
