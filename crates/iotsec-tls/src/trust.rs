//! Trust material and the four server trust policies a client can use.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::pin::{CertFingerprint, PinSet};
use crate::{Error, pem};

/// A set of CA certificates to validate chains against, with optional CRLs.
///
/// With CRLs, revocation is checked for every certificate of the chain below
/// the trust anchor, and a certificate whose revocation status no CRL covers is
/// refused (rustls' defaults: fail closed). A CRL past its `nextUpdate` is still
/// used: refusing it would cut every device off the day the CA forgets to
/// re-sign it, and a stale CRL still lists every revocation it had.
#[derive(Clone, Debug)]
pub struct CaTrust {
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

impl CaTrust {
    /// Trusts these DER certificates as anchors.
    ///
    /// # Errors
    /// [`Error::Missing`] if `certs` is empty, [`Error::BadCertificate`] if one
    /// cannot be used as a trust anchor.
    pub fn from_certificates(certs: Vec<CertificateDer<'static>>) -> Result<Self, Error> {
        if certs.is_empty() {
            return Err(Error::Missing {
                what: "CERTIFICATE",
            });
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| Error::BadCertificate {
                what: "CA certificate",
                reason: e.to_string(),
            })?;
        }
        Ok(Self {
            roots: Arc::new(roots),
            crls: Vec::new(),
        })
    }

    /// Trusts every `CERTIFICATE` in a PEM bundle.
    ///
    /// # Errors
    /// As [`CaTrust::from_certificates`], plus [`Error::Pem`].
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        Self::from_certificates(pem::certificates(pem, "CA certificate")?)
    }

    /// Trusts every `CERTIFICATE` in a PEM file (e.g. the `ca.pem` of a device bundle).
    ///
    /// # Errors
    /// As [`CaTrust::from_pem`], plus [`Error::Read`]; content errors come wrapped
    /// in [`Error::InFile`].
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        pem::from_file(path.as_ref(), "CA certificate", Self::from_pem)
    }

    /// Adds DER CRLs (appends to any already given).
    ///
    /// # Errors
    /// [`Error::BadCrl`] if one does not parse.
    pub fn with_crls(
        mut self,
        crls: impl IntoIterator<Item = CertificateRevocationListDer<'static>>,
    ) -> Result<Self, Error> {
        for crl in crls {
            parse_crl(&crl)?;
            self.crls.push(crl);
        }
        Ok(self)
    }

    /// Adds every `X509 CRL` of a PEM input.
    ///
    /// # Errors
    /// As [`CaTrust::with_crls`], plus [`Error::Pem`] and [`Error::Missing`].
    pub fn with_crls_pem(self, pem: &[u8]) -> Result<Self, Error> {
        let crls = pem::crls(pem)?;
        self.with_crls(crls)
    }

    /// Adds every `X509 CRL` of a PEM file.
    ///
    /// # Errors
    /// As [`CaTrust::with_crls_pem`], plus [`Error::Read`] / [`Error::InFile`].
    pub fn with_crls_pem_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let crls = pem::from_file(path.as_ref(), "CRL", pem::crls)?;
        self.with_crls(crls)
    }

    /// The trust anchors.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.roots)
    }

    /// The CRLs, in the order given.
    pub fn crls(&self) -> &[CertificateRevocationListDer<'static>] {
        &self.crls
    }

    /// The CRLs parsed for webpki (they were checked to parse when added).
    pub(crate) fn parsed_crls(&self) -> Result<Vec<webpki::CertRevocationList<'static>>, Error> {
        self.crls.iter().map(parse_crl).collect()
    }
}

fn parse_crl(
    crl: &CertificateRevocationListDer<'_>,
) -> Result<webpki::CertRevocationList<'static>, Error> {
    webpki::OwnedCertRevocationList::from_der(crl.as_ref())
        .map(webpki::CertRevocationList::from)
        .map_err(|e| Error::BadCrl {
            reason: e.to_string(),
        })
}

/// Whether a pin policy also checks the leaf certificate's validity period.
///
/// `Enforce` is the default. For [`TrustPolicy::Pin`] it matters: the
/// fingerprint covers the certificate's dates, so an expired pinned certificate
/// whose key leaked later cannot be replayed. For [`TrustPolicy::Spki`] it is
/// hygiene only (whoever holds the pinned key can mint a certificate with any
/// dates) but it keeps the refusal reasons the same as in CA mode.
///
/// `Ignore` is for devices without a trustworthy clock (an ESP32 before its
/// first NTP sync, a gateway with a dead RTC battery): spell it out in the
/// device's configuration, it is never chosen implicitly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// Refuse a leaf that is expired or not yet valid.
    #[default]
    Enforce,
    /// Do not look at the leaf's validity period.
    Ignore,
}

