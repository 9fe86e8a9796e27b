//! Readings: a line from a source checked and made ready for the queue, the v2 signing of
//! readings and status messages at send time, and the simulated sensor.
//!
//! A reading is a JSON object. It gets a reading time `t` (ms since the Unix epoch) when the
//! source did not give one, because the v2 `ts` is the *send* time: a reading that waited
//! in the queue through an outage is signed with the time it was sent, and `t` keeps when it
//! was measured. A line that v2 could never sign (not an object, not strict JSON, carrying
//! `sig`/`v`/`kid`/`ts`/`seq` itself, too large) is refused before it is queued: a reading
//! that cannot be sent would block the queue forever.

use iotsec_msg::v2::Envelope;
use iotsec_msg::{Kid, MsgKey, Signer};

use crate::error::{Error, Result};
use crate::frame::MAX_READING;

/// Signs readings and status messages as v2 for one device key.
#[derive(Debug)]
pub struct Sealer {
    kid: Kid,
    signer: Signer,
}

impl Sealer {
    /// A sealer for `kid` with that kid's device key.
    pub fn new(kid: Kid, key: MsgKey) -> Self {
        Sealer {
            kid,
            signer: Signer::new(key),
        }
    }

    /// The key id written into every message.
    pub fn kid(&self) -> &Kid {
        &self.kid
    }

    /// Signs `payload` (a JSON object) with `seq` and `ts_ms`, into `out` (cleared first).
    ///
    /// # Errors
    /// [`Error::Sign`] when the payload is not signable (never for a prepared reading).
    pub fn seal(&mut self, payload: &[u8], seq: u64, ts_ms: i64, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        let env = Envelope {
            kid: self.kid.clone(),
            ts: ts_ms,
            seq,
        };
        self.signer.sign_v2(payload, &env, out).map_err(Error::Sign)
    }

    /// Checks one line from a source and returns the reading to queue: the line itself, with
    /// `"t": now_ms` added when it has no `t`.
    ///
    /// # Errors
    /// [`Error::InvalidReading`], saying why; the line must be skipped.
    pub fn prepare(&mut self, line: &[u8], now_ms: i64) -> Result<Vec<u8>> {
        let line = line.trim_ascii();
        let invalid = |reason: String| Error::InvalidReading {
            len: line.len(),
            reason,
        };
        if line.len() > MAX_READING - 32 {
            return Err(invalid(format!("longer than {} bytes", MAX_READING - 32)));
        }
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(line).map_err(|e| invalid(format!("not a JSON object: {e}")))?;
        let reading = if object.contains_key("t") {
            line.to_vec()
        } else {
            // `line` parsed as an object, so it starts with `{`.
            let rest = line.get(1..).unwrap_or_default();
            let sep = if object.is_empty() { "" } else { ", " };
            let mut r = format!("{{\"t\": {now_ms}{sep}").into_bytes();
            r.extend_from_slice(rest);
            r
        };
        let mut scratch = Vec::new();
        self.seal(&reading, 0, now_ms, &mut scratch)
            .map_err(|e| match e {
                Error::Sign(msg) => invalid(msg.to_string()),
                other => other,
            })?;
        Ok(reading)
    }
}

/// The body of a status message: `{"firmware": "<version>", "state": "<state>"}`.
pub fn status(firmware: &str, state: &str) -> Vec<u8> {
    serde_json::json!({ "firmware": firmware, "state": state })
        .to_string()
        .into_bytes()
}

/// The unsigned last-will payload, published by the broker when the connection dies without
/// a DISCONNECT. It cannot be signed at that time, so it is only as trustworthy as the broker
/// ACL that lets only this device set a will on its own status topic.
pub const OFFLINE_WILL: &[u8] = br#"{"state":"offline"}"#;

/// A plausible temperature / humidity sensor: a daily cycle, a slow random drift and
/// measurement noise. Deterministic for a seed.
#[derive(Debug, Clone)]
pub struct Sensor {
    rng: SplitMix64,
    drift: f64,
    humidity_drift: f64,
}

