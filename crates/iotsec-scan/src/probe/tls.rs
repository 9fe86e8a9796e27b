//! Raw TLS records: a hand-built legacy ClientHello and a parser for the first server flight
//! (RFC 5246 §6.2 records, §7.4.1 hellos; RFC 8446 §4.1.3 and §4.2.1 supported_versions;
//! RFC 8446 §6 alerts).
//!
//! rustls (the handshake engine used for inspection) cannot speak TLS 1.0 or 1.1, on purpose. To
//! find servers that still accept them, the scanner sends this ClientHello offering at most
//! TLS 1.1 and reads the ServerHello (old version accepted) or alert (refused) itself.

use serde::{Deserialize, Serialize};

use super::Parse;

/// TLS 1.0 on the wire.
pub const TLS10: u16 = 0x0301;
/// TLS 1.1 on the wire.
pub const TLS11: u16 = 0x0302;
/// TLS 1.2 on the wire.
pub const TLS12: u16 = 0x0303;
/// TLS 1.3 on the wire (only inside supported_versions).
pub const TLS13: u16 = 0x0304;

/// Cipher suites a TLS 1.0/1.1 server of the last 15 years will pick one of.
const LEGACY_SUITES: [u16; 10] = [
    0xC02B, // ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (ignored below 1.2, harmless)
    0xC009, // ECDHE_ECDSA_WITH_AES_128_CBC_SHA
    0xC00A, // ECDHE_ECDSA_WITH_AES_256_CBC_SHA
    0xC013, // ECDHE_RSA_WITH_AES_128_CBC_SHA
    0xC014, // ECDHE_RSA_WITH_AES_256_CBC_SHA
    0x0033, // DHE_RSA_WITH_AES_128_CBC_SHA
    0x0039, // DHE_RSA_WITH_AES_256_CBC_SHA
    0x002F, // RSA_WITH_AES_128_CBC_SHA
    0x0035, // RSA_WITH_AES_256_CBC_SHA
    0x000A, // RSA_WITH_3DES_EDE_CBC_SHA
];

/// Name of a TLS version number.
pub fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSLv3".to_owned(),
        TLS10 => "TLSv1.0".to_owned(),
        TLS11 => "TLSv1.1".to_owned(),
        TLS12 => "TLSv1.2".to_owned(),
        TLS13 => "TLSv1.3".to_owned(),
        other => format!("0x{other:04x}"),
    }
}

/// Name of a cipher suite the legacy hello offers (hex for others).
pub fn suite_name(s: u16) -> String {
    let name = match s {
        0xC02B => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xC009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xC00A => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xC013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xC014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0x0033 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
        0x0039 => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
        0x002F => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x000A => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        _ => return format!("0x{s:04x}"),
    };
    name.to_owned()
}

/// Builds a ClientHello offering at most `max_version` (TLS 1.0 or 1.1) with CBC suites,
/// SNI for `server_name` when it is a DNS name, and the extensions old servers expect.
pub fn legacy_client_hello(
    max_version: u16,
    server_name: Option<&str>,
    random: [u8; 32],
) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = server_name.filter(|n| !n.is_empty() && n.len() < 256) {
        // server_name (RFC 6066 §3): list of one host_name entry. Lengths < 256 fit in u16.
        let n = name.as_bytes();
        let list_len = n.len() + 3;
        ext.extend_from_slice(&0x0000u16.to_be_bytes());
        ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list_len as u16).to_be_bytes());
        ext.push(0x00);
        ext.extend_from_slice(&(n.len() as u16).to_be_bytes());
        ext.extend_from_slice(n);
    }
    // supported_groups: x25519, secp256r1, secp384r1 (RFC 8422 §5.1.1).
    ext.extend_from_slice(&[
        0x00, 0x0A, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1D, 0x00, 0x17, 0x00, 0x18,
    ]);
    // ec_point_formats: uncompressed.
    ext.extend_from_slice(&[0x00, 0x0B, 0x00, 0x02, 0x01, 0x00]);
    // renegotiation_info, empty (RFC 5746 §3.4).
    ext.extend_from_slice(&[0xFF, 0x01, 0x00, 0x01, 0x00]);

    let mut body = Vec::with_capacity(128 + ext.len());
    body.extend_from_slice(&max_version.to_be_bytes());
    body.extend_from_slice(&random);
    body.push(0x00); // empty session id
    body.extend_from_slice(&((LEGACY_SUITES.len() * 2) as u16).to_be_bytes());
    for s in LEGACY_SUITES {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[0x01, 0x00]); // compression methods: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut hs = Vec::with_capacity(body.len() + 4);
    hs.push(0x01); // client_hello
    let len = body.len() as u32;
    hs.extend_from_slice(&len.to_be_bytes()[1..]);
    hs.extend_from_slice(&body);

    let mut record = Vec::with_capacity(hs.len() + 5);
    record.push(0x16);
    record.extend_from_slice(&TLS10.to_be_bytes()); // record layer version: TLS 1.0 for compatibility
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// The first thing a TLS server sent back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerFlight {
    /// A ServerHello.
    Hello {
        /// Negotiated version (supported_versions when present, else server_version).
        version: u16,
        /// Chosen cipher suite.
        cipher_suite: u16,
    },
    /// An alert record.
    Alert {
        /// 1 warning, 2 fatal.
        level: u8,
        /// Alert description (RFC 8446 §6).
        description: u8,
    },
}

