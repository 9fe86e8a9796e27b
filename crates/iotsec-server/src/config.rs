//! `server.toml`: raw (what the file says) -> validated (paths resolved, keys loaded lazily).
//!
//! ```toml
//! [broker]
//! host = "localhost"          # TLS server name of the broker
//! port = 8883
//! client_id = "iotsec-ingest" # stable: the persistent session is keyed on it
//! share_group = "ingest"      # optional: $share/<group>/devices/+/telemetry
//! [tls]
//! ca = "pki/ca.crt"
//! cert = "pki/devices/iotsec-server.crt"
//! key = "pki/devices/iotsec-server.key"
//! [keys]
//! master = "keys/master.key"  # HKDF master of the per-device message keys
//! legacy = "keys/legacy.key"  # optional: fleet-wide v1 key for devices marked legacy
//! min_key_version = 1
//! max_key_version = 1
//! [storage]
//! sqlite = "iotsec.db"        # or, for several workers sharing one store:
//! # url = "postgres://iotsec:secret@127.0.0.1:5432/iotsec"  (loopback or unix socket only)
//! [ingest]
//! max_skew_ms = 300000
//! batch_max = 500
//! batch_ms = 20
//! [provision]                  # used by `iotsec device add / revoke`
//! pki = "pki"
//! broker_config = "broker"     # optional: reloaded after a revocation
//! bundles = "bundles"
//! [ota]                        # firmware distribution (see `release`)
//! releases = "releases"
//! trust = ["keys/firmware.pub"]
//! hardware = ["acme-gw"]
//! url = "https://iot.example.com:8443"
//! ```
//! Relative paths are relative to the directory of `server.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Result, ServerError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    broker: RawBroker,
    tls: RawTls,
    keys: RawKeys,
    storage: RawStorage,
    #[serde(default)]
    ingest: RawIngest,
    provision: Option<RawProvision>,
    /// The HTTPS API and dashboard section, validated by the web crate.
    web: Option<toml::Table>,
    /// Firmware distribution, validated by [`crate::release::OtaConfig`].
    ota: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    host: String,
    port: u16,
    #[serde(default = "default_client_id")]
    client_id: String,
    share_group: Option<String>,
}

fn default_client_id() -> String {
    "iotsec-ingest".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    master: PathBuf,
    legacy: Option<PathBuf>,
    #[serde(default = "one")]
    min_key_version: u32,
    #[serde(default = "one")]
    max_key_version: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    sqlite: Option<PathBuf>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    #[serde(default = "default_skew")]
    max_skew_ms: u64,
    #[serde(default = "default_batch_max")]
    batch_max: usize,
    #[serde(default = "default_batch_ms")]
    batch_ms: u64,
}

impl Default for RawIngest {
    fn default() -> Self {
        RawIngest {
            max_skew_ms: default_skew(),
            batch_max: default_batch_max(),
            batch_ms: default_batch_ms(),
        }
    }
}

