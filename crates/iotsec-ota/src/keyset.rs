//! The device's trusted keys, and signed key-set updates that replace them.
//!
//! A key set lists up to [`MAX_KEYS`] public keys, each with roles: `firmware` (may sign
//! manifests) and `keyset` (may sign the next key set). A key-set update is a complete new set
//! with a higher version, in a signed envelope (see [`crate::envelope`]), signed by a key that
//! has the `keyset` role in the device's *current* set. Adding and revoking keys are both "sign
//! the new list"; replaying an old update fails the version check. Body encoding:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `IOTSKEY1` |
//! | 4 | key-set version (u32) |
//! | 1 | key count, 1..=16 |
//! | per key: 1 + 1 + 32/33 | algorithm, roles (bit 0 firmware, bit 1 keyset), raw key |
//!
//! Factory trust (keys baked in, or `--trust` files) is version 0 with every key in both roles.

use alloc::vec::Vec;
use core::fmt;

use crate::envelope;
use crate::error::Error;
use crate::key::{Algorithm, KeyId, PublicKey, SecretKey, Signature};
use crate::wire::Reader;

/// Magic at the start of a key-set body.
pub const KEYSET_MAGIC: [u8; 8] = *b"IOTSKEY1";
/// Most keys in a set.
pub const MAX_KEYS: usize = 16;

const WHAT: &str = "key set";

/// What a trusted key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Firmware manifests.
    Firmware,
    /// The next key set.
    KeySet,
}

impl Role {
    fn bit(self) -> u8 {
        match self {
            Self::Firmware => 1,
            Self::KeySet => 2,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Firmware => "signing firmware",
            Self::KeySet => "signing key sets",
        })
    }
}

/// A set of [`Role`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    /// Firmware only.
    pub const FIRMWARE: Self = Self(1);
    /// Key sets only.
    pub const KEYSET: Self = Self(2);
    /// Both.
    pub const ALL: Self = Self(3);

    /// Whether `role` is included.
    #[must_use]
    pub fn allows(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            1 => "firmware",
            2 => "keyset",
            _ => "firmware,keyset",
        })
    }
}

/// A key and what it may sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The key.
    pub key: PublicKey,
    /// Its roles.
    pub roles: Roles,
}

/// A versioned set of trusted keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    version: u32,
    keys: Vec<TrustedKey>,
}

