//! In-process TLS peers: a one-connection tokio-rustls server on
//! 127.0.0.1:0 and a client that completes the handshake and reads the
//! server's greeting (which is where TLS 1.3 reports a refused client
//! certificate).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use iotsec_tls::ClientTls;
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const GREETING: &[u8] = b"hello from the server";
const LIMIT: Duration = Duration::from_secs(20);

/// What the server saw: the client's certificate chain, if it sent one.
pub type ServerSide = io::Result<Option<Vec<CertificateDer<'static>>>>;

/// Starts a server for exactly one connection.
pub async fn serve_once(config: ServerConfig) -> (SocketAddr, JoinHandle<ServerSide>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut tls = acceptor.accept(tcp).await?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.clone().into_owned()).collect());
        tls.write_all(GREETING).await?;
        tls.shutdown().await?;
        Ok(peer)
    });
    (addr, task)
}

/// Connects with `tls` to `addr` as `name` and reads the greeting.
pub async fn connect(tls: &ClientTls, addr: SocketAddr, name: &str) -> io::Result<()> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let attempt = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut stream = TlsConnector::from(tls.config()).connect(name, tcp).await?;
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await?;
        if got != GREETING {
            return Err(io::Error::other("server closed without its greeting"));
        }
        Ok(())
    };
    tokio::time::timeout(LIMIT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake timed out",
            ))
        })
}

/// One handshake against a fresh server: the client's and the server's outcome.
pub async fn handshake(
    tls: &ClientTls,
    server: ServerConfig,
    name: &str,
) -> (io::Result<()>, ServerSide) {
    let (addr, task) = serve_once(server).await;
    let client = connect(tls, addr, name).await;
    let server = tokio::time::timeout(LIMIT, task)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "server timed out"))
        .and_then(|joined| joined.map_err(io::Error::other))
        .and_then(|result| result);
    (client, server)
}

/// A plain server (no client auth) presenting `chain` with `key`, through
/// the crate's own builder.
pub fn server(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> ServerConfig {
    let identity = iotsec_tls::Identity::from_der(chain, key).unwrap();
    iotsec_tls::server_config(&identity, &iotsec_tls::ClientAuth::NotRequested).unwrap()
}

/// A server presenting `chain` but signing the handshake with `key`, which
/// is NOT the key of the chain's leaf. rustls refuses such a pair in
/// `with_single_cert` (checked in the tests), so this goes through a
/// certificate resolver, which takes a `CertifiedKey` as it is.
pub fn impostor_server(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ServerConfig {
    let provider = iotsec_tls::provider();
    let signing_key = provider.key_provider.load_private_key(key).unwrap();
    let resolver = Fixed(Arc::new(CertifiedKey::new(chain, signing_key)));
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver))
}

#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
