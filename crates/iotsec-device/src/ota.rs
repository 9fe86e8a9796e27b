//! Firmware updates on the device: the `[ota]` settings, the server's notices, and the worker
//! that checks, downloads, installs and reports an update.
//!
//! The flow, for a device running under `iotsec fw supervise` (which starts this agent as the
//! program of the active A/B slot):
//!
//! 1. The server publishes a notice on `devices/<id>/commands/ota`: the release's **signed
//!    manifest** (base64) and the HTTPS URL of its bundle. The worker checks the manifest with
//!    the update engine against the device's own trusted keys, hardware id, installed version
//!    and security counter ([`iotsec_ota::Engine::admit`]) **before** it connects anywhere; a
//!    refusal is reported as `rejected` with the reason.
//! 2. It downloads the bundle's image over HTTPS with mutual TLS (the device certificate) from
//!    the configured server only, asking for `Range: bytes=<header + offset>-<header + size -
//!    1>`: the signed size caps the transfer. Chunks stream into the inactive slot through the
//!    engine (hashed while written). Every 10 % (and every 2 s) the slot is fsynced and the
//!    offset written to `ota.json` in the agent's state directory, then `downloading` with the
//!    percentage is reported. A dropped connection continues at the offset; after a restart the
//!    worker resumes by itself: [`iotsec_ota::Engine::resume_download`] re-reads and re-hashes
//!    the bytes already in the slot (nothing unhashed is trusted) and the request starts there.
//! 3. `verifying`: the engine checks length and SHA-256, re-reads the slot and sets it as the
//!    trial. The worker reports `trial` and asks the agent to exit, so the supervisor boots
//!    the new slot.
//! 4. The new firmware confirms once it is connected and its signed "online" status is acked
//!    (see `agent`); the worker in the trial watches the boot record and reports `confirmed`.
//!    If instead the trial exits, hangs or misses its deadline, the supervisor rolls it back
//!    and the old firmware's worker finds the result in the boot record and reports
//!    `rolled_back` with the reason. These outcome reports are sent until the server
//!    acknowledges them (`{"type":"ack","seq":N}`); only then is the record's "not yet
//!    reported" flag cleared.
//!
//! Reports are signed exactly like status messages (v2, the device's key, a sequence number
//! of the same counter) and published on `devices/<id>/ota`. The blocking slot I/O runs on a
//! blocking thread; network and timers stay on the async side.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use iotsec_ota::bundle::MAX_SIGNED_MANIFEST_LEN;
use iotsec_ota::{HardwareId, PublicKey, keyfile};
use iotsec_tls::{CaTrust, TrustPolicy};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod download;
mod worker;

pub(crate) use worker::{FromOta, ToOta, run};

/// Largest command accepted on `devices/<id>/commands/ota`.
pub const MAX_COMMAND: usize = 16 * 1024;

/// How long connecting, the TLS handshake and the response headers may take, and the longest
/// pause inside a response body.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts per download without any progress before it is given up.
pub const MAX_ATTEMPTS: u32 = 6;

/// The journal of the current update in the agent's state directory.
pub const JOURNAL: &str = "ota.json";

// --- configuration -------------------------------------------------------------------------

/// `[ota]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOta {
    /// The A/B state directory (`iotsec fw supervise --slots`).
    #[serde(default = "default_slots")]
    pub slots: PathBuf,
    /// Public keys trusted for firmware while the slots directory has no key set of its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust: Vec<PathBuf>,
    /// `https://host[:port]` of the firmware server.
    pub server: String,
    /// CA of the firmware server (default: `[tls] ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// This device's hardware id, when the slots directory does not record one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_id: Option<String>,
    /// Download rate limit in bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_sec: Option<u64>,
}

fn default_slots() -> PathBuf {
    PathBuf::from("slots")
}

/// The firmware server: `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `https://host[:port]` as configured, without a trailing slash.
    pub origin: String,
    /// Host name or IP literal (also the TLS server name).
    pub host: String,
    /// Port (443 by default).
    pub port: u16,
}

