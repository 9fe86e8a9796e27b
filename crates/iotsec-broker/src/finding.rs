//! The findings model shared by `broker audit-conf` and, through conversion, `iotsec audit`.

use serde::Serialize;

use crate::conf::Location;

pub use iotsec_finding::{OwaspIot, Severity};

/// One problem found in a broker configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id, e.g. `BRK-ANON-EXPOSED`.
    pub id: &'static str,
    /// Severity.
    pub severity: Severity,
    /// OWASP IoT Top 10 category.
    pub category: OwaspIot,
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
