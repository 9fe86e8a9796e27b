//! Real TLS handshakes, in process, over 127.0.0.1: every trust policy
//! accepts the right server and refuses the wrong one with the exact reason.
#![allow(clippy::unwrap_used, missing_docs)]

mod net;
mod pki;

use std::io;
use std::process::Command;

use iotsec_tls::{
    CaTrust, CertFingerprint, ClientAuth, ClientTls, Error, Expiry, Identity, PinSet,
    PolicyWarning, Rejection, SpkiPin, TrustPolicy,
};
use net::{handshake, impostor_server, server};
use pki::{Ca, Leaf, key, key_der};
use rcgen::{KeyPair, date_time_ymd};
use rustls_pki_types::CertificateDer;

fn client(policy: &TrustPolicy) -> ClientTls {
    ClientTls::new(policy, None).unwrap()
}

fn ca_policy(ca: &Ca) -> TrustPolicy {
    TrustPolicy::Ca(CaTrust::from_pem(ca.pem().as_bytes()).unwrap())
}

fn pin_policy(cert: &CertificateDer<'_>, expiry: Expiry) -> TrustPolicy {
    TrustPolicy::Pin {
        fingerprint: CertFingerprint::of_certificate(cert),
        expiry,
    }
}

fn spki(key: &KeyPair) -> SpkiPin {
    SpkiPin::of_spki(&rcgen::PublicKeyData::subject_public_key_info(key))
}

/// The rejection found in the client's error.
fn rejection(result: io::Result<()>) -> Rejection {
    let error = result.expect_err("the handshake should have been refused");
    Rejection::find(&error).unwrap_or_else(|| panic!("no TLS rejection in {error}"))
}

fn assert_logged(tls: &ClientTls, expected: &Rejection) {
    assert_eq!(tls.last_rejection().as_ref(), Some(expected));
}

#[tokio::test]
async fn ca_accepts_its_server_even_after_reissue_with_a_new_key() {
    let ca = Ca::root("iotsec test CA");
    let (k1, k2) = (key(), key());
    let first = ca.issue(&Leaf::server(1), &k1);
    let reissued = ca.issue(&Leaf::server(2), &k2);
    let tls = client(&ca_policy(&ca));
    assert!(tls.warnings().is_empty());

    let (c, s) = handshake(&tls, server(vec![first.clone()], key_der(&k1)), "localhost").await;
    c.unwrap();
    assert_eq!(s.unwrap(), None, "no client certificate was requested");
    assert_eq!(
        tls.last_peer().unwrap().fingerprint,
        CertFingerprint::of_certificate(&first)
    );
    assert_eq!(tls.last_rejection(), None);

    let (c, _) = handshake(
        &tls,
        server(vec![reissued.clone()], key_der(&k2)),
        "127.0.0.1",
    )
    .await;
    c.unwrap();
    assert_eq!(tls.last_peer().unwrap().spki, Some(spki(&k2)));
}

