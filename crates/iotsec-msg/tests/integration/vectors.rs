//! HMAC-SHA256 against RFC 4231 section 4, HKDF-SHA256 against RFC 5869 appendix A.

use iotsec_msg::MsgKey;
use iotsec_msg::key::hkdf_sha256;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn hmac_rfc4231() {
    let big_key = vec![0xaa; 131];
    let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
        (vec![0x0b; 20], b"Hi There".to_vec(),
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (b"Jefe".to_vec(), b"what do ya want for nothing?".to_vec(),
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        (vec![0xaa; 20], vec![0xdd; 50],
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        ((1..=25).collect(), vec![0xcd; 50],
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        // Test case 5 is truncated to 128 bits.
        (vec![0x0c; 20], b"Test With Truncation".to_vec(), "a3b6167473100ee06e0c796c2955552b"),
        (big_key.clone(), b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        (big_key, b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ];
    for (i, (key, data, want)) in cases.iter().enumerate() {
        let k = MsgKey::new(key).unwrap();
        let tag = k.tag(data);
        let want = unhex(want);
        assert_eq!(
            &tag[..want.len()],
            &want[..],
            "RFC 4231 test case {}",
            i + 1
        );
        if want.len() == 32 {
            assert!(k.verify_tag(data, &tag));
            let mut bad = tag;
            bad[31] ^= 1;
            assert!(!k.verify_tag(data, &bad));
        }
    }
}

#[test]
fn hkdf_rfc5869() {
    let cases = [
        (
            vec![0x0b; 22],
            (0x00..=0x0c).collect::<Vec<u8>>(),
            (0xf0..=0xf9).collect::<Vec<u8>>(),
            42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (
            (0x00..=0x4f).collect(),
            (0x60..=0xaf).collect(),
            (0xb0..=0xff).collect(),
            82,
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (
            vec![0x0b; 22],
            vec![],
            vec![],
            42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ];
    for (i, (ikm, salt, info, len, want)) in cases.iter().enumerate() {
        let mut okm = vec![0u8; *len];
        hkdf_sha256(ikm, salt, info, &mut okm).unwrap();
        assert_eq!(okm, unhex(want), "RFC 5869 test case {}", i + 1);
    }
    let mut too_long = vec![0u8; 255 * 32 + 1];
    assert!(hkdf_sha256(b"k", b"", b"", &mut too_long).is_err());
}
