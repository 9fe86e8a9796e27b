//! Renderers checked by their consumers: JSON round-trips, SARIF validates against the SARIF
//! 2.1.0 schema (Python `jsonschema`), HTML renders in headless Chromium.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use iotsec_audit::report::Assessment;
use iotsec_audit::{Inputs, Location, Report, render};
use iotsec_testkit::{TestDir, require_tool, run};

use crate::common;

/// The offline tutorial audit plus a network finding, so every location kind is rendered.
fn sample(root: &TestDir) -> Report {
    let (conf, device) = common::tutorial_files(root.path());
    std::fs::write(root.join("sdkconfig"), "# CONFIG_SECURE_BOOT is not set\n").unwrap();
    let offline = common::audit(Inputs {
        mosquitto_conf: Some(conf),
        device_configs: vec![device],
        firmware: vec![root.join("sdkconfig")],
        ..Inputs::default()
    });
    // Rebuild it with one network finding whose text needs escaping.
    let mut a = Assessment::new();
    for i in &offline.inputs {
        a.input(i.clone());
    }
    for c in &offline.categories {
        for by in &c.assessed_by {
            a.covered(c.category, by.clone());
        }
    }
    a.extend(offline.findings.clone());
    let mut f = iotsec_audit::catalog::MQTT_ANON_SUBSCRIBE_ALL.finding(
        Location::tcp("127.0.0.1", 1883),
        "anonymous SUBSCRIBE to `#` granted <&\"'>",
    );
    f.title.push_str(" <script>alert(1)</script>");
    a.push(f);
    a.covered(
        iotsec_audit::OwaspIot::I2,
        "active MQTT checks on 127.0.0.1:1883/tcp",
    );
    a.into_report(time::OffsetDateTime::now_utc())
}

#[test]
fn json_round_trips() {
    let root = TestDir::new();
    let report = sample(&root);
    let text = render::json(&report);
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(back, report);
    assert_eq!(render::json(&back), text);
}

fn python_with_jsonschema() -> PathBuf {
    require_tool("python3", "sudo apt-get install -y python3");
    let probe = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "this test needs the Python package `jsonschema`: pip install jsonschema (scripts/test installs it)"
    );
    PathBuf::from("python3")
}

#[test]
fn sarif_validates_against_the_sarif_2_1_0_schema() {
    let root = TestDir::new();
    let report = sample(&root);
    let python = python_with_jsonschema();
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif/sarif-schema-2.1.0.json");
    let sarif_file = common::artifacts().join("tutorial.sarif");
    let sarif = render::sarif(&report, Some(root.path()));
    std::fs::write(&sarif_file, &sarif).unwrap();
    let validate = |file: &Path| {
        run(
            Command::new(&python)
                .args([
                    "-c",
                    "import json,sys,jsonschema\n\
                 schema=json.load(open(sys.argv[1])); log=json.load(open(sys.argv[2]))\n\
                 errs=sorted(jsonschema.Draft4Validator(schema).iter_errors(log), key=str)\n\
                 [print('/'.join(map(str,e.absolute_path)), e.message) for e in errs[:20]]\n\
                 sys.exit(1 if errs else 0)",
                ])
                .arg(&schema)
                .arg(file),
            Duration::from_secs(60),
        )
    };
    let out = validate(&sarif_file);
    assert_eq!(
        out.code, 0,
        "SARIF does not validate:\n{}{}",
        out.stdout, out.stderr
    );

    // The validator is not a rubber stamp: a log with a wrong version fails.
    let mut broken: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    broken["version"] = "2.0.0".into();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    let broken_file = root.join("broken.sarif");
    std::fs::write(&broken_file, broken.to_string()).unwrap();
    assert_ne!(validate(&broken_file).code, 0);

    // Relative locations under the base, logical locations for ports.
    let log: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    let results = log["runs"][0]["results"].as_array().unwrap();
    let key = results
        .iter()
        .find(|r| r["ruleId"] == "FW-HARDCODED-KEY")
        .unwrap();
    let phys = &key["locations"][0]["physicalLocation"];
    assert_eq!(phys["artifactLocation"]["uri"], "device/client.py");
    assert_eq!(phys["artifactLocation"]["uriBaseId"], "SRCROOT");
    assert_eq!(phys["region"]["startLine"], 6);
    let net = results
        .iter()
        .find(|r| r["ruleId"] == "MQTT-ANON-SUBSCRIBE-ALL")
        .unwrap();
    assert_eq!(
        net["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        "127.0.0.1:1883/tcp"
    );
    assert_eq!(results.len(), report.findings.len());
}

#[test]
fn html_is_self_contained_and_renders_in_chromium() {
    let root = TestDir::new();
    let report = sample(&root);
    let html = render::html(&report);
    // No external assets, no scripts; untrusted text is escaped.
    for needle in ["<script", "src=", "href=\"http", "@import", "url("] {
        assert!(!html.contains(needle), "{needle} in HTML");
    }
    assert!(html.contains("&lt;script&gt;"));
    assert!(html.contains("<svg class=\"chart\""));
    assert_eq!(html.matches("<h2 id=\"I").count(), 10);

    let browser = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {b}"))
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(browser) = browser else {
        require_tool("chromium", "sudo apt-get install -y chromium");
        unreachable!();
    };
    let dir = common::artifacts();
    let page = dir.join("tutorial.html");
    std::fs::write(&page, &html).unwrap();
    let shot = dir.join("tutorial.png");
    let _ = std::fs::remove_file(&shot);
    let profile = root.join("chromium-profile");
    let out = run(
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1100,1600",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg(format!("file://{}", page.display())),
        Duration::from_secs(120),
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "chromium wrote no screenshot ({e}); exit {}: {}",
            out.code, out.stderr
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "screenshot suspiciously small: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}
