//! The MQTT topic layout and the small control messages that travel on it.
//!
//! | topic | from | payload |
//! |---|---|---|
//! | `devices/<id>/telemetry` | device | signed v2 (or legacy v1) JSON reading |
//! | `devices/<id>/status` | device | signed status (firmware version, OTA progress) |
//! | `devices/<id>/ota` | device | signed OTA progress / outcome |
//! | `devices/<id>/commands/ack` | ingest | [`Ack`]: the seqs now stored, so the device can drop them from its disk queue |
//! | `devices/<id>/commands/ota` | server | firmware update notice (the manifest carries its own signature) |
//!
//! The broker ACL ([`crate::acl`]) makes the `<id>` segment authoritative: only the client whose
//! certificate CN is `<id>` may publish under `devices/<id>/`, and only the service identity
//! may publish commands.

use std::fmt::Write;

/// `devices/<id>/telemetry`.
pub fn telemetry(id: &str) -> String {
    format!("devices/{id}/telemetry")
}

/// `devices/<id>/status`.
pub fn status(id: &str) -> String {
    format!("devices/{id}/status")
}

/// `devices/<id>/ota`.
pub fn ota(id: &str) -> String {
    format!("devices/{id}/ota")
}

/// `devices/<id>/commands/ack`.
pub fn ack(id: &str) -> String {
    format!("devices/{id}/commands/ack")
}

/// `devices/<id>/commands/ota`.
pub fn ota_command(id: &str) -> String {
    format!("devices/{id}/commands/ota")
}

/// The subscription filter of the ingest for one leaf (`telemetry`, `status`, `ota`),
/// optionally as an MQTT shared subscription `$share/<group>/...`.
pub fn ingest_filter(leaf: &str, share_group: Option<&str>) -> String {
    match share_group {
        Some(g) => format!("$share/{g}/devices/+/{leaf}"),
        None => format!("devices/+/{leaf}"),
    }
}

/// Splits `devices/<id>/<rest>` into `(id, rest)`.
pub fn split(topic: &str) -> Option<(&str, &str)> {
    topic.strip_prefix("devices/")?.split_once('/')
}

/// Largest number of ranges one ack carries: bounds the payload (about 5 KiB at most, under
/// the 10 KiB default incoming packet limit of MQTT clients) and the parser.
pub const MAX_ACK_RANGES: usize = 128;

/// "These sequence numbers of yours are stored": sent by the ingest after each commit, as
/// inclusive ranges, e.g. `{"ack":[[1,40],[42,42]]}`. A device removes exactly these readings
/// from its disk queue; anything not acked is sent again (re-signed with a fresh `ts`), which
/// the ingest recognises as a retransmission and acks again without storing it twice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    /// Inclusive, sorted, non-overlapping ranges.
    pub ranges: Vec<(u64, u64)>,
}

impl Ack {
    /// Builds an ack from seqs in any order (duplicates fine).
    pub fn from_seqs(seqs: impl IntoIterator<Item = u64>) -> Ack {
        let mut v: Vec<u64> = seqs.into_iter().collect();
        v.sort_unstable();
        v.dedup();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for s in v {
            match ranges.last_mut() {
                Some((_, hi)) if hi.checked_add(1) == Some(s) => *hi = s,
                _ => ranges.push((s, s)),
            }
        }
        Ack { ranges }
    }

    /// Splits into acks of at most [`MAX_ACK_RANGES`] ranges each.
    pub fn chunks(&self) -> impl Iterator<Item = Ack> + '_ {
        self.ranges
            .chunks(MAX_ACK_RANGES)
            .map(|c| Ack { ranges: c.to_vec() })
    }

    /// True when `seq` is acked.
    pub fn contains(&self, seq: u64) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= seq && seq <= hi)
    }

    /// JSON encoding.
    pub fn encode(&self) -> String {
        let mut s = String::from("{\"ack\":[");
        for (i, (lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "[{lo},{hi}]");
        }
        s.push_str("]}");
        s
    }

    /// Parses an ack; `None` for anything malformed (ranges out of order, too many, ...).
    pub fn decode(bytes: &[u8]) -> Option<Ack> {
        if bytes.len() > 64 * 1024 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let list = v.get("ack")?.as_array()?;
        if list.len() > MAX_ACK_RANGES {
            return None;
        }
        let mut ranges = Vec::with_capacity(list.len());
        for r in list {
            let pair = r.as_array()?;
            if pair.len() != 2 {
                return None;
            }
            let (lo, hi) = (pair[0].as_u64()?, pair[1].as_u64()?);
            if lo > hi {
                return None;
            }
            if let Some(&(_, prev_hi)) = ranges.last()
                && lo <= prev_hi
            {
                return None;
            }
            ranges.push((lo, hi));
        }
        Some(Ack { ranges })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_round_trips_and_compresses() {
        let ack = Ack::from_seqs([5, 1, 2, 3, 9, 2, 10]);
        assert_eq!(ack.ranges, vec![(1, 3), (5, 5), (9, 10)]);
        assert_eq!(ack.encode(), r#"{"ack":[[1,3],[5,5],[9,10]]}"#);
        assert_eq!(Ack::decode(ack.encode().as_bytes()), Some(ack.clone()));
        assert!(ack.contains(2) && !ack.contains(4) && ack.contains(10));
    }

    #[test]
    fn ack_decode_refuses_bad_input() {
        for bad in [
            &b"{}"[..],
            b"{\"ack\":[[3,1]]}",
            b"{\"ack\":[[1,5],[4,6]]}",
            b"{\"ack\":[[1]]}",
            b"{\"ack\":[[-1,2]]}",
            b"not json",
        ] {
            assert_eq!(Ack::decode(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            Ack::decode(b"{\"ack\":[[18446744073709551615,18446744073709551615]]}")
                .unwrap()
                .ranges
                .len(),
            1
        );
        assert_eq!(
            Ack::from_seqs([u64::MAX, u64::MAX - 1]).ranges,
            vec![(u64::MAX - 1, u64::MAX)]
        );
    }

    #[test]
    fn topics() {
        assert_eq!(split("devices/a/commands/ack"), Some(("a", "commands/ack")));
        assert_eq!(
            ingest_filter("telemetry", Some("g")),
            "$share/g/devices/+/telemetry"
        );
    }
}
