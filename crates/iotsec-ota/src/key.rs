//! Signing algorithms, public keys, key ids and signatures.
//!
//! Ed25519 (RFC 8032, verified with `verify_strict`, weak keys refused) is the default;
//! ECDSA P-256 with SHA-256 (FIPS 186-4) is the option for hardware that only has that. Both
//! signatures are 64 bytes (`R || S`, `r || s`); ECDSA signatures must be low-S so that every
//! signed document has one encoding.

use core::fmt;

use ed25519_dalek::Verifier as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::wire::Reader;

/// Length of every signature in bytes.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an encoded signature block (algorithm, key id, signature).
pub const SIGNATURE_BLOCK_LEN: usize = 1 + KeyId::LEN + SIGNATURE_LEN;

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Ed25519 (the default).
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256.
    EcdsaP256,
}

impl Algorithm {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Ed25519 => 1,
            Self::EcdsaP256 => 2,
        }
    }

    pub(crate) fn from_code(code: u8, what: &'static str) -> Result<Self, Error> {
        match code {
            1 => Ok(Self::Ed25519),
            2 => Ok(Self::EcdsaP256),
            _ => Err(Error::malformed(what, "unknown signature algorithm")),
        }
    }

    /// Length of an encoded public key (Ed25519 32, P-256 SEC1 compressed 33).
    #[must_use]
    pub fn public_key_len(self) -> usize {
        match self {
            Self::Ed25519 => 32,
            Self::EcdsaP256 => 33,
        }
    }

    /// The short name used in files and output (`ed25519`, `p256`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::EcdsaP256 => "p256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key's identifier: the first 8 bytes of SHA-256("iotsec-ota key\0" || alg || key bytes).
/// Signatures name the key that made them; a verifier looks the id up in its key set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// Encoded length.
    pub const LEN: usize = 8;
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A public key trusted to verify signatures.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Ed25519 (not a weak / small-order key).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// ECDSA P-256.
    EcdsaP256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Decodes a raw key (Ed25519 32 bytes, P-256 SEC1 compressed 33 bytes).
    ///
    /// # Errors
    /// [`Error::Malformed`] if the bytes are not a valid key of that algorithm.
    pub fn from_bytes(alg: Algorithm, bytes: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "public key";
        if bytes.len() != alg.public_key_len() {
            return Err(Error::malformed(WHAT, "wrong length for its algorithm"));
        }
        match alg {
            Algorithm::Ed25519 => {
                let array: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| Error::malformed(WHAT, "wrong length"))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&array)
                    .map_err(|_| Error::malformed(WHAT, "not an Ed25519 point"))?;
                if key.is_weak() {
                    return Err(Error::malformed(WHAT, "weak (small-order) Ed25519 key"));
                }
                Ok(Self::Ed25519(key))
            }
            Algorithm::EcdsaP256 => {
                if bytes.first().is_none_or(|b| *b != 2 && *b != 3) {
                    return Err(Error::malformed(WHAT, "P-256 keys must be SEC1 compressed"));
                }
                p256::ecdsa::VerifyingKey::from_sec1_bytes(bytes)
                    .map(Self::EcdsaP256)
                    .map_err(|_| Error::malformed(WHAT, "not a P-256 point"))
            }
        }
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::Ed25519,
            Self::EcdsaP256(_) => Algorithm::EcdsaP256,
        }
    }

    /// The raw encoding, written into key sets.
    #[must_use]
    pub fn to_bytes(&self) -> alloc::vec::Vec<u8> {
        match self {
            Self::Ed25519(key) => key.to_bytes().to_vec(),
            Self::EcdsaP256(key) => key.to_encoded_point(true).as_bytes().to_vec(),
        }
    }

    /// The key id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        let mut hasher = Sha256::new();
        hasher.update(b"iotsec-ota key\0");
        hasher.update([self.algorithm().code()]);
        hasher.update(self.to_bytes());
        let digest = hasher.finalize();
        let mut id = [0u8; KeyId::LEN];
        id.copy_from_slice(&digest[..KeyId::LEN]);
        KeyId(id)
    }

    /// Checks `signature` over `message`. The caller has matched the key id already.
    pub(crate) fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), Error> {
        let bad = || Error::BadSignature {
            key_id: signature.key_id,
        };
        if signature.algorithm != self.algorithm() {
            return Err(bad());
        }
        match self {
            Self::Ed25519(key) => {
                let sig = ed25519_dalek::Signature::from_bytes(&signature.bytes);
                key.verify_strict(message, &sig).map_err(|_| bad())
            }
            Self::EcdsaP256(key) => {
                let sig =
                    p256::ecdsa::Signature::from_slice(&signature.bytes).map_err(|_| bad())?;
                // High-S signatures are the malleated twin of a valid one: refuse them.
                if sig.normalize_s().is_some() {
                    return Err(bad());
                }
                key.verify(message, &sig).map_err(|_| bad())
            }
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({} {})", self.algorithm(), self.id())
    }
}

