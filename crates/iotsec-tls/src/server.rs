//! Server configurations, with or without required client certificates.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use crate::Error;
use crate::identity::Identity;
use crate::trust::CaTrust;

/// Whether a server demands a client certificate.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientAuth {
    /// Every client must present a certificate chaining to this CA, not
    /// revoked by its CRLs (unknown revocation status is refused when CRLs are
    /// given). The mode for device-facing and API endpoints.
    Required(CaTrust),
    /// No client certificate is requested (clients authenticate otherwise).
    NotRequested,
}

/// Builds a server configuration (TLS 1.2 and 1.3, aws-lc-rs) presenting
/// `identity`. Set `alpn_protocols` on the result for HTTPS.
///
/// # Errors
/// [`Error::Verifier`] for unusable client CA material, [`Error::KeyMismatch`] /
/// [`Error::BadKey`] for an unusable identity.
pub fn server_config(identity: &Identity, client_auth: &ClientAuth) -> Result<ServerConfig, Error> {
    let provider = crate::provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?;
    let builder = match client_auth {
        ClientAuth::Required(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(ca.root_store(), provider)
                .with_crls(ca.crls().iter().cloned())
                .build()
                .map_err(Error::Verifier)?;
            builder.with_client_cert_verifier(verifier)
        }
        ClientAuth::NotRequested => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(identity.certificate_chain().to_vec(), identity.key())
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => Error::KeyMismatch,
            other => Error::BadKey(other),
        })
}
