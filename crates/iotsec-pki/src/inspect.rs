//! Certificate and CRL inspection: what `pki inspect` prints and what the audit checks.
//!
//! Everything here reads bytes it is given and returns data; warnings carry stable codes so the
//! audit can map them to OWASP IoT categories.

use std::net::IpAddr;

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{
    CertificateRevocationList, FromDer, GeneralName, SubjectPublicKeyInfo, X509Certificate,
};

use crate::fingerprint::{Fingerprint, SpkiPin};

/// Days before notAfter from which a certificate counts as expiring soon.
pub const EXPIRY_WARN_DAYS: i64 = 30;

/// A problem found in a certificate or CRL. `code` is stable; `message` is for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Stable identifier, e.g. `PKI-CERT-EXPIRED`.
    pub code: &'static str,
    /// What is wrong, in one line.
    pub message: String,
}

impl Warning {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Warning {
            code,
            message: message.into(),
        }
    }
}

/// The public key of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// `RSA`, `EC`, `Ed25519`, `Ed448` or the algorithm OID.
    pub kind: String,
    /// Size in bits (modulus for RSA, field for EC).
    pub bits: u32,
    /// Curve name for EC keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curve: Option<String>,
}

/// Everything `pki inspect` shows about one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertReport {
    /// Subject DN (RFC 4514 style).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, colon-separated hex as openssl prints it.
    pub serial: String,
    /// notBefore.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Subject alternative names (`DNS:host`, `IP:1.2.3.4`, ...).
    pub sans: Vec<String>,
    /// Public key.
    pub key: KeyInfo,
    /// Signature algorithm name.
    pub signature_algorithm: String,
    /// Extended key usages (`serverAuth`, `clientAuth`, ...).
    pub extended_key_usage: Vec<String>,
    /// basicConstraints cA flag, if the extension is present.
    pub ca: Option<bool>,
    /// Subject == issuer and the signature verifies with the certificate's own key.
    pub self_signed: bool,
    /// `AA:BB:..` SHA-256 fingerprint.
    pub fingerprint: String,
    /// `sha256/...` SPKI pin.
    pub spki_pin: String,
    /// Problems found.
    pub warnings: Vec<Warning>,
}

/// Why bytes could not be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn sig_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "rsassaPss",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "ED25519",
        "1.3.101.113" => "ED448",
        other => return other.to_owned(),
    }
    .to_owned()
}

/// True for signature algorithms that use SHA-1 or MD5 (collisions are practical).
pub fn is_weak_signature(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("sha1") || n.contains("md5")
}

fn curve_name(oid: &str) -> (&'static str, u32) {
    match oid {
        "1.2.840.10045.3.1.7" => ("P-256", 256),
        "1.3.132.0.34" => ("P-384", 384),
        "1.3.132.0.35" => ("P-521", 521),
        "1.3.132.0.10" => ("secp256k1", 256),
        "1.2.840.10045.3.1.1" => ("P-192", 192),
        "1.3.132.0.33" => ("P-224", 224),
        _ => ("unknown", 0),
    }
}

fn bit_len(be: &[u8]) -> u32 {
    let trimmed: &[u8] = match be.iter().position(|&b| b != 0) {
        Some(i) => &be[i..],
        None => &[],
    };
    match trimmed.first() {
        // ≤ 8 * len fits u32 for any real key; saturate for absurd input.
        Some(&first) => u32::try_from(trimmed.len())
            .unwrap_or(u32::MAX / 8)
            .saturating_mul(8)
            .saturating_sub(first.leading_zeros()),
        None => 0,
    }
}

fn key_info(spki: &SubjectPublicKeyInfo<'_>) -> KeyInfo {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.2.840.113549.1.1.1" => {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => bit_len(rsa.modulus),
                _ => 0,
            };
            KeyInfo {
                kind: "RSA".into(),
                bits,
                curve: None,
            }
        }
        "1.2.840.10045.2.1" => {
            let curve_oid = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let (name, bits) = curve_name(&curve_oid);
            KeyInfo {
                kind: "EC".into(),
                bits,
                curve: Some(if name == "unknown" {
                    curve_oid
                } else {
                    name.into()
                }),
            }
        }
        "1.3.101.112" => KeyInfo {
            kind: "Ed25519".into(),
            bits: 256,
            curve: None,
        },
        "1.3.101.113" => KeyInfo {
            kind: "Ed448".into(),
            bits: 456,
            curve: None,
        },
        other => KeyInfo {
            kind: other.into(),
            bits: 0,
            curve: None,
        },
    }
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::IPAddress(b) => match b.len() {
            4 => {
                let a: [u8; 4] = [b[0], b[1], b[2], b[3]];
                format!("IP:{}", IpAddr::from(a))
            }
            16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                format!("IP:{}", IpAddr::from(a))
            }
            _ => format!("IP:<{} bytes>", b.len()),
        },
        other => format!("{other}"),
    }
}

