//! v2: the fixed envelope. Still plain JSON with the same `sig` rule (so the Python reference
//! verifies it given the device key), plus signed fields:
//! `v: 2`, `kid: "<device>:<key version>"`, `ts` (integer ms since the Unix epoch) and `seq`
//! (u64, strictly increasing per device).
//!
//! [`V2Verifier`] is a core without I/O: the caller passes the message, the sender identity its
//! transport authenticated (MQTT username or topic segment), its `now`, a [`KeyLookup`] and the
//! device's [`DeviceState`] (which the caller stores). Checks, in order:
//! 1. limits and JSON syntax (strict for v2: no duplicate keys, no NaN/Infinity, no lone
//!    surrogates), object, `sig` present and 64 lowercase hex digits;
//! 2. `kid` well formed and a key known for it, then the HMAC (constant time);
//! 3. the `kid`'s device equals the sender;
//! 4. `|ts - now|` within the allowed skew (default 5 minutes);
//! 5. `seq` against the device's 64-entry replay window ([`ReplayWindow`]).
//!
//! Only then does the state change (window slides; the device is marked v2-only).
//! A message is v2 when its `v` is the integer `2`; anything else is v1, accepted only from a
//! device whose state allows it ([`Downgrade::AllowV1UntilV2`]) and only until it sends v2.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::RangeInclusive;

use crate::envelope::{self, Signer};
use crate::error::{Error, Field};
use crate::json::{Codec, Limits, MemberId, Name, Scalar};

/// The envelope's members.
const V: Name = Name::new(b"v");
const KID: Name = Name::new(b"kid");
const TS: Name = Name::new(b"ts");
const SEQ: Name = Name::new(b"seq");
use crate::key::{KeyMaterial, Kid, MsgKey, derive_device_key};
use crate::replay::ReplayWindow;

/// The signed v2 fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Device and key version.
    pub kid: Kid,
    /// Milliseconds since the Unix epoch.
    pub ts: i64,
    /// Per-device sequence number.
    pub seq: u64,
}

/// Whether a device may still send v1 messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Downgrade {
    /// v1 is refused (the default for every device not marked legacy).
    #[default]
    Refuse,
    /// A legacy device: v1 is accepted until its first valid v2 message.
    AllowV1UntilV2,
}

/// What the server keeps per device between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceState {
    /// v1 acceptance.
    pub downgrade: Downgrade,
    /// The replay window.
    pub window: ReplayWindow,
}

impl DeviceState {
    /// A device that speaks v2 only.
    pub const fn v2_only() -> Self {
        DeviceState {
            downgrade: Downgrade::Refuse,
            window: ReplayWindow::new(),
        }
    }

    /// A legacy device: v1 is accepted until it sends v2.
    pub const fn legacy() -> Self {
        DeviceState {
            downgrade: Downgrade::AllowV1UntilV2,
            window: ReplayWindow::new(),
        }
    }
}

/// Where the verifier gets its keys.
pub trait KeyLookup {
    /// The key of `kid` (device and version), if the device and version are known.
    fn device_key(&mut self, kid: &Kid) -> Option<&MsgKey>;
    /// The fleet-wide v1 key, if v1 is accepted at all.
    fn legacy_key(&mut self) -> Option<&MsgKey>;
}

/// Derives device keys from a master key (HKDF, see [`crate::key`]) and caches them.
#[derive(Debug)]
pub struct Keyring {
    master: KeyMaterial,
    legacy: Option<MsgKey>,
    versions: RangeInclusive<u32>,
    cache: BTreeMap<Kid, MsgKey>,
}

/// Cached derived keys before the cache is emptied (kids come from unauthenticated input).
const KEYRING_CACHE: usize = 4096;

