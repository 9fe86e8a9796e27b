//! Ingest throughput against the broker's own ceiling, measured in the same run.
//!
//! Starts the hardened Mosquitto (TLS, client certificates) on a free loopback port, then, for
//! each round: (1) CEILING: D device clients publish N signed readings at QoS 1 while a plain
//! subscriber (the service identity, automatic acks, no verification, no storage) receives the
//! stream; (2) INGEST: the same D devices publish N fresh readings while `iotsec serve`'s ingest
//! (in-process: verify, SQLite commit, PUBACK after commit, end-to-end acks) stores them. Each
//! device subscribes to its ack topic; publish-to-ack latency (end to end, after the commit)
//! gives p50/p99. Rounds alternate; medians are reported.
//!
//! cargo run --release -p iotsec-server --example ingest_bench -- [devices=4] [per_device=5000] [rounds=3]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iotsec_broker::topic;
use iotsec_msg::key::{KeyMaterial, Kid, derive_device_key};
use iotsec_msg::v2::Envelope;
use iotsec_msg::{DeviceId, MsgKey, Signer};
use iotsec_pki::KeyAlgorithm;
use iotsec_server::store::Storage;
use iotsec_server::store::sqlite::Sqlite;
use iotsec_testkit::{SERVICE_ID, TestBroker, TestDir, TestPki};
use iotsec_tls::{CaTrust, ClientTls, Identity, TrustPolicy};
use rumqttc::{
    AsyncClient, Event, Incoming, MqttOptions, PublishOptions, QoS, TlsConfiguration, Transport,
};
use tokio::sync::Mutex;

const MASTER: [u8; 32] = [0x42; 32];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn options(pki: &TestPki, id: &str, client_id: &str, port: u16) -> MqttOptions {
    let (cert, key) = pki.client(id);
    let tls = ClientTls::new(
        &TrustPolicy::Ca(CaTrust::from_pem_file(pki.ca_cert()).unwrap()),
        Some(&Identity::from_pem_files(cert, key).unwrap()),
    )
    .unwrap();
    let mut o = MqttOptions::new(client_id, ("localhost".to_string(), port));
    o.set_keep_alive(30)
        .set_inflight(100)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls.config(),
        )));
    o
}

/// Publishes `n` readings from `device` starting at `first_seq`; returns per-seq publish times.
async fn device(
    pki: &TestPki,
    port: u16,
    id: String,
    first_seq: u64,
    n: u64,
    acks: Arc<Mutex<HashMap<(String, u64), i64>>>,
) -> (HashMap<u64, i64>, AsyncClient, tokio::task::JoinHandle<()>) {
    // A fresh client id per run: two live clients with one id would keep taking over each
    // other's session.
    let client_id = format!("{id}-{first_seq}");
    let (client, mut el) = AsyncClient::builder(options(pki, &id, &client_id, port))
        .capacity(1024)
        .build();
    let ack_id = id.clone();
    let poller = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    if let Some(ack) = topic::Ack::decode(&p.payload) {
                        let t = now_ms();
                        let mut map = acks.lock().await;
                        for (lo, hi) in ack.ranges {
                            for s in lo..=hi {
                                map.entry((ack_id.clone(), s)).or_insert(t);
                            }
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    client
        .subscribe(topic::ack(&id), QoS::AtLeastOnce)
        .await
        .unwrap();
    let kid = Kid::new(DeviceId::new(&id).unwrap(), 1);
    let key = derive_device_key(&KeyMaterial::new(MASTER.to_vec()).unwrap(), &kid);
    let mut signer = Signer::new(MsgKey::new(key.expose()).unwrap());
    let mut sent = HashMap::new();
    let mut buf = Vec::new();
    for seq in first_seq..first_seq + n {
        let ts = now_ms();
        let payload = format!(
            r#"{{"temp": {:.2}, "hum": {:.1}, "pressure": 1013.25, "battery": 3.71, "rssi": -67, "uptime": {seq}, "fw": "1.0.0", "t": {ts}}}"#,
            20.0 + (seq % 100) as f64 / 10.0,
            40.0 + (seq % 50) as f64
        );
        buf.clear();
        signer
            .sign_v2(
                payload.as_bytes(),
                &Envelope {
                    kid: kid.clone(),
                    ts,
                    seq,
                },
                &mut buf,
            )
            .unwrap();
        client
            .publish(
                topic::telemetry(&id),
                buf.clone(),
                PublishOptions::new(QoS::AtLeastOnce),
            )
            .await
            .unwrap();
        sent.insert(seq, ts);
    }
    // The connection (and the ack subscription) stays up until the caller is done.
    (sent, client, poller)
}

async fn close(clients: Vec<(AsyncClient, tokio::task::JoinHandle<()>)>) {
    for (c, poller) in clients {
        let _ = c.disconnect().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        poller.abort();
    }
}

/// A plain subscriber: counts messages on devices/+/telemetry until `total`.
async fn ceiling_subscriber(
    pki: &TestPki,
    port: u16,
    total: u64,
) -> tokio::task::JoinHandle<Instant> {
    let (client, mut el) = AsyncClient::builder(options(pki, SERVICE_ID, "ceiling-sub", port))
        .capacity(1024)
        .build();
    client
        .subscribe("devices/+/telemetry", QoS::AtLeastOnce)
        .await
        .unwrap();
    // Wait for the SUBACK before anyone publishes.
    loop {
        if let Ok(Event::Incoming(Incoming::SubAck(_))) = el.poll().await {
            break;
        }
    }
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            if let Ok(Event::Incoming(Incoming::Publish(_))) = el.poll().await {
                n += 1;
                if n == total {
                    let done = Instant::now();
                    let _ = client.disconnect().await;
                    return done;
                }
            }
        }
    })
}

