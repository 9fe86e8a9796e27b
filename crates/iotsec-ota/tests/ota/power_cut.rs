//! Power cut at every write of a whole update, confirm and two rollbacks (deadline, reset),
//! with the hit write landing not at all or half. After every cut the device restarts and must
//! boot a valid signed image with consistent state, never go back behind a confirmed release,
//! and still be able to install and confirm the next update.

use iotsec_ota::record::{SlotState, TrialPhase};
use iotsec_ota::sim::{PowerCut, SimFlash, Tear};
use iotsec_ota::slot::RecordChange;
use iotsec_ota::{Engine, Error, ImageHasher, SlotId, SlotStore, Version};

use crate::common::*;

struct Releases {
    v1: Release,
    v2: Release,
    v3: Release,
    v4: Release,
}

fn releases() -> Releases {
    Releases {
        v1: release("1.0.0", 1),
        v2: release("2.0.0", 2),
        v3: release("3.0.0", 3),
        v4: release("4.0.0", 4),
    }
}

/// Progress the script made durably (to check "never behind a confirmed release").
#[derive(Default)]
struct Progress {
    confirmed: Option<Version>,
}

/// The whole scenario, from a device running v1:
/// install v2, boot, confirm; install v3, boot, deadline passes (rolled back), boot v2;
/// install v3 again, boot, reset before confirming (rolled back), report acknowledged.
fn scenario(
    engine: &mut Engine<SimFlash>,
    r: &Releases,
    progress: &mut Progress,
) -> Result<(), Error> {
    let keys = keys();
    let mut now = NOW_MS;
    install_parts(engine, r.v2.signed.as_bytes(), &r.v2.image, &keys, now)?;
    engine.boot(&keys, now)?;
    now += 5_000;
    progress.confirmed = Some(engine.confirm(now)?);

    install_parts(engine, r.v3.signed.as_bytes(), &r.v3.image, &keys, now)?;
    engine.boot(&keys, now)?;
    now += 30_000;
    engine.check_deadline(now)?;
    engine.boot(&keys, now)?;

    install_parts(engine, r.v3.signed.as_bytes(), &r.v3.image, &keys, now)?;
    engine.boot(&keys, now)?;
    engine.boot(&keys, now + 1_000)?; // a reset before confirming
    engine.ack_report()
}

fn base(r: &Releases) -> SimFlash {
    static BASE: std::sync::OnceLock<SimFlash> = std::sync::OnceLock::new();
    BASE.get_or_init(|| fresh_base(r)).clone()
}

fn fresh_base(r: &Releases) -> SimFlash {
    let mut engine = device();
    install_confirmed(&mut engine, &r.v1);
    let mut flash = engine.into_store();
    flash.restart(); // reset the write counter
    flash
}

/// Independent check of a slot: header parses and verifies, record binds it, image hashes.
fn slot_is_valid(flash: &mut SimFlash, record_state: SlotState, slot: SlotId) -> Option<Version> {
    let SlotState::Verified(digest) = record_state else {
        return None;
    };
    let header = flash.read_header(slot).unwrap();
    let signed = iotsec_ota::SignedManifest::parse(&header).ok()?;
    assert_eq!(
        signed.digest(),
        digest,
        "record must bind slot {slot} to its header"
    );
    let manifest = signed
        .verify(&keys())
        .expect("a verified slot is validly signed");
    let mut image = vec![0u8; manifest.image_size as usize];
    flash.read_image(slot, 0, &mut image).unwrap();
    let mut hasher = ImageHasher::new(manifest);
    hasher.update(&image).unwrap();
    hasher
        .finish()
        .expect("a verified slot holds its signed image");
    Some(manifest.version.clone())
}

