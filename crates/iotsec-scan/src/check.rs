//! The scanner's catalog of checks. Ids are stable: policies, suppressions and the audit refer to
//! them, so an id is never renamed or reused for a different meaning.

use crate::finding::{Check, OwaspIot, Severity};

/// An MQTT broker accepts a CONNECT without username or password.
pub const MQTT_ANON: Check = Check {
    id: "SCAN-MQTT-ANON",
    severity: Severity::High,
    category: OwaspIot::I2,
    title: "MQTT broker accepts anonymous clients",
    remediation: "Set `allow_anonymous false` (Mosquitto) and require a password file, client certificates or both; restrict topics with an ACL.",
};

/// A plaintext MQTT listener rejects anonymous clients, so clients send passwords over it in clear.
pub const MQTT_CLEARTEXT_AUTH: Check = Check {
    id: "SCAN-MQTT-CLEARTEXT-AUTH",
    severity: Severity::High,
    category: OwaspIot::I7,
    title: "MQTT listener without TLS asks for credentials: passwords travel in clear",
    remediation: "Move authenticated clients to a TLS listener (8883) and close the plaintext one, or bind it to 127.0.0.1.",
};

/// A plaintext MQTT listener carries telemetry and commands unencrypted.
pub const MQTT_PLAINTEXT: Check = Check {
    id: "SCAN-MQTT-PLAINTEXT",
    severity: Severity::Medium,
    category: OwaspIot::I7,
    title: "MQTT listener without TLS",
    remediation: "Serve MQTT over TLS (8883) and close the plaintext listener, or bind it to 127.0.0.1 for local clients only.",
};

/// Telnet is open.
pub const TELNET_OPEN: Check = Check {
    id: "SCAN-TELNET-OPEN",
    severity: Severity::High,
    category: OwaspIot::I2,
    title: "Telnet service open (logins and sessions in clear)",
    remediation: "Disable telnetd; use SSH with keys for remote administration.",
};

/// FTP is open.
pub const FTP_OPEN: Check = Check {
    id: "SCAN-FTP-OPEN",
    severity: Severity::Medium,
    category: OwaspIot::I2,
    title: "FTP service open (credentials and files in clear)",
    remediation: "Disable FTP; transfer files over SFTP or HTTPS.",
};

/// SSH protocol version 1 is offered.
pub const SSH_V1: Check = Check {
    id: "SCAN-SSH-V1",
    severity: Severity::High,
    category: OwaspIot::I5,
    title: "SSH server offers protocol version 1",
    remediation: "Upgrade the SSH server and allow protocol 2 only.",
};

/// Plain HTTP asks for Basic credentials.
pub const HTTP_CLEARTEXT_AUTH: Check = Check {
    id: "SCAN-HTTP-CLEARTEXT-AUTH",
    severity: Severity::High,
    category: OwaspIot::I7,
    title: "HTTP without TLS asks for Basic credentials: passwords travel in clear",
    remediation: "Serve the interface over HTTPS only and redirect or close plain HTTP.",
};

/// TLS below 1.2 is accepted.
pub const TLS_OLD_VERSION: Check = Check {
    id: "SCAN-TLS-OLD-VERSION",
    severity: Severity::High,
    category: OwaspIot::I7,
    title: "TLS below 1.2 accepted",
    remediation: "Allow TLS 1.2 and 1.3 only (Mosquitto: `tls_version tlsv1.2`; OpenSSL: MinProtocol = TLSv1.2).",
};

/// The server certificate has expired.
pub const TLS_CERT_EXPIRED: Check = Check {
    id: "SCAN-TLS-CERT-EXPIRED",
    severity: Severity::High,
    category: OwaspIot::I7,
    title: "TLS certificate expired",
    remediation: "Renew the certificate (`iotsec pki server`) and automate renewal before expiry.",
};

/// The server certificate expires soon.
pub const TLS_CERT_EXPIRING: Check = Check {
    id: "SCAN-TLS-CERT-EXPIRING",
    severity: Severity::Medium,
    category: OwaspIot::I8,
    title: "TLS certificate expires within 30 days",
    remediation: "Renew the certificate now and automate renewal.",
};

/// The server certificate is not valid yet.
pub const TLS_CERT_NOT_YET_VALID: Check = Check {
    id: "SCAN-TLS-CERT-NOT-YET-VALID",
    severity: Severity::Medium,
    category: OwaspIot::I7,
    title: "TLS certificate not valid yet (clock or issuance error)",
    remediation: "Check the issuing clock and the device clock; reissue the certificate with a correct validity period.",
};

/// The server certificate is self-signed.
pub const TLS_CERT_SELF_SIGNED: Check = Check {
    id: "SCAN-TLS-CERT-SELF-SIGNED",
    severity: Severity::Medium,
    category: OwaspIot::I7,
    title: "TLS certificate is self-signed (clients cannot verify the server)",
    remediation: "Issue the server certificate from a CA the clients trust (`iotsec pki init` + `iotsec pki server`) and make clients verify it.",
};

