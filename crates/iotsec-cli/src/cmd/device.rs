//! `iotsec device`: provisioning and fleet management (add, list, revoke) and the device
//! agent (run, check).

use std::path::PathBuf;

use clap::Subcommand;
use iotsec_server::ServerConfig;
use iotsec_server::provision::{self, AddOptions, BundlePolicy};
use iotsec_server::store::Storage;

use crate::Outcome;

/// Arguments of `iotsec device`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Issue a device's certificate and message key, register it, and write its bundle.
    Add {
        /// Device id.
        id: String,
        /// Server configuration (its [provision] section names the PKI).
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
        /// Accept v1 messages (fleet key) from this device until it sends v2.
        #[arg(long)]
        legacy: bool,
        /// Message key version.
        #[arg(long, default_value_t = 1)]
        key_version: u32,
        /// How the device trusts the broker.
        #[arg(long, value_enum, default_value = "ca")]
        policy: Policy,
        /// `host:port` the device connects to (default: the server's broker).
        #[arg(long)]
        broker: Option<String>,
        /// Bundle directory (default: `<bundles>/<id>`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List registered devices: status, last seen, firmware, accepted / rejected counts and
    /// (with an [ota] section) the latest firmware update report.
    List {
        /// Server configuration.
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run the device agent: signed telemetry over mutual-TLS MQTT with a crash-safe offline queue.
    Run(super::device_agent::RunArgs),
    /// Connect once with the device's configuration; report success or exactly why not (exit 0/1).
    Check(super::device_agent::CheckArgs),
    /// Revoke a device: CRL, broker reload, registry status.
    Revoke {
        /// Device id.
        id: String,
        /// Server configuration.
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
    },
}

/// `downloading 40% 2.0.0`, `rolled_back 2.0.0 (deadline_passed)`, ...
fn ota_text(o: &iotsec_server::store::DeviceOta) -> String {
    let mut text = o.state.clone();
    if let Some(p) = o.progress.filter(|_| o.state == "downloading") {
        text.push_str(&format!(" {p}%"));
    }
    if let Some(v) = &o.version {
        text.push(' ');
        text.push_str(v);
    }
    if let Some(r) = &o.reason {
        let r: String = r.chars().take(60).collect();
        text.push_str(&format!(" ({r})"));
    }
    text
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Policy {
    Ca,
    Pin,
    Spki,
    #[value(name = "ca+spki")]
    CaSpki,
}

/// Runs `iotsec device`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        Command::Run(a) => return super::device_agent::run_agent(a),
        Command::Check(a) => return super::device_agent::check(a),
        Command::Add {
            id,
            config,
            legacy,
            key_version,
            policy,
            broker,
            out,
        } => {
            let config = ServerConfig::load(&config)?;
            let mut store = config.open_storage()?;
            let added = provision::add(
                &config,
                &mut store,
                &AddOptions {
                    id: id.clone(),
                    legacy,
                    key_version,
                    policy: match policy {
                        Policy::Ca => BundlePolicy::Ca,
                        Policy::Pin => BundlePolicy::Pin,
                        Policy::Spki => BundlePolicy::Spki,
                        Policy::CaSpki => BundlePolicy::CaSpki,
                    },
                    broker,
                    out,
                },
            )?;
            println!("registered {id} (certificate serial {})", added.serial);
            println!(
                "bundle: {} (device.toml, device.crt, device.key, ca.crt, msg.key, pins.txt)",
                added.bundle.display()
            );
            println!(
                "on the device: iotsec device run --config {}/device.toml",
                added.bundle.display()
            );
        }
        Command::List { config, json } => {
            let config = ServerConfig::load(&config)?;
            let mut store = config.open_storage()?;
            let devices = store.devices()?;
            // OTA reports are kept only where firmware distribution is configured.
            let ota: std::collections::BTreeMap<String, iotsec_server::store::DeviceOta> =
                if config.ota.is_some() {
                    store
                        .device_ota()?
                        .into_iter()
                        .map(|o| (o.device.clone(), o))
                        .collect()
                } else {
                    Default::default()
                };
            if json {
                let mut list = serde_json::to_value(&devices)?;
                for d in list.as_array_mut().into_iter().flatten() {
                    let report = d["id"].as_str().and_then(|id| ota.get(id));
                    d["ota"] = serde_json::to_value(report)?;
                }
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<24} {:<8} {:<24} {:<10} {:>9} {:>9}  OTA",
                    "ID", "STATUS", "LAST SEEN (UTC)", "FIRMWARE", "ACCEPTED", "REJECTED"
                );
                for d in devices {
                    let seen = d
                        .last_seen_ms
                        .and_then(|ms| {
                            time::OffsetDateTime::from_unix_timestamp_nanos(
                                i128::from(ms) * 1_000_000,
                            )
                            .ok()
                        })
                        .map(|t| {
                            format!(
                                "{} {:02}:{:02}:{:02}",
                                t.date(),
                                t.hour(),
                                t.minute(),
                                t.second()
                            )
                        })
                        .unwrap_or_else(|| "never".into());
                    println!(
                        "{:<24} {:<8} {:<24} {:<10} {:>9} {:>9}  {}",
                        d.id,
                        d.status,
                        seen,
                        d.firmware.as_deref().unwrap_or("-"),
                        d.accepted,
                        d.rejected,
                        ota.get(&d.id).map_or_else(|| "-".to_string(), ota_text)
                    );
                }
            }
        }
        Command::Revoke { id, config } => {
            let config = ServerConfig::load(&config)?;
            let mut store = config.open_storage()?;
            let revoked = provision::revoke(&config, &mut store, &id)?;
            println!(
                "revoked {id} (serial {}); CRL re-signed",
                revoked.serials.join(", ")
            );
            match revoked.reloaded {
                Some(pid) => {
                    println!("broker reloaded (pid {pid}): {id} is refused from its next handshake")
                }
                None => {
                    println!("no running broker to reload; the new CRL applies at its next start")
                }
            }
        }
    }
    Ok(Outcome::Ok)
}
