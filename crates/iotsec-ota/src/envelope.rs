//! The signed envelope shared by firmware manifests and key-set updates:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `IOTSSIG1` |
//! | 2 | body length n (u16, 1..=[`MAX_BODY_LEN`]) |
//! | n | body: a manifest (`IOTSMAN1...`) or a key set (`IOTSKEY1...`) |
//! | 1 | signature algorithm: 1 Ed25519, 2 ECDSA P-256/SHA-256 |
//! | 8 | key id of the signing key |
//! | 64 | signature over the body |
//!
//! The body starts with its own magic, so a signature over one kind of body can never be
//! accepted as the other kind.

use alloc::vec::Vec;

use crate::error::Error;
use crate::key::{SIGNATURE_BLOCK_LEN, Signature};
use crate::wire::Reader;

/// Magic at the start of every signed envelope (bundle, detached manifest, key-set update).
pub const ENVELOPE_MAGIC: [u8; 8] = *b"IOTSSIG1";
/// Largest body accepted.
pub const MAX_BODY_LEN: usize = 1024;
/// Fixed bytes before the body.
pub const PREAMBLE_LEN: usize = 10;
/// Largest envelope.
pub const MAX_ENVELOPE_LEN: usize = PREAMBLE_LEN + MAX_BODY_LEN + SIGNATURE_BLOCK_LEN;

/// A parsed (not yet verified) envelope.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) signature: Signature,
    /// Bytes the envelope occupies at the start of the input.
    pub(crate) len: usize,
}

/// How long the envelope at the start of `prefix` is, from its first 10 bytes.
pub(crate) fn envelope_len(prefix: &[u8], what: &'static str) -> Result<usize, Error> {
    let mut r = Reader::new(prefix, what);
    if r.array::<8>()? != ENVELOPE_MAGIC {
        return Err(Error::malformed(
            what,
            "not an iotsec signed file (bad magic)",
        ));
    }
    let body_len = usize::from(r.u16()?);
    if body_len == 0 || body_len > MAX_BODY_LEN {
        return Err(Error::malformed(what, "body length out of range"));
    }
    Ok(PREAMBLE_LEN + body_len + SIGNATURE_BLOCK_LEN)
}

/// Parses the envelope at the start of `bytes`; the rest is the caller's.
pub(crate) fn parse<'a>(bytes: &'a [u8], what: &'static str) -> Result<Envelope<'a>, Error> {
    let len = envelope_len(bytes, what)?;
    let mut r = Reader::new(bytes, what);
    r.take(PREAMBLE_LEN)?;
    let body = r.take(len - PREAMBLE_LEN - SIGNATURE_BLOCK_LEN)?;
    let signature = Signature::decode(&mut r, what)?;
    Ok(Envelope {
        body,
        signature,
        len,
    })
}

/// Encodes an envelope.
pub(crate) fn encode(body: &[u8], signature: &Signature) -> Result<Vec<u8>, Error> {
    let body_len = u16::try_from(body.len())
        .ok()
        .filter(|n| *n > 0 && usize::from(*n) <= MAX_BODY_LEN)
        .ok_or(Error::malformed("envelope", "body length out of range"))?;
    let mut out = Vec::with_capacity(PREAMBLE_LEN + body.len() + SIGNATURE_BLOCK_LEN);
    out.extend_from_slice(&ENVELOPE_MAGIC);
    out.extend_from_slice(&body_len.to_be_bytes());
    out.extend_from_slice(body);
    signature.encode(&mut out);
    Ok(out)
}
