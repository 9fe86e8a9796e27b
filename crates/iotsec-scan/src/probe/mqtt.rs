//! MQTT CONNECT / CONNACK (MQTT 3.1.1, OASIS 2014, §3.1-3.2; MQTT 5.0, OASIS 2019, §3.1-3.2).
//!
//! The probe sends a CONNECT with no username and no password; the CONNACK's return code (3.1.1)
//! or reason code (5) says whether the broker takes anonymous clients.

use serde::{Deserialize, Serialize};

use super::Parse;

/// MQTT protocol level sent in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MqttVersion {
    /// MQTT 3.1.1 (protocol level 4).
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.0 (protocol level 5).
    #[serde(rename = "5")]
    V5,
}

impl MqttVersion {
    /// Protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Self::V311 => 4,
            Self::V5 => 5,
        }
    }

    /// Human name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V311 => "3.1.1",
            Self::V5 => "5",
        }
    }
}

/// What the broker said to a CONNECT without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectOutcome {
    /// Connection accepted: anonymous clients are allowed.
    Accepted,
    /// Not authorised (3.1.1 code 5, MQTT 5 0x87): the broker wants credentials.
    NotAuthorized,
    /// Bad username or password (3.1.1 code 4, MQTT 5 0x86 / 0x8C bad authentication method).
    BadCredentials,
    /// The protocol level was refused (3.1.1 code 1, MQTT 5 0x84).
    ProtocolRefused,
    /// Client identifier rejected (3.1.1 code 2, MQTT 5 0x85).
    IdentifierRejected,
    /// Server unavailable or busy (3.1.1 code 3, MQTT 5 0x88 / 0x89 / 0x97 ...).
    Unavailable,
    /// Any other refusal (MQTT 5 0x80 unspecified, 0x8A banned, ...).
    Refused,
}

impl ConnectOutcome {
    /// True when the broker refused because it wants credentials.
    pub fn wants_credentials(self) -> bool {
        matches!(self, Self::NotAuthorized | Self::BadCredentials)
    }
}

/// A parsed CONNACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connack {
    /// Session-present flag.
    pub session_present: bool,
    /// Raw return code (3.1.1) or reason code (5).
    pub code: u8,
    /// True when the CONNACK was in MQTT 5 format (it carried a properties length).
    pub v5_format: bool,
    /// What the code means.
    pub outcome: ConnectOutcome,
}

/// Builds a CONNECT packet without username or password, clean session, keep-alive 60 s.
pub fn connect_packet(version: MqttVersion, client_id: &str) -> Vec<u8> {
    // Client ids are at most 23 bytes for portability (3.1.1 §3.1.3.1); we truncate.
    let id = client_id.as_bytes();
    let id = &id[..id.len().min(23)];
    let mut variable = Vec::with_capacity(16 + id.len());
    variable.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', version.level()]);
    variable.push(0x02); // connect flags: clean session / clean start, no will, no credentials
    variable.extend_from_slice(&60u16.to_be_bytes());
    if version == MqttVersion::V5 {
        variable.push(0x00); // properties length
    }
    // The id is at most 23 bytes: the cast cannot truncate.
    variable.extend_from_slice(&(id.len() as u16).to_be_bytes());
    variable.extend_from_slice(id);

    let mut packet = Vec::with_capacity(variable.len() + 5);
    packet.push(0x10);
    encode_remaining_length(variable.len(), &mut packet);
    packet.extend_from_slice(&variable);
    packet
}

/// DISCONNECT, sent after an accepted CONNECT so the broker logs a clean goodbye.
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

fn encode_remaining_length(mut len: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

/// Decodes an MQTT variable byte integer (at most 4 bytes). `Incomplete` when more bytes are
/// needed, `NotThis` when it is longer than 4 bytes. Returns (value, bytes used).
pub fn decode_varint(bytes: &[u8]) -> Parse<(usize, usize)> {
    let mut value = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        if i >= 4 {
            return Parse::NotThis;
        }
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Parse::Done((value, i + 1));
        }
    }
    if bytes.len() >= 4 {
        Parse::NotThis
    } else {
        Parse::Incomplete
    }
}

