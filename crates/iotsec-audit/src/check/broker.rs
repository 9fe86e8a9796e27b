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
    for c in [OwaspIot::I1, OwaspIot::I7, OwaspIot::I8, OwaspIot::I9] {
        a.covered(c, what.clone());
    }
    Ok(())
}
