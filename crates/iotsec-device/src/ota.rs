//! Firmware updates on the device: the `[ota]` settings, the server's notices, and the worker
//! that checks, downloads, installs and reports an update.
//!
//! The flow, for a device running under `iotsec fw supervise` (which starts this agent as the
//! program of the active A/B slot):
//!
//! 1. The server publishes a notice on `devices/<id>/commands/ota`: the release's **signed
//!    manifest** (base64) and the HTTPS URL of its bundle. The worker checks the manifest with
//!    the update engine against the device's own trusted keys, hardware id, installed version
//!    and security counter ([`iotsec_ota::Engine::admit`]) **before** it connects anywhere; a
//!    refusal is reported as `rejected` with the reason.
//! 2. It downloads the bundle's image over HTTPS with mutual TLS (the device certificate) from
//!    the configured server only, asking for `Range: bytes=<header + offset>-<header + size -
//!    1>`: the signed size caps the transfer. Chunks stream into the inactive slot through the
//!    engine (hashed while written). Every 10 % (and every 2 s) the slot is fsynced and the
//!    offset written to `ota.json` in the agent's state directory, then `downloading` with the
//!    percentage is reported. A dropped connection continues at the offset; after a restart the
//!    worker resumes by itself: [`iotsec_ota::Engine::resume_download`] re-reads and re-hashes
//!    the bytes already in the slot (nothing unhashed is trusted) and the request starts there.
//! 3. `verifying`: the engine checks length and SHA-256, re-reads the slot and sets it as the
//!    trial. The worker reports `trial` and asks the agent to exit, so the supervisor boots
//!    the new slot.
//! 4. The new firmware confirms once it is connected and its signed "online" status is acked
//!    (see `agent`); the worker in the trial watches the boot record and reports `confirmed`.
//!    If instead the trial exits, hangs or misses its deadline, the supervisor rolls it back
//!    and the old firmware's worker finds the result in the boot record and reports
//!    `rolled_back` with the reason. These outcome reports are sent until the server
//!    acknowledges them (`{"type":"ack","seq":N}`); only then is the record's "not yet
//!    reported" flag cleared.
//!
//! Reports are signed exactly like status messages (v2, the device's key, a sequence number
//! of the same counter) and published on `devices/<id>/ota`. The blocking slot I/O runs on a
//! blocking thread; network and timers stay on the async side.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use iotsec_ota::bundle::MAX_SIGNED_MANIFEST_LEN;
use iotsec_ota::dir::DirStore;
use iotsec_ota::record::Outcome;
use iotsec_ota::supervisor::now_ms;
use iotsec_ota::{
    Config as EngineConfig, Engine, Error as OtaError, HardwareId, KeySet, PublicKey,
    SignedManifest, SlotId, UpdateState, keyfile,
};
use iotsec_tls::{CaTrust, ClientTls, Identity, TrustPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Largest command accepted on `devices/<id>/commands/ota`.
pub const MAX_COMMAND: usize = 16 * 1024;

/// How long connecting, the TLS handshake and the response headers may take, and the longest
/// pause inside a response body.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts per download without any progress before it is given up.
pub const MAX_ATTEMPTS: u32 = 6;

/// The journal of the current update in the agent's state directory.
pub const JOURNAL: &str = "ota.json";

// --- configuration -------------------------------------------------------------------------

/// `[ota]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOta {
    /// The A/B state directory (`iotsec fw supervise --slots`).
    #[serde(default = "default_slots")]
    pub slots: PathBuf,
    /// Public keys trusted for firmware while the slots directory has no key set of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust: Vec<PathBuf>,
    /// `https://host[:port]` of the firmware server.
    pub server: String,
    /// CA of the firmware server (default: `[tls] ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// This device's hardware id, when the slots directory does not record one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
    /// Download rate limit in bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_sec: Option<u64>,
}

fn default_slots() -> PathBuf {
    PathBuf::from("slots")
}

/// The firmware server: `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `https://host[:port]` as configured, without a trailing slash.
    pub origin: String,
    /// Host name or IP literal (also the TLS server name).
    pub host: String,
    /// Port (443 by default).
    pub port: u16,
}

