//! The scan: sweep, identification and assessment, pipelined.
//!
//! The sweep runs on a blocking thread (its own epoll loop) and hands every open port to the
//! async identification phase the moment it is found, so probing overlaps with sweeping. Both
//! share the process's descriptor budget: the sweep window and the probe semaphore are carved
//! out of it so that together they stay under `RLIMIT_NOFILE`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::assess::assess;
use crate::error::ScanError;
use crate::finding::sort_findings;
use crate::handshake;
use crate::ident::Prober;
use crate::limits;
use crate::local;
use crate::policy::Policy;
use crate::ports::PortSet;
use crate::report::{Binding, PortReport, ScanReport, TcpSummary};
use crate::sweep::{self, SweepConfig, SweepProgress};
use crate::target::Target;
use crate::udp;

/// Whether open ports are probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identify {
    /// Probe every open port (the default).
    Probe,
    /// Only find open ports; send nothing to them.
    SweepOnly,
}

/// A validated scan request.
#[derive(Debug, Clone)]
pub struct ScanConfig {
    /// Host to scan.
    pub target: Target,
    /// TCP ports to sweep.
    pub ports: PortSet,
    /// Most connections in flight (further bounded by the open-file limit).
    pub concurrency: usize,
    /// Connect and reply timeout.
    pub timeout: Duration,
    /// How long a silent connection waits for a greeting.
    pub banner_timeout: Duration,
    /// Probe or only sweep.
    pub identify: Identify,
    /// Probe only these of the open ports (others are reported as not probed). `None`: all.
    /// Lets an operator sweep widely while talking only to the services they own.
    pub probe_only: Option<PortSet>,
    /// UDP ports to send the CoAP probe to (empty: no UDP).
    pub udp_ports: PortSet,
    /// Port policy.
    pub policy: Option<Policy>,
}

impl ScanConfig {
    /// Defaults for `target` and `ports`: concurrency 4096, timeout 1.5 s, banner wait 1 s,
    /// probing on, no UDP, no policy.
    pub fn new(target: Target, ports: PortSet) -> Self {
        Self {
            target,
            ports,
            concurrency: 4096,
            timeout: Duration::from_millis(1500),
            banner_timeout: Duration::from_millis(1000),
            identify: Identify::Probe,
            probe_only: None,
            udp_ports: PortSet::default(),
            policy: None,
        }
    }
}

/// Progress events for a caller that shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Sweep progress.
    Sweep(SweepProgress),
    /// A port was identified.
    Identified {
        /// The port.
        port: u16,
        /// Ports identified so far.
        done: usize,
    },
}

/// Runs a scan. `progress` is called from the scanning threads; keep it cheap.
pub async fn scan(
    config: ScanConfig,
    progress: Arc<dyn Fn(Progress) + Send + Sync>,
) -> Result<ScanReport, ScanError> {
    if config.ports.is_empty() && config.udp_ports.is_empty() {
        return Err(ScanError::NoPorts);
    }
    let started_wall = OffsetDateTime::now_utc();
    let started = Instant::now();
    let budget = limits::raise_nofile();
    let probing = config.identify == Identify::Probe;
    let (window, probe_fds) = if probing {
        let probe_fds = (budget.available / 4).clamp(8, 512);
        let window = budget.available.saturating_sub(probe_fds).max(1);
        (config.concurrency.min(window).max(1), probe_fds)
    } else {
        (config.concurrency.min(budget.available).max(1), 0)
    };

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut id = [0u8; 4];
    let _ = getrandom::fill(&mut id);
    let prober = Arc::new(Prober {
        target: config.target.clone(),
        timeout: config.timeout,
        banner_timeout: config.banner_timeout,
        fds: Arc::new(Semaphore::new(probe_fds.max(1))),
        provider: handshake::provider(),
        client_id: format!(
            "iotsec-scan-{:02x}{:02x}{:02x}{:02x}",
            id[0], id[1], id[2], id[3]
        ),
        now,
    });

    // Sweep on a blocking thread, streaming open ports to the identification phase.
    let (open_tx, mut open_rx) = mpsc::unbounded_channel::<u16>();
    let ip = config.target.ip;
    let ports = config.ports.clone();
    let sweep_progress = progress.clone();
    let sweep_config = SweepConfig::new(window, config.timeout);
    let sweep_task = tokio::task::spawn_blocking(move || {
        sweep::sweep(
            ip,
            ports.as_slice(),
            sweep_config,
            |port| {
                let _ = open_tx.send(port);
            },
            |p| sweep_progress(Progress::Sweep(p)),
        )
    });

    let mut probes = JoinSet::new();
    if !config.udp_ports.is_empty() && probing {
        for &port in config.udp_ports.as_slice() {
            let timeout = config.timeout;
            probes.spawn(async move { udp::coap(ip, port, timeout).await });
        }
    }
    let mut reports: Vec<PortReport> = Vec::new();
    let mut identified = 0usize;
    let mut record = |r: Option<PortReport>, reports: &mut Vec<PortReport>| {
        if let Some(r) = r {
            if r.transport == crate::report::Transport::Tcp {
                identified += 1;
                progress(Progress::Identified {
                    port: r.port,
                    done: identified,
                });
            }
            reports.push(r);
        }
    };
    let mut open_closed = false;
    loop {
        tokio::select! {
            port = open_rx.recv(), if !open_closed => match port {
                Some(port) if probing && config.probe_only.as_ref().is_none_or(|p| p.contains(port)) => {
                    let p = prober.clone();
                    probes.spawn(async move { Some(p.identify(port).await) });
                }
                Some(port) => reports.push(sweep_only_report(port)),
                None => open_closed = true,
            },
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                if let Ok(r) = done {
                    record(r, &mut reports);
                }
            }
            else => break,
        }
    }
    let outcome = sweep_task.await.map_err(|e| ScanError::Io {
        context: "sweep thread failed",
        source: std::io::Error::other(e.to_string()),
    })??;

    let local = local::is_local(config.target.ip);
    if local {
        let listeners = local::tcp_listeners();
        for r in reports
            .iter_mut()
            .filter(|r| r.transport == crate::report::Transport::Tcp)
        {
            let addresses: Vec<IpAddr> = listeners
                .iter()
                .filter(|l| l.port == r.port && l.serves(config.target.ip))
                .map(|l| l.addr)
                .collect();
            if !addresses.is_empty() {
                let all_interfaces = addresses.iter().any(IpAddr::is_unspecified);
                r.binding = Some(Binding {
                    addresses,
                    all_interfaces,
                });
            }
        }
    }
    reports.sort_by_key(|r| (r.transport == crate::report::Transport::Udp, r.port));
    let mut findings = assess(&config.target, &reports, config.policy.as_ref());
    sort_findings(&mut findings);

    Ok(ScanReport {
        target: config.target.input.clone(),
        address: config.target.ip,
        local,
        started: started_wall.format(&Rfc3339).unwrap_or_default(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        tcp: TcpSummary {
            scanned: config.ports.len(),
            open: outcome.open.len(),
            closed: outcome.closed,
            filtered: outcome.filtered.len(),
            sweep: outcome.stats,
        },
        udp_probed: if probing { config.udp_ports.len() } else { 0 },
        ports: reports,
        findings,
    })
}

fn sweep_only_report(port: u16) -> PortReport {
    PortReport {
        port,
        transport: crate::report::Transport::Tcp,
        service: crate::report::Service::NotProbed,
        tls: None,
        binding: None,
        elapsed_ms: 0,
    }
}
