//! Fuzzes iotsec-ota's parsers of untrusted input (bundle / detached manifest, key-set update,
//! manifest body, boot record) and the update engine fed with hostile bundles. Invariants:
//! never a panic; every accepted encoding is canonical (re-encoding gives the same bytes);
//! a bundle signed by the trusted key verifies, and the same bundle with any one bit flipped
//! never does; the engine either installs exactly a verified bundle or leaves the device idle.
//!
//! The first input byte picks a mode: 0 raw parsing, 1 re-signed engine run, 2 sign-and-flip.
#![no_main]

use iotsec_ota::record::{BootRecord, RECORD_LEN};
use iotsec_ota::sim::SimFlash;
use iotsec_ota::{
    Algorithm, Config, Contents, Engine, HardwareId, KeySet, Manifest, SecretKey, SignedManifest,
    UpdateState, Version, parse_bundle, verify_bundle,
};
use libfuzzer_sys::fuzz_target;

const NOW_MS: u64 = 1_700_000_000_000;

fn key() -> SecretKey {
    SecretKey::from_seed(Algorithm::Ed25519, &[7; 32]).unwrap()
}

fn keys() -> KeySet {
    KeySet::factory([key().public_key()]).unwrap()
}

fn raw(data: &[u8]) {
    if let Ok((signed, contents)) = parse_bundle(data) {
        let mut again = signed.as_bytes().to_vec();
        if let Contents::Image(image) = contents {
            assert_eq!(image.len() as u64, signed.manifest().image_size);
            again.extend_from_slice(image);
        }
        assert_eq!(again, data, "bundle encoding is canonical");
        let body = signed.manifest().encode().expect("a parsed manifest re-encodes");
        assert_eq!(Manifest::decode(&body).unwrap(), *signed.manifest());
    }
    let _ = verify_bundle(data, &keys());
    if let Ok(manifest) = Manifest::decode(data) {
        assert_eq!(manifest.encode().unwrap(), data, "manifest encoding is canonical");
    }
    if let Ok((set, _)) = KeySet::parse_update(data) {
        assert_eq!(KeySet::decode(&set.encode()).unwrap(), set);
    }
    let _ = keys().apply_update(data);
    if let Ok(set) = KeySet::decode(data) {
        assert_eq!(set.encode(), data, "key-set encoding is canonical");
    }
    if let Ok(bytes) = <&[u8; RECORD_LEN]>::try_from(data) {
        if let Ok(record) = BootRecord::decode(bytes) {
            assert_eq!(&record.encode(), bytes, "boot record encoding is canonical");
        }
    }
}

/// Re-signs whatever manifest the input carries with the trusted key, so the engine gets past
/// the signature and meets hostile sizes, versions, hardware ids and images.
fn engine_run(data: &[u8]) {
    let Ok((signed, len)) = SignedManifest::parse_prefix(data) else {
        return;
    };
    let Ok(signed) = SignedManifest::sign(signed.manifest(), &key()) else {
        return;
    };
    let image = &data[len..];
    let hw = HardwareId::new("fuzz-hw").unwrap();
    let mut engine = Engine::open(SimFlash::new(64 * 1024), Config::new(hw)).unwrap();
    let keys = keys();
    let result = engine
        .begin_download(signed.as_bytes(), &keys, NOW_MS)
        .and_then(|mut download| {
            for chunk in image.chunks(97) {
                download.write(chunk)?;
            }
            download.finish()
        });
    match result {
        Ok(()) => {
            // Only the exact signed image gets installed.
            assert_eq!(image.len() as u64, signed.manifest().image_size);
            assert_eq!(iotsec_ota::sha256(image), signed.manifest().image_sha256);
            assert!(matches!(engine.state(), UpdateState::TrialPending { .. }));
            let boot = engine.boot(&keys, NOW_MS).unwrap().unwrap();
            assert!(boot.trial);
        }
        Err(_) => assert!(matches!(
            engine.state(),
            UpdateState::Idle | UpdateState::Downloading { .. }
        )),
    }
}

/// Builds a valid bundle from the input, checks it verifies, then flips one bit.
fn sign_and_flip(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let (fields, image) = data.split_at(8);
    if image.is_empty() {
        return;
    }
    let manifest = Manifest {
        version: Version::new(u64::from(fields[0]), u64::from(fields[1]), u64::from(fields[2])),
        security_counter: u32::from(fields[3]),
        hardware_id: HardwareId::new("fuzz-hw").unwrap(),
        image_size: image.len() as u64,
        image_sha256: iotsec_ota::sha256(image),
        created_s: 1_700_000_000,
        expires_s: (fields[4] & 1 == 1).then_some(1_800_000_000),
    };
    let signed = SignedManifest::sign(&manifest, &key()).unwrap();
    let bundle = signed.bundle(image).unwrap();
    verify_bundle(&bundle, &keys()).expect("a freshly signed bundle verifies");
    let at = usize::from(u16::from_le_bytes([fields[5], fields[6]])) % bundle.len();
    let mut flipped = bundle;
    flipped[at] ^= 1 << (fields[7] % 8);
    assert!(
        verify_bundle(&flipped, &keys()).is_err(),
        "a bundle with bit {} of byte {at} flipped must not verify",
        fields[7] % 8
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => raw(rest),
        1 => engine_run(rest),
        _ => sign_and_flip(rest),
    }
});
