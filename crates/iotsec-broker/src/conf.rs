//! A model of a mosquitto.conf as Mosquitto 2.0 reads it: directives in order (following
//! `include_dir`), grouped into listeners, with the security options resolved per listener
//! (`per_listener_settings`) and 2.0's defaults applied.
//!
//! Mosquitto 2.0 defaults that matter for security (mosquitto.conf(5)):
//! * no `listener`/`port` at all: "local only mode", one listener on the loopback interface,
//!   port 1883, and anonymous clients allowed;
//! * once any listener is configured, `allow_anonymous` defaults to `false`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{BrokerError, Result};

/// How deep `include_dir` may nest before we call it a loop.
const MAX_INCLUDE_DEPTH: usize = 8;

/// Where a directive came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Location {
    /// File.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `key value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Option name.
    pub key: String,
    /// Everything after the key, trimmed.
    pub value: String,
    /// Where it was read.
    pub at: Location,
}

/// Options that configure a listener (they follow a `listener` line).
const LISTENER_OPTIONS: &[&str] = &[
    "bind_address",
    "bind_interface",
    "cafile",
    "capath",
    "certfile",
    "keyfile",
    "ciphers",
    "ciphers_tls1.3",
    "crlfile",
    "dhparamfile",
    "http_dir",
    "max_connections",
    "max_qos",
    "max_topic_alias",
    "mount_point",
    "protocol",
    "psk_hint",
    "require_certificate",
    "socket_domain",
    "tls_engine",
    "tls_keyform",
    "tls_version",
    "use_identity_as_username",
    "use_subject_as_username",
    "use_username_as_clientid",
    "websockets_headers_size",
    "ocsp_stapling",
];

/// Options that are global, or per listener under `per_listener_settings true`.
const SECURITY_OPTIONS: &[&str] = &[
    "allow_anonymous",
    "password_file",
    "acl_file",
    "psk_file",
    "plugin",
    "auth_plugin",
    "auto_id_prefix",
    "allow_zero_length_clientid",
];

/// Wire protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over WebSockets.
    Websockets,
}

/// A listener with its effective settings.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Port.
    pub port: u16,
    /// Bind address (`None`: all interfaces).
    pub bind: Option<String>,
    /// Where it was declared (`None` for the implicit local-only listener).
    pub declared: Option<Location>,
    /// Listener options, last value wins.
    pub options: BTreeMap<String, Directive>,
    /// Security options that apply to this listener (its own or the global ones).
    pub security: BTreeMap<String, Vec<Directive>>,
    /// Mosquitto 2.0's local-only mode (no listener configured at all).
    pub implicit_local_only: bool,
}

impl Listener {
    /// The value of a listener option.
    pub fn option(&self, key: &str) -> Option<&Directive> {
        self.options.get(key)
    }

    /// The last value of a security option.
    pub fn security_option(&self, key: &str) -> Option<&Directive> {
        self.security.get(key).and_then(|v| v.last())
    }

    /// Protocol (`protocol` option, default mqtt).
    pub fn protocol(&self) -> Protocol {
        match self.option("protocol").map(|d| d.value.as_str()) {
            Some("websockets") => Protocol::Websockets,
            _ => Protocol::Mqtt,
        }
    }

    /// True when the listener only accepts connections from this machine.
    pub fn loopback_only(&self) -> bool {
        if self.implicit_local_only {
            return true;
        }
        if let Some(iface) = self.option("bind_interface") {
            return iface.value == "lo";
        }
        match self.bind.as_deref() {
            None => false,
            Some(b) => is_loopback_name(b),
        }
    }

    /// True when TLS (certificates or PSK) is configured.
    pub fn tls(&self) -> bool {
        (self.option("certfile").is_some() && self.option("keyfile").is_some())
            || self.option("psk_hint").is_some()
    }

    /// Effective `allow_anonymous`.
    pub fn allow_anonymous(&self) -> bool {
        match self.security_option("allow_anonymous") {
            Some(d) => is_true(&d.value),
            None => self.implicit_local_only,
        }
    }

    /// A boolean listener option, false when absent.
    pub fn flag(&self, key: &str) -> bool {
        self.option(key).is_some_and(|d| is_true(&d.value))
    }

    /// `host:port` for messages.
    pub fn address(&self) -> String {
        match &self.bind {
            Some(b) if b.contains(':') => format!("[{b}]:{}", self.port),
            Some(b) => format!("{b}:{}", self.port),
            None => format!("*:{}", self.port),
        }
    }
}

