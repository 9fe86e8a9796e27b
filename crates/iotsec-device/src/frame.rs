//! Queue records on disk: `len: u32 LE | crc: u32 LE | seq: u64 LE | reading`, where `len`
//! counts `seq` + `reading` and `crc` is the CRC-32 (IEEE 802.3, as in zlib) of the `len`
//! bytes followed by the body.
//!
//! The CRC is what tells a complete record from a torn one after a power cut: a record cut
//! short, a length field pointing past the end, or zeros the file system exposed after a
//! crash (a zero length is never valid) all decode as [`Decoded::Torn`]. No I/O here.

/// Largest reading accepted into the queue (bytes of JSON). The ingest accepts 64 KiB
/// messages; the v2 envelope adds about 150 bytes, so this leaves ample room.
pub const MAX_READING: usize = 16 * 1024;

/// Bytes before the body: length and CRC.
pub const HEADER: usize = 8;

/// Bytes of the `seq` field at the start of the body.
const SEQ: usize = 8;

/// Largest frame on disk.
pub const MAX_FRAME: usize = HEADER + SEQ + MAX_READING;

/// The size of the frame that holds `reading`.
pub fn frame_len(reading: &[u8]) -> usize {
    HEADER + SEQ + reading.len()
}

/// Appends the frame of `(seq, reading)` to `out`. `reading` must be at most
/// [`MAX_READING`] bytes (the queue checks before calling).
pub fn encode(seq: u64, reading: &[u8], out: &mut Vec<u8>) {
    debug_assert!(reading.len() <= MAX_READING);
    // MAX_READING + 8 fits a u32.
    let len = u32::try_from(SEQ + reading.len())
        .unwrap_or(u32::MAX)
        .to_le_bytes();
    let seq = seq.to_le_bytes();
    let crc = Crc::new()
        .update(&len)
        .update(&seq)
        .update(reading)
        .finish();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&seq);
    out.extend_from_slice(reading);
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete, intact record; `frame` bytes long.
    Record {
        /// Its sequence number.
        seq: u64,
        /// The reading (JSON).
        reading: &'a [u8],
        /// Length of the whole frame.
        frame: usize,
    },
    /// The buffer is empty: the clean end of a segment.
    End,
    /// Not a complete, intact record: a torn write or corruption from here on.
    Torn(TornReason),
}

/// Why bytes do not decode as a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornReason {
    /// Fewer bytes than a header, or than the header's length says.
    Short,
    /// The length is zero-ish or larger than any record.
    BadLength,
    /// The CRC does not match.
    BadCrc,
}

impl std::fmt::Display for TornReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TornReason::Short => "record cut short",
            TornReason::BadLength => "impossible record length",
            TornReason::BadCrc => "record checksum mismatch",
        })
    }
}

/// Decodes the record at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.is_empty() {
        return Decoded::End;
    }
    let Some((header, rest)) = buf.split_first_chunk::<HEADER>() else {
        return Decoded::Torn(TornReason::Short);
    };
    let (len_bytes, crc_bytes) = header.split_at(4);
    let mut len4 = [0u8; 4];
    len4.copy_from_slice(len_bytes);
    let mut crc4 = [0u8; 4];
    crc4.copy_from_slice(crc_bytes);
    let len = u32::from_le_bytes(len4) as usize;
    if !(SEQ..=SEQ + MAX_READING).contains(&len) {
        return Decoded::Torn(TornReason::BadLength);
    }
    let Some(body) = rest.get(..len) else {
        return Decoded::Torn(TornReason::Short);
    };
    if Crc::new().update(&len4).update(body).finish() != u32::from_le_bytes(crc4) {
        return Decoded::Torn(TornReason::BadCrc);
    }
    let (seq_bytes, reading) = body.split_at(SEQ);
    let mut seq8 = [0u8; 8];
    seq8.copy_from_slice(seq_bytes);
    Decoded::Record {
        seq: u64::from_le_bytes(seq8),
        reading,
        frame: HEADER + len,
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table driven.
#[derive(Debug, Clone, Copy)]
struct Crc(u32);

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc {
    fn new() -> Self {
        Crc(0xFFFF_FFFF)
    }

    fn update(mut self, bytes: &[u8]) -> Self {
        for &b in bytes {
            self.0 = TABLE[((self.0 ^ u32::from(b)) & 0xFF) as usize] ^ (self.0 >> 8);
        }
        self
    }

    fn finish(self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC (zlib's crc32).
        assert_eq!(Crc::new().update(b"123456789").finish(), 0xCBF4_3926);
    }

    #[test]
    fn zeros_are_torn_not_records() {
        assert_eq!(decode(&[0u8; 64]), Decoded::Torn(TornReason::BadLength));
        assert_eq!(decode(&[]), Decoded::End);
        assert_eq!(decode(&[1, 2, 3]), Decoded::Torn(TornReason::Short));
    }

    proptest! {
        #[test]
        fn round_trip_and_every_truncation_is_torn(
            seq in any::<u64>(),
            reading in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut buf = Vec::new();
            encode(seq, &reading, &mut buf);
            prop_assert_eq!(buf.len(), frame_len(&reading));
            prop_assert_eq!(
                decode(&buf),
                Decoded::Record { seq, reading: &reading, frame: buf.len() }
            );
            for cut in 1..buf.len() {
                prop_assert!(matches!(decode(&buf[..cut]), Decoded::Torn(_)), "cut {}", cut);
            }
        }

        #[test]
        fn a_flipped_bit_is_detected(
            seq in any::<u64>(),
            reading in proptest::collection::vec(any::<u8>(), 0..100),
            bit in any::<prop::sample::Index>(),
        ) {
            let mut buf = Vec::new();
            encode(seq, &reading, &mut buf);
            let i = bit.index(buf.len() * 8);
            buf[i / 8] ^= 1 << (i % 8);
            prop_assert!(matches!(decode(&buf), Decoded::Torn(_)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
