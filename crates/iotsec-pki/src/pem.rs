//! Reading certificates and keys from PEM files, with errors that name the file.

use std::path::Path;

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{PkiError, Result};
use crate::file;

/// Every certificate in a PEM file, in file order. At least one is required.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = file::read(path)?;
    certificates_from_slice(path, &bytes)
}

/// Like [`certificates`], for bytes already read (`path` only names them in errors).
pub fn certificates_from_slice(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadPem {
            path: path.to_path_buf(),
            what: format!("corrupt PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(PkiError::BadPem {
            path: path.to_path_buf(),
            what: "no CERTIFICATE block found".into(),
        });
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert).map_err(|e| PkiError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(certs)
}

/// The first certificate of a PEM file.
pub fn certificate(path: &Path) -> Result<CertificateDer<'static>> {
    let mut certs = certificates(path)?;
    Ok(certs.swap_remove(0))
}

/// A private key (PKCS#8, SEC1 or PKCS#1 PEM) as a signing key pair.
pub fn key_pair(path: &Path) -> Result<KeyPair> {
    let bytes = file::read(path)?;
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| PkiError::BadKey {
        path: path.to_path_buf(),
        reason: format!("no usable PRIVATE KEY block ({e})"),
    })?;
    KeyPair::try_from(&der).map_err(|e| PkiError::BadKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The DER SubjectPublicKeyInfo of a certificate.
pub fn spki_of_cert(path: &Path, der: &[u8]) -> Result<Vec<u8>> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(cert.public_key().raw.to_vec())
}

/// Checks that `key` is the private half of the certificate in `cert_der`.
pub fn ensure_key_matches(
    cert_path: &Path,
    cert_der: &[u8],
    key_path: &Path,
    key: &KeyPair,
) -> Result<()> {
    use rcgen::PublicKeyData;
    if spki_of_cert(cert_path, cert_der)? == key.subject_public_key_info() {
        Ok(())
    } else {
        Err(PkiError::KeyMismatch {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
        })
    }
}
