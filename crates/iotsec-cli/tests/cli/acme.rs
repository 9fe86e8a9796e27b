//! `iotsec serve --acme-directory ... --domain ...` against pebble: the certificate is issued
//! through HTTP-01, served by `iotsec serve`, and verified by a client trusting only pebble's
//! root. (Renewal is exercised in iotsec-web's tests, with the clock forced.)

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iotsec_testkit::free_port;

#[path = "../../../iotsec-web/tests/web/pebble.rs"]
mod pebble;

use crate::stack::Stack;

#[test]
fn serve_obtains_its_https_certificate_from_pebble() {
    let acme = pebble::Pebble::start();
    let mut s = Stack::new(&["dev-a"]);
    let port = free_port();
    let mut toml = std::fs::read_to_string(&s.server_toml).unwrap();
    toml.push_str(&format!("[web]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&s.server_toml, toml).unwrap();
    let (_, viewer) = crate::web::token(&s, "viewer");
    let log = s.root.join("serve-acme.log");
    let child = Command::new(env!("CARGO_BIN_EXE_iotsec"))
        .current_dir(s.root.path())
        .args(["serve", "--config", s.server_toml.to_str().unwrap()])
        .args(["--acme-directory", &acme.directory])
        .args(["--domain", "iotsec.test", "--acme-email", "ops@iotsec.test"])
        .args([
            "--acme-http-listen",
            &format!("127.0.0.1:{}", acme.http_port),
        ])
        .arg("--acme-directory-ca")
        .arg(&acme.tls_ca)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    s.serve = Some(child);

    let root = pebble::roots_from_pem(acme.issuing_root().as_bytes());
    let start = Instant::now();
    let (status, _, chain) = loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                pebble::https_get(&root, port, "iotsec.test", "/healthz")
            }));
            if let Ok(r) = r
                && r.0 == 200
            {
                break r;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no ACME certificate served:\n{}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            acme.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 200);
    assert!(!chain.is_empty());
    let (status, body, _) =
        pebble::https_request(&root, port, "iotsec.test", "/api/devices", Some(&viewer));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("dev-a"));
    let account = s.root.join("acme/account.json");
    let mode = std::fs::metadata(&account).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    s.stop_serve();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("obtained an ACME certificate"), "{text}");
}
