//! The audit's own checks. Ids are stable: suppressions, CI rules (SARIF `ruleId`) and
//! `docs/audit.md` refer to them, so an id is never renamed or reused for another meaning.
//!
//! Findings also carry ids from the crates the audit reuses: `BRK-*` (broker configuration,
//! `iotsec_broker::audit`), `SCAN-*` (network scan, `iotsec_scan::check`) and the `PKI-*` codes
//! of `iotsec_pki::inspect` (mapped to a severity and category in [`pki_code`]).

use crate::finding::{Finding, Location, OwaspIot, Severity};

/// What an audit check looks for, how bad it is and what fixes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// Stable id, `AREA-SUBJECT-PROBLEM`.
    pub id: &'static str,
    /// Severity of a finding.
    pub severity: Severity,
    /// OWASP IoT Top 10 category.
    pub category: OwaspIot,
    /// The problem, one line.
    pub title: &'static str,
    /// The fix.
    pub remediation: &'static str,
    /// The input that runs it (command-line option).
    pub needs: &'static str,
}

impl Check {
    /// A finding of this check.
    pub fn finding(&self, location: Location, evidence: impl Into<String>) -> Finding {
        Finding {
            id: self.id.to_owned(),
            severity: self.severity,
            category: self.category,
            title: self.title.to_owned(),
            location,
            evidence: evidence.into(),
            remediation: self.remediation.to_owned(),
        }
    }

    /// The same finding with a more specific title.
    pub fn finding_titled(
        &self,
        title: impl Into<String>,
        location: Location,
        evidence: impl Into<String>,
    ) -> Finding {
        let mut f = self.finding(location, evidence);
        f.title = title.into();
        f
    }
}

