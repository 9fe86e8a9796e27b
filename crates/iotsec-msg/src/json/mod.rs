//! Python-compatible JSON: parse what `json.loads` accepts, write what `json.dumps` writes.
//!
//! [`Codec`] owns reusable buffers (a tape of nodes, decoded string text, a member stack), so
//! parsing and re-serialising a stream of messages allocates nothing once they have grown.
//! [`Doc`] is one parsed document, borrowing the codec and the input.

mod dump;
mod flat;
mod float;
mod parse;

use alloc::vec::Vec;
use core::ops::Range;

pub(crate) use flat::Scalar;
use flat::{FlatBufs, FlatDoc};

use crate::error::{Error, Syntax};

/// Size and nesting limits applied before and while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message in bytes (default 64 KiB).
    pub max_bytes: usize,
    /// Deepest accepted nesting of arrays and objects; the top-level object is depth 1
    /// (default 64).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024,
            max_depth: 64,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    /// Literals: `a..a+b` in the input is the literal.
    Null,
    True,
    False,
    NaN,
    Inf,
    NegInf,
    /// `a..a+b` in the input: the integer's text.
    Int,
    /// `a..a+b` in the input: the float's text.
    Float,
    /// `a..a+b` in the input, printable ASCII without quote or backslash: written as is.
    StrPlain,
    /// `a..a+b` in the input, no escapes but characters that `ensure_ascii` escapes.
    StrRaw,
    /// `a..a+b` in the codec's decoded text (generalized UTF-8).
    StrDecoded,
    /// `a` = index after the last descendant, `b` = number of elements.
    Array,
    /// `a` = index after the last descendant, `b` = number of members; members are key node,
    /// value node(s), in input order.
    Object,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub(crate) tag: Tag,
    pub(crate) a: u32,
    pub(crate) b: u32,
}

/// Things Python accepts that strict (v2) parsing refuses; noted while parsing and writing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flags {
    pub(crate) nonfinite: bool,
    pub(crate) lone_surrogate: bool,
    pub(crate) duplicate: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Member {
    pub(crate) key: u32,
    pub(crate) val: u32,
    pub(crate) order: u32,
    /// Length of the key's bytes.
    pub(crate) klen: u32,
    /// The key's first 8 bytes, big-endian, zero-padded: most comparisons end here.
    pub(crate) prefix: u64,
    /// Where the canonical writer put `"key": value` of a top-level member whose bytes are the
    /// same in both output orders (no object inside); `u32::MAX` when not recorded.
    pub(crate) span_start: u32,
    pub(crate) span_end: u32,
}

/// Reusable parser and writer state.
#[derive(Debug, Default, Clone)]
pub struct Codec {
    limits: Limits,
    tape: Vec<Node>,
    text: Vec<u8>,
    members: Vec<Member>,
    flags: Flags,
    flat: FlatBufs,
}

impl Codec {
    /// A codec with the given limits.
    pub fn new(limits: Limits) -> Self {
        Codec {
            limits,
            ..Codec::default()
        }
    }

    /// The limits this codec enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Parses `input` as Python's `json.loads` would (lenient: duplicates, NaN and lone
    /// surrogates are accepted and noted for [`Doc::check_strict`]).
    pub fn parse<'c, 'i>(&'c mut self, input: &'i [u8]) -> Result<Doc<'c, 'i>, Error> {
        let limit = self.limits.max_bytes.min(u32::MAX as usize - 1);
        if input.len() > limit {
            return Err(Error::TooLarge {
                size: input.len(),
                limit,
            });
        }
        self.tape.clear();
        self.text.clear();
        self.members.clear();
        self.flags = Flags::default();
        parse::Parser::new(
            input,
            &mut self.tape,
            &mut self.text,
            &mut self.flags,
            self.limits.max_depth,
        )
        .document()?;
        Ok(Doc {
            c: self,
            src: input,
        })
    }
}

impl Codec {
    /// Parses a message whose top level should be an object: the flat fast path when the
    /// input has that shape ([`flat`]), else the general parser. Both give the same bytes and
    /// the same verdicts; the fast path only skips work.
    pub(crate) fn parse_message<'c, 'i>(
        &'c mut self,
        input: &'i [u8],
    ) -> Result<Message<'c, 'i>, Error> {
        if input.len() <= self.limits.max_bytes
            && self.limits.max_depth >= 1
            && flat::parse(input, &mut self.flat)
        {
            return Ok(Message::Flat(FlatDoc {
                members: &self.flat.members,
                order: &self.flat.order,
                src: input,
            }));
        }
        let mut doc = self.parse(input)?;
        if !doc.is_object() {
            return Err(Error::NotAnObject);
        }
        let members = doc.root_members();
        Ok(Message::Tree { doc, members })
    }
}

