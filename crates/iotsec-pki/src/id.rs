//! Certificate ids: device ids become MQTT usernames (`use_identity_as_username`), ACL entries and
//! topic segments (`devices/<id>/telemetry`), so the charset is restricted to what is safe in all
//! three places.

use std::fmt;

use crate::error::PkiError;

/// The longest id accepted. Mosquitto accepts longer usernames, but ids also become file names
/// and CN values (RFC 5280 ub-common-name = 64).
pub const MAX_ID_LEN: usize = 64;

/// A validated certificate id: 1 to 64 characters from `[A-Za-z0-9._-]`, starting with a letter or
/// digit. This excludes the MQTT wildcards `+` and `#`, the topic separator `/`, whitespace, `%`
/// (ACL substitution) and anything a shell or file system would treat specially.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, PkiError> {
        let bad = |reason| PkiError::InvalidDeviceId {
            id: id.to_owned(),
            reason,
        };
        if id.is_empty() {
            return Err(bad("it is empty"));
        }
        if id.len() > MAX_ID_LEN {
            return Err(bad("it is longer than 64 characters"));
        }
        if !id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric()) {
            return Err(bad("it must start with a letter or digit"));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(bad(match c {
                '/' => "'/' would split the MQTT topic",
                '+' | '#' => "'+' and '#' are MQTT wildcards",
                c if c.is_whitespace() => "whitespace is not allowed",
                _ => "only letters, digits, '.', '_' and '-' are allowed",
            }));
        }
        Ok(DeviceId(id.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DeviceId::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_safe_ids() {
        for id in ["device-a", "esp32_01", "a", "gw.site-3", "iotsec-server"] {
            assert!(DeviceId::new(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_unsafe_ids() {
        for id in [
            "",
            "a/b",
            "a+b",
            "a#",
            "a b",
            "a\tb",
            "-lead",
            ".hidden",
            "ünïcode",
            "a%c",
            "..",
        ] {
            assert!(DeviceId::new(id).is_err(), "{id:?}");
        }
        assert!(DeviceId::new(&"x".repeat(65)).is_err());
        assert!(DeviceId::new(&"x".repeat(64)).is_ok());
    }
}