macro_rules! checks {
    ($( $(#[$doc:meta])* $name:ident = $id:literal, $sev:ident, $cat:ident, $needs:literal, $title:literal, $fix:literal; )*) => {
        $( $(#[$doc])* pub const $name: Check = Check {
            id: $id,
            severity: Severity::$sev,
            category: OwaspIot::$cat,
            title: $title,
            remediation: $fix,
            needs: $needs,
        }; )*
        /// Every check of the audit, for documentation and SARIF rule tables.
        pub const ALL: &[Check] = &[$($name),*];
    };
}

checks! {
    // ---- PKI (--pki): iotsec_pki::inspect warning codes, and cross-certificate checks
    /// Certificate past notAfter.
    PKI_CERT_EXPIRED = "PKI-CERT-EXPIRED", High, I7, "--pki",
        "certificate expired",
        "Reissue it (`iotsec pki server` / `iotsec pki device --force`) and automate renewal before notAfter.";
    /// Certificate within 30 days of notAfter.
    PKI_CERT_EXPIRING = "PKI-CERT-EXPIRING", Medium, I8, "--pki",
        "certificate expires within 30 days",
        "Renew it now; schedule renewals well before expiry.";
    /// Certificate not valid yet.
    PKI_CERT_NOT_YET_VALID = "PKI-CERT-NOT-YET-VALID", Low, I7, "--pki",
        "certificate not valid yet",
        "Check the issuing machine's clock and reissue with a correct validity period.";
    /// RSA < 2048 or EC < 256 bits.
    PKI_WEAK_KEY = "PKI-WEAK-KEY", High, I7, "--pki",
        "certificate key too weak (RSA < 2048 bits or EC < 256 bits)",
        "Reissue with ECDSA P-256 (iotsec's default) or RSA of at least 2048 bits.";
    /// SHA-1 or MD5 signature.
    PKI_WEAK_SIGNATURE = "PKI-WEAK-SIGNATURE", Medium, I7, "--pki",
        "certificate signed with SHA-1 or MD5",
        "Reissue with a SHA-256 (or stronger) signature.";
    /// Server certificate without subjectAltName.
    PKI_NO_SAN = "PKI-NO-SAN", Medium, I7, "--pki",
        "server certificate without subjectAltName",
        "Reissue with the host names and addresses clients use as SANs (`iotsec pki server --san`).";
    /// CA:TRUE on a TLS leaf.
    PKI_CA_LEAF = "PKI-CA-LEAF", High, I7, "--pki",
        "TLS leaf certificate is a CA (it can sign other certificates)",
        "Reissue the leaf with basicConstraints CA:FALSE.";
    /// CRL past nextUpdate.
    PKI_CRL_EXPIRED = "PKI-CRL-EXPIRED", High, I8, "--pki",
        "CRL past nextUpdate: revocation is not current (Mosquitto refuses every client)",
        "Re-sign the CRL (`iotsec pki crl`) and reload the broker; re-sign it on a schedule.";
    /// CRL close to nextUpdate.
    PKI_CRL_EXPIRING = "PKI-CRL-EXPIRING", Medium, I8, "--pki",
        "CRL close to nextUpdate",
        "Re-sign the CRL (`iotsec pki crl`) before nextUpdate and reload the broker.";
    /// CRL without nextUpdate.
    PKI_CRL_NO_NEXT_UPDATE = "PKI-CRL-NO-NEXT-UPDATE", Low, I8, "--pki",
        "CRL without nextUpdate",
        "Issue CRLs with a nextUpdate so relying parties notice a stale list.";
    /// The same public key in several certificates.
    PKI_KEY_SHARED = "PKI-KEY-SHARED", High, I1, "--pki",
        "the same public key is used by several certificates (devices cannot be told apart or revoked one by one)",
        "Generate one key pair per device (`iotsec pki device` does) and revoke the certificates that share a key.";
    /// Private key readable by other users.
    PKI_KEY_PERMS = "PKI-KEY-PERMS", High, I7, "--pki",
        "private key readable by other local users",
        "chmod 0600 the key (iotsec writes keys 0600); give a service access through its group on purpose only.";
    /// Device certificates but no CRL.
    PKI_NO_CRL = "PKI-NO-CRL", Medium, I8, "--pki",
        "device certificates without a CRL: no revocation path",
        "Issue a CRL (`iotsec pki crl`) and configure the broker's `crlfile`.";
    /// Revoked in the inventory but missing from the CRL.
    PKI_CRL_MISSING_REVOKED = "PKI-CRL-MISSING-REVOKED", High, I8, "--pki",
        "certificate revoked in the inventory but not listed in the CRL (it still connects)",
        "Re-sign the CRL (`iotsec pki crl`) and reload the broker (`iotsec broker reload`).";
    /// A certificate or CRL that does not parse.
    PKI_UNREADABLE = "PKI-UNREADABLE", Medium, I7, "--pki",
        "certificate or CRL file cannot be parsed",
        "Replace the file with valid PEM (`iotsec pki inspect FILE` shows what is wrong).";

    // ---- network (--host): the scanner's SCAN-* findings, plus
    /// HTTP interface without authentication.
    NET_HTTP_NO_AUTH = "NET-HTTP-NO-AUTH", Low, I3, "--host",
        "web/API interface answers without authentication",
        "Require authentication on every web and API endpoint (and serve them over HTTPS); expose only what clients need.";

    // ---- active MQTT checks (--host --active)
    /// Anonymous subscription to `#` granted.
    MQTT_ANON_SUBSCRIBE_ALL = "MQTT-ANON-SUBSCRIBE-ALL", High, I2, "--host --active",
        "anonymous client may subscribe to `#` (reads every message)",
        "Set `allow_anonymous false` and give each identity an ACL limited to its own topics.";
    /// Anonymous subscription to `$SYS/#` granted.
    MQTT_ANON_SYS = "MQTT-ANON-SYS", Medium, I2, "--host --active",
        "anonymous client may subscribe to `$SYS/#` (broker version, clients, load)",
        "Deny `$SYS/#` to everyone but monitoring (`sys_interval 0` disables it) and require authentication.";
    /// Retained messages with secrets.
    MQTT_RETAINED_SECRET = "MQTT-RETAINED-SECRET", High, I7, "--host --active",
        "retained MQTT message leaks a secret (password, PSK, token or key)",
        "Clear the retained message (publish an empty retained payload), rotate the secret, and never publish secrets.";
    /// Known-vulnerable Mosquitto version.
    MQTT_VULNERABLE_VERSION = "MQTT-VULNERABLE-VERSION", High, I5, "--host --active",
        "broker version has known vulnerabilities",
        "Upgrade Mosquitto to the current 2.0.x release (or confirm your distribution backported the fixes).";
    /// Default credentials accepted.
    MQTT_DEFAULT_CREDENTIALS = "MQTT-DEFAULT-CREDENTIALS", Critical, I1, "--host --active",
        "broker accepts a default username and password",
        "Remove the account or set a strong unique password (`mosquitto_passwd`); prefer client certificates.";

    // ---- firmware and source trees (--firmware, and device scripts given as --device-config)
    /// PEM private key.
    FW_PRIVATE_KEY = "FW-PRIVATE-KEY", High, I1, "--firmware",
        "private key embedded in firmware or source",
        "Remove the key from the image, rotate it, and provision per-device keys at manufacturing (secure element or encrypted flash).";
    /// HMAC / API key / token assigned to a variable.
    FW_HARDCODED_KEY = "FW-HARDCODED-KEY", High, I1, "--firmware",
        "hardcoded secret key or token",
        "Load the key at run time from protected storage, give every device its own key (`iotsec msg` derives per-device keys), and rotate the exposed one.";
    /// Password assigned to a variable.
    FW_HARDCODED_PASSWORD = "FW-HARDCODED-PASSWORD", High, I1, "--firmware",
        "hardcoded password",
        "Remove it from source; provision per-device credentials or client certificates; rotate the exposed password.";
    /// Cloud access key.
    FW_CLOUD_KEY = "FW-CLOUD-KEY", Critical, I1, "--firmware",
        "cloud access key embedded (AWS access key id)",
        "Deactivate the key in the cloud console now, then use per-device certificates or short-lived credentials.";
    /// Wi-Fi pre-shared key.
    FW_WIFI_PSK = "FW-WIFI-PSK", Medium, I1, "--firmware",
        "Wi-Fi pre-shared key embedded",
        "Provision Wi-Fi credentials at setup (SoftAP / BLE provisioning) instead of compiling them in; change the PSK.";
    /// user:password@ in a URL.
    FW_URL_CREDENTIALS = "FW-URL-CREDENTIALS", High, I1, "--firmware",
        "password embedded in a URL (user:password@host)",
        "Remove credentials from URLs; authenticate with client certificates or provisioned credentials.";
    /// Certificate verification disabled.
    FW_TLS_VERIFY_OFF = "FW-TLS-VERIFY-OFF", High, I7, "--firmware",
        "TLS certificate verification turned off",
        "Verify the server: pass the CA (`tls_set(ca_certs=...)`, `setCACert`) or pin it; never ship `setInsecure()` / `tls_insecure_set(True)` / `CERT_NONE` / `verify=False`.";
    /// Update fetched over plain HTTP.
    FW_UPDATE_HTTP = "FW-UPDATE-HTTP", High, I4, "--firmware",
        "firmware update fetched over plain HTTP",
        "Fetch updates over HTTPS with server verification, and verify a signature on the image (`iotsec fw verify`) before installing.";
    /// telnetd started at boot.
    FW_TELNETD = "FW-TELNETD", High, I2, "--firmware",
        "telnet daemon started by an init script",
        "Remove telnetd from the init scripts and the image; use SSH with keys if remote access is needed.";
    /// Shell bound to a network port.
    FW_BACKDOOR_SHELL = "FW-BACKDOOR-SHELL", Critical, I2, "--firmware",
        "init script binds a shell to the network (backdoor)",
        "Remove the listener from the init script and investigate how it got there.";
    /// DES / MD5 crypt hashes.
    FW_WEAK_PASSWORD_HASH = "FW-WEAK-PASSWORD-HASH", High, I1, "--firmware",
        "password hash with a weak scheme (DES or MD5 crypt)",
        "Re-hash with yescrypt or SHA-512 crypt, give each device a unique password, or disable password login.";
    /// Account without a password.
    FW_EMPTY_PASSWORD = "FW-EMPTY-PASSWORD", Critical, I1, "--firmware",
        "account without a password",
        "Lock the account (`passwd -l`) or set a unique password per device.";
    /// Old OpenSSL linked in.
    FW_OLD_OPENSSL = "FW-OLD-OPENSSL", Medium, I5, "--firmware",
        "outdated OpenSSL (before 1.1.1) in the image",
        "Rebuild the image with a supported OpenSSL (3.x) or the platform's current TLS library.";

    // ---- update mechanism (--firmware, --device-config)
    /// No update code at all.
    OTA_NONE = "OTA-NONE", Medium, I4, "--firmware / --device-config",
        "no firmware update mechanism found in the device program",
        "Add signed over-the-air updates with rollback (`iotsec fw sign` / `iotsec fw install`, or ESP-IDF OTA with signed apps).";
    /// Update code without signature checks.
    OTA_UNSIGNED = "OTA-UNSIGNED", High, I4, "--firmware / --device-config",
        "firmware updates are not signature-checked",
        "Sign every image and verify the signature on the device before it boots (`iotsec fw`, ESP-IDF `CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT` or secure boot).";
    /// No anti-rollback.
    OTA_NO_ANTI_ROLLBACK = "OTA-NO-ANTI-ROLLBACK", Medium, I4, "--firmware / --device-config",
        "no anti-rollback: an old, vulnerable firmware can be installed again",
        "Raise a security counter with every security fix (`iotsec fw sign --security-counter`, ESP-IDF `CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK`).";
    /// iotsec-ota bundle that does not parse.
    OTA_BUNDLE_INVALID = "OTA-BUNDLE-INVALID", Medium, I4, "--firmware",
        "firmware bundle is malformed",
        "Re-sign the image with `iotsec fw sign`; `iotsec fw inspect` shows what is wrong.";
    /// Slots directory without a trusted key set.
    OTA_NO_KEYSET = "OTA-NO-KEYSET", Medium, I4, "--device-config",
        "update state has no trusted key set yet (the first install decides what is trusted)",
        "Install the vendor key at manufacturing (`iotsec fw install --trust vendor.pub`) before the device ships.";
    /// One key does everything.
    OTA_SINGLE_KEY = "OTA-SINGLE-KEY", Low, I4, "--device-config",
        "one signing key both signs firmware and rotates keys (no backup key)",
        "Add a separate, offline key-set key (`iotsec fw keyset sign --add`) so a leaked firmware key can be revoked.";

    // ---- device configuration (--device-config device.toml)
    /// Device key readable by others.
    DEV_KEY_PERMS = "DEV-KEY-PERMS", High, I7, "--device-config",
        "device private key or message key readable by other local users",
        "chmod 0600 the key files and keep them owned by the agent's user.";
    /// Certificate expiry ignored.
    DEV_TLS_EXPIRY_IGNORED = "DEV-TLS-EXPIRY-IGNORED", Low, I7, "--device-config",
        "device ignores the broker certificate's validity period",
        "Keep `expiry = \"enforce\"` unless the device has no trustworthy clock; then rotate pins on a schedule.";

    // ---- device management and privacy (--server-config)
    /// Registered device silent for a long time.
    DEV_SILENT = "DEV-SILENT", Low, I8, "--server-config",
        "registered device silent for a long time",
        "Check the device; revoke it (`iotsec device revoke`) if it was retired, lost or stolen.";
    /// Seen but not registered.
    DEV_UNREGISTERED = "DEV-UNREGISTERED", Medium, I8, "--server-config",
        "device seen on the broker but not registered",
        "Find out what it is; register it (`iotsec device add`) or block its identity (revoke its certificate).";
    /// Revoked in the registry, certificate still valid.
    DEV_REVOKED_CERT_ACTIVE = "DEV-REVOKED-CERT-ACTIVE", High, I8, "--server-config --pki",
        "device revoked in the registry but its certificate is not revoked (it can still connect)",
        "Revoke the certificate (`iotsec pki revoke ID`) and reload the broker.";
    /// Certificate without registry entry.
    DEV_CERT_UNREGISTERED = "DEV-CERT-UNREGISTERED", Low, I8, "--server-config --pki",
        "device certificate issued but the device is not registered",
        "Register the device (`iotsec device add`) or revoke the certificate.";
    /// Fleet-wide v1 key.
    DEV_LEGACY_KEY = "DEV-LEGACY-KEY", Medium, I1, "--server-config",
        "device still uses the fleet-wide (v1) message key",
        "Move the device to per-device v2 keys (`iotsec device add` issues them) and retire the legacy key.";
    /// Server key readable by others.
    SRV_KEY_PERMS = "SRV-KEY-PERMS", High, I7, "--server-config",
        "server key file readable by other local users",
        "chmod 0600 the master key and TLS key of the ingest.";
    /// Personal data in stored telemetry, no retention.
    PRIV_PERSONAL_DATA = "PRIV-PERSONAL-DATA", Medium, I6, "--server-config",
        "telemetry holds personal data (e-mail addresses, precise locations) and is kept without a retention limit",
        "Do not send personal data in telemetry (coarsen locations, drop identifiers), or delete stored readings after a documented retention period.";

    // ---- physical hardening (sdkconfig in --firmware)
    /// Secure boot off.
    HW_NO_SECURE_BOOT = "HW-NO-SECURE-BOOT", High, I10, "--firmware (ESP-IDF sdkconfig)",
        "secure boot disabled: the chip boots any image written to flash",
        "Enable secure boot v2 (`CONFIG_SECURE_BOOT=y`, `CONFIG_SECURE_BOOT_V2_ENABLED=y`) for production builds.";
    /// Flash encryption off.
    HW_NO_FLASH_ENCRYPTION = "HW-NO-FLASH-ENCRYPTION", High, I10, "--firmware (ESP-IDF sdkconfig)",
        "flash encryption disabled: keys and firmware can be read out of the flash chip",
        "Enable flash encryption in release mode (`CONFIG_SECURE_FLASH_ENC_ENABLED=y`, `CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y`).";
    /// Flash encryption in development mode.
    HW_FLASH_ENC_DEVELOPMENT = "HW-FLASH-ENC-DEVELOPMENT", Medium, I10, "--firmware (ESP-IDF sdkconfig)",
        "flash encryption in development mode (can be turned off again over UART)",
        "Use release mode for production (`CONFIG_SECURE_FLASH_ENCRYPTION_MODE_RELEASE=y`).";
    /// JTAG left on.
    HW_JTAG_ENABLED = "HW-JTAG-ENABLED", Medium, I10, "--firmware (ESP-IDF sdkconfig)",
        "JTAG debugging left enabled",
        "Leave `CONFIG_SECURE_BOOT_ALLOW_JTAG` unset so the bootloader burns the JTAG-disable eFuses.";
    /// UART ROM download mode left on.
    HW_UART_DOWNLOAD = "HW-UART-DOWNLOAD", Medium, I10, "--firmware (ESP-IDF sdkconfig)",
        "UART ROM download mode left fully enabled (flash can be read and written over the serial port)",
        "Select `CONFIG_SECURE_DISABLE_ROM_DL_MODE=y` (or at least `CONFIG_SECURE_ENABLE_SECURE_ROM_DL_MODE=y`) and leave the `CONFIG_SECURE_FLASH_UART_BOOTLOADER_ALLOW_*` options unset.";
}

/// Severity and category of an `iotsec_pki::inspect` warning code. Unknown codes (added to the
/// PKI crate later) are reported as medium I7 under their own code.
pub fn pki_code(code: &str) -> Check {
    ALL.iter()
        .find(|c| c.id == code && c.id.starts_with("PKI-"))
        .copied()
        .unwrap_or(Check {
            id: "PKI-OTHER",
            severity: Severity::Medium,
            category: OwaspIot::I7,
            title: "certificate problem",
            remediation: "Run `iotsec pki inspect FILE` and reissue the certificate.",
            needs: "--pki",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut ids: Vec<&str> = ALL.iter().map(|c| c.id).collect();
        for id in &ids {
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-'),
                "{id}"
            );
            assert!(!id.starts_with("SCAN-") && !id.starts_with("BRK-"), "{id}");
        }
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(n, ids.len(), "duplicate check id");
    }

    #[test]
    fn every_check_is_documented() {
        let doc = include_str!("../../../docs/audit.md");
        for c in ALL {
            let row = format!("| `{}` | {} | {} |", c.id, c.severity, c.category.code());
            assert!(
                doc.contains(&row),
                "docs/audit.md lacks the row for {}",
                c.id
            );
        }
    }

    #[test]
    fn pki_codes_map() {
        assert_eq!(pki_code("PKI-CERT-EXPIRED").severity, Severity::High);
        assert_eq!(pki_code("PKI-SOMETHING-NEW").category, OwaspIot::I7);
    }
}
