//! `iotsec fw publish`, `iotsec fw releases` and `iotsec fw rollout start / status`: firmware
//! distribution through the server (`iotsec_server::release`). `publish` verifies and stores
//! a bundle; `rollout start` stores a staged rollout, which the ingest of a running
//! `iotsec serve` drives (notices over MQTT, downloads over HTTPS, reports back).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;
use iotsec_server::ServerConfig;
use iotsec_server::release::{
    self, DEFAULT_MAX_FAILURE_RATE, DEFAULT_STAGES, OtaConfig, Published, RolloutRequest, Targets,
};
use iotsec_server::store::ReleaseRecord;
use serde_json::{Value, json};

use crate::Outcome;

/// `iotsec fw rollout ...`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start a staged rollout of a published release; `iotsec serve` notifies the devices.
    Start {
        /// Release id, id prefix or version.
        release: String,
        /// Target devices, in order: the first stage takes the first ones (repeatable).
        #[arg(long = "device", num_args = 1.., required_unless_present = "all")]
        devices: Vec<String>,
        /// Every active registered device.
        #[arg(long, conflicts_with = "devices")]
        all: bool,
        /// Cumulative stage sizes: device counts or percentages.
        #[arg(long, default_value = DEFAULT_STAGES)]
        stages: String,
        /// A stage whose failed share exceeds this halts the rollout.
        #[arg(long, default_value_t = DEFAULT_MAX_FAILURE_RATE)]
        max_failure_rate: f64,
        /// Server configuration.
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
        /// Print the rollout as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show rollouts (all, or one by id) and every device's standing.
    Status {
        /// Rollout id (default: all).
        id: Option<i64>,
        /// Server configuration.
        #[arg(long, default_value = "server.toml")]
        config: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn load(config: &Path) -> anyhow::Result<(ServerConfig, OtaConfig)> {
    let server = ServerConfig::load(config)?;
    let ota = OtaConfig::require(&server)?;
    Ok((server, ota))
}

fn release_json(r: &ReleaseRecord) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// `iotsec fw publish FILE`.
pub fn publish(file: &Path, config: &Path, json: bool) -> anyhow::Result<Outcome> {
    let (server, ota) = load(config)?;
    let mut store = server.open_storage()?;
    let now = super::now_ms() as i64;
    match release::publish(&ota, store.as_mut(), file, now)? {
        Ok(published) => {
            let (r, new) = match &published {
                Published::New(r) => (r, true),
                Published::Existing(r) => (r, false),
            };
            if json {
                println!(
                    "{}",
                    json!({ "published": true, "new": new, "release": release_json(r) })
                );
            } else {
                println!(
                    "{} release {} ({} for {}, security counter {}, {} bytes of image)",
                    if new {
                        "published"
                    } else {
                        "already published:"
                    },
                    r.id,
                    r.version,
                    r.hardware_id,
                    r.security_counter,
                    r.size
                );
                println!(
                    "roll it out: iotsec fw rollout start {} --device ID (or --all)",
                    r.id
                );
            }
            Ok(Outcome::Ok)
        }
        Err(refusal) => {
            if json {
                println!(
                    "{}",
                    json!({ "published": false, "reason": refusal.to_string() })
                );
            } else {
                println!("rejected: {refusal}");
            }
            Ok(Outcome::Failed)
        }
    }
}

/// `iotsec fw releases`.
pub fn releases(config: &Path, json: bool) -> anyhow::Result<Outcome> {
    let server = ServerConfig::load(config)?;
    let mut store = server.open_storage()?;
    let list = store.releases()?;
    if json {
        println!(
            "{}",
            json!({ "releases": list.iter().map(release_json).collect::<Vec<_>>() })
        );
        return Ok(Outcome::Ok);
    }
    println!(
        "{:<16}  {:<12} {:<16} {:>7} {:>12}",
        "RELEASE", "VERSION", "HARDWARE", "COUNTER", "SIZE"
    );
    for r in list {
        println!(
            "{:<16}  {:<12} {:<16} {:>7} {:>12}",
            r.id, r.version, r.hardware_id, r.security_counter, r.size
        );
    }
    Ok(Outcome::Ok)
}

/// `iotsec fw rollout ...`.
pub fn rollout(cmd: RolloutCommand) -> anyhow::Result<Outcome> {
    match cmd {
        RolloutCommand::Start {
            release: name,
            devices,
            all,
            stages,
            max_failure_rate,
            config,
            json,
        } => {
            let (server, ota) = load(&config)?;
            let mut store = server.open_storage()?;
            let request = RolloutRequest {
                release: name,
                targets: if all {
                    Targets::All
                } else {
                    Targets::Devices(devices)
                },
                stages: release::parse_stages(&stages).context("--stages")?,
                max_failure_rate,
            };
            let (id, _) = release::start_rollout(store.as_mut(), &request, super::now_ms() as i64)?;
            let view = one(store.as_mut(), &ota, id)?;
            if json {
                println!("{view}");
            } else {
                print_rollout(&view);
                println!(
                    "a running `iotsec serve` with this configuration notifies the first stage now"
                );
            }
            Ok(Outcome::Ok)
        }
        RolloutCommand::Status { id, config, json } => {
            let (server, ota) = load(&config)?;
            let mut store = server.open_storage()?;
            let views: Vec<Value> = match id {
                Some(id) => vec![one(store.as_mut(), &ota, id)?],
                None => all_views(store.as_mut(), &ota)?,
            };
            if json {
                match id {
                    Some(_) => println!("{}", views.first().cloned().unwrap_or(Value::Null)),
                    None => println!("{}", json!({ "rollouts": views })),
                }
            } else if views.is_empty() {
                println!("no rollouts yet");
            } else {
                for v in &views {
                    print_rollout(v);
                }
            }
            Ok(Outcome::Ok)
        }
    }
}

fn all_views(
    store: &mut dyn iotsec_server::store::Storage,
    ota: &OtaConfig,
) -> anyhow::Result<Vec<Value>> {
    let list = release::rollouts(store)?;
    let latest = release::reports(store)?;
    let now = super::now_ms() as i64;
    Ok(list
        .iter()
        .map(|r| release::rollout_json(r, &latest, now, &ota.timing()))
        .collect())
}

fn one(
    store: &mut dyn iotsec_server::store::Storage,
    ota: &OtaConfig,
    id: i64,
) -> anyhow::Result<Value> {
    all_views(store, ota)?
        .into_iter()
        .find(|v| v["id"] == id)
        .with_context(|| format!("no rollout {id}"))
}

fn print_rollout(v: &Value) {
    let stages = v["stages"].as_array().map_or(0, Vec::len);
    let where_ = match (v["status"].as_str(), v["halt"].is_object()) {
        (Some("halted"), true) => format!(
            "halted in stage {} of {stages}: {} of {} devices failed (max failure rate {})",
            v["halt"]["stage"], v["halt"]["failed"], v["halt"]["total"], v["max_failure_rate"]
        ),
        (Some(status), _) => format!("{status}, stage {} of {stages}", v["stage"]),
        _ => "?".into(),
    };
    println!(
        "rollout {}: release {}, {where_}",
        v["id"],
        v["release"].as_str().unwrap_or("?")
    );
    for d in v["devices"].as_array().into_iter().flatten() {
        let mut state = d["state"].as_str().unwrap_or("?").to_string();
        if let Some(p) = d["progress"].as_u64() {
            state.push_str(&format!(" {p}%"));
        }
        if let Some(r) = d["reason"].as_str() {
            state.push_str(&format!(" ({r})"));
        }
        println!(
            "  {:<24} stage {:<3} {state}",
            d["device"].as_str().unwrap_or("?"),
            d["stage"]
        );
    }
}
