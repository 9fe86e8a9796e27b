//! The report: every finding, and per OWASP IoT category a verdict — pass, fail (with the
//! findings as evidence and their fixes) or not assessed (with the inputs that would assess it).
//!
//! A category *fails* when it has a finding of severity low or higher (info findings never
//! fail a category). It *passes* when at least one check that covers it ran on the inputs
//! given and found nothing. Otherwise it is *not assessed*.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::finding::{self, Finding, OwaspIot, Severity};

/// Verdict for one category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Checks ran and found nothing of severity low or higher.
    Pass,
    /// At least one finding of severity low or higher.
    Fail,
    /// No check for this category could run with the inputs given.
    NotAssessed,
}

impl Status {
    /// `PASS`, `FAIL`, `NOT ASSESSED`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::NotAssessed => "NOT ASSESSED",
        }
    }
}

/// One category's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryResult {
    /// `I1`..`I10`.
    pub category: OwaspIot,
    /// OWASP's title.
    pub title: String,
    /// The verdict.
    pub status: Status,
    /// What assessed it (empty when not assessed).
    pub assessed_by: Vec<String>,
    /// Why it was not assessed, and what input would assess it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Findings per severity (`critical`, `high`, ...), only non-zero counts.
    pub counts: BTreeMap<Severity, usize>,
}

/// The whole audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// `iotsec audit`.
    pub tool: String,
    /// Version of iotsec-audit.
    pub version: String,
    /// When the audit ran (RFC 3339, UTC).
    pub generated: String,
    /// The inputs given (`--pki /srv/pki`, ...).
    pub inputs: Vec<String>,
    /// One entry per category, I1 to I10.
    pub categories: Vec<CategoryResult>,
    /// Every finding, most severe first.
    pub findings: Vec<Finding>,
    /// Remarks about coverage (files skipped, checks not possible, ...).
    pub notes: Vec<String>,
}

impl Report {
    /// The most severe finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// True when a finding reaches `threshold`.
    pub fn reaches(&self, threshold: Severity) -> bool {
        self.findings.iter().any(|f| f.severity >= threshold)
    }

    /// Findings of one category.
    pub fn in_category(&self, category: OwaspIot) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.category == category)
    }

    /// Number of findings per severity, all categories.
    pub fn counts(&self) -> BTreeMap<Severity, usize> {
        let mut m = BTreeMap::new();
        for f in &self.findings {
            *m.entry(f.severity).or_insert(0) += 1;
        }
        m
    }
}

/// Which inputs assess a category: the "not assessed" reason.
pub fn needed_inputs(category: OwaspIot) -> &'static str {
    match category {
        OwaspIot::I1 => {
            "give --mosquitto-conf, --pki, --firmware/--device-config (hardcoded secrets) or --host with --active (default credentials)"
        }
        OwaspIot::I2 => "give --host (network scan) or --firmware (init scripts)",
        OwaspIot::I3 => {
            "give --host with the ports of the web/API interfaces (HTTP interfaces are checked for authentication)"
        }
        OwaspIot::I4 => {
            "give --firmware (source tree, image, iotsec-ota bundle) or --device-config"
        }
        OwaspIot::I5 => {
            "give --host with --active (broker version) or --firmware (bundled component versions)"
        }
        OwaspIot::I6 => "give --server-config (stored telemetry is sampled for personal data)",
        OwaspIot::I7 => "give --mosquitto-conf, --pki, --host, --firmware or --device-config",
        OwaspIot::I8 => "give --server-config (device registry), --pki or --mosquitto-conf",
        OwaspIot::I9 => "give --mosquitto-conf or --host",
        OwaspIot::I10 => {
            "only ESP-IDF projects are assessed: give --firmware with a tree that contains `sdkconfig`"
        }
    }
}

/// Collects what the checks found and what they covered.
#[derive(Debug, Default)]
pub struct Assessment {
    findings: Vec<Finding>,
    coverage: BTreeMap<OwaspIot, Vec<String>>,
    inputs: Vec<String>,
    notes: Vec<String>,
}

impl Assessment {
    /// An empty assessment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a finding (exact duplicates are dropped).
    pub fn push(&mut self, f: Finding) {
        if !self.findings.contains(&f) {
            self.findings.push(f);
        }
    }

    /// Records findings.
    pub fn extend(&mut self, fs: impl IntoIterator<Item = Finding>) {
        for f in fs {
            self.push(f);
        }
    }

    /// Records that a check covering `category` ran on `what`.
    pub fn covered(&mut self, category: OwaspIot, what: impl Into<String>) {
        let what = what.into();
        let v = self.coverage.entry(category).or_default();
        if !v.contains(&what) {
            v.push(what);
        }
    }

    /// Records an input.
    pub fn input(&mut self, what: impl Into<String>) {
        self.inputs.push(what.into());
    }

    /// Records a remark.
    pub fn note(&mut self, what: impl Into<String>) {
        self.notes.push(what.into());
    }

    /// Merges another assessment into this one.
    pub fn merge(&mut self, other: Assessment) {
        self.extend(other.findings);
        for (c, whats) in other.coverage {
            for w in whats {
                self.covered(c, w);
            }
        }
        self.inputs.extend(other.inputs);
        self.notes.extend(other.notes);
    }

    /// Findings so far.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The report, dated `now`.
    pub fn into_report(self, now: OffsetDateTime) -> Report {
        let mut findings = self.findings;
        finding::sort(&mut findings);
        let categories = OwaspIot::ALL
            .iter()
            .map(|&category| {
                let mut counts = BTreeMap::new();
                for f in findings.iter().filter(|f| f.category == category) {
                    *counts.entry(f.severity).or_insert(0) += 1;
                }
                let failing = findings
                    .iter()
                    .any(|f| f.category == category && f.severity >= Severity::Low);
                let assessed_by = self.coverage.get(&category).cloned().unwrap_or_default();
                let status = if failing {
                    Status::Fail
                } else if assessed_by.is_empty() {
                    Status::NotAssessed
                } else {
                    Status::Pass
                };
                CategoryResult {
                    category,
                    title: category.title().to_owned(),
                    status,
                    reason: (status == Status::NotAssessed)
                        .then(|| format!("no input covers it: {}", needed_inputs(category))),
                    assessed_by,
                    counts,
                }
            })
            .collect();
        Report {
            tool: "iotsec audit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            generated: now
                .replace_nanosecond(0)
                .unwrap_or(now)
                .format(&Rfc3339)
                .unwrap_or_default(),
            inputs: self.inputs,
            categories,
            findings,
            notes: self.notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;
    use crate::finding::Location;

    #[test]
    fn verdicts() {
        let mut a = Assessment::new();
        a.covered(OwaspIot::I1, "firmware");
        a.covered(OwaspIot::I7, "firmware");
        a.push(catalog::FW_TLS_VERIFY_OFF.finding(Location::line("x.py", 3), "e"));
        let r = a.into_report(OffsetDateTime::UNIX_EPOCH);
        let status = |c: OwaspIot| {
            r.categories
                .iter()
                .find(|x| x.category == c)
                .map(|x| x.status)
        };
        assert_eq!(status(OwaspIot::I1), Some(Status::Pass));
        assert_eq!(status(OwaspIot::I7), Some(Status::Fail));
        assert_eq!(status(OwaspIot::I10), Some(Status::NotAssessed));
        assert_eq!(r.categories.len(), 10);
        assert!(r.reaches(Severity::High) && !r.reaches(Severity::Critical));
        assert_eq!(r.generated, "1970-01-01T00:00:00Z");
    }
}