/// A parsed top-level object, in the fast flat form or as a general tree.
#[derive(Debug)]
pub(crate) enum Message<'c, 'i> {
    /// A flat object in `json.dumps` form (see [`flat`]).
    Flat(FlatDoc<'c, 'i>),
    /// Anything else that is an object; `members` are its top-level members.
    Tree {
        /// The document.
        doc: Doc<'c, 'i>,
        /// Its root members on the codec's member stack.
        members: Range<usize>,
    },
}

/// A member name to look up, with its 8-byte sort prefix worked out at compile time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Name {
    bytes: &'static [u8],
    prefix: u64,
}

impl Name {
    /// The name `bytes` (as the key's decoded bytes).
    pub(crate) const fn new(bytes: &'static [u8]) -> Name {
        let mut prefix = 0u64;
        let mut i = 0;
        while i < 8 {
            let b = if i < bytes.len() { bytes[i] } else { 0 };
            prefix = (prefix << 8) | b as u64;
            i += 1;
        }
        Name { bytes, prefix }
    }
}

/// Names one top-level member of a [`Message`] (to leave it out when writing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemberId(u32);

impl MemberId {
    /// No member.
    pub(crate) const NONE: MemberId = MemberId(u32::MAX);
}

impl Message<'_, '_> {
    /// The top-level member `name` (the last occurrence's value, as `json.loads` keeps).
    pub(crate) fn find(&self, name: Name) -> Option<(MemberId, Scalar<'_>)> {
        match self {
            Message::Flat(f) => f
                .find(name.bytes, name.prefix)
                .map(|(i, v)| (MemberId(i), v)),
            Message::Tree { doc, members } => {
                let m = doc.find_member(members, name.bytes)?;
                let n = doc.node(m.val);
                let value = if let Some(s) = doc.str_bytes(n) {
                    Scalar::Str(s)
                } else if let Some(t) = doc.int_text(n) {
                    Scalar::Int(t)
                } else {
                    Scalar::Other
                };
                Some((MemberId(m.key), value))
            }
        }
    }

    /// Whether the object has no members.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Message::Flat(f) => f.members.is_empty(),
            Message::Tree { members, .. } => members.is_empty(),
        }
    }

    /// Replaces `canon` with `json.dumps(d, sort_keys=True)` of the object without `skip`.
    pub(crate) fn write_canonical_without(&mut self, skip: MemberId, canon: &mut Vec<u8>) {
        canon.clear();
        match self {
            Message::Flat(f) => f.write_canonical_without(skip.0, canon),
            Message::Tree { doc, members } => {
                doc.write_root_canonical_without(members.clone(), skip.0, canon);
            }
        }
    }

    /// Appends `json.dumps(d)` of the object without `skip` to `out`. `canon` is what
    /// `write_canonical_without` wrote for the same `skip` (members are copied from it), or
    /// empty. Call it after the last `find`.
    pub(crate) fn write_python_without(&mut self, skip: MemberId, canon: &[u8], out: &mut Vec<u8>) {
        match self {
            Message::Flat(f) => f.write_python_without(skip.0, out),
            Message::Tree { doc, members } => {
                doc.write_root_python_without(members.clone(), skip.0, canon, out);
            }
        }
    }

    /// Strict (v2) checks (see [`Doc::check_strict`]); a flat object always passes them.
    /// Call after `write_canonical_without`.
    pub(crate) fn check_strict(&self) -> Result<(), Error> {
        match self {
            Message::Flat(_) => Ok(()),
            Message::Tree { doc, .. } => doc.check_strict(),
        }
    }
}

/// One parsed document.
#[derive(Debug)]
pub struct Doc<'c, 'i> {
    c: &'c mut Codec,
    src: &'i [u8],
}

