//! iotsec-scan: an IoT-aware exposure scanner. It finds every open TCP port of one host with a
//! lean connect sweep, identifies what listens there whatever the port number (MQTT and MQTT
//! over TLS, HTTP, SSH, FTP/SMTP, Telnet, Modbus/TCP, Redis, memcached, and CoAP over UDP on
//! request), inspects TLS (version, suite, chain, client-certificate requests, legacy TLS 1.0/1.1)
//! and turns what it saw into [`finding::Finding`]s with stable ids, severities and OWASP IoT
//! Top 10 categories.
//!
//! ```no_run
//! # async fn demo() -> Result<(), iotsec_scan::error::ScanError> {
//! use std::sync::Arc;
//! use iotsec_scan::{ports::PortSet, scanner, target::Target};
//!
//! let target = Target::resolve("127.0.0.1")?;
//! let config = scanner::ScanConfig::new(target, PortSet::parse("iot")?);
//! let report = scanner::scan(config, Arc::new(|_| {})).await?;
//! for f in &report.findings {
//!     assert!(f.id.starts_with("SCAN-"));
//! }
//! # Ok(()) }
//! ```
//!
//! Where data enters and leaves:
//! - **In**: bytes from the network only through [`probe`] parsers (pure, fuzzed, never panic),
//!   X.509 DER through [`certificate::inspect`], `/proc/net/tcp{,6}` through [`local`], the
//!   policy file through [`policy::Policy::load`].
//! - **Out**: a [`report::ScanReport`] (serde) with [`finding::Finding`]s; the library never
//!   prints. The `iotsec scan` command renders it.
//!
//! Layers: pure cores ([`probe`], [`certificate`], [`assess`], [`ports`], [`policy`],
//! [`finding`], [`check`]) and shells that own sockets ([`sweep`]: a blocking epoll loop;
//! [`ident`], [`udp`], [`scanner`]: tokio).
//!
//! The scanner connects to every port in its port list, and sends probes to every open one
//! (or to [`scanner::ScanConfig::probe_only`]). Scan only hosts you own or are allowed to.

pub mod assess;
pub mod certificate;
pub mod check;
pub mod error;
pub mod finding;
pub mod handshake;
pub mod ident;
pub mod limits;
pub mod local;
pub mod policy;
pub mod ports;
pub mod probe;
pub mod report;
pub mod scanner;
pub mod sweep;
pub mod target;
pub mod udp;