/// The server key is too small.
pub const TLS_CERT_WEAK_KEY: Check = Check {
    id: "SCAN-TLS-CERT-WEAK-KEY",
    severity: Severity::High,
    category: OwaspIot::I7,
    title: "TLS certificate key too weak (RSA < 2048 bits or EC < 256 bits)",
    remediation: "Reissue the certificate with an ECDSA P-256 (or RSA >= 2048-bit) key.",
};

/// The certificate is signed with a broken hash.
pub const TLS_CERT_WEAK_SIGNATURE: Check = Check {
    id: "SCAN-TLS-CERT-WEAK-SIGNATURE",
    severity: Severity::Medium,
    category: OwaspIot::I7,
    title: "TLS certificate signed with MD5 or SHA-1",
    remediation: "Reissue the certificate with a SHA-256 (or stronger) signature.",
};

/// The certificate does not name the scanned host.
pub const TLS_CERT_NAME_MISMATCH: Check = Check {
    id: "SCAN-TLS-CERT-NAME-MISMATCH",
    severity: Severity::Low,
    category: OwaspIot::I7,
    title: "TLS certificate does not name the scanned host",
    remediation: "Reissue the certificate with the host name or IP address clients use in its subjectAltName.",
};

/// Redis answers without authentication.
pub const REDIS_NO_AUTH: Check = Check {
    id: "SCAN-REDIS-NO-AUTH",
    severity: Severity::Critical,
    category: OwaspIot::I2,
    title: "Redis answers without authentication",
    remediation: "Set `requirepass` (or ACL users), bind Redis to 127.0.0.1 and keep protected mode on.",
};

/// memcached answers without authentication.
pub const MEMCACHED_NO_AUTH: Check = Check {
    id: "SCAN-MEMCACHED-NO-AUTH",
    severity: Severity::High,
    category: OwaspIot::I2,
    title: "memcached answers without authentication",
    remediation: "Bind memcached to 127.0.0.1 (`-l 127.0.0.1`) or enable SASL; never expose it to a network.",
};

/// Modbus/TCP answers: it has no authentication at all.
pub const MODBUS_OPEN: Check = Check {
    id: "SCAN-MODBUS-OPEN",
    severity: Severity::High,
    category: OwaspIot::I2,
    title: "Modbus/TCP reachable (no authentication: anyone can read and write registers)",
    remediation: "Keep Modbus on an isolated control network or behind a firewall allowing only the controllers; use Modbus/TCP Security (TLS, port 802) where supported.",
};

/// CoAP answers resource discovery over plain UDP.
pub const COAP_NO_DTLS: Check = Check {
    id: "SCAN-COAP-NO-DTLS",
    severity: Severity::Medium,
    category: OwaspIot::I7,
    title: "CoAP answers resource discovery without DTLS",
    remediation: "Serve CoAP over DTLS (coaps, 5684) with authenticated clients, or restrict it to the local network.",
};

/// A port is open that the policy does not allow.
pub const POLICY_PORT: Check = Check {
    id: "SCAN-POLICY-PORT",
    severity: Severity::Medium,
    category: OwaspIot::I2,
    title: "Port open but not allowed by the policy: close this port",
    remediation: "Stop or firewall the service, or add the port to the policy's allow list if it is needed.",
};

/// A local listener is bound to every interface.
pub const LISTEN_ALL_INTERFACES: Check = Check {
    id: "SCAN-LISTEN-ALL-INTERFACES",
    severity: Severity::Low,
    category: OwaspIot::I9,
    title: "Listener bound to all interfaces",
    remediation: "Bind the service to 127.0.0.1 (or the one interface that needs it) unless remote clients must reach it.",
};

/// Every check of the scanner, for documentation and for consumers that list them.
pub const ALL: &[Check] = &[
    MQTT_ANON,
    MQTT_CLEARTEXT_AUTH,
    MQTT_PLAINTEXT,
    TELNET_OPEN,
    FTP_OPEN,
    SSH_V1,
    HTTP_CLEARTEXT_AUTH,
    TLS_OLD_VERSION,
    TLS_CERT_EXPIRED,
    TLS_CERT_EXPIRING,
    TLS_CERT_NOT_YET_VALID,
    TLS_CERT_SELF_SIGNED,
    TLS_CERT_WEAK_KEY,
    TLS_CERT_WEAK_SIGNATURE,
    TLS_CERT_NAME_MISMATCH,
    REDIS_NO_AUTH,
    MEMCACHED_NO_AUTH,
    MODBUS_OPEN,
    COAP_NO_DTLS,
    POLICY_PORT,
    LISTEN_ALL_INTERFACES,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let mut ids: Vec<&str> = ALL.iter().map(|c| c.id).collect();
        for id in &ids {
            assert!(id.starts_with("SCAN-"), "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-'),
                "{id}"
            );
        }
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len());
    }
}
