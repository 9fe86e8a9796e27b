//! Key algorithms a certificate can use.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, RsaKeySize, SignatureAlgorithm};

use crate::error::PkiError;

/// A key type for a CA, server or device certificate.
///
/// ECDSA P-256 is the default: ESP32's mbedTLS and every TLS stack verify it, it is fast, and the
/// keys are small. Ed25519 is opt-in because mbedTLS cannot verify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256.
    #[default]
    P256,
    /// ECDSA on NIST P-384 with SHA-384.
    P384,
    /// Ed25519 (RFC 8410).
    Ed25519,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 signatures.
    Rsa2048,
    /// RSA 3072 with PKCS#1 v1.5 SHA-256 signatures.
    Rsa3072,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order `--help` lists them.
    pub const ALL: [KeyAlgorithm; 5] = [
        KeyAlgorithm::P256,
        KeyAlgorithm::P384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
    ];

    /// The name used on the command line and in the inventory.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::P256 => "p256",
            KeyAlgorithm::P384 => "p384",
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::Rsa2048 => "rsa2048",
            KeyAlgorithm::Rsa3072 => "rsa3072",
        }
    }

    fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlgorithm::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Generates a fresh key pair from the operating system's CSPRNG (through aws-lc-rs).
    pub fn generate(self) -> Result<KeyPair, PkiError> {
        let alg = self.signature_algorithm();
        let key = match self {
            KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(alg, RsaKeySize::_2048)?,
            KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(alg, RsaKeySize::_3072)?,
            _ => KeyPair::generate_for(alg)?,
        };
        Ok(key)
    }

    /// The algorithm of an existing key pair, if it is one iotsec issues.
    pub fn of(key: &KeyPair) -> Option<KeyAlgorithm> {
        let alg = key.algorithm();
        if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            Some(KeyAlgorithm::P256)
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            Some(KeyAlgorithm::P384)
        } else if alg == &rcgen::PKCS_ED25519 {
            Some(KeyAlgorithm::Ed25519)
        } else if alg == &rcgen::PKCS_RSA_SHA256 {
            // The modulus length decides 2048 vs 3072: the DER SPKI grows with it.
            use rcgen::PublicKeyData;
            Some(if key.der_bytes().len() > 300 {
                KeyAlgorithm::Rsa3072
            } else {
                KeyAlgorithm::Rsa2048
            })
        } else {
            None
        }
    }
}

/// The PEM a private key is stored as: PKCS#8.
///
/// Ed25519 keys are written as PKCS#8 v1 (RFC 8410 section 7, seed only): the v2 form with the
/// public key attached, which aws-lc/ring produce, is rejected by OpenSSL 3.0's decoder and so
/// by Mosquitto and `openssl pkey`.
pub fn private_key_pem(key: &KeyPair) -> String {
    const V2_PREFIX: [u8; 16] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let der = key.serialized_der();
    if der.len() >= 48 && der[..16] == V2_PREFIX {
        let mut v1 = Vec::with_capacity(48);
        v1.extend_from_slice(&V1_PREFIX);
        v1.extend_from_slice(&der[16..48]);
        return pem_encode("PRIVATE KEY", &v1);
    }
    key.serialize_pem()
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| PkiError::InvalidArgument {
                what: "key algorithm",
                reason: format!("{s:?} is not one of p256, p384, ed25519, rsa2048, rsa3072"),
            })
    }
}
