//! iotsec-device: the device agent. It reads sensor readings (a simulated sensor, standard
//! input or a command, as JSON lines), gives each a sequence number and keeps it in a
//! crash-safe, bounded disk queue, signs it (v2, per-device key) when it is sent, publishes it
//! over mutual-TLS MQTT at QoS 1 with a pinned or CA-validated broker, and removes it from the
//! queue only when the ingest's end-to-end ack says it is stored.
//!
//! ```no_run
//! # async fn demo() -> Result<(), iotsec_device::Error> {
//! use iotsec_device::{Config, RunOptions, agent, source::Configured};
//! let config = Config::load("device.toml".as_ref())?;
//! let report = iotsec_device::check(&config, std::time::Duration::from_secs(10)).await?;
//! assert!(report.is_ok(), "{:?}", report.outcome);
//! let source = Configured::open(&config.source)?;
//! let summary = agent::run(&config, source, RunOptions::default(), std::future::pending()).await?;
//! # let _ = summary; Ok(()) }
//! ```
//!
//! Data enters as `device.toml` ([`config`]), source lines ([`source`]), and MQTT messages
//! from the broker (the ingest's acks on `devices/<id>/commands/ack`); it leaves as signed
//! telemetry on `devices/<id>/telemetry`, signed status on `devices/<id>/status`, and the
//! state files under `state/` (the queue and the sequence counter).
//!
//! Layout: sans-I/O cores — [`outbox`] (what to publish, resend, release), [`backoff`],
//! [`frame`] (queue record encoding), [`reading`] (checking, signing, the simulated sensor) —
//! and the shells around them: [`queue`] and [`state`] (files), [`agent`] and [`check`]
//! (tokio + rumqttc), [`source`].

pub mod agent;
pub mod backoff;
mod check;
pub mod config;
mod error;
pub mod frame;
pub mod link;
pub mod ota;
pub mod outbox;
pub mod queue;
pub mod reading;
pub mod source;
pub mod state;

pub use agent::{RunOptions, Summary};
pub use check::{CheckOutcome, CheckReport, check};
pub use config::{Config, ConfigWarning, RawConfig, SourceKind};
pub use error::{Error, Result};
