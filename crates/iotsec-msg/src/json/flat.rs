//! The common case, fast: a top-level object of scalars written exactly as `json.dumps` writes
//! it, e.g. `{"device": "d1", "temp": 21.5, "seq": 7}`.
//!
//! The shape, all of it required: `{`, members separated by exactly `", "`, each
//! `"key": value` with exactly `": "` between, `}` as the last byte; keys and string values of
//! printable ASCII without `"` or `\` (nothing escaped, nothing to escape); values that are
//! strings, integers other than `-0` (at most 4300 digits), floats in fixed notation that are
//! already Python's `repr` of their value, `true`, `false` or `null`; at least one member; no
//! key twice.
//!
//! For such an object, the source bytes of each member are exactly what both
//! `json.dumps(d)` and `json.dumps(d, sort_keys=True)` write for it, so the canonical form is
//! the members' source spans in key order, and `json.dumps(d)` without one member is the source
//! with that member cut out. Recognising the shape is all or nothing: for any other input
//! (nesting, escapes, non-ASCII, other whitespace, exponents, `NaN`/`Infinity`, `-0`, a float
//! not in repr form, duplicate keys, syntax errors) [`parse`] returns `false` and the caller
//! uses the general parser, which then decides everything, errors included. So this path only
//! ever skips work; it never reaches a verdict of its own.

use alloc::vec::Vec;
use core::cmp::Ordering;

use super::float;
use super::parse::{INT_MAX_DIGITS, next_special, special_mask};

/// One member, as spans of the source.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlatMember {
    /// The key's first 8 bytes, big-endian, zero-padded (most comparisons end here).
    prefix: u64,
    /// Offset of the key's opening quote (where the member's bytes start).
    start: u32,
    /// Length of the key (between its quotes).
    klen: u32,
    /// Offset just past the value (where the member's bytes end).
    end: u32,
    /// Whether the value is a string.
    is_str: bool,
    /// Whether the value is an integer.
    is_int: bool,
}

impl FlatMember {
    pub(crate) fn key<'i>(&self, src: &'i [u8]) -> &'i [u8] {
        let a = self.start as usize + 1;
        &src[a..a + self.klen as usize]
    }

    /// The value's text (a string's without its quotes).
    fn value<'i>(&self, src: &'i [u8]) -> &'i [u8] {
        // key, closing quote, `: `
        let a = self.start as usize + self.klen as usize + 4;
        let b = self.end as usize;
        if self.is_str {
            &src[a + 1..b - 1]
        } else {
            &src[a..b]
        }
    }
}

/// A top-level member's value, for envelope fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    /// A string's value (generalized UTF-8).
    Str(&'a [u8]),
    /// An integer's text.
    Int(&'a [u8]),
    /// Anything else.
    Other,
}

/// Code point order of two keys. Keys here are ASCII, so byte order is code point order.
#[inline]
fn cmp_keys(src: &[u8], x: &FlatMember, y: &FlatMember) -> Ordering {
    match x.prefix.cmp(&y.prefix) {
        // Equal prefixes and one key at most 8 bytes long: that key is a prefix of the other
        // (keys here hold no NUL, so the other cannot have a byte where the padding is), and
        // the shorter key is the smaller; equal lengths mean equal keys.
        Ordering::Equal if x.klen <= 8 || y.klen <= 8 => x.klen.cmp(&y.klen),
        Ordering::Equal => x.key(src).cmp(y.key(src)),
        o => o,
    }
}

/// The first 8 bytes of the key starting at `at` (length `len`), big-endian, zero-padded.
#[inline]
fn prefix(src: &[u8], at: usize, len: usize) -> u64 {
    if let Some(chunk) = src.get(at..at + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let full = u64::from_be_bytes(w);
        if len >= 8 {
            full
        } else {
            // keep the first `len` bytes (len < 8, so the shift is at most 64 - 8)
            full & !(u64::MAX >> (8 * len))
        }
    } else {
        let mut p = 0u64;
        for i in 0..8 {
            let b = if i < len { src[at + i] } else { 0 };
            p = (p << 8) | u64::from(b);
        }
        p
    }
}

/// The key whose opening quote is at `pos`: the index of its closing quote and its prefix
/// (see `FlatMember::prefix`), or `None` when a byte other than a quote ends its plain run.
/// Keys of up to 7 bytes end inside the first eight bytes: one load gives both answers.
#[inline]
fn key_at(src: &[u8], pos: usize) -> Option<(usize, u64)> {
    let a = pos + 1;
    let Some(chunk) = src.get(a..a + 8) else {
        let end = next_special(src, a);
        return (src.get(end) == Some(&b'"')).then(|| (end, prefix(src, a, end - a)));
    };
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk);
    let x = u64::from_le_bytes(w);
    let first8 = x.swap_bytes(); // big-endian: the first byte is the most significant
    let mask = special_mask(x);
    if mask != 0 {
        let n = (mask.trailing_zeros() / 8) as usize; // < 8
        return (chunk[n] == b'"').then(|| (a + n, first8 & !(u64::MAX >> (8 * n))));
    }
    let end = next_special(src, a + 8);
    (src.get(end) == Some(&b'"')).then_some((end, first8))
}

