//! Storage: one trait, engines behind it (SQLite by default, PostgreSQL for several workers).
//!
//! Everything the ingest writes for one batch of MQTT messages goes through
//! [`Storage::commit`] in one transaction: accepted readings (idempotent on the unique
//! `(device, seq)`), rejections, and the per-device counters. The MQTT acknowledgements for the
//! batch are sent only after it returns, so a crash between receive and commit makes the broker
//! redeliver, and a crash after commit makes the redelivery a duplicate that the unique key drops.

pub mod postgres;
pub mod sqlite;

use serde::Serialize;

use crate::error::Result;

/// One accepted reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reading {
    /// Device id (from the authenticated topic / kid).
    pub device: String,
    /// Per-device sequence number (`0` for v1 messages, which have none: see `msg_id`).
    pub seq: u64,
    /// Device timestamp, ms since the epoch (receive time for v1).
    pub ts_ms: i64,
    /// Time the ingest received it, ms since the epoch.
    pub received_ms: i64,
    /// The verified payload (JSON object without `sig`).
    pub payload: String,
    /// The message's `sig` (hex): tells a byte-identical redelivery from a replay.
    pub sig: String,
}

/// One rejected message. Never holds the key or the message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Time received, ms since the epoch.
    pub received_ms: i64,
    /// Device id from the topic, when the topic had one.
    pub device: Option<String>,
    /// Stable reason code (`bad_signature`, `replayed`, ...).
    pub reason: String,
    /// Message size in bytes.
    pub size: usize,
}

/// What one commit writes.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Accepted readings.
    pub readings: Vec<Reading>,
    /// Rejected messages.
    pub rejections: Vec<Rejection>,
}

/// Whether a reading was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored now.
    New,
    /// `(device, seq)` was already stored: a redelivery, dropped.
    Duplicate,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    /// Id.
    pub id: String,
    /// `active` or `revoked`.
    pub status: String,
    /// Accepts v1 (fleet key) messages until it sends v2.
    pub legacy: bool,
    /// Message key version.
    pub key_version: u32,
    /// Firmware version last reported.
    pub firmware: Option<String>,
    /// Last accepted message, ms since the epoch.
    pub last_seen_ms: Option<i64>,
    /// Accepted readings.
    pub accepted: u64,
    /// Rejected messages.
    pub rejected: u64,
}

/// A published firmware release: the index row (the bundle itself is a file in the `[ota]`
/// releases directory). Every field but `id`, `file` and `published_ms` comes from the
/// release's verified, signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRecord {
    /// Release id: the first 16 hex digits of the SHA-256 of its signed manifest.
    pub id: String,
    /// Firmware version (SemVer).
    pub version: String,
    /// Hardware id it is built for.
    pub hardware_id: String,
    /// Anti-rollback security counter.
    pub security_counter: u32,
    /// Image size in bytes (the bundle is the signed manifest followed by the image).
    pub size: u64,
    /// SHA-256 of the image, hex.
    pub sha256: String,
    /// The bundle's file name in the releases directory.
    pub file: String,
    /// When it was published, ms since the epoch.
    pub published_ms: i64,
}

/// A stored rollout. `body` is the rollout state machine's state (JSON, owned by
/// `crate::release::Rollout`); `status` repeats its status for listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRecord {
    /// Rollout id.
    pub id: i64,
    /// Release id.
    pub release: String,
    /// `running`, `halted` or `completed`.
    pub status: String,
    /// Created, ms since the epoch.
    pub created_ms: i64,
    /// Last change, ms since the epoch.
    pub updated_ms: i64,
    /// The serialised state.
    pub body: String,
}

/// The latest verified OTA report of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceOta {
    /// Device id.
    pub device: String,
    /// Release id the report is about, when the device knows it.
    pub release: Option<String>,
    /// Firmware version the report is about.
    pub version: Option<String>,
    /// `downloading`, `verifying`, `trial`, `confirmed`, `rolled_back`, `rejected`, `failed`.
    pub state: String,
    /// Download progress in percent.
    pub progress: Option<u8>,
    /// Why it failed (stable code or message), for `rolled_back`, `rejected`, `failed`.
    pub reason: Option<String>,
    /// When the server received the report, ms since the epoch.
    pub updated_ms: i64,
}

fn unsupported<T>(what: &str) -> Result<T> {
    Err(crate::error::ServerError::Storage(format!(
        "this storage engine does not store {what} (OTA distribution)"
    )))
}

