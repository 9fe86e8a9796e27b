//! UDP probes (opt-in): CoAP `GET /.well-known/core` (RFC 7252, RFC 6690).
//!
//! UDP has no handshake: a port that answers is open, one that sends ICMP port-unreachable
//! (seen as ECONNREFUSED on a connected socket) is closed, and silence proves nothing. Only
//! answering ports are reported.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::probe::Parse;
use crate::probe::coap::{self, CoapReply};
use crate::report::{PortReport, Service, Transport};

/// Sends the CoAP discovery request (twice, as CoAP retransmits confirmable messages) and waits
/// up to `timeout` for a matching answer.
pub async fn coap(ip: IpAddr, port: u16, timeout: Duration) -> Option<PortReport> {
    let started = Instant::now();
    let local: SocketAddr = match ip {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect((ip, port)).await.ok()?;
    let mut ids = [0u8; 4];
    getrandom::fill(&mut ids).ok()?;
    let message_id = u16::from_be_bytes([ids[0], ids[1]]);
    let token = [ids[2], ids[3]];
    let request = coap::well_known_core_request(message_id, token);
    let deadline = tokio::time::Instant::now() + timeout;
    let resend_at = tokio::time::Instant::now() + timeout / 2;
    socket.send(&request).await.ok()?;
    let mut resent = false;
    let mut buf = vec![0u8; 2048];
    loop {
        let wake = if resent { deadline } else { resend_at };
        match tokio::time::timeout_at(wake, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                if let Parse::Done(reply) = coap::parse_reply(&buf[..n], message_id, token) {
                    return Some(report(port, reply, started));
                }
            }
            // ICMP port unreachable: closed.
            Ok(Err(_)) => return None,
            Err(_) if !resent => {
                resent = true;
                socket.send(&request).await.ok()?;
            }
            Err(_) => return None,
        }
    }
}

fn report(port: u16, reply: CoapReply, started: Instant) -> PortReport {
    PortReport {
        port,
        transport: Transport::Udp,
        service: Service::Coap(reply),
        tls: None,
        binding: None,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}
