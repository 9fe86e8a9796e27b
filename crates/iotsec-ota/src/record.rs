//! The boot record: which slot boots, which one is on trial, the anti-rollback counter and the
//! last update result. Power-loss safe in the way of ESP-IDF's `otadata`: two copies, each with
//! a sequence number and a CRC-32; the valid copy with the higher sequence wins, and every
//! update writes the *other* copy, so a torn write leaves the previous state intact.
//!
//! Fixed layout, [`RECORD_LEN`] bytes, big-endian:
//!
//! | off | len | field |
//! |---|---|---|
//! | 0 | 4 | magic `IOTB` |
//! | 4 | 1 | format 1 |
//! | 5 | 4 | sequence number (u32, compared with wrap-around) |
//! | 9 | 1 | active slot: 0 A, 1 B, 255 none (factory) |
//! | 10 | 33 ×2 | per slot: state (0 empty, 1 being written, 2 verified) + SHA-256 of its signed manifest |
//! | 76 | 10 | trial: kind (0 none, 1 pending, 2 booted), slot, confirm deadline (ms, u64) |
//! | 86 | 4 | device security counter |
//! | 90 | 67 | last result: kind (0 none, 1 confirmed, 2 rolled back), reason, version length, version (64, zero padded) |
//! | 157 | 1 | result not yet reported (0/1) |
//! | 158 | 4 | CRC-32 (IEEE) of bytes 0..158 |

use core::fmt;

use crate::error::Error;
use crate::slot::SlotId;
use crate::version::{MAX_VERSION_LEN, Version};
use crate::wire::Reader;

/// Encoded length of one copy.
pub const RECORD_LEN: usize = 162;
const MAGIC: [u8; 4] = *b"IOTB";
const FORMAT: u8 = 1;
const WHAT: &str = "boot record";

/// One of the two record copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCopy {
    /// Copy 0.
    First,
    /// Copy 1.
    Second,
}

impl RecordCopy {
    /// The other copy.
    #[must_use]
    pub fn other(self) -> Self {
        match self {
            Self::First => Self::Second,
            Self::Second => Self::First,
        }
    }

    /// 0 or 1.
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Self::First => 0,
            Self::Second => 1,
        }
    }
}

/// What a slot holds, as far as the record knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Nothing usable.
    Empty,
    /// A download of the signed manifest with this digest is (or was) being written. Never boots.
    Writing([u8; 32]),
    /// A verified image whose signed manifest has this digest.
    Verified([u8; 32]),
}

impl SlotState {
    /// The bound signed-manifest digest, if any.
    #[must_use]
    pub fn digest(&self) -> Option<&[u8; 32]> {
        match self {
            Self::Empty => None,
            Self::Writing(d) | Self::Verified(d) => Some(d),
        }
    }
}

/// Where a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialPhase {
    /// Verified and chosen; boots at the next boot.
    Pending,
    /// Booted; must confirm before the deadline (caller's clock, ms).
    Booted {
        /// Deadline in the caller's milliseconds.
        deadline_ms: u64,
    },
}

/// A trial in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trial {
    /// The slot on trial.
    pub slot: SlotId,
    /// Its phase.
    pub phase: TrialPhase,
}

/// Why a trial was rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RollbackReason {
    /// The confirm deadline passed.
    DeadlinePassed,
    /// The device restarted before the trial confirmed (crash, watchdog, power).
    ResetBeforeConfirm,
    /// The trial program exited before confirming.
    TrialExited,
    /// The trial slot failed verification at boot (changed after it was verified).
    ImageInvalid,
    /// An operator asked for it.
    Requested,
}

