//! The one error type of this crate.

use std::path::PathBuf;

/// What can stop an audit. Problems *found* in the inputs are findings, not errors; an error
/// means an input could not be read at all or the arguments are unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The inputs given cannot be used (bad port list, unknown format, ...).
    #[error("{0}")]
    Usage(String),
    /// A file or directory given on the command line could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The broker configuration could not be parsed.
    #[error(transparent)]
    Broker(#[from] iotsec_broker::BrokerError),
    /// The server configuration could not be parsed or its registry opened.
    #[error(transparent)]
    Server(#[from] iotsec_server::ServerError),
    /// The network scan failed to run (not: found something).
    #[error(transparent)]
    Scan(#[from] iotsec_scan::error::ScanError),
    /// The async runtime failed (a task panicked or was cancelled).
    #[error("internal task failed: {0}")]
    Task(String),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;