impl ServerUrl {
    /// Parses `https://host[:port]` (IPv6 literals in brackets), nothing else.
    ///
    /// # Errors
    /// Why it is not such a URL.
    pub fn parse(text: &str) -> std::result::Result<ServerUrl, String> {
        let origin = text.trim().trim_end_matches('/');
        let rest = origin
            .strip_prefix("https://")
            .ok_or("must start with https://")?;
        if rest.contains(['/', '?', '#', '@']) {
            return Err("must be https://host[:port], without a path".into());
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or("unclosed '['")?;
            (h, after.strip_prefix(':'))
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("'{p}' is not a port"))?,
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| format!("'{host}' is not a valid host name or IP address"))?;
        Ok(ServerUrl {
            origin: origin.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path of `url` if it is on this server (`None` otherwise: the device downloads from
    /// its configured server only, whatever a notice says).
    pub fn path_of<'u>(&self, url: &'u str) -> Option<&'u str> {
        let path = url.strip_prefix(self.origin.as_str())?;
        (path.starts_with('/') && !path.contains(['?', '#', ' ', '\r', '\n']) && path.len() <= 1024)
            .then_some(path)
    }
}

/// The checked `[ota]` section.
#[derive(Debug, Clone)]
pub struct OtaSettings {
    /// The A/B state directory.
    pub slots: PathBuf,
    /// Factory trust (used while the slots directory holds no key set).
    pub trust: Vec<PublicKey>,
    /// The firmware server.
    pub server: ServerUrl,
    /// How the firmware server's certificate is checked.
    pub server_trust: TrustPolicy,
    /// Configured hardware id.
    pub hardware_id: Option<HardwareId>,
    /// Download rate limit.
    pub max_bytes_per_sec: Option<u64>,
}

impl RawOta {
    /// Checks the values and loads the key and CA files (relative to `base`).
    pub(crate) fn validate(
        self,
        path: &Path,
        base: &Path,
        tls_ca: Option<&Path>,
    ) -> Result<OtaSettings> {
        let bad = |key: &'static str, reason: String| Error::Config {
            path: path.to_path_buf(),
            key,
            reason,
        };
        let server = ServerUrl::parse(&self.server).map_err(|r| bad("ota.server", r))?;
        let trust = self
            .trust
            .iter()
            .map(|p| {
                keyfile::read_public_key(&base.join(p)).map_err(|e| bad("ota.trust", e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let ca_path = match (&self.ca, tls_ca) {
            (Some(ca), _) => base.join(ca),
            (None, Some(ca)) => ca.to_path_buf(),
            (None, None) => {
                return Err(bad(
                    "ota.ca",
                    "name the CA of the firmware server ([tls] has none)".into(),
                ));
            }
        };
        let ca = CaTrust::from_pem_file(&ca_path).map_err(|source| Error::Tls {
            path: path.to_path_buf(),
            source,
        })?;
        let hardware_id = self
            .hardware_id
            .as_deref()
            .map(HardwareId::new)
            .transpose()
            .map_err(|e| bad("ota.hardware_id", e.to_string()))?;
        if self.max_bytes_per_sec == Some(0) {
            return Err(bad("ota.max_bytes_per_sec", "must be at least 1".into()));
        }
        Ok(OtaSettings {
            slots: base.join(&self.slots),
            trust,
            server,
            server_trust: TrustPolicy::Ca(ca),
            hardware_id,
            max_bytes_per_sec: self.max_bytes_per_sec,
        })
    }
}

// --- what the server sends ----------------------------------------------------------------

/// An update notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Release id (as the server names it).
    pub release: String,
    /// Where the bundle is (must be on the configured server).
    pub url: String,
    /// The signed manifest (verified by the engine before anything is downloaded).
    pub manifest: Vec<u8>,
}

/// A message on `devices/<id>/commands/ota`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Install this release.
    Update(Notice),
    /// The report with this sequence number is stored.
    Ack {
        /// Its sequence number.
        seq: u64,
    },
}

/// Parses a command; `None` for anything else (bounded, never panics).
pub fn parse_command(bytes: &[u8]) -> Option<Command> {
    if bytes.len() > MAX_COMMAND {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    match v.get("type")?.as_str()? {
        "ack" => Some(Command::Ack {
            seq: v.get("seq")?.as_u64()?,
        }),
        "update" => {
            let release = v.get("release")?.as_str()?;
            let valid = !release.is_empty()
                && release.len() <= 64
                && release
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            let url = v.get("url")?.as_str()?;
            let manifest = v.get("manifest")?.as_str()?;
            if !valid || url.len() > 2048 || manifest.len() > 2 * MAX_SIGNED_MANIFEST_LEN {
                return None;
            }
            let manifest = base64::engine::general_purpose::STANDARD
                .decode(manifest)
                .ok()
                .filter(|m| m.len() <= MAX_SIGNED_MANIFEST_LEN)?;
            Some(Command::Update(Notice {
                release: release.to_string(),
                url: url.to_string(),
                manifest,
            }))
        }
        _ => None,
    }
}

// --- what the device reports ---------------------------------------------------------------

/// One OTA report (the body of a signed message on `devices/<id>/ota`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `downloading`, `verifying`, `trial`, `confirmed`, `rolled_back`, `rejected`, `failed`.
    pub state: &'static str,
    /// Release id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Version concerned (verified: from a signed manifest or the boot record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Download progress in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// Bytes of the image in the slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Signed image size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The download resumed at this offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Time from the notice to the trial being set (download, write, verify, switch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
}

impl Report {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn failed(state: &'static str, release: Option<String>, reason: String) -> Report {
        Report {
            state,
            release,
            reason: Some(reason),
            ..Report::default()
        }
    }
}

fn percent(offset: u64, size: u64) -> u8 {
    if size == 0 {
        return 100;
    }
    u8::try_from(u128::from(offset) * 100 / u128::from(size)).unwrap_or(100)
}

// --- the worker ----------------------------------------------------------------------------

/// From the agent to the worker.
#[derive(Debug)]
pub(crate) enum ToOta {
    /// Connected to the broker (again): re-send what must arrive.
    Connected,
    /// A notice arrived.
    Notice(Notice),
    /// The server stored the outcome report.
    OutcomeAcked,
}

/// From the worker to the agent.
#[derive(Debug)]
pub(crate) enum FromOta {
    /// Sign and publish this report; `outcome` reports are acknowledged by the server.
    Report {
        /// The JSON body.
        body: Vec<u8>,
        /// An update's final result, kept until acknowledged.
        outcome: bool,
    },
    /// An update is installed: the agent should exit so the supervisor boots it.
    Restart,
}

/// `ota.json`: the update in progress (what to resume, which release a later outcome is about).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Journal {
    release: String,
    version: String,
    url: String,
    /// SHA-256 of the signed manifest, hex.
    manifest: String,
    /// Image bytes durably in the slot.
    offset: u64,
}

impl Journal {
    fn load(path: &Path) -> Option<Journal> {
        let bytes = std::fs::read(path).ok()?;
        if bytes.len() > 64 * 1024 {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    }

    fn store(&self, path: &Path) -> std::result::Result<(), OtaError> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        iotsec_ota::file::write_atomic(path, &bytes, 0o600)
    }
}

/// The engine on the slots directory with the device's keys.
fn open_engine(
    settings: &OtaSettings,
) -> std::result::Result<(Engine<DirStore>, KeySet), OtaError> {
    let store = DirStore::open(&settings.slots)?;
    let keys = match store.keyset()? {
        Some(keys) => keys,
        None => KeySet::factory(settings.trust.iter().cloned())?,
    };
    let hardware_id = match (store.hardware_id()?, &settings.hardware_id) {
        (Some(stored), Some(configured)) if stored != *configured => {
            return Err(OtaError::Invalid {
                what: "[ota] hardware_id",
                reason: "differs from the one recorded in the slots directory",
            });
        }
        (Some(stored), _) => stored,
        (None, Some(configured)) => configured.clone(),
        (None, None) => {
            return Err(OtaError::Invalid {
                what: "hardware id",
                reason: "neither the slots directory nor [ota] hardware_id names it",
            });
        }
    };
    Ok((Engine::open(store, EngineConfig::new(hardware_id))?, keys))
}

/// What the boot record says at start-up.
#[derive(Debug, Default)]
struct Inspection {
    /// A result not yet reported.
    outcome: Option<Report>,
    /// This program runs on trial (version).
    trial: Option<String>,
    /// An interrupted download to continue.
    resume: Option<Job>,
}

fn inspect(settings: &OtaSettings, journal: &Path) -> std::result::Result<Inspection, OtaError> {
    let (engine, _) = open_engine(settings)?;
    let saved = Journal::load(journal);
    let mut found = Inspection::default();
    let record = engine.record();
    if record.report_pending
        && let Some(last) = &record.last
    {
        let version = last.version.as_ref().map(ToString::to_string);
        let release = saved
            .as_ref()
            .filter(|j| Some(&j.version) == version.as_ref())
            .map(|j| j.release.clone());
        found.outcome = Some(match last.outcome {
            Outcome::Confirmed => Report {
                state: "confirmed",
                release,
                version,
                ..Report::default()
            },
            Outcome::RolledBack(reason) => Report {
                state: "rolled_back",
                release,
                version,
                reason: Some(reason.name().to_string()),
                ..Report::default()
            },
        });
    }
    match engine.state() {
        UpdateState::BootedInTrial { slot, .. } => {
            found.trial = engine
                .slot_manifest(slot)
                .map(|s| s.manifest().version.to_string());
        }
        UpdateState::Downloading { slot } => {
            if let (Some(j), Some(signed)) = (saved, engine.slot_manifest(slot))
                && j.manifest == hex(&signed.digest())
            {
                found.resume = Some(Job {
                    release: j.release,
                    url: j.url,
                    manifest: signed.as_bytes().to_vec(),
                    version: j.version,
                    size: signed.manifest().image_size,
                    resume_from: Some(j.offset),
                });
            }
        }
        _ => {}
    }
    Ok(found)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a notice turned into.
enum Admission {
    /// Download it.
    Start(Job),
    /// The device already runs this version.
    Current(String),
}

/// The checks before anything is downloaded: the engine's admission (signature by a trusted
/// key, hardware id, expiry, newer version, security counter), no trial in progress, and a
/// URL on the configured server.
fn admit(
    settings: &OtaSettings,
    journal: &Path,
    notice: &Notice,
) -> std::result::Result<Admission, String> {
    let (engine, keys) = open_engine(settings).map_err(|e| e.to_string())?;
    let signed = SignedManifest::parse(&notice.manifest).map_err(|e| e.to_string())?;
    match engine.state() {
        UpdateState::TrialPending { .. } | UpdateState::BootedInTrial { .. } => {
            return Err("another update is on trial".into());
        }
        _ => {}
    }
    let manifest = match engine.admit(&signed, &keys, now_ms()) {
        Ok(m) => m,
        Err(OtaError::NotNewer { offered, installed }) if offered == installed => {
            return Ok(Admission::Current(offered.to_string()));
        }
        Err(e) => return Err(e.to_string()),
    };
    if settings.server.path_of(&notice.url).is_none() {
        return Err(format!(
            "download URL is not on the configured server {}",
            settings.server.origin
        ));
    }
    // The same update, interrupted: continue where the journal says.
    let resume_from = match (engine.state(), Journal::load(journal)) {
        (UpdateState::Downloading { .. }, Some(j)) if j.manifest == hex(&signed.digest()) => {
            Some(j.offset)
        }
        _ => None,
    };
    Ok(Admission::Start(Job {
        release: notice.release.clone(),
        url: notice.url.clone(),
        manifest: notice.manifest.clone(),
        version: manifest.version.to_string(),
        size: manifest.image_size,
        resume_from,
    }))
}

/// A download to run.
#[derive(Debug, Clone)]
struct Job {
    release: String,
    url: String,
    manifest: Vec<u8>,
    version: String,
    size: u64,
    resume_from: Option<u64>,
}

/// Runs the worker until the agent goes away.
pub(crate) async fn run(
    mut settings: OtaSettings,
    identity: Identity,
    state_dir: PathBuf,
    mut rx: mpsc::UnboundedReceiver<ToOta>,
    tx: mpsc::UnboundedSender<FromOta>,
) {
    // Under the supervisor, its directory is the one that boots.
    if let Some(dir) = std::env::var_os("IOTSEC_OTA_SLOTS").filter(|d| !d.is_empty()) {
        settings.slots = PathBuf::from(dir);
    } else {
        tracing::warn!(
            slots = %settings.slots.display(),
            "not started by `iotsec fw supervise`: an installed update boots only when the \
             supervisor starts the slot"
        );
    }
    let tls = match ClientTls::new(&settings.server_trust, Some(&identity)) {
        Ok(t) => t.with_alpn(vec![b"http/1.1".to_vec()]).config(),
        Err(e) => {
            tracing::error!(error = %e, "OTA disabled: cannot build the HTTPS client");
            return;
        }
    };
    let worker = Worker {
        settings: Arc::new(settings),
        tls,
        journal: state_dir.join(JOURNAL),
        tx,
    };
    worker.serve(&mut rx).await;
}

struct Worker {
    settings: Arc<OtaSettings>,
    tls: Arc<rustls::ClientConfig>,
    journal: PathBuf,
    tx: mpsc::UnboundedSender<FromOta>,
}

/// A running download.
struct Running {
    release: String,
    version: String,
    task: tokio::task::JoinHandle<std::result::Result<u64, String>>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

impl Worker {
    fn send(&self, report: &Report, outcome: bool) {
        let _ = self.tx.send(FromOta::Report {
            body: report.to_json(),
            outcome,
        });
    }

    async fn serve(self, rx: &mut mpsc::UnboundedReceiver<ToOta>) {
        // The report that must reach the server (an outcome, or the trial in progress), sent
        // again on every connection until acknowledged / superseded.
        let mut sticky: Option<(Report, bool)> = None;
        let mut running: Option<Running> = None;
        let mut watch_trial = false;
        let settings = Arc::clone(&self.settings);
        let journal = self.journal.clone();
        match blocking(move || inspect(&settings, &journal)).await {
            Some(Ok(found)) => {
                if let Some(trial) = found.trial {
                    tracing::info!(version = %trial, "running on trial: confirms once online");
                    let report = Report {
                        state: "trial",
                        version: Some(trial),
                        ..Report::default()
                    };
                    self.send(&report, false);
                    sticky = Some((report, false));
                    watch_trial = true;
                }
                if let Some(outcome) = found.outcome {
                    tracing::info!(state = outcome.state, version = ?outcome.version, reason = ?outcome.reason, "reporting the last update's result");
                    self.send(&outcome, true);
                    sticky = Some((outcome, true));
                }
                if let Some(job) = found.resume {
                    tracing::info!(release = %job.release, offset = ?job.resume_from, "resuming an interrupted download");
                    running = Some(self.start(job));
                }
            }
            Some(Err(e)) => tracing::error!(error = %e, "OTA: cannot read the slots directory"),
            None => {}
        }
        let mut trial_poll = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => return,
                    Some(ToOta::Connected) => {
                        if let Some((report, outcome)) = &sticky {
                            self.send(report, *outcome);
                        }
                    }
                    Some(ToOta::OutcomeAcked) => {
                        let settings = Arc::clone(&self.settings);
                        let journal = self.journal.clone();
                        let acked = blocking(move || {
                            let (mut engine, _) = open_engine(&settings)?;
                            engine.ack_report()?;
                            let _ = std::fs::remove_file(&journal);
                            Ok::<_, OtaError>(())
                        })
                        .await;
                        match acked {
                            Some(Ok(())) => {
                                tracing::info!("the server stored the update's result");
                                sticky = None;
                            }
                            Some(Err(e)) => tracing::warn!(error = %e, "cannot mark the result reported"),
                            None => {}
                        }
                    }
                    Some(ToOta::Notice(notice)) => self.notice(notice, &mut running).await,
                },
                done = async {
                    match running.as_mut() {
                        Some(r) => Some((&mut r.task).await),
                        None => std::future::pending().await,
                    }
                } => {
                    let Some(r) = running.take() else { continue };
                    match done {
                        Some(Ok(Ok(elapsed_ms))) => {
                            tracing::info!(release = %r.release, version = %r.version, elapsed_ms, "update installed; restarting into the trial");
                            self.send(&Report {
                                state: "trial",
                                release: Some(r.release),
                                version: Some(r.version),
                                elapsed_ms: Some(elapsed_ms),
                                ..Report::default()
                            }, false);
                            let _ = self.tx.send(FromOta::Restart);
                        }
                        Some(Ok(Err(reason))) => {
                            tracing::warn!(release = %r.release, %reason, "update failed");
                            let mut report = Report::failed("failed", Some(r.release), reason);
                            report.version = Some(r.version);
                            self.send(&report, false);
                        }
                        Some(Err(e)) => tracing::error!(error = %e, "update task failed"),
                        None => {}
                    }
                }
                _ = trial_poll.tick(), if watch_trial => {
                    let settings = Arc::clone(&self.settings);
                    let journal = self.journal.clone();
                    if let Some(Ok(found)) = blocking(move || inspect(&settings, &journal)).await
                        && found.trial.is_none()
                    {
                        watch_trial = false;
                        sticky = None;
                        if let Some(outcome) = found.outcome {
                            tracing::info!(state = outcome.state, version = ?outcome.version, "trial ended");
                            self.send(&outcome, true);
                            sticky = Some((outcome, true));
                        }
                    }
                }
            }
        }
    }

