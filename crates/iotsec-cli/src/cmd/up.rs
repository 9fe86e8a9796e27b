//! `iotsec up`: the whole secured stack on this machine, in one command.
//!
//! First run: creates `./iotsec-data/` with a PKI (CA, a server certificate for localhost and
//! 127.0.0.1 used by the broker and the HTTPS API, the `iotsec-server` service identity), the
//! message master key (0600), a hardened broker configuration, `server.toml` with `[web]` and
//! `[provision]`, the SQLite database, N demo devices provisioned like `iotsec device add`
//! (bundles under `bundles/`), and an admin API token, printed once. Later runs reuse all of
//! it; `server.toml` and the broker configuration are rendered again from the flags, and the
//! CRL is re-signed so it never expires under a running broker.
//!
//! Then it starts Mosquitto, the ingest and the HTTPS API + dashboard (in this process), one
//! `iotsec device run` child per device (each in its own process group, killed with the
//! parent even if this process is killed), writes an audit report for the dashboard, prints
//! the dashboard URL and what to do next, and stays in the foreground until Ctrl-C / SIGTERM,
//! which stops the devices (by process group), the API and ingest, then the broker.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use iotsec_broker::process::{BrokerProcess, Log};
use iotsec_broker::render::{HardenedOptions, write_hardened};
use iotsec_pki::file::{Durability, Mode, write_atomic};
use iotsec_pki::{
    Authority, CaOptions, DeviceId, DeviceOptions, Overwrite, Role, ServerOptions,
    authority::DEFAULT_CRL_DAYS,
};
use iotsec_server::ServerConfig;
use iotsec_server::provision::{self, AddOptions, BundlePolicy};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::Outcome;

/// The service identity of the ingest.
const SERVICE_ID: &str = "iotsec-server";

/// Arguments of `iotsec up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the stack keeps its state (created on first run, reused after).
    #[arg(long, default_value = "iotsec-data")]
    data: PathBuf,
    /// MQTT over TLS port (127.0.0.1).
    #[arg(long, default_value_t = 8883)]
    port: u16,
    /// HTTPS port of the API and dashboard (127.0.0.1).
    #[arg(long, default_value_t = 8443)]
    web_port: u16,
    /// Number of simulated devices to provision and run.
    #[arg(long, default_value_t = 3)]
    devices: u32,
}

/// What `up` prepared on disk.
struct Prepared {
    data: PathBuf,
    pki: PathBuf,
    broker: PathBuf,
    server_toml: PathBuf,
    created: bool,
    devices: Vec<String>,
    /// The admin token, when it was created by this run (shown once).
    admin_token: Option<iotsec_web::token::Secret>,
}

fn server_toml(port: u16, web_port: u16) -> String {
    format!(
        "# Written by `iotsec up` at every start (edit the flags, not this file).\n\
[broker]\nhost = \"localhost\"\nport = {port}\nclient_id = \"iotsec-ingest\"\n\n\
[tls]\nca = \"pki/ca.crt\"\ncert = \"pki/devices/{SERVICE_ID}.crt\"\nkey = \"pki/devices/{SERVICE_ID}.key\"\n\n\
[keys]\nmaster = \"keys/master.key\"\n\n\
[storage]\nsqlite = \"iotsec.db\"\n\n\
[provision]\npki = \"pki\"\nbroker_config = \"broker\"\nbundles = \"bundles\"\n\n\
[web]\nlisten = \"127.0.0.1:{web_port}\"\ncert = \"pki/server.crt\"\nkey = \"pki/server.key\"\n\
tokens = \"tokens.json\"\naudit_report = \"audit.json\"\n"
    )
}

