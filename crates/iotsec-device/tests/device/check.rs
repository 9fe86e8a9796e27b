//! `device check`: success with the server's fingerprint, and each way of failing.

use std::time::Duration;

use iotsec_device::config::ConfigWarning;
use iotsec_device::link::Failure;
use iotsec_device::{CheckOutcome, CheckReport, check};
use iotsec_pki::{Authority, CaOptions, KeyAlgorithm};
use iotsec_testkit::{TestDir, TestPki};
use iotsec_tls::{CertFingerprint, PolicyKind, PolicyWarning, Rejection, SpkiPin};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::harness::Env;

fn fingerprint(pem: &std::path::Path) -> (CertFingerprint, SpkiPin) {
    let der = CertificateDer::from_pem_file(pem).unwrap();
    (
        CertFingerprint::of_certificate(&der),
        SpkiPin::of_certificate(&der).unwrap(),
    )
}

async fn run(config: &iotsec_device::Config) -> CheckReport {
    check(config, Duration::from_secs(10)).await.unwrap()
}

#[tokio::test]
async fn check_outcomes() {
    let env = Env::new(&["dev-c"]);
    let (server_fp, server_spki) = fingerprint(&env.server_cert());
    let (ca_fp, _) = fingerprint(&env.pki.ca_cert());

    // ca: connects, reports the server certificate and the CONNACK.
    let report = run(&env.device("dev-c", &env.ca_lines())).await;
    assert_eq!(
        report.outcome,
        CheckOutcome::Connected {
            session_present: false
        }
    );
    assert_eq!(report.policy, PolicyKind::Ca);
    assert_eq!(report.server.unwrap().fingerprint, server_fp);
    assert!(report.warnings.is_empty());

    // pin, right fingerprint (openssl colon form): connects. The CA file may stay in the
    // bundle (as `iotsec device add` writes it); the pin policy does not use it.
    let report = run(&env.device(
        "dev-c",
        &format!(
            "policy = \"pin\"\nca = \"{}\"\npin = \"{server_fp}\"",
            env.pki.ca_cert().display()
        ),
    ))
    .await;
    assert!(report.is_ok(), "{:?}", report.outcome);

    // spki with a single pin: connects, warns that there is no backup pin.
    let report = run(&env.device(
        "dev-c",
        &format!("policy = \"spki\"\npins = [\"{server_spki}\"]"),
    ))
    .await;
    assert!(report.is_ok(), "{:?}", report.outcome);
    assert_eq!(
        report.warnings,
        [ConfigWarning::Policy(PolicyWarning::SinglePin)]
    );

    // pin mismatch: both fingerprints in the verdict and its message.
    let report = run(&env.device(
        "dev-c",
        &format!("policy = \"pin\"\npin = \"{}\"", ca_fp.to_hex()),
    ))
    .await;
    let CheckOutcome::Failed(failure) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert_eq!(
        *failure,
        Failure::Tls(Rejection::PinMismatch {
            expected: ca_fp,
            seen: server_fp
        })
    );
    let text = failure.to_string();
    assert!(
        text.contains(&ca_fp.to_string()) && text.contains(&server_fp.to_string()),
        "{text}"
    );

    // A CA that did not issue the broker's certificate.
    let other_root = TestDir::new();
    Authority::init(
        &other_root.join("pki"),
        &CaOptions {
            name: "some other CA".into(),
            ..CaOptions::default()
        },
    )
    .unwrap();
    let other_ca = other_root.join("pki").join("ca.crt");
    let report = run(&env.device(
        "dev-c",
        &format!("policy = \"ca\"\nca = \"{}\"", other_ca.display()),
    ))
    .await;
    assert_eq!(
        report.outcome,
        CheckOutcome::Failed(Failure::Tls(Rejection::UnknownCa))
    );
    // An impostor CA with our CA's name: found as the issuer, but its signature fails.
    let impostor_root = TestDir::new();
    let impostor = TestPki::new(&impostor_root, KeyAlgorithm::P256, &[]);
    let report = run(&env.device(
        "dev-c",
        &format!("policy = \"ca\"\nca = \"{}\"", impostor.ca_cert().display()),
    ))
    .await;
    assert_eq!(
        report.outcome,
        CheckOutcome::Failed(Failure::Tls(Rejection::BadSignature))
    );

    // Broker unreachable: a port this test bound and closed again.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = env.device_at("dev-c", &env.ca_lines(), &format!("127.0.0.1:{port}"));
    let report = run(&config).await;
    let CheckOutcome::Failed(Failure::Network { reason }) = &report.outcome else {
        panic!("{:?}", report.outcome)
    };
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert!(report.server.is_none());
}
