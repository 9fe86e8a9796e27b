//! `iotsec pki`: openssl interoperability and bad input.

use std::os::unix::fs::PermissionsExt;

use iotsec_testkit::TestDir;

use crate::{iotsec, openssl, tree};

fn ok(out: &iotsec_testkit::Output) {
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
}

/// A bad-input failure: exit 2, exactly one line on stderr naming the problem.
fn refused(out: &iotsec_testkit::Output, needle: &str) {
    assert_eq!(
        out.code, 2,
        "expected exit 2; stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains(needle),
        "stderr {:?} lacks {needle:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

fn setup(dir: &TestDir, key: &str) {
    ok(&iotsec(dir.path(), &["pki", "init", "--key", key]));
    ok(&iotsec(
        dir.path(),
        &[
            "pki",
            "server",
            "--name",
            "localhost",
            "--san",
            "127.0.0.1",
            "--san",
            "broker.example",
        ],
    ));
    ok(&iotsec(dir.path(), &["pki", "device", "device-a"]));
    ok(&iotsec(
        dir.path(),
        &["pki", "device", "--count", "12", "--prefix", "bulk-"],
    ));
}

#[test]
fn openssl_verifies_every_certificate_and_agrees_on_fingerprints() {
    for key in ["p256", "p384", "ed25519", "rsa2048"] {
        let dir = TestDir::new();
        setup(&dir, key);
        let d = dir.path();
        let mut certs = vec![
            "pki/server.crt".to_string(),
            "pki/devices/device-a.crt".into(),
        ];
        certs.extend((1..=12).map(|i| format!("pki/devices/bulk-{i:05}.crt")));
        let mut args = vec!["verify", "-CAfile", "pki/ca.crt"];
        args.extend(certs.iter().map(String::as_str));
        let verified = openssl(d, &args);
        assert_eq!(
            verified.lines().filter(|l| l.ends_with(": OK")).count(),
            certs.len(),
            "{key}: {verified}"
        );
        // server certificate: purpose and SANs as openssl sees them
        openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "pki/ca.crt",
                "-purpose",
                "sslserver",
                "pki/server.crt",
            ],
        );
        openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "pki/ca.crt",
                "-purpose",
                "sslclient",
                "pki/devices/device-a.crt",
            ],
        );
        let text = openssl(d, &["x509", "-in", "pki/server.crt", "-noout", "-text"]);
        assert!(
            text.contains("DNS:localhost")
                && text.contains("IP Address:127.0.0.1")
                && text.contains("DNS:broker.example"),
            "{text}"
        );
        assert!(
            text.contains("CA:FALSE") && text.contains("TLS Web Server Authentication"),
            "{text}"
        );
        // private keys parse with openssl and are 0600
        for k in ["pki/ca.key", "pki/server.key", "pki/devices/device-a.key"] {
            openssl(d, &["pkey", "-in", k, "-noout"]);
            let mode = std::fs::metadata(d.join(k)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{k}");
        }
        for cert in ["pki/server.crt", "pki/devices/device-a.crt", "pki/ca.crt"] {
            let ours = iotsec(d, &["pki", "fingerprint", cert]);
            ok(&ours);
            let theirs = openssl(
                d,
                &["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
            );
            assert_eq!(ours.stdout, theirs, "{key} {cert}");

            let pin = iotsec(d, &["pki", "fingerprint", "--spki", cert]);
            ok(&pin);
            let mut sh = std::process::Command::new("sh");
            sh.current_dir(d).arg("-c").arg(format!(
                "openssl x509 -in {cert} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"
            ));
            let expected = iotsec_testkit::run(&mut sh, std::time::Duration::from_secs(30));
            assert_eq!(
                pin.stdout,
                format!("sha256/{}", expected.stdout),
                "{key} {cert}"
            );
        }
    }
}

