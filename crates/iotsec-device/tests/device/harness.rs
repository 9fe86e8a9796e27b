//! Shared set-up: a PKI and Mosquitto from iotsec-testkit, device bundles, a counting
//! reading source, and a fake ingest that verifies nothing and acks what it sees.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iotsec_broker::topic::{self, Ack};
use iotsec_device::backoff::Backoff;
use iotsec_device::outbox::OutboxConfig;
use iotsec_device::source::Source;
use iotsec_device::{Config, RunOptions};
use iotsec_msg::key::{KeyMaterial, derive_device_key};
use iotsec_msg::keyfile::{self, Overwrite};
use iotsec_msg::{DeviceId, Kid};
use iotsec_pki::KeyAlgorithm;
use iotsec_testkit::{SERVICE_ID, TestBroker, TestDir, TestPki};
use iotsec_tls::{CaTrust, ClientTls, Identity, TrustPolicy};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

pub const MASTER: [u8; 32] = [7u8; 32];

/// A PKI and a running broker in a temporary directory.
pub struct Env {
    pub dir: TestDir,
    pub pki: TestPki,
    pub broker: TestBroker,
}

impl Env {
    pub fn new(devices: &[&str]) -> Env {
        let dir = TestDir::new();
        let pki = TestPki::new(&dir, KeyAlgorithm::P256, devices);
        let broker = TestBroker::start(&dir, &pki);
        Env { dir, pki, broker }
    }

    /// Writes `<dir>/<id>/device.toml` (and msg.key) with `tls_lines` in `[tls]`, and loads it.
    pub fn device(&self, id: &str, tls_lines: &str) -> Config {
        self.device_at(id, tls_lines, &format!("127.0.0.1:{}", self.broker.port))
    }

    pub fn device_at(&self, id: &str, tls_lines: &str, broker: &str) -> Config {
        let bundle = self.dir.join(id);
        std::fs::create_dir_all(&bundle).unwrap();
        let kid = Kid::new(DeviceId::new(id).unwrap(), 1);
        let key = derive_device_key(&KeyMaterial::new(MASTER.to_vec()).unwrap(), &kid);
        keyfile::write(&bundle.join("msg.key"), &key, Overwrite::Replace).unwrap();
        let (cert, key) = self.pki.client(id);
        let text = format!(
            "id = \"{id}\"\nbroker = \"{broker}\"\n\n[tls]\n{tls_lines}\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [msg]\nkey_file = \"msg.key\"\nkey_version = 1\n\n[state]\ndir = \"state\"\n\n\
             [telemetry]\nsource = \"simulate\"\ninterval_ms = 1000\nfirmware_version = \"1.0.0\"\n",
            cert.display(),
            key.display(),
        );
        let path = bundle.join("device.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    /// `policy = "ca"` with the test CA.
    pub fn ca_lines(&self) -> String {
        format!("policy = \"ca\"\nca = \"{}\"", self.pki.ca_cert().display())
    }

    pub fn server_cert(&self) -> PathBuf {
        self.pki.dir.join("server.crt")
    }
}

/// Options for tests: short retry timeout and backoff.
pub fn quick(count: u64) -> RunOptions {
    RunOptions {
        count: Some(count),
        outbox: OutboxConfig {
            window: 500,
            retry_after: Duration::from_secs(1),
        },
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(1)),
        keep_alive: Duration::from_secs(10),
        head_interval: Duration::from_millis(100),
    }
}

/// Readings `{"n": 0}`, `{"n": 1}`, ... paced by `interval`. The counter is bumped only in
/// the poll that returns the reading, so its value is exactly the number of readings the
/// agent took, even when the agent is dropped mid-stream.
pub struct Counted {
    pub next: Arc<AtomicU64>,
    pub interval: Duration,
}

impl Counted {
    pub fn new(next: &Arc<AtomicU64>, interval: Duration) -> Self {
        Counted {
            next: Arc::clone(next),
            interval,
        }
    }
}

impl Source for Counted {
    async fn next(&mut self) -> iotsec_device::Result<Option<Vec<u8>>> {
        if self.interval.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(self.interval).await;
        }
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        Ok(Some(format!("{{\"n\": {n}}}").into_bytes()))
    }
}

