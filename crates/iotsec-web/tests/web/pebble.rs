//! Let's Encrypt's test CA, pebble (Debian `pebble`), with `pebble-challtestsrv` as its DNS
//! server answering 127.0.0.1 for every name; both on free loopback ports, stopped (by pid) on
//! drop. Also included by the CLI tests (`#[path]`).
//!
//! Debian's package ships no TLS certificate for pebble's own HTTPS listener, so the harness
//! issues one from a throwaway CA ([`Pebble::tls_ca`]); ACME clients trust that CA for the
//! directory. Certificates pebble *issues* chain to its per-run root, fetched from the
//! management endpoint (`/roots/0`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iotsec_pki::KeyAlgorithm;
use iotsec_testkit::{TestDir, TestPki, free_port, require_tool};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

pub struct Pebble {
    pub dir: TestDir,
    /// ACME directory URL.
    pub directory: String,
    /// Port pebble's validator connects to for HTTP-01 (the client's responder must listen).
    pub http_port: u16,
    pub mgmt_port: u16,
    /// CA of pebble's own HTTPS listener (for the ACME client).
    pub tls_ca: PathBuf,
    procs: Vec<Child>,
}

fn wait_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Pebble {
    pub fn start() -> Pebble {
        require_tool(
            "pebble",
            "sudo apt-get install -y pebble (Let's Encrypt's ACME test server)",
        );
        require_tool("pebble-challtestsrv", "sudo apt-get install -y pebble");
        let dir = TestDir::new();
        let pki = TestPki::new(&dir, KeyAlgorithm::P256, &[]);
        let dns = free_port();
        let chall_mgmt = free_port();
        let listen = free_port();
        let mgmt_port = free_port();
        let http_port = free_port();
        let tls_port = free_port();
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(log("challtestsrv.log"))
            .stderr(log("challtestsrv.err"))
            .spawn()
            .unwrap();
        let mut procs = vec![challtestsrv];
        wait_port(chall_mgmt, "pebble-challtestsrv");
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
            "certificate": pki.dir.join("server.crt"),
            "privateKey": pki.dir.join("server.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random sleeps before validation, no random nonce rejections, no reuse of
            // valid authorizations (every order is validated).
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .unwrap();
        procs.push(pebble);
        wait_port(listen, "pebble");
        wait_port(mgmt_port, "pebble management");
        Pebble {
            directory: format!("https://127.0.0.1:{listen}/dir"),
            http_port,
            mgmt_port,
            tls_ca: pki.ca_cert(),
            dir,
            procs,
        }
    }

    /// The root pebble signs issued certificates with (PEM).
    pub fn issuing_root(&self) -> String {
        let (status, body, _) = https_get(
            &roots_from_pem(&std::fs::read(&self.tls_ca).unwrap()),
            self.mgmt_port,
            "localhost",
            "/roots/0",
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("BEGIN CERTIFICATE"), "{body}");
        body
    }

    /// pebble's logs (for failure messages).
    pub fn logs(&self) -> String {
        ["pebble.log", "pebble.err", "challtestsrv.err"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

pub fn roots_from_pem(pem: &[u8]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// GET over HTTPS to 127.0.0.1:`port` with SNI `name`, trusting only `roots`. Returns status,
/// body and the certificate chain the server presented.
pub fn https_get(
    roots: &rustls::RootCertStore,
    port: u16,
    name: &str,
    path: &str,
) -> (u16, String, Vec<CertificateDer<'static>>) {
    https_request(roots, port, name, path, None)
}

/// [`https_get`] with an optional bearer token.
pub fn https_request(
    roots: &rustls::RootCertStore,
    port: u16,
    name: &str,
    path: &str,
    bearer: Option<&str>,
) -> (u16, String, Vec<CertificateDer<'static>>) {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n{auth}\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let chain = tls
        .conn
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string(), chain)
}
