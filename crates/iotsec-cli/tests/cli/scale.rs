//! SCALE acceptance: several `iotsec serve` workers in one MQTT shared-subscription group on one
//! PostgreSQL (both started by the test), real device agents, `kill -9` of a worker mid-stream;
//! and `iotsec fleet simulate` with 1,000 mutual-TLS devices against the hardened broker.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iotsec_pki::KeyAlgorithm;
use iotsec_server::store::Storage;
use iotsec_server::store::postgres::{Postgres, PostgresUrl};
use iotsec_testkit::postgres::TestPostgres;
use iotsec_testkit::{TestBroker, TestDir, TestPki};

use crate::stack::{MASTER, wait_until};

/// Raises this process's open-file soft limit to its hard limit; children (the broker, the
/// workers, `fleet simulate`) inherit it.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    hard
}

/// PKI + hardened broker + one fresh PostgreSQL database + one `worker-N.toml` per worker
/// (client id `ingest-N`, share group `ingest`).
pub struct Cluster {
    pub root: TestDir,
    pub _pki: TestPki,
    pub broker: TestBroker,
    pub url: String,
    pub workers: Vec<Option<Child>>,
    logs: Vec<Vec<PathBuf>>,
}

impl Cluster {
    pub fn new(workers: usize) -> Cluster {
        raise_nofile();
        let pg = TestPostgres::shared();
        let url = pg.fresh_database();
        let root = TestDir::new();
        let pki = TestPki::new(&root, KeyAlgorithm::P256, &[]);
        let broker = TestBroker::start(&root, &pki);
        std::fs::create_dir_all(root.join("keys")).unwrap();
        std::fs::write(root.join("keys/master.key"), MASTER).unwrap();
        for n in 1..=workers {
            std::fs::write(
                root.join(format!("worker-{n}.toml")),
                format!(
                    "[broker]\nhost = \"localhost\"\nport = {port}\nclient_id = \"ingest-{n}\"\n\
                     share_group = \"ingest\"\n\
                     [tls]\nca = \"pki/ca.crt\"\ncert = \"pki/devices/iotsec-server.crt\"\n\
                     key = \"pki/devices/iotsec-server.key\"\n\
                     [keys]\nmaster = \"keys/master.key\"\n\
                     [storage]\nurl = \"{url}\"\n\
                     [provision]\npki = \"pki\"\nbroker_config = \"broker\"\nbundles = \"bundles\"\n",
                    port = broker.port
                ),
            )
            .unwrap();
        }
        Cluster {
            root,
            _pki: pki,
            broker,
            url,
            workers: (0..workers).map(|_| None).collect(),
            logs: vec![Vec::new(); workers],
        }
    }

    pub fn config(&self, n: usize) -> PathBuf {
        self.root.join(format!("worker-{n}.toml"))
    }

    pub fn store(&self) -> Postgres {
        Postgres::connect(&PostgresUrl::parse(&self.url).unwrap()).unwrap()
    }

    /// `iotsec device add` for each id (bundles under `bundles/<id>`).
    pub fn add_devices(&self, ids: &[String]) {
        for id in ids {
            let out = crate::iotsec(
                self.root.path(),
                &[
                    "device",
                    "add",
                    id,
                    "--config",
                    self.config(1).to_str().unwrap(),
                ],
            );
            assert_eq!(out.code, 0, "device add {id}: {}", out.stderr);
        }
    }

