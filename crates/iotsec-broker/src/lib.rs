//! iotsec-broker: a hardened Mosquitto, as configuration and as a process.
//!
//! * [`render`]: `broker config` writes a TLS-only, client-certificate, no-anonymous
//!   mosquitto.conf with a per-device ACL and the CRL, from an `iotsec pki` directory.
//! * [`conf`] + [`audit`]: `broker audit-conf` reads an existing mosquitto.conf (following
//!   `include_dir`, applying Mosquitto 2.0's defaults) and returns [`finding::Finding`]s with
//!   stable ids, severities and OWASP IoT Top 10 categories.
//! * [`process`]: `broker run` / `broker reload` start Mosquitto in the foreground (or for a
//!   test) and send it SIGHUP after a revocation.
//!
//! ```no_run
//! use iotsec_broker::render::{HardenedOptions, write_hardened};
//! use iotsec_broker::process::{BrokerProcess, Log};
//! # fn main() -> Result<(), iotsec_broker::BrokerError> {
//! let rendered = write_hardened(&HardenedOptions::new("pki", "broker"))?;
//! let broker = BrokerProcess::spawn(&rendered.dir, Log::Inherit, std::time::Duration::from_secs(5))?;
//! # Ok(()) }
//! ```
//!
//! Data enters as PKI files and existing configs; it leaves as files, a child process, and
//! findings. Nothing here prints.

pub mod acl;
pub mod audit;
pub mod conf;
pub mod error;
pub mod finding;
pub mod process;
pub mod render;
pub mod topic;

pub use error::BrokerError;
pub use finding::{Finding, OwaspIot, Severity};