/// A private signing key. Its `Debug` output never shows the key; it is zeroized on drop.
pub enum SecretKey {
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
    /// ECDSA P-256.
    EcdsaP256(p256::ecdsa::SigningKey),
}

impl SecretKey {
    /// Builds a key from 32 secret bytes (Ed25519 seed, or P-256 scalar).
    ///
    /// # Errors
    /// [`Error::Malformed`] if the bytes are not a valid P-256 scalar (zero or >= n).
    pub fn from_seed(alg: Algorithm, seed: &[u8; 32]) -> Result<Self, Error> {
        match alg {
            Algorithm::Ed25519 => Ok(Self::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed))),
            Algorithm::EcdsaP256 => p256::ecdsa::SigningKey::from_slice(seed)
                .map(Self::EcdsaP256)
                .map_err(|_| Error::malformed("secret key", "not a valid P-256 scalar")),
        }
    }

    /// The secret's 32 bytes (zeroized when dropped).
    #[must_use]
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        match self {
            Self::Ed25519(key) => Zeroizing::new(key.to_bytes()),
            Self::EcdsaP256(key) => Zeroizing::new(key.to_bytes().into()),
        }
    }

    /// The matching public key.
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        match self {
            Self::Ed25519(key) => PublicKey::Ed25519(key.verifying_key()),
            Self::EcdsaP256(key) => PublicKey::EcdsaP256(*key.verifying_key()),
        }
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ed25519(_) => Algorithm::Ed25519,
            Self::EcdsaP256(_) => Algorithm::EcdsaP256,
        }
    }

    /// Signs `message` (deterministic for both algorithms: RFC 8032, RFC 6979).
    #[must_use]
    pub fn sign(&self, message: &[u8]) -> Signature {
        use ed25519_dalek::Signer as _;
        let bytes: [u8; SIGNATURE_LEN] = match self {
            Self::Ed25519(key) => key.sign(message).to_bytes(),
            Self::EcdsaP256(key) => {
                let sig: p256::ecdsa::Signature = key.sign(message);
                let sig = sig.normalize_s().unwrap_or(sig);
                sig.to_bytes().into()
            }
        };
        Signature {
            algorithm: self.algorithm(),
            key_id: self.public_key().id(),
            bytes,
        }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({} <redacted>)", self.algorithm())
    }
}

/// A signature block: which algorithm, which key, and the 64 signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The algorithm.
    pub algorithm: Algorithm,
    /// The signing key's id.
    pub key_id: KeyId,
    /// The signature.
    pub bytes: [u8; SIGNATURE_LEN],
}

impl Signature {
    pub(crate) fn encode(&self, out: &mut alloc::vec::Vec<u8>) {
        out.push(self.algorithm.code());
        out.extend_from_slice(&self.key_id.0);
        out.extend_from_slice(&self.bytes);
    }

    pub(crate) fn decode(reader: &mut Reader<'_>, what: &'static str) -> Result<Self, Error> {
        let algorithm = Algorithm::from_code(reader.u8()?, what)?;
        let key_id = KeyId(reader.array()?);
        let bytes = reader.array()?;
        Ok(Self {
            algorithm,
            key_id,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_algorithms_sign_and_verify() {
        for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            let key = SecretKey::from_seed(alg, &[7u8; 32]).unwrap();
            let public = key.public_key();
            let sig = key.sign(b"hello");
            assert_eq!(sig.key_id, public.id());
            public.verify(b"hello", &sig).unwrap();
            assert!(public.verify(b"hellO", &sig).is_err());
            let round = PublicKey::from_bytes(alg, &public.to_bytes()).unwrap();
            assert_eq!(round, public);
            let again = SecretKey::from_seed(alg, &key.seed()).unwrap();
            assert_eq!(again.public_key(), public);
        }
    }

    #[test]
    fn high_s_ecdsa_is_refused() {
        let key = SecretKey::from_seed(Algorithm::EcdsaP256, &[9u8; 32]).unwrap();
        let mut sig = key.sign(b"m");
        let parsed = p256::ecdsa::Signature::from_slice(&sig.bytes).unwrap();
        // Negate s: (r, n - s) is also a valid ECDSA signature, but high-S.
        let (r, s) = parsed.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        sig.bytes = high.to_bytes().into();
        assert!(key.public_key().verify(b"m", &sig).is_err());
    }

    #[test]
    fn debug_redacts_secret() {
        let key = SecretKey::from_seed(Algorithm::Ed25519, &[1u8; 32]).unwrap();
        assert!(alloc::format!("{key:?}").contains("redacted"));
    }
}
