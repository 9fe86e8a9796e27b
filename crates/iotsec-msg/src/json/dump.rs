//! Writers: `json.dumps(obj)` and `json.dumps(obj, sort_keys=True)` with Python's defaults
//! (`ensure_ascii=True`, separators `", "` and `": "`, `allow_nan=True`).

use alloc::vec::Vec;
use core::cmp::Ordering;
use core::ops::Range;

use super::parse::CLASS;
use super::{Codec, Doc, Member, Node, Tag, float};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Objects with at most this many members are sorted on the stack.
const SMALL: usize = 32;

/// A member's sort key without a node (for lookups by name).
pub(crate) fn probe(k: &[u8]) -> Member {
    let prefix = match k.first_chunk::<8>() {
        Some(p) => u64::from_be_bytes(*p),
        None => {
            let mut p = 0u64;
            for i in 0..8 {
                p = (p << 8) | u64::from(k.get(i).copied().unwrap_or(0));
            }
            p
        }
    };
    Member {
        key: u32::MAX,
        val: 0,
        order: 0,
        klen: u32::try_from(k.len()).unwrap_or(u32::MAX),
        prefix,
        span_start: u32::MAX,
        span_end: u32::MAX,
    }
}

/// Code point order of two keys from their prefixes, or `None` when the bytes must decide.
/// With equal prefixes and one key no longer than 8 bytes, that key is a prefix of the other
/// (the other's bytes past it are the same zeros as the padding), so the shorter is smaller.
#[inline(always)]
pub(crate) fn cmp_prefix(x: &Member, y: &Member) -> Option<Ordering> {
    match x.prefix.cmp(&y.prefix) {
        Ordering::Equal if x.klen <= 8 || y.klen <= 8 => Some(x.klen.cmp(&y.klen)),
        Ordering::Equal => None,
        o => Some(o),
    }
}

/// Code point order of two members' keys (both real members, not probes).
pub(crate) fn cmp_member(
    tape: &[Node],
    text: &[u8],
    src: &[u8],
    x: &Member,
    y: &Member,
) -> Ordering {
    cmp_prefix(x, y)
        .unwrap_or_else(|| key_of(tape, text, src, x.key).cmp(key_of(tape, text, src, y.key)))
}

/// The bytes of a key node (generalized UTF-8).
pub(crate) fn key_of<'a>(tape: &[Node], text: &'a [u8], src: &'a [u8], key: u32) -> &'a [u8] {
    let n = tape[key as usize];
    let (a, b) = (n.a as usize, n.a as usize + n.b as usize);
    match n.tag {
        Tag::StrDecoded => &text[a..b],
        _ => &src[a..b],
    }
}

impl Doc<'_, '_> {
    pub(crate) fn key_bytes(&self, key: u32) -> &[u8] {
        key_of(&self.c.tape, &self.c.text, self.src, key)
    }

    /// The index after the node `idx` and all its descendants.
    fn next(&self, idx: u32) -> u32 {
        let n = self.node(idx);
        match n.tag {
            Tag::Array | Tag::Object => n.a,
            _ => idx + 1,
        }
    }

