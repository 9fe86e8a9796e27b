//! `broker config`: renders a hardened Mosquitto configuration directory from a PKI.
//!
//! Layout of the output directory:
//!
//! | path | what |
//! |---|---|
//! | `mosquitto.conf` | TLS-only listener, client certificates required, no anonymous access |
//! | `acl` | per-device topics ([`crate::acl`]) |
//! | `certs/{ca.crt,server.crt,server.key,crl.pem}` | copies of the PKI material the broker reads |
//! | `data/` | Mosquitto's persistence (sessions and queued QoS 1 messages) |
//! | `broker.toml` | where the PKI lives, so `broker reload` can refresh the CRL |
//!
//! Privileges: started as root, Mosquitto switches to the `mosquitto` user before it reads
//! certificates and keys. So, when run as root and that user exists, the directory and
//! `certs/` are group `mosquitto` (0750) and the key is `root:mosquitto 0640`: readable by
//! the broker on purpose, by no one else. Otherwise (not root) Mosquitto runs as the current
//! user and the key stays 0600.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use iotsec_pki::Role;
use iotsec_pki::file::{self, Durability, Mode};
use serde::{Deserialize, Serialize};

use crate::acl;
use crate::error::{BrokerError, Result};

/// Options of `broker config`.
#[derive(Debug, Clone)]
pub struct HardenedOptions {
    /// PKI directory (from `iotsec pki`).
    pub pki_dir: PathBuf,
    /// Output directory.
    pub out_dir: PathBuf,
    /// TLS port (8883).
    pub port: u16,
    /// Bind address (127.0.0.1).
    pub bind: String,
    /// Stem of the server certificate in the PKI (`server`).
    pub server_stem: String,
    /// Largest MQTT packet accepted, bytes.
    pub max_packet_size: u32,
}

impl HardenedOptions {
    /// Defaults: 127.0.0.1:8883, `server.crt`, 256 KiB packets.
    pub fn new(pki_dir: impl Into<PathBuf>, out_dir: impl Into<PathBuf>) -> Self {
        HardenedOptions {
            pki_dir: pki_dir.into(),
            out_dir: out_dir.into(),
            port: 8883,
            bind: "127.0.0.1".into(),
            server_stem: "server".into(),
            max_packet_size: 256 * 1024,
        }
    }
}

/// What `broker.toml` records about a rendered directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerMeta {
    /// Absolute path of the PKI directory.
    pub pki_dir: PathBuf,
    /// Server certificate stem in the PKI.
    pub server_stem: String,
    /// Listener port.
    pub port: u16,
    /// Listener address.
    pub bind: String,
    /// Service identities granted the ingest ACL.
    pub services: Vec<String>,
}

/// The name of the metadata file.
pub const META_FILE: &str = "broker.toml";

impl BrokerMeta {
    /// Reads `dir/broker.toml`.
    pub fn load(dir: &Path) -> Result<BrokerMeta> {
        let path = dir.join(META_FILE);
        let text = fs::read_to_string(&path).map_err(|e| BrokerError::io(&path, e))?;
        toml::from_str(&text).map_err(|e| BrokerError::Config(format!("{}: {e}", path.display())))
    }
}

/// Paths inside a rendered directory.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The directory (absolute).
    pub dir: PathBuf,
    /// `mosquitto.conf`.
    pub conf: PathBuf,
    /// `acl`.
    pub acl: PathBuf,
    /// Service identities in the ACL.
    pub services: Vec<String>,
}

fn absolute(path: &Path) -> Result<PathBuf> {
    fs::create_dir_all(path).map_err(|e| BrokerError::io(path, e))?;
    fs::canonicalize(path).map_err(|e| BrokerError::io(path, e))
}

/// The `mosquitto` user and group ids when we are root and they exist: the broker will run as
/// that user, so its files must be readable by that group.
fn broker_identity() -> Option<(nix::unistd::Uid, nix::unistd::Gid)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("mosquitto").ok().flatten()?;
    Some((user.uid, user.gid))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| BrokerError::io(path, e))
}

fn chown(path: &Path, uid: Option<nix::unistd::Uid>, gid: Option<nix::unistd::Gid>) -> Result<()> {
    nix::unistd::chown(path, uid, gid).map_err(|e| BrokerError::io(path, std::io::Error::from(e)))
}

