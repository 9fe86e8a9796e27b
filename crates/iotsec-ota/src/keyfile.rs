//! Key files (feature `std`): private keys as PKCS#8 PEM (`PRIVATE KEY`, mode 0600, written
//! atomically), public keys as SubjectPublicKeyInfo PEM (`PUBLIC KEY`). The same formats as
//! `openssl genpkey -algorithm ed25519` / `openssl ecparam -name prime256v1` + `pkcs8 -topk8`,
//! so keys move between iotsec, OpenSSL and HSM tooling.

use std::path::Path;
use std::string::String;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::file::{read_small, write_atomic};
use crate::key::{Algorithm, PublicKey, SecretKey};

const LIMIT: usize = 16 * 1024;

/// Generates a key from the operating system's random source.
///
/// # Errors
/// [`Error::Io`] if the OS has no randomness to give.
pub fn generate(alg: Algorithm) -> Result<SecretKey, Error> {
    loop {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut_slice()).map_err(|e| {
            Error::io(
                "read randomness from",
                "getrandom",
                std::io::Error::other(std::string::ToString::to_string(&e)),
            )
        })?;
        // A P-256 scalar is out of range with probability ~2^-32: draw again.
        if let Ok(key) = SecretKey::from_seed(alg, &seed) {
            return Ok(key);
        }
    }
}

/// The PKCS#8 PEM of a secret key.
///
/// # Errors
/// Only on an encoder failure (not expected).
pub fn secret_key_pem(key: &SecretKey) -> Result<Zeroizing<String>, Error> {
    let bad = |_| Error::malformed("secret key", "cannot encode as PKCS#8");
    match key {
        SecretKey::Ed25519(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(bad),
        SecretKey::EcdsaP256(k) => k.to_pkcs8_pem(LineEnding::LF).map_err(bad),
    }
}

/// The SubjectPublicKeyInfo PEM of a public key.
///
/// # Errors
/// Only on an encoder failure (not expected).
pub fn public_key_pem(key: &PublicKey) -> Result<String, Error> {
    let bad = |_| Error::malformed("public key", "cannot encode as SPKI");
    match key {
        PublicKey::Ed25519(k) => k.to_public_key_pem(LineEnding::LF).map_err(bad),
        PublicKey::EcdsaP256(k) => k.to_public_key_pem(LineEnding::LF).map_err(bad),
    }
}

/// Writes a secret key, mode 0600, atomically (never a partly written key on disk).
///
/// # Errors
/// [`Error::Io`].
pub fn write_secret_key(path: &Path, key: &SecretKey) -> Result<(), Error> {
    write_atomic(path, secret_key_pem(key)?.as_bytes(), 0o600)
}

/// Writes a public key (mode 0644), atomically.
///
/// # Errors
/// [`Error::Io`].
pub fn write_public_key(path: &Path, key: &PublicKey) -> Result<(), Error> {
    write_atomic(path, public_key_pem(key)?.as_bytes(), 0o644)
}

fn read_text(path: &Path) -> Result<Zeroizing<String>, Error> {
    let bytes = Zeroizing::new(read_small(path, LIMIT)?);
    let text = core::str::from_utf8(&bytes).map_err(|_| Error::BadKeyFile {
        path: path.to_path_buf(),
        reason: "not a PEM text file",
    })?;
    Ok(Zeroizing::new(String::from(text)))
}

/// Reads a PKCS#8 PEM private key (Ed25519 or P-256).
///
/// # Errors
/// [`Error::Io`], [`Error::BadKeyFile`].
pub fn read_secret_key(path: &Path) -> Result<SecretKey, Error> {
    let text = read_text(path)?;
    if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(&text) {
        return Ok(SecretKey::Ed25519(k));
    }
    if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(&text) {
        return Ok(SecretKey::EcdsaP256(k));
    }
    Err(Error::BadKeyFile {
        path: path.to_path_buf(),
        reason: "not a PKCS#8 PEM Ed25519 or P-256 private key",
    })
}

/// Reads a SubjectPublicKeyInfo PEM public key (Ed25519 or P-256).
///
/// # Errors
/// [`Error::Io`], [`Error::BadKeyFile`].
pub fn read_public_key(path: &Path) -> Result<PublicKey, Error> {
    let text = read_text(path)?;
    let key = if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(&text) {
        PublicKey::Ed25519(k)
    } else if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(&text) {
        PublicKey::EcdsaP256(k)
    } else {
        return Err(Error::BadKeyFile {
            path: path.to_path_buf(),
            reason: "not a PEM Ed25519 or P-256 public key",
        });
    };
    // Same checks as keys inside key sets (weak Ed25519 keys, etc.).
    PublicKey::from_bytes(key.algorithm(), &key.to_bytes()).map_err(|_| Error::BadKeyFile {
        path: path.to_path_buf(),
        reason: "unusable public key (weak or invalid point)",
    })
}
