//! The scan target: an IP address or host name, resolved and checked. Broadcast, multicast and
//! unspecified addresses are refused: a scanner probes one host, never a group.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use serde::Serialize;

use crate::error::ScanError;

/// A validated target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// What the user typed.
    pub input: String,
    /// Address scanned.
    pub ip: IpAddr,
    /// Host name when the target was given as a name (used for SNI, Host and name checks).
    pub name: Option<String>,
}

impl Target {
    /// Parses an IP address (`192.0.2.1`, `::1`, `[::1]`) or resolves a host name, and refuses
    /// broadcast, multicast and unspecified addresses (including local subnet broadcasts).
    pub fn resolve(input: &str) -> Result<Self, ScanError> {
        let trimmed = input.trim();
        let bare = trimmed
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(trimmed);
        if bare.is_empty() {
            return Err(ScanError::Target {
                input: input.to_owned(),
                reason: "empty".into(),
            });
        }
        let (ip, name) = match bare.parse::<IpAddr>() {
            Ok(ip) => (ip, None),
            Err(_) => {
                validate_host_name(bare).map_err(|reason| ScanError::Target {
                    input: input.to_owned(),
                    reason,
                })?;
                let addrs: Vec<SocketAddr> = (bare, 0)
                    .to_socket_addrs()
                    .map_err(|source| ScanError::Resolve {
                        host: bare.to_owned(),
                        source,
                    })?
                    .collect();
                // Prefer IPv4: most IoT services listen on it only.
                let pick = addrs
                    .iter()
                    .find(|a| a.is_ipv4())
                    .or_else(|| addrs.first())
                    .map(SocketAddr::ip)
                    .ok_or_else(|| ScanError::Resolve {
                        host: bare.to_owned(),
                        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
                    })?;
                (pick, Some(bare.to_ascii_lowercase()))
            }
        };
        check_unicast(ip, &crate::local::broadcast_addresses())?;
        Ok(Self {
            input: trimmed.to_owned(),
            ip,
            name,
        })
    }

    /// The name to present in SNI / Host / certificate checks: the host name, else the address.
    pub fn host(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self.ip.to_string(),
        }
    }

    /// `host:port` for finding locations (IPv6 in brackets).
    pub fn location(&self, port: u16, transport: &str) -> String {
        match self.ip {
            IpAddr::V4(ip) => format!("{ip}:{port}/{transport}"),
            IpAddr::V6(ip) => format!("[{ip}]:{port}/{transport}"),
        }
    }
}

/// Refuses addresses that are not one host.
pub fn check_unicast(ip: IpAddr, local_broadcasts: &[IpAddr]) -> Result<(), ScanError> {
    let kind = if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) || local_broadcasts.contains(&ip) {
        Some("broadcast")
    } else {
        None
    };
    match kind {
        Some(kind) => Err(ScanError::ForbiddenTarget { addr: ip, kind }),
        None => Ok(()),
    }
}

fn validate_host_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err("host name longer than 253 characters".into());
    }
    let ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if ok {
        Ok(())
    } else {
        Err("not an IP address or a valid host name".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_groups() {
        for bad in [
            "255.255.255.255",
            "224.0.0.1",
            "239.1.2.3",
            "ff02::1",
            "0.0.0.0",
            "::",
        ] {
            let err = Target::resolve(bad).unwrap_err();
            assert!(
                matches!(err, ScanError::ForbiddenTarget { .. }),
                "{bad}: {err}"
            );
        }
        let subnet: IpAddr = "192.168.1.255".parse().unwrap();
        assert!(check_unicast(subnet, &[subnet]).is_err());
        assert!(check_unicast("192.168.1.7".parse().unwrap(), &[subnet]).is_ok());
    }

    #[test]
    fn parses_addresses_and_names() {
        let t = Target::resolve("127.0.0.1").unwrap();
        assert_eq!(t.ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(t.name, None);
        let v6 = Target::resolve("[::1]").unwrap();
        assert!(v6.ip.is_loopback());
        assert_eq!(v6.location(8883, "tcp"), "[::1]:8883/tcp");
        let local = Target::resolve("localhost").unwrap();
        assert!(local.ip.is_loopback());
        assert_eq!(local.host(), "localhost");
        assert!(Target::resolve("bad name!").is_err());
        assert!(Target::resolve("").is_err());
    }
}
