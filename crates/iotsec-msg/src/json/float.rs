//! Python's `float.__repr__` for a JSON number's text, as `json.dumps` writes it.
//!
//! Python parses the text correctly rounded, then prints the shortest digit string that reads
//! back as the same double (David Gay's `dtoa` mode 0), laid out by `format_float_short` with
//! `Py_DTSF_ADD_DOT_0`:
//! - with the decimal point position `decpt` (value = 0.d1d2...dn x 10^decpt), fixed notation
//!   when -4 < decpt <= 16, exponent notation otherwise;
//! - exponent notation is `d1[.d2...dn]e±XX`: the sign is always written, at least two digits;
//! - fixed notation of a whole number keeps `.0`; zero is `0.0` or `-0.0`;
//! - infinities (`1e400`) are `Infinity` / `-Infinity`.
//!
//! Fast path: a text with at most 15 significant digits, in the normal range, already *is* the
//! shortest representation of its double (10^15 < 2^52, so two different decimals of at most
//! 15 digits never round to the same double), so its digits are laid out directly without
//! converting to binary at all. Everything else goes through core's correctly rounded `parse`
//! and core's shortest round-trip `{:e}` formatting.

use alloc::vec::Vec;
use core::fmt::Write as _;

/// Significant digits that always survive decimal -> double -> shortest decimal (DBL_DIG).
const FAST_DIGITS: usize = 15;
/// Decimal exponents for which the fast path is safe (far from subnormals and overflow).
const FAST_DECPT: core::ops::RangeInclusive<i64> = -290..=290;

/// Significant digits of a decimal text and its decimal point position
/// (value = 0.d1d2...dn x 10^decpt), trailing zeros dropped.
struct Decimal {
    digits: [u8; 20],
    /// Significant digits, up to and including the last nonzero one.
    n: usize,
    decpt: i64,
    /// More significant digits than `digits` holds (only the fast-path test cares).
    overflow: bool,
}

/// Scans `[0-9]*(.[0-9]*)?([eE][+-]?[0-9]+)?` (no sign): JSON number text or ryu's output.
fn scan(body: &[u8]) -> Decimal {
    let mut d = Decimal {
        digits: [0; 20],
        n: 0,
        decpt: 0,
        overflow: false,
    };
    let mut seen = 0usize; // significant digits seen, trailing zeros included
    let mut in_frac = false;
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        match c {
            b'0'..=b'9' => {
                if seen == 0 && c == b'0' {
                    if in_frac {
                        d.decpt -= 1;
                    }
                } else {
                    if !in_frac {
                        d.decpt += 1;
                    }
                    if seen < d.digits.len() {
                        d.digits[seen] = c;
                        if c != b'0' {
                            d.n = seen + 1;
                        }
                    } else if c != b'0' {
                        d.overflow = true;
                    }
                    seen += 1;
                }
            }
            b'.' => in_frac = true,
            _ => break, // 'e' or 'E'
        }
        i += 1;
    }
    if i < body.len() {
        // exponent: [eE][+-]?digits, saturated (anything this large is zero or infinity)
        let mut j = i + 1;
        let mut eneg = false;
        if let Some(&s @ (b'+' | b'-')) = body.get(j) {
            eneg = s == b'-';
            j += 1;
        }
        let mut e: i64 = 0;
        for &c in body.get(j..).unwrap_or(&[]) {
            e = (e * 10 + i64::from(c.wrapping_sub(b'0') % 10)).min(1_000_000_000);
        }
        d.decpt += if eneg { -e } else { e };
    }
    d
}

