//! Certificate fingerprints and public-key pins.
//!
//! * [`Fingerprint`]: SHA-256 over the certificate's DER, printed exactly as
//!   `openssl x509 -noout -fingerprint -sha256` does (`sha256 Fingerprint=AA:BB:...`).
//! * [`SpkiPin`]: SHA-256 over the DER SubjectPublicKeyInfo, base64 with padding, prefixed
//!   `sha256/` (the HPKP / OkHttp form, RFC 7469 section 2.4). A pin survives re-issuing the
//!   certificate with the same key; a fingerprint does not.

use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};

/// SHA-256 of a DER certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Upper-case hex with colons, as openssl prints it (`AA:BB:..`).
    pub fn colon_hex(&self) -> String {
        let mut out = String::with_capacity(32 * 3);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push_str(&format!("{b:02X}"));
        }
        out
    }

    /// The full line `openssl x509 -noout -fingerprint -sha256` prints with OpenSSL 3
    /// (`sha256 Fingerprint=AA:BB:...`; OpenSSL 1.1 printed the digest name upper-case).
    pub fn openssl_line(&self) -> String {
        format!("sha256 Fingerprint={}", self.colon_hex())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.colon_hex())
    }
}

/// SHA-256 of a DER SubjectPublicKeyInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiPin(pub [u8; 32]);

impl SpkiPin {
    /// Pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki_der(spki: &[u8]) -> Self {
        SpkiPin(Sha256::digest(spki).into())
    }

    /// Base64 (standard alphabet, padded) of the digest, without the prefix.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256/{}", self.base64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_openssl() {
        let fp = Fingerprint([0xab; 32]);
        assert!(fp.openssl_line().starts_with("sha256 Fingerprint=AB:AB:"));
        assert_eq!(fp.colon_hex().len(), 32 * 3 - 1);
        let pin = SpkiPin([0; 32]);
        assert_eq!(
            pin.to_string(),
            "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
    }
}
