//! SCALE benchmark (ignored: run it on purpose, release build, nothing else heavy running):
//!
//!     nice -n 10 cargo test --release -p iotsec-cli --test cli -- --ignored --nocapture scale_bench
//!
//! Environment: `SCALE_DEVICES` (20), `SCALE_PER_DEVICE` (2000 readings per device per round),
//! `SCALE_ROUNDS` (3), `SCALE_FLEET` (1000 devices for the connect rate).
//!
//! One broker (the hardened Mosquitto config), one PostgreSQL (defaults: fsync and
//! synchronous_commit on) and one SQLite file; the same in-process publishers (one rumqttc
//! client per device, its own certificate, messages signed before the clock starts) push the
//! same number of readings through each configuration in turn, round after round:
//!
//! * `ceiling`: a plain subscriber in the share group (automatic acks, no verification, no
//!   storage), the broker's own limit for this stream;
//! * `sqlite x1`, `postgres x1`, `postgres x2`, `postgres x3`: `iotsec serve` worker
//!   processes in one share group. A round ends when the publishers hold the ingest's
//!   end-to-end ack (sent after the commit) for every reading.
//!
//! Each configuration gets a fresh share group; afterwards its workers' persistent sessions
//! are purged (a clean-session connect with the same client id), so no offline session keeps
//! receiving a share of later rounds. CPU seconds of every process (from /proc: the broker, the
//! workers, PostgreSQL's postmaster and all its backends, this process = the publishers) are
//! taken right before the first publish and right after the last ack.
//! Then `iotsec fleet simulate --devices 1000` measures the mutual-TLS connect rate twice (the
//! second run reuses the provisioned devices), with the broker's CPU over the same interval.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use iotsec_broker::topic;
use iotsec_msg::key::{KeyMaterial, Kid, derive_device_key};
use iotsec_msg::v2::Envelope;
use iotsec_msg::{DeviceId, MsgKey, Signer};
use iotsec_pki::KeyAlgorithm;
use iotsec_server::store::Storage;
use iotsec_testkit::postgres::TestPostgres;
use iotsec_testkit::{SERVICE_ID, TestBroker, TestDir, TestPki};
use iotsec_tls::{CaTrust, ClientTls, Identity, TrustPolicy};
use rumqttc::{
    AsyncClient, Event, Incoming, MqttOptions, PublishOptions, QoS, TlsConfiguration, Transport,
};

use crate::scale::raise_nofile;
use crate::stack::MASTER;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
fn cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The parent pid of `pid`.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds of `root` and all its children (PostgreSQL: the postmaster and its backends).
fn tree_cpu_s(root: u32) -> f64 {
    let mut total = cpu_s(root);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && ppid(pid) == Some(root)
            {
                total += cpu_s(pid);
            }
        }
    }
    total
}

fn client_options(pki: &TestPki, id: &str, client_id: &str, port: u16) -> MqttOptions {
    let (cert, key) = pki.client(id);
    let tls = ClientTls::new(
        &TrustPolicy::Ca(CaTrust::from_pem_file(pki.ca_cert()).unwrap()),
        Some(&Identity::from_pem_files(cert, key).unwrap()),
    )
    .unwrap();
    let mut o = MqttOptions::new(client_id, ("localhost".to_string(), port));
    o.set_keep_alive(60)
        .set_inflight(100)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.config(),
        )));
    o
}

/// One publishing device: a connected client, its ack subscription, and an ack counter.
struct Publisher {
    id: String,
    client: AsyncClient,
    signer: Signer,
    kid: Kid,
    next_seq: u64,
}

/// Connects the publishers; their event loops count end-to-end acked seqs into `acked`.
async fn publishers(
    pki: &TestPki,
    port: u16,
    ids: &[String],
    acked: Arc<AtomicU64>,
) -> Vec<Publisher> {
    let master = KeyMaterial::new(MASTER.to_vec()).unwrap();
    let mut out = Vec::new();
    for id in ids {
        let (client, mut el) =
            AsyncClient::builder(client_options(pki, id, &format!("{id}-pub"), port))
                .capacity(4096)
                .build();
        let ack_topic = topic::ack(id);
        let acked = Arc::clone(&acked);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p)))
                        if p.topic.as_ref() == ack_topic.as_bytes() =>
                    {
                        if let Some(ack) = topic::Ack::decode(&p.payload) {
                            let n: u64 = ack.ranges.iter().map(|(lo, hi)| hi - lo + 1).sum();
                            acked.fetch_add(n, Ordering::SeqCst);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        client
            .subscribe(topic::ack(id), QoS::AtLeastOnce)
            .await
            .unwrap();
        ready_rx.await.unwrap();
        let kid = Kid::new(DeviceId::new(id).unwrap(), 1);
        let key = derive_device_key(&master, &kid);
        out.push(Publisher {
            id: id.clone(),
            client,
            signer: Signer::new(MsgKey::new(key.expose()).unwrap()),
            kid,
            next_seq: 1,
        });
    }
    out
}