/// Points an existing bundle's device.toml at `broker` (the port may have changed).
fn retarget_bundle(device_toml: &Path, broker: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(device_toml)?;
    let want = format!("broker = \"{broker}\"");
    if text.lines().any(|l| l.trim() == want) {
        return Ok(());
    }
    let new: Vec<String> = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("broker =") {
                want.clone()
            } else {
                l.to_string()
            }
        })
        .collect();
    write_atomic(
        device_toml,
        (new.join("\n") + "\n").as_bytes(),
        Mode::Public,
        Durability::Sync,
    )?;
    Ok(())
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
    // A running broker refuses every client once its CRL passes nextUpdate: start fresh.
    ca.write_crl(DEFAULT_CRL_DAYS)?;
    drop(ca);

    let master = data.join("keys/master.key");
    if !master.exists() {
        std::fs::create_dir_all(data.join("keys"))?;
        iotsec_msg::keyfile::write(
            &master,
            &iotsec_msg::keyfile::random_key()?,
            iotsec_msg::keyfile::Overwrite::Refuse,
        )
        .map_err(|e| anyhow::anyhow!("{}: {e}", master.display()))?;
    }

    let broker = data.join("broker");
    let mut opts = HardenedOptions::new(&pki, &broker);
    opts.port = args.port;
    write_hardened(&opts)?;

    let server_toml = data.join("server.toml");
    write_atomic(
        &server_toml,
        server_toml_text(args).as_bytes(),
        Mode::Public,
        Durability::Sync,
    )?;
    let config = ServerConfig::load(&server_toml)?;
    let mut store = config.open_storage()?;
    let mut devices = Vec::new();
    for n in 1..=args.devices {
        let id = format!("device-{n}");
        let device_toml = config.bundles.join(&id).join("device.toml");
        if device_toml.exists() {
            retarget_bundle(&device_toml, &format!("localhost:{}", args.port))?;
        } else {
            provision::add(
                &config,
                &mut store,
                &AddOptions {
                    id: id.clone(),
                    legacy: false,
                    key_version: 1,
                    policy: BundlePolicy::Ca,
                    broker: None,
                    out: None,
                },
            )
            .with_context(|| format!("provisioning {id}"))?;
        }
        devices.push(id);
    }

    let tokens = iotsec_web::config::tokens_path(&config);
    let admin_token = if iotsec_web::token::list(&tokens)?.is_empty() {
        let (_, secret) =
            iotsec_web::token::create(&tokens, iotsec_web::token::Role::Admin, "iotsec-up")?;
        Some(secret)
    } else {
        None
    };
    Ok(Prepared {
        data,
        pki,
        broker,
        server_toml,
        created,
        devices,
        admin_token,
    })
}

