//! `iotsec fleet simulate`: a load generator made of real devices.
//!
//! It provisions N devices in bulk (one `Authority::issue_devices` call: certificates and
//! keys under the PKI's `devices/`, inventory written once; devices left from an earlier run
//! with the same prefix are reused), derives each device's message key from the master key
//! (`iotsec_msg::key::derive_device_key`, as `device add` does) and registers them in the
//! server's storage. Then it runs N MQTT clients in this one process (rumqttc on tokio), each
//! with its own certificate over mutual TLS (`iotsec-tls`), each publishing signed v2
//! telemetry at QoS 1 and subscribing to its end-to-end ack topic, exactly like the device
//! agent minus the disk queue.
//!
//! Phases, measured separately: connect (every client, at most `--connect-parallel`
//! handshakes at once, until its CONNACK), publish (`--rate` readings per second *per
//! device* for `--duration`, spread evenly over the period), drain (until every reading is
//! PUBACKed by the broker and, unless `--no-acks`, acked end to end by the ingest, which
//! does so only after its commit).
//!
//! Sequence numbers start at the run's start time in milliseconds: a later run starts above
//! everything an earlier one sent (the rate is capped at 1000/s per device for that), so the
//! ingest's replay windows accept every run without state kept here.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use iotsec_broker::topic;
use iotsec_msg::key::{Kid, derive_device_key};
use iotsec_msg::v2::Envelope;
use iotsec_msg::{MsgKey, Signer};
use iotsec_pki::{Authority, DeviceId, DeviceOptions, Role};
use iotsec_server::ServerConfig;
use iotsec_tls::{CaTrust, ClientTls, Identity, TrustPolicy};
use rumqttc::{
    AsyncClient, Event, Incoming, MqttOptions, PublishOptions, QoS, TlsConfiguration, Transport,
};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::Outcome;

/// Arguments of `iotsec fleet`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Provision N devices and run them as real mutual-TLS MQTT clients sending signed
    /// telemetry; report connect rate, publish rate, acks and errors.
    Simulate(SimulateArgs),
}

/// Arguments of `iotsec fleet simulate`.
#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// Number of devices.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    devices: u32,
    /// Readings per second per device (the fleet sends devices x rate per second).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// How long to publish: `30s`, `500ms`, `2m`.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Server configuration: master key, storage, broker address, PKI (`[provision] pki`).
    #[arg(long, visible_alias = "server-config", default_value = "server.toml")]
    config: PathBuf,
    /// PKI directory (default: `[provision] pki` of the server configuration).
    #[arg(long)]
    pki: Option<PathBuf>,
    /// Broker `host:port` (default: the server configuration's broker); the host is also the
    /// TLS server name.
    #[arg(long)]
    broker: Option<String>,
    /// Device id prefix: devices are `<prefix>00001`, `<prefix>00002`, ...
    #[arg(long, default_value = "fleet-")]
    prefix: String,
    /// TLS handshakes in progress at once while connecting.
    #[arg(long, default_value_t = 32)]
    connect_parallel: usize,
    /// Longest wait for connections, and for PUBACKs and acks after publishing stops.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    timeout: Duration,
    /// Do not wait for the ingest's end-to-end acks (no ingest running).
    #[arg(long)]
    no_acks: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `30s`, `500ms`, `2m`, `1h`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration such as 30s, 500ms, 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !(secs.is_finite() && (0.0..=86_400.0).contains(&secs)) {
        return Err(format!("{text:?}: must be between 0 and 24 h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Counters shared by the device tasks.
#[derive(Debug, Default)]
struct Counters {
    connected: AtomicU64,
    connect_failed: AtomicU64,
    /// Nanoseconds after the connect phase began when the last CONNACK arrived.
    last_connack_ns: AtomicU64,
    published: AtomicU64,
    pubacked: AtomicU64,
    acked: AtomicU64,
    publish_errors: AtomicU64,
    disconnects: AtomicU64,
    /// Devices done draining (everything PUBACKed and acked, or timed out).
    drained: AtomicU64,
}

/// The report (`--json` prints it as is).
#[derive(Debug, Serialize)]
struct Report {
    devices: u32,
    provisioned_new: usize,
    provision_s: f64,
    registered_new: usize,
    register_s: f64,
    connect_parallel: usize,
    connected: u64,
    connect_failed: u64,
    connect_s: f64,
    connects_per_s: f64,
    rate_per_device: f64,
    duration_s: f64,
    published: u64,
    publish_per_s: f64,
    pubacked: u64,
    acked: u64,
    acks_expected: bool,
    drain_s: f64,
    publish_errors: u64,
    disconnects: u64,
}

/// One provisioned device, ready to connect.
struct Device {
    id: String,
    tls: ClientTls,
    signer: Signer,
    kid: Kid,
}

fn ids(prefix: &str, n: u32) -> anyhow::Result<Vec<DeviceId>> {
    let width = n.to_string().len().max(5);
    (1..=n)
        .map(|i| DeviceId::new(&format!("{prefix}{i:0width$}")).map_err(Into::into))
        .collect()
}

fn wall_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Raises the open-file soft limit to the hard limit: every client is a socket.
fn raise_nofile(needed: u64) -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    if hard < needed {
        bail!(
            "{needed} open files are needed but the hard limit is {hard}: raise it \
             (`ulimit -Hn`, or LimitNOFILE= in the systemd unit)"
        );
    }
    Ok(hard)
}

/// Runs `iotsec fleet`.
pub fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        Command::Simulate(a) => simulate(a),
    }
}

