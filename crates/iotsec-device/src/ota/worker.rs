//! The update worker: what the boot record says at start-up (an outcome to report, a trial to
//! watch, a download to resume), the checks before a download, and the agent's side of the
//! conversation (reports out, notices and acks in).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use iotsec_ota::dir::DirStore;
use iotsec_ota::record::Outcome;
use iotsec_ota::supervisor::now_ms;
use iotsec_ota::{
    Config as EngineConfig, Engine, Error as OtaError, KeySet, SignedManifest, UpdateState,
};
use iotsec_tls::{ClientTls, Identity};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::download::download;
use super::{JOURNAL, Notice, OtaSettings, Report};

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
pub(super) struct Journal {
    pub(super) release: String,
    pub(super) version: String,
    pub(super) url: String,
    /// SHA-256 of the signed manifest, hex.
    pub(super) manifest: String,
    /// Image bytes durably in the slot.
    pub(super) offset: u64,
}

impl Journal {
    pub(super) fn load(path: &Path) -> Option<Journal> {
        let bytes = std::fs::read(path).ok()?;
        if bytes.len() > 64 * 1024 {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    }

    pub(super) fn store(&self, path: &Path) -> std::result::Result<(), OtaError> {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        iotsec_ota::file::write_atomic(path, &bytes, 0o600)
    }
}

/// The engine on the slots directory with the device's keys.
pub(super) fn open_engine(
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

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a notice turned into.
enum Admission {
    /// Download it.
    Start(Job),
    /// The device already runs this version.
    Current(String),
    /// This very release is installed and on trial (a repeated notice): its outcome follows.
    OnTrial(String),
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
        UpdateState::TrialPending { slot } | UpdateState::BootedInTrial { slot, .. } => {
            return match engine.slot_manifest(slot) {
                Some(trial) if trial.digest() == signed.digest() => {
                    Ok(Admission::OnTrial(trial.manifest().version.to_string()))
                }
                _ => Err("another update is on trial".into()),
            };
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
pub(super) struct Job {
    pub(super) release: String,
    pub(super) url: String,
    pub(super) manifest: Vec<u8>,
    pub(super) version: String,
    pub(super) size: u64,
    pub(super) resume_from: Option<u64>,
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
            Some(Ok(Admission::OnTrial(version))) => {
                self.send(
                    &Report {
                        state: "trial",
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

#[cfg(test)]
mod tests {
    use super::*;
    use iotsec_ota::{Algorithm, HardwareId, Manifest, SecretKey, Version};

    const HW: &str = "acme-gw";

    fn signed(key: &SecretKey, version: &str, hw: &str, image: &[u8]) -> SignedManifest {
        let m = Manifest {
            version: Version::parse(version).unwrap(),
            security_counter: 1,
            hardware_id: HardwareId::new(hw).unwrap(),
            image_size: image.len() as u64,
            image_sha256: iotsec_ota::sha256(image),
            created_s: 1_700_000_000,
            expires_s: None,
        };
        SignedManifest::sign(&m, key).unwrap()
    }

    fn notice(s: &SignedManifest, url: &str) -> Notice {
        Notice {
            release: "r".into(),
            url: url.into(),
            manifest: s.as_bytes().to_vec(),
        }
    }

    #[test]
    fn notices_are_checked_before_any_download() {
        let dir = tempfile::tempdir().unwrap();
        let vendor = SecretKey::from_seed(Algorithm::Ed25519, &[1; 32]).unwrap();
        let rogue = SecretKey::from_seed(Algorithm::Ed25519, &[2; 32]).unwrap();
        let settings = OtaSettings {
            slots: dir.path().join("slots"),
            trust: vec![vendor.public_key()],
            server: super::super::ServerUrl::parse("https://fw.example:8443").unwrap(),
            server_trust: iotsec_tls::TrustPolicy::Pin {
                fingerprint: iotsec_tls::CertFingerprint::from_bytes([0; 32]),
                expiry: iotsec_tls::Expiry::Enforce,
            },
            hardware_id: Some(HardwareId::new(HW).unwrap()),
            max_bytes_per_sec: None,
        };
        let journal = dir.path().join(JOURNAL);
        let url = "https://fw.example:8443/firmware/r";
        let (mut engine, keys) = open_engine(&settings).unwrap();
        for (version, image) in [("1.0.0", &b"one"[..]), ("2.0.0", &b"two"[..])] {
            let s = signed(&vendor, version, HW, image);
            let mut d = engine
                .begin_download(s.as_bytes(), &keys, now_ms())
                .unwrap();
            d.write(image).unwrap();
            d.finish().unwrap();
            if version == "1.0.0" {
                engine.boot(&keys, now_ms()).unwrap();
                engine.confirm(now_ms()).unwrap();
            }
        }
        drop(engine);
        let check = |n: &Notice| admit(&settings, &journal, n);
        let v1 = signed(&vendor, "1.0.0", HW, b"one");
        let v2 = signed(&vendor, "2.0.0", HW, b"two");
        let v3 = signed(&vendor, "3.0.0", HW, b"three");
        // 2.0.0 is pending: a repeated notice for it is not a failure; anything else waits.
        assert!(matches!(check(&notice(&v2, url)), Ok(Admission::OnTrial(v)) if v == "2.0.0"));
        assert_eq!(
            check(&notice(&v3, url)).err().unwrap(),
            "another update is on trial"
        );
        let (mut engine, _) = open_engine(&settings).unwrap();
        engine
            .roll_back(iotsec_ota::RollbackReason::Requested)
            .unwrap();
        drop(engine);
        assert!(matches!(check(&notice(&v1, url)), Ok(Admission::Current(v)) if v == "1.0.0"));
        assert!(
            matches!(check(&notice(&v3, url)), Ok(Admission::Start(j)) if j.version == "3.0.0" && j.resume_from.is_none())
        );
        let refused = |n: Notice| check(&n).err().unwrap();
        assert!(refused(notice(&signed(&rogue, "3.0.0", HW, b"x"), url)).contains("not trusted"));
        assert!(
            refused(notice(&signed(&vendor, "3.0.0", "other-gw", b"x"), url)).contains("hardware")
        );
        assert!(refused(notice(&signed(&vendor, "0.9.0", HW, b"x"), url)).contains("not newer"));
        assert!(
            refused(notice(&v3, "https://evil.example:8443/firmware/r"))
                .contains("not on the configured server")
        );
        let mut flipped = v3.as_bytes().to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1; // in the signature
        assert!(
            refused(Notice {
                release: "r".into(),
                url: url.into(),
                manifest: flipped
            })
            .contains("signature")
        );
    }
}