    async fn notice(&self, notice: Notice, running: &mut Option<Running>) {
        if let Some(r) = running {
            if r.release == notice.release {
                tracing::debug!(release = %notice.release, "notice for the update in progress");
            } else {
                self.send(
                    &Report::failed(
                        "rejected",
                        Some(notice.release),
                        format!("busy: updating to {}", r.version),
                    ),
                    false,
                );
            }
            return;
        }
        let settings = Arc::clone(&self.settings);
        let journal = self.journal.clone();
        let n = notice.clone();
        match blocking(move || admit(&settings, &journal, &n)).await {
            Some(Ok(Admission::Start(job))) => {
                tracing::info!(release = %job.release, version = %job.version, size = job.size, "update accepted; downloading");
                *running = Some(self.start(job));
            }
            Some(Ok(Admission::Current(version))) => {
                self.send(
                    &Report {
                        state: "confirmed",
                        release: Some(notice.release),
                        version: Some(version),
                        ..Report::default()
                    },
                    false,
                );
            }
            Some(Err(reason)) => {
                tracing::warn!(release = %notice.release, %reason, "update refused before download");
                self.send(
                    &Report::failed("rejected", Some(notice.release), reason),
                    false,
                );
            }
            None => {}
        }
    }

    fn start(&self, job: Job) -> Running {
        Running {
            release: job.release.clone(),
            version: job.version.clone(),
            task: tokio::spawn(download(
                job,
                Arc::clone(&self.settings),
                Arc::clone(&self.tls),
                self.journal.clone(),
                self.tx.clone(),
            )),
        }
    }
}

