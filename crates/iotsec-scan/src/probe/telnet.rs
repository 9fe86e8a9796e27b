//! Telnet option negotiation (RFC 854 commands, RFC 855 option negotiation). A Telnet server
//! usually speaks first: `IAC DO/WILL <option>` sequences, then a login prompt.

use serde::{Deserialize, Serialize};

use super::{Parse, printable};

const IAC: u8 = 0xFF;
const SB: u8 = 0xFA;
const SE: u8 = 0xF0;

/// A negotiation seen from a Telnet server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelnetGreeting {
    /// `(command, option)` pairs: command is WILL (251), WONT (252), DO (253), DONT (254).
    pub negotiations: Vec<(u8, u8)>,
    /// Printable text that followed (often a login prompt).
    pub text: String,
}

/// Parses a Telnet greeting: it must start with IAC and a negotiation command or subnegotiation.
pub fn parse_greeting(bytes: &[u8]) -> Parse<TelnetGreeting> {
    match bytes {
        [] | [IAC] => return Parse::Incomplete,
        [IAC, 0xFB..=0xFE | SB, ..] => {}
        _ => return Parse::NotThis,
    }
    let mut negotiations = Vec::new();
    let mut text = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != IAC {
            text.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            None => break,
            Some(&cmd @ 0xFB..=0xFE) => {
                let Some(&opt) = bytes.get(i + 2) else { break };
                if negotiations.len() < 64 {
                    negotiations.push((cmd, opt));
                }
                i += 3;
            }
            Some(&SB) => {
                // Skip to IAC SE.
                let end = bytes[i + 2..]
                    .windows(2)
                    .position(|w| w == [IAC, SE])
                    .map(|p| i + 2 + p + 2);
                match end {
                    Some(e) => i = e,
                    None => break,
                }
            }
            Some(&IAC) => {
                text.push(IAC);
                i += 2;
            }
            Some(_) => i += 2,
        }
    }
    Parse::Done(TelnetGreeting {
        negotiations,
        text: printable(&text, 120),
    })
}

/// Name of a Telnet option (the common ones).
pub fn option_name(opt: u8) -> String {
    let name = match opt {
        0 => "BINARY",
        1 => "ECHO",
        3 => "SUPPRESS-GO-AHEAD",
        5 => "STATUS",
        24 => "TERMINAL-TYPE",
        31 => "NAWS",
        32 => "TERMINAL-SPEED",
        33 => "LINEMODE",
        34 => "LINEMODE",
        35 => "X-DISPLAY-LOCATION",
        36 => "OLD-ENVIRON",
        39 => "NEW-ENVIRON",
        _ => return opt.to_string(),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_telnetd_greeting() {
        // BusyBox telnetd's opening negotiation (telnetd.c): DO ECHO, DO NAWS, WILL ECHO, WILL SGA.
        let bytes = [
            0xFF, 0xFD, 0x01, 0xFF, 0xFD, 0x1F, 0xFF, 0xFB, 0x01, 0xFF, 0xFB, 0x03,
        ];
        let Parse::Done(g) = parse_greeting(&bytes) else {
            panic!()
        };
        assert_eq!(
            g.negotiations,
            vec![(0xFD, 1), (0xFD, 31), (0xFB, 1), (0xFB, 3)]
        );
        assert_eq!(option_name(31), "NAWS");
    }

    #[test]
    fn greeting_with_subnegotiation_and_prompt() {
        let mut bytes = vec![0xFF, 0xFB, 0x01, 0xFF, 0xFA, 0x18, 0x01, 0xFF, 0xF0];
        bytes.extend_from_slice(b"\r\nrouter login: ");
        let Parse::Done(g) = parse_greeting(&bytes) else {
            panic!()
        };
        assert_eq!(g.text, "router login:");
    }

    #[test]
    fn not_telnet() {
        assert_eq!(parse_greeting(b"SSH-2.0-x"), Parse::NotThis);
        assert_eq!(parse_greeting(&[0xFF, 0x01]), Parse::NotThis);
        assert_eq!(parse_greeting(&[0xFF]), Parse::Incomplete);
        // Truncated sequences never panic.
        assert!(matches!(parse_greeting(&[0xFF, 0xFD]), Parse::Done(_)));
        assert!(matches!(
            parse_greeting(&[0xFF, 0xFA, 0x18]),
            Parse::Done(_)
        ));
    }
}
