//! `iotsec device run` and `iotsec device check`: the device agent of `iotsec-device`.
//!
//! `run` logs with tracing to stderr (level from `RUST_LOG`, default `info`; keys are never
//! logged) and ends on SIGINT / SIGTERM after writing its state, or by itself with `--count`
//! or when a `stdin` / `command` source ends and every reading is acked. `check` connects
//! once and prints the outcome on stdout: exit 0 connected, 1 refused or unreachable,
//! 2 unusable configuration.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use iotsec_device::link::Failure;
use iotsec_device::source::Configured;
use iotsec_device::{CheckOutcome, Config, RunOptions, SourceKind, agent};

use crate::Outcome;

/// Arguments of `iotsec device run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The device configuration (paths in it are relative to its directory).
    #[arg(long, default_value = "device.toml")]
    pub config: PathBuf,
    /// Read the simulated sensor (overrides `[telemetry] source`).
    #[arg(long, conflicts_with = "stdin")]
    pub simulate: bool,
    /// Read one JSON object per line from standard input (overrides `[telemetry] source`).
    #[arg(long)]
    pub stdin: bool,
    /// Take N readings from the source, then exit once every queued reading is acked by the
    /// ingest (tests, benchmarks).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// Arguments of `iotsec device check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The device configuration.
    #[arg(long, default_value = "device.toml")]
    pub config: PathBuf,
    /// Seconds to wait for the broker.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub timeout: u64,
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    // The error names the file and the key.
    Ok(Config::load(path)?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs `iotsec device run`.
pub fn run_agent(args: RunArgs) -> anyhow::Result<Outcome> {
    crate::logging::init();
    let config = load(&args.config)?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let source = if args.simulate {
        match &config.source {
            SourceKind::Simulate { interval } => SourceKind::Simulate {
                interval: *interval,
            },
            _ => SourceKind::Simulate {
                interval: Duration::from_secs(1),
            },
        }
    } else if args.stdin {
        SourceKind::Stdin
    } else {
        config.source.clone()
    };
    let options = RunOptions {
        count: args.count,
        ..RunOptions::default()
    };
    let summary = runtime()?.block_on(async {
        let source = Configured::open(&source)?;
        agent::run(&config, source, options, shutdown_signal()).await
    })?;
    tracing::info!(
        queued = summary.queued,
        acked = summary.acked,
        backlog = summary.backlog,
        retransmissions = summary.retransmissions,
        invalid_lines = summary.invalid,
        connections = summary.connections,
        update_installed = summary.update_installed,
        "device agent stopped"
    );
    Ok(Outcome::Ok)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs `iotsec device check`.
pub fn check(args: CheckArgs) -> anyhow::Result<Outcome> {
    let config = load(&args.config)?;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let report = runtime()?.block_on(iotsec_device::check(&config, timeout))?;
    println!(
        "device {} -> {} (policy {})",
        config.id, report.broker, report.policy
    );
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    if let Some(server) = &report.server {
        println!("server certificate: sha256 {}", server.fingerprint);
        if let Some(spki) = &server.spki {
            println!("server key pin:     {spki}");
        }
    }
    match &report.outcome {
        CheckOutcome::Connected { session_present } => {
            println!(
                "ok: TLS accepted, CONNACK accepted (session present: {})",
                if *session_present { "yes" } else { "no" }
            );
            Ok(Outcome::Ok)
        }
        CheckOutcome::Failed(failure) => {
            println!("FAILED: {failure}");
            if let Some(hint) = hint(failure) {
                println!("hint: {hint}");
            }
            Ok(Outcome::Failed)
        }
        CheckOutcome::TimedOut(after) => {
            println!(
                "FAILED: no answer from the broker within {} s",
                after.as_secs()
            );
            Ok(Outcome::Failed)
        }
    }
}

fn hint(failure: &Failure) -> Option<&'static str> {
    use iotsec_tls::Rejection;
    Some(match failure {
        Failure::Tls(Rejection::PinMismatch { .. } | Rejection::SpkiMismatch { .. }) => {
            "the broker presents another certificate or key than the one pinned: if it was \
             re-issued on purpose, update the pins (see docs/pinning.md)"
        }
        Failure::Tls(Rejection::UnknownCa | Rejection::BadSignature) => {
            "the broker's certificate is not issued by the CA in [tls] ca"
        }
        Failure::Tls(Rejection::NameMismatch { .. }) => {
            "connect with a name the broker's certificate holds (broker = \"host:port\")"
        }
        Failure::Tls(Rejection::CertificateRefused { .. }) => {
            "the broker refused this device's certificate: revoked, expired, or from another CA"
        }
        Failure::Refused { .. } => "TLS is fine; the broker refused the MQTT login",
        Failure::Network { .. } => "is the broker running, and is broker = \"host:port\" right?",
        _ => return None,
    })
}
