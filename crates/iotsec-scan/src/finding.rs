//! The findings model: one observed weakness, with a stable id, a severity, its OWASP IoT Top 10
//! (2018) category, the evidence that shows it and what to do about it.
//!
//! It is plain data (serde) on purpose: the scanner produces findings, the audit crate produces
//! findings of its own with the same shape, and the CLI renders both as text or JSON.

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

/// The fixed part of a finding: what is checked, how bad it is and how to fix it. A table of
/// these is the catalog of a check-producing crate (see [`crate::check`] for the scanner's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    /// Stable identifier, `AREA-SUBJECT-PROBLEM` (e.g. `SCAN-MQTT-ANON`). Never reused for a
    /// different meaning: policies and suppressions refer to it.
    pub id: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// OWASP IoT Top 10 category.
    pub category: OwaspIot,
    /// One-line statement of the problem.
    pub title: &'static str,
    /// What the operator should do.
    pub remediation: &'static str,
}

impl Check {
    /// A finding of this check at `location`, with the evidence that shows it.
    pub fn finding(&self, location: impl Into<String>, evidence: impl Into<String>) -> Finding {
        Finding {
            id: self.id.to_owned(),
            severity: self.severity,
            category: self.category,
            title: self.title.to_owned(),
            location: location.into(),
            evidence: evidence.into(),
            remediation: self.remediation.to_owned(),
        }
    }
}

/// One observed weakness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable identifier of the check that produced it (e.g. `SCAN-MQTT-ANON`).
    pub id: String,
    /// How bad it is.
    pub severity: Severity,
    /// OWASP IoT Top 10 (2018) category.
    pub category: OwaspIot,
    /// One-line statement of the problem.
    pub title: String,
    /// Where: `host:port/tcp` for the scanner, a file path or component for the audit.
    pub location: String,
    /// What was observed, precisely enough to reproduce.
    pub evidence: String,
    /// What to do about it.
    pub remediation: String,
}

/// Sorts findings most severe first, then by id and location, so output is stable.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.location.cmp(&b.location))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_orders_and_parses() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::Info < Severity::Low);
        assert_eq!("HIGH".parse::<Severity>(), Ok(Severity::High));
        assert!("severe".parse::<Severity>().is_err());
    }

    #[test]
    fn finding_round_trips_as_json() {
        let check = Check {
            id: "SCAN-TEST",
            severity: Severity::Medium,
            category: OwaspIot::I7,
            title: "t",
            remediation: "r",
        };
        let f = check.finding("127.0.0.1:1/tcp", "e");
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains("\"severity\":\"medium\""));
        assert!(json.contains("\"category\":\"I7\""));
        let back: Finding = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f);
    }
}
