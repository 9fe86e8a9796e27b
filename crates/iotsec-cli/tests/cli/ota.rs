//! OTA distribution acceptance: `iotsec fw publish`, rollouts driven by `iotsec serve`
//! (notices over real Mosquitto, downloads from the real HTTPS server with the device
//! certificate), device agents running as the slot program of `iotsec fw supervise`.
//!
//! The "firmware" images are shell scripts: a good one execs `iotsec device run` (which
//! confirms once its signed online status is acked), bad ones cannot reach the broker (the
//! broker address is a socket this test opened and never answers), crash (exit 3) or hang
//! (SIGSTOP themselves). Confirm deadlines are a few seconds.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iotsec_testkit::free_port;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::iotsec;
use crate::stack::{Stack, wait_until};

const HW: &str = "acme-gw";

/// `(state, reason, progress, version)` of a device's latest OTA report.
type OtaRow = (String, Option<String>, Option<i64>, Option<String>);
const IOTSEC: &str = env!("CARGO_BIN_EXE_iotsec");

/// A stack with firmware distribution: broker, `iotsec serve` with [web] and [ota], a vendor
/// signing key, devices with bundles and factory firmware 1.0.0 in their slots.
struct Ota {
    s: Stack,
    web_port: u16,
    serve_log: PathBuf,
    devices: Vec<Supervised>,
    /// Held open, never accepted: a broker address that never answers.
    blackhole: std::net::TcpListener,
}

impl Ota {
    fn new(devices: &[&str]) -> Ota {
        let s = Stack::new(&[]);
        let web_port = free_port();
        crate::web::add_web_section(&s, web_port, "");
        let mut text = std::fs::read_to_string(&s.server_toml).unwrap();
        text.push_str(&format!(
            "[ota]\nreleases = \"releases\"\ntrust = [\"keys/vendor.pub\"]\nhardware = [\"{HW}\"]\n\
             url = \"https://localhost:{web_port}\"\n"
        ));
        std::fs::write(&s.server_toml, text).unwrap();
        ok(iotsec(
            s.root.path(),
            &["fw", "keygen", "--out", "keys/vendor"],
        ));
        for d in devices {
            s.add_device(d, &[]);
        }
        let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut ota = Ota {
            s,
            web_port,
            serve_log: PathBuf::new(),
            devices: Vec::new(),
            blackhole,
        };
        ota.start_serve();
        ota
    }

    fn root(&self) -> &Path {
        self.s.root.path()
    }

    fn config(&self) -> &str {
        self.s.server_toml.to_str().unwrap()
    }

    fn start_serve(&mut self) {
        self.serve_log = self.s.root.join("serve-ota.log");
        let child = Command::new(IOTSEC)
            .current_dir(self.root())
            .args(["serve", "--config", self.config()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&self.serve_log).unwrap())
            .spawn()
            .unwrap();
        self.s.serve = Some(child);
        let port = self.web_port;
        wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        wait_until(Duration::from_secs(20), || {
            self.s
                .broker
                .process
                .log_text()
                .contains("as iotsec-ingest")
        });
    }

