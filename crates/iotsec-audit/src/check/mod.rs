//! The checks, one module per kind of input. Each reads what it is given, pushes findings into
//! an [`crate::report::Assessment`] and records which categories it covered.

pub mod active;
pub mod broker;
pub mod device;
pub mod firmware;
pub mod network;
pub mod pki;
pub mod registry;
pub mod sdkconfig;
pub mod update;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The permission bits of `path` when other users may read it.
pub(crate) fn world_readable(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o004 != 0).then_some(mode)
}
