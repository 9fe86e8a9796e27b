//! Pure probe payloads and reply parsers: no sockets, no clocks. Each parser takes the bytes a
//! server sent so far and says whether they are a complete answer of its protocol
//! ([`Parse::Done`]), need more bytes ([`Parse::Incomplete`]) or are something else
//! ([`Parse::NotThis`]). They never panic on any input (fuzzed by `fuzz/fuzz_targets/scan_probes.rs`).
//!
//! [`classify`] runs every parser that applies to the reply of one probe, so a server identifies
//! itself whatever we sent: an SSH server answers an HTTP probe with its banner, an HTTP server
//! answers an MQTT CONNECT with `400 Bad Request`.

pub mod banner;
pub mod coap;
pub mod http;
pub mod kv;
pub mod modbus;
pub mod mqtt;
pub mod telnet;
pub mod tls;

use serde::{Deserialize, Serialize};

/// Outcome of parsing a possibly partial reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse<T> {
    /// A complete answer of this protocol.
    Done(T),
    /// Consistent so far; more bytes are needed.
    Incomplete,
    /// Not this protocol.
    NotThis,
}

/// The plaintext probes, each sent on its own connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// Send nothing; wait for a greeting (SSH, FTP, SMTP, Telnet, VNC ...).
    Passive,
    /// MQTT CONNECT without credentials.
    Mqtt(mqtt::MqttVersion),
    /// HTTP `GET /`.
    Http,
    /// Redis / memcached `PING` + `version`.
    Kv,
    /// Modbus/TCP Read Device Identification.
    Modbus,
}

/// Transaction id of the Modbus probe (any fixed value; it only has to come back).
pub const MODBUS_TRANSACTION: u16 = 0x1F0D;

impl Probe {
    /// The probes sent to every open port, in the order they are started.
    pub const FAN_OUT: [Probe; 5] = [
        Probe::Mqtt(mqtt::MqttVersion::V311),
        Probe::Http,
        Probe::Passive,
        Probe::Kv,
        Probe::Modbus,
    ];

    /// Bytes to send right after connecting (`host` is the Host header / client name).
    pub fn payload(self, host: &str, client_id: &str) -> Vec<u8> {
        match self {
            Self::Passive => Vec::new(),
            // A distinct client id per protocol level, so the two CONNECTs never take over
            // each other's session.
            Self::Mqtt(v @ mqtt::MqttVersion::V311) => mqtt::connect_packet(v, client_id),
            Self::Mqtt(v @ mqtt::MqttVersion::V5) => {
                mqtt::connect_packet(v, &format!("{client_id}-5"))
            }
            Self::Http => http::request(host),
            Self::Kv => kv::PROBE.to_vec(),
            Self::Modbus => modbus::read_device_id_request(MODBUS_TRANSACTION),
        }
    }
}

/// What a reply identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// An MQTT CONNACK.
    Mqtt(mqtt::Connack),
    /// An HTTP response.
    Http(http::HttpResponse),
    /// A server greeting.
    Banner(banner::Banner),
    /// Telnet negotiation.
    Telnet(telnet::TelnetGreeting),
    /// Redis or memcached.
    Kv(kv::KvReply),
    /// Modbus/TCP.
    Modbus(modbus::ModbusReply),
    /// A TLS record: a TLS server answering plaintext (not conclusive on its own).
    TlsRecord,
}

impl Identified {
    /// True when the reply names the service; a TLS record only says "speak TLS".
    pub fn is_conclusive(&self) -> bool {
        !matches!(self, Self::TlsRecord)
    }
}

/// Classifies the reply to `probe`. `eof` says the stream ended (peer closed or we stopped
/// waiting), so parsers must decide with what they have.
pub fn classify(probe: Probe, bytes: &[u8], eof: bool) -> Parse<Identified> {
    let mut incomplete = false;
    let mut take = |p: Parse<Identified>| -> Option<Identified> {
        match p {
            Parse::Done(id) => Some(id),
            Parse::Incomplete => {
                incomplete = true;
                None
            }
            Parse::NotThis => None,
        }
    };
    // The probe's own protocol first: its answer is the most specific.
    let specific = match probe {
        Probe::Mqtt(v) => take(map(mqtt::parse_connack(bytes, v), Identified::Mqtt)),
        Probe::Kv => take(map(kv::parse_reply(bytes, eof), Identified::Kv)),
        Probe::Modbus => take(map(
            modbus::parse_reply(bytes, MODBUS_TRANSACTION),
            Identified::Modbus,
        )),
        Probe::Http | Probe::Passive => None,
    };
    if let Some(id) = specific {
        return Parse::Done(id);
    }
    let generic = take(map(http::parse_response(bytes, eof), Identified::Http))
        .or_else(|| take(map(banner::parse_banner(bytes, eof), Identified::Banner)))
        .or_else(|| take(map(telnet::parse_greeting(bytes), Identified::Telnet)));
    if let Some(id) = generic {
        return Parse::Done(id);
    }
    if tls::looks_like_record(bytes) {
        return Parse::Done(Identified::TlsRecord);
    }
    if incomplete && !eof {
        Parse::Incomplete
    } else {
        Parse::NotThis
    }
}

