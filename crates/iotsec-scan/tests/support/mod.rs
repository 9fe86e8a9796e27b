//! Test peers started by the tests themselves, on 127.0.0.1 ports they pick: a temporary PKI
//! (rcgen), Mosquitto with generated configuration, and small servers (HTTP with and without
//! auth, an SSH-like banner, a Telnet IAC responder, a silent listener, Redis- and Modbus-like
//! responders, a TLS server with a self-signed expired certificate, OpenSSL speaking TLS 1.1,
//! and a CoAP responder). Everything stops when its guard is dropped.

#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use iotsec_scan::local;

/// A block of loopback ports with no listener when the test started, and the listeners that
/// were there (other programs': never probed, excluded from scans).
pub struct PortBlock {
    pub start: u16,
    pub end: u16,
    next: u16,
}

impl PortBlock {
    /// Finds `len` consecutive ports below the ephemeral range with no listener on any address.
    pub fn find(len: u16) -> Self {
        let busy: HashSet<u16> = local::tcp_listeners().iter().map(|l| l.port).collect();
        // Spread blocks of concurrent tests (and processes) over 20000-32000.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = std::process::id().wrapping_mul(7919) ^ nanos;
        let mut start = 20_000u16 + (seed % (12_000 - u32::from(len))) as u16;
        let mut wrapped = false;
        loop {
            let mut end = start + len - 1;
            if end >= 32_000 {
                assert!(!wrapped, "no free port block found");
                wrapped = true;
                start = 20_000;
                end = start + len - 1;
            }
            if (start..=end).all(|p| !busy.contains(&p)) {
                return Self {
                    start,
                    end,
                    next: start + 7,
                };
            }
            start += len;
        }
    }

    /// Spec for the scanner.
    pub fn spec(&self) -> String {
        format!("{}-{}", self.start, self.end)
    }

    /// A listener bound to a free port of the block.
    pub fn listener(&mut self) -> TcpListener {
        loop {
            assert!(self.next < self.end, "port block exhausted");
            let port = self.next;
            self.next += 13;
            if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                return l;
            }
        }
    }

    /// A port of the block that is free now (for a child process to bind).
    pub fn free_port(&mut self) -> u16 {
        self.listener().local_addr().unwrap().port()
    }
}

/// Ports that other programs listen on right now: the scanner must not probe them.
pub fn foreign_listeners(ours: &[u16]) -> Vec<u16> {
    let mut v: Vec<u16> = local::tcp_listeners()
        .iter()
        .map(|l| l.port)
        .filter(|p| !ours.contains(p))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Waits until `port` accepts connections (readiness polling, not a timing assumption).
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} did not start listening on {port}");
}

