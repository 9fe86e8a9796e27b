//! The hardened configuration against the real Mosquitto 2.0 and its real clients: who gets in,
//! what the ACL lets through, revocation, and every key type.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use iotsec_broker::Severity;
use iotsec_broker::audit;
use iotsec_broker::conf::Config;
use iotsec_broker::process;
use iotsec_pki::KeyAlgorithm;
use iotsec_testkit::{Output, SERVICE_ID, TestBroker, TestDir, TestPki, run};

const T: Duration = Duration::from_secs(10);

/// mosquitto_pub with optional TLS material; returns its output.
fn publish(
    port: u16,
    tls: Option<(&Path, Option<(&Path, &Path)>)>,
    topic: &str,
    msg: &str,
) -> Output {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        topic,
        "-m",
        msg,
        "-q",
        "1",
    ]);
    if let Some((ca, client)) = tls {
        cmd.arg("--cafile").arg(ca);
        if let Some((cert, key)) = client {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
    }
    run(&mut cmd, T)
}

fn device_pub(pki: &TestPki, port: u16, id: &str, topic: &str, msg: &str) -> Output {
    let (cert, key) = pki.client(id);
    publish(
        port,
        Some((&pki.ca_cert(), Some((&cert, &key)))),
        topic,
        msg,
    )
}

/// A subscriber as the service identity; returns a receiver of the lines it prints and the
/// child, once the broker has acknowledged the subscription.
fn subscribe(
    pki: &TestPki,
    port: u16,
    filter: &str,
    count: u32,
) -> (mpsc::Receiver<String>, std::process::Child) {
    let (cert, key) = pki.client(SERVICE_ID);
    // stdbuf: mosquitto_sub block-buffers stdout into a pipe; we need each line as it happens.
    let mut child = Command::new("stdbuf")
        .args([
            "-oL",
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            filter,
            "-v",
            "-d",
            "-q",
            "1",
        ])
        .args(["-C", &count.to_string(), "-W", "20"])
        .arg("--cafile")
        .arg(pki.ca_cert())
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx.recv_timeout(T).expect("subscriber never got its SUBACK");
        if line.contains("received SUBACK") {
            break;
        }
    }
    (rx, child)
}

fn messages(rx: &mpsc::Receiver<String>, child: &mut std::process::Child) -> Vec<String> {
    let _ = child.wait();
    rx.try_iter()
        .filter(|l| l.starts_with("devices/"))
        .collect()
}

#[test]
fn device_certificate_gets_in_and_everyone_else_is_refused() {
    let root = TestDir::new();
    let pki = TestPki::new(&root, KeyAlgorithm::P256, &["device-a"]);
    let broker = TestBroker::start(&root, &pki);
    let port = broker.port;

    let ok = device_pub(
        &pki,
        port,
        "device-a",
        "devices/device-a/telemetry",
        "hello",
    );
    assert_eq!(ok.code, 0, "device certificate refused: {}", ok.stderr);

    // TLS without a client certificate (anonymous).
    let anon = publish(
        port,
        Some((&pki.ca_cert(), None)),
        "devices/device-a/telemetry",
        "x",
    );
    assert_ne!(anon.code, 0, "anonymous TLS client accepted");
    // Anonymous with a claimed username, no certificate.
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "devices/device-a/telemetry",
    ])
    .args(["-m", "x", "-u", "device-a", "-P", "guess", "--cafile"])
    .arg(pki.ca_cert());
    assert_ne!(
        run(&mut cmd, T).code,
        0,
        "username/password accepted without certificate"
    );
    // Plaintext (no --cafile): the listener speaks TLS only.
    let plain = publish(port, None, "devices/device-a/telemetry", "x");
    assert_ne!(plain.code, 0, "plaintext client accepted");

    // A certificate from another CA, with the same device id.
    let other_root = TestDir::new();
    let other = TestPki::new(&other_root, KeyAlgorithm::P256, &["device-a"]);
    let (cert, key) = other.client("device-a");
    let foreign = publish(
        port,
        Some((&pki.ca_cert(), Some((&cert, &key)))),
        "devices/device-a/telemetry",
        "x",
    );
    assert_ne!(foreign.code, 0, "certificate from another CA accepted");
    let log = broker.process.log_text();
    assert!(
        log.contains("certificate verify failed")
            || log.contains("peer did not return a certificate"),
        "{log}"
    );
}