/// Inspects one DER certificate at time `now`.
pub fn certificate(der: &[u8], now: OffsetDateTime) -> Result<CertReport, ParseError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| ParseError(format!("not X.509: {e}")))?;
    let mut warnings = Vec::new();

    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if not_after <= now {
        warnings.push(Warning::new(
            "PKI-CERT-EXPIRED",
            format!("expired on {}", not_after.date()),
        ));
    } else if not_after - now <= time::Duration::days(EXPIRY_WARN_DAYS) {
        warnings.push(Warning::new(
            "PKI-CERT-EXPIRING",
            format!(
                "expires in {} days ({})",
                (not_after - now).whole_days(),
                not_after.date()
            ),
        ));
    }
    if not_before > now {
        warnings.push(Warning::new(
            "PKI-CERT-NOT-YET-VALID",
            format!("not valid before {not_before}"),
        ));
    }

    let key = key_info(cert.public_key());
    if key.kind == "RSA" && key.bits < 2048 {
        warnings.push(Warning::new(
            "PKI-WEAK-KEY",
            format!("RSA key of {} bits (< 2048)", key.bits),
        ));
    }
    if key.kind == "EC" && key.bits < 256 {
        warnings.push(Warning::new(
            "PKI-WEAK-KEY",
            format!("EC key of {} bits (< 256)", key.bits),
        ));
    }
    let signature_algorithm = sig_name(&cert.signature_algorithm.algorithm.to_id_string());
    if is_weak_signature(&signature_algorithm) {
        warnings.push(Warning::new(
            "PKI-WEAK-SIGNATURE",
            format!("signed with {signature_algorithm}"),
        ));
    }

    let sans: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext.value.general_names.iter().map(general_name).collect(),
        _ => Vec::new(),
    };
    let mut extended_key_usage = Vec::new();
    if let Ok(Some(eku)) = cert.extended_key_usage() {
        let v = eku.value;
        for (set, name) in [
            (v.any, "any"),
            (v.server_auth, "serverAuth"),
            (v.client_auth, "clientAuth"),
            (v.code_signing, "codeSigning"),
            (v.email_protection, "emailProtection"),
            (v.time_stamping, "timeStamping"),
            (v.ocsp_signing, "OCSPSigning"),
        ] {
            if set {
                extended_key_usage.push(name.to_owned());
            }
        }
    }
    let ca = match cert.basic_constraints() {
        Ok(Some(bc)) => Some(bc.value.ca),
        _ => None,
    };
    let is_server = extended_key_usage.iter().any(|e| e == "serverAuth");
    let is_leaf_eku = is_server || extended_key_usage.iter().any(|e| e == "clientAuth");
    if is_server && sans.is_empty() {
        warnings.push(Warning::new(
            "PKI-NO-SAN",
            "server certificate without subjectAltName (rustls and modern clients reject CN-only names)",
        ));
    }
    if ca == Some(true) && is_leaf_eku {
        warnings.push(Warning::new(
            "PKI-CA-LEAF",
            "CA:TRUE on a certificate used as a TLS leaf (it can sign other certificates)",
        ));
    }
    let self_signed = cert.subject() == cert.issuer() && cert.verify_signature(None).is_ok();

    Ok(CertReport {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before,
        not_after,
        sans,
        key,
        signature_algorithm,
        extended_key_usage,
        ca,
        self_signed,
        fingerprint: Fingerprint::of_der(der).colon_hex(),
        spki_pin: SpkiPin::of_spki_der(cert.public_key().raw).to_string(),
        warnings,
    })
}

/// What `pki inspect` and the audit show about a CRL.
#[derive(Debug, Clone, Serialize)]
pub struct CrlReport {
    /// Issuer DN.
    pub issuer: String,
    /// thisUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    /// nextUpdate, if present.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    /// CRL number, decimal.
    pub number: Option<String>,
    /// Revoked serials, colon hex.
    pub revoked: Vec<String>,
    /// Problems found.
    pub warnings: Vec<Warning>,
}

/// Inspects one DER CRL at time `now`; `warn_days` is how close to nextUpdate counts as near.
pub fn crl(der: &[u8], now: OffsetDateTime, warn_days: i64) -> Result<CrlReport, ParseError> {
    let (_, crl) = CertificateRevocationList::from_der(der)
        .map_err(|e| ParseError(format!("not a CRL: {e}")))?;
    let next_update = crl.next_update().map(|t| t.to_datetime());
    let mut warnings = Vec::new();
    match next_update {
        Some(t) if t <= now => warnings.push(Warning::new(
            "PKI-CRL-EXPIRED",
            format!("CRL expired at {t}: Mosquitto refuses every client certificate until it is re-signed (`iotsec pki crl`)"),
        )),
        Some(t) if t - now <= time::Duration::days(warn_days) => warnings.push(Warning::new(
            "PKI-CRL-EXPIRING",
            format!("CRL nextUpdate in {} hours ({t}): re-sign it with `iotsec pki crl` before then or Mosquitto refuses every client", (t - now).whole_hours()),
        )),
        Some(_) => {}
        None => warnings.push(Warning::new("PKI-CRL-NO-NEXT-UPDATE", "CRL without nextUpdate")),
    }
    Ok(CrlReport {
        issuer: crl.issuer().to_string(),
        this_update: crl.last_update().to_datetime(),
        next_update,
        number: crl.crl_number().map(|n| n.to_string()),
        revoked: crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial_as_string())
            .collect(),
        warnings,
    })
}
