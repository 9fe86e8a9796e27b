//! The `[web]` section of `server.toml`: raw (what the file says) -> [`WebConfig`] (checked,
//! paths resolved against the directory of `server.toml`).
//!
//! ```toml
//! [web]
//! listen = "127.0.0.1:8443"       # HTTPS API + dashboard
//! cert = "pki/web.crt"            # from `iotsec pki server` (not needed with [web.acme])
//! key = "pki/web.key"
//! tokens = "tokens.json"          # bearer tokens (SHA-256 hashes only), mode 0600
//! audit_report = "audit.json"     # optional: `iotsec audit --format json --out audit.json`
//! client_ca = "pki/ca.crt"        # optional: operator client certificates chain to this CA
//! client_crl = "pki/crl.pem"      # optional: ... and are not revoked by this CRL
//! operators = ["ops-alice"]       # certificate CNs that are operators (admin role)
//! online_secs = 30                # a device is online when seen within this many seconds
//! max_failed_auth_per_minute = 10 # per client IP; then 429 until the minute has passed
//! events_ms = 1000                # how often /api/events looks for changes
//!
//! [web.acme]                      # optional: certificate from an ACME CA (Let's Encrypt)
//! directory = "https://acme-v02.api.letsencrypt.org/directory"
//! domains = ["iot.example.com"]
//! email = "ops@example.com"       # optional contact
//! account_key = "acme/account.json"  # account credentials, mode 0600
//! cache = "acme"                  # issued certificate and key (key 0600)
//! http_listen = "0.0.0.0:80"      # HTTP-01 challenge responder
//! directory_ca = "test-root.pem"  # optional: trust this root for the ACME server's own TLS
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Result, WebError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: String,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default = "default_tokens")]
    tokens: PathBuf,
    audit_report: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    client_crl: Option<PathBuf>,
    #[serde(default)]
    operators: Vec<String>,
    #[serde(default = "default_online")]
    online_secs: u64,
    #[serde(default = "default_failed")]
    max_failed_auth_per_minute: u32,
    #[serde(default = "default_events")]
    events_ms: u64,
    acme: Option<RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: String,
    domains: Vec<String>,
    email: Option<String>,
    #[serde(default = "default_account")]
    account_key: PathBuf,
    #[serde(default = "default_cache")]
    cache: PathBuf,
    #[serde(default = "default_http_listen")]
    http_listen: String,
    directory_ca: Option<PathBuf>,
}

fn default_tokens() -> PathBuf {
    PathBuf::from(DEFAULT_TOKENS)
}
fn default_online() -> u64 {
    30
}
fn default_failed() -> u32 {
    10
}
fn default_events() -> u64 {
    1000
}
fn default_account() -> PathBuf {
    PathBuf::from("acme/account.json")
}
fn default_cache() -> PathBuf {
    PathBuf::from("acme")
}
fn default_http_listen() -> String {
    "0.0.0.0:80".into()
}

/// The token file's default name, next to `server.toml`.
pub const DEFAULT_TOKENS: &str = "tokens.json";

/// Where the HTTPS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// Files issued by `iotsec pki server` (or any other CA).
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// Obtained and renewed from an ACME CA.
    Acme(AcmeConfig),
}

/// The checked `[web.acme]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// ACME directory URL (https).
    pub directory: String,
    /// DNS names the certificate covers (the first one is the primary).
    pub domains: Vec<String>,
    /// Contact address.
    pub email: Option<String>,
    /// Account credentials file (0600).
    pub account_key: PathBuf,
    /// Directory of the issued `cert.pem` and `key.pem` (0600).
    pub cache: PathBuf,
    /// Where the HTTP-01 challenge responder listens.
    pub http_listen: SocketAddr,
    /// Extra root the ACME server's own TLS certificate chains to (test CAs such as pebble).
    pub directory_ca: Option<PathBuf>,
}

/// The checked `[web]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// The HTTPS certificate.
    pub cert: CertSource,
    /// Token file.
    pub tokens: PathBuf,
    /// Latest audit report (JSON).
    pub audit_report: Option<PathBuf>,
    /// CA for operator client certificates.
    pub client_ca: Option<PathBuf>,
    /// CRL for operator client certificates.
    pub client_crl: Option<PathBuf>,
    /// Certificate CNs that are operators.
    pub operators: Vec<String>,
    /// Online window.
    pub online: Duration,
    /// Failed authentications per client IP and minute before 429.
    pub max_failed_auth_per_minute: u32,
    /// Change detection interval of `/api/events`.
    pub events_interval: Duration,
}

