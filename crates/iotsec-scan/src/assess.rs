//! From observations to findings: pure rules over [`PortReport`]s.

use crate::certificate::Validity;
use crate::check;
use crate::finding::Finding;
use crate::policy::Policy;
use crate::probe::banner::Banner;
use crate::probe::kv::{KvReply, RedisAccess};
use crate::probe::mqtt::{ConnectOutcome, describe};
use crate::report::{PortReport, Service, TlsInfo, Transport};
use crate::target::Target;

/// Findings for the open ports of `target`, under an optional policy. Not sorted.
pub fn assess(target: &Target, ports: &[PortReport], policy: Option<&Policy>) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in ports {
        let at = target.location(p.port, p.transport.as_str());
        service_findings(p, &at, &mut out);
        if let Some(tls) = &p.tls {
            tls_findings(tls, &target.host(), &at, &mut out);
        }
        if let Some(policy) = policy {
            let allowed = match p.transport {
                Transport::Tcp => &policy.tcp_allow,
                Transport::Udp => &policy.udp_allow,
            };
            if !allowed.contains(p.port) {
                out.push(check::POLICY_PORT.finding(
                    &at,
                    format!(
                        "port {}/{} is open ({}) and not in the policy's allow list",
                        p.port,
                        p.transport.as_str(),
                        p.service_name()
                    ),
                ));
            }
        }
        if let Some(binding) = p.binding.as_ref().filter(|b| b.all_interfaces) {
            let addrs: Vec<String> = binding.addresses.iter().map(ToString::to_string).collect();
            let service = match p.service {
                Service::NotProbed => String::new(),
                _ => format!(" ({})", p.service_name()),
            };
            out.push(check::LISTEN_ALL_INTERFACES.finding(
                &at,
                format!(
                    "kernel socket table: port {} listening on {}{service}",
                    p.port,
                    addrs.join(", "),
                ),
            ));
        }
    }
    out
}

fn mqtt_evidence(v311: Option<ConnectOutcome>, v5: Option<ConnectOutcome>, tls: bool) -> String {
    let mut parts = Vec::new();
    if let Some(o) = v311 {
        parts.push(format!(
            "MQTT 3.1.1 CONNECT without credentials: {}",
            describe(o)
        ));
    }
    if let Some(o) = v5 {
        parts.push(format!(
            "MQTT 5 CONNECT without credentials: {}",
            describe(o)
        ));
    }
    parts.push(if tls {
        "listener uses TLS".into()
    } else {
        "listener has no TLS".into()
    });
    parts.join("; ")
}

fn service_findings(p: &PortReport, at: &str, out: &mut Vec<Finding>) {
    let tls = p.tls.is_some();
    match &p.service {
        Service::Mqtt(m) => {
            let evidence = mqtt_evidence(m.v311, m.v5, tls);
            if m.anonymous() {
                out.push(check::MQTT_ANON.finding(at, evidence.clone()));
                if !tls {
                    out.push(check::MQTT_PLAINTEXT.finding(at, evidence.clone()));
                }
            } else if m.wants_credentials() && !tls {
                out.push(check::MQTT_CLEARTEXT_AUTH.finding(at, evidence));
            }
        }
        Service::Telnet(t) => out.push(check::TELNET_OPEN.finding(
            at,
            format!(
                "Telnet option negotiation ({} options) on connect",
                t.negotiations.len()
            ),
        )),
        Service::Greeting(b) => {
            if p.service.name(p.port) == "ftp" && !tls {
                out.push(check::FTP_OPEN.finding(at, format!("greeting: {}", p.service.details())));
            }
            if b.is_ssh_v1_only() {
                let Banner::Ssh { proto_version, .. } = b else {
                    return;
                };
                out.push(
                    check::SSH_V1.finding(at, format!("SSH protocol version {proto_version} only")),
                );
            }
        }
        Service::Http(r) => {
            let basic = r
                .auth_scheme
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("basic"));
            if basic && !tls {
                out.push(check::HTTP_CLEARTEXT_AUTH.finding(
                    at,
                    format!(
                        "{} {} with WWW-Authenticate: Basic over plain HTTP",
                        r.status, r.reason
                    ),
                ));
            }
        }
        Service::Kv(KvReply::Redis {
            access: RedisAccess::Open,
        }) => out.push(check::REDIS_NO_AUTH.finding(at, "PING answered +PONG without AUTH")),
        Service::Kv(KvReply::Memcached {
            version,
            auth_required: false,
        }) => out.push(check::MEMCACHED_NO_AUTH.finding(
            at,
            format!(
                "`version` answered {} without authentication",
                version.as_deref().unwrap_or("?")
            ),
        )),
        Service::Modbus(_) => out.push(check::MODBUS_OPEN.finding(
            at,
            format!(
                "Read Device Identification answered: {}",
                p.service.details()
            ),
        )),
        Service::Coap(c) => out.push(check::COAP_NO_DTLS.finding(
            at,
            format!("GET /.well-known/core over plain UDP answered {}", c.code),
        )),
        _ => {}
    }
}