    /// Starts worker `n` (1-based) and waits until the broker has its connection.
    pub fn start_worker(&mut self, n: usize) {
        let name = format!("as ingest-{n} ");
        let before = self.broker.process.log_text().matches(&name).count();
        let log_path = self
            .root
            .join(format!("worker-{n}-{}.log", self.logs[n - 1].len()));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_iotsec"))
            .current_dir(self.root.path())
            .args(["serve", "--config", self.config(n).to_str().unwrap()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.workers[n - 1] = Some(child);
        self.logs[n - 1].push(log_path);
        wait_until(Duration::from_secs(30), || {
            self.broker.process.log_text().matches(&name).count() > before
        });
    }

    /// `kill -9` of worker `n`.
    pub fn kill_worker(&mut self, n: usize) {
        if let Some(mut c) = self.workers[n - 1].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM to worker `n`; returns its final counters `(stored, duplicates, rejected)`.
    pub fn stop_worker(&mut self, n: usize) -> (u64, u64, u64) {
        let mut c = self.workers[n - 1].take().expect("worker running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = c.wait().unwrap();
        let log = std::fs::read_to_string(self.logs[n - 1].last().unwrap()).unwrap();
        assert!(status.success(), "worker {n} failed: {log}");
        let line = log
            .lines()
            .find(|l| l.starts_with("ingest stopped:"))
            .unwrap_or_else(|| panic!("no final counters in: {log}"));
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        (nums[0], nums[1], nums[2])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for w in self.workers.iter_mut() {
            if let Some(mut c) = w.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if std::thread::panicking() {
            for logs in &self.logs {
                for path in logs {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(40).collect();
                    eprintln!("--- {} (last lines) ---", path.display());
                    for l in tail.iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// `iotsec device run --simulate --count N` for a bundle, a reading every `interval_ms`.
fn agent(c: &Cluster, id: &str, count: u32, interval_ms: u32) -> Child {
    let toml = c.root.join("bundles").join(id).join("device.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "interval_ms = 1000",
        &format!("interval_ms = {interval_ms}"),
    );
    std::fs::write(&toml, text).unwrap();
    let log = std::fs::File::create(c.root.join(format!("agent-{id}.log"))).unwrap();
    Command::new(env!("CARGO_BIN_EXE_iotsec"))
        .args([
            "device",
            "run",
            "--simulate",
            "--count",
            &count.to_string(),
            "--config",
        ])
        .arg(&toml)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// 3 workers, 20 devices x 2,000 readings from real agents (separate processes, disk queues,
/// end-to-end acks). Worker 2 is killed with SIGKILL mid-stream and a replacement takes over
/// its client id (and with it the broker session holding its unacknowledged and queued
/// messages). Every reading is stored exactly once, none is lost, and nothing is counted as a
/// rejection: redeliveries and retransmissions, wherever they land, are recognised through the
/// database's unique `(device, seq)`.
#[test]
fn three_workers_share_the_stream_exactly_once_through_kill_9_of_a_worker() {
    const DEVICES: usize = 20;
    const READINGS: u32 = 2_000;
    let mut c = Cluster::new(3);
    let ids: Vec<String> = (1..=DEVICES).map(|i| format!("sensor-{i:02}")).collect();
    c.add_devices(&ids);
    for n in 1..=3 {
        c.start_worker(n);
    }
    let mut store = c.store();
    let started = Instant::now();
    let mut agents: Vec<Child> = ids.iter().map(|id| agent(&c, id, READINGS, 10)).collect();

    let total = (DEVICES as u64) * u64::from(READINGS);
    wait_until(Duration::from_secs(120), || {
        store.reading_count().unwrap() >= total * 3 / 10
    });
    c.kill_worker(2);
    let killed_at = store.reading_count().unwrap();
    // An outage long enough for the others to get well ahead (far past any replay window) of
    // what the dead worker's session holds; shorter than the agents' 10 s retry timeout.
    wait_until(Duration::from_secs(60), || {
        store.reading_count().unwrap() >= killed_at + 4_000
    });
    let restarted_at = store.reading_count().unwrap();
    c.start_worker(2);

    for (a, id) in agents.iter_mut().zip(&ids) {
        let deadline = Instant::now() + Duration::from_secs(240);
        let status = loop {
            if let Some(s) = a.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = a.kill();
                let _ = a.wait();
                panic!(
                    "agent {id} did not finish; stored {}",
                    store.reading_count().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "agent {id} failed");
    }
    let elapsed = started.elapsed();

    let counters: Vec<(u64, u64, u64)> = (1..=3).map(|n| c.stop_worker(n)).collect();
    eprintln!(
        "{total} readings in {elapsed:?}; worker 2 killed at {killed_at} stored, replaced at \
         {restarted_at}; final (stored, duplicates, rejected) of workers 1, 2 (the replacement) \
         and 3: {counters:?}"
    );
    assert_eq!(store.reading_count().unwrap(), total);
    for id in &ids {
        let mut seqs = BTreeSet::new();
        let mut after = None;
        loop {
            let page = store.telemetry(id, 0, i64::MAX, after, 1000).unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            for r in &page {
                assert!(seqs.insert(r.seq), "{id}: seq {} twice", r.seq);
            }
        }
        // (The agent's status messages take seqs of their own, so the readings' seqs have gaps.)
        assert_eq!(seqs.len(), READINGS as usize, "{id}");
    }
    let accepted: u64 = store.devices().unwrap().iter().map(|d| d.accepted).sum();
    assert_eq!(accepted, total);
    assert_eq!(
        store.rejection_counts().unwrap(),
        vec![],
        "redeliveries or retransmissions were counted as attacks"
    );
    // The stream really was shared: every surviving worker stored part of it.
    for (n, (stored, _, rejected)) in counters.iter().enumerate() {
        assert!(*stored > 0, "worker {} stored nothing", [1, 2, 3][n]);
        assert_eq!(*rejected, 0);
    }
}

/// `iotsec fleet simulate --devices 1000` against the hardened broker (mutual TLS, ACL, CRL),
/// with one ingest worker on PostgreSQL storing and acknowledging what they send: every device
/// provisioned, connected with its own certificate, every reading PUBACKed, stored and acked.
#[test]
fn fleet_simulate_runs_1000_mutual_tls_devices_against_the_hardened_broker() {
    const DEVICES: u64 = 1_000;
    let mut c = Cluster::new(1);
    c.start_worker(1);
    let (root, config) = (c.root.path().to_path_buf(), c.config(1));
    let fleet = |extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_iotsec"));
        cmd.current_dir(&root)
            .args([
                "fleet",
                "simulate",
                "--devices",
                &DEVICES.to_string(),
                "--rate",
                "1",
            ])
            .args(["--config", config.to_str().unwrap(), "--json"])
            .args(extra);
        iotsec_testkit::run(&mut cmd, Duration::from_secs(300))
    };
    let out = fleet(&["--duration", "5s"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    eprintln!("{r}");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert_eq!((n("connected"), n("connect_failed")), (DEVICES, 0));
    assert_eq!(
        (n("provisioned_new"), n("registered_new")),
        (DEVICES, DEVICES)
    );
    let published = n("published");
    // 1 reading per device per second for 5 s: the devices' first ticks are spread over the
    // first second, so each sends 5 (or 4 when the end falls between its ticks).
    assert!(
        (DEVICES * 4..=DEVICES * 5).contains(&published),
        "{published}"
    );
    assert_eq!(n("pubacked"), published);
    assert_eq!(n("acked"), published);
    assert_eq!((n("publish_errors"), n("disconnects")), (0, 0));
    // Each device had its own TLS identity: the broker saw 1000 distinct usernames (CNs).
    let log = c.broker.process.log_text();
    let names: BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.split(" u'").nth(1))
        .filter_map(|u| u.strip_suffix("').").or_else(|| u.strip_suffix("')")))
        .filter(|u| u.starts_with("fleet-"))
        .collect();
    assert_eq!(
        names.len() as u64,
        DEVICES,
        "{}",
        log.lines().last().unwrap_or("")
    );
    let mut store = c.store();
    assert_eq!(store.reading_count().unwrap(), published);
    assert_eq!(store.rejection_counts().unwrap(), vec![]);
    let (stored, _, rejected) = c.stop_worker(1);
    assert_eq!((stored, rejected), (published, 0));

    // A second run reuses the devices: no new certificates, no new registrations (no ingest
    // is running now, so it does not wait for acks).
    let out = fleet(&["--duration", "1s", "--no-acks"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (r["provisioned_new"].as_u64(), r["registered_new"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(r["connected"].as_u64(), Some(DEVICES));
}