// --- the download --------------------------------------------------------------------------

enum Write {
    Chunk(Bytes),
    Finish,
}

/// Downloads `job` into the inactive slot and installs it as the trial. Returns the time it
/// took (ms) or why it failed.
async fn download(
    job: Job,
    settings: Arc<OtaSettings>,
    tls: Arc<rustls::ClientConfig>,
    journal: PathBuf,
    tx: mpsc::UnboundedSender<FromOta>,
) -> std::result::Result<u64, String> {
    let started = Instant::now();
    let path = settings
        .server
        .path_of(&job.url)
        .ok_or("download URL is not on the configured server")?
        .to_string();
    let (chunks_tx, chunks_rx) = mpsc::channel::<Write>(16);
    let (start_tx, start_rx) = oneshot::channel();
    let writer = {
        let (job, settings, tx) = (job.clone(), Arc::clone(&settings), tx.clone());
        tokio::task::spawn_blocking(move || {
            write_slot(&job, &settings, &journal, chunks_rx, start_tx, &tx)
        })
    };
    let writer_error = |writer: tokio::task::JoinHandle<std::result::Result<(), String>>| async move {
        match writer.await {
            Ok(Err(reason)) => reason,
            Ok(Ok(())) => "the slot writer stopped".to_string(),
            Err(e) => format!("the slot writer failed: {e}"),
        }
    };
    let Ok(Ok(offset)) = start_rx.await else {
        return Err(writer_error(writer).await);
    };
    let header = job.manifest.len() as u64;
    let size = job.size;
    let _ = tx.send(FromOta::Report {
        body: Report {
            state: "downloading",
            release: Some(job.release.clone()),
            version: Some(job.version.clone()),
            progress: Some(percent(offset, size)),
            offset: Some(offset),
            size: Some(size),
            resumed_from: (offset > 0).then_some(offset),
            ..Report::default()
        }
        .to_json(),
        outcome: false,
    });
    let mut sent = offset;
    let mut failures = 0u32;
    let rate_start = Instant::now();
    let mut rate_bytes = 0u64;
    while sent < size {
        let body = fetch(
            &tls,
            &settings.server,
            &path,
            header + sent,
            header + size - 1,
        )
        .await;
        let mut body = match body {
            Ok(b) => b,
            Err(Fetch::Fatal(reason)) => return Err(reason),
            Err(Fetch::Retry(reason)) => {
                failures += 1;
                if failures >= MAX_ATTEMPTS {
                    return Err(format!("download failed {failures} times: {reason}"));
                }
                tracing::warn!(%reason, offset = sent, "download interrupted; retrying");
                tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(failures.min(5))).await;
                continue;
            }
        };
        let before = sent;
        loop {
            let frame = match tokio::time::timeout(HTTP_TIMEOUT, body.frame()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, offset = sent, "connection lost during the download");
                    break;
                }
                Err(_) => {
                    tracing::warn!(offset = sent, "download stalled");
                    break;
                }
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let rest = size - sent;
            if data.len() as u64 > rest {
                // The server asked for nothing past the signed size and sends it anyway.
                return Err("the server sent more than the signed image size".into());
            }
            sent += data.len() as u64;
            rate_bytes += data.len() as u64;
            if chunks_tx.send(Write::Chunk(data)).await.is_err() {
                return Err(writer_error(writer).await);
            }
            if let Some(rate) = settings.max_bytes_per_sec {
                let due = rate_start + Duration::from_secs_f64(rate_bytes as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
        }
        if sent > before {
            failures = 0;
        } else {
            failures += 1;
            if failures >= MAX_ATTEMPTS {
                return Err(format!("no progress after {failures} attempts"));
            }
            tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(failures.min(5))).await;
        }
    }
    if chunks_tx.send(Write::Finish).await.is_err() {
        return Err(writer_error(writer).await);
    }
    match writer.await {
        Ok(Ok(())) => Ok(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
        Ok(Err(reason)) => Err(reason),
        Err(e) => Err(format!("the slot writer failed: {e}")),
    }
}

