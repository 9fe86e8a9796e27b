//! The inventory: every certificate the CA issued, so `list`, `revoke` and `crl` know what
//! exists. Stored as `inventory.json` next to the CA, written atomically after the certificate
//! files it describes are on disk.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::algorithm::KeyAlgorithm;
use crate::error::{PkiError, Result};
use crate::file::{self, Durability, Mode};

/// The role a certificate plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The root CA.
    Ca,
    /// A TLS server (the broker, the HTTPS API).
    Server,
    /// A device (mutual TLS client, one per device).
    Device,
    /// A back-end service identity (e.g. the ingest), also a TLS client.
    Service,
}

impl Role {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Ca => "ca",
            Role::Server => "server",
            Role::Device => "device",
            Role::Service => "service",
        }
    }
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Device id, server host name or CA name.
    pub id: String,
    /// What the certificate is for.
    pub role: Role,
    /// Serial number, lower-case hex without leading zeros.
    pub serial: String,
    /// Key algorithm.
    pub key: KeyAlgorithm,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Certificate file, relative to the PKI directory.
    pub file: PathBuf,
    /// When it was revoked, if it was.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// The whole inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    /// Format version (1).
    pub version: u32,
    /// Default key algorithm of this PKI (the CA's).
    pub default_key: KeyAlgorithm,
    /// Number of the last CRL issued (RFC 5280 section 5.2.3: monotonically increasing).
    pub crl_number: u64,
    /// Every certificate, in issue order.
    pub certificates: Vec<Entry>,
}

/// The inventory's file name inside a PKI directory.
pub const FILE_NAME: &str = "inventory.json";

impl Inventory {
    /// An empty inventory for a new CA.
    pub fn new(default_key: KeyAlgorithm) -> Self {
        Inventory {
            version: 1,
            default_key,
            crl_number: 0,
            certificates: Vec::new(),
        }
    }

    /// Loads `dir/inventory.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        let bytes = file::read(&path)?;
        let inv: Inventory =
            serde_json::from_slice(&bytes).map_err(|e| PkiError::BadInventory {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if inv.version != 1 {
            return Err(PkiError::BadInventory {
                path,
                reason: format!("unsupported version {}", inv.version),
            });
        }
        Ok(inv)
    }

    /// Writes `dir/inventory.json` atomically and durably.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| PkiError::Generation(format!("inventory encoding: {e}")))?;
        bytes.push(b'\n');
        file::write_atomic(&dir.join(FILE_NAME), &bytes, Mode::Public, Durability::Sync)
    }

    /// The current (latest, not revoked) entry for `id` with `role`, if any.
    pub fn current(&self, id: &str, role: Role) -> Option<&Entry> {
        self.certificates
            .iter()
            .rev()
            .find(|e| e.id == id && e.role == role && e.revoked_at.is_none())
    }

    /// Every entry with `id` that is not revoked (any role but the CA).
    pub fn active_mut(&mut self, id: &str) -> impl Iterator<Item = &mut Entry> {
        self.certificates
            .iter_mut()
            .filter(move |e| e.id == id && e.role != Role::Ca && e.revoked_at.is_none())
    }

    /// Revoked entries (for the CRL).
    pub fn revoked(&self) -> impl Iterator<Item = &Entry> {
        self.certificates.iter().filter(|e| e.revoked_at.is_some())
    }
}

/// Validity status of a certificate at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Valid and not expiring within the warning window.
    Valid,
    /// Valid but expiring within the warning window.
    ExpiringSoon,
    /// Past its not-after date.
    Expired,
    /// Revoked (listed in the CRL).
    Revoked,
}

impl Status {
    /// How many days before expiry a certificate counts as expiring soon.
    pub const WARN_DAYS: i64 = 30;

    /// The status of `entry` at `now`.
    pub fn of(entry: &Entry, now: OffsetDateTime) -> Status {
        if entry.revoked_at.is_some() {
            Status::Revoked
        } else if entry.not_after <= now {
            Status::Expired
        } else if entry.not_after - now <= time::Duration::days(Self::WARN_DAYS) {
            Status::ExpiringSoon
        } else {
            Status::Valid
        }
    }

    /// Kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::ExpiringSoon => "expiring-soon",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
        }
    }
}
