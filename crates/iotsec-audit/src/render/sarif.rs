//! SARIF 2.1.0 (OASIS), so CI systems show findings inline. One run; one rule per check id
//! (with the OWASP category as a tag and a `security-severity` score GitHub understands);
//! results point at files (relative to `base` when they are under it) or, for network
//! findings, at a logical location `host:port/tcp`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::finding::{Finding, Location, Severity};
use crate::report::Report;

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

/// GitHub's `security-severity` (CVSS-like 0.0-10.0).
fn score(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "3.0",
        Severity::Info => "0.0",
    }
}

/// Percent-encodes a path for a URI (RFC 3986 unreserved characters and `/` stay).
fn uri_path(p: &Path) -> String {
    let mut out = String::new();
    for b in p.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn location(f: &Finding, base: Option<&Path>) -> Value {
    match &f.location {
        Location::File { path, line, offset } => {
            let artifact = match base.and_then(|b| path.strip_prefix(b).ok()) {
                Some(rel) => json!({ "uri": uri_path(rel), "uriBaseId": "SRCROOT" }),
                None if path.is_absolute() => {
                    json!({ "uri": format!("file://{}", uri_path(path)) })
                }
                None => json!({ "uri": uri_path(path) }),
            };
            let mut physical = json!({ "artifactLocation": artifact });
            if let Some(l) = line {
                physical["region"] = json!({ "startLine": (*l).max(1) });
            } else if let Some(o) = offset {
                physical["region"] = json!({ "byteOffset": o });
            }
            json!({ "physicalLocation": physical })
        }
        Location::Endpoint { .. } | Location::Subject { .. } => json!({
            "logicalLocations": [{ "fullyQualifiedName": f.location.to_string(), "kind": "resource" }]
        }),
    }
}

/// The report as a SARIF 2.1.0 log. `base`: file paths under it become relative to
/// `%SRCROOT%` (pass the repository root in CI).
pub fn sarif(r: &Report, base: Option<&Path>) -> String {
    let mut rules: BTreeMap<&str, &Finding> = BTreeMap::new();
    for f in &r.findings {
        rules.entry(f.id.as_str()).or_insert(f);
    }
    let index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(i, k)| (*k, i)).collect();
    let rules_json: Vec<Value> = rules
        .values()
        .map(|f| {
            json!({
                "id": f.id,
                "name": f.id.replace('-', ""),
                "shortDescription": { "text": f.title },
                "help": { "text": f.remediation },
                "defaultConfiguration": { "level": level(f.severity) },
                "properties": {
                    "tags": ["security", "owasp-iot", format!("owasp-iot-{}", f.category.code())],
                    "security-severity": score(f.severity),
                    "category": f.category.code(),
                }
            })
        })
        .collect();
    let results: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            json!({
                "ruleId": f.id,
                "ruleIndex": index.get(f.id.as_str()).copied().unwrap_or(0),
                "level": level(f.severity),
                "message": { "text": format!("{}: {}", f.title, f.evidence) },
                "locations": [location(f, base)],
                "properties": {
                    "severity": f.severity.as_str(),
                    "category": f.category.code(),
                    "categoryTitle": f.category.title(),
                    "remediation": f.remediation,
                }
            })
        })
        .collect();
    let mut run = json!({
        "tool": { "driver": {
            "name": "iotsec audit",
            "version": r.version,
            "semanticVersion": r.version,
            "rules": rules_json,
        }},
        "invocations": [{
            "executionSuccessful": true,
            "endTimeUtc": r.generated,
        }],
        "results": results,
        "properties": {
            "owaspIotCategories": r.categories.iter().map(|c| json!({
                "category": c.category.code(),
                "status": c.status.label(),
                "assessedBy": c.assessed_by,
                "reason": c.reason,
            })).collect::<Vec<_>>(),
            "notes": r.notes,
        }
    });
    if let Some(b) = base {
        let mut dir = uri_path(b);
        if !dir.ends_with('/') {
            dir.push('/');
        }
        run["originalUriBaseIds"] = json!({ "SRCROOT": { "uri": format!("file://{dir}") } });
    }
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [run],
    });
    serde_json::to_string_pretty(&log).unwrap_or_default()
}