/// Whether `text` (a JSON float) is already Python's repr of its value: fixed notation with a
/// decimal point position Python prints in fixed notation, at most 15 significant digits (so it
/// is the shortest round-trip string, see the module doc), and no trailing zero in the
/// fraction except a lone `.0`.
pub(crate) fn is_repr(text: &[u8]) -> bool {
    let body = text.strip_prefix(b"-").unwrap_or(text);
    let Some(dot) = body.iter().position(|&c| c == b'.') else {
        return false; // exponent notation
    };
    let (int, frac) = (&body[..dot], &body[dot + 1..]);
    if frac.iter().any(|&c| !c.is_ascii_digit()) {
        return false; // has an exponent
    }
    is_repr_parts(int, frac)
}

/// `is_repr` of a float in fixed notation, given the digits before and after its point
/// (`int` without a sign; both non-empty, JSON grammar).
#[inline]
pub(crate) fn is_repr_parts(int: &[u8], frac: &[u8]) -> bool {
    if frac == b"0" {
        // a whole number: digits of the integer part without its trailing zeros
        let sig = int.len() - int.iter().rev().take_while(|&&c| c == b'0').count();
        return int.len() <= 16 && sig <= FAST_DIGITS;
    }
    if frac.last() == Some(&b'0') {
        return false;
    }
    if int == b"0" {
        let zeros = frac.iter().take_while(|&&c| c == b'0').count();
        zeros < 4 && frac.len() - zeros <= FAST_DIGITS
    } else {
        int.len() + frac.len() <= FAST_DIGITS
    }
}

/// Whether `body` (a JSON float in fixed notation without its sign, `int.frac` with the point
/// at `dot`, that `is_repr_parts` turned down, such as the 17 significant digits of a
/// full-precision value) is nevertheless Python's repr of its value: exactly what `slow`
/// writes for it, decided the same way (correctly rounded value, ryu's shortest digits, no
/// possible tie, the fixed-notation range) and compared with the text.
pub(crate) fn is_repr_slow(body: &[u8], dot: usize) -> bool {
    let (Some(int), Some(frac)) = (body.get(..dot), body.get(dot + 1..)) else {
        return false;
    };
    // JSON's integer part has no leading zeros; a fraction's leading zeros after `0.` are
    // not significant (four or more put the value below 1e-4: never fixed notation).
    let sig = if int == b"0" {
        let zeros = frac.iter().take_while(|&&c| c == b'0').count();
        if zeros >= 4 {
            return false;
        }
        frac.len() - zeros
    } else {
        int.len() + frac.len()
    };
    // A repr has at most 17 significant digits; then the digits fit a u64 (below 10^17).
    if sig > 17 {
        return false;
    }
    let mut w = 0u64;
    for &c in int {
        w = w * 10 + u64::from(c - b'0');
    }
    for &c in frac {
        w = w * 10 + u64::from(c - b'0');
    }
    let Some(value) = fixed_to_f64(w, frac.len()) else {
        return false;
    };
    if !(1e-4..1e16).contains(&value) || tie_possible(value) {
        return false;
    }
    // ryu writes `int.frac` in this range (see `slow`)
    let mut ryu_buf = ryu::Buffer::new();
    ryu_buf.format_finite(value).as_bytes() == body
}

/// `w / 10^k` correctly rounded (ties to even), for `w < 10^17`; `None` when `k > 21` (then
/// the value is below 1e-4, outside fixed notation, so never asked for).
fn fixed_to_f64(w: u64, k: usize) -> Option<f64> {
    const POW10: [f64; 22] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21,
    ];
    let scale_down = *POW10.get(k)?;
    if w < 1 << 53 {
        // Clinger's fast path: both operands exact (10^k is, up to 10^22), and IEEE division
        // rounds correctly.
        return Some(w as f64 / scale_down);
    }
    // w * 2^71 / 10^k in integers: w < 2^57 keeps the numerator in 128 bits, and with
    // w >= 2^53 and 10^k < 2^70 the quotient has at least 55 bits to round from.
    let num = u128::from(w) << 71;
    let den = 10u128.pow(k as u32); // k <= 21
    let (q, r) = (num / den, num % den);
    let shift = 128 - q.leading_zeros() - 53; // >= 2
    let mut m = (q >> shift) as u64; // 53 bits
    let rest = q & ((1u128 << shift) - 1);
    let half = 1u128 << (shift - 1);
    if rest > half || (rest == half && (r != 0 || m & 1 == 1)) {
        m += 1;
    }
    // m <= 2^53 is exact in f64, and the power of two is in the normal range: exact product.
    let exp = i64::from(shift) - 71;
    let pow2 = f64::from_bits(((1023 + exp) as u64) << 52);
    Some(m as f64 * pow2)
}

