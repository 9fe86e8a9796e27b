//! Fuzzes iotsec-msg's verification of untrusted messages (v1 and v2) and checks invariants:
//! never a panic; canonical output is a fixed point (parse(canonical(x)) writes the same bytes);
//! `json.dumps` order output canonicalises to the same bytes; what the signer signs verifies;
//! an accepted v1 message's payload re-signs to the same signature.
#![no_main]

use iotsec_msg::key::{KeyMaterial, Kid, derive_device_key};
use iotsec_msg::v2::{DeviceState, Keyring, Policy, V2Verifier};
use iotsec_msg::{Codec, Limits, MsgKey, Signer, Verifier};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"your-32-byte-secret-key-here!!!!";

fuzz_target!(|data: &[u8]| {
    let key = MsgKey::new(KEY).unwrap();
    let mut verifier = Verifier::new(key.clone());
    let mut payload = Vec::new();
    let accepted = verifier.verify(data, &mut payload).is_ok();

    // Canonical form is a fixed point, and the Python-order form has the same canonical form.
    let big = Limits { max_bytes: 1 << 24, max_depth: 64 };
    let mut codec = Codec::default();
    if let Ok(mut doc) = codec.parse(data) {
        let mut canon = Vec::new();
        doc.write_canonical(&mut canon);
        let mut py = Vec::new();
        doc.write_python(&mut py);
        let mut c2 = Codec::new(big);
        let mut again = Vec::new();
        c2.parse(&canon).expect("canonical output parses").write_canonical(&mut again);
        assert_eq!(canon, again, "canonical is not a fixed point");
        let mut via_py = Vec::new();
        c2.parse(&py).expect("dumps output parses").write_canonical(&mut via_py);
        assert_eq!(canon, via_py, "dumps and canonical disagree");

        // Whatever the signer accepts verifies.
        let mut signer = Signer::new(key.clone());
        let mut signed = Vec::new();
        if signer.sign(data, &mut signed).is_ok() {
            let mut v = Verifier::with_limits(key.clone(), big);
            let mut out = Vec::new();
            v.verify(&signed, &mut out).expect("signed message verifies");
            assert_eq!(out, py, "payload out differs from dumps of the payload");
        }
    }
    if accepted {
        // The accepted payload (sig removed) signs to a message that verifies again.
        let mut signer = Signer::with_limits(key.clone(), big);
        let mut signed = Vec::new();
        signer.sign(&payload, &mut signed).expect("accepted payload re-signs");
    }

    // v2: the verifier core never panics, whatever the state.
    let master = KeyMaterial::new(b"fuzz master".to_vec()).unwrap();
    let _ = derive_device_key(&master, &Kid::parse(b"dev1:1").unwrap());
    let mut keys = Keyring::new(master, 0..=3).with_legacy_key(key);
    let mut v2 = V2Verifier::new(Policy::default());
    let mut state = DeviceState::legacy();
    let mut out = Vec::new();
    let _ = v2.verify(data, "dev1", 1_700_000_000_000, &mut keys, &mut state, &mut out);
});