/// A message the fake ingest received.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub raw: Vec<u8>,
    pub json: serde_json::Value,
}

impl Msg {
    pub fn seq(&self) -> u64 {
        self.json["seq"].as_u64().unwrap()
    }
    pub fn ts(&self) -> i64 {
        self.json["ts"].as_i64().unwrap()
    }
    pub fn n(&self) -> u64 {
        self.json["n"].as_u64().unwrap()
    }
    pub fn is_telemetry(&self) -> bool {
        self.topic.ends_with("/telemetry")
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An MQTT client with the service identity: subscribes to telemetry and status, records
/// everything, and (while `acking`) answers every telemetry message with an `Ack` of its seq.
pub struct FakeIngest {
    pub log: Arc<Mutex<Vec<Msg>>>,
    pub acking: Arc<AtomicBool>,
    /// SUBACKs received (one per subscription, again after every reconnect).
    pub subacks: Arc<AtomicU64>,
    _task: AbortOnDrop,
}

impl FakeIngest {
    pub fn start(env: &Env, acking: bool) -> FakeIngest {
        let (cert, key) = env.pki.client(SERVICE_ID);
        let identity = Identity::from_pem_files(cert, key).unwrap();
        let ca = CaTrust::from_pem_file(env.pki.ca_cert()).unwrap();
        let tls = ClientTls::new(&TrustPolicy::Ca(ca), Some(&identity)).unwrap();
        let mut options = MqttOptions::new("fake-ingest", ("127.0.0.1", env.broker.port));
        options
            .set_keep_alive(10)
            .set_max_packet_size(128 * 1024, 128 * 1024)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.config(),
            )));
        let (client, mut eventloop) = AsyncClient::builder(options).capacity(20_000).build();
        let log = Arc::new(Mutex::new(Vec::new()));
        let acking = Arc::new(AtomicBool::new(acking));
        let subacks = Arc::new(AtomicU64::new(0));
        let (log2, acking2, subacks2) =
            (Arc::clone(&log), Arc::clone(&acking), Arc::clone(&subacks));
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        for leaf in ["telemetry", "status"] {
                            client
                                .try_subscribe(topic::ingest_filter(leaf, None), QoS::AtLeastOnce)
                                .unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subacks2.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        let json: serde_json::Value =
                            serde_json::from_slice(&p.payload).unwrap_or_default();
                        let msg = Msg {
                            topic: topic.clone(),
                            raw: p.payload.to_vec(),
                            json,
                        };
                        if msg.is_telemetry() && acking2.load(Ordering::SeqCst) {
                            let (device, _) = topic::split(&topic).unwrap();
                            let ack = Ack::from_seqs([msg.seq()]).encode();
                            let _ = client.try_publish(
                                topic::ack(device),
                                ack,
                                rumqttc::PublishOptions::new(QoS::AtLeastOnce),
                            );
                        }
                        log2.lock().unwrap().push(msg);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        FakeIngest {
            log,
            acking,
            subacks,
            _task: AbortOnDrop(task),
        }
    }

    pub fn telemetry(&self) -> Vec<Msg> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.is_telemetry())
            .cloned()
            .collect()
    }

    pub fn all(&self) -> Vec<Msg> {
        self.log.lock().unwrap().clone()
    }
}

/// Polls `cond` every 20 ms until it holds, or panics after `within`.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl FakeIngest {
    /// Waits until both subscriptions are acknowledged `times` times in total.
    pub async fn subscribed(&self, times: u64) {
        wait_for(
            "the fake ingest's subscriptions",
            Duration::from_secs(10),
            || self.subacks.load(Ordering::SeqCst) >= 2 * times,
        )
        .await;
    }
}
