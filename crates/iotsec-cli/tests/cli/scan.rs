//! `iotsec scan` and `iotsec audit` through the binary, against a Mosquitto the test starts
//! (plaintext, anonymous, on a free loopback port: the tutorial's broker). Only that port is
//! ever scanned or probed.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use iotsec_testkit::{TestDir, free_port, require_mosquitto};

use crate::iotsec;

/// The tutorial's broker on 127.0.0.1:`port`; stopped (by pid) on drop.
struct PlainBroker(Child);

impl PlainBroker {
    fn start(dir: &TestDir, port: u16) -> PlainBroker {
        require_mosquitto();
        let conf = dir.join("plain.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Ready once it accepts on its (our) port.
        crate::stack::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        PlainBroker(child)
    }
}

impl Drop for PlainBroker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn scan_reports_json_and_exits_by_fail_on() {
    let dir = TestDir::new();
    let port = free_port();
    let _broker = PlainBroker::start(&dir, port);
    let p = port.to_string();
    let scan = |extra: &[&str]| {
        let mut args = vec!["scan", "127.0.0.1", "--ports", p.as_str(), "-q"];
        args.extend_from_slice(extra);
        iotsec(dir.path(), &args)
    };
    let out = scan(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("PORT") && out.stdout.contains("SCAN-MQTT-ANON"),
        "{}",
        out.stdout
    );

    let out = scan(&["--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(r["tcp"]["open"], 1);
    assert_eq!(r["ports"][0]["port"], port);
    assert_eq!(r["ports"][0]["label"], "mqtt");
    let ids: Vec<(&str, &str)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f["severity"].as_str().unwrap()))
        .collect();
    assert!(ids.contains(&("SCAN-MQTT-ANON", "high")), "{ids:?}");
    assert!(ids.contains(&("SCAN-MQTT-PLAINTEXT", "medium")), "{ids:?}");

    // --fail-on: 1 when a finding reaches it, 0 otherwise.
    assert_eq!(scan(&["--fail-on", "high"]).code, 1);
    assert_eq!(scan(&["--fail-on", "medium", "--json"]).code, 1);
    assert_eq!(scan(&["--fail-on", "critical"]).code, 0);
    // Not hosts: refused with one line, exit 2; nothing is sent.
    for target in ["255.255.255.255", "224.0.0.1"] {
        let out = iotsec(dir.path(), &["scan", target, "--ports", "80"]);
        assert_eq!(out.code, 2, "{target}: {}", out.stderr);
        assert!(out.stderr.contains("refusing"), "{}", out.stderr);
    }
}

#[test]
fn audit_writes_every_format_exits_by_fail_on_and_never_prints_the_secret() {
    let dir = TestDir::new();
    let port = free_port();
    let _broker = PlainBroker::start(&dir, port);
    const SECRET: &str = "your-32-byte-secret-key-here!!!!";
    std::fs::create_dir(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("src/device.py"),
        format!("import hmac\nSECRET_KEY = b\"{SECRET}\"\nclient.tls_insecure_set(True)\n"),
    )
    .unwrap();
    let p = port.to_string();
    let audit = |format: &str, out: &str, extra: &[&str]| {
        let mut args = vec![
            "audit",
            "--mosquitto-conf",
            "plain.conf",
            "--host",
            "127.0.0.1",
            "--ports",
            p.as_str(),
            "--firmware",
            "src",
            "--format",
            format,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        iotsec(dir.path(), &args)
    };
    for (format, file) in [
        ("text", "a.txt"),
        ("json", "a.json"),
        ("sarif", "a.sarif"),
        ("html", "a.html"),
    ] {
        let out = audit(format, file, &[]);
        assert_eq!(out.code, 0, "{format}: {}", out.stderr);
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(!text.contains(SECRET), "{format} report holds the secret");
        assert!(!out.stderr.contains(SECRET) && !out.stdout.contains(SECRET));
    }
    let text = std::fs::read_to_string(dir.join("a.txt")).unwrap();
    assert!(
        text.contains("I1  Weak, Guessable, or Hardcoded Passwords -- FAIL"),
        "{text}"
    );
    assert!(text.contains("NOT ASSESSED"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a.json")).unwrap()).unwrap();
    assert_eq!(json["categories"].as_array().unwrap().len(), 10);
    let findings = json["findings"].as_array().unwrap();
    let find = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no {id} in {findings:?}"))
    };
    assert_eq!(find("FW-HARDCODED-KEY")["location"]["line"], 2);
    assert_eq!(find("FW-TLS-VERIFY-OFF")["location"]["line"], 3);
    assert_eq!(find("SCAN-MQTT-ANON")["category"], "I2");
    let sarif: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a.sarif")).unwrap()).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(
        sarif["runs"][0]["results"].as_array().unwrap().len(),
        findings.len()
    );
    let html = std::fs::read_to_string(dir.join("a.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "external asset"
    );

    assert_eq!(audit("json", "b.json", &["--fail-on", "high"]).code, 1);
    assert_eq!(audit("json", "c.json", &["--fail-on", "critical"]).code, 0);
}
