//! Greetings of server-speaks-first protocols: SSH (RFC 4253 §4.2), FTP (RFC 959 §4.2) and SMTP
//! (RFC 5321 §4.2) `220` greetings, POP3 `+OK`, IMAP `* OK`, VNC `RFB xxx.yyy`.

use serde::{Deserialize, Serialize};

use super::{Parse, printable};

/// A recognised greeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum Banner {
    /// `SSH-protoversion-softwareversion [comments]`.
    Ssh {
        /// Protocol version (`2.0`, `1.99`, `1.5`).
        proto_version: String,
        /// Software version and comments.
        software: String,
    },
    /// `220` greeting that names FTP.
    Ftp {
        /// The greeting line.
        greeting: String,
    },
    /// `220` greeting that names SMTP / ESMTP.
    Smtp {
        /// The greeting line.
        greeting: String,
    },
    /// `220` greeting naming neither (FTP or SMTP; decided by the port or left open).
    Greeting220 {
        /// The greeting line.
        greeting: String,
    },
    /// POP3 `+OK`.
    Pop3 {
        /// The greeting line.
        greeting: String,
    },
    /// IMAP `* OK`.
    Imap {
        /// The greeting line.
        greeting: String,
    },
    /// VNC / RFB.
    Vnc {
        /// `003.008` etc.
        version: String,
    },
}

impl Banner {
    /// True for SSH protocol 1 only (`1.99` means "2 and 1", RFC 4253 §5.1).
    pub fn is_ssh_v1_only(&self) -> bool {
        matches!(self, Self::Ssh { proto_version, .. } if proto_version.starts_with("1.") && proto_version != "1.99")
    }
}

/// Recognises a greeting in the first bytes a server sent. `Incomplete` while the first line is
/// not finished (up to 255 bytes, the SSH limit).
pub fn parse_banner(bytes: &[u8], eof: bool) -> Parse<Banner> {
    let line_end = bytes.iter().position(|&b| b == b'\n');
    let line = match line_end {
        Some(end) => &bytes[..end],
        None if eof || bytes.len() >= 255 => &bytes[..bytes.len().min(255)],
        None => {
            // Decide early when the prefix already rules every protocol out.
            return if could_be_banner(bytes) {
                Parse::Incomplete
            } else {
                Parse::NotThis
            };
        }
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(rest) = line.strip_prefix(b"SSH-") {
        let text = printable(rest, 200);
        let Some((proto, software)) = text.split_once('-') else {
            return Parse::NotThis;
        };
        if proto.is_empty() || !proto.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Parse::NotThis;
        }
        return Parse::Done(Banner::Ssh {
            proto_version: proto.to_owned(),
            software: software.to_owned(),
        });
    }
    if let Some(rest) = line.strip_prefix(b"RFB ") {
        let version = printable(rest, 16);
        if version.len() == 7 && version.as_bytes().get(3) == Some(&b'.') {
            return Parse::Done(Banner::Vnc { version });
        }
        return Parse::NotThis;
    }
    if line.starts_with(b"220 ") || line.starts_with(b"220-") {
        let greeting = printable(line, 200);
        let upper = greeting.to_ascii_uppercase();
        return Parse::Done(if upper.contains("SMTP") || upper.contains("MAIL") {
            Banner::Smtp { greeting }
        } else if upper.contains("FTP") {
            Banner::Ftp { greeting }
        } else {
            Banner::Greeting220 { greeting }
        });
    }
    if line.starts_with(b"+OK") {
        return Parse::Done(Banner::Pop3 {
            greeting: printable(line, 200),
        });
    }
    if line.starts_with(b"* OK") || line.starts_with(b"* PREAUTH") {
        return Parse::Done(Banner::Imap {
            greeting: printable(line, 200),
        });
    }
    Parse::NotThis
}

fn could_be_banner(prefix: &[u8]) -> bool {
    const STARTS: [&[u8]; 7] = [
        b"SSH-",
        b"RFB ",
        b"220 ",
        b"220-",
        b"+OK",
        b"* OK",
        b"* PREAUTH",
    ];
    STARTS.iter().any(|s| {
        let n = prefix.len().min(s.len());
        prefix[..n] == s[..n]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_banners() {
        // OpenSSH 9.2 on Debian 12 (banner as published by the package).
        let b = parse_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", false);
        let Parse::Done(banner) = b else {
            panic!("{b:?}")
        };
        assert_eq!(
            banner,
            Banner::Ssh {
                proto_version: "2.0".into(),
                software: "OpenSSH_9.2p1 Debian-2+deb12u3".into()
            }
        );
        assert!(!banner.is_ssh_v1_only());
        let Parse::Done(old) = parse_banner(b"SSH-1.5-Cisco-1.25\r\n", false) else {
            panic!()
        };
        assert!(old.is_ssh_v1_only());
        let Parse::Done(both) = parse_banner(b"SSH-1.99-dropbear_0.46\n", false) else {
            panic!()
        };
        assert!(!both.is_ssh_v1_only());
        assert_eq!(parse_banner(b"SSH-2.0-Open", false), Parse::Incomplete);
    }

    #[test]
    fn ftp_smtp_greetings() {
        let ftp = parse_banner(b"220 (vsFTPd 3.0.3)\r\n", false);
        assert!(matches!(ftp, Parse::Done(Banner::Ftp { .. })));
        let smtp = parse_banner(b"220 mail.example ESMTP Postfix (Debian/GNU)\r\n", false);
        assert!(matches!(smtp, Parse::Done(Banner::Smtp { .. })));
        let unknown = parse_banner(b"220 Welcome\r\n", false);
        assert!(matches!(unknown, Parse::Done(Banner::Greeting220 { .. })));
    }

    #[test]
    fn other_greetings_and_noise() {
        assert!(matches!(
            parse_banner(b"RFB 003.008\n", false),
            Parse::Done(Banner::Vnc { .. })
        ));
        assert!(matches!(
            parse_banner(b"+OK POP3 ready\r\n", false),
            Parse::Done(Banner::Pop3 { .. })
        ));
        assert!(matches!(
            parse_banner(b"* OK IMAP4rev1\r\n", false),
            Parse::Done(Banner::Imap { .. })
        ));
        assert_eq!(parse_banner(b"HTTP/1.1 200 OK\r\n", false), Parse::NotThis);
        assert_eq!(parse_banner(b"xyz", false), Parse::NotThis);
        assert_eq!(parse_banner(&[0xFF, 0xFD, 0x18], false), Parse::NotThis);
        assert_eq!(parse_banner(b"SSH-\xff\xfe\n", false), Parse::NotThis);
    }
}
