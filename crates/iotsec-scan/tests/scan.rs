//! End-to-end scans of services the test starts itself on 127.0.0.1 (see `support`). Other
//! programs listen on this machine's loopback too: the scans sweep a block of ports that was
//! free when the test started, exclude any listener that is not ours, and probe only our ports.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use iotsec_scan::ports::PortSet;
use iotsec_scan::probe::mqtt::ConnectOutcome;
use iotsec_scan::report::{ClientAuth, ScanReport, Service, Transport};
use iotsec_scan::scanner::{self, ScanConfig};
use iotsec_scan::target::Target;
use serde::{Deserialize, Serialize};
use support::{PortBlock, Stop};

fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// What must be identical between a normal scan and one under `ulimit -n 256`.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Summary {
    ports: Vec<(u16, String, String)>,
    findings: Vec<(String, String)>,
}

/// Probed ports and their findings (ports of other programs, never probed, are left out).
fn summary(r: &ScanReport) -> Summary {
    let mut findings: Vec<(String, String)> = r
        .findings
        .iter()
        .map(|f| (f.id.clone(), f.location.clone()))
        .collect();
    findings.sort();
    Summary {
        ports: r
            .ports
            .iter()
            .filter(|p| p.service != Service::NotProbed)
            .map(|p| (p.port, p.transport.as_str().to_owned(), p.service_name()))
            .collect(),
        findings,
    }
}

/// The scan request both runs use.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Request {
    ports: String,
    exclude: Vec<u16>,
    ours: Vec<u16>,
    udp: Vec<u16>,
}

fn config(req: &Request) -> ScanConfig {
    let ports = PortSet::parse(&req.ports)
        .unwrap()
        .without(&PortSet::from_ports(req.exclude.iter().copied()));
    let mut c = ScanConfig::new(Target::resolve("127.0.0.1").unwrap(), ports);
    c.probe_only = Some(PortSet::from_ports(req.ours.iter().copied()));
    c.udp_ports = PortSet::from_ports(req.udp.iter().copied());
    c.timeout = Duration::from_millis(1500);
    c.banner_timeout = Duration::from_millis(1000);
    c
}

fn run_scan(req: &Request) -> ScanReport {
    install_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scanner::scan(config(req), Arc::new(|_| {})))
        .unwrap()
}

fn ids_at(r: &ScanReport, port: u16) -> Vec<String> {
    let mut v: Vec<String> = r
        .findings
        .iter()
        .filter(|f| {
            f.location == format!("127.0.0.1:{port}/tcp")
                || f.location == format!("127.0.0.1:{port}/udp")
        })
        .map(|f| f.id.clone())
        .collect();
    v.sort();
    v
}

