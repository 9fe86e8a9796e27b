//! Modbus/TCP (Modbus Application Protocol v1.1b3 §6.21 Read Device Identification, function
//! 0x2B / MEI 0x0E; Modbus Messaging on TCP/IP v1.0b §3.1 MBAP header).
//!
//! The probe asks for the basic device identification (vendor, product code, revision). Both an
//! answer and an exception (function | 0x80) prove a Modbus server: either way, nobody asked us
//! for credentials, because Modbus has none.

use serde::{Deserialize, Serialize};

use super::{Parse, printable};

/// Unit identifier for a directly addressed Modbus/TCP server (Messaging on TCP/IP §4.4.1).
const UNIT: u8 = 0xFF;

/// Builds a Read Device Identification request (basic objects, starting at object 0).
pub fn read_device_id_request(transaction_id: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(11);
    p.extend_from_slice(&transaction_id.to_be_bytes());
    p.extend_from_slice(&[0x00, 0x00]); // protocol id: Modbus
    p.extend_from_slice(&[0x00, 0x05]); // length: unit + 4 PDU bytes
    p.extend_from_slice(&[UNIT, 0x2B, 0x0E, 0x01, 0x00]);
    p
}

/// A Modbus/TCP answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModbusReply {
    /// Device identification objects (0 vendor, 1 product code, 2 revision).
    DeviceId {
        /// Object 0x00, VendorName.
        vendor: Option<String>,
        /// Object 0x01, ProductCode.
        product: Option<String>,
        /// Object 0x02, MajorMinorRevision.
        revision: Option<String>,
    },
    /// Exception response.
    Exception {
        /// Function code with the exception bit.
        function: u8,
        /// Exception code (1 illegal function, 2 illegal data address, ...).
        code: u8,
    },
    /// Any other well-formed response to our transaction.
    Other {
        /// Function code.
        function: u8,
    },
}

/// Parses the response to [`read_device_id_request`] with the same `transaction_id`.
pub fn parse_reply(bytes: &[u8], transaction_id: u16) -> Parse<ModbusReply> {
    if bytes.len() < 8 {
        let tid = transaction_id.to_be_bytes();
        let expect = [tid[0], tid[1], 0, 0];
        let n = bytes.len().min(4);
        return if bytes[..n] == expect[..n] {
            Parse::Incomplete
        } else {
            Parse::NotThis
        };
    }
    if bytes[..2] != transaction_id.to_be_bytes() || bytes[2..4] != [0, 0] {
        return Parse::NotThis;
    }
    let len = usize::from(u16::from_be_bytes([bytes[4], bytes[5]]));
    // Length counts unit id + PDU; a PDU is at most 253 bytes.
    if !(2..=254).contains(&len) {
        return Parse::NotThis;
    }
    let Some(frame) = bytes.get(6..6 + len) else {
        return Parse::Incomplete;
    };
    let pdu = &frame[1..];
    let function = pdu[0];
    if function & 0x80 != 0 {
        return match pdu.get(1) {
            Some(&code) => Parse::Done(ModbusReply::Exception { function, code }),
            None => Parse::NotThis,
        };
    }
    if function != 0x2B {
        return Parse::Done(ModbusReply::Other { function });
    }
    // 2B 0E readcode conformity more next count {id len value}*
    match pdu {
        [0x2B, 0x0E, _, _, _, _, count, objects @ ..] => {
            let mut vendor = None;
            let mut product = None;
            let mut revision = None;
            let mut rest = objects;
            for _ in 0..*count {
                let [id, olen, tail @ ..] = rest else { break };
                let Some(value) = tail.get(..usize::from(*olen)) else {
                    break;
                };
                let text = Some(printable(value, 80));
                match id {
                    0 => vendor = text,
                    1 => product = text,
                    2 => revision = text,
                    _ => {}
                }
                rest = &tail[usize::from(*olen)..];
            }
            Parse::Done(ModbusReply::DeviceId {
                vendor,
                product,
                revision,
            })
        }
        _ => Parse::Done(ModbusReply::Other { function }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        assert_eq!(
            read_device_id_request(0x1234),
            [0x12, 0x34, 0, 0, 0, 5, 0xFF, 0x2B, 0x0E, 0x01, 0x00]
        );
    }

    #[test]
    fn device_id_answer() {
        // Built per spec §6.21: basic objects vendor, product code, revision.
        let mut b = vec![0x12, 0x34, 0, 0, 0, 0];
        let pdu: Vec<u8> = [
            &[0xFF, 0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, 0x03][..],
            &[0x00, 0x08],
            b"Pymodbus",
            &[0x01, 0x02],
            b"PM",
            &[0x02, 0x05],
            b"3.6.9",
        ]
        .concat();
        b[5] = pdu.len() as u8;
        b.extend_from_slice(&pdu);
        let Parse::Done(ModbusReply::DeviceId {
            vendor,
            product,
            revision,
        }) = parse_reply(&b, 0x1234)
        else {
            panic!()
        };
        assert_eq!(vendor.as_deref(), Some("Pymodbus"));
        assert_eq!(product.as_deref(), Some("PM"));
        assert_eq!(revision.as_deref(), Some("3.6.9"));
        // Every truncation is Incomplete or a shorter answer, never a panic.
        for cut in 0..b.len() {
            let _ = parse_reply(&b[..cut], 0x1234);
        }
    }

    #[test]
    fn exception_answer() {
        let b = [0x12, 0x34, 0, 0, 0, 3, 0xFF, 0xAB, 0x01];
        assert_eq!(
            parse_reply(&b, 0x1234),
            Parse::Done(ModbusReply::Exception {
                function: 0xAB,
                code: 1
            })
        );
    }

    #[test]
    fn foreign_bytes() {
        assert_eq!(
            parse_reply(b"HTTP/1.1 400 Bad Request", 0x1234),
            Parse::NotThis
        );
        assert_eq!(
            parse_reply(&[0x12, 0x35, 0, 0, 0, 3, 1, 0xAB, 1], 0x1234),
            Parse::NotThis
        );
        assert_eq!(parse_reply(&[0x12, 0x34, 0], 0x1234), Parse::Incomplete);
        assert_eq!(
            parse_reply(&[0x12, 0x34, 0, 0, 0, 0, 1, 2], 0x1234),
            Parse::NotThis
        );
    }
}
