//! `iotsec-ota`: signed firmware updates for A/B slots with anti-rollback, power-loss safe
//! boot records and a confirm deadline.
//!
//! Data enters as bytes: a signed manifest (bundle header or detached file), image chunks, a
//! key-set update, the caller's time in milliseconds. It leaves as [`slot::Action`]s that a
//! [`slot::SlotStore`] performs (erase, write chunk, write header, sync, write boot record),
//! as [`engine::Boot`] decisions, and as [`Error`]s whose [`Error::fault`] says who is to
//! blame. The core is `no_std` + `alloc` and owns no clock, file or socket; the `std` feature
//! adds file-backed slots ([`dir::DirStore`]), key files ([`keyfile`]), streaming file
//! verification ([`file`]) and the process supervisor ([`supervisor`]).
//!
//! ```
//! use iotsec_ota::{Algorithm, Engine, Config, HardwareId, KeySet, Manifest, SecretKey,
//!                  SignedManifest, Version, sim::SimFlash};
//! # fn main() -> Result<(), iotsec_ota::Error> {
//! let key = SecretKey::from_seed(Algorithm::Ed25519, &[7; 32])?;
//! let keys = KeySet::factory([key.public_key()])?;
//! let image = b"firmware v1".to_vec();
//! let manifest = Manifest {
//!     version: Version::parse("1.0.0")?,
//!     security_counter: 1,
//!     hardware_id: HardwareId::new("acme-gw")?,
//!     image_size: image.len() as u64,
//!     image_sha256: iotsec_ota::sha256(&image),
//!     created_s: 1_700_000_000,
//!     expires_s: None,
//! };
//! let signed = SignedManifest::sign(&manifest, &key)?;
//!
//! let mut engine = Engine::open(SimFlash::new(4096), Config::new(HardwareId::new("acme-gw")?))?;
//! let now_ms = 1_700_000_000_000;
//! let mut download = engine.begin_download(signed.as_bytes(), &keys, now_ms)?;
//! download.write(&image)?;
//! download.finish()?;                               // verified, trial pending
//! let boot = engine.boot(&keys, now_ms)?.unwrap(); // starts the trial
//! assert!(boot.trial);
//! engine.confirm(now_ms + 1_000)?;                 // within 30 s: committed
//! assert_eq!(engine.installed().unwrap().version, manifest.version);
//! # Ok(()) }
//! ```
#![no_std]
#![cfg_attr(test, allow(clippy::unwrap_used))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod bundle;
pub mod engine;
pub mod envelope;
mod error;
pub mod image;
pub mod key;
pub mod keyset;
pub mod manifest;
pub mod record;
pub mod slot;
pub mod version;
mod wire;

#[cfg(feature = "std")]
pub mod dir;
#[cfg(feature = "std")]
pub mod file;
#[cfg(feature = "std")]
pub mod keyfile;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "std")]
pub mod supervisor;

pub use bundle::{Contents, SignedManifest, parse_bundle, verify_bundle};
pub use engine::{Boot, BootCheck, Config, Download, Engine, UpdateState};
pub use error::{Error, Fault};
pub use image::ImageHasher;
pub use key::{Algorithm, KeyId, PublicKey, SecretKey, Signature};
pub use keyset::{KeySet, Role, Roles, TrustedKey};
pub use manifest::{HardwareId, Manifest};
pub use record::{BootRecord, Outcome, RollbackReason};
pub use slot::{Action, SlotId, SlotStore};
pub use version::Version;

/// SHA-256 of `bytes` (what a manifest's `image_sha256` holds).
#[must_use]
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}
