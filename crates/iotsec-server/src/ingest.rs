//! The ingest core, without I/O: one MQTT message in, one [`Verdict`] out.
//!
//! It binds the message to the device the transport authenticated (the topic segment of
//! `devices/<id>/telemetry`, which the broker's ACL only lets `<id>` publish to), checks the
//! registry (unknown and revoked devices are rejected), and runs the v2 verifier of
//! `iotsec-msg` (v1 for devices registered as legacy) with the device's replay state.
//! The shell stores the verdicts and acknowledges the MQTT messages after the commit.

use std::collections::HashMap;

use iotsec_msg::v2::{Accepted, DeviceState, KeyLookup, Policy, V2Verifier};
use sha2::{Digest, Sha256};

use crate::store::{Reading, Rejection};

/// Largest message the ingest looks at (bytes); the verifier enforces it too.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Registry status of a device as the ingest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// Registered and not revoked.
    Active,
    /// Revoked: its messages are rejected even if the broker still lets it in.
    Revoked,
}

#[derive(Debug)]
struct Device {
    registration: Registration,
    /// Replay state of telemetry.
    state: DeviceState,
    /// Replay state of status messages: they draw seqs from the same device counter but are
    /// not queued with the readings, so they may overtake a backlog; a shared window would then
    /// refuse the older readings as stale.
    status: DeviceState,
    /// Replay state of OTA reports (same reason: their own channel, their own window).
    ota: DeviceState,
}

/// The broker publishes this exact payload as a device's last will (MQTT, unsigned): accepted
/// only because the ACL lets no one but the device's own connection set it.
pub const LAST_WILL: &[u8] = br#"{"state":"offline"}"#;

/// What a status message said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// A verified (signed) status payload.
    Signed {
        /// Device.
        device: String,
        /// The payload without `sig`.
        payload: String,
    },
    /// The broker's last will for the device: it went offline without saying goodbye.
    Offline {
        /// Device.
        device: String,
    },
}

/// A verified OTA report (`devices/<id>/ota`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtaReport {
    /// Device.
    pub device: String,
    /// The payload without `sig`.
    pub payload: String,
    /// Its sequence number (the server acknowledges it once the report is stored).
    pub seq: u64,
}

/// The signed side channels of a device besides telemetry, each with its own replay window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Status,
    Ota,
}

impl Channel {
    fn leaf(self) -> &'static str {
        match self {
            Channel::Status => "status",
            Channel::Ota => "ota",
        }
    }
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Verified: store it (the unique `(device, seq)` makes a repeat a no-op).
    Accept(Reading),
    /// Rejected: store the rejection and count it.
    Reject(Rejection),
    /// Validly signed but refused by the replay window (`replayed` / `stale`): the shell
    /// looks up what is stored under `(device, seq)` and decides with [`classify_seen`].
    Seen {
        /// Device.
        device: String,
        /// Sequence number.
        seq: u64,
        /// SHA-256 of the message bytes.
        digest: String,
        /// The transport flagged it as a redelivery (MQTT DUP).
        redelivered: bool,
        /// What to record if it is a replay.
        rejection: Rejection,
    },
}

/// What a [`Verdict::Seen`] message turns out to be, given the digest stored under its
/// `(device, seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenKind {
    /// Nothing stored under that seq: a genuine replay / stale message. Record the rejection.
    Replay,
    /// The very bytes already stored, flagged as an MQTT redelivery: drop quietly, ack.
    Redelivery,
    /// A valid copy of a stored seq signed again (new `ts`): the device retransmitting a
    /// reading whose ack it did not get. Only the device key can produce it. Drop quietly, ack.
    Retransmission,
}

/// Classifies a seen message. A byte-identical copy that is not flagged as a redelivery is a
/// replay: an attacker who captured a message can resend its bytes but cannot re-sign it.
pub fn classify_seen(stored_digest: Option<&str>, digest: &str, redelivered: bool) -> SeenKind {
    match stored_digest {
        None => SeenKind::Replay,
        Some(d) if d == digest => {
            if redelivered {
                SeenKind::Redelivery
            } else {
                SeenKind::Replay
            }
        }
        Some(_) => SeenKind::Retransmission,
    }
}

