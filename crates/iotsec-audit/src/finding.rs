//! The findings model: one weakness with a stable id, a severity, its OWASP IoT Top 10 (2018)
//! category, where it is, the evidence that shows it and how to fix it.
//!
//! Severity and category are the scanner's types ([`iotsec_scan::finding::Severity`],
//! [`iotsec_scan::finding::OwaspIot`]) so that findings from the broker audit, the PKI
//! inspection, the scanner and the audit's own checks share one vocabulary. The location is
//! structured (file and line, or network endpoint) so that SARIF can point at it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use iotsec_scan::finding::{OwaspIot, Severity};

/// Where a finding is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Location {
    /// A file, with a 1-based line for text or a byte offset for binaries.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line (text files).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<u64>,
        /// Byte offset (strings extracted from binaries).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
    },
    /// A network service.
    Endpoint {
        /// Host as given or resolved.
        host: String,
        /// Port.
        port: u16,
        /// `tcp` or `udp`.
        transport: String,
    },
    /// Something that is neither a file nor a port: a device id, an MQTT topic, a setting.
    Subject {
        /// What it is.
        name: String,
    },
}

impl Location {
    /// A whole file.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Location::File {
            path: path.into(),
            line: None,
            offset: None,
        }
    }

    /// A line of a file.
    pub fn line(path: impl Into<PathBuf>, line: u64) -> Self {
        Location::File {
            path: path.into(),
            line: Some(line),
            offset: None,
        }
    }

    /// A TCP service.
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        Location::Endpoint {
            host: host.into(),
            port,
            transport: "tcp".into(),
        }
    }

    /// Anything else.
    pub fn subject(name: impl Into<String>) -> Self {
        Location::Subject { name: name.into() }
    }

    /// Parses the scanner's `host:port/tcp` form (IPv6 hosts in brackets); anything else
    /// becomes a [`Location::Subject`].
    pub fn from_scan(text: &str) -> Self {
        let parsed = text.rsplit_once('/').and_then(|(addr, transport)| {
            let (host, port) = addr.rsplit_once(':')?;
            let port = port.parse().ok()?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some(Location::Endpoint {
                host: host.to_owned(),
                port,
                transport: transport.to_owned(),
            })
        });
        parsed.unwrap_or_else(|| Location::subject(text))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, line, offset } => {
                write!(f, "{}", path.display())?;
                if let Some(l) = line {
                    write!(f, ":{l}")?;
                }
                if let Some(o) = offset {
                    write!(f, " @ 0x{o:x}")?;
                }
                Ok(())
            }
            Location::Endpoint {
                host,
                port,
                transport,
            } => {
                if host.contains(':') {
                    write!(f, "[{host}]:{port}/{transport}")
                } else {
                    write!(f, "{host}:{port}/{transport}")
                }
            }
            Location::Subject { name } => f.write_str(name),
        }
    }
}

/// One weakness found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id of the check (`BRK-…`, `PKI-…`, `SCAN-…`, or one of [`crate::catalog`]).
    pub id: String,
    /// How bad it is.
    pub severity: Severity,
    /// OWASP IoT Top 10 (2018) category.
    pub category: OwaspIot,
    /// What is wrong, one line.
    pub title: String,
    /// Where.
    pub location: Location,
    /// What was seen (secrets redacted).
    pub evidence: String,
    /// How to fix it.
    pub remediation: String,
}

impl Finding {
    /// Converts a finding of the broker configuration audit.
    pub fn from_broker(f: &iotsec_broker::Finding) -> Self {
        Finding {
            id: f.id.to_owned(),
            severity: f.severity,
            category: f.category,
            title: f.title.clone(),
            location: match &f.location {
                Some(l) => Location::line(l.file.clone(), l.line as u64),
                None => Location::subject("mosquitto.conf (implicit default)"),
            },
            evidence: f.evidence.clone(),
            remediation: f.remediation.clone(),
        }
    }

    /// Converts a finding of the network scanner.
    pub fn from_scan(f: &iotsec_scan::finding::Finding) -> Self {
        Finding {
            id: f.id.clone(),
            severity: f.severity,
            category: f.category,
            title: f.title.clone(),
            location: Location::from_scan(&f.location),
            evidence: f.evidence.clone(),
            remediation: f.remediation.clone(),
        }
    }
}

/// Sorts most severe first, then by category, id and location: stable output.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.category.cmp(&b.category))
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.location.cmp(&b.location))
            .then_with(|| a.evidence.cmp(&b.evidence))
    });
}

/// Shows the start of a secret and its length, never the whole value: reports are artifacts
/// that get attached to tickets and CI logs.
pub fn redact(secret: &str) -> String {
    let n = secret.chars().count();
    let shown = if n >= 12 {
        4
    } else if n >= 6 {
        2
    } else {
        0
    };
    let head: String = secret.chars().take(shown).collect();
    format!("{head}… ({n} characters, redacted)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_locations_parse() {
        assert_eq!(
            Location::from_scan("127.0.0.1:1883/tcp"),
            Location::tcp("127.0.0.1", 1883)
        );
        assert_eq!(
            Location::from_scan("[::1]:8883/tcp").to_string(),
            "[::1]:8883/tcp"
        );
        assert_eq!(Location::from_scan("host"), Location::subject("host"));
    }

    #[test]
    fn redaction_never_shows_the_secret() {
        let r = redact("your-32-byte-secret-key-here!!!!");
        assert!(r.starts_with("your…"));
        assert!(r.contains("32 characters"));
        assert!(!r.contains("secret-key"));
        assert_eq!(redact("abc"), "… (3 characters, redacted)");
    }
}
