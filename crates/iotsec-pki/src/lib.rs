//! iotsec-pki: a small certificate authority for an IoT fleet.
//!
//! It issues a root CA, TLS server certificates (full chain, SAN always set, EKU serverAuth),
//! one client certificate per device (CN = device id, EKU clientAuth) for mutual TLS, signs CRLs,
//! and computes SHA-256 fingerprints and SPKI pins. Every file it writes is accepted by
//! Mosquitto and openssl; private keys are PKCS#8 PEM, mode 0600, written atomically.
//!
//! ```no_run
//! use iotsec_pki::{Authority, CaOptions, DeviceId, DeviceOptions};
//! # fn main() -> Result<(), iotsec_pki::PkiError> {
//! let dir = std::path::Path::new("pki");
//! let mut ca = Authority::init(dir, &CaOptions::default())?;
//! ca.issue_devices(&[DeviceId::new("device-a")?], &DeviceOptions::default())?;
//! ca.revoke("device-a", 30)?; // re-signs crl.pem
//! # Ok(()) }
//! ```
//!
//! Data enters as command-line values and existing PEM files (parsed with rustls-pki-types and
//! x509-parser, errors naming the file) and leaves as files in the PKI directory
//! ([`authority::Layout`]) and as report structs ([`inspect`]). Nothing here prints.

pub mod algorithm;
pub mod authority;
pub mod error;
pub mod file;
pub mod fingerprint;
pub mod id;
pub mod inspect;
pub mod inventory;
pub mod pem;

pub use algorithm::KeyAlgorithm;
pub use authority::{
    Authority, CaOptions, DeviceOptions, Issued, Layout, Overwrite, ServerOptions,
};
pub use error::PkiError;
pub use fingerprint::{Fingerprint, SpkiPin};
pub use id::DeviceId;
pub use inventory::{Entry, Inventory, Role, Status};
