//! The crate's single error type, grouped by who is at fault.
//!
//! Verification results are data: a rejected message comes back as one of the "peer" variants so
//! a server can count them ([`Error::code`] is a stable identifier) and the CLI can print them.
//! `Display` is written by hand (no `thiserror`) because the core is `no_std`.

use core::fmt;

/// What was wrong with the JSON text of a message (`Error::Malformed`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// The input ended inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    UnexpectedByte,
    /// The input is not valid UTF-8 (Python's reference takes a `str`).
    InvalidUtf8,
    /// A raw control character (below 0x20) inside a string (`json.loads` is strict about them).
    ControlChar,
    /// A backslash escape that JSON does not define, or a bad `\uXXXX`.
    InvalidEscape,
    /// Something other than whitespace after the value.
    TrailingData,
    /// An integer longer than Python's default 4300-digit limit (`json.loads` raises).
    IntTooLong,
    /// v2 (strict): a key appears twice in one object.
    DuplicateKey,
    /// v2 (strict): `NaN`, `Infinity`, `-Infinity`, or a number that overflows to infinity.
    NonFinite,
    /// v2 (strict): a `\uD800`..`\uDFFF` escape that is not part of a surrogate pair.
    LoneSurrogate,
}

impl Syntax {
    fn text(self) -> &'static str {
        match self {
            Syntax::UnexpectedEnd => "unexpected end of input",
            Syntax::UnexpectedByte => "unexpected byte",
            Syntax::InvalidUtf8 => "invalid UTF-8",
            Syntax::ControlChar => "control character in string",
            Syntax::InvalidEscape => "invalid escape",
            Syntax::TrailingData => "extra data after the value",
            Syntax::IntTooLong => "integer longer than 4300 digits",
            Syntax::DuplicateKey => "duplicate key (v2 is strict)",
            Syntax::NonFinite => "NaN or infinity (v2 is strict)",
            Syntax::LoneSurrogate => "lone surrogate (v2 is strict)",
        }
    }
}

/// A v2 envelope field that is missing or has the wrong type or range.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `v` (must be the integer 2).
    V,
    /// `kid` (`"<device>:<key version>"`).
    Kid,
    /// `ts` (integer milliseconds since the Unix epoch, 0..=i64::MAX).
    Ts,
    /// `seq` (integer, 0..=u64::MAX).
    Seq,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::V => "v",
            Field::Kid => "kid",
            Field::Ts => "ts",
            Field::Seq => "seq",
        }
    }
}

/// Every error of iotsec-msg.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // ---- the peer: the message is rejected ----
    /// The message is larger than the verifier's size limit.
    TooLarge {
        /// Size of the message in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The message nests arrays/objects deeper than the depth limit.
    TooDeep {
        /// The depth limit.
        limit: usize,
    },
    /// The message is not JSON that Python's `json.loads` accepts (or, for v2, not strict JSON).
    Malformed {
        /// What was wrong.
        syntax: Syntax,
        /// Byte offset in the message where it was noticed.
        offset: usize,
    },
    /// The message is JSON but not an object.
    NotAnObject,
    /// The object has no `sig` field.
    MissingSig,
    /// `sig` is not a string of 64 lowercase hex digits.
    BadSigEncoding,
    /// The HMAC does not match.
    BadSignature,
    /// A v2 envelope field is missing or invalid.
    BadEnvelope {
        /// The field.
        field: Field,
    },
    /// No key is known for the message's `kid`.
    UnknownKey,
    /// The `kid`'s device is not the sender the transport authenticated.
    WrongSender,
    /// `|ts - now|` exceeds the allowed clock skew.
    ClockSkew {
        /// `ts - now` in milliseconds (saturating).
        skew_ms: i64,
    },
    /// The sequence number was already accepted (inside the replay window).
    Replayed {
        /// The sequence number.
        seq: u64,
    },
    /// The sequence number is older than the replay window.
    Stale {
        /// The sequence number.
        seq: u64,
        /// The newest sequence number accepted from this device.
        newest: u64,
    },
    /// A v1 message from a device that is not legacy, or that has already sent v2.
    Downgrade,

    // ---- the caller: input or configuration ----
    /// A key is empty or otherwise unusable.
    InvalidKey,
    /// A device id is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    InvalidDeviceId,
    /// A payload to sign already has a `sig` field (the reference would sign it and never verify).
    SigPresent,
    /// A payload to sign as v2 already has one of the envelope fields.
    EnvelopeFieldPresent {
        /// The field.
        field: Field,
    },
    /// The device sequence counter cannot move further (u64 exhausted).
    SeqExhausted,

    // ---- the environment ----
    /// A file or random-source operation failed (`std` only).
    #[cfg(feature = "std")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The operating system's error kind.
        kind: std::io::ErrorKind,
    },
}