/// Signs `n` fresh readings per publisher (before any clock starts).
fn sign_round(pubs: &mut [Publisher], n: u64) -> Vec<Vec<Vec<u8>>> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    pubs.iter_mut()
        .map(|p| {
            (0..n)
                .map(|_| {
                    let seq = p.next_seq;
                    p.next_seq += 1;
                    let payload = format!(
                        r#"{{"temp": {:.2}, "hum": {:.1}, "pressure": 1013.25, "battery": 3.71, "rssi": -67, "uptime": {seq}, "fw": "1.0.0"}}"#,
                        20.0 + (seq % 100) as f64 / 10.0,
                        40.0 + (seq % 50) as f64
                    );
                    let mut out = Vec::new();
                    p.signer
                        .sign_v2(
                            payload.as_bytes(),
                            &Envelope {
                                kid: p.kid.clone(),
                                ts,
                                seq,
                            },
                            &mut out,
                        )
                        .unwrap();
                    out
                })
                .collect()
        })
        .collect()
}

/// Publishes every signed message (QoS 1, all devices at once).
async fn publish_all(pubs: &[Publisher], msgs: Vec<Vec<Vec<u8>>>) {
    let mut tasks = tokio::task::JoinSet::new();
    for (p, m) in pubs.iter().zip(msgs) {
        let client = p.client.clone();
        let t = topic::telemetry(&p.id);
        tasks.spawn(async move {
            for payload in m {
                client
                    .publish(t.as_str(), payload, PublishOptions::new(QoS::AtLeastOnce))
                    .await
                    .unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// A plain subscriber in share group `group`; counts into `received`.
async fn ceiling_subscriber(
    pki: &TestPki,
    port: u16,
    group: &str,
    received: Arc<AtomicU64>,
) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let (client, mut el) = AsyncClient::builder(client_options(
        pki,
        SERVICE_ID,
        &format!("ceiling-{group}"),
        port,
    ))
    .capacity(1024)
    .build();
    client
        .subscribe(
            format!("$share/{group}/devices/+/telemetry"),
            QoS::AtLeastOnce,
        )
        .await
        .unwrap();
    loop {
        if let Ok(Event::Incoming(Incoming::SubAck(_))) = el.poll().await {
            break;
        }
    }
    let task = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::Publish(_))) => {
                    received.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    (client, task)
}

/// Connects once with a clean session under `client_id`: Mosquitto drops the session (and its
/// share-group membership) the worker left behind.
async fn purge_session(pki: &TestPki, port: u16, client_id: &str) {
    let mut o = client_options(pki, SERVICE_ID, client_id, port);
    o.set_clean_session(true);
    let (client, mut el) = AsyncClient::builder(o).capacity(16).build();
    loop {
        if let Ok(Event::Incoming(Incoming::ConnAck(_))) = el.poll().await {
            break;
        }
    }
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while el.poll().await.is_ok() {}
    })
    .await;
}

struct Setup {
    root: TestDir,
    pki: TestPki,
    broker: TestBroker,
    pg_url: String,
}

impl Setup {
    fn worker_toml(&self, name: &str, group: &str, storage: &str) -> std::path::PathBuf {
        let path = self.root.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[broker]\nhost = \"localhost\"\nport = {port}\nclient_id = \"{name}\"\n\
                 share_group = \"{group}\"\n\
                 [tls]\nca = \"pki/ca.crt\"\ncert = \"pki/devices/iotsec-server.crt\"\n\
                 key = \"pki/devices/iotsec-server.key\"\n\
                 [keys]\nmaster = \"keys/master.key\"\n[storage]\n{storage}\n\
                 [provision]\npki = \"pki\"\nbundles = \"bundles\"\n",
                port = self.broker.port
            ),
        )
        .unwrap();
        path
    }

    fn start_worker(&self, config: &Path, name: &str) -> Child {
        let needle = format!("as {name} ");
        let child = Command::new(env!("CARGO_BIN_EXE_iotsec"))
            .current_dir(self.root.path())
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.root.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap();
        crate::stack::wait_until(Duration::from_secs(30), || {
            self.broker.process.log_text().contains(&needle)
        });
        child
    }
}

fn stop(mut c: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = c.wait();
}

/// One measured configuration of one round.
#[derive(Debug, Clone)]
struct Measured {
    rate: f64,
    broker: f64,
    workers: f64,
    postgres: f64,
    publishers: f64,
    wall: f64,
}