impl Keyring {
    /// A keyring over `master`; key versions in `versions` are accepted (raise the lower end
    /// to retire the keys of an old version).
    pub fn new(master: KeyMaterial, versions: RangeInclusive<u32>) -> Self {
        Keyring {
            master,
            legacy: None,
            versions,
            cache: BTreeMap::new(),
        }
    }

    /// Also accept v1 (from legacy devices) signed with this fleet key.
    pub fn with_legacy_key(mut self, key: MsgKey) -> Self {
        self.legacy = Some(key);
        self
    }
}

impl KeyLookup for Keyring {
    fn device_key(&mut self, kid: &Kid) -> Option<&MsgKey> {
        if !self.versions.contains(&kid.version) {
            return None;
        }
        if !self.cache.contains_key(kid) {
            if self.cache.len() >= KEYRING_CACHE {
                self.cache.clear();
            }
            let k = derive_device_key(&self.master, kid);
            let key = MsgKey::new(k.expose()).ok()?;
            self.cache.insert(kid.clone(), key);
        }
        self.cache.get(kid)
    }

    fn legacy_key(&mut self) -> Option<&MsgKey> {
        self.legacy.as_ref()
    }
}

/// Verification policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Largest accepted `|ts - now|` in milliseconds (default 5 minutes).
    pub max_skew_ms: u64,
    /// Size and depth limits.
    pub limits: Limits,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_skew_ms: 5 * 60 * 1000,
            limits: Limits::default(),
        }
    }
}

/// What an accepted message was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A v1 message from a legacy device.
    V1,
    /// A v2 message.
    V2(Envelope),
}

/// The v2 verifier core (no I/O). Reuse it: its buffers are kept between messages.
#[derive(Debug, Clone, Default)]
pub struct V2Verifier {
    policy: Policy,
    codec: Codec,
    canon: Vec<u8>,
}

impl V2Verifier {
    /// A verifier with this policy.
    pub fn new(policy: Policy) -> Self {
        V2Verifier {
            policy,
            codec: Codec::new(policy.limits),
            canon: Vec::new(),
        }
    }

    /// Verifies `msg` from `sender` at `now_ms`, updating `state` only when it is accepted.
    /// On success the payload without `sig` (as `json.dumps(d)`) is appended to `payload_out`.
    pub fn verify<K: KeyLookup + ?Sized>(
        &mut self,
        msg: &[u8],
        sender: &str,
        now_ms: i64,
        keys: &mut K,
        state: &mut DeviceState,
        payload_out: &mut Vec<u8>,
    ) -> Result<Accepted, Error> {
        let mut parsed = self.codec.parse_message(msg)?;
        let prepared = envelope::prepare(&mut parsed, &mut self.canon)?;
        let is_v2 = matches!(parsed.find(V), Some((_, Scalar::Int(b"2"))));
        if !is_v2 {
            if state.downgrade == Downgrade::Refuse {
                return Err(Error::Downgrade);
            }
            let key = keys.legacy_key().ok_or(Error::UnknownKey)?;
            if !key.verify_tag(&self.canon, &prepared.sig) {
                return Err(Error::BadSignature);
            }
            parsed.write_python_without(prepared.sig_member, &self.canon, payload_out);
            return Ok(Accepted::V1);
        }
        parsed.check_strict()?;
        let kid = match parsed.find(KID) {
            Some((_, Scalar::Str(s))) => Kid::parse(s),
            _ => None,
        }
        .ok_or(Error::BadEnvelope { field: Field::Kid })?;
        let key = keys.device_key(&kid).ok_or(Error::UnknownKey)?;
        if !key.verify_tag(&self.canon, &prepared.sig) {
            return Err(Error::BadSignature);
        }
        if kid.device.as_str() != sender {
            return Err(Error::WrongSender);
        }
        let int_field = |name: Name| match parsed.find(name) {
            Some((_, Scalar::Int(t))) => Some(t),
            _ => None,
        };
        // `ts`: a non-negative i64 (`-0` is 0, as Python's int reads it); `seq`: a u64.
        let ts = int_field(TS)
            .and_then(|t| match t.strip_prefix(b"-") {
                Some(digits) => (decimal(digits) == Some(0)).then_some(0),
                None => decimal(t).and_then(|v| i64::try_from(v).ok()),
            })
            .ok_or(Error::BadEnvelope { field: Field::Ts })?;
        let seq = int_field(SEQ)
            .and_then(decimal)
            .ok_or(Error::BadEnvelope { field: Field::Seq })?;
        let skew = i128::from(ts) - i128::from(now_ms);
        if skew.unsigned_abs() > u128::from(self.policy.max_skew_ms) {
            let skew_ms = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
            return Err(Error::ClockSkew { skew_ms });
        }
        state.window.check(seq)?;
        state.window.accept(seq);
        state.downgrade = Downgrade::Refuse;
        parsed.write_python_without(prepared.sig_member, &self.canon, payload_out);
        Ok(Accepted::V2(Envelope { kid, ts, seq }))
    }
}

