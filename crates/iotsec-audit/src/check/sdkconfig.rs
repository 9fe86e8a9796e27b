//! Physical hardening of ESP-IDF projects from their `sdkconfig`: secure boot, flash
//! encryption, JTAG and the UART ROM download mode (ESP-IDF "Security features" Kconfig menu).
//! Other platforms are not assessed.

use std::collections::BTreeMap;
use std::path::Path;

use crate::catalog::{self, Check};
use crate::finding::{Location, OwaspIot};
use crate::report::Assessment;

/// `CONFIG_X` -> (value, line); `# CONFIG_X is not set` gives `n`.
pub fn parse(text: &str) -> BTreeMap<String, (String, u64)> {
    let mut m = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let n = i as u64 + 1;
        if let Some(rest) = line.strip_prefix("# ")
            && let Some(name) = rest.strip_suffix(" is not set")
        {
            m.insert(name.to_owned(), ("n".to_owned(), n));
        } else if let Some((k, v)) = line.split_once('=')
            && k.starts_with("CONFIG_")
        {
            m.insert(k.to_owned(), (v.trim_matches('"').to_owned(), n));
        }
    }
    m
}

/// Assesses one sdkconfig.
pub fn assess(path: &Path, text: &str, a: &mut Assessment) {
    let cfg = parse(text);
    let on = |k: &str| cfg.get(k).is_some_and(|(v, _)| v == "y");
    let at = |k: &str| match cfg.get(k) {
        Some((_, line)) => Location::line(path, *line),
        None => Location::file(path),
    };
    let push = |a: &mut Assessment, c: &Check, key: &str, evidence: String| {
        a.push(c.finding(at(key), evidence));
    };

    let secure_boot = on("CONFIG_SECURE_BOOT")
        || on("CONFIG_SECURE_BOOT_V2_ENABLED")
        || on("CONFIG_SECURE_BOOT_V1_ENABLED");
    if !secure_boot {
        push(
            a,
            &catalog::HW_NO_SECURE_BOOT,
            "CONFIG_SECURE_BOOT",
            state(&cfg, "CONFIG_SECURE_BOOT"),
        );
    }
    let flash_enc = on("CONFIG_SECURE_FLASH_ENC_ENABLED");
    if !flash_enc {
        push(
            a,
            &catalog::HW_NO_FLASH_ENCRYPTION,
            "CONFIG_SECURE_FLASH_ENC_ENABLED",
            state(&cfg, "CONFIG_SECURE_FLASH_ENC_ENABLED"),
        );
    } else if on("CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT") {
        push(
            a,
            &catalog::HW_FLASH_ENC_DEVELOPMENT,
            "CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT",
            "CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y".into(),
        );
    }
    let release_enc = flash_enc && !on("CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT");
    if on("CONFIG_SECURE_BOOT_ALLOW_JTAG") {
        push(
            a,
            &catalog::HW_JTAG_ENABLED,
            "CONFIG_SECURE_BOOT_ALLOW_JTAG",
            "CONFIG_SECURE_BOOT_ALLOW_JTAG=y".into(),
        );
    } else if !secure_boot && !release_enc {
        push(
            a,
            &catalog::HW_JTAG_ENABLED,
            "CONFIG_SECURE_BOOT",
            "neither secure boot nor release-mode flash encryption is enabled, so the bootloader never burns the JTAG-disable eFuses".into(),
        );
    }
    for k in [
        "CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_ENC",
        "CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_DEC",
        "CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_CACHE",
    ] {
        if on(k) {
            push(a, &catalog::HW_UART_DOWNLOAD, k, format!("{k}=y"));
        }
    }
    let dl_restricted =
        on("CONFIG_SECURE_DISABLE_ROM_DL_MODE") || on("CONFIG_SECURE_ENABLE_SECURE_ROM_DL_MODE");
    if on("CONFIG_SECURE_UART_ROM_DL_MODE_ENABLED") {
        push(
            a,
            &catalog::HW_UART_DOWNLOAD,
            "CONFIG_SECURE_UART_ROM_DL_MODE_ENABLED",
            "CONFIG_SECURE_UART_ROM_DL_MODE_ENABLED=y".into(),
        );
    } else if !dl_restricted {
        push(
            a,
            &catalog::HW_UART_DOWNLOAD,
            "CONFIG_SECURE_DISABLE_ROM_DL_MODE",
            "no CONFIG_SECURE_DISABLE_ROM_DL_MODE / CONFIG_SECURE_ENABLE_SECURE_ROM_DL_MODE: the ROM download mode stays fully enabled".into(),
        );
    }
    a.covered(
        OwaspIot::I10,
        format!("ESP-IDF sdkconfig {}", path.display()),
    );
}

fn state(cfg: &BTreeMap<String, (String, u64)>, key: &str) -> String {
    match cfg.get(key) {
        Some((v, _)) if v == "n" => format!("# {key} is not set"),
        Some((v, _)) => format!("{key}={v}"),
        None => format!("{key} absent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<String> {
        let mut a = Assessment::new();
        assess(Path::new("sdkconfig"), text, &mut a);
        a.findings().iter().map(|f| f.id.clone()).collect()
    }

    #[test]
    fn default_project_fails_everything() {
        let ids =
            ids("# CONFIG_SECURE_BOOT is not set\n# CONFIG_SECURE_FLASH_ENC_ENABLED is not set\n");
        for id in [
            "HW-NO-SECURE-BOOT",
            "HW-NO-FLASH-ENCRYPTION",
            "HW-JTAG-ENABLED",
            "HW-UART-DOWNLOAD",
        ] {
            assert!(ids.contains(&id.to_owned()), "{id} in {ids:?}");
        }
    }

    #[test]
    fn hardened_project_passes() {
        let ids = ids(
            "CONFIG_SECURE_BOOT=y\nCONFIG_SECURE_BOOT_V2_ENABLED=y\nCONFIG_SECURE_FLASH_ENC_ENABLED=y\n\
             CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y\nCONFIG_SECURE_DISABLE_ROM_DL_MODE=y\n",
        );
        assert!(ids.is_empty(), "{ids:?}");
        let dev = super::tests::ids(
            "CONFIG_SECURE_BOOT=y\nCONFIG_SECURE_FLASH_ENC_ENABLED=y\nCONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT=y\n\
             CONFIG_SECURE_BOOT_ALLOW_JTAG=y\nCONFIG_SECURE_ENABLE_SECURE_ROM_DL_MODE=y\n",
        );
        assert_eq!(dev, vec!["HW-FLASH-ENC-DEVELOPMENT", "HW-JTAG-ENABLED"]);
    }
}
