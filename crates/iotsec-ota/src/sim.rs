//! A simulated flash for power-cut testing (feature `sim`), in the spirit of MCUboot's `sim/`:
//! two slots with a header area each, two boot-record copies, and a power cut that can be set
//! to hit the k-th write. The write that is hit may land not at all or half (a torn write);
//! after it, every operation fails with [`PowerLost`] until [`SimFlash::restart`].

use alloc::vec;
use alloc::vec::Vec;

use crate::error::Error;
use crate::record::{RECORD_LEN, RecordCopy};
use crate::slot::{Action, RecordChange, SlotId, SlotStore};

/// The error every operation returns once power is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("power lost")]
pub struct PowerLost;

/// How much of the write that is hit by the cut lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// None of it.
    Nothing,
    /// The first half of its bytes (an erase erases the first half).
    Half,
}

/// Where to cut power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowerCut {
    /// The write (1-based, counted from power-on) that the cut hits.
    pub at_write: u64,
    /// How much of it lands.
    pub tear: Tear,
}

/// Simulated flash. Erased bytes read as `0xff`.
#[derive(Debug, Clone)]
pub struct SimFlash {
    capacity: usize,
    images: [Vec<u8>; 2],
    headers: [Vec<u8>; 2],
    records: [Option<[u8; RECORD_LEN]>; 2],
    writes: u64,
    cut: Option<PowerCut>,
    powered: bool,
    tamper_on_sync: Option<(SlotId, u64)>,
    changes: Vec<RecordChange>,
}

impl SimFlash {
    /// An erased flash whose slots hold up to `capacity` bytes each.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            images: [vec![0xff; capacity], vec![0xff; capacity]],
            headers: [Vec::new(), Vec::new()],
            records: [None, None],
            writes: 0,
            cut: None,
            powered: true,
            tamper_on_sync: None,
            changes: Vec::new(),
        }
    }

    /// Arms a power cut.
    pub fn cut_power(&mut self, cut: PowerCut) {
        self.cut = Some(cut);
    }

    /// Powers the flash back on; contents stay as the cut left them.
    pub fn restart(&mut self) {
        self.powered = true;
        self.cut = None;
        self.writes = 0;
    }

    /// Whether the power is on.
    #[must_use]
    pub fn powered(&self) -> bool {
        self.powered
    }

    /// Writes performed since power-on.
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// The boot-record changes performed, in order (all power cycles).
    #[must_use]
    pub fn changes(&self) -> &[RecordChange] {
        &self.changes
    }

    /// Flips one bit of a slot image (an attacker with flash access, or bit rot).
    pub fn tamper(&mut self, slot: SlotId, offset: u64) {
        if let Some(byte) = usize::try_from(offset)
            .ok()
            .and_then(|o| self.images[slot.index()].get_mut(o))
        {
            *byte ^= 0x01;
        }
    }

    /// Flips a bit of the slot image when the engine syncs the slot, i.e. after the download
    /// was hashed and before it is re-read.
    pub fn tamper_on_sync(&mut self, slot: SlotId, offset: u64) {
        self.tamper_on_sync = Some((slot, offset));
    }

    fn power_check(&self) -> Result<(), Error> {
        if self.powered {
            Ok(())
        } else {
            Err(Error::store("reach the flash", PowerLost))
        }
    }

    /// Counts a write; `Some(tear)` if the cut hits it.
    fn count_write(&mut self) -> Option<Tear> {
        self.writes += 1;
        match self.cut {
            Some(cut) if cut.at_write == self.writes => {
                self.powered = false;
                Some(cut.tear)
            }
            _ => None,
        }
    }

    fn image_range(&self, offset: u64, len: usize) -> Result<core::ops::Range<usize>, Error> {
        let start = usize::try_from(offset).map_err(|_| Error::store("address", OutOfRange))?;
        let end = start
            .checked_add(len)
            .filter(|end| *end <= self.capacity)
            .ok_or(Error::store("address the slot", OutOfRange))?;
        Ok(start..end)
    }
}

/// An access past the end of a slot.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("address out of range")]
pub struct OutOfRange;

/// Copies `data` into `dst`, only the first half if torn.
fn land(dst: &mut [u8], data: &[u8], tear: Option<Tear>) {
    let n = match tear {
        None => data.len(),
        Some(Tear::Nothing) => 0,
        Some(Tear::Half) => data.len() / 2,
    };
    dst[..n].copy_from_slice(&data[..n]);
}

impl SlotStore for SimFlash {
    fn perform(&mut self, action: Action<'_>) -> Result<(), Error> {
        self.power_check()?;
        match action {
            Action::Sync(slot) => {
                if let Some((target, offset)) = self.tamper_on_sync.take()
                    && target == slot
                {
                    self.tamper(slot, offset);
                }
                return Ok(());
            }
            Action::Erase(slot) => {
                let tear = self.count_write();
                let image = &mut self.images[slot.index()];
                let n = match tear {
                    None => image.len(),
                    Some(Tear::Nothing) => 0,
                    Some(Tear::Half) => image.len() / 2,
                };
                image[..n].fill(0xff);
                if tear.is_none() {
                    self.headers[slot.index()].clear();
                }
            }
            Action::WriteChunk { slot, offset, data } => {
                let range = self.image_range(offset, data.len())?;
                let tear = self.count_write();
                land(&mut self.images[slot.index()][range], data, tear);
            }
            Action::WriteHeader { slot, header } => {
                let tear = self.count_write();
                let stored = &mut self.headers[slot.index()];
                stored.clear();
                let n = match tear {
                    None => header.len(),
                    Some(Tear::Nothing) => 0,
                    Some(Tear::Half) => header.len() / 2,
                };
                stored.extend_from_slice(&header[..n]);
            }
            Action::WriteRecord {
                copy,
                bytes,
                change,
            } => {
                let tear = self.count_write();
                let slot = &mut self.records[copy.index()];
                let mut next = slot.unwrap_or([0xff; RECORD_LEN]);
                land(&mut next, bytes, tear);
                *slot = Some(next);
                if tear.is_none() {
                    self.changes.push(change);
                }
            }
        }
        if self.powered {
            Ok(())
        } else {
            Err(Error::store("finish the write", PowerLost))
        }
    }

    fn read_image(&mut self, slot: SlotId, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.power_check()?;
        let range = self.image_range(offset, buf.len())?;
        buf.copy_from_slice(&self.images[slot.index()][range]);
        Ok(())
    }

    fn read_header(&mut self, slot: SlotId) -> Result<Vec<u8>, Error> {
        self.power_check()?;
        Ok(self.headers[slot.index()].clone())
    }

    fn read_record(&mut self, copy: RecordCopy) -> Result<Option<[u8; RECORD_LEN]>, Error> {
        self.power_check()?;
        Ok(self.records[copy.index()])
    }
}