/// Record header check: content type and a plausible version and length. Used to recognise a
/// TLS server that answered a plaintext probe with an alert.
pub fn looks_like_record(bytes: &[u8]) -> bool {
    match bytes {
        [ty, 0x03, minor, hi, lo, ..] => {
            matches!(ty, 0x14..=0x17)
                && *minor <= 0x04
                && usize::from(u16::from_be_bytes([*hi, *lo])) <= 16_384 + 2048
        }
        _ => false,
    }
}

/// Largest handshake message we reassemble while looking for a ServerHello.
const MAX_HELLO: usize = 64 * 1024;

/// Parses the server's first flight: the first alert, or the ServerHello (reassembled across
/// records if the server fragmented it).
pub fn parse_server_flight(bytes: &[u8]) -> Parse<ServerFlight> {
    let mut handshake = Vec::new();
    let mut rest = bytes;
    loop {
        if rest.len() < 5 {
            return if rest.is_empty() || looks_like_partial_header(rest) {
                Parse::Incomplete
            } else {
                Parse::NotThis
            };
        }
        if !looks_like_record(rest) {
            return Parse::NotThis;
        }
        let ty = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let Some(fragment) = rest.get(5..5 + len) else {
            // Partial record: the ServerHello may already be complete inside it.
            if ty == 0x16 {
                handshake.extend_from_slice(&rest[5..]);
                return parse_hello_stream(&handshake);
            }
            return Parse::Incomplete;
        };
        match ty {
            0x15 => {
                return match fragment {
                    [level, description, ..] => Parse::Done(ServerFlight::Alert {
                        level: *level,
                        description: *description,
                    }),
                    _ => Parse::NotThis,
                };
            }
            0x16 => {
                handshake.extend_from_slice(fragment);
                if handshake.len() > MAX_HELLO {
                    return Parse::NotThis;
                }
                match parse_hello_stream(&handshake) {
                    Parse::Incomplete => {}
                    done => return done,
                }
            }
            _ => return Parse::NotThis,
        }
        rest = &rest[5 + len..];
    }
}

fn looks_like_partial_header(bytes: &[u8]) -> bool {
    match bytes {
        [ty] => matches!(ty, 0x15 | 0x16),
        [ty, 0x03, ..] => matches!(ty, 0x15 | 0x16),
        _ => false,
    }
}

/// Parses a ServerHello at the start of a handshake byte stream.
fn parse_hello_stream(hs: &[u8]) -> Parse<ServerFlight> {
    if hs.len() < 4 {
        return Parse::Incomplete;
    }
    if hs[0] != 0x02 {
        return Parse::NotThis;
    }
    let len = (usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]);
    if len > MAX_HELLO {
        return Parse::NotThis;
    }
    let Some(body) = hs.get(4..4 + len) else {
        return Parse::Incomplete;
    };
    match parse_server_hello_body(body) {
        Some(flight) => Parse::Done(flight),
        None => Parse::NotThis,
    }
}

fn parse_server_hello_body(body: &[u8]) -> Option<ServerFlight> {
    let mut r = Reader(body);
    let legacy_version = r.u16()?;
    r.take(32)?; // random
    let sid_len = usize::from(r.u8()?);
    if sid_len > 32 {
        return None;
    }
    r.take(sid_len)?;
    let cipher_suite = r.u16()?;
    r.u8()?; // compression method
    let mut version = legacy_version;
    if !r.0.is_empty() {
        let ext_len = usize::from(r.u16()?);
        let mut exts = Reader(r.take(ext_len)?);
        while !exts.0.is_empty() {
            let ty = exts.u16()?;
            let len = usize::from(exts.u16()?);
            let data = exts.take(len)?;
            // supported_versions in a ServerHello carries the selected version (RFC 8446 §4.2.1).
            if ty == 0x002B {
                let [hi, lo] = data else { return None };
                version = u16::from_be_bytes([*hi, *lo]);
            }
        }
    }
    if !(0x0300..=TLS13).contains(&version) {
        return None;
    }
    Some(ServerFlight::Hello {
        version,
        cipher_suite,
    })
}

