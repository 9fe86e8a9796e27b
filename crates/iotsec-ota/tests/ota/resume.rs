//! Resuming a download: within a process (keep the Download, continue at its offset) and
//! after a restart (re-hash the prefix already in the slot).

use iotsec_ota::{Engine, Error, UpdateState};

use crate::common::*;

#[test]
fn download_cut_at_half_resumes_after_restart() {
    let mut engine = device();
    let v1 = release("1.0.0", 1);
    install_confirmed(&mut engine, &v1);
    let v2 = release("2.0.0", 2);
    let half = v2.image.len() / 2;

    let mut download = engine
        .begin_download(v2.signed.as_bytes(), &keys(), NOW_MS)
        .unwrap();
    download.write(&v2.image[..half]).unwrap();
    assert_eq!(download.offset(), half as u64);
    drop(download); // the connection (and the process) dies here

    let slot = match engine.state() {
        UpdateState::Downloading { slot } => slot,
        other => panic!("expected an interrupted download, got {other:?}"),
    };
    let mut engine = Engine::open(engine.into_store(), config()).unwrap();
    // The old firmware still boots in between.
    assert!(!engine.boot(&keys(), NOW_MS).unwrap().unwrap().trial);
    let mut download = engine
        .resume_download(v2.signed.as_bytes(), &keys(), NOW_MS, half as u64)
        .unwrap();
    assert_eq!((download.slot(), download.offset()), (slot, half as u64));
    download.write(&v2.image[half..]).unwrap();
    download.finish().unwrap();
    assert_eq!(engine.state(), UpdateState::TrialPending { slot });
}

#[test]
fn resume_from_a_wrong_offset_fails_verification() {
    let mut engine = device();
    install_confirmed(&mut engine, &release("1.0.0", 1));
    let v2 = release("2.0.0", 2);
    let half = v2.image.len() / 2;
    let mut download = engine
        .begin_download(v2.signed.as_bytes(), &keys(), NOW_MS)
        .unwrap();
    download.write(&v2.image[..half]).unwrap();
    drop(download);
    // Claiming more was written than really was: the erased bytes get hashed, so it fails.
    let mut download = engine
        .resume_download(v2.signed.as_bytes(), &keys(), NOW_MS, half as u64 + 100)
        .unwrap();
    download.write(&v2.image[half + 100..]).unwrap();
    assert!(matches!(download.finish(), Err(Error::HashMismatch)));
    assert_eq!(engine.state(), UpdateState::Idle);
}

#[test]
fn resume_of_another_manifest_is_refused() {
    let mut engine = device();
    install_confirmed(&mut engine, &release("1.0.0", 1));
    let v2 = release("2.0.0", 2);
    let other = release("2.0.1", 2);
    let mut download = engine
        .begin_download(v2.signed.as_bytes(), &keys(), NOW_MS)
        .unwrap();
    download.write(&v2.image[..100]).unwrap();
    drop(download);
    assert!(matches!(
        engine.resume_download(other.signed.as_bytes(), &keys(), NOW_MS, 100),
        Err(Error::NothingToResume { .. })
    ));
}

#[test]
fn in_process_resume_continues_at_offset() {
    let mut engine = device();
    let v1 = release("1.0.0", 1);
    let mut download = engine
        .begin_download(v1.signed.as_bytes(), &keys(), NOW_MS)
        .unwrap();
    // Transfer 1 delivers a third, then fails; transfer 2 asks for `Range: bytes=offset-`.
    let third = v1.image.len() / 3;
    download.write(&v1.image[..third]).unwrap();
    let offset = download.offset() as usize;
    for chunk in v1.image[offset..].chunks(100) {
        download.write(chunk).unwrap();
    }
    download.finish().unwrap();
}
