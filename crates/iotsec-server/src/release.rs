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

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use iotsec_ota::file::{ImageSource, read_signed_manifest, verify_file, write_atomic_with};
use iotsec_ota::{Fault, HardwareId, KeySet, SignedManifest, keyfile};
use serde::{Deserialize, Serialize};

use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::store::{DeviceOta, ReleaseRecord, RolloutRecord, Storage};

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

// --- the rollout state machine ---------------------------------------------------------------

/// One entry of a stage plan: the stage grows the rollout to this many devices in total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StageSize {
    /// This many devices in total.
    Count(usize),
    /// This percentage of the devices in total (rounded up).
    Percent(f64),
}

/// Parses `1,10%,100%`: cumulative sizes, each a count or a percentage.
///
/// # Errors
/// [`ServerError::Config`] for anything else.
pub fn parse_stages(text: &str) -> Result<Vec<StageSize>> {
    let bad = |why: &str| ServerError::Config(format!("stages `{text}`: {why}"));
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim) {
        let size = match part.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad("expected N or N%"))?;
                if !(p > 0.0 && p <= 100.0) {
                    return Err(bad("a percentage must be above 0 and at most 100"));
                }
                StageSize::Percent(p)
            }
            None => {
                let n: usize = part.parse().map_err(|_| bad("expected N or N%"))?;
                if n == 0 {
                    return Err(bad("a stage needs at least one device"));
                }
                StageSize::Count(n)
            }
        };
        out.push(size);
    }
    if out.is_empty() || out.len() > 32 {
        return Err(bad("1 to 32 stages"));
    }
    Ok(out)
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Devices of the current stage are being updated.
    Running,
    /// A stage failed over the threshold: no further device is told.
    Halted,
    /// Every stage finished within the threshold.
    Completed,
}

impl RolloutStatus {
    /// The stored name.
    pub fn name(self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::Halted => "halted",
            RolloutStatus::Completed => "completed",
        }
    }
}

/// When a device of the rollout was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notified {
    /// First notice, ms (reports from before it do not count for this rollout).
    pub first_ms: i64,
    /// Latest notice, ms.
    pub last_ms: i64,
    /// Notices sent.
    pub count: u32,
}

/// Why a rollout halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// The stage (0-based).
    pub stage: usize,
    /// Its failed devices when it halted.
    pub failed: usize,
    /// Its size.
    pub total: usize,
}

/// A rollout: the state machine, without I/O. Serialised into storage as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    /// Release id.
    pub release: String,
    /// Devices per stage (disjoint, in order).
    pub stages: Vec<Vec<String>>,
    /// A stage whose failed / size exceeds this halts the rollout.
    pub max_failure_rate: f64,
    /// The current stage (0-based).
    pub stage: usize,
    /// Running, halted, completed.
    pub status: RolloutStatus,
    /// When the current stage started, ms.
    pub stage_started_ms: i64,
    /// Devices told so far.
    pub notified: BTreeMap<String, Notified>,
    /// Set when halted.
    pub halt: Option<Halt>,
}

/// Timings of [`Rollout::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// A device without any report since its notice is told again after this long.
    pub renotify_ms: i64,
    /// A device without an outcome this long after its stage started counts as failed.
    pub stage_timeout_ms: i64,
}

/// What one step decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Devices to send the notice to now.
    pub notify: Vec<String>,
    /// The state changed (store it).
    pub changed: bool,
}

/// A device's standing in a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not told (its stage has not started, or the rollout halted before).
    Waiting,
    /// Told; no report since.
    Notified,
    /// Reported progress (`downloading`, `verifying`, `trial`).
    Updating {
        /// The reported state.
        state: String,
        /// Download progress.
        progress: Option<u8>,
    },
    /// Confirmed the release.
    Confirmed,
    /// Rolled back, rejected the notice, failed, or timed out.
    Failed {
        /// The reported state (`rolled_back`, `rejected`, `failed`) or `timed_out`.
        state: String,
        /// Why.
        reason: Option<String>,
    },
}

impl Standing {
    /// Stable name.
    pub fn name(&self) -> &str {
        match self {
            Standing::Waiting => "waiting",
            Standing::Notified => "notified",
            Standing::Updating { state, .. } | Standing::Failed { state, .. } => state,
            Standing::Confirmed => "confirmed",
        }
    }

