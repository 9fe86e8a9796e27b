//! Bearer tokens: created at random (256 bits), shown once, stored only as SHA-256 hashes.
//!
//! The token file (`tokens.json` next to `server.toml`, mode 0600, replaced atomically) holds
//! `{id, name, role, sha256, created}` per token. A token has 256 bits of entropy, so a plain
//! SHA-256 is enough to make the file useless to a reader (no slow hash needed: there is
//! nothing to brute-force). The server compares hashes in constant time and re-reads the file
//! whenever it changed (inode, size or mtime), so `iotsec token revoke` takes effect at the
//! next request.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use iotsec_pki::file::{Durability, Mode, write_atomic};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Result, WebError};

/// Every token starts with this (lets secret scanners recognise leaked tokens).
pub const PREFIX: &str = "iotsec_";

/// What a token (or an operator certificate) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads, revokes devices (and, with OTA distribution, starts rollouts).
    Admin,
}

impl Role {
    /// `viewer` / `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = WebError;
    fn from_str(s: &str) -> Result<Role> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "admin" => Ok(Role::Admin),
            other => Err(WebError::Config(format!(
                "role {other:?} is not viewer or admin"
            ))),
        }
    }
}

/// A token in clear text: exists only between creation and printing, and in a request.
/// `Debug` and `Display` never show it.
pub struct Secret(String);

impl Secret {
    /// The token text, to show the operator once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One stored token (no secret: only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// Short public id (for `token revoke` and the logs).
    pub id: String,
    /// Free-form label.
    pub name: String,
    /// Role.
    pub role: Role,
    /// SHA-256 of the token text, hex.
    pub sha256: String,
    /// Creation time, RFC 3339.
    pub created: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    tokens: Vec<TokenEntry>,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| WebError::Config(format!("no randomness: {e}")))?;
    Ok(b)
}

fn bad(path: &Path, reason: impl Into<String>) -> WebError {
    WebError::Tokens {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn load(path: &Path) -> Result<Vec<TokenEntry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(bad(path, e.to_string())),
    };
    let f: File = serde_json::from_str(&text).map_err(|e| bad(path, e.to_string()))?;
    if f.version != 1 {
        return Err(bad(path, format!("unknown version {}", f.version)));
    }
    for t in &f.tokens {
        if t.sha256.len() != 64 || hex::decode(&t.sha256).is_err() {
            return Err(bad(path, format!("token {} has no valid sha256", t.id)));
        }
    }
    Ok(f.tokens)
}

fn save(path: &Path, tokens: &[TokenEntry]) -> Result<()> {
    let f = File {
        version: 1,
        tokens: tokens.to_vec(),
    };
    let text = serde_json::to_string_pretty(&f).map_err(|e| bad(path, e.to_string()))?;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(WebError::io(dir.display()))?;
    }
    write_atomic(path, text.as_bytes(), Mode::Private, Durability::Sync)
        .map_err(|e| bad(path, e.to_string()))
}

/// Creates a token with `role` and `name`, appends its hash to the file, and returns the
/// entry and the secret (to print once).
pub fn create(path: &Path, role: Role, name: &str) -> Result<(TokenEntry, Secret)> {
    if name.len() > 64 || name.chars().any(char::is_control) {
        return Err(WebError::Config(
            "token name: at most 64 printable characters".into(),
        ));
    }
    let mut tokens = load(path)?;
    let secret = Secret(format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?)
    ));
    let id = loop {
        let id = hex::encode(random::<4>()?);
        if !tokens.iter().any(|t| t.id == id) {
            break id;
        }
    };
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let entry = TokenEntry {
        id,
        name: if name.is_empty() {
            role.name().to_string()
        } else {
            name.to_string()
        },
        role,
        sha256: hex::encode(hash(secret.expose())),
        created,
    };
    tokens.push(entry.clone());
    save(path, &tokens)?;
    Ok((entry, secret))
}

/// Removes token `id`; false when there is none.
pub fn revoke(path: &Path, id: &str) -> Result<bool> {
    let mut tokens = load(path)?;
    let before = tokens.len();
    tokens.retain(|t| t.id != id);
    if tokens.len() == before {
        return Ok(false);
    }
    save(path, &tokens)?;
    Ok(true)
}

