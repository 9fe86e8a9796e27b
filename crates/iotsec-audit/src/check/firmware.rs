//! Firmware images and source trees: the secret scanner's findings, and the update-mechanism
//! verdict drawn from what it saw (update code, signature checks, iotsec-ota bundles, ESP-IDF
//! anti-rollback), and the physical-hardening checks of any `sdkconfig` found.

use std::path::PathBuf;

use crate::catalog;
use crate::check::sdkconfig;
use crate::error::Result;
use crate::finding::{Finding, Location, OwaspIot};
use crate::report::Assessment;
use crate::secrets::{self, ScanOptions, TreeScan};

/// Most paths listed in a note.
const NOTE_LIST: usize = 5;

/// Scans `roots` (firmware trees, images, device programs).
pub fn assess(roots: &[PathBuf], opts: &ScanOptions, a: &mut Assessment) -> Result<TreeScan> {
    let scan = secrets::scan(roots, opts)?;
    for h in &scan.hits {
        let mut f: Finding = h.check.finding(h.location.clone(), h.evidence.clone());
        f.severity = h.severity;
        a.push(f);
    }
    let names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    let what = format!(
        "secret scan of {} ({} files, {} MiB)",
        names.join(", "),
        scan.files,
        scan.bytes / (1024 * 1024)
    );
    a.covered(OwaspIot::I1, what.clone());
    a.covered(OwaspIot::I7, what.clone());
    if scan.init_scripts > 0 {
        a.covered(
            OwaspIot::I2,
            format!(
                "{} init scripts under {}",
                scan.init_scripts,
                names.join(", ")
            ),
        );
    }
    if scan.files > scan.text_files {
        a.covered(
            OwaspIot::I5,
            format!(
                "OpenSSL version strings in {} binaries",
                scan.files - scan.text_files
            ),
        );
    }
    notes(&scan, a);
    update_mechanism(roots, &scan, a);
    for (path, text) in &scan.sdkconfigs {
        sdkconfig::assess(path, text, a);
    }
    Ok(scan)
}

fn notes(scan: &TreeScan, a: &mut Assessment) {
    if !scan.skipped_large.is_empty() {
        let list: Vec<String> = scan
            .skipped_large
            .iter()
            .take(NOTE_LIST)
            .map(|p| p.display().to_string())
            .collect();
        a.note(format!(
            "{} files over the size cap were not scanned: {}{}",
            scan.skipped_large.len(),
            list.join(", "),
            if scan.skipped_large.len() > NOTE_LIST {
                ", ..."
            } else {
                ""
            }
        ));
    }
    if scan.skipped_links > 0 {
        a.note(format!(
            "{} symbolic links inside the trees were not followed",
            scan.skipped_links
        ));
    }
    if !scan.unreadable.is_empty() {
        let list: Vec<String> = scan
            .unreadable
            .iter()
            .take(NOTE_LIST)
            .map(|(p, e)| format!("{} ({e})", p.display()))
            .collect();
        a.note(format!(
            "{} entries could not be read: {}",
            scan.unreadable.len(),
            list.join(", ")
        ));
    }
}

fn update_mechanism(roots: &[PathBuf], scan: &TreeScan, a: &mut Assessment) {
    let names: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    let mut signed_bundle = false;
    for b in &scan.bundles {
        match &b.manifest {
            Ok((version, counter, hw)) => {
                signed_bundle = true;
                a.covered(
                    OwaspIot::I4,
                    format!(
                        "signed iotsec-ota bundle {} ({hw} {version}, security counter {counter})",
                        b.path.display()
                    ),
                );
                if *counter == 0 {
                    a.push(catalog::OTA_NO_ANTI_ROLLBACK.finding(
                        Location::file(&b.path),
                        format!("{hw} {version} signed with security counter 0 (`iotsec fw sign --security-counter` never raised)"),
                    ));
                }
            }
            Err(e) => {
                a.push(catalog::OTA_BUNDLE_INVALID.finding(Location::file(&b.path), e.clone()))
            }
        }
    }
    for (path, text) in &scan.sdkconfigs {
        let cfg = sdkconfig::parse(text);
        if cfg
            .get("CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK")
            .is_none_or(|(v, _)| v != "y")
        {
            let loc = match cfg.get("CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK") {
                Some((_, l)) => Location::line(path, *l),
                None => Location::file(path),
            };
            a.push(
                catalog::OTA_NO_ANTI_ROLLBACK
                    .finding(loc, "CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK is not enabled"),
            );
        }
    }
    if signed_bundle {
        return;
    }
    match (scan.update_code.first(), scan.signature_checks.first()) {
        (None, _) => a.push(catalog::OTA_NONE.finding(
            Location::subject(names.join(", ")),
            format!(
                "no update code (ArduinoOTA, esp_https_ota, Update.begin, swupdate, RAUC, Mender, iotsec fw, ...) in {} files",
                scan.files
            ),
        )),
        (Some(update), None) => a.push(catalog::OTA_UNSIGNED.finding(
            update.location.clone(),
            format!("update code `{}` and no signature verification anywhere in the tree", update.evidence),
        )),
        (Some(update), Some(sig)) => a.covered(
            OwaspIot::I4,
            format!("update code at {} with signature verification at {}", update.location, sig.location),
        ),
    }
}
