//! `iotsec up`: from an empty directory to a running stack (broker, ingest, API, simulated
//! devices) whose data reaches the API within seconds; Ctrl-C leaves no process behind; a
//! second run reuses the data.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use iotsec_testkit::{TestDir, free_port, require_mosquitto};

use crate::https::Client;

pub struct Up {
    pub child: std::process::Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub mqtt_port: u16,
    pub web_port: u16,
}

impl Up {
    pub fn start(dir: &TestDir, mqtt_port: u16, web_port: u16, devices: u32) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iotsec"))
            .current_dir(dir.path())
            .args([
                "up",
                "--port",
                &mqtt_port.to_string(),
                "--web-port",
                &web_port.to_string(),
                "--devices",
                &devices.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("up-stderr.log")).unwrap())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut up = Up {
            child,
            lines,
            seen: Vec::new(),
            mqtt_port,
            web_port,
        };
        up.wait_for("Press Ctrl-C");
        up
    }

    pub fn wait_for(&mut self, needle: &str) {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no {needle:?} in {:#?}", self.seen));
            let hit = l.contains(needle);
            self.seen.push(l);
            if hit {
                return;
            }
        }
    }

    /// The admin token printed on the first run.
    pub fn admin_token(&self) -> Option<String> {
        let i = self
            .seen
            .iter()
            .position(|l| l.starts_with("admin token"))?;
        Some(self.seen[i + 1].trim().to_string())
    }

    pub fn broker_pid(&self) -> i32 {
        let l = self.seen.iter().find(|l| l.contains("(pid ")).unwrap();
        l.split("(pid ")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Every process whose parent is `up` (the broker and the device agents).
    pub fn children(&self) -> Vec<i32> {
        let me = self.child.id().to_string();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
            let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
            if after.split_whitespace().nth(1) == Some(me.as_str()) {
                out.push(pid);
            }
        }
        out
    }

    pub fn interrupt(mut self) -> i32 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

