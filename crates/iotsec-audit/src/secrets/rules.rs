//! The patterns of the secret scanner, and the matcher that runs them fast.
//!
//! Matching is two-stage: an Aho-Corasick automaton over short literals (ASCII case-insensitive)
//! finds candidate lines in one pass over the buffer; only those lines go through the
//! `RegexSet`, and only the rules that matched run their own regex for the position and the
//! evidence. Most files contain none of the literals and cost one Aho-Corasick pass.

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};
use regex::bytes::{Regex, RegexSet};

use crate::catalog::{self, Check};

/// What a rule produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A finding of this check.
    Finding(&'static Check),
    /// Evidence that the program has an update mechanism.
    UpdateCode,
    /// Evidence that updates are signature-checked.
    SignatureCheck,
}

/// Where a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every file.
    Any,
    /// Init scripts only (`/etc/init.d/*`, `inittab`, `rc.local`, systemd units, ...).
    InitScript,
}

/// One pattern.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// What a match means.
    pub kind: Kind,
    /// Where it applies.
    pub scope: Scope,
    /// The regex (`regex` crate syntax, on bytes). A group named `secret` (or `secret2`) is
    /// redacted in the evidence.
    pub pattern: &'static str,
    /// Literals of which at least one occurs in every match (ASCII case-insensitive).
    pub literals: &'static [&'static str],
    /// Rules with the same group report one finding per line (the first rule in table order).
    pub group: u8,
}

const SECRET: u8 = 1;
const OTHER: u8 = 0;

const KEY_NAMES: &str = r"(?:secret|api[_-]?key|hmac[_-]?key|auth[_-]?token|access[_-]?token|api[_-]?token|bearer[_-]?token|private[_-]?key|signing[_-]?key|master[_-]?key|encryption[_-]?key|aes[_-]?key|shared[_-]?key)";

