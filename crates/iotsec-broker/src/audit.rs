//! `broker audit-conf`: findings for an existing mosquitto.conf.
//!
//! Stable ids (never renumbered; the audit and SARIF output key on them):
//!
//! | id | severity | category | what |
//! |---|---|---|---|
//! | BRK-ANON-EXPOSED | critical | I9 | anonymous clients on a listener reachable from the network |
//! | BRK-ANON-LOCAL | low | I9 | anonymous clients on a loopback-only listener |
//! | BRK-PLAINTEXT | high | I7 | network listener without TLS |
//! | BRK-WS-PLAINTEXT | high | I7 | websockets listener without TLS |
//! | BRK-TLS-OLD | high | I7 | `tls_version` below TLS 1.2 |
//! | BRK-NO-CLIENT-AUTH | high | I1 | TLS without client certificates and without a password file or plugin |
//! | BRK-IDENTITY-UNBOUND | medium | I8 | client certificates required but the MQTT username is not taken from them |
//! | BRK-NO-ACL | medium | I9 | no `acl_file` or plugin: every client may use every topic |
//! | BRK-ACL-WILDCARD | high | I9 | ACL grants `#` |
//! | BRK-PASSWD-PLAINTEXT | critical | I1 | password file with unhashed passwords |
//! | BRK-PASSWD-PERMS | high | I1 | password file readable by others |
//! | BRK-KEY-PERMS | high | I7 | TLS private key readable by others |
//! | BRK-LOG-NONE | low | I8 | logging disabled |
//! | BRK-MTLS-NO-CRL | medium | I8 | client certificates without a CRL: no way to revoke a device |
//! | BRK-MISSING-FILE | medium | I9 | a referenced file does not exist |

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::acl::{self, Access};
use crate::conf::{self, Config, Listener, Location, Protocol};
use crate::finding::{Finding, OwaspIot, Severity};

struct Sink(Vec<Finding>);

impl Sink {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        id: &'static str,
        severity: Severity,
        category: OwaspIot,
        title: impl Into<String>,
        evidence: impl Into<String>,
        location: Option<Location>,
        remediation: impl Into<String>,
    ) {
        let f = Finding {
            id,
            severity,
            category,
            title: title.into(),
            evidence: evidence.into(),
            location,
            remediation: remediation.into(),
        };
        if !self.0.contains(&f) {
            self.0.push(f);
        }
    }
}

fn listener_loc(l: &Listener) -> Option<Location> {
    l.declared.clone()
}

fn listener_name(l: &Listener) -> String {
    if l.implicit_local_only {
        "implicit local-only listener 127.0.0.1:1883 (no listener configured)".into()
    } else {
        format!("listener {}", l.address())
    }
}

/// Audits a loaded configuration. Files it references (ACL, password file, keys) are read to
/// check their contents and permissions.
pub fn audit(config: &Config) -> Vec<Finding> {
    let mut sink = Sink(Vec::new());
    for l in &config.listeners {
        audit_listener(config, l, &mut sink);
    }
    if let Some(d) = config.global("log_dest")
        && d.value.trim() == "none"
    {
        sink.push(
                "BRK-LOG-NONE",
                Severity::Low,
                OwaspIot::I8,
                "logging is disabled",
                "log_dest none",
                Some(d.at.clone()),
                "log to a file or syslog (`log_dest file /var/log/mosquitto/mosquitto.log`) so connection attempts can be investigated",
            );
    }
    let mut findings = sink.0;
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(b.id)));
    findings
}

