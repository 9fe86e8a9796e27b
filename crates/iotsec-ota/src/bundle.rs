//! Signed manifests and firmware bundles.
//!
//! A *signed manifest* is an envelope ([`crate::envelope`]) whose body is a
//! [`Manifest`]. A *bundle* is a signed manifest immediately followed by exactly
//! `image_size` bytes of image. A *detached manifest* is the signed manifest alone, with the
//! image in a separate file. Because a manifest never describes an empty image, the two are
//! told apart by whether anything follows the envelope.

use alloc::vec::Vec;

use sha2::{Digest as _, Sha256};

use crate::envelope::{self, MAX_ENVELOPE_LEN, PREAMBLE_LEN};
use crate::error::Error;
use crate::image::ImageHasher;
use crate::key::{SecretKey, Signature};
use crate::keyset::{KeySet, Role};
use crate::manifest::Manifest;

const WHAT: &str = "signed manifest";

/// Longest signed manifest in bytes.
pub const MAX_SIGNED_MANIFEST_LEN: usize = MAX_ENVELOPE_LEN;

/// A manifest with its signature, as parsed from a bundle, detached file or slot header.
/// Parsing does not verify it: call [`SignedManifest::verify`] (the update engine always does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest {
    manifest: Manifest,
    signature: Signature,
    /// The whole envelope, as signed and stored.
    bytes: Vec<u8>,
}

impl SignedManifest {
    /// Signs `manifest` with `key`.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the manifest breaks a limit.
    pub fn sign(manifest: &Manifest, key: &SecretKey) -> Result<Self, Error> {
        let body = manifest.encode()?;
        let signature = key.sign(&body);
        let bytes = envelope::encode(&body, &signature)?;
        Ok(Self {
            manifest: manifest.clone(),
            signature,
            bytes,
        })
    }

    /// How many bytes the signed manifest at the start of a file occupies, from its first
    /// [`SignedManifest::PREAMBLE_LEN`] bytes (so a reader knows how much to read).
    ///
    /// # Errors
    /// Bad magic or length, or fewer than 10 bytes.
    pub fn len_from_preamble(prefix: &[u8]) -> Result<usize, Error> {
        envelope::envelope_len(prefix, WHAT)
    }

    /// Bytes needed by [`SignedManifest::len_from_preamble`].
    pub const PREAMBLE_LEN: usize = PREAMBLE_LEN;

    /// Parses the signed manifest at the start of `bytes`, returning it and its length.
    ///
    /// # Errors
    /// Malformed or truncated input.
    pub fn parse_prefix(bytes: &[u8]) -> Result<(Self, usize), Error> {
        let env = envelope::parse(bytes, WHAT)?;
        let manifest = Manifest::decode(env.body)?;
        let len = env.len;
        Ok((
            Self {
                manifest,
                signature: env.signature,
                bytes: bytes[..len].to_vec(),
            },
            len,
        ))
    }

    /// Parses exactly one signed manifest (a detached manifest file or a slot header).
    ///
    /// # Errors
    /// Malformed or truncated input, or trailing bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let (signed, len) = Self::parse_prefix(bytes)?;
        if len != bytes.len() {
            return Err(Error::malformed(WHAT, "trailing bytes"));
        }
        Ok(signed)
    }

    /// Checks the signature against the keys trusted for firmware.
    ///
    /// # Errors
    /// [`Error::UnknownKey`], [`Error::WrongRole`] or [`Error::BadSignature`].
    pub fn verify(&self, keys: &KeySet) -> Result<&Manifest, Error> {
        let body = &self.bytes[PREAMBLE_LEN..PREAMBLE_LEN + self.body_len()];
        keys.verify(body, &self.signature, Role::Firmware)?;
        Ok(&self.manifest)
    }

    fn body_len(&self) -> usize {
        self.bytes.len() - PREAMBLE_LEN - crate::key::SIGNATURE_BLOCK_LEN
    }

    /// The manifest. Not authenticated unless [`SignedManifest::verify`] succeeded.
    #[must_use]
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The signature block.
    #[must_use]
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The encoded signed manifest (a detached manifest file; the head of a bundle).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the encoded signed manifest: the boot record binds a slot to it.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.bytes).into()
    }

    /// Builds a bundle: this signed manifest followed by `image`.
    ///
    /// # Errors
    /// [`Error::ImageTooLong`] / [`Error::ImageTruncated`] / [`Error::HashMismatch`] if the
    /// image is not the one signed.
    pub fn bundle(&self, image: &[u8]) -> Result<Vec<u8>, Error> {
        let mut hasher = ImageHasher::new(&self.manifest);
        hasher.update(image)?;
        hasher.finish()?;
        let mut out = Vec::with_capacity(self.bytes.len() + image.len());
        out.extend_from_slice(&self.bytes);
        out.extend_from_slice(image);
        Ok(out)
    }
}

/// What follows the signed manifest in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents<'a> {
    /// A bundle: the image, exactly `image_size` bytes (not yet hashed).
    Image(&'a [u8]),
    /// A detached manifest: nothing follows.
    Detached,
}

/// Splits a bundle or detached manifest held in memory. The image length is checked against
/// the manifest; signature and hash are not (see [`verify_bundle`]). Never panics.
///
/// # Errors
/// Malformed input, [`Error::ImageTruncated`], [`Error::ImageTooLong`].
pub fn parse_bundle(bytes: &[u8]) -> Result<(SignedManifest, Contents<'_>), Error> {
    let (signed, len) = SignedManifest::parse_prefix(bytes)?;
    let rest = &bytes[len..];
    if rest.is_empty() {
        return Ok((signed, Contents::Detached));
    }
    let signed_size = signed.manifest.image_size;
    let actual = rest.len() as u64;
    if actual < signed_size {
        return Err(Error::ImageTruncated {
            signed: signed_size,
            actual,
        });
    }
    if actual > signed_size {
        return Err(Error::ImageTooLong {
            signed: signed_size,
        });
    }
    Ok((signed, Contents::Image(rest)))
}

/// Fully verifies an in-memory bundle (signature, then length and hash).
///
/// # Errors
/// Any rejection; a detached manifest is [`Error::ImageTruncated`] with 0 bytes.
pub fn verify_bundle(bytes: &[u8], keys: &KeySet) -> Result<SignedManifest, Error> {
    let (signed, contents) = parse_bundle(bytes)?;
    let manifest = signed.verify(keys)?;
    let image = match contents {
        Contents::Image(image) => image,
        Contents::Detached => &[],
    };
    let mut hasher = ImageHasher::new(manifest);
    hasher.update(image)?;
    hasher.finish()?;
    Ok(signed)
}
