//! The HTTPS listener's rustls configuration (aws-lc-rs): the server certificate sits in a
//! [`CertSlot`] that ACME renewals replace without a restart, and client certificates are
//! requested but optional — verified against `client_ca` (and its CRL) when one is presented.

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::WebConfig;
use crate::error::{Result, WebError};

/// The current server certificate; replaced in place on renewal.
#[derive(Debug, Default)]
pub struct CertSlot(RwLock<Option<Arc<CertifiedKey>>>);

impl CertSlot {
    /// Installs `key` for every new handshake.
    pub fn set(&self, key: CertifiedKey) {
        let mut g = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = Some(Arc::new(key));
    }

    /// The current certificate chain's leaf (DER), if any.
    pub fn leaf(&self) -> Option<CertificateDer<'static>> {
        let g = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.as_ref().and_then(|k| k.cert.first().cloned())
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// A certificate chain (leaf first) and its key from PEM text, checked to belong together.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey> {
    let identity = iotsec_tls::Identity::from_pem(chain_pem, key_pem).map_err(WebError::Tls)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| WebError::Config(format!("private key: {e}")))?;
    CertifiedKey::from_der(
        identity.certificate_chain().to_vec(),
        key,
        &iotsec_tls::provider(),
    )
    .map_err(|e| WebError::Config(format!("certificate and key: {e}")))
}

/// [`certified_key`] from files.
pub fn certified_key_files(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain = std::fs::read(cert).map_err(WebError::io(cert.display()))?;
    let k = std::fs::read(key).map_err(WebError::io(key.display()))?;
    certified_key(&chain, &k).map_err(|e| match e {
        WebError::Tls(t) => {
            WebError::Config(format!("{} / {}: {t}", cert.display(), key.display()))
        }
        other => other,
    })
}

/// The listener's configuration: HTTP/1.1 over TLS 1.2/1.3, certificate from `slot`,
/// optional operator client certificates.
pub fn server_config(web: &WebConfig, slot: Arc<CertSlot>) -> Result<Arc<ServerConfig>> {
    let provider = iotsec_tls::provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| WebError::Config(format!("TLS: {e}")))?;
    let builder = match &web.client_ca {
        Some(ca) => {
            let mut trust = iotsec_tls::CaTrust::from_pem_file(ca).map_err(WebError::Tls)?;
            if let Some(crl) = &web.client_crl {
                trust = trust.with_crls_pem_file(crl).map_err(WebError::Tls)?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(trust.root_store(), provider)
                    .with_crls(trust.crls().iter().cloned())
                    // Tokens remain the other way in; a certificate, when sent, must verify.
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| WebError::Config(format!("client_ca: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(slot);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject CN of a (verified) client certificate.
pub fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(cn.to_string())
}

/// `(not_before, not_after)` of a certificate, seconds since the epoch.
pub fn validity(der: &CertificateDer<'_>) -> Option<(i64, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some((
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    ))
}

/// The DNS names in a certificate's subjectAltName.
pub fn dns_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}
