//! A self-contained HTML report: inline CSS and an inline SVG chart (findings per category,
//! stacked by severity, with each category's verdict); no scripts, fonts or other external
//! assets, so it can be archived or mailed as one file.

use std::fmt::Write as _;

use crate::finding::Severity;
use crate::report::{Report, Status};

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

fn color(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "#7b1fa2",
        Severity::High => "#c62828",
        Severity::Medium => "#ef6c00",
        Severity::Low => "#f9a825",
        Severity::Info => "#78909c",
    }
}

fn status_color(s: Status) -> &'static str {
    match s {
        Status::Pass => "#2e7d32",
        Status::Fail => "#c62828",
        Status::NotAssessed => "#757575",
    }
}

fn chart(r: &Report) -> String {
    let max = r
        .categories
        .iter()
        .map(|c| c.counts.values().sum::<usize>())
        .max()
        .unwrap_or(0)
        .max(1);
    let (left, bar_w, row_h) = (300.0_f64, 460.0_f64, 28.0_f64);
    let height = row_h * r.categories.len() as f64 + 40.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" aria-label="findings per OWASP IoT category" xmlns="http://www.w3.org/2000/svg" width="960" height="{height}" viewBox="0 0 960 {height}">"#
    );
    for (i, c) in r.categories.iter().enumerate() {
        let y = 10.0 + row_h * i as f64;
        let _ = write!(
            s,
            r#"<text x="0" y="{ty}" class="cat">{code} {title}</text>"#,
            ty = y + 17.0,
            code = esc(c.category.code()),
            title = esc(&shorten(&c.title, 34)),
        );
        let mut x = left;
        for sev in SEVERITIES {
            let n = c.counts.get(&sev).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let w = bar_w * n as f64 / max as f64;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="20" fill="{}"><title>{} {}</title></rect>"#,
                color(sev),
                n,
                sev
            );
            x += w;
        }
        let total: usize = c.counts.values().sum();
        let _ = write!(
            s,
            r#"<text x="{tx:.1}" y="{ty}" class="n">{total}</text><text x="830" y="{ty}" class="st" fill="{fill}">{label}</text>"#,
            tx = x + 6.0,
            ty = y + 15.0,
            fill = status_color(c.status),
            label = esc(c.status.label()),
        );
    }
    let ly = height - 12.0;
    let mut lx = left;
    for sev in SEVERITIES {
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="{y:.1}" width="12" height="12" fill="{}"/><text x="{tx:.1}" y="{ly}" class="lg">{}</text>"#,
            color(sev),
            sev,
            y = ly - 10.0,
            tx = lx + 16.0,
        );
        lx += 90.0;
    }
    s.push_str("</svg>");
    s
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;max-width:1000px;color:#212121;padding:0 1em}\
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}\
.meta{color:#616161;font-size:.9em}.chart text{font-size:13px;fill:#212121}.chart .st{font-weight:700}.chart .n{fill:#424242}\
table{border-collapse:collapse;width:100%;margin:.5em 0}th,td{text-align:left;padding:.35em .5em;border-bottom:1px solid #eee;vertical-align:top;font-size:.92em}\
.badge{display:inline-block;padding:.1em .5em;border-radius:3px;color:#fff;font-size:.8em;font-weight:700}\
.sev-critical{background:#7b1fa2}.sev-high{background:#c62828}.sev-medium{background:#ef6c00}.sev-low{background:#f9a825;color:#212121}.sev-info{background:#78909c}\
.st-pass{background:#2e7d32}.st-fail{background:#c62828}.st-not-assessed{background:#757575}\
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;background:#f5f5f5;padding:0 .2em;word-break:break-all}\
.why{color:#616161;font-size:.9em;margin:.2em 0}";

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Pass => "st-pass",
        Status::Fail => "st-fail",
        Status::NotAssessed => "st-not-assessed",
    }
}

/// The report as one HTML page.
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>iotsec audit: OWASP IoT Top 10</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        o,
        "<h1>iotsec audit: OWASP IoT Top 10 (2018)</h1><p class=\"meta\">{} &middot; iotsec {} &middot; {} findings</p>",
        esc(&r.generated),
        esc(&r.version),
        r.findings.len()
    );
    if !r.inputs.is_empty() {
        o.push_str("<p class=\"meta\">Inputs: ");
        let inputs: Vec<String> = r
            .inputs
            .iter()
            .map(|i| format!("<code>{}</code>", esc(i)))
            .collect();
        o.push_str(&inputs.join(" "));
        o.push_str("</p>");
    }
    o.push_str("<h2>Summary per category</h2>");
    o.push_str(&chart(r));
    o.push_str("<table><tr><th>Category</th><th>Verdict</th><th>Assessed by / why not</th></tr>");
    for c in &r.categories {
        let why = if c.assessed_by.is_empty() {
            esc(c.reason.as_deref().unwrap_or(""))
        } else {
            c.assessed_by
                .iter()
                .map(|s| esc(s))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let _ = write!(
            o,
            "<tr><td><a href=\"#{code}\">{code}</a> {title}</td><td><span class=\"badge {cls}\">{label}</span></td><td>{why}</td></tr>",
            code = esc(c.category.code()),
            title = esc(&c.title),
            cls = status_class(c.status),
            label = esc(c.status.label()),
        );
    }
    o.push_str("</table>");
    for c in &r.categories {
        let _ = write!(
            o,
            "<h2 id=\"{code}\">{code} {title} <span class=\"badge {cls}\">{label}</span></h2>",
            code = esc(c.category.code()),
            title = esc(&c.title),
            cls = status_class(c.status),
            label = esc(c.status.label()),
        );
        if let Some(reason) = &c.reason {
            let _ = write!(o, "<p class=\"why\">{}</p>", esc(reason));
        }
        let findings: Vec<_> = r.in_category(c.category).collect();
        if findings.is_empty() {
            continue;
        }
        o.push_str(
            "<table><tr><th>Severity</th><th>Finding</th><th>Where / evidence / fix</th></tr>",
        );
        for f in findings {
            let _ = write!(
                o,
                "<tr><td><span class=\"badge sev-{sev}\">{sev}</span></td><td><code>{id}</code><br>{title}</td>\
<td><code>{loc}</code><br>{ev}<br><b>Fix:</b> {fix}</td></tr>",
                sev = f.severity.as_str(),
                id = esc(&f.id),
                title = esc(&f.title),
                loc = esc(&f.location.to_string()),
                ev = esc(&f.evidence),
                fix = esc(&f.remediation),
            );
        }
        o.push_str("</table>");
    }
    if !r.notes.is_empty() {
        o.push_str("<h2>Notes</h2><ul>");
        for n in &r.notes {
            let _ = write!(o, "<li>{}</li>", esc(n));
        }
        o.push_str("</ul>");
    }
    o.push_str("</body></html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
