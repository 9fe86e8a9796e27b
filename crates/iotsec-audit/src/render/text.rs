//! Plain text, grouped by category.

use std::fmt::Write as _;

use crate::finding::Severity;
use crate::report::{Report, Status};

/// The report as text for a terminal or a log.
pub fn text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "iotsec audit: OWASP IoT Top 10 (2018) assessment, {}",
        r.generated
    );
    for i in &r.inputs {
        let _ = writeln!(o, "  input: {i}");
    }
    if r.inputs.is_empty() {
        let _ = writeln!(o, "  no inputs given: nothing could be assessed");
    }
    for c in &r.categories {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "{:<4}{} -- {}",
            c.category.code(),
            c.title,
            c.status.label()
        );
        match c.status {
            Status::NotAssessed => {
                if let Some(reason) = &c.reason {
                    let _ = writeln!(o, "    {reason}");
                }
            }
            Status::Pass | Status::Fail => {
                for by in &c.assessed_by {
                    let _ = writeln!(o, "    checked: {by}");
                }
            }
        }
        for f in r.in_category(c.category) {
            let _ = writeln!(o, "  [{}] {} {}", f.severity, f.id, f.title);
            let _ = writeln!(o, "      at:       {}", f.location);
            let _ = writeln!(o, "      evidence: {}", f.evidence);
            let _ = writeln!(o, "      fix:      {}", f.remediation);
        }
    }
    let count = |s: Status| r.categories.iter().filter(|c| c.status == s).count();
    let counts = r.counts();
    let sev: Vec<String> = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Info,
    ]
    .iter()
    .filter_map(|s| counts.get(s).map(|n| format!("{n} {s}")))
    .collect();
    let _ = writeln!(o);
    if !r.notes.is_empty() {
        let _ = writeln!(o, "Notes:");
        for n in &r.notes {
            let _ = writeln!(o, "  - {n}");
        }
    }
    let _ = writeln!(
        o,
        "Summary: {} fail, {} pass, {} not assessed; {} findings{}",
        count(Status::Fail),
        count(Status::Pass),
        count(Status::NotAssessed),
        r.findings.len(),
        if sev.is_empty() {
            String::new()
        } else {
            format!(" ({})", sev.join(", "))
        }
    );
    o
}
