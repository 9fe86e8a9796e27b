//! Device management: `iotsec device add / list / revoke`.
//!
//! `add` issues the device certificate (PKI), derives its message key (HKDF from the master,
//! see `iotsec-msg`), registers it in storage, and writes a bundle directory with everything
//! the device needs: `device.crt`, `device.key` (0600), `ca.crt`, `msg.key` (0600),
//! `pins.txt` (the broker's SPKI pins) and a ready `device.toml` (with an `[ota]` section and
//! the firmware signing keys, `firmware-N.pub`, when the server distributes firmware).
//! `revoke` revokes the certificate (CRL), reloads the broker so it refuses the device at
//! its next handshake, and marks it revoked in the registry so the ingest rejects anything
//! it still manages to send.

use std::path::{Path, PathBuf};

use iotsec_msg::key::{Kid, derive_device_key};
use iotsec_pki::file::{Durability, Mode, write_atomic};
use iotsec_pki::{Authority, DeviceId, DeviceOptions, Overwrite};

use crate::config::ServerConfig;
use crate::error::{Result, ServerError};
use crate::store::Storage;

/// Trust policy written into a bundle's device.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundlePolicy {
    /// Chain to the CA + hostname.
    Ca,
    /// Leaf certificate fingerprint.
    Pin,
    /// SPKI pin set.
    Spki,
    /// CA and SPKI pin set.
    CaSpki,
}

impl BundlePolicy {
    fn name(self) -> &'static str {
        match self {
            BundlePolicy::Ca => "ca",
            BundlePolicy::Pin => "pin",
            BundlePolicy::Spki => "spki",
            BundlePolicy::CaSpki => "ca+spki",
        }
    }
}

/// Options of `device add`.
#[derive(Debug, Clone)]
pub struct AddOptions {
    /// Device id.
    pub id: String,
    /// Accept v1 messages (fleet key) from it until it sends v2.
    pub legacy: bool,
    /// Message key version.
    pub key_version: u32,
    /// Trust policy for the bundle.
    pub policy: BundlePolicy,
    /// `host:port` the device dials (default: the server's broker host and port).
    pub broker: Option<String>,
    /// Bundle directory (default: `<bundles>/<id>`).
    pub out: Option<PathBuf>,
}

/// What `device add` produced.
#[derive(Debug, Clone)]
pub struct Added {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Certificate serial.
    pub serial: String,
}