impl ServerUrl {
    /// Parses `https://host[:port]` (IPv6 literals in brackets), nothing else.
    ///
    /// # Errors
    /// Why it is not such a URL.
    pub fn parse(text: &str) -> std::result::Result<ServerUrl, String> {
        let origin = text.trim().trim_end_matches('/');
        let rest = origin
            .strip_prefix("https://")
            .ok_or("must start with https://")?;
        if rest.contains(['/', '?', '#', '@']) {
            return Err("must be https://host[:port], without a path".into());
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or("unclosed '['")?;
            (h, after.strip_prefix(':'))
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("'{p}' is not a port"))?,
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| format!("'{host}' is not a valid host name or IP address"))?;
        Ok(ServerUrl {
            origin: origin.to_string(),
            host: host.to_string(),
            port,
        })
    }

    /// The `Host` header value.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path of `url` if it is on this server (`None` otherwise: the device downloads from
    /// its configured server only, whatever a notice says).
    pub fn path_of<'u>(&self, url: &'u str) -> Option<&'u str> {
        let path = url.strip_prefix(self.origin.as_str())?;
        (path.starts_with('/') && !path.contains(['?', '#', ' ', '\r', '\n']) && path.len() <= 1024)
            .then_some(path)
    }
}

/// The checked `[ota]` section.
#[derive(Debug, Clone)]
pub struct OtaSettings {
    /// The A/B state directory.
    pub slots: PathBuf,
    /// Factory trust (used while the slots directory holds no key set).
    pub trust: Vec<PublicKey>,
    /// The firmware server.
    pub server: ServerUrl,
    /// How the firmware server's certificate is checked.
    pub server_trust: TrustPolicy,
    /// Configured hardware id.
    pub hardware_id: Option<HardwareId>,
    /// Download rate limit.
    pub max_bytes_per_sec: Option<u64>,
}

impl RawOta {
    /// Checks the values and loads the key and CA files (relative to `base`).
    pub(crate) fn validate(
        self,
        path: &Path,
        base: &Path,
        tls_ca: Option<&Path>,
    ) -> Result<OtaSettings> {
        let bad = |key: &'static str, reason: String| Error::Config {
            path: path.to_path_buf(),
            key,
            reason,
        };
        let server = ServerUrl::parse(&self.server).map_err(|r| bad("ota.server", r))?;
        let trust = self
            .trust
            .iter()
            .map(|p| {
                keyfile::read_public_key(&base.join(p)).map_err(|e| bad("ota.trust", e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let ca_path = match (&self.ca, tls_ca) {
            (Some(ca), _) => base.join(ca),
            (None, Some(ca)) => ca.to_path_buf(),
            (None, None) => {
                return Err(bad(
                    "ota.ca",
                    "name the CA of the firmware server ([tls] has none)".into(),
                ));
            }
        };
        let ca = CaTrust::from_pem_file(&ca_path).map_err(|source| Error::Tls {
            path: path.to_path_buf(),
            source,
        })?;
        let hardware_id = self
            .hardware_id
            .as_deref()
            .map(HardwareId::new)
            .transpose()
            .map_err(|e| bad("ota.hardware_id", e.to_string()))?;
        if self.max_bytes_per_sec == Some(0) {
            return Err(bad("ota.max_bytes_per_sec", "must be at least 1".into()));
        }
        Ok(OtaSettings {
            slots: base.join(&self.slots),
            trust,
            server,
            server_trust: TrustPolicy::Ca(ca),
            hardware_id,
            max_bytes_per_sec: self.max_bytes_per_sec,
        })
    }
}

// --- what the server sends ----------------------------------------------------------------

/// An update notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Release id (as the server names it).
    pub release: String,
    /// Where the bundle is (must be on the configured server).
    pub url: String,
    /// The signed manifest (verified by the engine before anything is downloaded).
    pub manifest: Vec<u8>,
}

/// A message on `devices/<id>/commands/ota`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Install this release.
    Update(Notice),
    /// The report with this sequence number is stored.
    Ack {
        /// Its sequence number.
        seq: u64,
    },
}

/// Parses a command; `None` for anything else (bounded, never panics).
pub fn parse_command(bytes: &[u8]) -> Option<Command> {
    if bytes.len() > MAX_COMMAND {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    match v.get("type")?.as_str()? {
        "ack" => Some(Command::Ack {
            seq: v.get("seq")?.as_u64()?,
        }),
        "update" => {
            let release = v.get("release")?.as_str()?;
            let valid = !release.is_empty()
                && release.len() <= 64
                && release
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            let url = v.get("url")?.as_str()?;
            let manifest = v.get("manifest")?.as_str()?;
            if !valid || url.len() > 2048 || manifest.len() > 2 * MAX_SIGNED_MANIFEST_LEN {
                return None;
            }
            let manifest = base64::engine::general_purpose::STANDARD
                .decode(manifest)
                .ok()
                .filter(|m| m.len() <= MAX_SIGNED_MANIFEST_LEN)?;
            Some(Command::Update(Notice {
                release: release.to_string(),
                url: url.to_string(),
                manifest,
            }))
        }
        _ => None,
    }
}

// --- what the device reports ---------------------------------------------------------------

/// One OTA report (the body of a signed message on `devices/<id>/ota`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `downloading`, `verifying`, `trial`, `confirmed`, `rolled_back`, `rejected`, `failed`.
    pub state: &'static str,
    /// Release id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Version concerned (verified: from a signed manifest or the boot record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Download progress in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
    /// Bytes of the image in the slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Signed image size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The download resumed at this offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<u64>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Time from the notice to the trial being set (download, write, verify, switch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<u64>,
}

impl Report {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain data: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn failed(state: &'static str, release: Option<String>, reason: String) -> Report {
        Report {
            state,
            release,
            reason: Some(reason),
            ..Report::default()
        }
    }
}

fn percent(offset: u64, size: u64) -> u8 {
    if size == 0 {
        return 100;
    }
    u8::try_from(u128::from(offset) * 100 / u128::from(size)).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let u = ServerUrl::parse("https://localhost:8443/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.origin.as_str()),
            ("localhost", 8443, "https://localhost:8443")
        );
        assert_eq!(u.authority(), "localhost:8443");
        assert_eq!(
            ServerUrl::parse("https://[::1]").unwrap().authority(),
            "[::1]:443"
        );
        for bad in [
            "http://h",
            "https://",
            "https://h/p",
            "https://u@h",
            "https://h:0",
            "https://h:x",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            u.path_of("https://localhost:8443/firmware/ab"),
            Some("/firmware/ab")
        );
        for other in [
            "https://localhost:8444/firmware/ab",
            "https://localhost:8443.evil/firmware",
            "https://evil/firmware/ab",
            "https://localhost:8443/x?y",
        ] {
            assert_eq!(u.path_of(other), None, "{other}");
        }
    }

