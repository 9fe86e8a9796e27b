//! iotsec-audit: an OWASP IoT Top 10 (2018) assessment of a whole deployment.
//!
//! It reuses the other crates' checks — the broker configuration audit (`BRK-*`), certificate
//! and CRL inspection (`PKI-*`), the network scanner (`SCAN-*`) — and adds its own ([`catalog`]):
//! active MQTT checks, a firmware/source secret scanner ([`secrets`]), update-mechanism,
//! device-management, privacy and ESP-IDF physical-hardening checks. Everything becomes one
//! [`finding::Finding`] list; the [`report::Report`] gives each category I1..I10 a verdict
//! (pass, fail with evidence and fixes, or not assessed with the reason); [`render`] turns it
//! into text, JSON, SARIF 2.1.0 or a self-contained HTML page.
//!
//! ```no_run
//! # async fn demo() -> Result<(), iotsec_audit::AuditError> {
//! use iotsec_audit::{Inputs, render};
//! let inputs = Inputs {
//!     mosquitto_conf: Some("/etc/mosquitto/mosquitto.conf".into()),
//!     firmware: vec!["firmware/".into()],
//!     ..Inputs::default()
//! };
//! let report = iotsec_audit::run(inputs, time::OffsetDateTime::now_utc()).await?;
//! let text = render::text(&report);
//! # let _ = text; Ok(()) }
//! ```
//!
//! Data enters only through the paths and the host given in [`Inputs`] (files are read, never
//! written — except the registry database, which `iotsec-server`'s store opens in WAL mode and
//! migrates like the server itself; the host is scanned and, with `active`, spoken to over MQTT). It leaves as a
//! [`report::Report`] value. Nothing here prints.

pub mod audit;
pub mod catalog;
pub mod check;
pub mod error;
pub mod finding;
pub mod render;
pub mod report;
pub mod secrets;

pub use audit::{Inputs, run};
pub use error::AuditError;
pub use finding::{Finding, Location, OwaspIot, Severity};
pub use report::{Report, Status};
