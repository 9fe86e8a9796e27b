//! `iotsec scan`: IoT-aware exposure scan of one host you own or are allowed to scan.
//!
//! Raw arguments (clap) are validated into an [`iotsec_scan::scanner::ScanConfig`]; the library
//! sweeps, probes and assesses; this module renders the table and findings (or JSON) and turns
//! `--fail-on` into the exit code.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iotsec_scan::finding::Severity;
use iotsec_scan::policy::Policy;
use iotsec_scan::ports::PortSet;
use iotsec_scan::report::ScanReport;
use iotsec_scan::scanner::{self, Identify, Progress, ScanConfig};
use iotsec_scan::target::Target;

use crate::Outcome;

/// Arguments of `iotsec scan`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Scan only hosts you own or are allowed to scan.\n\nExamples:\n  iotsec scan 127.0.0.1\n  iotsec scan gateway.lan --ports iot --fail-on high\n  iotsec scan 10.0.0.7 --ports 1-10000 --exclude 22 --policy policy.toml --json"
)]
pub struct Args {
    /// Host to scan: an IP address or host name (broadcast and multicast addresses are refused).
    pub target: String,
    /// TCP ports: a list and ranges (`22,80,8000-8100`), `iot` (common IoT ports) or `all`.
    #[arg(long, short = 'p', default_value = "all", value_name = "SPEC")]
    pub ports: String,
    /// Ports to leave out (same syntax as --ports).
    #[arg(long, value_name = "SPEC")]
    pub exclude: Option<String>,
    /// Most connections in flight (also bounded by the open-file limit).
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub concurrency: usize,
    /// Connect and reply timeout in milliseconds.
    #[arg(long, default_value_t = 1500, value_name = "N")]
    pub timeout_ms: u64,
    /// How long a silent connection waits for a greeting (SSH, FTP, Telnet ...), milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub banner_timeout_ms: u64,
    /// Only find open ports; send nothing to them.
    #[arg(long)]
    pub no_probe: bool,
    /// Probe only these of the open ports (others are listed as open, not probed).
    #[arg(long, value_name = "SPEC", conflicts_with = "no_probe")]
    pub probe_ports: Option<String>,
    /// Also probe UDP: CoAP `GET /.well-known/core` on --udp-ports.
    #[arg(long)]
    pub udp: bool,
    /// UDP ports for --udp.
    #[arg(long, default_value = "5683", value_name = "SPEC", requires = "udp")]
    pub udp_ports: String,
    /// Port policy (TOML: `[tcp] allow = [22, 8883]`); open ports outside it become findings.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Exit 1 when a finding has this severity or higher (info, low, medium, high, critical).
    #[arg(long, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn validate(args: &Args) -> anyhow::Result<ScanConfig> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.timeout_ms == 0 || args.banner_timeout_ms == 0 {
        bail!("--timeout-ms and --banner-timeout-ms must be at least 1");
    }
    let target = Target::resolve(&args.target)?;
    let mut ports = PortSet::parse(&args.ports)?;
    if let Some(exclude) = &args.exclude {
        ports = ports.without(&PortSet::parse(exclude)?);
    }
    let udp_ports = if args.udp {
        PortSet::parse(&args.udp_ports)?
    } else {
        PortSet::default()
    };
    if ports.is_empty() && udp_ports.is_empty() {
        bail!("no ports to scan (the port list is empty after --exclude)");
    }
    let policy = args.policy.as_deref().map(Policy::load).transpose()?;
    let mut config = ScanConfig::new(target, ports);
    config.concurrency = args.concurrency;
    config.timeout = Duration::from_millis(args.timeout_ms);
    config.banner_timeout = Duration::from_millis(args.banner_timeout_ms);
    config.identify = if args.no_probe {
        Identify::SweepOnly
    } else {
        Identify::Probe
    };
    config.probe_only = args
        .probe_ports
        .as_deref()
        .map(PortSet::parse)
        .transpose()?;
    config.udp_ports = udp_ports;
    config.policy = policy;
    Ok(config)
}