/// Writes Python's repr of the JSON float `text` (already validated by the parser).
/// Returns false when the value is infinite (`1e400`), which strict (v2) parsing rejects.
pub(crate) fn write_float(text: &[u8], out: &mut Vec<u8>) -> bool {
    if is_repr(text) {
        out.extend_from_slice(text);
        return true;
    }
    write_float_not_repr(text, out)
}

/// `write_float` for a text already known not to be its own repr (`is_repr` returned false).
pub(crate) fn write_float_not_repr(text: &[u8], out: &mut Vec<u8>) -> bool {
    let (neg, body) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let d = scan(body);
    if d.n == 0 && !d.overflow {
        out.extend_from_slice(if neg { b"-0.0" } else { b"0.0" });
        return true;
    }
    if !d.overflow && d.n <= FAST_DIGITS && FAST_DECPT.contains(&d.decpt) {
        layout(neg, &d.digits[..d.n], d.decpt, out);
        return true;
    }
    slow(text, out)
}

fn slow(text: &[u8], out: &mut Vec<u8>) -> bool {
    // The parser only hands over ASCII number text that matches JSON's grammar, which core's
    // `parse` accepts; a failure would be a bug, so print a value that can only fail to verify.
    let value: f64 = match core::str::from_utf8(text).ok().and_then(|s| s.parse().ok()) {
        Some(v) => v,
        None => {
            out.extend_from_slice(b"NaN");
            return false;
        }
    };
    if value.is_infinite() {
        out.extend_from_slice(if value < 0.0 {
            b"-Infinity"
        } else {
            b"Infinity"
        });
        return false;
    }
    let neg = value.is_sign_negative();
    if value == 0.0 {
        out.extend_from_slice(if neg { b"-0.0" } else { b"0.0" });
        return true;
    }
    let abs = value.abs();
    // ryu: the shortest round-trip digits, nearest the exact value.
    let mut ryu_buf = ryu::Buffer::new();
    let shortest = ryu_buf.format_finite(abs).as_bytes();
    let tie = tie_possible(abs);
    if !tie && (1e-4..1e16).contains(&abs) {
        // Where Python uses fixed notation (-4 < decpt <= 16), ryu does too (it does for
        // -5 < decpt <= 16) with the same layout: `ddd.ddd`, `0.000ddd`, `ddd00.0`.
        if neg {
            out.push(b'-');
        }
        out.extend_from_slice(shortest);
        return true;
    }
    let mut d = scan(shortest);
    // Among the shortest strings that round-trip, Python's dtoa returns the one nearest the
    // exact binary value, ties to even (1.3800132526897723e15 is exactly ...772.25 and prints
    // as ...772.2). On a possible tie, take the correctly rounded (ties-to-even) string of the
    // same length from core's exact formatting when it round-trips too.
    if d.n > 0 && tie {
        let mut exact = StackBuf::default();
        if write!(exact, "{abs:.*e}", d.n - 1).is_ok() {
            let back: Option<f64> = core::str::from_utf8(exact.as_bytes())
                .ok()
                .and_then(|s| s.parse().ok());
            if back == Some(abs) {
                d = scan(exact.as_bytes());
            }
        }
    }
    layout(neg, &d.digits[..d.n], d.decpt, out);
    true
}

