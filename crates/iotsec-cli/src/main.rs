//! `iotsec`: the command-line front end. One module per subcommand under `cmd/`; each parses its
//! arguments (clap derive), calls the library crates, and renders what they return. Nothing else
//! lives here: the libraries never print, this binary does.
//!
//! Exit codes: 0 ok, 1 a check failed / a message was rejected / findings reached the threshold,
//! 2 usage or runtime error (clap's own usage errors also exit 2).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cmd;
mod logging;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// iotsec: secure an IoT fleet end to end (PKI, hardened MQTT broker, signed telemetry,
/// signed firmware updates, exposure scanning and an OWASP IoT Top 10 audit).
#[derive(Debug, Parser)]
#[command(name = "iotsec", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Certificate authority, server and device certificates, CRLs, fingerprints and pins.
    Pki(cmd::pki::Args),
    /// Hardened Mosquitto configuration: render, run, reload, audit existing configs.
    Broker(cmd::broker::Args),
    /// HMAC-SHA256 signed JSON telemetry (Python-compatible v1, and v2 with replay protection).
    Msg(cmd::msg::Args),
    /// Firmware signing keys, signing, verification and A/B slot updates.
    Fw(cmd::fw::Args),
    /// IoT-aware exposure scanner for hosts you own.
    Scan(cmd::scan::Args),
    /// Devices: provisioning (add, list, revoke) and the device agent (run, check).
    Device(cmd::device::Args),
    /// The ingest (verify, store and count every device message) and, with a [web] section, the
    /// HTTPS API and dashboard.
    Serve(cmd::serve::Args),
    /// Bring up the whole secured stack locally (PKI, hardened broker, ...).
    Up(cmd::up::Args),
    /// API tokens for the HTTPS API and dashboard: create (shown once), list, revoke.
    Token(cmd::token::Args),
    /// OWASP IoT Top 10 assessment of a deployment (text, JSON, SARIF or HTML report).
    Audit(cmd::audit::Args),
    /// Fleet load generator: N provisioned devices as real mutual-TLS MQTT clients sending
    /// signed telemetry (connect rate, publish rate, acks, errors).
    Fleet(cmd::fleet::Args),
}

/// The outcome of a subcommand that ran to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything checked out (exit 0).
    Ok,
    /// A check failed, a message was rejected or findings reached the threshold (exit 1).
    Failed,
}

/// Restores the default SIGPIPE action, so `iotsec ... | head` ends quietly like any Unix tool
/// instead of panicking on a write to a closed pipe (Rust ignores SIGPIPE by default).
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: called once at start-up before any thread exists; installs the default
    // disposition, no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Servers and agents keep Rust's SIG_IGN: a peer that goes away during a (vectored) socket
    // write must be an EPIPE for that connection, not a SIGPIPE that kills the whole process
    // (a device dropping a firmware download, a browser closing an event stream).
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Up(_) | Command::Device(_)
    ) {
        default_sigpipe();
    }
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: could not install the rustls crypto provider");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Pki(args) => cmd::pki::run(args),
        Command::Broker(args) => cmd::broker::run(args),
        Command::Msg(args) => cmd::msg::run(args),
        Command::Fw(args) => cmd::fw::run(args),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Device(args) => cmd::device::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Token(args) => cmd::token::run(args),
        Command::Fleet(args) => cmd::fleet::run(args),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