fn default_skew() -> u64 {
    5 * 60 * 1000
}
fn default_batch_max() -> usize {
    500
}
fn default_batch_ms() -> u64 {
    20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvision {
    pki: PathBuf,
    broker_config: Option<PathBuf>,
    #[serde(default = "default_bundles")]
    bundles: PathBuf,
}

fn default_bundles() -> PathBuf {
    PathBuf::from("bundles")
}

/// Validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// Broker TLS server name.
    pub broker_host: String,
    /// Broker port.
    pub broker_port: u16,
    /// MQTT client id (stable across restarts: the persistent session is keyed on it).
    pub client_id: String,
    /// Shared-subscription group, if any.
    pub share_group: Option<String>,
    /// CA the broker's certificate must chain to.
    pub ca: PathBuf,
    /// The service identity's certificate.
    pub cert: PathBuf,
    /// The service identity's key.
    pub key: PathBuf,
    /// Master key file.
    pub master_key: PathBuf,
    /// Legacy v1 fleet key file.
    pub legacy_key: Option<PathBuf>,
    /// Accepted message key versions.
    pub key_versions: std::ops::RangeInclusive<u32>,
    /// SQLite database (the engine unless `postgres` is set; then unused).
    pub sqlite: PathBuf,
    /// PostgreSQL (`[storage] url`), shared by several workers.
    pub postgres: Option<crate::store::postgres::PostgresUrl>,
    /// Allowed clock skew.
    pub max_skew_ms: u64,
    /// Largest batch per commit.
    pub batch_max: usize,
    /// Longest wait before committing a partial batch.
    pub batch_ms: u64,
    /// PKI directory (provisioning).
    pub pki: Option<PathBuf>,
    /// Broker config directory to reload after revocations.
    pub broker_config: Option<PathBuf>,
    /// Where device bundles are written.
    pub bundles: PathBuf,
    /// The raw `[web]` section (HTTPS API and dashboard), if present; `iotsec-web` validates it.
    pub web: Option<toml::Table>,
    /// The raw `[ota]` section (firmware releases and rollouts), if present;
    /// [`crate::release::OtaConfig::of_server`] validates it.
    pub ota: Option<toml::Table>,
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl ServerConfig {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<ServerConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates config text; `path` names it and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<ServerConfig> {
        let raw: Raw = toml::from_str(text)
            .map_err(|e| ServerError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let bad = |msg: String| ServerError::Config(format!("{}: {msg}", path.display()));
        if raw.broker.host.is_empty() {
            return Err(bad("broker.host is empty".into()));
        }
        if raw.broker.port == 0 {
            return Err(bad("broker.port is 0".into()));
        }
        if raw.broker.client_id.is_empty() || raw.broker.client_id.len() > 64 {
            return Err(bad("broker.client_id must have 1 to 64 characters".into()));
        }
        if let Some(g) = &raw.broker.share_group
            && (g.is_empty() || g.contains(['/', '+', '#']))
        {
            return Err(bad(format!(
                "broker.share_group {g:?} must be a plain name"
            )));
        }
        if raw.keys.min_key_version > raw.keys.max_key_version {
            return Err(bad("keys.min_key_version > keys.max_key_version".into()));
        }
        if raw.ingest.batch_max == 0 || raw.ingest.batch_max > 10_000 {
            return Err(bad("ingest.batch_max must be 1..=10000".into()));
        }
        let (sqlite, postgres) = match (raw.storage.sqlite, raw.storage.url) {
            (Some(path), None) => (path, None),
            (None, Some(url)) => {
                let url = crate::store::postgres::PostgresUrl::parse(&url)
                    .map_err(|e| bad(e.to_string()))?;
                (PathBuf::from("iotsec.db"), Some(url))
            }
            _ => {
                return Err(bad(
                    "[storage] needs exactly one of sqlite = \"file\" or url = \"postgres://...\""
                        .into(),
                ));
            }
        };
        let provision = raw.provision;
        Ok(ServerConfig {
            path: path.to_path_buf(),
            broker_host: raw.broker.host,
            broker_port: raw.broker.port,
            client_id: raw.broker.client_id,
            share_group: raw.broker.share_group,
            ca: resolve(base, &raw.tls.ca),
            cert: resolve(base, &raw.tls.cert),
            key: resolve(base, &raw.tls.key),
            master_key: resolve(base, &raw.keys.master),
            legacy_key: raw.keys.legacy.map(|p| resolve(base, &p)),
            key_versions: raw.keys.min_key_version..=raw.keys.max_key_version,
            sqlite: resolve(base, &sqlite),
            postgres,
            max_skew_ms: raw.ingest.max_skew_ms,
            batch_max: raw.ingest.batch_max,
            batch_ms: raw.ingest.batch_ms,
            pki: provision.as_ref().map(|p| resolve(base, &p.pki)),
            broker_config: provision
                .as_ref()
                .and_then(|p| p.broker_config.as_ref().map(|b| resolve(base, b))),
            bundles: provision
                .as_ref()
                .map(|p| resolve(base, &p.bundles))
                .unwrap_or_else(|| resolve(base, Path::new("bundles"))),
            web: raw.web,
            ota: raw.ota,
        })
    }

    /// The directory `server.toml` is in (relative paths in any section resolve against it).
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }

    /// Opens the configured storage (PostgreSQL connections are named after `client_id`).
    pub fn open_storage(&self) -> Result<Box<dyn crate::store::Storage>> {
        Ok(match &self.postgres {
            Some(url) => Box::new(crate::store::postgres::Postgres::connect(
                &url.with_default_application_name(&self.client_id),
            )?),
            None => Box::new(crate::store::sqlite::Sqlite::open(&self.sqlite)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[broker]
host = "localhost"
port = 8883
[tls]
ca = "pki/ca.crt"
cert = "c.crt"
key = "/abs/c.key"
[keys]
master = "m.key"
[storage]
sqlite = "db.sqlite"
"#;

    #[test]
    fn resolves_relative_paths_and_defaults() {
        let c = ServerConfig::parse(Path::new("/etc/iotsec/server.toml"), MIN).unwrap();
        assert_eq!(c.ca, PathBuf::from("/etc/iotsec/pki/ca.crt"));
        assert_eq!(c.key, PathBuf::from("/abs/c.key"));
        assert_eq!(c.client_id, "iotsec-ingest");
        assert_eq!(c.batch_max, 500);
        assert_eq!(c.key_versions, 1..=1);
    }

    #[test]
    fn storage_is_sqlite_or_a_local_postgres_url() {
        let p = Path::new("/etc/iotsec/server.toml");
        let pg = MIN.replace(
            "sqlite = \"db.sqlite\"",
            "url = \"postgres://iotsec:pw@127.0.0.1:5432/iotsec\"",
        );
        let c = ServerConfig::parse(p, &pg).unwrap();
        assert!(c.postgres.is_some());
        assert!(!format!("{c:?}").contains(":pw@"));
        let both = MIN.replace(
            "sqlite = \"db.sqlite\"",
            "sqlite = \"db.sqlite\"\nurl = \"postgres://u@localhost/db\"",
        );
        assert!(ServerConfig::parse(p, &both).is_err());
        assert!(ServerConfig::parse(p, &MIN.replace("sqlite = \"db.sqlite\"", "")).is_err());
        let remote = pg.replace("127.0.0.1", "db.example.com");
        assert!(ServerConfig::parse(p, &remote).is_err());
    }

    #[test]
    fn refuses_bad_values_and_unknown_keys() {
        let p = Path::new("s.toml");
        assert!(ServerConfig::parse(p, &MIN.replace("8883", "0")).is_err());
        assert!(ServerConfig::parse(p, &format!("{MIN}\n[ingest]\nbatch_max = 0\n")).is_err());
        assert!(ServerConfig::parse(p, &MIN.replace("[storage]", "typo = 1\n[storage]")).is_err());
        assert!(
            ServerConfig::parse(
                p,
                &MIN.replace("client", "x")
                    .replace("port = 8883", "port = 8883\nshare_group = \"a/b\"")
            )
            .is_err()
        );
    }
}