/// How a client decides whether to trust the server.
///
/// Build the [`rustls::ClientConfig`] with [`crate::ClientTls::new`]. Every
/// policy verifies the TLS handshake signature with the presented leaf's key;
/// pinning replaces chain validation, never the proof of key possession.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TrustPolicy {
    /// Chain to one of these CAs (with their CRLs), and the leaf must name the
    /// server (DNS or IP SAN). The default.
    Ca(CaTrust),
    /// The leaf certificate's SHA-256 fingerprint must equal this one. No chain,
    /// no hostname check: the pin names one exact certificate.
    Pin {
        /// The pinned certificate's fingerprint.
        fingerprint: CertFingerprint,
        /// Whether the leaf's validity period is checked.
        expiry: Expiry,
    },
    /// The leaf's public key must match one of these SPKI pins. No chain, no
    /// hostname check. Pins are matched against the leaf only: without chain
    /// validation, an intermediate a server sends proves nothing.
    Spki {
        /// Current and backup key pins.
        pins: PinSet,
        /// Whether the leaf's validity period is checked.
        expiry: Expiry,
    },
    /// Everything [`TrustPolicy::Ca`] checks, and at least one pin must match a
    /// certificate of the *validated* chain (leaf, intermediates or anchor);
    /// extra certificates the server sent that are not on the path never count.
    CaSpki {
        /// The CA trust.
        ca: CaTrust,
        /// Pins, of which one must be on the validated path.
        pins: PinSet,
    },
}

impl TrustPolicy {
    /// The policy's kind, as written in configuration files.
    pub fn kind(&self) -> PolicyKind {
        match self {
            TrustPolicy::Ca(_) => PolicyKind::Ca,
            TrustPolicy::Pin { .. } => PolicyKind::Pin,
            TrustPolicy::Spki { .. } => PolicyKind::Spki,
            TrustPolicy::CaSpki { .. } => PolicyKind::CaSpki,
        }
    }

    /// What is weaker than it should be in this policy (for the CLI to show).
    pub fn warnings(&self) -> Vec<PolicyWarning> {
        let mut warnings = Vec::new();
        match self {
            TrustPolicy::Ca(_) => {}
            TrustPolicy::Pin { expiry, .. } => {
                if *expiry == Expiry::Ignore {
                    warnings.push(PolicyWarning::ExpiryIgnored);
                }
            }
            TrustPolicy::Spki { pins, expiry } => {
                if pins.has_no_backup() {
                    warnings.push(PolicyWarning::SinglePin);
                }
                if *expiry == Expiry::Ignore {
                    warnings.push(PolicyWarning::ExpiryIgnored);
                }
            }
            TrustPolicy::CaSpki { pins, .. } => {
                if pins.has_no_backup() {
                    warnings.push(PolicyWarning::SinglePin);
                }
            }
        }
        warnings
    }
}

/// A weakness of a configured policy that is allowed but worth telling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PolicyWarning {
    /// Only one SPKI pin: replacing that key strands every device.
    SinglePin,
    /// The leaf's validity period is not checked.
    ExpiryIgnored,
}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyWarning::SinglePin => {
                "only one SPKI pin is configured: pin a backup key too, or replacing the \
                 server key will strand every device"
            }
            PolicyWarning::ExpiryIgnored => {
                "the server certificate's validity period is not checked (expiry = ignore)"
            }
        })
    }
}

/// The name of a policy in configuration: `ca` (the default), `pin`, `spki`, `ca+spki`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// `ca`
    #[default]
    Ca,
    /// `pin`
    Pin,
    /// `spki`
    Spki,
    /// `ca+spki`
    CaSpki,
}

impl PolicyKind {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Ca => "ca",
            PolicyKind::Pin => "pin",
            PolicyKind::Spki => "spki",
            PolicyKind::CaSpki => "ca+spki",
        }
    }
}

impl FromStr for PolicyKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ca" => Ok(PolicyKind::Ca),
            "pin" => Ok(PolicyKind::Pin),
            "spki" => Ok(PolicyKind::Spki),
            "ca+spki" => Ok(PolicyKind::CaSpki),
            _ => Err(Error::UnknownPolicy(s.to_owned())),
        }
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pin::SpkiPin;

    #[test]
    fn policy_kind_round_trip() {
        assert_eq!(PolicyKind::default(), PolicyKind::Ca);
        for kind in [
            PolicyKind::Ca,
            PolicyKind::Pin,
            PolicyKind::Spki,
            PolicyKind::CaSpki,
        ] {
            assert_eq!(kind.to_string().parse::<PolicyKind>().unwrap(), kind);
        }
        assert_eq!("CA+SPKI".parse::<PolicyKind>().unwrap(), PolicyKind::CaSpki);
        assert!("none".parse::<PolicyKind>().is_err());
    }

    #[test]
    fn single_pin_warns() {
        let one = PinSet::new([SpkiPin::of_spki(b"a")]).unwrap();
        let two = PinSet::new([SpkiPin::of_spki(b"a"), SpkiPin::of_spki(b"b")]).unwrap();
        let spki = |pins, expiry| TrustPolicy::Spki { pins, expiry };
        assert_eq!(
            spki(one.clone(), Expiry::Enforce).warnings(),
            [PolicyWarning::SinglePin]
        );
        assert!(spki(two.clone(), Expiry::Enforce).warnings().is_empty());
        assert_eq!(
            spki(two, Expiry::Ignore).warnings(),
            [PolicyWarning::ExpiryIgnored]
        );
        let pin = TrustPolicy::Pin {
            fingerprint: CertFingerprint::of_certificate(b"x"),
            expiry: Expiry::Enforce,
        };
        assert!(pin.warnings().is_empty());
        assert_eq!(pin.kind(), PolicyKind::Pin);
    }

    #[test]
    fn ca_trust_rejects_empty_and_garbage() {
        assert!(matches!(CaTrust::from_pem(b""), Err(Error::Missing { .. })));
        let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            CaTrust::from_pem(garbage),
            Err(Error::BadCertificate { .. })
        ));
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        assert!(matches!(
            CaTrust::from_pem_file(missing),
            Err(Error::Read { .. })
        ));
    }
}
