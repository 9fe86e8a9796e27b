//! The findings model: one observed weakness, with a stable id, a severity, its OWASP IoT Top 10
//! (2018) category, the evidence that shows it and what to do about it.
//!
//! It is plain data (serde) on purpose: the scanner produces findings, the audit crate produces
//! findings of its own with the same shape, and the CLI renders both as text or JSON.

use serde::{Deserialize, Serialize};

pub use iotsec_finding::{OwaspIot, Severity, UnknownSeverity};

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
