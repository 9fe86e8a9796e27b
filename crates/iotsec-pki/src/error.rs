//! The one error type of this crate, grouped by who is at fault.

use std::path::PathBuf;

/// Everything that can go wrong in the PKI.
///
/// Input and configuration errors come first (the caller can fix them), then the environment
/// (file system), then failures inside the certificate library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A device id that cannot be used as an MQTT username and topic segment.
    #[error("invalid device id {id:?}: {reason}")]
    InvalidDeviceId {
        /// The id as typed.
        id: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A host name or IP address that cannot go into a certificate.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as typed.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A validity period or count out of range.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The target file exists and overwriting was not requested.
    #[error("{} already exists (use --force to replace it)", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A certificate id that is already issued and not revoked.
    #[error(
        "{id} already has a valid certificate (serial {serial}); use --force to revoke it and issue a new one"
    )]
    AlreadyIssued {
        /// The id.
        id: String,
        /// Its current serial, hex.
        serial: String,
    },
    /// The directory holds no CA.
    #[error("no CA in {}: run `iotsec pki init --dir {}` first", dir.display(), dir.display())]
    CaMissing {
        /// The PKI directory.
        dir: PathBuf,
    },
    /// `revoke` of an id the inventory does not know.
    #[error("unknown certificate id {id:?} (see `iotsec pki list`)")]
    UnknownId {
        /// The id.
        id: String,
    },
    /// A file that should hold PEM data does not.
    #[error("{}: {what}", path.display())]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// Bytes that should be a certificate are not a valid one.
    #[error("{}: not a valid X.509 certificate: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A private key that cannot be read.
    #[error("{}: not a usable private key: {reason}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("{} does not match the public key of {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate.
        cert: PathBuf,
        /// The key.
        key: PathBuf,
    },
    /// The inventory file is not what this version writes.
    #[error("{}: corrupt inventory: {reason}", path.display())]
    BadInventory {
        /// The inventory file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Key generation or signing failed inside the certificate library.
    #[error("certificate generation failed: {0}")]
    Generation(String),
}

impl PkiError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PkiError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Generation(e.to_string())
    }
}

/// Result alias for this crate.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;