#[test]
fn revoke_lists_the_serial_in_a_crl_openssl_accepts() {
    let dir = TestDir::new();
    setup(&dir, "p256");
    let d = dir.path();
    ok(&iotsec(d, &["pki", "revoke", "device-a"]));
    let serial = openssl(
        d,
        &[
            "x509",
            "-in",
            "pki/devices/device-a.crt",
            "-noout",
            "-serial",
        ],
    );
    let serial = serial.trim().trim_start_matches("serial=");
    let crl = openssl(
        d,
        &[
            "crl",
            "-in",
            "pki/crl.pem",
            "-noout",
            "-text",
            "-CAfile",
            "pki/ca.crt",
        ],
    );
    assert!(crl.contains(serial), "{serial} not in {crl}");
    // openssl's own CRL check rejects the revoked device and accepts another one
    let mut cmd = std::process::Command::new("openssl");
    cmd.current_dir(d).args([
        "verify",
        "-crl_check",
        "-CAfile",
        "pki/ca.crt",
        "-CRLfile",
        "pki/crl.pem",
        "pki/devices/device-a.crt",
    ]);
    let revoked = iotsec_testkit::run(&mut cmd, std::time::Duration::from_secs(30));
    assert_ne!(revoked.code, 0);
    assert!(revoked.stdout.contains("revoked") || revoked.stderr.contains("revoked"));
    openssl(
        d,
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "pki/ca.crt",
            "-CRLfile",
            "pki/crl.pem",
            "pki/devices/bulk-00001.crt",
        ],
    );

    let list = iotsec(d, &["pki", "list", "--json", "--dir", "pki"]);
    ok(&list);
    let v: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let a = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "device-a")
        .unwrap();
    assert_eq!(a["status"], "revoked");
    assert_eq!(v["certificates"].as_array().unwrap().len(), 1 + 1 + 1 + 12);
    // re-sign the CRL: number increases
    ok(&iotsec(d, &["pki", "crl", "--days", "7"]));
    let text = openssl(d, &["crl", "-in", "pki/crl.pem", "-noout", "-text"]);
    assert!(text.contains(serial));
}

