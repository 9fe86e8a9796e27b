//! Client configurations: a [`TrustPolicy`] for the server, optionally an
//! [`Identity`] for mutual TLS.

use std::sync::Arc;

use rustls::ClientConfig;

use crate::Error;
use crate::identity::Identity;
use crate::rejection::{PeerCertificate, Rejection, VerifyLog};
use crate::trust::{PolicyWarning, TrustPolicy};
use crate::verifier::PolicyVerifier;

/// A rustls [`ClientConfig`] enforcing a [`TrustPolicy`], with the
/// [`VerifyLog`] its verifier writes to.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    log: VerifyLog,
    warnings: Vec<PolicyWarning>,
}

impl ClientTls {
    /// Builds the configuration: TLS 1.2 and 1.3, aws-lc-rs, the policy's
    /// verifier, and the identity as client certificate if given.
    ///
    /// # Errors
    /// [`Error::Verifier`] / [`Error::BadCrl`] for unusable trust material,
    /// [`Error::BadKey`] / [`Error::KeyMismatch`] for an unusable identity.
    pub fn new(policy: &TrustPolicy, identity: Option<&Identity>) -> Result<Self, Error> {
        let provider = crate::provider();
        let log = VerifyLog::default();
        let verifier = Arc::new(PolicyVerifier::new(policy, &provider, log.clone())?);
        // rustls routes every custom verifier through `dangerous()`; this one
        // never accepts without a check (see `verifier.rs`).
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(Error::Config)?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match identity {
            Some(identity) => builder
                .with_client_auth_cert(identity.certificate_chain().to_vec(), identity.key())
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(_) => Error::KeyMismatch,
                    other => Error::BadKey(other),
                })?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self {
            config: Arc::new(config),
            log,
            warnings: policy.warnings(),
        })
    }

    /// Sets the ALPN protocols to offer (none by default; Mosquitto needs none).
    pub fn with_alpn(mut self, protocols: Vec<Vec<u8>>) -> Self {
        Arc::make_mut(&mut self.config).alpn_protocols = protocols;
        self
    }

    /// The configuration, for tokio-rustls or an MQTT client.
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// The log the verifier writes to (shared by every clone of the config).
    pub fn log(&self) -> &VerifyLog {
        &self.log
    }

    /// Shorthand for `self.log().last_rejection()`.
    pub fn last_rejection(&self) -> Option<Rejection> {
        self.log.last_rejection()
    }

    /// Shorthand for `self.log().last_peer()`.
    pub fn last_peer(&self) -> Option<PeerCertificate> {
        self.log.last_peer()
    }

    /// The policy's warnings (e.g. a single SPKI pin), for the CLI to show.
    pub fn warnings(&self) -> &[PolicyWarning] {
        &self.warnings
    }
}
