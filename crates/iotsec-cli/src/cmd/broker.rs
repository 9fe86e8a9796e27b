//! `iotsec broker`: render a hardened Mosquitto config, run it, reload it, audit others.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use iotsec_broker::audit;
use iotsec_broker::conf::Config;
use iotsec_broker::process::{self, BrokerProcess, Log};
use iotsec_broker::render::{HardenedOptions, write_hardened};
use iotsec_broker::{Finding, Severity};

use crate::Outcome;

/// Arguments of `iotsec broker`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a hardened mosquitto.conf + ACL (TLS only, client certificates, no anonymous access).
    Config {
        /// PKI directory (from `iotsec pki`): needs ca.crt, server.crt/key and crl.pem.
        #[arg(long, default_value = "pki")]
        pki: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// TLS listener port.
        #[arg(long, default_value_t = 8883)]
        port: u16,
        /// Listener address.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Server certificate stem in the PKI directory.
        #[arg(long, default_value = "server")]
        server_cert: String,
    },
    /// Run Mosquitto with a rendered config in the foreground (Ctrl-C stops it).
    Run {
        /// Directory written by `broker config`.
        #[arg(long)]
        config: PathBuf,
    },
    /// Re-read certificates and the CRL: refreshes the CRL copy and sends SIGHUP.
    Reload {
        /// Directory written by `broker config`.
        #[arg(long)]
        config: PathBuf,
    },
    /// Audit an existing mosquitto.conf (follows include_dir); exit 1 on findings at or above
    /// --fail-on.
    AuditConf {
        /// The mosquitto.conf to audit.
        file: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Lowest severity that makes the exit code 1.
        #[arg(long, value_enum, default_value = "high")]
        fail_on: FailOn,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FailOn {
    Info,
    Low,
    Medium,
    High,
    Critical,
    Never,
}

impl FailOn {
    fn threshold(self) -> Option<Severity> {
        match self {
            FailOn::Info => Some(Severity::Info),
            FailOn::Low => Some(Severity::Low),
            FailOn::Medium => Some(Severity::Medium),
            FailOn::High => Some(Severity::High),
            FailOn::Critical => Some(Severity::Critical),
            FailOn::Never => None,
        }
    }
}

/// Runs `iotsec broker`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        Command::Config {
            pki,
            out,
            port,
            bind,
            server_cert,
        } => {
            let mut opts = HardenedOptions::new(pki, out);
            opts.port = port;
            opts.bind = bind;
            opts.server_stem = server_cert;
            let r = write_hardened(&opts)?;
            println!("wrote {}", r.conf.display());
            println!("wrote {}", r.acl.display());
            if r.services.is_empty() {
                println!(
                    "note: no service identity in the PKI; issue one for the ingest with \
                     `iotsec pki device iotsec-server --role service` and re-run this command"
                );
            } else {
                println!("service identities: {}", r.services.join(", "));
            }
            println!(
                "start it with: iotsec broker run --config {}",
                r.dir.display()
            );
            Ok(Outcome::Ok)
        }
        Command::Run { config } => run_foreground(config),
        Command::Reload { config } => {
            let pid = process::reload(&config)?;
            println!("CRL and certificates refreshed; SIGHUP sent to mosquitto (pid {pid})");
            Ok(Outcome::Ok)
        }
        Command::AuditConf {
            file,
            json,
            fail_on,
        } => {
            let config = Config::load(&file)?;
            let findings = audit::audit(&config);
            if json {
                println!("{}", serde_json::to_string_pretty(&findings)?);
            } else {
                print_findings(&findings);
            }
            let failed = fail_on
                .threshold()
                .is_some_and(|t| findings.iter().any(|f| f.severity >= t));
            Ok(if failed { Outcome::Failed } else { Outcome::Ok })
        }
    }
}

fn print_findings(findings: &[Finding]) {
    if findings.is_empty() {
        println!("no findings");
        return;
    }
    for f in findings {
        println!(
            "{:<8} {:<3} {:<20} {}",
            f.severity.as_str().to_uppercase(),
            f.category.code(),
            f.id,
            f.title
        );
        match &f.location {
            Some(loc) => println!("         at {loc}: {}", f.evidence),
            None => println!("         evidence: {}", f.evidence),
        }
        println!("         fix: {}", f.remediation);
    }
    println!("{} finding(s)", findings.len());
}

fn run_foreground(config: PathBuf) -> anyhow::Result<Outcome> {
    let mut broker = BrokerProcess::spawn(&config, Log::Inherit, Duration::from_secs(10))?;
    eprintln!(
        "mosquitto (pid {}) listening on {} with TLS; Ctrl-C stops it",
        broker.pid().unwrap_or_default(),
        broker.addr()
    );
    super::foreground::until_stopped(&mut broker, "the log above")?;
    broker.stop();
    eprintln!("mosquitto stopped");
    Ok(Outcome::Ok)
}