/// A stop flag shared with server threads; set on drop.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Runs `handle` for every accepted connection until stopped. The listener is nonblocking so
/// the accept loop notices the stop flag.
pub fn serve(
    listener: TcpListener,
    stop: Stop,
    handle: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    listener.set_nonblocking(true).unwrap();
    let handle = Arc::new(handle);
    thread::spawn(move || {
        while !stop.stopped() {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let h = handle.clone();
                    thread::spawn(move || h(stream));
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
}

fn read_some(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.windows(4).any(|w| w == b"\r\n\r\n") || got.len() > 64 {
            break;
        }
        // Binary probes are short and complete in one read.
        if !got.starts_with(b"GET ") {
            break;
        }
    }
    got
}

/// HTTP server: 200 without auth, or 401 + Basic challenge. Anything that is not an HTTP
/// request gets `400 Bad Request`, as real servers answer.
pub fn http(listener: TcpListener, stop: Stop, basic_auth: bool) {
    serve(listener, stop, move |mut s| {
        let req = read_some(&mut s);
        let reply: &[u8] = if !req.starts_with(b"GET ") {
            b"HTTP/1.1 400 Bad Request\r\nServer: test-httpd/1.0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        } else if basic_auth {
            b"HTTP/1.1 401 Unauthorized\r\nServer: test-httpd/1.0\r\nWWW-Authenticate: Basic realm=\"camera\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nServer: test-httpd/1.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        };
        let _ = s.write_all(reply);
    });
}

/// SSH-like server: greets, then reads until the client leaves.
pub fn ssh(listener: TcpListener, stop: Stop) {
    serve(listener, stop, |mut s| {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
        let _ = read_some(&mut s);
    });
}

/// Telnet responder: BusyBox-style negotiation and a login prompt.
pub fn telnet(listener: TcpListener, stop: Stop) {
    serve(listener, stop, |mut s| {
        let mut greeting = vec![
            0xFF, 0xFD, 0x01, 0xFF, 0xFD, 0x1F, 0xFF, 0xFB, 0x01, 0xFF, 0xFB, 0x03,
        ];
        greeting.extend_from_slice(b"\r\ncamera login: ");
        let _ = s.write_all(&greeting);
        let _ = read_some(&mut s);
    });
}

/// Silent listener: accepts and never says anything (holds connections until the peer leaves).
pub fn silent(listener: TcpListener, stop: Stop) {
    serve(listener, stop, |mut s| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = [0u8; 1024];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
}

/// Redis-like responder without a password: `+PONG` to PING, an error to anything else.
pub fn redis(listener: TcpListener, stop: Stop) {
    serve(listener, stop, |mut s| {
        let req = read_some(&mut s);
        let mut reply = Vec::new();
        for line in req.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.eq_ignore_ascii_case(b"PING") {
                reply.extend_from_slice(b"+PONG\r\n");
            } else {
                reply.extend_from_slice(b"-ERR unknown command\r\n");
            }
        }
        let _ = s.write_all(&reply);
    });
}

/// Modbus/TCP responder: answers Read Device Identification, closes on anything else.
pub fn modbus(listener: TcpListener, stop: Stop) {
    serve(listener, stop, |mut s| {
        let req = read_some(&mut s);
        if req.len() >= 11 && req[2..4] == [0, 0] && req[7] == 0x2B && req[8] == 0x0E {
            let mut pdu = vec![req[6], 0x2B, 0x0E, 0x01, 0x01, 0x00, 0x00, 0x02];
            pdu.extend_from_slice(&[0x00, 0x07]);
            pdu.extend_from_slice(b"AcmePLC");
            pdu.extend_from_slice(&[0x01, 0x04]);
            pdu.extend_from_slice(b"X100");
            let mut reply = req[..4].to_vec();
            reply.extend_from_slice(&(pdu.len() as u16).to_be_bytes());
            reply.extend_from_slice(&pdu);
            let _ = s.write_all(&reply);
        }
    });
}

/// CoAP responder: ACK 2.05 with a link-format payload to any confirmable request.
pub fn coap(stop: Stop) -> u16 {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.stopped() {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if n < 4 || buf[0] >> 6 != 1 {
                continue;
            }
            let tkl = usize::from(buf[0] & 0x0F);
            let mut reply = vec![0x60 | buf[0] & 0x0F, 0x45, buf[2], buf[3]];
            reply.extend_from_slice(&buf[4..4 + tkl.min(n - 4)]);
            reply.extend_from_slice(&[0xC1, 0x28, 0xFF]);
            reply.extend_from_slice(b"</sensors/temp>;rt=\"temperature\"");
            let _ = socket.send_to(&reply, from);
        }
    });
    port
}

/// Test PKI: a CA, a server certificate for 127.0.0.1/localhost, a client certificate.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

fn write_readable(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
    // Mosquitto started as root drops to the `mosquitto` user before reading its files: test
    // keys are made world-readable on purpose (throwaway keys in a private temp dir).
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "iotsec test CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);

        let server_key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "broker.test");
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let server_cert = params.signed_by(&server_key, &issuer).unwrap();

        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        write_readable(&ca, &ca_cert.pem());
        write_readable(&cert, &server_cert.pem());
        write_readable(&key, &server_key.serialize_pem());
        Self {
            dir,
            ca,
            server_cert: cert,
            server_key: key,
        }
    }
}