fn map<T>(p: Parse<T>, f: impl FnOnce(T) -> Identified) -> Parse<Identified> {
    match p {
        Parse::Done(v) => Parse::Done(f(v)),
        Parse::Incomplete => Parse::Incomplete,
        Parse::NotThis => Parse::NotThis,
    }
}

/// Text safe to show in a terminal: lossy UTF-8, control characters as spaces, whitespace runs
/// collapsed, trimmed, at most `max` characters.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(max));
    let mut count = 0;
    let mut last_space = true;
    for c in text.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        if count == max {
            out.push('…');
            break;
        }
        out.push(c);
        count += 1;
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_cleans_text() {
        assert_eq!(printable(b"  a\r\n\x1b[31mb  ", 80), "a [31mb");
        assert_eq!(printable(b"abcdef", 3), "abc…");
        assert_eq!(printable(&[0xFF, b'x'], 10), "\u{FFFD}x");
    }

    #[test]
    fn classify_prefers_probe_protocol_then_generic() {
        let connack = [0x20, 0x02, 0x00, 0x00];
        assert!(matches!(
            classify(Probe::Mqtt(mqtt::MqttVersion::V311), &connack, false),
            Parse::Done(Identified::Mqtt(_))
        ));
        // An SSH server answers whatever we send with its banner.
        assert!(matches!(
            classify(Probe::Http, b"SSH-2.0-dropbear\r\n", false),
            Parse::Done(Identified::Banner(_))
        ));
        // An HTTP server answers an MQTT CONNECT with 400.
        assert!(matches!(
            classify(
                Probe::Mqtt(mqtt::MqttVersion::V311),
                b"HTTP/1.1 400 Bad Request\r\n\r\n",
                false
            ),
            Parse::Done(Identified::Http(_))
        ));
        // A TLS server answers plaintext with an alert.
        assert_eq!(
            classify(
                Probe::Http,
                &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32],
                true
            ),
            Parse::Done(Identified::TlsRecord)
        );
        assert_eq!(
            classify(Probe::Passive, b"SSH-2.0-x", false),
            Parse::Incomplete
        );
        assert_eq!(
            classify(Probe::Passive, b"SSH-2.0-x", true),
            Parse::Done(Identified::Banner(banner::Banner::Ssh {
                proto_version: "2.0".into(),
                software: "x".into()
            }))
        );
        assert_eq!(
            classify(Probe::Passive, b"\x00\x01garbage", true),
            Parse::NotThis
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// No reply, however malformed, makes a parser panic.
        #[test]
        fn classify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), eof in any::<bool>()) {
            for p in Probe::FAN_OUT {
                let _ = classify(p, &bytes, eof);
            }
            let _ = tls::parse_server_flight(&bytes);
            let _ = coap::parse_reply(&bytes, 7, [1, 2]);
        }

        /// Every strict prefix of a valid CONNACK is incomplete; the whole is the CONNACK.
        #[test]
        fn connack_prefixes_are_incomplete(code in 0u8..=5, present in any::<bool>()) {
            let packet = [0x20, 0x02, u8::from(present), code];
            for cut in 0..packet.len() {
                prop_assert_eq!(mqtt::parse_connack(&packet[..cut], mqtt::MqttVersion::V311), Parse::Incomplete);
            }
            prop_assert!(matches!(mqtt::parse_connack(&packet, mqtt::MqttVersion::V311), Parse::Done(c) if c.code == code && c.session_present == present));
        }

        /// MQTT CONNECT encodes its remaining length correctly for any client id.
        #[test]
        fn connect_length_is_consistent(id in "[a-z0-9]{0,40}", v5 in any::<bool>()) {
            let v = if v5 { mqtt::MqttVersion::V5 } else { mqtt::MqttVersion::V311 };
            let p = mqtt::connect_packet(v, &id);
            let Parse::Done((len, used)) = mqtt::decode_varint(&p[1..]) else { panic!("varint") };
            prop_assert_eq!(1 + used + len, p.len());
        }

        /// A port set prints in a form that parses back to the same set.
        #[test]
        fn port_set_display_round_trips(ports in proptest::collection::vec(1u16..=u16::MAX, 1..200)) {
            let set = crate::ports::PortSet::from_ports(ports);
            let back = crate::ports::PortSet::parse(&set.to_string()).unwrap();
            prop_assert_eq!(back, set);
        }
    }
}