fn is_true(v: &str) -> bool {
    v.eq_ignore_ascii_case("true")
}

/// True for names and addresses that only reach this machine.
pub fn is_loopback_name(name: &str) -> bool {
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A parsed mosquitto.conf.
#[derive(Debug, Clone)]
pub struct Config {
    /// The main file.
    pub path: PathBuf,
    /// Every directive in read order (includes expanded).
    pub directives: Vec<Directive>,
    /// Effective listeners.
    pub listeners: Vec<Listener>,
    /// `per_listener_settings`.
    pub per_listener_settings: bool,
}

impl Config {
    /// Reads and models `path`, following `include_dir`.
    pub fn load(path: &Path) -> Result<Config> {
        let mut directives = Vec::new();
        read_file(path, &mut directives, 0)?;
        Ok(Self::from_directives(path.to_path_buf(), directives))
    }

    /// Models config text already in memory (`name` labels locations; includes are followed
    /// relative to the file system).
    pub fn parse(name: &Path, text: &str) -> Result<Config> {
        let mut directives = Vec::new();
        parse_text(name, text, &mut directives, 0)?;
        Ok(Self::from_directives(name.to_path_buf(), directives))
    }

    /// The last global directive with `key`.
    pub fn global(&self, key: &str) -> Option<&Directive> {
        self.directives.iter().rev().find(|d| d.key == key)
    }

    /// Every directive with `key`.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Directive> + 'a {
        self.directives.iter().filter(move |d| d.key == key)
    }

    fn from_directives(path: PathBuf, directives: Vec<Directive>) -> Config {
        let per_listener_settings = directives
            .iter()
            .rev()
            .find(|d| d.key == "per_listener_settings")
            .is_some_and(|d| is_true(&d.value));

        let mut listeners: Vec<Listener> = Vec::new();
        let mut default_listener: Option<Listener> = None;
        let mut default_options: BTreeMap<String, Directive> = BTreeMap::new();
        let mut default_security: BTreeMap<String, Vec<Directive>> = BTreeMap::new();
        let mut global_security: BTreeMap<String, Vec<Directive>> = BTreeMap::new();
        let mut current: Option<usize> = None;

        for d in &directives {
            match d.key.as_str() {
                "listener" => {
                    let mut parts = d.value.split_whitespace();
                    let port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                    let bind = parts.next().map(str::to_owned);
                    listeners.push(Listener {
                        port,
                        bind,
                        declared: Some(d.at.clone()),
                        options: BTreeMap::new(),
                        security: BTreeMap::new(),
                        implicit_local_only: false,
                    });
                    current = Some(listeners.len() - 1);
                }
                "port" => {
                    let port = d.value.trim().parse().unwrap_or(0);
                    default_listener = Some(Listener {
                        port,
                        bind: None,
                        declared: Some(d.at.clone()),
                        options: BTreeMap::new(),
                        security: BTreeMap::new(),
                        implicit_local_only: false,
                    });
                }
                key if LISTENER_OPTIONS.contains(&key) => {
                    let target = match current.and_then(|i| listeners.get_mut(i)) {
                        Some(l) => &mut l.options,
                        None => &mut default_options,
                    };
                    target.insert(key.to_owned(), d.clone());
                }
                key if SECURITY_OPTIONS.contains(&key) => {
                    global_security
                        .entry(key.to_owned())
                        .or_default()
                        .push(d.clone());
                    let target = match current.and_then(|i| listeners.get_mut(i)) {
                        Some(l) => &mut l.security,
                        None => &mut default_security,
                    };
                    target.entry(key.to_owned()).or_default().push(d.clone());
                }
                _ => {}
            }
        }

        if let Some(mut l) = default_listener {
            if let Some(b) = default_options.get("bind_address") {
                l.bind = Some(b.value.clone());
            }
            l.options = default_options;
            l.security = default_security;
            listeners.insert(0, l);
        }
        if listeners.is_empty() {
            // Mosquitto 2.0 local-only mode.
            listeners.push(Listener {
                port: 1883,
                bind: Some("127.0.0.1".into()),
                declared: None,
                options: BTreeMap::new(),
                security: global_security.clone(),
                implicit_local_only: true,
            });
        } else if !per_listener_settings {
            for l in &mut listeners {
                l.security = global_security.clone();
            }
        }
        Config {
            path,
            directives,
            listeners,
            per_listener_settings,
        }
    }
}