impl Signer {
    /// Signs `payload` (an object without `sig`, `v`, `kid`, `ts`, `seq`) as v2: the envelope
    /// fields are appended in that order, then `sig`, as the reference would with
    /// `payload_dict.update(v=2, kid=..., ts=..., seq=...)`. `self`'s key must be the device key
    /// of `env.kid`.
    pub fn sign_v2(
        &mut self,
        payload: &[u8],
        env: &Envelope,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let mut body = core::mem::take(&mut self.scratch);
        body.clear();
        let result = self.v2_body(payload, env, &mut body).and_then(|()| {
            envelope::sign_into(&mut self.codec, &self.key, &body, &mut self.canon, out)
        });
        self.scratch = body;
        result
    }

    fn v2_body(&mut self, payload: &[u8], env: &Envelope, body: &mut Vec<u8>) -> Result<(), Error> {
        let mut msg = self.codec.parse_message(payload)?;
        if msg.find(envelope::SIG).is_some() {
            return Err(Error::SigPresent);
        }
        for (name, field) in [
            (V, Field::V),
            (KID, Field::Kid),
            (TS, Field::Ts),
            (SEQ, Field::Seq),
        ] {
            if msg.find(name).is_some() {
                return Err(Error::EnvelopeFieldPresent { field });
            }
        }
        let empty = msg.is_empty();
        msg.write_python_without(MemberId::NONE, &[], body);
        // The verifier parses v2 strictly; refuse to sign what it would refuse.
        msg.check_strict()?;
        body.pop(); // the closing brace
        if !empty {
            body.extend_from_slice(b", ");
        }
        // `"v": 2, "kid": "<device>:<version>", "ts": <ts>, "seq": <seq>}` (a device id needs no
        // escaping: its alphabet is printable ASCII without `"` or `\`).
        body.extend_from_slice(b"\"v\": 2, \"kid\": \"");
        body.extend_from_slice(env.kid.device.as_str().as_bytes());
        body.push(b':');
        push_decimal(body, false, u64::from(env.kid.version));
        body.extend_from_slice(b"\", \"ts\": ");
        push_decimal(body, env.ts < 0, env.ts.unsigned_abs());
        body.extend_from_slice(b", \"seq\": ");
        push_decimal(body, false, env.seq);
        body.push(b'}');
        Ok(())
    }
}

/// The value of a string of ASCII digits, if it is one and fits a u64.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |v, &c| {
        if c.is_ascii_digit() {
            v.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        } else {
            None
        }
    })
}

/// Appends `-`(if `neg`) and the decimal digits of `v`.
fn push_decimal(out: &mut Vec<u8>, neg: bool, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut t = tmp.len();
    loop {
        t -= 1;
        tmp[t] = b'0' + (v % 10) as u8; // a digit: v % 10 < 10
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        out.push(b'-');
    }
    out.extend_from_slice(&tmp[t..]);
}