fn percentile(v: &mut [i64], p: f64) -> i64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p) as usize]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    iotsec_tls::install_crypto_provider();
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let devices = *args.first().unwrap_or(&4);
    let per_device = *args.get(1).unwrap_or(&5000);
    let rounds = *args.get(2).unwrap_or(&3);
    let total = devices * per_device;
    let ids: Vec<String> = (1..=devices).map(|i| format!("bench-{i}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();

    let root = TestDir::new();
    let pki = TestPki::new(&root, KeyAlgorithm::P256, &id_refs);
    let broker = TestBroker::start(&root, &pki);
    let port = broker.port;
    std::fs::write(root.join("master.key"), MASTER).unwrap();
    let server_toml = root.join("server.toml");
    std::fs::write(
        &server_toml,
        format!(
            "[broker]\nhost = \"localhost\"\nport = {port}\n[tls]\nca = \"pki/ca.crt\"\n\
             cert = \"pki/devices/iotsec-server.crt\"\nkey = \"pki/devices/iotsec-server.key\"\n\
             [keys]\nmaster = \"master.key\"\n[storage]\nsqlite = \"bench.db\"\n"
        ),
    )
    .unwrap();
    let config = iotsec_server::ServerConfig::load(&server_toml).unwrap();
    {
        let mut db = config.open_storage().unwrap();
        for id in &ids {
            db.upsert_device(id, false, 1).unwrap();
        }
    }

    let mut ceiling_rates = Vec::new();
    let mut ingest_rates = Vec::new();
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut next_seq = 1u64;
    for round in 0..rounds {
        // --- ceiling
        let sub = ceiling_subscriber(&pki, port, total).await;
        let start = Instant::now();
        let mut tasks = Vec::new();
        let acks = Arc::new(Mutex::new(HashMap::new()));
        for id in &ids {
            let pki = &pki;
            let id = id.clone();
            let acks = Arc::clone(&acks);
            let first = next_seq;
            tasks.push(async move { device(pki, port, id, first, per_device, acks).await });
        }
        let out = futures_join(tasks).await;
        let done = sub.await.unwrap();
        close(out.into_iter().map(|(_, c, p)| (c, p)).collect()).await;
        let ceiling = total as f64 / done.duration_since(start).as_secs_f64();
        ceiling_rates.push(ceiling);
        next_seq += per_device;

        // --- ingest
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let storage: Box<dyn Storage> = Box::new(Sqlite::open(&config.sqlite).unwrap());
        let before = Sqlite::open(&config.sqlite)
            .unwrap()
            .reading_count()
            .unwrap();
        let mut cfg = config.clone();
        // A fresh session per round: the ceiling phase's messages must not be queued for it.
        cfg.client_id = format!("iotsec-ingest-{round}");
        let ingest = tokio::spawn(async move {
            iotsec_server::service::run(cfg, storage, async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap()
        });
        // Wait until the ingest is subscribed (its session persists between rounds).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let acks = Arc::new(Mutex::new(HashMap::new()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for id in &ids {
            let pki = &pki;
            let id = id.clone();
            let acks = Arc::clone(&acks);
            let first = next_seq;
            tasks.push(async move {
                let (sent, c, p) = device(pki, port, id.clone(), first, per_device, acks).await;
                (id, sent, c, p)
            });
        }
        let out = futures_join(tasks).await;
        let mut sent = Vec::new();
        let mut clients = Vec::new();
        for (id, s, c, p) in out {
            sent.push((id, s));
            clients.push((c, p));
        }
        let mut db = Sqlite::open(&config.sqlite).unwrap();
        loop {
            if db.reading_count().unwrap() - before >= total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = start.elapsed();
        let rate = total as f64 / elapsed.as_secs_f64();
        ingest_rates.push(rate);
        // latency: publish -> end-to-end ack (sent after the commit)
        tokio::time::sleep(Duration::from_millis(500)).await;
        let acks = acks.lock().await;
        let mut lat = Vec::new();
        for (id, seqs) in &sent {
            for (seq, t) in seqs {
                if let Some(a) = acks.get(&(id.clone(), *seq)) {
                    lat.push(a - t);
                }
            }
        }
        let (p50, p99) = (percentile(&mut lat, 0.50), percentile(&mut lat, 0.99));
        p50s.push(p50 as f64);
        p99s.push(p99 as f64);
        let _ = stop_tx.send(());
        let stats = ingest.await.unwrap();
        close(clients).await;
        next_seq += per_device;
        eprintln!(
            "round {}: ceiling {ceiling:.0} msg/s, ingest {rate:.0} msg/s ({:.1}%), p50 {p50} ms, p99 {p99} ms, acked {}/{total}, stats {stats:?}",
            round + 1,
            100.0 * rate / ceiling,
            lat.len()
        );
    }
    let (c, i) = (median(&mut ceiling_rates), median(&mut ingest_rates));
    println!(
        "devices={devices} readings={total} rounds={rounds}: broker ceiling {c:.0} msg/s, ingest {i:.0} msg/s = {:.1}% of ceiling; publish->commit(ack) p50 {:.0} ms p99 {:.0} ms (medians)",
        100.0 * i / c,
        median(&mut p50s),
        median(&mut p99s)
    );
}

async fn futures_join<F: std::future::Future>(tasks: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::new();
    let handles: Vec<_> = tasks.into_iter().map(Box::pin).collect();
    // Run them concurrently on this task.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for r in results {
        out.push(r.expect("joined"));
    }
    out
}
