//! The file-backed store: a fresh directory takes its first install; bundle files stream
//! through verification and install; attacks at the file level leave the old firmware.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use iotsec_ota::dir::DirStore;
use iotsec_ota::file::{ImageSource, install_file, verify_file};
use iotsec_ota::{Algorithm, Engine, Error, KeySet, SlotId, UpdateState, keyfile};

use crate::common::*;

fn open(dir: &Path) -> Engine<DirStore> {
    Engine::open(DirStore::open(dir).unwrap(), config()).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn fresh_directory_accepts_first_install_then_updates() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let v1 = release("1.0.0", 1);
    let v2 = release("2.0.0", 2);
    let b1 = write(tmp.path(), "v1.fw", &v1.bundle());
    let b2 = write(tmp.path(), "v2.fw", &v2.bundle());

    let mut engine = open(&state);
    assert_eq!(engine.boot(&keys(), NOW_MS).unwrap(), None);
    install_file(&mut engine, &b1, ImageSource::Bundled, &keys(), NOW_MS).unwrap();
    assert_eq!(
        engine.state(),
        UpdateState::TrialPending { slot: SlotId::A }
    );
    drop(engine);

    // Each command is a new process in real life: reopen every time.
    let boot = open(&state).boot(&keys(), NOW_MS).unwrap().unwrap();
    assert!(boot.trial);
    open(&state).confirm(NOW_MS + 10).unwrap();
    let image_a = open(&state).store_mut().image_path(SlotId::A);
    assert_eq!(std::fs::read(&image_a).unwrap(), v1.image);
    let mode = std::fs::metadata(&image_a).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "slot images are programs");
    let dir_mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    let mut engine = open(&state);
    install_file(&mut engine, &b2, ImageSource::Bundled, &keys(), NOW_MS).unwrap();
    drop(engine);
    assert!(open(&state).boot(&keys(), NOW_MS).unwrap().unwrap().trial);
    open(&state).confirm(NOW_MS + 20).unwrap();
    let mut engine = open(&state);
    assert_eq!(engine.installed().unwrap().version, *v2.version());
    assert_eq!(engine.record().security_counter, 2);
    // Both record copies exist; no temp files are left behind.
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"boot-record.0".into()) && names.contains(&"boot-record.1".into()));
    assert!(!names.iter().any(|n| n.contains(".tmp.")), "{names:?}");
    assert!(!engine.boot(&keys(), NOW_MS).unwrap().unwrap().trial);
}

#[test]
fn detached_manifest_verifies_and_installs() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = release("1.0.0", 1);
    let manifest = write(tmp.path(), "v1.manifest", v1.signed.as_bytes());
    let image = write(tmp.path(), "v1.img", &v1.image);
    verify_file(&manifest, ImageSource::Detached(&image), &keys()).unwrap();
    let mut engine = open(&tmp.path().join("state"));
    install_file(
        &mut engine,
        &manifest,
        ImageSource::Detached(&image),
        &keys(),
        NOW_MS,
    )
    .unwrap();
    // A bundle is not a detached manifest.
    let bundle = write(tmp.path(), "v1.fw", &v1.bundle());
    assert!(verify_file(&bundle, ImageSource::Detached(&image), &keys()).is_err());
    // A detached manifest alone has no image.
    assert!(matches!(
        verify_file(&manifest, ImageSource::Bundled, &keys()),
        Err(Error::ImageTruncated { actual: 0, .. })
    ));
}

#[test]
fn file_level_attacks_leave_the_old_firmware() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let v1 = release("1.0.0", 1);
    let b1 = write(tmp.path(), "v1.fw", &v1.bundle());
    let mut engine = open(&state);
    install_file(&mut engine, &b1, ImageSource::Bundled, &keys(), NOW_MS).unwrap();
    engine.boot(&keys(), NOW_MS).unwrap();
    engine.confirm(NOW_MS + 1).unwrap();
    drop(engine);

    let v2 = release("2.0.0", 2).bundle();
    let header_len = release("2.0.0", 2).signed.as_bytes().len();
    let mut flipped_image = v2.clone();
    *flipped_image.last_mut().unwrap() ^= 1;
    let mut flipped_manifest = v2.clone();
    flipped_manifest[header_len / 2] ^= 1;
    let mut longer = v2.clone();
    longer.push(0);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("raw image", release("2.0.0", 2).image),
        ("flipped image byte", flipped_image),
        ("flipped manifest byte", flipped_manifest),
        ("truncated", v2[..v2.len() - 1].to_vec()),
        ("longer than signed", longer),
        ("replayed old release", v1.bundle()),
        ("empty file", Vec::new()),
    ];
    for (name, bytes) in cases {
        let path = write(tmp.path(), "attack.fw", &bytes);
        if name != "replayed old release" {
            // (The old release is validly signed: only the device's version check refuses it.)
            assert!(
                verify_file(&path, ImageSource::Bundled, &keys()).is_err(),
                "{name}"
            );
        }
        let mut engine = open(&state);
        let err = install_file(&mut engine, &path, ImageSource::Bundled, &keys(), NOW_MS)
            .expect_err(name);
        assert_eq!(err.fault(), iotsec_ota::Fault::Peer, "{name}: {err}");
        assert_eq!(engine.state(), UpdateState::Idle, "{name}");
        drop(engine);
        let mut engine = open(&state);
        let boot = engine.boot(&keys(), NOW_MS).unwrap().unwrap();
        assert!(!boot.trial, "{name}");
        assert_eq!(engine.installed().unwrap().version, *v1.version(), "{name}");
    }
}

#[test]
fn key_files_round_trip_with_private_mode() {
    let tmp = tempfile::tempdir().unwrap();
    for alg in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
        let key = keyfile::generate(alg).unwrap();
        let secret = tmp.path().join(format!("{alg}.key"));
        let public = tmp.path().join(format!("{alg}.pub"));
        keyfile::write_secret_key(&secret, &key).unwrap();
        keyfile::write_public_key(&public, &key.public_key()).unwrap();
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = keyfile::read_secret_key(&secret).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(keyfile::read_public_key(&public).unwrap(), key.public_key());
        assert!(keyfile::read_public_key(&secret).is_err());
    }
}

#[test]
fn keys_interoperate_with_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let pem = tmp.path().join("ossl.key");
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&pem)
        .status()
        .expect("openssl is needed for this test (apt-get install openssl)");
    assert!(status.success());
    let key = keyfile::read_secret_key(&pem).unwrap();
    let ours = tmp.path().join("ours.pub");
    keyfile::write_public_key(&ours, &key.public_key()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&pem)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        std::fs::read_to_string(&ours).unwrap()
    );
}

#[test]
fn stored_keyset_and_hardware_id() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore::open(tmp.path()).unwrap();
    assert!(store.keyset().unwrap().is_none());
    assert!(store.hardware_id().unwrap().is_none());
    store.store_keyset(&keys()).unwrap();
    store.store_hardware_id(&config().hardware_id).unwrap();
    assert_eq!(store.keyset().unwrap(), Some(keys()));
    assert_eq!(store.hardware_id().unwrap(), Some(config().hardware_id));
    let _: KeySet = store.keyset().unwrap().unwrap();
}
