//! Active MQTT checks against a broker the operator points the audit at (`--active`): what an
//! anonymous client may subscribe to (`#`, `$SYS/#`), retained messages that leak secrets, the
//! broker version from `$SYS/broker/version` against known-vulnerable releases, and a short,
//! rate-limited list of default credentials.
//!
//! MQTT 3.1.1 through rumqttc. Over TLS the connection uses the scanner's inspection
//! configuration (`iotsec_scan::handshake`): any certificate is accepted so the audit can talk
//! to brokers with private CAs, but the handshake signature is still verified. Nothing the
//! audit sends is secret except the default passwords it tries, which are public.

use std::collections::BTreeSet;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::time::Instant;

use crate::catalog;
use crate::finding::{Location, OwaspIot, Severity};
use crate::report::Assessment;
use crate::secrets::rules::{Kind, Matcher};

/// Settings of the active checks.
#[derive(Debug, Clone)]
pub struct ActiveOptions {
    /// How long to collect messages after subscribing.
    pub listen: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Pause between two default-credential attempts (rate limit).
    pub credential_interval: Duration,
}

impl Default for ActiveOptions {
    /// Listen 3 s, connect within 5 s, one credential attempt per second.
    fn default() -> Self {
        ActiveOptions {
            listen: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
            credential_interval: Duration::from_secs(1),
        }
    }
}

/// The default credentials tried (vendor and tutorial defaults; kept short on purpose).
pub const DEFAULT_CREDENTIALS: &[(&str, &str)] = &[
    ("admin", "admin"),
    ("admin", "password"),
    ("mosquitto", "mosquitto"),
    ("guest", "guest"),
    ("user", "user"),
    ("test", "test"),
];

/// A known vulnerability of a Mosquitto release line.
#[derive(Debug, Clone, Copy)]
pub struct Advisory {
    /// First fixed version.
    pub fixed_in: (u32, u32, u32),
    /// CVE id.
    pub cve: &'static str,
    /// Severity for the audit.
    pub severity: Severity,
    /// What it allows.
    pub summary: &'static str,
}

/// Known-vulnerable Mosquitto versions (a small table from the Eclipse Mosquitto security
/// advisories and the CVE records; a version below `fixed_in` is affected).
pub const MOSQUITTO_ADVISORIES: &[Advisory] = &[
    Advisory {
        fixed_in: (1, 4, 12),
        cve: "CVE-2017-7650",
        severity: Severity::High,
        summary: "pattern ACLs bypassed with client ids or usernames containing + or #",
    },
    Advisory {
        fixed_in: (1, 5, 6),
        cve: "CVE-2018-12546",
        severity: Severity::Medium,
        summary: "retained messages still delivered after access to the topic was revoked",
    },
    Advisory {
        fixed_in: (1, 5, 6),
        cve: "CVE-2018-12551",
        severity: Severity::High,
        summary: "malformed password file lets clients authenticate without a valid password",
    },
    Advisory {
        fixed_in: (1, 6, 6),
        cve: "CVE-2019-11779",
        severity: Severity::Medium,
        summary: "SUBSCRIBE with a very deep topic hierarchy crashes the broker",
    },
    Advisory {
        fixed_in: (2, 0, 11),
        cve: "CVE-2021-34431",
        severity: Severity::Medium,
        summary: "crafted MQTT v5 CONNECT leaks broker memory",
    },
    Advisory {
        fixed_in: (2, 0, 16),
        cve: "CVE-2023-0809",
        severity: Severity::High,
        summary: "unauthenticated clients can make the broker allocate excessive memory",
    },
    Advisory {
        fixed_in: (2, 0, 16),
        cve: "CVE-2023-3592",
        severity: Severity::Medium,
        summary: "memory leak through a crafted CONNECT with a will property",
    },
    Advisory {
        fixed_in: (2, 0, 16),
        cve: "CVE-2023-28366",
        severity: Severity::Medium,
        summary: "memory leak with duplicate QoS 2 message ids",
    },
    Advisory {
        fixed_in: (2, 0, 19),
        cve: "CVE-2024-8376",
        severity: Severity::High,
        summary: "crafted packet sequences cause memory leaks, crashes or use-after-free",
    },
];

/// `x.y.z` from a `$SYS/broker/version` payload such as `mosquitto version 2.0.11`.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    text.split(|c: char| c.is_whitespace() || c == '-' || c == '+')
        .find_map(|tok| {
            let mut it = tok.split('.');
            let v = (
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            );
            it.next().is_none().then_some(v)
        })
}

/// The advisories that affect `version`.
pub fn advisories(version: (u32, u32, u32)) -> Vec<&'static Advisory> {
    MOSQUITTO_ADVISORIES
        .iter()
        .filter(|a| version < a.fixed_in)
        .collect()
}

