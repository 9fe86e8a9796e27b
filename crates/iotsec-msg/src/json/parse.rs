//! A borrowed parser for the JSON that Python 3's `json.loads` accepts (default settings).
//!
//! It writes a flat tape of [`Node`]s that point into the input (or, for strings with escapes,
//! into a decoded-text buffer); nothing is allocated per message once the codec's buffers have
//! grown. Grammar, as CPython's `_json` scanner implements it:
//! - whitespace is exactly space, tab, LF, CR;
//! - numbers `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?` (so no leading zeros, no `+`);
//!   an integer with more than 4300 digits raises in Python (`sys.get_int_max_str_digits()`);
//! - the literals `true false null NaN Infinity -Infinity`;
//! - strings: no raw control characters below 0x20, escapes `\" \\ \/ \b \f \n \r \t \uXXXX`
//!   (hex digits of either case); a high-surrogate escape directly followed by a low-surrogate
//!   escape is one code point, any other surrogate escape stays a lone surrogate.
//!
//! Decoded strings are kept as "generalized UTF-8" (UTF-8 that may also encode lone surrogates),
//! whose byte order is code point order, which is the order Python sorts keys in.

use alloc::vec::Vec;

use super::{Flags, Node, Tag};
use crate::error::{Error, Syntax};

/// Python's `sys.get_int_max_str_digits()` default (CPython 3.11+).
pub(crate) const INT_MAX_DIGITS: usize = 4300;

// Byte classes inside a string: 0 = copy as is and print as is, 1 = quote, 2 = backslash,
// 3 = raw control character (an error), 4 = fine in the input but escaped on output (0x7F and
// every byte of a non-ASCII character).
const fn string_classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if i < 0x20 {
            3
        } else if i == b'"' as usize {
            1
        } else if i == b'\\' as usize {
            2
        } else if i >= 0x7F {
            4
        } else {
            0
        };
        i += 1;
    }
    t
}
pub(crate) static CLASS: [u8; 256] = string_classes();

pub(crate) struct Parser<'a, 'c> {
    src: &'a [u8],
    pos: usize,
    tape: &'c mut Vec<Node>,
    text: &'c mut Vec<u8>,
    flags: &'c mut Flags,
    max_depth: usize,
}

fn err(syntax: Syntax, offset: usize) -> Error {
    Error::Malformed { syntax, offset }
}

impl<'a, 'c> Parser<'a, 'c> {
    pub(crate) fn new(
        src: &'a [u8],
        tape: &'c mut Vec<Node>,
        text: &'c mut Vec<u8>,
        flags: &'c mut Flags,
        max_depth: usize,
    ) -> Self {
        Parser {
            src,
            pos: 0,
            tape,
            text,
            flags,
            max_depth,
        }
    }