/// Command-line overrides of `[web.acme]` (`iotsec serve --acme-directory ...`).
#[derive(Debug, Clone, Default)]
pub struct AcmeOverrides {
    /// `--acme-directory`.
    pub directory: Option<String>,
    /// `--domain` (repeatable).
    pub domains: Vec<String>,
    /// `--acme-email`.
    pub email: Option<String>,
    /// `--acme-http-listen`.
    pub http_listen: Option<String>,
    /// `--acme-directory-ca`.
    pub directory_ca: Option<PathBuf>,
}

impl AcmeOverrides {
    /// Whether any override was given.
    pub fn is_empty(&self) -> bool {
        self.directory.is_none()
            && self.domains.is_empty()
            && self.email.is_none()
            && self.http_listen.is_none()
            && self.directory_ca.is_none()
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn addr(what: &str, s: &str) -> Result<SocketAddr> {
    s.parse().map_err(|_| {
        WebError::Config(format!(
            "{what} {s:?} is not an address like 127.0.0.1:8443"
        ))
    })
}

/// A DNS name as ACME accepts it (RFC 8555 section 7.1.4: no IP addresses here, no wildcards
/// with HTTP-01).
fn check_domain(d: &str) -> Result<()> {
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && d.parse::<std::net::IpAddr>().is_err();
    if ok {
        Ok(())
    } else {
        Err(WebError::Config(format!(
            "ACME domain {d:?} is not a DNS name (HTTP-01 cannot validate IP addresses or wildcards)"
        )))
    }
}

impl WebConfig {
    /// Checks the raw `[web]` table of `server.toml` (at `server_toml`), applying `overrides`.
    pub fn from_table(
        server_toml: &Path,
        table: &toml::Table,
        overrides: &AcmeOverrides,
    ) -> Result<WebConfig> {
        let bad = |msg: String| WebError::Config(format!("{} [web]: {msg}", server_toml.display()));
        let raw: Raw = table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
        let base = server_toml.parent().unwrap_or_else(|| Path::new("."));
        let listen = addr("listen", &raw.listen).map_err(|e| bad(e.to_string()))?;
        let acme = merge_acme(raw.acme, overrides).map_err(|e| bad(e.to_string()))?;
        let cert = match (acme, raw.cert, raw.key) {
            (Some(a), _, _) => {
                if a.domains.is_empty() {
                    return Err(bad("ACME needs at least one domain".into()));
                }
                for d in &a.domains {
                    check_domain(d).map_err(|e| bad(e.to_string()))?;
                }
                if !a.directory.starts_with("https://") {
                    return Err(bad(format!(
                        "ACME directory {:?} must be an https:// URL",
                        a.directory
                    )));
                }
                CertSource::Acme(AcmeConfig {
                    directory: a.directory,
                    domains: a.domains,
                    email: a.email,
                    account_key: resolve(base, &a.account_key),
                    cache: resolve(base, &a.cache),
                    http_listen: addr("acme.http_listen", &a.http_listen)
                        .map_err(|e| bad(e.to_string()))?,
                    directory_ca: a.directory_ca.map(|p| resolve(base, &p)),
                })
            }
            (None, Some(cert), Some(key)) => CertSource::Files {
                cert: resolve(base, &cert),
                key: resolve(base, &key),
            },
            (None, _, _) => {
                return Err(bad(
                    "needs cert and key (from `iotsec pki server`) or a [web.acme] section".into(),
                ));
            }
        };
        if raw.online_secs == 0 {
            return Err(bad("online_secs must be at least 1".into()));
        }
        if raw.max_failed_auth_per_minute == 0 {
            return Err(bad("max_failed_auth_per_minute must be at least 1".into()));
        }
        if !(100..=60_000).contains(&raw.events_ms) {
            return Err(bad("events_ms must be 100..=60000".into()));
        }
        if !raw.operators.is_empty() && raw.client_ca.is_none() {
            return Err(bad(
                "operators needs client_ca (the CA their certificates chain to)".into(),
            ));
        }
        if raw.client_crl.is_some() && raw.client_ca.is_none() {
            return Err(bad("client_crl needs client_ca".into()));
        }
        Ok(WebConfig {
            listen,
            cert,
            tokens: resolve(base, &raw.tokens),
            audit_report: raw.audit_report.map(|p| resolve(base, &p)),
            client_ca: raw.client_ca.map(|p| resolve(base, &p)),
            client_crl: raw.client_crl.map(|p| resolve(base, &p)),
            operators: raw.operators,
            online: Duration::from_secs(raw.online_secs),
            max_failed_auth_per_minute: raw.max_failed_auth_per_minute,
            events_interval: Duration::from_millis(raw.events_ms),
        })
    }

    /// The `[web]` section of a loaded server configuration, if it has one.
    pub fn of_server(
        server: &iotsec_server::ServerConfig,
        overrides: &AcmeOverrides,
    ) -> Result<Option<WebConfig>> {
        match &server.web {
            Some(table) => Self::from_table(&server.path, table, overrides).map(Some),
            None if overrides.is_empty() => Ok(None),
            None => Err(WebError::Config(format!(
                "{}: ACME options need a [web] section (listen, tokens)",
                server.path.display()
            ))),
        }
    }
}

/// The token file of a server configuration: `[web] tokens`, or `tokens.json` next to it.
pub fn tokens_path(server: &iotsec_server::ServerConfig) -> PathBuf {
    server
        .web
        .as_ref()
        .and_then(|t| t.get("tokens"))
        .and_then(|v| v.as_str())
        .map(|p| resolve(server.base_dir(), Path::new(p)))
        .unwrap_or_else(|| server.base_dir().join(DEFAULT_TOKENS))
}

fn merge_acme(raw: Option<RawAcme>, o: &AcmeOverrides) -> Result<Option<RawAcme>> {
    if o.is_empty() {
        return Ok(raw);
    }
    let mut a = match (raw, &o.directory) {
        (Some(a), _) => a,
        (None, Some(dir)) => RawAcme {
            directory: dir.clone(),
            domains: Vec::new(),
            email: None,
            account_key: default_account(),
            cache: default_cache(),
            http_listen: default_http_listen(),
            directory_ca: None,
        },
        (None, None) => {
            return Err(WebError::Config(
                "ACME options need --acme-directory (or a [web.acme] section)".into(),
            ));
        }
    };
    if let Some(d) = &o.directory {
        a.directory = d.clone();
    }
    if !o.domains.is_empty() {
        a.domains = o.domains.clone();
    }
    if o.email.is_some() {
        a.email = o.email.clone();
    }
    if let Some(h) = &o.http_listen {
        a.http_listen = h.clone();
    }
    if o.directory_ca.is_some() {
        a.directory_ca = o.directory_ca.clone();
    }
    Ok(Some(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    const P: &str = "/srv/iotsec/server.toml";

    #[test]
    fn files_config_resolves_paths_and_defaults() {
        let c = WebConfig::from_table(
            Path::new(P),
            &table("listen = \"127.0.0.1:8443\"\ncert = \"w.crt\"\nkey = \"/k/w.key\""),
            &AcmeOverrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.cert,
            CertSource::Files {
                cert: "/srv/iotsec/w.crt".into(),
                key: "/k/w.key".into()
            }
        );
        assert_eq!(c.tokens, PathBuf::from("/srv/iotsec/tokens.json"));
        assert_eq!(c.online, Duration::from_secs(30));
        assert_eq!(c.max_failed_auth_per_minute, 10);
    }

    #[test]
    fn refuses_bad_sections() {
        let o = AcmeOverrides::default();
        let p = Path::new(P);
        for bad in [
            "listen = \"nope\"\ncert = \"a\"\nkey = \"b\"",
            "listen = \"127.0.0.1:1\"",
            "listen = \"127.0.0.1:1\"\ncert = \"a\"\nkey = \"b\"\ntypo = 1",
            "listen = \"127.0.0.1:1\"\ncert = \"a\"\nkey = \"b\"\noperators = [\"x\"]",
            "listen = \"127.0.0.1:1\"\ncert = \"a\"\nkey = \"b\"\nonline_secs = 0",
            "listen = \"127.0.0.1:1\"\n[acme]\ndirectory = \"http://x\"\ndomains = [\"a.b\"]",
            "listen = \"127.0.0.1:1\"\n[acme]\ndirectory = \"https://x\"\ndomains = [\"1.2.3.4\"]",
            "listen = \"127.0.0.1:1\"\n[acme]\ndirectory = \"https://x\"\ndomains = [\"*.a.b\"]",
            "listen = \"127.0.0.1:1\"\n[acme]\ndirectory = \"https://x\"\ndomains = []",
        ] {
            assert!(
                WebConfig::from_table(p, &table(bad), &o).is_err(),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn command_line_acme_overrides_the_file() {
        let o = AcmeOverrides {
            directory: Some("https://acme.test/dir".into()),
            domains: vec!["iot.example.com".into()],
            email: Some("ops@example.com".into()),
            http_listen: Some("127.0.0.1:5002".into()),
            directory_ca: None,
        };
        let c = WebConfig::from_table(
            Path::new(P),
            &table("listen = \"127.0.0.1:8443\"\ncert = \"w.crt\"\nkey = \"w.key\""),
            &o,
        )
        .unwrap();
        let CertSource::Acme(a) = c.cert else {
            panic!("not ACME")
        };
        assert_eq!(a.domains, vec!["iot.example.com".to_string()]);
        assert_eq!(
            a.account_key,
            PathBuf::from("/srv/iotsec/acme/account.json")
        );
        assert_eq!(a.http_listen, "127.0.0.1:5002".parse().unwrap());
    }
}
