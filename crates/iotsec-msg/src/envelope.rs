//! v1: the reference format, byte for byte.
//!
//! ```text
//! body = json.dumps(payload_dict, sort_keys=True).encode()
//! sig  = hmac.new(SECRET_KEY, body, hashlib.sha256).hexdigest()
//! payload_dict['sig'] = sig;  message = json.dumps(payload_dict)
//! verify: d = json.loads(msg); s = d.pop('sig');
//!         hmac.compare_digest(s, hmac(json.dumps(d, sort_keys=True))) -> d, else None
//! ```
//!
//! Verification checks, in order: size limit, JSON syntax and depth (`json.loads`), object,
//! `sig` present (the last `sig` wins, escaped spellings such as `"\u0073ig"` included), `sig`
//! a string of exactly 64 lowercase hex digits (anything else can never equal `hexdigest()`),
//! then the HMAC, compared in constant time.

use alloc::vec::Vec;

use crate::error::Error;
use crate::json::{Codec, Limits, MemberId, Message, Name, Scalar};

/// The signature member.
pub(crate) const SIG: Name = Name::new(b"sig");
use crate::key::MsgKey;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What `prepare` found out about a message whose syntax and `sig` are in order.
pub(crate) struct Prepared {
    /// The decoded `sig`.
    pub(crate) sig: [u8; 32],
    /// The `sig` member (to leave it out of the payload).
    pub(crate) sig_member: MemberId,
}

/// Object, `sig` present and well-formed; leaves the canonical bytes of the object without
/// `sig` in `canon`.
pub(crate) fn prepare(msg: &mut Message<'_, '_>, canon: &mut Vec<u8>) -> Result<Prepared, Error> {
    let (sig_member, value) = msg.find(SIG).ok_or(Error::MissingSig)?;
    let Scalar::Str(sig_text) = value else {
        return Err(Error::BadSigEncoding);
    };
    let sig = decode_sig(sig_text).ok_or(Error::BadSigEncoding)?;
    msg.write_canonical_without(sig_member, canon);
    Ok(Prepared { sig, sig_member })
}

/// 64 lowercase hex digits -> 32 bytes (what `hexdigest()` can produce, nothing else).
///
/// Eight digits at a time: each byte `c` gives the nibble `(c & 0xF) + 9 * bit 6 of c` (right
/// for `0-9` and `a-f`), and the digit is valid exactly when that nibble, written back as a
/// lowercase hex digit, is `c` again (anything else writes back as some valid digit, which
/// differs from it). No byte's sum reaches 0x100, so nothing carries between bytes.
fn decode_sig(text: &[u8]) -> Option<[u8; 32]> {
    const LOW: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    const ONE: u64 = 0x0101_0101_0101_0101;
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u64;
    for (o, chunk) in out.chunks_exact_mut(4).zip(text.chunks_exact(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        let nib = ((x & LOW) + 9 * ((x >> 6) & ONE)) & LOW;
        let letter = ((nib + 6 * ONE) >> 4) & ONE;
        bad |= (nib + 0x30 * ONE + 39 * letter) ^ x;
        // byte 2i of `pairs` is (digit 2i << 4) | digit 2i+1
        let pairs = ((nib << 4) | (nib >> 8)).to_le_bytes();
        o.copy_from_slice(&[pairs[0], pairs[2], pairs[4], pairs[6]]);
    }
    (bad == 0).then_some(out)
}

/// Lowercase hex of a tag, as `hexdigest()`.
pub(crate) fn push_hex(out: &mut Vec<u8>, tag: &[u8; 32]) {
    let mut hex = [0u8; 64];
    for (pair, b) in hex.chunks_exact_mut(2).zip(tag) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 15)];
    }
    out.extend_from_slice(&hex);
}

/// Signs `payload` (a JSON object without `sig`) and appends the signed message to `out`.
pub(crate) fn sign_into(
    codec: &mut Codec,
    key: &MsgKey,
    payload: &[u8],
    canon: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let mut msg = codec.parse_message(payload)?;
    if msg.find(SIG).is_some() {
        return Err(Error::SigPresent);
    }
    msg.write_canonical_without(MemberId::NONE, canon);
    let tag = key.tag(canon);
    let empty = msg.is_empty();
    let start = out.len();
    msg.write_python_without(MemberId::NONE, canon, out);
    // Replace the closing brace with `, "sig": "<hex>"}` (json.dumps of the dict with sig added
    // last).
    if out.len() > start {
        out.truncate(out.len() - 1);
    }
    out.extend_from_slice(if empty {
        b"\"sig\": \""
    } else {
        b", \"sig\": \""
    });
    push_hex(out, &tag);
    out.extend_from_slice(b"\"}");
    Ok(())
}

/// Signs v1 messages with one key. Reuse it for a stream of messages: its buffers are kept.
#[derive(Debug, Clone)]
pub struct Signer {
    pub(crate) key: MsgKey,
    pub(crate) codec: Codec,
    pub(crate) canon: Vec<u8>,
    pub(crate) scratch: Vec<u8>,
}

