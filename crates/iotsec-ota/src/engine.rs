//! The update engine: the A/B state machine over a [`SlotStore`].
//!
//! ```text
//!  idle ──begin_download──▶ downloading ──finish──▶ verifying ──▶ trial pending
//!   ▲        (slot "being written")      (re-read + re-hash)   (boot target set)
//!   │                                                                │ boot
//!   │                                                                ▼
//!   ├──────────── confirm (counter rises) ◀──────────────── booted in trial
//!   └──────────── roll back (deadline, reset, exit, bad image) ◀────┘
//! ```
//!
//! The engine owns no clock: every call that needs time takes `now_ms`, the caller's clock in
//! milliseconds (Unix time on a gateway; the expiry check compares it with the manifest's
//! Unix seconds). A reset during a trial always rolls back, so the deadline stored in the
//! boot record only has to be meaningful within one boot.
//!
//! Every persistent change is an [`Action`] performed by the store; the boot record is written
//! to the copy that does not hold the current state, so a power cut at any write leaves a
//! bootable, verified slot (see `tests/ota.rs`, which cuts power at every write).

use alloc::vec;
use alloc::vec::Vec;

use crate::bundle::SignedManifest;
use crate::error::{Error, Fault};
use crate::image::ImageHasher;
use crate::keyset::KeySet;
use crate::manifest::{HardwareId, Manifest};
use crate::record::{
    BootRecord, LastResult, Outcome, RecordCopy, RollbackReason, SlotState, Trial, TrialPhase,
};
use crate::slot::{Action, RecordChange, SlotId, SlotStore};
use crate::version::Version;

/// The default confirm deadline: 30 seconds.
pub const DEFAULT_CONFIRM_TIMEOUT_MS: u64 = 30_000;

/// How much the engine verifies before booting a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootCheck {
    /// Every boot re-hashes the slot it boots (and the trial's signature on its first boot).
    Full,
    /// Only a trial's first boot is verified; confirmed slots boot on the record alone.
    /// Faster on large images; relies on the storage not changing under the device.
    TrialOnly,
}

/// Device facts and policy.
#[derive(Debug, Clone)]
pub struct Config {
    /// This device's hardware id; manifests for other hardware are refused.
    pub hardware_id: HardwareId,
    /// How long a booted trial has to confirm.
    pub confirm_timeout_ms: u64,
    /// Buffer size for re-reading slots (bounds the engine's memory).
    pub read_chunk: usize,
    /// Boot-time verification.
    pub boot_check: BootCheck,
}

impl Config {
    /// Defaults: 30 s confirm deadline, 64 KiB read buffer, full boot check.
    #[must_use]
    pub fn new(hardware_id: HardwareId) -> Self {
        Self {
            hardware_id,
            confirm_timeout_ms: DEFAULT_CONFIRM_TIMEOUT_MS,
            read_chunk: 64 * 1024,
            boot_check: BootCheck::Full,
        }
    }
}

/// Where the state machine stands (derived from the boot record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateState {
    /// Nothing in progress.
    Idle,
    /// A download into `slot` started and has not been verified (it may resume).
    Downloading {
        /// The slot being written.
        slot: SlotId,
    },
    /// A verified image waits for the next boot.
    TrialPending {
        /// The trial slot.
        slot: SlotId,
    },
    /// The trial is running and must confirm by the deadline.
    BootedInTrial {
        /// The trial slot.
        slot: SlotId,
        /// Deadline, caller's ms.
        deadline_ms: u64,
    },
}

/// What [`Engine::boot`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    /// The slot to run.
    pub slot: SlotId,
    /// Whether it runs on trial (must confirm by the deadline).
    pub trial: bool,
    /// A trial that was rolled back during this boot, and why.
    pub rolled_back: Option<RollbackReason>,
}

/// The A/B update engine.
#[derive(Debug)]
pub struct Engine<S> {
    store: S,
    config: Config,
    record: BootRecord,
    /// Which copy holds `record` (`None`: factory-fresh, neither copy valid).
    record_copy: Option<RecordCopy>,
    /// Parsed slot headers (not authenticated; bound to the record by digest).
    headers: [Option<SignedManifest>; 2],
}

impl<S: SlotStore> Engine<S> {
    /// Loads the boot record (newest valid copy) and the slot headers.
    ///
    /// # Errors
    /// Store failures.
    pub fn open(mut store: S, config: Config) -> Result<Self, Error> {
        let first = store.read_record(RecordCopy::First)?;
        let second = store.read_record(RecordCopy::Second)?;
        let (record, record_copy) = BootRecord::select(first.as_ref(), second.as_ref());
        let mut headers = [None, None];
        for slot in [SlotId::A, SlotId::B] {
            let bytes = store.read_header(slot)?;
            headers[slot.index()] = SignedManifest::parse(&bytes).ok();
        }
        Ok(Self {
            store,
            config,
            record,
            record_copy,
            headers,
        })
    }

