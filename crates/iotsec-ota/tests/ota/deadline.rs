//! The confirm deadline on the core's caller-supplied clock (no sleeps): the 30 s default.

use iotsec_ota::engine::DEFAULT_CONFIRM_TIMEOUT_MS;
use iotsec_ota::record::Outcome;
use iotsec_ota::{Engine, Error, RollbackReason, SlotId, UpdateState};

use crate::common::*;

/// v1 running in A, v2 verified and booted on trial in B at `t0`.
fn trial(t0: u64) -> (Engine<iotsec_ota::sim::SimFlash>, Release, Release) {
    let mut engine = device();
    let v1 = release("1.0.0", 1);
    let v2 = release("2.0.0", 2);
    install_confirmed(&mut engine, &v1);
    install(&mut engine, &v2).unwrap();
    let boot = engine.boot(&keys(), t0).unwrap().unwrap();
    assert_eq!((boot.slot, boot.trial), (SlotId::B, true));
    (engine, v1, v2)
}

#[test]
fn default_deadline_is_30_seconds() {
    assert_eq!(config().confirm_timeout_ms, 30_000);
    assert_eq!(DEFAULT_CONFIRM_TIMEOUT_MS, 30_000);
    let t0 = NOW_MS;
    let (mut engine, v1, v2) = trial(t0);
    assert_eq!(
        engine.state(),
        UpdateState::BootedInTrial {
            slot: SlotId::B,
            deadline_ms: t0 + 30_000
        }
    );
    // 29.999 s: still on trial.
    assert_eq!(engine.check_deadline(t0 + 29_999).unwrap(), None);
    // 30 s: rolled back, the failure recorded for reporting.
    assert_eq!(
        engine.check_deadline(t0 + 30_000).unwrap(),
        Some(RollbackReason::DeadlinePassed)
    );
    let last = engine.record().last.clone().unwrap();
    assert_eq!(
        last.outcome,
        Outcome::RolledBack(RollbackReason::DeadlinePassed)
    );
    assert_eq!(last.version.as_ref(), Some(v2.version()));
    assert!(engine.record().report_pending);
    assert_eq!(
        engine.record().security_counter,
        1,
        "counter rises only on confirm"
    );
    let mut engine = assert_runs(engine, &v1);
    // Reported once the old firmware is back online.
    engine.ack_report().unwrap();
    assert!(!engine.record().report_pending);
}

#[test]
fn confirm_just_before_the_deadline_commits() {
    let t0 = NOW_MS;
    let (mut engine, _, v2) = trial(t0);
    assert_eq!(engine.confirm(t0 + 29_999).unwrap(), *v2.version());
    assert_eq!(engine.record().security_counter, 2);
    assert_eq!(
        engine.record().last.clone().unwrap().outcome,
        Outcome::Confirmed
    );
    assert_runs(engine, &v2);
}

#[test]
fn confirm_at_the_deadline_rolls_back() {
    let t0 = NOW_MS;
    let (mut engine, v1, _) = trial(t0);
    let err = engine.confirm(t0 + 30_000).unwrap_err();
    assert!(matches!(
        err,
        Error::TrialRolledBack {
            reason: RollbackReason::DeadlinePassed
        }
    ));
    assert!(matches!(engine.confirm(t0 + 30_001), Err(Error::NoTrial)));
    assert_runs(engine, &v1);
}

#[test]
fn reset_before_confirm_rolls_back() {
    let t0 = NOW_MS;
    let (engine, v1, _) = trial(t0);
    // The device restarts 3 s into the trial (crash, watchdog, power).
    let mut engine = Engine::open(engine.into_store(), config()).unwrap();
    let boot = engine.boot(&keys(), t0 + 3_000).unwrap().unwrap();
    assert_eq!(boot.rolled_back, Some(RollbackReason::ResetBeforeConfirm));
    assert_eq!((boot.slot, boot.trial), (SlotId::A, false));
    assert_runs(engine, &v1);
}

#[test]
fn first_install_on_a_fresh_device_and_its_rollback() {
    let mut engine = device();
    assert_eq!(
        engine.boot(&keys(), NOW_MS).unwrap(),
        None,
        "factory-fresh: nothing to boot"
    );
    let v1 = release("1.0.0", 1);
    install(&mut engine, &v1).unwrap();
    engine.boot(&keys(), NOW_MS).unwrap().unwrap();
    engine.check_deadline(NOW_MS + 30_000).unwrap();
    // Nothing to go back to: the device is fresh again, and can take the install again.
    assert_eq!(engine.boot(&keys(), NOW_MS).unwrap(), None);
    install_confirmed(&mut engine, &v1);
    assert_runs(engine, &v1);
}