#[test]
fn inspect_reports_fields_and_warnings() {
    let dir = TestDir::new();
    setup(&dir, "p256");
    let out = iotsec(dir.path(), &["pki", "inspect", "--json", "pki/server.crt"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let leaf = &v[0];
    assert_eq!(leaf["key"]["kind"], "EC");
    assert_eq!(leaf["key"]["bits"], 256);
    assert_eq!(leaf["ca"], false);
    assert!(
        leaf["sans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "IP:127.0.0.1")
    );
    assert_eq!(leaf["warnings"].as_array().unwrap().len(), 0);
    // a short-lived, weak, SHA-1, CN-only certificate made by openssl: every warning fires
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-sha1",
            "-nodes",
            "-keyout",
            "weak.key",
            "-out",
            "weak.crt",
            "-days",
            "3",
            "-subj",
            "/CN=weak",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ],
    );
    let out = iotsec(d, &["pki", "inspect", "--json", "weak.crt"]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let codes: Vec<&str> = v[0]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    for code in [
        "PKI-CERT-EXPIRING",
        "PKI-WEAK-KEY",
        "PKI-WEAK-SIGNATURE",
        "PKI-NO-SAN",
        "PKI-CA-LEAF",
    ] {
        assert!(codes.contains(&code), "{code} missing from {codes:?}");
    }
    assert_eq!(v[0]["self_signed"], true);
}

#[test]
fn bad_input_gets_one_line_exit_2_and_leaves_nothing_behind() {
    let dir = TestDir::new();
    let d = dir.path();

    // missing CA
    refused(&iotsec(d, &["pki", "device", "device-a"]), "no CA");
    refused(
        &iotsec(d, &["pki", "server", "--name", "localhost"]),
        "no CA",
    );
    assert!(tree(d).is_empty(), "{:?}", tree(d));

    // invalid arguments before anything is written
    refused(&iotsec(d, &["pki", "init", "--days", "0"]), "days");
    assert!(tree(d).is_empty(), "{:?}", tree(d));

    ok(&iotsec(d, &["pki", "init"]));
    let before = tree(d);

    // illegal ids: nothing written
    for id in ["a/b", "dev+1", "dev#", "with space", ".x", "caf\u{e9}"] {
        refused(&iotsec(d, &["pki", "device", id]), "invalid device id");
    }
    refused(
        &iotsec(d, &["pki", "device", "--count", "3", "--prefix", "bad/"]),
        "invalid device id",
    );
    // bad SAN, bad stem
    refused(
        &iotsec(d, &["pki", "server", "--name", "bad_host!"]),
        "invalid name",
    );
    refused(
        &iotsec(
            d,
            &["pki", "server", "--name", "localhost", "--out", "../escape"],
        ),
        "file stem",
    );
    // unknown device on revoke
    refused(
        &iotsec(d, &["pki", "revoke", "ghost"]),
        "unknown certificate id",
    );
    // init over an existing CA
    refused(&iotsec(d, &["pki", "init"]), "already exists");
    assert_eq!(tree(d), before);
    let inventory = std::fs::read(d.join("pki/inventory.json")).unwrap();

    // duplicate device: refused, original untouched
    ok(&iotsec(d, &["pki", "device", "device-a"]));
    let cert = std::fs::read(d.join("pki/devices/device-a.crt")).unwrap();
    refused(
        &iotsec(d, &["pki", "device", "device-a"]),
        "already has a valid certificate",
    );
    assert_eq!(
        std::fs::read(d.join("pki/devices/device-a.crt")).unwrap(),
        cert
    );
    // bulk that collides with an existing id writes none of the others
    let before_bulk = tree(d);
    ok(&iotsec(d, &["pki", "device", "x00002"]));
    let before_bulk2 = tree(d);
    refused(
        &iotsec(d, &["pki", "device", "--count", "3", "--prefix", "x"]),
        "already",
    );
    assert_eq!(tree(d), before_bulk2);
    assert_ne!(before_bulk, before_bulk2);

    // corrupt PEM
    let good_ca = std::fs::read(d.join("pki/ca.crt")).unwrap();
    std::fs::write(
        d.join("pki/ca.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let snapshot = tree(d);
    refused(&iotsec(d, &["pki", "device", "device-z"]), "ca.crt");
    assert_eq!(tree(d), snapshot);
    std::fs::write(d.join("pki/ca.crt"), b"garbage").unwrap();
    refused(
        &iotsec(d, &["pki", "device", "device-z"]),
        "no CERTIFICATE block",
    );
    std::fs::write(d.join("pki/ca.crt"), &good_ca).unwrap();

    // a CA key that does not match the certificate
    let good_key = std::fs::read(d.join("pki/ca.key")).unwrap();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "other.key",
        ],
    );
    std::fs::copy(d.join("other.key"), d.join("pki/ca.key")).unwrap();
    refused(&iotsec(d, &["pki", "device", "device-z"]), "does not match");
    std::fs::write(
        d.join("pki/ca.key"),
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    refused(&iotsec(d, &["pki", "device", "device-z"]), "ca.key");
    std::fs::write(d.join("pki/ca.key"), &good_key).unwrap();
    assert!(!d.join("pki/devices/device-z.crt").exists());

    // fingerprint / inspect of a non-certificate
    refused(
        &iotsec(d, &["pki", "fingerprint", "other.key"]),
        "no CERTIFICATE block",
    );
    refused(
        &iotsec(d, &["pki", "inspect", "missing.pem"]),
        "missing.pem",
    );
    // and the inventory never changed through all of it (except the two devices issued)
    let inv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("pki/inventory.json")).unwrap()).unwrap();
    let inv0: serde_json::Value = serde_json::from_slice(&inventory).unwrap();
    assert_eq!(
        inv["certificates"].as_array().unwrap().len(),
        inv0["certificates"].as_array().unwrap().len() + 2
    );
    // no temporary files anywhere
    assert!(
        tree(d).iter().all(|p| !p.contains(".iotsec-tmp-")),
        "{:?}",
        tree(d)
    );
}

#[test]
fn rotation_to_a_prepinned_backup_key_keeps_the_spki_pin() {
    let dir = TestDir::new();
    setup(&dir, "p256");
    let d = dir.path();
    let out = iotsec(d, &["pki", "keygen", "--out", "backup.key"]);
    ok(&out);
    let announced = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("SPKI pin: "))
        .unwrap()
        .to_string();
    ok(&iotsec(
        d,
        &[
            "pki",
            "server",
            "--name",
            "localhost",
            "--key-file",
            "backup.key",
            "--force",
        ],
    ));
    let pin = iotsec(d, &["pki", "fingerprint", "--spki", "pki/server.crt"]);
    assert_eq!(pin.stdout.trim(), announced);
    let pin_of_key = iotsec(d, &["pki", "fingerprint", "--spki", "backup.key"]);
    assert_eq!(pin_of_key.stdout.trim(), announced);
}

/// `pki list` tells a certificate that expires within 30 days from a valid one.
#[test]
fn list_marks_certificates_expiring_within_30_days() {
    let dir = iotsec_testkit::TestDir::new();
    let run = |args: &[&str]| {
        let out = crate::iotsec(dir.path(), args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out.stdout
    };
    run(&["pki", "init", "--dir", "pki"]);
    run(&["pki", "device", "--dir", "pki", "long-lived"]);
    run(&[
        "pki",
        "device",
        "--dir",
        "pki",
        "short-lived",
        "--days",
        "5",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&run(&["pki", "list", "--dir", "pki", "--json"])).unwrap();
    let status = |id: &str| {
        v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {v}"))["status"]
            .clone()
    };
    assert_eq!(status("long-lived"), "valid");
    assert_eq!(status("short-lived"), "expiring-soon");
    assert!(run(&["pki", "list", "--dir", "pki"]).contains("expiring-soon"));
}
