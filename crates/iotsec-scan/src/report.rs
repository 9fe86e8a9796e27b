//! What a scan returns: one [`PortReport`] per open port (closed ports produce nothing), the
//! findings, and counters. Plain data, serialisable as JSON.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::certificate::CertInfo;
use crate::finding::Finding;
use crate::probe::banner::Banner;
use crate::probe::coap::CoapReply;
use crate::probe::http::HttpResponse;
use crate::probe::kv::{KvReply, RedisAccess};
use crate::probe::modbus::ModbusReply;
use crate::probe::mqtt::{ConnectOutcome, describe};
use crate::probe::telnet::{TelnetGreeting, option_name};
use crate::sweep::SweepStats;

/// Transport of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// `tcp` / `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// MQTT answers to CONNECT without credentials, per protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqttService {
    /// Outcome of the MQTT 3.1.1 CONNECT.
    pub v311: Option<ConnectOutcome>,
    /// Outcome of the MQTT 5 CONNECT.
    pub v5: Option<ConnectOutcome>,
}

impl MqttService {
    /// True when any version let an anonymous client in.
    pub fn anonymous(&self) -> bool {
        self.v311 == Some(ConnectOutcome::Accepted) || self.v5 == Some(ConnectOutcome::Accepted)
    }

    /// True when the broker refused for lack of credentials (so clients send them).
    pub fn wants_credentials(&self) -> bool {
        self.v311.is_some_and(ConnectOutcome::wants_credentials)
            || self.v5.is_some_and(ConnectOutcome::wants_credentials)
    }
}

/// The identified application protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "name", content = "info", rename_all = "snake_case")]
pub enum Service {
    /// MQTT broker.
    Mqtt(MqttService),
    /// HTTP server.
    Http(HttpResponse),
    /// Server greeting (SSH, FTP, SMTP, POP3, IMAP, VNC).
    Greeting(Banner),
    /// Telnet.
    Telnet(TelnetGreeting),
    /// Redis or memcached.
    Kv(KvReply),
    /// Modbus/TCP.
    Modbus(ModbusReply),
    /// CoAP (UDP).
    Coap(CoapReply),
    /// TLS spoken, application not identified (e.g. a client certificate is required).
    Tls,
    /// Not probed (sweep only).
    NotProbed,
    /// Nothing we know answered.
    Unknown {
        /// First bytes of any reply, printable.
        reply: Option<String>,
    },
}