impl Error {
    /// A stable, machine-readable identifier (used in counters and the CLI summary).
    pub fn code(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::TooDeep { .. } => "too_deep",
            Error::Malformed { .. } => "malformed",
            Error::NotAnObject => "not_an_object",
            Error::MissingSig => "missing_sig",
            Error::BadSigEncoding => "bad_sig_encoding",
            Error::BadSignature => "bad_signature",
            Error::BadEnvelope { .. } => "bad_envelope",
            Error::UnknownKey => "unknown_key",
            Error::WrongSender => "wrong_sender",
            Error::ClockSkew { .. } => "clock_skew",
            Error::Replayed { .. } => "replayed",
            Error::Stale { .. } => "stale",
            Error::Downgrade => "downgrade",
            Error::InvalidKey => "invalid_key",
            Error::InvalidDeviceId => "invalid_device_id",
            Error::SigPresent => "sig_present",
            Error::EnvelopeFieldPresent { .. } => "envelope_field_present",
            Error::SeqExhausted => "seq_exhausted",
            #[cfg(feature = "std")]
            Error::Io { .. } => "io",
        }
    }

    /// True for the variants that mean "the message was rejected" (the peer's fault).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::TooLarge { .. }
                | Error::TooDeep { .. }
                | Error::Malformed { .. }
                | Error::NotAnObject
                | Error::MissingSig
                | Error::BadSigEncoding
                | Error::BadSignature
                | Error::BadEnvelope { .. }
                | Error::UnknownKey
                | Error::WrongSender
                | Error::ClockSkew { .. }
                | Error::Replayed { .. }
                | Error::Stale { .. }
                | Error::Downgrade
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge { size, limit } => {
                write!(f, "message too large ({size} bytes, limit {limit})")
            }
            Error::TooDeep { limit } => write!(f, "message nested deeper than {limit}"),
            Error::Malformed { syntax, offset } => {
                write!(f, "malformed JSON at byte {offset}: {}", syntax.text())
            }
            Error::NotAnObject => f.write_str("message is not a JSON object"),
            Error::MissingSig => f.write_str("message has no sig field"),
            Error::BadSigEncoding => f.write_str("sig is not 64 lowercase hex digits"),
            Error::BadSignature => f.write_str("signature does not match"),
            Error::BadEnvelope { field } => {
                write!(f, "v2 envelope field {} missing or invalid", field.name())
            }
            Error::UnknownKey => f.write_str("no key for this kid"),
            Error::WrongSender => f.write_str("kid names a different device than the sender"),
            Error::ClockSkew { skew_ms } => write!(f, "timestamp off by {skew_ms} ms"),
            Error::Replayed { seq } => write!(f, "sequence number {seq} replayed"),
            Error::Stale { seq, newest } => {
                write!(f, "sequence number {seq} too old (newest {newest})")
            }
            Error::Downgrade => f.write_str("v1 message refused for this device (downgrade)"),
            Error::InvalidKey => f.write_str("invalid key (empty)"),
            Error::InvalidDeviceId => {
                f.write_str("invalid device id (1-128 characters from [A-Za-z0-9._-])")
            }
            Error::SigPresent => f.write_str("payload already has a sig field"),
            Error::EnvelopeFieldPresent { field } => {
                write!(f, "payload already has the v2 field {}", field.name())
            }
            Error::SeqExhausted => f.write_str("sequence counter exhausted"),
            #[cfg(feature = "std")]
            Error::Io { op, kind } => write!(f, "{op}: {kind}"),
        }
    }
}

impl core::error::Error for Error {}