#[test]
fn acl_keeps_each_device_in_its_own_topics() {
    let root = TestDir::new();
    let pki = TestPki::new(&root, KeyAlgorithm::P256, &["device-a", "device-b"]);
    let broker = TestBroker::start(&root, &pki);
    let (rx, mut sub) = subscribe(&pki, broker.port, "devices/+/telemetry", 1);

    // device-a forging device-b's topic: Mosquitto drops it (QoS 1 PUBACK, no delivery).
    let forged = device_pub(
        &pki,
        broker.port,
        "device-a",
        "devices/device-b/telemetry",
        "forged",
    );
    assert_eq!(forged.code, 0, "{}", forged.stderr);
    // device-a on its own topic: delivered.
    let legit = device_pub(
        &pki,
        broker.port,
        "device-a",
        "devices/device-a/telemetry",
        "legit",
    );
    assert_eq!(legit.code, 0, "{}", legit.stderr);

    let got = messages(&rx, &mut sub);
    assert_eq!(got, vec!["devices/device-a/telemetry legit".to_string()]);
    // A device cannot read other devices' telemetry either.
    let (cert, key) = pki.client("device-b");
    let mut spy = Command::new("mosquitto_sub");
    spy.args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port.to_string(),
        "-t",
        "#",
        "-C",
        "1",
        "-W",
        "2",
    ])
    .arg("--cafile")
    .arg(pki.ca_cert())
    .arg("--cert")
    .arg(&cert)
    .arg("--key")
    .arg(&key);
    let spy_child = std::thread::spawn(move || run(&mut spy, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(500));
    device_pub(
        &pki,
        broker.port,
        "device-a",
        "devices/device-a/telemetry",
        "secret",
    );
    let spied = spy_child.join().unwrap();
    assert!(
        !spied.stdout.contains("secret"),
        "device-b read device-a's telemetry: {}",
        spied.stdout
    );
}

#[test]
fn revoked_device_is_refused_after_reload_and_others_still_connect() {
    let root = TestDir::new();
    let mut pki = TestPki::new(&root, KeyAlgorithm::P256, &["device-a", "device-b"]);
    let broker = TestBroker::start(&root, &pki);
    assert_eq!(
        device_pub(
            &pki,
            broker.port,
            "device-a",
            "devices/device-a/telemetry",
            "1"
        )
        .code,
        0
    );

    pki.ca.revoke("device-a", 30).unwrap();
    let pid = process::reload(&broker.dir).unwrap();
    assert_eq!(Some(pid), broker.process.pid());
    // SIGHUP is asynchronous: give Mosquitto a moment to re-read the CRL.
    let mut refused = false;
    for _ in 0..50 {
        if device_pub(
            &pki,
            broker.port,
            "device-a",
            "devices/device-a/telemetry",
            "2",
        )
        .code
            != 0
        {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused, "revoked device-a still connects");
    let b = device_pub(
        &pki,
        broker.port,
        "device-b",
        "devices/device-b/telemetry",
        "3",
    );
    assert_eq!(
        b.code, 0,
        "device-b refused after revoking device-a: {}",
        b.stderr
    );
}

fn end_to_end(key: KeyAlgorithm) {
    let root = TestDir::new();
    let pki = TestPki::new(&root, key, &["dev-1"]);
    let broker = TestBroker::start(&root, &pki);
    let (rx, mut sub) = subscribe(&pki, broker.port, "devices/+/telemetry", 1);
    let out = device_pub(
        &pki,
        broker.port,
        "dev-1",
        "devices/dev-1/telemetry",
        key.name(),
    );
    assert_eq!(out.code, 0, "{key}: {}", out.stderr);
    assert_eq!(
        messages(&rx, &mut sub),
        vec![format!("devices/dev-1/telemetry {key}")]
    );
}

#[test]
fn p256_end_to_end() {
    end_to_end(KeyAlgorithm::P256);
}

#[test]
fn ed25519_end_to_end() {
    end_to_end(KeyAlgorithm::Ed25519);
}

#[test]
fn rsa2048_end_to_end() {
    end_to_end(KeyAlgorithm::Rsa2048);
}

#[test]
fn generated_config_audits_clean() {
    let root = TestDir::new();
    let pki = TestPki::new(&root, KeyAlgorithm::P256, &[]);
    let mut opts = iotsec_broker::render::HardenedOptions::new(&pki.dir, root.join("broker"));
    opts.port = iotsec_testkit::free_port();
    let r = iotsec_broker::render::write_hardened(&opts).unwrap();
    let findings = audit::audit(&Config::load(&r.conf).unwrap());
    assert!(
        findings.iter().all(|f| f.severity < Severity::Medium),
        "{findings:#?}"
    );
}