/// Parses the reply to a CONNECT sent with `sent`. Accepts a 3.1.1-format CONNACK in reply to an
/// MQTT 5 CONNECT (an older broker refusing the level answers that way).
pub fn parse_connack(bytes: &[u8], sent: MqttVersion) -> Parse<Connack> {
    let Some((&first, rest)) = bytes.split_first() else {
        return Parse::Incomplete;
    };
    if first != 0x20 {
        return Parse::NotThis;
    }
    let (len, used) = match decode_varint(rest) {
        Parse::Done(v) => v,
        Parse::Incomplete => return Parse::Incomplete,
        Parse::NotThis => return Parse::NotThis,
    };
    // A CONNACK is small; anything large is not one.
    if !(2..=1024).contains(&len) {
        return Parse::NotThis;
    }
    let Some(body) = rest.get(used..used + len) else {
        return Parse::Incomplete;
    };
    let (flags, code) = (body[0], body[1]);
    if flags & 0xFE != 0 {
        return Parse::NotThis;
    }
    let v5_format = len > 2;
    if v5_format {
        if sent != MqttVersion::V5 {
            return Parse::NotThis;
        }
        // Properties length must fit exactly in the rest of the packet (5.0 §3.2.2.3).
        match decode_varint(&body[2..]) {
            Parse::Done((plen, pused)) if 2 + pused + plen == len => {}
            _ => return Parse::NotThis,
        }
    }
    let outcome = if v5_format || (sent == MqttVersion::V5 && code >= 0x80) {
        match v5_outcome(code) {
            Some(o) => o,
            None => return Parse::NotThis,
        }
    } else {
        match v311_outcome(code) {
            Some(o) => o,
            None => return Parse::NotThis,
        }
    };
    Parse::Done(Connack {
        session_present: flags & 1 == 1,
        code,
        v5_format,
        outcome,
    })
}

fn v311_outcome(code: u8) -> Option<ConnectOutcome> {
    Some(match code {
        0 => ConnectOutcome::Accepted,
        1 => ConnectOutcome::ProtocolRefused,
        2 => ConnectOutcome::IdentifierRejected,
        3 => ConnectOutcome::Unavailable,
        4 => ConnectOutcome::BadCredentials,
        5 => ConnectOutcome::NotAuthorized,
        _ => return None,
    })
}

fn v5_outcome(code: u8) -> Option<ConnectOutcome> {
    Some(match code {
        0x00 => ConnectOutcome::Accepted,
        0x84 => ConnectOutcome::ProtocolRefused,
        0x85 => ConnectOutcome::IdentifierRejected,
        0x86 | 0x8C => ConnectOutcome::BadCredentials,
        0x87 => ConnectOutcome::NotAuthorized,
        0x88 | 0x89 | 0x97 | 0x9F => ConnectOutcome::Unavailable,
        0x80..=0xA2 => ConnectOutcome::Refused,
        _ => return None,
    })
}