/// The rule table. Order matters within a group: the first matching rule of a line wins.
pub fn table() -> Vec<Rule> {
    let key_assign: &'static str = Box::leak(
        format!(
            r#"(?i-u)\b(?P<name>[a-z0-9_.]*{KEY_NAMES}[a-z0-9_]*)(?:\[[0-9]*\])?["']?\s*(?::=|=|:|=>)\s*(?:b|r|u|f|rb|br)?(?:"(?P<secret>[^"\r\n]{{8,}})"|'(?P<secret2>[^'\r\n]{{8,}})')"#
        )
        .into_boxed_str(),
    );
    let key_define: &'static str = Box::leak(
        format!(r#"(?i-u)#define\s+(?P<name>[a-z0-9_]*{KEY_NAMES}[a-z0-9_]*)\s+"(?P<secret>[^"\r\n]{{8,}})""#)
            .into_boxed_str(),
    );
    vec![
        Rule {
            kind: Kind::Finding(&catalog::FW_PRIVATE_KEY),
            scope: Scope::Any,
            pattern: r"(?-u)-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----",
            literals: &["PRIVATE KEY-----"],
            group: OTHER,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_CLOUD_KEY),
            scope: Scope::Any,
            pattern: r"(?-u)\b(?P<secret>(?:AKIA|ASIA)[0-9A-Z]{16})\b",
            literals: &["AKIA", "ASIA"],
            group: OTHER,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_URL_CREDENTIALS),
            scope: Scope::Any,
            pattern: r#"(?i-u)\b(?:mqtts?|https?|wss?|ftp|amqps?|redis)://[^\s:/@"'<>]+:(?P<secret>[^\s@/"'<>]+)@[^\s"'<>/]+"#,
            literals: &["://"],
            group: SECRET,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_WIFI_PSK),
            scope: Scope::Any,
            pattern: r#"(?-u)WiFi\.begin\(\s*"[^"\r\n]*"\s*,\s*"(?P<secret>[^"\r\n]{8,63})""#,
            literals: &["wifi.begin"],
            group: SECRET,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_WIFI_PSK),
            scope: Scope::Any,
            pattern: r#"(?i-u)\b(?P<name>[a-z0-9_]*(?:wifi|wlan|wpa)[a-z0-9_]*(?:pass|psk|key)[a-z0-9_]*)["']?(?:\s*(?::=|=|:)\s*|[ \t]+)"(?P<secret>[^"\r\n]{8,63})""#,
            literals: &["wifi", "wlan", "wpa"],
            group: SECRET,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_WIFI_PSK),
            scope: Scope::Any,
            pattern: r#"(?-u)^\s*(?:wpa_passphrase|psk)\s*=\s*"?(?P<secret>[^"\s]{8,64})"?\s*$"#,
            literals: &["psk", "wpa_passphrase"],
            group: SECRET,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_HARDCODED_PASSWORD),
            scope: Scope::Any,
            pattern: r#"(?-u)username_pw_set\(\s*["'][^"'\r\n]*["']\s*,\s*(?:password\s*=\s*)?["'](?P<secret>[^"'\r\n]+)["']"#,
            literals: &["username_pw_set"],
            group: SECRET,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_HARDCODED_PASSWORD),
            scope: Scope::Any,
            pattern: r#"(?i-u)\b(?P<name>[a-z0-9_.]*(?:passw(?:or)?d|passwd|pwd|passphrase)[a-z0-9_]*)(?:\[[0-9]*\])?["']?(?:\s*(?::=|=|:|=>)\s*|[ \t]+)(?:b|r|u|f)?(?:"(?P<secret>[^"\r\n]{4,})"|'(?P<secret2>[^'\r\n]{4,})')"#,
            literals: &["passw", "pwd", "passphrase"],
            group: SECRET,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_HARDCODED_KEY),
            scope: Scope::Any,
            pattern: key_assign,
            literals: &[
                "secret",
                "apikey",
                "api_key",
                "api-key",
                "hmackey",
                "hmac_key",
                "hmac-key",
                "authtoken",
                "auth_token",
                "auth-token",
                "accesstoken",
                "access_token",
                "access-token",
                "apitoken",
                "api_token",
                "api-token",
                "bearertoken",
                "bearer_token",
                "bearer-token",
                "privatekey",
                "private_key",
                "private-key",
                "signingkey",
                "signing_key",
                "signing-key",
                "masterkey",
                "master_key",
                "master-key",
                "encryptionkey",
                "encryption_key",
                "encryption-key",
                "aeskey",
                "aes_key",
                "aes-key",
                "sharedkey",
                "shared_key",
                "shared-key",
            ],
            group: SECRET,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_HARDCODED_KEY),
            scope: Scope::Any,
            pattern: key_define,
            literals: &["#define"],
            group: SECRET,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_TLS_VERIFY_OFF),
            scope: Scope::Any,
            pattern: r"(?-u)\.setInsecure\(\s*\)|tls_insecure_set\(\s*True\s*\)|\bCERT_NONE\b|\bverify\s*=\s*False\b|InsecureSkipVerify\s*:\s*true|CURLOPT_SSL_VERIFY(?:PEER|HOST)\s*,\s*0(?:L)?\s*\)|rejectUnauthorized\s*:\s*false|skip_cert_common_name_check\s*=\s*true|danger_accept_invalid_certs\(\s*true\s*\)|MBEDTLS_SSL_VERIFY_NONE|\bcheck_hostname\s*=\s*False\b",
            literals: &[
                "setinsecure",
                "tls_insecure_set",
                "cert_none",
                "verify",
                "insecureskipverify",
                "rejectunauthorized",
                "skip_cert_common_name_check",
                "danger_accept_invalid_certs",
                "check_hostname",
            ],
            group: OTHER,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_UPDATE_HTTP),
            scope: Scope::Any,
            pattern: r#"(?i-u)\bhttp://(?P<host>[^\s"'<>/:]+)[^\s"'<>]*(?:ota|firmware|update|upgrade|\.bin\b|\.fw\b|\.img\b|\.swu\b|\.hex\b)[^\s"'<>]*|CONFIG_ESP_HTTPS_OTA_ALLOW_HTTP=y"#,
            literals: &["http://", "ota_allow_http"],
            group: OTHER,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_BACKDOOR_SHELL),
            scope: Scope::InitScript,
            pattern: r"(?-u)\b(?:nc|netcat|ncat)\b[^\n]*\s-[a-zA-Z]*e\s*/bin/(?:ba)?sh|\bsocat\b[^\n]*exec:[^\n]*/bin/(?:ba)?sh|/bin/(?:ba)?sh\s+-i\s*[<>]&?\s*/dev/tcp/",
            literals: &["/bin/sh", "/bin/bash"],
            group: OTHER,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_TELNETD),
            scope: Scope::InitScript,
            pattern: r"(?-u)\bu?telnetd\b",
            literals: &["telnetd"],
            group: OTHER,
        },
        Rule {
            kind: Kind::Finding(&catalog::FW_OLD_OPENSSL),
            scope: Scope::Any,
            pattern: r"(?-u)\bOpenSSL (?:0\.9\.[0-9]+[a-z]*|1\.0\.[0-9][a-z]*)\b",
            literals: &["openssl "],
            group: OTHER,
        },
        Rule {
            kind: Kind::UpdateCode,
            scope: Scope::Any,
            pattern: r"(?i-u)\bArduinoOTA\b|\besp_https_ota\b|\besp_ota_begin\b|\bUpdate\.begin\b|\bhttpUpdate\b|\bESPhttpUpdate\b|\bswupdate\b|\brauc\b|\bmender\b|\bhawkbit\b|\biotsec[ _-]ota\b|iotsec fw install|IOTSSIG1|\bota_update\b|\bfirmware_update\b|\bfwupd\b",
            literals: &[
                "arduinoota",
                "esp_https_ota",
                "esp_ota_begin",
                "update.begin",
                "httpupdate",
                "swupdate",
                "rauc",
                "mender",
                "hawkbit",
                "iotsec",
                "iotssig1",
                "ota_update",
                "firmware_update",
                "fwupd",
            ],
            group: OTHER,
        },
        Rule {
            kind: Kind::SignatureCheck,
            scope: Scope::Any,
            pattern: r"(?-u)IOTSSIG1|\biotsec[ _-]ota\b|iotsec fw (?:verify|install)|CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT=y|CONFIG_SECURE_BOOT=y|\besp_secure_boot_verify|Update\.installSignature|\bverify_signature\b|\bed25519_verify\b|\becdsa_verify\b|\bmbedtls_pk_verify\b|\bcrypto_sign_open\b|\bgpg --verify\b|\bopenssl dgst [^\n]*-verify\b",
            literals: &[
                "iotssig1",
                "iotsec",
                "config_secure_",
                "esp_secure_boot_verify",
                "installsignature",
                "verify_signature",
                "ed25519_verify",
                "ecdsa_verify",
                "mbedtls_pk_verify",
                "crypto_sign_open",
                "--verify",
                "-verify",
            ],
            group: OTHER,
        },
    ]
}