    fn done(&self) -> bool {
        matches!(self, Standing::Confirmed | Standing::Failed { .. })
    }
}

/// Reported states that end an update.
pub const FAILED_STATES: &[&str] = &["rolled_back", "rejected", "failed"];

impl Rollout {
    /// Plans a rollout of `release` to `devices` (in order) in `stages`.
    ///
    /// # Errors
    /// [`ServerError::Config`]: no devices, duplicates, a threshold outside 0..=1, stages that
    /// shrink.
    pub fn plan(
        release: &str,
        devices: Vec<String>,
        stages: &[StageSize],
        max_failure_rate: f64,
        now_ms: i64,
    ) -> Result<Rollout> {
        let bad = |why: String| ServerError::Config(why);
        if devices.is_empty() {
            return Err(bad("a rollout needs at least one device".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = devices.iter().find(|d| !seen.insert(d.as_str())) {
            return Err(bad(format!("device {dup} is listed twice")));
        }
        if !(0.0..=1.0).contains(&max_failure_rate) {
            return Err(bad("max failure rate must be between 0 and 1".into()));
        }
        let n = devices.len();
        let mut cut = Vec::with_capacity(stages.len() + 1);
        let mut last = 0usize;
        for s in stages {
            let total = match *s {
                StageSize::Count(c) => c.min(n),
                StageSize::Percent(p) => {
                    // ceil(p% of n), exact for the small integers involved.
                    let t = (p * n as f64 / 100.0).ceil();
                    if t.is_finite() && t > 0.0 {
                        (t as usize).min(n)
                    } else {
                        1
                    }
                }
            };
            if total < last {
                return Err(bad(
                    "stage sizes are cumulative and must not shrink (e.g. 1,10%,100%)".into(),
                ));
            }
            if total > last {
                cut.push(total);
                last = total;
            }
        }
        if last < n {
            cut.push(n);
        }
        let mut stages_out = Vec::with_capacity(cut.len());
        let mut from = 0;
        for to in cut {
            stages_out.push(devices[from..to].to_vec());
            from = to;
        }
        Ok(Rollout {
            release: release.to_string(),
            stages: stages_out,
            max_failure_rate,
            stage: 0,
            status: RolloutStatus::Running,
            stage_started_ms: now_ms,
            notified: BTreeMap::new(),
            halt: None,
        })
    }

    /// Every device of the rollout, in stage order.
    pub fn devices(&self) -> impl Iterator<Item = (usize, &String)> {
        self.stages
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.iter().map(move |d| (i, d)))
    }

    /// Where `device` stands, given its latest report.
    pub fn standing(
        &self,
        device: &str,
        report: Option<&DeviceOta>,
        now_ms: i64,
        timing: &Timing,
    ) -> Standing {
        let Some(told) = self.notified.get(device) else {
            return Standing::Waiting;
        };
        let fresh = report.filter(|r| {
            r.release.as_deref() == Some(self.release.as_str()) && r.updated_ms >= told.first_ms
        });
        let standing = match fresh {
            None => Standing::Notified,
            Some(r) if r.state == "confirmed" => Standing::Confirmed,
            Some(r) if FAILED_STATES.contains(&r.state.as_str()) => Standing::Failed {
                state: r.state.clone(),
                reason: r.reason.clone(),
            },
            Some(r) => Standing::Updating {
                state: r.state.clone(),
                progress: r.progress,
            },
        };
        let stage_of_device = self
            .stages
            .iter()
            .position(|s| s.iter().any(|d| d == device));
        let in_current =
            stage_of_device == Some(self.stage) && self.status == RolloutStatus::Running;
        if !standing.done()
            && in_current
            && now_ms.saturating_sub(self.stage_started_ms) >= timing.stage_timeout_ms
        {
            return Standing::Failed {
                state: "timed_out".into(),
                reason: Some(format!(
                    "no outcome within {} s of the stage's start",
                    timing.stage_timeout_ms / 1000
                )),
            };
        }
        standing
    }

    /// Advances the state machine: notifies the current stage's devices (and, after
    /// `renotify_ms` of silence, again), halts when the stage's failures exceed the threshold,
    /// moves to the next stage when every device of this one confirmed or failed.
    pub fn step(
        &mut self,
        now_ms: i64,
        reports: &BTreeMap<String, DeviceOta>,
        timing: &Timing,
    ) -> Step {
        let mut step = Step::default();
        while self.status == RolloutStatus::Running {
            let Some(devices) = self.stages.get(self.stage).cloned() else {
                self.status = RolloutStatus::Completed;
                step.changed = true;
                break;
            };
            let (mut failed, mut done) = (0usize, 0usize);
            for d in &devices {
                match self.standing(d, reports.get(d), now_ms, timing) {
                    Standing::Waiting => {
                        self.notified.insert(
                            d.clone(),
                            Notified {
                                first_ms: now_ms,
                                last_ms: now_ms,
                                count: 1,
                            },
                        );
                        step.notify.push(d.clone());
                        step.changed = true;
                    }
                    Standing::Notified => {
                        if let Some(n) = self.notified.get_mut(d)
                            && now_ms.saturating_sub(n.last_ms) >= timing.renotify_ms
                        {
                            n.last_ms = now_ms;
                            n.count = n.count.saturating_add(1);
                            step.notify.push(d.clone());
                            step.changed = true;
                        }
                    }
                    Standing::Updating { .. } => {}
                    Standing::Confirmed => done += 1,
                    Standing::Failed { .. } => {
                        done += 1;
                        failed += 1;
                    }
                }
            }
            let total = devices.len();
            if failed as f64 > self.max_failure_rate * total as f64 {
                self.status = RolloutStatus::Halted;
                self.halt = Some(Halt {
                    stage: self.stage,
                    failed,
                    total,
                });
                step.changed = true;
                break;
            }
            if done < total {
                break;
            }
            self.stage += 1;
            self.stage_started_ms = now_ms;
            step.changed = true;
            if self.stage >= self.stages.len() {
                self.status = RolloutStatus::Completed;
                self.stage = self.stages.len() - 1;
            }
        }
        step
    }

    /// JSON for storage.
    ///
    /// # Errors
    /// Never in practice (plain data); [`ServerError::Storage`] otherwise.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| ServerError::Storage(format!("rollout: {e}")))
    }

    /// From storage.
    ///
    /// # Errors
    /// [`ServerError::Storage`] for a body this version cannot read.
    pub fn from_json(body: &str) -> Result<Rollout> {
        serde_json::from_str(body).map_err(|e| ServerError::Storage(format!("rollout: {e}")))
    }
}

// --- the shell: storage and notices ---------------------------------------------------------

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
    let running: Vec<StoredRollout> = rollouts(store)?
        .into_iter()
        .filter(|r| r.rollout.status == RolloutStatus::Running)
        .collect();
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