/// The blocking side: owns the engine (and the slots directory's lock) for the whole download.
fn write_slot(
    job: &Job,
    settings: &OtaSettings,
    journal: &Path,
    mut chunks: mpsc::Receiver<Write>,
    started: oneshot::Sender<std::result::Result<u64, String>>,
    tx: &mpsc::UnboundedSender<FromOta>,
) -> std::result::Result<(), String> {
    let opened = open_engine(settings);
    let (mut engine, keys) = match opened {
        Ok(e) => e,
        Err(e) => {
            let _ = started.send(Err(e.to_string()));
            return Err(e.to_string());
        }
    };
    let images = [SlotId::A, SlotId::B].map(|s| (s, engine.store_mut().image_path(s)));
    let now = now_ms();
    let resumable = job
        .resume_from
        .filter(|_| matches!(engine.state(), UpdateState::Downloading { .. }));
    let digest = SignedManifest::parse(&job.manifest)
        .map(|s| hex(&s.digest()))
        .map_err(|e| e.to_string())?;
    let download = match resumable {
        Some(offset) if offset <= job.size => {
            match engine.resume_download(&job.manifest, &keys, now, offset) {
                Ok(d) => Ok(d),
                Err(e) => {
                    tracing::warn!(error = %e, offset, "cannot resume; downloading from the start");
                    engine.begin_download(&job.manifest, &keys, now)
                }
            }
        }
        _ => engine.begin_download(&job.manifest, &keys, now),
    };
    let mut download = match download {
        Ok(d) => d,
        Err(e) => {
            let _ = started.send(Err(e.to_string()));
            return Err(e.to_string());
        }
    };
    let image = images
        .iter()
        .find(|(s, _)| *s == download.slot())
        .map(|(_, p)| p.clone())
        .unwrap_or_default();
    let mut entry = Journal {
        release: job.release.clone(),
        version: job.version.clone(),
        url: job.url.clone(),
        manifest: digest,
        offset: download.offset(),
    };
    entry.store(journal).map_err(|e| e.to_string())?;
    let _ = started.send(Ok(download.offset()));
    let step = (job.size / 10).max(64 * 1024);
    let mut next_mark = (download.offset() / step + 1) * step;
    let mut persisted_at = Instant::now();
    while let Some(w) = chunks.blocking_recv() {
        match w {
            Write::Chunk(data) => {
                download.write(&data).map_err(|e| e.to_string())?;
                let offset = download.offset();
                if offset < job.size
                    && (offset >= next_mark || persisted_at.elapsed() >= Duration::from_secs(2))
                {
                    // Durable first, then remembered, then reported: a reported percentage
                    // is always resumable after a power cut.
                    std::fs::File::open(&image)
                        .and_then(|f| f.sync_data())
                        .map_err(|e| format!("cannot sync {}: {e}", image.display()))?;
                    entry.offset = offset;
                    entry.store(journal).map_err(|e| e.to_string())?;
                    next_mark = (offset / step + 1) * step;
                    persisted_at = Instant::now();
                    let _ = tx.send(FromOta::Report {
                        body: Report {
                            state: "downloading",
                            release: Some(job.release.clone()),
                            version: Some(job.version.clone()),
                            progress: Some(percent(offset, job.size)),
                            offset: Some(offset),
                            size: Some(job.size),
                            ..Report::default()
                        }
                        .to_json(),
                        outcome: false,
                    });
                }
            }
            Write::Finish => {
                let _ = tx.send(FromOta::Report {
                    body: Report {
                        state: "verifying",
                        release: Some(job.release.clone()),
                        version: Some(job.version.clone()),
                        progress: Some(100),
                        ..Report::default()
                    }
                    .to_json(),
                    outcome: false,
                });
                download.finish().map_err(|e| e.to_string())?;
                entry.offset = job.size;
                entry.store(journal).map_err(|e| e.to_string())?;
                return Ok(());
            }
        }
    }
    // The network side gave up: the slot stays "being written", resumable.
    Ok(())
}