#[tokio::test]
async fn pin_refuses_a_reissued_certificate_and_reports_both_fingerprints() {
    let ca = Ca::root("iotsec test CA");
    let (k1, k2) = (key(), key());
    let pinned = ca.issue(&Leaf::server(1), &k1);
    let reissued = ca.issue(&Leaf::server(2), &k2);
    // Pinned in openssl's colon form, as `iotsec device add` writes it.
    let colon = CertFingerprint::of_certificate(&pinned).to_string();
    let tls = client(&TrustPolicy::Pin {
        fingerprint: colon.parse().unwrap(),
        expiry: Expiry::Enforce,
    });

    let (c, _) = handshake(
        &tls,
        server(vec![pinned.clone()], key_der(&k1)),
        "localhost",
    )
    .await;
    c.unwrap();

    let (c, s) = handshake(
        &tls,
        server(vec![reissued.clone()], key_der(&k2)),
        "localhost",
    )
    .await;
    let expected = Rejection::PinMismatch {
        expected: CertFingerprint::of_certificate(&pinned),
        seen: CertFingerprint::of_certificate(&reissued),
    };
    assert_eq!(rejection(c), expected);
    assert_logged(&tls, &expected);
    assert!(s.is_err(), "the server saw the client abort");
    let message = expected.to_string();
    assert!(message.contains(&colon), "{message}");
    assert!(
        message.contains(&CertFingerprint::of_certificate(&reissued).to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn spki_backup_pin_keeps_devices_connected_through_a_key_switch() {
    let ca = Ca::root("iotsec test CA");
    let (current, backup, stranger) = (key(), key(), key());
    let pins = PinSet::new([spki(&current), spki(&backup)]).unwrap();
    let tls = client(&TrustPolicy::Spki {
        pins: pins.clone(),
        expiry: Expiry::Enforce,
    });
    assert!(tls.warnings().is_empty());

    let before = ca.issue(&Leaf::server(1), &current);
    let after = ca.issue(&Leaf::server(2), &backup);
    let (c, _) = handshake(&tls, server(vec![before], key_der(&current)), "localhost").await;
    c.unwrap();
    let (c, _) = handshake(&tls, server(vec![after], key_der(&backup)), "localhost").await;
    c.unwrap();

    let other = ca.issue(&Leaf::server(3), &stranger);
    let (c, _) = handshake(&tls, server(vec![other], key_der(&stranger)), "localhost").await;
    let expected = Rejection::SpkiMismatch {
        expected: pins.pins().to_vec(),
        seen: vec![spki(&stranger)],
    };
    assert_eq!(rejection(c), expected);
    assert_logged(&tls, &expected);

    let single = client(&TrustPolicy::Spki {
        pins: PinSet::new([spki(&current)]).unwrap(),
        expiry: Expiry::Enforce,
    });
    assert_eq!(single.warnings(), [PolicyWarning::SinglePin]);
}

#[tokio::test]
async fn ca_spki_matches_pins_only_against_the_validated_chain() {
    let root = Ca::root("iotsec root");
    let intermediate = root.intermediate("iotsec issuing CA");
    let unrelated = Ca::root("some other CA");
    let leaf_key = key();
    let leaf = intermediate.issue(&Leaf::server(7), &leaf_key);
    // The server also sends a certificate that is not on the path.
    let chain = vec![leaf, intermediate.der(), unrelated.der()];
    let trust = CaTrust::from_pem(root.pem().as_bytes()).unwrap();
    let policy = |pin: SpkiPin| TrustPolicy::CaSpki {
        ca: trust.clone(),
        pins: PinSet::new([pin]).unwrap(),
    };
    let pin_of = |der: CertificateDer<'static>| SpkiPin::of_certificate(&der).unwrap();

    for (what, pin) in [
        ("leaf key", spki(&leaf_key)),
        ("intermediate", pin_of(intermediate.der())),
        ("root (trust anchor)", pin_of(root.der())),
    ] {
        let tls = client(&policy(pin));
        assert_eq!(tls.warnings(), [PolicyWarning::SinglePin]);
        let (c, _) = handshake(&tls, server(chain.clone(), key_der(&leaf_key)), "localhost").await;
        c.unwrap_or_else(|e| panic!("pin on the {what} should be accepted: {e}"));
    }

    let off_path = pin_of(unrelated.der());
    let tls = client(&policy(off_path));
    let (c, _) = handshake(&tls, server(chain.clone(), key_der(&leaf_key)), "localhost").await;
    match rejection(c) {
        Rejection::SpkiMismatch { expected, seen } => {
            assert_eq!(expected, [off_path]);
            assert_eq!(
                seen,
                [
                    spki(&leaf_key),
                    pin_of(intermediate.der()),
                    pin_of(root.der())
                ],
                "seen = the validated path, leaf to anchor, without the extra certificate"
            );
        }
        other => panic!("expected an SPKI mismatch, got {other}"),
    }

    // Chain validation comes first: pinning the intermediate does not make a
    // server trusted when its chain does not validate (wrong host name here).
    let tls = client(&policy(pin_of(intermediate.der())));
    let (c, _) = handshake(&tls, server(chain, key_der(&leaf_key)), "other.example").await;
    assert!(matches!(rejection(c), Rejection::NameMismatch { .. }));
}

#[tokio::test]
async fn a_self_signed_impostor_with_the_same_subject_is_refused_by_every_policy() {
    let ca = Ca::root("iotsec test CA");
    let real_key = key();
    let real = ca.issue(&Leaf::server(1), &real_key);
    let impostor_key = key();
    let impostor = pki::self_signed(&Leaf::server(1), &impostor_key);
    let trust = CaTrust::from_pem(ca.pem().as_bytes()).unwrap();
    let pins = PinSet::new([spki(&real_key), SpkiPin::of_certificate(&ca.der()).unwrap()]).unwrap();

    let policies = [
        (ca_policy(&ca), Rejection::UnknownCa),
        (
            pin_policy(&real, Expiry::Enforce),
            Rejection::PinMismatch {
                expected: CertFingerprint::of_certificate(&real),
                seen: CertFingerprint::of_certificate(&impostor),
            },
        ),
        (
            TrustPolicy::Spki {
                pins: pins.clone(),
                expiry: Expiry::Enforce,
            },
            Rejection::SpkiMismatch {
                expected: pins.pins().to_vec(),
                seen: vec![spki(&impostor_key)],
            },
        ),
        (
            TrustPolicy::CaSpki {
                ca: trust,
                pins: pins.clone(),
            },
            Rejection::UnknownCa,
        ),
    ];
    for (policy, expected) in policies {
        let tls = client(&policy);
        let config = server(vec![impostor.clone()], key_der(&impostor_key));
        let (c, _) = handshake(&tls, config, "localhost").await;
        assert_eq!(rejection(c), expected, "policy {}", policy.kind());
        assert_logged(&tls, &expected);
        // ... while the real server passes the same policy.
        let config = server(vec![real.clone()], key_der(&real_key));
        let (c, _) = handshake(&tls, config, "localhost").await;
        c.unwrap_or_else(|e| panic!("policy {} refused the real server: {e}", policy.kind()));
    }
}

#[tokio::test]
async fn ca_reports_name_mismatch_expiry_and_revocation() {
    let ca = Ca::root("iotsec test CA");
    let k = key();
    let good = ca.issue(&Leaf::server(10), &k);
    let tls = client(&ca_policy(&ca));

    let (c, _) = handshake(
        &tls,
        server(vec![good.clone()], key_der(&k)),
        "other.example",
    )
    .await;
    match rejection(c) {
        Rejection::NameMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, "other.example");
            assert!(
                presented.iter().any(|n| n.contains("localhost")),
                "{presented:?}"
            );
        }
        other => panic!("expected a name mismatch, got {other}"),
    }

    let expired = ca.issue(
        &Leaf {
            not_before: date_time_ymd(2000, 1, 1),
            not_after: date_time_ymd(2001, 1, 1),
            ..Leaf::server(11)
        },
        &k,
    );
    let (c, _) = handshake(&tls, server(vec![expired], key_der(&k)), "localhost").await;
    let found = rejection(c);
    assert!(
        matches!(
            found,
            Rejection::Expired {
                not_after: 978_307_200,
                ..
            }
        ),
        "{found:?}"
    );

    let crl = ca.crl_pem(&[10]);
    let revoking = TrustPolicy::Ca(
        CaTrust::from_pem(ca.pem().as_bytes())
            .unwrap()
            .with_crls_pem(crl.as_bytes())
            .unwrap(),
    );
    let tls = client(&revoking);
    let (c, _) = handshake(&tls, server(vec![good], key_der(&k)), "localhost").await;
    assert_eq!(rejection(c), Rejection::Revoked);
    assert_logged(&tls, &Rejection::Revoked);
    let other = ca.issue(&Leaf::server(12), &k);
    let (c, _) = handshake(&tls, server(vec![other], key_der(&k)), "localhost").await;
    c.unwrap();
}

#[tokio::test]
async fn pin_modes_check_expiry_unless_told_not_to() {
    let ca = Ca::root("iotsec test CA");
    let k = key();
    let expired = ca.issue(
        &Leaf {
            not_before: date_time_ymd(2000, 1, 1),
            not_after: date_time_ymd(2001, 1, 1),
            ..Leaf::server(1)
        },
        &k,
    );
    let future = ca.issue(
        &Leaf {
            not_before: date_time_ymd(2999, 1, 1),
            not_after: date_time_ymd(3000, 1, 1),
            ..Leaf::server(2)
        },
        &k,
    );
    let spki_policy = |expiry| TrustPolicy::Spki {
        pins: PinSet::new([spki(&k)]).unwrap(),
        expiry,
    };

    for policy in [
        pin_policy(&expired, Expiry::Enforce),
        spki_policy(Expiry::Enforce),
    ] {
        let tls = client(&policy);
        let (c, _) = handshake(&tls, server(vec![expired.clone()], key_der(&k)), "x").await;
        let found = rejection(c);
        assert!(matches!(found, Rejection::Expired { .. }), "{found:?}");
    }
    let tls = client(&pin_policy(&future, Expiry::Enforce));
    let (c, _) = handshake(&tls, server(vec![future.clone()], key_der(&k)), "x").await;
    let found = rejection(c);
    assert!(
        matches!(
            found,
            Rejection::NotYetValid {
                not_before: 32_472_144_000,
                ..
            }
        ),
        "{found:?}"
    );

    for (policy, cert) in [
        (pin_policy(&expired, Expiry::Ignore), &expired),
        (pin_policy(&future, Expiry::Ignore), &future),
        (spki_policy(Expiry::Ignore), &expired),
    ] {
        let tls = client(&policy);
        assert_eq!(tls.warnings().last(), Some(&PolicyWarning::ExpiryIgnored));
        // Pin modes skip the host name check: any name is fine.
        let (c, _) = handshake(&tls, server(vec![cert.clone()], key_der(&k)), "anything").await;
        c.unwrap();
    }
}

#[tokio::test]
async fn a_server_without_the_pinned_certificates_key_fails_the_signature_check() {
    let ca = Ca::root("iotsec test CA");
    let owner = key();
    let pinned = ca.issue(&Leaf::server(1), &owner);
    let thief = key();

    // rustls itself refuses to pair a certificate with someone else's key...
    assert!(matches!(
        Identity::from_der(vec![pinned.clone()], key_der(&thief)),
        Err(Error::KeyMismatch)
    ));

    // ... so the impostor server is built with a raw certificate resolver.
    let policies = [
        pin_policy(&pinned, Expiry::Enforce),
        TrustPolicy::Spki {
            pins: PinSet::new([spki(&owner)]).unwrap(),
            expiry: Expiry::Enforce,
        },
        ca_policy(&ca),
    ];
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for policy in &policies {
            let tls = client(policy);
            let config = impostor_server(vec![pinned.clone()], key_der(&thief), &[version]);
            let (c, _) = handshake(&tls, config, "localhost").await;
            let found = rejection(c);
            assert_eq!(
                found,
                Rejection::BadHandshakeSignature,
                "{:?} with policy {}",
                version.version,
                policy.kind()
            );
            assert_logged(&tls, &Rejection::BadHandshakeSignature);
            // The certificate itself passed: the log saw the pinned leaf.
            assert_eq!(
                tls.last_peer().unwrap().fingerprint,
                CertFingerprint::of_certificate(&pinned)
            );
            // The same server with the right key is accepted (the check can pass).
            let honest = impostor_server(vec![pinned.clone()], key_der(&owner), &[version]);
            let (c, _) = handshake(&tls, honest, "localhost").await;
            c.unwrap();
        }
    }
}

