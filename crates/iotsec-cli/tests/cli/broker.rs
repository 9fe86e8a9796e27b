//! `iotsec broker config` / `audit-conf` through the binary.

use iotsec_testkit::TestDir;

use crate::iotsec;

fn audit(dir: &TestDir, file: &str) -> (i32, Vec<(String, String)>) {
    let out = iotsec(dir.path(), &["broker", "audit-conf", "--json", file]);
    assert!(out.code == 0 || out.code == 1, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ids = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["severity"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (out.code, ids)
}

#[test]
fn insecure_fixtures_are_flagged_with_locations() {
    let dir = TestDir::new();
    let d = dir.path();
    // The tutorial's broker: plaintext and anonymous on every interface.
    std::fs::write(
        d.join("plain.conf"),
        "listener 1883 0.0.0.0\nallow_anonymous true\n",
    )
    .unwrap();
    // Old TLS, a websockets listener in clear, a password file in clear and world-readable.
    std::fs::write(d.join("passwd"), "alice:secret\nbob:$7$101$abc$def\n").unwrap();
    std::fs::write(
        d.join("oldtls.conf"),
        format!(
            "per_listener_settings false\npassword_file {}/passwd\nlistener 8883\ncertfile {d}/x.crt\nkeyfile {d}/x.key\ntls_version tlsv1\nlistener 9001\nprotocol websockets\n",
            d.display(),
            d = d.display()
        ),
    )
    .unwrap();
    // A listener with an ACL that gives everyone everything, through include_dir.
    std::fs::create_dir(d.join("conf.d")).unwrap();
    std::fs::write(d.join("acl"), "topic readwrite #\n").unwrap();
    std::fs::write(
        d.join("conf.d/10-acl.conf"),
        format!("acl_file {}/acl\n", d.display()),
    )
    .unwrap();
    std::fs::write(
        d.join("noacl.conf"),
        format!(
            "listener 1883 127.0.0.1\ninclude_dir {}/conf.d\n",
            d.display()
        ),
    )
    .unwrap();

    let (code, ids) = audit(&dir, "plain.conf");
    assert_eq!(code, 1);
    assert!(
        ids.contains(&("BRK-ANON-EXPOSED".into(), "critical".into())),
        "{ids:?}"
    );
    assert!(
        ids.contains(&("BRK-PLAINTEXT".into(), "high".into())),
        "{ids:?}"
    );
    assert!(ids.iter().any(|(i, _)| i == "BRK-NO-ACL"), "{ids:?}");

    let (code, ids) = audit(&dir, "oldtls.conf");
    assert_eq!(code, 1);
    for id in [
        "BRK-TLS-OLD",
        "BRK-WS-PLAINTEXT",
        "BRK-PASSWD-PLAINTEXT",
        "BRK-PASSWD-PERMS",
        "BRK-MISSING-FILE",
    ] {
        assert!(ids.iter().any(|(i, _)| i == id), "{id} missing: {ids:?}");
    }

    let (code, ids) = audit(&dir, "noacl.conf");
    assert_eq!(code, 1);
    assert!(ids.iter().any(|(i, _)| i == "BRK-ACL-WILDCARD"), "{ids:?}");

    // The text output points at file:line.
    let out = iotsec(d, &["broker", "audit-conf", "plain.conf"]);
    assert!(out.stdout.contains("plain.conf:2"), "{}", out.stdout);
}

#[test]
fn generated_config_has_no_high_or_critical_finding() {
    let dir = TestDir::new();
    let d = dir.path();
    for args in [
        vec!["pki", "init"],
        vec!["pki", "server", "--name", "localhost"],
        vec!["pki", "device", "iotsec-server", "--role", "service"],
        vec!["broker", "config", "--out", "broker"],
    ] {
        let out = iotsec(d, &args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let (code, ids) = audit(&dir, "broker/mosquitto.conf");
    assert_eq!(code, 0, "{ids:?}");
    assert!(
        ids.iter()
            .all(|(_, sev)| sev != "high" && sev != "critical"),
        "{ids:?}"
    );
    // broker config without a PKI: a clear error, nothing written
    let empty = TestDir::new();
    let out = iotsec(empty.path(), &["broker", "config", "--out", "broker"]);
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// FOUNDATION's revocation, through the commands an operator types: `pki revoke` + `broker
/// reload` against `broker run`, the real Mosquitto: the revoked device is refused, the other
/// still connects; stopping `broker run` stops Mosquitto.
#[test]
fn revoke_and_reload_through_the_cli_refuse_only_the_revoked_device() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    iotsec_testkit::require_mosquitto();
    let dir = TestDir::new();
    let d = dir.path();
    let ok = |args: &[&str]| {
        let out = iotsec(d, args);
        assert_eq!(out.code, 0, "iotsec {args:?}: {}", out.stderr);
    };
    ok(&["pki", "init", "--dir", "pki"]);
    ok(&[
        "pki",
        "server",
        "--dir",
        "pki",
        "--name",
        "localhost",
        "--san",
        "127.0.0.1",
    ]);
    ok(&["pki", "device", "--dir", "pki", "device-a"]);
    ok(&["pki", "device", "--dir", "pki", "device-b"]);
    ok(&[
        "pki",
        "device",
        "--dir",
        "pki",
        "iotsec-server",
        "--role",
        "service",
    ]);
    let port = iotsec_testkit::free_port();
    ok(&[
        "broker",
        "config",
        "--pki",
        "pki",
        "--out",
        "broker",
        "--port",
        &port.to_string(),
    ]);
    let mut broker = Command::new(env!("CARGO_BIN_EXE_iotsec"))
        .current_dir(d)
        .args(["broker", "run", "--config", "broker"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("broker-run.log")).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.join("broker-run.log")).unwrap_or_default();
    crate::stack::wait_until(Duration::from_secs(20), || log().contains("listening on"));
    let publish = |id: &str| {
        iotsec_testkit::run(
            Command::new("mosquitto_pub")
                .current_dir(d)
                .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1"])
                .args(["--cafile", "pki/ca.crt"])
                .args(["--cert", &format!("pki/devices/{id}.crt")])
                .args(["--key", &format!("pki/devices/{id}.key")])
                .args(["-t", &format!("devices/{id}/telemetry"), "-m", "{}"]),
            Duration::from_secs(20),
        )
    };
    assert_eq!(
        publish("device-a").code,
        0,
        "{}",
        publish("device-a").stderr
    );
    assert_eq!(publish("device-b").code, 0);

    ok(&["pki", "revoke", "device-a", "--dir", "pki"]);
    ok(&["broker", "reload", "--config", "broker"]);
    // Mosquitto re-reads its CRL on SIGHUP, between two passes of its loop.
    let start = Instant::now();
    while publish("device-a").code == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "device-a still connects after revoke + reload:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(publish("device-b").code, 0, "device-b was refused too");

    // Stopping `broker run` stops the broker it started.
    let pid: i32 = std::fs::read_to_string(dir.join("broker/mosquitto.pid"))
        .expect("pid file written by broker run")
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(broker.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(broker.wait().unwrap().success(), "{}", log());
    assert!(
        !crate::up::alive(pid),
        "mosquitto (pid {pid}) still running after broker run stopped"
    );
}
