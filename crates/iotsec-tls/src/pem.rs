//! PEM input: certificates, CRLs and private keys, parsed with
//! rustls-pki-types' [`PemObject`] (not the unmaintained rustls-pemfile).
//!
//! Files are read whole here and parsed as bytes, so every parser is the same
//! for files and for in-memory input, and a file error names its path.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::Error;

/// All `CERTIFICATE` sections, in order; at least one.
pub(crate) fn certificates(
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem { what, source })?;
    if certs.is_empty() {
        return Err(Error::Missing {
            what: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// All `X509 CRL` sections, in order; at least one.
pub(crate) fn crls(pem: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, Error> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem {
            what: "CRL",
            source,
        })?;
    if crls.is_empty() {
        return Err(Error::Missing { what: "X509 CRL" });
    }
    Ok(crls)
}

/// The first private key: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or
/// PKCS#1 (`RSA PRIVATE KEY`).
pub(crate) fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => Error::Missing {
            what: "PRIVATE KEY",
        },
        source => Error::Pem {
            what: "private key",
            source,
        },
    })
}

/// Reads `path` whole, then runs `parse` on its bytes; errors name the path.
pub(crate) fn from_file<T>(
    path: &Path,
    what: &'static str,
    parse: impl FnOnce(&[u8]) -> Result<T, Error>,
) -> Result<T, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes).map_err(|e| e.in_file(path))
}