fn tls_findings(tls: &TlsInfo, host: &str, at: &str, out: &mut Vec<Finding>) {
    if let Some(legacy) = &tls.legacy {
        out.push(check::TLS_OLD_VERSION.finding(
            at,
            format!(
                "ServerHello {} with {} to a ClientHello offering at most TLS 1.1",
                legacy.version, legacy.cipher_suite
            ),
        ));
    }
    let Some(leaf) = tls.chain.first() else {
        return;
    };
    match leaf.validity {
        Validity::Expired => out.push(check::TLS_CERT_EXPIRED.finding(
            at,
            format!(
                "\"{}\" not after {} ({} days ago)",
                leaf.subject, leaf.not_after, -leaf.days_left
            ),
        )),
        Validity::Expiring => out.push(check::TLS_CERT_EXPIRING.finding(
            at,
            format!(
                "\"{}\" not after {} ({} days left)",
                leaf.subject, leaf.not_after, leaf.days_left
            ),
        )),
        Validity::NotYetValid => out.push(check::TLS_CERT_NOT_YET_VALID.finding(
            at,
            format!("\"{}\" not before {}", leaf.subject, leaf.not_before),
        )),
        Validity::Valid => {}
    }
    if leaf.self_signed {
        out.push(check::TLS_CERT_SELF_SIGNED.finding(
            at,
            format!(
                "\"{}\" is issued by itself and verifies under its own key",
                leaf.subject
            ),
        ));
    }
    for cert in &tls.chain {
        if cert.key.is_weak() {
            out.push(check::TLS_CERT_WEAK_KEY.finding(
                at,
                format!("\"{}\" has a {} key", cert.subject, cert.key.describe()),
            ));
        }
        if cert.has_weak_signature() && !cert.self_signed {
            out.push(check::TLS_CERT_WEAK_SIGNATURE.finding(
                at,
                format!(
                    "\"{}\" is signed with {}",
                    cert.subject, cert.signature_algorithm
                ),
            ));
        }
    }
    if tls.name_match == Some(false) {
        out.push(check::TLS_CERT_NAME_MISMATCH.finding(
            at,
            format!(
                "subjectAltName [{}] does not include {host}",
                leaf.san.join(", ")
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ClientAuth, MqttService};
    use std::net::{IpAddr, Ipv4Addr};

    fn target() -> Target {
        Target {
            input: "127.0.0.1".into(),
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            name: None,
        }
    }

    fn port(port: u16, service: Service, tls: Option<TlsInfo>) -> PortReport {
        PortReport {
            port,
            transport: Transport::Tcp,
            service,
            tls,
            binding: None,
            elapsed_ms: 0,
        }
    }

    fn tls() -> TlsInfo {
        TlsInfo {
            version: Some("TLSv1.3".into()),
            cipher_suite: None,
            chain: Vec::new(),
            name_match: None,
            client_auth: ClientAuth::NotRequested,
            legacy: None,
            error: None,
        }
    }

    fn ids(f: &[Finding]) -> Vec<&str> {
        let mut v: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
        v.sort_unstable();
        v
    }

    fn mqtt(v311: ConnectOutcome) -> Service {
        Service::Mqtt(MqttService {
            v311: Some(v311),
            v5: None,
        })
    }

    #[test]
    fn mqtt_rules() {
        let t = target();
        let plain_anon = assess(
            &t,
            &[port(1883, mqtt(ConnectOutcome::Accepted), None)],
            None,
        );
        assert_eq!(ids(&plain_anon), ["SCAN-MQTT-ANON", "SCAN-MQTT-PLAINTEXT"]);
        let plain_auth = assess(
            &t,
            &[port(1884, mqtt(ConnectOutcome::NotAuthorized), None)],
            None,
        );
        assert_eq!(ids(&plain_auth), ["SCAN-MQTT-CLEARTEXT-AUTH"]);
        let tls_anon = assess(
            &t,
            &[port(8883, mqtt(ConnectOutcome::Accepted), Some(tls()))],
            None,
        );
        assert_eq!(ids(&tls_anon), ["SCAN-MQTT-ANON"]);
        let tls_auth = assess(
            &t,
            &[port(8884, mqtt(ConnectOutcome::NotAuthorized), Some(tls()))],
            None,
        );
        assert!(tls_auth.is_empty());
        assert!(plain_anon[0].location.starts_with("127.0.0.1:1883/tcp"));
    }

    #[test]
    fn policy_and_binding() {
        let t = target();
        let policy = Policy::parse("[tcp]\nallow = [8883]\n").unwrap();
        let mut p = port(8883, Service::Tls, Some(tls()));
        p.binding = Some(crate::report::Binding {
            addresses: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            all_interfaces: true,
        });
        let q = port(9999, Service::Unknown { reply: None }, None);
        let f = assess(&t, &[p, q], Some(&policy));
        assert_eq!(ids(&f), ["SCAN-LISTEN-ALL-INTERFACES", "SCAN-POLICY-PORT"]);
        assert!(
            f.iter()
                .any(|f| f.id == "SCAN-POLICY-PORT" && f.location.contains(":9999/"))
        );
    }

    #[test]
    fn legacy_tls_is_flagged() {
        let mut info = tls();
        info.legacy = Some(crate::report::LegacyTls {
            version: "TLSv1.0".into(),
            cipher_suite: "TLS_RSA_WITH_AES_128_CBC_SHA".into(),
        });
        let f = assess(&target(), &[port(443, Service::Tls, Some(info))], None);
        assert_eq!(ids(&f), ["SCAN-TLS-OLD-VERSION"]);
    }
}
