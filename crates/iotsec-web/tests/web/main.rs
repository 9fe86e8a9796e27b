//! iotsec-web against real peers: pebble (ACME issuance, serving, forced renewal, reuse of the
//! cache) and a real TLS client (failed-authentication limit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod pebble;

use std::path::Path;
use std::time::{Duration, Instant};

use iotsec_server::ServerConfig;
use iotsec_server::store::sqlite::Sqlite;
use iotsec_testkit::{TestDir, TestPki, free_port};
use iotsec_web::acme::{Ensured, now_s};
use iotsec_web::token::{self, Role};
use iotsec_web::{AcmeOverrides, WebConfig, WebServer};
use rustls::pki_types::CertificateDer;

use pebble::{Pebble, https_get, https_request, roots_from_pem};

const DOMAIN: &str = "iotsec.test";

fn server_config(dir: &Path, web: &str) -> (ServerConfig, WebConfig) {
    // The web part never touches the broker or the keys; the other sections only have to
    // be well-formed.
    let text = format!(
        "[broker]\nhost = \"localhost\"\nport = 8883\n[tls]\nca = \"pki/ca.crt\"\ncert = \"c\"\nkey = \"k\"\n\
         [keys]\nmaster = \"m\"\n[storage]\nsqlite = \"db\"\n[web]\n{web}"
    );
    let path = dir.join("server.toml");
    std::fs::write(&path, &text).unwrap();
    let server = ServerConfig::load(&path).unwrap();
    let web = WebConfig::of_server(&server, &AcmeOverrides::default())
        .unwrap()
        .unwrap();
    (server, web)
}

struct Running {
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<iotsec_web::Result<()>>>,
}

impl Running {
    fn start(rt: tokio::runtime::Runtime, server: WebServer) -> Running {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = rt.spawn(server.run(async {
            let _ = rx.await;
        }));
        Running {
            rt,
            stop: Some(tx),
            task: Some(task),
        }
    }

    fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            self.rt.block_on(t).unwrap().unwrap();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    iotsec_tls::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn wait_for_leaf(
    slot: &iotsec_web::tls::CertSlot,
    not: Option<&CertificateDer<'_>>,
    pebble: &Pebble,
) -> CertificateDer<'static> {
    let start = Instant::now();
    loop {
        if let Some(leaf) = slot.leaf()
            && Some(&leaf) != not
        {
            return leaf;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no certificate from pebble:\n{}",
            pebble.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn acme_certificate_from_pebble_is_served_renewed_and_reused() {
    let pebble = Pebble::start();
    let dir = TestDir::new();
    let web_port = free_port();
    let web_toml = format!(
        "listen = \"127.0.0.1:{web_port}\"\n[web.acme]\ndirectory = \"{}\"\ndomains = [\"{DOMAIN}\"]\n\
         email = \"ops@iotsec.test\"\nhttp_listen = \"127.0.0.1:{}\"\ndirectory_ca = \"{}\"\n",
        pebble.directory,
        pebble.http_port,
        pebble.tls_ca.display()
    );
    let (server, web) = server_config(dir.path(), &web_toml);
    let rt = runtime();
    let api = rt
        .block_on(WebServer::bind(
            server.clone(),
            web.clone(),
            Box::new(Sqlite::in_memory().unwrap()),
        ))
        .unwrap();
    assert_eq!(
        api.acme_http_addr().unwrap().port(),
        pebble.http_port,
        "HTTP-01 responder on the port pebble validates"
    );
    let slot = api.certificate();
    let acme = api.acme().unwrap();
    let started = Instant::now();
    let running = Running::start(rt, api);
    let first = wait_for_leaf(&slot, None, &pebble);
    eprintln!(
        "ACME: certificate issued by pebble in {:?}",
        started.elapsed()
    );

    // Served, and verified by a client trusting only pebble's root.
    let root = roots_from_pem(pebble.issuing_root().as_bytes());
    let (status, body, chain) = https_get(&root, web_port, DOMAIN, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    assert_eq!(chain[0], first);
    assert!(chain.len() >= 2, "the chain includes pebble's intermediate");
    assert_eq!(iotsec_web::tls::dns_names(&first), vec![DOMAIN.to_string()]);

    // Files: the account key and the certificate key are private.
    use std::os::unix::fs::PermissionsExt;
    for f in ["acme/account.json", "acme/key.pem"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let (nb, na) = acme.cached_validity().unwrap();
    assert!(na > nb);

    // Not due: nothing happens. Forced into the last third of its lifetime: renewed, and the
    // running server presents the new certificate to the next client.
    let rt2 = runtime();
    assert_eq!(rt2.block_on(acme.ensure(now_s())).unwrap(), Ensured::Reused);
    let due = iotsec_web::acme::renewal_at(nb, na) + 1;
    assert_eq!(
        rt2.block_on(acme.ensure(due)).unwrap(),
        Ensured::Issued,
        "{}",
        pebble.logs()
    );
    let renewed = slot.leaf().unwrap();
    assert_ne!(renewed, first);
    let (status, _, chain) = https_get(&root, web_port, DOMAIN, "/healthz");
    assert_eq!(status, 200);
    assert_eq!(chain[0], renewed);
    running.stop();

    // A restart reuses the cached certificate (no new order).
    let rt = runtime();
    let api = rt
        .block_on(WebServer::bind(
            server,
            web,
            Box::new(Sqlite::in_memory().unwrap()),
        ))
        .unwrap();
    let acme = api.acme().unwrap();
    assert_eq!(rt.block_on(acme.ensure(now_s())).unwrap(), Ensured::Reused);
    assert_eq!(api.certificate().leaf().unwrap(), renewed);
}

#[test]
fn failed_authentications_are_limited_per_address_then_429() {
    let dir = TestDir::new();
    let pki = TestPki::new(&dir, iotsec_pki::KeyAlgorithm::P256, &[]);
    let port = free_port();
    let (server, web) = server_config(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:{port}\"\ncert = \"pki/server.crt\"\nkey = \"pki/server.key\"\n\
             max_failed_auth_per_minute = 3\n"
        ),
    );
    let (_, good) = token::create(&web.tokens, Role::Viewer, "t").unwrap();
    let rt = runtime();
    let api = rt
        .block_on(WebServer::bind(
            server,
            web,
            Box::new(Sqlite::in_memory().unwrap()),
        ))
        .unwrap();
    let running = Running::start(rt, api);
    let roots = roots_from_pem(&std::fs::read(pki.ca_cert()).unwrap());
    let get =
        |token: Option<&str>| https_request(&roots, port, "localhost", "/api/devices", token).0;
    // Requests without credentials guess nothing and are not counted.
    for _ in 0..5 {
        assert_eq!(get(None), 401);
    }
    assert_eq!(get(Some(good.expose())), 200);
    for _ in 0..3 {
        assert_eq!(get(Some("iotsec_guess")), 401);
    }
    // Blocked: even the right token gets 429 (a blocked client learns nothing).
    assert_eq!(get(Some("iotsec_guess")), 429);
    assert_eq!(get(Some(good.expose())), 429);
    assert_eq!(get(None), 401);
    let (status, _, _) = https_request(&roots, port, "localhost", "/healthz", None);
    assert_eq!(status, 200);
    running.stop();
}
