//! The update state of a Linux gateway (`iotsec fw install --slots DIR`, see docs/ota.md): the
//! trusted key set, and the security counter of what is installed. Read without taking the
//! store's lock: the audit never writes there.

use std::fs;
use std::path::Path;

use iotsec_ota::{KeySet, Role, SignedManifest};

use crate::catalog;
use crate::finding::{Location, OwaspIot};
use crate::report::Assessment;

/// True when `dir` looks like an iotsec-ota slots directory.
pub fn is_slots_dir(dir: &Path) -> bool {
    dir.is_dir()
        && [
            "keyset",
            "boot-record.0",
            "boot-record.1",
            "slot-a.manifest",
            "slot-b.manifest",
            "hardware-id",
        ]
        .iter()
        .any(|f| dir.join(f).exists())
}

/// Assesses a slots directory.
pub fn assess(dir: &Path, a: &mut Assessment) {
    let keyset_path = dir.join("keyset");
    match fs::read(&keyset_path) {
        Err(_) => a.push(catalog::OTA_NO_KEYSET.finding(
            Location::file(&keyset_path),
            format!("{} has no keyset file", dir.display()),
        )),
        Ok(bytes) => match KeySet::decode(&bytes) {
            Err(e) => a.push(catalog::OTA_NO_KEYSET.finding(
                Location::file(&keyset_path),
                format!("keyset does not decode: {e}"),
            )),
            Ok(keys) => {
                let firmware = keys
                    .keys()
                    .iter()
                    .filter(|k| k.roles.allows(Role::Firmware))
                    .count();
                if keys.keys().len() == 1 {
                    a.push(catalog::OTA_SINGLE_KEY.finding(
                        Location::file(&keyset_path),
                        format!(
                                "key set version {} holds one key ({}) for every role",
                                keys.version(),
                                keys.keys()
                                    .first()
                                    .map(|k| k.key.algorithm().name())
                                    .unwrap_or("?")
                            ),
                    ));
                }
                a.covered(
                    OwaspIot::I4,
                    format!(
                        "iotsec-ota state {}: key set v{} with {firmware} firmware keys (every image is signature-checked)",
                        dir.display(),
                        keys.version()
                    ),
                );
            }
        },
    }
    let mut counters = Vec::new();
    for slot in ["a", "b"] {
        let p = dir.join(format!("slot-{slot}.manifest"));
        if let Ok(bytes) = fs::read(&p)
            && let Ok(signed) = SignedManifest::parse(&bytes)
        {
            counters.push((
                p,
                signed.manifest().security_counter,
                signed.manifest().version.to_string(),
            ));
        }
    }
    if counters.iter().all(|(_, c, _)| *c == 0)
        && let Some((p, _, v)) = counters.first()
    {
        a.push(catalog::OTA_NO_ANTI_ROLLBACK.finding(
            Location::file(p),
            format!("installed releases (e.g. {v}) all carry security counter 0"),
        ));
    }
}