/// The ingest core.
#[derive(Debug)]
pub struct Ingest<K> {
    keys: K,
    verifier: V2Verifier,
    devices: HashMap<String, Device>,
    payload: Vec<u8>,
}

/// The device id of a telemetry topic `devices/<id>/<leaf>`, if it has that shape and a valid id.
pub fn topic_device<'a>(topic: &'a str, leaf: &str) -> Option<&'a str> {
    let rest = topic.strip_prefix("devices/")?;
    let (id, tail) = rest.split_once('/')?;
    if tail != leaf || iotsec_msg::DeviceId::new(id).is_err() {
        return None;
    }
    Some(id)
}

/// SHA-256 of the raw message, hex: the identity of a message for duplicate detection.
pub fn digest(msg: &[u8]) -> String {
    hex::encode(Sha256::digest(msg))
}

impl<K: KeyLookup> Ingest<K> {
    /// A core with these keys and policy and no devices.
    pub fn new(keys: K, policy: Policy) -> Self {
        Ingest {
            keys,
            verifier: V2Verifier::new(policy),
            devices: HashMap::new(),
            payload: Vec::with_capacity(1024),
        }
    }

    /// Registers a device (or updates its registration).
    pub fn register(&mut self, id: &str, legacy: bool, registration: Registration) {
        let d = self.devices.entry(id.to_owned()).or_insert_with(|| Device {
            registration,
            state: if legacy {
                DeviceState::legacy()
            } else {
                DeviceState::v2_only()
            },
            status: DeviceState::v2_only(),
            ota: DeviceState::v2_only(),
        });
        d.registration = registration;
    }

    /// Seeds a device's replay window with the newest seq already stored (start-up).
    pub fn seed(&mut self, id: &str, newest_seq: u64) {
        if let Some(d) = self.devices.get_mut(id)
            && d.state.window.check(newest_seq).is_ok()
        {
            d.state.window.accept(newest_seq);
        }
    }

    /// Judges one message received on `topic` at `now_ms`. `redelivered` is the transport's
    /// hint that this is a repeat (MQTT DUP flag or the device's retry marker).
    pub fn handle(&mut self, topic: &str, msg: &[u8], redelivered: bool, now_ms: i64) -> Verdict {
        let reject = |device: Option<&str>, reason: &str| {
            Verdict::Reject(Rejection {
                received_ms: now_ms,
                device: device.map(str::to_owned),
                reason: reason.to_owned(),
                size: msg.len(),
            })
        };
        let Some(device_id) = topic_device(topic, "telemetry") else {
            return reject(None, "bad_topic");
        };
        if msg.len() > MAX_MESSAGE {
            return reject(Some(device_id), "too_large");
        }
        let Some(device) = self.devices.get_mut(device_id) else {
            return reject(Some(device_id), "unregistered_device");
        };
        if device.registration == Registration::Revoked {
            return reject(Some(device_id), "revoked_device");
        }
        self.payload.clear();
        let result = self.verifier.verify(
            msg,
            device_id,
            now_ms,
            &mut self.keys,
            &mut device.state,
            &mut self.payload,
        );
        match result {
            Ok(accepted) => {
                let digest = digest(msg);
                let (seq, ts_ms) = match accepted {
                    Accepted::V2(env) => (env.seq, env.ts),
                    // v1 has no sequence number: the digest stands in for it, so a byte-identical
                    // redelivery is still dropped by the unique (device, seq) key.
                    Accepted::V1 => (v1_seq(&digest), now_ms),
                };
                Verdict::Accept(Reading {
                    device: device_id.to_owned(),
                    seq,
                    ts_ms,
                    received_ms: now_ms,
                    payload: String::from_utf8_lossy(&self.payload).into_owned(),
                    sig: digest,
                })
            }
            Err(
                e @ (iotsec_msg::Error::Replayed { seq } | iotsec_msg::Error::Stale { seq, .. }),
            ) => Verdict::Seen {
                device: device_id.to_owned(),
                seq,
                digest: digest(msg),
                redelivered,
                rejection: Rejection {
                    received_ms: now_ms,
                    device: Some(device_id.to_owned()),
                    reason: e.code().to_owned(),
                    size: msg.len(),
                },
            },
            Err(e) => reject(Some(device_id), e.code()),
        }
    }
}