fn pki_dir(config: &ServerConfig) -> Result<&Path> {
    config.pki.as_deref().ok_or_else(|| {
        ServerError::Config(format!(
            "{}: [provision] pki is not set",
            config.path.display()
        ))
    })
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn pki_err(e: iotsec_pki::PkiError) -> ServerError {
    ServerError::Config(e.to_string())
}

/// The broker's SPKI pins: the current server key, plus `server-backup.key` when one was
/// prepared (`iotsec pki keygen --out pki/server-backup.key`): shipping the backup pin first is
/// what lets the server key rotate without stranding pinned devices.
pub fn broker_pins(pki: &Path) -> Result<Vec<String>> {
    let layout = iotsec_pki::Layout::new(pki);
    let cert = iotsec_pki::pem::certificate(&layout.server_cert("server")).map_err(pki_err)?;
    let spki =
        iotsec_pki::pem::spki_of_cert(&layout.server_cert("server"), &cert).map_err(pki_err)?;
    let mut pins = vec![iotsec_pki::SpkiPin::of_spki_der(&spki).to_string()];
    let backup = pki.join("server-backup.key");
    if backup.exists() {
        use rcgen::PublicKeyData;
        let key = iotsec_pki::pem::key_pair(&backup).map_err(pki_err)?;
        pins.push(iotsec_pki::SpkiPin::of_spki_der(&key.subject_public_key_info()).to_string());
    }
    Ok(pins)
}

/// `iotsec device add`.
pub fn add(config: &ServerConfig, store: &mut dyn Storage, opts: &AddOptions) -> Result<Added> {
    let id = DeviceId::new(&opts.id).map_err(pki_err)?;
    let pki = pki_dir(config)?;
    let bundle = opts
        .out
        .clone()
        .unwrap_or_else(|| config.bundles.join(id.as_str()));
    if bundle.exists()
        && std::fs::read_dir(&bundle)
            .map_err(io(&bundle))?
            .next()
            .is_some()
    {
        return Err(ServerError::Config(format!(
            "{} already exists and is not empty",
            bundle.display()
        )));
    }
    let master = iotsec_msg::keyfile::read(&config.master_key)
        .map_err(|e| ServerError::Config(format!("{}: {e}", config.master_key.display())))?;
    let msg_id = iotsec_msg::DeviceId::new(id.as_str())
        .map_err(|_| ServerError::Config(format!("invalid device id {id}")))?;
    let device_key = derive_device_key(&master, &Kid::new(msg_id, opts.key_version));
    let pins = broker_pins(pki)?;

    let mut ca = Authority::open(pki).map_err(pki_err)?;
    let issued = ca
        .issue_devices(
            std::slice::from_ref(&id),
            &DeviceOptions {
                overwrite: Overwrite::Refuse,
                ..DeviceOptions::default()
            },
        )
        .map_err(pki_err)?;
    let issued = issued
        .into_iter()
        .next()
        .ok_or_else(|| ServerError::Config("no certificate issued".into()))?;

    std::fs::create_dir_all(&bundle).map_err(io(&bundle))?;
    let copy = |from: &Path, name: &str, mode: Mode| -> Result<()> {
        let bytes = std::fs::read(from).map_err(io(from))?;
        write_atomic(&bundle.join(name), &bytes, mode, Durability::Sync).map_err(pki_err)
    };
    copy(&issued.cert_path, "device.crt", Mode::Public)?;
    copy(&issued.key_path, "device.key", Mode::Private)?;
    copy(&ca.layout().ca_cert(), "ca.crt", Mode::Public)?;
    write_atomic(
        &bundle.join("msg.key"),
        device_key.expose(),
        Mode::Private,
        Durability::Sync,
    )
    .map_err(pki_err)?;
    write_atomic(
        &bundle.join("pins.txt"),
        format!("{}\n", pins.join("\n")).as_bytes(),
        Mode::Public,
        Durability::Sync,
    )
    .map_err(pki_err)?;
    let broker = opts
        .broker
        .clone()
        .unwrap_or_else(|| format!("{}:{}", config.broker_host, config.broker_port));
    let server_fp = {
        let layout = iotsec_pki::Layout::new(pki);
        let cert = iotsec_pki::pem::certificate(&layout.server_cert("server")).map_err(pki_err)?;
        iotsec_pki::Fingerprint::of_der(&cert).colon_hex()
    };
    let tls_extra = match opts.policy {
        BundlePolicy::Ca => String::new(),
        BundlePolicy::Pin => format!("pin = \"{server_fp}\"\n"),
        BundlePolicy::Spki | BundlePolicy::CaSpki => format!(
            "pins = [{}]\n",
            pins.iter()
                .map(|p| format!("\"{p}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let ota = ota_section(config, &bundle)?;
    let toml = format!(
        "# Generated by `iotsec device add {id}`.\n\
id = \"{id}\"\n\
broker = \"{broker}\"\n\
\n\
[tls]\n\
policy = \"{policy}\"\n\
ca = \"ca.crt\"\n\
{tls_extra}cert = \"device.crt\"\n\
key = \"device.key\"\n\
\n\
[msg]\n\
key_file = \"msg.key\"\n\
key_version = {kv}\n\
\n\
[state]\n\
dir = \"state\"\n\
\n\
[telemetry]\n\
source = \"simulate\"\n\
interval_ms = 1000\n\
firmware_version = \"1.0.0\"\n{ota}",
        policy = opts.policy.name(),
        kv = opts.key_version,
    );
    write_atomic(
        &bundle.join("device.toml"),
        toml.as_bytes(),
        Mode::Public,
        Durability::Sync,
    )
    .map_err(pki_err)?;
    store.upsert_device(id.as_str(), opts.legacy, opts.key_version)?;
    Ok(Added {
        bundle,
        serial: issued.entry.serial,
    })
}

/// The bundle's `[ota]` section when the server has one: the firmware signing keys (copied
/// into the bundle), the download server and its CA (the PKI's, like the broker's).
fn ota_section(config: &ServerConfig, bundle: &Path) -> Result<String> {
    let Some(ota) = crate::release::OtaConfig::of_server(config)? else {
        return Ok(String::new());
    };
    let mut names = Vec::with_capacity(ota.trust.len());
    for (i, key) in ota.trust.iter().enumerate() {
        let name = format!("firmware-{}.pub", i + 1);
        let bytes = std::fs::read(key).map_err(io(key))?;
        write_atomic(&bundle.join(&name), &bytes, Mode::Public, Durability::Sync)
            .map_err(pki_err)?;
        names.push(format!("\"{name}\""));
    }
    let hardware = match ota.hardware.as_slice() {
        [one] => format!("hardware_id = \"{one}\"\n"),
        _ => String::new(),
    };
    Ok(format!(
        "\n[ota]\nslots = \"slots\"\ntrust = [{}]\nserver = \"{}\"\nca = \"ca.crt\"\n{hardware}",
        names.join(", "),
        ota.url
    ))
}

/// What `device revoke` did.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// Serials revoked.
    pub serials: Vec<String>,
    /// Pid of the broker that was reloaded, if one was running.
    pub reloaded: Option<u32>,
}

/// `iotsec device revoke`: CRL + broker reload + registry status.
pub fn revoke(config: &ServerConfig, store: &mut dyn Storage, id: &str) -> Result<Revoked> {
    let pki = pki_dir(config)?;
    let mut ca = Authority::open(pki).map_err(pki_err)?;
    let entries = ca
        .revoke(id, iotsec_pki::authority::DEFAULT_CRL_DAYS)
        .map_err(pki_err)?;
    let mut reloaded = None;
    if let Some(dir) = &config.broker_config {
        match iotsec_broker::process::reload(dir) {
            Ok(pid) => reloaded = Some(pid),
            Err(iotsec_broker::BrokerError::NotRunning { .. }) => {
                // Not running: refresh the CRL copy so it applies at the next start.
                let meta = iotsec_broker::render::BrokerMeta::load(dir)
                    .map_err(|e| ServerError::Config(e.to_string()))?;
                iotsec_broker::render::sync_certs(&meta, dir)
                    .map_err(|e| ServerError::Config(e.to_string()))?;
            }
            Err(e) => return Err(ServerError::Config(e.to_string())),
        }
    }
    store.set_device_status(id, "revoked")?;
    Ok(Revoked {
        serials: entries.into_iter().map(|e| e.serial).collect(),
        reloaded,
    })
}