    /// The current boot record.
    #[must_use]
    pub fn record(&self) -> &BootRecord {
        &self.record
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The state machine's state.
    #[must_use]
    pub fn state(&self) -> UpdateState {
        match self.record.trial {
            Some(Trial {
                slot,
                phase: TrialPhase::Pending,
            }) => UpdateState::TrialPending { slot },
            Some(Trial {
                slot,
                phase: TrialPhase::Booted { deadline_ms },
            }) => UpdateState::BootedInTrial { slot, deadline_ms },
            None => [SlotId::A, SlotId::B]
                .into_iter()
                .find(|s| matches!(self.record.slot(*s), SlotState::Writing(_)))
                .map_or(UpdateState::Idle, |slot| UpdateState::Downloading { slot }),
        }
    }

    /// The signed manifest stored in `slot`, if the record vouches for it (its digest is the
    /// one recorded for the slot).
    #[must_use]
    pub fn slot_manifest(&self, slot: SlotId) -> Option<&SignedManifest> {
        let recorded = self.record.slot(slot);
        let digest = recorded.digest()?;
        self.headers[slot.index()]
            .as_ref()
            .filter(|h| h.digest() == *digest)
    }

    /// The manifest of the confirmed, active firmware.
    #[must_use]
    pub fn installed(&self) -> Option<&Manifest> {
        self.slot_manifest(self.record.active?)
            .map(SignedManifest::manifest)
    }

    /// The slot the next download goes to: never the active one, never the trial.
    fn target_slot(&self) -> SlotId {
        self.record.active.map_or(SlotId::A, SlotId::other)
    }

    /// All admission checks, in order: signature by a key trusted for firmware, hardware id,
    /// expiry, version strictly newer than the installed one, security counter not below the
    /// device's. Writes nothing.
    ///
    /// # Errors
    /// The first failed check.
    pub fn admit<'m>(
        &self,
        signed: &'m SignedManifest,
        keys: &KeySet,
        now_ms: u64,
    ) -> Result<&'m Manifest, Error> {
        let manifest = signed.verify(keys)?;
        if manifest.hardware_id != self.config.hardware_id {
            return Err(Error::WrongHardware {
                device: self.config.hardware_id.as_str().into(),
                offered: manifest.hardware_id.as_str().into(),
            });
        }
        if let Some(expires_s) = manifest.expires_s {
            let now_s = now_ms / 1000;
            if now_s >= expires_s {
                return Err(Error::Expired { expires_s, now_s });
            }
        }
        if let Some(active) = self.record.active {
            let installed = self
                .slot_manifest(active)
                .ok_or(Error::SlotChanged { slot: active })?;
            let installed = &installed.manifest().version;
            if manifest.version <= *installed {
                return Err(Error::NotNewer {
                    offered: manifest.version.clone(),
                    installed: installed.clone(),
                });
            }
        }
        if manifest.security_counter < self.record.security_counter {
            return Err(Error::CounterTooLow {
                offered: manifest.security_counter,
                device: self.record.security_counter,
            });
        }
        Ok(manifest)
    }

    fn refuse_during_trial(&self) -> Result<(), Error> {
        match self.record.trial {
            Some(trial) => Err(Error::TrialInProgress { slot: trial.slot }),
            None => Ok(()),
        }
    }

    /// Starts downloading the update described by the signed manifest `header` into the
    /// inactive slot. Everything is checked before the first byte is written.
    ///
    /// # Errors
    /// Any rejection from [`Engine::admit`], [`Error::TrialInProgress`], store failures.
    pub fn begin_download(
        &mut self,
        header: &[u8],
        keys: &KeySet,
        now_ms: u64,
    ) -> Result<Download<'_, S>, Error> {
        self.refuse_during_trial()?;
        let signed = SignedManifest::parse(header)?;
        let hasher = ImageHasher::new(self.admit(&signed, keys, now_ms)?);
        let slot = self.target_slot();
        let writing = SlotState::Writing(signed.digest());
        if self.record.slot(slot) != writing {
            let mut next = self.record.clone();
            next.set_slot(slot, writing);
            self.write_record(next, RecordChange::StartDownload)?;
        }
        self.headers[slot.index()] = None;
        self.store.perform(Action::Erase(slot))?;
        self.store.perform(Action::WriteHeader {
            slot,
            header: signed.as_bytes(),
        })?;
        self.headers[slot.index()] = Some(signed.clone());
        Ok(Download {
            engine: self,
            slot,
            signed,
            hasher,
            aborted: false,
        })
    }

    /// Resumes a download interrupted by a restart: the first `offset` bytes already in the
    /// slot are re-read and re-hashed (nothing unhashed is trusted), then writing continues at
    /// `offset` (e.g. an HTTP `Range: bytes=offset-` request). Within one process, keep the
    /// [`Download`] and use [`Download::offset`] instead.
    ///
    /// # Errors
    /// [`Error::NothingToResume`] if the slot is not being written with this manifest;
    /// rejections as in [`Engine::begin_download`]; store failures.
    pub fn resume_download(
        &mut self,
        header: &[u8],
        keys: &KeySet,
        now_ms: u64,
        offset: u64,
    ) -> Result<Download<'_, S>, Error> {
        self.refuse_during_trial()?;
        let signed = SignedManifest::parse(header)?;
        let mut hasher = ImageHasher::new(self.admit(&signed, keys, now_ms)?);
        let slot = self.target_slot();
        let same_header = self.headers[slot.index()].as_ref() == Some(&signed);
        if self.record.slot(slot) != SlotState::Writing(signed.digest()) || !same_header {
            return Err(Error::NothingToResume { slot });
        }
        hasher.admit(usize::try_from(offset).unwrap_or(usize::MAX))?;
        self.hash_range(slot, offset, |chunk| hasher.update(chunk))?;
        Ok(Download {
            engine: self,
            slot,
            signed,
            hasher,
            aborted: false,
        })
    }

    /// Reads `slot[0..len]` in bounded chunks.
    fn hash_range(
        &mut self,
        slot: SlotId,
        len: u64,
        mut sink: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut buf = vec![0u8; self.config.read_chunk.max(512)];
        let mut offset = 0u64;
        while offset < len {
            let n = usize::try_from(len - offset).map_or(buf.len(), |rest| rest.min(buf.len()));
            let chunk = &mut buf[..n];
            self.store.read_image(slot, offset, chunk)?;
            sink(chunk)?;
            offset += n as u64;
        }
        Ok(())
    }

    /// The signed manifest the record binds to a verified slot.
    fn recorded(&self, slot: SlotId) -> Result<SignedManifest, Error> {
        match self.record.slot(slot) {
            SlotState::Verified(_) => self
                .slot_manifest(slot)
                .cloned()
                .ok_or(Error::SlotChanged { slot }),
            _ => Err(Error::SlotChanged { slot }),
        }
    }

    /// Re-reads header and image of `slot` and checks them against `expected`; with `keys`,
    /// the signature too.
    fn verify_slot(
        &mut self,
        slot: SlotId,
        expected: &SignedManifest,
        keys: Option<&KeySet>,
    ) -> Result<(), Error> {
        if self.store.read_header(slot)? != expected.as_bytes() {
            return Err(Error::SlotChanged { slot });
        }
        if let Some(keys) = keys {
            expected.verify(keys)?;
        }
        let mut hasher = ImageHasher::new(expected.manifest());
        self.hash_range(slot, expected.manifest().image_size, |c| hasher.update(c))?;
        hasher.finish().map_err(|_| Error::SlotChanged { slot })
    }

    /// What a bootloader does: picks the slot to run. A pending trial is verified (signature
    /// and hash) and started, with its deadline at `now_ms + confirm_timeout`; a trial that
    /// was already booted and never confirmed is rolled back (the device was reset, or the
    /// deadline passed). Returns `None` on a factory-fresh device (nothing installed).
    ///
    /// # Errors
    /// Store failures; [`Error::SlotChanged`] if the active slot no longer verifies (with
    /// [`BootCheck::Full`]).
    pub fn boot(&mut self, keys: &KeySet, now_ms: u64) -> Result<Option<Boot>, Error> {
        let mut rolled_back = None;
        match self.record.trial {
            Some(Trial {
                phase: TrialPhase::Booted { deadline_ms },
                ..
            }) => {
                let reason = if now_ms >= deadline_ms {
                    RollbackReason::DeadlinePassed
                } else {
                    RollbackReason::ResetBeforeConfirm
                };
                self.roll_back_trial(reason)?;
                rolled_back = Some(reason);
            }
            Some(Trial {
                slot,
                phase: TrialPhase::Pending,
            }) => match self
                .recorded(slot)
                .and_then(|signed| self.verify_slot(slot, &signed, Some(keys)))
            {
                Ok(()) => {
                    let mut next = self.record.clone();
                    next.trial = Some(Trial {
                        slot,
                        phase: TrialPhase::Booted {
                            deadline_ms: now_ms.saturating_add(self.config.confirm_timeout_ms),
                        },
                    });
                    self.write_record(next, RecordChange::StartTrial)?;
                    return Ok(Some(Boot {
                        slot,
                        trial: true,
                        rolled_back: None,
                    }));
                }
                Err(e) if e.fault() == Fault::Environment => return Err(e),
                Err(_) => {
                    self.roll_back_trial(RollbackReason::ImageInvalid)?;
                    rolled_back = Some(RollbackReason::ImageInvalid);
                }
            },
            None => {}
        }
        let Some(slot) = self.record.active else {
            return Ok(None);
        };
        if self.config.boot_check == BootCheck::Full {
            let signed = self.recorded(slot)?;
            self.verify_slot(slot, &signed, None)?;
        }
        Ok(Some(Boot {
            slot,
            trial: false,
            rolled_back,
        }))
    }

    /// Confirms the booted trial: it becomes the active slot and the device's security counter
    /// rises to the trial's. Past the deadline, the trial is rolled back instead.
    ///
    /// # Errors
    /// [`Error::NoTrial`], [`Error::TrialRolledBack`] (deadline passed), store failures.
    pub fn confirm(&mut self, now_ms: u64) -> Result<Version, Error> {
        let Some(Trial {
            slot,
            phase: TrialPhase::Booted { deadline_ms },
        }) = self.record.trial
        else {
            return Err(Error::NoTrial);
        };
        if now_ms >= deadline_ms {
            self.roll_back_trial(RollbackReason::DeadlinePassed)?;
            return Err(Error::TrialRolledBack {
                reason: RollbackReason::DeadlinePassed,
            });
        }
        let manifest = self
            .slot_manifest(slot)
            .ok_or(Error::SlotChanged { slot })?
            .manifest()
            .clone();
        let mut next = self.record.clone();
        next.active = Some(slot);
        next.trial = None;
        next.security_counter = next.security_counter.max(manifest.security_counter);
        next.last = Some(LastResult {
            version: Some(manifest.version.clone()),
            outcome: Outcome::Confirmed,
        });
        next.report_pending = true;
        self.write_record(next, RecordChange::Commit)?;
        Ok(manifest.version)
    }

    /// Rolls the booted trial back if its deadline has passed. Call it periodically with the
    /// current time; `Some` means the device must restart into the previous slot now.
    ///
    /// # Errors
    /// Store failures.
    pub fn check_deadline(&mut self, now_ms: u64) -> Result<Option<RollbackReason>, Error> {
        match self.record.trial {
            Some(Trial {
                phase: TrialPhase::Booted { deadline_ms },
                ..
            }) if now_ms >= deadline_ms => {
                self.roll_back_trial(RollbackReason::DeadlinePassed)?;
                Ok(Some(RollbackReason::DeadlinePassed))
            }
            _ => Ok(None),
        }
    }

    /// Ends the trial (pending or booted) and makes the previous slot boot again.
    ///
    /// # Errors
    /// [`Error::NoTrial`], store failures.
    pub fn roll_back(&mut self, reason: RollbackReason) -> Result<(), Error> {
        if self.record.trial.is_none() {
            return Err(Error::NoTrial);
        }
        self.roll_back_trial(reason)
    }

    fn roll_back_trial(&mut self, reason: RollbackReason) -> Result<(), Error> {
        let Some(trial) = self.record.trial else {
            return Ok(());
        };
        let version = self
            .slot_manifest(trial.slot)
            .map(|s| s.manifest().version.clone());
        let mut next = self.record.clone();
        next.trial = None;
        if reason == RollbackReason::ImageInvalid {
            next.set_slot(trial.slot, SlotState::Empty);
        }
        next.last = Some(LastResult {
            version,
            outcome: Outcome::RolledBack(reason),
        });
        next.report_pending = true;
        self.write_record(next, RecordChange::RollBack)
    }

    /// Marks the last result as reported (call after the server acknowledged it).
    ///
    /// # Errors
    /// Store failures.
    pub fn ack_report(&mut self) -> Result<(), Error> {
        if !self.record.report_pending {
            return Ok(());
        }
        let mut next = self.record.clone();
        next.report_pending = false;
        self.write_record(next, RecordChange::AckReport)
    }

    /// Writes `next` with the following sequence number into the copy that does not hold the
    /// current record.
    fn write_record(&mut self, mut next: BootRecord, change: RecordChange) -> Result<(), Error> {
        next.seq = self.record.seq.wrapping_add(1);
        let copy = self
            .record_copy
            .map_or(RecordCopy::First, RecordCopy::other);
        let bytes = next.encode();
        self.store.perform(Action::WriteRecord {
            copy,
            bytes: &bytes,
            change,
        })?;
        self.record = next;
        self.record_copy = Some(copy);
        Ok(())
    }
}

