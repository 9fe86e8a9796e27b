//! The acceptance attacks. Each ends by restarting the device and checking that the old
//! firmware is still the one that boots, confirmed, with nothing on trial.

use iotsec_ota::sim::SimFlash;
use iotsec_ota::{Engine, Error, Fault, RollbackReason, SignedManifest, SlotId, UpdateState};

use crate::common::*;

/// A device running 1.1.0 (security counter 3), with 1.0.0 (counter 1) before it.
struct Setup {
    flash: SimFlash,
    old: Release,
    current: Release,
}

fn setup() -> Setup {
    let mut engine = device();
    let old = release("1.0.0", 1);
    let current = release("1.1.0", 3);
    install_confirmed(&mut engine, &old);
    install_confirmed(&mut engine, &current);
    Setup {
        flash: engine.into_store(),
        old,
        current,
    }
}

/// Offers `header` + `image`; the install must fail with an error `check` accepts (blamed
/// on the peer), leave no download behind, and the current firmware must still boot.
fn rejected(setup: &Setup, header: &[u8], image: &[u8], check: impl Fn(&Error) -> bool) {
    let mut engine = Engine::open(setup.flash.clone(), config()).unwrap();
    let err = install_parts(&mut engine, header, image, &keys(), NOW_MS).unwrap_err();
    assert!(check(&err), "unexpected rejection: {err}");
    assert_eq!(err.fault(), Fault::Peer, "{err}");
    assert_eq!(engine.state(), UpdateState::Idle);
    assert_runs(engine, &setup.current);
}

#[test]
fn unsigned_image_is_refused() {
    let s = setup();
    let next = release("2.0.0", 3);
    // A raw image where the signed manifest should be.
    rejected(&s, &next.image, &[], |e| {
        matches!(e, Error::Malformed { .. })
    });
    // A well-formed envelope whose signature is all zeros.
    let mut zeroed = next.signed.as_bytes().to_vec();
    let len = zeroed.len();
    zeroed[len - 64..].fill(0);
    rejected(&s, &zeroed, &next.image, |e| {
        matches!(e, Error::BadSignature { .. })
    });
}

#[test]
fn wrong_key_is_refused() {
    let s = setup();
    let image = image_for("2.0.0", 1200);
    let attacker = release_with(&key(66), &manifest("2.0.0", 3, &image), image);
    rejected(&s, attacker.signed.as_bytes(), &attacker.image, |e| {
        matches!(e, Error::UnknownKey { .. })
    });
    // Same, but the attacker copies the vendor's key id into the signature block.
    let mut forged = attacker.signed.as_bytes().to_vec();
    let at = forged.len() - 72;
    forged[at..at + 8].copy_from_slice(&vendor().public_key().id().0);
    rejected(&s, &forged, &attacker.image, |e| {
        matches!(e, Error::BadSignature { .. })
    });
}

#[test]
fn flipped_byte_in_image_is_refused() {
    let s = setup();
    let next = release("2.0.0", 3);
    for at in [0, next.image.len() / 2, next.image.len() - 1] {
        let mut image = next.image.clone();
        image[at] ^= 0x80;
        rejected(&s, next.signed.as_bytes(), &image, |e| {
            matches!(e, Error::HashMismatch)
        });
    }
}

#[test]
fn flipped_byte_in_manifest_is_refused_at_every_position() {
    let s = setup();
    let next = release("2.0.0", 3);
    let header = next.signed.as_bytes();
    for at in 0..header.len() {
        let mut bad = header.to_vec();
        bad[at] ^= 0x01;
        rejected(&s, &bad, &next.image, |e| {
            matches!(
                e,
                Error::Malformed { .. }
                    | Error::Truncated { .. }
                    | Error::BadSignature { .. }
                    | Error::UnknownKey { .. }
            )
        });
    }
}

#[test]
fn truncated_image_is_refused() {
    let s = setup();
    let next = release("2.0.0", 3);
    let short = &next.image[..next.image.len() - 1];
    rejected(
        &s,
        next.signed.as_bytes(),
        short,
        |e| matches!(e, Error::ImageTruncated { actual, .. } if *actual == short.len() as u64),
    );
}

