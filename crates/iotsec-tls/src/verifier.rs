//! The server certificate verifier behind every [`TrustPolicy`].
//!
//! One verifier type, one `verify_server_cert` per policy, and one pair of
//! handshake-signature checks shared by all: they delegate to rustls'
//! `verify_tls12_signature` / `verify_tls13_signature` with the provider's
//! algorithms, so even a pinned certificate must prove possession of its key.

use std::cell::RefCell;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::Error;
use crate::pin::{CertFingerprint, PinSet, SpkiPin};
use crate::rejection::{Rejection, VerifyLog};
use crate::trust::{CaTrust, Expiry, TrustPolicy};

#[derive(Debug)]
pub(crate) struct PolicyVerifier {
    check: Check,
    algorithms: WebPkiSupportedAlgorithms,
    log: VerifyLog,
}

#[derive(Debug)]
enum Check {
    Ca(Arc<WebPkiServerVerifier>),
    Pin {
        fingerprint: CertFingerprint,
        expiry: Expiry,
    },
    Spki {
        pins: PinSet,
        expiry: Expiry,
    },
    CaSpki {
        chain: Arc<WebPkiServerVerifier>,
        roots: Arc<RootCertStore>,
        crls: Vec<webpki::CertRevocationList<'static>>,
        pins: PinSet,
    },
}

impl PolicyVerifier {
    pub(crate) fn new(
        policy: &TrustPolicy,
        provider: &Arc<CryptoProvider>,
        log: VerifyLog,
    ) -> Result<Self, Error> {
        let check = match policy {
            TrustPolicy::Ca(ca) => Check::Ca(webpki_verifier(ca, provider)?),
            TrustPolicy::Pin {
                fingerprint,
                expiry,
            } => Check::Pin {
                fingerprint: *fingerprint,
                expiry: *expiry,
            },
            TrustPolicy::Spki { pins, expiry } => Check::Spki {
                pins: pins.clone(),
                expiry: *expiry,
            },
            TrustPolicy::CaSpki { ca, pins } => Check::CaSpki {
                chain: webpki_verifier(ca, provider)?,
                roots: ca.root_store(),
                crls: ca.parsed_crls()?,
                pins: pins.clone(),
            },
        };
        Ok(Self {
            check,
            algorithms: provider.signature_verification_algorithms,
            log,
        })
    }

    fn verify_pin(
        end_entity: &CertificateDer<'_>,
        expected: &CertFingerprint,
        expiry: Expiry,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let seen = CertFingerprint::of_certificate(end_entity);
        if !seen.ct_matches(expected) {
            return Err(Rejection::PinMismatch {
                expected: *expected,
                seen,
            }
            .into_rustls());
        }
        // The handshake signature is later checked with this certificate's key by
        // webpki: make sure webpki can parse it, so a broken pin fails here.
        webpki::EndEntityCert::try_from(end_entity).map_err(|_| CertificateError::BadEncoding)?;
        check_validity(end_entity, expiry, now)
    }