impl Service {
    /// Short service name for tables (`mqtt`, `http`, `ssh`, ...). `port` resolves a bare `220`
    /// greeting to FTP or SMTP by the well-known port.
    pub fn name(&self, port: u16) -> &'static str {
        match self {
            Self::Mqtt(_) => "mqtt",
            Self::Http(_) => "http",
            Self::Greeting(b) => match b {
                Banner::Ssh { .. } => "ssh",
                Banner::Ftp { .. } => "ftp",
                Banner::Smtp { .. } => "smtp",
                Banner::Greeting220 { .. } => match port {
                    21 | 2121 => "ftp",
                    25 | 465 | 587 | 2525 => "smtp",
                    _ => "ftp/smtp",
                },
                Banner::Pop3 { .. } => "pop3",
                Banner::Imap { .. } => "imap",
                Banner::Vnc { .. } => "vnc",
            },
            Self::Telnet(_) => "telnet",
            Self::Kv(KvReply::Redis { .. }) => "redis",
            Self::Kv(KvReply::Memcached { .. }) => "memcached",
            Self::Modbus(_) => "modbus",
            Self::Coap(_) => "coap",
            Self::Tls => "tls",
            Self::NotProbed => "-",
            Self::Unknown { .. } => "unknown",
        }
    }

    /// One-line description of what the service said.
    pub fn details(&self) -> String {
        match self {
            Self::Mqtt(m) => {
                let part = |v: &str, o: Option<ConnectOutcome>| {
                    o.map(|o| format!("MQTT {v}: {}", describe(o)))
                };
                [part("3.1.1", m.v311), part("5", m.v5)]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; ")
            }
            Self::Http(r) => {
                let mut s = format!("{} {}", r.status, r.reason);
                if let Some(scheme) = &r.auth_scheme {
                    s.push_str(&format!(", auth {scheme}"));
                    if let Some(realm) = &r.realm {
                        s.push_str(&format!(" realm \"{realm}\""));
                    }
                } else if r.status != 401 {
                    s.push_str(", no auth");
                }
                if let Some(server) = &r.server {
                    s.push_str(&format!(", Server: {server}"));
                }
                s
            }
            Self::Greeting(b) => match b {
                Banner::Ssh {
                    proto_version,
                    software,
                } => format!("SSH-{proto_version}-{software}"),
                Banner::Ftp { greeting }
                | Banner::Smtp { greeting }
                | Banner::Greeting220 { greeting }
                | Banner::Pop3 { greeting }
                | Banner::Imap { greeting } => greeting.clone(),
                Banner::Vnc { version } => format!("RFB {version}"),
            },
            Self::Telnet(t) => {
                let opts: Vec<String> = t
                    .negotiations
                    .iter()
                    .take(6)
                    .map(|(cmd, opt)| {
                        let verb = match cmd {
                            251 => "WILL",
                            252 => "WONT",
                            253 => "DO",
                            _ => "DONT",
                        };
                        format!("{verb} {}", option_name(*opt))
                    })
                    .collect();
                let mut s = format!("IAC {}", opts.join(", "));
                if !t.text.is_empty() {
                    s.push_str(&format!("; \"{}\"", t.text));
                }
                s
            }
            Self::Kv(KvReply::Redis { access }) => match access {
                RedisAccess::Open => "PING answered without authentication".into(),
                RedisAccess::AuthRequired => "authentication required (NOAUTH)".into(),
                RedisAccess::ProtectedMode => "protected mode (DENIED)".into(),
            },
            Self::Kv(KvReply::Memcached {
                version,
                auth_required,
            }) => {
                let v = version.as_deref().unwrap_or("?");
                if *auth_required {
                    format!("version {v}, SASL authentication required")
                } else {
                    format!("version {v}, no authentication")
                }
            }
            Self::Modbus(m) => match m {
                ModbusReply::DeviceId {
                    vendor,
                    product,
                    revision,
                } => format!(
                    "device id: {} {} {}",
                    vendor.as_deref().unwrap_or("?"),
                    product.as_deref().unwrap_or(""),
                    revision.as_deref().unwrap_or("")
                )
                .trim_end()
                .to_owned(),
                ModbusReply::Exception { function, code } => {
                    format!("exception 0x{function:02x} code {code}")
                }
                ModbusReply::Other { function } => format!("function 0x{function:02x}"),
            },
            Self::Coap(c) => {
                let mut s = format!("{} to GET /.well-known/core", c.code);
                if !c.payload.is_empty() {
                    s.push_str(&format!(": {}", c.payload));
                }
                s
            }
            Self::Tls => "TLS; application not identified".into(),
            Self::NotProbed => "not probed".into(),
            Self::Unknown { reply: Some(r) } => format!("replied \"{r}\""),
            Self::Unknown { reply: None } => "no reply to any probe".into(),
        }
    }
}

/// Whether the server asked for a client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClientAuth {
    /// No CertificateRequest.
    NotRequested,
    /// Requested; the connection went on without one.
    Optional {
        /// CA names the server accepts.
        acceptable_issuers: Vec<String>,
    },
    /// Requested, and the server dropped us for not sending one.
    Required {
        /// CA names the server accepts.
        acceptable_issuers: Vec<String>,
        /// How the server refused (alert name or error).
        refusal: String,
    },
}

/// A legacy protocol version the server accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyTls {
    /// `TLSv1.0` or `TLSv1.1`.
    pub version: String,
    /// Cipher suite chosen.
    pub cipher_suite: String,
}

/// TLS facts of a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// Version negotiated by a modern client (TLS 1.2/1.3), if the handshake got that far.
    pub version: Option<String>,
    /// Cipher suite negotiated.
    pub cipher_suite: Option<String>,
    /// Server chain, leaf first.
    pub chain: Vec<CertInfo>,
    /// Does the leaf name the scanned host (IP or DNS name)?
    pub name_match: Option<bool>,
    /// Client certificate request.
    pub client_auth: ClientAuth,
    /// Set when the server also accepts TLS 1.0 or 1.1.
    pub legacy: Option<LegacyTls>,
    /// Why the modern handshake failed, if it did.
    pub error: Option<String>,
}

