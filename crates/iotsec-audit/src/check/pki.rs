//! PKI directory (`iotsec pki` layout, or any directory of PEM certificates and keys):
//! `iotsec_pki::inspect` warnings per certificate and CRL, plus checks across files: one key on
//! several certificates, private keys readable by others, no CRL, revocations missing from the
//! CRL.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use iotsec_pki::{Inventory, Layout, Role};
use rustls_pki_types::CertificateRevocationListDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

use crate::catalog;
use crate::check::world_readable;
use crate::error::{AuditError, Result};
use crate::finding::{Location, OwaspIot};
use crate::report::Assessment;

/// Audits the PKI in `dir`; returns its inventory when it has one (the device-management
/// checks compare it with the registry).
pub fn assess(dir: &Path, now: OffsetDateTime, a: &mut Assessment) -> Result<Option<Inventory>> {
    if !dir.is_dir() {
        return Err(AuditError::Usage(format!(
            "--pki {}: not a directory",
            dir.display()
        )));
    }
    let layout = Layout::new(dir);
    let inventory = Inventory::load(dir).ok();
    let revoked_files: Vec<PathBuf> = inventory
        .iter()
        .flat_map(|inv| inv.revoked())
        .map(|e| dir.join(&e.file))
        .collect();

    let mut certs = pem_files(dir, "crt");
    certs.extend(pem_files(&layout.devices_dir(), "crt"));
    let mut keys = pem_files(dir, "key");
    keys.extend(pem_files(&layout.devices_dir(), "key"));

    // spki pin -> certificates (leaf certificates that are not revoked)
    let mut by_key: BTreeMap<String, Vec<(PathBuf, String)>> = BTreeMap::new();
    let mut leaves = 0usize;
    for path in &certs {
        if revoked_files.contains(path) {
            continue;
        }
        let chain = match iotsec_pki::pem::certificates(path) {
            Ok(c) => c,
            Err(e) => {
                a.push(catalog::PKI_UNREADABLE.finding(Location::file(path), e.to_string()));
                continue;
            }
        };
        let Some(leaf) = chain.first() else { continue };
        let report = match iotsec_pki::inspect::certificate(leaf, now) {
            Ok(r) => r,
            Err(e) => {
                a.push(catalog::PKI_UNREADABLE.finding(Location::file(path), e.to_string()));
                continue;
            }
        };
        for w in &report.warnings {
            let check = catalog::pki_code(w.code);
            let mut f = check.finding(
                Location::file(path),
                format!("{}: {}", report.subject, w.message),
            );
            f.id = w.code.to_owned();
            a.push(f);
        }
        if report.ca != Some(true) {
            leaves += 1;
            by_key
                .entry(report.spki_pin.clone())
                .or_default()
                .push((path.clone(), report.subject.clone()));
        }
    }
    for group in by_key.values().filter(|g| g.len() > 1) {
        let subjects: Vec<&str> = group.iter().map(|(_, s)| s.as_str()).collect();
        if let Some((first, _)) = group.first() {
            a.push(catalog::PKI_KEY_SHARED.finding(
                Location::file(first),
                format!(
                    "{} certificates share one public key: {}",
                    group.len(),
                    subjects.join("; ")
                ),
            ));
        }
    }
    for key in &keys {
        if let Some(mode) = world_readable(key) {
            a.push(catalog::PKI_KEY_PERMS.finding(Location::file(key), format!("mode {mode:o}")));
        }
    }

    let device_certs = pem_files(&layout.devices_dir(), "crt").len();
    let crl_path = layout.crl();
    if crl_path.exists() {
        crl(&crl_path, now, inventory.as_ref(), a);
    } else if device_certs > 0 {
        a.push(catalog::PKI_NO_CRL.finding(
            Location::file(&crl_path),
            format!("{device_certs} device certificates, no crl.pem"),
        ));
    }

    let what = format!(
        "PKI {} ({} certificates, {leaves} leaves)",
        dir.display(),
        certs.len()
    );
    for c in [OwaspIot::I1, OwaspIot::I7, OwaspIot::I8] {
        a.covered(c, what.clone());
    }
    Ok(inventory)
}

fn crl(path: &Path, now: OffsetDateTime, inventory: Option<&Inventory>, a: &mut Assessment) {
    let der = match fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| CertificateRevocationListDer::from_pem_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(d) => d,
        Err(e) => {
            a.push(catalog::PKI_UNREADABLE.finding(Location::file(path), e));
            return;
        }
    };
    let report = match iotsec_pki::inspect::crl(&der, now, iotsec_pki::authority::CRL_WARN_DAYS) {
        Ok(r) => r,
        Err(e) => {
            a.push(catalog::PKI_UNREADABLE.finding(Location::file(path), e.to_string()));
            return;
        }
    };
    for w in &report.warnings {
        let mut f = catalog::pki_code(w.code).finding(Location::file(path), w.message.clone());
        f.id = w.code.to_owned();
        a.push(f);
    }
    let listed: Vec<String> = report.revoked.iter().map(|s| normalize_serial(s)).collect();
    for e in inventory.iter().flat_map(|inv| inv.revoked()) {
        if e.role != Role::Ca && !listed.contains(&normalize_serial(&e.serial)) {
            a.push(catalog::PKI_CRL_MISSING_REVOKED.finding(
                Location::file(path),
                format!(
                    "{} {} (serial {}) revoked at {}, not in the CRL",
                    e.role.name(),
                    e.id,
                    e.serial,
                    e.revoked_at.map(|t| t.date().to_string()).unwrap_or_default()
                ),
            ));
        }
    }
}

/// Serial numbers compared as lower-case hex without separators or leading zeros.
fn normalize_serial(s: &str) -> String {
    let hex: String = s
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let t = hex.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

fn pem_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext) && p.is_file())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_across_notations() {
        assert_eq!(normalize_serial("00:4A:bc"), normalize_serial("4abc"));
        assert_eq!(normalize_serial("00"), "0");
    }
}
