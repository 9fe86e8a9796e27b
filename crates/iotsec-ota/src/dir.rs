//! File-backed slots for a Linux gateway (feature `std`).
//!
//! A state directory holds:
//!
//! | file | what |
//! |---|---|
//! | `slot-a.img`, `slot-b.img` | slot images (mode 0755: on a gateway the image is the program) |
//! | `slot-a.manifest`, `slot-b.manifest` | each slot's signed manifest (written atomically) |
//! | `boot-record.0`, `boot-record.1` | the two boot-record copies (each written atomically) |
//! | `keyset` | the device's trusted key set (absent until first use / key-set update) |
//! | `hardware-id` | the device's hardware id |
//! | `confirm-request` | created by a trial program to confirm (see [`crate::supervisor`]) |
//! | `lock` | `flock`ed by every process that opens the store |
//!
//! Atomic writes are temp file + fsync + rename + directory fsync; image chunks are written
//! in place (the record marks the slot "being written" first, so a torn image never boots)
//! and fsynced before the slot is verified. A fresh, empty directory is a factory-fresh
//! device and accepts its first install.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::string::String;
use std::vec::Vec;

use nix::fcntl::{Flock, FlockArg};

use crate::bundle::MAX_SIGNED_MANIFEST_LEN;
use crate::error::Error;
use crate::file::{read_small, sync_dir, write_atomic};
use crate::keyset::KeySet;
use crate::manifest::HardwareId;
use crate::record::{RECORD_LEN, RecordCopy};
use crate::slot::{Action, SlotId, SlotStore};

/// A slot store in a directory. Holds an exclusive `flock` on `DIR/lock` while it lives, so
/// a supervisor and a `confirm` command never write the record at the same time.
#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
    writers: [Option<File>; 2],
    _lock: Flock<File>,
}

impl DirStore {
    /// Opens (creating it with mode 0700 if missing) and locks a state directory. Blocks
    /// while another process holds the lock.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn open(dir: &Path) -> Result<Self, Error> {
        match fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create", dir, e)),
        }
        let lock_path = dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io("open", &lock_path, e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io("lock", &lock_path, errno.into()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            writers: [None, None],
            _lock: lock,
        })
    }

    /// The state directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The image file of `slot` (what a supervisor executes).
    #[must_use]
    pub fn image_path(&self, slot: SlotId) -> PathBuf {
        self.dir.join(std::format!("slot-{}.img", slot.name()))
    }

    fn header_path(&self, slot: SlotId) -> PathBuf {
        self.dir.join(std::format!("slot-{}.manifest", slot.name()))
    }

    fn record_path(&self, copy: RecordCopy) -> PathBuf {
        self.dir.join(std::format!("boot-record.{}", copy.index()))
    }

    /// The file a trial program creates to confirm itself.
    #[must_use]
    pub fn confirm_request_path(&self) -> PathBuf {
        self.dir.join("confirm-request")
    }

    /// The stored key set, if any.
    ///
    /// # Errors
    /// [`Error::Io`], or a corrupt key-set file.
    pub fn keyset(&self) -> Result<Option<KeySet>, Error> {
        let path = self.dir.join("keyset");
        match read_optional(&path, 4096)? {
            None => Ok(None),
            Some(bytes) => KeySet::decode(&bytes).map(Some),
        }
    }

    /// Stores the key set (atomically).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn store_keyset(&self, keys: &KeySet) -> Result<(), Error> {
        write_atomic(&self.dir.join("keyset"), &keys.encode(), 0o644)
    }

    /// The stored hardware id, if any.
    ///
    /// # Errors
    /// [`Error::Io`], or an invalid id in the file.
    pub fn hardware_id(&self) -> Result<Option<HardwareId>, Error> {
        let path = self.dir.join("hardware-id");
        match read_optional(&path, 256)? {
            None => Ok(None),
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                HardwareId::new(text.trim()).map(Some)
            }
        }
    }

    /// Stores the hardware id (atomically).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn store_hardware_id(&self, id: &HardwareId) -> Result<(), Error> {
        let text = std::format!("{id}\n");
        write_atomic(&self.dir.join("hardware-id"), text.as_bytes(), 0o644)
    }

    fn writer(&mut self, slot: SlotId) -> Result<&File, Error> {
        let path = self.image_path(slot);
        let entry = &mut self.writers[slot.index()];
        if entry.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o755)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            *entry = Some(file);
        }
        entry.as_ref().ok_or(Error::NoBootableSlot)
    }
}

fn read_optional(path: &Path, limit: usize) -> Result<Option<Vec<u8>>, Error> {
    match read_small(path, limit) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

impl SlotStore for DirStore {
    fn perform(&mut self, action: Action<'_>) -> Result<(), Error> {
        match action {
            Action::Erase(slot) => {
                self.writers[slot.index()] = None;
                remove(&self.header_path(slot))?;
                remove(&self.image_path(slot))?;
                sync_dir(&self.dir)
            }
            Action::WriteChunk { slot, offset, data } => {
                let path = self.image_path(slot);
                self.writer(slot)?
                    .write_all_at(data, offset)
                    .map_err(|e| Error::io("write", path, e))
            }
            Action::WriteHeader { slot, header } => {
                write_atomic(&self.header_path(slot), header, 0o644)
            }
            Action::Sync(slot) => {
                let path = self.image_path(slot);
                self.writer(slot)?
                    .sync_all()
                    .map_err(|e| Error::io("sync", &path, e))?;
                self.writers[slot.index()] = None;
                sync_dir(&self.dir)
            }
            Action::WriteRecord { copy, bytes, .. } => {
                write_atomic(&self.record_path(copy), bytes, 0o644)
            }
        }
    }

    fn read_image(&mut self, slot: SlotId, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let path = self.image_path(slot);
        let file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        file.read_exact_at(buf, offset)
            .map_err(|e| Error::io("read", &path, e))
    }

    fn read_header(&mut self, slot: SlotId) -> Result<Vec<u8>, Error> {
        match read_optional(&self.header_path(slot), MAX_SIGNED_MANIFEST_LEN + 1) {
            Ok(bytes) => Ok(bytes.unwrap_or_default()),
            // An oversized header is as good as a corrupt one: the digest check refuses it.
            Err(Error::Malformed { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn read_record(&mut self, copy: RecordCopy) -> Result<Option<[u8; RECORD_LEN]>, Error> {
        let bytes = match read_optional(&self.record_path(copy), RECORD_LEN) {
            Ok(bytes) => bytes,
            Err(Error::Malformed { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(bytes.and_then(|b| <[u8; RECORD_LEN]>::try_from(b.as_slice()).ok()))
    }
}
