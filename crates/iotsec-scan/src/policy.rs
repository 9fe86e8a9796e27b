//! Port policy: which ports may be open on the target. Every open port outside the allow list
//! becomes a `SCAN-POLICY-PORT` finding ("close this port").
//!
//! ```toml
//! # iotsec scan policy
//! [tcp]
//! allow = [22, 8883, "9000-9010"]
//! [udp]
//! allow = ["5683"]
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::error::ScanError;
use crate::ports::PortSet;

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// TCP ports allowed to be open.
    pub tcp_allow: PortSet,
    /// UDP ports allowed to answer.
    pub udp_allow: PortSet,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    tcp: Option<RawSection>,
    udp: Option<RawSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    #[serde(default)]
    allow: Vec<RawPort>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawPort {
    Number(i64),
    Spec(String),
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, ScanError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScanError::PolicyRead {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| ScanError::Policy {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses policy text (TOML).
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        Ok(Self {
            tcp_allow: section(raw.tcp, "tcp")?,
            udp_allow: section(raw.udp, "udp")?,
        })
    }
}

fn section(raw: Option<RawSection>, name: &str) -> Result<PortSet, String> {
    let mut spec = Vec::new();
    for item in raw.map(|s| s.allow).unwrap_or_default() {
        match item {
            RawPort::Number(n) if (1..=65535).contains(&n) => spec.push(n.to_string()),
            RawPort::Number(n) => {
                return Err(format!("[{name}] allow: port {n} is outside 1-65535"));
            }
            RawPort::Spec(s) => spec.push(s),
        }
    }
    if spec.is_empty() {
        return Ok(PortSet::default());
    }
    PortSet::parse(&spec.join(",")).map_err(|e| format!("[{name}] allow: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_and_ranges() {
        let p =
            Policy::parse("[tcp]\nallow = [22, \"8883\", \"9000-9002\"]\n[udp]\nallow = [5683]\n")
                .unwrap();
        assert_eq!(p.tcp_allow.as_slice(), &[22, 8883, 9000, 9001, 9002]);
        assert_eq!(p.udp_allow.as_slice(), &[5683]);
        let empty = Policy::parse("").unwrap();
        assert!(empty.tcp_allow.is_empty());
    }

    #[test]
    fn rejects_bad_policies() {
        assert!(Policy::parse("[tcp]\nallow = [70000]\n").is_err());
        assert!(Policy::parse("[tcp]\nalow = [22]\n").is_err());
        assert!(Policy::parse("[tcp]\nallow = [\"x\"]\n").is_err());
        assert!(Policy::parse("not toml [").is_err());
    }
}