fn audit_listener(config: &Config, l: &Listener, sink: &mut Sink) {
    let name = listener_name(l);
    let exposed = !l.loopback_only();
    let anonymous = l.allow_anonymous();
    let anon_loc = l
        .security_option("allow_anonymous")
        .map(|d| d.at.clone())
        .or_else(|| listener_loc(l));

    if anonymous {
        if exposed {
            sink.push(
                "BRK-ANON-EXPOSED",
                Severity::Critical,
                OwaspIot::I9,
                format!("{name} accepts anonymous clients from the network"),
                format!("allow_anonymous true on {}", l.address()),
                anon_loc,
                "set `allow_anonymous false` and authenticate clients with certificates (`require_certificate true`, `use_identity_as_username true`) or a hashed password file",
            );
        } else {
            sink.push(
                "BRK-ANON-LOCAL",
                Severity::Low,
                OwaspIot::I9,
                format!("{name} accepts anonymous clients (loopback only)"),
                format!("allow_anonymous true on {}", l.address()),
                anon_loc,
                "any local process can publish and subscribe; set `allow_anonymous false` unless this is a throw-away lab broker",
            );
        }
    }

    if exposed && !l.tls() {
        let (id, what) = match l.protocol() {
            Protocol::Websockets => ("BRK-WS-PLAINTEXT", "websockets"),
            Protocol::Mqtt => ("BRK-PLAINTEXT", "MQTT"),
        };
        sink.push(
            id,
            Severity::High,
            OwaspIot::I7,
            format!("{name} serves {what} without TLS to the network"),
            format!("no certfile/keyfile on {}", l.address()),
            listener_loc(l),
            "serve MQTT over TLS only (port 8883 with certfile, keyfile, cafile); bind plaintext listeners to 127.0.0.1 if they must exist",
        );
    }

    if let Some(d) = l.option("tls_version") {
        let v = d.value.trim().to_ascii_lowercase();
        if v == "tlsv1" || v == "tlsv1.1" || v.starts_with("sslv") {
            sink.push(
                "BRK-TLS-OLD",
                Severity::High,
                OwaspIot::I7,
                format!("{name} allows {} (below TLS 1.2)", d.value),
                format!("tls_version {}", d.value),
                Some(d.at.clone()),
                "set `tls_version tlsv1.2` (the minimum; TLS 1.3 is negotiated when both sides support it)",
            );
        }
    }

    let require_cert = l.flag("require_certificate");
    let password_file = l.security_option("password_file");
    let plugin = l
        .security_option("plugin")
        .or_else(|| l.security_option("auth_plugin"));
    if l.tls() && !require_cert && password_file.is_none() && plugin.is_none() && !anonymous {
        sink.push(
            "BRK-NO-CLIENT-AUTH",
            Severity::High,
            OwaspIot::I1,
            format!("{name} has TLS but neither client certificates nor a password file"),
            "require_certificate false, no password_file, no auth plugin",
            listener_loc(l),
            "require client certificates (`require_certificate true`, `use_identity_as_username true`) or configure a hashed password_file",
        );
    }
    if require_cert && !l.flag("use_identity_as_username") && !l.flag("use_subject_as_username") {
        sink.push(
            "BRK-IDENTITY-UNBOUND",
            Severity::Medium,
            OwaspIot::I8,
            format!("{name} requires client certificates but takes the MQTT username from the client"),
            "require_certificate true without use_identity_as_username",
            l.option("require_certificate").map(|d| d.at.clone()),
            "set `use_identity_as_username true` so ACLs apply to the certificate's identity, not a claimed username",
        );
    }
    if require_cert && l.option("crlfile").is_none() && l.option("capath").is_none() {
        sink.push(
            "BRK-MTLS-NO-CRL",
            Severity::Medium,
            OwaspIot::I8,
            format!("{name} accepts client certificates but has no CRL"),
            "require_certificate true without crlfile",
            l.option("require_certificate").map(|d| d.at.clone()),
            "issue a CRL (`iotsec pki crl`) and set `crlfile`, so a stolen device can be revoked",
        );
    }

    let acl = l.security_option("acl_file");
    if acl.is_none() && plugin.is_none() {
        sink.push(
            "BRK-NO-ACL",
            Severity::Medium,
            OwaspIot::I9,
            format!("{name} has no ACL: every client may publish and subscribe to every topic"),
            "no acl_file and no plugin",
            listener_loc(l),
            "add an acl_file that gives each device only its own topics (`pattern write devices/%u/telemetry`)",
        );
    }
    if let Some(d) = acl {
        audit_acl(&config.path, d, sink);
    }
    if let Some(d) = password_file {
        audit_password_file(&config.path, d, sink);
    }
    for key in ["certfile", "cafile", "crlfile"] {
        if let Some(d) = l.option(key) {
            missing_file(&config.path, d, sink);
        }
    }
    if let Some(d) = l.option("keyfile") {
        let path = conf::resolve(&config.path, &d.value);
        if missing_file(&config.path, d, sink)
            && let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o004 != 0
        {
            sink.push(
                "BRK-KEY-PERMS",
                Severity::High,
                OwaspIot::I7,
                "TLS private key is readable by every local user",
                format!(
                    "{} mode {:o}",
                    path.display(),
                    meta.permissions().mode() & 0o777
                ),
                Some(d.at.clone()),
                "chmod 0640 and chgrp mosquitto (or 0600 when the broker does not run as root)",
            );
        }
    }
}