/// A match of one rule on one line.
#[derive(Debug, Clone)]
pub struct LineMatch {
    /// Index into the rule table.
    pub rule: usize,
    /// Byte range of the match within the line.
    pub start: usize,
    /// Evidence text, secrets redacted.
    pub evidence: String,
}

/// The compiled rule table.
#[derive(Debug)]
pub struct Matcher {
    rules: Vec<Rule>,
    prefilter: AhoCorasick,
    set: RegexSet,
    regexes: Vec<Regex>,
}

/// Longest evidence kept, characters.
const MAX_EVIDENCE: usize = 160;

impl Matcher {
    /// Compiles the default table.
    pub fn new() -> Self {
        Self::with_rules(table())
    }

    /// Compiles a table. Panics only on a pattern error in the built-in table, which the unit
    /// tests compile.
    #[allow(clippy::expect_used)]
    pub fn with_rules(rules: Vec<Rule>) -> Self {
        let literals: Vec<&str> = rules
            .iter()
            .flat_map(|r| r.literals.iter().copied())
            .collect();
        let prefilter = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostFirst)
            .kind(Some(AhoCorasickKind::DFA))
            .build(literals)
            .expect("built-in prefilter literals compile");
        let set =
            RegexSet::new(rules.iter().map(|r| r.pattern)).expect("built-in patterns compile");
        let regexes = rules
            .iter()
            .map(|r| Regex::new(r.pattern).expect("built-in patterns compile"))
            .collect();
        Matcher {
            rules,
            prefilter,
            set,
            regexes,
        }
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Calls `on_line(line_start, line, matches)` for every line of `buf` that matches a rule
    /// in scope. Lines are `\n`-separated; a line longer than 4 KiB is cut around the literal
    /// that made it a candidate.
    pub fn scan(
        &self,
        buf: &[u8],
        init_script: bool,
        mut on_line: impl FnMut(usize, &[u8], Vec<LineMatch>),
    ) {
        const MAX_SIDE: usize = 2048;
        let mut pos = 0;
        while pos < buf.len() {
            let Some(hit) = self.prefilter.find(Input::new(buf).range(pos..)) else {
                break;
            };
            let lo = hit.start().saturating_sub(MAX_SIDE).max(pos);
            let start = memchr::memrchr(b'\n', &buf[lo..hit.start()]).map_or(lo, |i| lo + i + 1);
            let hi = (hit.end() + MAX_SIDE).min(buf.len());
            let end = memchr::memchr(b'\n', &buf[hit.end()..hi]).map_or(hi, |i| hit.end() + i);
            let line = &buf[start..end];
            let matches = self.line(line, init_script);
            if !matches.is_empty() {
                on_line(start, line, matches);
            }
            pos = end + 1;
        }
    }