    /// Parses one whole document (whitespace around it allowed, nothing else).
    pub(crate) fn document(mut self) -> Result<(), Error> {
        // UTF-8 is checked per string (`check_utf8`): the grammar admits non-ASCII bytes
        // nowhere else, so every non-ASCII byte of an accepted document has been checked.
        self.skip_ws();
        self.value(0)?;
        self.skip_ws();
        if self.pos != self.src.len() {
            return Err(err(Syntax::TrailingData, self.pos));
        }
        Ok(())
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn push(&mut self, tag: Tag, a: usize, b: usize) {
        // Offsets fit in u32: the codec refuses inputs of 4 GiB or more before parsing.
        self.tape.push(Node {
            tag,
            a: a as u32,
            b: b as u32,
        });
    }

    fn value(&mut self, depth: usize) -> Result<(), Error> {
        // Strings and numbers first, with plain compares: telemetry is mostly those, and a
        // predictable branch beats the jump table a `match` becomes.
        let b = self.peek();
        if b == Some(b'"') {
            return self.string();
        }
        if let Some(b'0'..=b'9') = b {
            return self.number();
        }
        match b {
            None => Err(err(Syntax::UnexpectedEnd, self.pos)),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string(),
            Some(b'-') if self.src.get(self.pos + 1) == Some(&b'I') => {
                self.literal(b"-Infinity", Tag::NegInf)
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true", Tag::True),
            Some(b'f') => self.literal(b"false", Tag::False),
            Some(b'n') => self.literal(b"null", Tag::Null),
            Some(b'N') => self.literal(b"NaN", Tag::NaN),
            Some(b'I') => self.literal(b"Infinity", Tag::Inf),
            Some(_) => Err(err(Syntax::UnexpectedByte, self.pos)),
        }
    }

    fn literal(&mut self, word: &[u8], tag: Tag) -> Result<(), Error> {
        if self.src.get(self.pos..self.pos + word.len()) != Some(word) {
            return Err(err(Syntax::UnexpectedByte, self.pos));
        }
        if matches!(tag, Tag::NaN | Tag::Inf | Tag::NegInf) {
            self.flags.nonfinite = true;
        }
        self.push(tag, self.pos, word.len());
        self.pos += word.len();
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<(), Error> {
        if depth > self.max_depth {
            return Err(Error::TooDeep {
                limit: self.max_depth,
            });
        }
        let me = self.tape.len();
        self.push(Tag::Object, 0, 0);
        self.pos += 1; // '{'
        self.skip_ws();
        let mut count = 0usize;
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                match self.peek() {
                    Some(b'"') => self.string()?,
                    None => return Err(err(Syntax::UnexpectedEnd, self.pos)),
                    Some(_) => return Err(err(Syntax::UnexpectedByte, self.pos)),
                }
                self.skip_ws();
                match self.peek() {
                    Some(b':') => self.pos += 1,
                    None => return Err(err(Syntax::UnexpectedEnd, self.pos)),
                    Some(_) => return Err(err(Syntax::UnexpectedByte, self.pos)),
                }
                self.skip_ws();
                self.value(depth)?;
                count += 1;
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    None => return Err(err(Syntax::UnexpectedEnd, self.pos)),
                    Some(_) => return Err(err(Syntax::UnexpectedByte, self.pos)),
                }
            }
        }
        let end = self.tape.len();
        self.tape[me].a = end as u32;
        self.tape[me].b = count as u32;
        Ok(())
    }

