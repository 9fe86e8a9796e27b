//! Firmware distribution: the release store and the rollout state machine.
//!
//! * **Releases.** `iotsec fw publish FILE` verifies a bundle (signed manifest + image) against
//!   the keys in `[ota] trust` and the fleet's hardware ids (`[ota] hardware`), copies it into
//!   the releases directory (temp file, re-verified from disk, fsync, rename: the stored bytes
//!   are the verified bytes), and indexes it in storage ([`ReleaseRecord`]) under an id: the
//!   first 16 hex digits of the SHA-256 of its signed manifest.
//! * **Rollouts.** [`Rollout`] is a state machine without I/O: stages of devices, a failure
//!   threshold, the current stage, who was told when. [`Rollout::step`] takes the devices'
//!   latest OTA reports and the time and returns whom to notify; it advances a stage when every
//!   device of the stage confirmed or failed, and halts the rollout as soon as the failures of
//!   a stage exceed `max_failure_rate` of its size, so later stages are never told. [`drive`]
//!   is the shell the ingest runs every tick: load, step, store, and hand back the MQTT notices.
//! * **Notices** go to `devices/<id>/commands/ota` as `{"type":"update", "release", "version",
//!   "url", "manifest"}`; `manifest` is the signed manifest in base64, which the device verifies
//!   against its own trusted keys before it downloads anything from `url` (the server's
//!   `GET /firmware/{release}`, mutual TLS). Reports come back signed on `devices/<id>/ota`
//!   and are acknowledged with `{"type":"ack","seq":N}` once stored.
//!
//! ```toml
//! [ota]
//! releases = "releases"              # where published bundles are kept
//! trust = ["keys/firmware.pub"]      # releases must be signed by one of these keys
//! hardware = ["acme-gw"]             # the fleet's hardware ids (publish refuses others)
//! url = "https://iot.example.com:8443"   # base URL devices download from (default: [web] listen)
//! renotify_secs = 60                 # tell a device again when it has not answered
//! stage_timeout_secs = 3600          # a device silent this long in a stage counts as failed
//! ```
//!
//! Data enters as bundle files (`publish`), rollout requests (CLI, HTTPS API) and verified
//! device reports (the ingest); it leaves as files under the releases directory, rows in
//! storage and notice payloads.

use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};

use iotsec_ota::file::{ImageSource, read_signed_manifest, verify_file, write_atomic_with};
use iotsec_ota::{Fault, HardwareId, KeySet, SignedManifest, keyfile};
use serde::Deserialize;

use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::store::{ReleaseRecord, Storage};

mod drive;
mod rollout;

pub use drive::{
    Notice, RolloutRequest, StoredRollout, Targets, ack_payload, drive, notice_payload,
    parse_report, reports, rollout_json, rollouts, start_rollout,
};
pub use rollout::{
    FAILED_STATES, Halt, Notified, Rollout, RolloutStatus, StageSize, Standing, Step, Timing,
    parse_stages,
};

/// Default `[ota] renotify_secs`.
pub const DEFAULT_RENOTIFY_SECS: u64 = 60;
/// Default `[ota] stage_timeout_secs`.
pub const DEFAULT_STAGE_TIMEOUT_SECS: u64 = 3600;
/// Default failure threshold of a stage.
pub const DEFAULT_MAX_FAILURE_RATE: f64 = 0.2;
/// Default stages: one canary device, then 10 %, then everyone.
pub const DEFAULT_STAGES: &str = "1,10%,100%";

// --- configuration -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOta {
    #[serde(default = "default_releases")]
    releases: PathBuf,
    trust: Vec<PathBuf>,
    #[serde(default)]
    hardware: Vec<String>,
    url: Option<String>,
    #[serde(default = "default_renotify")]
    renotify_secs: u64,
    #[serde(default = "default_stage_timeout")]
    stage_timeout_secs: u64,
}

fn default_releases() -> PathBuf {
    PathBuf::from("releases")
}
fn default_renotify() -> u64 {
    DEFAULT_RENOTIFY_SECS
}
fn default_stage_timeout() -> u64 {
    DEFAULT_STAGE_TIMEOUT_SECS
}