/// Whether the exact value of `x` (positive, finite, nonzero) could lie exactly halfway between
/// two 17-or-fewer-digit decimals, i.e. whether its exact decimal expansion has at most 18
/// significant digits. `x = m * 2^e` with `m` odd: for `e >= 0` it is an integer (ties only
/// below ~1e19); for `e < 0` it is `m * 5^-e / 10^-e`, whose significant digits number at least
/// `(bitlen(m) - 1) * log10(2) + (-e) * log10(5)`. Typical telemetry values have 40+ digits, so
/// the exact-formatting check is skipped for them.
fn tie_possible(x: f64) -> bool {
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7FF) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    let (mut m, mut e) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), biased - 1075)
    };
    if m == 0 {
        return false;
    }
    let tz = m.trailing_zeros();
    m >>= tz;
    e += i64::from(tz);
    if e >= 0 {
        return x < 1e19;
    }
    let bitlen = i64::from(64 - m.leading_zeros());
    // lower bound of the digit count, in units of 1e-5 digits
    (bitlen - 1) * 30_103 + (-e) * 69_897 <= 19 * 100_000
}

/// Lays out `digits` (no leading or trailing zeros, not empty) with the decimal point position
/// `decpt` the way CPython's `format_float_short` does for `repr`.
fn layout(neg: bool, digits: &[u8], decpt: i64, out: &mut Vec<u8>) {
    if neg {
        out.push(b'-');
    }
    let n = digits.len() as i64;
    if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            out.extend_from_slice(b"0.");
            for _ in 0..-decpt {
                out.push(b'0');
            }
            out.extend_from_slice(digits);
        } else if decpt < n {
            let (int, frac) = digits.split_at(decpt as usize);
            out.extend_from_slice(int);
            out.push(b'.');
            out.extend_from_slice(frac);
        } else {
            out.extend_from_slice(digits);
            for _ in 0..decpt - n {
                out.push(b'0');
            }
            out.extend_from_slice(b".0");
        }
    } else {
        let (first, rest) = digits.split_at(1);
        out.extend_from_slice(first);
        if !rest.is_empty() {
            out.push(b'.');
            out.extend_from_slice(rest);
        }
        out.push(b'e');
        let e = decpt - 1;
        out.push(if e < 0 { b'-' } else { b'+' });
        let mut e = e.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        let mut tmp = [0u8; 20];
        let mut t = tmp.len();
        loop {
            t -= 1;
            tmp[t] = b'0' + (e % 10) as u8;
            e /= 10;
            if e == 0 {
                break;
            }
        }
        out.extend_from_slice(&tmp[t..]);
    }
}

/// A fixed buffer for core's float formatting (no allocation on the slow path either).
struct StackBuf {
    buf: [u8; 40],
    len: usize,
}

impl Default for StackBuf {
    fn default() -> Self {
        StackBuf {
            buf: [0; 40],
            len: 0,
        }
    }
}