    fn array(&mut self, depth: usize) -> Result<(), Error> {
        if depth > self.max_depth {
            return Err(Error::TooDeep {
                limit: self.max_depth,
            });
        }
        let me = self.tape.len();
        self.push(Tag::Array, 0, 0);
        self.pos += 1; // '['
        self.skip_ws();
        let mut count = 0usize;
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.value(depth)?;
                count += 1;
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                    }
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    None => return Err(err(Syntax::UnexpectedEnd, self.pos)),
                    Some(_) => return Err(err(Syntax::UnexpectedByte, self.pos)),
                }
            }
        }
        let end = self.tape.len();
        self.tape[me].a = end as u32;
        self.tape[me].b = count as u32;
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), Error> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            None => return Err(err(Syntax::UnexpectedEnd, self.pos)),
            Some(_) => return Err(err(Syntax::UnexpectedByte, self.pos)),
        }
        let int_len = self.pos - int_start;
        let mut is_float = false;
        // A fraction needs a digit after the dot; otherwise Python stops before the dot (and
        // then fails on it, as we do).
        if self.peek() == Some(b'.') && matches!(self.src.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            self.digits();
            is_float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            let save = self.pos;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                self.pos = save; // Python backtracks; the caller then fails on the 'e'
            } else {
                is_float = true;
            }
        }
        if is_float {
            self.push(Tag::Float, start, self.pos - start);
        } else {
            if int_len > INT_MAX_DIGITS {
                return Err(err(Syntax::IntTooLong, start));
            }
            self.push(Tag::Int, start, self.pos - start);
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), Error> {
        self.pos += 1; // opening quote
        let start = self.pos;
        let mut non_ascii = false;
        loop {
            self.pos = next_special(self.src, self.pos);
            let Some(&b) = self.src.get(self.pos) else {
                return Err(err(Syntax::UnexpectedEnd, self.pos));
            };
            match b {
                b'"' => {
                    let tag = if non_ascii {
                        check_utf8(&self.src[start..self.pos], start)?;
                        Tag::StrRaw
                    } else {
                        Tag::StrPlain
                    };
                    self.push(tag, start, self.pos - start);
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => return self.string_with_escapes(start),
                0x7F.. => {
                    non_ascii = true;
                    self.pos += 1;
                }
                _ => return Err(err(Syntax::ControlChar, self.pos)),
            }
        }
    }

    /// The slow path: the string has a backslash at `self.pos`; decode it into `text`.
    fn string_with_escapes(&mut self, start: usize) -> Result<(), Error> {
        let text_start = self.text.len();
        self.text.extend_from_slice(&self.src[start..self.pos]);
        loop {
            let run = self.pos;
            while let Some(&b) = self.src.get(self.pos) {
                if CLASS[b as usize] & 3 == 0 {
                    // classes 0 and 4 (4 & 3 == 0): ordinary content
                    self.pos += 1;
                } else {
                    break;
                }
            }
            self.text.extend_from_slice(&self.src[run..self.pos]);
            let Some(&b) = self.src.get(self.pos) else {
                return Err(err(Syntax::UnexpectedEnd, self.pos));
            };
            match b {
                b'"' => {
                    // Escapes are ASCII, so the source span is UTF-8 iff its content is.
                    check_utf8(&self.src[start..self.pos], start)?;
                    self.pos += 1;
                    let len = self.text.len() - text_start;
                    self.push(Tag::StrDecoded, text_start, len);
                    return Ok(());
                }
                b'\\' => self.escape()?,
                _ => return Err(err(Syntax::ControlChar, self.pos)),
            }
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.src.get(at..at + 4)?;
        let mut v = 0u32;
        for &c in h {
            let d = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return None,
            };
            v = (v << 4) | u32::from(d);
        }
        Some(v)
    }

    fn escape(&mut self) -> Result<(), Error> {
        let at = self.pos;
        let Some(&c) = self.src.get(self.pos + 1) else {
            return Err(err(Syntax::UnexpectedEnd, self.pos + 1));
        };
        self.pos += 2;
        let byte = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0C,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let Some(mut cp) = self.hex4(self.pos) else {
                    return Err(err(Syntax::InvalidEscape, at));
                };
                self.pos += 4;
                if (0xD800..0xDC00).contains(&cp)
                    && self.src.get(self.pos..self.pos + 2) == Some(b"\\u")
                    && let Some(lo) = self.hex4(self.pos + 2)
                    && (0xDC00..0xE000).contains(&lo)
                {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    self.pos += 6;
                }
                if (0xD800..0xE000).contains(&cp) {
                    self.flags.lone_surrogate = true;
                }
                push_code_point(self.text, cp);
                return Ok(());
            }
            _ => return Err(err(Syntax::InvalidEscape, at)),
        };
        self.text.push(byte);
        Ok(())
    }
}

fn check_utf8(bytes: &[u8], offset: usize) -> Result<(), Error> {
    match core::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) => Err(err(Syntax::InvalidUtf8, offset + e.valid_up_to())),
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte at or after `i` that is a quote, a backslash, a control
/// character or 0x7F and above (or `src.len()`), eight bytes at a time (SWAR). In each test
/// below, borrows and carries only propagate upwards from a byte that really matches, so the
/// lowest flagged byte is always a real one.
/// The high bit of each byte of `x` (eight bytes, little-endian) that is a quote, a backslash,
/// a control character or 0x7F and above; exact for the lowest such byte (see `next_special`).
#[inline]
pub(crate) fn special_mask(x: u64) -> u64 {
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    let q = x ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = x ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    let high = x | x.wrapping_add(ONES);
    (control | quote | backslash | high) & HIGH
}

#[inline]
pub(crate) fn next_special(src: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = src.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let mask = special_mask(u64::from_le_bytes(w));
        if mask != 0 {
            return i + (mask.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = src.get(i) {
        if CLASS[b as usize] != 0 {
            return i;
        }
        i += 1;
    }
    i
}

/// Appends `cp` as (generalized) UTF-8: surrogates get their 3-byte form like any other code
/// point below 0x10000.
pub(crate) fn push_code_point(out: &mut Vec<u8>, cp: u32) {
    // Each `as u8` below keeps only bits masked to fit; cp <= 0x10FFFF by construction.
    if cp < 0x80 {
        out.push(cp as u8);
    } else if cp < 0x800 {
        out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]);
    } else if cp < 0x10000 {
        out.extend_from_slice(&[
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    } else {
        out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]);
    }
}