/// Runs `iotsec scan`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let config = validate(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let progress = ProgressLine::new(args.quiet, config.ports.len());
    let sink = progress.clone();
    let report = runtime.block_on(scanner::scan(
        config,
        Arc::new(move |event| sink.update(event)),
    ));
    progress.finish();
    let report = report?;

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("cannot write JSON")?;
        writeln!(out)?;
    } else {
        render(&report, &mut out)?;
    }
    out.flush()?;

    let failed = args
        .fail_on
        .is_some_and(|threshold| report.findings.iter().any(|f| f.severity >= threshold));
    Ok(if failed { Outcome::Failed } else { Outcome::Ok })
}

/// The human report: a summary line, the port table, then the findings.
fn render(report: &ScanReport, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "iotsec scan {} ({}): {} TCP ports in {:.2} s: {} open, {} closed, {} filtered{}",
        report.target,
        report.address,
        report.tcp.scanned,
        report.duration_ms as f64 / 1000.0,
        report.tcp.open,
        report.tcp.closed,
        report.tcp.filtered,
        if report.udp_probed > 0 {
            format!("; {} UDP ports probed", report.udp_probed)
        } else {
            String::new()
        }
    )?;
    writeln!(out)?;
    if report.ports.is_empty() {
        writeln!(out, "No open ports.")?;
    } else {
        let rows: Vec<[String; 4]> = report
            .ports
            .iter()
            .map(|p| {
                [
                    format!("{}/{}", p.port, p.transport.as_str()),
                    "open".to_owned(),
                    p.service_name(),
                    p.details(),
                ]
            })
            .collect();
        let header = ["PORT", "STATE", "SERVICE", "DETAILS"];
        let width = |i: usize| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1, w2) = (width(0), width(1), width(2));
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            header[0], header[1], header[2], header[3]
        )?;
        for r in &rows {
            writeln!(out, "{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3])?;
        }
    }
    writeln!(out)?;
    if report.findings.is_empty() {
        writeln!(out, "No findings.")?;
        return Ok(());
    }
    writeln!(out, "FINDINGS ({})", report.findings.len())?;
    for f in &report.findings {
        writeln!(
            out,
            "{:<8}  {}  {}  [OWASP IoT {}]",
            f.severity.as_str().to_uppercase(),
            f.id,
            f.location,
            f.category
        )?;
        writeln!(out, "          {}", f.title)?;
        writeln!(out, "          evidence: {}", f.evidence)?;
        writeln!(out, "          fix: {}", f.remediation)?;
    }
    Ok(())
}

/// Progress on stderr for scans that take more than a second: a ticker thread redraws one line
/// in place on a terminal (every 250 ms), or prints a line every 5 s otherwise.
#[derive(Clone)]
struct ProgressLine(Option<Arc<Progressing>>);

struct Progressing {
    state: Mutex<ProgressState>,
    done: std::sync::atomic::AtomicBool,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct ProgressState {
    total: usize,
    swept: usize,
    open: usize,
    identified: usize,
}

impl ProgressLine {
    fn new(quiet: bool, total: usize) -> Self {
        if quiet {
            return Self(None);
        }
        let shared = Arc::new(Progressing {
            state: Mutex::new(ProgressState {
                total,
                swept: 0,
                open: 0,
                identified: 0,
            }),
            done: std::sync::atomic::AtomicBool::new(false),
            ticker: Mutex::new(None),
        });
        let me = shared.clone();
        let handle = std::thread::spawn(move || me.tick());
        *shared.ticker.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Self(Some(shared))
    }

    fn update(&self, event: Progress) {
        let Some(p) = &self.0 else { return };
        let mut s = p.state.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Progress::Sweep(sw) => {
                s.swept = sw.done;
                s.open = sw.open;
            }
            Progress::Identified { done, .. } => s.identified = done,
        }
    }

