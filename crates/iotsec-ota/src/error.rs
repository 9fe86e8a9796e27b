//! The crate's one error type, grouped by who is at fault (see [`Fault`]).

use alloc::boxed::Box;
use alloc::string::String;

use crate::key::KeyId;
use crate::keyset::Role;
use crate::record::RollbackReason;
use crate::slot::SlotId;
use crate::version::Version;

/// Who caused an [`Error`]: decides whether a device reports it as an attack, a usage
/// mistake or a local fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The update or key-set update offered to the device was rejected: it is malformed,
    /// badly signed, for another device, or a downgrade. The old firmware keeps running.
    Peer,
    /// The request does not fit the device's state or the input given by its operator.
    Input,
    /// The storage under the engine failed (flash, file system, power).
    Environment,
}

/// Everything that can go wrong while parsing, verifying or installing an update.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- rejected input (the peer is at fault) -------------------------------------------
    /// The bytes do not follow the format in `docs/ota.md`.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which structure (manifest, bundle, key set, boot record, key).
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The input ended before the structure was complete.
    #[error("truncated {what}: need {needed} more bytes")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// How many more bytes are needed at least.
        needed: usize,
    },
    /// No trusted key has the signature's key id.
    #[error("signed by key {key_id}, which is not trusted")]
    UnknownKey {
        /// The key id named by the signature.
        key_id: KeyId,
    },
    /// The signing key is trusted, but not for this kind of document.
    #[error("key {key_id} is trusted, but not for {role}")]
    WrongRole {
        /// The signing key.
        key_id: KeyId,
        /// The role the document needs.
        role: Role,
    },
    /// The signature does not verify under the named trusted key.
    #[error("bad signature by key {key_id}")]
    BadSignature {
        /// The key the signature claims.
        key_id: KeyId,
    },
    /// The image is longer than the signed size (endless-data attack).
    #[error("image is longer than the signed {signed} bytes")]
    ImageTooLong {
        /// The size in the signed manifest.
        signed: u64,
    },
    /// The image ended before the signed size.
    #[error("image is truncated: {actual} of {signed} signed bytes")]
    ImageTruncated {
        /// The size in the signed manifest.
        signed: u64,
        /// The bytes received.
        actual: u64,
    },
    /// The image's SHA-256 is not the signed one.
    #[error("image SHA-256 does not match the signed manifest")]
    HashMismatch,
    /// The image was built for other hardware.
    #[error("firmware is for hardware `{offered}`, this device is `{device}`")]
    WrongHardware {
        /// This device's hardware id.
        device: String,
        /// The manifest's hardware id.
        offered: String,
    },
    /// The version is not newer than the installed one (downgrade or replay).
    #[error("version {offered} is not newer than the installed {installed}")]
    NotNewer {
        /// The version offered.
        offered: Version,
        /// The version the device runs.
        installed: Version,
    },
    /// The security counter is below the device's anti-rollback counter.
    #[error("security counter {offered} is below the device's {device}")]
    CounterTooLow {
        /// The counter offered.
        offered: u32,
        /// The device's counter.
        device: u32,
    },
    /// The manifest's expiry time has passed.
    #[error("manifest expired at {expires_s} (unix seconds), now is {now_s}")]
    Expired {
        /// Expiry, Unix seconds.
        expires_s: u64,
        /// The caller's time, Unix seconds.
        now_s: u64,
    },
    /// A key-set update is not newer than the device's key set (replay).
    #[error("key-set version {offered} is not newer than the device's {current}")]
    KeySetNotNewer {
        /// The version offered.
        offered: u32,
        /// The device's key-set version.
        current: u32,
    },
    /// The slot's contents changed after they were verified.
    #[error("slot {slot} no longer holds the image that was verified")]
    SlotChanged {
        /// The slot.
        slot: SlotId,
    },

    // --- the request does not fit the state (input) ---------------------------------------
    /// A trial is running or pending; it must be confirmed or rolled back first.
    #[error("an update is already on trial in slot {slot}")]
    TrialInProgress {
        /// The trial slot.
        slot: SlotId,
    },
    /// `confirm` without a booted trial, or `roll_back` without any trial.
    #[error("no trial in progress")]
    NoTrial,
    /// The trial missed its confirm deadline; it has been rolled back.
    #[error("the confirm deadline passed; the trial was rolled back ({reason})")]
    TrialRolledBack {
        /// Why the trial ended.
        reason: RollbackReason,
    },
    /// A resume names a download the device did not start.
    #[error("no interrupted download of this manifest in slot {slot}")]
    NothingToResume {
        /// The slot checked.
        slot: SlotId,
    },
    /// Parameters given by the operator are invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which parameter.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// An earlier failure left this download aborted (its slot is erased).
    #[error("the download was aborted; start it again")]
    Aborted,

    // --- environment -----------------------------------------------------------------------
    /// The slot store failed.
    #[error("slot store could not {op}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The store's error.
        #[source]
        source: Box<dyn core::error::Error + Send + Sync + 'static>,
    },
    /// The boot record and slots disagree and no slot can boot.
    #[error("no bootable slot")]
    NoBootableSlot,
    /// A file or directory could not be read or written.
    #[cfg(feature = "std")]
    #[error("cannot {op} {}", .path.display())]
    Io {
        /// What was being done (`read`, `write`, `lock`, ...).
        op: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A key file is not a key this crate can use.
    #[cfg(feature = "std")]
    #[error("{}: {reason}", .path.display())]
    BadKeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Error {
    /// Who is at fault.
    #[must_use]
    pub fn fault(&self) -> Fault {
        match self {
            Self::Malformed { .. }
            | Self::Truncated { .. }
            | Self::UnknownKey { .. }
            | Self::WrongRole { .. }
            | Self::BadSignature { .. }
            | Self::ImageTooLong { .. }
            | Self::ImageTruncated { .. }
            | Self::HashMismatch
            | Self::WrongHardware { .. }
            | Self::NotNewer { .. }
            | Self::CounterTooLow { .. }
            | Self::Expired { .. }
            | Self::KeySetNotNewer { .. }
            | Self::SlotChanged { .. } => Fault::Peer,
            Self::TrialInProgress { .. }
            | Self::NoTrial
            | Self::TrialRolledBack { .. }
            | Self::NothingToResume { .. }
            | Self::Invalid { .. }
            | Self::Aborted => Fault::Input,
            #[cfg(feature = "std")]
            Self::BadKeyFile { .. } => Fault::Input,
            Self::Store { .. } | Self::NoBootableSlot => Fault::Environment,
            #[cfg(feature = "std")]
            Self::Io { .. } => Fault::Environment,
        }
    }

    /// Wraps a store error.
    pub fn store(
        op: &'static str,
        source: impl Into<Box<dyn core::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self::Store {
            op,
            source: source.into(),
        }
    }

    /// Wraps an I/O error with its path.
    #[cfg(feature = "std")]
    pub fn io(
        op: &'static str,
        path: impl Into<std::path::PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) const fn malformed(what: &'static str, reason: &'static str) -> Self {
        Self::Malformed { what, reason }
    }
}
