//! The rollout shell: rollouts and reports in storage, the tick the ingest runs, the notices
//! and acks it publishes, the reports it reads, and the JSON view for the CLI and the API.

use std::collections::BTreeMap;

use base64::Engine as _;
use iotsec_ota::SignedManifest;

use super::rollout::{Rollout, RolloutStatus, StageSize, Standing, Timing};
use super::{OtaConfig, find_release, stored_manifest};
use crate::error::{Result, ServerError};
use crate::store::{DeviceOta, ReleaseRecord, RolloutRecord, Storage};

/// Which devices a rollout targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// These, in this order (the first stage takes the first ones).
    Devices(Vec<String>),
    /// Every active registered device, by id.
    All,
}

/// A rollout to start.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRequest {
    /// Release id, id prefix or version.
    pub release: String,
    /// Devices.
    pub targets: Targets,
    /// Stage plan.
    pub stages: Vec<StageSize>,
    /// Failure threshold per stage.
    pub max_failure_rate: f64,
}

/// Stores a new rollout (the ingest of `iotsec serve` starts notifying within a tick).
///
/// # Errors
/// [`ServerError::Config`] for an unknown release or device, a bad plan; storage failures.
pub fn start_rollout(
    store: &mut dyn Storage,
    request: &RolloutRequest,
    now_ms: i64,
) -> Result<(i64, Rollout)> {
    let releases = store.releases()?;
    let release = find_release(&releases, &request.release)?;
    let registry = store.devices()?;
    let devices = match &request.targets {
        Targets::All => registry
            .iter()
            .filter(|d| d.status == "active")
            .map(|d| d.id.clone())
            .collect(),
        Targets::Devices(list) => {
            for id in list {
                match registry.iter().find(|d| &d.id == id) {
                    None => return Err(ServerError::Config(format!("unknown device {id}"))),
                    Some(d) if d.status != "active" => {
                        return Err(ServerError::Config(format!("device {id} is {}", d.status)));
                    }
                    Some(_) => {}
                }
            }
            list.clone()
        }
    };
    let rollout = Rollout::plan(
        &release.id,
        devices,
        &request.stages,
        request.max_failure_rate,
        now_ms,
    )?;
    let id = store.insert_rollout(
        &release.id,
        rollout.status.name(),
        now_ms,
        &rollout.to_json()?,
    )?;
    Ok((id, rollout))
}

/// A stored rollout, decoded.
#[derive(Debug, Clone)]
pub struct StoredRollout {
    /// The row.
    pub record: RolloutRecord,
    /// Its state.
    pub rollout: Rollout,
}

/// Every rollout in storage.
///
/// # Errors
/// Storage failures.
pub fn rollouts(store: &mut dyn Storage) -> Result<Vec<StoredRollout>> {
    store
        .rollouts()?
        .into_iter()
        .map(|record| {
            Ok(StoredRollout {
                rollout: Rollout::from_json(&record.body)?,
                record,
            })
        })
        .collect()
}

/// The latest report of every device, by id.
///
/// # Errors
/// Storage failures.
pub fn reports(store: &mut dyn Storage) -> Result<BTreeMap<String, DeviceOta>> {
    Ok(store
        .device_ota()?
        .into_iter()
        .map(|r| (r.device.clone(), r))
        .collect())
}

/// An MQTT message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Device.
    pub device: String,
    /// `devices/<id>/commands/ota`.
    pub topic: String,
    /// The notice JSON.
    pub payload: Vec<u8>,
}

/// The notice a device gets: the signed manifest (base64) and where to download the bundle.
pub fn notice_payload(
    rollout: i64,
    release: &ReleaseRecord,
    manifest: &SignedManifest,
    url: &str,
) -> Vec<u8> {
    serde_json::json!({
        "type": "update",
        "rollout": rollout,
        "release": release.id,
        "version": release.version,
        "url": url,
        "manifest": base64::engine::general_purpose::STANDARD.encode(manifest.as_bytes()),
    })
    .to_string()
    .into_bytes()
}

/// The acknowledgement of a stored report with sequence number `seq`.
pub fn ack_payload(seq: u64) -> Vec<u8> {
    serde_json::json!({ "type": "ack", "seq": seq })
        .to_string()
        .into_bytes()
}

