//! iotsec-tls: rustls client and server configurations for iotsec devices,
//! brokers and services — CA trust, certificate and SPKI pinning, mutual TLS.
//!
//! No I/O beyond reading the PEM files it is pointed at: it turns trust
//! material (bytes or paths) into [`rustls::ClientConfig`] /
//! [`rustls::ServerConfig`] values that the async shells (device agent,
//! ingest, HTTPS API) hand to tokio-rustls or to the MQTT client. The only
//! crypto provider is aws-lc-rs.
//!
//! Data enters as PEM (CA certificates, CRLs, certificate chains, private
//! keys) and pin strings (`AB:CD:..` / hex fingerprints, `sha256/BASE64` SPKI
//! pins). It leaves as rustls configurations, and — after a handshake — as a
//! [`Rejection`] saying exactly why a peer was refused (see [`Rejection`] for
//! how it survives the layers between the verifier and the caller).
//!
//! ```
//! use iotsec_tls::{ClientTls, Expiry, PinSet, TrustPolicy};
//!
//! iotsec_tls::install_crypto_provider();
//! let pins = PinSet::parse([
//!     "sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", // current key
//!     "sha256/ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs=", // backup key
//! ])?;
//! let policy = TrustPolicy::Spki { pins, expiry: Expiry::Enforce };
//! let tls = ClientTls::new(&policy, None)?;
//! assert!(tls.warnings().is_empty());
//! let _config: std::sync::Arc<rustls::ClientConfig> = tls.config();
//! // ... connect; on failure: Rejection::find(&err).or_else(|| tls.last_rejection())
//! # Ok::<(), iotsec_tls::Error>(())
//! ```
//!
//! Policies (`docs/pinning.md` explains when to use which):
//!
//! | policy | chain to CA | hostname | match | validity |
//! |---|---|---|---|---|
//! | [`TrustPolicy::Ca`] (default) | yes (+CRLs) | yes | — | yes |
//! | [`TrustPolicy::Pin`] | no | no | leaf SHA-256 fingerprint | [`Expiry`] (default: yes) |
//! | [`TrustPolicy::Spki`] | no | no | leaf key ∈ pin set | [`Expiry`] (default: yes) |
//! | [`TrustPolicy::CaSpki`] | yes (+CRLs) | yes | a key on the validated path ∈ pin set | yes |
//!
//! Every policy verifies the handshake signature with the leaf's key through
//! rustls' `verify_tls12_signature` / `verify_tls13_signature`.

mod client;
mod error;
mod identity;
mod pem;
mod pin;
mod rejection;
mod server;
mod trust;
mod validity;
mod verifier;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use client::ClientTls;
pub use error::Error;
pub use identity::Identity;
pub use pin::{CertFingerprint, PinSet, SpkiPin};
pub use rejection::{PeerCertificate, Rejection, VerifyLog};
pub use server::{ClientAuth, server_config};
pub use trust::{CaTrust, Expiry, PolicyKind, PolicyWarning, TrustPolicy};

/// Entry points for `fuzz/` (cargo-fuzz): the parsers that see untrusted
/// bytes. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    use crate::{CertFingerprint, Expiry, PinSet, PolicyKind, SpkiPin, TrustPolicy, VerifyLog};

    /// Runs what a server's certificate goes through in the pin policies
    /// (parse, pin match, validity) on arbitrary bytes.
    pub fn certificate(der: &[u8]) {
        let _ = crate::validity::of_certificate(der);
        let spki = SpkiPin::of_certificate(der);
        let mut policies = vec![TrustPolicy::Pin {
            fingerprint: CertFingerprint::of_certificate(der),
            expiry: Expiry::Enforce,
        }];
        if let Ok(pin) = spki
            && let Ok(pins) = PinSet::new([pin])
        {
            policies.push(TrustPolicy::Spki {
                pins,
                expiry: Expiry::Enforce,
            });
        }
        let (Ok(name), cert) = (ServerName::try_from("localhost"), CertificateDer::from(der))
        else {
            return;
        };
        for policy in policies {
            if let Ok(verifier) = crate::verifier::PolicyVerifier::new(
                &policy,
                &crate::provider(),
                VerifyLog::default(),
            ) {
                let _ = verifier.verify_server_cert(&cert, &[], &name, &[], UnixTime::now());
            }
        }
    }

    /// Parses configuration text as every pin / policy form.
    pub fn pin_text(text: &str) {
        let _ = text.parse::<CertFingerprint>();
        let _ = text.parse::<SpkiPin>();
        let _ = text.parse::<PolicyKind>();
        let _ = PinSet::parse(text.split(','));
    }
}

/// The aws-lc-rs crypto provider every configuration of this crate uses.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider())))
}

/// Installs aws-lc-rs as the process-wide default rustls provider, for code
/// that builds configurations without naming a provider (e.g. inside an MQTT
/// client). Idempotent: calling it again, or after another part of the process
/// installed a default, does nothing.
pub fn install_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a default exists either way.
        let _ = CryptoProvider::install_default(CryptoProvider::clone(&provider()));
    }
}