/// Returns true when the file exists.
fn missing_file(config: &Path, d: &conf::Directive, sink: &mut Sink) -> bool {
    let path = conf::resolve(config, &d.value);
    if path.exists() {
        return true;
    }
    sink.push(
        "BRK-MISSING-FILE",
        Severity::Medium,
        OwaspIot::I9,
        format!("{} points to a file that does not exist", d.key),
        format!("{} {}", d.key, d.value),
        Some(d.at.clone()),
        "fix the path; Mosquitto refuses to start (or, for ACL and password files, fails open or closed depending on version)",
    );
    false
}

fn audit_acl(config: &Path, d: &conf::Directive, sink: &mut Sink) {
    let path = conf::resolve(config, &d.value);
    let Ok(text) = std::fs::read_to_string(&path) else {
        missing_file(config, d, sink);
        return;
    };
    for rule in acl::parse(&path, &text) {
        let t = rule.topic.as_str();
        let all = t == "#" || t == "+/#";
        if all && rule.access != Access::Deny {
            let who = match (&rule.user, rule.pattern) {
                (_, true) => "every client (pattern)".to_string(),
                (Some(u), _) => format!("user {u}"),
                (None, _) => "anonymous clients".to_string(),
            };
            sink.push(
                "BRK-ACL-WILDCARD",
                Severity::High,
                OwaspIot::I9,
                format!("ACL grants {who} access to every topic"),
                format!("{} {t}", if rule.pattern { "pattern" } else { "topic" }),
                Some(rule.at.clone()),
                "grant each identity only its own subtree (`pattern write devices/%u/telemetry`); keep `#` for no one but a monitored admin",
            );
        }
    }
}

fn audit_password_file(config: &Path, d: &conf::Directive, sink: &mut Sink) {
    let path = conf::resolve(config, &d.value);
    let Ok(text) = std::fs::read_to_string(&path) else {
        missing_file(config, d, sink);
        return;
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let hash = line.split_once(':').map(|(_, h)| h).unwrap_or("");
        if !(hash.starts_with("$6$") || hash.starts_with("$7$")) {
            let user = line.split(':').next().unwrap_or("");
            sink.push(
                "BRK-PASSWD-PLAINTEXT",
                Severity::Critical,
                OwaspIot::I1,
                format!("password file stores the password of {user:?} unhashed"),
                format!("{}:{}: {user}:<not a $6$/$7$ hash>", path.display(), i + 1),
                Some(Location {
                    file: path.clone(),
                    line: i + 1,
                }),
                "hash every entry with `mosquitto_passwd -U FILE` and rotate the exposed passwords",
            );
        }
    }
    if let Ok(meta) = std::fs::metadata(&path)
        && meta.permissions().mode() & 0o004 != 0
    {
        sink.push(
            "BRK-PASSWD-PERMS",
            Severity::High,
            OwaspIot::I1,
            "password file is readable by every local user",
            format!(
                "{} mode {:o}",
                path.display(),
                meta.permissions().mode() & 0o777
            ),
            Some(d.at.clone()),
            "chmod 0640 and chgrp mosquitto",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<&'static str> {
        let c = Config::parse(Path::new("/nonexistent/test.conf"), text).unwrap();
        audit(&c).into_iter().map(|f| f.id).collect()
    }

    #[test]
    fn plaintext_anonymous_on_all_interfaces() {
        let ids = ids("listener 1883 0.0.0.0\nallow_anonymous true\n");
        assert!(ids.contains(&"BRK-ANON-EXPOSED"));
        assert!(ids.contains(&"BRK-PLAINTEXT"));
        assert!(ids.contains(&"BRK-NO-ACL"));
    }

    #[test]
    fn default_config_is_local_only() {
        let ids = ids("");
        assert!(ids.contains(&"BRK-ANON-LOCAL"));
        assert!(!ids.contains(&"BRK-ANON-EXPOSED"));
        assert!(!ids.contains(&"BRK-PLAINTEXT"));
    }

    #[test]
    fn old_tls_and_websockets() {
        let ids = ids(
            "listener 8883\ncertfile /x\nkeyfile /y\ntls_version tlsv1\n\
             listener 9001\nprotocol websockets\nlog_dest none\n",
        );
        assert!(ids.contains(&"BRK-TLS-OLD"));
        assert!(ids.contains(&"BRK-WS-PLAINTEXT"));
        assert!(ids.contains(&"BRK-NO-CLIENT-AUTH"));
        assert!(ids.contains(&"BRK-LOG-NONE"));
        assert!(ids.contains(&"BRK-MISSING-FILE"));
    }

    #[test]
    fn mtls_without_crl() {
        let ids = ids("listener 8883\nrequire_certificate true\n");
        assert!(ids.contains(&"BRK-MTLS-NO-CRL"));
        assert!(ids.contains(&"BRK-IDENTITY-UNBOUND"));
    }
}
