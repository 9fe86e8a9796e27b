//! Certificate inspection: what an operator needs to know about a server's chain (subject,
//! issuer, validity, self-signed, key type and size, signature algorithm, subjectAltName match).
//! Pure: takes DER bytes, the name the scanner used, and the current time.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

/// Days before expiry from which a certificate counts as "expiring".
pub const EXPIRING_DAYS: i64 = 30;

/// One certificate of a chain, as the scanner reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// Subject distinguished name.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// Whole days until `not_after` (negative once expired).
    pub days_left: i64,
    /// Validity state at scan time.
    pub validity: Validity,
    /// Subject equals issuer and the certificate verifies under its own key.
    pub self_signed: bool,
    /// Basic constraints CA flag.
    pub is_ca: bool,
    /// Public key.
    pub key: KeyInfo,
    /// Signature algorithm (e.g. `ecdsa-with-SHA256`).
    pub signature_algorithm: String,
    /// subjectAltName entries (`DNS:x`, `IP:y`).
    pub san: Vec<String>,
}

/// Validity of a certificate at scan time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    /// Valid, more than [`EXPIRING_DAYS`] left.
    Valid,
    /// Valid, expires within [`EXPIRING_DAYS`].
    Expiring,
    /// Past `not_after`.
    Expired,
    /// Before `not_before`.
    NotYetValid,
}

/// Public key summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// `RSA`, `EC`, `Ed25519`, `Ed448` or the algorithm OID.
    pub algorithm: String,
    /// Key size in bits (modulus for RSA, field for EC), when known.
    pub bits: Option<u32>,
    /// Named curve for EC keys.
    pub curve: Option<String>,
}

impl KeyInfo {
    /// RSA below 2048 bits, EC below 256 bits.
    pub fn is_weak(&self) -> bool {
        match (self.algorithm.as_str(), self.bits) {
            ("RSA", Some(bits)) => bits < 2048,
            ("EC", Some(bits)) => bits < 256,
            _ => false,
        }
    }

    /// `EC P-256`, `RSA 2048`.
    pub fn describe(&self) -> String {
        match (&self.curve, self.bits) {
            (Some(curve), _) => format!("{} {curve}", self.algorithm),
            (None, Some(bits)) => format!("{} {bits}", self.algorithm),
            (None, None) => self.algorithm.clone(),
        }
    }
}

impl CertInfo {
    /// True when the signature uses MD2, MD5 or SHA-1.
    pub fn has_weak_signature(&self) -> bool {
        let s = self.signature_algorithm.to_ascii_lowercase();
        s.contains("md5") || s.contains("md2") || s.contains("sha1")
    }
}

/// A certificate that does not parse as X.509.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate does not parse as X.509: {0}")]
pub struct BadCertificate(pub String);

/// Inspects one DER certificate at `now` (Unix seconds).
pub fn inspect(der: &[u8], now: i64) -> Result<CertInfo, BadCertificate> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| BadCertificate(e.to_string()))?;
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let days_left = (not_after - now).div_euclid(86_400);
    let validity = if now < not_before {
        Validity::NotYetValid
    } else if now > not_after {
        Validity::Expired
    } else if days_left < EXPIRING_DAYS {
        Validity::Expiring
    } else {
        Validity::Valid
    };
    let self_signed =
        cert.subject().as_raw() == cert.issuer().as_raw() && cert.verify_signature(None).is_ok();
    let mut san = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => san.push(format!("DNS:{d}")),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        san.push(format!("IP:{ip}"));
                    }
                }
                GeneralName::URI(u) => san.push(format!("URI:{u}")),
                GeneralName::RFC822Name(m) => san.push(format!("email:{m}")),
                _ => {}
            }
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_before: rfc3339(not_before),
        not_after: rfc3339(not_after),
        days_left,
        validity,
        self_signed,
        is_ca: cert.is_ca(),
        key: key_info(&cert),
        signature_algorithm: signature_name(&cert.signature_algorithm.algorithm.to_id_string()),
        san,
    })
}

/// Does the certificate name `host` (an IP address or DNS name)? RFC 6125 §6.4: DNS names
/// compare case-insensitively, a leading `*.` matches exactly one label; IP addresses compare
/// against IP SAN entries only.
pub fn names_host(info: &CertInfo, host: &str) -> bool {
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return info
            .san
            .iter()
            .any(|s| s.strip_prefix("IP:") == Some(&ip.to_string()));
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    info.san
        .iter()
        .filter_map(|s| s.strip_prefix("DNS:"))
        .any(|pattern| {
            let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
            match pattern.strip_prefix("*.") {
                Some(suffix) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
                None => pattern == host,
            }
        })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

fn key_info(cert: &X509Certificate<'_>) -> KeyInfo {
    let spki = cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => KeyInfo {
            algorithm: "RSA".into(),
            bits: match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => u32::try_from(rsa.key_size()).ok(),
                _ => None,
            },
            curve: None,
        },
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let (name, bits) = match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => (Some("P-256".to_owned()), Some(256)),
                Some("1.3.132.0.34") => (Some("P-384".to_owned()), Some(384)),
                Some("1.3.132.0.35") => (Some("P-521".to_owned()), Some(521)),
                Some("1.3.132.0.10") => (Some("secp256k1".to_owned()), Some(256)),
                Some("1.2.840.10045.3.1.1") => (Some("P-192".to_owned()), Some(192)),
                Some("1.3.132.0.33") => (Some("P-224".to_owned()), Some(224)),
                other => (other.map(str::to_owned), None),
            };
            KeyInfo {
                algorithm: "EC".into(),
                bits,
                curve: name,
            }
        }
        "1.3.101.112" => KeyInfo {
            algorithm: "Ed25519".into(),
            bits: Some(256),
            curve: None,
        },
        "1.3.101.113" => KeyInfo {
            algorithm: "Ed448".into(),
            bits: Some(456),
            curve: None,
        },
        _ => KeyInfo {
            algorithm: oid,
            bits: None,
            curve: None,
        },
    }
}

