//! proptest generators of JSON *text* (not values): every spelling `json.loads` accepts
//! (whitespace, escapes of either hex case, surrogate pairs and lone surrogates, numbers in
//! every notation, NaN/Infinity, duplicate keys), so the parser and writer are compared with
//! Python on the bytes, not on a model.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

fn ws() -> impl Strategy<Value = &'static str> {
    prop_oneof![8 => Just(""), 1 => Just(" "), 1 => Just("\n\t \r")]
}

fn hex4(cp: u32, upper: bool) -> String {
    if upper {
        format!("\\u{cp:04X}")
    } else {
        format!("\\u{cp:04x}")
    }
}

fn render_char(cp: u32, mode: u8) -> String {
    let upper = mode & 1 == 1;
    if (0xD800..0xE000).contains(&cp) {
        return hex4(cp, upper);
    }
    let escape = mode == 3;
    match cp {
        0x22 => {
            if escape {
                hex4(cp, upper)
            } else {
                "\\\"".into()
            }
        }
        0x5C => {
            if escape {
                hex4(cp, upper)
            } else {
                "\\\\".into()
            }
        }
        0x2F if mode == 2 => "\\/".into(),
        0x08 if !escape => "\\b".into(),
        0x0C if !escape => "\\f".into(),
        0x0A if !escape => "\\n".into(),
        0x0D if !escape => "\\r".into(),
        0x09 if !escape => "\\t".into(),
        c if c < 0x20 || escape => {
            if c >= 0x10000 {
                let v = c - 0x10000;
                format!(
                    "{}{}",
                    hex4(0xD800 + (v >> 10), upper),
                    hex4(0xDC00 + (v & 0x3FF), upper)
                )
            } else {
                hex4(c, upper)
            }
        }
        c => char::from_u32(c).map(String::from).unwrap_or_default(),
    }
}

/// A JSON string literal, quotes included.
pub fn string() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        8 => 0x20u32..0x7F,
        1 => 0u32..0x20,
        1 => Just(0x7Fu32),
        2 => 0x80u32..0x800,
        2 => 0x800u32..0xD800,
        1 => 0xE000u32..0x10000,
        2 => 0x10000u32..0x110000,
        1 => 0xD800u32..0xE000,
        1 => prop_oneof![Just(0x22u32), Just(0x5C), Just(0x2F)],
    ];
    proptest::collection::vec((ch, 0u8..4), 0..10).prop_map(|items| {
        let mut s = String::from("\"");
        for (cp, mode) in items {
            s.push_str(&render_char(cp, mode));
        }
        s.push('"');
        s
    })
}

fn float_text() -> impl Strategy<Value = String> {
    let from_bits = (any::<u64>(), 0u8..4).prop_filter_map("finite", |(bits, style)| {
        let f = f64::from_bits(bits);
        if !f.is_finite() {
            return None;
        }
        Some(match style {
            0 => format!("{f:?}"),
            1 => format!("{f:e}"),
            2 => format!("{f:E}").replace("E", "E+").replace("E+-", "E-"),
            _ => format!("{f:.3}"),
        })
    });
    let from_short = (any::<i32>(), -12i32..20).prop_map(|(m, e)| format!("{m}e{e}"));
    let decimal = "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?";
    prop_oneof![3 => from_bits, 2 => from_short, 3 => decimal]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<i64>().prop_map(|i| i.to_string()),
        1 => prop_oneof![Just("0".to_string()), Just("-0".to_string())],
        1 => "-?[1-9][0-9]{15,80}",
        5 => float_text(),
    ]
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop_oneof![
            Just("true"), Just("false"), Just("null"), Just("NaN"), Just("Infinity"),
            Just("-Infinity")
        ].prop_map(String::from),
        4 => number(),
        4 => string(),
    ]
}

/// An object key literal: a small pool (so duplicates happen) or any string.
pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![
            Just("\"a\""), Just("\"b\""), Just("\"temp\""), Just("\"id\""), Just("\"\\u0061\""),
            Just("\"\u{e9}\""), Just("\"\\u00E9\""), Just("\"\\ud83d\\ude00\""), Just("\"\u{1F600}\""),
            Just("\"\\ud83d\""), Just("\"\u{ffff}\""), Just("\"\""), Just("\"A\""),
        ].prop_map(String::from),
        2 => string(),
    ]
}

fn object_text(members: Vec<(&'static str, String, String, &'static str)>) -> String {
    let inner: Vec<String> = members
        .into_iter()
        .map(|(w1, k, v, w2)| format!("{w1}{k}{w1}:{w2}{v}{w2}"))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// Any JSON value text.
pub fn value() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec((ws(), inner.clone(), ws()), 0..6).prop_map(|items| {
                let v: Vec<String> = items
                    .into_iter()
                    .map(|(a, x, b)| format!("{a}{x}{b}"))
                    .collect();
                format!("[{}]", v.join(","))
            }),
            proptest::collection::vec((ws(), key(), inner, ws()), 0..6).prop_map(object_text),
        ]
    })
}

/// A top-level object as its members (key literal, value literal), for signing and tampering.
pub fn members() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((key(), value()), 0..8)
}

/// Renders members as an object.
pub fn object(members: &[(String, String)]) -> String {
    let inner: Vec<String> = members.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// `n` deterministic samples of a strategy.
pub fn samples<S: Strategy>(s: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| s.new_tree(&mut runner).expect("strategy").current())
        .collect()
}