fn server_toml_text(args: &Args) -> String {
    server_toml(args.port, args.web_port)
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A device agent child, in its own process group.
struct DeviceChild {
    id: String,
    child: Child,
    /// Exited and reported (or reaped by `stop`).
    done: bool,
}

impl DeviceChild {
    fn spawn(exe: &Path, id: &str, bundle: &Path, log: &Path) -> anyhow::Result<DeviceChild> {
        let out = std::fs::File::create(log).with_context(|| log.display().to_string())?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(exe);
        cmd.args(["device", "run", "--config"])
            .arg(bundle.join("device.toml"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group: a terminal's Ctrl-C reaches only `up`, which stops the devices
            // in order; `up` signals the whole group.
            .process_group(0);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        Ok(DeviceChild {
            id: id.to_string(),
            child,
            done: false,
        })
    }

    fn pgid(&self) -> Option<Pid> {
        i32::try_from(self.child.id()).ok().map(Pid::from_raw)
    }

    /// SIGTERM to the group, up to `grace` for a clean exit (the agent saves its queue), then
    /// SIGKILL to the group.
    fn stop(&mut self, grace: Duration) {
        let Some(pgid) = self.pgid() else { return };
        // The group outlives its leader only if the agent forked: signal it either way.
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.done = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.child.wait();
        self.done = true;
    }

    /// Reports an unexpected exit once.
    fn check(&mut self, logs: &Path) {
        if self.done {
            return;
        }
        if let Ok(Some(status)) = self.child.try_wait() {
            self.done = true;
            tracing::warn!(device = %self.id, %status, "device agent exited; see its log in {}", logs.display());
        }
    }
}

impl Drop for DeviceChild {
    /// On an early return, no agent is left behind.
    fn drop(&mut self) {
        if !self.done
            && let Some(pgid) = self.pgid()
        {
            let _ = killpg(pgid, Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Asks the kernel to SIGTERM the child when this thread's process dies (even by SIGKILL), so
/// no device agent outlives `up`.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2), which
    // is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Writes `audit.json` (what the dashboard's audit section shows) for the generated stack.
async fn audit(p: &Prepared) -> anyhow::Result<usize> {
    let inputs = iotsec_audit::Inputs {
        mosquitto_conf: Some(p.broker.join("mosquitto.conf")),
        pki: Some(p.pki.clone()),
        server_config: Some(p.server_toml.clone()),
        device_configs: p
            .devices
            .iter()
            .map(|d| p.data.join("bundles").join(d).join("device.toml"))
            .collect(),
        ..iotsec_audit::Inputs::default()
    };
    let report = iotsec_audit::run(inputs, time::OffsetDateTime::now_utc()).await?;
    write_atomic(
        &p.data.join("audit.json"),
        (iotsec_audit::render::json(&report) + "\n").as_bytes(),
        Mode::Public,
        Durability::Sync,
    )?;
    Ok(report.findings.len())
}

fn next_steps(p: &Prepared, args: &Args) -> String {
    let cfg = p.server_toml.display();
    let data = p.data.display();
    let web = args.web_port;
    let first = p.devices.first().map(String::as_str).unwrap_or("device-1");
    let port = args.port;
    let token = if p.admin_token.is_some() {
        "the admin token above"
    } else {
        "the admin token printed by the first run (or a new one: iotsec token create --role admin)"
    };
    [
        "Next steps:".to_string(),
        format!("  * Open https://localhost:{web}/ and sign in with {token}."),
        format!("    The certificate comes from the local CA {data}/pki/ca.crt (trust it, or use curl:"),
        format!("    curl --cacert {data}/pki/ca.crt -H \"Authorization: Bearer $TOKEN\" https://localhost:{web}/api/devices)"),
        "  * Watch the MQTT stream (the ingest's identity may read every device's topics):".to_string(),
        format!("    mosquitto_sub -h localhost -p {port} --cafile {data}/pki/ca.crt --cert {data}/pki/devices/{SERVICE_ID}.crt --key {data}/pki/devices/{SERVICE_ID}.key -t 'devices/+/telemetry' -v"),
        format!("  * Publish as {first} (the ACL allows only its own topics; unsigned, so the ingest rejects it and the dashboard lists the rejection):"),
        format!("    mosquitto_pub -h localhost -p {port} --cafile {data}/pki/ca.crt --cert {data}/bundles/{first}/device.crt --key {data}/bundles/{first}/device.key -t devices/{first}/telemetry -q 1 -m '{{\"temp\": 21.5}}'"),
        format!("  * A read-only token:  iotsec token create --role viewer --config {cfg}"),
        format!("  * Another device:     iotsec device add sensor-9 --config {cfg}"),
        format!("                        iotsec device run --config {data}/bundles/sensor-9/device.toml"),
        format!("  * Revoke a device:    iotsec device revoke {first} --config {cfg} (or in the dashboard)"),
        format!("  * Audit again:        iotsec audit --pki {data}/pki --mosquitto-conf {data}/broker/mosquitto.conf \\"),
        format!("                          --server-config {cfg} --format json --out {data}/audit.json"),
        format!("  * Logs:               {data}/logs/ (devices), {data}/broker/mosquitto.log"),
    ]
    .join("\n")
        + "\n"
}

/// Runs `iotsec up`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    crate::logging::init();
    let bin = iotsec_broker::process::mosquitto_binary()?;
    for (port, what) in [(args.port, "--port"), (args.web_port, "--web-port")] {
        if !port_free(port) {
            anyhow::bail!(
                "127.0.0.1:{port} is already in use (another iotsec up?); stop it or pass {what}"
            );
        }
    }
    let prepared = prepare(&args)?;
    let config = ServerConfig::load(&prepared.server_toml)?;
    let web = iotsec_web::WebConfig::of_server(&config, &iotsec_web::AcmeOverrides::default())?;
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
        prepared.data.display()
    );
    println!(
        "Mosquitto {} (pid {}) on 127.0.0.1:{}: TLS only, client certificates required, no anonymous access.",
        bin.display(),
        broker.pid().unwrap_or_default(),
        args.port
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run_stack(&args, &prepared, config, web, &mut broker));
    broker.stop();
    result?;
    println!("stopped.");
    Ok(Outcome::Ok)
}

async fn run_stack(
    args: &Args,
    prepared: &Prepared,
    config: ServerConfig,
    web: Option<iotsec_web::WebConfig>,
    broker: &mut BrokerProcess,
) -> anyhow::Result<()> {
    let signalled = Arc::new(AtomicBool::new(false));
    let (stop, _) = watch::channel(false);
    {
        let stop = stop.clone();
        let signalled = Arc::clone(&signalled);
        tokio::spawn(async move {
            super::serve::signalled().await;
            signalled.store(true, Ordering::SeqCst);
            stop.send_replace(true);
        });
    }
    // Ingest + HTTPS API in this process (prints the dashboard URL).
    let (listening, api_up) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(super::serve::ingest_and_web(
        config,
        web,
        stop.clone(),
        Some(listening),
    ));
    // The dashboard URL comes before the devices and the next steps. If the API could not
    // start, `server` holds the error, reported below.
    let _ = api_up.await;

    // The devices, spawned from this (the main) thread: PR_SET_PDEATHSIG follows the thread
    // that forked.
    let exe = std::env::current_exe().context("locating the iotsec binary")?;
    let logs = prepared.data.join("logs");
    std::fs::create_dir_all(&logs)?;
    let mut devices = Vec::new();
    for id in &prepared.devices {
        let bundle = prepared.data.join("bundles").join(id);
        devices.push(DeviceChild::spawn(
            &exe,
            id,
            &bundle,
            &logs.join(format!("{id}.log")),
        )?);
    }
    println!(
        "{} simulated devices: {} (iotsec device run, mutual TLS, signed telemetry).",
        devices.len(),
        prepared.devices.join(", ")
    );
    if let Some(token) = &prepared.admin_token {
        println!("admin token (shown only this once; keep it):");
        println!("  {}", token.expose());
    }
    println!();
    print!("{}", next_steps(prepared, args));
    println!();
    println!("Press Ctrl-C to stop.");

    // The audit report for the dashboard, in the background.
    let audit_data = Prepared {
        data: prepared.data.clone(),
        pki: prepared.pki.clone(),
        broker: prepared.broker.clone(),
        server_toml: prepared.server_toml.clone(),
        created: prepared.created,
        devices: prepared.devices.clone(),
        admin_token: None,
    };
    let auditor = tokio::spawn(async move {
        match audit(&audit_data).await {
            Ok(n) => tracing::info!(findings = n, "audit report written for the dashboard"),
            Err(e) => tracing::warn!(error = %e, "audit failed"),
        }
    });

    let mut failure: Option<anyhow::Error> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let rx = stop.subscribe();
    loop {
        tokio::select! {
            () = super::serve::stopped(rx.clone()) => break,
            _ = ticker.tick() => {
                if server.is_finished() {
                    break;
                }
                if let Some(status) = broker.exited() {
                    // A terminal's Ctrl-C reaches mosquitto too: give our handler a moment.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if !signalled.load(Ordering::SeqCst) {
                        failure = Some(anyhow::anyhow!(
                            "mosquitto exited unexpectedly ({status}); see {}",
                            prepared.broker.join("mosquitto.log").display()
                        ));
                    }
                    break;
                }
                for d in &mut devices {
                    d.check(&logs);
                }
            }
        }
    }
    auditor.abort();
    // Devices first (they flush their queues), then the API and ingest, then (by the caller)
    // the broker.
    let stopping = tokio::task::spawn_blocking(move || {
        std::thread::scope(|s| {
            for mut d in devices {
                s.spawn(move || d.stop(Duration::from_secs(5)));
            }
        });
    });
    let _ = stopping.await;
    stop.send_replace(true);
    match server.await {
        Ok(Ok(stats)) => println!(
            "ingest: {} stored, {} duplicates dropped, {} rejected",
            stats.stored, stats.duplicates, stats.rejected
        ),
        Ok(Err(e)) => failure = failure.or(Some(e)),
        Err(e) => failure = failure.or(Some(anyhow::anyhow!("server task: {e}"))),
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