/// The checked `[ota]` section (paths resolved against the directory of `server.toml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtaConfig {
    /// Releases directory.
    pub releases: PathBuf,
    /// Public keys a release must be signed with (firmware role).
    pub trust: Vec<PathBuf>,
    /// The fleet's hardware ids; empty accepts any.
    pub hardware: Vec<HardwareId>,
    /// Base URL devices download from (`https://host[:port]`), without a trailing slash.
    pub url: String,
    /// When to notify a silent device again.
    pub renotify_ms: i64,
    /// How long a stage waits for a device.
    pub stage_timeout_ms: i64,
}

fn secs_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

impl OtaConfig {
    /// The `[ota]` section of `config`, checked; `None` when there is none. Reads no file.
    ///
    /// # Errors
    /// [`ServerError::Config`] naming the key.
    pub fn of_server(config: &ServerConfig) -> Result<Option<OtaConfig>> {
        let Some(table) = &config.ota else {
            return Ok(None);
        };
        let bad =
            |msg: String| ServerError::Config(format!("{}: [ota] {msg}", config.path.display()));
        let raw: RawOta = table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
        if raw.trust.is_empty() {
            return Err(bad("trust: name at least one public key".into()));
        }
        let hardware = raw
            .hardware
            .iter()
            .map(|h| HardwareId::new(h).map_err(|e| bad(format!("hardware `{h}`: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let url = match raw.url {
            Some(url) => check_url(&url).map_err(|e| bad(format!("url: {e}")))?,
            None => url_from_web(config).map_err(|e| bad(format!("url: {e}")))?,
        };
        if raw.renotify_secs == 0 {
            return Err(bad("renotify_secs must be at least 1".into()));
        }
        let base = config.base_dir();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        Ok(Some(OtaConfig {
            releases: resolve(&raw.releases),
            trust: raw.trust.iter().map(|p| resolve(p)).collect(),
            hardware,
            url,
            renotify_ms: secs_ms(raw.renotify_secs),
            stage_timeout_ms: secs_ms(raw.stage_timeout_secs),
        }))
    }

    /// Like [`OtaConfig::of_server`], but an absent section is an error saying what to add.
    ///
    /// # Errors
    /// [`ServerError::Config`].
    pub fn require(config: &ServerConfig) -> Result<OtaConfig> {
        Self::of_server(config)?.ok_or_else(|| {
            ServerError::Config(format!(
                "{}: no [ota] section (releases, trust, hardware, url): firmware distribution \
                 is not configured",
                config.path.display()
            ))
        })
    }

    /// The keys releases must be signed with (read from the `trust` files).
    ///
    /// # Errors
    /// [`ServerError::Config`] for an unreadable or unusable key file.
    pub fn keys(&self) -> Result<KeySet> {
        let keys = self
            .trust
            .iter()
            .map(|p| keyfile::read_public_key(p).map_err(|e| ServerError::Config(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        KeySet::factory(keys).map_err(|e| ServerError::Config(format!("[ota] trust: {e}")))
    }

    /// The bundle file of a release.
    pub fn bundle_path(&self, release: &ReleaseRecord) -> PathBuf {
        self.releases.join(&release.file)
    }

    /// The URL a device downloads `release` from.
    pub fn release_url(&self, release: &str) -> String {
        format!("{}/firmware/{release}", self.url)
    }

    /// Step timings for [`Rollout::step`].
    pub fn timing(&self) -> Timing {
        Timing {
            renotify_ms: self.renotify_ms,
            stage_timeout_ms: self.stage_timeout_ms,
        }
    }
}

/// `https://host[:port]` (no path, query or user info), without a trailing slash.
fn check_url(url: &str) -> std::result::Result<String, String> {
    let url = url.trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .ok_or("must start with https:// (devices download over TLS only)")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "`{url}` must be https://host[:port] without a path"
        ));
    }
    Ok(url.to_string())
}

/// `https://localhost:<port>` from `[web] listen` when it is a loopback address (a public
/// address needs its name: set `[ota] url`).
fn url_from_web(config: &ServerConfig) -> std::result::Result<String, String> {
    let listen = config
        .web
        .as_ref()
        .and_then(|w| w.get("listen"))
        .and_then(|l| l.as_str())
        .ok_or("not set, and there is no [web] listen to derive it from")?;
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| format!("not set, and [web] listen `{listen}` is not an address"))?;
    if addr.ip().is_loopback() {
        Ok(format!("https://localhost:{}", addr.port()))
    } else {
        Err("set it to the name devices reach the HTTPS server by (its certificate's name)".into())
    }
}

// --- releases --------------------------------------------------------------------------------

/// Why `publish` refused a file. The file is not stored.
#[derive(Debug)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a validly signed bundle: malformed, signed by an untrusted key, bad signature, wrong
    /// length or hash.
    Invalid(iotsec_ota::Error),
    /// A detached manifest: devices download one file, so publish the bundle.
    Detached,
    /// Built for hardware that is not in `[ota] hardware`.
    UnknownHardware {
        /// The manifest's hardware id.
        offered: String,
        /// The fleet's.
        fleet: Vec<String>,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(e) => e.fmt(f),
            Refusal::Detached => f.write_str(
                "this is a detached manifest: publish the bundle (iotsec fw sign without --detached)",
            ),
            Refusal::UnknownHardware { offered, fleet } => write!(
                f,
                "firmware is for hardware `{offered}`, the fleet is {} ([ota] hardware)",
                fleet.join(", ")
            ),
        }
    }
}

