//! A TLS identity: certificate chain + private key, for a device (client
//! side of mutual TLS) or a server.

use std::fmt;
use std::path::Path;

use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::pin::CertFingerprint;
use crate::{Error, pem};

/// A certificate chain (leaf first) and the leaf's private key: PKCS#8, SEC1
/// (EC) or PKCS#1 (RSA); ECDSA P-256/P-384, Ed25519 and RSA keys are supported.
///
/// The key is checked to belong to the leaf when the identity is built.
/// `Debug` never prints the key.
pub struct Identity {
    /// Invariant: non-empty, leaf first.
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    leaf: CertFingerprint,
}

impl Identity {
    /// Builds an identity from DER.
    ///
    /// # Errors
    /// [`Error::Missing`] for an empty chain, [`Error::BadKey`] for a key the
    /// provider cannot load, [`Error::KeyMismatch`] when the key is not the
    /// leaf's, [`Error::BadCertificate`] when the leaf does not parse.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, Error> {
        let Some(leaf) = chain
            .first()
            .map(|leaf| CertFingerprint::of_certificate(leaf))
        else {
            return Err(Error::Missing {
                what: "CERTIFICATE",
            });
        };
        match CertifiedKey::from_der(chain.clone(), key.clone_key(), &crate::provider()) {
            Ok(_) => Ok(Self { chain, key, leaf }),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(Error::KeyMismatch)
            }
            Err(rustls::Error::InvalidCertificate(reason)) => Err(Error::BadCertificate {
                what: "certificate",
                reason: reason.to_string(),
            }),
            Err(other) => Err(Error::BadKey(other)),
        }
    }

    /// Builds an identity from a PEM certificate chain (leaf first) and a PEM key.
    ///
    /// # Errors
    /// As [`Identity::from_der`], plus [`Error::Pem`].
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, Error> {
        let chain = pem::certificates(cert_chain_pem, "certificate chain")?;
        let key = pem::private_key(key_pem)?;
        Self::from_der(chain, key)
    }

    /// Reads the chain and key from PEM files (e.g. `device.pem`, `device.key`).
    ///
    /// # Errors
    /// As [`Identity::from_pem`], plus [`Error::Read`] / [`Error::InFile`].
    pub fn from_pem_files(
        cert_chain_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        let chain = pem::from_file(cert_chain_path.as_ref(), "certificate chain", |pem| {
            pem::certificates(pem, "certificate chain")
        })?;
        let key_path = key_path.as_ref();
        let key = pem::from_file(key_path, "private key", pem::private_key)?;
        Self::from_der(chain, key).map_err(|e| match e {
            // A mismatch is about the pair; name the key file.
            Error::KeyMismatch | Error::BadKey(_) => e.in_file(key_path),
            other => other,
        })
    }

    /// The certificate chain, leaf first.
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// SHA-256 fingerprint of the leaf.
    pub fn fingerprint(&self) -> CertFingerprint {
        self.leaf
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            leaf: self.leaf,
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("leaf", &self.fingerprint())
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}