/// Storage engine interface.
pub trait Storage: Send {
    /// Writes a batch in one transaction; returns, per reading, whether it was new.
    fn commit(&mut self, batch: &Batch) -> Result<Vec<Inserted>>;
    /// The stored `sig` of `(device, seq)`, if stored.
    fn stored_sig(&mut self, device: &str, seq: u64) -> Result<Option<String>>;
    /// The highest stored seq per device (to seed replay windows at start-up).
    fn newest_seqs(&mut self) -> Result<Vec<(String, u64)>>;
    /// Registers (or updates) a device.
    fn upsert_device(&mut self, id: &str, legacy: bool, key_version: u32) -> Result<()>;
    /// Marks a device `active` or `revoked`; false when unknown.
    fn set_device_status(&mut self, id: &str, status: &str) -> Result<bool>;
    /// Records the firmware version a device reported.
    fn set_firmware(&mut self, id: &str, version: &str) -> Result<()>;
    /// Every registered device.
    fn devices(&mut self) -> Result<Vec<DeviceRecord>>;
    /// Rejections counted by reason.
    fn rejection_counts(&mut self) -> Result<Vec<(String, u64)>>;
    /// Readings of a device with `from_ms <= ts < to_ms`, after `after_seq`, oldest first.
    fn telemetry(
        &mut self,
        device: &str,
        from_ms: i64,
        to_ms: i64,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Reading>>;
    /// The newest rejections, newest first.
    fn recent_rejections(&mut self, limit: usize) -> Result<Vec<Rejection>>;
    /// Number of stored readings (all devices).
    fn reading_count(&mut self) -> Result<u64>;

    // --- OTA distribution (engines without it refuse: see `unsupported`) ---
    /// Adds a release to the index; false when its id is already there.
    fn insert_release(&mut self, release: &ReleaseRecord) -> Result<bool> {
        let _ = release;
        unsupported("firmware releases")
    }
    /// Every release, oldest first.
    fn releases(&mut self) -> Result<Vec<ReleaseRecord>> {
        unsupported("firmware releases")
    }
    /// Stores a new rollout; returns its id.
    fn insert_rollout(
        &mut self,
        release: &str,
        status: &str,
        now_ms: i64,
        body: &str,
    ) -> Result<i64> {
        let _ = (release, status, now_ms, body);
        unsupported("rollouts")
    }
    /// Replaces a rollout's state.
    fn update_rollout(&mut self, id: i64, status: &str, now_ms: i64, body: &str) -> Result<()> {
        let _ = (id, status, now_ms, body);
        unsupported("rollouts")
    }
    /// Every rollout, oldest first.
    fn rollouts(&mut self) -> Result<Vec<RolloutRecord>> {
        unsupported("rollouts")
    }
    /// Records a device's latest OTA report (replacing the previous one).
    fn set_device_ota(&mut self, report: &DeviceOta) -> Result<()> {
        let _ = report;
        unsupported("device OTA state")
    }
    /// The latest OTA report of every device that sent one.
    fn device_ota(&mut self) -> Result<Vec<DeviceOta>> {
        unsupported("device OTA state")
    }
}

/// A boxed engine is an engine (`ServerConfig::open_storage` returns `Box<dyn Storage>`).
impl<S: Storage + ?Sized> Storage for Box<S> {
    fn commit(&mut self, batch: &Batch) -> Result<Vec<Inserted>> {
        (**self).commit(batch)
    }
    fn stored_sig(&mut self, device: &str, seq: u64) -> Result<Option<String>> {
        (**self).stored_sig(device, seq)
    }
    fn newest_seqs(&mut self) -> Result<Vec<(String, u64)>> {
        (**self).newest_seqs()
    }
    fn upsert_device(&mut self, id: &str, legacy: bool, key_version: u32) -> Result<()> {
        (**self).upsert_device(id, legacy, key_version)
    }
    fn set_device_status(&mut self, id: &str, status: &str) -> Result<bool> {
        (**self).set_device_status(id, status)
    }
    fn set_firmware(&mut self, id: &str, version: &str) -> Result<()> {
        (**self).set_firmware(id, version)
    }
    fn devices(&mut self) -> Result<Vec<DeviceRecord>> {
        (**self).devices()
    }
    fn rejection_counts(&mut self) -> Result<Vec<(String, u64)>> {
        (**self).rejection_counts()
    }
    fn telemetry(
        &mut self,
        device: &str,
        from_ms: i64,
        to_ms: i64,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Reading>> {
        (**self).telemetry(device, from_ms, to_ms, after_seq, limit)
    }
    fn recent_rejections(&mut self, limit: usize) -> Result<Vec<Rejection>> {
        (**self).recent_rejections(limit)
    }
    fn reading_count(&mut self) -> Result<u64> {
        (**self).reading_count()
    }
    fn insert_release(&mut self, release: &ReleaseRecord) -> Result<bool> {
        (**self).insert_release(release)
    }
    fn releases(&mut self) -> Result<Vec<ReleaseRecord>> {
        (**self).releases()
    }
    fn insert_rollout(
        &mut self,
        release: &str,
        status: &str,
        now_ms: i64,
        body: &str,
    ) -> Result<i64> {
        (**self).insert_rollout(release, status, now_ms, body)
    }
    fn update_rollout(&mut self, id: i64, status: &str, now_ms: i64, body: &str) -> Result<()> {
        (**self).update_rollout(id, status, now_ms, body)
    }
    fn rollouts(&mut self) -> Result<Vec<RolloutRecord>> {
        (**self).rollouts()
    }
    fn set_device_ota(&mut self, report: &DeviceOta) -> Result<()> {
        (**self).set_device_ota(report)
    }
    fn device_ota(&mut self) -> Result<Vec<DeviceOta>> {
        (**self).device_ota()
    }
}
