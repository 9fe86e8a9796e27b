//! Broker configuration: `iotsec_broker::audit` on a mosquitto.conf (`BRK-*` findings).

use std::path::Path;

use crate::error::Result;
use crate::finding::{Finding, OwaspIot};
use crate::report::Assessment;

/// Audits `path` (following `include_dir`).
pub fn assess(path: &Path, a: &mut Assessment) -> Result<()> {
    let config = iotsec_broker::conf::Config::load(path)?;
    for f in iotsec_broker::audit::audit(&config) {
        a.push(Finding::from_broker(&f));
    }
    let what = format!("broker configuration {}", path.display());
    for c in [OwaspIot::I1, OwaspIot::I7, OwaspIot::I9] {
        a.covered(c, what.clone());
    }
    // Device management on the broker means per-device identities (client certificates, with
    // their revocation path); without them there is nothing of I8 to check here.
    if config
        .listeners
        .iter()
        .any(|l| l.flag("require_certificate"))
    {
        a.covered(
            OwaspIot::I8,
            format!("{what} (client certificates, CRL, identity binding)"),
        );
    }
    Ok(())
}