    fn finish(&self) {
        let Some(p) = &self.0 else { return };
        p.done.store(true, std::sync::atomic::Ordering::SeqCst);
        let handle = p
            .ticker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Progressing {
    fn tick(&self) {
        let started = Instant::now();
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        };
        let step = Duration::from_millis(50);
        let mut next = started + Duration::from_secs(1);
        let mut printed = false;
        while !self.done.load(std::sync::atomic::Ordering::SeqCst) {
            // A 50 ms poll of the done flag: a display refresh rate, not a timing assumption.
            std::thread::sleep(step);
            if Instant::now() < next {
                continue;
            }
            next = Instant::now() + every;
            let line = {
                let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                format!(
                    "scanning: {}/{} ports swept, {} open, {} identified ({:.0} s)",
                    s.swept,
                    s.total,
                    s.open,
                    s.identified,
                    started.elapsed().as_secs_f64()
                )
            };
            printed = true;
            if tty {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
        }
        if printed && tty {
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use iotsec_scan::probe::mqtt::ConnectOutcome;
    use iotsec_scan::report::{MqttService, PortReport, Service, TcpSummary, Transport};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(argv: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("scan").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn refuses_broadcast_multicast_and_empty_port_lists() {
        for target in ["255.255.255.255", "224.0.0.251", "ff02::1"] {
            let err = validate(&args(&[target])).unwrap_err().to_string();
            assert!(err.contains("refusing"), "{err}");
        }
        let err = validate(&args(&["127.0.0.1", "--ports", "80", "--exclude", "1-100"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no ports"), "{err}");
        assert!(
            Cli::try_parse_from(["scan"]).is_err(),
            "there is no default target"
        );
        assert!(Cli::try_parse_from(["scan", "127.0.0.1", "--fail-on", "severe"]).is_err());
    }

    #[test]
    fn validates_options() {
        let c = validate(&args(&[
            "127.0.0.1",
            "--ports",
            "iot",
            "--exclude",
            "22",
            "--timeout-ms",
            "300",
            "--udp",
            "--no-probe",
        ]))
        .unwrap();
        assert!(c.ports.contains(1883) && !c.ports.contains(22));
        assert_eq!(c.timeout, Duration::from_millis(300));
        assert_eq!(c.udp_ports.as_slice(), &[5683]);
        assert_eq!(c.identify, Identify::SweepOnly);
        assert!(validate(&args(&["127.0.0.1", "--concurrency", "0"])).is_err());
        assert!(c.probe_only.is_none());
        let c = validate(&args(&["127.0.0.1", "--probe-ports", "1883,8883"])).unwrap();
        assert_eq!(c.probe_only.unwrap().as_slice(), &[1883, 8883]);
    }

    #[test]
    fn renders_table_then_findings() {
        let target = Target::resolve("127.0.0.1").unwrap();
        let ports = vec![PortReport {
            port: 1883,
            transport: Transport::Tcp,
            service: Service::Mqtt(MqttService {
                v311: Some(ConnectOutcome::Accepted),
                v5: None,
            }),
            tls: None,
            binding: None,
            elapsed_ms: 3,
        }];
        let findings = iotsec_scan::assess::assess(&target, &ports, None);
        let report = ScanReport {
            target: "127.0.0.1".into(),
            address: target.ip,
            local: true,
            started: String::new(),
            duration_ms: 250,
            tcp: TcpSummary {
                scanned: 65535,
                open: 1,
                closed: 65534,
                filtered: 0,
                ..TcpSummary::default()
            },
            udp_probed: 0,
            ports,
            findings,
        };
        let mut out = Vec::new();
        render(&report, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("65535 TCP ports in 0.25 s: 1 open, 65534 closed"));
        assert!(
            lines[2].starts_with("PORT      STATE  SERVICE  DETAILS"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("1883/tcp  open   mqtt     MQTT 3.1.1: anonymous access accepted"),
            "{text}"
        );
        let findings_at = text.find("FINDINGS (2)").unwrap();
        assert!(
            text[findings_at..].contains("HIGH      SCAN-MQTT-ANON  127.0.0.1:1883/tcp"),
            "{text}"
        );
    }
}