#[test]
fn one_scan_identifies_every_listener() {
    install_provider();
    let mut block = PortBlock::find(1500);
    let stop = Stop::default();
    let pki = support::Pki::new();
    let mosquitto = support::Mosquitto::start(&pki, &mut block);
    let legacy = support::OpensslLegacy::start(&pki, &mut block);

    let http_open = block.listener();
    let http_auth = block.listener();
    let ssh = block.listener();
    let telnet = block.listener();
    let silent = block.listener();
    let redis = block.listener();
    let modbus = block.listener();
    let tls_old_cert = block.listener();
    let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
    let (p_http, p_auth, p_ssh, p_telnet, p_silent, p_redis, p_modbus, p_tls) = (
        port(&http_open),
        port(&http_auth),
        port(&ssh),
        port(&telnet),
        port(&silent),
        port(&redis),
        port(&modbus),
        port(&tls_old_cert),
    );
    support::http(http_open, stop.clone(), false);
    support::http(http_auth, stop.clone(), true);
    support::ssh(ssh, stop.clone());
    support::telnet(telnet, stop.clone());
    support::silent(silent, stop.clone());
    support::redis(redis, stop.clone());
    support::modbus(modbus, stop.clone());
    support::tls_self_signed_expired(tls_old_cert, stop.clone());
    let p_coap = support::coap(stop.clone());
    let m = &mosquitto.ports;

    let ours: Vec<u16> = vec![
        m.plain_anon,
        m.plain_password,
        m.tls_anon,
        m.tls_client_cert,
        legacy.port,
        p_http,
        p_auth,
        p_ssh,
        p_telnet,
        p_silent,
        p_redis,
        p_modbus,
        p_tls,
    ];
    let req = Request {
        ports: block.spec(),
        exclude: support::foreign_listeners(&ours),
        ours: ours.clone(),
        udp: vec![p_coap],
    };
    let report = run_scan(&req);
    let text = serde_json::to_string_pretty(&report).unwrap();

    // Closed ports produce nothing: exactly our TCP ports are probed and reported. A listener
    // another program opened inside the block meanwhile is reported open but never probed.
    let probed: BTreeSet<u16> = report
        .ports
        .iter()
        .filter(|p| p.transport == Transport::Tcp && p.service != Service::NotProbed)
        .map(|p| p.port)
        .collect();
    assert_eq!(
        probed,
        ours.iter().copied().collect::<BTreeSet<u16>>(),
        "{text}"
    );
    let now_listening = support::foreign_listeners(&ours);
    for p in report
        .ports
        .iter()
        .filter(|p| p.service == Service::NotProbed)
    {
        assert!(
            now_listening.contains(&p.port),
            "port {} reported open: {text}",
            p.port
        );
    }
    assert_eq!(
        report.tcp.closed + report.tcp.open + report.tcp.filtered,
        report.tcp.scanned
    );
    assert_eq!(report.tcp.filtered, 0, "{text}");

    let at = |port: u16| {
        report
            .ports
            .iter()
            .find(|p| p.port == port && p.transport == Transport::Tcp)
            .unwrap()
    };

    // Mosquitto, plain + anonymous.
    let p = at(m.plain_anon);
    assert_eq!(p.service_name(), "mqtt", "{text}");
    assert!(
        matches!(&p.service, Service::Mqtt(s) if s.v311 == Some(ConnectOutcome::Accepted) && s.v5 == Some(ConnectOutcome::Accepted)),
        "{text}"
    );
    assert_eq!(
        ids_at(&report, m.plain_anon),
        ["SCAN-MQTT-ANON", "SCAN-MQTT-PLAINTEXT"]
    );
    // Mosquitto, plain + password: credentials would travel in clear.
    let p = at(m.plain_password);
    assert!(
        matches!(&p.service, Service::Mqtt(s) if s.v311 == Some(ConnectOutcome::NotAuthorized)),
        "{text}"
    );
    assert_eq!(
        ids_at(&report, m.plain_password),
        ["SCAN-MQTT-CLEARTEXT-AUTH"]
    );
    // Mosquitto, TLS + anonymous: MQTT identified inside TLS.
    let p = at(m.tls_anon);
    assert_eq!(p.service_name(), "mqtt/tls", "{text}");
    let tls = p.tls.as_ref().unwrap();
    assert!(
        matches!(tls.version.as_deref(), Some("TLSv1.3" | "TLSv1.2")),
        "{text}"
    );
    assert_eq!(tls.client_auth, ClientAuth::NotRequested);
    assert_eq!(tls.name_match, Some(true));
    let leaf = &tls.chain[0];
    assert!(leaf.subject.contains("broker.test"), "{text}");
    assert!(leaf.issuer.contains("iotsec test CA"), "{text}");
    assert!(!leaf.self_signed);
    assert_eq!(leaf.key.describe(), "EC P-256");
    assert_eq!(leaf.signature_algorithm, "ecdsa-with-SHA256");
    assert!(tls.legacy.is_none(), "{text}");
    assert_eq!(ids_at(&report, m.tls_anon), ["SCAN-MQTT-ANON"]);
    // Mosquitto, TLS + client certificate required.
    let p = at(m.tls_client_cert);
    assert_eq!(p.service_name(), "tls", "{text}");
    let tls = p.tls.as_ref().unwrap();
    // Mosquitto sends no CA names in its CertificateRequest; the refusal is TLS 1.3's alert.
    match &tls.client_auth {
        ClientAuth::Required { refusal, .. } => {
            assert!(refusal.contains("certificate_required"), "{text}");
        }
        other => panic!("client auth {other:?}\n{text}"),
    }
    assert!(ids_at(&report, m.tls_client_cert).is_empty(), "{text}");

    // OpenSSL accepting TLS 1.1.
    let p = at(legacy.port);
    let tls = p.tls.as_ref().expect("legacy port speaks TLS");
    assert_eq!(
        tls.legacy.as_ref().map(|l| l.version.as_str()),
        Some("TLSv1.1"),
        "{text}"
    );
    assert!(
        ids_at(&report, legacy.port).contains(&"SCAN-TLS-OLD-VERSION".to_owned()),
        "{text}"
    );

    // rustls server with a self-signed, expired certificate.
    assert_eq!(
        ids_at(&report, p_tls),
        ["SCAN-TLS-CERT-EXPIRED", "SCAN-TLS-CERT-SELF-SIGNED"],
        "{text}"
    );

    // Small servers.
    let p = at(p_http);
    assert!(
        matches!(&p.service, Service::Http(r) if r.status == 200 && r.server.as_deref() == Some("test-httpd/1.0")),
        "{text}"
    );
    assert!(ids_at(&report, p_http).is_empty());
    let p = at(p_auth);
    assert!(
        matches!(&p.service, Service::Http(r) if r.status == 401 && r.auth_scheme.as_deref() == Some("Basic")),
        "{text}"
    );
    assert_eq!(ids_at(&report, p_auth), ["SCAN-HTTP-CLEARTEXT-AUTH"]);
    assert_eq!(at(p_ssh).service_name(), "ssh", "{text}");
    assert!(at(p_ssh).details().contains("OpenSSH_9.2p1"));
    assert_eq!(at(p_telnet).service_name(), "telnet", "{text}");
    assert_eq!(ids_at(&report, p_telnet), ["SCAN-TELNET-OPEN"]);
    assert_eq!(at(p_redis).service_name(), "redis", "{text}");
    assert_eq!(ids_at(&report, p_redis), ["SCAN-REDIS-NO-AUTH"]);
    assert_eq!(at(p_modbus).service_name(), "modbus", "{text}");
    assert!(at(p_modbus).details().contains("AcmePLC"));
    assert_eq!(ids_at(&report, p_modbus), ["SCAN-MODBUS-OPEN"]);

    // The silent listener: open / unknown, and it did not hold up the others.
    let p = at(p_silent);
    assert_eq!(p.service, Service::Unknown { reply: None }, "{text}");
    assert!(ids_at(&report, p_silent).is_empty());
    for port in [m.plain_anon, m.plain_password, p_http, p_ssh, p_telnet] {
        assert!(at(port).elapsed_ms < 1000, "port {port} waited: {text}");
    }
    assert!(p.elapsed_ms < 5000, "{text}");

    // CoAP over UDP.
    let coap = report
        .ports
        .iter()
        .find(|p| p.transport == Transport::Udp)
        .expect("coap answer");
    assert_eq!(coap.port, p_coap);
    assert_eq!(coap.service_name(), "coap");
    assert_eq!(ids_at(&report, p_coap), ["SCAN-COAP-NO-DTLS"]);

    // Loopback-bound listeners are not "bound to all interfaces".
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.id == "SCAN-LISTEN-ALL-INTERFACES"),
        "{text}"
    );
    assert!(report.local);

    // The same scan under `ulimit -n 256` completes with the same result.
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([
            "low_fd_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("IOTSEC_SCAN_CHILD", serde_json::to_string(&req).unwrap())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CHILD-SUMMARY ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no summary from child: {stdout}"));
    let (soft, child): (u64, Summary) = serde_json::from_str(line).unwrap();
    assert_eq!(soft, 256, "the child did not run under ulimit -n 256");
    assert_eq!(child, summary(&report));

    drop(mosquitto);
    drop(legacy);
    drop(stop);
}