fn read_file(path: &Path, out: &mut Vec<Directive>, depth: usize) -> Result<()> {
    let bytes = fs::read(path).map_err(|e| BrokerError::io(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    parse_text(path, &text, out, depth)
}

fn parse_text(path: &Path, text: &str, out: &mut Vec<Directive>, depth: usize) -> Result<()> {
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (line, ""),
        };
        let at = Location {
            file: path.to_path_buf(),
            line: i + 1,
        };
        if key == "include_dir" {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(BrokerError::IncludeDepth {
                    file: path.to_path_buf(),
                    max: MAX_INCLUDE_DEPTH,
                });
            }
            let dir = resolve(path, value);
            let mut files: Vec<PathBuf> = fs::read_dir(&dir)
                .map_err(|e| BrokerError::io(&dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            // Mosquitto loads included files in alphabetical order.
            files.sort();
            out.push(Directive {
                key: key.to_owned(),
                value: value.to_owned(),
                at,
            });
            for f in files {
                read_file(&f, out, depth + 1)?;
            }
            continue;
        }
        out.push(Directive {
            key: key.to_owned(),
            value: value.to_owned(),
            at,
        });
    }
    Ok(())
}

/// Resolves a path option: absolute as is, relative to the config file's directory otherwise
/// (where a test or a copied config expects it; Mosquitto itself resolves relative to its
/// working directory, which the audit flags separately when the file is missing).
pub fn resolve(config_file: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_file
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(Path::new("test.conf"), text).unwrap()
    }

    #[test]
    fn empty_config_is_local_only_and_anonymous() {
        let c = parse("# nothing\n");
        assert_eq!(c.listeners.len(), 1);
        let l = &c.listeners[0];
        assert!(l.implicit_local_only && l.loopback_only() && l.allow_anonymous());
        assert_eq!(l.port, 1883);
    }

    #[test]
    fn configured_listener_defaults_to_no_anonymous() {
        let c = parse("listener 1883\n");
        let l = &c.listeners[0];
        assert!(!l.allow_anonymous());
        assert!(!l.loopback_only());
        assert!(!l.tls());
    }

    #[test]
    fn per_listener_settings_scopes_security() {
        let c = parse(
            "per_listener_settings true\nlistener 1883 127.0.0.1\nallow_anonymous true\n\
             listener 8883\ncertfile a\nkeyfile b\nallow_anonymous false\n",
        );
        assert!(c.listeners[0].allow_anonymous());
        assert!(!c.listeners[1].allow_anonymous());
        assert!(c.listeners[1].tls());
        // without per_listener_settings the last global value wins for both
        let c = parse("listener 1883\nallow_anonymous true\nlistener 8883\n");
        assert!(c.listeners.iter().all(Listener::allow_anonymous));
    }

    #[test]
    fn deprecated_port_makes_a_default_listener() {
        let c = parse("port 1884\nbind_address 127.0.0.1\nallow_anonymous true\n");
        assert_eq!(c.listeners[0].port, 1884);
        assert!(c.listeners[0].loopback_only());
        assert!(c.listeners[0].allow_anonymous());
    }

    #[test]
    fn include_dir_is_followed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("conf.d");
        fs::create_dir(&inc).unwrap();
        fs::write(inc.join("b.conf"), "allow_anonymous true\n").unwrap();
        fs::write(inc.join("a.conf"), "listener 1883 0.0.0.0\n").unwrap();
        fs::write(inc.join("ignored.txt"), "listener 9\n").unwrap();
        let main = dir.path().join("mosquitto.conf");
        fs::write(&main, format!("include_dir {}\n", inc.display())).unwrap();
        let c = Config::load(&main).unwrap();
        assert_eq!(c.listeners.len(), 1);
        assert!(c.listeners[0].allow_anonymous());
        assert_eq!(c.listeners[0].declared.as_ref().unwrap().line, 1);
        assert!(
            c.listeners[0]
                .declared
                .as_ref()
                .unwrap()
                .file
                .ends_with("a.conf")
        );
    }

    #[test]
    fn include_loop_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("x.conf");
        fs::write(&main, format!("include_dir {}\n", dir.path().display())).unwrap();
        assert!(matches!(
            Config::load(&main),
            Err(BrokerError::IncludeDepth { .. })
        ));
    }
}