#[tokio::test]
async fn mutual_tls_accepts_enrolled_devices_and_refuses_the_rest() {
    let ca = Ca::root("iotsec device CA");
    let other_ca = Ca::root("not our CA");
    let server_key = key();
    let server_cert = ca.issue(&Leaf::server(1), &server_key);
    let server_identity = Identity::from_der(vec![server_cert], key_der(&server_key)).unwrap();
    let client_ca = CaTrust::from_pem(ca.pem().as_bytes())
        .unwrap()
        .with_crls_pem(ca.crl_pem(&[66]).as_bytes())
        .unwrap();
    let mtls = || {
        iotsec_tls::server_config(&server_identity, &ClientAuth::Required(client_ca.clone()))
            .unwrap()
    };
    let policy = ca_policy(&ca);
    let device = |issuer: &Ca, serial| {
        let k = key();
        let cert = issuer.issue(&Leaf::device("dev-0001", serial), &k);
        Identity::from_der(vec![cert], key_der(&k)).unwrap()
    };

    let enrolled = device(&ca, 65);
    let tls = ClientTls::new(&policy, Some(&enrolled)).unwrap();
    let (c, s) = handshake(&tls, mtls(), "localhost").await;
    c.unwrap();
    let seen = s.unwrap().expect("the server saw a client certificate");
    assert_eq!(
        CertFingerprint::of_certificate(&seen[0]),
        enrolled.fingerprint()
    );

    // A different CA that copies our CA's name: found by name, then its
    // signature fails.
    let same_name_ca = Ca::root("iotsec device CA");
    let refused = [
        (None, "certificate_required"),
        (Some(device(&other_ca, 65)), "unknown_ca"),
        (Some(device(&same_name_ca, 65)), "decrypt_error"),
        (Some(device(&ca, 66)), "certificate_revoked"),
    ];
    for (identity, alert) in refused {
        let tls = ClientTls::new(&policy, identity.as_ref()).unwrap();
        let (c, s) = handshake(&tls, mtls(), "localhost").await;
        assert_eq!(
            rejection(c),
            Rejection::CertificateRefused {
                alert: alert.into()
            }
        );
        assert!(s.is_err(), "the server refused the client ({alert})");
        // Our side had nothing to refuse: the broker's certificate was fine.
        assert_eq!(tls.last_rejection(), None);
    }
}

