//! Why a handshake was refused, as data, and how the caller gets it back.
//!
//! rustls reports a verifier's verdict as a [`rustls::Error`], and TLS
//! libraries above it (tokio-rustls, MQTT clients) wrap that again, sometimes
//! into a string. Two ways back to the exact reason, usable together:
//!
//! 1. **In the error value.** Reasons rustls has a variant for (unknown CA,
//!    name mismatch, expired, revoked, ...) stay rustls' own
//!    [`rustls::CertificateError`] variants, so rustls sends the right alert;
//!    reasons it has no variant for (pin mismatches, a bad handshake
//!    signature) travel as
//!    `InvalidCertificate(CertificateError::Other(OtherError(Arc<Rejection>)))`.
//!    [`Rejection::from_rustls`] maps either form, and [`Rejection::find`]
//!    walks any `std::error::Error` chain (looking inside `io::Error`s) for it.
//! 2. **In a shared log.** The verifier also records the last rejection and
//!    the last certificate the server presented in a [`VerifyLog`] that the
//!    caller keeps ([`crate::ClientTls::log`]). This survives libraries that
//!    flatten errors into strings. It is "last", so it describes a single
//!    connection only when one connection at a time uses the configuration
//!    (as `iotsec device check` does).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::{AlertDescription, CertificateError, OtherError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::pin::{CertFingerprint, SpkiPin};

/// Why a TLS peer was refused, or why it refused us.
///
/// Getting it back after a failed handshake: [`Rejection::find`] on the error
/// (it looks through `io::Error`, tokio-rustls and MQTT client wrappers for
/// the [`rustls::Error`]), or [`crate::ClientTls::last_rejection`] when a
/// library flattened the error into a string. Pin mismatches and bad
/// handshake signatures travel inside rustls as
/// `InvalidCertificate(CertificateError::Other(OtherError(Arc<Rejection>)))`;
/// everything rustls has a variant for stays rustls' own variant, so the
/// right TLS alert is sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// `pin` policy: the server's leaf certificate is not the pinned one.
    #[error("server certificate fingerprint mismatch: expected {expected}, seen {seen}")]
    PinMismatch {
        /// The pinned fingerprint.
        expected: CertFingerprint,
        /// The fingerprint of the certificate the server presented.
        seen: CertFingerprint,
    },
    /// `spki` / `ca+spki` policy: no pin matched. For `spki`, `seen` is the
    /// leaf's pin; for `ca+spki`, the pins of every certificate on the
    /// validated chain(s).
    #[error(
        "no SPKI pin matched: expected one of {}, seen {}",
        Pins(expected),
        Pins(seen)
    )]
    SpkiMismatch {
        /// The configured pins.
        expected: Vec<SpkiPin>,
        /// The pins of what the server presented.
        seen: Vec<SpkiPin>,
    },
    /// The chain does not lead to a trusted CA (also: a self-signed impostor).
    #[error("server certificate is not issued by a trusted CA")]
    UnknownCa,
    /// The leaf does not name the host we connected to.
    #[error("server certificate is not valid for {expected} (it names {})", presented.join(", "))]
    NameMismatch {
        /// The name we connected to.
        expected: String,
        /// The DNS / IP names in the certificate.
        presented: Vec<String>,
    },
    /// A certificate's `notAfter` is in the past.
    #[error("certificate expired at {} (now {})", When(*not_after), When(*now))]
    Expired {
        /// Verification time, seconds since the Unix epoch.
        now: u64,
        /// The certificate's `notAfter`, seconds since the Unix epoch.
        not_after: u64,
    },
    /// A certificate's `notBefore` is in the future (often: a device clock not set yet).
    #[error("certificate not valid before {} (now {})", When(*not_before), When(*now))]
    NotYetValid {
        /// Verification time, seconds since the Unix epoch.
        now: u64,
        /// The certificate's `notBefore`, seconds since the Unix epoch.
        not_before: u64,
    },
    /// A certificate of the chain is on a CRL.
    #[error("certificate has been revoked")]
    Revoked,
    /// CRLs were configured but none covers a certificate of the chain (or one is expired).
    #[error("certificate revocation status is unknown: no usable CRL covers it")]
    RevocationUnknown,
    /// A certificate's signature by its issuer does not verify.
    #[error("a certificate signature does not verify")]
    BadSignature,
    /// The handshake signature does not verify with the presented leaf's key:
    /// the peer does not hold the private key of the certificate it presented.
    #[error("TLS handshake signature does not verify with the certificate's key")]
    BadHandshakeSignature,
    /// The peer aborted with a certificate alert: for a device, the broker
    /// refused our client certificate (unknown CA, revoked, expired, missing).
    #[error("peer refused our certificate (TLS alert {alert})")]
    CertificateRefused {
        /// The alert's RFC 8446 name, e.g. `certificate_revoked`.
        alert: String,
    },
    /// The peer presented no certificate.
    #[error("peer presented no certificate")]
    NoCertificate,
    /// Another certificate problem (malformed, wrong key usage, unsupported algorithm).
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// rustls' description.
        reason: String,
    },
    /// Any other TLS failure.
    #[error("TLS handshake failed: {reason}")]
    Handshake {
        /// rustls' description.
        reason: String,
    },
}