impl StackBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fixed_to_f64` against core's correctly rounded parse, on decimals of 1 to 17 digits
    /// with the point anywhere up to 21 places in, exact halfway cases included.
    #[test]
    fn fixed_conversion_rounds_like_core() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut cases: Vec<(u64, usize)> = Vec::new();
        for _ in 0..300_000 {
            let digits = 1 + next() % 17;
            let w = next() % 10u64.pow(digits as u32);
            cases.push((w, (next() % 22) as usize));
        }
        // halfway between two doubles above 2^53
        for e in 1..4u32 {
            for m in [(1u64 << 53) + 1, (1u64 << 53) + 3, (1u64 << 54) - 1] {
                let v = m << e >> 1;
                cases.push((v, 0));
                if v < 10_000_000_000_000_000 {
                    cases.push((v * 10, 1));
                }
            }
        }
        cases.push((99_999_999_999_999_999, 21));
        cases.push((10_000_000_000_000_000, 0));
        for (w, k) in cases {
            let digits = alloc::format!("{w:0>width$}", width = k + 1);
            let (int, frac) = digits.split_at(digits.len() - k);
            let text = alloc::format!("{int}.{frac}");
            let want: f64 = text.trim_end_matches('.').parse().unwrap();
            assert_eq!(fixed_to_f64(w, k), Some(want), "{text}");
        }
        assert_eq!(fixed_to_f64(1, 22), None);
    }

    /// `is_repr_slow` against the slow path's own output (what the general writer prints).
    #[test]
    fn slow_repr_check_agrees_with_the_writer() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut taken = 0;
        for i in 0..200_000u64 {
            let e = (next() % 24) as i32 - 6;
            let v = (next() >> 11) as f64 * 2f64.powi(-53) * 10f64.powi(e);
            let text = match i % 3 {
                0 => alloc::format!("{v:?}"),
                1 => alloc::format!("{v:.*}", (next() % 19) as usize),
                _ => alloc::format!("{:.*}", (next() % 6) as usize, v * 1e-4),
            };
            let Some(dot) = text.find('.') else { continue };
            if text.contains('e') {
                continue;
            }
            let mut out = Vec::new();
            write_float_not_repr(text.as_bytes(), &mut out);
            let (int, frac) = (&text.as_bytes()[..dot], &text.as_bytes()[dot + 1..]);
            if is_repr_slow(text.as_bytes(), dot) {
                assert_eq!(out, text.as_bytes(), "{text}");
                taken += 1;
            } else if out == text.as_bytes() && !is_repr_parts(int, frac) {
                // missed: only values whose exact expansion is short enough for a tie
                assert!(tie_possible(text.parse().unwrap()), "{text}");
            }
        }
        assert!(taken > 50_000, "{taken}");
    }

    fn repr(text: &str) -> alloc::string::String {
        let mut out = Vec::new();
        write_float(text.as_bytes(), &mut out);
        alloc::string::String::from_utf8(out).unwrap()
    }

    #[test]
    fn python_repr_cases() {
        for (text, want) in [
            ("1e16", "1e+16"),
            ("1e15", "1000000000000000.0"),
            ("1e-5", "1e-05"),
            ("1e-4", "0.0001"),
            ("0.00001", "1e-05"),
            ("1.5e-7", "1.5e-07"),
            ("5e-324", "5e-324"),
            ("4.9e-324", "5e-324"),
            ("2.2250738585072011e-308", "2.225073858507201e-308"),
            ("9007199254740993.0", "9007199254740992.0"),
            ("1e400", "Infinity"),
            ("-1e400", "-Infinity"),
            ("-0.0", "-0.0"),
            ("0.0", "0.0"),
            ("-0e5", "-0.0"),
            ("1e-400", "0.0"),
            ("100.0", "100.0"),
            ("1E2", "100.0"),
            ("21.50", "21.5"),
            ("0.1", "0.1"),
            ("0.30000000000000004", "0.30000000000000004"),
            ("123456789012345678", "1.2345678901234568e+17"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("9999999999999998.0", "9999999999999998.0"),
            ("-1.3800132526897723e15", "-1380013252689772.2"),
            ("12345.678e-3", "12.345678"),
            ("000.5e1", "5.0"),
        ] {
            assert_eq!(repr(text), want, "{text}");
            // is_repr: the text is its own repr exactly when it says so
            if is_repr(text.as_bytes()) {
                assert_eq!(text, want, "is_repr({text})");
            }
        }
        for text in [
            "21.97",
            "0.0001",
            "100.0",
            "0.0",
            "-0.0",
            "-1.5",
            "1000000000000000.0",
        ] {
            assert!(is_repr(text.as_bytes()), "{text}");
            assert_eq!(repr(text), text);
        }
        for text in [
            "0.00001",
            "1.50",
            "1e5",
            "1.0e5",
            "12345678901234567.0",
            "0.30000000000000004",
        ] {
            assert!(!is_repr(text.as_bytes()), "{text}");
        }
    }
}
