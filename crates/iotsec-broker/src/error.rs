//! The one error type of this crate.

use std::path::PathBuf;

/// What can go wrong rendering, reading, auditing or running a broker configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The configuration given is unusable (bad port, missing PKI material, ...).
    #[error("{0}")]
    Config(String),
    /// A mosquitto.conf line this parser cannot make sense of.
    #[error("{}:{line}: {reason}", file.display())]
    Parse {
        /// File.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// `include_dir` nesting too deep or looping.
    #[error("{}: include_dir nested more than {max} levels (a loop?)", file.display())]
    IncludeDepth {
        /// File with the include.
        file: PathBuf,
        /// The limit.
        max: usize,
    },
    /// The mosquitto binary is not installed.
    #[error(
        "mosquitto is not installed: install it with `sudo apt-get install -y mosquitto mosquitto-clients`"
    )]
    MosquittoMissing,
    /// Mosquitto drops privileges to its user before loading files it cannot reach.
    #[error("{}", reason)]
    Unreachable {
        /// Why, with the fix.
        reason: String,
    },
    /// No running broker for this configuration.
    #[error("no running mosquitto for {}: {reason}", dir.display())]
    NotRunning {
        /// Config directory.
        dir: PathBuf,
        /// Why we think so.
        reason: String,
    },
    /// The broker did not come up.
    #[error("mosquitto did not start: {0}")]
    StartFailed(String),
    /// PKI material could not be read.
    #[error(transparent)]
    Pki(#[from] iotsec_pki::PkiError),
    /// A file system or process operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file, directory or program.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl BrokerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BrokerError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
