//! Atomic file writes with explicit modes.
//!
//! Every file the PKI writes goes through [`write_atomic`]: a temporary file in the same
//! directory, created with its final mode (never world-readable for keys, not even for an
//! instant), filled, optionally flushed to disk, then renamed over the target. A reader sees the
//! old file or the new one, never half of one.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{PkiError, Result};

/// Who may read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Private key material: owner read/write only (0600).
    Private,
    /// Certificates, CRLs, public keys, the inventory: 0644.
    Public,
}

impl Mode {
    fn bits(self) -> u32 {
        match self {
            Mode::Private => 0o600,
            Mode::Public => 0o644,
        }
    }
}

/// Whether to wait for the data to reach the disk before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file before renaming it (and the directory after).
    Sync,
    /// Leave flushing to the caller, who syncs the whole file system once (bulk issuance).
    Deferred,
}

/// Writes `bytes` to `path` atomically with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Mode, durability: Durability) -> Result<()> {
    let dir = parent_dir(path);
    let mut tmp = tempfile::Builder::new()
        .prefix(".iotsec-tmp-")
        .permissions(fs::Permissions::from_mode(mode.bits()))
        .tempfile_in(&dir)
        .map_err(|e| PkiError::io(&dir, e))?;
    // The umask may have narrowed the mode; set it exactly (this only ever widens 0600 -> 0644
    // for public files).
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode.bits()))
        .map_err(|e| PkiError::io(path, e))?;
    tmp.write_all(bytes).map_err(|e| PkiError::io(path, e))?;
    if durability == Durability::Sync {
        tmp.as_file()
            .sync_all()
            .map_err(|e| PkiError::io(path, e))?;
    }
    tmp.persist(path).map_err(|e| PkiError::io(path, e.error))?;
    if durability == Durability::Sync {
        sync_dir(&dir)?;
    }
    Ok(())
}

/// fsyncs a directory so that renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| PkiError::io(dir, e))
}

/// Flushes every dirty page of the file system holding `dir` (one `syncfs(2)` instead of one
/// fsync per file, for bulk issuance).
pub fn sync_filesystem(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| PkiError::io(dir, e))?;
    nix::unistd::syncfs(&f).map_err(|e| PkiError::io(dir, std::io::Error::from(e)))
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| PkiError::io(path, e))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Files created by a multi-file operation, removed again unless the operation commits.
///
/// `pki device` writes a key, a certificate and then the inventory; if any step fails, the files
/// already written are removed so nothing half-issued is left behind.
#[derive(Debug, Default)]
pub struct Rollback {
    created: Vec<PathBuf>,
    committed: bool,
}

impl Rollback {
    /// Starts an empty rollback set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes a file that did not exist before and records it for removal on failure.
    pub fn create(
        &mut self,
        path: &Path,
        bytes: &[u8],
        mode: Mode,
        durability: Durability,
    ) -> Result<()> {
        if path.exists() {
            return Err(PkiError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        write_atomic(path, bytes, mode, durability)?;
        self.created.push(path.to_path_buf());
        Ok(())
    }

    /// Keeps every file written so far.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.committed {
            for path in self.created.iter().rev() {
                // Best effort: the original error is what the caller reports.
                let _ = fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_public_0644() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k");
        let c = dir.path().join("c");
        write_atomic(&k, b"secret", Mode::Private, Durability::Sync).unwrap();
        write_atomic(&c, b"cert", Mode::Public, Durability::Deferred).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&k), 0o600);
        assert_eq!(mode(&c), 0o644);
        assert_eq!(fs::read(&k).unwrap(), b"secret");
        // no temporary files left
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn rollback_removes_created_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        {
            let mut rb = Rollback::new();
            rb.create(&a, b"x", Mode::Public, Durability::Deferred)
                .unwrap();
            assert!(a.exists());
        }
        assert!(!a.exists());
        let mut rb = Rollback::new();
        rb.create(&a, b"x", Mode::Public, Durability::Deferred)
            .unwrap();
        rb.commit();
        assert!(a.exists());
    }
}
