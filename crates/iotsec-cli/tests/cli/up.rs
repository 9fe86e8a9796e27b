//! `iotsec up`: from an empty directory to a working hardened broker, clean shutdown, reuse.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use iotsec_testkit::{TestDir, free_port, require_mosquitto, run};

struct Up {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Up {
    fn start(dir: &TestDir, port: u16) -> Up {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iotsec"))
            .current_dir(dir.path())
            .args(["up", "--port", &port.to_string(), "--devices", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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
        };
        up.wait_for("Press Ctrl-C");
        up
    }

    fn wait_for(&mut self, needle: &str) {
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

    /// The shell command printed after `header` (joined continuation lines).
    fn command_after(&self, header: &str) -> String {
        let i = self
            .seen
            .iter()
            .position(|l| l.starts_with(header))
            .unwrap();
        let mut cmd = String::new();
        for l in &self.seen[i + 1..] {
            if l.trim().is_empty() {
                break;
            }
            cmd.push_str(l.trim().trim_end_matches('\\'));
            cmd.push(' ');
        }
        cmd
    }

    fn broker_pid(&self) -> i32 {
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

    fn interrupt(mut self) -> i32 {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        status.code().unwrap_or(-1)
    }
}

#[test]
fn up_from_empty_dir_serves_tls_clients_and_stops_cleanly() {
    require_mosquitto();
    let dir = TestDir::new();
    let port = free_port();
    let up = Up::start(&dir, port);
    assert!(
        up.seen.iter().any(|l| l.contains("created")),
        "{:#?}",
        up.seen
    );
    let pid = up.broker_pid();

    // The printed commands work as printed.
    let sub = up.command_after("Subscribe as the ingest service");
    let publ = up.command_after("Publish as device-1");
    assert!(sub.contains(&format!("-p {port}")) && publ.contains("--cert"));
    let sub_cmd = format!("{sub} -C 1 -W 20");
    let sub_thread = std::thread::spawn(move || {
        run(
            Command::new("sh").arg("-c").arg(sub_cmd),
            Duration::from_secs(30),
        )
    });
    // Publish until the subscriber has seen it (it needs a moment to subscribe).
    let mut received = None;
    for _ in 0..40 {
        let p = run(
            Command::new("sh").arg("-c").arg(&publ),
            Duration::from_secs(10),
        );
        assert_eq!(p.code, 0, "printed mosquitto_pub failed: {}", p.stderr);
        if sub_thread.is_finished() {
            received = Some(sub_thread.join().unwrap());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let received = received.expect("subscriber never received the message");
    assert!(
        received
            .stdout
            .contains("devices/device-1/telemetry {\"temp\": 23.5}"),
        "{:?}",
        received
    );

    assert_eq!(up.interrupt(), 0);
    // No orphan broker.
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "mosquitto {pid} left running"
    );

    // Second run reuses the data.
    let ca = std::fs::read(dir.join("iotsec-data/pki/ca.crt")).unwrap();
    let again = Up::start(&dir, port);
    assert!(
        again.seen.iter().any(|l| l.contains("reused")),
        "{:#?}",
        again.seen
    );
    assert_eq!(again.interrupt(), 0);
    assert_eq!(
        std::fs::read(dir.join("iotsec-data/pki/ca.crt")).unwrap(),
        ca
    );
}
