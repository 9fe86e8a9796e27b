//! Device management and privacy from the ingest's configuration and registry
//! (`server.toml`, SQLite): silent devices, devices seen but not registered, revocations that
//! did not reach the PKI, fleet-wide legacy keys, key file permissions, and personal data in
//! stored telemetry (iotsec-server keeps readings without a retention limit).

use std::collections::BTreeSet;
use std::path::Path;

use iotsec_pki::{Inventory, Role};
use iotsec_server::ServerConfig;
use iotsec_server::store::Storage;
use iotsec_server::store::sqlite::Sqlite;
use time::OffsetDateTime;

use crate::catalog;
use crate::check::world_readable;
use crate::error::Result;
use crate::finding::{Location, OwaspIot};
use crate::report::Assessment;

/// Registry checks' settings.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// A registered device silent longer than this is reported.
    pub silent_after: time::Duration,
    /// Most devices whose telemetry is sampled.
    pub sample_devices: usize,
    /// Readings sampled per device.
    pub sample_readings: usize,
}

impl Default for RegistryOptions {
    /// 7 days, 100 devices, 20 readings each.
    fn default() -> Self {
        RegistryOptions {
            silent_after: time::Duration::days(7),
            sample_devices: 100,
            sample_readings: 20,
        }
    }
}

/// Assesses the server at `config_path`. `seen` are device ids observed on the broker (active
/// checks); `pki` the PKI inventory when `--pki` was given.
pub fn assess(
    config_path: &Path,
    now: OffsetDateTime,
    opts: &RegistryOptions,
    pki: Option<&Inventory>,
    seen: &BTreeSet<String>,
    a: &mut Assessment,
) -> Result<()> {
    let config = ServerConfig::load(config_path)?;
    for key in [
        Some(&config.master_key),
        Some(&config.key),
        config.legacy_key.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(mode) = world_readable(key) {
            a.push(catalog::SRV_KEY_PERMS.finding(Location::file(key), format!("mode {mode:o}")));
        }
    }
    a.covered(
        OwaspIot::I7,
        format!("server config {}", config_path.display()),
    );
    if !config.sqlite.exists() {
        a.note(format!(
            "registry {} does not exist yet: device management and privacy not assessed from it",
            config.sqlite.display()
        ));
        return Ok(());
    }
    let mut db = Sqlite::open(&config.sqlite)?;
    let devices = db.devices()?;
    let registry = config.sqlite.display().to_string();
    let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
    let registered: BTreeSet<&str> = devices.iter().map(|d| d.id.as_str()).collect();

    for d in devices.iter().filter(|d| d.status == "active") {
        let loc = Location::subject(format!("device {} ({registry})", d.id));
        match d.last_seen_ms {
            None => a.push(
                catalog::DEV_SILENT
                    .finding(loc.clone(), "registered, never sent an accepted message"),
            ),
            Some(t) if now_ms.saturating_sub(t) > opts.silent_after.whole_milliseconds() as i64 => {
                let days = now_ms.saturating_sub(t) / 86_400_000;
                a.push(catalog::DEV_SILENT.finding(
                    loc.clone(),
                    format!("last accepted message {days} days ago"),
                ));
            }
            Some(_) => {}
        }
        if d.legacy {
            a.push(catalog::DEV_LEGACY_KEY.finding(
                loc,
                "registered as legacy: accepts v1 messages signed with the fleet key",
            ));
        }
    }
    let mut unregistered: BTreeSet<String> = seen
        .iter()
        .filter(|id| !registered.contains(id.as_str()))
        .cloned()
        .collect();
    for r in db.recent_rejections(1000)? {
        if let Some(id) = r.device
            && !registered.contains(id.as_str())
        {
            unregistered.insert(id);
        }
    }
    for id in unregistered {
        a.push(catalog::DEV_UNREGISTERED.finding(
            Location::subject(format!("device {id}")),
            format!("{id} published on the broker (or was rejected by the ingest) but is not in {registry}"),
        ));
    }
    if let Some(inv) = pki {
        for d in devices.iter().filter(|d| d.status == "revoked") {
            if inv.current(&d.id, Role::Device).is_some() {
                a.push(catalog::DEV_REVOKED_CERT_ACTIVE.finding(
                    Location::subject(format!("device {}", d.id)),
                    format!("{} is revoked in {registry} but its certificate in the PKI inventory is not", d.id),
                ));
            }
        }
        for e in inv
            .certificates
            .iter()
            .filter(|e| e.role == Role::Device && e.revoked_at.is_none())
        {
            if !registered.contains(e.id.as_str()) {
                a.push(catalog::DEV_CERT_UNREGISTERED.finding(
                    Location::subject(format!("device {}", e.id)),
                    format!(
                        "certificate serial {} issued, device not in {registry}",
                        e.serial
                    ),
                ));
            }
        }
    }
    a.covered(
        OwaspIot::I8,
        format!("device registry {registry} ({} devices)", devices.len()),
    );
    a.covered(
        OwaspIot::I1,
        format!("device keys in {registry} (legacy fleet key use)"),
    );

    let mut sampled = 0usize;
    for d in devices.iter().take(opts.sample_devices) {
        let readings = db.telemetry(&d.id, i64::MIN, i64::MAX, None, opts.sample_readings)?;
        sampled += readings.len();
        if let Some((field, what)) = readings.iter().find_map(|r| personal_data(&r.payload)) {
            a.push(catalog::PRIV_PERSONAL_DATA.finding(
                Location::subject(format!("telemetry of device {} ({registry})", d.id)),
                format!("field {field:?} holds {what}; server.toml has no retention setting, readings are kept indefinitely"),
            ));
        }
    }
    if sampled > 0 {
        a.covered(
            OwaspIot::I6,
            format!("{sampled} stored readings sampled from {registry}"),
        );
    } else {
        a.note(format!(
            "{registry} holds no readings yet: privacy (I6) not assessed"
        ));
    }
    Ok(())
}