/// What one MQTT session saw.
#[derive(Debug, Default)]
struct Session {
    /// Subscription results, in request order.
    granted: Vec<(String, bool)>,
    /// `(topic, payload)` of retained messages.
    retained: Vec<(String, Vec<u8>)>,
    /// Every topic seen.
    topics: BTreeSet<String>,
    /// `$SYS/broker/version`.
    version: Option<String>,
}

enum Connect {
    Accepted(Session),
    Refused(ConnectReturnCode),
    Failed(String),
}

/// Runs the active checks on one MQTT port; returns the device ids seen in topics
/// (`devices/<id>/...`).
pub async fn assess(
    host: &str,
    port: u16,
    tls: bool,
    opts: &ActiveOptions,
    a: &mut Assessment,
) -> BTreeSet<String> {
    let at = Location::tcp(host, port);
    let mut seen = BTreeSet::new();
    let what = format!("active MQTT checks on {at}");
    match session(host, port, tls, None, &["#", "$SYS/#"], opts).await {
        Connect::Accepted(s) => {
            for (filter, ok) in &s.granted {
                if *ok && filter == "#" {
                    a.push(catalog::MQTT_ANON_SUBSCRIBE_ALL.finding(
                        at.clone(),
                        "anonymous SUBSCRIBE to `#` granted (SUBACK QoS 0)",
                    ));
                } else if *ok {
                    a.push(catalog::MQTT_ANON_SYS.finding(
                        at.clone(),
                        "anonymous SUBSCRIBE to `$SYS/#` granted (SUBACK QoS 0)",
                    ));
                }
            }
            retained_secrets(&at, &s, a);
            for t in &s.topics {
                if let Some(id) = t.strip_prefix("devices/").and_then(|r| r.split('/').next())
                    && !id.is_empty()
                {
                    seen.insert(id.to_owned());
                }
            }
            version(&at, s.version.as_deref(), a);
            a.covered(OwaspIot::I2, what.clone());
            a.covered(
                OwaspIot::I7,
                format!("{what}: {} retained messages inspected", s.retained.len()),
            );
            a.note(format!(
                "{at}: default credentials not tried, the broker already accepts anonymous clients"
            ));
        }
        Connect::Refused(code) => {
            a.covered(
                OwaspIot::I2,
                format!("{what}: anonymous CONNECT refused ({code:?})"),
            );
            a.note(format!(
                "{at}: anonymous CONNECT refused ({code:?}); subscriptions and $SYS not inspected"
            ));
            credentials(host, port, tls, opts, &at, a).await;
        }
        Connect::Failed(e) => {
            a.note(format!("{at}: active MQTT checks could not connect: {e}"));
        }
    }
    seen
}

fn retained_secrets(at: &Location, s: &Session, a: &mut Assessment) {
    let matcher = Matcher::new();
    for (topic, payload) in &s.retained {
        matcher.scan(payload, false, |_, _, matches| {
            for m in matches {
                let Some(rule) = matcher.rules().get(m.rule) else {
                    continue;
                };
                let Kind::Finding(check) = rule.kind else {
                    continue;
                };
                if check.category != OwaspIot::I1 {
                    continue;
                }
                a.push(catalog::MQTT_RETAINED_SECRET.finding(
                    Location::subject(format!("{at} topic {topic}")),
                    format!("retained on {topic:?}: {} ({})", m.evidence, check.title),
                ));
            }
        });
    }
}

fn version(at: &Location, text: Option<&str>, a: &mut Assessment) {
    let Some(text) = text else {
        a.note(format!(
            "{at}: no $SYS/broker/version received; broker version not assessed"
        ));
        return;
    };
    let Some(v) = parse_version(text) else {
        a.note(format!(
            "{at}: $SYS/broker/version {text:?} has no x.y.z version"
        ));
        return;
    };
    let hits = advisories(v);
    a.covered(OwaspIot::I5, format!("broker version {text:?} at {at}"));
    let Some(worst) = hits.iter().map(|h| h.severity).max() else {
        return;
    };
    let cves: Vec<String> = hits
        .iter()
        .map(|h| {
            format!(
                "{} (fixed in {}.{}.{}: {})",
                h.cve, h.fixed_in.0, h.fixed_in.1, h.fixed_in.2, h.summary
            )
        })
        .collect();
    let mut f = catalog::MQTT_VULNERABLE_VERSION.finding(
        at.clone(),
        format!("$SYS/broker/version = {text:?}; {}. Distribution packages may carry backported fixes under the old version number.", cves.join("; ")),
    );
    f.severity = worst;
    a.push(f);
}