/// Committed transactions in the bench database so far.
fn commits(pg: &TestPostgres) -> u64 {
    pg.psql(
        "bench",
        "SELECT xact_commit FROM pg_stat_database WHERE datname = 'bench'",
    )
    .trim()
    .parse()
    .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn scale_bench() {
    let devices = env("SCALE_DEVICES", 20);
    let per_device = env("SCALE_PER_DEVICE", 2_000);
    let rounds = env("SCALE_ROUNDS", 3);
    let fleet = env("SCALE_FLEET", 1_000);
    let total = devices * per_device;
    raise_nofile();
    iotsec_tls::install_crypto_provider();

    let ids: Vec<String> = (1..=devices).map(|i| format!("bench-{i:02}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let root = TestDir::new();
    let pki = TestPki::new(&root, KeyAlgorithm::P256, &id_refs);
    let broker = TestBroker::start(&root, &pki);
    let pg = TestPostgres::start_with(&[
        ("shared_preload_libraries", "pg_stat_statements"),
        ("track_io_timing", "on"),
    ]);
    let pg_url = pg.create_database("bench");
    pg.psql("bench", "CREATE EXTENSION pg_stat_statements");
    std::fs::create_dir_all(root.join("keys")).unwrap();
    std::fs::write(root.join("keys/master.key"), MASTER).unwrap();
    let setup = Setup {
        root,
        pki,
        broker,
        pg_url,
    };
    // Register the publishers in both stores.
    for storage in [
        format!("url = \"{}\"", setup.pg_url),
        "sqlite = \"bench.db\"".to_string(),
    ] {
        let cfg = setup.worker_toml("register", "none", &storage);
        let config = iotsec_server::ServerConfig::load(&cfg).unwrap();
        let mut s = config.open_storage().unwrap();
        for id in &ids {
            s.upsert_device(id, false, 1).unwrap();
        }
    }
    let broker_pid = setup.broker.process.pid().unwrap();
    let pg_pid = pg.pid();
    let me = std::process::id();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let mut pubs = rt.block_on(publishers(
        &setup.pki,
        setup.broker.port,
        &ids,
        Arc::clone(&acked),
    ));
    let configs: &[(&str, usize)] = &[
        ("ceiling", 0),
        ("sqlite x1", 1),
        ("postgres x1", 1),
        ("postgres x2", 2),
        ("postgres x3", 3),
    ];
    let mut results: BTreeMap<&str, Vec<Measured>> = BTreeMap::new();
    for round in 1..=rounds {
        for (ci, &(name, workers)) in configs.iter().enumerate() {
            let group = format!("g{round}x{ci}");
            let msgs = sign_round(&mut pubs, per_device);
            let received = Arc::new(AtomicU64::new(0));
            let mut children = Vec::new();
            let mut names = Vec::new();
            let ceiling = if workers == 0 {
                Some(rt.block_on(ceiling_subscriber(
                    &setup.pki,
                    setup.broker.port,
                    &group,
                    Arc::clone(&received),
                )))
            } else {
                let storage = if name.starts_with("sqlite") {
                    "sqlite = \"bench.db\"".to_string()
                } else {
                    format!("url = \"{}\"", setup.pg_url)
                };
                for w in 1..=workers {
                    let wname = format!("w{round}x{ci}n{w}");
                    let cfg = setup.worker_toml(&wname, &group, &storage);
                    children.push(setup.start_worker(&cfg, &wname));
                    names.push(wname);
                }
                // Subscribed (the SUBSCRIBE follows the CONNACK the log showed).
                std::thread::sleep(Duration::from_millis(500));
                None
            };
            let worker_pids: Vec<u32> = children.iter().map(Child::id).collect();
            let cpu = |pids: &[u32]| pids.iter().map(|p| cpu_s(*p)).sum::<f64>();
            let before = (
                cpu_s(broker_pid),
                cpu(&worker_pids),
                tree_cpu_s(pg_pid),
                cpu_s(me),
            );
            let pg_stats = workers > 0 && !name.starts_with("sqlite");
            if pg_stats {
                pg.psql("bench", "SELECT pg_stat_statements_reset()");
            }
            let commits_before = commits(&pg);
            acked.store(0, Ordering::SeqCst);
            let start = Instant::now();
            rt.block_on(async {
                publish_all(&pubs, msgs).await;
                let counter = if workers == 0 { &received } else { &acked };
                let deadline = Instant::now() + Duration::from_secs(600);
                while counter.load(Ordering::SeqCst) < total {
                    assert!(Instant::now() < deadline, "{name}: stalled at {counter:?}");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            });
            let wall = start.elapsed().as_secs_f64();
            let after = (
                cpu_s(broker_pid),
                cpu(&worker_pids),
                tree_cpu_s(pg_pid),
                cpu_s(me),
            );
            let m = Measured {
                rate: total as f64 / wall,
                broker: after.0 - before.0,
                workers: after.1 - before.1,
                postgres: after.2 - before.2,
                publishers: after.3 - before.3,
                wall,
            };
            eprintln!("round {round} {name}: {m:?}");
            if pg_stats {
                // Statistics reach the shared counters within a second.
                std::thread::sleep(Duration::from_millis(1_100));
                let n = commits(&pg) - commits_before;
                eprintln!(
                    "  {n} transactions = {:.0} readings per commit; where PostgreSQL spent its time:",
                    total as f64 / n.max(1) as f64
                );
                let top = pg.psql(
                    "bench",
                    "SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3), \
                     regexp_replace(left(query, 60), '\\s+', ' ', 'g') FROM pg_stat_statements \
                     WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench') \
                     ORDER BY total_exec_time DESC LIMIT 6",
                );
                for line in top.lines() {
                    eprintln!("    calls|total ms|mean ms|query: {line}");
                }
                let waits = pg.psql(
                    "bench",
                    "SELECT deadlocks, round(blk_write_time::numeric, 1) FROM pg_stat_database WHERE datname = 'bench'",
                );
                eprintln!(
                    "    deadlocks (cumulative) | block write ms: {}",
                    waits.trim()
                );
            }
            results.entry(name).or_default().push(m);
            for c in children {
                stop(c);
            }
            rt.block_on(async {
                if let Some((client, task)) = ceiling {
                    let _ = client.disconnect().await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    task.abort();
                }
                for n in &names {
                    purge_session(&setup.pki, setup.broker.port, n).await;
                }
            });
        }
    }

    println!(
        "\nSCALE: {devices} devices x {per_device} readings per configuration, {rounds} rounds (medians)\n"
    );
    println!(
        "| configuration | stored msg/s | of ceiling | CPU s per 10k msgs: broker | ingest workers | PostgreSQL | publishers |"
    );
    println!("|---|---|---|---|---|---|---|");
    let ceiling = median(results["ceiling"].iter().map(|m| m.rate).collect());
    for &(name, _) in configs {
        let ms = &results[name];
        let per10k = |f: fn(&Measured) -> f64| {
            median(ms.iter().map(|m| f(m) / total as f64 * 10_000.0).collect())
        };
        let rate = median(ms.iter().map(|m| m.rate).collect());
        println!(
            "| {name} | {rate:.0} | {:.0}% | {:.2} | {:.2} | {:.2} | {:.2} |",
            100.0 * rate / ceiling,
            per10k(|m| m.broker),
            per10k(|m| m.workers),
            per10k(|m| m.postgres),
            per10k(|m| m.publishers),
        );
        let busy = median(
            ms.iter()
                .map(|m| (m.broker + m.workers + m.postgres + m.publishers) / m.wall)
                .collect(),
        );
        println!("|   (all processes together busy {busy:.2} of 2 cores) | | | | | | |");
    }

    let size = pg.psql(
        "bench",
        "SELECT pg_total_relation_size('readings') / GREATEST(COUNT(*), 1), COUNT(*) FROM readings",
    );
    println!(
        "\nPostgreSQL: bytes per stored reading (table + indexes) | readings: {}",
        size.trim()
    );

    // Connect rate: iotsec fleet simulate, first run provisions, second reuses.
    let cfg = setup.worker_toml(
        "fleet-cfg",
        "fleetgroup",
        &format!("url = \"{}\"", setup.pg_url),
    );
    for run in 1..=2 {
        let broker_before = cpu_s(broker_pid);
        let children_before =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_iotsec"));
        cmd.current_dir(setup.root.path()).args([
            "fleet",
            "simulate",
            "--devices",
            &fleet.to_string(),
            "--rate",
            "1",
            "--duration",
            "0s",
            "--no-acks",
            "--json",
            "--config",
            cfg.to_str().unwrap(),
        ]);
        let out = iotsec_testkit::run(&mut cmd, Duration::from_secs(600));
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        let children_after =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
        let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        let fleet_cpu = tv(children_after.user_time()) + tv(children_after.system_time())
            - tv(children_before.user_time())
            - tv(children_before.system_time());
        let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        println!(
            "\nfleet run {run}: {} devices, provisioned {} new in {:.2} s, registered {} new in {:.2} s; \
             connected {} in {:.2} s = {:.0} connections/s ({} in parallel), {} failed; \
             CPU over the whole run: broker {:.2} s, fleet process {:.2} s",
            r["devices"],
            r["provisioned_new"],
            r["provision_s"].as_f64().unwrap(),
            r["registered_new"],
            r["register_s"].as_f64().unwrap(),
            r["connected"],
            r["connect_s"].as_f64().unwrap(),
            r["connects_per_s"].as_f64().unwrap(),
            r["connect_parallel"],
            r["connect_failed"],
            cpu_s(broker_pid) - broker_before,
            fleet_cpu
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload average at the end: {}", load.trim());
    drop(pg);
}
