//! The process supervisor with tiny shell-script "firmware": one that confirms, one that
//! exits, one that hangs (stops itself), one that runs but never confirms (and ignores
//! SIGTERM). Deadline 1.5 s here; the 30 s default is tested on the core's clock.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use iotsec_ota::dir::DirStore;
use iotsec_ota::record::Outcome;
use iotsec_ota::supervisor::{Event, Supervisor};
use iotsec_ota::{Engine, Manifest, RollbackReason, SlotId, Version};

use crate::common::*;

const DEADLINE: Duration = Duration::from_millis(1500);
const GRACE: Duration = Duration::from_millis(300);

fn script(version: &str, body: &str) -> Release {
    let image = format!(
        "#!/bin/sh\necho \"{version} trial=$IOTSEC_OTA_TRIAL slot=$IOTSEC_OTA_SLOT\" >> \"$1\"\n{body}\n"
    )
    .into_bytes();
    let m: Manifest = manifest(version, 1, &image);
    release_with(&vendor(), &m, image)
}

struct Rig {
    _tmp: tempfile::TempDir,
    state: PathBuf,
    log: PathBuf,
    v1: Release,
}

/// State dir with 1.0.0 confirmed (a program that logs and exits 0) and `trial` installed.
fn rig(trial: &Release) -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let log = tmp.path().join("log");
    let v1 = script("1.0.0", "exit 0");
    let mut config = config();
    config.confirm_timeout_ms = DEADLINE.as_millis() as u64;
    let mut engine = Engine::open(DirStore::open(&state).unwrap(), config).unwrap();
    install(&mut engine, &v1).unwrap();
    engine.boot(&keys(), NOW_MS).unwrap();
    engine.confirm(NOW_MS + 1).unwrap();
    install(&mut engine, trial).unwrap();
    Rig {
        _tmp: tmp,
        state,
        log,
        v1,
    }
}

fn supervisor(rig: &Rig) -> Supervisor {
    let mut config = config();
    config.confirm_timeout_ms = DEADLINE.as_millis() as u64;
    let mut sup = Supervisor::new(rig.state.clone(), config, keys());
    sup.args = vec![rig.log.clone().into()];
    sup.poll = Duration::from_millis(20);
    sup.kill_grace = GRACE;
    sup
}

/// Runs the supervisor; returns events with the time they happened.
fn run(rig: &Rig) -> (i32, Vec<(Duration, Event)>) {
    let start = Instant::now();
    let mut events = Vec::new();
    let status = supervisor(rig)
        .run(|e| events.push((start.elapsed(), e.clone())))
        .unwrap();
    (iotsec_ota::supervisor::exit_code(status), events)
}

fn log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn active(rig: &Rig) -> (Version, Option<Outcome>) {
    let engine = Engine::open(DirStore::open(&rig.state).unwrap(), config()).unwrap();
    let last = engine.record().last.as_ref().map(|l| l.outcome);
    (engine.installed().unwrap().version.clone(), last)
}

/// The trial failed for `reason`, within the deadline (+ kill grace + slack), and the old
/// program ran again afterwards; the trial's whole process group is gone.
fn assert_rolled_back(rig: &Rig, events: &[(Duration, Event)], reason: RollbackReason) {
    let trial_pid = events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Started {
                trial: true, pid, ..
            } => Some(*pid),
            _ => None,
        })
        .expect("the trial was started");
    let at = events
        .iter()
        .find_map(|(t, e)| match e {
            Event::RolledBack {
                slot: SlotId::B,
                reason: r,
            } if *r == reason => Some(*t),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rollback for {reason:?}: {events:?}"));
    assert!(
        at <= DEADLINE + GRACE + Duration::from_millis(700),
        "rolled back after {at:?}"
    );
    assert!(matches!(
        events.last(),
        Some((
            _,
            Event::Exited {
                slot: SlotId::A,
                ..
            }
        ))
    ));
    assert_eq!(
        log(&rig.log).lines().last().unwrap(),
        "1.0.0 trial=0 slot=a"
    );
    let (version, last) = active(rig);
    assert_eq!(version, *rig.v1.version());
    assert_eq!(last, Some(Outcome::RolledBack(reason)));
    // Killed members are reaped by init shortly after; give it a moment.
    let group = nix::unistd::Pid::from_raw(trial_pid as i32);
    let until = Instant::now() + Duration::from_secs(2);
    while nix::sys::signal::killpg(group, None).is_ok() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        nix::sys::signal::killpg(group, None),
        Err(nix::errno::Errno::ESRCH),
        "the trial's process group must be gone"
    );
}

#[test]
fn trial_that_confirms_is_kept() {
    let rig = rig(&script(
        "2.0.0",
        ": > \"$IOTSEC_OTA_CONFIRM\"\nsleep 0.3\nexit 0",
    ));
    let (code, events) = run(&rig);
    assert_eq!(code, 0);
    assert!(
        events
            .iter()
            .any(|(_, e)| matches!(e, Event::Confirmed { .. })),
        "{events:?}"
    );
    assert_eq!(log(&rig.log), "2.0.0 trial=1 slot=b\n");
    let (version, last) = active(&rig);
    assert_eq!(version.to_string(), "2.0.0");
    assert_eq!(last, Some(Outcome::Confirmed));
}

#[test]
fn trial_that_exits_is_rolled_back() {
    let rig = rig(&script("2.0.0", "exit 3"));
    let (code, events) = run(&rig);
    assert_eq!(code, 0, "the old program ran and exited 0");
    assert_rolled_back(&rig, &events, RollbackReason::TrialExited);
}

#[test]
fn trial_that_hangs_is_killed_and_rolled_back() {
    let rig = rig(&script("2.0.0", "kill -STOP $$"));
    let (_, events) = run(&rig);
    assert_rolled_back(&rig, &events, RollbackReason::DeadlinePassed);
}

#[test]
fn trial_that_never_confirms_is_killed_and_rolled_back() {
    // Runs (e.g. cannot reach the broker), ignores SIGTERM, and has a child of its own.
    let rig = rig(&script(
        "2.0.0",
        "trap '' TERM\nwhile :; do sleep 0.05; done",
    ));
    let (_, events) = run(&rig);
    assert_rolled_back(&rig, &events, RollbackReason::DeadlinePassed);
}