    /// Pushes the members of object `obj` on the member stack, sorted by key (code point
    /// order), one per distinct key: the first occurrence's position and the last occurrence's
    /// value, which is what `json.loads` builds (`dict` insertion then overwrite).
    pub(crate) fn collect_members(&mut self, obj: u32) -> Range<usize> {
        let end = self.node(obj).a;
        let start = self.c.members.len();
        let mut i = obj + 1;
        let mut order = 0;
        while i < end {
            let k = self.key_bytes(i);
            let p = probe(k);
            self.c.members.push(Member {
                key: i,
                val: i + 1,
                order,
                klen: p.klen,
                prefix: p.prefix,
                span_start: u32::MAX,
                span_end: u32::MAX,
            });
            i = self.next(i + 1);
            order += 1;
        }
        let src = self.src;
        let Codec {
            tape,
            text,
            members,
            flags,
            ..
        } = &mut *self.c;
        let ms = &mut members[start..];
        let cmp = |x: &Member, y: &Member| cmp_member(tape, text, src, x, y);
        let less = |x: &Member, y: &Member| match cmp_prefix(x, y) {
            Some(o) => o == Ordering::Less,
            None => cmp(x, y) == Ordering::Less,
        };
        if ms.windows(2).all(|w| less(&w[0], &w[1])) {
            return start..members.len();
        }
        // Sort by (prefix, length, order): integer compares only, and exact whenever a key is
        // at most 8 bytes (see `cmp_prefix`). Keys longer than 8 bytes that share a prefix end
        // up next to each other; those runs are then re-sorted by their bytes.
        if ms.len() <= SMALL {
            // Sort 16-byte keys instead of 32-byte members, then permute once.
            let n = ms.len();
            let mut keys = [0u128; SMALL];
            for (i, m) in ms.iter().enumerate() {
                keys[i] = (u128::from(m.prefix) << 64) | (u128::from(m.klen) << 32) | i as u128;
            }
            let keys = &mut keys[..n];
            for i in 1..n {
                let x = keys[i];
                let mut j = i;
                while j > 0 && x < keys[j - 1] {
                    keys[j] = keys[j - 1];
                    j -= 1;
                }
                keys[j] = x;
            }
            let mut sorted = [ms[0]; SMALL];
            for (dst, k) in sorted.iter_mut().zip(keys.iter()) {
                *dst = ms[(*k as u32) as usize];
            }
            ms.copy_from_slice(&sorted[..n]);
        } else {
            ms.sort_unstable_by_key(|m| (m.prefix, m.klen, m.order));
        }
        let long_keys = ms.iter().filter(|m| m.klen > 8).count();
        let mut r = 0;
        while long_keys > 1 && r < ms.len() {
            let mut e = r + 1;
            while e < ms.len() && ms[e].prefix == ms[r].prefix {
                e += 1;
            }
            if e - r > 1 && ms[r..e].iter().filter(|m| m.klen > 8).count() > 1 {
                ms[r..e].sort_unstable_by(|x, y| cmp(x, y).then(x.order.cmp(&y.order)));
            }
            r = e;
        }
        let same = |x: &Member, y: &Member| {
            x.prefix == y.prefix
                && x.klen == y.klen
                && (x.klen <= 8 || key_of(tape, text, src, x.key) == key_of(tape, text, src, y.key))
        };
        let mut w = start;
        for r in start..members.len() {
            let m = members[r];
            if w > start && same(&members[w - 1], &m) {
                members[w - 1].val = m.val;
                flags.duplicate = true;
            } else {
                members[w] = m;
                w += 1;
            }
        }
        members.truncate(w);
        start..w
    }

    pub(crate) fn write_value(&mut self, idx: u32, out: &mut Vec<u8>, sorted: bool) {
        let n = self.node(idx);
        let span = n.a as usize..n.a as usize + n.b as usize;
        match n.tag {
            Tag::Null => out.extend_from_slice(b"null"),
            Tag::True => out.extend_from_slice(b"true"),
            Tag::False => out.extend_from_slice(b"false"),
            Tag::NaN => out.extend_from_slice(b"NaN"),
            Tag::Inf => out.extend_from_slice(b"Infinity"),
            Tag::NegInf => out.extend_from_slice(b"-Infinity"),
            Tag::Int => {
                // Python's int(): exact digits; "-0" is the int 0.
                let t = &self.src[span];
                out.extend_from_slice(if t == b"-0" { b"0" } else { t });
            }
            Tag::Float => {
                if !float::write_float(&self.src[span], out) {
                    self.c.flags.nonfinite = true;
                }
            }
            Tag::StrPlain => {
                // The source has the quotes around a plain string: copy them along.
                out.extend_from_slice(&self.src[span.start - 1..span.end + 1]);
            }
            Tag::StrRaw => write_escaped(&self.src[span], out),
            Tag::StrDecoded => write_escaped(&self.c.text[span], out),
            Tag::Array => {
                out.push(b'[');
                let mut i = idx + 1;
                while i < n.a {
                    if i != idx + 1 {
                        out.extend_from_slice(b", ");
                    }
                    self.write_value(i, out, sorted);
                    i = self.next(i);
                }
                out.push(b']');
            }
            Tag::Object => {
                let range = self.collect_members(idx);
                if !sorted {
                    self.c.members[range.clone()].sort_unstable_by_key(|m| m.order);
                }
                let start = range.start;
                self.write_members(range, u32::MAX, out, sorted);
                self.c.members.truncate(start);
            }
        }
    }