impl Sensor {
    /// A sensor whose randomness starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Sensor {
            rng: SplitMix64(seed),
            drift: 0.0,
            humidity_drift: 0.0,
        }
    }

    /// The reading at `t_ms` (ms since the Unix epoch):
    /// `{"t": .., "temperature": .., "humidity": ..}` (°C and %RH, two decimals).
    pub fn reading(&mut self, t_ms: i64) -> Vec<u8> {
        const DAY_MS: f64 = 86_400_000.0;
        let phase = (t_ms.rem_euclid(86_400_000) as f64) / DAY_MS * std::f64::consts::TAU;
        // Random walks pulled back towards zero, so the values stay plausible for years.
        self.drift = (self.drift * 0.999 + self.noise(0.02)).clamp(-3.0, 3.0);
        self.humidity_drift = (self.humidity_drift * 0.999 + self.noise(0.1)).clamp(-10.0, 10.0);
        let temperature = 21.0 - 2.5 * phase.cos() + self.drift + self.noise(0.05);
        let humidity = (48.0 - 1.2 * (temperature - 21.0) + self.humidity_drift + self.noise(0.3))
            .clamp(0.0, 100.0);
        format!("{{\"t\": {t_ms}, \"temperature\": {temperature:.2}, \"humidity\": {humidity:.2}}}")
            .into_bytes()
    }

    /// Roughly normal noise with standard deviation `sd` (sum of uniforms).
    fn noise(&mut self, sd: f64) -> f64 {
        let sum: f64 = (0..4).map(|_| self.rng.unit()).sum();
        // The sum of 4 U(0,1) has mean 2 and variance 1/3.
        (sum - 2.0) * sd * 3f64.sqrt()
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, good-enough generator for simulated noise.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use iotsec_msg::DeviceId;

    fn sealer() -> Sealer {
        let kid = Kid::new(DeviceId::new("dev-1").unwrap(), 1);
        Sealer::new(kid, MsgKey::new(&[7u8; 32]).unwrap())
    }

    #[test]
    fn prepare_adds_t_and_keeps_given_t() {
        let mut s = sealer();
        assert_eq!(
            s.prepare(b" {\"a\": 1}\n", 5).unwrap(),
            b"{\"t\": 5, \"a\": 1}"
        );
        assert_eq!(s.prepare(b"{}", 5).unwrap(), b"{\"t\": 5}");
        assert_eq!(
            s.prepare(b"{\"t\": 1, \"a\": 2}", 5).unwrap(),
            b"{\"t\": 1, \"a\": 2}"
        );
    }

    #[test]
    fn prepare_refuses_what_v2_cannot_sign() {
        let mut s = sealer();
        for bad in [
            &b"[1, 2]"[..],
            b"not json",
            b"{\"seq\": 3}",
            b"{\"sig\": \"00\"}",
            b"{\"a\": 1, \"a\": 2}",
            b"{\"a\": NaN}",
            b"",
        ] {
            assert!(
                matches!(s.prepare(bad, 1), Err(Error::InvalidReading { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_READING));
        assert!(s.prepare(big.as_bytes(), 1).is_err());
    }

    #[test]
    fn seal_produces_a_v2_message() {
        let mut s = sealer();
        let mut out = Vec::new();
        s.seal(&status("1.2.3", "online"), 42, 1_700_000_000_000, &mut out)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["seq"], 42);
        assert_eq!(v["kid"], "dev-1:1");
        assert_eq!(v["firmware"], "1.2.3");
        assert_eq!(v["v"], 2);
    }

    #[test]
    fn simulated_readings_are_plausible_and_signable() {
        let mut sensor = Sensor::new(1);
        let mut s = sealer();
        for i in 0..2000 {
            let t = 1_700_000_000_000 + i * 60_000;
            let r = sensor.reading(t);
            let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
            let temp = v["temperature"].as_f64().unwrap();
            let hum = v["humidity"].as_f64().unwrap();
            assert!((10.0..32.0).contains(&temp), "{temp}");
            assert!((0.0..=100.0).contains(&hum), "{hum}");
            assert_eq!(v["t"], t);
            assert_eq!(s.prepare(&r, 0).unwrap(), r);
        }
    }
}
