//! iotsec-finding: the two scales every iotsec findings producer shares: [`Severity`] and the
//! OWASP IoT Top 10 (2018) category [`OwaspIot`]. The broker config audit, the scanner and the
//! OWASP audit all grade with these, so their findings merge into one report without mapping.
//!
//! ```
//! use iotsec_finding::{OwaspIot, Severity};
//! assert!(Severity::High >= "medium".parse::<Severity>().unwrap());
//! assert_eq!(OwaspIot::I7.code(), "I7");
//! ```
//!
//! Pure data, no I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`, so a threshold is a
/// plain comparison (`finding.severity >= fail_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing to fix.
    Info,
    /// Hardening opportunity.
    Low,
    /// A weakness that needs a second problem to be exploited.
    Medium,
    /// Directly exploitable by anyone who can reach the port.
    High,
    /// Directly exploitable and gives control of the device or its data.
    Critical,
}

impl Severity {
    /// The lowercase name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of `info`, `low`, `medium`, `high`, `critical`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity `{0}` (expected info, low, medium, high or critical)")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Ok(Self::Info),
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            "critical" => Ok(Self::Critical),
            _ => Err(UnknownSeverity(s.to_owned())),
        }
    }
}

/// OWASP Internet of Things Top 10 (2018) categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum OwaspIot {
    /// I1 Weak, Guessable, or Hardcoded Passwords.
    I1,
    /// I2 Insecure Network Services.
    I2,
    /// I3 Insecure Ecosystem Interfaces.
    I3,
    /// I4 Lack of Secure Update Mechanism.
    I4,
    /// I5 Use of Insecure or Outdated Components.
    I5,
    /// I6 Insufficient Privacy Protection.
    I6,
    /// I7 Insecure Data Transfer and Storage.
    I7,
    /// I8 Lack of Device Management.
    I8,
    /// I9 Insecure Default Settings.
    I9,
    /// I10 Lack of Physical Hardening.
    I10,
}

impl OwaspIot {
    /// Every category, in order.
    pub const ALL: [Self; 10] = [
        Self::I1,
        Self::I2,
        Self::I3,
        Self::I4,
        Self::I5,
        Self::I6,
        Self::I7,
        Self::I8,
        Self::I9,
        Self::I10,
    ];

    /// The short code, `I1` .. `I10`.
    pub fn code(self) -> &'static str {
        match self {
            Self::I1 => "I1",
            Self::I2 => "I2",
            Self::I3 => "I3",
            Self::I4 => "I4",
            Self::I5 => "I5",
            Self::I6 => "I6",
            Self::I7 => "I7",
            Self::I8 => "I8",
            Self::I9 => "I9",
            Self::I10 => "I10",
        }
    }

    /// The category's title as OWASP words it.
    pub fn title(self) -> &'static str {
        match self {
            Self::I1 => "Weak, Guessable, or Hardcoded Passwords",
            Self::I2 => "Insecure Network Services",
            Self::I3 => "Insecure Ecosystem Interfaces",
            Self::I4 => "Lack of Secure Update Mechanism",
            Self::I5 => "Use of Insecure or Outdated Components",
            Self::I6 => "Insufficient Privacy Protection",
            Self::I7 => "Insecure Data Transfer and Storage",
            Self::I8 => "Lack of Device Management",
            Self::I9 => "Insecure Default Settings",
            Self::I10 => "Lack of Physical Hardening",
        }
    }
}

impl fmt::Display for OwaspIot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
