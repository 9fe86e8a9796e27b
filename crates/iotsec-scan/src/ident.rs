//! Service identification of one open port: the async shell around the pure probe parsers.
//!
//! Every open port gets, in parallel, one connection per plaintext probe (MQTT CONNECT, HTTP
//! `GET /`, a silent connection waiting for a greeting, Redis/memcached, Modbus) and one rustls
//! handshake. Client-speaks-first protocols are probed at once instead of after a banner wait;
//! any reply is classified by every parser, so a server identifies itself whatever it was sent.
//! The first conclusive answer cancels the rest, so a port costs one round trip when it speaks,
//! and the timeout only when nothing ever answers (open / unknown).
//!
//! When the handshake shows TLS, the same probes run inside TLS (MQTT first, then HTTP), and a
//! raw TLS 1.0/1.1 ClientHello checks for legacy protocol support. A descriptor semaphore bounds
//! the connections in flight; no task ever waits for a permit while holding one.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::certificate::{self, CertInfo};
use crate::handshake::{self, Observed};
use crate::probe::http::HttpResponse;
use crate::probe::mqtt::{self, ConnectOutcome, MqttVersion};
use crate::probe::tls::{self as rawtls, ServerFlight};
use crate::probe::{self, Identified, Parse, Probe, printable};
use crate::report::{ClientAuth, LegacyTls, MqttService, PortReport, Service, TlsInfo, Transport};
use crate::target::Target;

/// Most reply bytes kept per probe.
const MAX_REPLY: usize = 16 * 1024;
/// Attempts to open a probe connection when the process is out of descriptors.
const CONNECT_ATTEMPTS: u32 = 40;

/// Shared settings and resources of the identification phase.
#[derive(Debug)]
pub struct Prober {
    /// Target host.
    pub target: Target,
    /// Connect and reply timeout of client-speaks-first probes.
    pub timeout: Duration,
    /// How long the silent connection waits for a greeting.
    pub banner_timeout: Duration,
    /// One permit per connection in flight.
    pub fds: Arc<Semaphore>,
    /// rustls provider.
    pub provider: Arc<CryptoProvider>,
    /// MQTT client id prefix (random per scan).
    pub client_id: String,
    /// Unix time for certificate validity.
    pub now: i64,
}

/// What a read produced.
struct Reply<T> {
    bytes: Vec<u8>,
    parsed: Option<T>,
    error: Option<io::Error>,
}

/// Reads until `classify` decides, the peer closes, or `wait` passes.
async fn read_reply<S, T>(
    stream: &mut S,
    wait: Duration,
    mut classify: impl FnMut(&[u8], bool) -> Parse<T>,
) -> Reply<T>
where
    S: AsyncRead + Unpin,
{
    let deadline = tokio::time::Instant::now() + wait;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let (eof, error) = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) | Ok(Ok(0)) => (true, None),
            Ok(Ok(n)) => {
                bytes.extend_from_slice(&chunk[..n]);
                (bytes.len() >= MAX_REPLY, None)
            }
            Ok(Err(e)) => (true, Some(e)),
        };
        if bytes.is_empty() && !eof {
            continue;
        }
        match classify(&bytes, eof) {
            Parse::Done(parsed) => {
                return Reply {
                    bytes,
                    parsed: Some(parsed),
                    error,
                };
            }
            Parse::Incomplete if !eof => {}
            _ => {
                return Reply {
                    bytes,
                    parsed: None,
                    error,
                };
            }
        }
    }
}

/// Result of a plaintext probe.
struct PlainOutcome {
    probe: Probe,
    bytes: Vec<u8>,
    identified: Option<Identified>,
}

/// Result of the TLS probe (handshake, inner probes, legacy check).
#[derive(Default)]
struct TlsOutcome {
    /// The peer answered in TLS (hello, alert or certificate seen).
    spoke_tls: bool,
    version: Option<String>,
    cipher_suite: Option<String>,
    observed: Observed,
    handshake_error: Option<String>,
    /// Alert or error that ended the connection after a CertificateRequest.
    refusal: Option<String>,
    inner: Option<Identified>,
    legacy: Option<LegacyTls>,
}