    fn line(&self, line: &[u8], init_script: bool) -> Vec<LineMatch> {
        let mut out: Vec<LineMatch> = Vec::new();
        let mut groups_done = 0u32;
        for i in self.set.matches(line).iter() {
            let (Some(rule), Some(re)) = (self.rules.get(i), self.regexes.get(i)) else {
                continue;
            };
            if rule.scope == Scope::InitScript && !init_script {
                continue;
            }
            if rule.group != OTHER && groups_done & (1 << rule.group) != 0 {
                continue;
            }
            let Some(caps) = re.captures(line) else {
                continue;
            };
            let Some(whole) = caps.get(0) else { continue };
            if !accept(rule, line, &caps) {
                continue;
            }
            if rule.group != OTHER {
                groups_done |= 1 << rule.group;
            }
            out.push(LineMatch {
                rule: i,
                start: whole.start(),
                evidence: evidence(&caps),
            });
        }
        out
    }
}

impl Default for Matcher {
    fn default() -> Self {
        Self::new()
    }
}

/// Rule-specific vetoes the regex syntax cannot say (no look-around in the `regex` crate).
fn accept(rule: &Rule, line: &[u8], caps: &regex::bytes::Captures<'_>) -> bool {
    let trimmed = line.trim_ascii_start();
    match rule.kind {
        Kind::Finding(c)
            if c.id == catalog::FW_TELNETD.id || c.id == catalog::FW_BACKDOOR_SHELL.id =>
        {
            // Commented-out lines of a shell script do not start anything.
            !trimmed.starts_with(b"#")
        }
        Kind::Finding(c) if c.id == catalog::FW_UPDATE_HTTP.id => {
            // Plain HTTP to the device itself is not a network download.
            !caps.name("host").is_some_and(|h| {
                let h = h.as_bytes();
                h.eq_ignore_ascii_case(b"localhost") || h.starts_with(b"127.")
            })
        }
        Kind::Finding(_) if rule.group == SECRET => {
            // Values that are obviously read from elsewhere are not hardcoded.
            let v = caps
                .name("secret")
                .or_else(|| caps.name("secret2"))
                .map(|m| m.as_bytes())
                .unwrap_or_default();
            let placeholder = v.starts_with(b"${")
                || v.starts_with(b"{{")
                || v.starts_with(b"%(")
                || (v.starts_with(b"<") && v.ends_with(b">"))
                || v.iter().all(|&b| b == b'*' || b == b'x' || b == b'X');
            !placeholder
        }
        _ => true,
    }
}

