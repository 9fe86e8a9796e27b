//! Printable strings in binary data, like `strings(1)`: runs of at least `min` printable ASCII
//! bytes (0x20..=0x7e and tab). Pure and allocation-free; fuzzed (`fuzz/fuzz_targets/
//! audit_strings.rs`) because firmware images are untrusted input.

/// True for the bytes `strings` prints.
#[inline]
pub fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b) || b == b'\t'
}

/// Iterator over `(offset, run)` of printable runs of at least `min` bytes.
#[derive(Debug, Clone)]
pub struct Strings<'a> {
    bytes: &'a [u8],
    pos: usize,
    min: usize,
}

/// The printable runs of `bytes` that are at least `min` bytes long (`min` 0 counts as 1).
pub fn strings(bytes: &[u8], min: usize) -> Strings<'_> {
    Strings {
        bytes,
        pos: 0,
        min: min.max(1),
    }
}

impl<'a> Iterator for Strings<'a> {
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.bytes;
        while self.pos < bytes.len() {
            // Skip non-printable bytes.
            let start = match bytes[self.pos..].iter().position(|&b| printable(b)) {
                Some(i) => self.pos + i,
                None => {
                    self.pos = bytes.len();
                    return None;
                }
            };
            let end = bytes[start..]
                .iter()
                .position(|&b| !printable(b))
                .map_or(bytes.len(), |i| start + i);
            self.pos = end;
            if end - start >= self.min {
                return Some((start, &bytes[start..end]));
            }
        }
        None
    }
}

/// Appends every run of at least `min` bytes to `joined`, each followed by `\n`, and records
/// `(position in joined, offset in bytes)` for each run in `index`, so a match found in
/// `joined` can be mapped back to the file with [`file_offset`].
pub fn extract_joined(
    bytes: &[u8],
    min: usize,
    joined: &mut Vec<u8>,
    index: &mut Vec<(usize, u64)>,
) {
    for (off, run) in strings(bytes, min) {
        index.push((joined.len(), off as u64));
        joined.extend_from_slice(run);
        joined.push(b'\n');
    }
}

/// Maps a position in a buffer built by [`extract_joined`] back to the offset in the binary.
pub fn file_offset(index: &[(usize, u64)], pos: usize) -> Option<u64> {
    let i = match index.binary_search_by(|&(start, _)| start.cmp(&pos)) {
        Ok(i) => i,
        Err(0) => return None,
        Err(i) => i - 1,
    };
    let (start, off) = *index.get(i)?;
    Some(off + (pos - start) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_runs_like_strings() {
        let data = b"\x00\x01hello world\x00ab\x7fSECRET_KEY=abc\xff";
        let got: Vec<(usize, &[u8])> = strings(data, 4).collect();
        assert_eq!(
            got,
            vec![(2, &b"hello world"[..]), (17, &b"SECRET_KEY=abc"[..])]
        );
        let mut joined = Vec::new();
        let mut index = Vec::new();
        extract_joined(data, 4, &mut joined, &mut index);
        assert_eq!(joined, b"hello world\nSECRET_KEY=abc\n");
        assert_eq!(file_offset(&index, 12), Some(17));
        assert_eq!(file_offset(&index, 14), Some(19));
    }

    proptest! {
        #[test]
        fn runs_are_maximal_printable_and_mapped(data in proptest::collection::vec(any::<u8>(), 0..512), min in 0usize..8) {
            let mut last_end = 0;
            for (off, run) in strings(&data, min) {
                prop_assert!(run.len() >= min.max(1));
                prop_assert!(run.iter().all(|&b| printable(b)));
                prop_assert_eq!(&data[off..off + run.len()], run);
                prop_assert!(off == 0 || !printable(data[off - 1]));
                prop_assert!(off + run.len() == data.len() || !printable(data[off + run.len()]));
                prop_assert!(off >= last_end);
                last_end = off + run.len();
            }
            let mut joined = Vec::new();
            let mut index = Vec::new();
            extract_joined(&data, min, &mut joined, &mut index);
            for &(pos, off) in &index {
                prop_assert_eq!(file_offset(&index, pos), Some(off));
            }
        }
    }
}