/// The first field of a JSON payload that looks like personal data: an e-mail address, a
/// phone-number field, or a location with 4 or more decimals (about 11 m or better).
pub fn personal_data(payload: &str) -> Option<(String, &'static str)> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let mut stack = vec![(String::new(), &value)];
    while let Some((name, v)) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    stack.push((k.clone(), v));
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    stack.push((name.clone(), v));
                }
            }
            serde_json::Value::String(s) if looks_like_email(s) => {
                return Some((name, "an e-mail address"));
            }
            serde_json::Value::String(_) if is_phone_field(&name) => {
                return Some((name, "a phone number"));
            }
            serde_json::Value::Number(n) if is_location_field(&name) => {
                let text = n.to_string();
                let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
                if decimals >= 4 {
                    return Some((name, "a precise location (4+ decimals)"));
                }
            }
            _ => {}
        }
    }
    None
}

fn looks_like_email(s: &str) -> bool {
    let Some((user, domain)) = s.split_once('@') else {
        return false;
    };
    !user.is_empty()
        && !user.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

fn is_phone_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("phone") || n == "tel" || n == "msisdn" || n == "mobile"
}

fn is_location_field(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "lat" | "lon" | "lng" | "long" | "latitude" | "longitude"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_heuristics() {
        assert!(personal_data(r#"{"temp": 21.5, "hum": 40}"#).is_none());
        assert_eq!(
            personal_data(r#"{"owner": "ana@example.org", "t": 1}"#).map(|x| x.0),
            Some("owner".into())
        );
        assert_eq!(
            personal_data(r#"{"gps": {"lat": 48.858844, "lon": 2.294351}}"#).map(|x| x.1),
            Some("a precise location (4+ decimals)")
        );
        assert!(personal_data(r#"{"lat": 48.9, "lon": 2.3}"#).is_none());
        assert!(personal_data("not json").is_none());
    }
}
