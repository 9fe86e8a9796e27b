//! Pins: a leaf certificate's SHA-256 fingerprint, and SHA-256 SPKI pins
//! (`sha256/BASE64`, the RFC 7469 `pin-sha256` value).
//!
//! Every comparison of a pin with what a peer presented is constant time
//! (`subtle`), so a timing side channel does not tell an attacker how many
//! leading bytes of a forged certificate's hash were right.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

use crate::Error;

/// SHA-256 fingerprint of a certificate's DER encoding (what
/// `openssl x509 -noout -fingerprint -sha256` prints).
///
/// Parses openssl's colon form (`AB:CD:...`, optionally with its
/// `sha256 Fingerprint=` prefix) and plain hex, case-insensitively. Displays as
/// upper-case colon form, like openssl. Equality is constant time.
#[derive(Clone, Copy, Eq)]
pub struct CertFingerprint([u8; 32]);

impl CertFingerprint {
    /// The fingerprint of a DER-encoded certificate (any bytes: nothing is parsed).
    pub fn of_certificate(cert_der: &[u8]) -> Self {
        Self(Sha256::digest(cert_der).into())
    }

    /// Wraps a raw 32-byte SHA-256 digest.
    pub fn from_bytes(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex without separators.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time comparison.
    pub fn ct_matches(&self, other: &CertFingerprint) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl PartialEq for CertFingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.ct_matches(other)
    }
}

impl FromStr for CertFingerprint {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let bad = |reason| Error::BadFingerprint {
            input: input.to_owned(),
            reason,
        };
        let mut text = input.trim();
        // `openssl x509 -fingerprint -sha256` prints `sha256 Fingerprint=AB:CD:...`
        // (OpenSSL 1.1 spells it `SHA256 Fingerprint=`); accept the whole line.
        if let Some((prefix, rest)) = text.split_once('=') {
            if !prefix.trim().eq_ignore_ascii_case("sha256 fingerprint") {
                return Err(bad("only a SHA-256 fingerprint can be pinned"));
            }
            text = rest.trim();
        }
        let digits: String = if text.contains(':') {
            let mut digits = String::with_capacity(64);
            for pair in text.split(':') {
                if pair.len() != 2 {
                    return Err(bad("colon form needs two hex digits between colons"));
                }
                digits.push_str(pair);
            }
            digits
        } else {
            text.to_owned()
        };
        if digits.len() != 64 {
            return Err(bad("a SHA-256 fingerprint is 32 bytes (64 hex digits)"));
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&digits, &mut digest).map_err(|_| bad("not hexadecimal"))?;
        Ok(Self(digest))
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

/// SHA-256 of a DER `SubjectPublicKeyInfo`, written `sha256/BASE64` (standard
/// alphabet, with padding), as in RFC 7469 and most pinning tools.
///
/// The same value as
/// `openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`.
#[derive(Clone, Copy, Eq)]
pub struct SpkiPin([u8; 32]);

/// The text prefix of an SPKI pin.
const SPKI_PREFIX: &str = "sha256/";

impl SpkiPin {
    /// The pin of a DER `SubjectPublicKeyInfo` (including its outer SEQUENCE).
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// The pin of a DER certificate's public key.
    ///
    /// # Errors
    /// [`Error::BadCertificate`] if the certificate does not parse as X.509 v3.
    pub fn of_certificate(cert_der: &[u8]) -> Result<Self, Error> {
        let der = CertificateDer::from(cert_der);
        let cert = webpki::EndEntityCert::try_from(&der).map_err(|e| Error::BadCertificate {
            what: "certificate",
            reason: e.to_string(),
        })?;
        Ok(Self::of_spki(cert.subject_public_key_info().as_ref()))
    }

    /// Wraps a raw 32-byte SHA-256 digest.
    pub fn from_bytes(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison.
    pub fn ct_matches(&self, other: &SpkiPin) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl PartialEq for SpkiPin {
    fn eq(&self, other: &Self) -> bool {
        self.ct_matches(other)
    }
}

impl FromStr for SpkiPin {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        let bad = |reason| Error::BadSpkiPin {
            input: input.to_owned(),
            reason,
        };
        let text = input.trim();
        let encoded = match text.split_at_checked(SPKI_PREFIX.len()) {
            Some((prefix, encoded)) if prefix.eq_ignore_ascii_case(SPKI_PREFIX) => encoded,
            _ => return Err(bad("expected sha256/ followed by base64")),
        };
        let digest = BASE64
            .decode(encoded)
            .map_err(|_| bad("not standard base64 with padding"))?;
        let digest: [u8; 32] = digest
            .try_into()
            .map_err(|_| bad("a SHA-256 pin is 32 bytes (44 base64 characters)"))?;
        Ok(Self(digest))
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SPKI_PREFIX}{}", BASE64.encode(self.0))
    }
}

impl fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiPin({self})")
    }
}

/// A non-empty set of SPKI pins: the current key and, to rotate without
/// stranding devices, at least one backup key (see `docs/pinning.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinSet {
    /// Invariant: non-empty, no duplicates.
    pins: Vec<SpkiPin>,
}

