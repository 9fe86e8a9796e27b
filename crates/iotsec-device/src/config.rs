//! `device.toml`: what the operator wrote ([`RawConfig`], serde, unknown keys refused), then
//! the checked objects the agent uses ([`Config`]: trust policy, identity and message key
//! loaded, paths resolved against the file's directory).
//!
//! ```toml
//! id = "device-1"
//! broker = "localhost:8883"      # host[:port]; host is the TLS server name (an IP needs an IP SAN)
//!
//! [tls]
//! policy = "ca"                  # ca | pin | spki | ca+spki
//! ca = "ca.crt"                  # required by ca, ca+spki (allowed, unused, with pin/spki)
//! crl = "crl.pem"                # optional, ca and ca+spki: refuse revoked broker certificates
//! pin = "AA:BB:..."              # pin: the broker certificate's SHA-256 (openssl colon form or hex)
//! pins = ["sha256/...", "sha256/..."]   # spki, ca+spki: current + backup key
//! expiry = "enforce"             # pin, spki: "ignore" for devices without a trustworthy clock
//! cert = "device.crt"
//! key = "device.key"
//!
//! [msg]
//! key_file = "msg.key"           # the derived device key (32 bytes)
//! key_version = 1
//!
//! [state]
//! dir = "state"                  # disk queue + sequence counter
//! max_queue_bytes = 67108864
//!
//! [telemetry]
//! source = "simulate"            # simulate | stdin | command
//! command = "..."                # source = "command": one JSON object per stdout line
//! interval_ms = 1000             # simulate
//! firmware_version = "1.0.0"
//!
//! [ota]                          # optional: firmware updates (see `ota`)
//! slots = "slots"                # A/B state directory, as given to `iotsec fw supervise --slots`
//! trust = ["firmware.pub"]       # factory trust when the slots directory has no key set yet
//! server = "https://localhost:8443"  # where firmware is downloaded from (mutual TLS)
//! ca = "ca.crt"                  # CA of that server (default: [tls] ca)
//! hardware_id = "acme-gw"        # optional: this device's hardware id
//! max_bytes_per_sec = 1048576    # optional: download rate limit
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use iotsec_msg::{DeviceId, Kid, MsgKey};
use iotsec_tls::{
    CaTrust, CertFingerprint, ClientTls, Expiry, Identity, PinSet, PolicyKind, PolicyWarning,
    TrustPolicy,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::frame::MAX_FRAME;

/// The default MQTT-over-TLS port.
pub const DEFAULT_PORT: u16 = 8883;

/// The smallest accepted `state.max_queue_bytes`.
pub const MIN_QUEUE_BYTES: u64 = 64 * 1024;

/// `device.toml` as written. Serialize it to write a bundle's file (`iotsec device add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Device id (the certificate's CN).
    pub id: String,
    /// `host[:port]` of the broker.
    pub broker: String,
    /// `[tls]`.
    pub tls: RawTls,
    /// `[msg]`.
    pub msg: RawMsg,
    /// `[state]`.
    #[serde(default)]
    pub state: RawState,
    /// `[telemetry]`.
    #[serde(default)]
    pub telemetry: RawTelemetry,
    /// `[ota]`: firmware updates (absent: the agent ignores update notices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ota: Option<crate::ota::RawOta>,
}

/// `[tls]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// `ca` (default), `pin`, `spki`, `ca+spki`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// CA certificate(s), PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// CRL(s), PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
    /// Certificate fingerprint pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// SPKI pins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins: Option<Vec<String>>,
    /// `enforce` (default) or `ignore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<String>,
    /// Device certificate (chain), PEM.
    pub cert: PathBuf,
    /// Device private key, PEM.
    pub key: PathBuf,
}

/// `[msg]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMsg {
    /// The device key file (32 raw bytes).
    pub key_file: PathBuf,
    /// Its version (the `kid` is `<id>:<version>`).
    #[serde(default = "one")]
    pub key_version: u32,
}

fn one() -> u32 {
    1
}

/// `[state]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// State directory.
    #[serde(default = "state_dir")]
    pub dir: PathBuf,
    /// Bound of the disk queue.
    #[serde(default = "max_queue_bytes")]
    pub max_queue_bytes: u64,
}

fn state_dir() -> PathBuf {
    PathBuf::from("state")
}

fn max_queue_bytes() -> u64 {
    64 * 1024 * 1024
}

impl Default for RawState {
    fn default() -> Self {
        RawState {
            dir: state_dir(),
            max_queue_bytes: max_queue_bytes(),
        }
    }
}