/// What `publish` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Stored and indexed now.
    New(ReleaseRecord),
    /// The same signed manifest was already published (nothing changed).
    Existing(ReleaseRecord),
}

/// The release id of a signed manifest.
pub fn release_id(signed: &SignedManifest) -> String {
    hex::encode(&signed.digest()[..8])
}

fn ota_err(e: iotsec_ota::Error) -> std::result::Result<ServerError, Refusal> {
    if e.fault() == Fault::Environment {
        Ok(ServerError::Storage(format!("firmware file: {e}")))
    } else {
        Err(Refusal::Invalid(e))
    }
}

/// `iotsec fw publish FILE`: verifies the bundle at `file` (signature by an `[ota] trust` key,
/// hardware id in `[ota] hardware`, exact length, SHA-256), stores it in the releases
/// directory and indexes it. The copy is verified again from disk before it is renamed into
/// place, so the stored bundle is the verified one. The outer `Err` is an environment failure.
///
/// # Errors
/// [`ServerError`] for I/O, configuration and storage failures.
pub fn publish(
    ota: &OtaConfig,
    store: &mut dyn Storage,
    file: &Path,
    now_ms: i64,
) -> Result<std::result::Result<Published, Refusal>> {
    let keys = ota.keys()?;
    let io = |source| ServerError::Io {
        path: file.to_path_buf(),
        source,
    };
    let mut source = std::fs::File::open(file).map_err(io)?;
    let signed = match read_signed_manifest(&mut source, file).and_then(|s| {
        s.verify(&keys)?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => return ota_err(e).map_or_else(|r| Ok(Err(r)), Err),
    };
    let manifest = signed.manifest();
    if !ota.hardware.is_empty() && !ota.hardware.contains(&manifest.hardware_id) {
        return Ok(Err(Refusal::UnknownHardware {
            offered: manifest.hardware_id.to_string(),
            fleet: ota.hardware.iter().map(ToString::to_string).collect(),
        }));
    }
    let mut rest = [0u8; 1];
    if source.read(&mut rest).map_err(io)? == 0 {
        return Ok(Err(Refusal::Detached));
    }
    let id = release_id(&signed);
    if let Some(existing) = store.releases()?.into_iter().find(|r| r.id == id)
        && ota.bundle_path(&existing).exists()
    {
        return Ok(Ok(Published::Existing(existing)));
    }
    std::fs::create_dir_all(&ota.releases).map_err(|source| ServerError::Io {
        path: ota.releases.clone(),
        source,
    })?;
    let name = format!("{id}.fw");
    let target = ota.releases.join(&name);
    source.rewind().map_err(io)?;
    let stored = write_atomic_with(&target, 0o644, |out, tmp| {
        std::io::copy(&mut source, out).map_err(|e| iotsec_ota::Error::io("copy to", tmp, e))?;
        // What devices get is what is on disk: verify the copy, not the source.
        verify_file(tmp, ImageSource::Bundled, &keys)
    });
    let stored = match stored {
        Ok(s) => s,
        Err(e) => return ota_err(e).map_or_else(|r| Ok(Err(r)), Err),
    };
    if stored.digest() != signed.digest() {
        // The source changed between the two reads; nothing verified may be half-published.
        let _ = std::fs::remove_file(&target);
        return Ok(Err(Refusal::Invalid(iotsec_ota::Error::HashMismatch)));
    }
    let m = stored.manifest();
    let record = ReleaseRecord {
        id,
        version: m.version.to_string(),
        hardware_id: m.hardware_id.to_string(),
        security_counter: m.security_counter,
        size: m.image_size,
        sha256: hex::encode(m.image_sha256),
        file: name,
        published_ms: now_ms,
    };
    if store.insert_release(&record)? {
        Ok(Ok(Published::New(record)))
    } else {
        Ok(Ok(Published::Existing(record)))
    }
}

/// Finds a release by id, unique id prefix (at least 4 digits) or unique version.
///
/// # Errors
/// [`ServerError::Config`] saying what did not match.
pub fn find_release<'r>(releases: &'r [ReleaseRecord], name: &str) -> Result<&'r ReleaseRecord> {
    if let Some(r) = releases.iter().find(|r| r.id == name) {
        return Ok(r);
    }
    let by_prefix: Vec<_> = if name.len() >= 4 {
        releases.iter().filter(|r| r.id.starts_with(name)).collect()
    } else {
        Vec::new()
    };
    let by_version: Vec<_> = releases.iter().filter(|r| r.version == name).collect();
    match (by_prefix.as_slice(), by_version.as_slice()) {
        ([r], []) | ([], [r]) => Ok(r),
        ([], []) => Err(ServerError::Config(format!(
            "no published release `{name}` (iotsec fw publish FILE)"
        ))),
        _ => Err(ServerError::Config(format!(
            "`{name}` names several releases: use the release id"
        ))),
    }
}