    const T: Timing = Timing {
        renotify_ms: 60_000,
        stage_timeout_ms: 3_600_000,
    };

    fn devices(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("d{i:02}")).collect()
    }

    fn report(device: &str, state: &str, at: i64) -> DeviceOta {
        DeviceOta {
            device: device.into(),
            release: Some("rel".into()),
            version: Some("2.0.0".into()),
            state: state.into(),
            progress: None,
            reason: (state == "rolled_back").then(|| "deadline_passed".into()),
            updated_ms: at,
        }
    }

    #[test]
    fn stages_are_cumulative_and_never_empty() {
        let plan = |n, s: &str| {
            Rollout::plan("rel", devices(n), &parse_stages(s).unwrap(), 0.2, 0)
                .unwrap()
                .stages
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>()
        };
        assert_eq!(plan(50, "1,10%,100%"), vec![1, 4, 45]);
        assert_eq!(
            plan(3, "1,10%,100%"),
            vec![1, 2],
            "10% of 3 rounds up to the canary"
        );
        assert_eq!(plan(1, "1,10%,100%"), vec![1]);
        assert_eq!(plan(5, "2"), vec![2, 3], "the rest always follows");
        assert_eq!(plan(4, "100%"), vec![4]);
        assert!(Rollout::plan("r", devices(3), &parse_stages("5,2").unwrap(), 0.2, 0).is_err());
        assert!(Rollout::plan("r", vec![], &[StageSize::Count(1)], 0.2, 0).is_err());
        assert!(
            Rollout::plan(
                "r",
                vec!["a".into(), "a".into()],
                &[StageSize::Count(1)],
                0.2,
                0
            )
            .is_err()
        );
        assert!(Rollout::plan("r", devices(2), &[StageSize::Count(1)], 1.5, 0).is_err());
        for bad in ["", "0", "1,x", "150%", "-1", "0%"] {
            assert!(parse_stages(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stage_that_fails_over_the_threshold_halts_and_later_stages_are_never_told() {
        let mut r =
            Rollout::plan("rel", devices(3), &parse_stages("1,100%").unwrap(), 0.2, 0).unwrap();
        let mut reports = BTreeMap::new();
        let s = r.step(0, &reports, &T);
        assert_eq!(s.notify, vec!["d01"]);
        // Progress, then a rollback.
        reports.insert("d01".into(), report("d01", "downloading", 10));
        assert_eq!(r.step(20, &reports, &T), Step::default());
        reports.insert("d01".into(), report("d01", "rolled_back", 30));
        let s = r.step(40, &reports, &T);
        assert!(s.notify.is_empty() && s.changed);
        assert_eq!(r.status, RolloutStatus::Halted);
        assert_eq!(
            r.halt,
            Some(Halt {
                stage: 0,
                failed: 1,
                total: 1
            })
        );
        // Nothing more, ever.
        assert_eq!(r.step(10_000_000, &reports, &T), Step::default());
        assert!(!r.notified.contains_key("d02") && !r.notified.contains_key("d03"));
    }

    #[test]
    fn confirmed_stages_advance_and_failures_within_the_threshold_are_tolerated() {
        let mut r =
            Rollout::plan("rel", devices(6), &parse_stages("1,100%").unwrap(), 0.2, 0).unwrap();
        let mut reports = BTreeMap::new();
        r.step(0, &reports, &T);
        reports.insert("d01".into(), report("d01", "confirmed", 5));
        let s = r.step(10, &reports, &T);
        assert_eq!(s.notify, devices(6)[1..].to_vec());
        assert_eq!(r.stage, 1);
        // 1 of 5 failed: 0.2 is not above 0.2.
        reports.insert("d02".into(), report("d02", "rejected", 20));
        for d in ["d03", "d04", "d05", "d06"] {
            reports.insert(d.into(), report(d, "confirmed", 20));
        }
        r.step(30, &reports, &T);
        assert_eq!(r.status, RolloutStatus::Completed);
        assert_eq!(r.halt, None);
    }

    #[test]
    fn old_reports_and_other_releases_do_not_count_and_silent_devices_are_told_again() {
        let mut r = Rollout::plan("rel", devices(1), &[StageSize::Count(1)], 0.0, 1000).unwrap();
        let mut reports = BTreeMap::new();
        // A rollback of the same release from an earlier rollout (before this notice).
        reports.insert("d01".into(), report("d01", "rolled_back", 500));
        assert_eq!(r.step(1000, &reports, &T).notify, vec!["d01"]);
        assert_eq!(r.status, RolloutStatus::Running);
        assert!(
            r.step(1000 + T.renotify_ms - 1, &reports, &T)
                .notify
                .is_empty()
        );
        assert_eq!(
            r.step(1000 + T.renotify_ms, &reports, &T).notify,
            vec!["d01"]
        );
        let mut other = report("d01", "confirmed", 2_000_000);
        other.release = Some("other".into());
        reports.insert("d01".into(), other);
        r.step(2_000_001, &reports, &T);
        assert_eq!(r.status, RolloutStatus::Running);
        // Silent past the stage timeout: failed (threshold 0), halted.
        r.step(1000 + T.stage_timeout_ms, &reports, &T);
        assert_eq!(r.status, RolloutStatus::Halted);
    }

    #[test]
    fn rollouts_round_trip_through_json() {
        let mut r =
            Rollout::plan("rel", devices(3), &parse_stages("1,100%").unwrap(), 0.5, 7).unwrap();
        r.step(8, &BTreeMap::new(), &T);
        assert_eq!(Rollout::from_json(&r.to_json().unwrap()).unwrap(), r);
    }

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
