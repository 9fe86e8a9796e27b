//! The dashboard in headless Chromium (Debian's `chromium`, driven by Node's playwright-core
//! from crates/iotsec-web/tests/browser): sign in, the fleet of `iotsec up` online, a device's
//! chart with points, a tampered message in the rejection log, the audit summary. Screenshots
//! go to target/test-artifacts/.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use iotsec_msg::v2::Envelope;
use iotsec_msg::{DeviceId, Kid, MsgKey, Signer};
use iotsec_testkit::{TestDir, free_port, require_mosquitto, require_tool, run};

use crate::https::Client;
use crate::up::{Up, wait_for_fleet};

fn driver_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../iotsec-web/tests/browser")
}

/// playwright-core from the npm registry (package-lock.json), once.
fn npm_ci() {
    let dir = driver_dir();
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let out = run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir),
        Duration::from_secs(300),
    );
    assert_eq!(
        out.code,
        0,
        "npm ci in {} failed (scripts/test runs it): {}",
        dir.display(),
        out.stderr
    );
}

/// A v2 message signed with device-1's own key, then altered in flight.
fn tampered(bundle: &Path) -> Vec<u8> {
    let key = std::fs::read(bundle.join("msg.key")).unwrap();
    let kid = Kid::new(DeviceId::new("device-1").unwrap(), 1);
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut out = Vec::new();
    Signer::new(MsgKey::new(&key).unwrap())
        .sign_v2(
            br#"{"temperature": 21.5}"#,
            &Envelope {
                kid,
                ts,
                seq: 1_000_000,
            },
            &mut out,
        )
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("21.5"));
    text.replace("21.5", "99.5").into_bytes()
}

#[test]
fn dashboard_in_headless_chromium_shows_fleet_chart_rejections_and_audit() {
    require_mosquitto();
    require_tool("chromium", "sudo apt-get install -y chromium");
    require_tool("node", "sudo apt-get install -y nodejs npm");
    require_tool("npm", "sudo apt-get install -y npm");
    npm_ci();
    let dir = TestDir::new();
    let up = Up::start(&dir, free_port(), free_port(), 3);
    let data = dir.join("iotsec-data");
    let client = Client::new(&data.join("pki/ca.crt"), up.web_port);
    let admin = up.admin_token().unwrap();
    wait_for_fleet(&client, &admin, 3);

    // A viewer token for the browser.
    let out = crate::iotsec(
        dir.path(),
        &[
            "token",
            "create",
            "--role",
            "viewer",
            "--config",
            data.join("server.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let viewer = out.stdout.trim().to_string();

    // A tampered message from device-1's own TLS identity.
    let bundle = data.join("bundles/device-1");
    let file = dir.join("tampered.json");
    std::fs::write(&file, tampered(&bundle)).unwrap();
    let publ = run(
        Command::new("mosquitto_pub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &up.mqtt_port.to_string(),
                "-q",
                "1",
            ])
            .args(["-t", "devices/device-1/telemetry", "-f"])
            .arg(&file)
            .arg("--cafile")
            .arg(bundle.join("ca.crt"))
            .arg("--cert")
            .arg(bundle.join("device.crt"))
            .arg("--key")
            .arg(bundle.join("device.key")),
        Duration::from_secs(10),
    );
    assert_eq!(publ.code, 0, "{}", publ.stderr);
    crate::stack::wait_until(Duration::from_secs(10), || {
        client.get("/api/rejections", Some(&viewer)).json()["counts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["reason"] == "bad_signature")
    });

    let pki = data.join("pki");
    let der = iotsec_pki::pem::certificate(&pki.join("server.crt")).unwrap();
    let spki = iotsec_pki::pem::spki_of_cert(&pki.join("server.crt"), &der).unwrap();
    let pin = iotsec_pki::SpkiPin::of_spki_der(&spki).to_string();
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    let node = run(
        Command::new("node")
            .arg(driver_dir().join("dashboard.mjs"))
            .env("IOTSEC_URL", format!("https://localhost:{}/", up.web_port))
            .env("IOTSEC_TOKEN", &viewer)
            .env("IOTSEC_SPKI", &pin)
            .env("IOTSEC_DEVICES", "3")
            .env("IOTSEC_REASON", "bad_signature")
            .env("IOTSEC_SHOTS", &shots)
            .env("IOTSEC_PROFILE", dir.join("chromium-profile")),
        Duration::from_secs(120),
    );
    let children = up.children();
    assert_eq!(up.interrupt(), 0);
    for pid in children {
        assert!(!crate::up::alive(pid), "process {pid} left running");
    }
    assert_eq!(
        node.code,
        0,
        "browser test failed (screenshots in {}):\n{}\n{}",
        shots.display(),
        node.stdout,
        node.stderr
    );
    let seen: serde_json::Value = serde_json::from_str(node.stdout.trim()).unwrap();
    let fleet = seen["fleet"].as_array().unwrap();
    assert_eq!(fleet.len(), 3);
    assert!(fleet.iter().all(|d| d["state"] == "online"), "{fleet:?}");
    assert!(seen["chart"][0]["points"].as_u64().unwrap() > 1, "{seen}");
    assert!(
        seen["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[1] == "device-1" && r[2] == "bad_signature"),
        "{seen}"
    );
    assert_eq!(seen["audit"].as_array().unwrap().len(), 10, "{seen}");
    for name in ["2-fleet", "3-device", "4-rejections-audit"] {
        let png = shots.join(format!("dashboard-{name}.png"));
        let bytes = std::fs::read(&png).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{}",
            png.display()
        );
    }
}
