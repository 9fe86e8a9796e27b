//! Writers: `json.dumps(obj)` and `json.dumps(obj, sort_keys=True)` with Python's defaults
//! (`ensure_ascii=True`, separators `", "` and `": "`, `allow_nan=True`).

use alloc::vec::Vec;
use core::ops::Range;

use super::parse::CLASS;
use super::{Codec, Doc, Member, Node, Tag, float};

const HEX: &[u8; 16] = b"0123456789abcdef";

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
            self.c.members.push(Member {
                key: i,
                val: i + 1,
                order,
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
        let sorted = ms
            .windows(2)
            .all(|w| key_of(tape, text, src, w[0].key) < key_of(tape, text, src, w[1].key));
        if sorted {
            return start..members.len();
        }
        ms.sort_unstable_by(|x, y| {
            key_of(tape, text, src, x.key)
                .cmp(key_of(tape, text, src, y.key))
                .then(x.order.cmp(&y.order))
        });
        let mut w = start;
        for r in start..members.len() {
            let m = members[r];
            if w > start
                && key_of(tape, text, src, members[w - 1].key) == key_of(tape, text, src, m.key)
            {
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
                out.push(b'"');
                out.extend_from_slice(&self.src[span]);
                out.push(b'"');
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
                self.write_members(range, b"", out, sorted);
                self.c.members.truncate(start);
            }
        }
    }

    /// `{"k": v, ...}` for the members in `range` (in the stack's order), leaving out the key
    /// `skip` (when not empty).
    pub(crate) fn write_members(
        &mut self,
        range: Range<usize>,
        skip: &[u8],
        out: &mut Vec<u8>,
        sorted: bool,
    ) {
        out.push(b'{');
        let mut first = true;
        for k in range {
            let m = self.c.members[k];
            if !skip.is_empty() && self.key_bytes(m.key) == skip {
                continue;
            }
            if !first {
                out.extend_from_slice(b", ");
            }
            first = false;
            self.write_value(m.key, out, sorted);
            out.extend_from_slice(b": ");
            self.write_value(m.val, out, sorted);
        }
        out.push(b'}');
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
