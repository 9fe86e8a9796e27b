//! `iotsec up`: the whole secured stack on this machine, in one command.
//!
//! First run: creates `./iotsec-data/` with a PKI (CA, a server certificate for localhost and
//! 127.0.0.1, the `iotsec-server` service identity, demo devices) and a hardened broker
//! configuration. Later runs reuse it (the CRL is re-signed at every start so it never
//! expires under a running broker). Then it starts Mosquitto on 127.0.0.1:8883, prints
//! ready-to-paste client commands, and stays in the foreground until Ctrl-C, which stops
//! everything it started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use iotsec_broker::process::{BrokerProcess, Log};
use iotsec_broker::render::{HardenedOptions, write_hardened};
use iotsec_pki::{
    Authority, CaOptions, DeviceId, DeviceOptions, Overwrite, Role, ServerOptions,
    authority::DEFAULT_CRL_DAYS,
};

use crate::Outcome;

/// The service identity of the ingest.
const SERVICE_ID: &str = "iotsec-server";

/// Arguments of `iotsec up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the stack keeps its state (created on first run, reused after).
    #[arg(long, default_value = "iotsec-data")]
    data: PathBuf,
    /// MQTT over TLS port.
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// Number of demo devices to provision.
    #[arg(long, default_value_t = 3)]
    devices: u32,
}

/// What `up` prepared on disk.
struct Prepared {
    pki: PathBuf,
    broker: PathBuf,
    created: bool,
    devices: Vec<String>,
}

fn prepare(args: &Args) -> anyhow::Result<Prepared> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    let data = std::fs::canonicalize(&args.data)?;
    let pki = data.join("pki");
    let created = !pki.join("ca.crt").exists();
    let mut ca = if created {
        Authority::init(&pki, &CaOptions::default())?
    } else {
        Authority::open(&pki)?
    };
    if ca.inventory().current("localhost", Role::Server).is_none() {
        ca.issue_server(&ServerOptions {
            host: "localhost".into(),
            sans: vec!["127.0.0.1".into(), "::1".into()],
            key: None,
            key_file: None,
            stem: "server".into(),
            days: iotsec_pki::authority::DEFAULT_LEAF_DAYS,
            overwrite: Overwrite::Replace,
        })?;
    }
    if ca.inventory().current(SERVICE_ID, Role::Service).is_none() {
        ca.issue_devices(
            &[DeviceId::new(SERVICE_ID)?],
            &DeviceOptions {
                role: Role::Service,
                ..DeviceOptions::default()
            },
        )?;
    }
    let mut devices = Vec::new();
    let mut missing = Vec::new();
    for n in 1..=args.devices {
        let id = DeviceId::new(&format!("device-{n}"))?;
        if ca.inventory().current(id.as_str(), Role::Device).is_none() {
            missing.push(id.clone());
        }
        devices.push(id.to_string());
    }
    if !missing.is_empty() {
        ca.issue_devices(&missing, &DeviceOptions::default())?;
    }
    // A running broker refuses every client once its CRL passes nextUpdate: start fresh.
    ca.write_crl(DEFAULT_CRL_DAYS)?;

    let broker = data.join("broker");
    let mut opts = HardenedOptions::new(&pki, &broker);
    opts.port = args.port;
    write_hardened(&opts)?;
    Ok(Prepared {
        pki,
        broker,
        created,
        devices,
    })
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn client_commands(p: &Prepared, port: u16) -> String {
    let pki = p.pki.display();
    let dev = p.devices.first().map(String::as_str).unwrap_or("device-1");
    format!(
        "Subscribe as the ingest service (sees every device's telemetry):\n\
  mosquitto_sub -h 127.0.0.1 -p {port} --cafile {pki}/ca.crt \\\n\
    --cert {pki}/devices/{SERVICE_ID}.crt --key {pki}/devices/{SERVICE_ID}.key \\\n\
    -t 'devices/+/telemetry' -v\n\n\
Publish as {dev} (its certificate is its identity; it may only use devices/{dev}/...):\n\
  mosquitto_pub -h 127.0.0.1 -p {port} --cafile {pki}/ca.crt \\\n\
    --cert {pki}/devices/{dev}.crt --key {pki}/devices/{dev}.key \\\n\
    -t 'devices/{dev}/telemetry' -m '{{\"temp\": 23.5}}'\n"
    )
}

/// Runs `iotsec up`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let bin = iotsec_broker::process::mosquitto_binary()?;
    let prepared = prepare(&args)?;
    if !port_free(args.port) {
        anyhow::bail!(
            "127.0.0.1:{} is already in use (another broker?); stop it or pass --port",
            args.port
        );
    }
    let log_path = prepared.broker.join("mosquitto.log");
    let mut broker = BrokerProcess::spawn(
        &prepared.broker,
        Log::File(log_path.clone()),
        Duration::from_secs(10),
    )?;
    println!(
        "iotsec is up ({} {}).",
        if prepared.created {
            "created"
        } else {
            "reused"
        },
        display(&args.data)
    );
    println!(
        "Mosquitto {} (pid {}) on 127.0.0.1:{}: TLS only, client certificates required, no anonymous access.",
        bin.display(),
        broker.pid().unwrap_or_default(),
        args.port
    );
    println!("Broker log: {}", log_path.display());
    println!();
    println!("{}", client_commands(&prepared, args.port));
    println!("Press Ctrl-C to stop.");

    super::foreground::until_stopped(&mut broker, &log_path.display().to_string())?;
    broker.stop();
    println!("stopped.");
    Ok(Outcome::Ok)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
