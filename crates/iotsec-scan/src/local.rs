//! Facts about this machine: its interface addresses (is the target local?), its broadcast
//! addresses (refused as targets) and the kernel's table of listening TCP sockets
//! (`/proc/net/tcp{,6}`), which tells whether a local service is bound to every interface.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// A listening TCP socket from the kernel's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    /// Bound address (`0.0.0.0` / `::` for every interface).
    pub addr: IpAddr,
    /// Port.
    pub port: u16,
}

impl Listener {
    /// Bound to every interface.
    pub fn is_all_interfaces(&self) -> bool {
        self.addr.is_unspecified()
    }

    /// Does this socket accept connections to `target`? A `::` socket also accepts IPv4 unless
    /// it is v6-only (we cannot see that flag, so we assume dual-stack, the Linux default).
    pub fn serves(&self, target: IpAddr) -> bool {
        self.addr == target
            || match (self.addr, target) {
                (IpAddr::V4(a), IpAddr::V4(_)) => a.is_unspecified(),
                (IpAddr::V6(a), _) => a.is_unspecified(),
                _ => false,
            }
    }
}

/// Parses `/proc/net/tcp` (`v6 == false`) or `/proc/net/tcp6` text, keeping LISTEN sockets.
/// Addresses are printed as native-endian 32-bit words in hex (`0100007F` is 127.0.0.1 on
/// little-endian machines); ports as big-endian hex.
pub fn parse_proc_net_tcp(text: &str, v6: bool) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _slot = fields.next()?;
            let local = fields.next()?;
            let _remote = fields.next()?;
            let state = fields.next()?;
            if state != "0A" {
                return None;
            }
            let (addr_hex, port_hex) = local.split_once(':')?;
            let port = u16::from_str_radix(port_hex, 16).ok()?;
            let addr = parse_hex_addr(addr_hex, v6)?;
            Some(Listener { addr, port })
        })
        .collect()
}

fn parse_hex_addr(hex: &str, v6: bool) -> Option<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    if v6 {
        if hex.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for i in 0..4 {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word(hex.get(i * 8..i * 8 + 8)?)?);
        }
        Some(IpAddr::V6(Ipv6Addr::from(bytes)))
    } else {
        if hex.len() != 8 {
            return None;
        }
        Some(IpAddr::V4(Ipv4Addr::from(word(hex)?)))
    }
}

/// Listening TCP sockets of this network namespace (IPv4 and IPv6). Missing files (not Linux,
/// IPv6 disabled) give an empty list.
pub fn tcp_listeners() -> Vec<Listener> {
    let mut out = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(parse_proc_net_tcp(&text, v6));
        }
    }
    out
}

/// Addresses of this machine's interfaces.
pub fn local_addresses() -> Vec<IpAddr> {
    interface_addresses(|a| a.address)
}

/// Broadcast addresses of this machine's interfaces.
pub fn broadcast_addresses() -> Vec<IpAddr> {
    interface_addresses(|a| a.broadcast)
}

/// Is `ip` this machine (loopback or one of its interface addresses)?
pub fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || local_addresses().contains(&ip)
}

fn interface_addresses(
    pick: impl Fn(&nix::ifaddrs::InterfaceAddress) -> Option<nix::sys::socket::SockaddrStorage>,
) -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let s = pick(&a)?;
            if let Some(v4) = s.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from this kind of machine (x86-64, little-endian).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1145 1 000000007b38054c 100 0 0 10 0
   1: 0100007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 2211 1 0000000000000000 100 0 0 10 0
   2: 0100007F:AB8D 0100007F:C162 06 00000000:00000000 03:000015DC 00000000     0        0 0 3 000000002f88eeca
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:22B3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 3311 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3312 1 0000000000000000 100 0 0 10 0
";

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_listeners() {
        let v4 = parse_proc_net_tcp(TCP, false);
        assert_eq!(
            v4,
            vec![
                Listener {
                    addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port: 2024
                },
                Listener {
                    addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
                    port: 1883
                },
            ]
        );
        assert!(v4[0].is_all_interfaces());
        assert!(!v4[1].is_all_interfaces());
        let v6 = parse_proc_net_tcp(TCP6, true);
        assert_eq!(v6[0].port, 8883);
        assert!(v6[0].is_all_interfaces());
        assert_eq!(v6[1].addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn serves_matches_bind_address() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let any4 = Listener {
            addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 1,
        };
        let any6 = Listener {
            addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            port: 1,
        };
        let only_lo = Listener { addr: lo, port: 1 };
        assert!(any4.serves(lo));
        assert!(any6.serves(lo));
        assert!(only_lo.serves(lo));
        assert!(!only_lo.serves(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))));
        assert!(!any4.serves(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse_proc_net_tcp("header\nnonsense\n 0: zz:zz 0 0A\n", false).is_empty());
        assert!(parse_proc_net_tcp("", true).is_empty());
    }

    #[test]
    fn this_machine_has_loopback() {
        assert!(is_local(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }
}
