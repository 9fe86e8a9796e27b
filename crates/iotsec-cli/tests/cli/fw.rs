//! `iotsec fw keygen / sign / verify / inspect` through the binary: exit 0 for a trusted,
//! intact bundle; exit 1 with the reason for each kind of bad one; exit 2 for unusable input;
//! Ed25519 (default) and ECDSA P-256 keys; bundles and detached manifests.

use iotsec_testkit::TestDir;

use crate::iotsec;

fn ok(dir: &TestDir, args: &[&str]) -> String {
    let out = iotsec(dir.path(), args);
    assert_eq!(out.code, 0, "iotsec {args:?}: {}{}", out.stdout, out.stderr);
    out.stdout
}

/// `fw verify` that must reject: exit 1 and the reason on stdout.
fn rejected(dir: &TestDir, args: &[&str], reason: &str) {
    let out = iotsec(dir.path(), args);
    assert_eq!(out.code, 1, "iotsec {args:?}: {}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("rejected:") && out.stdout.contains(reason),
        "iotsec {args:?}: expected {reason:?} in {}",
        out.stdout
    );
}

#[test]
fn verify_accepts_trusted_bundles_and_names_the_reason_for_each_bad_one() {
    let dir = TestDir::new();
    ok(&dir, &["fw", "keygen", "--out", "vendor"]);
    ok(&dir, &["fw", "keygen", "--out", "ecdsa", "--alg", "p256"]);
    ok(&dir, &["fw", "keygen", "--out", "stranger"]);
    use std::os::unix::fs::PermissionsExt;
    for k in ["vendor.key", "ecdsa.key"] {
        let mode = std::fs::metadata(dir.join(k)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{k}");
    }
    let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(dir.join("img.bin"), &image).unwrap();
    let sign = |key: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "fw",
            "sign",
            "--key",
            key,
            "--version",
            "1.2.0",
            "--security-counter",
            "3",
            "--hw",
            "acme-gw",
            "-o",
            out,
        ];
        args.extend_from_slice(extra);
        args.push("img.bin");
        ok(&dir, &args);
    };
    sign("vendor.key", "img.fw", &[]);
    sign("ecdsa.key", "p256.fw", &[]);
    sign("vendor.key", "img.manifest", &["--detached"]);

    // `fw verify` of the detached manifest against an image file.
    let detached = |image: &'static str| {
        [
            "fw",
            "verify",
            "--trust",
            "vendor.pub",
            "--image",
            image,
            "img.manifest",
        ]
    };
    // Trusted and intact: exit 0, for both algorithms and for a detached manifest.
    let out = ok(&dir, &["fw", "verify", "--trust", "vendor.pub", "img.fw"]);
    assert!(
        out.contains("verified: img.fw") && out.contains("1.2.0"),
        "{out}"
    );
    let out = ok(&dir, &["fw", "verify", "--trust", "ecdsa.pub", "p256.fw"]);
    assert!(out.contains("p256"), "{out}");
    ok(&dir, &detached("img.bin"));
    let v: serde_json::Value = serde_json::from_str(&ok(
        &dir,
        &[
            "fw",
            "verify",
            "--json",
            "--trust",
            "vendor.pub",
            "--hw",
            "acme-gw",
            "img.fw",
        ],
    ))
    .unwrap();
    assert_eq!(v["verified"], true);
    assert_eq!(v["manifest"]["security_counter"], 3);

    // Each bad case: exit 1 with its reason.
    rejected(
        &dir,
        &["fw", "verify", "--trust", "stranger.pub", "img.fw"],
        "not trusted",
    );
    rejected(
        &dir,
        &["fw", "verify", "--trust", "vendor.pub", "p256.fw"],
        "not trusted",
    );
    rejected(
        &dir,
        &[
            "fw",
            "verify",
            "--trust",
            "vendor.pub",
            "--hw",
            "other-board",
            "img.fw",
        ],
        "hardware",
    );
    let bundle = std::fs::read(dir.join("img.fw")).unwrap();
    let mut flipped = bundle.clone();
    let at = flipped.len() - 1000;
    flipped[at] ^= 0x01;
    std::fs::write(dir.join("flipped.fw"), &flipped).unwrap();
    rejected(
        &dir,
        &["fw", "verify", "--trust", "vendor.pub", "flipped.fw"],
        "SHA-256",
    );
    std::fs::write(dir.join("short.fw"), &bundle[..bundle.len() - 1]).unwrap();
    rejected(
        &dir,
        &["fw", "verify", "--trust", "vendor.pub", "short.fw"],
        "truncated",
    );
    let mut long = bundle.clone();
    long.push(0);
    std::fs::write(dir.join("long.fw"), &long).unwrap();
    let out = iotsec(
        dir.path(),
        &["fw", "verify", "--trust", "vendor.pub", "long.fw"],
    );
    assert_eq!(out.code, 1, "an image longer than signed: {}", out.stdout);
    let mut other_image = image.clone();
    other_image[0] ^= 0xff;
    std::fs::write(dir.join("other.bin"), &other_image).unwrap();
    rejected(&dir, &detached("other.bin"), "SHA-256");

    // Unusable input is an error (exit 2, one line), not a verdict.
    for args in [
        &["fw", "verify", "--trust", "missing.pub", "img.fw"][..],
        &["fw", "verify", "--trust", "vendor.pub", "missing.fw"][..],
        &["fw", "verify", "--trust", "img.bin", "img.fw"][..],
    ] {
        let out = iotsec(dir.path(), args);
        assert_eq!(out.code, 2, "iotsec {args:?}: {}{}", out.stdout, out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    }

    // inspect shows the manifest without claiming it was verified.
    let out = ok(&dir, &["fw", "inspect", "img.fw"]);
    assert!(
        out.contains("NOT verified") && out.contains("acme-gw"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(&dir, &["fw", "inspect", "--json", "img.fw"])).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["version"], "1.2.0");
    assert_eq!(v["image_size"], 300_000);
    assert_eq!(v["kind"], "bundle");
}