impl<K: KeyLookup> Ingest<K> {
    /// Judges a status message on `devices/<id>/status` (signed like telemetry; it consumes a
    /// sequence number). Returns the device and the verified payload, or the rejection.
    pub fn handle_status(
        &mut self,
        topic: &str,
        msg: &[u8],
        now_ms: i64,
    ) -> Result<Status, Rejection> {
        if msg == LAST_WILL {
            let (device, _) = registered(&mut self.devices, topic, Channel::Status, msg, now_ms)?;
            return Ok(Status::Offline { device });
        }
        let (device, payload, _) = self.verify_channel(topic, Channel::Status, msg, now_ms)?;
        Ok(Status::Signed { device, payload })
    }

    /// Judges an OTA report on `devices/<id>/ota`: signed like status messages (v2 only), with
    /// its own replay window.
    pub fn handle_ota(
        &mut self,
        topic: &str,
        msg: &[u8],
        now_ms: i64,
    ) -> Result<OtaReport, Rejection> {
        let (device, payload, seq) = self.verify_channel(topic, Channel::Ota, msg, now_ms)?;
        Ok(OtaReport {
            device,
            payload,
            seq,
        })
    }

    /// v2 verification of a side-channel message with that channel's replay state.
    fn verify_channel(
        &mut self,
        topic: &str,
        channel: Channel,
        msg: &[u8],
        now_ms: i64,
    ) -> Result<(String, String, u64), Rejection> {
        let (device_id, device) = registered(&mut self.devices, topic, channel, msg, now_ms)?;
        let state = match channel {
            Channel::Status => &mut device.status,
            Channel::Ota => &mut device.ota,
        };
        self.payload.clear();
        let accepted = self
            .verifier
            .verify(
                msg,
                &device_id,
                now_ms,
                &mut self.keys,
                state,
                &mut self.payload,
            )
            .map_err(|e| Rejection {
                received_ms: now_ms,
                device: Some(device_id.clone()),
                reason: e.code().to_owned(),
                size: msg.len(),
            })?;
        let seq = match accepted {
            Accepted::V2(env) => env.seq,
            // Side channels are v2 only (their replay state never admits v1).
            Accepted::V1 => 0,
        };
        Ok((
            device_id,
            String::from_utf8_lossy(&self.payload).into_owned(),
            seq,
        ))
    }
}

/// The device of a side-channel topic, if it is registered and not revoked.
fn registered<'d>(
    devices: &'d mut HashMap<String, Device>,
    topic: &str,
    channel: Channel,
    msg: &[u8],
    now_ms: i64,
) -> Result<(String, &'d mut Device), Rejection> {
    let reject = |device: Option<&str>, reason: &str| Rejection {
        received_ms: now_ms,
        device: device.map(str::to_owned),
        reason: reason.to_owned(),
        size: msg.len(),
    };
    let device_id = topic_device(topic, channel.leaf()).ok_or_else(|| reject(None, "bad_topic"))?;
    let device = devices
        .get_mut(device_id)
        .ok_or_else(|| reject(Some(device_id), "unregistered_device"))?;
    if device.registration == Registration::Revoked {
        return Err(reject(Some(device_id), "revoked_device"));
    }
    Ok((device_id.to_owned(), device))
}