impl Signer {
    /// A signer with the default limits.
    pub fn new(key: MsgKey) -> Self {
        Self::with_limits(key, Limits::default())
    }

    /// A signer with explicit limits on the payloads it accepts.
    pub fn with_limits(key: MsgKey, limits: Limits) -> Self {
        Signer {
            key,
            codec: Codec::new(limits),
            canon: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Signs `payload` (a JSON object without `sig`, parsed as `json.loads` would) and appends
    /// the signed message to `out`.
    pub fn sign(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        sign_into(&mut self.codec, &self.key, payload, &mut self.canon, out)
    }
}

/// Verifies v1 messages with one key. Reuse it for a stream of messages: its buffers are kept.
#[derive(Debug, Clone)]
pub struct Verifier {
    key: MsgKey,
    codec: Codec,
    canon: Vec<u8>,
}

impl Verifier {
    /// A verifier with the default limits (64 KiB, depth 64).
    pub fn new(key: MsgKey) -> Self {
        Self::with_limits(key, Limits::default())
    }

    /// A verifier with explicit limits.
    pub fn with_limits(key: MsgKey, limits: Limits) -> Self {
        Verifier {
            key,
            codec: Codec::new(limits),
            canon: Vec::new(),
        }
    }

    /// Verifies `msg`; on success appends the payload without `sig` to `payload_out` (as the
    /// reference's `json.dumps(d)` would print it) and returns `Ok`. On rejection nothing is
    /// appended.
    pub fn verify(&mut self, msg: &[u8], payload_out: &mut Vec<u8>) -> Result<(), Error> {
        let mut parsed = self.codec.parse_message(msg)?;
        let prepared = prepare(&mut parsed, &mut self.canon)?;
        if !self.key.verify_tag(&self.canon, &prepared.sig) {
            return Err(Error::BadSignature);
        }
        parsed.write_python_without(prepared.sig_member, &self.canon, payload_out);
        Ok(())
    }

    /// Verifies `msg` without producing the payload (counting, benchmarks).
    pub fn check(&mut self, msg: &[u8]) -> Result<(), Error> {
        let mut parsed = self.codec.parse_message(msg)?;
        let prepared = prepare(&mut parsed, &mut self.canon)?;
        if self.key.verify_tag(&self.canon, &prepared.sig) {
            Ok(())
        } else {
            Err(Error::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"your-32-byte-secret-key-here!!!!";

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = MsgKey::new(KEY).unwrap();
        let mut signer = Signer::new(key.clone());
        let mut msg = Vec::new();
        signer.sign(br#"{"b": 1, "a": "x"}"#, &mut msg).unwrap();
        let mut v = Verifier::new(key);
        let mut out = Vec::new();
        v.verify(&msg, &mut out).unwrap();
        assert_eq!(out, br#"{"b": 1, "a": "x"}"#);
        let tampered = String::from_utf8(msg.clone())
            .unwrap()
            .replace("\"x\"", "\"y\"");
        assert_eq!(v.check(tampered.as_bytes()), Err(Error::BadSignature));
        let upper = String::from_utf8(msg).unwrap().to_uppercase();
        assert!(v.check(upper.as_bytes()).is_err());
    }

    #[test]
    fn sig_decoding_accepts_exactly_lowercase_hex() {
        let hex: String = (0..32u8)
            .map(|b| alloc::format!("{:02x}", b.wrapping_mul(37).wrapping_add(250)))
            .collect();
        let want: Vec<u8> = (0..32u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(250))
            .collect();
        assert_eq!(decode_sig(hex.as_bytes()).unwrap().to_vec(), want);
        let all: String = "0123456789abcdef".repeat(4);
        assert!(decode_sig(all.as_bytes()).is_some());
        for pos in [0, 1, 7, 8, 31, 62, 63] {
            for c in 0..=255u8 {
                let mut t = all.clone().into_bytes();
                t[pos] = c;
                let valid = c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
                assert_eq!(decode_sig(&t).is_some(), valid, "byte {c:#x} at {pos}");
            }
        }
        assert!(decode_sig(&all.as_bytes()[..62]).is_none());
    }

    #[test]
    fn sig_shapes() {
        let mut v = Verifier::new(MsgKey::new(KEY).unwrap());
        assert_eq!(v.check(b"[1]"), Err(Error::NotAnObject));
        assert_eq!(v.check(b"{\"a\": 1}"), Err(Error::MissingSig));
        assert_eq!(v.check(b"{\"sig\": 1}"), Err(Error::BadSigEncoding));
        assert_eq!(v.check(b"{\"sig\": \"\"}"), Err(Error::BadSigEncoding));
        let upper = alloc::format!("{{\"sig\": \"{}\"}}", "A".repeat(64));
        assert_eq!(v.check(upper.as_bytes()), Err(Error::BadSigEncoding));
        let lower = alloc::format!("{{\"sig\": \"{}\"}}", "a".repeat(64));
        assert_eq!(v.check(lower.as_bytes()), Err(Error::BadSignature));
    }

    use alloc::string::String;
}