/// Runs the scan described by `IOTSEC_SCAN_CHILD` (spawned under `ulimit -n 256` by the test
/// above) and prints a summary.
#[test]
#[ignore = "spawned by one_scan_identifies_every_listener"]
fn low_fd_child() {
    let req: Request = serde_json::from_str(&std::env::var("IOTSEC_SCAN_CHILD").unwrap()).unwrap();
    let report = run_scan(&req);
    let soft = iotsec_scan::limits::raise_nofile().soft;
    println!(
        "CHILD-SUMMARY {}",
        serde_json::to_string(&(soft, summary(&report))).unwrap()
    );
}

/// The sweep under descriptor exhaustion: every descriptor is taken before it starts; it backs
/// off, gets them back (the progress callback releases them on the first back-off) and still
/// finds exactly the open ports.
#[test]
fn sweep_backs_off_when_out_of_descriptors() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([
            "emfile_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("EMFILE-CHILD-OK"), "{stdout}");
}

#[test]
#[ignore = "spawned by sweep_backs_off_when_out_of_descriptors"]
fn emfile_child() {
    let mut block = PortBlock::find(200);
    let a = block.listener();
    let b = block.listener();
    let mut want = vec![
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    ];
    want.sort_unstable();
    let ports: Vec<u16> = (block.start..=block.end)
        .filter(|p| want.contains(p) || !support::foreign_listeners(&want).contains(p))
        .collect();
    // Take every free descriptor.
    let mut hoard = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hoard.push(f);
    }
    // Leave exactly one for the sweep's epoll instance.
    hoard.pop();
    let mut backoffs_seen = 0;
    let out = iotsec_scan::sweep::sweep(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &ports,
        iotsec_scan::sweep::SweepConfig::new(1000, Duration::from_secs(2)),
        |_| {},
        |p| {
            if p.resource_backoffs > 0 && !hoard.is_empty() {
                backoffs_seen = p.resource_backoffs;
                hoard.clear();
            }
        },
    )
    .expect("sweep completes after backing off");
    assert!(
        backoffs_seen > 0,
        "the sweep never hit the descriptor limit"
    );
    // Our two listeners, plus any another test or program opened in the block meanwhile.
    let others = support::foreign_listeners(&want);
    assert!(want.iter().all(|p| out.open.contains(p)), "{:?}", out.open);
    assert!(
        out.open
            .iter()
            .all(|p| want.contains(p) || others.contains(p)),
        "{:?}",
        out.open
    );
    assert_eq!(
        out.closed + out.open.len() + out.filtered.len(),
        ports.len()
    );
    println!("EMFILE-CHILD-OK backoffs={}", out.stats.resource_backoffs);
}