/// The stand-in sequence number of a v1 message: 63 bits of its digest.
fn v1_seq(digest_hex: &str) -> u64 {
    let head = digest_hex.get(..16).unwrap_or("0");
    u64::from_str_radix(head, 16).unwrap_or(0) >> 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotsec_msg::key::{KeyMaterial, Kid, derive_device_key};
    use iotsec_msg::v2::{Envelope, Keyring};
    use iotsec_msg::{DeviceId, MsgKey, Signer};

    const NOW: i64 = 1_800_000_000_000;

    fn master() -> KeyMaterial {
        KeyMaterial::new(vec![7u8; 32]).unwrap()
    }

    fn signed(device: &str, seq: u64, master: &KeyMaterial) -> Vec<u8> {
        let kid = Kid::new(DeviceId::new(device).unwrap(), 1);
        let key = MsgKey::new(derive_device_key(master, &kid).expose()).unwrap();
        let mut out = Vec::new();
        Signer::new(key)
            .sign_v2(
                br#"{"temp": 21.5}"#,
                &Envelope { kid, ts: NOW, seq },
                &mut out,
            )
            .unwrap();
        out
    }

    fn ingest() -> Ingest<Keyring> {
        let mut i = Ingest::new(Keyring::new(master(), 1..=1), Policy::default());
        i.register("dev-a", false, Registration::Active);
        i.register("dev-b", false, Registration::Active);
        i
    }

    fn reason(v: &Verdict) -> &str {
        match v {
            Verdict::Reject(r) | Verdict::Seen { rejection: r, .. } => &r.reason,
            other => panic!("not a rejection: {other:?}"),
        }
    }

    #[test]
    fn accepts_then_rejects_replay_and_foreign_kid() {
        let mut i = ingest();
        let m = signed("dev-a", 1, &master());
        assert!(
            matches!(i.handle("devices/dev-a/telemetry", &m, false, NOW), Verdict::Accept(r) if r.seq == 1 && r.payload.contains("21.5"))
        );
        assert_eq!(
            reason(&i.handle("devices/dev-a/telemetry", &m, false, NOW)),
            "replayed"
        );
        // dev-a's message published on dev-b's topic (or dev-b using dev-a's kid)
        let m2 = signed("dev-a", 2, &master());
        assert_eq!(
            reason(&i.handle("devices/dev-b/telemetry", &m2, false, NOW)),
            "wrong_sender"
        );
        // wrong key
        let forged = signed("dev-a", 3, &KeyMaterial::new(vec![9u8; 32]).unwrap());
        assert_eq!(
            reason(&i.handle("devices/dev-a/telemetry", &forged, false, NOW)),
            "bad_signature"
        );
    }

    #[test]
    fn seen_messages_are_classified_against_storage() {
        let mut i = ingest();
        let m = signed("dev-a", 1, &master());
        let Verdict::Accept(stored) = i.handle("devices/dev-a/telemetry", &m, false, NOW) else {
            panic!()
        };
        let Verdict::Seen {
            digest,
            redelivered,
            ..
        } = i.handle("devices/dev-a/telemetry", &m, true, NOW)
        else {
            panic!()
        };
        assert_eq!(
            classify_seen(Some(&stored.sig), &digest, redelivered),
            SeenKind::Redelivery
        );
        assert_eq!(
            classify_seen(Some(&stored.sig), &digest, false),
            SeenKind::Replay
        );
        assert_eq!(classify_seen(None, &digest, true), SeenKind::Replay);
        // the device re-signs seq 1 with a new ts: a retransmission
        let kid = Kid::new(DeviceId::new("dev-a").unwrap(), 1);
        let key = MsgKey::new(derive_device_key(&master(), &kid).expose()).unwrap();
        let mut again = Vec::new();
        Signer::new(key)
            .sign_v2(
                br#"{"temp": 21.5}"#,
                &Envelope {
                    kid,
                    ts: NOW + 5,
                    seq: 1,
                },
                &mut again,
            )
            .unwrap();
        let Verdict::Seen { digest, .. } = i.handle("devices/dev-a/telemetry", &again, false, NOW)
        else {
            panic!()
        };
        assert_eq!(
            classify_seen(Some(&stored.sig), &digest, false),
            SeenKind::Retransmission
        );
    }

    #[test]
    fn bad_topics_unknown_and_revoked_devices() {
        let mut i = ingest();
        let m = signed("dev-a", 1, &master());
        assert_eq!(
            reason(&i.handle("devices/dev-a/status", &m, false, NOW)),
            "bad_topic"
        );
        assert_eq!(
            reason(&i.handle("devices/a+b/telemetry", &m, false, NOW)),
            "bad_topic"
        );
        assert_eq!(
            reason(&i.handle("devices/ghost/telemetry", &m, false, NOW)),
            "unregistered_device"
        );
        i.register("dev-a", false, Registration::Revoked);
        assert_eq!(
            reason(&i.handle("devices/dev-a/telemetry", &m, false, NOW)),
            "revoked_device"
        );
        assert_eq!(
            reason(&i.handle("devices/dev-b/telemetry", b"not json", false, NOW)),
            "malformed"
        );
        let big = vec![b' '; MAX_MESSAGE + 1];
        assert_eq!(
            reason(&i.handle("devices/dev-b/telemetry", &big, false, NOW)),
            "too_large"
        );
    }

    #[test]
    fn status_has_its_own_window_and_the_last_will_is_not_a_rejection() {
        let mut i = ingest();
        // A status with a high seq overtakes a backlog of readings with lower seqs.
        let status = signed("dev-a", 500, &master());
        assert!(matches!(
            i.handle_status("devices/dev-a/status", &status, NOW),
            Ok(Status::Signed { .. })
        ));
        let old = signed("dev-a", 10, &master());
        assert!(matches!(
            i.handle("devices/dev-a/telemetry", &old, false, NOW),
            Verdict::Accept(_)
        ));
        assert_eq!(
            i.handle_status("devices/dev-a/status", LAST_WILL, NOW),
            Ok(Status::Offline {
                device: "dev-a".into()
            })
        );
        // Anything else unsigned is still rejected.
        assert!(
            i.handle_status("devices/dev-a/status", br#"{"state": "offline"}"#, NOW)
                .is_err()
        );
    }

    #[test]
    fn ota_reports_have_their_own_window_and_carry_their_seq() {
        let mut i = ingest();
        let report = signed("dev-a", 900, &master());
        assert_eq!(
            i.handle_ota("devices/dev-a/ota", &report, NOW).unwrap().seq,
            900
        );
        // Replayed report refused; telemetry and status windows unaffected.
        assert_eq!(
            i.handle_ota("devices/dev-a/ota", &report, NOW)
                .unwrap_err()
                .reason,
            "replayed"
        );
        assert!(matches!(
            i.handle(
                "devices/dev-a/telemetry",
                &signed("dev-a", 5, &master()),
                false,
                NOW
            ),
            Verdict::Accept(_)
        ));
        // Another device's report, the will, a forgery, a wrong topic.
        assert_eq!(
            i.handle_ota("devices/dev-b/ota", &signed("dev-a", 901, &master()), NOW)
                .unwrap_err()
                .reason,
            "wrong_sender"
        );
        assert!(i.handle_ota("devices/dev-a/ota", LAST_WILL, NOW).is_err());
        let forged = signed("dev-a", 902, &KeyMaterial::new(vec![9u8; 32]).unwrap());
        assert_eq!(
            i.handle_ota("devices/dev-a/ota", &forged, NOW)
                .unwrap_err()
                .reason,
            "bad_signature"
        );
        assert_eq!(
            i.handle_ota("devices/dev-a/status", &report, NOW)
                .unwrap_err()
                .reason,
            "bad_topic"
        );
    }

    #[test]
    fn seeded_window_rejects_old_seqs_after_restart() {
        let mut i = ingest();
        i.seed("dev-a", 500);
        let old = signed("dev-a", 10, &master());
        assert_eq!(
            reason(&i.handle("devices/dev-a/telemetry", &old, false, NOW)),
            "stale"
        );
        let new = signed("dev-a", 501, &master());
        assert!(matches!(
            i.handle("devices/dev-a/telemetry", &new, false, NOW),
            Verdict::Accept(_)
        ));
    }
}