/// Name of an alert description (RFC 8446 §6 and RFC 5246 §7.2).
pub fn alert_name(description: u8) -> String {
    let name = match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => return format!("alert {description}"),
    };
    name.to_owned()
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Captured: `openssl s_server -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0'` (OpenSSL 3.0.19, ECDSA
    /// P-256 certificate) answering [`legacy_client_hello`]: the ServerHello record and the
    /// first bytes of the Certificate record.
    fn tls11_server_hello() -> Vec<u8> {
        unhex(
            &[
                "1603020059020000550302d34ef944c899dd89592e17ee687870519dedfdb222",
                "9e5c4c23303fcbb6d38fdb204fa60642f0d8afbb7009bbb0ae312ef8295cad0c",
                "2e64f9ba1101855abcafaeb4c00900000dff01000100000b0004030001021603",
                "02017f0b00017b00017800017530",
            ]
            .concat(),
        )
    }

    #[test]
    fn client_hello_is_well_formed() {
        let h = legacy_client_hello(TLS11, Some("broker.example"), [7; 32]);
        assert_eq!(&h[..3], &[0x16, 0x03, 0x01]);
        let rec_len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        assert_eq!(rec_len + 5, h.len());
        assert_eq!(h[5], 0x01);
        let hs_len = (usize::from(h[6]) << 16) | (usize::from(h[7]) << 8) | usize::from(h[8]);
        assert_eq!(hs_len + 4, rec_len);
        assert_eq!(&h[9..11], &[0x03, 0x02]);
        assert!(h.windows(14).any(|w| w == b"broker.example"));
    }

    #[test]
    fn parses_legacy_server_hello() {
        let bytes = tls11_server_hello();
        let flight = parse_server_flight(&bytes);
        assert_eq!(
            flight,
            Parse::Done(ServerFlight::Hello {
                version: TLS11,
                cipher_suite: 0xC009
            })
        );
    }

    #[test]
    fn parses_refusal_alert() {
        // Captured: default `openssl s_server` (OpenSSL 3.0.19, TLS 1.2+) answering
        // [`legacy_client_hello`]: fatal internal_error.
        let bytes = unhex("15030200020250");
        assert_eq!(
            parse_server_flight(&bytes),
            Parse::Done(ServerFlight::Alert {
                level: 2,
                description: 80
            })
        );
        assert_eq!(alert_name(70), "protocol_version");
    }

    #[test]
    fn tls13_server_hello_uses_supported_versions() {
        let mut hello = vec![0x03, 0x03];
        hello.extend_from_slice(&[1u8; 32]);
        hello.push(0);
        hello.extend_from_slice(&[0x13, 0x01, 0x00]);
        hello.extend_from_slice(&[0x00, 0x06, 0x00, 0x2B, 0x00, 0x02, 0x03, 0x04]);
        let mut hs = vec![0x02, 0x00, 0x00, hello.len() as u8];
        hs.extend_from_slice(&hello);
        let mut rec = vec![0x16, 0x03, 0x03, 0x00, hs.len() as u8];
        rec.extend_from_slice(&hs);
        assert_eq!(
            parse_server_flight(&rec),
            Parse::Done(ServerFlight::Hello {
                version: TLS13,
                cipher_suite: 0x1301
            })
        );
    }

    #[test]
    fn fragmented_hello_is_reassembled() {
        let bytes = tls11_server_hello();
        let hs = &bytes[5..5 + usize::from(bytes[4])];
        let (a, b) = hs.split_at(10);
        let mut two = vec![0x16, 0x03, 0x02, 0x00, a.len() as u8];
        two.extend_from_slice(a);
        // Only the first fragment so far: incomplete.
        assert_eq!(parse_server_flight(&two), Parse::Incomplete);
        two.extend_from_slice(&[0x16, 0x03, 0x02, 0x00, b.len() as u8]);
        two.extend_from_slice(b);
        assert!(matches!(
            parse_server_flight(&two),
            Parse::Done(ServerFlight::Hello { .. })
        ));
    }

    #[test]
    fn non_tls_and_truncated() {
        assert_eq!(
            parse_server_flight(b"SSH-2.0-OpenSSH_9.2\r\n"),
            Parse::NotThis
        );
        assert_eq!(parse_server_flight(b"HTTP/1.1 400 Bad"), Parse::NotThis);
        assert_eq!(parse_server_flight(&[0x16, 0x03]), Parse::Incomplete);
        assert_eq!(parse_server_flight(&[]), Parse::Incomplete);
        let bytes = tls11_server_hello();
        for cut in 0..bytes.len() {
            let _ = parse_server_flight(&bytes[..cut]);
        }
        assert!(looks_like_record(&[0x15, 0x03, 0x03, 0x00, 0x02]));
        assert!(!looks_like_record(b"GET / HTTP/1.0"));
    }
}
