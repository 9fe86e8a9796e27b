//! Live services: `iotsec_scan` on the host and ports given (`SCAN-*` findings), plus whether
//! HTTP interfaces answer without authentication (I3).

use std::sync::Arc;

use iotsec_scan::ports::PortSet;
use iotsec_scan::report::{ScanReport, Service, Transport};
use iotsec_scan::scanner::{self, ScanConfig};
use iotsec_scan::target::Target;

use crate::catalog;
use crate::error::Result;
use crate::finding::{Finding, Location, OwaspIot};
use crate::report::Assessment;

/// Scans `host` on `ports`.
pub async fn assess(host: &str, ports: &PortSet, a: &mut Assessment) -> Result<ScanReport> {
    let target = Target::resolve(host)?;
    let report = scanner::scan(ScanConfig::new(target, ports.clone()), Arc::new(|_| {})).await?;
    for f in &report.findings {
        a.push(Finding::from_scan(f));
    }
    let what = format!(
        "network scan of {host} ({} TCP ports, {} open)",
        report.tcp.scanned, report.tcp.open
    );
    for c in [OwaspIot::I2, OwaspIot::I7, OwaspIot::I9] {
        a.covered(c, what.clone());
    }
    let mut http = 0;
    for p in report
        .ports
        .iter()
        .filter(|p| p.transport == Transport::Tcp)
    {
        if let Service::Http(r) = &p.service {
            http += 1;
            if (200..300).contains(&r.status) && !r.requires_auth() {
                a.push(catalog::NET_HTTP_NO_AUTH.finding(
                    Location::tcp(host, p.port),
                    format!(
                        "GET / over {} answered {} {} without asking for credentials{}",
                        if p.tls.is_some() { "HTTPS" } else { "plain HTTP" },
                        r.status,
                        r.reason,
                        r.server.as_deref().map(|s| format!(" (server: {s})")).unwrap_or_default()
                    ),
                ));
            }
        }
    }
    a.covered(
        OwaspIot::I3,
        if http == 0 {
            format!("{what}: no HTTP interface found")
        } else {
            format!("{what}: {http} HTTP interfaces checked for authentication")
        },
    );
    Ok(report)
}