/// One tick of every running rollout: step it with the devices' latest reports, store what
/// changed, and return the notices to publish.
///
/// # Errors
/// Storage failures; a release file that disappeared.
pub fn drive(store: &mut dyn Storage, ota: &OtaConfig, now_ms: i64) -> Result<Vec<Notice>> {
    // Only running rollouts are decoded: finished ones stay in storage for the record.
    let running = store
        .rollouts()?
        .into_iter()
        .filter(|r| r.status == RolloutStatus::Running.name())
        .map(|record| {
            Ok(StoredRollout {
                rollout: Rollout::from_json(&record.body)?,
                record,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if running.is_empty() {
        return Ok(Vec::new());
    }
    let latest = reports(store)?;
    let releases = store.releases()?;
    let timing = ota.timing();
    let mut notices = Vec::new();
    for StoredRollout {
        record,
        mut rollout,
    } in running
    {
        let step = rollout.step(now_ms, &latest, &timing);
        if step.changed {
            store.update_rollout(
                record.id,
                rollout.status.name(),
                now_ms,
                &rollout.to_json()?,
            )?;
            if rollout.status != RolloutStatus::Running {
                tracing::info!(rollout = record.id, release = %rollout.release, status = rollout.status.name(), halt = ?rollout.halt, "rollout ended");
            }
        }
        if step.notify.is_empty() {
            continue;
        }
        let release = releases
            .iter()
            .find(|r| r.id == rollout.release)
            .ok_or_else(|| {
                ServerError::Storage(format!("rollout {} names an unknown release", record.id))
            })?;
        let manifest = stored_manifest(ota, release)?;
        let payload = notice_payload(record.id, release, &manifest, &ota.release_url(&release.id));
        for device in step.notify {
            tracing::info!(rollout = record.id, %device, release = %release.id, version = %release.version, "notifying device");
            notices.push(Notice {
                topic: iotsec_broker::topic::ota_command(&device),
                device,
                payload: payload.clone(),
            });
        }
    }
    Ok(notices)
}

/// The device's OTA report from a verified payload: `{"state": .., "release": .., "version":
/// .., "progress": .., "reason": ..}`. `None` when it is not a report (the ingest counts it
/// as malformed).
pub fn parse_report(device: &str, payload: &str, now_ms: i64) -> Option<DeviceOta> {
    const STATES: &[&str] = &[
        "downloading",
        "verifying",
        "trial",
        "confirmed",
        "rolled_back",
        "rejected",
        "failed",
    ];
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    let text = |key: &str, max: usize| -> Option<Option<String>> {
        match v.get(key) {
            None | Some(serde_json::Value::Null) => Some(None),
            Some(serde_json::Value::String(s)) if s.len() <= max => Some(Some(s.clone())),
            Some(_) => None,
        }
    };
    let state = text("state", 32)??;
    if !STATES.contains(&state.as_str()) {
        return None;
    }
    let progress = match v.get("progress") {
        None | Some(serde_json::Value::Null) => None,
        Some(p) => Some(u8::try_from(p.as_u64()?).ok().filter(|p| *p <= 100)?),
    };
    Some(DeviceOta {
        device: device.to_string(),
        release: text("release", 64)?,
        version: text("version", 64)?,
        state,
        progress,
        reason: text("reason", 256)?,
        updated_ms: now_ms,
    })
}

/// A JSON view of a rollout for the CLI and the API: its plan, status and every device's
/// standing.
pub fn rollout_json(
    stored: &StoredRollout,
    latest: &BTreeMap<String, DeviceOta>,
    now_ms: i64,
    timing: &Timing,
) -> serde_json::Value {
    let r = &stored.rollout;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let devices: Vec<serde_json::Value> = r
        .devices()
        .map(|(stage, d)| {
            let s = r.standing(d, latest.get(d), now_ms, timing);
            let key = match &s {
                Standing::Waiting => "waiting",
                Standing::Notified | Standing::Updating { .. } => "updating",
                Standing::Confirmed => "confirmed",
                Standing::Failed { .. } => "failed",
            };
            *counts.entry(key).or_default() += 1;
            let (progress, reason) = match &s {
                Standing::Updating { progress, .. } => (*progress, None),
                Standing::Failed { reason, .. } => (None, reason.clone()),
                _ => (None, None),
            };
            serde_json::json!({
                "device": d,
                "stage": stage + 1,
                "state": s.name(),
                "progress": progress,
                "reason": reason,
                "notified_ms": r.notified.get(d).map(|n| n.first_ms),
                "notices": r.notified.get(d).map_or(0, |n| n.count),
            })
        })
        .collect();
    serde_json::json!({
        "id": stored.record.id,
        "release": r.release,
        "status": r.status.name(),
        "stage": r.stage + 1,
        "stages": r.stages.iter().map(Vec::len).collect::<Vec<_>>(),
        "max_failure_rate": r.max_failure_rate,
        "halt": r.halt.map(|h| serde_json::json!({
            "stage": h.stage + 1, "failed": h.failed, "total": h.total })),
        "created_ms": stored.record.created_ms,
        "updated_ms": stored.record.updated_ms,
        "counts": counts,
        "devices": devices,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_parsed_strictly() {
        let ok = parse_report(
            "d",
            r#"{"state":"downloading","release":"ab","version":"2.0.0","progress":42}"#,
            9,
        )
        .unwrap();
        assert_eq!(
            (ok.state.as_str(), ok.progress, ok.updated_ms),
            ("downloading", Some(42), 9)
        );
        let rb = parse_report(
            "d",
            r#"{"state":"rolled_back","reason":"deadline_passed"}"#,
            1,
        )
        .unwrap();
        assert_eq!(rb.reason.as_deref(), Some("deadline_passed"));
        for bad in [
            r#"{"state":"exploded"}"#,
            r#"{"state":"downloading","progress":101}"#,
            r#"{"state":"downloading","progress":-1}"#,
            r#"{"state":1}"#,
            r#"{"release":"x"}"#,
            r#"[1]"#,
        ] {
            assert!(parse_report("d", bad, 0).is_none(), "{bad}");
        }
        let long = format!(r#"{{"state":"failed","reason":"{}"}}"#, "x".repeat(300));
        assert!(parse_report("d", &long, 0).is_none());
    }
}
