//! The agent end to end: publish, ack, drain; restarts; broker crash; retransmission;
//! a revoked certificate.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iotsec_device::agent;
use iotsec_device::queue::{Queue, QueueOptions};
use iotsec_device::source::wall_ms;
use iotsec_msg::key::KeyMaterial;
use iotsec_msg::v2::{DeviceState, Keyring, Policy, V2Verifier};

use crate::harness::{Counted, Env, FakeIngest, MASTER, Msg, quick, wait_for};

/// Every message verifies as v2 from `device` (each on its own, so retransmissions do too).
fn assert_all_verify(msgs: &[Msg], device: &str) {
    let mut keys = Keyring::new(KeyMaterial::new(MASTER.to_vec()).unwrap(), 1..=1);
    let mut verifier = V2Verifier::new(Policy::default());
    for m in msgs {
        let mut state = DeviceState::v2_only();
        let mut payload = Vec::new();
        verifier
            .verify(
                &m.raw,
                device,
                wall_ms(),
                &mut keys,
                &mut state,
                &mut payload,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&m.raw)));
    }
}

/// Each reading `n` has exactly one seq, each seq belongs to one reading, and every
/// `n` in `0..count` arrived.
fn assert_exactly_readings(msgs: &[Msg], count: u64) -> BTreeMap<u64, u64> {
    let mut seq_of: BTreeMap<u64, u64> = BTreeMap::new();
    let mut n_of: BTreeMap<u64, u64> = BTreeMap::new();
    for m in msgs {
        let (n, seq) = (m.n(), m.seq());
        assert_eq!(
            *seq_of.entry(n).or_insert(seq),
            seq,
            "reading {n} sent with two seqs"
        );
        assert_eq!(
            *n_of.entry(seq).or_insert(n),
            n,
            "seq {seq} used for two readings"
        );
    }
    let got: BTreeSet<u64> = seq_of.keys().copied().collect();
    let want: BTreeSet<u64> = (0..count).collect();
    let missing: Vec<u64> = want.difference(&got).copied().collect();
    assert!(missing.is_empty(), "lost readings: {missing:?}");
    assert_eq!(got, want);
    seq_of
}

/// Every "online" status arrived after every reading with a lower seq: a status never
/// overtakes older readings (the ingest's 64-entry replay window would refuse them).
fn assert_status_in_seq_order(log: &[Msg]) {
    for (i, status) in log.iter().enumerate() {
        if status.is_telemetry() || status.json["state"] != "online" {
            continue;
        }
        let before: BTreeSet<u64> = log[..i]
            .iter()
            .filter(|m| m.is_telemetry())
            .map(Msg::seq)
            .collect();
        for m in log
            .iter()
            .filter(|m| m.is_telemetry() && m.seq() < status.seq())
        {
            assert!(
                before.contains(&m.seq()),
                "status seq {} overtook reading seq {}",
                status.seq(),
                m.seq()
            );
        }
    }
}

