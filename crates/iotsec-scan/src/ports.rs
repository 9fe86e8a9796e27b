//! Port sets: `22,80,8000-8100`, `iot` (services IoT devices and their back ends expose), `all`,
//! or any mix (`iot,9000-9100`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ScanError;

/// TCP ports IoT devices, gateways and their back ends commonly expose.
pub const IOT_TCP: &[u16] = &[
    21,    // FTP
    22,    // SSH
    23,    // Telnet
    25,    // SMTP
    80,    // HTTP
    102,   // Siemens S7
    443,   // HTTPS
    502,   // Modbus/TCP
    554,   // RTSP (cameras)
    1880,  // Node-RED
    1883,  // MQTT
    1911,  // Niagara Fox
    2323,  // Telnet (alternate, Mirai target)
    4840,  // OPC UA
    5000,  // UPnP / device web UIs
    5671,  // AMQPS
    5672,  // AMQP
    6379,  // Redis
    7547,  // TR-069 CWMP
    8000,  // HTTP alternate
    8080,  // HTTP alternate
    8081,  // HTTP alternate
    8086,  // InfluxDB
    8443,  // HTTPS alternate
    8554,  // RTSP alternate
    8883,  // MQTT over TLS
    8888,  // HTTP alternate
    9001,  // MQTT over WebSockets
    11211, // memcached
    15672, // RabbitMQ management
    20000, // DNP3
    44818, // EtherNet/IP
    49152, // UPnP
    61613, // STOMP
    61614, // STOMP over TLS
];

/// A sorted set of distinct ports (1-65535).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PortSet(Vec<u16>);

impl PortSet {
    /// Every port, 1-65535.
    pub fn all() -> Self {
        Self((1..=u16::MAX).collect())
    }

    /// The IoT list.
    pub fn iot() -> Self {
        Self::from_ports(IOT_TCP.iter().copied())
    }

    /// From any ports (0 is dropped).
    pub fn from_ports(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut v: Vec<u16> = ports.into_iter().filter(|&p| p != 0).collect();
        v.sort_unstable();
        v.dedup();
        Self(v)
    }

    /// Parses `22,80,1000-2000`, `iot`, `all` or a mix.
    pub fn parse(spec: &str) -> Result<Self, ScanError> {
        let err = |reason: String| ScanError::PortSpec {
            spec: spec.to_owned(),
            reason,
        };
        let mut ports = Vec::new();
        for item in spec.split(',').map(str::trim) {
            match item.to_ascii_lowercase().as_str() {
                "" => return Err(err("empty item".into())),
                "all" => ports.extend(1..=u16::MAX),
                "iot" => ports.extend_from_slice(IOT_TCP),
                _ => {
                    let (lo, hi) = match item.split_once('-') {
                        Some((lo, hi)) => {
                            (parse_port(lo).map_err(&err)?, parse_port(hi).map_err(&err)?)
                        }
                        None => {
                            let p = parse_port(item).map_err(&err)?;
                            (p, p)
                        }
                    };
                    if lo > hi {
                        return Err(err(format!("range {lo}-{hi} runs backwards")));
                    }
                    ports.extend(lo..=hi);
                }
            }
        }
        Ok(Self::from_ports(ports))
    }

    /// This set without the ports of `other`.
    pub fn without(&self, other: &PortSet) -> Self {
        Self(
            self.0
                .iter()
                .copied()
                .filter(|p| other.0.binary_search(p).is_err())
                .collect(),
        )
    }

    /// Membership.
    pub fn contains(&self, port: u16) -> bool {
        self.0.binary_search(&port).is_ok()
    }

    /// The ports, ascending.
    pub fn as_slice(&self) -> &[u16] {
        &self.0
    }

    /// Number of ports.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for PortSet {
    /// Compact form: `22,80,8000-8100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end.wrapping_add(1) {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("port {p} is outside 1-65535")),
        Err(_) => Err(format!("`{s}` is not a port number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_ranges_and_names() {
        let p = PortSet::parse("80, 22,1000-1002,22").unwrap();
        assert_eq!(p.as_slice(), &[22, 80, 1000, 1001, 1002]);
        assert_eq!(PortSet::parse("all").unwrap().len(), 65535);
        let iot = PortSet::parse("iot,9000").unwrap();
        assert!(iot.contains(1883) && iot.contains(8883) && iot.contains(9000));
        assert_eq!(p.to_string(), "22,80,1000-1002");
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in ["", "0", "65536", "10-5", "a", "1,,2", "-5", "5-"] {
            assert!(PortSet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exclusion() {
        let p = PortSet::parse("1-10")
            .unwrap()
            .without(&PortSet::parse("2-9").unwrap());
        assert_eq!(p.as_slice(), &[1, 10]);
        assert_eq!(PortSet::all().without(&PortSet::all()).len(), 0);
    }
}