impl<'i> Doc<'_, 'i> {
    /// Python's `json.dumps(obj, sort_keys=True)` of the whole document.
    pub fn write_canonical(&mut self, out: &mut Vec<u8>) {
        self.write_value(0, out, true);
    }

    /// Python's `json.dumps(obj)`: input key order (a duplicated key keeps its first position
    /// and its last value, like a `dict`).
    pub fn write_python(&mut self, out: &mut Vec<u8>) {
        self.write_value(0, out, false);
    }

    /// True when the document is an object.
    pub fn is_object(&self) -> bool {
        matches!(self.c.tape.first(), Some(n) if n.tag == Tag::Object)
    }

    pub(crate) fn node(&self, idx: u32) -> Node {
        // Indices come from the tape itself.
        self.c.tape[idx as usize]
    }

    /// A string node's value as generalized UTF-8 (may hold lone surrogates).
    pub(crate) fn str_bytes(&self, n: Node) -> Option<&[u8]> {
        let (a, b) = (n.a as usize, n.a as usize + n.b as usize);
        match n.tag {
            Tag::StrPlain | Tag::StrRaw => Some(&self.src[a..b]),
            Tag::StrDecoded => Some(&self.c.text[a..b]),
            _ => None,
        }
    }

    pub(crate) fn int_text(&self, n: Node) -> Option<&'i [u8]> {
        match n.tag {
            Tag::Int => Some(&self.src[n.a as usize..(n.a + n.b) as usize]),
            _ => None,
        }
    }

    /// Collects the top-level object's members (sorted, deduplicated) on the member stack and
    /// returns their range. Call once per document, before any other member collection.
    pub(crate) fn root_members(&mut self) -> core::ops::Range<usize> {
        self.c.members.clear();
        self.collect_members(0)
    }

    /// The key and value nodes of the top-level member `name`.
    pub(crate) fn find_member(
        &self,
        range: &core::ops::Range<usize>,
        name: &[u8],
    ) -> Option<Member> {
        let members = &self.c.members[range.clone()];
        let probe = dump::probe(name);
        members
            .binary_search_by(|m| {
                dump::cmp_prefix(m, &probe).unwrap_or_else(|| self.key_bytes(m.key).cmp(name))
            })
            .ok()
            .map(|i| members[i])
    }

    /// Writes the canonical bytes of the top-level object without the member whose key node
    /// is `skip` (`u32::MAX`: none) to `canon` (from its start), noting where each member's
    /// bytes went so that `write_root_python_without` can copy instead of formatting again.
    pub(crate) fn write_root_canonical_without(
        &mut self,
        range: core::ops::Range<usize>,
        skip: u32,
        canon: &mut Vec<u8>,
    ) {
        canon.push(b'{');
        let mut first = true;
        for k in range {
            let m = self.c.members[k];
            if m.key == skip {
                continue;
            }
            if !first {
                canon.extend_from_slice(b", ");
            }
            first = false;
            let start = canon.len();
            self.write_member(m, canon, true);
            if !self.has_object(m.val) {
                // Beyond u32 offsets (never with sane limits) the member is just rewritten.
                if let (Ok(a), Ok(b)) = (u32::try_from(start), u32::try_from(canon.len())) {
                    self.c.members[k].span_start = a;
                    self.c.members[k].span_end = b;
                }
            }
        }
        canon.push(b'}');
    }

    /// Writes `json.dumps(d)` of the top-level object without the member `skip`, copying the
    /// members recorded in `canon` by `write_root_canonical_without` (pass the same buffer, or
    /// an empty one if it was not called). Leaves the range in input order: call it after the
    /// last `find` on the range.
    pub(crate) fn write_root_python_without(
        &mut self,
        range: core::ops::Range<usize>,
        skip: u32,
        canon: &[u8],
        out: &mut Vec<u8>,
    ) {
        self.c.members[range.clone()].sort_unstable_by_key(|m| m.order);
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
            match canon.get(m.span_start as usize..m.span_end as usize) {
                Some(bytes) if m.span_start != u32::MAX => out.extend_from_slice(bytes),
                _ => self.write_member(m, out, false),
            }
        }
        out.push(b'}');
    }

    /// Whether the value at `idx` is or contains an object (whose key order differs between
    /// the two output orders).
    fn has_object(&self, idx: u32) -> bool {
        let n = self.node(idx);
        match n.tag {
            Tag::Object => true,
            Tag::Array => self.c.tape[idx as usize + 1..n.a as usize]
                .iter()
                .any(|c| c.tag == Tag::Object),
            _ => false,
        }
    }

    /// Strict (v2) checks: no duplicate keys, no NaN/Infinity (literal or overflowing), no lone
    /// surrogates. Duplicate and overflow detection happen while writing, so call this after
    /// writing the canonical form.
    pub(crate) fn check_strict(&self) -> Result<(), Error> {
        let f = self.c.flags;
        let syntax = if f.duplicate {
            Syntax::DuplicateKey
        } else if f.nonfinite {
            Syntax::NonFinite
        } else if f.lone_surrogate {
            Syntax::LoneSurrogate
        } else {
            return Ok(());
        };
        Err(Error::Malformed { syntax, offset: 0 })
    }
}

#[cfg(test)]
mod tests;
