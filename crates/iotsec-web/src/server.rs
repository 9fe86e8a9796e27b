//! The HTTPS server: a TCP accept loop, a TLS handshake per connection (with a timeout),
//! HTTP/1.1 by hyper, the axum router, graceful shutdown. With ACME, also the HTTP-01
//! responder and the renewal task.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use iotsec_server::ServerConfig;
use iotsec_server::store::Storage;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::acme::{Acme, Ensured, http01_router, now_s};
use crate::app::{AppState, router};
use crate::auth::Connection;
use crate::config::{CertSource, WebConfig};
use crate::error::{Result, WebError};
use crate::tls::{CertSlot, certified_key_files, common_name, server_config};

/// Longest TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 512;
/// How long shutdown waits for open requests (event streams never end by themselves).
const DRAIN: Duration = Duration::from_secs(2);

/// A bound, not yet serving, HTTPS API.
pub struct WebServer {
    app: AppState,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    slot: Arc<CertSlot>,
    acme: Option<(Arc<Acme>, TcpListener)>,
}

impl std::fmt::Debug for WebServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebServer")
            .field("listen", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(WebError::io(format!("listen on {addr}")))
}

impl WebServer {
    /// Loads the certificate (files) and tokens, and binds the listeners. `storage` is the web's
    /// own connection (the ingest has its own).
    pub async fn bind(
        server: ServerConfig,
        web: WebConfig,
        storage: Box<dyn Storage>,
    ) -> Result<WebServer> {
        let slot = Arc::new(CertSlot::default());
        let acme = match &web.cert {
            CertSource::Files { cert, key } => {
                slot.set(certified_key_files(cert, key)?);
                None
            }
            CertSource::Acme(a) => {
                let http = bind(a.http_listen).await?;
                Some((Arc::new(Acme::new(a.clone(), Arc::clone(&slot))), http))
            }
        };
        let tls = server_config(&web, Arc::clone(&slot))?;
        let listener = bind(web.listen).await?;
        let app = AppState::new(server, web, storage)?;
        Ok(WebServer {
            app,
            listener,
            tls,
            slot,
            acme,
        })
    }

    /// The HTTPS address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener
            .local_addr()
            .map_err(WebError::io("HTTPS listener"))
    }

    /// The HTTP-01 responder's address, with ACME.
    pub fn acme_http_addr(&self) -> Option<SocketAddr> {
        self.acme.as_ref().and_then(|(_, l)| l.local_addr().ok())
    }

    /// The ACME client, with ACME (tests force renewals through it).
    pub fn acme(&self) -> Option<Arc<Acme>> {
        self.acme.as_ref().map(|(a, _)| Arc::clone(a))
    }

    /// The certificate slot (the leaf currently served).
    pub fn certificate(&self) -> Arc<CertSlot> {
        Arc::clone(&self.slot)
    }

    /// Serves until `shutdown` resolves. With ACME, first obtains (or reuses) the certificate
    /// through the HTTP-01 responder, then keeps renewing it.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let WebServer {
            app,
            listener,
            tls,
            slot: _,
            acme,
        } = self;
        let mut background = Vec::new();
        tokio::pin!(shutdown);
        if let Some((acme, http)) = acme {
            let responder = http01_router(acme.challenges());
            background.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(http, responder).await {
                    tracing::error!(error = %e, "ACME HTTP-01 responder stopped");
                }
            }));
            tokio::select! {
                r = acme.ensure(now_s()) => match r? {
                    Ensured::Reused => tracing::info!("using the cached ACME certificate"),
                    Ensured::Issued => tracing::info!("obtained an ACME certificate"),
                },
                () = &mut shutdown => {
                    for t in background { t.abort(); }
                    return Ok(());
                }
            }
            background.push(tokio::spawn(Arc::clone(&acme).renew_forever()));
        }
        background.push(tokio::spawn(crate::events::poll(app.clone())));
        let result = serve(listener, tls, router(app), shutdown).await;
        for t in background {
            t.abort();
        }
        result
    }
}

async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let client_cn = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(common_name);
            let conn = Connection { peer, client_cn };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(conn.clone());
                router.clone().oneshot(req)
            });
            let http = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(http).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("open connections cut at shutdown");
    }
    Ok(())
}
