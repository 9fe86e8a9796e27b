//! Acceptance: what `iotsec up` creates (PKI, hardened broker config, the broker running with
//! it) has no high or critical finding.

use std::time::Duration;

use iotsec_audit::check::active::ActiveOptions;
use iotsec_audit::{Inputs, OwaspIot, Severity, Status};
use iotsec_pki::KeyAlgorithm;
use iotsec_scan::ports::PortSet;
use iotsec_testkit::{TestBroker, TestDir, TestPki};

use crate::common;

#[test]
fn iotsec_deployment_has_no_high_or_critical_finding() {
    let root = TestDir::new();
    let mut pki = TestPki::new(
        &root,
        KeyAlgorithm::default(),
        &["device-1", "device-2", "device-3"],
    );
    pki.ca.write_crl(30).unwrap();
    let broker = TestBroker::start(&root, &pki);

    // A device agent configuration as `iotsec device add` writes it, and a gateway's OTA state
    // with a vendor key installed at the factory.
    let (cert, key) = pki.client("device-1");
    let device_toml = root.join("device.toml");
    std::fs::write(
        &device_toml,
        format!(
            "id = \"device-1\"\nbroker = \"localhost:{}\"\n[tls]\npolicy = \"ca\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n[msg]\nkey_file = \"msg.key\"\n",
            broker.port,
            pki.ca_cert().display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let slots = root.join("ota");
    std::fs::create_dir_all(&slots).unwrap();
    let vendor =
        iotsec_ota::SecretKey::from_seed(iotsec_ota::Algorithm::Ed25519, &[9; 32]).unwrap();
    let keys = iotsec_ota::KeySet::factory([vendor.public_key()]).unwrap();
    std::fs::write(slots.join("keyset"), keys.encode()).unwrap();

    let report = common::audit(Inputs {
        mosquitto_conf: Some(broker.dir.join("mosquitto.conf")),
        pki: Some(pki.dir.clone()),
        host: Some("127.0.0.1".into()),
        ports: Some(PortSet::from_ports([broker.port])),
        active: Some(ActiveOptions {
            listen: Duration::from_millis(500),
            ..ActiveOptions::default()
        }),
        device_configs: vec![device_toml, slots],
        ..Inputs::default()
    });
    eprintln!("{}", iotsec_audit::render::text(&report));
    let bad: Vec<String> = report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::High)
        .map(|f| format!("{} {} at {}: {}", f.severity, f.id, f.location, f.evidence))
        .collect();
    assert!(bad.is_empty(), "high or critical findings: {bad:#?}");
    // It was really assessed, not skipped.
    let status = |c: OwaspIot| {
        report
            .categories
            .iter()
            .find(|x| x.category == c)
            .unwrap()
            .status
    };
    for c in [
        OwaspIot::I1,
        OwaspIot::I7,
        OwaspIot::I8,
        OwaspIot::I9,
        OwaspIot::I4,
        OwaspIot::I2,
    ] {
        assert_ne!(status(c), Status::NotAssessed, "{c}");
    }
    assert_eq!(status(OwaspIot::I9), Status::Pass);
    assert_eq!(status(OwaspIot::I7), Status::Pass);
    assert!(
        !report.findings.iter().any(|f| f.id.starts_with("BRK-")),
        "{:?}",
        report.findings
    );
}