    fn serve_log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.serve_log).unwrap_or_default())
    }

    /// A firmware script; `padding` bytes of comments after the `exec` line make it larger.
    fn image(&self, name: &str, body: &str, padding: usize) -> PathBuf {
        let path = self.s.root.join(format!("{name}.img"));
        let mut text = format!("#!/bin/sh\n# firmware {name}\n{body}\n").into_bytes();
        let line = b"# ................................................................padding\n";
        while text.len() < padding {
            text.extend_from_slice(line);
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Good firmware: the device agent with the device's own configuration.
    fn good(&self, name: &str, device: &str, padding: usize) -> PathBuf {
        let config = self.s.bundle(device).join("device.toml");
        self.image(
            name,
            &format!("exec {IOTSEC} device run --config {}", config.display()),
            padding,
        )
    }

    /// Firmware that runs but never reaches the broker (its broker address never answers).
    fn no_broker(&self, name: &str, device: &str) -> PathBuf {
        let bundle = self.s.bundle(device);
        let text = std::fs::read_to_string(bundle.join("device.toml")).unwrap();
        let port = self.s.broker.port;
        let blackhole = self.blackhole.local_addr().unwrap().port();
        let bad = text.replace(
            &format!("broker = \"localhost:{port}\""),
            &format!("broker = \"localhost:{blackhole}\""),
        );
        assert_ne!(bad, text, "broker line not found in {text}");
        std::fs::write(bundle.join("no-broker.toml"), bad).unwrap();
        self.image(
            name,
            &format!(
                "exec {IOTSEC} device run --config {}",
                bundle.join("no-broker.toml").display()
            ),
            0,
        )
    }

    fn sign(&self, image: &Path, version: &str, counter: u32, key: &str, hw: &str) -> PathBuf {
        let out = image.with_extension(format!("{version}.fw"));
        ok(iotsec(
            self.root(),
            &[
                "fw",
                "sign",
                "--key",
                key,
                "--version",
                version,
                "--security-counter",
                &counter.to_string(),
                "--hw",
                hw,
                image.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
        ));
        out
    }

    fn publish(&self, bundle: &Path) -> String {
        let out = iotsec(
            self.root(),
            &[
                "fw",
                "publish",
                bundle.to_str().unwrap(),
                "--config",
                self.config(),
                "--json",
            ],
        );
        assert_eq!(out.code, 0, "publish: {}{}", out.stdout, out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["release"]["id"].as_str().unwrap().to_string()
    }

    fn rollout(&self, release: &str, extra: &[&str]) -> i64 {
        let mut args = vec![
            "fw",
            "rollout",
            "start",
            release,
            "--config",
            self.config(),
            "--json",
        ];
        args.extend_from_slice(extra);
        let out = iotsec(self.root(), &args);
        assert_eq!(out.code, 0, "rollout start: {}{}", out.stdout, out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["id"].as_i64().unwrap()
    }

    fn rollout_status(&self, id: i64) -> serde_json::Value {
        let out = iotsec(
            self.root(),
            &[
                "fw",
                "rollout",
                "status",
                &id.to_string(),
                "--config",
                self.config(),
                "--json",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    }

    /// Factory state: 1.0.0 installed, booted, confirmed and reported in `<bundle>/slots`,
    /// then the supervisor running it.
    fn boot_device(&mut self, id: &str, factory: &Path, confirm_timeout: &str, ota_extra: &str) {
        let bundle = self.s.bundle(id);
        if !ota_extra.is_empty() {
            let mut text = std::fs::read_to_string(bundle.join("device.toml")).unwrap();
            assert!(
                text.trim_end()
                    .ends_with(&format!("hardware_id = \"{HW}\"")),
                "{text}"
            );
            text.push_str(ota_extra);
            std::fs::write(bundle.join("device.toml"), text).unwrap();
        }
        let slots = bundle.join("slots");
        let slots = slots.to_str().unwrap();
        ok(iotsec(
            self.root(),
            &[
                "fw",
                "install",
                factory.to_str().unwrap(),
                "--slots",
                slots,
                "--trust",
                "keys/vendor.pub",
                "--hw",
                HW,
            ],
        ));
        ok(iotsec(self.root(), &["fw", "boot", "--slots", slots]));
        ok(iotsec(self.root(), &["fw", "confirm", "--slots", slots]));
        ok(iotsec(
            self.root(),
            &["fw", "report", "--slots", slots, "--ack"],
        ));
        let sup = Supervised::start(&self.s, id, confirm_timeout);
        self.devices.push(sup);
        self.wait_firmware(id, "1.0.0");
    }

    fn supervised(&self, id: &str) -> &Supervised {
        self.devices.iter().find(|d| d.id == id).unwrap()
    }

    fn wait_firmware(&self, id: &str, version: &str) {
        let sql =
            format!("SELECT COUNT(*) FROM devices WHERE id = '{id}' AND firmware = '{version}'");
        wait_for(
            Duration::from_secs(60),
            || self.s.count(&sql) == 1,
            || self.diagnose(id),
        );
    }

    /// The device's latest OTA report.
    fn ota(&self, id: &str) -> Option<OtaRow> {
        self.s
            .db()
            .query_row(
                "SELECT state, reason, progress, version FROM device_ota WHERE device = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .ok()
    }

    fn wait_ota(&self, id: &str, state: &str) -> OtaRow {
        wait_for(
            Duration::from_secs(90),
            || self.ota(id).is_some_and(|o| o.0 == state),
            || self.diagnose(id),
        );
        self.ota(id).unwrap()
    }

    fn diagnose(&self, id: &str) -> String {
        let sup = self
            .devices
            .iter()
            .find(|d| d.id == id)
            .map(Supervised::log);
        format!(
            "device_ota: {:?}\n--- supervisor + agent of {id} ---\n{}\n--- serve ---\n{}",
            self.ota(id),
            tail(&sup.unwrap_or_default(), 60),
            tail(&self.serve_log(), 60)
        )
    }

    fn slots_status(&self, id: &str) -> serde_json::Value {
        let slots = self.s.bundle(id).join("slots");
        let out = iotsec(
            self.root(),
            &["fw", "status", "--slots", slots.to_str().unwrap(), "--json"],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    }

    fn device_list(&self) -> String {
        let out = iotsec(self.root(), &["device", "list", "--config", self.config()]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    }

    /// The `firmware download` lines the server logged for `device`: `(from, bytes)`.
    fn downloads(&self, device: &str) -> Vec<(u64, u64)> {
        let field = |line: &str, key: &str| -> u64 {
            line.split(&format!(" {key}="))
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        self.serve_log()
            .lines()
            .filter(|l| l.contains("firmware download") && l.contains(&format!("device={device}")))
            .map(|l| (field(l, "from"), field(l, "bytes")))
            .collect()
    }
}

impl Drop for Ota {
    fn drop(&mut self) {
        for d in &mut self.devices {
            d.kill();
        }
        if std::thread::panicking() {
            for d in &self.devices {
                eprintln!(
                    "--- supervisor + agent of {} ---\n{}",
                    d.id,
                    tail(&d.log(), 80)
                );
            }
        }
    }
}

/// `iotsec fw supervise` for one device (stdout + stderr, its agents' logs too, in a file).
struct Supervised {
    id: String,
    child: Child,
    log: PathBuf,
}

impl Supervised {
    fn start(s: &Stack, id: &str, confirm_timeout: &str) -> Supervised {
        use std::os::unix::process::CommandExt as _;
        let bundle = s.bundle(id);
        let log = s.root.join(format!("device-{id}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(IOTSEC)
            .current_dir(&bundle)
            .args([
                "fw",
                "supervise",
                "--slots",
                bundle.join("slots").to_str().unwrap(),
                "--confirm-timeout",
                confirm_timeout,
                "--kill-grace",
                "500ms",
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap();
        Supervised {
            id: id.to_string(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Pids of the programs the supervisor started (each leads its own process group).
    fn programs(&self) -> Vec<i32> {
        self.log()
            .lines()
            .filter_map(|l| l.split(" as pid ").nth(1))
            .filter_map(|r| r.split(' ').next()?.parse().ok())
            .collect()
    }

    /// Power cut: SIGKILL to the supervisor and to every program it started.
    fn kill(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
        for pid in self.programs() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The text of a log without its colour escapes (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn ok(out: iotsec_testkit::Output) -> iotsec_testkit::Output {
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    out
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool, diagnose: impl Fn() -> String) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "condition not met within {timeout:?}\n{}",
            diagnose()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTPS request with a client certificate and extra headers; `(status, headers, body)`.
fn https(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    port: u16,
    request: &str,
) -> (u16, String, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(iotsec_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{extra}\r\n")
}

#[test]
fn publish_and_roll_out_to_one_device_downloads_installs_trial_and_confirms() {
    let mut o = Ota::new(&["dev-1"]);
    let v1 = o.good("v1", "dev-1", 0);
    let v1 = o.sign(&v1, "1.0.0", 1, "keys/vendor.key", HW);
    o.boot_device("dev-1", &v1, "20s", "");
    let v2 = o.good("v2", "dev-1", 256 * 1024);
    let v2 = o.sign(&v2, "2.0.0", 2, "keys/vendor.key", HW);
    let release = o.publish(&v2);
    // Publishing twice is idempotent.
    let again = iotsec(
        o.root(),
        &[
            "fw",
            "publish",
            v2.to_str().unwrap(),
            "--config",
            o.config(),
        ],
    );
    assert!(
        again.code == 0 && again.stdout.contains("already published"),
        "{again:?}"
    );

    let rollout = o.rollout(&release, &["--device", "dev-1"]);
    o.wait_ota("dev-1", "confirmed");
    o.wait_firmware("dev-1", "2.0.0");
    // The server's ack of the outcome reaches the device after the server stored it.
    wait_until(Duration::from_secs(10), || {
        o.slots_status("dev-1")["report_pending"] == false
    });
    let status = o.slots_status("dev-1");
    assert_eq!(status["active_version"], "2.0.0", "{status}");
    assert_eq!(status["security_counter"], 2);
    assert_eq!(
        status["report_pending"], false,
        "the server acked the outcome: {status}"
    );
    let list = o.device_list();
    let line = list.lines().find(|l| l.starts_with("dev-1")).unwrap();
    assert!(
        line.contains("2.0.0") && line.contains("confirmed"),
        "{list}"
    );
    wait_until(Duration::from_secs(10), || {
        o.rollout_status(rollout)["status"] == "completed"
    });
    // The device fetched the image once, from just after the signed manifest to the end.
    let downloads = o.downloads("dev-1");
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    let sup = o.supervised("dev-1").log();
    assert!(sup.contains("2.0.0 confirmed"), "{sup}");
    assert!(
        sup.contains("update accepted; downloading"),
        "{}",
        tail(&sup, 40)
    );

    // The download endpoint: device certificate required; ranges; 416 past the end.
    let ca = o.s.root.join("pki/ca.crt");
    let bundle = o.s.bundle("dev-1");
    let dev = (bundle.join("device.crt"), bundle.join("device.key"));
    let path = format!("/firmware/{release}");
    let total = std::fs::metadata(&v2).unwrap().len();
    let (code, _, _) = https(&ca, None, o.web_port, &get(&path, ""));
    assert_eq!(code, 401);
    let service = (
        o.s.root.join("pki/devices/iotsec-server.crt"),
        o.s.root.join("pki/devices/iotsec-server.key"),
    );
    let (code, _, _) = https(
        &ca,
        Some((&service.0, &service.1)),
        o.web_port,
        &get(&path, ""),
    );
    assert_eq!(
        code, 403,
        "a valid certificate that is not a registered device"
    );
    let (code, head, body) = https(
        &ca,
        Some((&dev.0, &dev.1)),
        o.web_port,
        &get(&path, "Range: bytes=10-19\r\n"),
    );
    assert_eq!(code, 206);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-range: bytes 10-19/{total}")),
        "{head}"
    );
    assert_eq!(body, std::fs::read(&v2).unwrap()[10..20].to_vec());
    let (code, head, _) = https(
        &ca,
        Some((&dev.0, &dev.1)),
        o.web_port,
        &get(&path, &format!("Range: bytes={total}-\r\n")),
    );
    assert_eq!(code, 416);
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-range: bytes */{total}")),
        "{head}"
    );
    let (code, _, body) = https(&ca, Some((&dev.0, &dev.1)), o.web_port, &get(&path, ""));
    assert_eq!((code, body.len() as u64), (200, total));
    let (code, _, _) = https(
        &ca,
        Some((&dev.0, &dev.1)),
        o.web_port,
        &get("/firmware/0000000000000000", ""),
    );
    assert_eq!(code, 404);
}

#[test]
fn a_download_cut_at_half_resumes_from_there() {
    let mut o = Ota::new(&["dev-r"]);
    let v1 = o.good("v1", "dev-r", 0);
    let v1 = o.sign(&v1, "1.0.0", 1, "keys/vendor.key", HW);
    // 2 MiB/s: the 6 MiB image takes about 3 s, long enough to cut it in the middle.
    o.boot_device("dev-r", &v1, "20s", "max_bytes_per_sec = 2097152\n");
    let v2 = o.good("v2", "dev-r", 6 << 20);
    let v2 = o.sign(&v2, "2.0.0", 1, "keys/vendor.key", HW);
    let size = std::fs::metadata(&v2).unwrap().len();
    let release = o.publish(&v2);
    o.rollout(&release, &["--device", "dev-r"]);

    wait_for(
        Duration::from_secs(60),
        || {
            o.ota("dev-r")
                .is_some_and(|r| r.0 == "downloading" && r.2.unwrap_or(0) >= 50)
        },
        || o.diagnose("dev-r"),
    );
    // Power cut: supervisor and agent killed at once.
    o.devices.iter_mut().for_each(Supervised::kill);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        matches!(o.s.serve.as_mut().unwrap().try_wait(), Ok(None)),
        "the server survives a device dropping its download"
    );
    let progress = o.ota("dev-r").unwrap().2.unwrap();
    assert!(progress < 100, "cut too late: {progress}%");
    // The operator sees the progress the device last reported.
    let list = o.device_list();
    assert!(
        list.lines().any(
            |l| l.starts_with("dev-r") && l.contains(&format!("downloading {progress}% 2.0.0"))
        ),
        "{list}"
    );
    let before = o.downloads("dev-r");
    assert_eq!(before.len(), 1, "{before:?}");
    let header = before[0].0;
    assert!(
        header > 0 && header < 2048,
        "the first request starts after the signed manifest: {before:?}"
    );

    // Power back: the old firmware's agent resumes by itself.
    o.devices.clear();
    let sup = Supervised::start(&o.s, "dev-r", "20s");
    o.devices.push(sup);
    o.wait_ota("dev-r", "confirmed");
    o.wait_firmware("dev-r", "2.0.0");
    let after = o.downloads("dev-r");
    assert_eq!(
        after.len(),
        2,
        "one request before the cut, one after: {after:?}"
    );
    let (from, bytes) = after[1];
    let image = size - header;
    let resumed_at = from - header;
    assert!(
        resumed_at * 100 >= image * 50 && resumed_at < image,
        "resumed at {resumed_at} of {image} image bytes (reported {progress}% before the cut)"
    );
    assert_eq!(
        from + bytes,
        size,
        "the resumed request covers exactly the rest"
    );
    let agent = o.supervised("dev-r").log();
    assert!(
        agent.contains("resuming an interrupted download"),
        "{}",
        tail(&agent, 40)
    );
}

#[test]
fn firmware_that_cannot_reach_the_broker_crashes_or_hangs_is_rolled_back_and_the_server_learns_why()
{
    let mut o = Ota::new(&["dev-nb", "dev-crash", "dev-hang"]);
    const DEADLINE: Duration = Duration::from_secs(5);
    let mut rollouts = Vec::new();
    for (id, version) in [
        ("dev-nb", "2.0.0"),
        ("dev-crash", "2.0.1"),
        ("dev-hang", "2.0.2"),
    ] {
        let v1 = o.good(&format!("{id}-v1"), id, 0);
        let v1 = o.sign(&v1, "1.0.0", 1, "keys/vendor.key", HW);
        o.boot_device(id, &v1, "5s", "");
        let bad = match id {
            "dev-nb" => o.no_broker(&format!("{id}-v2"), id),
            "dev-crash" => o.image(&format!("{id}-v2"), "sleep 0.2\nexit 3", 0),
            _ => o.image(&format!("{id}-v2"), "kill -STOP $$", 0),
        };
        let bad = o.sign(&bad, version, 1, "keys/vendor.key", HW);
        let release = o.publish(&bad);
        rollouts.push((id, o.rollout(&release, &["--device", id])));
    }
    // When each trial started and ended, as the supervisors log it (polled every 20 ms).
    let mut seen: std::collections::BTreeMap<&str, (Option<Instant>, Option<Instant>)> =
        Default::default();
    let start = Instant::now();
    while !(seen.len() == 3 && seen.values().all(|(a, b)| a.is_some() && b.is_some())) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "{seen:?}\n{}",
            o.diagnose("dev-nb")
        );
        for (id, _) in &rollouts {
            let log = o.supervised(id).log();
            let e = seen.entry(*id).or_default();
            if e.0.is_none() && log.contains("on trial (confirm within 5 s)") {
                e.0 = Some(Instant::now());
            }
            if e.1.is_none() && log.contains("slot B rolled back") {
                e.1 = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (id, (start, end)) in &seen {
        let took = end.unwrap() - start.unwrap();
        // Deadline, then at most the kill grace (500 ms), plus polling slack.
        assert!(
            took <= DEADLINE + Duration::from_millis(500 + 1500),
            "{id}: rolled back after {took:?}"
        );
    }
    for (id, reason) in [
        ("dev-nb", "deadline_passed"),
        ("dev-crash", "trial_exited"),
        ("dev-hang", "deadline_passed"),
    ] {
        let (_, got, _, version) = o.wait_ota(id, "rolled_back");
        assert_eq!(got.as_deref(), Some(reason), "{id}");
        assert!(version.is_some_and(|v| v.starts_with("2.0.")), "{id}");
        // The server's ack of the failure reaches the device after the server stored it.
        wait_until(Duration::from_secs(10), || {
            o.slots_status(id)["report_pending"] == false
        });
        // The old firmware runs again and is the active slot.
        let status = o.slots_status(id);
        assert_eq!(status["active_version"], "1.0.0", "{id}: {status}");
        assert_eq!(
            status["report_pending"], false,
            "{id}: the server acked the failure"
        );
        // Within the deadline: the supervisor's trial start and rollback, as it logged them.
        let log = o.supervised(id).log();
        assert!(log.contains("on trial (confirm within 5 s)"), "{log}");
        assert!(
            log.contains(&format!(
                "rolled back: {}",
                match reason {
                    "trial_exited" => "exited before confirming",
                    _ => "not confirmed before the deadline",
                }
            )),
            "{log}"
        );
    }
    // The failures are visible to the operator: device list and the rollouts.
    let list = o.device_list();
    for (id, reason) in [
        ("dev-nb", "deadline_passed"),
        ("dev-crash", "trial_exited"),
        ("dev-hang", "deadline_passed"),
    ] {
        let line = list.lines().find(|l| l.starts_with(id)).unwrap();
        assert!(
            line.contains("rolled_back") && line.contains(reason) && line.contains("1.0.0"),
            "{list}"
        );
    }
    for (id, rollout) in rollouts {
        // The server's next rollout tick (500 ms) records the halt.
        wait_until(Duration::from_secs(10), || {
            o.rollout_status(rollout)["status"] == "halted"
        });
        let v = o.rollout_status(rollout);
        assert_eq!(v["devices"][0]["state"], "rolled_back", "{id}: {v}");
    }
}

#[test]
fn a_stage_that_fails_over_the_threshold_halts_the_rollout_and_later_devices_are_never_told() {
    let mut o = Ota::new(&["st-1", "st-2", "st-3"]);
    for id in ["st-1", "st-2", "st-3"] {
        let v1 = o.good(&format!("{id}-v1"), id, 0);
        let v1 = o.sign(&v1, "1.0.0", 1, "keys/vendor.key", HW);
        o.boot_device(id, &v1, "5s", "");
    }
    let crash = o.image("crash", "exit 3", 0);
    let crash = o.sign(&crash, "2.0.0", 1, "keys/vendor.key", HW);
    let release = o.publish(&crash);
    // Every registered device (`--all` takes them by id: st-1 is the first stage).
    let rollout = o.rollout(
        &release,
        &["--all", "--stages", "1,100%", "--max-failure-rate", "0.2"],
    );
    o.wait_ota("st-1", "rolled_back");
    wait_until(Duration::from_secs(10), || {
        o.rollout_status(rollout)["status"] == "halted"
    });
    // Give a running rollout every chance to move on: it must not.
    std::thread::sleep(Duration::from_secs(2));
    let v = o.rollout_status(rollout);
    assert_eq!(v["halt"]["stage"], 1, "{v}");
    assert_eq!(
        (v["halt"]["failed"].as_u64(), v["halt"]["total"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(v["stages"], serde_json::json!([1, 2]));
    for d in ["st-2", "st-3"] {
        let entry = v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["device"] == d)
            .unwrap();
        assert_eq!(entry["state"], "waiting", "{v}");
        assert!(entry["notified_ms"].is_null());
        assert!(o.ota(d).is_none(), "{d} reported something: {:?}", o.ota(d));
        assert!(
            !o.supervised(d).log().contains("update notice"),
            "{d} was told"
        );
        assert!(
            !o.serve_log().contains(&format!("device={d}")),
            "the server never addressed {d}"
        );
        assert_eq!(o.slots_status(d)["state"], "idle");
    }
    assert!(o.serve_log().contains("rollout ended"));
    let text = iotsec(
        o.root(),
        &["fw", "rollout", "status", "--config", o.config()],
    );
    assert!(
        text.stdout
            .contains("halted in stage 1 of 2: 1 of 1 devices failed"),
        "{}",
        text.stdout
    );
}

#[test]
fn unsigned_wrong_key_and_wrong_hardware_releases_are_refused_by_publish_and_by_the_device() {
    let mut o = Ota::new(&["dev-x"]);
    let v1 = o.good("v1", "dev-x", 0);
    let v1 = o.sign(&v1, "1.0.0", 1, "keys/vendor.key", HW);
    o.boot_device("dev-x", &v1, "20s", "");
    ok(iotsec(o.root(), &["fw", "keygen", "--out", "keys/rogue"]));
    let img = o.good("v9", "dev-x", 0);
    let rogue = o.sign(&img, "9.0.0", 9, "keys/rogue.key", HW);
    let other_hw = o.sign(&img, "9.0.1", 9, "keys/vendor.key", "other-gw");
    let unsigned = o.s.root.join("unsigned.fw");
    std::fs::copy(&img, &unsigned).unwrap();
    let mut tampered = std::fs::read(o.sign(&img, "9.0.2", 9, "keys/vendor.key", HW)).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered_path = o.s.root.join("tampered.fw");
    std::fs::write(&tampered_path, &tampered).unwrap();
    for (file, why) in [
        (&unsigned, "malformed"),
        (&rogue, "not trusted"),
        (&other_hw, "other-gw"),
        (&tampered_path, "SHA-256"),
    ] {
        let out = iotsec(
            o.root(),
            &[
                "fw",
                "publish",
                file.to_str().unwrap(),
                "--config",
                o.config(),
            ],
        );
        assert_eq!(out.code, 1, "{file:?}: {out:?}");
        assert!(
            out.stdout.contains("rejected") && out.stdout.contains(why),
            "{file:?}: {}",
            out.stdout
        );
    }
    assert_eq!(o.s.count("SELECT COUNT(*) FROM releases"), 0);
    let stored: Vec<_> = std::fs::read_dir(o.s.root.join("releases"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(stored.is_empty(), "nothing refused is stored: {stored:?}");

    // A test acting as the server pushes them anyway; the URL names a real, published release,
    // so any download attempt would show in the server's log.
    let good = o.good("v2", "dev-x", 0);
    let good = o.sign(&good, "2.0.0", 2, "keys/vendor.key", HW);
    let real = o.publish(&good);
    let url = format!("https://localhost:{}/firmware/{real}", o.web_port);
    let manifest_of = |path: &Path| {
        let bytes = std::fs::read(path).unwrap();
        let len = 10 + u16::from_be_bytes([bytes[8], bytes[9]]) as usize + 1 + 8 + 64;
        base64_encode(&bytes[..len])
    };
    let cases = [
        (
            base64_encode(b"IOTSSIG1\x00\x10 this is no signed manifest at all"),
            "signed manifest",
        ),
        (manifest_of(&rogue), "not trusted"),
        (manifest_of(&other_hw), "hardware"),
    ];
    for (i, (manifest, why)) in cases.iter().enumerate() {
        let notice = format!(
            r#"{{"type":"update","rollout":0,"release":"forced{i}","version":"9.0.0","url":"{url}","manifest":"{manifest}"}}"#
        );
        publish_as_server(&o.s, "devices/dev-x/commands/ota", &notice);
        wait_for(
            Duration::from_secs(30),
            || {
                o.s.count(&format!(
                    "SELECT COUNT(*) FROM device_ota WHERE device = 'dev-x' AND state = 'rejected' AND release = 'forced{i}'"
                )) == 1
            },
            || o.diagnose("dev-x"),
        );
        let (_, reason, _, _) = o.ota("dev-x").unwrap();
        assert!(
            reason.as_deref().is_some_and(|r| r.contains(why)),
            "{why}: {reason:?}"
        );
    }
    assert!(
        o.downloads("dev-x").is_empty(),
        "nothing was downloaded: {:?}",
        o.downloads("dev-x")
    );
    let status = o.slots_status("dev-x");
    assert_eq!(
        (status["state"].as_str(), status["active_version"].as_str()),
        (Some("idle"), Some("1.0.0")),
        "{status}"
    );
}

/// mosquitto_pub with the service identity (the only one the ACL lets publish commands).
fn publish_as_server(s: &Stack, topic: &str, payload: &str) {
    let file = s.root.join("notice.json");
    std::fs::write(&file, payload).unwrap();
    let pki = s.root.join("pki");
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &s.broker.port.to_string(),
        "-q",
        "1",
        "-t",
        topic,
    ])
    .arg("-f")
    .arg(&file)
    .arg("--cafile")
    .arg(pki.join("ca.crt"))
    .arg("--cert")
    .arg(pki.join("devices/iotsec-server.crt"))
    .arg("--key")
    .arg(pki.join("devices/iotsec-server.key"));
    let out = iotsec_testkit::run(&mut cmd, Duration::from_secs(10));
    assert_eq!(out.code, 0, "mosquitto_pub: {}", out.stderr);
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The BENCHMARKS.md figure: a whole local update of a 64 MiB image (HTTPS download with the
/// device certificate + write into the slot with hashing + fsync + re-read and re-hash + boot
/// target), as the device measures it from the notice to the trial being set, and until the
/// new firmware confirmed; against `curl` fetching the same bytes over HTTPS from the same
/// server plus `openssl dgst -sha256` of them, in the same run. Best of 3 each.
///
/// `nice -n 10 cargo test --release -p iotsec-cli --test cli ota::bench -- --ignored --nocapture`
#[test]
#[ignore = "benchmark"]
fn bench_local_update_of_a_64_mib_image() {
    iotsec_testkit::require_tool("curl", "sudo apt-get install -y curl");
    const SIZE: usize = 64 << 20;
    let mut o = Ota::new(&["bench-1"]);
    let v1 = o.good("v1", "bench-1", 0);
    let v1 = o.sign(&v1, "1.0.0", 1, "keys/vendor.key", HW);
    o.boot_device("bench-1", &v1, "60s", "");
    let bundle = o.s.bundle("bench-1");
    let mut install = Vec::new();
    let mut until_confirmed = Vec::new();
    let mut baseline = Vec::new();
    for (round, version) in ["2.0.0", "3.0.0", "4.0.0"].iter().enumerate() {
        let img = o.good(&format!("bench-v{version}"), "bench-1", SIZE);
        let fw = o.sign(&img, version, 1, "keys/vendor.key", HW);
        let release = o.publish(&fw);
        let header = std::fs::metadata(&fw).unwrap().len() - std::fs::metadata(&img).unwrap().len();

        // Baseline: the same image bytes over HTTPS from the same server, then their SHA-256.
        let out = o.s.root.join("curl.bin");
        let start = Instant::now();
        let curl = iotsec_testkit::run(
            Command::new("curl")
                .args(["-sS", "--fail", "-r", &format!("{header}-"), "-o"])
                .arg(&out)
                .arg("--cacert")
                .arg(o.s.root.join("pki/ca.crt"))
                .arg("--cert")
                .arg(bundle.join("device.crt"))
                .arg("--key")
                .arg(bundle.join("device.key"))
                .arg(format!(
                    "https://localhost:{}/firmware/{release}",
                    o.web_port
                )),
            Duration::from_secs(120),
        );
        assert_eq!(curl.code, 0, "{}", curl.stderr);
        crate::openssl(o.root(), &["dgst", "-sha256", out.to_str().unwrap()]);
        baseline.push(start.elapsed());
        assert_eq!(
            std::fs::metadata(&out).unwrap().len(),
            std::fs::metadata(&img).unwrap().len()
        );

        let start = Instant::now();
        o.rollout(&release, &["--device", "bench-1"]);
        let confirmed = format!(
            "SELECT COUNT(*) FROM device_ota WHERE device = 'bench-1' AND state = 'confirmed' \
             AND version = '{version}'"
        );
        wait_for(
            Duration::from_secs(120),
            || o.s.count(&confirmed) == 1,
            || o.diagnose("bench-1"),
        );
        until_confirmed.push(start.elapsed());
        let log = o.supervised("bench-1").log();
        let ms: u64 = log
            .lines()
            .filter(|l| l.contains("update installed") && l.contains(&format!("version={version}")))
            .filter_map(|l| {
                l.split("elapsed_ms=")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .next()
            .unwrap_or_else(|| panic!("no install time in round {round}"));
        install.push(Duration::from_millis(ms));
    }
    let best = |v: &[Duration]| *v.iter().min().unwrap();
    eprintln!(
        "64 MiB update, best of 3 (all: install {install:?}, confirmed {until_confirmed:?}, baseline {baseline:?})"
    );
    eprintln!(
        "install (notice -> HTTPS download + write + fsync + re-read/re-hash + boot target): {:?}",
        best(&install)
    );
    eprintln!(
        "rollout start -> new firmware confirmed (+ notice, restart, reconnect): {:?}",
        best(&until_confirmed)
    );
    eprintln!(
        "curl over HTTPS + openssl dgst -sha256: {:?}",
        best(&baseline)
    );
    eprintln!(
        "ratio install / baseline: {:.2}",
        best(&install).as_secs_f64() / best(&baseline).as_secs_f64()
    );
}