/// Human description of a CONNACK code.
pub fn describe(outcome: ConnectOutcome) -> &'static str {
    match outcome {
        ConnectOutcome::Accepted => "anonymous access accepted",
        ConnectOutcome::NotAuthorized => "not authorised without credentials",
        ConnectOutcome::BadCredentials => "bad username or password",
        ConnectOutcome::ProtocolRefused => "protocol level refused",
        ConnectOutcome::IdentifierRejected => "client identifier rejected",
        ConnectOutcome::Unavailable => "server unavailable",
        ConnectOutcome::Refused => "connection refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_311_matches_spec_layout() {
        // MQTT 3.1.1 §3.1: fixed header, "MQTT", level 4, clean session, keep-alive 60, id.
        let p = connect_packet(MqttVersion::V311, "abc");
        assert_eq!(
            p,
            [
                0x10, 0x0F, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3C, 0x00, 0x03,
                b'a', b'b', b'c'
            ]
        );
    }

    #[test]
    fn connect_5_has_properties_length() {
        let p = connect_packet(MqttVersion::V5, "abc");
        assert_eq!(&p[..2], &[0x10, 0x10]);
        assert_eq!(p[8], 5);
        assert_eq!(p[12], 0x00);
    }

    #[test]
    fn long_client_id_is_truncated() {
        let p = connect_packet(MqttVersion::V311, &"x".repeat(100));
        assert_eq!(p.len(), 2 + 12 + 23);
    }

    #[test]
    fn connack_311_codes() {
        // Captured from mosquitto 2.0.11: anonymous allowed (0) and password file (5).
        let ok = parse_connack(&[0x20, 0x02, 0x00, 0x00], MqttVersion::V311);
        assert!(matches!(ok, Parse::Done(c) if c.outcome == ConnectOutcome::Accepted));
        let na = parse_connack(&[0x20, 0x02, 0x00, 0x05], MqttVersion::V311);
        assert!(matches!(na, Parse::Done(c) if c.outcome == ConnectOutcome::NotAuthorized));
        let bad = parse_connack(&[0x20, 0x02, 0x00, 0x04], MqttVersion::V311);
        assert!(matches!(bad, Parse::Done(c) if c.outcome == ConnectOutcome::BadCredentials));
        let proto = parse_connack(&[0x20, 0x02, 0x00, 0x01], MqttVersion::V311);
        assert!(matches!(proto, Parse::Done(c) if c.outcome == ConnectOutcome::ProtocolRefused));
        assert_eq!(
            parse_connack(&[0x20, 0x02, 0x00, 0x09], MqttVersion::V311),
            Parse::NotThis
        );
    }

    #[test]
    fn connack_5_with_properties() {
        // Captured from mosquitto 2.0.11, MQTT 5, anonymous accepted: topic alias maximum 10,
        // receive maximum 20.
        let bytes = [
            0x20, 0x09, 0x00, 0x00, 0x06, 0x22, 0x00, 0x0A, 0x21, 0x00, 0x14,
        ];
        match parse_connack(&bytes, MqttVersion::V5) {
            Parse::Done(c) => {
                assert!(c.v5_format);
                assert_eq!(c.outcome, ConnectOutcome::Accepted);
            }
            other => panic!("{other:?}"),
        }
        // Captured from mosquitto 2.0.11 with a password file: not authorised, no properties.
        let na = parse_connack(&[0x20, 0x03, 0x00, 0x87, 0x00], MqttVersion::V5);
        assert!(matches!(na, Parse::Done(c) if c.outcome == ConnectOutcome::NotAuthorized));
        // Properties length that does not fit.
        assert_eq!(
            parse_connack(&[0x20, 0x03, 0x00, 0x00, 0x05], MqttVersion::V5),
            Parse::NotThis
        );
    }

    #[test]
    fn v311_broker_refusing_v5() {
        let r = parse_connack(&[0x20, 0x02, 0x00, 0x01], MqttVersion::V5);
        assert!(matches!(r, Parse::Done(c) if c.outcome == ConnectOutcome::ProtocolRefused));
    }

    #[test]
    fn incomplete_and_foreign() {
        assert_eq!(parse_connack(&[], MqttVersion::V311), Parse::Incomplete);
        assert_eq!(parse_connack(&[0x20], MqttVersion::V311), Parse::Incomplete);
        assert_eq!(
            parse_connack(&[0x20, 0x02, 0x00], MqttVersion::V311),
            Parse::Incomplete
        );
        assert_eq!(
            parse_connack(b"HTTP/1.1 400", MqttVersion::V311),
            Parse::NotThis
        );
        assert_eq!(
            parse_connack(&[0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], MqttVersion::V5),
            Parse::NotThis
        );
    }

    #[test]
    fn varint_round_trip() {
        for n in [0usize, 1, 127, 128, 16_383, 16_384, 2_097_151, 268_435_455] {
            let mut out = Vec::new();
            encode_remaining_length(n, &mut out);
            assert_eq!(decode_varint(&out), Parse::Done((n, out.len())));
        }
    }
}
