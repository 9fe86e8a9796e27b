//! The findings model shared by `broker audit-conf` and, through conversion, `iotsec audit`.

use serde::Serialize;

use crate::conf::Location;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Minor weakness.
    Low,
    /// Weakness an attacker can use with some effort.
    Medium,
    /// Direct exposure.
    High,
    /// Anyone on the network can take over or read everything.
    Critical,
}

impl Severity {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// OWASP IoT Top 10 (2018) category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Category {
    /// I1 Weak, guessable, or hardcoded passwords.
    I1,
    /// I2 Insecure network services.
    I2,
    /// I3 Insecure ecosystem interfaces.
    I3,
    /// I4 Lack of secure update mechanism.
    I4,
    /// I5 Use of insecure or outdated components.
    I5,
    /// I6 Insufficient privacy protection.
    I6,
    /// I7 Insecure data transfer and storage.
    I7,
    /// I8 Lack of device management.
    I8,
    /// I9 Insecure default settings.
    I9,
    /// I10 Lack of physical hardening.
    I10,
}

impl Category {
    /// `I1`..`I10`.
    pub fn code(self) -> &'static str {
        match self {
            Category::I1 => "I1",
            Category::I2 => "I2",
            Category::I3 => "I3",
            Category::I4 => "I4",
            Category::I5 => "I5",
            Category::I6 => "I6",
            Category::I7 => "I7",
            Category::I8 => "I8",
            Category::I9 => "I9",
            Category::I10 => "I10",
        }
    }
}

/// One problem found in a broker configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id, e.g. `BRK-ANON-EXPOSED`.
    pub id: &'static str,
    /// Severity.
    pub severity: Severity,
    /// OWASP IoT Top 10 category.
    pub category: Category,
    /// What is wrong, one line.
    pub title: String,
    /// The evidence: the line or value that shows it.
    pub evidence: String,
    /// Where: file and line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// How to fix it.
    pub remediation: String,
}
