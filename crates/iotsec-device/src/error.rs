//! The crate's error type, grouped by who is at fault: the configuration the operator wrote,
//! the device's environment (disk, state files, the reading source), or the broker.
//!
//! Why the broker or its certificate was refused during a handshake is not an error of this
//! crate but data ([`iotsec_tls::Rejection`], reported by [`crate::check`] and logged by the
//! agent, which keeps retrying).

use std::path::PathBuf;

/// Errors of the device agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- the configuration (the operator's input) ---
    /// `device.toml` could not be read.
    #[error("cannot read {}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `device.toml` is not valid TOML or has unknown / mistyped keys.
    #[error("{}: invalid configuration", path.display())]
    ConfigSyntax {
        /// The file.
        path: PathBuf,
        /// The parser's error (names the key and line).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value in `device.toml` is not acceptable.
    #[error("{}: {key}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `tls.pins`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Trust material or the device identity could not be loaded (CA, pins, cert, key).
    #[error("{}: [tls]", path.display())]
    Tls {
        /// The configuration file.
        path: PathBuf,
        /// What iotsec-tls refused.
        #[source]
        source: iotsec_tls::Error,
    },
    /// The message key file could not be used.
    #[error("message key {}", path.display())]
    MsgKey {
        /// The key file.
        path: PathBuf,
        /// Why (never the key itself).
        #[source]
        source: iotsec_msg::Error,
    },

    // --- the environment ---
    /// A file operation on the device's state failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done ("write", "fsync", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A state file holds something this agent never writes (disk corruption or tampering).
    #[error("{}: {reason}", path.display())]
    StateCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The queue was used against its contract (a seq that does not increase, an oversized
    /// reading): a bug in the caller.
    #[error("queue: {reason}")]
    Queue {
        /// What was wrong.
        reason: String,
    },
    /// Another agent runs on the same state directory.
    #[error("{} is held by another running agent", path.display())]
    StateLocked {
        /// The lock file.
        path: PathBuf,
    },
    /// The sequence counter reached `u64::MAX`.
    #[error("the message sequence counter is exhausted")]
    SeqExhausted,
    /// The reading source failed (command could not start, stdin unreadable).
    #[error("reading source: {reason}")]
    Source {
        /// What happened.
        reason: String,
        /// The I/O error, if any.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A line from the reading source is not a reading: it is skipped (and counted), never
    /// queued.
    #[error("invalid reading ({len} bytes): {reason}")]
    InvalidReading {
        /// Its length.
        len: usize,
        /// Why it is refused.
        reason: String,
    },
    /// A reading could not be signed (the signer refused its JSON).
    #[error("cannot sign the message")]
    Sign(#[source] iotsec_msg::Error),
    /// The MQTT client refused its options.
    #[error("MQTT client options refused: {reason}")]
    Mqtt {
        /// rumqttc's description.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
