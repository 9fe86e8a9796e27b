//! A whole secured stack for end-to-end tests: PKI, hardened Mosquitto, `iotsec serve` as a
//! child process, devices provisioned with `iotsec device add`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use iotsec_msg::key::{KeyMaterial, Kid, derive_device_key};
use iotsec_msg::v2::Envelope;
use iotsec_msg::{DeviceId, MsgKey, Signer};
use iotsec_pki::KeyAlgorithm;
use iotsec_testkit::{Output, TestBroker, TestDir, TestPki, run};

use crate::iotsec;

pub const MASTER: [u8; 32] = [0x42; 32];
/// The tutorial's fleet-wide v1 key, as existing devices carry it.
pub const LEGACY_KEY: &[u8; 32] = b"your-32-byte-secret-key-here!!!!";

pub struct Stack {
    pub root: TestDir,
    pub _pki: TestPki,
    pub broker: TestBroker,
    pub server_toml: PathBuf,
    pub serve: Option<Child>,
}

impl Stack {
    /// PKI + broker + server.toml; devices registered with `iotsec device add` (bundles under
    /// `bundles/<id>`).
    pub fn new(devices: &[&str]) -> Stack {
        let root = TestDir::new();
        let pki = TestPki::new(&root, KeyAlgorithm::P256, &[]);
        let broker = TestBroker::start(&root, &pki);
        std::fs::create_dir_all(root.join("keys")).unwrap();
        std::fs::write(root.join("keys/master.key"), MASTER).unwrap();
        std::fs::write(root.join("keys/legacy.key"), LEGACY_KEY).unwrap();
        let server_toml = root.join("server.toml");
        std::fs::write(
            &server_toml,
            format!(
                "[broker]\nhost = \"localhost\"\nport = {port}\nclient_id = \"iotsec-ingest\"\n\
                 [tls]\nca = \"pki/ca.crt\"\ncert = \"pki/devices/iotsec-server.crt\"\nkey = \"pki/devices/iotsec-server.key\"\n\
                 [keys]\nmaster = \"keys/master.key\"\nlegacy = \"keys/legacy.key\"\n\
                 [storage]\nsqlite = \"iotsec.db\"\n\
                 [provision]\npki = \"pki\"\nbroker_config = \"broker\"\nbundles = \"bundles\"\n",
                port = broker.port
            ),
        )
        .unwrap();
        let stack = Stack {
            root,
            _pki: pki,
            broker,
            server_toml,
            serve: None,
        };
        for d in devices {
            stack.add_device(d, &[]);
        }
        stack
    }

    pub fn add_device(&self, id: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "device",
            "add",
            id,
            "--config",
            self.server_toml.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = iotsec(self.root.path(), &args);
        assert_eq!(out.code, 0, "device add {id}: {}", out.stderr);
        out
    }

    pub fn bundle(&self, id: &str) -> PathBuf {
        self.root.join("bundles").join(id)
    }

    pub fn start_serve(&mut self) {
        let log = std::fs::File::create(self.root.join(format!(
            "serve-{}.log",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        )))
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_iotsec"))
            .current_dir(self.root.path())
            .args(["serve", "--config", self.server_toml.to_str().unwrap()])
            // The batch commits too, so that a failed test's log tail shows what was stored.
            .env("RUST_LOG", "info,iotsec_server::service=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.serve = Some(child);
        // Ready when the broker logs the ingest's connection.
        wait_until(Duration::from_secs(20), || {
            self.broker
                .process
                .log_text()
                .matches("as iotsec-ingest")
                .count()
                > 0
        });
    }

    pub fn kill_serve(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop_serve(&mut self) {
        if let Some(mut c) = self.serve.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    pub fn db(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.root.join("iotsec.db")).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
    }

    pub fn rejections(&self, reason: &str) -> i64 {
        self.db()
            .query_row(
                "SELECT count FROM rejection_counts WHERE reason = ?1",
                [reason],
                |r| r.get(0),
            )
            .unwrap_or(0)
    }

    /// mosquitto_pub as device `id` (its own certificate from the PKI bundle).
    pub fn raw_publish(&self, id: &str, topic: &str, payload: &[u8]) -> Output {
        let bundle = self.bundle(id);
        let file = self.root.join("payload.bin");
        std::fs::write(&file, payload).unwrap();
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.broker.port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
        ])
        .arg("-f")
        .arg(&file)
        .arg("--cafile")
        .arg(bundle.join("ca.crt"))
        .arg("--cert")
        .arg(bundle.join("device.crt"))
        .arg("--key")
        .arg(bundle.join("device.key"));
        run(&mut cmd, Duration::from_secs(10))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill_serve();
        if std::thread::panicking() {
            // Show what the servers said: the temporary directory is gone after this.
            if let Ok(entries) = std::fs::read_dir(self.root.path()) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".log") {
                        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(150).collect();
                        eprintln!("--- {name} (last lines) ---");
                        for l in tail.iter().rev() {
                            eprintln!("{l}");
                        }
                    }
                }
            }
        }
    }
}

/// A v2 message from `device` signed with `master`'s derivation (or another master to forge).
pub fn signed_v2(device: &str, seq: u64, master: &[u8; 32], payload: &str) -> Vec<u8> {
    let kid = Kid::new(DeviceId::new(device).unwrap(), 1);
    let key = derive_device_key(&KeyMaterial::new(master.to_vec()).unwrap(), &kid);
    let mut out = Vec::new();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    Signer::new(MsgKey::new(key.expose()).unwrap())
        .sign_v2(payload.as_bytes(), &Envelope { kid, ts, seq }, &mut out)
        .unwrap();
    out
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[allow(dead_code)]
pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