impl PinSet {
    /// Builds a set; duplicates are dropped.
    ///
    /// # Errors
    /// [`Error::NoPins`] if `pins` is empty.
    pub fn new(pins: impl IntoIterator<Item = SpkiPin>) -> Result<Self, Error> {
        let mut set: Vec<SpkiPin> = Vec::new();
        for pin in pins {
            if !set.contains(&pin) {
                set.push(pin);
            }
        }
        if set.is_empty() {
            return Err(Error::NoPins);
        }
        Ok(Self { pins: set })
    }

    /// Parses pins written `sha256/BASE64`.
    ///
    /// # Errors
    /// [`Error::BadSpkiPin`] for the first malformed pin, [`Error::NoPins`] if none.
    pub fn parse<S: AsRef<str>>(pins: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let pins = pins
            .into_iter()
            .map(|p| p.as_ref().parse())
            .collect::<Result<Vec<SpkiPin>, Error>>()?;
        Self::new(pins)
    }

    /// The pins, in the order given.
    pub fn pins(&self) -> &[SpkiPin] {
        &self.pins
    }

    /// True when `candidate` is one of the pins. Compares against every pin in
    /// constant time, whatever matches.
    pub fn contains(&self, candidate: &SpkiPin) -> bool {
        let hit = self
            .pins
            .iter()
            .fold(Choice::from(0), |hit, pin| hit | pin.0.ct_eq(&candidate.0));
        bool::from(hit)
    }

    /// True when only one pin is configured: replacing that key strands every
    /// device (there is no backup key to move to).
    pub fn has_no_backup(&self) -> bool {
        self.pins.len() < 2
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn fingerprint_forms_agree() {
        let plain: CertFingerprint = HEX.parse().unwrap();
        let upper: CertFingerprint = HEX.to_uppercase().parse().unwrap();
        let colon = plain.to_string();
        assert_eq!(colon.len(), 32 * 3 - 1);
        assert!(colon.starts_with("01:23:45"));
        let from_colon: CertFingerprint = colon.parse().unwrap();
        let from_lower_colon: CertFingerprint = colon.to_lowercase().parse().unwrap();
        let openssl: CertFingerprint = format!("sha256 Fingerprint={colon}\n").parse().unwrap();
        let openssl11: CertFingerprint = format!("SHA256 Fingerprint={colon}").parse().unwrap();
        for other in [upper, from_colon, from_lower_colon, openssl, openssl11] {
            assert_eq!(plain, other);
        }
        assert_eq!(plain.to_hex(), HEX);
    }

    #[test]
    fn fingerprint_rejects_malformed() {
        for bad in [
            "",
            &HEX[..62],
            &format!("{HEX}00"),
            &HEX.replace('0', "g"),
            "01:23:4:56",
            "0123:45",
            "sha1 Fingerprint=01:23",
            &format!("md5 Fingerprint={HEX}"),
            &format!("{}:", &HEX[..2]),
        ] {
            assert!(bad.parse::<CertFingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn spki_pin_round_trip_and_errors() {
        let pin = SpkiPin::of_spki(b"not really an spki");
        let text = pin.to_string();
        assert!(text.starts_with("sha256/") && text.ends_with('=') && text.len() == 51);
        assert_eq!(text.parse::<SpkiPin>().unwrap(), pin);
        assert_eq!(
            text.replace("sha256/", "SHA256/")
                .parse::<SpkiPin>()
                .unwrap(),
            pin
        );
        for bad in [
            "",
            "sha256/",
            &text[7..],
            &text.replace("sha256/", "sha1/"),
            &text[..text.len() - 1],
            "sha256/AAAA",
            "sha256/!!!!",
        ] {
            assert!(bad.parse::<SpkiPin>().is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn pins_round_trip(digest in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let fingerprint = CertFingerprint::from_bytes(digest);
            for text in [
                fingerprint.to_string(),
                fingerprint.to_string().to_lowercase(),
                fingerprint.to_hex(),
                fingerprint.to_hex().to_uppercase(),
            ] {
                proptest::prop_assert_eq!(text.parse::<CertFingerprint>().unwrap(), fingerprint);
            }
            let pin = SpkiPin::from_bytes(digest);
            proptest::prop_assert_eq!(pin.to_string().parse::<SpkiPin>().unwrap(), pin);
        }

        #[test]
        fn pin_parsers_never_panic(text in "\\PC{0,120}") {
            let _ = text.parse::<CertFingerprint>();
            let _ = text.parse::<SpkiPin>();
        }
    }

    #[test]
    fn pin_set_semantics() {
        assert!(matches!(PinSet::new([]), Err(Error::NoPins)));
        let a = SpkiPin::of_spki(b"a");
        let b = SpkiPin::of_spki(b"b");
        let single = PinSet::new([a, a]).unwrap();
        assert!(single.has_no_backup());
        assert_eq!(single.pins().len(), 1);
        let both = PinSet::parse([a.to_string(), b.to_string()]).unwrap();
        assert!(!both.has_no_backup());
        assert!(both.contains(&a) && both.contains(&b));
        assert!(!single.contains(&b));
    }
}
