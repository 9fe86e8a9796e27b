//! iotsec-testkit: what the integration tests share (dev-only).
//!
//! * [`TestDir`]: a temporary directory the `mosquitto` user can enter (Mosquitto started as
//!   root drops to that user before reading its certificates).
//! * [`TestPki`]: a CA, a server certificate for `localhost`/`127.0.0.1`, devices and the
//!   `iotsec-server` service identity.
//! * [`TestBroker`]: the hardened Mosquitto config from `iotsec-broker` on a free loopback
//!   port, started and stopped (by pid, on drop) by the test.
//! * [`require_tool`]: a missing tool fails the test with the install command, never skips it.
//!
//! Tests only ever bind 127.0.0.1 on ports the kernel hands out (port 0), and only connect to
//! servers they started.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

pub mod postgres;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use iotsec_broker::process::{BrokerProcess, Log};
use iotsec_broker::render::{HardenedOptions, write_hardened};
use iotsec_pki::{
    Authority, CaOptions, DeviceId, DeviceOptions, KeyAlgorithm, Role, ServerOptions,
};

/// The service identity the tests use for the ingest.
pub const SERVICE_ID: &str = "iotsec-server";

/// A temporary directory (mode 0755) removed on drop, unless `IOTSEC_KEEP_TEST_DIRS` is set
/// (for reading a failed run's logs afterwards).
#[derive(Debug)]
pub struct TestDir(tempfile::TempDir);

impl TestDir {
    /// Creates one under the system temp dir.
    pub fn new() -> Self {
        let mut dir = tempfile::Builder::new()
            .prefix("iotsec-test-")
            .tempdir()
            .expect("create temp dir");
        if std::env::var_os("IOTSEC_KEEP_TEST_DIRS").is_some() {
            dir.disable_cleanup(true);
        }
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(dir)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// A path inside it.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.path().join(p)
    }
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Fails the test with an install hint when `tool` is not on PATH.
pub fn require_tool(tool: &str, install: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{tool}`, which is not installed: {install} (scripts/test installs it)"
    );
}

/// Checks that mosquitto and its clients are installed.
pub fn require_mosquitto() {
    require_tool(
        "mosquitto",
        "sudo apt-get install -y mosquitto mosquitto-clients",
    );
    require_tool(
        "mosquitto_pub",
        "sudo apt-get install -y mosquitto mosquitto-clients",
    );
}

/// A PKI in a test directory.
#[derive(Debug)]
pub struct TestPki {
    /// The PKI directory.
    pub dir: PathBuf,
    /// The CA.
    pub ca: Authority,
}

impl TestPki {
    /// CA + server (`localhost`, `127.0.0.1`) + the given devices + the service identity, all
    /// with `key`.
    pub fn new(root: &TestDir, key: KeyAlgorithm, devices: &[&str]) -> TestPki {
        let dir = root.join("pki");
        let mut ca = Authority::init(
            &dir,
            &CaOptions {
                key,
                ..CaOptions::default()
            },
        )
        .expect("pki init");
        ca.issue_server(&ServerOptions {
            host: "localhost".into(),
            sans: vec!["127.0.0.1".into()],
            key: None,
            key_file: None,
            stem: "server".into(),
            days: 30,
            overwrite: iotsec_pki::Overwrite::Refuse,
        })
        .expect("pki server");
        let ids: Vec<DeviceId> = devices.iter().map(|d| DeviceId::new(d).unwrap()).collect();
        if !ids.is_empty() {
            ca.issue_devices(&ids, &DeviceOptions::default())
                .expect("pki device");
        }
        ca.issue_devices(
            &[DeviceId::new(SERVICE_ID).unwrap()],
            &DeviceOptions {
                role: Role::Service,
                ..DeviceOptions::default()
            },
        )
        .expect("pki service identity");
        TestPki { dir, ca }
    }

    /// `ca.crt`.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `(cert, key)` of a device or service identity.
    pub fn client(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join("devices").join(format!("{id}.crt")),
            self.dir.join("devices").join(format!("{id}.key")),
        )
    }
}

/// Mosquitto with the hardened config on a free loopback port.
#[derive(Debug)]
pub struct TestBroker {
    /// The rendered config directory.
    pub dir: PathBuf,
    /// The port.
    pub port: u16,
    /// The running process (stopped on drop).
    pub process: BrokerProcess,
}

impl TestBroker {
    /// Renders the config from `pki` into `root/broker` and starts Mosquitto, retrying on
    /// another port if the one picked was taken in between.
    pub fn start(root: &TestDir, pki: &TestPki) -> TestBroker {
        require_mosquitto();
        let dir = root.join("broker");
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut opts = HardenedOptions::new(&pki.dir, &dir);
            opts.port = port;
            write_hardened(&opts).expect("broker config");
            match BrokerProcess::spawn(
                &dir,
                Log::File(root.join("mosquitto.log")),
                Duration::from_secs(10),
            ) {
                Ok(process) => {
                    return TestBroker {
                        dir: std::fs::canonicalize(&dir).unwrap(),
                        port,
                        process,
                    };
                }
                Err(e) => last_err = e.to_string(),
            }
        }
        panic!("mosquitto did not start: {last_err}");
    }

    /// Crashes the broker (`kill -9`: no clean shutdown, no final persistence save) and starts
    /// it again on the same port.
    pub fn crash_and_restart(&mut self, root: &TestDir) {
        self.process.kill_hard();
        self.process = BrokerProcess::spawn(
            &self.dir,
            Log::File(root.join("mosquitto-after-crash.log")),
            Duration::from_secs(10),
        )
        .expect("restart mosquitto after kill -9");
    }

    /// Restarts the broker process on the same port (after a crash or a kill).
    pub fn restart(&mut self, root: &TestDir) {
        self.process.stop();
        self.process = BrokerProcess::spawn(
            &self.dir,
            Log::File(root.join("mosquitto-restarted.log")),
            Duration::from_secs(10),
        )
        .expect("restart mosquitto");
    }
}

/// Output of a client command.
#[derive(Debug)]
pub struct Output {
    /// Exit code (-1 when killed).
    pub code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
}

/// Runs a command with a timeout and collects its output.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Output {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout,
        stderr,
    }
}
