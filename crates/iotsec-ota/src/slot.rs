//! Slot names and the storage interface the update engine drives.

use alloc::vec::Vec;
use core::fmt;

use crate::error::Error;
use crate::record::{RECORD_LEN, RecordCopy};

/// One of the two firmware slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SlotId {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl SlotId {
    /// The other slot.
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }

    /// Lower-case name, used for file names (`a`, `b`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::A => "A",
            Self::B => "B",
        })
    }
}

/// Why the engine rewrites the boot record: the named steps of the update state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordChange {
    /// A download starts: the target slot is marked "being written" (never bootable).
    StartDownload,
    /// A download failed verification: its slot is erased and marked empty.
    AbortDownload,
    /// Verified image: set it as the boot target for one trial boot.
    SetBootTarget,
    /// The trial slot is being booted: from now on a reset or a missed deadline rolls back.
    StartTrial,
    /// The trial confirmed: it becomes the active slot and the security counter rises.
    Commit,
    /// The trial failed: the previous slot is active again and the failure is recorded.
    RollBack,
    /// The last result was reported; clear the pending flag.
    AckReport,
}

/// A storage operation the engine asks its shell to perform. Each write-like action is
/// one "write" for power-cut testing.
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Erase the slot's image and header.
    Erase(SlotId),
    /// Write image bytes at an offset.
    WriteChunk {
        /// Target slot.
        slot: SlotId,
        /// Byte offset in the image.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// Write the slot's signed-manifest header.
    WriteHeader {
        /// Target slot.
        slot: SlotId,
        /// The encoded signed manifest.
        header: &'a [u8],
    },
    /// Make earlier writes to the slot durable (fsync; a no-op on most flash).
    Sync(SlotId),
    /// Persist one boot-record copy; durable when `perform` returns.
    WriteRecord {
        /// Which copy.
        copy: RecordCopy,
        /// The encoded record.
        bytes: &'a [u8; RECORD_LEN],
        /// The state-machine step this write makes.
        change: RecordChange,
    },
}

/// What the update engine needs from storage: two slots (image + header area each) and two
/// boot-record copies. Implemented by the file-backed [`crate::dir::DirStore`] (std), the
/// simulated flash [`crate::sim::SimFlash`] (feature `sim`), and device flash drivers.
pub trait SlotStore {
    /// Performs an action.
    ///
    /// # Errors
    /// [`Error::Store`].
    fn perform(&mut self, action: Action<'_>) -> Result<(), Error>;

    /// Reads image bytes of `slot` at `offset` into all of `buf`.
    ///
    /// # Errors
    /// [`Error::Store`], including reads past the written image.
    fn read_image(&mut self, slot: SlotId, offset: u64, buf: &mut [u8]) -> Result<(), Error>;

    /// The slot's header area (empty if erased). At most
    /// [`crate::bundle::MAX_SIGNED_MANIFEST_LEN`] bytes are meaningful.
    ///
    /// # Errors
    /// [`Error::Store`].
    fn read_header(&mut self, slot: SlotId) -> Result<Vec<u8>, Error>;

    /// A boot-record copy, or `None` if that copy was never written.
    ///
    /// # Errors
    /// [`Error::Store`].
    fn read_record(&mut self, copy: RecordCopy) -> Result<Option<[u8; RECORD_LEN]>, Error>;
}
