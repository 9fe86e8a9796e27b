//! PostgreSQL started by the test: `initdb` into a temporary directory, `postgres` listening on
//! 127.0.0.1 on a free port with its unix socket inside the same directory, stopped by pid.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the server (and `initdb`)
//! run as the `postgres` user that Debian's package creates (or `nobody`), through `setpriv`,
//! which execs in place: the child's pid is the postmaster's. Clients (`createdb`, `psql`) run
//! as the caller and reach the server over the unix socket (`trust` for local connections);
//! TCP connections on 127.0.0.1 need the password (`scram-sha-256`), which [`TestPostgres::url`]
//! carries.
//!
//! Each server has a watchdog (a small `sh` loop) that stops it by pid and removes its
//! directory once the test process is gone, however it ended (a panic, a harness timeout's
//! SIGKILL). That is what lets [`TestPostgres::shared`] keep one server for a whole test
//! binary without leaving it behind.
//!
//! ```no_run
//! let pg = iotsec_testkit::postgres::TestPostgres::shared();
//! let url = pg.fresh_database(); // postgres://iotsec:…@127.0.0.1:<port>/t1
//! # let _ = url;
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{Output, TestDir, free_port, run};

/// The superuser `initdb` creates, and the role the tests connect as.
pub const USER: &str = "iotsec";

const INSTALL: &str = "sudo apt-get install -y postgresql (Debian puts the server binaries in \
                       /usr/lib/postgresql/<version>/bin; scripts/test installs it)";

