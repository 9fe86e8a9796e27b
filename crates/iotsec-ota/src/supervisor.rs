//! The process-level update supervisor (feature `std`): runs the program in the active slot
//! as a child, and holds a trial program to its confirm deadline.
//!
//! One [`Supervisor::run`] is one boot cycle:
//!
//! 1. boot: pick the slot (a pending trial is verified and started; a trial that was started
//!    and never confirmed is rolled back, since the supervisor itself was restarted);
//! 2. run the slot's image in its own process group, with `IOTSEC_OTA_SLOTS`,
//!    `IOTSEC_OTA_CONFIRM`, `IOTSEC_OTA_TRIAL` (`1`/`0`), `IOTSEC_OTA_SLOT` and
//!    `IOTSEC_OTA_VERSION` in its environment;
//! 3. on trial, the program confirms by running `iotsec fw confirm --slots "$IOTSEC_OTA_SLOTS"`
//!    or by creating the file named in `IOTSEC_OTA_CONFIRM` (the supervisor then commits).
//!    The device agent does this once it has connected to the broker over TLS and reported
//!    its version. A trial that exits, or has not confirmed when the deadline passes (hung,
//!    cannot connect), is killed (SIGTERM, then SIGKILL to the whole group), rolled back, and
//!    the previous program is started again;
//! 4. when the (confirmed) program exits, `run` returns its status, unless a new trial was
//!    installed meanwhile: then the cycle starts over and boots it ("install, then exit" is
//!    how a program reboots into its update).

use std::ffi::OsString;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::string::ToString;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::vec::Vec;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::dir::DirStore;
use crate::engine::{Config, Engine};
use crate::error::Error;
use crate::keyset::KeySet;
use crate::record::{RollbackReason, TrialPhase};
use crate::slot::SlotId;
use crate::version::Version;

/// The caller's clock for the engine: Unix time in milliseconds.
#[must_use]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the supervisor did; the CLI prints these.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A slot was chosen and its program started.
    Started {
        /// The slot.
        slot: SlotId,
        /// Its version.
        version: Option<Version>,
        /// Whether it runs on trial.
        trial: bool,
        /// The child's pid.
        pid: u32,
    },
    /// The trial confirmed.
    Confirmed {
        /// The version now active.
        version: Version,
    },
    /// A trial was rolled back; the previous slot boots next.
    RolledBack {
        /// The slot that failed.
        slot: SlotId,
        /// Why.
        reason: RollbackReason,
    },
    /// The program exited.
    Exited {
        /// The slot.
        slot: SlotId,
        /// Its exit status.
        status: ExitStatus,
    },
}

/// Runs slot programs and enforces the confirm deadline.
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// The state directory.
    pub dir: PathBuf,
    /// Engine configuration (hardware id, confirm timeout).
    pub config: Config,
    /// Trusted keys (for verifying a trial before its first boot).
    pub keys: KeySet,
    /// Arguments passed to every program.
    pub args: Vec<OsString>,
    /// How often the supervisor looks for a confirmation (default 50 ms).
    pub poll: Duration,
    /// Between SIGTERM and SIGKILL (default 2 s).
    pub kill_grace: Duration,
}

/// How a trial run ended.
enum TrialEnd {
    Confirmed,
    /// Rolled back (the program is gone).
    RolledBack,
    /// The program exited right after confirming through `iotsec fw confirm`.
    ExitedConfirmed(ExitStatus),
}

impl Supervisor {
    /// A supervisor with default timings.
    #[must_use]
    pub fn new(dir: PathBuf, config: Config, keys: KeySet) -> Self {
        Self {
            dir,
            config,
            keys,
            args: Vec::new(),
            poll: Duration::from_millis(50),
            kill_grace: Duration::from_secs(2),
        }
    }

    fn engine(&self) -> Result<Engine<DirStore>, Error> {
        Engine::open(DirStore::open(&self.dir)?, self.config.clone())
    }

    /// Runs one boot cycle (see the module docs) and returns the exit status of the program
    /// that ran last.
    ///
    /// # Errors
    /// [`Error::NoBootableSlot`] if nothing is installed; store and spawn failures.
    pub fn run(&self, mut on_event: impl FnMut(&Event)) -> Result<ExitStatus, Error> {
        loop {
            let mut engine = self.engine()?;
            let confirm_path = engine.store_mut().confirm_request_path();
            remove_if_present(&confirm_path)?;
            let boot = engine
                .boot(&self.keys, now_ms())?
                .ok_or(Error::NoBootableSlot)?;
            if let Some(reason) = boot.rolled_back {
                on_event(&Event::RolledBack {
                    slot: boot.slot.other(),
                    reason,
                });
            }
            let version = engine
                .slot_manifest(boot.slot)
                .map(|s| s.manifest().version.clone());
            let image = engine.store_mut().image_path(boot.slot);
            drop(engine); // release the lock while the program runs

            let mut child = self.spawn(&image, boot.slot, boot.trial, version.as_ref())?;
            on_event(&Event::Started {
                slot: boot.slot,
                version,
                trial: boot.trial,
                pid: child.id(),
            });
            if boot.trial {
                match self.hold_trial(&mut child, boot.slot, &confirm_path, &mut on_event)? {
                    TrialEnd::RolledBack => continue,
                    TrialEnd::ExitedConfirmed(status) => {
                        on_event(&Event::Exited {
                            slot: boot.slot,
                            status,
                        });
                        return Ok(status);
                    }
                    TrialEnd::Confirmed => {}
                }
            }
            let status = child.wait().map_err(|e| Error::io("wait for", &image, e))?;
            kill_group(&child, Signal::SIGKILL);
            on_event(&Event::Exited {
                slot: boot.slot,
                status,
            });
            let engine = self.engine()?;
            if matches!(
                engine.record().trial,
                Some(t) if t.phase == TrialPhase::Pending
            ) {
                continue; // an update was installed: boot into it
            }
            return Ok(status);
        }
    }