fn check_after_restart(mut flash: SimFlash, r: &Releases, progress: &Progress, label: &str) {
    flash.restart();
    let mut engine = Engine::open(flash, config()).unwrap();
    let boot = engine
        .boot(&keys(), NOW_MS + 100_000)
        .unwrap_or_else(|e| panic!("{label}: boot failed: {e}"))
        .unwrap_or_else(|| panic!("{label}: nothing to boot"));
    let record = engine.record().clone();
    let mut flash = engine.into_store();

    // Every slot the record calls verified really is; the booted one above all.
    let mut versions = [None, None];
    for slot in [SlotId::A, SlotId::B] {
        versions[slot as usize] = slot_is_valid(&mut flash, record.slot(slot), slot);
    }
    let running = versions[boot.slot as usize].clone().unwrap_or_else(|| {
        panic!(
            "{label}: booted slot {} is not a valid signed image",
            boot.slot
        )
    });
    let known = [r.v1.version(), r.v2.version(), r.v3.version()];
    assert!(
        known.contains(&&running),
        "{label}: unexpected version {running}"
    );

    // Consistent state.
    if boot.trial {
        assert_eq!(
            record
                .trial
                .map(|t| (t.slot, matches!(t.phase, TrialPhase::Booted { .. }))),
            Some((boot.slot, true)),
            "{label}"
        );
        assert!(
            running == *r.v2.version() || running == *r.v3.version(),
            "{label}"
        );
    } else {
        assert_eq!(record.active, Some(boot.slot), "{label}");
        assert!(record.trial.is_none(), "{label}");
    }
    let active = record.active.and_then(|a| versions[a as usize].clone());
    let active = active.unwrap_or_else(|| panic!("{label}: active slot invalid"));
    let active_counter = if active == *r.v1.version() { 1 } else { 2 };
    assert_eq!(
        record.security_counter, active_counter,
        "{label}: counter rises only on confirm"
    );
    if let Some(confirmed) = &progress.confirmed {
        assert!(
            active >= *confirmed,
            "{label}: went back behind confirmed {confirmed}"
        );
    }

    // Still alive: finish whatever is on trial, then a fresh update goes through.
    let mut engine = Engine::open(flash, config()).unwrap();
    if boot.trial {
        engine.confirm(NOW_MS + 100_001).unwrap();
    }
    install_parts(
        &mut engine,
        r.v4.signed.as_bytes(),
        &r.v4.image,
        &keys(),
        NOW_MS,
    )
    .unwrap_or_else(|e| panic!("{label}: next install failed: {e}"));
    engine.boot(&keys(), NOW_MS).unwrap();
    engine.confirm(NOW_MS + 1).unwrap();
    assert_eq!(
        engine.installed().unwrap().version,
        *r.v4.version(),
        "{label}"
    );
}

#[test]
fn power_cut_at_every_write() {
    let r = releases();
    // The uncut run: how many writes, and the state-machine steps in order.
    let mut engine = Engine::open(base(&r), config()).unwrap();
    let mut progress = Progress::default();
    scenario(&mut engine, &r, &mut progress).unwrap();
    let flash = engine.into_store();
    let total = flash.writes();
    use RecordChange::*;
    let steps = &flash.changes()[flash.changes().len() - 13..];
    assert_eq!(
        steps,
        [
            StartDownload,
            SetBootTarget,
            StartTrial,
            Commit, // v2
            StartDownload,
            SetBootTarget,
            StartTrial,
            RollBack, // v3: deadline
            StartDownload,
            SetBootTarget,
            StartTrial,
            RollBack,
            AckReport, // v3 again: reset
        ]
    );

    let mut covered = 0;
    for at_write in 1..=total {
        for tear in [Tear::Nothing, Tear::Half] {
            let mut flash = base(&r);
            flash.cut_power(PowerCut { at_write, tear });
            let mut engine = Engine::open(flash, config()).unwrap();
            let mut progress = Progress::default();
            let result = scenario(&mut engine, &r, &mut progress);
            let flash = engine.into_store();
            assert!(
                result.is_err() && !flash.powered(),
                "cut at write {at_write} must hit"
            );
            check_after_restart(
                flash,
                &r,
                &progress,
                &format!("cut at write {at_write} ({tear:?})"),
            );
            covered += 1;
        }
    }
    println!("power cut: {covered} cut points covered ({total} writes x 2 tear modes)");
    assert!(
        total > 30,
        "the scenario must be long enough to matter ({total} writes)"
    );
}
