use alloc::string::String;
use alloc::vec::Vec;

use super::*;

fn dumps(input: &str, sorted: bool) -> Result<String, Error> {
    let mut codec = Codec::default();
    let mut doc = codec.parse(input.as_bytes())?;
    let mut out = Vec::new();
    if sorted {
        doc.write_canonical(&mut out);
    } else {
        doc.write_python(&mut out);
    }
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn canonical_matches_python_examples() {
    // Expected strings are what CPython 3.11 prints for json.dumps(json.loads(x), sort_keys=True).
    for (input, want) in [
        (
            r#"{"b":1,"a":[1,2,{"d":null,"c":true}]}"#,
            r#"{"a": [1, 2, {"c": true, "d": null}], "b": 1}"#,
        ),
        (r#"{"a":1,"a":2}"#, r#"{"a": 2}"#),
        (r#"  [ ]  "#, "[]"),
        (r#"{}"#, "{}"),
        (
            r#""\u00e9\ud83d\ude00/\u007f""#,
            r#""\u00e9\ud83d\ude00/\u007f""#,
        ),
        ("\"\u{e9}\u{1F600}\u{7f}\"", r#""\u00e9\ud83d\ude00\u007f""#),
        (r#""\ud800x\udc00""#, r#""\ud800x\udc00""#),
        (r#""\"\\\/\b\f\n\r\t\u0001""#, r#""\"\\/\b\f\n\r\t\u0001""#),
        ("-0", "0"),
        ("-0.0", "-0.0"),
        (
            "[NaN, Infinity, -Infinity, 1e400]",
            "[NaN, Infinity, -Infinity, Infinity]",
        ),
        (
            r#"{"\uffff":1,"\ud83d\ude00":2,"\ud83d":3}"#,
            r#"{"\ud83d": 3, "\uffff": 1, "\ud83d\ude00": 2}"#,
        ),
    ] {
        assert_eq!(dumps(input, true).unwrap(), want, "{input}");
    }
}

#[test]
fn python_order_keeps_first_position_last_value() {
    assert_eq!(
        dumps(r#"{"b":1,"a":2,"b":3}"#, false).unwrap(),
        r#"{"b": 3, "a": 2}"#
    );
}

#[test]
fn rejects_what_python_rejects() {
    for input in [
        "",
        " ",
        "01",
        "1.",
        ".5",
        "+1",
        "1e",
        "-",
        "[1,]",
        r#"{"a":1,}"#,
        "{'a':1}",
        "\"\t\"",
        r#""\x""#,
        r#""\u12g4""#,
        "nul",
        "-Inf",
        "[1 2]",
        "\u{feff}{}",
        "{} x",
        "tru",
        "[",
        r#"{"a" 1}"#,
        "\"abc",
    ] {
        assert!(dumps(input, true).is_err(), "{input:?} should be rejected");
    }
    let big = "9".repeat(4301);
    assert!(matches!(
        dumps(&big, true),
        Err(Error::Malformed {
            syntax: Syntax::IntTooLong,
            ..
        })
    ));
    assert_eq!(dumps(&"9".repeat(4300), true).unwrap().len(), 4300);
    assert!(dumps(&alloc::format!("-{}", "9".repeat(4300)), true).is_ok());
}

#[test]
fn depth_limit() {
    let ok = alloc::format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert!(dumps(&ok, true).is_ok());
    let deep = alloc::format!("{}{}", "[".repeat(65), "]".repeat(65));
    assert_eq!(dumps(&deep, true), Err(Error::TooDeep { limit: 64 }));
}

#[test]
fn invalid_utf8_is_malformed() {
    let mut codec = Codec::default();
    assert!(matches!(
        codec.parse(b"\"\xff\""),
        Err(Error::Malformed {
            syntax: Syntax::InvalidUtf8,
            offset: 1
        })
    ));
    // UTF-8 encoded surrogates are not UTF-8.
    assert!(codec.parse(b"\"\xed\xa0\x80\"").is_err());
}

/// The flat fast path against the general path on the same input: taken exactly where
/// expected, and the same bytes for every member left out (and none).
#[test]
fn flat_path_agrees_with_the_general_path() {
    let cases: &[(&str, bool)] = &[
        (
            r#"{"device": "d1", "temp": 21.97, "hum": 21.750752865586687, "sig": "x"}"#,
            true,
        ),
        (r#"{"b": 1, "a": 2}"#, true),
        (
            r#"{"a": true, "b": false, "c": null, "d": "", "": 0}"#,
            true,
        ),
        (
            r#"{"x": 0.0001, "y": -0.0, "z": 0.0, "w": 5.0, "v": 1000000000000000.0}"#,
            true,
        ),
        (r#"{"x": 123456789012345.0, "y": -100000000000000.0}"#, true),
        (
            r#"{"x": 0.30000000000000004, "y": 1.7976931348623157, "z": 0.00012345678901234567}"#,
            true,
        ),
        (
            r#"{"temperature_10": 1, "temperature_2": 2, "temperature_1": 3, "temperatur": 4}"#,
            true,
        ),
        (
            r#"{"abcdefgh": 1, "abcdefg": 2, "abcdefghi": 3, "abcdefgi": 4}"#,
            true,
        ),
        (r#"{"n": -12345678901234567890123456789, "m": -1}"#, true),
        // not flat: each needs the general path's rewriting or verdict
        (r#"{"x": 0.00001}"#, false),
        // whole numbers of 16 digits: their repr is decided with the tie check, general path
        (r#"{"x": 1234567890123456.0}"#, false),
        (r#"{"x": 9999999999999998.0}"#, false),
        (r#"{"x": 0.000099999}"#, false),
        (r#"{"x": 10000000000000000.0}"#, false),
        (r#"{"x": 1.50}"#, false),
        (r#"{"x": 5.00}"#, false),
        (r#"{"x": 1e16}"#, false),
        (r#"{"x": 1E5}"#, false),
        (r#"{"x": 0.10000000000000001}"#, false),
        (r#"{"x": 12345678901234567.0}"#, false),
        (r#"{"x": -0}"#, false),
        (r#"{"x": NaN}"#, false),
        (r#"{"x": [1]}"#, false),
        (r#"{"x": {"y": 1}}"#, false),
        (r#"{"x": "\u00e9"}"#, false),
        ("{\"x\": \"\u{e9}\"}", false),
        (r#"{"x":1}"#, false),
        (r#"{"x" : 1}"#, false),
        (r#"{"x": 1,"y": 2}"#, false),
        (r#"{"x": 1} "#, false),
        (r#" {"x": 1}"#, false),
        (r#"{"a": 1, "a": 2}"#, false),
        (r#"{"temperature_1": 1, "temperature_1": 2}"#, false),
        (
            r#"{"temperature_1": 1, "temperature_2": 2, "temperature_1": 3}"#,
            false,
        ),
        (r#"{}"#, false),
        (r#"{"x": 1"#, false),
        (r#"{"x": 01}"#, false),
        (r#"{"x": 1.}"#, false),
        (r#"{"x": tru}"#, false),
        (r#"{"x": truex}"#, false),
    ];
    for &(input, flat_expected) in cases {
        let src = input.as_bytes();
        let general = {
            let mut codec = Codec::default();
            codec.parse(src).ok().map(|mut doc| {
                let mut canon = Vec::new();
                doc.write_canonical(&mut canon);
                let mut py = Vec::new();
                doc.write_python(&mut py);
                (canon, py)
            })
        };
        let mut codec = Codec::default();
        let parsed = codec.parse_message(src);
        let is_flat = matches!(parsed, Ok(Message::Flat(_)));
        assert_eq!(is_flat, flat_expected, "{input}");
        let Ok(mut msg) = parsed else {
            continue;
        };
        let (canon_all, py_all) = general.expect("the general parser accepts it too");
        let mut canon = Vec::new();
        msg.write_canonical_without(MemberId::NONE, &mut canon);
        assert_eq!(
            String::from_utf8_lossy(&canon),
            String::from_utf8_lossy(&canon_all),
            "{input}"
        );
        let mut py = Vec::new();
        msg.write_python_without(MemberId::NONE, &canon, &mut py);
        assert_eq!(
            String::from_utf8_lossy(&py),
            String::from_utf8_lossy(&py_all),
            "{input}"
        );
        let Message::Flat(f) = &msg else {
            continue;
        };
        // Leaving out each member: the same bytes as the general path leaving it out.
        for skip in 0..f.members.len() {
            let key = f.members[skip].key(src).to_vec();
            let mut flat_canon = Vec::new();
            let mut flat_py = Vec::new();
            let mut m = Codec::default();
            let mut fm = m.parse_message(src).unwrap();
            let name: &'static [u8] = alloc::boxed::Box::leak(key.clone().into_boxed_slice());
            let (id, _) = fm.find(Name::new(name)).unwrap();
            fm.write_canonical_without(id, &mut flat_canon);
            fm.write_python_without(id, &flat_canon, &mut flat_py);
            let mut g = Codec::default();
            let mut doc = g.parse(src).unwrap();
            let members = doc.root_members();
            let gm = doc.find_member(&members, &key).unwrap();
            let mut gen_canon = Vec::new();
            doc.write_root_canonical_without(members.clone(), gm.key, &mut gen_canon);
            let mut gen_py = Vec::new();
            doc.write_root_python_without(members, gm.key, &gen_canon, &mut gen_py);
            assert_eq!(flat_canon, gen_canon, "{input} without {skip}");
            assert_eq!(flat_py, gen_py, "{input} without {skip}");
        }
    }
}

/// One codec over a stream: the flat path's memo of the last key order must never leak into a
/// message whose keys differ (same lengths and first 8 bytes, other bytes after them).
#[test]
fn flat_sort_memo_follows_the_keys() {
    let stream = [
        r#"{"temperature_a": 1, "b": 2, "a": 3}"#,
        r#"{"temperature_b": 1, "b": 2, "a": 3}"#,
        r#"{"temperature_b": 1, "b": 2, "a": 3}"#,
        r#"{"temperature_b": 1, "temperature_a": 2, "a": 3}"#,
        r#"{"temperature_a": 1, "temperature_b": 2, "a": 3}"#,
        r#"{"temperature_a": 1, "temperature_b": 2, "a": 3}"#,
        r#"{"b": 1, "a": 2}"#,
        r#"{"b": 1, "a": 2}"#,
        r#"{"a": 1, "b": 2}"#,
        r#"{"b": 1, "b": 2}"#,
        r#"{"b": 1, "a": 2}"#,
        r#"{"device": "x", "temp": 1.5, "sig": "y"}"#,
        r#"{"device": "x", "temp": 1.5, "sig": "y"}"#,
        r#"{"devicf": "x", "temp": 1.5, "sig": "y"}"#,
    ];
    let mut shared = Codec::default();
    for input in stream.iter().chain(stream.iter().rev()) {
        let want = dumps(input, true).unwrap();
        let mut canon = Vec::new();
        match shared.parse_message(input.as_bytes()) {
            Ok(mut msg) => msg.write_canonical_without(MemberId::NONE, &mut canon),
            Err(e) => panic!("{input}: {e}"),
        }
        assert_eq!(String::from_utf8(canon).unwrap(), want, "{input}");
    }
}

/// Random objects in and near the flat shape (Python's separators with occasional other
/// spacing, keys sharing long prefixes, duplicates, numbers at the repr boundaries, escapes):
/// whenever the fast path takes one, its bytes equal the general path's, with every member
/// left out in turn.
#[test]
fn flat_path_agrees_on_random_objects() {
    const KEYS: &[&str] = &[
        "\"a\"",
        "\"b\"",
        "\"\"",
        "\"temperature_1\"",
        "\"temperature_2\"",
        "\"temperature\"",
        "\"abcdefgh\"",
        "\"abcdefghi\"",
        "\"sig\"",
        "\"s\\u0069g\"",
        "\"\u{e9}\"",
        "\"~\"",
    ];
    const VALUES: &[&str] = &[
        "1",
        "-1",
        "0",
        "-0",
        "12345678901234567890",
        "0.5",
        "1.50",
        "5.0",
        "-0.0",
        "0.0001",
        "0.00001",
        "1e5",
        "1E+2",
        "21.750752865586687",
        "0.1000000000000001",
        "1234567890123456.0",
        "9999999999999998.0",
        "999999999999999.9",
        "true",
        "false",
        "null",
        "NaN",
        "\"x\"",
        "\"\"",
        "\"a\\\"b\"",
        "\"\u{e9}\"",
        "[1]",
        "{}",
        "{\"b\": 1, \"a\": 2}",
    ];
    let mut x = 0x1234_5678_9ABC_DEF1u64;
    let mut next = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n as u64) as usize
    };
    let mut shared = Codec::default();
    let mut taken = 0;
    for _ in 0..20_000 {
        let count = 1 + next(6);
        let mut text = String::from("{");
        for i in 0..count {
            if i > 0 {
                text.push_str([", ", ", ", ", ", ",", " , "][next(5)]);
            }
            text.push_str(KEYS[next(KEYS.len())]);
            text.push_str([": ", ": ", ": ", ":"][next(4)]);
            text.push_str(VALUES[next(VALUES.len())]);
        }
        text.push('}');
        let src = text.as_bytes();
        let Ok((want_canon, want_py)) = Codec::default().parse(src).map(|mut d| {
            let mut c = Vec::new();
            d.write_canonical(&mut c);
            let mut p = Vec::new();
            d.write_python(&mut p);
            (c, p)
        }) else {
            // Not JSON: the fast path must not take it either.
            assert!(
                !matches!(shared.parse_message(src), Ok(Message::Flat(_))),
                "{text}"
            );
            continue;
        };
        let Ok(Message::Flat(f)) = shared.parse_message(src) else {
            continue;
        };
        taken += 1;
        let mut canon = Vec::new();
        f.write_canonical_without(u32::MAX, &mut canon);
        assert_eq!(canon, want_canon, "{text}");
        let mut py = Vec::new();
        f.write_python_without(u32::MAX, &mut py);
        assert_eq!(py, want_py, "{text}");
        for skip in 0..f.members.len() {
            let key = f.members[skip].key(src).to_vec();
            let mut g = Codec::default();
            let mut doc = g.parse(src).unwrap();
            let members = doc.root_members();
            let gm = doc.find_member(&members, &key).unwrap();
            let mut gen_canon = Vec::new();
            doc.write_root_canonical_without(members.clone(), gm.key, &mut gen_canon);
            let mut gen_py = Vec::new();
            doc.write_root_python_without(members, gm.key, &gen_canon, &mut gen_py);
            let mut flat_canon = Vec::new();
            f.write_canonical_without(skip as u32, &mut flat_canon);
            let mut flat_py = Vec::new();
            f.write_python_without(skip as u32, &mut flat_py);
            assert_eq!(flat_canon, gen_canon, "{text} without {skip}");
            assert_eq!(flat_py, gen_py, "{text} without {skip}");
        }
    }
    assert!(taken > 1_000, "fast path taken {taken} times");
}