impl KeySet {
    /// Builds and validates a key set: 1..=16 distinct keys, at least one for firmware and at
    /// least one for key sets (otherwise the set could never be rotated again).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the broken rule.
    pub fn new(version: u32, keys: Vec<TrustedKey>) -> Result<Self, Error> {
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(Error::Invalid {
                what: WHAT,
                reason: "needs 1 to 16 keys",
            });
        }
        for (i, a) in keys.iter().enumerate() {
            if keys[..i].iter().any(|b| b.key.id() == a.key.id()) {
                return Err(Error::Invalid {
                    what: WHAT,
                    reason: "a key is listed twice",
                });
            }
        }
        for role in [Role::Firmware, Role::KeySet] {
            if !keys.iter().any(|k| k.roles.allows(role)) {
                return Err(Error::Invalid {
                    what: WHAT,
                    reason: "needs a key for firmware and a key for key-set updates",
                });
            }
        }
        Ok(Self { version, keys })
    }

    /// Factory trust: version 0, every key in both roles.
    ///
    /// # Errors
    /// As [`KeySet::new`].
    pub fn factory(keys: impl IntoIterator<Item = PublicKey>) -> Result<Self, Error> {
        Self::new(
            0,
            keys.into_iter()
                .map(|key| TrustedKey {
                    key,
                    roles: Roles::ALL,
                })
                .collect(),
        )
    }

    /// The version (0 for factory trust).
    #[must_use]
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The keys.
    #[must_use]
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Finds the key by id.
    #[must_use]
    pub fn get(&self, id: KeyId) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.key.id() == id)
    }

    /// Checks that `signature` over `message` was made by a key trusted for `role`.
    ///
    /// # Errors
    /// [`Error::UnknownKey`], [`Error::WrongRole`] or [`Error::BadSignature`].
    pub fn verify(&self, message: &[u8], signature: &Signature, role: Role) -> Result<(), Error> {
        let trusted = self.get(signature.key_id).ok_or(Error::UnknownKey {
            key_id: signature.key_id,
        })?;
        if !trusted.roles.allows(role) {
            return Err(Error::WrongRole {
                key_id: signature.key_id,
                role,
            });
        }
        trusted.key.verify(message, signature)
    }

    /// The canonical body encoding (also the on-device storage format).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + self.keys.len() * 35);
        out.extend_from_slice(&KEYSET_MAGIC);
        out.extend_from_slice(&self.version.to_be_bytes());
        // `new` caps the count at 16.
        out.push(u8::try_from(self.keys.len()).unwrap_or(u8::MAX));
        for k in &self.keys {
            out.push(k.key.algorithm().code());
            out.push(k.roles.0);
            out.extend_from_slice(&k.key.to_bytes());
        }
        out
    }

    /// Parses a body encoding. Never panics.
    ///
    /// # Errors
    /// [`Error::Malformed`] / [`Error::Truncated`] / [`Error::Invalid`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, WHAT);
        if r.array::<8>()? != KEYSET_MAGIC {
            return Err(Error::malformed(WHAT, "not an iotsec key set (bad magic)"));
        }
        let version = r.u32()?;
        let count = usize::from(r.u8()?);
        if count == 0 || count > MAX_KEYS {
            return Err(Error::malformed(WHAT, "needs 1 to 16 keys"));
        }
        let mut keys = Vec::with_capacity(count);
        for _ in 0..count {
            let alg = Algorithm::from_code(r.u8()?, WHAT)?;
            let roles = match r.u8()? {
                bits @ 1..=3 => Roles(bits),
                _ => return Err(Error::malformed(WHAT, "unknown key roles")),
            };
            let key = PublicKey::from_bytes(alg, r.take(alg.public_key_len())?)?;
            keys.push(TrustedKey { key, roles });
        }
        r.finish()?;
        Self::new(version, keys).map_err(|_| Error::malformed(WHAT, "breaks the key-set rules"))
    }

    /// Signs this set as a key-set update.
    ///
    /// # Errors
    /// Only if the encoding exceeds the envelope limit (it cannot with 16 keys).
    pub fn sign_update(&self, signer: &SecretKey) -> Result<Vec<u8>, Error> {
        let body = self.encode();
        envelope::encode(&body, &signer.sign(&body))
    }

    /// Parses a key-set update without verifying it (for inspection).
    ///
    /// # Errors
    /// Malformed input.
    pub fn parse_update(bytes: &[u8]) -> Result<(Self, Signature), Error> {
        let env = envelope::parse(bytes, "key-set update")?;
        if env.len != bytes.len() {
            return Err(Error::malformed("key-set update", "trailing bytes"));
        }
        Ok((Self::decode(env.body)?, env.signature))
    }

    /// Verifies a key-set update against this (current) set and returns the new set: signed
    /// by a current key with the `keyset` role, version strictly higher.
    ///
    /// # Errors
    /// Malformed input, untrusted or bad signature, [`Error::KeySetNotNewer`] for a replay.
    pub fn apply_update(&self, bytes: &[u8]) -> Result<Self, Error> {
        let env = envelope::parse(bytes, "key-set update")?;
        if env.len != bytes.len() {
            return Err(Error::malformed("key-set update", "trailing bytes"));
        }
        // Authenticate before looking at the contents.
        self.verify(env.body, &env.signature, Role::KeySet)?;
        let next = Self::decode(env.body)?;
        if next.version <= self.version {
            return Err(Error::KeySetNotNewer {
                offered: next.version,
                current: self.version,
            });
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(Algorithm::Ed25519, &[n; 32]).unwrap()
    }

    #[test]
    fn rotation_revokes_and_replay_fails() {
        let (root, old, new) = (key(1), key(2), key(3));
        let factory = KeySet::factory([root.public_key(), old.public_key()]).unwrap();
        // v1: revoke `old`, add `new` for firmware only.
        let v1 = KeySet::new(
            1,
            alloc::vec![
                TrustedKey {
                    key: root.public_key(),
                    roles: Roles::KEYSET
                },
                TrustedKey {
                    key: new.public_key(),
                    roles: Roles::FIRMWARE
                },
            ],
        )
        .unwrap();
        let update = v1.sign_update(&root).unwrap();
        let device = factory.apply_update(&update).unwrap();
        assert_eq!(device, v1);
        let msg = b"m";
        assert!(matches!(
            device.verify(msg, &old.sign(msg), Role::Firmware),
            Err(Error::UnknownKey { .. })
        ));
        device.verify(msg, &new.sign(msg), Role::Firmware).unwrap();
        // A firmware-only key cannot rotate the set.
        let v2 = KeySet::factory([new.public_key()]).unwrap();
        let mut v2 = KeySet::new(2, v2.keys).unwrap();
        assert!(matches!(
            device.apply_update(&v2.sign_update(&new).unwrap()),
            Err(Error::WrongRole { .. })
        ));
        // The same update again is a replay.
        assert!(matches!(
            device.apply_update(&update),
            Err(Error::KeySetNotNewer {
                offered: 1,
                current: 1
            })
        ));
        // Signed by a revoked key.
        v2.version = 5;
        assert!(matches!(
            device.apply_update(&v2.sign_update(&old).unwrap()),
            Err(Error::UnknownKey { .. })
        ));
    }

    #[test]
    fn lockout_and_duplicates_refused() {
        let a = key(1);
        assert!(
            KeySet::new(
                1,
                alloc::vec![TrustedKey {
                    key: a.public_key(),
                    roles: Roles::FIRMWARE
                }]
            )
            .is_err()
        );
        assert!(KeySet::factory([a.public_key(), a.public_key()]).is_err());
    }
}
