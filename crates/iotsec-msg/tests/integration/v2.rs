//! v2 verifier scenarios: the checks and their order, state updates only on acceptance.

use iotsec_msg::key::{DeviceId, KeyMaterial, Kid, derive_device_key};
use iotsec_msg::v2::{Accepted, DeviceState, Envelope, Keyring, Policy, V2Verifier};
use iotsec_msg::{Error, Field, MsgKey, Signer, Syntax};

const NOW: i64 = 1_700_000_000_000;
const LEGACY: &[u8] = b"your-32-byte-secret-key-here!!!!";

fn master() -> KeyMaterial {
    KeyMaterial::new(b"master key for the v2 tests.....".to_vec()).unwrap()
}

fn kid(dev: &str, version: u32) -> Kid {
    Kid::new(DeviceId::new(dev).unwrap(), version)
}

fn device_signer(dev: &str, version: u32) -> Signer {
    let k = derive_device_key(&master(), &kid(dev, version));
    Signer::new(MsgKey::new(k.expose()).unwrap())
}

fn v2msg(dev: &str, version: u32, ts: i64, seq: u64) -> Vec<u8> {
    let env = Envelope {
        kid: kid(dev, version),
        ts,
        seq,
    };
    let mut out = Vec::new();
    device_signer(dev, version)
        .sign_v2(br#"{"temp": 21.5}"#, &env, &mut out)
        .unwrap();
    out
}

fn keyring() -> Keyring {
    Keyring::new(master(), 1..=2).with_legacy_key(MsgKey::new(LEGACY).unwrap())
}

fn verify(msg: &[u8], sender: &str, state: &mut DeviceState) -> Result<Accepted, Error> {
    let mut v = V2Verifier::new(Policy::default());
    let mut out = Vec::new();
    v.verify(msg, sender, NOW, &mut keyring(), state, &mut out)
}

#[test]
fn accepts_then_rejects_replays_and_reorders_within_window() {
    let mut st = DeviceState::v2_only();
    let m10 = v2msg("dev1", 1, NOW, 10);
    match verify(&m10, "dev1", &mut st).unwrap() {
        Accepted::V2(env) => assert_eq!(
            (env.seq, env.ts, env.kid.to_string()),
            (10, NOW, "dev1:1".into())
        ),
        Accepted::V1 => panic!("v1"),
    }
    assert_eq!(
        verify(&m10, "dev1", &mut st),
        Err(Error::Replayed { seq: 10 })
    );
    verify(&v2msg("dev1", 1, NOW, 80), "dev1", &mut st).unwrap();
    verify(&v2msg("dev1", 1, NOW, 79), "dev1", &mut st).unwrap();
    assert_eq!(
        verify(&v2msg("dev1", 1, NOW, 16), "dev1", &mut st),
        Err(Error::Stale {
            seq: 16,
            newest: 80
        })
    );
    verify(&v2msg("dev1", 2, NOW, 17), "dev1", &mut st).unwrap(); // key version 2, in window
}

#[test]
fn rejections_leave_state_alone() {
    let fresh = DeviceState::v2_only();
    let mut st = fresh;
    let m = v2msg("dev1", 1, NOW, 5);
    assert_eq!(verify(&m, "dev2", &mut st), Err(Error::WrongSender));
    assert_eq!(st, fresh);
    assert_eq!(
        verify(&v2msg("dev1", 1, NOW + 300_001, 5), "dev1", &mut st),
        Err(Error::ClockSkew { skew_ms: 300_001 })
    );
    verify(&v2msg("dev1", 1, NOW - 300_000, 5), "dev1", &mut st).unwrap();
    assert_eq!(
        verify(&v2msg("dev1", 3, NOW, 6), "dev1", &mut st),
        Err(Error::UnknownKey)
    );
    // dev2's key cannot sign for dev1
    let env = Envelope {
        kid: kid("dev1", 1),
        ts: NOW,
        seq: 7,
    };
    let mut forged = Vec::new();
    device_signer("dev2", 1)
        .sign_v2(b"{}", &env, &mut forged)
        .unwrap();
    assert_eq!(verify(&forged, "dev1", &mut st), Err(Error::BadSignature));
    assert_eq!(st.window.newest(), Some(5));
}

#[test]
fn downgrade_protection() {
    let mut legacy_signer = Signer::new(MsgKey::new(LEGACY).unwrap());
    let mut v1 = Vec::new();
    legacy_signer.sign(br#"{"temp": 1}"#, &mut v1).unwrap();

    let mut st = DeviceState::v2_only();
    assert_eq!(verify(&v1, "dev1", &mut st), Err(Error::Downgrade));

    let mut st = DeviceState::legacy();
    assert_eq!(verify(&v1, "dev1", &mut st), Ok(Accepted::V1));
    verify(&v2msg("dev1", 1, NOW, 1), "dev1", &mut st).unwrap();
    assert_eq!(verify(&v1, "dev1", &mut st), Err(Error::Downgrade));
}

#[test]
fn v2_is_strict_and_typed() {
    let mut st = DeviceState::v2_only();
    let dk = derive_device_key(&master(), &kid("dev1", 1));
    let mut s = Signer::new(MsgKey::new(dk.expose()).unwrap());
    let head = r#""v": 2, "kid": "dev1:1", "ts": 1700000000000"#;
    // A duplicate that does not change the value keeps the signature valid (last wins), so
    // only strictness catches it.
    let mut m = Vec::new();
    s.sign(
        format!(r#"{{{head}, "seq": 1, "a": 2}}"#).as_bytes(),
        &mut m,
    )
    .unwrap();
    let dup = format!("{{\"a\": 2, {}", std::str::from_utf8(&m[1..]).unwrap());
    assert_eq!(
        verify(dup.as_bytes(), "dev1", &mut st),
        Err(Error::Malformed {
            syntax: Syntax::DuplicateKey,
            offset: 0
        })
    );
    for (payload, want) in [
        (
            format!(r#"{{{head}, "seq": 1, "a": NaN}}"#),
            Error::Malformed {
                syntax: Syntax::NonFinite,
                offset: 0,
            },
        ),
        (
            format!(r#"{{{head}, "seq": 1, "a": 1e400}}"#),
            Error::Malformed {
                syntax: Syntax::NonFinite,
                offset: 0,
            },
        ),
        (
            format!(r#"{{{head}, "seq": 1, "a": "\ud800"}}"#),
            Error::Malformed {
                syntax: Syntax::LoneSurrogate,
                offset: 0,
            },
        ),
        (
            format!(r#"{{{head}, "seq": "1"}}"#),
            Error::BadEnvelope { field: Field::Seq },
        ),
        (
            format!(r#"{{{head}, "seq": -1}}"#),
            Error::BadEnvelope { field: Field::Seq },
        ),
        (
            format!(r#"{{{head}, "seq": 18446744073709551616}}"#),
            Error::BadEnvelope { field: Field::Seq },
        ),
        (
            format!(r#"{{{head}}}"#),
            Error::BadEnvelope { field: Field::Seq },
        ),
        (
            r#"{"v": 2, "kid": "dev1:1", "ts": 1.7e12, "seq": 1}"#.to_string(),
            Error::BadEnvelope { field: Field::Ts },
        ),
        (
            r#"{"v": 2, "kid": "dev1", "ts": 1700000000000, "seq": 1}"#.to_string(),
            Error::BadEnvelope { field: Field::Kid },
        ),
    ] {
        let mut m = Vec::new();
        s.sign(payload.as_bytes(), &mut m).unwrap();
        assert_eq!(verify(&m, "dev1", &mut st), Err(want), "{payload}");
    }
    // The v2 signer refuses what the v2 verifier would refuse.
    let env = Envelope {
        kid: kid("dev1", 1),
        ts: NOW,
        seq: 1,
    };
    assert!(s.sign_v2(br#"{"a": NaN}"#, &env, &mut Vec::new()).is_err());
    assert_eq!(
        s.sign_v2(br#"{"seq": 1}"#, &env, &mut Vec::new()),
        Err(Error::EnvelopeFieldPresent { field: Field::Seq })
    );
    assert_eq!(st, DeviceState::v2_only());
}

/// The envelope's integers as JSON spells them: `ts` a non-negative i64 (`-0` reads as 0, as
/// Python's int), `seq` any u64, nothing beyond; the kid's version a u32.
#[test]
fn envelope_integers_at_their_limits() {
    // Signed by hand, so the spelling (`-0`) stays as written: the signature covers the
    // canonical bytes, the message keeps the text.
    let check = |fields: &str, now: i64| {
        let payload = format!(r#"{{"temp": 1, {fields}}}"#);
        let mut canon = Vec::new();
        iotsec_msg::Codec::default()
            .parse(payload.as_bytes())
            .unwrap()
            .write_canonical(&mut canon);
        let key = derive_device_key(&master(), &kid("dev1", 1));
        let tag = MsgKey::new(key.expose()).unwrap().tag(&canon);
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let msg = format!(r#"{}, "sig": "{hex}"}}"#, &payload[..payload.len() - 1]);
        let msg = msg.into_bytes();
        let mut v = V2Verifier::new(Policy::default());
        let mut st = DeviceState::v2_only();
        v.verify(&msg, "dev1", now, &mut keyring(), &mut st, &mut Vec::new())
            .map(|a| match a {
                Accepted::V2(env) => (env.ts, env.seq),
                Accepted::V1 => panic!("v1"),
            })
    };
    let kid = r#""v": 2, "kid": "dev1:1""#;
    assert_eq!(
        check(&format!(r#"{kid}, "ts": -0, "seq": 0"#), 0),
        Ok((0, 0))
    );
    assert_eq!(
        check(
            &format!(r#"{kid}, "ts": 5, "seq": 18446744073709551615"#),
            5
        ),
        Ok((5, u64::MAX))
    );
    assert_eq!(
        check(
            &format!(r#"{kid}, "ts": 9223372036854775807, "seq": 1"#),
            i64::MAX
        ),
        Ok((i64::MAX, 1))
    );
    let bad_ts = Err(Error::BadEnvelope { field: Field::Ts });
    let bad_seq = Err(Error::BadEnvelope { field: Field::Seq });
    assert_eq!(check(&format!(r#"{kid}, "ts": -1, "seq": 1"#), 0), bad_ts);
    assert_eq!(
        check(&format!(r#"{kid}, "ts": 9223372036854775808, "seq": 1"#), 0),
        bad_ts
    );
    assert_eq!(check(&format!(r#"{kid}, "ts": 1.0, "seq": 1"#), 0), bad_ts);
    assert_eq!(check(&format!(r#"{kid}, "ts": "1", "seq": 1"#), 0), bad_ts);
    assert_eq!(check(&format!(r#"{kid}, "ts": 1, "seq": -0"#), 1), bad_seq);
    assert_eq!(check(&format!(r#"{kid}, "ts": 1, "seq": -1"#), 1), bad_seq);
    assert_eq!(
        check(
            &format!(r#"{kid}, "ts": 1, "seq": 18446744073709551616"#),
            1
        ),
        bad_seq
    );
    // the kid's version: a u32 in canonical decimal
    let bad_kid = Err(Error::BadEnvelope { field: Field::Kid });
    for kid in ["dev1:4294967296", "dev1:01", "dev1:", "dev1:-1"] {
        assert_eq!(
            check(&format!(r#""v": 2, "kid": "{kid}", "ts": 1, "seq": 1"#), 1),
            bad_kid,
            "{kid}"
        );
    }
}
