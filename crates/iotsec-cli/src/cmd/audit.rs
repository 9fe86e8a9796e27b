//! `iotsec audit`: an OWASP IoT Top 10 assessment of a deployment. Every input is optional;
//! the report says which categories the given inputs could not assess. The library returns a
//! report; this module renders it (text, JSON, SARIF, HTML), writes it to stdout or `--out`,
//! and turns `--fail-on` into the exit code.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use iotsec_audit::check::active::ActiveOptions;
use iotsec_audit::{Inputs, Severity, render};
use iotsec_scan::ports::PortSet;

use crate::Outcome;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Text grouped by category.
    Text,
    /// The report as JSON.
    Json,
    /// SARIF 2.1.0 for CI code scanning.
    Sarif,
    /// A self-contained HTML page with a per-category chart.
    Html,
}

/// Arguments of `iotsec audit`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  iotsec audit --mosquitto-conf /etc/mosquitto/mosquitto.conf --pki pki/\n  iotsec audit --firmware src/ --device-config device.py --format sarif --out audit.sarif\n  iotsec audit --host 127.0.0.1 --ports 1883,8883 --active --format html --out audit.html --fail-on high\n\nScan and probe only hosts you own or are allowed to test."
)]
pub struct Args {
    /// A mosquitto.conf to audit (include_dir is followed).
    #[arg(long, value_name = "FILE")]
    pub mosquitto_conf: Option<PathBuf>,
    /// A PKI directory (`iotsec pki` layout: ca.crt, server.crt, devices/, crl.pem).
    #[arg(long, value_name = "DIR")]
    pub pki: Option<PathBuf>,
    /// A host to scan for exposed services.
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// TCP ports of --host: a list and ranges (`1883,8000-8100`), `iot` or `all`.
    #[arg(long, value_name = "SPEC", default_value = "iot", requires = "host")]
    pub ports: String,
    /// Also talk MQTT to the brokers found: anonymous subscriptions, retained secrets, broker
    /// version, a short rate-limited list of default credentials.
    #[arg(long, requires = "host")]
    pub active: bool,
    /// How long --active listens for messages, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3000, requires = "active")]
    pub active_listen_ms: u64,
    /// Pause between two default-credential attempts, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "active")]
    pub credential_interval_ms: u64,
    /// Firmware image, root file system or source tree (repeatable).
    #[arg(long, value_name = "PATH")]
    pub firmware: Vec<PathBuf>,
    /// Device configuration: device.toml, an OTA slots directory, or the device program
    /// itself (repeatable).
    #[arg(long, value_name = "FILE")]
    pub device_config: Vec<PathBuf>,
    /// The ingest's server.toml (device registry, stored telemetry).
    #[arg(long, value_name = "FILE")]
    pub server_config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report here instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 1 when a finding has this severity or higher (info, low, medium, high, critical).
    #[arg(long, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,
    /// Files larger than this many MiB are not scanned for secrets.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub max_file_mib: u64,
}

fn inputs(args: &Args) -> anyhow::Result<Inputs> {
    if args.max_file_mib == 0 {
        bail!("--max-file-mib must be at least 1");
    }
    let mut inputs = Inputs {
        mosquitto_conf: args.mosquitto_conf.clone(),
        pki: args.pki.clone(),
        host: args.host.clone(),
        ports: match &args.host {
            Some(_) => Some(PortSet::parse(&args.ports)?),
            None => None,
        },
        active: args.active.then(|| ActiveOptions {
            listen: Duration::from_millis(args.active_listen_ms),
            credential_interval: Duration::from_millis(args.credential_interval_ms),
            ..ActiveOptions::default()
        }),
        firmware: args.firmware.clone(),
        device_configs: args.device_config.clone(),
        server_config: args.server_config.clone(),
        ..Inputs::default()
    };
    inputs.scan.max_file_size = args.max_file_mib * 1024 * 1024;
    Ok(inputs)
}

/// Runs `iotsec audit`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let inputs = inputs(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(iotsec_audit::run(inputs, time::OffsetDateTime::now_utc()))?;
    let base = std::env::current_dir().ok();
    let rendered = match args.format {
        Format::Text => render::text(&report),
        Format::Json => render::json(&report) + "\n",
        Format::Sarif => render::sarif(&report, base.as_deref()) + "\n",
        Format::Html => render::html(&report),
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, rendered.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            let worst = report
                .worst()
                .map_or_else(|| "none".to_owned(), |s| s.to_string());
            eprintln!(
                "iotsec audit: {} findings (worst: {worst}); report written to {}",
                report.findings.len(),
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(rendered.as_bytes())?;
            out.flush()?;
        }
    }
    let failed = args.fail_on.is_some_and(|t| report.reaches(t));
    Ok(if failed { Outcome::Failed } else { Outcome::Ok })
}