fn simulate(args: SimulateArgs) -> anyhow::Result<Outcome> {
    crate::logging::init();
    if !(args.rate > 0.0 && args.rate <= 1000.0) {
        bail!("--rate must be above 0 and at most 1000 readings per second per device");
    }
    if args.connect_parallel == 0 {
        bail!("--connect-parallel must be at least 1");
    }
    raise_nofile(u64::from(args.devices) + 256)?;
    let config = ServerConfig::load(&args.config)?;
    let pki = args
        .pki
        .clone()
        .or_else(|| config.pki.clone())
        .context("no PKI: give --pki or set [provision] pki in the server configuration")?;
    let (host, port) = match &args.broker {
        Some(b) => {
            let (h, p) = b
                .rsplit_once(':')
                .with_context(|| format!("--broker {b:?}: expected host:port"))?;
            (h.to_owned(), p.parse::<u16>().context("--broker port")?)
        }
        None => (config.broker_host.clone(), config.broker_port),
    };

    // --- provision: certificates in bulk, message keys, registry
    let ids = ids(&args.prefix, args.devices)?;
    let started = Instant::now();
    let mut ca = Authority::open(&pki).with_context(|| format!("PKI {}", pki.display()))?;
    let missing: Vec<DeviceId> = ids
        .iter()
        .filter(|id| {
            ca.inventory().current(id.as_str(), Role::Device).is_none()
                || !ca.layout().device_cert(id).exists()
                || !ca.layout().device_key(id).exists()
        })
        .cloned()
        .collect();
    if !missing.is_empty() {
        ca.issue_devices(&missing, &DeviceOptions::default())
            .context("issuing the device certificates")?;
    }
    let provision_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut store = config.open_storage()?;
    let registered: BTreeSet<String> = store
        .devices()?
        .into_iter()
        .filter(|d| d.status == "active")
        .map(|d| d.id)
        .collect();
    let unregistered: Vec<&DeviceId> = ids
        .iter()
        .filter(|id| !registered.contains(id.as_str()))
        .collect();
    for id in &unregistered {
        store.upsert_device(id.as_str(), false, 1)?;
    }
    drop(store);
    let register_s = started.elapsed().as_secs_f64();
    // The ingest reloads its registry every 2 s: readings sent before that would be refused
    // as coming from unregistered devices.
    let publish_not_before = Instant::now()
        + if unregistered.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_millis(2_500)
        };

    let master = iotsec_msg::keyfile::read(&config.master_key)
        .with_context(|| format!("master key {}", config.master_key.display()))?;
    let trust = CaTrust::from_pem_file(ca.layout().ca_cert())?;
    let policy = TrustPolicy::Ca(trust);
    let mut devices = Vec::with_capacity(ids.len());
    for id in &ids {
        let identity =
            Identity::from_pem_files(ca.layout().device_cert(id), ca.layout().device_key(id))?;
        let kid = Kid::new(iotsec_msg::DeviceId::new(id.as_str())?, 1);
        let key = derive_device_key(&master, &kid);
        devices.push(Device {
            id: id.to_string(),
            tls: ClientTls::new(&policy, Some(&identity))?,
            signer: Signer::new(MsgKey::new(key.expose())?),
            kid,
        });
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let plan = Plan {
        host,
        port,
        rate: args.rate,
        duration: args.duration,
        timeout: args.timeout,
        acks: !args.no_acks,
        seq_base: u64::try_from(wall_ms()).unwrap_or(0),
        publish_not_before,
    };
    let counters = Arc::new(Counters::default());
    let (connect_s, drain_s) = rt.block_on(drive(
        devices,
        plan,
        args.connect_parallel,
        Arc::clone(&counters),
    ));

    let c = |a: &AtomicU64| a.load(Ordering::SeqCst);
    let report = Report {
        devices: args.devices,
        provisioned_new: missing.len(),
        provision_s,
        registered_new: unregistered.len(),
        register_s,
        connect_parallel: args.connect_parallel,
        connected: c(&counters.connected),
        connect_failed: c(&counters.connect_failed),
        connect_s,
        connects_per_s: c(&counters.connected) as f64 / connect_s.max(1e-9),
        rate_per_device: args.rate,
        duration_s: args.duration.as_secs_f64(),
        published: c(&counters.published),
        publish_per_s: c(&counters.published) as f64 / args.duration.as_secs_f64().max(1e-9),
        pubacked: c(&counters.pubacked),
        acked: c(&counters.acked),
        acks_expected: !args.no_acks,
        drain_s,
        publish_errors: c(&counters.publish_errors),
        disconnects: c(&counters.disconnects),
    };
    print(&report, args.json)?;
    let complete = report.connect_failed == 0
        && report.publish_errors == 0
        && report.pubacked == report.published
        && (args.no_acks || report.acked == report.published);
    Ok(if complete {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

fn print(r: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "provision: {} devices ({} new certificates in {:.2} s, {} newly registered in {:.2} s)",
        r.devices, r.provisioned_new, r.provision_s, r.registered_new, r.register_s
    );
    println!(
        "connect:   {}/{} connected over mutual TLS in {:.2} s = {:.0} connections/s ({} handshakes at once), {} failed",
        r.connected, r.devices, r.connect_s, r.connects_per_s, r.connect_parallel, r.connect_failed
    );
    println!(
        "publish:   {} signed readings in {:.1} s = {:.0} msg/s ({} per device per s), {} PUBACKed",
        r.published, r.duration_s, r.publish_per_s, r.rate_per_device, r.pubacked
    );
    if r.acks_expected {
        println!(
            "acks:      {}/{} acked end to end by the ingest (drained {:.2} s after the last publish)",
            r.acked, r.published, r.drain_s
        );
    }
    println!(
        "errors:    {} publish errors, {} connections lost",
        r.publish_errors, r.disconnects
    );
    Ok(())
}

/// What every device task does.
#[derive(Debug, Clone)]
struct Plan {
    host: String,
    port: u16,
    rate: f64,
    duration: Duration,
    timeout: Duration,
    acks: bool,
    seq_base: u64,
    publish_not_before: Instant,
}

/// Phases, broadcast to the device tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Connect,
    Publish,
    Drain,
    Stop,
}

/// Runs every device; returns (connect seconds, drain seconds).
async fn drive(
    devices: Vec<Device>,
    plan: Plan,
    parallel: usize,
    counters: Arc<Counters>,
) -> (f64, f64) {
    let n = devices.len() as u64;
    let (phase_tx, phase_rx) = watch::channel(Phase::Connect);
    let gate = Arc::new(Semaphore::new(parallel));
    let connect_start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, d) in devices.into_iter().enumerate() {
        let offset = Duration::from_secs_f64((i as f64 / n as f64) / plan.rate);
        tasks.spawn(device(
            d,
            plan.clone(),
            offset,
            Arc::clone(&gate),
            phase_rx.clone(),
            Arc::clone(&counters),
            connect_start,
        ));
    }
    // Connect phase: until every device connected or failed, or the timeout.
    let deadline = connect_start + plan.timeout;
    while counters.connected.load(Ordering::SeqCst) + counters.connect_failed.load(Ordering::SeqCst)
        < n
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect_s =
        Duration::from_nanos(counters.last_connack_ns.load(Ordering::SeqCst)).as_secs_f64();
    tokio::time::sleep_until(plan.publish_not_before.into()).await;
    let _ = phase_tx.send(Phase::Publish);
    tokio::time::sleep(plan.duration).await;
    let _ = phase_tx.send(Phase::Drain);
    let drain_start = Instant::now();
    let deadline = drain_start + plan.timeout;
    let connected = counters.connected.load(Ordering::SeqCst);
    while counters.drained.load(Ordering::SeqCst) < connected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let _ = phase_tx.send(Phase::Stop);
    while tasks.join_next().await.is_some() {}
    (connect_s, drain_s)
}