fn signature_name(oid: &str) -> String {
    let name = match oid {
        "1.2.840.113549.1.1.2" => "md2WithRSAEncryption",
        "1.2.840.113549.1.1.4" => "md5WithRSAEncryption",
        "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption",
        "1.2.840.113549.1.1.12" => "sha384WithRSAEncryption",
        "1.2.840.113549.1.1.13" => "sha512WithRSAEncryption",
        "1.2.840.10045.4.1" => "ecdsa-with-SHA1",
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256",
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384",
        "1.2.840.10045.4.3.4" => "ecdsa-with-SHA512",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        other => return other.to_owned(),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_with_san(san: &[&str]) -> CertInfo {
        CertInfo {
            subject: String::new(),
            issuer: String::new(),
            serial: String::new(),
            not_before: String::new(),
            not_after: String::new(),
            days_left: 0,
            validity: Validity::Valid,
            self_signed: false,
            is_ca: false,
            key: KeyInfo {
                algorithm: "EC".into(),
                bits: Some(256),
                curve: None,
            },
            signature_algorithm: "ecdsa-with-SHA256".into(),
            san: san.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn host_matching() {
        let info = info_with_san(&["DNS:broker.example", "DNS:*.dev.example", "IP:127.0.0.1"]);
        assert!(names_host(&info, "broker.example"));
        assert!(names_host(&info, "BROKER.example."));
        assert!(names_host(&info, "a.dev.example"));
        assert!(!names_host(&info, "a.b.dev.example"));
        assert!(!names_host(&info, "dev.example"));
        assert!(names_host(&info, "127.0.0.1"));
        assert!(!names_host(&info, "127.0.0.2"));
        assert!(!names_host(&info, "::1"));
    }

    #[test]
    fn weak_keys_and_signatures() {
        let mut info = info_with_san(&[]);
        assert!(!info.key.is_weak());
        info.key = KeyInfo {
            algorithm: "RSA".into(),
            bits: Some(1024),
            curve: None,
        };
        assert!(info.key.is_weak());
        info.signature_algorithm = "sha1WithRSAEncryption".into();
        assert!(info.has_weak_signature());
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(inspect(b"not a certificate", 0).is_err());
        assert!(inspect(&[], 0).is_err());
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn issue(
        self_signed: bool,
        alg: &'static rcgen::SignatureAlgorithm,
        days: (i64, i64),
    ) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["broker.example".to_owned(), "10.1.2.3".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "broker");
        let t = time::OffsetDateTime::now_utc();
        params.not_before = t + time::Duration::days(days.0);
        params.not_after = t + time::Duration::days(days.1);
        if self_signed {
            return params.self_signed(&key).unwrap().der().to_vec();
        }
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Test CA");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        params.signed_by(&key, &issuer).unwrap().der().to_vec()
    }

    #[test]
    fn inspects_ca_issued_certificate() {
        let der = issue(false, &rcgen::PKCS_ECDSA_P384_SHA384, (-1, 200));
        let info = inspect(&der, now()).unwrap();
        assert_eq!(info.subject, "CN=broker");
        assert_eq!(info.issuer, "CN=Test CA");
        assert!(!info.self_signed);
        assert_eq!(info.validity, Validity::Valid);
        assert!((198..=200).contains(&info.days_left), "{}", info.days_left);
        assert_eq!(info.key.describe(), "EC P-384");
        assert_eq!(info.signature_algorithm, "ecdsa-with-SHA256");
        assert_eq!(info.san, ["DNS:broker.example", "IP:10.1.2.3"]);
        assert!(names_host(&info, "broker.example"));
        assert!(names_host(&info, "10.1.2.3"));
        assert!(!names_host(&info, "127.0.0.1"));
    }

    #[test]
    fn validity_states_and_self_signed() {
        let expired = inspect(&issue(true, &rcgen::PKCS_ED25519, (-30, -2)), now()).unwrap();
        assert_eq!(expired.validity, Validity::Expired);
        assert!(expired.days_left < 0);
        assert!(expired.self_signed);
        assert_eq!(expired.key.describe(), "Ed25519 256");
        assert_eq!(expired.signature_algorithm, "Ed25519");
        let soon = inspect(
            &issue(false, &rcgen::PKCS_ECDSA_P256_SHA256, (-10, 5)),
            now(),
        )
        .unwrap();
        assert_eq!(soon.validity, Validity::Expiring);
        let future = inspect(
            &issue(false, &rcgen::PKCS_ECDSA_P256_SHA256, (3, 90)),
            now(),
        )
        .unwrap();
        assert_eq!(future.validity, Validity::NotYetValid);
    }
}
