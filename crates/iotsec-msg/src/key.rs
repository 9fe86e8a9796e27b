//! Keys: HMAC keys with a precomputed state, key material that never shows in `Debug`, device
//! ids and key ids, and per-device key derivation with HKDF-SHA256 (RFC 5869).
//!
//! v2 key derivation: `K_dev = HKDF-SHA256(IKM = master, salt = "iotsec-msg/v2/device-key",
//! info = kid)` with `L = 32`, where `kid = "<device id>:<key version>"` (decimal version). The
//! device id's alphabet (`[A-Za-z0-9._-]`) has no `:`, so `info` is unambiguous.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::Error;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The HKDF salt of v2 device keys (a fixed domain separator).
pub const DEVICE_KEY_SALT: &[u8] = b"iotsec-msg/v2/device-key";

/// Length of a derived device key and of a key made by `keygen`.
pub const KEY_LEN: usize = 32;

/// Secret bytes (a key file's contents, a master key, a derived key). Zeroed on drop; `Debug`
/// prints `<redacted>`.
#[derive(Clone)]
pub struct KeyMaterial(Zeroizing<Vec<u8>>);

impl KeyMaterial {
    /// Wraps the bytes (a key is exactly its bytes: no trimming, no decoding).
    pub fn new(bytes: Vec<u8>) -> Result<Self, Error> {
        if bytes.is_empty() {
            return Err(Error::InvalidKey);
        }
        Ok(KeyMaterial(Zeroizing::new(bytes)))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

/// An HMAC-SHA256 key, kept as the keyed state (inner and outer pads already hashed), so each
/// message costs a clone instead of two extra compressions. `Debug` prints `<redacted>`.
#[derive(Clone)]
pub struct MsgKey {
    mac: HmacSha256,
}

impl MsgKey {
    /// A key from its bytes (any non-empty length, as HMAC allows).
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.is_empty() {
            return Err(Error::InvalidKey);
        }
        let mac = HmacSha256::new_from_slice(bytes).map_err(|_| Error::InvalidKey)?;
        Ok(MsgKey { mac })
    }

    /// A fresh keyed HMAC state.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    /// HMAC-SHA256 of `data`.
    pub fn tag(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.mac();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `tag` against HMAC-SHA256 of `data`.
    pub fn verify_tag(&self, data: &[u8], tag: &[u8; 32]) -> bool {
        ct_eq_32(&self.tag(data), tag)
    }
}

/// Constant-time equality of two 32-byte tags: the differences of all four words are folded
/// together before the one comparison, which `subtle` keeps free of data-dependent branches
/// (`subtle`'s slice comparison does the same byte by byte, at eight times the cost).
fn ct_eq_32(a: &[u8; 32], b: &[u8; 32]) -> bool {
    use subtle::ConstantTimeEq as _;
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let mut wx = [0u8; 8];
        let mut wy = [0u8; 8];
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        diff |= u64::from_ne_bytes(wx) ^ u64::from_ne_bytes(wy);
    }
    bool::from(diff.ct_eq(&0))
}

impl fmt::Debug for MsgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MsgKey(<redacted>)")
    }
}

/// A device id: 1 to 128 characters from `[A-Za-z0-9._-]` (fits an MQTT username and a topic
/// segment, and never contains the `:` that separates it from the key version in a `kid`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(String);

impl DeviceId {
    /// Validates a device id.
    pub fn new(id: &str) -> Result<Self, Error> {
        if Self::valid(id.as_bytes()) {
            Ok(DeviceId(String::from(id)))
        } else {
            Err(Error::InvalidDeviceId)
        }
    }

    fn valid(id: &[u8]) -> bool {
        !id.is_empty()
            && id.len() <= 128
            && id
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A v2 key id: `"<device id>:<key version>"`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Kid {
    /// The device.
    pub device: DeviceId,
    /// The key version (rotation counter).
    pub version: u32,
}

impl Kid {
    /// A key id.
    pub fn new(device: DeviceId, version: u32) -> Self {
        Kid { device, version }
    }

    /// Parses `"<device>:<version>"` (version in canonical decimal: no sign, no leading zeros).
    pub fn parse(s: &[u8]) -> Option<Kid> {
        let colon = s.iter().rposition(|&c| c == b':')?;
        let (dev, ver) = (&s[..colon], &s[colon + 1..]);
        if !DeviceId::valid(dev)
            || ver.is_empty()
            || (ver.len() > 1 && ver[0] == b'0')
            || !ver.iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        let version = ver.iter().try_fold(0u32, |v, &c| {
            v.checked_mul(10)?.checked_add(u32::from(c - b'0')) // digits: checked above
        })?;
        let device = DeviceId(String::from(core::str::from_utf8(dev).ok()?));
        Some(Kid { device, version })
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.device, self.version)
    }
}

/// HKDF-SHA256 (RFC 5869): extract with `salt` (empty = no salt), expand with `info` into
/// `okm`. Fails with [`Error::InvalidKey`] when `okm` is longer than 255 * 32 bytes.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], okm: &mut [u8]) -> Result<(), Error> {
    let salt = if salt.is_empty() { None } else { Some(salt) };
    hkdf::Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, okm)
        .map_err(|_| Error::InvalidKey)
}

/// `K_dev = HKDF-SHA256(master, DEVICE_KEY_SALT, info = kid)`, 32 bytes.
pub fn derive_device_key(master: &KeyMaterial, kid: &Kid) -> KeyMaterial {
    let info = alloc::format!("{kid}");
    let mut okm = Zeroizing::new(alloc::vec![0u8; KEY_LEN]);
    // 32 bytes is far below HKDF-SHA256's 255 * 32 output limit, so this cannot fail.
    let _ = hkdf_sha256(master.expose(), DEVICE_KEY_SALT, info.as_bytes(), &mut okm);
    KeyMaterial(okm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_compare_in_full() {
        let a = [7u8; 32];
        assert!(ct_eq_32(&a, &a));
        for i in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!ct_eq_32(&a, &b), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn debug_is_redacted() {
        let k = MsgKey::new(b"secret-key").unwrap();
        let m = KeyMaterial::new(b"secret-key".to_vec()).unwrap();
        assert_eq!(
            alloc::format!("{k:?} {m:?}"),
            "MsgKey(<redacted>) KeyMaterial(<redacted>)"
        );
    }

    #[test]
    fn kid_round_trip_and_rejects() {
        let kid = Kid::parse(b"dev-1.a_b:7").unwrap();
        assert_eq!(kid.device.as_str(), "dev-1.a_b");
        assert_eq!(kid.version, 7);
        assert_eq!(alloc::format!("{kid}"), "dev-1.a_b:7");
        for bad in [
            &b"dev"[..],
            b":1",
            b"dev:",
            b"dev:01",
            b"dev:+1",
            b"d v:1",
            b"dev:99999999999",
        ] {
            assert!(Kid::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn empty_keys_are_refused() {
        assert_eq!(MsgKey::new(b"").unwrap_err(), Error::InvalidKey);
        assert_eq!(KeyMaterial::new(Vec::new()).unwrap_err(), Error::InvalidKey);
    }
}