/// `[telemetry]` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// `simulate` (default), `stdin`, `command`.
    #[serde(default = "simulate")]
    pub source: String,
    /// The command of `source = "command"` (run with `sh -c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Interval of the simulated sensor.
    #[serde(default = "interval_ms")]
    pub interval_ms: u64,
    /// Reported in status messages.
    #[serde(default = "firmware_version")]
    pub firmware_version: String,
}

fn simulate() -> String {
    "simulate".into()
}

fn interval_ms() -> u64 {
    1000
}

fn firmware_version() -> String {
    "unknown".into()
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            source: simulate(),
            command: None,
            interval_ms: interval_ms(),
            firmware_version: firmware_version(),
        }
    }
}

/// Where readings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// The simulated sensor, one reading per interval.
    Simulate {
        /// Time between readings.
        interval: Duration,
    },
    /// JSON objects, one per line of standard input.
    Stdin,
    /// JSON objects, one per line of a command's standard output (`sh -c <command>`).
    Command(String),
}

/// The broker's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or IP literal; also the TLS server name.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Something allowed but worth telling the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigWarning {
    /// A weakness of the trust policy (e.g. a single SPKI pin).
    Policy(PolicyWarning),
    /// A secret file others can read.
    ReadableByOthers {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigWarning::Policy(w) => w.fmt(f),
            ConfigWarning::ReadableByOthers { path, mode } => write!(
                f,
                "{} holds a secret but has mode {mode:04o}: chmod 600 it",
                path.display()
            ),
        }
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// Device id.
    pub id: DeviceId,
    /// Broker address.
    pub broker: BrokerAddr,
    /// How the broker is trusted.
    pub policy: TrustPolicy,
    /// The device's TLS identity.
    pub identity: Identity,
    /// Key id of the message key.
    pub kid: Kid,
    /// The message key.
    pub msg_key: MsgKey,
    /// State directory (absolute or relative to the working directory).
    pub state_dir: PathBuf,
    /// Bound of the disk queue.
    pub max_queue_bytes: u64,
    /// Reading source.
    pub source: SourceKind,
    /// Firmware version for status messages.
    pub firmware_version: String,
    /// Firmware updates, when `[ota]` is configured.
    pub ota: Option<crate::ota::OtaSettings>,
    /// What the operator should know.
    pub warnings: Vec<ConfigWarning>,
}

