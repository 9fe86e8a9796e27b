//! The crate's error type: everything that can go wrong while *building* a
//! configuration. Why a peer was refused during a handshake is not an error of
//! this crate but data: see [`crate::Rejection`].

use std::path::PathBuf;

/// Errors raised while loading trust material or building rustls configurations.
///
/// All variants are the caller's input or configuration at fault; handshake
/// outcomes are reported as [`crate::Rejection`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file given to a `*_file` constructor could not be read.
    #[error("cannot read {what} from {}", path.display())]
    Read {
        /// What the file was supposed to hold ("CA certificate", "private key", ...).
        what: &'static str,
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// An error while loading the file at `path`; the cause is the source.
    #[error("{}", path.display())]
    InFile {
        /// The path as given.
        path: PathBuf,
        /// What was wrong with its content.
        #[source]
        source: Box<Error>,
    },

    /// The input is not well-formed PEM.
    #[error("invalid PEM in {what}")]
    Pem {
        /// What the input was supposed to hold.
        what: &'static str,
        /// The PEM decoder's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    /// The PEM input holds no section of the expected kind.
    #[error("no {what} found in the PEM input")]
    Missing {
        /// What was expected ("CERTIFICATE", "PRIVATE KEY", "X509 CRL").
        what: &'static str,
    },

    /// A certificate could not be parsed as X.509 v3.
    #[error("invalid {what}: {reason}")]
    BadCertificate {
        /// Which certificate ("CA certificate", "client certificate", ...).
        what: &'static str,
        /// The parser's reason.
        reason: String,
    },

    /// A certificate revocation list could not be parsed.
    #[error("invalid CRL: {reason}")]
    BadCrl {
        /// The parser's reason.
        reason: String,
    },

    /// A certificate fingerprint pin is malformed.
    #[error("invalid certificate fingerprint '{input}': {reason}")]
    BadFingerprint {
        /// The text as given (a fingerprint is public, not a secret).
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An SPKI pin is malformed.
    #[error("invalid SPKI pin '{input}': {reason}")]
    BadSpkiPin {
        /// The text as given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A pin set was empty.
    #[error("an SPKI pin set needs at least one pin")]
    NoPins,

    /// A policy name is not one of `ca`, `pin`, `spki`, `ca+spki`.
    #[error("unknown trust policy '{0}' (expected ca, pin, spki or ca+spki)")]
    UnknownPolicy(String),

    /// The private key is malformed or of an unsupported type.
    #[error("unsupported or malformed private key")]
    BadKey(#[source] rustls::Error),

    /// The private key is not the key of the first certificate of the chain.
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,

    /// rustls refused to build a verifier from the trust material.
    #[error("cannot build a certificate verifier")]
    Verifier(#[source] rustls::client::VerifierBuilderError),

    /// rustls refused the configuration (e.g. no protocol version in common with the provider).
    #[error("rustls refused the configuration")]
    Config(#[source] rustls::Error),
}

impl Error {
    /// Wraps `self` with the path of the file it came from.
    pub(crate) fn in_file(self, path: &std::path::Path) -> Error {
        Error::InFile {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }
}
