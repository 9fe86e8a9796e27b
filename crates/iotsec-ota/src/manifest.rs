//! The firmware manifest: what a signature vouches for.
//!
//! Binary, big-endian, one encoding per manifest (the parser refuses anything the encoder
//! would not produce, so `encode(decode(b)) == b`):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `IOTSMAN1` (also separates manifest signatures from key-set signatures) |
//! | 1 + n | version, SemVer text, n in 1..=64 |
//! | 1 + n | hardware id, n in 1..=64, `[A-Za-z0-9._:/-]` |
//! | 4 | security counter (u32) |
//! | 8 | image size in bytes (u64), 1..=[`MAX_IMAGE_SIZE`] |
//! | 32 | SHA-256 of the image |
//! | 8 | creation time, Unix seconds |
//! | 1 (+ 8) | 0 = no expiry, 1 = expiry follows (Unix seconds, after creation) |

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::error::Error;
use crate::version::{MAX_VERSION_LEN, Version};
use crate::wire::Reader;

/// Magic at the start of every manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"IOTSMAN1";
/// Largest image a manifest may describe (1 TiB): bounds arithmetic, not a slot size.
pub const MAX_IMAGE_SIZE: u64 = 1 << 40;
/// Longest hardware id.
pub const MAX_HARDWARE_ID_LEN: usize = 64;

const WHAT: &str = "manifest";

/// A device model identifier, e.g. `acme-gw-rev3`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HardwareId(String);

impl HardwareId {
    /// Validates a hardware id: 1..=64 bytes of `[A-Za-z0-9._:/-]`.
    ///
    /// # Errors
    /// [`Error::Malformed`] otherwise.
    pub fn new(text: &str) -> Result<Self, Error> {
        let ok = !text.is_empty()
            && text.len() <= MAX_HARDWARE_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/-".contains(&b));
        if ok {
            Ok(Self(String::from(text)))
        } else {
            Err(Error::malformed(
                "hardware id",
                "must be 1 to 64 characters of [A-Za-z0-9._:/-]",
            ))
        }
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HardwareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A firmware manifest (unsigned; see [`crate::bundle::SignedManifest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Release version; must increase with every install.
    pub version: Version,
    /// Anti-rollback counter; the device refuses anything below its own counter, which rises
    /// to this value when the release is confirmed.
    pub security_counter: u32,
    /// The device model this image is for.
    pub hardware_id: HardwareId,
    /// Exact image length in bytes.
    pub image_size: u64,
    /// SHA-256 of the image.
    pub image_sha256: [u8; 32],
    /// Creation time, Unix seconds.
    pub created_s: u64,
    /// Optional expiry, Unix seconds: devices refuse the manifest from then on.
    pub expires_s: Option<u64>,
}

impl Manifest {
    /// Checks the value limits that the decoder enforces, so that nothing unparseable is
    /// ever signed.
    ///
    /// # Errors
    /// [`Error::Malformed`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        if self.image_size == 0 || self.image_size > MAX_IMAGE_SIZE {
            return Err(Error::malformed(WHAT, "image size must be 1 byte to 1 TiB"));
        }
        if self.expires_s.is_some_and(|e| e <= self.created_s) {
            return Err(Error::malformed(WHAT, "expiry must be after creation"));
        }
        Ok(())
    }

    /// The canonical encoding (the bytes that get signed).
    ///
    /// # Errors
    /// [`Error::Malformed`] if [`Manifest::validate`] fails.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        self.validate()?;
        let version = alloc::string::ToString::to_string(&self.version);
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(&MANIFEST_MAGIC);
        push_short(&mut out, version.as_bytes());
        push_short(&mut out, self.hardware_id.as_str().as_bytes());
        out.extend_from_slice(&self.security_counter.to_be_bytes());
        out.extend_from_slice(&self.image_size.to_be_bytes());
        out.extend_from_slice(&self.image_sha256);
        out.extend_from_slice(&self.created_s.to_be_bytes());
        match self.expires_s {
            None => out.push(0),
            Some(expires) => {
                out.push(1);
                out.extend_from_slice(&expires.to_be_bytes());
            }
        }
        Ok(out)
    }

    /// Parses a canonical encoding. Never panics.
    ///
    /// # Errors
    /// [`Error::Malformed`] / [`Error::Truncated`].
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, WHAT);
        if r.array::<8>()? != MANIFEST_MAGIC {
            return Err(Error::malformed(
                WHAT,
                "not an iotsec firmware manifest (bad magic)",
            ));
        }
        let version = r.short_bytes(1, MAX_VERSION_LEN, "version must be 1 to 64 bytes")?;
        let version = core::str::from_utf8(version)
            .map_err(|_| Error::malformed(WHAT, "version is not text"))?;
        let version = Version::parse(version)?;
        let hw = r.short_bytes(1, MAX_HARDWARE_ID_LEN, "hardware id must be 1 to 64 bytes")?;
        let hw = core::str::from_utf8(hw)
            .map_err(|_| Error::malformed(WHAT, "hardware id is not text"))?;
        let hardware_id = HardwareId::new(hw)?;
        let security_counter = r.u32()?;
        let image_size = r.u64()?;
        let image_sha256 = r.array()?;
        let created_s = r.u64()?;
        let expires_s = match r.u8()? {
            0 => None,
            1 => Some(r.u64()?),
            _ => return Err(Error::malformed(WHAT, "expiry flag must be 0 or 1")),
        };
        r.finish()?;
        let manifest = Self {
            version,
            security_counter,
            hardware_id,
            image_size,
            image_sha256,
            created_s,
            expires_s,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    // Callers pass validated fields of at most 64 bytes.
    out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(bytes);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            version: Version::parse("1.2.3-rc.1").unwrap(),
            security_counter: 7,
            hardware_id: HardwareId::new("acme-gw/rev3").unwrap(),
            image_size: 4096,
            image_sha256: [0xab; 32],
            created_s: 1_700_000_000,
            expires_s: Some(1_800_000_000),
        }
    }

    #[test]
    fn round_trip_and_every_prefix_is_truncated() {
        let m = sample();
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        for len in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..len]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Manifest::decode(&long).is_err());
    }

    #[test]
    fn refuses_out_of_range_values() {
        let mut m = sample();
        m.image_size = 0;
        assert!(m.encode().is_err());
        m.image_size = MAX_IMAGE_SIZE + 1;
        assert!(m.encode().is_err());
        let mut m = sample();
        m.expires_s = Some(m.created_s);
        assert!(m.encode().is_err());
        assert!(HardwareId::new("bad id").is_err());
        assert!(HardwareId::new("").is_err());
    }
}