impl RawConfig {
    /// Parses TOML text (`path` names the file in errors).
    ///
    /// # Errors
    /// [`Error::ConfigSyntax`] for bad TOML, unknown keys, wrong types.
    pub fn parse(text: &str, path: &Path) -> Result<RawConfig> {
        toml::from_str(text).map_err(|e| Error::ConfigSyntax {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// The TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        // Plain data: serialising cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks every value and loads the files it names (relative to `base`, the directory
    /// of the configuration file). `path` names the file in errors.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::Tls`], [`Error::MsgKey`], saying which key is wrong.
    pub fn validate(self, path: &Path, base: &Path) -> Result<Config> {
        let bad = |key: &'static str, reason: String| Error::Config {
            path: path.to_path_buf(),
            key,
            reason,
        };
        let resolve = |p: &Path| base.join(p);
        let id = DeviceId::new(&self.id).map_err(|_| {
            bad(
                "id",
                format!(
                    "'{}' is not a device id (1-128 of A-Z a-z 0-9 . _ -)",
                    self.id
                ),
            )
        })?;
        let broker = parse_broker(&self.broker).map_err(|reason| bad("broker", reason))?;

        // [tls]
        let tls = self.tls;
        let tls_err = |source| Error::Tls {
            path: path.to_path_buf(),
            source,
        };
        let kind: PolicyKind = match &tls.policy {
            None => PolicyKind::Ca,
            Some(p) => p.parse().map_err(tls_err)?,
        };
        let uses_ca = matches!(kind, PolicyKind::Ca | PolicyKind::CaSpki);
        let uses_pins = matches!(kind, PolicyKind::Spki | PolicyKind::CaSpki);
        if tls.pin.is_some() && kind != PolicyKind::Pin {
            return Err(bad(
                "tls.pin",
                format!("only used with policy = \"pin\", not \"{kind}\""),
            ));
        }
        if tls.pins.is_some() && !uses_pins {
            return Err(bad(
                "tls.pins",
                format!("only used with policy = \"spki\" or \"ca+spki\", not \"{kind}\""),
            ));
        }
        if tls.crl.is_some() && !uses_ca {
            return Err(bad(
                "tls.crl",
                format!("only used with policy = \"ca\" or \"ca+spki\", not \"{kind}\""),
            ));
        }
        let expiry = match tls.expiry.as_deref() {
            None | Some("enforce") => Expiry::Enforce,
            Some("ignore") if !uses_ca => Expiry::Ignore,
            Some("ignore") => {
                return Err(bad(
                    "tls.expiry",
                    "\"ignore\" is only possible with policy \"pin\" or \"spki\": CA \
                     validation always checks dates"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(bad(
                    "tls.expiry",
                    format!("'{other}': expected \"enforce\" or \"ignore\""),
                ));
            }
        };
        let ca = if uses_ca {
            let Some(ca_path) = &tls.ca else {
                return Err(bad("tls.ca", format!("policy \"{kind}\" needs a CA file")));
            };
            let mut ca = CaTrust::from_pem_file(resolve(ca_path)).map_err(tls_err)?;
            if let Some(crl) = &tls.crl {
                ca = ca.with_crls_pem_file(resolve(crl)).map_err(tls_err)?;
            }
            Some(ca)
        } else {
            None
        };
        let pins = if uses_pins {
            let Some(pins) = &tls.pins else {
                return Err(bad(
                    "tls.pins",
                    format!("policy \"{kind}\" needs SPKI pins"),
                ));
            };
            Some(PinSet::parse(pins).map_err(tls_err)?)
        } else {
            None
        };
        let policy = match (kind, ca, pins) {
            (PolicyKind::Ca, Some(ca), _) => TrustPolicy::Ca(ca),
            (PolicyKind::CaSpki, Some(ca), Some(pins)) => TrustPolicy::CaSpki { ca, pins },
            (PolicyKind::Spki, _, Some(pins)) => TrustPolicy::Spki { pins, expiry },
            (PolicyKind::Pin, _, _) => {
                let Some(pin) = &tls.pin else {
                    return Err(bad("tls.pin", "policy \"pin\" needs a fingerprint".into()));
                };
                let fingerprint: CertFingerprint = pin.parse().map_err(tls_err)?;
                TrustPolicy::Pin {
                    fingerprint,
                    expiry,
                }
            }
            _ => return Err(bad("tls.policy", format!("incomplete policy \"{kind}\""))),
        };
        let identity =
            Identity::from_pem_files(resolve(&tls.cert), resolve(&tls.key)).map_err(tls_err)?;
        check_common_name(&identity, &id).map_err(|reason| bad("tls.cert", reason))?;

        // [msg]
        let key_path = resolve(&self.msg.key_file);
        let material = iotsec_msg::keyfile::read(&key_path).map_err(|source| Error::MsgKey {
            path: key_path.clone(),
            source,
        })?;
        if material.expose().len() != iotsec_msg::key::KEY_LEN {
            return Err(bad(
                "msg.key_file",
                format!(
                    "{} holds {} bytes; a device key is {} raw bytes (iotsec msg derive-key --out)",
                    key_path.display(),
                    material.expose().len(),
                    iotsec_msg::key::KEY_LEN
                ),
            ));
        }
        let msg_key = MsgKey::new(material.expose()).map_err(|source| Error::MsgKey {
            path: key_path.clone(),
            source,
        })?;
        let kid = Kid::new(id.clone(), self.msg.key_version);

        // [state]
        if self.state.max_queue_bytes < MIN_QUEUE_BYTES.max(4 * MAX_FRAME as u64) {
            return Err(bad(
                "state.max_queue_bytes",
                format!("at least {MIN_QUEUE_BYTES} bytes"),
            ));
        }

        // [telemetry]
        let t = self.telemetry;
        let source = match t.source.as_str() {
            "simulate" | "stdin" if t.command.is_some() => {
                return Err(bad(
                    "telemetry.command",
                    format!("only used with source = \"command\", not \"{}\"", t.source),
                ));
            }
            "simulate" => {
                if t.interval_ms == 0 {
                    return Err(bad("telemetry.interval_ms", "must be at least 1".into()));
                }
                SourceKind::Simulate {
                    interval: Duration::from_millis(t.interval_ms),
                }
            }
            "stdin" => SourceKind::Stdin,
            "command" => match t.command {
                Some(c) if !c.trim().is_empty() => SourceKind::Command(c),
                _ => {
                    return Err(bad(
                        "telemetry.command",
                        "source = \"command\" needs a command".into(),
                    ));
                }
            },
            other => {
                return Err(bad(
                    "telemetry.source",
                    format!("'{other}': expected simulate, stdin or command"),
                ));
            }
        };
        if t.firmware_version.is_empty() || t.firmware_version.len() > 64 {
            return Err(bad(
                "telemetry.firmware_version",
                "1 to 64 characters".into(),
            ));
        }

        // [ota]
        let ota = match self.ota {
            Some(raw) => {
                Some(raw.validate(path, base, tls.ca.as_deref().map(resolve).as_deref())?)
            }
            None => None,
        };

        let mut warnings: Vec<ConfigWarning> = policy
            .warnings()
            .into_iter()
            .map(ConfigWarning::Policy)
            .collect();
        for secret in [resolve(&tls.key), key_path] {
            if let Some(mode) = readable_by_others(&secret) {
                warnings.push(ConfigWarning::ReadableByOthers { path: secret, mode });
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            id,
            broker,
            policy,
            identity,
            kid,
            msg_key,
            state_dir: resolve(&self.state.dir),
            max_queue_bytes: self.state.max_queue_bytes,
            source,
            firmware_version: t.firmware_version,
            ota,
            warnings,
        })
    }
}

impl Config {
    /// Reads, parses and validates `device.toml`.
    ///
    /// # Errors
    /// As [`RawConfig::parse`] and [`RawConfig::validate`], plus [`Error::ConfigRead`].
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_path_buf(),
            source,
        })?;
        let base = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        RawConfig::parse(&text, path)?.validate(path, &base)
    }

    /// A fresh rustls configuration for this policy and identity (each has its own
    /// [`iotsec_tls::VerifyLog`]).
    ///
    /// # Errors
    /// [`Error::Tls`] (the material was checked at load, so only in odd cases).
    pub fn client_tls(&self) -> Result<ClientTls> {
        ClientTls::new(&self.policy, Some(&self.identity)).map_err(|source| Error::Tls {
            path: self.path.clone(),
            source,
        })
    }
}

/// `host`, `host:port`, `[v6]:port`, `v6` (bare IPv6 literal without port).
fn parse_broker(text: &str) -> std::result::Result<BrokerAddr, String> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("unclosed '[' in an IPv6 address")?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("unexpected '{after}' after ']'")),
        }
    } else if text.matches(':').count() > 1 {
        (text, None) // a bare IPv6 literal
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("'{p}' is not a port")),
        },
    };
    if host.is_empty() {
        return Err("expected host:port".into());
    }
    rustls::pki_types::ServerName::try_from(host)
        .map_err(|_| format!("'{host}' is not a valid host name or IP address"))?;
    Ok(BrokerAddr {
        host: host.to_owned(),
        port,
    })
}

