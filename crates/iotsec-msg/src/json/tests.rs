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
