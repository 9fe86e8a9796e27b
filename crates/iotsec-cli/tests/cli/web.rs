//! WEB acceptance: the HTTPS API of `iotsec serve` against a real stack (Mosquitto, ingest,
//! tokens from `iotsec token`): 401 everywhere without credentials, 403 for viewers on admin
//! actions, revocation of a token at once, operator certificates, and no token in the logs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use iotsec_testkit::free_port;

use crate::https::Client;
use crate::iotsec;
use crate::stack::{MASTER, Stack, signed_v2, wait_until};

/// Appends a [web] section (the broker's localhost certificate serves HTTPS too).
pub fn add_web_section(s: &Stack, port: u16, extra: &str) {
    let mut text = std::fs::read_to_string(&s.server_toml).unwrap();
    text.push_str(&format!(
        "[web]\nlisten = \"127.0.0.1:{port}\"\ncert = \"pki/server.crt\"\nkey = \"pki/server.key\"\n\
         audit_report = \"audit.json\"\nclient_ca = \"pki/ca.crt\"\noperators = [\"ops-1\"]\n\
         events_ms = 200\n{extra}"
    ));
    std::fs::write(&s.server_toml, text).unwrap();
}

pub fn token(s: &Stack, role: &str) -> (String, String) {
    let out = iotsec(
        s.root.path(),
        &[
            "token",
            "create",
            "--role",
            role,
            "--name",
            &format!("test-{role}"),
            "--config",
            s.server_toml.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let secret = out.stdout.trim().to_string();
    assert!(secret.starts_with("iotsec_"), "{out:?}");
    let id = out
        .stderr
        .split("created token ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    (id, secret)
}

/// `iotsec serve` with RUST_LOG=debug (the most it ever logs), stderr to a log file.
pub fn start_serve_with_web(s: &mut Stack, client: &Client) -> PathBuf {
    let log = s.root.join("serve-web.log");
    let child = Command::new(env!("CARGO_BIN_EXE_iotsec"))
        .current_dir(s.root.path())
        .args(["serve", "--config", s.server_toml.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    s.serve = Some(child);
    wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", client.port)).is_ok()
    });
    assert_eq!(client.get("/healthz", None).status, 200);
    wait_until(Duration::from_secs(20), || {
        s.broker.process.log_text().contains("as iotsec-ingest")
    });
    log
}

fn path_for(template: &str, id: &str) -> String {
    template.replace("{id}", id)
}

#[test]
fn api_authenticates_every_endpoint_enforces_roles_and_revokes_tokens_at_once() {
    let mut s = Stack::new(&["dev-a", "dev-b"]);
    let port = free_port();
    add_web_section(&s, port, "max_failed_auth_per_minute = 1000\n");
    std::fs::write(
        s.root.join("audit.json"),
        r#"{"tool":"iotsec audit","categories":[{"category":"I1","title":"Weak passwords","status":"pass","assessed_by":[],"counts":{}}],"findings":[]}"#,
    )
    .unwrap();
    let (admin_id, admin) = token(&s, "admin");
    let (viewer_id, viewer) = token(&s, "viewer");
    let ca = s.root.join("pki/ca.crt");
    let client = Client::new(&ca, port);
    let log = start_serve_with_web(&mut s, &client);

    // Data: two good readings from dev-a, one forged.
    for seq in 1..=2 {
        let m = signed_v2(
            "dev-a",
            seq,
            &MASTER,
            &format!(r#"{{"temperature": 2{seq}.5}}"#),
        );
        assert_eq!(
            s.raw_publish("dev-a", "devices/dev-a/telemetry", &m).code,
            0
        );
    }
    let forged = signed_v2("dev-a", 3, &[0x13; 32], r#"{"temperature": 99}"#);
    s.raw_publish("dev-a", "devices/dev-a/telemetry", &forged);
    wait_until(Duration::from_secs(10), || {
        s.count("SELECT COUNT(*) FROM readings") == 2 && s.rejections("bad_signature") == 1
    });

    // The router's routes, as the OpenAPI document lists them (checked against the router in
    // iotsec-web's unit tests).
    let doc = client.get("/api/openapi.json", Some(&viewer)).json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        // `/firmware/{release}` is for devices (their certificate, not a token): the OTA
        // tests cover it.
        if !path.starts_with("/api/") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            ops.push((method.to_ascii_uppercase(), path.clone()));
        }
    }
    assert!(ops.len() >= 9, "{ops:?}");
    let stream = Duration::from_millis(700);
    for (method, template) in &ops {
        for id in ["dev-a", "no-such-device"] {
            let path = path_for(template, id);
            // No credentials, a made-up token, a device's certificate: 401.
            assert_eq!(
                client.send(method, &path, None, stream).status,
                401,
                "{method} {path}"
            );
            let r = client.send(method, &path, Some("iotsec_madeup"), stream);
            assert_eq!(r.status, 401, "{method} {path}");
            assert!(
                r.header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Bearer")),
                "{method} {path}: {r:?}"
            );
            let bundle = s.bundle("dev-a");
            let device = Client::with_identity(
                &ca,
                &bundle.join("device.crt"),
                &bundle.join("device.key"),
                port,
            );
            assert_eq!(device.send(method, &path, None, stream).status, 401);
            // A viewer reads; admin actions are 403 whether or not the device exists.
            let r = client.send(method, &path, Some(&viewer), stream);
            if method == "POST" {
                assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
                assert_eq!(r.json()["error"], "forbidden");
            } else if template.contains("{id}")
                && (id == "no-such-device" || template.starts_with("/api/rollouts/"))
            {
                // This stack has no rollout: any rollout id is unknown.
                assert_eq!(r.status, 404, "{method} {path}");
            } else {
                assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
            }
        }
    }
    // Unknown paths: 401 first (nothing is revealed), 404 once authenticated.
    assert_eq!(client.get("/api/nothing-here", None).status, 401);
    assert_eq!(client.get("/api/nothing-here", Some(&viewer)).status, 404);
    // The dashboard's files and /healthz hold no data and need no token.
    assert_eq!(client.get("/healthz", None).status, 200);
    let page = client.get("/", None);
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );

    // What a viewer sees.
    let devices = client.get("/api/devices", Some(&viewer)).json();
    let a = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "dev-a")
        .unwrap()
        .clone();
    assert_eq!(a["accepted"], 2);
    assert_eq!(a["rejected"], 1);
    assert_eq!(a["online"], true);
    let page1 = client
        .get("/api/devices/dev-a/telemetry?limit=1", Some(&viewer))
        .json();
    assert_eq!(page1["readings"].as_array().unwrap().len(), 1);
    assert_eq!(page1["readings"][0]["payload"]["temperature"], 21.5);
    let after = page1["next_after"].as_u64().unwrap();
    let page2 = client
        .get(
            &format!("/api/devices/dev-a/telemetry?limit=1&after={after}"),
            Some(&viewer),
        )
        .json();
    assert_eq!(page2["readings"][0]["payload"]["temperature"], 22.5);
    let empty = client
        .get("/api/devices/dev-a/telemetry?from=0&to=1", Some(&viewer))
        .json();
    assert!(empty["readings"].as_array().unwrap().is_empty());
    assert_eq!(
        client
            .get("/api/devices/dev-a/telemetry?limit=x", Some(&viewer))
            .status,
        400
    );
    let rej = client.get("/api/rejections", Some(&viewer)).json();
    assert!(
        rej["counts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["reason"] == "bad_signature" && c["count"] == 1),
        "{rej}"
    );
    assert_eq!(rej["recent"][0]["device"], "dev-a");
    let audit = client.get("/api/audit", Some(&viewer)).json();
    assert_eq!(audit["categories"][0]["category"], "I1");
    let events = client.send(
        "GET",
        "/api/events",
        Some(&viewer),
        Duration::from_millis(800),
    );
    assert_eq!(events.status, 200);
    assert!(
        events
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert!(events.body.contains("event: fleet") && events.body.contains("dev-a"));
    assert_eq!(
        client.get("/api/whoami", Some(&viewer)).json()["role"],
        "viewer"
    );

    // An operator certificate is admin; the same CA's device certificates are not.
    let out = iotsec(
        s.root.path(),
        &[
            "pki", "device", "ops-1", "--role", "service", "--dir", "pki",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (cert, key) = s._pki.client("ops-1");
    let operator = Client::with_identity(&ca, &cert, &key, port);
    let who = operator.get("/api/whoami", None).json();
    assert_eq!(
        (who["role"].as_str(), who["credential"].as_str()),
        (Some("admin"), Some("certificate"))
    );

    // Admin revokes a device: registry, CRL, broker reload.
    let r = client.post("/api/devices/dev-b/revoke", Some(&admin));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["broker_reloaded"], true);
    let b = client.get("/api/devices/dev-b", Some(&viewer)).json();
    assert_eq!(b["status"], "revoked");
    assert_eq!(
        client
            .post("/api/devices/dev-b/revoke", Some(&admin))
            .status,
        409
    );
    assert_eq!(
        client
            .post("/api/devices/nobody/revoke", Some(&admin))
            .status,
        404
    );

    // Revoking the viewer token takes effect at the very next request.
    assert_eq!(client.get("/api/devices", Some(&viewer)).status, 200);
    let out = iotsec(
        s.root.path(),
        &[
            "token",
            "revoke",
            &viewer_id,
            "--config",
            s.server_toml.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(client.get("/api/devices", Some(&viewer)).status, 401);
    assert_eq!(client.get("/api/devices", Some(&admin)).status, 200);
    let list = iotsec(
        s.root.path(),
        &[
            "token",
            "list",
            "--json",
            "--config",
            s.server_toml.to_str().unwrap(),
        ],
    );
    assert!(list.stdout.contains(&admin_id) && !list.stdout.contains(&viewer_id));
    assert!(!list.stdout.contains(&admin));

    // The token file holds hashes only, 0600.
    let file = std::fs::read_to_string(s.root.join("tokens.json")).unwrap();
    assert!(!file.contains(&admin) && !file.contains(&admin["iotsec_".len()..]));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.root.join("tokens.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // No token in the logs, though every request was logged at debug level.
    s.stop_serve();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("device revoked"), "{text}");
    assert!(
        text.contains(&format!("token:{admin_id}")),
        "the logs name token ids"
    );
    for secret in [&admin, &viewer] {
        assert!(
            !text.contains(secret.as_str()),
            "a token leaked into the log"
        );
        assert!(!text.contains(&secret["iotsec_".len()..]));
    }
    assert!(
        !text.contains("iotsec_madeup"),
        "a presented token leaked into the log"
    );
}
