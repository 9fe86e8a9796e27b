//! An iotsec device agent configuration (`device.toml`, see `iotsec-device`): key file
//! permissions and the TLS policy. Read as plain TOML so that the audit keeps working while
//! the agent's format grows.

use std::path::{Path, PathBuf};

use crate::catalog;
use crate::check::world_readable;
use crate::finding::{Location, OwaspIot};
use crate::report::Assessment;

/// The parsed file when it is a device.toml (`id`, `broker` and a `[tls]` table).
pub fn parse(path: &Path) -> Option<toml::Table> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = text.parse().ok()?;
    (table.contains_key("id")
        && table.contains_key("broker")
        && table.get("tls").is_some_and(toml::Value::is_table))
    .then_some(table)
}

/// Assesses a parsed device.toml.
pub fn assess(path: &Path, table: &toml::Table, a: &mut Assessment) {
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let resolve = |v: &toml::Value| -> Option<PathBuf> {
        let p = PathBuf::from(v.as_str()?);
        Some(if p.is_absolute() { p } else { base.join(p) })
    };
    let tls = table.get("tls").and_then(toml::Value::as_table);
    let msg = table.get("msg").and_then(toml::Value::as_table);
    let keys = [
        tls.and_then(|t| t.get("key")).and_then(resolve),
        msg.and_then(|t| t.get("key_file")).and_then(resolve),
    ];
    for key in keys.into_iter().flatten() {
        if let Some(mode) = world_readable(&key) {
            a.push(catalog::DEV_KEY_PERMS.finding(
                Location::file(&key),
                format!("mode {mode:o} (from {})", path.display()),
            ));
        }
    }
    if let Some(v) = tls
        .and_then(|t| t.get("expiry"))
        .and_then(toml::Value::as_str)
        && v == "ignore"
    {
        a.push(
            catalog::DEV_TLS_EXPIRY_IGNORED
                .finding(Location::file(path), "[tls] expiry = \"ignore\""),
        );
    }
    let policy = tls
        .and_then(|t| t.get("policy"))
        .and_then(toml::Value::as_str)
        .unwrap_or("ca");
    let id = table.get("id").and_then(toml::Value::as_str).unwrap_or("?");
    a.covered(
        OwaspIot::I7,
        format!(
            "device config {} ({id}: mutual TLS, trust policy {policy})",
            path.display()
        ),
    );
}