    #[test]
    fn commands_are_parsed_strictly() {
        assert_eq!(
            parse_command(br#"{"type":"ack","seq":7}"#),
            Some(Command::Ack { seq: 7 })
        );
        let m = base64::engine::general_purpose::STANDARD.encode(b"manifest");
        let ok = format!(
            r#"{{"type":"update","release":"ab12","url":"https://h/firmware/ab12","manifest":"{m}"}}"#
        );
        let Some(Command::Update(n)) = parse_command(ok.as_bytes()) else {
            panic!()
        };
        assert_eq!(
            (n.release.as_str(), n.manifest.as_slice()),
            ("ab12", &b"manifest"[..])
        );
        for bad in [
            r#"{"type":"ack","seq":-1}"#.to_string(),
            r#"{"type":"update","release":"a/b","url":"u","manifest":""}"#.to_string(),
            r#"{"type":"update","release":"ab","url":"u","manifest":"!!"}"#.to_string(),
            r#"{"type":"reboot"}"#.to_string(),
            "[]".to_string(),
            format!(
                r#"{{"type":"update","release":"ab","url":"u","manifest":"{}"}}"#,
                "A".repeat(4000)
            ),
        ] {
            assert_eq!(parse_command(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_command(&vec![b' '; MAX_COMMAND + 1]), None);
    }

    #[test]
    fn reports_serialise_only_what_is_set() {
        let r = Report {
            state: "downloading",
            progress: Some(percent(1, 3)),
            ..Report::default()
        };
        assert_eq!(
            String::from_utf8(r.to_json()).unwrap(),
            r#"{"state":"downloading","progress":33}"#
        );
        assert_eq!(percent(5, 5), 100);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
    }
}