/// Why a request failed.
enum Fetch {
    /// Try again (network, TLS, 5xx).
    Retry(String),
    /// Pointless to repeat (401/403/404/416, a server ignoring the range).
    Fatal(String),
}

/// `GET path` with `Range: bytes=from-to` over mutual TLS; the body of a 206 whose
/// `Content-Range` is exactly the range asked for.
async fn fetch(
    tls: &Arc<rustls::ClientConfig>,
    server: &ServerUrl,
    path: &str,
    from: u64,
    to: u64,
) -> std::result::Result<hyper::body::Incoming, Fetch> {
    let request = async {
        let tcp = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| Fetch::Retry(format!("connect to {}: {e}", server.authority())))?;
        let name = rustls::pki_types::ServerName::try_from(server.host.clone())
            .map_err(|_| Fetch::Fatal(format!("bad server name {}", server.host)))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| Fetch::Retry(format!("TLS with {}: {e}", server.authority())))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| Fetch::Retry(format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, server.authority())
            .header(hyper::header::RANGE, format!("bytes={from}-{to}"))
            .header(hyper::header::USER_AGENT, "iotsec-device")
            .body(Empty::<Bytes>::new())
            .map_err(|e| Fetch::Fatal(format!("request: {e}")))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| Fetch::Retry(format!("HTTP: {e}")))
    };
    let res = tokio::time::timeout(HTTP_TIMEOUT, request)
        .await
        .map_err(|_| Fetch::Retry(format!("no answer from {} in time", server.authority())))??;
    let status = res.status().as_u16();
    match status {
        206 => {}
        200 => return Err(Fetch::Fatal("the server ignored the Range request".into())),
        500..=599 => return Err(Fetch::Retry(format!("server error {status}"))),
        _ => return Err(Fetch::Fatal(format!("the server answered {status}"))),
    }
    let range = res
        .headers()
        .get(hyper::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let expected = format!("bytes {from}-{to}/");
    if !range.starts_with(&expected) {
        return Err(Fetch::Fatal(format!(
            "the server sent the range `{range}`, not bytes {from}-{to}"
        )));
    }
    Ok(res.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotsec_ota::{Algorithm, Manifest, SecretKey, Version};
    use iotsec_testkit::{TestDir, TestPki};
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const HW: &str = "acme-gw";

    fn signed(key: &SecretKey, version: &str, image: &[u8]) -> SignedManifest {
        let m = Manifest {
            version: Version::parse(version).unwrap(),
            security_counter: 1,
            hardware_id: HardwareId::new(HW).unwrap(),
            image_size: image.len() as u64,
            image_sha256: iotsec_ota::sha256(image),
            created_s: 1_700_000_000,
            expires_s: None,
        };
        SignedManifest::sign(&m, key).unwrap()
    }

    /// How the test server answers.
    #[derive(Clone, Copy)]
    enum Serve {
        /// Drops the connection after this many body bytes of the first response.
        CutFirstAfter(usize),
        /// Ignores Range and answers 200 with the whole file.
        IgnoreRange,
    }

    /// A one-file HTTPS server (the PKI's localhost certificate); returns its port and the
    /// Range headers it received.
    async fn server(
        pki: &TestPki,
        file: Vec<u8>,
        mode: Serve,
    ) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        let chain: Vec<_> =
            rustls::pki_types::CertificateDer::pem_file_iter(pki.dir.join("server.crt"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_file(pki.dir.join("server.key")).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(iotsec_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut first = true;
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tls.read_exact(&mut byte).await.is_ok() {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let range = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("range: ")
                            .or_else(|| l.strip_prefix("Range: "))
                    })
                    .unwrap_or_default()
                    .to_string();
                log.lock().unwrap().push(range.clone());
                let total = file.len();
                let (from, to) = range
                    .strip_prefix("bytes=")
                    .and_then(|r| r.split_once('-'))
                    .map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()))
                    .unwrap();
                let body = match mode {
                    Serve::IgnoreRange => {
                        let _ = tls
                            .write_all(
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n")
                                    .as_bytes(),
                            )
                            .await;
                        file.clone()
                    }
                    _ => {
                        let _ = tls.write_all(format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{to}/{total}\r\nContent-Length: {}\r\n\r\n",
                            to - from + 1
                        ).as_bytes()).await;
                        file[from..=to].to_vec()
                    }
                };
                let body = match mode {
                    Serve::CutFirstAfter(n) if first => body[..n].to_vec(),
                    _ => body,
                };
                first = false;
                let _ = tls.write_all(&body).await;
                let _ = tls.flush().await;
                // Dropped without close_notify: a cut connection.
            }
        });
        (port, seen)
    }

    struct Rig {
        _dir: TestDir,
        settings: Arc<OtaSettings>,
        tls: Arc<rustls::ClientConfig>,
        journal: PathBuf,
        job: Job,
        bundle: Vec<u8>,
    }

    /// Slots with 1.0.0 confirmed, and a 3 MiB 2.0.0 to download.
    fn rig(pki_dir: TestDir, pki: &TestPki) -> Rig {
        let key = SecretKey::from_seed(Algorithm::Ed25519, &[3; 32]).unwrap();
        let keys = KeySet::factory([key.public_key()]).unwrap();
        let slots = pki_dir.join("slots");
        let store = DirStore::open(&slots).unwrap();
        store.store_keyset(&keys).unwrap();
        store
            .store_hardware_id(&HardwareId::new(HW).unwrap())
            .unwrap();
        let mut engine =
            Engine::open(store, EngineConfig::new(HardwareId::new(HW).unwrap())).unwrap();
        let v1 = b"factory firmware".to_vec();
        let s1 = signed(&key, "1.0.0", &v1);
        let mut d = engine
            .begin_download(s1.as_bytes(), &keys, now_ms())
            .unwrap();
        d.write(&v1).unwrap();
        d.finish().unwrap();
        engine.boot(&keys, now_ms()).unwrap();
        engine.confirm(now_ms()).unwrap();
        drop(engine);
        let image: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        let s2 = signed(&key, "2.0.0", &image);
        let mut bundle = s2.as_bytes().to_vec();
        bundle.extend_from_slice(&image);
        let (cert, dkey) = pki.client("dev-1");
        let identity = Identity::from_pem_files(cert, dkey).unwrap();
        let policy = TrustPolicy::Ca(CaTrust::from_pem_file(pki.ca_cert()).unwrap());
        let tls = ClientTls::new(&policy, Some(&identity)).unwrap().config();
        let settings = OtaSettings {
            slots,
            trust: Vec::new(),
            server: ServerUrl::parse("https://localhost:1").unwrap(),
            server_trust: policy,
            hardware_id: Some(HardwareId::new(HW).unwrap()),
            max_bytes_per_sec: None,
        };
        let job = Job {
            release: "r2".into(),
            url: String::new(),
            manifest: s2.as_bytes().to_vec(),
            version: "2.0.0".into(),
            size: image.len() as u64,
            resume_from: None,
        };
        let journal = pki_dir.join(JOURNAL);
        Rig {
            _dir: pki_dir,
            settings: Arc::new(settings),
            tls,
            journal,
            job,
            bundle,
        }
    }

    fn aimed(rig: &Rig, port: u16) -> (Arc<OtaSettings>, Job) {
        let mut settings = (*rig.settings).clone();
        settings.server = ServerUrl::parse(&format!("https://localhost:{port}")).unwrap();
        let mut job = rig.job.clone();
        job.url = format!("https://localhost:{port}/firmware/r2");
        (Arc::new(settings), job)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_cut_mid_download_continues_at_the_offset_and_installs() {
        let dir = TestDir::new();
        let pki = TestPki::new(&dir, iotsec_pki::KeyAlgorithm::P256, &["dev-1"]);
        let rig = rig(dir, &pki);
        let cut = 1_234_567;
        let (port, seen) = server(&pki, rig.bundle.clone(), Serve::CutFirstAfter(cut)).await;
        let (settings, job) = aimed(&rig, port);
        let header = job.manifest.len();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let result = download(
            job,
            Arc::clone(&settings),
            Arc::clone(&rig.tls),
            rig.journal.clone(),
            tx,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        let end = rig.bundle.len() - 1;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![
                format!("bytes={header}-{end}"),
                format!("bytes={}-{end}", header + cut)
            ],
            "the second request starts exactly where the first was cut"
        );
        let (engine, _) = open_engine(&settings).unwrap();
        assert!(matches!(engine.state(), UpdateState::TrialPending { .. }));
        let mut states = Vec::new();
        while let Ok(FromOta::Report { body, .. }) = rx.try_recv() {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            states.push(v["state"].as_str().unwrap().to_string());
        }
        assert_eq!(states.first().map(String::as_str), Some("downloading"));
        assert_eq!(states.last().map(String::as_str), Some("verifying"));
        assert_eq!(Journal::load(&rig.journal).unwrap().offset, rig.job.size);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_ignoring_the_range_is_refused_and_the_slot_stays_resumable() {
        let dir = TestDir::new();
        let pki = TestPki::new(&dir, iotsec_pki::KeyAlgorithm::P256, &["dev-1"]);
        let rig = rig(dir, &pki);
        let (port, _) = server(&pki, rig.bundle.clone(), Serve::IgnoreRange).await;
        let (settings, job) = aimed(&rig, port);
        let (tx, _rx) = mpsc::unbounded_channel();
        let err = download(
            job,
            Arc::clone(&settings),
            Arc::clone(&rig.tls),
            rig.journal.clone(),
            tx,
        )
        .await
        .unwrap_err();
        assert!(err.contains("ignored the Range"), "{err}");
        let (engine, _) = open_engine(&settings).unwrap();
        assert!(matches!(engine.state(), UpdateState::Downloading { .. }));
        assert_eq!(engine.installed().unwrap().version.to_string(), "1.0.0");
    }

    #[test]
    fn server_urls() {
        let u = ServerUrl::parse("https://localhost:8443/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.origin.as_str()),
            ("localhost", 8443, "https://localhost:8443")
        );
        assert_eq!(u.authority(), "localhost:8443");
        assert_eq!(
            ServerUrl::parse("https://[::1]").unwrap().authority(),
            "[::1]:443"
        );
        for bad in [
            "http://h",
            "https://",
            "https://h/p",
            "https://u@h",
            "https://h:0",
            "https://h:x",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            u.path_of("https://localhost:8443/firmware/ab"),
            Some("/firmware/ab")
        );
        for other in [
            "https://localhost:8444/firmware/ab",
            "https://localhost:8443.evil/firmware",
            "https://evil/firmware/ab",
            "https://localhost:8443/x?y",
        ] {
            assert_eq!(u.path_of(other), None, "{other}");
        }
    }

    #[test]
    fn commands_are_parsed_strictly() {
        assert_eq!(
            parse_command(br#"{"type":"ack","seq":7}"#),
            Some(Command::Ack { seq: 7 })
        );
        let m = base64::engine::general_purpose::STANDARD.encode(b"manifest");
        let ok = format!(
            r#"{{"type":"update","release":"ab12","url":"https://h/firmware/ab12","manifest":"{m}"}}"#
        );
        let Some(Command::Update(n)) = parse_command(ok.as_bytes()) else {
            panic!()
        };
        assert_eq!(
            (n.release.as_str(), n.manifest.as_slice()),
            ("ab12", &b"manifest"[..])
        );
        for bad in [
            r#"{"type":"ack","seq":-1}"#.to_string(),
            r#"{"type":"update","release":"a/b","url":"u","manifest":""}"#.to_string(),
            r#"{"type":"update","release":"ab","url":"u","manifest":"!!"}"#.to_string(),
            r#"{"type":"reboot"}"#.to_string(),
            "[]".to_string(),
            format!(
                r#"{{"type":"update","release":"ab","url":"u","manifest":"{}"}}"#,
                "A".repeat(4000)
            ),
        ] {
            assert_eq!(parse_command(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_command(&vec![b' '; MAX_COMMAND + 1]), None);
    }

    #[test]
    fn reports_serialise_only_what_is_set() {
        let r = Report {
            state: "downloading",
            progress: Some(percent(1, 3)),
            ..Report::default()
        };
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"state":"downloading","progress":33}"#
        );
        assert_eq!(percent(5, 5), 100);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
    }
}