    fn verify_spki(
        end_entity: &CertificateDer<'_>,
        pins: &PinSet,
        expiry: Expiry,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let leaf = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| CertificateError::BadEncoding)?;
        // Only the leaf: without chain validation nothing ties an intermediate
        // the server sends to the key that signs this handshake.
        let seen = SpkiPin::of_spki(leaf.subject_public_key_info().as_ref());
        if !pins.contains(&seen) {
            return Err(Rejection::SpkiMismatch {
                expected: pins.pins().to_vec(),
                seen: vec![seen],
            }
            .into_rustls());
        }
        check_validity(end_entity, expiry, now)
    }

    /// `ca+spki`: the full CA check first (rustls' own verifier: chain, CRLs,
    /// validity, name), then the pins, matched only against certificates on a
    /// chain webpki validated. The second pass rebuilds the path with the same
    /// anchors, intermediates, time and CRLs and gives webpki a `verify_path`
    /// callback that accepts a path only if one of its certificates is pinned;
    /// webpki then keeps searching other valid paths (cross-signed CAs) before
    /// giving up. An extra certificate the server sent that is not on the path
    /// is never looked at.
    #[allow(clippy::too_many_arguments)]
    fn verify_ca_spki(
        &self,
        chain: &WebPkiServerVerifier,
        roots: &RootCertStore,
        crls: &[webpki::CertRevocationList<'static>],
        pins: &PinSet,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;

        let leaf = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| CertificateError::BadEncoding)?;
        let crl_refs: Vec<&webpki::CertRevocationList<'static>> = crls.iter().collect();
        // Same revocation settings as rustls' WebPkiServerVerifier defaults.
        let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|builder| {
                builder
                    .with_depth(webpki::RevocationCheckDepth::Chain)
                    .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                    .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                    .build()
            });
        let seen: RefCell<Vec<SpkiPin>> = RefCell::new(Vec::new());
        let pinned_path = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
            let mut on_path = vec![SpkiPin::of_spki(
                path.end_entity().subject_public_key_info().as_ref(),
            )];
            on_path.extend(
                path.intermediate_certificates()
                    .map(|cert| SpkiPin::of_spki(cert.subject_public_key_info().as_ref())),
            );
            on_path.push(SpkiPin::of_spki(
                webpki::spki_for_anchor(path.anchor()).as_ref(),
            ));
            // `|` not `||`: compare every certificate, whatever matches first.
            let hit = on_path
                .iter()
                .fold(false, |hit, pin| hit | pins.contains(pin));
            let mut seen = seen.borrow_mut();
            for pin in on_path {
                if !seen.contains(&pin) {
                    seen.push(pin);
                }
            }
            if hit {
                Ok(())
            } else {
                // Any non-fatal error: webpki goes on to the next candidate path.
                Err(webpki::Error::UnknownIssuer)
            }
        };
        let result = leaf.verify_for_usage(
            self.algorithms.all,
            &roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            revocation,
            Some(&pinned_path),
        );
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                let seen = seen.into_inner();
                if seen.is_empty() {
                    // No path validated at all in the second pass although the
                    // first passed: not a pin problem, report webpki's reason.
                    return Err(Rejection::InvalidCertificate {
                        reason: error.to_string(),
                    }
                    .into_rustls());
                }
                Err(Rejection::SpkiMismatch {
                    expected: pins.pins().to_vec(),
                    seen,
                }
                .into_rustls())
            }
        }
    }

    /// Records a failed handshake-signature check, turning "bad signature"
    /// into the more precise [`Rejection::BadHandshakeSignature`].
    fn signature_outcome(
        &self,
        result: Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        result.map_err(|error| {
            let rejection = match &error {
                rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
                    Rejection::BadHandshakeSignature
                }
                other => Rejection::from_rustls(other),
            };
            self.log.reject(rejection.clone());
            match rejection {
                Rejection::BadHandshakeSignature => rejection.into_rustls(),
                _ => error,
            }
        })
    }
}

impl ServerCertVerifier for PolicyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.log.begin(end_entity);
        let result = match &self.check {
            Check::Ca(chain) => chain
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(drop),
            Check::Pin {
                fingerprint,
                expiry,
            } => Self::verify_pin(end_entity, fingerprint, *expiry, now),
            Check::Spki { pins, expiry } => Self::verify_spki(end_entity, pins, *expiry, now),
            Check::CaSpki {
                chain,
                roots,
                crls,
                pins,
            } => self.verify_ca_spki(
                chain,
                roots,
                crls,
                pins,
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
        };
        match result {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(error) => {
                self.log.reject(Rejection::from_rustls(&error));
                Err(error)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature_outcome(rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.algorithms,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature_outcome(rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.algorithms,
        ))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn webpki_verifier(
    ca: &CaTrust,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, Error> {
    WebPkiServerVerifier::builder_with_provider(ca.root_store(), Arc::clone(provider))
        .with_crls(ca.crls().iter().cloned())
        .build()
        .map_err(Error::Verifier)
}

/// Checks `notBefore <= now <= notAfter` of the leaf, unless told not to.
fn check_validity(
    end_entity: &CertificateDer<'_>,
    expiry: Expiry,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    if expiry == Expiry::Ignore {
        return Ok(());
    }
    let validity = crate::validity::of_certificate(end_entity.as_ref())
        .ok_or(CertificateError::BadEncoding)?;
    let (not_before, not_after) = (validity.not_before, validity.not_after);
    let unix = |s: u64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(s));
    if now.as_secs() < not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: unix(not_before),
        }
        .into());
    }
    if now.as_secs() > not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: unix(not_after),
        }
        .into());
    }
    Ok(())
}