impl Rejection {
    /// Classifies a rustls error.
    pub fn from_rustls(error: &rustls::Error) -> Rejection {
        match error {
            rustls::Error::InvalidCertificate(cert) => Self::from_certificate_error(cert),
            rustls::Error::Other(other) => {
                downcast(other).unwrap_or_else(|| Rejection::Handshake {
                    reason: error.to_string(),
                })
            }
            rustls::Error::NoCertificatesPresented => Rejection::NoCertificate,
            rustls::Error::AlertReceived(alert) => match certificate_alert(*alert) {
                Some(name) => Rejection::CertificateRefused {
                    alert: name.to_owned(),
                },
                None => Rejection::Handshake {
                    reason: error.to_string(),
                },
            },
            other => Rejection::Handshake {
                reason: other.to_string(),
            },
        }
    }

    fn from_certificate_error(error: &CertificateError) -> Rejection {
        match error {
            CertificateError::Other(other) => {
                downcast(other).unwrap_or_else(|| Rejection::InvalidCertificate {
                    reason: error.to_string(),
                })
            }
            CertificateError::UnknownIssuer => Rejection::UnknownCa,
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => Rejection::NameMismatch {
                expected: expected.to_str().into_owned(),
                presented: presented.clone(),
            },
            CertificateError::NotValidForName => Rejection::NameMismatch {
                expected: "the server name".to_owned(),
                presented: Vec::new(),
            },
            CertificateError::ExpiredContext { time, not_after } => Rejection::Expired {
                now: time.as_secs(),
                not_after: not_after.as_secs(),
            },
            CertificateError::NotValidYetContext { time, not_before } => Rejection::NotYetValid {
                now: time.as_secs(),
                not_before: not_before.as_secs(),
            },
            CertificateError::Revoked => Rejection::Revoked,
            CertificateError::UnknownRevocationStatus
            | CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => Rejection::RevocationUnknown,
            CertificateError::BadSignature => Rejection::BadSignature,
            other => Rejection::InvalidCertificate {
                reason: other.to_string(),
            },
        }
    }

    /// Finds the rejection in an error chain: a [`Rejection`] itself, a
    /// [`rustls::Error`], or either inside an [`std::io::Error`] (which is how
    /// tokio-rustls reports handshake failures). `None` if the chain holds no
    /// TLS error (e.g. connection refused).
    pub fn find(error: &(dyn std::error::Error + 'static)) -> Option<Rejection> {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(rejection) = error.downcast_ref::<Rejection>() {
                return Some(rejection.clone());
            }
            if let Some(rustls) = error.downcast_ref::<rustls::Error>() {
                return Some(Rejection::from_rustls(rustls));
            }
            // `io::Error::source` skips the wrapped error itself; look inside.
            if let Some(inner) = error
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                && let Some(found) = Rejection::find(inner)
            {
                return Some(found);
            }
            next = error.source();
        }
        None
    }

    /// The rustls error a verifier returns for this rejection (the typed
    /// `Other` form, see the module documentation).
    pub(crate) fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

fn downcast(other: &OtherError) -> Option<Rejection> {
    other.0.downcast_ref::<Rejection>().cloned()
}