    /// `{"k": v, ...}` for the members in `range` (in the stack's order), leaving out the
    /// member whose key node is `skip` (`u32::MAX`: none).
    pub(crate) fn write_members(
        &mut self,
        range: Range<usize>,
        skip: u32,
        out: &mut Vec<u8>,
        sorted: bool,
    ) {
        out.push(b'{');
        let mut first = true;
        for k in range {
            let m = self.c.members[k];
            if m.key == skip {
                continue;
            }
            if !first {
                out.extend_from_slice(b", ");
            }
            first = false;
            self.write_member(m, out, sorted);
        }
        out.push(b'}');
    }

    /// `"key": value`. When both are already in their output form in the source and separated
    /// by exactly `": "` (what Python writes), that is one copy of the source.
    pub(crate) fn write_member(&mut self, m: Member, out: &mut Vec<u8>, sorted: bool) {
        let k = self.node(m.key);
        let v = self.node(m.val);
        if k.tag == Tag::StrPlain {
            let key_start = k.a as usize - 1;
            let key_end = (k.a + k.b) as usize + 1;
            let vs = v.a as usize - usize::from(v.tag == Tag::StrPlain);
            if self.src.get(key_end..vs) == Some(b": ") {
                if let Some((_, ve)) = self.verbatim(v) {
                    out.extend_from_slice(&self.src[key_start..ve]);
                    return;
                }
                if v.tag == Tag::Float {
                    // not its own repr (`verbatim` said so): key and separator, then format
                    out.extend_from_slice(&self.src[key_start..vs]);
                    let text = &self.src[v.a as usize..(v.a + v.b) as usize];
                    if !float::write_float_not_repr(text, out) {
                        self.c.flags.nonfinite = true;
                    }
                    return;
                }
            }
        }
        self.write_value(m.key, out, sorted);
        out.extend_from_slice(b": ");
        self.write_value(m.val, out, sorted);
    }

    /// The source range of a scalar whose output bytes are exactly its source text.
    fn verbatim(&self, n: Node) -> Option<(usize, usize)> {
        let (a, b) = (n.a as usize, (n.a + n.b) as usize);
        match n.tag {
            Tag::StrPlain => Some((a - 1, b + 1)),
            Tag::Int if &self.src[a..b] != b"-0" => Some((a, b)),
            Tag::Float if float::is_repr(&self.src[a..b]) => Some((a, b)),
            Tag::Null | Tag::True | Tag::False | Tag::NaN | Tag::Inf | Tag::NegInf => Some((a, b)),
            _ => None,
        }
    }
}

/// A string with `ensure_ascii`: printable ASCII as is, short escapes for `" \ \b \f \n \r \t`,
/// everything else (controls, 0x7F, non-ASCII) as lowercase `\uXXXX`, UTF-16 surrogate pairs
/// above U+FFFF. `s` is generalized UTF-8 (valid by construction: validated input or our own
/// encoder), so lone surrogates print as their own `\udXXX`.
pub(crate) fn write_escaped(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    let mut i = 0;
    while i < s.len() {
        let run = i;
        while i < s.len() && CLASS[s[i] as usize] == 0 {
            i += 1;
        }
        out.extend_from_slice(&s[run..i]);
        let Some(&b) = s.get(i) else { break };
        if b < 0x80 {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0C => out.extend_from_slice(b"\\f"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => push_u(out, u32::from(b)),
            }
            i += 1;
        } else {
            let len = match b {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let mut cp = u32::from(b) & (0x7F >> len);
            for k in 1..len {
                cp = (cp << 6) | (u32::from(s.get(i + k).copied().unwrap_or(0x80)) & 0x3F);
            }
            if cp >= 0x10000 {
                let v = cp - 0x10000;
                push_u(out, 0xD800 + (v >> 10));
                push_u(out, 0xDC00 + (v & 0x3FF));
            } else {
                push_u(out, cp);
            }
            i += len;
        }
    }
    out.push(b'"');
}

fn push_u(out: &mut Vec<u8>, u: u32) {
    out.extend_from_slice(&[
        b'\\',
        b'u',
        HEX[(u >> 12) as usize & 15],
        HEX[(u >> 8) as usize & 15],
        HEX[(u >> 4) as usize & 15],
        HEX[u as usize & 15],
    ]);
}