impl TlsInfo {
    /// One-line summary for tables.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match (&self.version, &self.cipher_suite) {
            (Some(v), Some(s)) => parts.push(format!("{v} {s}")),
            (Some(v), None) => parts.push(v.clone()),
            _ => {}
        }
        if let Some(leaf) = self.chain.first() {
            let mut cert = format!("cert \"{}\" {}", leaf.subject, leaf.key.describe());
            if leaf.self_signed {
                cert.push_str(" self-signed");
            }
            cert.push_str(&format!(", {} days left", leaf.days_left));
            parts.push(cert);
        }
        match &self.client_auth {
            ClientAuth::NotRequested => {}
            ClientAuth::Optional { .. } => parts.push("client cert optional".into()),
            ClientAuth::Required { .. } => parts.push("client cert required".into()),
        }
        if let Some(l) = &self.legacy {
            parts.push(format!("also accepts {}", l.version));
        }
        if let Some(e) = &self.error {
            parts.push(format!("handshake: {e}"));
        }
        parts.join(", ")
    }
}

/// Where a local listener is bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// Bound addresses serving this port (from the kernel's socket table).
    pub addresses: Vec<IpAddr>,
    /// True when one of them is `0.0.0.0` or `::`.
    pub all_interfaces: bool,
}

/// One open port. Serialised with two computed fields for machines that only want the table:
/// `label` ([`PortReport::service_name`]) and `summary` ([`PortReport::details`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PortReport {
    /// Port number.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
    /// Application protocol.
    pub service: Service,
    /// TLS facts when the port speaks TLS.
    pub tls: Option<TlsInfo>,
    /// Local target only: where the listener is bound.
    pub binding: Option<Binding>,
    /// Time spent identifying the port, milliseconds.
    pub elapsed_ms: u64,
}

impl Serialize for PortReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            port: u16,
            transport: Transport,
            label: String,
            summary: String,
            service: &'a Service,
            tls: &'a Option<TlsInfo>,
            binding: &'a Option<Binding>,
            elapsed_ms: u64,
        }
        Out {
            port: self.port,
            transport: self.transport,
            label: self.service_name(),
            summary: self.details(),
            service: &self.service,
            tls: &self.tls,
            binding: &self.binding,
            elapsed_ms: self.elapsed_ms,
        }
        .serialize(serializer)
    }
}

impl PortReport {
    /// Service name with `/tls` when wrapped in TLS (`mqtt/tls`, `http/tls`, `tls`).
    pub fn service_name(&self) -> String {
        let name = self.service.name(self.port);
        match (&self.tls, &self.service) {
            (Some(_), Service::Tls) | (None, _) => name.to_owned(),
            (Some(_), _) => format!("{name}/tls"),
        }
    }

    /// Service details and TLS summary, for tables.
    pub fn details(&self) -> String {
        let mut parts = Vec::new();
        if !matches!(self.service, Service::Tls) || self.tls.is_none() {
            parts.push(self.service.details());
        }
        if let Some(tls) = &self.tls {
            parts.push(tls.summary());
        }
        if self.binding.as_ref().is_some_and(|b| b.all_interfaces) {
            parts.push("bound to all interfaces".into());
        }
        parts.retain(|p| !p.is_empty());
        parts.join(" | ")
    }
}

/// Counters of the TCP sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpSummary {
    /// Ports swept.
    pub scanned: usize,
    /// Open.
    pub open: usize,
    /// Refused.
    pub closed: usize,
    /// Timed out or unreachable.
    pub filtered: usize,
    /// How the sweep loop behaved.
    pub sweep: SweepStats,
}

/// The result of one scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    /// What the user typed.
    pub target: String,
    /// Address scanned.
    pub address: IpAddr,
    /// True when the target is this machine.
    pub local: bool,
    /// Start time (RFC 3339).
    pub started: String,
    /// Whole scan duration, milliseconds.
    pub duration_ms: u64,
    /// Sweep counters.
    pub tcp: TcpSummary,
    /// UDP ports probed (CoAP).
    pub udp_probed: usize,
    /// Open TCP ports and answering UDP ports, by transport then port.
    pub ports: Vec<PortReport>,
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::mqtt::ConnectOutcome;

    #[test]
    fn port_json_has_label_and_round_trips() {
        let p = PortReport {
            port: 1883,
            transport: Transport::Tcp,
            service: Service::Mqtt(MqttService {
                v311: Some(ConnectOutcome::Accepted),
                v5: Some(ConnectOutcome::NotAuthorized),
            }),
            tls: None,
            binding: None,
            elapsed_ms: 4,
        };
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["label"], "mqtt");
        assert_eq!(json["service"]["name"], "mqtt");
        assert_eq!(json["service"]["info"]["v311"], "accepted");
        assert!(
            json["summary"]
                .as_str()
                .unwrap()
                .contains("anonymous access accepted")
        );
        let back: PortReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }
}