enum FanOut {
    Plain(PlainOutcome),
    Tls(Box<TlsOutcome>),
}

/// How strongly a plaintext answer identifies the port.
fn strength(id: &Identified) -> u8 {
    match id {
        Identified::TlsRecord => 0,
        // `400` is what an HTTPS server sends to plain HTTP on its TLS port (nginx and others)
        // and what HTTP servers answer to binary probes: a candidate, not a verdict.
        Identified::Http(HttpResponse { status: 400, .. }) => 1,
        _ => 2,
    }
}

impl Prober {
    fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.target.ip, port)
    }

    fn server_name(&self) -> ServerName<'static> {
        self.target
            .name
            .as_ref()
            .and_then(|n| ServerName::try_from(n.clone()).ok())
            .unwrap_or_else(|| ServerName::IpAddress(self.target.ip.into()))
    }

    async fn permit(&self) -> io::Result<OwnedSemaphorePermit> {
        self.fds
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("probe semaphore closed"))
    }

    /// Connects with the descriptor permit held, backing off on EMFILE / ENFILE.
    async fn connect(
        &self,
        port: u16,
        permit: OwnedSemaphorePermit,
    ) -> io::Result<(TcpStream, OwnedSemaphorePermit)> {
        let addr = self.addr(port);
        let mut attempt = 0;
        loop {
            match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, permit));
                }
                Ok(Err(e)) if is_resource_error(&e) && attempt < CONNECT_ATTEMPTS => {
                    attempt += 1;
                    // Descriptors free up as other probes finish; this is a retry pause, not a
                    // timing assumption.
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt.min(20)))).await;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
            }
        }
    }

    /// One plaintext probe on its own connection.
    async fn plain(self: Arc<Self>, port: u16, probe: Probe) -> PlainOutcome {
        let failed = |probe| PlainOutcome {
            probe,
            bytes: Vec::new(),
            identified: None,
        };
        let Ok(permit) = self.permit().await else {
            return failed(probe);
        };
        let Ok((mut stream, _permit)) = self.connect(port, permit).await else {
            return failed(probe);
        };
        let payload = probe.payload(&self.target.host(), &self.client_id);
        if !payload.is_empty() && stream.write_all(&payload).await.is_err() {
            return failed(probe);
        }
        let wait = match probe {
            Probe::Passive => self.banner_timeout,
            _ => self.timeout,
        };
        let reply = read_reply(&mut stream, wait, |b, eof| probe::classify(probe, b, eof)).await;
        if let Some(Identified::Mqtt(c)) = &reply.parsed
            && c.outcome == ConnectOutcome::Accepted
        {
            let _ = stream.write_all(&mqtt::DISCONNECT).await;
        }
        PlainOutcome {
            probe,
            bytes: reply.bytes,
            identified: reply.parsed,
        }
    }

    /// TLS handshake with inspection; returns the stream when it completed.
    async fn handshake(
        &self,
        port: u16,
        permit: OwnedSemaphorePermit,
        out: &mut TlsOutcome,
    ) -> Option<(TlsStream<TcpStream>, OwnedSemaphorePermit)> {
        let (stream, permit) = self.connect(port, permit).await.ok()?;
        let (config, recorder) = match handshake::inspection_config(&self.provider) {
            Ok(c) => c,
            Err(e) => {
                out.handshake_error = Some(e.to_string());
                return None;
            }
        };
        let connector = TlsConnector::from(config);
        let result =
            tokio::time::timeout(self.timeout, connector.connect(self.server_name(), stream)).await;
        out.observed = recorder.observed();
        match result {
            Ok(Ok(tls)) => {
                let conn = tls.get_ref().1;
                out.spoke_tls = true;
                out.version = conn.protocol_version().map(version_name);
                out.cipher_suite = conn.negotiated_cipher_suite().map(|s| {
                    s.suite()
                        .as_str()
                        .map_or_else(|| format!("{:?}", s.suite()), str::to_owned)
                });
                // The recorder may have gained the CertificateRequest during the handshake.
                out.observed = recorder.observed();
                Some((tls, permit))
            }
            Ok(Err(e)) => {
                let (spoke, text) = describe_tls_error(&e);
                out.spoke_tls |= spoke || !out.observed.chain.is_empty();
                out.handshake_error = Some(text);
                None
            }
            Err(_) => {
                out.spoke_tls |= !out.observed.chain.is_empty();
                out.handshake_error = Some("handshake timed out".into());
                None
            }
        }
    }

    /// Sends `probe` inside TLS and classifies the answer.
    async fn inner_probe(&self, tls: &mut TlsStream<TcpStream>, probe: Probe) -> Reply<Identified> {
        let payload = probe.payload(&self.target.host(), &self.client_id);
        if let Err(e) = tls.write_all(&payload).await {
            return Reply {
                bytes: Vec::new(),
                parsed: None,
                error: Some(e),
            };
        }
        let _ = tls.flush().await;
        let reply = read_reply(tls, self.timeout, |b, eof| probe::classify(probe, b, eof)).await;
        if let Some(Identified::Mqtt(c)) = &reply.parsed
            && c.outcome == ConnectOutcome::Accepted
        {
            let _ = tls.write_all(&mqtt::DISCONNECT).await;
            let _ = tls.flush().await;
        }
        reply
    }

    /// The TLS probe: handshake, then MQTT and HTTP inside TLS, plus the legacy version check.
    async fn tls(self: Arc<Self>, port: u16) -> TlsOutcome {
        let mut out = TlsOutcome::default();
        let Ok(permit) = self.permit().await else {
            return out;
        };
        let Some((mut tls, permit)) = self.handshake(port, permit, &mut out).await else {
            if out.spoke_tls {
                out.legacy = self.clone().legacy(port, None).await;
            }
            return out;
        };
        // Check legacy versions in parallel when a descriptor is free right now; otherwise
        // afterwards (never wait for a permit while holding one).
        let legacy_task = self
            .fds
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| tokio::spawn(self.clone().legacy(port, Some(p))));

        // HTTP on a second TLS connection in parallel when a descriptor is free right now.
        let http_task = self
            .fds
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|p| tokio::spawn(self.clone().fresh_inner(port, Probe::Http, Some(p))));

        // MQTT on the connection we have.
        let reply = self
            .inner_probe(&mut tls, Probe::Mqtt(MqttVersion::V311))
            .await;
        drop(tls);
        drop(permit);
        absorb(&mut out, reply);

        let identified = out.inner.as_ref().is_some_and(|id| strength(id) >= 2);
        match http_task {
            Some(task) if identified || out.refusal.is_some() => task.abort(),
            Some(task) => {
                if let Ok(Some(reply)) = task.await {
                    absorb(&mut out, reply);
                }
            }
            None if !identified && out.refusal.is_none() => {
                if let Some(reply) = self.clone().fresh_inner(port, Probe::Http, None).await {
                    absorb(&mut out, reply);
                }
            }
            None => {}
        }
        out.legacy = match legacy_task {
            Some(task) => task.await.ok().flatten(),
            None => self.clone().legacy(port, None).await,
        };
        out
    }

    /// A new TLS connection carrying one probe.
    async fn fresh_inner(
        self: Arc<Self>,
        port: u16,
        probe: Probe,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Option<Reply<Identified>> {
        let permit = match permit {
            Some(p) => p,
            None => self.permit().await.ok()?,
        };
        let mut scratch = TlsOutcome::default();
        let (mut tls, _permit) = self.handshake(port, permit, &mut scratch).await?;
        Some(self.inner_probe(&mut tls, probe).await)
    }

    /// Raw TLS 1.1-max ClientHello: does the server accept TLS below 1.2?
    async fn legacy(
        self: Arc<Self>,
        port: u16,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Option<LegacyTls> {
        let permit = match permit {
            Some(p) => p,
            None => self.permit().await.ok()?,
        };
        let (mut stream, _permit) = self.connect(port, permit).await.ok()?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).ok()?;
        let sni = self.target.name.clone();
        let hello = rawtls::legacy_client_hello(rawtls::TLS11, sni.as_deref(), random);
        stream.write_all(&hello).await.ok()?;
        let reply = read_reply(&mut stream, self.timeout, |b, _| {
            rawtls::parse_server_flight(b)
        })
        .await;
        match reply.parsed? {
            ServerFlight::Hello {
                version,
                cipher_suite,
            } if version < rawtls::TLS12 => Some(LegacyTls {
                version: rawtls::version_name(version),
                cipher_suite: rawtls::suite_name(cipher_suite),
            }),
            _ => None,
        }
    }

    /// MQTT 5 CONNECT after a port was identified as MQTT (plain or inside TLS).
    async fn mqtt_v5(self: Arc<Self>, port: u16, over_tls: bool) -> Option<ConnectOutcome> {
        let probe = Probe::Mqtt(MqttVersion::V5);
        let id = if over_tls {
            self.clone().fresh_inner(port, probe, None).await?.parsed
        } else {
            self.clone().plain(port, probe).await.identified
        };
        match id {
            Some(Identified::Mqtt(c)) => Some(c.outcome),
            _ => None,
        }
    }

    /// Identifies the service on an open TCP port.
    pub async fn identify(self: Arc<Self>, port: u16) -> PortReport {
        let started = Instant::now();
        let mut set = JoinSet::new();
        set.spawn(self.clone().tls_fanout(port));
        for probe in Probe::FAN_OUT {
            let me = self.clone();
            set.spawn(async move { FanOut::Plain(me.plain(port, probe).await) });
        }
        let mut best: Option<Identified> = None;
        let mut replies: Vec<(Probe, Vec<u8>)> = Vec::new();
        let mut tls: Option<Box<TlsOutcome>> = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(FanOut::Plain(p)) => {
                    if !p.bytes.is_empty() {
                        replies.push((p.probe, p.bytes));
                    }
                    if let Some(id) = p.identified {
                        let s = strength(&id);
                        if best.as_ref().is_none_or(|b| s > strength(b)) {
                            best = Some(id);
                        }
                        if s >= 2 {
                            break;
                        }
                    }
                }
                Ok(FanOut::Tls(t)) => {
                    if t.spoke_tls {
                        tls = Some(t);
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        set.abort_all();

        let (service, tls_info) = match tls {
            Some(mut t) => {
                let service = match t.inner.take() {
                    Some(id) if strength(&id) >= 1 => service_of(id),
                    _ => Service::Tls,
                };
                (service, Some(self.tls_info(*t)))
            }
            None => {
                let service = match best {
                    Some(id) if strength(&id) >= 1 => service_of(id),
                    _ => Service::Unknown {
                        reply: unknown_reply(&replies),
                    },
                };
                (service, None)
            }
        };
        let service = match service {
            Service::Mqtt(mut m) => {
                m.v5 = self.clone().mqtt_v5(port, tls_info.is_some()).await;
                Service::Mqtt(m)
            }
            other => other,
        };
        PortReport {
            port,
            transport: Transport::Tcp,
            service,
            tls: tls_info,
            binding: None,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }
    }

    async fn tls_fanout(self: Arc<Self>, port: u16) -> FanOut {
        FanOut::Tls(Box::new(self.tls(port).await))
    }

    fn tls_info(&self, t: TlsOutcome) -> TlsInfo {
        let chain: Vec<CertInfo> = t
            .observed
            .chain
            .iter()
            .filter_map(|der| certificate::inspect(der, self.now).ok())
            .collect();
        let name_match = chain
            .first()
            .map(|leaf| certificate::names_host(leaf, &self.target.host()));
        let client_auth = match (t.observed.client_auth, t.refusal) {
            (None, None) => ClientAuth::NotRequested,
            (Some(acceptable_issuers), None) if t.handshake_error.is_none() => {
                ClientAuth::Optional { acceptable_issuers }
            }
            (issuers, refusal) => ClientAuth::Required {
                acceptable_issuers: issuers.unwrap_or_default(),
                refusal: refusal
                    .or(t.handshake_error.clone())
                    .unwrap_or_else(|| "connection closed".into()),
            },
        };
        TlsInfo {
            version: t.version,
            cipher_suite: t.cipher_suite,
            chain,
            name_match,
            client_auth,
            legacy: t.legacy,
            error: t.handshake_error,
        }
    }
}

/// Keeps the better of the inner answers and notes a refusal after a certificate request.
fn absorb(out: &mut TlsOutcome, reply: Reply<Identified>) {
    if let Some(err) = &reply.error
        && (out.observed.client_auth.is_some() || is_auth_alert(err))
    {
        out.refusal = Some(describe_tls_error(err).1);
    }
    let better = match (&reply.parsed, &out.inner) {
        (Some(new), Some(old)) => strength(new) > strength(old),
        (Some(_), None) => true,
        _ => false,
    };
    if better {
        out.inner = reply.parsed;
    }
}

fn service_of(id: Identified) -> Service {
    match id {
        Identified::Mqtt(c) => Service::Mqtt(MqttService {
            v311: Some(c.outcome),
            v5: None,
        }),
        Identified::Http(r) => Service::Http(r),
        Identified::Banner(b) => Service::Greeting(b),
        Identified::Telnet(t) => Service::Telnet(t),
        Identified::Kv(k) => Service::Kv(k),
        Identified::Modbus(m) => Service::Modbus(m),
        Identified::TlsRecord => Service::Tls,
    }
}

/// The most telling unidentified reply: the greeting of the silent connection first.
fn unknown_reply(replies: &[(Probe, Vec<u8>)]) -> Option<String> {
    let (_, bytes) = replies
        .iter()
        .find(|(p, _)| *p == Probe::Passive)
        .or_else(|| replies.first())?;
    let text_like = bytes
        .iter()
        .take(64)
        .filter(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        .count()
        * 4
        >= bytes.len().min(64) * 3;
    Some(if text_like {
        printable(bytes, 80)
    } else {
        let hex: String = bytes.iter().take(24).map(|b| format!("{b:02x}")).collect();
        format!("hex {hex}")
    })
}

fn is_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(nix::errno::Errno::from_raw),
        Some(
            nix::errno::Errno::EMFILE
                | nix::errno::Errno::ENFILE
                | nix::errno::Errno::ENOBUFS
                | nix::errno::Errno::EADDRNOTAVAIL
        )
    )
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => rawtls::version_name(u16::from(other)),
    }
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

/// Did the server end the connection with an alert that means "no acceptable certificate"?
fn is_auth_alert(e: &io::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        rustls_error(e),
        Some(rustls::Error::AlertReceived(
            A::CertificateRequired
                | A::BadCertificate
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::HandshakeFailure
        ))
    )
}

/// (the peer speaks TLS, human description) for a handshake or record error.
fn describe_tls_error(e: &io::Error) -> (bool, String) {
    match rustls_error(e) {
        Some(rustls::Error::AlertReceived(alert)) => (
            true,
            format!("alert {}", rawtls::alert_name(u8::from(*alert))),
        ),
        Some(err @ (rustls::Error::PeerIncompatible(_) | rustls::Error::PeerMisbehaved(_))) => {
            (true, err.to_string())
        }
        Some(err) => (false, err.to_string()),
        None => (false, e.to_string()),
    }
}