fn queue_of(config: &iotsec_device::Config) -> Queue {
    let (queue, _) = Queue::open(
        &config.state_dir.join("queue"),
        QueueOptions::with_max_bytes(config.max_queue_bytes),
    )
    .unwrap();
    queue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_signed_readings_and_drains_on_the_ingest_ack() {
    let env = Env::new(&["dev-1"]);
    let ingest = FakeIngest::start(&env, true);
    ingest.subscribed(1).await;
    let config = env.device("dev-1", &env.ca_lines());
    let counter = Arc::new(AtomicU64::new(0));
    let summary = tokio::time::timeout(
        Duration::from_secs(30),
        agent::run(
            &config,
            Counted::new(&counter, Duration::ZERO),
            quick(300),
            std::future::pending(),
        ),
    )
    .await
    .expect("the agent finishes")
    .unwrap();
    assert_eq!((summary.queued, summary.acked), (300, 300));
    assert_eq!(summary.connections, 1);
    assert!(
        queue_of(&config).is_empty(),
        "queue not empty after every ack"
    );

    let telemetry = ingest.telemetry();
    assert_exactly_readings(&telemetry, 300);
    assert_all_verify(&telemetry, "dev-1");
    // Readings carry their measurement time `t`; the v2 envelope names the device.
    assert!(
        telemetry
            .iter()
            .all(|m| m.json["t"].is_i64() && m.json["kid"] == "dev-1:1")
    );
    // Status: signed "online" on connect, signed "offline" on the orderly exit; its seqs are
    // never reused by readings.
    let status: Vec<Msg> = ingest
        .all()
        .into_iter()
        .filter(|m| !m.is_telemetry())
        .collect();
    wait_for("the offline status", Duration::from_secs(5), || {
        ingest.all().iter().any(|m| m.json["state"] == "offline")
    })
    .await;
    assert_eq!(status[0].json["state"], "online");
    assert_eq!(status[0].json["firmware"], "1.0.0");
    assert_all_verify(&status, "dev-1");
    let reading_seqs: BTreeSet<u64> = telemetry.iter().map(Msg::seq).collect();
    assert!(status.iter().all(|s| !reading_seqs.contains(&s.seq())));
    assert_status_in_seq_order(&ingest.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_stream_loses_nothing_and_never_repeats_a_seq() {
    let env = Env::new(&["dev-2"]);
    let ingest = FakeIngest::start(&env, true);
    ingest.subscribed(1).await;
    let config = env.device("dev-2", &env.ca_lines());
    let counter = Arc::new(AtomicU64::new(0));

    // First run: dropped (like a kill) after 150 readings were taken.
    let first = agent::run(
        &config,
        Counted::new(&counter, Duration::from_millis(1)),
        quick(10_000),
        std::future::pending(),
    );
    tokio::select! {
        r = first => panic!("the first run ended on its own: {r:?}"),
        () = wait_for("150 readings", Duration::from_secs(20), || counter.load(Ordering::SeqCst) >= 150) => {}
    }
    let taken_first = counter.load(Ordering::SeqCst);
    let max_seq_first = ingest.telemetry().iter().map(Msg::seq).max().unwrap_or(0);

    // Second run: 100 more readings; it ends when everything (old and new) is acked.
    let summary = tokio::time::timeout(
        Duration::from_secs(30),
        agent::run(
            &config,
            Counted::new(&counter, Duration::ZERO),
            quick(100),
            std::future::pending(),
        ),
    )
    .await
    .expect("the second run finishes")
    .unwrap();
    let total = counter.load(Ordering::SeqCst);
    assert_eq!(total, taken_first + 100);
    assert!(queue_of(&config).is_empty());

    let seq_of = assert_exactly_readings(&ingest.telemetry(), total);
    // The second run's new readings skipped ahead past everything the first run used.
    let min_new = (taken_first..total).map(|n| seq_of[&n]).min().unwrap();
    assert!(min_new > max_seq_first, "{min_new} <= {max_seq_first}");
    assert!(summary.backlog <= taken_first);
    assert_status_in_seq_order(&ingest.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_stream_then_restarted_everything_arrives() {
    let mut env = Env::new(&["dev-3"]);
    let ingest = FakeIngest::start(&env, true);
    ingest.subscribed(1).await;
    let config = env.device("dev-3", &env.ca_lines());
    let counter = Arc::new(AtomicU64::new(0));
    let run = tokio::spawn({
        let config = config.clone();
        let counter = Arc::clone(&counter);
        async move {
            agent::run(
                &config,
                Counted::new(&counter, Duration::from_millis(2)),
                quick(400),
                std::future::pending(),
            )
            .await
        }
    });
    wait_for(
        "100 readings at the ingest",
        Duration::from_secs(20),
        || ingest.telemetry().len() >= 100,
    )
    .await;
    env.broker.process.kill_hard();
    let dir = &env.dir;
    let broker = &mut env.broker;
    tokio::task::block_in_place(|| broker.restart(dir));
    ingest.subscribed(2).await;
    let summary = tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .expect("the agent drains after the broker restart")
        .unwrap()
        .unwrap();
    assert!(summary.connections >= 2, "{summary:?}");
    assert_eq!(summary.acked, 400);
    assert!(queue_of(&config).is_empty());
    assert_exactly_readings(&ingest.telemetry(), 400);
    assert_status_in_seq_order(&ingest.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_readings_are_resigned_with_the_same_seq() {
    let env = Env::new(&["dev-4"]);
    let ingest = FakeIngest::start(&env, false);
    ingest.subscribed(1).await;
    let config = env.device("dev-4", &env.ca_lines());
    let counter = Arc::new(AtomicU64::new(0));
    let run = tokio::spawn({
        let config = config.clone();
        let counter = Arc::clone(&counter);
        async move {
            agent::run(
                &config,
                Counted::new(&counter, Duration::ZERO),
                quick(3),
                std::future::pending(),
            )
            .await
        }
    });
    // No ack: after the 1 s retry timeout every reading comes again.
    wait_for("retransmissions", Duration::from_secs(10), || {
        ingest.telemetry().len() >= 6
    })
    .await;
    let msgs = ingest.telemetry();
    for n in 0..3 {
        let copies: Vec<&Msg> = msgs.iter().filter(|m| m.n() == n).collect();
        assert!(copies.len() >= 2, "reading {n} not retransmitted");
        assert_eq!(
            copies[0].seq(),
            copies[1].seq(),
            "a retransmission keeps its seq"
        );
        assert!(
            copies[1].ts() >= copies[0].ts() + 900,
            "re-signed with a fresh ts: {} then {}",
            copies[0].ts(),
            copies[1].ts()
        );
        assert_ne!(copies[0].raw, copies[1].raw);
    }
    assert_all_verify(&msgs, "dev-4");
    assert!(!queue_of(&config).is_empty());
    // Acks resume: the queue drains and the agent ends.
    ingest.acking.store(true, Ordering::SeqCst);
    let summary = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the agent drains once acked")
        .unwrap()
        .unwrap();
    assert_eq!(summary.acked, 3);
    assert!(summary.retransmissions >= 3);
    assert!(queue_of(&config).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_device_keeps_its_readings_queued() {
    let mut env = Env::new(&["dev-5"]);
    let config = env.device("dev-5", &env.ca_lines());
    env.pki.ca.revoke("dev-5", 30).unwrap();
    iotsec_broker::process::reload(&env.broker.dir).unwrap();
    // SIGHUP is asynchronous: wait until the broker refuses the certificate.
    let mut refused = false;
    for _ in 0..50 {
        let report = iotsec_device::check(&config, Duration::from_secs(5))
            .await
            .unwrap();
        if let iotsec_device::CheckOutcome::Failed(f) = &report.outcome
            && f.is_certificate_refused()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "the broker still accepts the revoked certificate");

    let counter = Arc::new(AtomicU64::new(0));
    let run = agent::run(
        &config,
        Counted::new(&counter, Duration::ZERO),
        quick(5),
        std::future::pending(),
    );
    // The agent keeps retrying (it never finishes), the readings stay queued.
    let outcome = tokio::time::timeout(Duration::from_secs(2), run).await;
    assert!(outcome.is_err(), "the agent gave up: {outcome:?}");
    let mut queue = queue_of(&config);
    let kept = queue.read_batch(100).unwrap();
    assert_eq!(kept.len(), 5, "readings of a revoked device stay queued");
    let _ = env.broker.process.pid();
}

/// Not a test: how fast one agent drains readings through Mosquitto (TLS, QoS 1) to the
/// fake ingest, fsync groups and end-to-end acks included. Run with
/// `cargo test --release -p iotsec-device --test device -- --ignored --nocapture throughput`
/// (`IOTSEC_DEVICE_BENCH_N` readings, default 20000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run by hand"]
#[allow(clippy::print_stderr)]
async fn throughput() {
    let n: u64 = std::env::var("IOTSEC_DEVICE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let env = Env::new(&["dev-bench"]);
    let ingest = FakeIngest::start(&env, true);
    ingest.subscribed(1).await;
    let config = env.device("dev-bench", &env.ca_lines());
    let counter = Arc::new(AtomicU64::new(0));
    let start = std::time::Instant::now();
    let summary = agent::run(
        &config,
        Counted::new(&counter, Duration::ZERO),
        quick(n),
        std::future::pending(),
    )
    .await
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(summary.acked, n);
    eprintln!(
        "{n} readings queued, sent, acked end to end in {secs:.2} s: {:.0} readings/s \
         ({} retransmissions)",
        n as f64 / secs,
        summary.retransmissions
    );
}