/// The directory holding `initdb`, `postgres`, `createdb` and `psql`: `$IOTSEC_PG_BIN`, else
/// the newest `/usr/lib/postgresql/<version>/bin`, else the directory `initdb` on `PATH`
/// resolves to.
pub fn bin_dir() -> Result<PathBuf, String> {
    let complete = |d: &Path| {
        ["initdb", "postgres", "createdb", "psql"]
            .iter()
            .all(|t| d.join(t).is_file())
    };
    if let Some(d) = std::env::var_os("IOTSEC_PG_BIN") {
        let d = PathBuf::from(d);
        return if complete(&d) {
            Ok(d)
        } else {
            Err(format!(
                "IOTSEC_PG_BIN={} lacks initdb/postgres/createdb/psql",
                d.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Ok(d);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("initdb"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.parent().map(Path::to_path_buf));
    match on_path {
        Some(d) if complete(&d) => Ok(d),
        _ => Err(format!(
            "the PostgreSQL server binaries (initdb, postgres, createdb, psql) were not found: {INSTALL}"
        )),
    }
}

/// Fails the test with the install command when PostgreSQL is missing.
pub fn require_postgres() -> PathBuf {
    match bin_dir() {
        Ok(d) => d,
        Err(e) => panic!("this test needs PostgreSQL: {e}"),
    }
}

/// uid/gid to run the server as when we are root.
fn server_identity() -> Option<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(u)) = nix::unistd::User::from_name(name) {
            return Some((u.uid.as_raw(), u.gid.as_raw()));
        }
    }
    panic!(
        "running as root, but neither a `postgres` nor a `nobody` user exists to run PostgreSQL"
    );
}

/// A PostgreSQL server owned by the test.
#[derive(Debug)]
pub struct TestPostgres {
    dir: TestDir,
    bin: PathBuf,
    port: u16,
    password: String,
    run_as: Option<(u32, u32)>,
    child: Option<Child>,
    watchdog: Option<Child>,
    log: PathBuf,
    databases: AtomicU32,
}

static SHARED: OnceLock<TestPostgres> = OnceLock::new();

impl TestPostgres {
    /// One server for every test of this process (each test takes its own database with
    /// [`TestPostgres::fresh_database`]). It is never dropped: its watchdog stops it and removes
    /// its directory when the process exits.
    pub fn shared() -> &'static TestPostgres {
        SHARED.get_or_init(TestPostgres::start)
    }

    /// `initdb` + start with the defaults (durable commits: `fsync` and `synchronous_commit`
    /// stay on).
    pub fn start() -> TestPostgres {
        Self::start_with(&[])
    }

    /// `initdb` + start with extra `-c name=value` settings.
    pub fn start_with(settings: &[(&str, &str)]) -> TestPostgres {
        let bin = require_postgres();
        let dir = TestDir::new();
        let run_as = server_identity();
        let data = dir.join("data");
        let sock = dir.join("sock");
        for d in [&data, &sock] {
            std::fs::create_dir(d).unwrap();
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
            }
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let password = format!("pw{:x}{:x}", nanos, std::process::id());
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).unwrap();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let mut init = Self::server_command(&bin, "initdb", run_as);
        init.arg("-D")
            .arg(&data)
            .args(["-U", USER, "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()));
        let out = run(&mut init, Duration::from_secs(120));
        assert_eq!(
            out.code, 0,
            "initdb failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        let _ = std::fs::remove_file(&pwfile);

        let mut pg = TestPostgres {
            dir,
            bin,
            port: 0,
            password,
            run_as,
            child: None,
            watchdog: None,
            log: PathBuf::new(),
            databases: AtomicU32::new(0),
        };
        let mut last = String::new();
        for attempt in 0..5 {
            pg.port = free_port();
            let log_path = pg.dir.join(format!("postgres-{attempt}.log"));
            let log = std::fs::File::create(&log_path).unwrap();
            let mut cmd = Self::server_command(&pg.bin, "postgres", run_as);
            cmd.arg("-D")
                .arg(&data)
                .args(["-p", &pg.port.to_string()])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .arg("-c")
                .arg(format!("unix_socket_directories={}", sock.display()))
                .args(["-c", "max_connections=200", "-c", "logging_collector=off"]);
            for (k, v) in settings {
                cmd.arg("-c").arg(format!("{k}={v}"));
            }
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn postgres");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                if text.contains("database system is ready to accept connections") {
                    pg.watchdog = Some(watchdog(child.id(), pg.dir.path()));
                    pg.child = Some(child);
                    pg.log = log_path;
                    return pg;
                }
                if let Some(status) = child.try_wait().unwrap() {
                    last = format!("postgres exited ({status}):\n{text}");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last = format!("postgres not ready within 30 s:\n{text}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    fn server_command(bin: &Path, tool: &str, run_as: Option<(u32, u32)>) -> Command {
        match run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(bin.join(tool));
                c
            }
            None => Command::new(bin.join(tool)),
        }
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The directory holding the unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// The connection URL (TCP, password included) of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let mut cmd = Command::new(self.bin.join("createdb"));
        cmd.arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", USER, name]);
        let out = run(&mut cmd, Duration::from_secs(60));
        assert_eq!(out.code, 0, "createdb {name}: {}", out.stderr);
        self.url(name)
    }

    /// Creates a database with a name unique on this server (`t1`, `t2`, ...).
    pub fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst) + 1;
        self.create_database(&format!("t{n}"))
    }

    /// Runs SQL with `psql` over the unix socket (unaligned, tuples only); panics on error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_output(db, sql);
        assert_eq!(out.code, 0, "psql {sql:?}: {}", out.stderr);
        out.stdout
    }

    /// Runs SQL with `psql` and returns its output, whatever the exit code.
    pub fn psql_output(&self, db: &str, sql: &str) -> Output {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        run(&mut cmd, Duration::from_secs(120))
    }

    /// What the server logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's run-as identity (uid, gid) when started as root.
    pub fn run_as(&self) -> Option<(u32, u32)> {
        self.run_as
    }

    /// Stops the server by pid: SIGQUIT (immediate shutdown: the data is thrown away anyway,
    /// so no checkpoint), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops `pid` and removes `dir` once this process has exited.
fn watchdog(pid: u32, dir: &Path) -> Child {
    let me = std::process::id();
    let dir = dir.display().to_string().replace('\'', "'\\''");
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.2; done; \
         kill -QUIT {pid} 2>/dev/null; \
         n=0; while kill -0 {pid} 2>/dev/null && [ $n -lt 50 ]; do sleep 0.2; n=$((n+1)); done; \
         kill -KILL {pid} 2>/dev/null; rm -rf '{dir}'"
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the PostgreSQL watchdog")
}