#[test]
fn image_longer_than_signed_is_refused() {
    let s = setup();
    let next = release("2.0.0", 3);
    let mut long = next.image.clone();
    long.extend_from_slice(&[0u8; 100]);
    rejected(&s, next.signed.as_bytes(), &long, |e| {
        matches!(e, Error::ImageTooLong { .. })
    });
    // Endless data: the first chunk that crosses the signed size is refused unwritten.
    let mut engine = Engine::open(s.flash.clone(), config()).unwrap();
    let mut download = engine
        .begin_download(next.signed.as_bytes(), &keys(), NOW_MS)
        .unwrap();
    let mut refused = None;
    for i in 0..1_000_000u32 {
        if let Err(e) = download.write(&[i as u8; 64]) {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.unwrap();
    assert!(matches!(e, Error::ImageTooLong { .. }));
    assert_eq!(u64::from(i), next.image.len() as u64 / 64);
    assert!(matches!(download.write(b"x"), Err(Error::Aborted)));
    drop(download);
    assert_runs(engine, &s.current);
}

#[test]
fn wrong_hardware_id_is_refused() {
    let s = setup();
    let image = image_for("2.0.0", 1200);
    let mut m = manifest("2.0.0", 3, &image);
    m.hardware_id = iotsec_ota::HardwareId::new("other-model").unwrap();
    let other = release_with(&vendor(), &m, image);
    rejected(
        &s,
        other.signed.as_bytes(),
        &other.image,
        |e| matches!(e, Error::WrongHardware { offered, .. } if offered == "other-model"),
    );
}

#[test]
fn older_version_is_refused() {
    let s = setup();
    // Newly signed, counter fine, but 1.0.5 < 1.1.0.
    let older = release("1.0.5", 3);
    rejected(&s, older.signed.as_bytes(), &older.image, |e| {
        matches!(e, Error::NotNewer { .. })
    });
    // The running version itself is not newer either.
    let same = release("1.1.0", 3);
    rejected(&s, same.signed.as_bytes(), &same.image, |e| {
        matches!(e, Error::NotNewer { .. })
    });
}

#[test]
fn lower_security_counter_is_refused() {
    let s = setup();
    let next = release("2.0.0", 2);
    rejected(&s, next.signed.as_bytes(), &next.image, |e| {
        matches!(
            e,
            Error::CounterTooLow {
                offered: 2,
                device: 3
            }
        )
    });
}

#[test]
fn old_validly_signed_release_replayed_is_refused() {
    let s = setup();
    rejected(&s, s.old.signed.as_bytes(), &s.old.image, |e| {
        matches!(e, Error::NotNewer { .. })
    });
}

#[test]
fn manifest_of_one_release_with_image_of_another_is_refused() {
    let s = setup();
    let x = release("2.0.0", 3);
    let mut y = release("2.0.1", 3);
    rejected(&s, x.signed.as_bytes(), &y.image, |e| {
        matches!(
            e,
            Error::HashMismatch | Error::ImageTruncated { .. } | Error::ImageTooLong { .. }
        )
    });
    // Same length, different contents.
    y.image.resize(x.image.len(), 0);
    rejected(&s, x.signed.as_bytes(), &y.image, |e| {
        matches!(e, Error::HashMismatch)
    });
}

#[test]
fn expired_manifest_is_refused() {
    let s = setup();
    let image = image_for("2.0.0", 1200);
    let mut m = manifest("2.0.0", 3, &image);
    m.expires_s = Some(NOW_MS / 1000 - 1);
    let stale = release_with(&vendor(), &m, image);
    rejected(&s, stale.signed.as_bytes(), &stale.image, |e| {
        matches!(e, Error::Expired { .. })
    });
}

#[test]
fn image_changed_in_slot_between_write_and_switch_is_refused() {
    let s = setup();
    let next = release("2.0.0", 3);
    let mut flash = s.flash.clone();
    // The running slot is B (1.0.0 went to A, 1.1.0 to B): the download goes to A.
    flash.tamper_on_sync(SlotId::A, 10);
    let mut engine = Engine::open(flash, config()).unwrap();
    let err = install(&mut engine, &next).unwrap_err();
    assert!(
        matches!(err, Error::SlotChanged { slot: SlotId::A }),
        "{err}"
    );
    assert_eq!(engine.state(), UpdateState::Idle);
    assert_runs(engine, &s.current);
}

#[test]
fn image_changed_in_slot_after_verification_is_rolled_back_at_boot() {
    let s = setup();
    let next = release("2.0.0", 3);
    let mut engine = Engine::open(s.flash.clone(), config()).unwrap();
    install(&mut engine, &next).unwrap();
    assert_eq!(
        engine.state(),
        UpdateState::TrialPending { slot: SlotId::A }
    );
    let mut flash = engine.into_store();
    flash.tamper(SlotId::A, 700);
    // The bootloader re-verifies the trial before its first boot.
    let mut engine = Engine::open(flash, config()).unwrap();
    let boot = engine.boot(&keys(), NOW_MS).unwrap().unwrap();
    assert_eq!((boot.slot, boot.trial), (SlotId::B, false));
    assert_eq!(boot.rolled_back, Some(RollbackReason::ImageInvalid));
    let last = engine.record().last.clone().unwrap();
    assert_eq!(last.version.as_ref(), Some(next.version()));
    assert!(engine.record().report_pending);
    assert_runs(engine, &s.current);
}

#[test]
fn swapped_slot_header_is_refused_at_boot() {
    // Replacing a verified slot's header by another validly signed one (same image) breaks
    // the record's digest binding.
    let s = setup();
    let next = release("2.0.0", 3);
    let mut engine = Engine::open(s.flash.clone(), config()).unwrap();
    install(&mut engine, &next).unwrap();
    let mut flash = engine.into_store();
    let mut m = next.signed.manifest().clone();
    m.created_s += 1;
    let twin = SignedManifest::sign(&m, &vendor()).unwrap();
    iotsec_ota::SlotStore::perform(
        &mut flash,
        iotsec_ota::Action::WriteHeader {
            slot: SlotId::A,
            header: twin.as_bytes(),
        },
    )
    .unwrap();
    let mut engine = Engine::open(flash, config()).unwrap();
    let boot = engine.boot(&keys(), NOW_MS).unwrap().unwrap();
    assert_eq!(boot.rolled_back, Some(RollbackReason::ImageInvalid));
    assert_runs(engine, &s.current);
}

#[test]
fn no_new_install_while_a_trial_runs() {
    let s = setup();
    let mut engine = Engine::open(s.flash.clone(), config()).unwrap();
    install(&mut engine, &release("2.0.0", 3)).unwrap();
    let err = install(&mut engine, &release("3.0.0", 3)).unwrap_err();
    assert!(matches!(err, Error::TrialInProgress { slot: SlotId::A }));
}
