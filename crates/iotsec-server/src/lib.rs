//! iotsec-server: the ingest. Every MQTT message from a device is verified (v2 with the
//! device's derived key and replay window, v1 only for devices registered as legacy), bound to
//! the device the broker authenticated, stored durably and idempotently, and counted by reason
//! when rejected.
//!
//! * [`ingest`]: the core without I/O (message in, verdict out).
//! * [`store`]: storage behind one trait (SQLite: WAL, batched transactions, migrations).
//! * [`service`]: the async shell (rumqttc, manual QoS 1 acks after commit, end-to-end acks).
//! * [`config`]: the `server.toml` file.
//! * [`release`]: firmware releases (`iotsec fw publish`) and the staged rollout state machine.
//!
//! Data enters as MQTT PUBLISHes on `devices/+/telemetry`, `devices/+/status` and (with an
//! `[ota]` section) `devices/+/ota`; it leaves as rows in storage, PUBACKs,
//! `devices/<id>/commands/ack` messages and firmware notices on `devices/<id>/commands/ota`.
//! Nothing here prints.

pub mod config;
pub mod error;
pub mod ingest;
pub mod provision;
pub mod release;
pub mod service;
pub mod store;

pub use config::ServerConfig;
pub use error::ServerError;
