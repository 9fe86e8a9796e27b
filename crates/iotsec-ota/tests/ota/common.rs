//! Fixtures: keys, releases, a device on simulated flash.

use iotsec_ota::sim::SimFlash;
use iotsec_ota::{
    Algorithm, Config, Engine, Error, HardwareId, KeySet, Manifest, SecretKey, SignedManifest,
    SlotStore, Version,
};

pub const HW: &str = "acme-gw";
/// 2023-11-14, the tests' "now".
pub const NOW_MS: u64 = 1_700_000_000_000;
pub const CHUNK: usize = 512;
pub const FLASH: usize = 8 * 1024;

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(Algorithm::Ed25519, &[n; 32]).unwrap()
}

pub fn vendor() -> SecretKey {
    key(1)
}

/// The device's trusted keys: the vendor key (computed once; key derivation is slow in debug
/// builds and the power-cut test asks for it hundreds of times).
pub fn keys() -> KeySet {
    static KEYS: std::sync::OnceLock<KeySet> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| KeySet::factory([vendor().public_key()]).unwrap())
        .clone()
}

pub fn config() -> Config {
    Config::new(HardwareId::new(HW).unwrap())
}

/// A signed release: its manifest and image.
#[derive(Debug, Clone)]
pub struct Release {
    pub signed: SignedManifest,
    pub image: Vec<u8>,
}

impl Release {
    pub fn version(&self) -> &Version {
        &self.signed.manifest().version
    }

    pub fn bundle(&self) -> Vec<u8> {
        let mut out = self.signed.as_bytes().to_vec();
        out.extend_from_slice(&self.image);
        out
    }
}

pub fn image_for(version: &str, len: usize) -> Vec<u8> {
    let seed = iotsec_ota::sha256(version.as_bytes());
    (0..len).map(|i| seed[i % 32] ^ (i / 32) as u8).collect()
}

pub fn manifest(version: &str, counter: u32, image: &[u8]) -> Manifest {
    Manifest {
        version: Version::parse(version).unwrap(),
        security_counter: counter,
        hardware_id: HardwareId::new(HW).unwrap(),
        image_size: image.len() as u64,
        image_sha256: iotsec_ota::sha256(image),
        created_s: NOW_MS / 1000 - 3600,
        expires_s: None,
    }
}

pub fn release_with(key: &SecretKey, manifest: &Manifest, image: Vec<u8>) -> Release {
    Release {
        signed: SignedManifest::sign(manifest, key).unwrap(),
        image,
    }
}

/// A release signed by the vendor, image length depending on the version.
pub fn release(version: &str, counter: u32) -> Release {
    let image = image_for(version, 1000 + 300 * (counter as usize % 5));
    release_with(&vendor(), &manifest(version, counter, &image), image)
}

pub fn device() -> Engine<SimFlash> {
    Engine::open(SimFlash::new(FLASH), config()).unwrap()
}

/// Streams a header and image into the inactive slot (chunked) and verifies.
pub fn install_parts<S: SlotStore>(
    engine: &mut Engine<S>,
    header: &[u8],
    image: &[u8],
    keys: &KeySet,
    now_ms: u64,
) -> Result<(), Error> {
    let mut download = engine.begin_download(header, keys, now_ms)?;
    for chunk in image.chunks(CHUNK) {
        download.write(chunk)?;
    }
    download.finish()
}

pub fn install<S: SlotStore>(engine: &mut Engine<S>, release: &Release) -> Result<(), Error> {
    install_parts(
        engine,
        release.signed.as_bytes(),
        &release.image,
        &keys(),
        NOW_MS,
    )
}

/// Install, boot the trial, confirm.
pub fn install_confirmed<S: SlotStore>(engine: &mut Engine<S>, release: &Release) {
    install(engine, release).unwrap();
    let boot = engine.boot(&keys(), NOW_MS).unwrap().unwrap();
    assert!(boot.trial);
    assert_eq!(engine.confirm(NOW_MS + 1).unwrap(), *release.version());
}

/// Reopens the device from its flash (a restart), boots, and checks that `expected` runs,
/// confirmed, with a verified image.
pub fn assert_runs(engine: Engine<SimFlash>, expected: &Release) -> Engine<SimFlash> {
    let mut engine = Engine::open(engine.into_store(), config()).unwrap();
    let boot = engine.boot(&keys(), NOW_MS).unwrap().expect("a slot boots");
    assert!(!boot.trial, "no trial may be running");
    assert_eq!(engine.record().active, Some(boot.slot));
    let running = engine.slot_manifest(boot.slot).unwrap().clone();
    assert_eq!(
        running, expected.signed,
        "the old firmware must still be active"
    );
    engine
}