impl RollbackReason {
    fn code(self) -> u8 {
        match self {
            Self::DeadlinePassed => 1,
            Self::ResetBeforeConfirm => 2,
            Self::TrialExited => 3,
            Self::ImageInvalid => 4,
            Self::Requested => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::DeadlinePassed,
            2 => Self::ResetBeforeConfirm,
            3 => Self::TrialExited,
            4 => Self::ImageInvalid,
            5 => Self::Requested,
            _ => return None,
        })
    }

    /// Stable machine-readable name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::DeadlinePassed => "deadline_passed",
            Self::ResetBeforeConfirm => "reset_before_confirm",
            Self::TrialExited => "trial_exited",
            Self::ImageInvalid => "image_invalid",
            Self::Requested => "requested",
        }
    }
}

impl fmt::Display for RollbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DeadlinePassed => "not confirmed before the deadline",
            Self::ResetBeforeConfirm => "restarted before confirming",
            Self::TrialExited => "exited before confirming",
            Self::ImageInvalid => "image failed verification at boot",
            Self::Requested => "rolled back on request",
        })
    }
}

/// How the last update ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Confirmed; now active.
    Confirmed,
    /// Rolled back.
    RolledBack(RollbackReason),
}

/// The last update's result, kept until reported (and shown afterwards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastResult {
    /// The version that was tried (`None` if its manifest could no longer be read).
    pub version: Option<Version>,
    /// How it ended.
    pub outcome: Outcome,
}

/// The decoded boot record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootRecord {
    /// Sequence number; the higher valid copy wins.
    pub seq: u32,
    /// The confirmed slot, `None` on a factory-fresh device.
    pub active: Option<SlotId>,
    /// Per slot (A, B).
    pub slots: [SlotState; 2],
    /// The trial, if any.
    pub trial: Option<Trial>,
    /// Anti-rollback floor: manifests with a lower counter are refused.
    pub security_counter: u32,
    /// The last update result.
    pub last: Option<LastResult>,
    /// Whether `last` still has to be reported to the server.
    pub report_pending: bool,
}

impl BootRecord {
    /// The state of an erased device: nothing installed.
    #[must_use]
    pub fn factory() -> Self {
        Self {
            seq: 0,
            active: None,
            slots: [SlotState::Empty; 2],
            trial: None,
            security_counter: 0,
            last: None,
            report_pending: false,
        }
    }

    /// The state of `slot`.
    #[must_use]
    pub fn slot(&self, slot: SlotId) -> SlotState {
        self.slots[slot.index()]
    }

    pub(crate) fn set_slot(&mut self, slot: SlotId, state: SlotState) {
        self.slots[slot.index()] = state;
    }