/// One device: connect (gated), subscribe to its acks, publish on its schedule, drain.
async fn device(
    mut d: Device,
    plan: Plan,
    offset: Duration,
    gate: Arc<Semaphore>,
    mut phase: watch::Receiver<Phase>,
    counters: Arc<Counters>,
    connect_start: Instant,
) {
    let mut options = MqttOptions::new(d.id.clone(), (plan.host.clone(), plan.port));
    options
        .set_keep_alive(60)
        .set_clean_session(true)
        .set_inflight(100)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            d.tls.config(),
        )));
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(256).build();
    let ack_topic = topic::ack(&d.id);
    let telemetry = topic::telemetry(&d.id);

    // Connect, at most `parallel` handshakes at a time; three attempts.
    {
        let Ok(_permit) = gate.acquire().await else {
            return;
        };
        let mut attempts = 0;
        loop {
            match tokio::time::timeout(plan.timeout, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Incoming::ConnAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) if attempts < 2 => {
                    attempts += 1;
                    tracing::debug!(device = %d.id, error = %e, "connect failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(device = %d.id, error = %e, "could not connect");
                    counters.connect_failed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Err(_) => {
                    tracing::warn!(device = %d.id, "connect timed out");
                    counters.connect_failed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
    let ns = u64::try_from(connect_start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    counters.last_connack_ns.fetch_max(ns, Ordering::SeqCst);
    counters.connected.fetch_add(1, Ordering::SeqCst);
    if client
        .try_subscribe(ack_topic.as_str(), QoS::AtLeastOnce)
        .is_err()
    {
        counters.publish_errors.fetch_add(1, Ordering::SeqCst);
    }

    let period = Duration::from_secs_f64(1.0 / plan.rate);
    let mut next_seq = plan.seq_base;
    // Published, not yet PUBACKed (count) / not yet acked by the ingest (seqs).
    let mut unpubacked: u64 = 0;
    let mut unacked: BTreeSet<u64> = BTreeSet::new();
    let mut ticker: Option<tokio::time::Interval> = None;
    // Every device publishes on the same schedule: from the shared start (plus its offset)
    // until the shared end, whenever its task happens to see the phase change. Starting from
    // its own view of the change let a late task publish one reading too many.
    let publish_end = plan.publish_not_before + plan.duration;
    let mut schedule_done = false;
    let mut drained = false;
    let mut buf = Vec::with_capacity(512);
    loop {
        let current = *phase.borrow();
        if current == Phase::Publish && ticker.is_none() && !schedule_done {
            let mut t = tokio::time::interval_at((plan.publish_not_before + offset).into(), period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker = Some(t);
        }
        if current >= Phase::Drain {
            ticker = None;
            if !drained && unpubacked == 0 && (!plan.acks || unacked.is_empty()) {
                drained = true;
                counters.drained.fetch_add(1, Ordering::SeqCst);
            }
        }
        if current == Phase::Stop {
            break;
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            at = async {
                match ticker.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => {
                if at.into_std() >= publish_end {
                    ticker = None;
                    schedule_done = true;
                    continue;
                }
                let seq = next_seq;
                next_seq += 1;
                let ts = wall_ms();
                let reading = format!(
                    r#"{{"temp": {:.2}, "hum": {:.1}, "battery": 3.71, "rssi": -67, "uptime": {}, "fw": "1.0.0"}}"#,
                    20.0 + (seq % 100) as f64 / 10.0,
                    40.0 + (seq % 50) as f64,
                    seq - plan.seq_base,
                );
                buf.clear();
                let env = Envelope { kid: d.kid.clone(), ts, seq };
                if d.signer.sign_v2(reading.as_bytes(), &env, &mut buf).is_err() {
                    counters.publish_errors.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                match client.try_publish(telemetry.as_str(), buf.clone(), PublishOptions::new(QoS::AtLeastOnce)) {
                    Ok(()) => {
                        counters.published.fetch_add(1, Ordering::SeqCst);
                        unpubacked += 1;
                        unacked.insert(seq);
                    }
                    Err(_) => {
                        counters.publish_errors.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            ev = eventloop.poll() => match ev {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                    // A reconnect (clean session): subscribe to the acks again.
                    let _ = client.try_subscribe(ack_topic.as_str(), QoS::AtLeastOnce);
                }
                Ok(Event::Incoming(Incoming::PubAck(_))) => {
                    unpubacked = unpubacked.saturating_sub(1);
                    counters.pubacked.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Event::Incoming(Incoming::Publish(p))) if p.topic.as_ref() == ack_topic.as_bytes() => {
                    if let Some(ack) = topic::Ack::decode(&p.payload) {
                        for (lo, hi) in ack.ranges {
                            let done: Vec<u64> = unacked.range(lo..=hi).copied().collect();
                            for s in done {
                                unacked.remove(&s);
                                counters.acked.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // rumqttc reconnects on the next poll; what was in flight is re-sent.
                    tracing::warn!(device = %d.id, error = %e, "connection lost");
                    counters.disconnects.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        }
    }
    let _ = client.try_disconnect();
    // Let the DISCONNECT go out.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while eventloop.poll().await.is_ok() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ids() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        let v = ids("fleet-", 1000).unwrap();
        assert_eq!(
            (v[0].as_str(), v[999].as_str()),
            ("fleet-00001", "fleet-01000")
        );
    }
}
