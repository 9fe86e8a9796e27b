//! CoAP (RFC 7252 §3 message format, §5.10 options; RFC 6690 `/.well-known/core` discovery).

use serde::{Deserialize, Serialize};

use super::{Parse, printable};

/// Builds a confirmable `GET /.well-known/core`.
pub fn well_known_core_request(message_id: u16, token: [u8; 2]) -> Vec<u8> {
    let mut p = Vec::with_capacity(24);
    p.push(0x40 | 0x02); // version 1, type CON (0), token length 2
    p.push(0x01); // GET
    p.extend_from_slice(&message_id.to_be_bytes());
    p.extend_from_slice(&token);
    // Uri-Path (11) ".well-known": delta 11, length 11.
    p.push(0xBB);
    p.extend_from_slice(b".well-known");
    // Uri-Path again: delta 0, length 4.
    p.push(0x04);
    p.extend_from_slice(b"core");
    p
}

/// A CoAP response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoapReply {
    /// 0 CON, 1 NON, 2 ACK, 3 RST.
    pub message_type: u8,
    /// Response code as `class.detail`, e.g. `2.05`.
    pub code: String,
    /// Link-format payload (printable, truncated).
    pub payload: String,
}

/// Parses a CoAP message answering `message_id` / `token`.
pub fn parse_reply(bytes: &[u8], message_id: u16, token: [u8; 2]) -> Parse<CoapReply> {
    let [b0, code, mid_hi, mid_lo, rest @ ..] = bytes else {
        return Parse::NotThis;
    };
    if b0 >> 6 != 1 {
        return Parse::NotThis;
    }
    let message_type = (b0 >> 4) & 0x03;
    let tkl = usize::from(b0 & 0x0F);
    if tkl > 8 {
        return Parse::NotThis;
    }
    let mid = u16::from_be_bytes([*mid_hi, *mid_lo]);
    // An ACK or RST echoes our message id; a separate CON/NON response echoes the token.
    let Some(tok) = rest.get(..tkl) else {
        return Parse::NotThis;
    };
    let matches_us = match message_type {
        2 | 3 => mid == message_id,
        _ => tok == token,
    };
    if !matches_us {
        return Parse::NotThis;
    }
    // RST carries code 0.00 and nothing else.
    if message_type == 3 {
        return Parse::Done(CoapReply {
            message_type,
            code: "0.00".into(),
            payload: String::new(),
        });
    }
    // Responses use classes 2, 4 and 5; an empty ACK (0.00) is a separate-response promise.
    let class = code >> 5;
    if !matches!(class, 0 | 2 | 4 | 5) {
        return Parse::NotThis;
    }
    let mut i = tkl;
    let mut payload = &[][..];
    while let Some(&b) = rest.get(i) {
        if b == 0xFF {
            payload = &rest[i + 1..];
            break;
        }
        let (delta_nib, len_nib) = (b >> 4, b & 0x0F);
        if delta_nib == 15 || len_nib == 15 {
            return Parse::NotThis;
        }
        i += 1;
        for nib in [delta_nib, len_nib] {
            i += match nib {
                13 => 1,
                14 => 2,
                _ => 0,
            };
        }
        let ext_len = match len_nib {
            13 => rest.get(i - 1).map(|&v| usize::from(v) + 13),
            14 => rest
                .get(i - 2..i)
                .map(|v| usize::from(u16::from_be_bytes([v[0], v[1]])) + 269),
            n => Some(usize::from(n)),
        };
        let Some(len) = ext_len else {
            return Parse::NotThis;
        };
        i += len;
        if i > rest.len() {
            return Parse::NotThis;
        }
    }
    Parse::Done(CoapReply {
        message_type,
        code: format!("{}.{:02}", class, code & 0x1F),
        payload: printable(payload, 300),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let r = well_known_core_request(0x1234, [0xAB, 0xCD]);
        assert_eq!(&r[..6], &[0x42, 0x01, 0x12, 0x34, 0xAB, 0xCD]);
        assert_eq!(r[6], 0xBB);
        assert_eq!(&r[18..], &[0x04, b'c', b'o', b'r', b'e']);
    }

    #[test]
    fn piggybacked_content() {
        // ACK 2.05, Content-Format 40 (link-format), payload.
        let mut b = vec![0x62, 0x45, 0x12, 0x34, 0xAB, 0xCD, 0xC1, 0x28, 0xFF];
        b.extend_from_slice(b"</sensors/temp>;rt=\"temperature\"");
        let Parse::Done(r) = parse_reply(&b, 0x1234, [0xAB, 0xCD]) else {
            panic!()
        };
        assert_eq!(r.code, "2.05");
        assert_eq!(r.message_type, 2);
        assert!(r.payload.contains("sensors/temp"));
        for cut in 0..b.len() {
            let _ = parse_reply(&b[..cut], 0x1234, [0xAB, 0xCD]);
        }
    }

    #[test]
    fn rejects_mismatch_and_garbage() {
        let b = [0x62, 0x45, 0x12, 0x35, 0xAB, 0xCD];
        assert_eq!(parse_reply(&b, 0x1234, [0xAB, 0xCD]), Parse::NotThis);
        assert_eq!(parse_reply(b"hello", 1, [0, 0]), Parse::NotThis);
        let rst = [0x70, 0x00, 0x12, 0x34];
        assert!(
            matches!(parse_reply(&rst, 0x1234, [0xAB, 0xCD]), Parse::Done(r) if r.message_type == 3)
        );
    }
}