    /// Encodes one copy.
    #[must_use]
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        let mut w = Writer {
            out: &mut out,
            at: 0,
        };
        w.put(&MAGIC);
        w.put(&[FORMAT]);
        w.put(&self.seq.to_be_bytes());
        w.put(&[self.active.map_or(0xff, |s| s.index() as u8)]);
        for state in &self.slots {
            let (kind, digest) = match state {
                SlotState::Empty => (0, [0u8; 32]),
                SlotState::Writing(d) => (1, *d),
                SlotState::Verified(d) => (2, *d),
            };
            w.put(&[kind]);
            w.put(&digest);
        }
        let (kind, slot, deadline) = match self.trial {
            None => (0, 0, 0),
            Some(Trial {
                slot,
                phase: TrialPhase::Pending,
            }) => (1, slot.index() as u8, 0),
            Some(Trial {
                slot,
                phase: TrialPhase::Booted { deadline_ms },
            }) => (2, slot.index() as u8, deadline_ms),
        };
        w.put(&[kind, slot]);
        w.put(&deadline.to_be_bytes());
        w.put(&self.security_counter.to_be_bytes());
        match &self.last {
            None => w.put(&[0, 0, 0]),
            Some(last) => {
                let (kind, reason) = match last.outcome {
                    Outcome::Confirmed => (1, 0),
                    Outcome::RolledBack(r) => (2, r.code()),
                };
                let text = last
                    .version
                    .as_ref()
                    .map(alloc::string::ToString::to_string)
                    .unwrap_or_default();
                // Version text is at most 64 bytes by construction.
                let len = text.len().min(MAX_VERSION_LEN);
                w.put(&[kind, reason, len as u8]);
                w.put(&text.as_bytes()[..len]);
            }
        }
        w.at = 157;
        w.put(&[u8::from(self.report_pending)]);
        let crc = crc32(&out[..158]);
        out[158..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes one copy; any deviation from the canonical encoding (bad CRC, unknown values,
    /// non-zero padding) makes the copy invalid. Never panics.
    ///
    /// # Errors
    /// [`Error::Malformed`].
    pub fn decode(bytes: &[u8; RECORD_LEN]) -> Result<Self, Error> {
        let bad = |reason| Error::malformed(WHAT, reason);
        let (body, crc) = bytes.split_at(158);
        if crc32(body).to_be_bytes() != crc {
            return Err(bad("CRC mismatch (torn or corrupted write)"));
        }
        let mut r = Reader::new(body, WHAT);
        if r.array::<4>()? != MAGIC || r.u8()? != FORMAT {
            return Err(bad("bad magic or format"));
        }
        let seq = r.u32()?;
        let active = match r.u8()? {
            0xff => None,
            code => Some(slot_from(code).ok_or(bad("bad active slot"))?),
        };
        let mut slots = [SlotState::Empty; 2];
        for state in &mut slots {
            let kind = r.u8()?;
            let digest: [u8; 32] = r.array()?;
            *state = match kind {
                0 if digest == [0; 32] => SlotState::Empty,
                1 => SlotState::Writing(digest),
                2 => SlotState::Verified(digest),
                _ => return Err(bad("bad slot state")),
            };
        }
        let (kind, slot, deadline_ms) = (r.u8()?, r.u8()?, r.u64()?);
        let trial = match (kind, slot_from(slot)) {
            (0, _) if slot == 0 && deadline_ms == 0 => None,
            (1, Some(slot)) if deadline_ms == 0 => Some(Trial {
                slot,
                phase: TrialPhase::Pending,
            }),
            (2, Some(slot)) => Some(Trial {
                slot,
                phase: TrialPhase::Booted { deadline_ms },
            }),
            _ => return Err(bad("bad trial")),
        };
        let security_counter = r.u32()?;
        let (kind, reason, len) = (r.u8()?, r.u8()?, usize::from(r.u8()?));
        let text = r.take(MAX_VERSION_LEN)?;
        let (version, padding) = text.split_at(len.min(MAX_VERSION_LEN));
        if len > MAX_VERSION_LEN || padding.iter().any(|b| *b != 0) {
            return Err(bad("bad version field"));
        }
        let last = match (kind, reason) {
            (0, 0) if len == 0 => None,
            (1 | 2, _) => {
                let outcome = match kind {
                    1 if reason == 0 => Outcome::Confirmed,
                    2 => Outcome::RolledBack(
                        RollbackReason::from_code(reason).ok_or(bad("bad rollback reason"))?,
                    ),
                    _ => return Err(bad("bad result")),
                };
                let version = match version {
                    [] => None,
                    text => Some(Version::parse(
                        core::str::from_utf8(text).map_err(|_| bad("bad version"))?,
                    )?),
                };
                Some(LastResult { version, outcome })
            }
            _ => return Err(bad("bad result")),
        };
        let report_pending = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(bad("bad report flag")),
        };
        r.finish()?;
        let record = Self {
            seq,
            active,
            slots,
            trial,
            security_counter,
            last,
            report_pending,
        };
        record.check()?;
        Ok(record)
    }

    /// Structural invariants every written record satisfies: the active slot and the trial
    /// slot are verified and different.
    fn check(&self) -> Result<(), Error> {
        let bad = |reason| Err(Error::malformed(WHAT, reason));
        if let Some(active) = self.active
            && !matches!(self.slot(active), SlotState::Verified(_))
        {
            return bad("active slot is not verified");
        }
        if let Some(trial) = self.trial {
            if Some(trial.slot) == self.active {
                return bad("trial slot is the active slot");
            }
            if !matches!(self.slot(trial.slot), SlotState::Verified(_)) {
                return bad("trial slot is not verified");
            }
        }
        Ok(())
    }

    /// Picks the newest valid copy. Returns the record and the copy it came from (`None`:
    /// neither copy is valid, the device is factory-fresh).
    #[must_use]
    pub fn select(
        first: Option<&[u8; RECORD_LEN]>,
        second: Option<&[u8; RECORD_LEN]>,
    ) -> (Self, Option<RecordCopy>) {
        let a = first.and_then(|b| Self::decode(b).ok());
        let b = second.and_then(|b| Self::decode(b).ok());
        match (a, b) {
            (None, None) => (Self::factory(), None),
            (Some(a), None) => (a, Some(RecordCopy::First)),
            (None, Some(b)) => (b, Some(RecordCopy::Second)),
            (Some(a), Some(b)) => {
                if newer(b.seq, a.seq) {
                    (b, Some(RecordCopy::Second))
                } else {
                    (a, Some(RecordCopy::First))
                }
            }
        }
    }
}

/// `a` is newer than `b` in serial-number arithmetic (RFC 1982), so the counter may wrap.
fn newer(a: u32, b: u32) -> bool {
    let diff = a.wrapping_sub(b);
    diff != 0 && diff < 1 << 31
}

fn slot_from(code: u8) -> Option<SlotId> {
    match code {
        0 => Some(SlotId::A),
        1 => Some(SlotId::B),
        _ => None,
    }
}

struct Writer<'a> {
    out: &'a mut [u8; RECORD_LEN],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// CRC-32/ISO-HDLC (the zlib / Ethernet CRC), bitwise: the record is small.
#[must_use]
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BootRecord {
        BootRecord {
            seq: 41,
            active: Some(SlotId::A),
            slots: [SlotState::Verified([1; 32]), SlotState::Verified([2; 32])],
            trial: Some(Trial {
                slot: SlotId::B,
                phase: TrialPhase::Booted {
                    deadline_ms: 30_000,
                },
            }),
            security_counter: 3,
            last: Some(LastResult {
                version: Some(Version::parse("2.0.0-rc.1").unwrap()),
                outcome: Outcome::RolledBack(RollbackReason::DeadlinePassed),
            }),
            report_pending: true,
        }
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trip_and_every_bit_flip_is_detected() {
        let rec = sample();
        let bytes = rec.encode();
        assert_eq!(BootRecord::decode(&bytes).unwrap(), rec);
        for i in 0..RECORD_LEN {
            for bit in 0..8 {
                let mut flipped = bytes;
                flipped[i] ^= 1 << bit;
                assert!(BootRecord::decode(&flipped).is_err(), "byte {i} bit {bit}");
            }
        }
        assert_eq!(
            BootRecord::decode(&BootRecord::factory().encode()).unwrap(),
            BootRecord::factory()
        );
    }

    #[test]
    fn newest_valid_copy_wins_and_torn_copy_is_ignored() {
        let old = sample();
        let mut new = sample();
        new.seq = 42;
        new.trial = None;
        let (a, b) = (old.encode(), new.encode());
        assert_eq!(
            BootRecord::select(Some(&a), Some(&b)),
            (new.clone(), Some(RecordCopy::Second))
        );
        let mut torn = b;
        torn[100..].fill(0xff);
        assert_eq!(
            BootRecord::select(Some(&a), Some(&torn)),
            (old, Some(RecordCopy::First))
        );
        assert_eq!(BootRecord::select(None, None).0, BootRecord::factory());
        assert!(newer(0, u32::MAX));
        assert!(!newer(5, 5));
    }
}