async fn credentials(
    host: &str,
    port: u16,
    tls: bool,
    opts: &ActiveOptions,
    at: &Location,
    a: &mut Assessment,
) {
    let mut tried = 0;
    for (i, (user, pass)) in DEFAULT_CREDENTIALS.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(opts.credential_interval).await;
        }
        tried += 1;
        match session(host, port, tls, Some((user, pass)), &[], opts).await {
            Connect::Accepted(_) => {
                a.push(catalog::MQTT_DEFAULT_CREDENTIALS.finding(
                    at.clone(),
                    format!("CONNECT with username {user:?} and its well-known default password accepted"),
                ));
                break;
            }
            Connect::Refused(_) => {}
            Connect::Failed(e) => {
                a.note(format!(
                    "{at}: default-credential attempt failed to connect: {e}"
                ));
                break;
            }
        }
    }
    a.covered(
        OwaspIot::I1,
        format!(
            "{tried} default credentials tried on {at} (one per {:?})",
            opts.credential_interval
        ),
    );
}

fn client_id() -> String {
    let mut id = [0u8; 4];
    let _ = getrandom::fill(&mut id);
    format!(
        "iotsec-audit-{:02x}{:02x}{:02x}{:02x}",
        id[0], id[1], id[2], id[3]
    )
}

async fn session(
    host: &str,
    port: u16,
    tls: bool,
    creds: Option<(&str, &str)>,
    filters: &[&str],
    opts: &ActiveOptions,
) -> Connect {
    let mut options = MqttOptions::new(client_id(), (host.to_owned(), port));
    options
        .set_keep_alive(10)
        .set_max_packet_size(1 << 20, 1 << 20);
    if tls {
        let provider = iotsec_scan::handshake::provider();
        match iotsec_scan::handshake::inspection_config(&provider) {
            Ok((config, _)) => {
                options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
            }
            Err(e) => return Connect::Failed(format!("TLS configuration: {e}")),
        }
    }
    if let Some((u, p)) = creds {
        options.set_credentials(u, p.to_owned());
    }
    let (client, mut events) = match AsyncClient::builder(options).capacity(16).try_build() {
        Ok(x) => x,
        Err(e) => return Connect::Failed(e.to_string()),
    };
    let deadline = Instant::now() + opts.connect_timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) => {
                return Connect::Failed(format!("no CONNACK within {:?}", opts.connect_timeout));
            }
            Ok(Err(ConnectionError::ConnectionRefused(code))) => return Connect::Refused(code),
            Ok(Err(e)) => return Connect::Failed(e.to_string()),
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                if ack.code != ConnectReturnCode::Success {
                    return Connect::Refused(ack.code);
                }
                break;
            }
            Ok(Ok(_)) => {}
        }
    }
    let mut s = Session::default();
    for f in filters {
        if client.subscribe(*f, QoS::AtMostOnce).await.is_err() {
            break;
        }
    }
    if !filters.is_empty() {
        collect(&mut events, filters, opts.listen, &mut s).await;
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
    Connect::Accepted(s)
}

async fn collect(events: &mut EventLoop, filters: &[&str], listen: Duration, s: &mut Session) {
    let deadline = Instant::now() + listen;
    let mut next_filter = 0usize;
    while let Ok(event) = tokio::time::timeout_at(deadline, events.poll()).await {
        match event {
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                for code in ack.return_codes {
                    if let Some(f) = filters.get(next_filter) {
                        s.granted.push((
                            (*f).to_owned(),
                            matches!(code, SubscribeReasonCode::Success(_)),
                        ));
                    }
                    next_filter += 1;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                if topic == "$SYS/broker/version" {
                    s.version = Some(String::from_utf8_lossy(&p.payload).trim().to_owned());
                }
                if p.retain && s.retained.len() < 10_000 {
                    s.retained.push((topic.clone(), p.payload.to_vec()));
                }
                if s.topics.len() < 10_000 {
                    s.topics.insert(topic);
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_advisories() {
        assert_eq!(parse_version("mosquitto version 2.0.11"), Some((2, 0, 11)));
        assert_eq!(parse_version("mosquitto version 1.6.9-1"), Some((1, 6, 9)));
        assert_eq!(parse_version("unknown"), None);
        let cves: Vec<&str> = advisories((2, 0, 11)).iter().map(|a| a.cve).collect();
        assert!(cves.contains(&"CVE-2023-0809") && !cves.contains(&"CVE-2021-34431"));
        assert!(advisories((2, 0, 20)).is_empty());
        assert_eq!(advisories((1, 4, 0)).len(), MOSQUITTO_ADVISORIES.len());
    }
}
