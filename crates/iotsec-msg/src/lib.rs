//! iotsec-msg: HMAC-SHA256 signed JSON telemetry, byte-compatible with the widely copied
//! Python recipe (v1), plus a v2 envelope with per-device keys and replay protection.
//!
//! ```
//! use iotsec_msg::{MsgKey, Signer, Verifier};
//! let key = MsgKey::new(b"your-32-byte-secret-key-here!!!!").unwrap();
//! let mut signer = Signer::new(key.clone());
//! let mut signed = Vec::new();
//! signer.sign(br#"{"temp": 21.5, "id": "dev1"}"#, &mut signed).unwrap();
//! let mut verifier = Verifier::new(key);
//! let mut payload = Vec::new();
//! verifier.verify(&signed, &mut payload).unwrap();
//! assert_eq!(payload, br#"{"temp": 21.5, "id": "dev1"}"#);
//! ```
//!
//! Data enters as message bytes (and, for v2, the caller's `now`, the sender identity the
//! transport authenticated, a key lookup and the device's state); it leaves as the verified
//! payload bytes or a typed [`Error`]. No I/O in the core: it is `#![no_std]` + `alloc`;
//! the `std` feature adds key files ([`keyfile`]) and random key generation.
//!
//! - [`json`]: Python `json.loads` / `json.dumps(sort_keys=True)` byte for byte.
//! - [`envelope`]: v1 sign/verify (the reference format).
//! - [`v2`]: the v2 envelope (`v`, `kid`, `ts`, `seq`) and its verifier core.
//! - [`replay`]: the 64-entry sliding replay window (RFC 6347 section 4.1.2.6).
//! - [`seq`]: the device-side sequence counter (OSCORE, RFC 8613 appendix B.1.1).
//! - [`key`]: keys with redacted `Debug`, HKDF per-device derivation (RFC 5869).
#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod envelope;
mod error;
pub mod json;
pub mod key;
#[cfg(feature = "std")]
pub mod keyfile;
pub mod replay;
pub mod seq;
pub mod v2;

pub use envelope::{Signer, Verifier};
pub use error::{Error, Field, Syntax};
pub use json::{Codec, Limits};
pub use key::{DeviceId, Kid, MsgKey};
pub use replay::ReplayWindow;
pub use seq::SeqCounter;
