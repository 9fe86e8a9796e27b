//! Test PKI made with rcgen: CAs, intermediates, server and device leaves,
//! self-signed impostors, CRLs.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
    date_time_ymd,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// A fresh ECDSA P-256 key.
pub fn key() -> KeyPair {
    KeyPair::generate().unwrap()
}

/// The key as PKCS#8 DER for rustls.
pub fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// What a leaf is for.
#[derive(Clone, Copy)]
pub enum Role {
    Server,
    Device,
}

/// Options of a leaf certificate.
pub struct Leaf<'a> {
    pub names: &'a [&'a str],
    pub common_name: &'a str,
    pub serial: u64,
    pub role: Role,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl<'a> Leaf<'a> {
    /// A server certificate for `localhost` / 127.0.0.1, valid 1975-4096 (rcgen's default).
    pub fn server(serial: u64) -> Self {
        Self {
            names: &["localhost", "127.0.0.1"],
            common_name: "broker.iotsec.test",
            serial,
            role: Role::Server,
            not_before: date_time_ymd(1975, 1, 1),
            not_after: date_time_ymd(4096, 1, 1),
        }
    }

    /// A device certificate.
    pub fn device(id: &'a str, serial: u64) -> Self {
        Self {
            names: &[],
            common_name: id,
            serial,
            role: Role::Device,
            ..Self::server(serial)
        }
    }

    fn params(&self) -> CertificateParams {
        let names: Vec<String> = self.names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, self.common_name);
        params.serial_number = Some(SerialNumber::from(self.serial));
        params.not_before = self.not_before;
        params.not_after = self.not_after;
        params.extended_key_usages = vec![match self.role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Device => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params
    }
}

/// A certificate authority (root or intermediate).
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn params(common_name: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
    }

    /// A self-signed root.
    pub fn root(common_name: &str) -> Self {
        Self {
            issuer: CertifiedIssuer::self_signed(Self::params(common_name), key()).unwrap(),
        }
    }

    /// An intermediate CA under `self`.
    pub fn intermediate(&self, common_name: &str) -> Self {
        Self {
            issuer: CertifiedIssuer::signed_by(Self::params(common_name), key(), &self.issuer)
                .unwrap(),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Issues a leaf for `key`.
    pub fn issue(&self, leaf: &Leaf<'_>, key: &KeyPair) -> CertificateDer<'static> {
        leaf.params()
            .signed_by(key, &self.issuer)
            .unwrap()
            .der()
            .clone()
    }

    /// A CRL revoking these serials, valid from 2020 to 4000.
    pub fn crl_pem(&self, revoked: &[u64]) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from(*serial),
                    revocation_time: date_time_ymd(2021, 1, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }
}

/// A self-signed certificate that looks like `leaf` (same subject and names).
pub fn self_signed(leaf: &Leaf<'_>, key: &KeyPair) -> CertificateDer<'static> {
    leaf.params().self_signed(key).unwrap().der().clone()
}

/// DER to PEM.
pub fn pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