/// Every stored token (hashes only).
pub fn list(path: &Path) -> Result<Vec<TokenEntry>> {
    load(path)
}

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHolder {
    /// Token id.
    pub id: String,
    /// Token name.
    pub name: String,
    /// Role.
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

/// The server's view of the token file, re-read whenever the file changes.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    stamp: Option<Stamp>,
    entries: Vec<([u8; 32], TokenHolder)>,
}

impl TokenStore {
    /// Opens (and reads) the token file; a missing file means no token is valid.
    pub fn open(path: &Path) -> Result<TokenStore> {
        let mut s = TokenStore {
            path: path.to_path_buf(),
            stamp: None,
            entries: Vec::new(),
        };
        s.refresh()?;
        Ok(s)
    }

    /// Re-reads the file if it changed. On a read error the store holds no token at all
    /// (fails closed) and the error is returned for logging.
    pub fn refresh(&mut self) -> Result<()> {
        let stamp = std::fs::metadata(&self.path).ok().map(|m| Stamp {
            ino: m.ino(),
            len: m.len(),
            mtime: m.modified().ok(),
        });
        if stamp == self.stamp && self.stamp.is_some() {
            return Ok(());
        }
        self.stamp = stamp;
        match load(&self.path) {
            Ok(entries) => {
                self.entries = entries
                    .into_iter()
                    .filter_map(|t| {
                        let mut h = [0u8; 32];
                        hex::decode_to_slice(&t.sha256, &mut h).ok()?;
                        Some((
                            h,
                            TokenHolder {
                                id: t.id,
                                name: t.name,
                                role: t.role,
                            },
                        ))
                    })
                    .collect();
                Ok(())
            }
            Err(e) => {
                self.entries.clear();
                // Read again next time rather than trusting a half-written state.
                self.stamp = None;
                Err(e)
            }
        }
    }

    /// The holder of `token`, if it is a current token. Compares against every stored hash
    /// in constant time (no early exit on a match).
    pub fn verify(&self, token: &str) -> Option<TokenHolder> {
        let h = hash(token);
        let mut found = None;
        for (stored, holder) in &self.entries {
            if bool::from(stored.ct_eq(&h)) {
                found = Some(holder);
            }
        }
        found.cloned()
    }

    /// Whether token `id` is still current (long-lived streams re-check this).
    pub fn is_current(&self, id: &str) -> bool {
        self.entries.iter().any(|(_, h)| h.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_tokens_verify_until_revoked_and_the_file_holds_only_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let (admin, secret) = create(&path, Role::Admin, "ops").unwrap();
        let (_, viewer_secret) = create(&path, Role::Viewer, "").unwrap();
        assert!(secret.expose().starts_with(PREFIX));
        assert_eq!(
            secret.expose().len(),
            PREFIX.len() + 43,
            "256 bits, base64url"
        );
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(secret.expose()) && !text.contains(&secret.expose()[7..]));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let mut store = TokenStore::open(&path).unwrap();
        assert_eq!(store.verify(secret.expose()).unwrap().role, Role::Admin);
        assert_eq!(
            store.verify(viewer_secret.expose()).unwrap().role,
            Role::Viewer
        );
        assert!(store.verify("iotsec_nope").is_none());
        assert!(store.verify("").is_none());

        assert!(revoke(&path, &admin.id).unwrap());
        assert!(!revoke(&path, &admin.id).unwrap());
        store.refresh().unwrap();
        assert!(store.verify(secret.expose()).is_none());
        assert!(!store.is_current(&admin.id));
        assert!(store.verify(viewer_secret.expose()).is_some());
        assert_eq!(list(&path).unwrap().len(), 1);
    }

    #[test]
    fn a_corrupt_file_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let (_, secret) = create(&path, Role::Admin, "a").unwrap();
        let mut store = TokenStore::open(&path).unwrap();
        std::fs::write(&path, b"{ not json").unwrap();
        assert!(store.refresh().is_err());
        assert!(store.verify(secret.expose()).is_none());
    }
}