/// RFC 8446 §6.2 names of the alerts a peer sends when it refuses a certificate.
///
/// `decrypt_error` is included because that is what OpenSSL (so Mosquitto)
/// and rustls send when a client certificate's signature does not verify,
/// e.g. a certificate from a different CA that has the same name as the
/// trusted one; a failed `Finished` check would send it too, but that only
/// happens under active tampering, which is a refusal all the same.
fn certificate_alert(alert: AlertDescription) -> Option<&'static str> {
    Some(match alert {
        AlertDescription::DecryptError => "decrypt_error",
        AlertDescription::BadCertificate => "bad_certificate",
        AlertDescription::UnsupportedCertificate => "unsupported_certificate",
        AlertDescription::CertificateRevoked => "certificate_revoked",
        AlertDescription::CertificateExpired => "certificate_expired",
        AlertDescription::CertificateUnknown => "certificate_unknown",
        AlertDescription::UnknownCA => "unknown_ca",
        AlertDescription::CertificateRequired => "certificate_required",
        AlertDescription::AccessDenied => "access_denied",
        _ => return None,
    })
}

/// A Unix time shown as RFC 3339 (UTC).
struct When(u64);

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formatted = i64::try_from(self.0)
            .ok()
            .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
            .and_then(|t| t.format(&Rfc3339).ok());
        match formatted {
            Some(text) => f.write_str(&text),
            None => write!(f, "{} s after the Unix epoch", self.0),
        }
    }
}

/// A list of pins, comma separated.
struct Pins<'a>(&'a [SpkiPin]);

impl fmt::Display for Pins<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(none)");
        }
        for (i, pin) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{pin}")?;
        }
        Ok(())
    }
}

/// What the server presented in the last handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// SHA-256 fingerprint of the leaf certificate.
    pub fingerprint: CertFingerprint,
    /// SPKI pin of the leaf's key (`None` if the certificate did not parse).
    pub spki: Option<SpkiPin>,
}

/// The verifier's record of the last handshake it judged: what the server
/// presented, and why it was refused. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct VerifyLog(Arc<Mutex<LogEntry>>);

#[derive(Debug, Default)]
struct LogEntry {
    peer: Option<PeerCertificate>,
    rejection: Option<Rejection>,
}

impl VerifyLog {
    /// Why the last handshake was refused by our side, if it was.
    pub fn last_rejection(&self) -> Option<Rejection> {
        self.entry().rejection.clone()
    }

    /// The leaf the server presented in the last handshake.
    pub fn last_peer(&self) -> Option<PeerCertificate> {
        self.entry().peer
    }

    /// Forgets everything.
    pub fn clear(&self) {
        *self.entry() = LogEntry::default();
    }

    /// A new handshake: remember its leaf, forget the previous outcome.
    pub(crate) fn begin(&self, leaf_der: &[u8]) {
        let peer = PeerCertificate {
            fingerprint: CertFingerprint::of_certificate(leaf_der),
            spki: SpkiPin::of_certificate(leaf_der).ok(),
        };
        *self.entry() = LogEntry {
            peer: Some(peer),
            rejection: None,
        };
    }

    pub(crate) fn reject(&self, rejection: Rejection) {
        self.entry().rejection = Some(rejection);
    }

    fn entry(&self) -> std::sync::MutexGuard<'_, LogEntry> {
        // The entry is plain data, always consistent: a panic elsewhere while
        // holding the lock cannot leave it half-written, so poisoning is ignored.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_rejection_survives_rustls_and_io_wrapping() {
        let rejection = Rejection::PinMismatch {
            expected: CertFingerprint::of_certificate(b"a"),
            seen: CertFingerprint::of_certificate(b"b"),
        };
        let rustls = rejection.clone().into_rustls();
        assert_eq!(Rejection::from_rustls(&rustls), rejection);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls);
        assert_eq!(Rejection::find(&io), Some(rejection));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Rejection::find(&refused), None);
    }

    #[test]
    fn standard_rustls_errors_map() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(Rejection::from_rustls(&unknown), Rejection::UnknownCa);
        let alert = rustls::Error::AlertReceived(AlertDescription::CertificateRevoked);
        assert_eq!(
            Rejection::from_rustls(&alert),
            Rejection::CertificateRefused {
                alert: "certificate_revoked".into()
            }
        );
        let expired = Rejection::Expired {
            now: 86_400,
            not_after: 0,
        };
        assert_eq!(
            expired.to_string(),
            "certificate expired at 1970-01-01T00:00:00Z (now 1970-01-02T00:00:00Z)"
        );
    }
}