/// A download in progress into the inactive slot. Feed it chunks in order; the signed size
/// caps what is accepted; [`Download::finish`] verifies and sets the boot target.
#[derive(Debug)]
pub struct Download<'e, S: SlotStore> {
    engine: &'e mut Engine<S>,
    slot: SlotId,
    signed: SignedManifest,
    hasher: ImageHasher,
    aborted: bool,
}

impl<S: SlotStore> Download<'_, S> {
    /// Bytes accepted so far: where a resumed transfer continues.
    #[must_use]
    pub fn offset(&self) -> u64 {
        self.hasher.received()
    }

    /// The slot being written.
    #[must_use]
    pub fn slot(&self) -> SlotId {
        self.slot
    }

    /// The (verified) manifest being installed.
    #[must_use]
    pub fn manifest(&self) -> &Manifest {
        self.signed.manifest()
    }

    /// Writes the next chunk. Data past the signed size aborts the download (slot erased).
    ///
    /// # Errors
    /// [`Error::ImageTooLong`], [`Error::Aborted`], store failures (the chunk may be retried).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if self.aborted {
            return Err(Error::Aborted);
        }
        if let Err(e) = self.hasher.admit(chunk.len()) {
            return Err(self.abort_with(e));
        }
        self.engine.store.perform(Action::WriteChunk {
            slot: self.slot,
            offset: self.hasher.received(),
            data: chunk,
        })?;
        self.hasher.update(chunk)
    }

    /// Checks size and hash, makes the slot durable, re-reads header and image from the slot
    /// and re-hashes them (the image that boots is the image that was verified), then marks
    /// the slot as the trial for the next boot. Any mismatch erases the slot.
    ///
    /// # Errors
    /// [`Error::ImageTruncated`], [`Error::HashMismatch`], [`Error::SlotChanged`],
    /// [`Error::Aborted`], store failures.
    pub fn finish(mut self) -> Result<(), Error> {
        if self.aborted {
            return Err(Error::Aborted);
        }
        let hasher = self.hasher.clone();
        if let Err(e) = hasher.finish() {
            return Err(self.abort_with(e));
        }
        let slot = self.slot;
        let engine = &mut *self.engine;
        engine.store.perform(Action::Sync(slot))?;
        match engine.verify_slot(slot, &self.signed, None) {
            Ok(()) => {}
            Err(e) if e.fault() == Fault::Environment => return Err(e),
            Err(e) => return Err(self.abort_with(e)),
        }
        let engine = &mut *self.engine;
        let mut next = engine.record.clone();
        next.set_slot(slot, SlotState::Verified(self.signed.digest()));
        next.trial = Some(Trial {
            slot,
            phase: TrialPhase::Pending,
        });
        engine.write_record(next, RecordChange::SetBootTarget)
    }

    /// Abandons the download: erases the slot and marks it empty.
    ///
    /// # Errors
    /// Store failures.
    pub fn abort(mut self) -> Result<(), Error> {
        self.erase()
    }

    fn abort_with(&mut self, cause: Error) -> Error {
        // The rejection is what the caller needs to see; a failed erase leaves the slot
        // marked "being written", which never boots and is erased by the next download.
        let _ = self.erase();
        cause
    }

    fn erase(&mut self) -> Result<(), Error> {
        self.aborted = true;
        let engine = &mut *self.engine;
        engine.headers[self.slot.index()] = None;
        engine.store.perform(Action::Erase(self.slot))?;
        let mut next = engine.record.clone();
        next.set_slot(self.slot, SlotState::Empty);
        engine.write_record(next, RecordChange::AbortDownload)
    }
}

/// Every slot's summary, for status output.
#[derive(Debug, Clone)]
pub struct SlotSummary {
    /// The slot.
    pub slot: SlotId,
    /// What the record says.
    pub state: SlotState,
    /// The manifest, if the record vouches for the stored header.
    pub manifest: Option<Manifest>,
}

impl<S: SlotStore> Engine<S> {
    /// Both slots, for status output.
    #[must_use]
    pub fn slots(&self) -> Vec<SlotSummary> {
        [SlotId::A, SlotId::B]
            .into_iter()
            .map(|slot| SlotSummary {
                slot,
                state: self.record.slot(slot),
                manifest: self.slot_manifest(slot).map(|s| s.manifest().clone()),
            })
            .collect()
    }
}
