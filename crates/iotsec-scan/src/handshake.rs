//! TLS inspection with rustls: a client configuration that accepts **any** server certificate so
//! the scanner can look at it, and records what the server showed (its chain) and asked for (a
//! client certificate, with the CA names it accepts).
//!
//! FOR INSPECTION ONLY. Nothing sent over these connections is secret and nothing received is
//! trusted: the scanner sends an anonymous MQTT CONNECT or an HTTP `GET /`. The handshake
//! signature is still verified with the provider's algorithms (`verify_tls1x_signature`), so a
//! server that cannot prove possession of the key it presents does not pass as that key.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// What one handshake showed.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Server chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Set when the server sent a CertificateRequest: the CA names it accepts.
    pub client_auth: Option<Vec<String>>,
}

/// Shared slot the verifier and resolver write into.
#[derive(Debug, Default)]
pub struct Recorder(Mutex<Observed>);

impl Recorder {
    /// A copy of what was recorded so far.
    pub fn observed(&self) -> Observed {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn with(&self, f: impl FnOnce(&mut Observed)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Accepts any certificate chain (recording it) but verifies handshake signatures.
#[derive(Debug)]
struct InspectOnly {
    recorder: Arc<Recorder>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for InspectOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.recorder.with(|o| {
            o.chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        });
        // Inspection only: trust is what we are reporting on, not what we rely on.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Records a CertificateRequest and declines to present a certificate.
#[derive(Debug)]
struct RecordClientAuth {
    recorder: Arc<Recorder>,
}

impl ResolvesClientCert for RecordClientAuth {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let names = root_hint_subjects
            .iter()
            .take(16)
            .map(|der| match X509Name::from_der(der) {
                Ok((_, name)) => name.to_string(),
                Err(_) => format!("<{} bytes, unparsed>", der.len()),
            })
            .collect();
        self.recorder.with(|o| o.client_auth = Some(names));
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// A fresh inspection client configuration and the recorder it writes into. One per
/// connection, so observations never mix.
pub fn inspection_config(
    provider: &Arc<CryptoProvider>,
) -> Result<(Arc<ClientConfig>, Arc<Recorder>), Error> {
    let recorder = Arc::new(Recorder::default());
    let verifier = Arc::new(InspectOnly {
        recorder: recorder.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(RecordClientAuth {
            recorder: recorder.clone(),
        }));
    // No resumption: every probe must see a full handshake.
    config.resumption = rustls::client::Resumption::disabled();
    Ok((Arc::new(config), recorder))
}

/// The process-wide provider if one is installed, else aws-lc-rs.
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}