    fn spawn(
        &self,
        image: &Path,
        slot: SlotId,
        trial: bool,
        version: Option<&Version>,
    ) -> Result<Child, Error> {
        let mut cmd = Command::new(image);
        cmd.args(&self.args)
            .env("IOTSEC_OTA_SLOTS", &self.dir)
            .env("IOTSEC_OTA_CONFIRM", self.dir.join("confirm-request"))
            .env("IOTSEC_OTA_TRIAL", if trial { "1" } else { "0" })
            .env("IOTSEC_OTA_SLOT", slot.name())
            .env(
                "IOTSEC_OTA_VERSION",
                version.map(ToString::to_string).unwrap_or_default(),
            )
            // Own process group, so the whole program (and its children) can be killed.
            .process_group(0);
        cmd.spawn().map_err(|e| Error::io("start", image, e))
    }

    /// Waits for the trial to confirm; rolls back and kills it on exit or deadline.
    fn hold_trial(
        &self,
        child: &mut Child,
        slot: SlotId,
        confirm_path: &Path,
        on_event: &mut impl FnMut(&Event),
    ) -> Result<TrialEnd, Error> {
        let deadline = Instant::now() + Duration::from_millis(self.config.confirm_timeout_ms);
        loop {
            let exited = child
                .try_wait()
                .map_err(|e| Error::io("wait for", &self.dir, e))?;
            let mut engine = self.engine()?;
            // Confirmed by `iotsec fw confirm` (the record says so) ...
            let record = engine.record();
            if record.trial.is_none() {
                if record.active == Some(slot) {
                    if let Some(version) = engine
                        .slot_manifest(slot)
                        .map(|s| s.manifest().version.clone())
                    {
                        on_event(&Event::Confirmed { version });
                    }
                    return Ok(match exited {
                        Some(status) => TrialEnd::ExitedConfirmed(status),
                        None => TrialEnd::Confirmed,
                    });
                }
                // Rolled back by someone else (`iotsec fw rollback`).
                drop(engine);
                self.stop(child);
                return Ok(TrialEnd::RolledBack);
            }
            // ... or through the confirm file (also if the program exited right after).
            if confirm_path.exists() {
                remove_if_present(confirm_path)?;
                match engine.confirm(now_ms()) {
                    Ok(version) => {
                        on_event(&Event::Confirmed { version });
                        return Ok(match exited {
                            Some(status) => TrialEnd::ExitedConfirmed(status),
                            None => TrialEnd::Confirmed,
                        });
                    }
                    Err(Error::TrialRolledBack { reason }) => {
                        drop(engine);
                        self.stop(child);
                        on_event(&Event::RolledBack { slot, reason });
                        return Ok(TrialEnd::RolledBack);
                    }
                    Err(e) => return Err(e),
                }
            }
            let reason = if let Some(status) = exited {
                on_event(&Event::Exited { slot, status });
                Some(RollbackReason::TrialExited)
            } else if Instant::now() >= deadline {
                Some(RollbackReason::DeadlinePassed)
            } else {
                None
            };
            if let Some(reason) = reason {
                // Roll back first (under the lock), then kill: a confirm racing with the
                // deadline either landed before (handled above) or now finds no trial.
                engine.roll_back(reason)?;
                drop(engine);
                self.stop(child);
                on_event(&Event::RolledBack { slot, reason });
                return Ok(TrialEnd::RolledBack);
            }
            drop(engine);
            std::thread::sleep(
                self.poll
                    .min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }

    /// SIGTERM (and SIGCONT, in case it is stopped) to the group, SIGKILL after the grace.
    fn stop(&self, child: &mut Child) {
        if matches!(child.try_wait(), Ok(None)) {
            kill_group(child, Signal::SIGTERM);
            kill_group(child, Signal::SIGCONT);
            let until = Instant::now() + self.kill_grace;
            while Instant::now() < until {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        kill_group(child, Signal::SIGKILL);
        let _ = child.wait();
    }
}

/// Signals the child's process group (its pid is the group id); a gone group is fine.
fn kill_group(child: &Child, signal: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

fn remove_if_present(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// The exit code to report for a status (signals map to 128 + n, as shells do).
#[must_use]
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