/// Runs openssl with `stdin`, failing clearly if it is not installed.
fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl is needed for interop tests: apt-get install openssl");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    out.stdout
}

#[test]
fn pins_agree_with_openssl() {
    let ca = Ca::root("iotsec test CA");
    let k = key();
    let cert = ca.issue(&Leaf::server(1), &k);
    let pem = pki::pem(&cert);

    let line = openssl(
        &["x509", "-noout", "-fingerprint", "-sha256"],
        pem.as_bytes(),
    );
    let line = String::from_utf8(line).unwrap();
    let fingerprint = CertFingerprint::of_certificate(&cert);
    assert_eq!(line.parse::<CertFingerprint>().unwrap(), fingerprint);
    let colon = line.trim().split_once('=').unwrap().1;
    assert_eq!(colon, fingerprint.to_string());

    let public = openssl(&["x509", "-noout", "-pubkey"], pem.as_bytes());
    let spki_der = openssl(&["pkey", "-pubin", "-outform", "der"], &public);
    let digest = openssl(&["dgst", "-sha256", "-binary"], &spki_der);
    let b64 = openssl(&["base64"], &digest);
    let text = format!("sha256/{}", String::from_utf8(b64).unwrap().trim());
    assert_eq!(text.parse::<SpkiPin>().unwrap(), spki(&k));
    assert_eq!(SpkiPin::of_certificate(&cert).unwrap().to_string(), text);
}

