//! Streaming image check: length capped by the signed size, SHA-256 compared at the end.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::Error;
use crate::manifest::Manifest;

/// Hashes an image as it streams in. Refuses a chunk that would exceed the signed size
/// *before* hashing or storing it, so endless data never reaches the slot.
#[derive(Clone)]
pub struct ImageHasher {
    signed_size: u64,
    expected: [u8; 32],
    received: u64,
    sha: Sha256,
}

impl ImageHasher {
    /// Starts a check against `manifest`.
    #[must_use]
    pub fn new(manifest: &Manifest) -> Self {
        Self {
            signed_size: manifest.image_size,
            expected: manifest.image_sha256,
            received: 0,
            sha: Sha256::new(),
        }
    }

    /// Whether `len` more bytes fit in the signed size.
    ///
    /// # Errors
    /// [`Error::ImageTooLong`].
    pub fn admit(&self, len: usize) -> Result<(), Error> {
        let after = self.received.checked_add(len as u64);
        if after.is_none_or(|after| after > self.signed_size) {
            return Err(Error::ImageTooLong {
                signed: self.signed_size,
            });
        }
        Ok(())
    }

    /// Adds a chunk.
    ///
    /// # Errors
    /// [`Error::ImageTooLong`] (the chunk is not hashed).
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.admit(chunk.len())?;
        self.sha.update(chunk);
        self.received += chunk.len() as u64;
        Ok(())
    }

    /// Bytes received so far (the offset a resumed download continues from).
    #[must_use]
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Ends the check.
    ///
    /// # Errors
    /// [`Error::ImageTruncated`] or [`Error::HashMismatch`].
    pub fn finish(self) -> Result<(), Error> {
        if self.received != self.signed_size {
            return Err(Error::ImageTruncated {
                signed: self.signed_size,
                actual: self.received,
            });
        }
        let digest: [u8; 32] = self.sha.finalize().into();
        if bool::from(digest.ct_eq(&self.expected)) {
            Ok(())
        } else {
            Err(Error::HashMismatch)
        }
    }
}

impl core::fmt::Debug for ImageHasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ImageHasher")
            .field("signed_size", &self.signed_size)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}