/// The matched text with the secret part redacted, cut to [`MAX_EVIDENCE`] characters.
fn evidence(caps: &regex::bytes::Captures<'_>) -> String {
    let Some(whole) = caps.get(0) else {
        return String::new();
    };
    let secret = caps.name("secret").or_else(|| caps.name("secret2"));
    let text = match secret {
        Some(s) => {
            let before = &whole.as_bytes()[..s.start() - whole.start()];
            let after = &whole.as_bytes()[s.end() - whole.start()..];
            format!(
                "{}{}{}",
                String::from_utf8_lossy(before),
                crate::finding::redact(&String::from_utf8_lossy(s.as_bytes())),
                String::from_utf8_lossy(after)
            )
        }
        None => String::from_utf8_lossy(whole.as_bytes()).into_owned(),
    };
    let text = text.trim();
    if text.chars().count() > MAX_EVIDENCE {
        let cut: String = text.chars().take(MAX_EVIDENCE).collect();
        format!("{cut}…")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str, init: bool) -> Vec<String> {
        let m = Matcher::new();
        let mut out = Vec::new();
        m.scan(text.as_bytes(), init, |_, _, ms| {
            for x in ms {
                let name = match m.rules()[x.rule].kind {
                    Kind::Finding(c) => c.id.to_owned(),
                    Kind::UpdateCode => "update".into(),
                    Kind::SignatureCheck => "signature".into(),
                };
                out.push(format!("{name}: {}", x.evidence));
            }
        });
        out
    }

    #[test]
    fn tutorial_patterns() {
        let got = ids(
            "SECRET_KEY = b\"your-32-byte-secret-key-here!!!!\"\n",
            false,
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("FW-HARDCODED-KEY: SECRET_KEY = b\"your…"),
            "{got:?}"
        );
        assert!(!got[0].contains("secret-key-here"));
        assert_eq!(ids("client.tls_insecure_set(True)\n", false).len(), 1);
        assert!(ids("# client.tls_insecure_set(False)\n", false).is_empty());
        assert!(ids("ctx.verify_mode = ssl.CERT_NONE", false)[0].starts_with("FW-TLS-VERIFY-OFF"));
        assert!(ids("requests.get(u, verify=False)", false)[0].starts_with("FW-TLS-VERIFY-OFF"));
        assert!(ids("espClient.setInsecure();", false)[0].starts_with("FW-TLS-VERIFY-OFF"));
    }

    #[test]
    fn secrets_of_every_kind() {
        let one = |t: &str| ids(t, false).into_iter().next().unwrap_or_default();
        assert!(one("-----BEGIN EC PRIVATE KEY-----").starts_with("FW-PRIVATE-KEY"));
        assert!(one("aws = 'AKIAIOSFODNN7EXAMPLE'").starts_with("FW-CLOUD-KEY"));
        assert!(one(r#"WiFi.begin("home", "hunter2hunter2");"#).starts_with("FW-WIFI-PSK"));
        assert!(one(r#"#define WIFI_PASSWORD "correcthorse""#).starts_with("FW-WIFI-PSK"));
        assert!(one("CONFIG_ESP_WIFI_PASSWORD=\"mysecretpsk\"").starts_with("FW-WIFI-PSK"));
        assert!(one("  psk=\"longenoughpsk\"").starts_with("FW-WIFI-PSK"));
        assert!(
            one(r#"BROKER = "mqtt://admin:s3cret@broker.lan:1883""#)
                .starts_with("FW-URL-CREDENTIALS")
        );
        assert!(
            one(r#"client.username_pw_set("dev", "pa55")"#).starts_with("FW-HARDCODED-PASSWORD")
        );
        assert!(
            one(r#"const char* mqtt_password = "pa55word";"#).starts_with("FW-HARDCODED-PASSWORD")
        );
        assert!(one(r#"#define API_KEY "0123456789abcdef""#).starts_with("FW-HARDCODED-KEY"));
        assert!(one("url = 'http://fw.example.com/ota/app.bin'").starts_with("FW-UPDATE-HTTP"));
        assert!(one("CONFIG_ESP_HTTPS_OTA_ALLOW_HTTP=y").starts_with("FW-UPDATE-HTTP"));
        assert!(one("OpenSSL 1.0.2k  26 Jan 2017").starts_with("FW-OLD-OPENSSL"));
        assert!(ids("OpenSSL 3.0.11 19 Sep 2023", false).is_empty());
        // placeholders and lookups are not hardcoded secrets
        assert!(ids(r#"password = "${MQTT_PASSWORD}""#, false).is_empty());
        assert!(ids("password = os.environ['PW']", false).is_empty());
        assert!(ids("key = 'temperature'", false).is_empty());
        // one finding per line for the secret group
        assert_eq!(ids(r#"wifi_password = "hunter2hunter2""#, false).len(), 1);
        // local plain HTTP is not a network download
        assert!(ids("http://127.0.0.1:8080/firmware.bin", false).is_empty());
    }

    #[test]
    fn init_script_rules_only_in_init_scripts() {
        let script = "#!/bin/sh\n# telnetd -l /bin/sh\ntelnetd -l /bin/sh -p 2323 &\nnc -l -p 4444 -e /bin/sh &\n";
        assert!(ids(script, false).is_empty());
        let got = ids(script, true);
        assert!(got.iter().any(|g| g.starts_with("FW-TELNETD")), "{got:?}");
        assert!(
            got.iter().any(|g| g.starts_with("FW-BACKDOOR-SHELL")),
            "{got:?}"
        );
        assert_eq!(
            got.iter().filter(|g| g.starts_with("FW-TELNETD")).count(),
            1
        );
    }

    #[test]
    fn update_markers() {
        let got = ids(
            "ArduinoOTA.begin();\nesp_https_ota(&cfg);\nUpdate.installSignature(&key, &hash);",
            false,
        );
        assert!(got.iter().any(|g| g.starts_with("update")));
        assert!(got.iter().any(|g| g.starts_with("signature")));
    }
}