/// The index of the first byte at or after `i` that is not an ASCII digit (or `src.len()`),
/// eight bytes at a time. A byte is a digit when its high nibble is 3 both as is and plus 6;
/// the `+ 6` carries out of a byte only from a non-digit, and only upwards, so the lowest
/// flagged byte is always a real non-digit.
#[inline]
fn digits_end(src: &[u8], mut i: usize) -> usize {
    const NIBBLE: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREE: u64 = 0x3030_3030_3030_3030;
    const SIX: u64 = 0x0606_0606_0606_0606;
    while let Some(chunk) = src.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w);
        let other = ((x & NIBBLE) ^ THREE) | ((x.wrapping_add(SIX) & NIBBLE) ^ THREE);
        if other != 0 {
            return i + (other.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(b'0'..=b'9') = src.get(i) {
        i += 1;
    }
    i
}

/// Scans a JSON number at `start`; returns its end and whether it is an integer, or `None`
/// when it is not in the flat shape (exponent, `-0`, a float not in repr form, bad syntax).
#[inline]
fn number(src: &[u8], start: usize) -> Option<(usize, bool)> {
    let int_start = start + usize::from(src.get(start) == Some(&b'-'));
    let int_end = match src.get(int_start) {
        Some(b'0') => int_start + 1,
        Some(b'1'..=b'9') => digits_end(src, int_start + 1),
        _ => return None,
    };
    match src.get(int_end) {
        Some(b'.') => {
            let frac = int_end + 1;
            let end = digits_end(src, frac);
            if end == frac || matches!(src.get(end), Some(b'e' | b'E')) {
                return None;
            }
            let (int, fraction) = (&src[int_start..int_end], &src[frac..end]);
            let repr = float::is_repr_parts(int, fraction)
                // a trailing zero in the fraction other than `.0` is never repr (and
                // `is_repr_slow` is dear)
                || ((fraction == b"0" || fraction.last() != Some(&b'0'))
                    && float::is_repr_slow(&src[int_start..end], int_end - int_start));
            repr.then_some((end, false))
        }
        Some(b'e' | b'E') => None,
        _ => {
            // `-0` prints as `0`; over-long integers are Python errors: both general.
            let minus_zero =
                int_start > start && int_end == int_start + 1 && src[int_start] == b'0';
            let ok = int_end - int_start <= INT_MAX_DIGITS && !minus_zero;
            ok.then_some((int_end, true))
        }
    }
}

/// Reusable buffers of the flat path.
#[derive(Debug, Default, Clone)]
pub(crate) struct FlatBufs {
    /// The members in input order.
    pub(crate) members: Vec<FlatMember>,
    /// Their sort keys in key order (see `sort`).
    pub(crate) order: Vec<u128>,
    /// The last sort's input and output, when its output depended on nothing else (see
    /// `sort`): a stream of messages usually repeats one key layout.
    memo_in: Vec<u128>,
    memo_out: Vec<u128>,
}

/// Recognises the flat shape; on success `bufs` holds the members and their order. On `false`
/// they hold garbage.
pub(crate) fn parse(src: &[u8], bufs: &mut FlatBufs) -> bool {
    let members = &mut bufs.members;
    members.clear();
    if src.first() != Some(&b'{') || src.len() > u32::MAX as usize - 8 {
        return false;
    }
    let mut pos = 1;
    loop {
        // key
        if src.get(pos) != Some(&b'"') {
            return false;
        }
        let start = pos;
        let Some((kend, key_prefix)) = key_at(src, pos) else {
            return false;
        };
        let klen = kend - pos - 1;
        pos = kend + 1;
        if src.get(pos..pos + 2) != Some(b": ") {
            return false;
        }
        pos += 2;
        // value
        let (mut is_str, mut is_int) = (false, false);
        match src.get(pos) {
            Some(b'"') => {
                let e = next_special(src, pos + 1);
                if src.get(e) != Some(&b'"') {
                    return false;
                }
                pos = e + 1;
                is_str = true;
            }
            Some(b'-' | b'0'..=b'9') => match number(src, pos) {
                Some((e, int)) => {
                    pos = e;
                    is_int = int;
                }
                None => return false,
            },
            Some(b't') if src.get(pos..pos + 4) == Some(b"true") => pos += 4,
            Some(b'f') if src.get(pos..pos + 5) == Some(b"false") => pos += 5,
            Some(b'n') if src.get(pos..pos + 4) == Some(b"null") => pos += 4,
            _ => return false,
        }
        members.push(FlatMember {
            prefix: key_prefix,
            // Offsets fit: the length was checked against u32 above.
            start: start as u32,
            klen: klen as u32,
            end: pos as u32,
            is_str,
            is_int,
        });
        match src.get(pos) {
            Some(b',') if src.get(pos + 1) == Some(&b' ') => pos += 2,
            Some(b'}') if pos + 1 == src.len() => break,
            _ => return false,
        }
    }
    sort(src, bufs)
}

/// Objects up to this size are insertion-sorted.
const SMALL: usize = 32;

/// The member index in a sort key.
#[inline]
fn index(key: u128) -> usize {
    (key as u32) as usize
}

/// Fills `order` with one key per member, `prefix << 64 | key length << 32 | index`, in code
/// point order of the keys; `false` on a duplicate key.
///
/// When no two keys share their first 8 bytes, the sorted keys are a function of the unsorted
/// ones alone (the integers decide every comparison), so the result for the same unsorted
/// keys as last time is last time's result: one comparison instead of a sort.
fn sort(src: &[u8], bufs: &mut FlatBufs) -> bool {
    let FlatBufs {
        members,
        order,
        memo_in,
        memo_out,
    } = bufs;
    order.clear();
    // Indices fit in 32 bits: each member takes at least 6 source bytes of a u32-sized input.
    order.extend(
        members
            .iter()
            .zip(0u128..)
            .map(|(m, i)| (u128::from(m.prefix) << 64) | (u128::from(m.klen) << 32) | i),
    );
    if !memo_out.is_empty() && order == memo_in {
        order.copy_from_slice(memo_out);
        return true;
    }
    memo_in.clear();
    memo_in.extend_from_slice(order);
    memo_out.clear();
    if order.len() <= SMALL {
        // Few members, often partly in order already.
        for i in 1..order.len() {
            let x = order[i];
            let mut j = i;
            while j > 0 && x < order[j - 1] {
                order[j] = order[j - 1];
                j -= 1;
            }
            order[j] = x;
        }
    } else {
        order.sort_unstable();
    }
    // Integer order is key order except between keys longer than 8 bytes that share their
    // first 8 (see `cmp_keys`); equal prefixes and lengths up to 8 bytes are duplicates.
    let mut bytes_decide = false;
    for w in order.windows(2) {
        if w[0] >> 64 == w[1] >> 64 {
            let (la, lb) = ((w[0] >> 32) as u32, (w[1] >> 32) as u32);
            if la > 8 && lb > 8 {
                bytes_decide = true;
            } else if la == lb {
                return false;
            }
        }
    }
    if bytes_decide {
        let m = |k: &u128| &members[index(*k)];
        order.sort_unstable_by(|x, y| cmp_keys(src, m(x), m(y)));
        return order
            .windows(2)
            .all(|w| cmp_keys(src, m(&w[0]), m(&w[1])) == Ordering::Less);
    }
    memo_out.extend_from_slice(order);
    true
}

/// Bytes copied at once for a short span (see `copy_short`).
const BLOCK: usize = 32;

/// Appends `src[a..a + len]`. A span of up to `BLOCK` bytes with `BLOCK` source bytes behind
/// its start is copied as one fixed-size block and the excess cut off again: two vector moves
/// instead of a `memcpy` call sized at run time.
#[inline]
fn copy_short(out: &mut Vec<u8>, src: &[u8], a: usize, len: usize) {
    match src.get(a..a + BLOCK) {
        Some(block) if len <= BLOCK => {
            let at = out.len();
            out.extend_from_slice(block);
            out.truncate(at + len);
        }
        _ => out.extend_from_slice(&src[a..a + len]),
    }
}

/// A recognised flat object (see the module doc).
#[derive(Debug)]
pub(crate) struct FlatDoc<'c, 'i> {
    pub(crate) members: &'c [FlatMember],
    /// Sort keys in key order (see `sort`).
    pub(crate) order: &'c [u128],
    pub(crate) src: &'i [u8],
}

impl FlatDoc<'_, '_> {
    /// The index (in input order) and value of the member `name`.
    /// `p` is the name's prefix (see `FlatMember::prefix`).
    #[inline]
    pub(crate) fn find(&self, name: &[u8], p: u64) -> Option<(u32, Scalar<'_>)> {
        let src = self.src;
        // From the end: `sig` usually comes last.
        let i = self.members.iter().rposition(|m| {
            m.prefix == p
                && m.klen as usize == name.len()
                && (name.len() <= 8 || m.key(src) == name)
        })?;
        let m = &self.members[i];
        let v = m.value(src);
        let value = if m.is_str {
            Scalar::Str(v)
        } else if m.is_int {
            Scalar::Int(v)
        } else {
            Scalar::Other
        };
        // i < members.len(), which fits in u32 (see `sort`).
        Some((i as u32, value))
    }

    /// `json.dumps(d, sort_keys=True)` without the member at input index `skip` (`u32::MAX`:
    /// none), appended to `out`.
    pub(crate) fn write_canonical_without(&self, skip: u32, out: &mut Vec<u8>) {
        let src = self.src;
        let start = out.len();
        out.reserve(src.len() + BLOCK);
        out.push(b'{');
        // Each member followed by `, `: in the source, every member but the last already is.
        let last = self.members.len() - 1; // a flat object has members
        for &k in self.order {
            let i = index(k);
            if i == skip as usize {
                continue;
            }
            let m = &self.members[i];
            let (a, len) = (m.start as usize, (m.end - m.start) as usize);
            if i == last {
                copy_short(out, src, a, len);
                out.extend_from_slice(b", ");
            } else {
                copy_short(out, src, a, len + 2);
            }
        }
        if out.len() > start + 1 {
            out.truncate(out.len() - 2); // the last `, `
        }
        out.push(b'}');
    }

    /// `json.dumps(d)` without the member at input index `skip` (`u32::MAX`: none): the source
    /// with that member and one separator cut out.
    pub(crate) fn write_python_without(&self, skip: u32, out: &mut Vec<u8>) {
        let src = self.src;
        let Some(m) = self.members.get(skip as usize) else {
            out.extend_from_slice(src);
            return;
        };
        match self.members.get(skip as usize + 1) {
            // `{... , ` + `next...}`: the skipped member and its following separator go.
            Some(next) => {
                out.extend_from_slice(&src[..m.start as usize]);
                out.extend_from_slice(&src[next.start as usize..]);
            }
            // the last member: it and its preceding separator go
            None if skip > 0 => {
                out.extend_from_slice(&src[..m.start as usize - 2]);
                out.push(b'}');
            }
            None => out.extend_from_slice(b"{}"),
        }
    }
}