/// Copies the PKI material the broker reads into `dir/certs`, with the permissions described in
/// the module docs. Used by `broker config` and by `broker reload` (fresh CRL).
pub fn sync_certs(meta: &BrokerMeta, dir: &Path) -> Result<()> {
    let pki = iotsec_pki::Layout::new(&meta.pki_dir);
    let certs = dir.join("certs");
    fs::create_dir_all(&certs).map_err(|e| BrokerError::io(&certs, e))?;
    let server_cert = pki.server_cert(&meta.server_stem);
    let server_key = pki.server_key(&meta.server_stem);
    for p in [
        pki.ca_cert(),
        server_cert.clone(),
        server_key.clone(),
        pki.crl(),
    ] {
        if !p.exists() {
            return Err(BrokerError::Config(format!(
                "{} is missing: create it with `iotsec pki init` / `iotsec pki server --name HOST` first",
                p.display()
            )));
        }
    }
    // Refuse a key that does not belong to the certificate: Mosquitto would fail at start with
    // a less helpful message.
    let chain = iotsec_pki::pem::certificates(&server_cert)?;
    let key = iotsec_pki::pem::key_pair(&server_key)?;
    iotsec_pki::pem::ensure_key_matches(&server_cert, &chain[0], &server_key, &key)?;
    iotsec_pki::pem::certificates(&pki.ca_cert())?;

    let copy = |from: &Path, name: &str, mode: Mode| -> Result<PathBuf> {
        let bytes = file::read(from)?;
        let to = certs.join(name);
        file::write_atomic(&to, &bytes, mode, Durability::Sync)?;
        Ok(to)
    };
    copy(&pki.ca_cert(), "ca.crt", Mode::Public)?;
    copy(&server_cert, "server.crt", Mode::Public)?;
    copy(&pki.crl(), "crl.pem", Mode::Public)?;
    let key_copy = copy(&server_key, "server.key", Mode::Private)?;
    if let Some((_, gid)) = broker_identity() {
        // Deliberately readable by the broker's group (it reads the key after dropping root).
        chown(&key_copy, None, Some(gid))?;
        set_mode(&key_copy, 0o640)?;
        chown(&certs, None, Some(gid))?;
        set_mode(&certs, 0o750)?;
    }
    Ok(())
}

/// Renders the hardened configuration into `opts.out_dir`.
pub fn write_hardened(opts: &HardenedOptions) -> Result<Rendered> {
    if opts.port == 0 {
        return Err(BrokerError::Config("port 0 is not a listening port".into()));
    }
    if opts.bind.parse::<std::net::IpAddr>().is_err() {
        return Err(BrokerError::Config(format!(
            "bind address {:?} is not an IP address",
            opts.bind
        )));
    }
    let pki_dir = fs::canonicalize(&opts.pki_dir).map_err(|e| BrokerError::io(&opts.pki_dir, e))?;
    let inventory = iotsec_pki::Inventory::load(&pki_dir)?;
    let mut services: Vec<String> = inventory
        .certificates
        .iter()
        .filter(|e| e.role == Role::Service && e.revoked_at.is_none())
        .map(|e| e.id.clone())
        .collect();
    services.sort();
    services.dedup();

    let dir = absolute(&opts.out_dir)?;
    let meta = BrokerMeta {
        pki_dir,
        server_stem: opts.server_stem.clone(),
        port: opts.port,
        bind: opts.bind.clone(),
        services: services.clone(),
    };
    sync_certs(&meta, &dir)?;
    let data = dir.join("data");
    fs::create_dir_all(&data).map_err(|e| BrokerError::io(&data, e))?;
    set_mode(&data, 0o700)?;

    let conf_path = dir.join("mosquitto.conf");
    let acl_path = dir.join("acl");
    file::write_atomic(
        &acl_path,
        acl::render(&services).as_bytes(),
        Mode::Public,
        Durability::Sync,
    )?;
    file::write_atomic(
        &conf_path,
        render_conf(&dir, opts).as_bytes(),
        Mode::Public,
        Durability::Sync,
    )?;
    let meta_text = toml::to_string(&meta)
        .map_err(|e| BrokerError::Config(format!("broker.toml encoding: {e}")))?;
    file::write_atomic(
        &dir.join(META_FILE),
        meta_text.as_bytes(),
        Mode::Public,
        Durability::Sync,
    )?;
    if let Some((uid, gid)) = broker_identity() {
        chown(&data, Some(uid), Some(gid))?;
        chown(&dir, None, Some(gid))?;
        set_mode(&dir, 0o750)?;
    }
    Ok(Rendered {
        dir,
        conf: conf_path,
        acl: acl_path,
        services,
    })
}

/// The text of the hardened mosquitto.conf for a directory.
pub fn render_conf(dir: &Path, opts: &HardenedOptions) -> String {
    let d = dir.display();
    format!(
        "# Generated by `iotsec broker config`. Regenerate instead of editing by hand.\n\
# Hardened: TLS only, client certificates required, the certificate CN is the MQTT username,\n\
# no anonymous access, per-device ACL, revocation through the CRL.\n\
\n\
per_listener_settings false\n\
allow_anonymous false\n\
acl_file {d}/acl\n\
\n\
# Durable sessions: the ingest's QoS 1 queue survives a broker restart.\n\
persistence true\n\
persistence_location {d}/data/\n\
autosave_interval 30\n\
persistent_client_expiration 14d\n\
max_queued_messages 200000\n\
max_inflight_messages 1000\n\
max_packet_size {max_packet}\n\
\n\
log_dest stderr\n\
log_type error\n\
log_type warning\n\
log_type notice\n\
log_type information\n\
connection_messages true\n\
log_timestamp true\n\
\n\
# The only listener: MQTT over TLS. There is no plaintext listener.\n\
listener {port} {bind}\n\
protocol mqtt\n\
cafile {d}/certs/ca.crt\n\
certfile {d}/certs/server.crt\n\
keyfile {d}/certs/server.key\n\
crlfile {d}/certs/crl.pem\n\
require_certificate true\n\
use_identity_as_username true\n\
tls_version tlsv1.2\n\
ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305\n",
        port = opts.port,
        bind = opts.bind,
        max_packet = opts.max_packet_size,
    )
}