#[tokio::test]
async fn identities_load_from_pem_files_for_every_key_type() {
    let ca = Ca::root("iotsec device CA");
    let server_key = key();
    let server_cert = ca.issue(&Leaf::server(1), &server_key);
    let server_identity = Identity::from_der(vec![server_cert], key_der(&server_key)).unwrap();
    let client_ca = CaTrust::from_pem(ca.pem().as_bytes()).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let p256 = key();
    let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap();
    // openssl -traditional turns PKCS#8 into SEC1 ("EC PRIVATE KEY") and
    // PKCS#1 ("RSA PRIVATE KEY").
    let traditional =
        |k: &KeyPair| openssl(&["pkey", "-traditional"], k.serialize_pem().as_bytes());
    let cases: [(&str, &KeyPair, Vec<u8>); 5] = [
        ("p256-pkcs8", &p256, p256.serialize_pem().into_bytes()),
        ("p256-sec1", &p256, traditional(&p256)),
        (
            "ed25519-pkcs8",
            &ed25519,
            ed25519.serialize_pem().into_bytes(),
        ),
        ("rsa-pkcs8", &rsa, rsa.serialize_pem().into_bytes()),
        ("rsa-pkcs1", &rsa, traditional(&rsa)),
    ];
    for (serial, (name, k, key_pem)) in (100u64..).zip(cases) {
        let header = String::from_utf8_lossy(&key_pem)
            .lines()
            .next()
            .unwrap()
            .to_owned();
        let cert = ca.issue(&Leaf::device(name, serial), k);
        let cert_path = dir.path().join(format!("{name}.pem"));
        let key_path = dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, pki::pem(&cert)).unwrap();
        std::fs::write(&key_path, &key_pem).unwrap();
        let identity = Identity::from_pem_files(&cert_path, &key_path)
            .unwrap_or_else(|e| panic!("{name} ({header}): {e}"));
        assert!(format!("{identity:?}").contains("<redacted>"));

        let tls = ClientTls::new(&ca_policy(&ca), Some(&identity)).unwrap();
        let config =
            iotsec_tls::server_config(&server_identity, &ClientAuth::Required(client_ca.clone()))
                .unwrap();
        let (c, s) = handshake(&tls, config, "localhost").await;
        c.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.unwrap().unwrap()[0], cert, "{name}");
    }

    // A key that is not the certificate's: refused, naming the key file.
    let cert = ca.issue(&Leaf::device("dev", 1), &p256);
    let cert_path = dir.path().join("mismatch.pem");
    let key_path = dir.path().join("mismatch.key");
    std::fs::write(&cert_path, pki::pem(&cert)).unwrap();
    std::fs::write(&key_path, key().serialize_pem()).unwrap();
    match Identity::from_pem_files(&cert_path, &key_path) {
        Err(Error::InFile { path, source }) => {
            assert_eq!(path, key_path);
            assert!(matches!(*source, Error::KeyMismatch));
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }
    std::fs::write(&key_path, "no key in here").unwrap();
    assert!(Identity::from_pem_files(&cert_path, &key_path).is_err());
    assert!(matches!(
        Identity::from_pem_files(dir.path().join("absent.pem"), &key_path),
        Err(Error::Read { .. })
    ));
}

#[test]
fn install_crypto_provider_is_idempotent() {
    iotsec_tls::install_crypto_provider();
    iotsec_tls::install_crypto_provider();
    let installed = rustls::crypto::CryptoProvider::get_default().unwrap();
    assert_eq!(
        installed.cipher_suites.len(),
        iotsec_tls::provider().cipher_suites.len()
    );
}
