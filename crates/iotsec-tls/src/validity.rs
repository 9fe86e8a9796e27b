//! A certificate's validity period (RFC 5280 §4.1.2.5), read with a minimal
//! DER walk: `Certificate → tbsCertificate → [version] serial signature issuer
//! validity`. Pin policies need the dates but not a chain, and webpki keeps
//! them private; a full X.509 parser would be a large dependency for two
//! timestamps (and the workspace's `x509-parser` features pull in *ring*).
//!
//! Only called on certificates webpki has already parsed, but strict anyway:
//! definite lengths, expected tags, `Z` times with seconds, nothing trailing.

use time::{Date, Month, PrimitiveDateTime, Time};

/// `notBefore` and `notAfter` in seconds since the Unix epoch (dates before
/// 1970 clamp to 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Validity {
    pub(crate) not_before: u64,
    pub(crate) not_after: u64,
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xA0; // [0] EXPLICIT
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The validity of a DER certificate, `None` if it is malformed.
pub(crate) fn of_certificate(cert_der: &[u8]) -> Option<Validity> {
    let mut outer = Der(cert_der);
    let certificate = outer.expect(SEQUENCE)?;
    if !outer.0.is_empty() {
        return None;
    }
    let tbs = Der(certificate).expect(SEQUENCE)?;
    let mut tbs = Der(tbs);
    let (mut tag, _) = tbs.read()?;
    if tag == VERSION {
        (tag, _) = tbs.read()?;
    }
    if tag != INTEGER {
        return None;
    }
    tbs.expect(SEQUENCE)?; // signature AlgorithmIdentifier
    tbs.expect(SEQUENCE)?; // issuer Name
    let mut validity = Der(tbs.expect(SEQUENCE)?);
    let not_before = time(validity.read()?)?;
    let not_after = time(validity.read()?)?;
    if !validity.0.is_empty() {
        return None;
    }
    Some(Validity {
        not_before,
        not_after,
    })
}

/// A DER reader over the remaining bytes.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next TLV's tag and value (single-byte tags, definite lengths up to 4 bytes).
    fn read(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let (bytes, after) = rest.split_at_checked(count)?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |len, byte| (len << 8) | usize::from(*byte))
        };
        let (value, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some((tag, value))
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.read()? {
            (found, value) if found == tag => Some(value),
            _ => None,
        }
    }
}

/// `UTCTime` (`YYMMDDHHMMSSZ`, years 1950-2049 per RFC 5280) or
/// `GeneralizedTime` (`YYYYMMDDHHMMSSZ`) to Unix seconds.
fn time((tag, value): (u8, &[u8])) -> Option<u64> {
    let (year, rest) = match (tag, value.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(value.get(..2)?)?;
            (
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
                value.get(2..)?,
            )
        }
        (GENERALIZED_TIME, 15) => (digits(value.get(..4)?)?, value.get(4..)?),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let field = |at: usize| rest.get(at..at + 2).and_then(digits);
    let month = Month::try_from(u8::try_from(field(0)?).ok()?).ok()?;
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        month,
        u8::try_from(field(2)?).ok()?,
    )
    .ok()?;
    let clock = Time::from_hms(
        u8::try_from(field(4)?).ok()?,
        u8::try_from(field(6)?).ok()?,
        u8::try_from(field(8)?).ok()?,
    )
    .ok()?;
    let unix = PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp();
    Some(u64::try_from(unix).unwrap_or(0))
}

/// ASCII decimal digits to a number.
fn digits(text: &[u8]) -> Option<u32> {
    text.iter().try_fold(0u32, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if value.len() < 0x80 {
            out.push(value.len() as u8);
        } else {
            out.extend([0x82, (value.len() >> 8) as u8, value.len() as u8]);
        }
        out.extend_from_slice(value);
        out
    }

    fn cert(not_before: (u8, &[u8]), not_after: (u8, &[u8]), version: bool) -> Vec<u8> {
        let mut tbs = Vec::new();
        if version {
            tbs.extend(tlv(VERSION, &tlv(INTEGER, &[2])));
        }
        tbs.extend(tlv(INTEGER, &[1]));
        tbs.extend(tlv(SEQUENCE, &[]));
        tbs.extend(tlv(SEQUENCE, &[0u8; 200])); // long form length
        let mut validity = tlv(not_before.0, not_before.1);
        validity.extend(tlv(not_after.0, not_after.1));
        tbs.extend(tlv(SEQUENCE, &validity));
        tbs.extend(tlv(SEQUENCE, &[]));
        let mut body = tlv(SEQUENCE, &tbs);
        body.extend(tlv(SEQUENCE, &[]));
        tlv(SEQUENCE, &body)
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        let der = cert(
            (UTC_TIME, b"700102000000Z"),
            (GENERALIZED_TIME, b"20500101000000Z"),
            true,
        );
        assert_eq!(
            of_certificate(&der),
            Some(Validity {
                not_before: 86_400,
                not_after: 2_524_608_000
            })
        );
        // UTCTime 49 is 2049, 50 is 1950 (clamped to 0); no version field.
        let der = cert(
            (UTC_TIME, b"500101000000Z"),
            (UTC_TIME, b"491231235959Z"),
            false,
        );
        assert_eq!(
            of_certificate(&der),
            Some(Validity {
                not_before: 0,
                not_after: 2_524_607_999
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn times_round_trip(
            year in 1950i32..=9999,
            month in 1u8..=12,
            day in 1u8..=28,
            (hour, minute, second) in (0u8..24, 0u8..60, 0u8..60),
            utc in proptest::bool::ANY,
        ) {
            let utc = utc && year < 2050;
            let text = if utc {
                format!("{:02}{month:02}{day:02}{hour:02}{minute:02}{second:02}Z", year % 100)
            } else {
                format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}Z")
            };
            let tag = if utc { UTC_TIME } else { GENERALIZED_TIME };
            let expected = PrimitiveDateTime::new(
                Date::from_calendar_date(year, Month::try_from(month).unwrap(), day).unwrap(),
                Time::from_hms(hour, minute, second).unwrap(),
            )
            .assume_utc()
            .unix_timestamp()
            .max(0) as u64;
            let der = cert((tag, text.as_bytes()), (GENERALIZED_TIME, b"99991231235959Z"), true);
            proptest::prop_assert_eq!(
                of_certificate(&der).map(|v| v.not_before),
                Some(expected)
            );
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = of_certificate(&bytes);
        }
    }

    #[test]
    fn rejects_malformed() {
        let good = cert(
            (UTC_TIME, b"700102000000Z"),
            (UTC_TIME, b"700103000000Z"),
            true,
        );
        for bad_time in [
            &b"700102000000"[..],
            b"7001020000Z",
            b"701302000000Z",
            b"700132000000Z",
            b"700102250000Z",
            b"70010200000aZ",
            b"700102000000+",
        ] {
            let der = cert((UTC_TIME, bad_time), (UTC_TIME, b"700103000000Z"), true);
            assert_eq!(of_certificate(&der), None);
        }
        for cut in 0..good.len() {
            assert_eq!(of_certificate(&good[..cut]), None, "truncated at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(of_certificate(&trailing), None);
    }
}