impl Drop for Up {
    /// A failed test must not leave the stack running: SIGINT (which stops the broker and the
    /// devices), then SIGKILL after 10 s.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn alive(pid: i32) -> bool {
    // A zombie has exited; only a running process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, a)| a.split_whitespace().next().map(|st| st != "Z"))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

/// Waits until every device has readings in the API and is online; returns the devices.
pub fn wait_for_fleet(client: &Client, token: &str, n: usize) -> (Duration, serde_json::Value) {
    let start = Instant::now();
    loop {
        let r = client.get("/api/devices", Some(token));
        if r.status == 200 {
            let v = r.json();
            let devices = v["devices"].as_array().unwrap();
            if devices.len() == n
                && devices
                    .iter()
                    .all(|d| d["online"] == true && d["accepted"].as_u64().unwrap_or(0) > 0)
            {
                return (start.elapsed(), v);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "devices' data did not reach the API: {}",
            r.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ca(dir: &TestDir) -> std::path::PathBuf {
    dir.join("iotsec-data/pki/ca.crt")
}

#[test]
fn up_from_empty_dir_runs_devices_into_the_api_stops_cleanly_and_reuses_data() {
    require_mosquitto();
    let dir = TestDir::new();
    let (mqtt, web) = (free_port(), free_port());
    let started = Instant::now();
    let up = Up::start(&dir, mqtt, web, 3);
    assert!(
        up.seen.iter().any(|l| l.contains("created")),
        "{:#?}",
        up.seen
    );
    assert!(
        up.seen
            .iter()
            .any(|l| l.contains(&format!("dashboard: https://127.0.0.1:{web}/"))),
        "{:#?}",
        up.seen
    );
    let token = up
        .admin_token()
        .expect("admin token printed on the first run");
    assert!(token.starts_with("iotsec_"));
    let client = Client::new(&ca(&dir), web);
    let (took, fleet) = wait_for_fleet(&client, &token, 3);
    eprintln!(
        "up: stack ready and data from 3 devices in the API {:?} after start ({took:?} after the prompt)",
        started.elapsed()
    );
    let ids: Vec<&str> = fleet["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["device-1", "device-2", "device-3"]);
    let telemetry = client
        .get("/api/devices/device-1/telemetry", Some(&token))
        .json();
    assert!(telemetry["readings"][0]["payload"]["temperature"].is_number());
    // The printed mosquitto_sub line works as pasted: it shows the devices' signed telemetry.
    let printed = |tool: &str| {
        up.seen
            .iter()
            .find(|l| l.trim_start().starts_with(tool))
            .unwrap_or_else(|| panic!("no {tool} line in {:#?}", up.seen))
            .trim()
            .to_string()
    };
    let sub = iotsec_testkit::run(
        Command::new("sh")
            .current_dir(dir.path())
            .arg("-c")
            .arg(format!("{} -C 1 -W 20", printed("mosquitto_sub"))),
        Duration::from_secs(30),
    );
    assert_eq!(sub.code, 0, "{}", sub.stderr);
    assert!(
        sub.stdout.starts_with("devices/device-") && sub.stdout.contains("\"sig\""),
        "{}",
        sub.stdout
    );
    // The printed mosquitto_pub line gets through the broker (the device's own topic) and its
    // unsigned message is rejected by the ingest.
    let before = rejected_total(&client, &token);
    let publish = iotsec_testkit::run(
        Command::new("sh")
            .current_dir(dir.path())
            .arg("-c")
            .arg(printed("mosquitto_pub")),
        Duration::from_secs(30),
    );
    assert_eq!(publish.code, 0, "{}", publish.stderr);
    crate::stack::wait_until(Duration::from_secs(20), || {
        rejected_total(&client, &token) > before
    });
    // AUDIT's "iotsec deployment" fixture is exactly what `up` created, scanned live (only the
    // stack's own two ports): no high or critical finding.
    let (mqtt_port, web_port) = (up.mqtt_port.to_string(), up.web_port.to_string());
    let ports = format!("{mqtt_port},{web_port}");
    let audit = crate::iotsec(
        dir.path(),
        &[
            "audit",
            "--pki",
            "iotsec-data/pki",
            "--mosquitto-conf",
            "iotsec-data/broker/mosquitto.conf",
            "--server-config",
            "iotsec-data/server.toml",
            "--device-config",
            "iotsec-data/bundles/device-1/device.toml",
            "--host",
            "127.0.0.1",
            "--ports",
            &ports,
            "--format",
            "json",
            "--fail-on",
            "high",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&audit.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", audit.stdout, audit.stderr));
    let severe: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "high" || f["severity"] == "critical")
        .collect();
    assert!(severe.is_empty(), "{severe:#?}");
    let statuses: Vec<(String, String)> = report["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["category"].to_string(), c["status"].to_string()))
        .collect();
    eprintln!(
        "audit of the up deployment: {statuses:?}\n{:#}",
        report["findings"]
    );
    let assessed = statuses
        .iter()
        .filter(|(_, st)| !st.contains("not"))
        .count();
    assert!(assessed >= 7, "most categories assessed: {statuses:?}");
    assert_eq!(audit.code, 0, "{}", audit.stderr);
    // The audit report for the dashboard is written in the background.
    crate::stack::wait_until(Duration::from_secs(30), || {
        client.get("/api/audit", Some(&token)).status == 200
    });
    // Secrets on disk are private.
    use std::os::unix::fs::PermissionsExt;
    for f in ["keys/master.key", "tokens.json", "pki/ca.key"] {
        let mode = std::fs::metadata(dir.join("iotsec-data").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others");
    }

    let broker = up.broker_pid();
    let children = up.children();
    assert!(
        children.len() >= 4,
        "broker + 3 device agents: {children:?}"
    );
    assert!(children.contains(&broker));
    assert_eq!(up.interrupt(), 0);
    for pid in children {
        assert!(!alive(pid), "process {pid} left running after Ctrl-C");
    }
    let accepted_before: u64 = fleet_total(&dir);

    // Second run: same CA, no new token, the old token still works, the data is kept.
    let ca_pem = std::fs::read(ca(&dir)).unwrap();
    let again = Up::start(&dir, mqtt, web, 3);
    assert!(
        again.seen.iter().any(|l| l.contains("reused")),
        "{:#?}",
        again.seen
    );
    assert!(again.admin_token().is_none(), "a second admin token");
    assert_eq!(std::fs::read(ca(&dir)).unwrap(), ca_pem);
    let r = client.get("/api/devices", Some(&token));
    assert_eq!(r.status, 200);
    let total: u64 = r.json()["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["accepted"].as_u64().unwrap())
        .sum();
    assert!(total >= accepted_before, "{total} < {accepted_before}");
    let children = again.children();
    assert_eq!(again.interrupt(), 0);
    for pid in children {
        assert!(!alive(pid), "process {pid} left running after Ctrl-C");
    }
}

/// Rejected messages over every reason, as the API counts them.
fn rejected_total(client: &Client, token: &str) -> u64 {
    client.get("/api/rejections", Some(token)).json()["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum()
}

fn fleet_total(dir: &TestDir) -> u64 {
    let db = rusqlite::Connection::open(dir.join("iotsec-data/iotsec.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM readings", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .unwrap()
}
