//! Acceptance: the tutorial deployment fails I1, I2, I4, I7 and I9, with evidence pointing at a
//! file and line or at the live broker's port.

use std::time::Duration;

use iotsec_audit::check::active::ActiveOptions;
use iotsec_audit::{Inputs, Location, OwaspIot, Status};
use iotsec_scan::ports::PortSet;
use iotsec_testkit::{TestDir, run};

use crate::common;

#[test]
fn tutorial_deployment_fails_i1_i2_i4_i7_i9_with_evidence() {
    let root = TestDir::new();
    let (conf, device) = common::tutorial_files(root.path());
    let broker = common::tutorial_broker(&root);
    let port = broker.addr().port();
    // A retained configuration message with a Wi-Fi password, as tutorials tend to publish.
    let out = run(
        std::process::Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-r", "-q", "1"])
            .args([
                "-t",
                "config/esp32-01",
                "-m",
                r#"{"wifi_password": "hunter2hunter2"}"#,
            ]),
        Duration::from_secs(10),
    );
    assert_eq!(out.code, 0, "mosquitto_pub: {}", out.stderr);

    let report = common::audit(Inputs {
        mosquitto_conf: Some(conf.clone()),
        device_configs: vec![device.clone()],
        host: Some("127.0.0.1".into()),
        ports: Some(PortSet::from_ports([port])),
        active: Some(ActiveOptions {
            listen: Duration::from_millis(1500),
            ..ActiveOptions::default()
        }),
        ..Inputs::default()
    });
    eprintln!("{}", iotsec_audit::render::text(&report));

    for c in [
        OwaspIot::I1,
        OwaspIot::I2,
        OwaspIot::I4,
        OwaspIot::I7,
        OwaspIot::I9,
    ] {
        let verdict = report.categories.iter().find(|x| x.category == c).unwrap();
        assert_eq!(verdict.status, Status::Fail, "{c} should fail");
    }
    let at_line = |id: &str, file: &std::path::Path, line: u64| {
        report
            .findings
            .iter()
            .any(|f| f.id == id && f.location == Location::line(file, line))
    };
    let at_port = |id: &str| {
        report
            .findings
            .iter()
            .any(|f| f.id == id && f.location == Location::tcp("127.0.0.1", port))
    };
    // I1: the hardcoded HMAC key, at its line, redacted.
    assert!(at_line("FW-HARDCODED-KEY", &device, 6));
    let key = report
        .findings
        .iter()
        .find(|f| f.id == "FW-HARDCODED-KEY")
        .unwrap();
    assert!(
        !key.evidence.contains("secret-key-here"),
        "{}",
        key.evidence
    );
    // I7: verification off in the client, plaintext listener in the config and on the wire.
    assert!(at_line("FW-TLS-VERIFY-OFF", &device, 16));
    assert!(at_line("BRK-PLAINTEXT", &conf, 2));
    assert!(at_port("SCAN-MQTT-PLAINTEXT"));
    // I9: anonymous access on every interface; I2: the live broker lets anyone in.
    assert!(at_line("BRK-ANON-EXPOSED", &conf, 3));
    assert!(at_port("SCAN-MQTT-ANON"));
    assert!(at_port("MQTT-ANON-SUBSCRIBE-ALL"));
    assert!(at_port("MQTT-ANON-SYS"));
    // I4: no update mechanism at all in the device program.
    let ota = report.findings.iter().find(|f| f.id == "OTA-NONE").unwrap();
    assert_eq!(ota.category, OwaspIot::I4);
    // The retained secret, redacted, and the broker version against the advisories.
    let leak = report
        .findings
        .iter()
        .find(|f| f.id == "MQTT-RETAINED-SECRET")
        .unwrap();
    assert!(leak.evidence.contains("config/esp32-01") && !leak.evidence.contains("hunter2hunter2"));
    let version = std::process::Command::new("mosquitto")
        .arg("-h")
        .output()
        .unwrap();
    let banner = String::from_utf8_lossy(&version.stdout).to_string();
    let v = iotsec_audit::check::active::parse_version(&banner)
        .expect("mosquitto -h prints its version");
    let vulnerable = !iotsec_audit::check::active::advisories(v).is_empty();
    assert_eq!(at_port("MQTT-VULNERABLE-VERSION"), vulnerable, "{banner}");
    assert!(
        report
            .categories
            .iter()
            .any(|c| c.category == OwaspIot::I5 && c.status != Status::NotAssessed)
    );
    // Categories without inputs say so.
    let i10 = report
        .categories
        .iter()
        .find(|c| c.category == OwaspIot::I10)
        .unwrap();
    assert_eq!(i10.status, Status::NotAssessed);
    assert!(i10.reason.as_deref().unwrap_or("").contains("sdkconfig"));
    drop(broker);
}

#[test]
fn default_credentials_are_found_and_rate_limited() {
    let root = TestDir::new();
    let mut broker = common::tutorial_broker(&root);
    let dir = root.join("live-broker");
    let port = broker.addr().port();
    // Switch the broker to a password file with a default account.
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "admin:password\n").unwrap();
    let out = run(
        std::process::Command::new("mosquitto_passwd")
            .args(["-U"])
            .arg(&passwd),
        Duration::from_secs(10),
    );
    assert_eq!(out.code, 0, "mosquitto_passwd: {}", out.stderr);
    std::fs::write(
        dir.join("mosquitto.conf"),
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwd.display()
        ),
    )
    .unwrap();
    let _ = std::fs::set_permissions(&passwd, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    broker.stop();
    drop(broker);
    let broker = iotsec_broker::process::BrokerProcess::spawn(
        &dir,
        iotsec_broker::process::Log::File(root.join("live-broker-2.log")),
        Duration::from_secs(10),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let report = common::audit(Inputs {
        host: Some("127.0.0.1".into()),
        ports: Some(PortSet::from_ports([port])),
        active: Some(ActiveOptions {
            listen: Duration::from_millis(500),
            credential_interval: Duration::from_millis(200),
            ..ActiveOptions::default()
        }),
        ..Inputs::default()
    });
    let hit = report
        .findings
        .iter()
        .find(|f| f.id == "MQTT-DEFAULT-CREDENTIALS")
        .unwrap();
    assert!(hit.evidence.contains("\"admin\""), "{}", hit.evidence);
    assert!(
        !hit.evidence.contains("password\""),
        "the password is not echoed: {}",
        hit.evidence
    );
    // ("admin","admin") refused, then ("admin","password") after one pause.
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.id == "MQTT-ANON-SUBSCRIBE-ALL")
    );
    drop(broker);
}
