//! One audit run: validated inputs in, a [`Report`] out. File checks run on a blocking thread
//! while the network checks run on the async runtime; the device-management checks come last
//! because they compare the registry with what the PKI and the broker showed.

use std::collections::BTreeSet;
use std::path::PathBuf;

use iotsec_scan::ports::PortSet;
use iotsec_scan::report::Service;
use time::OffsetDateTime;

use crate::check::{self, active::ActiveOptions, registry::RegistryOptions};
use crate::error::{AuditError, Result};
use crate::report::{Assessment, Report};
use crate::secrets::ScanOptions;

/// What to audit. Every input is optional; the report says which categories the given inputs
/// could not assess.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// A mosquitto.conf.
    pub mosquitto_conf: Option<PathBuf>,
    /// A PKI directory.
    pub pki: Option<PathBuf>,
    /// A host to scan.
    pub host: Option<String>,
    /// Its TCP ports (default: the scanner's IoT list).
    pub ports: Option<PortSet>,
    /// Active MQTT checks on the MQTT ports found (requires `host`).
    pub active: Option<ActiveOptions>,
    /// Firmware images, source trees, root file systems.
    pub firmware: Vec<PathBuf>,
    /// Device configurations: a device.toml, an iotsec-ota slots directory, or a device
    /// program (script or sketch), which is scanned like firmware.
    pub device_configs: Vec<PathBuf>,
    /// The ingest's server.toml.
    pub server_config: Option<PathBuf>,
    /// Limits of the secret scanner.
    pub scan: ScanOptions,
    /// Settings of the registry checks.
    pub registry: RegistryOptions,
}

impl Inputs {
    fn describe(&self, a: &mut Assessment) {
        if let Some(p) = &self.mosquitto_conf {
            a.input(format!("--mosquitto-conf {}", p.display()));
        }
        if let Some(p) = &self.pki {
            a.input(format!("--pki {}", p.display()));
        }
        if let Some(h) = &self.host {
            let ports = match &self.ports {
                None => "iot".to_owned(),
                Some(p) if p.len() <= 8 => p
                    .as_slice()
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                Some(p) => format!("<{} ports>", p.len()),
            };
            a.input(format!(
                "--host {h} --ports {ports}{}",
                if self.active.is_some() {
                    " --active"
                } else {
                    ""
                }
            ));
        }
        for p in &self.firmware {
            a.input(format!("--firmware {}", p.display()));
        }
        for p in &self.device_configs {
            a.input(format!("--device-config {}", p.display()));
        }
        if let Some(p) = &self.server_config {
            a.input(format!("--server-config {}", p.display()));
        }
    }
}

/// Runs the audit at time `now`. Must be called inside a Tokio runtime (any flavour).
pub async fn run(inputs: Inputs, now: OffsetDateTime) -> Result<Report> {
    if inputs.active.is_some() && inputs.host.is_none() {
        return Err(AuditError::Usage("--active needs --host".into()));
    }
    let mut a = Assessment::new();
    inputs.describe(&mut a);

    let files = inputs.clone();
    let offline = tokio::task::spawn_blocking(move || offline(&files, now));
    let (network, seen) = match &inputs.host {
        Some(host) => network(host, &inputs).await?,
        None => (Assessment::new(), BTreeSet::new()),
    };
    let (offline, inventory) = offline
        .await
        .map_err(|e| AuditError::Task(e.to_string()))??;
    a.merge(offline);
    a.merge(network);

    if let Some(server) = inputs.server_config.clone() {
        let registry = inputs.registry.clone();
        let part = tokio::task::spawn_blocking(move || {
            let mut a = Assessment::new();
            check::registry::assess(&server, now, &registry, inventory.as_ref(), &seen, &mut a)
                .map(|()| a)
        })
        .await
        .map_err(|e| AuditError::Task(e.to_string()))??;
        a.merge(part);
    }
    Ok(a.into_report(now))
}

fn offline(
    inputs: &Inputs,
    now: OffsetDateTime,
) -> Result<(Assessment, Option<iotsec_pki::Inventory>)> {
    let mut a = Assessment::new();
    if let Some(conf) = &inputs.mosquitto_conf {
        check::broker::assess(conf, &mut a)?;
    }
    let inventory = match &inputs.pki {
        Some(dir) => check::pki::assess(dir, now, &mut a)?,
        None => None,
    };
    let mut trees = inputs.firmware.clone();
    for path in &inputs.device_configs {
        if !path.exists() {
            return Err(AuditError::io(
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        if check::update::is_slots_dir(path) {
            check::update::assess(path, &mut a);
        } else if let Some(table) = check::device::parse(path) {
            check::device::assess(path, &table, &mut a);
        } else {
            // A device program: its secrets and its update code are what matter.
            trees.push(path.clone());
        }
    }
    if !trees.is_empty() {
        check::firmware::assess(&trees, &inputs.scan, &mut a)?;
    }
    Ok((a, inventory))
}

async fn network(host: &str, inputs: &Inputs) -> Result<(Assessment, BTreeSet<String>)> {
    let mut a = Assessment::new();
    let ports = inputs.ports.clone().unwrap_or_else(PortSet::iot);
    let report = check::network::assess(host, &ports, &mut a).await?;
    let mut seen = BTreeSet::new();
    if let Some(opts) = &inputs.active {
        let mut mqtt = 0;
        for p in &report.ports {
            if let Service::Mqtt(_) = p.service {
                mqtt += 1;
                seen.extend(
                    check::active::assess(host, p.port, p.tls.is_some(), opts, &mut a).await,
                );
            }
        }
        if mqtt == 0 {
            a.note(format!(
                "--active: no MQTT broker answered on the scanned ports of {host} (a broker that requires client certificates shows as TLS only)"
            ));
        }
    }
    Ok((a, seen))
}
