//! Launching, supervising and reloading Mosquitto.
//!
//! [`BrokerProcess::spawn`] starts `mosquitto -c DIR/mosquitto.conf` as a child, records its
//! pid in `DIR/mosquitto.pid`, and stops it (SIGTERM, then SIGKILL) when dropped, so no broker
//! outlives the program or test that started it. [`reload`] refreshes the CRL copy from the PKI
//! and sends SIGHUP, which makes Mosquitto re-read certificates and the CRL.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{BrokerError, Result};
use crate::render::{self, BrokerMeta};

/// The pid file inside a config directory.
pub const PID_FILE: &str = "mosquitto.pid";

/// Finds the mosquitto binary on PATH (or the Debian location).
pub fn mosquitto_binary() -> Result<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")]);
    for dir in candidates {
        let p = dir.join("mosquitto");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(BrokerError::MosquittoMissing)
}

/// Checks, when we are root, that the `mosquitto` user can reach `dir`: Mosquitto drops to it
/// before reading certificates, so a config under a 0700 home directory fails at start with a
/// cryptic TLS error. Returns a clear error naming the blocking directory.
pub fn check_reachable(dir: &Path) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let Some(user) = nix::unistd::User::from_name("mosquitto").ok().flatten() else {
        return Ok(());
    };
    let dir = fs::canonicalize(dir).map_err(|e| BrokerError::io(dir, e))?;
    for ancestor in dir.ancestors() {
        let meta = fs::metadata(ancestor).map_err(|e| BrokerError::io(ancestor, e))?;
        let mode = meta.permissions().mode();
        let ok = mode & 0o001 != 0
            || (meta.gid() == user.gid.as_raw() && mode & 0o010 != 0)
            || (meta.uid() == user.uid.as_raw() && mode & 0o100 != 0);
        if !ok {
            return Err(BrokerError::Unreachable {
                reason: format!(
                    "mosquitto runs as user `mosquitto` and cannot enter {} (mode {:o}); put the broker directory somewhere it can reach (e.g. under /srv or /var/lib), or `chmod o+x {}`",
                    ancestor.display(),
                    mode & 0o777,
                    ancestor.display()
                ),
            });
        }
    }
    Ok(())
}

/// Where the broker's log goes.
#[derive(Debug, Clone)]
pub enum Log {
    /// This process's stderr (foreground use).
    Inherit,
    /// A file (tests, `iotsec up`).
    File(PathBuf),
}

/// A running Mosquitto started by us.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    dir: PathBuf,
    log: Log,
    addr: SocketAddr,
}

impl BrokerProcess {
    /// Starts Mosquitto on a rendered directory (see [`render::write_hardened`]) and waits up to
    /// `ready_within` for its listener to accept connections.
    pub fn spawn(dir: &Path, log: Log, ready_within: Duration) -> Result<BrokerProcess> {
        let bin = mosquitto_binary()?;
        let meta = BrokerMeta::load(dir)?;
        check_reachable(dir)?;
        let conf = dir.join("mosquitto.conf");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c").arg(&conf).stdin(Stdio::null());
        match &log {
            Log::Inherit => {
                cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
            }
            Log::File(path) => {
                let f = fs::File::create(path).map_err(|e| BrokerError::io(path, e))?;
                let f2 = f.try_clone().map_err(|e| BrokerError::io(path, e))?;
                cmd.stdout(f).stderr(f2);
            }
        }
        let child = cmd.spawn().map_err(|e| BrokerError::io(&bin, e))?;
        let pid_path = dir.join(PID_FILE);
        fs::write(&pid_path, format!("{}\n", child.id()))
            .map_err(|e| BrokerError::io(&pid_path, e))?;
        let addr: SocketAddr = format!("{}:{}", meta.bind, meta.port)
            .parse()
            .or_else(|_| format!("[{}]:{}", meta.bind, meta.port).parse())
            .map_err(|_| BrokerError::Config(format!("bad bind address {}", meta.bind)))?;
        let mut broker = BrokerProcess {
            child: Some(child),
            dir: dir.to_path_buf(),
            log,
            addr,
        };
        broker.wait_ready(ready_within)?;
        Ok(broker)
    }

    /// The listener address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The broker's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far (only for [`Log::File`]).
    pub fn log_text(&self) -> String {
        match &self.log {
            Log::File(p) => fs::read_to_string(p).unwrap_or_default(),
            Log::Inherit => String::new(),
        }
    }

    fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(BrokerError::StartFailed(format!(
                    "mosquitto exited with {status}{}",
                    tail(&self.log_text())
                )));
            }
            // Our own broker's port: connecting to it is how we know it listens.
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let log = self.log_text();
                self.stop();
                return Err(BrokerError::StartFailed(format!(
                    "not listening on {} after {:?}{}",
                    self.addr,
                    within,
                    tail(&log)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status if the broker has exited (without blocking).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        let _ = fs::remove_file(self.dir.join(PID_FILE));
        Some(status)
    }

    /// Waits for the broker to exit on its own (foreground `broker run`); returns its status.
    pub fn wait(&mut self) -> Result<std::process::ExitStatus> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| BrokerError::StartFailed("already stopped".into()))?;
        let status = child.wait().map_err(|e| BrokerError::io(&self.dir, e))?;
        self.child = None;
        let _ = fs::remove_file(self.dir.join(PID_FILE));
        Ok(status)
    }

    /// Sends a signal to the broker.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| BrokerError::StartFailed("not running".into()))?;
        let raw = i32::try_from(pid).map_err(|_| BrokerError::StartFailed("bad pid".into()))?;
        kill(Pid::from_raw(raw), sig)
            .map_err(|e| BrokerError::io(&self.dir, std::io::Error::from(e)))
    }

    /// Hard-kills the broker (SIGKILL), as a crash would; the pid file stays.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker: SIGTERM, up to 5 s for a clean shutdown (it saves its persistence
    /// file), then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(raw) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
            let _ = fs::remove_file(self.dir.join(PID_FILE));
        }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(8).collect();
    if lines.is_empty() {
        String::new()
    } else {
        let mut v = lines;
        v.reverse();
        format!("; log:\n{}", v.join("\n"))
    }
}

/// Refreshes the CRL and certificate copies from the PKI and sends SIGHUP to the broker running
/// on `dir` (found through its pid file). Returns the pid signalled.
pub fn reload(dir: &Path) -> Result<u32> {
    let meta = BrokerMeta::load(dir)?;
    let pid_path = dir.join(PID_FILE);
    let not_running = |reason: String| BrokerError::NotRunning {
        dir: dir.to_path_buf(),
        reason,
    };
    let mut text = String::new();
    fs::File::open(&pid_path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| not_running(format!("{}: {e}", pid_path.display())))?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| not_running(format!("{} does not hold a pid", pid_path.display())))?;
    // Never signal a recycled pid: the process must be mosquitto.
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "mosquitto" {
        return Err(not_running(format!("pid {pid} is not a mosquitto process")));
    }
    render::sync_certs(&meta, dir)?;
    let raw = i32::try_from(pid).map_err(|_| not_running(format!("bad pid {pid}")))?;
    kill(Pid::from_raw(raw), Signal::SIGHUP)
        .map_err(|e| not_running(format!("SIGHUP to {pid}: {e}")))?;
    Ok(pid)
}
