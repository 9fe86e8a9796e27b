//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong in the ingest and its storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The database refused an operation.
    #[error("storage: {0}")]
    Storage(String),
    /// The broker connection failed.
    #[error("broker: {0}")]
    Broker(String),
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this crate.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