/// The signed manifest at the head of a stored release (what a notice carries).
///
/// # Errors
/// [`ServerError::Io`] / [`ServerError::Storage`] when the file is gone or damaged.
pub fn stored_manifest(ota: &OtaConfig, release: &ReleaseRecord) -> Result<SignedManifest> {
    let path = ota.bundle_path(release);
    let mut file = std::fs::File::open(&path).map_err(|source| ServerError::Io {
        path: path.clone(),
        source,
    })?;
    read_signed_manifest(&mut file, &path)
        .map_err(|e| ServerError::Storage(format!("release {}: {e}", release.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_plain_https_origins() {
        assert_eq!(check_url("https://h:8443/").unwrap(), "https://h:8443");
        for bad in [
            "http://h",
            "https://",
            "https://h/x",
            "https://u@h",
            "ftp://h",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn releases_are_found_by_id_prefix_or_version() {
        let rel = |id: &str, v: &str| ReleaseRecord {
            id: id.into(),
            version: v.into(),
            hardware_id: "hw".into(),
            security_counter: 1,
            size: 1,
            sha256: String::new(),
            file: String::new(),
            published_ms: 0,
        };
        let all = vec![
            rel("aaaa1111", "1.0.0"),
            rel("aaaa2222", "2.0.0"),
            rel("bbbb3333", "2.0.0"),
        ];
        assert_eq!(find_release(&all, "aaaa1111").unwrap().version, "1.0.0");
        assert_eq!(find_release(&all, "bbbb").unwrap().id, "bbbb3333");
        assert_eq!(find_release(&all, "1.0.0").unwrap().id, "aaaa1111");
        assert!(find_release(&all, "aaaa").is_err(), "ambiguous prefix");
        assert!(find_release(&all, "2.0.0").is_err(), "ambiguous version");
        assert!(find_release(&all, "9.9.9").is_err());
    }
}
