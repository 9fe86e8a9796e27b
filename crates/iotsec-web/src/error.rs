//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong while configuring or running the HTTPS API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The `[web]` section (or a command-line override) is unusable.
    #[error("{0}")]
    Config(String),
    /// The token file is unreadable or malformed.
    #[error("token file {}: {reason}", path.display())]
    Tokens {
        /// The token file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS material could not be loaded.
    #[error("TLS configuration")]
    Tls(#[source] iotsec_tls::Error),
    /// The ACME server refused or failed an operation.
    #[error("ACME: {0}")]
    Acme(String),
    /// Storage refused an operation.
    #[error(transparent)]
    Server(#[from] iotsec_server::ServerError),
    /// A file or socket operation failed.
    #[error("{what}")]
    Io {
        /// The file, address or operation.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl WebError {
    pub(crate) fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> WebError {
        let what = what.to_string();
        move |source| WebError::Io { what, source }
    }
}

/// Result alias for this crate.
pub type Result<T, E = WebError> = std::result::Result<T, E>;