/// The broker turns the certificate's CN into the MQTT username, and its ACL grants
/// `devices/<username>/...`: a certificate for another name would publish into the void.
fn check_common_name(identity: &Identity, id: &DeviceId) -> std::result::Result<(), String> {
    let leaf = identity
        .certificate_chain()
        .first()
        .ok_or("no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("cannot parse the certificate: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok());
    match cn {
        Some(cn) if cn == id.as_str() => Ok(()),
        Some(cn) => Err(format!(
            "the certificate is issued to CN={cn}, but id = \"{id}\": the broker would \
             treat this device as {cn}"
        )),
        None => Err("the certificate has no common name (the broker's username)".into()),
    }
}

fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn broker_addresses() {
        let ok = |t: &str, h: &str, p: u16| {
            assert_eq!(
                parse_broker(t).unwrap(),
                BrokerAddr {
                    host: h.into(),
                    port: p
                },
                "{t}"
            );
        };
        ok("localhost:8883", "localhost", 8883);
        ok("broker.example", "broker.example", DEFAULT_PORT);
        ok("127.0.0.1:1", "127.0.0.1", 1);
        ok("[::1]:9000", "::1", 9000);
        ok("::1", "::1", DEFAULT_PORT);
        for bad in [
            "",
            ":8883",
            "host:0",
            "host:x",
            "[::1",
            "host:99999",
            "bad host:1",
        ] {
            assert!(parse_broker(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_broker("[::1]:9").unwrap().to_string(), "[::1]:9");
    }

    #[test]
    fn unknown_keys_are_refused_and_defaults_apply() {
        let p = Path::new("device.toml");
        let text = "id = \"d\"\nbroker = \"h:1\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n\
                    [msg]\nkey_file = \"m\"\n";
        let raw = RawConfig::parse(text, p).unwrap();
        assert_eq!(raw.msg.key_version, 1);
        assert_eq!(raw.state, RawState::default());
        assert_eq!(raw.telemetry.source, "simulate");
        assert_eq!(RawConfig::parse(&raw.to_toml(), p).unwrap(), raw);
        let typo = format!("{text}[state]\nmax_queue_byte = 1\n");
        let err = RawConfig::parse(&typo, p).unwrap_err();
        let chain = format!("{}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("max_queue_byte"), "{chain}");
    }
}