/// Mosquitto listeners: plain + anonymous, plain + password, TLS + anonymous, TLS + client
/// certificate required.
pub struct MosquittoPorts {
    pub plain_anon: u16,
    pub plain_password: u16,
    pub tls_anon: u16,
    pub tls_client_cert: u16,
}

/// A Mosquitto process, killed by pid on drop.
pub struct Mosquitto {
    child: Child,
    pub ports: MosquittoPorts,
    pub log: PathBuf,
}

impl Mosquitto {
    pub fn start(pki: &Pki, block: &mut PortBlock) -> Self {
        let exe = which("mosquitto").expect(
            "mosquitto is required for this test: install it (Debian: apt-get install mosquitto mosquitto-clients)",
        );
        let passwd = which("mosquitto_passwd")
            .expect("mosquitto_passwd is required (apt-get install mosquitto)");
        let dir = pki.dir.path();
        let pw = dir.join("passwd");
        let status = Command::new(passwd)
            .arg("-c")
            .arg("-b")
            .arg(&pw)
            .args(["device1", "s3cret-pass"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "mosquitto_passwd failed");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let ports = MosquittoPorts {
            plain_anon: block.free_port(),
            plain_password: block.free_port(),
            tls_anon: block.free_port(),
            tls_client_cert: block.free_port(),
        };
        let (ca, cert, key) = (
            pki.ca.display(),
            pki.server_cert.display(),
            pki.server_key.display(),
        );
        let config = format!(
            "per_listener_settings true\n\
             persistence false\n\
             log_dest stderr\n\
             listener {a} 127.0.0.1\nallow_anonymous true\n\
             listener {b} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n\
             listener {c} 127.0.0.1\nallow_anonymous true\ncertfile {cert}\nkeyfile {key}\n\
             listener {d} 127.0.0.1\nallow_anonymous true\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\nrequire_certificate true\n",
            a = ports.plain_anon,
            b = ports.plain_password,
            c = ports.tls_anon,
            d = ports.tls_client_cert,
            pw = pw.display(),
        );
        let conf = dir.join("mosquitto.conf");
        write_readable(&conf, &config);
        let log = dir.join("mosquitto.log");
        let child = Command::new(exe)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let m = Self { child, ports, log };
        for p in [
            m.ports.plain_anon,
            m.ports.plain_password,
            m.ports.tls_anon,
            m.ports.tls_client_cert,
        ] {
            wait_listening(p, "mosquitto");
        }
        m
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `openssl s_server` accepting TLS 1.1 only (legacy), killed by pid on drop.
pub struct OpensslLegacy {
    child: Child,
    pub port: u16,
}

impl OpensslLegacy {
    pub fn start(pki: &Pki, block: &mut PortBlock) -> Self {
        let exe =
            which("openssl").expect("openssl is required for this test (apt-get install openssl)");
        let port = block.free_port();
        let child = Command::new(exe)
            .args([
                "s_server",
                "-quiet",
                "-tls1_1",
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
                "-accept",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&pki.server_cert)
            .arg("-key")
            .arg(&pki.server_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, "openssl s_server");
        Self { child, port }
    }
}

impl Drop for OpensslLegacy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// TLS server (rustls) with a self-signed certificate that expired yesterday. Answers nothing
/// inside TLS (the application stays unidentified).
pub fn tls_self_signed_expired(listener: TcpListener, stop: Stop) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "old-camera");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(400);
    params.not_after = now - time::Duration::days(1);
    let cert = params.self_signed(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let config = Arc::new(config);
    serve(listener, stop, move |s| {
        let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
            return;
        };
        let mut tls = rustls::StreamOwned::new(conn, s);
        let mut buf = [0u8; 1024];
        while matches!(tls.read(&mut buf), Ok(n) if n > 0) {}
    });
}

pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .or_else(|| {
            ["/usr/sbin", "/usr/bin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        })
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
